"""Step registry: a named step → (remote command, stdin script). Pure.

An RMAN step runs as one line of POSIX ``sh``: the environment prologue, then (for a host
without ``oracle_home``) the oratab lookup, the per-database lock with its ledger-writing
EXIT trap (``database_lock``), and rman as a child of that shell, not ``exec``ed, so the
shell can record the result and release the lock::

    ORACLE_SID=PROD1; ORACLE_HOME=/u01/app/oracle/product/19.0.0/dbhome_1; \
NLS_LANG=AMERICAN_AMERICA.AL32UTF8; NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'; \
export ORACLE_SID ORACLE_HOME NLS_LANG NLS_DATE_FORMAT; unset TWO_TASK; \
<lock and trap>; "$ORACLE_HOME/bin/rman" target /

(shown wrapped; ``fanout plan --show-scripts`` prints it whole) with the script on stdin::

    RUN {
      SET COMMAND ID TO 'fanout-20261123T171435Z-3f9a';
      BACKUP INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';
    }
    EXIT;

Every environment value goes through ``shlex.quote``, so an inventory value can
never run anything. ``TWO_TASK`` is unset because a value inherited from the
login shell's rc files would turn ``target /`` into a Net connection to another
database. A shell step gets the same prologue followed by its own command.
The SSH transport wraps the command as ``/bin/sh -c '…'``: nothing here depends
on the login shell. Choices and overrides: ``docs/steps.md``.
"""

from __future__ import annotations

import re
import secrets
import shlex
import textwrap
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from fanout.model import Host, Inventory, LevelPolicy, OnFailure, StepDef, StepKind
from fanout.policy import LevelChoice

__all__ = [
    "BUILTIN_STEPS",
    "DEFAULT_ORATABS",
    "NLS_DATE_FORMAT",
    "NLS_LANG",
    "REFUSED_IN_RUN",
    "WARNING_PREFIX",
    "RenderedStep",
    "new_run_id",
    "refused_in_run",
    "render_condition",
    "render_host",
    "render_step",
]

NLS_LANG = "AMERICAN_AMERICA.AL32UTF8"  # English messages: the parser in rman.py reads them
NLS_DATE_FORMAT = "YYYY-MM-DD HH24:MI:SS"  # times of day in the transcript, not just 20-AUG-25

# The `backup` step's commands: {level} becomes 0 or 1, {cumulative} "CUMULATIVE " or nothing.
BACKUP_BODY = "BACKUP INCREMENTAL LEVEL {level} {cumulative}DATABASE TAG 'FANOUT_L{level}';"

BUILTIN_STEPS: Mapping[str, StepDef] = MappingProxyType(
    {
        "backup": StepDef(
            name="backup", kind=StepKind.RMAN, body=BACKUP_BODY, levels=LevelPolicy()
        ),
        "full": StepDef(
            name="full",
            kind=StepKind.RMAN,
            body="BACKUP INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';",
        ),
        "archivelog": StepDef(
            name="archivelog",
            kind=StepKind.RMAN,
            body=(
                "SQL 'ALTER SYSTEM ARCHIVE LOG CURRENT';\n"
                "BACKUP ARCHIVELOG ALL NOT BACKED UP 1 TIMES TAG 'FANOUT_ARCH';"
            ),
        ),
        "controlfile": StepDef(
            name="controlfile",
            kind=StepKind.RMAN,
            body="BACKUP CURRENT CONTROLFILE TAG 'FANOUT_CTL';\nBACKUP SPFILE TAG 'FANOUT_SPF';",
        ),
    }
)

# fanout makes run ids itself (new_run_id); anything else is refused rather than
# escaped, because RMAN has no documented escape inside a quoted string.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True, slots=True)
class RenderedStep:
    """A step ready to run on one host: what the transport executes and feeds on stdin."""

    name: str
    kind: StepKind
    command: str  # POSIX sh, run by the transport under /bin/sh -c
    stdin: str | None  # the RMAN script; None for shell steps
    timeout: float  # seconds
    retries: int  # extra attempts after a failure
    on_failure: OnFailure
    empty_ok: bool = False  # "no files matched" (RMAN-20242 …) counts as success
    requires: tuple[str, ...] = ()  # steps that must have succeeded in this run
    when: str | None = None  # the condition's remote command (exit 0 run, 1 skip, else fail)
    level: int | None = None  # the `backup` step: the level chosen for this run
    detail: str | None = None  # shown beside the status: "level 0: no level 0 recorded"


