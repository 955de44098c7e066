"""`fanout check --connect` over the fake transport: the max_connecting bound, results in
dispatch order, one host's connection error or crash never sinks another."""

from __future__ import annotations

from dataclasses import replace

from fanout.errors import AuthError, ConnectError
from fanout.model import Host
from fanout.nagios import NagiosCode
from fanout.preflight import CHECKS, MARKER, CheckStatus, preflight_script, run_preflight
from tests.fakes import Behaviour, FakeTransport, HostScript

ALL_OK = tuple(f"{MARKER} {name} ok" for name in CHECKS[1:])


def _host(index: int) -> Host:
    return Host(f"db{index}", "127.0.0.1", 1, f"S{index}", "/u01/app/oracle")


def _script(host: Host, **kwargs: object) -> HostScript:
    return HostScript(steps={preflight_script(host): Behaviour(lines=ALL_OK)}, **kwargs)  # type: ignore[arg-type]


async def test_at_most_max_connecting_hosts_at_once_results_in_order() -> None:
    """Six hosts, max_connecting 2: never more than two connections, both used, order kept."""
    hosts = [_host(i) for i in range(6)]
    transport = FakeTransport({h.name: _script(h, connect_delay=0.05) for h in hosts})
    results = await run_preflight(transport, hosts, max_connecting=2)
    assert transport.journal.max_running_hosts == 2
    assert [r.host for r in results] == [h.name for h in hosts]
    assert {r.state for r in results} == {NagiosCode.OK}


async def test_connection_errors_and_crashes_stay_with_their_host() -> None:
    """Refused, auth failure, a crash in the session: each its own cause, the others ready."""
    hosts = [_host(i) for i in range(4)]
    scripts = {h.name: _script(h) for h in hosts}
    scripts["db0"].connect_errors = [ConnectError("db0", "connection refused by 127.0.0.1:22")]
    scripts["db1"].connect_errors = [AuthError("db1", "permission denied (publickey)")]
    scripts["db2"].crash_on_start = RuntimeError("boom")
    results = await run_preflight(FakeTransport(scripts), hosts, max_connecting=4)
    causes = [r.cause for r in results]
    assert causes == [
        "ssh: connection refused by 127.0.0.1:22",
        "ssh: permission denied (publickey)",
        "ssh: unexpected error: RuntimeError: boom",
        None,
    ]
    assert [c.status for c in results[0].checks[1:]] == [CheckStatus.SKIPPED] * 6


async def test_a_check_the_script_never_reported_fails() -> None:
    """Output cut short after 'rman': the remaining checks fail as 'not reported'."""
    host = _host(0)
    lines = ALL_OK[:3]
    transport = FakeTransport(
        {host.name: HostScript(steps={preflight_script(host): Behaviour(lines=lines)})}
    )
    (result,) = await run_preflight(transport, [host], max_connecting=1)
    statuses = {c.name: c.status for c in result.checks}
    assert [n for n, s in statuses.items() if s is CheckStatus.FAILED] == [
        "pmon",
        "lock_dir",
        "lock",
    ]
    assert result.cause == "pmon: not reported (exit status 0)"


async def test_a_script_that_hangs_fails_the_shell_check_in_time() -> None:
    """A remote script that never ends: 'shell' fails naming the limit; the run goes on."""
    host = replace(_host(0), connect_timeout=0.1)
    transport = FakeTransport(
        {host.name: HostScript(steps={preflight_script(host): Behaviour(hang=True)})}
    )
    (result,) = await run_preflight(transport, [host], max_connecting=1, script_timeout=0.2)
    assert result.cause == "shell: the check script did not finish within 0.3s"
    assert [c.status for c in result.checks] == [
        CheckStatus.OK,
        CheckStatus.FAILED,
        *[CheckStatus.SKIPPED] * 5,
    ]
