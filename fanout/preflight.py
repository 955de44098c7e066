"""``fanout check --connect``: is every selected host ready for tonight's backup? No RMAN runs.

Per host, over the ``Transport`` protocol (one connection, one short remote script):

* ``ssh``          the connection opens, the host key verified against known_hosts;
* ``shell``        the login shell starts a command and hands its output back untouched;
* ``oracle_home``  resolved (``resolve_home`` in the script) and a directory;
* ``rman``         ``$ORACLE_HOME/bin/rman`` is an executable file;
* ``pmon``         a process named ``ora_pmon_<SID>`` runs (the instance is up);
* ``lock_dir``     exists and the login user can create a file in it;
* ``lock``         the database lock of ``steps.lock_paths`` is not held by a live process.

The remote script prints one line per check, ``fanout-preflight <check> ok|fail <cause>``, and
always exits 0; every inventory value in it goes through ``shlex.quote``. Hosts are checked
concurrently, at most ``max_connecting`` at a time, each bounded by its ``connect_timeout`` plus
``SCRIPT_TIMEOUT``. Nothing here imports asyncssh: the CLI passes ``SshTransport``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fanout.errors import HostKeyError, TransportError
from fanout.events import Stream
from fanout.model import Host
from fanout.nagios import NagiosCode, Perfdata, plugin_output
from fanout.steps import lock_paths, oratab_lookup
from fanout.transport.base import Transport

__all__ = ["CHECKS", "HostReadiness", "PreflightReport", "preflight_script", "run_preflight"]

CHECKS: tuple[str, ...] = ("ssh", "shell", "oracle_home", "rman", "pmon", "lock_dir", "lock")
MARKER = "fanout-preflight"
SCRIPT_TIMEOUT = 20.0  # seconds for the script once connected
JSON_VERSION = 1


class CheckStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier check failed, so this one could not run


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: CheckStatus
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class HostReadiness:
    host: str
    address: str
    sid: str
    checks: tuple[CheckResult, ...]

    @property
    def state(self) -> NagiosCode:
        ok = all(c.status is CheckStatus.OK for c in self.checks)
        return NagiosCode.OK if ok else NagiosCode.CRITICAL

    @property
    def cause(self) -> str | None:
        """The first failure, ``check: cause``."""
        failed = next((c for c in self.checks if c.status is CheckStatus.FAILED), None)
        return None if failed is None else f"{failed.name}: {failed.cause}"


# -- the remote script -----------------------------------------------------------------------


def resolve_home_function(host: Host) -> str:
    """The script's ``resolve_home``: prints the ORACLE_HOME to use, or nothing (a failure,
    with the reason on stderr): the inventory's ``oracle_home``, else the host's oratab read
    exactly as a step reads it (``steps.oratab_lookup``: anchored on the SID, no fork), in a
    subshell so that its ``exit`` on failure ends only the lookup."""
    if host.oracle_home is not None:
        return f"resolve_home() {{ printf '%s\\n' {shlex.quote(host.oracle_home)}; }}"
    lookup = oratab_lookup(host, rman=False)
    sid = shlex.quote(host.oracle_sid)
    return f"resolve_home() {{ ( ORACLE_SID={sid}; {lookup}; printf '%s\\n' \"$ORACLE_HOME\" ); }}"


def preflight_script(host: Host) -> str:
    """POSIX sh for one host; every inventory value quoted (see the module doc)."""
    q = shlex.quote
    lock, _last = lock_paths(host)
    ok = f"echo '{MARKER}' \"$1\" ok"
    return "\n".join(
        (
            f"sid={q(host.oracle_sid)}; lock_dir={q(host.lock_dir)}; lock={q(lock)}",
            f"ok() {{ {ok}; }}",
            f'fail() {{ printf \'{MARKER} %s fail %s\\n\' "$1" "$2"; }}',
            "ok shell",
            # -- ORACLE_HOME: one replaceable piece --
            resolve_home_function(host),
            "home=$(resolve_home 2>/dev/null)",
            'if [ -z "$home" ]; then fail oracle_home "ORACLE_HOME not resolved"; '
            'fail rman "no ORACLE_HOME"',
            'elif [ ! -d "$home" ]; then fail oracle_home "$home is not a directory"; '
            'fail rman "no ORACLE_HOME"',
            "else ok oracle_home",
            '  if [ -f "$home/bin/rman" ] && [ -x "$home/bin/rman" ]; then ok rman',
            '  else fail rman "$home/bin/rman is missing or not executable"; fi',
            "fi",
            # -- the instance: argv[0] (or its basename) is ora_pmon_<SID> --
            'if ps -e -o args= 2>/dev/null | awk -v want="ora_pmon_$sid" '
            "'{ n = $1; sub(/.*\\//, \"\", n); if (n == want) f = 1 } END { exit !f }'; "
            'then ok pmon; else fail pmon "no ora_pmon_$sid process (instance not running)"; fi',
            # -- lock_dir: create and remove a file, as the lock will --
            'if [ ! -d "$lock_dir" ]; then fail lock_dir "$lock_dir does not exist"',
            'else t="$lock_dir/.fanout-preflight.$$"',
            '  if ( : >"$t" ) 2>/dev/null; then rm -f "$t"; ok lock_dir',
            '  else fail lock_dir "$lock_dir is not writable by $(id -un 2>/dev/null)"; fi',
            "fi",
            # -- the database lock (steps.database_lock): held by a live process group? --
            'set -- $(cat "$lock/owner" 2>/dev/null)',
            'if [ -n "$1" ] && ps -o pgid= -o args= -p "$1" 2>/dev/null'
            ' | awk -v p="$1" \'$1 == p && $NF != "<defunct>" { f = 1 } END { exit !f }\'; then',
            '  fail lock "$lock is held by pid $1 (run $2, step $3)"',
            "else ok lock; fi",
            "exit 0",
        )
    )


def parse_output(lines: Sequence[str], stderr: Sequence[str], status: int) -> list[CheckResult]:
    """The remote checks (all but ``ssh``) from the script's output, in ``CHECKS`` order.

    A check the script never reported failed: with the login shell's complaint when nothing
    came back at all, else as "not reported".
    """
    found: dict[str, CheckResult] = {}
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == MARKER and parts[1] in CHECKS:
            name, verdict = parts[1], parts[2]
            cause = parts[3] if len(parts) > 3 else None
            if verdict == "ok":
                found.setdefault(name, CheckResult(name, CheckStatus.OK))
            else:
                found.setdefault(name, CheckResult(name, CheckStatus.FAILED, cause or "failed"))
    complaint = next((line.strip() for line in stderr if line.strip()), "")
    results = []
    for name in CHECKS[1:]:
        if name in found:
            results.append(found[name])
        elif "shell" not in found:
            why = complaint or f"the script produced no output (exit status {status})"
            if name == "shell":
                results.append(CheckResult(name, CheckStatus.FAILED, f"login shell: {why}"))
            else:
                results.append(CheckResult(name, CheckStatus.SKIPPED))
        else:
            why = f"not reported (exit status {status}{f': {complaint}' if complaint else ''})"
            results.append(CheckResult(name, CheckStatus.FAILED, why))
    return results


async def check_host(
    transport: Transport, host: Host, script_timeout: float = SCRIPT_TIMEOUT
) -> HostReadiness:
    """Run every check on ``host``, within its ``connect_timeout`` + ``script_timeout``. Never
    raises for the host's problems (they become results); cancellation passes through and
    closes the connection (the transport stops a script still running)."""

    def readiness(checks: list[CheckResult]) -> HostReadiness:
        return HostReadiness(host.name, host.address, host.oracle_sid, tuple(checks))

    def skipped() -> list[CheckResult]:
        return [CheckResult(name, CheckStatus.SKIPPED) for name in CHECKS[1:]]

    connected = False
    try:
        async with asyncio.timeout(host.connect_timeout + script_timeout):
            async with transport.open_session(host) as session:
                connected = True
                checks = [CheckResult("ssh", CheckStatus.OK)]
                try:
                    proc = await session.start(preflight_script(host), None)
                    out: list[str] = []
                    err: list[str] = []
                    async for line in proc.lines():
                        (out if line.stream is Stream.STDOUT else err).append(line.text)
                    status = await proc.wait()
                except TransportError as exc:
                    shell = CheckResult("shell", CheckStatus.FAILED, f"login shell: {exc.reason}")
                    return readiness([*checks, shell, *skipped()[1:]])
                return readiness([*checks, *parse_output(out, err, status)])
    except HostKeyError as exc:
        cause = f"host key not verified: {exc.reason}"
        return readiness([CheckResult("ssh", CheckStatus.FAILED, cause), *skipped()])
    except TransportError as exc:  # connect, auth: the session never opened
        return readiness([CheckResult("ssh", CheckStatus.FAILED, exc.reason), *skipped()])
    except TimeoutError:
        limit = host.connect_timeout + script_timeout
        if not connected:
            cause = f"no connection within {limit:g}s"
            return readiness([CheckResult("ssh", CheckStatus.FAILED, cause), *skipped()])
        cause = f"the check script did not finish within {limit:g}s"
        ssh = CheckResult("ssh", CheckStatus.OK)
        return readiness([ssh, CheckResult("shell", CheckStatus.FAILED, cause), *skipped()[1:]])


async def run_preflight(
    transport: Transport,
    hosts: Sequence[Host],
    *,
    max_connecting: int,
    script_timeout: float = SCRIPT_TIMEOUT,
) -> tuple[HostReadiness, ...]:
    """``check_host`` for every host, at most ``max_connecting`` at once; results in order."""
    gate = asyncio.Semaphore(max_connecting)
    results: list[HostReadiness | None] = [None] * len(hosts)

    async def one(index: int, host: Host) -> None:
        async with gate:
            try:
                results[index] = await check_host(transport, host, script_timeout)
            except Exception as exc:  # isolation: one host's surprise never sinks the others
                cause = f"unexpected error: {type(exc).__name__}: {exc}"
                checks = (CheckResult("ssh", CheckStatus.FAILED, cause),)
                results[index] = HostReadiness(host.name, host.address, host.oracle_sid, checks)

    async with asyncio.TaskGroup() as group:
        for index, host in enumerate(hosts):
            group.create_task(one(index, host))
    return tuple(r for r in results if r is not None)


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreflightReport:
    inventory: str
    checked_at: float
    hosts: tuple[HostReadiness, ...]

    @property
    def state(self) -> NagiosCode:
        bad = any(h.state is not NagiosCode.OK for h in self.hosts)
        return NagiosCode.CRITICAL if bad else NagiosCode.OK

    def summary(self) -> str:
        total = len(self.hosts)
        bad = [h for h in self.hosts if h.state is not NagiosCode.OK]
        if not bad:
            return f"{total} of {total} hosts ready"
        shown = ", ".join(f"{h.host} ({h.cause})" for h in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        return f"{len(bad)} of {total} hosts not ready: {shown}{more}"

    def nagios(self) -> str:
        total = len(self.hosts)
        ready = sum(h.state is NagiosCode.OK for h in self.hosts)
        perf = [
            Perfdata("ready", ready, minimum=0, maximum=total),
            Perfdata("not_ready", total - ready, minimum=0, maximum=total),
        ]
        details = [
            f"{h.state.name}: {h.host} ({h.sid}) {h.cause or 'ready'}"
            for h in sorted(self.hosts, key=lambda h: h.state is NagiosCode.OK)
        ]
        return plugin_output(self.state, self.summary(), perf, details)

    def text(self) -> str:
        width = max((len(h.host) for h in self.hosts), default=4)
        lines = [
            f"{h.host.ljust(width)}  {h.state.name:<8}  {h.cause or 'ready'}" for h in self.hosts
        ]
        lines += ["", f"{self.state.name}: {self.summary()}"]
        return "\n".join(lines) + "\n"

    def document(self) -> dict[str, Any]:
        """The ``--json`` document (``docs/check-json.md``, mode ``connect``)."""
        total = len(self.hosts)
        ready = sum(h.state is NagiosCode.OK for h in self.hosts)
        return {
            "format": "fanout-check",
            "version": JSON_VERSION,
            "mode": "connect",
            "inventory": self.inventory,
            "checked_at": self.checked_at,
            "state": self.state.name,
            "exit_code": int(self.state),
            "summary": self.summary(),
            "error": None,
            "counts": {"hosts": total, "ready": ready, "not_ready": total - ready},
            "hosts": [
                {
                    "host": h.host,
                    "address": h.address,
                    "sid": h.sid,
                    "state": h.state.name,
                    "cause": h.cause,
                    "checks": [
                        {"name": c.name, "status": c.status.value, "cause": c.cause}
                        for c in h.checks
                    ],
                }
                for h in self.hosts
            ],
        }