@dataclass(frozen=True, slots=True)
class Adopt:
    """How a resumed step treats what earlier runs may have left on the host.

    ``runs``: the earlier runs whose attempts on this host may still be running, or may
    have ended while fanout was away (every run since the host's last recorded success of
    a step that is still owed). A lock held by a live step of one of them is waited for or
    stopped; a step the host's ledger shows ended ok in one of them is not taken again.
    """

    runs: tuple[str, ...]
    stop: bool  # stop the old run's still-running step (True) or wait for it to end (False)
    grace: float  # stop: seconds between SIGINT and SIGTERM (then 5 s to SIGKILL)
    continues: str | None = None  # the run this one continues, recorded in the ledger


def render_step(
    host: Host,
    step: StepDef,
    run_id: str,
    adopt: Adopt | None = None,
    *,
    level: LevelChoice | None = None,
    token: int | None = None,
) -> RenderedStep:
    """Render ``step`` for ``host``; ``token``: the cluster leader's fencing token, if any.

    ``level``: the level-policy choice for a step with ``levels`` (the ``backup`` step);
    without one such a step takes a level 0. Raises ValueError if ``run_id`` is not a
    plain token (it goes inside an RMAN string literal) or if an environment value holds
    a NUL byte (no environment can carry one).
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: expected letters, digits, '_', '.', '-' (max 40)")
    body, detail, chosen = step.body, None, None
    if step.levels is not None:
        choice = level or LevelChoice(0, "no level policy decision", cumulative=False)
        chosen, detail = choice.level, choice.describe()
        cumulative = "CUMULATIVE " if choice.level == 1 and choice.cumulative else ""
        body = body.replace("{level}", str(choice.level)).replace("{cumulative}", cumulative)
    if step.kind is StepKind.RMAN:
        prologue = _environment(host, rman=True)
        continues = adopt.continues if adopt else None
        lock = database_lock(host, run_id, step.name, continues, token=token)
        if adopt is not None:
            lock = f"{adoption(host, step.name, adopt)}; {lock}"
        command = f"{prologue}; {lock}; {_catalog_probe(host)}{RMAN}"
        stdin: str | None = _rman_script(body, run_id, host.catalog, step.configure)
    else:
        command = f"{_environment(host)}; {body.strip()}"
        stdin = None
    return RenderedStep(
        name=step.name,
        kind=step.kind,
        command=command,
        stdin=stdin,
        timeout=step.timeout or host.step_timeout,
        retries=step.retries if step.retries is not None else host.retries,
        on_failure=step.on_failure,
        empty_ok=step.empty_ok,
        requires=step.requires,
        when=render_condition(host, step.when) if step.when else None,
        level=chosen,
        detail=detail,
    )


def render_condition(host: Host, condition: str) -> str:
    """The remote command of a ``when:`` condition: the environment prologue, then it.

    The condition is shell text the inventory's author wrote to run on the host, like a
    shell step's body (not quoted: running it is the point). Exit 0: the step runs,
    1: it is skipped ("condition false"), anything else fails it.
    """
    return f"{_environment(host)}; {condition.strip()}"


RMAN = '"$ORACLE_HOME/bin/rman" target /'
LOCK_HELD_EXIT = 75  # EX_TEMPFAIL, like the local run lock
FENCED_EXIT = 76  # the database has seen a newer cluster leader's token: this one is deposed


LEDGER_LINES = 500  # a ledger this long is moved to <ledger>.1 (replacing it) before the next entry


def lock_paths(host: Host) -> tuple[str, str]:
    """The remote lock directory of the host's database and its ledger of finished steps."""
    base = _lock_base(host)
    return f"{base}.lock", f"{base}.ledger"


def fence_path(host: Host) -> str:
    """The remote file holding the highest cluster leader token this database has seen."""
    return f"{_lock_base(host)}.fence"


