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
    """How a resumed step treats what its earlier run may have left on the host."""

    run_id: str  # the run being resumed
    stop: bool  # stop its still-running step (True) or wait for it to end (False)
    grace: float  # stop: seconds between SIGINT and SIGTERM (then 5 s to SIGKILL)


def render_step(
    host: Host, step: StepDef, run_id: str, adopt: Adopt | None = None, token: int | None = None
) -> RenderedStep:
    """Render ``step`` for ``host``; ``token``: the cluster leader's fencing token, if any.

    Raises ValueError if ``run_id`` is not a plain token (it goes inside an RMAN
    string literal) or if an environment value holds a NUL byte (no environment
    can carry one).
    """
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: expected letters, digits, '_', '.', '-' (max 40)")
    prologue = _environment(host)
    if step.kind is StepKind.RMAN:
        lock = database_lock(host, run_id, step.name, token)
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
FENCED_EXIT = 76  # the database has seen a newer cluster leader's token: this one is deposed


def lock_paths(host: Host) -> tuple[str, str]:
    """The remote lock directory of the host's database and its last-result file."""
    base = _lock_base(host)
    return f"{base}.lock", f"{base}.last"


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

    If the resumed run's own ``step`` still holds the lock (its orchestrator died,
    the remote backup went on), wait for it or stop its process group (SIGINT,
    SIGTERM after ``grace``, SIGKILL 5 s later). Then, if the ``.last`` file says
    that very step ended with status 0 while fanout was away, print so and exit 0:
    the backup is not taken twice. Messages go to stdout, so they never become a cause.
    """
    lock, last = lock_paths(host)
    old = shlex.quote(f"{adopt.run_id} {step}")
    say = "printf 'fanout: %s of run %s %s (pid %s)\\n'"
    what = f"{shlex.quote(step)} {shlex.quote(adopt.run_id)}"
    if adopt.stop:
        grace = max(1, round(adopt.grace))
        handle = (
            f'{say} {what} "is still running: stopping it" "$1"; kill -s INT -- -"$1"; n=0; '
            f'while alive "$1" && [ "$n" -lt {grace} ]; do sleep 1; n=$((n+1)); done; '
            'if alive "$1"; then kill -s TERM -- -"$1"; sleep 5; fi; '
            'if alive "$1"; then kill -s KILL -- -"$1"; fi'
        )
    else:
        handle = (
            f'{say} {what} "is still running: waiting for it to end" "$1"; '
            'while alive "$1"; do sleep 2; done'
        )
    return "; ".join(
        (
            f"old={old}; lock={shlex.quote(lock)}; last={shlex.quote(last)}",
            _ALIVE,
            'set -- $(cat "$lock/owner" 2>/dev/null)',
            f'if [ -n "$1" ] && [ "$2 $3" = "$old" ] && alive "$1"; then {handle}; fi',
            f'if [ "$(cat "$last" 2>/dev/null)" = "$old 0" ]; then printf '
            f"'fanout: %s already completed in run %s while fanout was away\\n' {what}; exit 0; fi",
        )
    )


def database_lock(host: Host, run_id: str, step: str, token: int | None = None) -> str:
    """POSIX sh that takes the per-database lock for this step, or fails fast.

    At most one fanout-started rman per ORACLE_SID runs on a host, whatever
    inventory or orchestrator machine started it: ``mkdir`` is atomic on every
    POSIX filesystem. The lock holds ``<pid> <run_id> <step>``, where pid is the
    step's shell, the leader of its process group. A held lock whose leader is gone
    (SIGKILL leaves no time to clean up) is taken over. Otherwise the step exits 75
    with ``fanout: another backup of SID is running (pid …, started 1:02:03 ago)`` on
    stderr. On exit the shell writes ``<run_id> <step> <status>`` to the ``.last``
    file and removes the lock, ignoring further signals while it does; SIGINT/SIGTERM
    reach rman (same process group) and the shell cleans up once rman has exited.
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
    lock, last = lock_paths(host)
    sid = shlex.quote(host.oracle_sid)
    held = f"printf 'fanout: another backup of %s is running (pid %s, started %s ago)\\n' {sid}"
    age = '"$(ps -o etime= -p "$1" 2>/dev/null | tr -d \' \')"'
    racing = f"printf 'fanout: another backup of %s is starting\\n' {sid}"
    busy = f"exit {LOCK_HELD_EXIT}"
    return "; ".join(
        (
            f"lock={shlex.quote(lock)}; last={shlex.quote(last)}",
            f"tag={shlex.quote(f'{run_id} {step}')}",
            _ALIVE,
            'if ! mkdir "$lock" 2>/dev/null; then set -- $(cat "$lock/owner" 2>/dev/null)',
            f'if [ -n "$1" ] && alive "$1"; then {held} "$1" {age} >&2; {busy}; fi',
            f'rm -rf "$lock"; mkdir "$lock" 2>/dev/null || {{ {racing} >&2; {busy}; }}; fi',
            *_fence(host, token),
            """trap 'st=$?; trap "" INT TERM; echo "$tag $st" >"$last"; rm -rf "$lock"' EXIT""",
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
    token: int | None = None,
) -> tuple[RenderedStep, ...]:
    """Render the host's steps in its order; ``inventory.steps`` first, then BUILTIN_STEPS.

    ``only`` keeps just those steps (a resume); ``adopt`` and ``token`` (cluster mode's
    fencing token) are passed to each of them.
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
        rendered.append(render_step(host, step, run_id, adopt, token))
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
