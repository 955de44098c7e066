"""Step registry: a named step → (remote command, stdin script). Pure.

An RMAN step runs as one line of POSIX ``sh``::

    ORACLE_SID=PROD1; ORACLE_HOME=/u01/app/oracle/product/19.0.0/dbhome_1; \
NLS_LANG=AMERICAN_AMERICA.AL32UTF8; NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'; \
export ORACLE_SID ORACLE_HOME NLS_LANG NLS_DATE_FORMAT; unset TWO_TASK; \
exec "$ORACLE_HOME/bin/rman" target /

(shown wrapped) with the script on stdin::

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

from fanout.model import Host, Inventory, OnFailure, StepDef, StepKind

__all__ = [
    "BUILTIN_STEPS",
    "NLS_DATE_FORMAT",
    "NLS_LANG",
    "RenderedStep",
    "new_run_id",
    "render_host",
    "render_step",
]

NLS_LANG = "AMERICAN_AMERICA.AL32UTF8"  # English messages: the parser in rman.py reads them
NLS_DATE_FORMAT = "YYYY-MM-DD HH24:MI:SS"  # times of day in the transcript, not just 20-AUG-25

BUILTIN_STEPS: Mapping[str, StepDef] = MappingProxyType(
    {
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


def render_step(host: Host, step: StepDef, run_id: str, adopt: Adopt | None = None) -> RenderedStep:
    """Render ``step`` for ``host``.

    Raises ValueError if ``run_id`` is not a plain token (it goes inside an RMAN
    string literal) or if an environment value holds a NUL byte (no environment
    can carry one).
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: expected letters, digits, '_', '.', '-' (max 40)")
    prologue = _environment(host)
    if step.kind is StepKind.RMAN:
        lock = database_lock(host, run_id, step.name, adopt.continues if adopt else None)
        if adopt is not None:
            lock = f"{adoption(host, step.name, adopt)}; {lock}"
        command = f"{prologue}; {lock}; " + RMAN
        stdin: str | None = _rman_script(step.body, run_id)
    else:
        command = f"{prologue}; {step.body.strip()}"
        stdin = None
    return RenderedStep(
        name=step.name,
        kind=step.kind,
        command=command,
        stdin=stdin,
        timeout=step.timeout or host.step_timeout,
        retries=step.retries if step.retries is not None else host.retries,
        on_failure=step.on_failure,
    )


RMAN = '"$ORACLE_HOME/bin/rman" target /'
LOCK_HELD_EXIT = 75  # EX_TEMPFAIL, like the local run lock


LEDGER_LINES = 500  # a ledger this long is moved to <ledger>.1 (replacing it) before the next entry


def lock_paths(host: Host) -> tuple[str, str]:
    """The remote lock directory of the host's database and its ledger of finished steps."""
    # The loader only admits SIDs of [A-Za-z0-9_$#]; anything else never reaches the path.
    sid = re.sub(r"[^A-Za-z0-9_$#]", "_", host.oracle_sid)
    base = f"{host.lock_dir.rstrip('/')}/fanout-{sid}"
    return f"{base}.lock", f"{base}.ledger"


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
            'case "$runs" in *" $2 "*) if [ -n "$1" ] && alive "$1"; then '
            f"{handle}; fi;; esac",
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


def database_lock(host: Host, run_id: str, step: str, continues: str | None = None) -> str:
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
            'echo "$$ $tag" >"$lock/owner"',
            "trap '" + _RECORD + "' EXIT",
            "trap 'exit 130' INT; trap 'exit 143' TERM",
        )
    )


def render_host(
    inventory: Inventory,
    host: Host,
    run_id: str,
    *,
    only: Collection[str] | None = None,
    adopt: Adopt | None = None,
) -> tuple[RenderedStep, ...]:
    """Render the host's steps in its order; ``inventory.steps`` first, then BUILTIN_STEPS.

    ``only`` keeps just those steps (a resume); ``adopt`` is passed to each of them.
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
        rendered.append(render_step(host, step, run_id, adopt))
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


def _environment(host: Host) -> str:
    env = {
        "ORACLE_SID": host.oracle_sid,
        "ORACLE_HOME": host.oracle_home,
        "NLS_LANG": NLS_LANG,
        "NLS_DATE_FORMAT": NLS_DATE_FORMAT,
    }
    for key, value in env.items():
        if "\0" in value:
            raise ValueError(f"host {host.name}: {key.lower()} contains a NUL byte")
    assignments = "; ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    return f"{assignments}; export {' '.join(env)}; unset TWO_TASK"


def _rman_script(body: str, run_id: str) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(body).splitlines()]
    while lines and not lines[0]:
        del lines[0]
    while lines and not lines[-1]:
        del lines[-1]
    inner = "".join(f"  {line}\n" if line else "\n" for line in lines)
    return f"RUN {{\n  SET COMMAND ID TO 'fanout-{run_id}';\n{inner}}}\nEXIT;\n"