def _lock_base(host: Host) -> str:
    # The loader only admits SIDs of [A-Za-z0-9_$#]; anything else never reaches the path.
    sid = re.sub(r"[^A-Za-z0-9_$#]", "_", host.oracle_sid)
    return f"{host.lock_dir.rstrip('/')}/fanout-{sid}"


# alive PGID: the group leader still runs (a zombie is gone: orphans may wait long for init)
_ALIVE = (
    'alive() { ps -o pgid= -o args= -p "$1" 2>/dev/null'
    ' | awk -v p="$1" \'$1 == p && $NF != "<defunct>" { f = 1 } END { exit !f }\'; }'
)


def adoption(host: Host, step: str, adopt: Adopt) -> str:
    """POSIX sh run before a resumed step takes the database lock.

    If a step of one of ``adopt.runs`` still holds the lock (its orchestrator died, the
    remote backup went on), wait for it or stop its process group (SIGINT, SIGTERM after
    ``grace``, SIGKILL 5 s later). Then, if the host's ledger says ``step`` ended with
    status 0 in any of those runs, print so and exit 0: the backup is not taken twice,
    whatever the orchestrator's store lost. Messages go to stdout, so they never become a
    cause. Costs no process besides ``ps`` when a lock is held (``while read``, not grep).
    """
    lock, ledger = lock_paths(host)
    runs = shlex.quote(" " + " ".join(adopt.runs) + " ")
    say = "printf 'fanout: %s of run %s %s (pid %s)\\n'"
    if adopt.stop:
        grace = max(1, round(adopt.grace))
        handle = (
            f'{say} "$3" "$2" "is still running: stopping it" "$1"; kill -s INT -- -"$1"; n=0; '
            f'while alive "$1" && [ "$n" -lt {grace} ]; do sleep 1; n=$((n+1)); done; '
            'if alive "$1"; then kill -s TERM -- -"$1"; sleep 5; fi; '
            'if alive "$1"; then kill -s KILL -- -"$1"; fi'
        )
    else:
        handle = (
            f'{say} "$3" "$2" "is still running: waiting for it to end" "$1"; '
            'while alive "$1"; do sleep 2; done'
        )
    done = "printf 'fanout: %s already completed in run %s while fanout was away\\n'"
    return "; ".join(
        (
            f"runs={runs}; step={shlex.quote(step)}; lock={shlex.quote(lock)}; "
            f"ledger={shlex.quote(ledger)}",
            _ALIVE,
            'set -- $(cat "$lock/owner" 2>/dev/null)',
            f'case "$runs" in *" $2 "*) if [ -n "$1" ] && alive "$1"; then {handle}; fi;; esac',
            'for f in "$ledger.1" "$ledger"; do [ -f "$f" ] || continue; '
            'while read -r r s st c; do [ "$s $st" = "$step 0" ] || continue; '
            f'case "$runs" in *" $r "*) {done} "$step" "$r"; exit 0;; esac; '
            'done <"$f"; done',
        )
    )


# The EXIT trap (inside single quotes): ignore further signals, rotate a full ledger,
# append this step's entry, release the lock. No fork but ``rm`` (and ``mv`` once in
# LEDGER_LINES steps): the line count is a ``while read`` loop of the shell itself.
_RECORD = (
    'st=$?; trap "" INT TERM; n=0; '
    'if [ -f "$ledger" ]; then while read -r _; do n=$((n+1)); done <"$ledger"; fi; '
    f'[ "$n" -lt {LEDGER_LINES} ] || mv -f "$ledger" "$ledger.1"; '
    'echo "$tag $st $cont" >>"$ledger"; rm -rf "$lock"'
)


def database_lock(
    host: Host, run_id: str, step: str, continues: str | None = None, *, token: int | None = None
) -> str:
    """POSIX sh that takes the per-database lock for this step, or fails fast.

    At most one fanout-started rman per ORACLE_SID runs on a host, whatever
    inventory or orchestrator machine started it: ``mkdir`` is atomic on every
    POSIX filesystem. The lock holds ``<pid> <run_id> <step>``, where pid is the
    step's shell, the leader of its process group. A held lock whose leader is gone
    (SIGKILL leaves no time to clean up) is taken over. Otherwise the step exits 75
    with ``fanout: another backup of SID is running (pid …, started 1:02:03 ago)`` on
    stderr. On exit the shell appends ``<run_id> <step> <status> <continues|->`` to the
    database's ledger (moved to ``<ledger>.1`` once it holds ``LEDGER_LINES`` entries, so
    the two files stay bounded) and removes the lock, ignoring further signals while it
    does; SIGINT/SIGTERM reach rman (same process group) and the shell cleans up once
    rman has exited.
    rman therefore runs as a child, not via ``exec``. The uncontended path costs two
    processes besides rman (``mkdir``, ``rm``): on a fleet of hundreds, every fork
    counts.

    In cluster mode ``token`` (the leader's fencing token, an etcd revision: it only grows)
    is recorded as the owner's fourth field and, under the lock, checked against the
    ``.fence`` file: if the database has already seen a newer leader's token, this step
    releases the lock and exits 76 (``fanout: fenced: ...`` on stderr) without starting
    rman; otherwise it writes its own token there (and exports it as FANOUT_TOKEN). So
    once a new leader has started a step on a database, a deposed leader can never start
    one there again.
    """
    lock, ledger = lock_paths(host)
    sid = shlex.quote(host.oracle_sid)
    held = f"printf 'fanout: another backup of %s is running (pid %s, started %s ago)\\n' {sid}"
    age = '"$(ps -o etime= -p "$1" 2>/dev/null | tr -d \' \')"'
    racing = f"printf 'fanout: another backup of %s is starting\\n' {sid}"
    busy = f"exit {LOCK_HELD_EXIT}"
    return "; ".join(
        (
            f"lock={shlex.quote(lock)}; ledger={shlex.quote(ledger)}",
            f"tag={shlex.quote(f'{run_id} {step}')}; cont={shlex.quote(continues or '-')}",
            _ALIVE,
            'if ! mkdir "$lock" 2>/dev/null; then set -- $(cat "$lock/owner" 2>/dev/null)',
            f'if [ -n "$1" ] && alive "$1"; then {held} "$1" {age} >&2; {busy}; fi',
            f'rm -rf "$lock"; mkdir "$lock" 2>/dev/null || {{ {racing} >&2; {busy}; }}; fi',
            *_fence(host, token),
            "trap '" + _RECORD + "' EXIT",
            "trap 'exit 130' INT; trap 'exit 143' TERM",
        )
    )


def _fence(host: Host, token: int | None) -> tuple[str, ...]:
    """The owner line, and in cluster mode the token check against the ``.fence`` file."""
    if token is None:
        return ('echo "$$ $tag" >"$lock/owner"',)
    if token < 0:
        raise ValueError(f"fencing token must not be negative, got {token}")
    fenced = (
        "printf 'fanout: fenced: leader token %s is older than %s (a newer leader took over)\\n'"
    )
    return (
        f'echo "$$ $tag {token:d}" >"$lock/owner"; FANOUT_TOKEN={token:d}; export FANOUT_TOKEN',
        f"fence={shlex.quote(fence_path(host))}",
        f'f=$(cat "$fence" 2>/dev/null); if [ -n "$f" ] && [ "$f" -gt {token:d} ] 2>/dev/null; '
        f'then {fenced} {token:d} "$f" >&2; rm -rf "$lock"; exit {FENCED_EXIT}; fi',
        f'echo {token:d} >"$fence"',
    )


def render_host(
    inventory: Inventory,
    host: Host,
    run_id: str,
    *,
    only: Collection[str] | None = None,
    adopt: Adopt | None = None,
    levels: Mapping[str, LevelChoice] | None = None,
    token: int | None = None,
) -> tuple[RenderedStep, ...]:
    """Render the host's steps in its order; ``inventory.steps`` first, then BUILTIN_STEPS.

    ``only`` keeps just those steps (a resume, ``--steps``); ``adopt`` and ``token`` (cluster
    mode's fencing token) are passed to each of them; ``levels`` maps a step with a level
    policy to its choice for this host.
    Raises KeyError for a step name found in neither (the loader rejects those first),
    and ValueError as ``render_step`` does.
    """
    rendered = []
    for name in host.steps:
        if only is not None and name not in only:
            continue
        step = inventory.steps.get(name)
        if step is None:
            step = BUILTIN_STEPS.get(name)
        if step is None:
            raise KeyError(f"host {host.name}: unknown step {name!r}")
        choice = levels.get(name) if levels is not None else None
        rendered.append(render_step(host, step, run_id, adopt, level=choice, token=token))
    return tuple(rendered)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id, ``20261123T171435Z-3f9a`` (UTC second + 4 random hex digits).

    Raises ValueError for a naive ``now``: its time zone would be a guess.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("new_run_id needs an aware datetime")
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


DEFAULT_ORATABS = ("/etc/oratab", "/var/opt/oracle/oratab")  # Linux/AIX/HP-UX, then Solaris
ORATAB_EXIT = 3  # the step's exit status when ORACLE_HOME cannot be resolved


def oratab_lookup(host: Host, *, rman: bool) -> str:
    """POSIX sh that sets ORACLE_HOME from the host's oratab by ORACLE_SID, or fails the step.

    The first existing file of ``host.oratab`` (or /etc/oratab, then /var/opt/oracle/oratab)
    is read with a ``while read`` loop (builtins only: no process is forked). A line
    matches when its first ``:``-separated field equals the SID exactly (an anchored
    ``SID:`` match), so comments, blank lines, ``+ASM`` entries and other SIDs never do;
    the first match with a non-empty home wins (as ``dbhome`` does with duplicates);
    anything from the first non-printing character on (a CR of Windows line endings, a
    blank) is not part of the home. Never sources ``oraenv``, which prompts when the SID
    is missing. Fails with ``fanout: ORACLE_SID ERP not in /etc/oratab`` (or no oratab,
    unreadable) on stderr; for an RMAN step also ``fanout: no rman in <home>/bin``, and on
    success prints ``fanout: ORACLE_HOME <home> (from <oratab>)`` to stdout (the step's log).
    """
    files = (host.oratab,) if host.oratab else DEFAULT_ORATABS
    fail = f"exit {ORATAB_EXIT}"
    parts = [
        f"ORACLE_HOME=; ot=; for f in {' '.join(shlex.quote(f) for f in files)}; do "
        'if [ -e "$f" ]; then ot=$f; break; fi; done',
        f"if [ -z \"$ot\" ]; then printf 'fanout: no oratab (looked for %s)\\n' "
        f"{shlex.quote(', '.join(files))} >&2; {fail}; fi",
        f'if [ ! -r "$ot" ]; then printf \'fanout: cannot read %s\\n\' "$ot" >&2; {fail}; fi',
        'while IFS=: read -r s h r || [ -n "$s" ]; do h=${h%%[![:graph:]]*}; '
        'if [ "$s" = "$ORACLE_SID" ] && [ -n "$h" ]; then ORACLE_HOME=$h; break; fi; '
        's=; done <"$ot"',
        "if [ -z \"$ORACLE_HOME\" ]; then printf 'fanout: ORACLE_SID %s not in %s\\n' "
        f'"$ORACLE_SID" "$ot" >&2; {fail}; fi',
    ]
    if rman:
        parts += [
            'if [ ! -x "$ORACLE_HOME/bin/rman" ]; then '
            f"printf 'fanout: no rman in %s/bin\\n' \"$ORACLE_HOME\" >&2; {fail}; fi",
            'printf \'fanout: ORACLE_HOME %s (from %s)\\n\' "$ORACLE_HOME" "$ot"',
        ]
    return "; ".join(parts)


def _environment(host: Host, *, rman: bool = False) -> str:
    env = {
        "ORACLE_SID": host.oracle_sid,
        "ORACLE_HOME": host.oracle_home,
        "NLS_LANG": NLS_LANG,
        "NLS_DATE_FORMAT": NLS_DATE_FORMAT,
    }
    for key, value in (*env.items(), ("oratab", host.oratab)):
        if value is not None and "\0" in value:
            raise ValueError(f"host {host.name}: {key.lower()} contains a NUL byte")
    assignments = "; ".join(
        f"{key}={shlex.quote(value)}" for key, value in env.items() if value is not None
    )
    if host.oracle_home is None:
        assignments += "; " + oratab_lookup(host, rman=rman)
    return f"{assignments}; export {' '.join(env)}; unset TWO_TASK"


# Printed on stdout by the remote command; the engine keeps it as the step's detail.
WARNING_PREFIX = "fanout: warning: "


def _catalog_probe(host: Host) -> str:
    """With ``catalog_optional``: sh that tries the catalog first and, when it cannot be
    reached, drops the script's ``CONNECT CATALOG`` line (NOCATALOG) with a warning.

    The probe is a separate rman reading only ``CONNECT CATALOG …; EXIT;`` (its output is
    discarded so its error stack cannot fail the step); ``read`` consumes exactly the
    first line of the step's stdin. Empty without a catalog or when it is required.
    """
    if host.catalog is None or not host.catalog_optional:
        return ""
    cat = shlex.quote(host.catalog)
    warn = f"{WARNING_PREFIX}recovery catalog %s unreachable: ran NOCATALOG"
    return (
        f"if ! printf 'CONNECT CATALOG %s;\\nEXIT;\\n' {cat} | \"$ORACLE_HOME/bin/rman\" "
        f">/dev/null 2>&1; then printf '{warn}\\n' {cat}; IFS= read -r _; fi; "
    )


# Commands RMAN accepts only at its prompt, never inside RUN { } (RMAN-00558 / RMAN-01009):
# the reference marks them "execute this command only at the RMAN prompt".
REFUSED_IN_RUN = frozenset(
    {
        "CONNECT",
        "CONFIGURE",
        "CREATE",  # CREATE CATALOG / CREATE SCRIPT
        "DROP",  # DROP CATALOG / DROP DATABASE
        "UPGRADE",  # UPGRADE CATALOG
        "IMPORT",  # IMPORT CATALOG
        "REPLACE",  # REPLACE SCRIPT
        "PRINT",  # PRINT SCRIPT
        "LIST",
        "REPORT",
        "SHOW",
        "SPOOL",
        "GRANT",
        "REVOKE",
        "RUN",
        "EXIT",
        "QUIT",
    }
)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_COMMENT = re.compile(r"#[^\n]*")


def rman_commands(body: str) -> list[tuple[int, str]]:
    """The commands of an RMAN text as (line number, first word upper-cased), in order.

    Quoted strings and ``#`` comments are ignored; commands end at ``;``.
    """
    text = _COMMENT.sub("", _QUOTED.sub(lambda m: "''" + "\n" * m[0].count("\n"), body))
    found, line = [], 1
    for command in text.split(";"):
        words = command.split()
        if words:
            first_line = line + command[: len(command) - len(command.lstrip())].count("\n")
            found.append((first_line, words[0].upper().strip("{}")))
        line += command.count("\n")
    return found


def refused_in_run(body: str) -> tuple[int, str] | None:
    """The first command of ``body`` that RMAN refuses inside RUN, as (line, word); else None.

    Braces are refused too: a ``}`` would end fanout's RUN block early.
    """
    for line, word in rman_commands(body):
        if word in REFUSED_IN_RUN:
            return line, word
    stripped = _COMMENT.sub("", _QUOTED.sub("''", body))
    for number, text in enumerate(stripped.splitlines(), 1):
        text = text.replace("{level}", "").replace("{cumulative}", "")  # `backup` placeholders
        for char in text:
            if char in "{}":
                return number, char
    return None


def _rman_script(
    body: str, run_id: str, catalog: str | None = None, configure: tuple[str, ...] = ()
) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(body).splitlines()]
    while lines and not lines[0]:
        del lines[0]
    while lines and not lines[-1]:
        del lines[-1]
    inner = "".join(f"  {line}\n" if line else "\n" for line in lines)
    # Before RUN: RMAN refuses CONNECT and CONFIGURE inside it. The catalog is an Oracle
    # wallet alias (/@RCAT): no password is ever part of a script, command line or log.
    top = f"CONNECT CATALOG {catalog};\n" if catalog else ""
    top += "".join(f"{line}\n" for line in configure)
    return f"{top}RUN {{\n  SET COMMAND ID TO 'fanout-{run_id}';\n{inner}}}\nEXIT;\n"
