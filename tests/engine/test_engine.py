"""The engine over a fake transport: order, limits, isolation, outcomes, cancellation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace

import pytest

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.errors import AuthError, ConnectError, HostKeyError
from fanout.events import (
    CancelReason,
    ConnectFailed,
    HostFinished,
    HostStatus,
    RecordingSink,
    RunFinished,
    StepFinished,
    StepStatus,
)
from fanout.model import Host, OnFailure, StepKind
from fanout.steps import RenderedStep
from tests.fakes import Behaviour, FakeTransport, HostScript

STEPS = ("full", "archivelog", "controlfile")


def target(
    name: str,
    priority: int = 1,
    steps: tuple[str, ...] = STEPS,
    *,
    timeout: float = 30.0,
    retries: int = 0,
    stop_on: tuple[str, ...] = (),
    connect_retries: int = 2,
) -> Target:
    host = Host(
        name=name,
        address="127.0.0.1",
        priority=priority,
        oracle_sid=name.upper().replace("-", "_"),
        oracle_home="/u01/app/oracle",
        steps=steps,
        connect_retries=connect_retries,
    )
    rendered = tuple(
        RenderedStep(
            name=s,
            kind=StepKind.RMAN,
            command=f"exec rman target / # {s}",
            stdin="RUN { }",
            timeout=timeout,
            retries=retries,
            on_failure=OnFailure.STOP if s in stop_on else OnFailure.CONTINUE,
        )
        for s in steps
    )
    return Target(host, rendered)


def engine(
    targets: list[Target],
    transport: FakeTransport,
    *,
    max_parallel: int = 4,
    token: CancelToken | None = None,
    grace: float = 0.05,
) -> tuple[Engine, RecordingSink, CancelToken]:
    sink = RecordingSink()
    token = token or CancelToken()
    eng = Engine(
        run_id="20261123T000000Z-test",
        inventory="test.yaml",
        targets=sorted(targets, key=lambda t: t.host.priority),
        transport=transport,
        sink=sink,
        token=token,
        max_parallel=max_parallel,
        cancel_grace=grace,
        kill_grace=grace,
        connect_backoff=0.001,
        retry_delay=0.0,
    )
    return eng, sink, token


def finished_steps(sink: RecordingSink) -> dict[tuple[str, str], StepFinished]:
    return {
        (e.host, e.step): e for e in sink.events if isinstance(e, StepFinished) and not e.will_retry
    }


def host_status(sink: RecordingSink) -> dict[str, HostStatus]:
    return {e.host: e.status for e in sink.events if isinstance(e, HostFinished)}


async def test_strict_priority_order_with_one_slot() -> None:
    """With max_parallel 1 hosts run one at a time in priority order, file order breaking ties."""
    targets = [target("c", 2), target("a", 1), target("d", 3), target("b", 1)]
    transport = FakeTransport()
    eng, _, _ = engine(targets, transport, max_parallel=1)
    assert await eng.run() == 0
    starts = [e[1] for e in transport.journal.of("start")]
    assert starts == ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3
    assert transport.journal.max_running_hosts == 1


async def test_concurrency_limit_is_a_sliding_window() -> None:
    """No more than max_parallel hosts run at once, and a freed slot is refilled at once."""
    scripts = {
        f"h{i}": HostScript(steps={"full": Behaviour(seconds=0.02 * (i % 3 + 1))})
        for i in range(12)
    }
    transport = FakeTransport(scripts)
    eng, sink, _ = engine([target(f"h{i}", i + 1) for i in range(12)], transport, max_parallel=3)
    assert await eng.run() == 0
    assert transport.journal.max_running_hosts == 3
    assert set(host_status(sink).values()) == {HostStatus.OK}


async def test_steps_run_in_sequence_on_each_host() -> None:
    """A host's steps never overlap: each starts after the previous one exited."""
    scripts = {"a": HostScript(steps={s: Behaviour(seconds=0.01) for s in STEPS})}
    transport = FakeTransport(scripts)
    eng, _, _ = engine([target("a")], transport)
    assert await eng.run() == 0
    trail = [(e[0], e[2]) for e in transport.journal.entries if e[0] in ("start", "exit")]
    assert trail == [(k, s) for s in STEPS for k in ("start", "exit")]


async def test_crash_in_one_host_is_isolated() -> None:
    """An unexpected exception on one host fails that host (traceback kept) and nothing else."""
    scripts = {"bad": HostScript(crash_on_start=RuntimeError("boom"))}
    transport = FakeTransport(scripts)
    eng, sink, _ = engine([target("bad", 1), target("good", 2)], transport)
    assert await eng.run() == 1
    done = {e.host: e for e in sink.events if isinstance(e, HostFinished)}
    assert done["bad"].status is HostStatus.FAILED
    assert done["bad"].cause == "internal error: RuntimeError: boom"
    assert done["bad"].detail is not None
    assert "RuntimeError: boom" in done["bad"].detail
    assert done["good"].status is HostStatus.OK
    assert {s.status for (h, _), s in finished_steps(sink).items() if h == "bad"} == {
        StepStatus.SKIPPED
    }


async def test_failed_step_does_not_stop_later_steps_by_default() -> None:
    """A failed full backup still lets the archivelog and controlfile steps run."""
    stack = (
        "RMAN-00571: ===========================================================",
        "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
        "RMAN-00571: ===========================================================",
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at 08/20/2019 13:19:42",
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit",
    )
    scripts = {"a": HostScript(steps={"full": Behaviour(lines=stack, exit_status=1)})}
    eng, sink, _ = engine([target("a")], FakeTransport(scripts))
    assert await eng.run() == 1
    steps = finished_steps(sink)
    assert steps["a", "full"].status is StepStatus.FAILED
    assert steps["a", "full"].cause is not None
    assert steps["a", "full"].cause.startswith("ORA-19809: limit exceeded for recovery files")
    assert steps["a", "archivelog"].status is StepStatus.OK
    assert steps["a", "controlfile"].status is StepStatus.OK


async def test_on_failure_stop_skips_the_rest() -> None:
    """on_failure: stop skips the host's later steps after a failure."""
    scripts = {"a": HostScript(steps={"full": Behaviour(exit_status=3, stderr=("disk gone",))})}
    eng, sink, _ = engine([target("a", stop_on=("full",))], FakeTransport(scripts))
    assert await eng.run() == 1
    steps = finished_steps(sink)
    assert steps["a", "full"].cause == "exit status 3: disk gone"
    assert steps["a", "archivelog"].status is StepStatus.SKIPPED
    assert steps["a", "controlfile"].status is StepStatus.SKIPPED


async def test_exit_zero_with_error_stack_is_a_failure() -> None:
    """rman exiting 0 with an error stack printed still fails the step."""
    stack = (
        "RMAN-00571: ===========================================================",
        "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
        "RMAN-00571: ===========================================================",
        "RMAN-03002: failure of backup command at 01/28/2012 17:40:35",
        "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode",
    )
    scripts = {"a": HostScript(steps={"full": Behaviour(lines=stack, exit_status=0)})}
    eng, sink, _ = engine([target("a", steps=("full",))], FakeTransport(scripts))
    assert await eng.run() == 1
    assert finished_steps(sink)["a", "full"].status is StepStatus.FAILED


NOTHING_MATCHED = (  # tests/rman_corpus/nothing_matched_catalog.log
    "RMAN-00571: ===========================================================",
    "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
    "RMAN-00571: ===========================================================",
    "RMAN-03002: failure during compilation of command",
    "RMAN-03013: command type: backup",
    "RMAN-06004: ORACLE error from recovery catalog database: RMAN-20242: specification does "
    "not match any archivelog in the recovery catalog",
)


@pytest.mark.parametrize("empty_ok", [True, False])
async def test_empty_ok_step_with_nothing_to_back_up_succeeds(empty_ok: bool) -> None:
    """RMAN-20242 passes an `empty_ok` step; otherwise it fails with the RMAN-20242 text."""
    scripts = {
        "a": HostScript(steps={"archivelog": Behaviour(lines=NOTHING_MATCHED, exit_status=1)})
    }
    tgt = target("a", steps=("archivelog",))
    tgt = Target(tgt.host, tuple(replace(s, empty_ok=empty_ok) for s in tgt.steps))
    eng, sink, _ = engine([tgt], FakeTransport(scripts))
    assert await eng.run() == (0 if empty_ok else 1)
    step = finished_steps(sink)["a", "archivelog"]
    if empty_ok:
        assert (step.status, step.cause) == (StepStatus.OK, None)
    else:
        assert step.status is StepStatus.FAILED
        assert step.cause == (
            "RMAN-20242: specification does not match any archivelog in the recovery catalog"
        )


async def test_empty_ok_does_not_excuse_a_real_failure() -> None:
    """An `empty_ok` step still fails on any other error stack."""
    stack = (*NOTHING_MATCHED[:3], "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode")
    scripts = {"a": HostScript(steps={"full": Behaviour(lines=stack, exit_status=1)})}
    tgt = target("a", steps=("full",))
    tgt = Target(tgt.host, tuple(replace(s, empty_ok=True) for s in tgt.steps))
    eng, sink, _ = engine([tgt], FakeTransport(scripts))
    assert await eng.run() == 1
    assert finished_steps(sink)["a", "full"].status is StepStatus.FAILED


async def test_step_timeout_interrupts_remote_like_cancel() -> None:
    """A step past its timeout gets SIGINT and fails with 'timeout after …'."""
    scripts = {"a": HostScript(steps={"full": Behaviour(hang=True)})}
    transport = FakeTransport(scripts)
    eng, sink, _ = engine([target("a", steps=("full",), timeout=0.05)], transport)
    assert await eng.run() == 1
    step = finished_steps(sink)["a", "full"]
    assert step.status is StepStatus.FAILED
    assert step.cause == "timeout after 0.05s"
    assert [e[3] for e in transport.journal.of("signal")] == ["INT"]


async def test_failed_step_is_retried() -> None:
    """retries: a failed step runs again and its final outcome counts."""
    scripts = {"a": HostScript(steps={"full": [Behaviour(exit_status=1), Behaviour()]})}
    eng, sink, _ = engine([target("a", steps=("full",), retries=1)], FakeTransport(scripts))
    assert await eng.run() == 0
    attempts = [
        (e.attempt, e.status, e.will_retry) for e in sink.events if isinstance(e, StepFinished)
    ]
    assert attempts == [(1, StepStatus.FAILED, True), (2, StepStatus.OK, False)]


async def test_transient_connect_failures_are_retried() -> None:
    """Refused/reset connections are retried with backoff up to connect_retries."""
    errors: list = [ConnectError("a", "connection refused"), ConnectError("a", "connection reset")]
    eng, sink, _ = engine([target("a")], FakeTransport({"a": HostScript(connect_errors=errors)}))
    assert await eng.run() == 0
    assert [e.will_retry for e in sink.events if isinstance(e, ConnectFailed)] == [True, True]


@pytest.mark.parametrize(
    "error", [AuthError("a", "authentication failed"), HostKeyError("a", "host key mismatch")]
)
async def test_auth_and_host_key_failures_are_never_retried(error: Exception) -> None:
    """Authentication and host-key failures fail the host at once with their cause."""
    transport = FakeTransport({"a": HostScript(connect_errors=[error])})
    eng, sink, _ = engine([target("a"), target("b", 2)], transport)
    assert await eng.run() == 1
    assert len(transport.journal.of("connect")) == 2  # one for a, one for b
    done = {e.host: e for e in sink.events if isinstance(e, HostFinished)}
    assert done["a"].status is HostStatus.FAILED
    assert done["a"].cause == str(error)
    assert done["b"].status is HostStatus.OK


async def test_exhausted_connect_retries_fail_the_host() -> None:
    """A host that stays unreachable fails with the last cause; its steps are skipped."""
    errors: list = [ConnectError("a", "connection refused")] * 3
    eng, sink, _ = engine([target("a")], FakeTransport({"a": HostScript(connect_errors=errors)}))
    assert await eng.run() == 1
    assert host_status(sink) == {"a": HostStatus.FAILED}
    assert {s.status for s in finished_steps(sink).values()} == {StepStatus.SKIPPED}


async def test_connection_lost_fails_step_and_reconnects_for_the_next() -> None:
    """A lost connection fails the running step and the next step reconnects."""
    scripts = {"a": HostScript(steps={"full": Behaviour(lose_connection=True)})}
    transport = FakeTransport(scripts)
    eng, sink, _ = engine([target("a")], transport)
    assert await eng.run() == 1
    steps = finished_steps(sink)
    assert steps["a", "full"].cause == "connection lost"
    assert steps["a", "archivelog"].status is StepStatus.OK
    assert len(transport.journal.of("connect")) == 2


async def wait_until_running(transport: FakeTransport, count: int) -> None:
    async with asyncio.timeout(5):
        while len(transport.journal.running) < count:
            await asyncio.sleep(0.001)


async def test_cancel_stops_running_skips_later_and_leaves_queue() -> None:
    """Cancel: running steps cancelled, later steps skipped, queued hosts not started, exit 130."""
    scripts = {f"h{i}": HostScript(steps={"full": Behaviour(hang=True)}) for i in range(5)}
    transport = FakeTransport(scripts)
    eng, sink, token = engine([target(f"h{i}", i + 1) for i in range(5)], transport, max_parallel=2)
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 2)
    token.cancel(CancelReason.SIGINT)
    assert await task == 130
    assert host_status(sink) == {
        "h0": HostStatus.CANCELLED,
        "h1": HostStatus.CANCELLED,
        "h2": HostStatus.NOT_STARTED,
        "h3": HostStatus.NOT_STARTED,
        "h4": HostStatus.NOT_STARTED,
    }
    steps = finished_steps(sink)
    assert steps["h0", "full"].status is StepStatus.CANCELLED
    assert steps["h0", "archivelog"].status is StepStatus.SKIPPED
    assert not transport.journal.running
    assert len(transport.journal.of("start")) == 2
    assert (
        next(e for e in sink.events if isinstance(e, RunFinished)).cancelled is CancelReason.SIGINT
    )


async def test_sigterm_exits_143() -> None:
    """A SIGTERM-triggered cancel exits 143."""
    transport = FakeTransport({"a": HostScript(steps={"full": Behaviour(hang=True)})})
    eng, _, token = engine([target("a")], transport)
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 1)
    token.cancel(CancelReason.SIGTERM)
    assert await task == 143


async def test_escalation_int_then_term_then_kill() -> None:
    """A process ignoring SIGINT and SIGTERM gets INT, TERM after the grace, then KILL."""
    transport = FakeTransport(
        {"a": HostScript(steps={"full": Behaviour(hang=True, ignore_int=True, ignore_term=True)})}
    )
    eng, sink, token = engine([target("a")], transport, grace=0.05)
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    token.cancel()
    assert await task == 130
    assert loop.time() - t0 >= 0.1
    assert [e[3] for e in transport.journal.of("signal")] == ["INT", "TERM", "KILL"]
    assert finished_steps(sink)["a", "full"].status is StepStatus.CANCELLED


async def test_second_trigger_forces_kill_at_once() -> None:
    """A second trigger during the grace period skips straight to SIGKILL."""
    transport = FakeTransport(
        {"a": HostScript(steps={"full": Behaviour(hang=True, ignore_int=True)})}
    )
    eng, _, token = engine([target("a")], transport, grace=30)
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 1)
    token.cancel()
    await asyncio.sleep(0.01)
    token.cancel()
    async with asyncio.timeout(2):
        assert await task == 130
    assert [e[3] for e in transport.journal.of("signal")] == ["INT", "KILL"]


async def test_a_finished_step_is_never_signalled() -> None:
    """Once a step exited, neither its timeout nor the token reach it; only the running step."""
    scripts = {
        "a": HostScript(
            steps={
                "full": Behaviour(seconds=0.0),
                "archivelog": Behaviour(seconds=0.6),
                "controlfile": Behaviour(hang=True),
            }
        )
    }
    transport = FakeTransport(scripts)
    tgt = target("a")
    short = replace(tgt.steps[0], timeout=0.2)  # would fire while archivelog runs
    eng, sink, token = engine([Target(tgt.host, (short, *tgt.steps[1:]))], transport)
    task = asyncio.create_task(eng.run())
    async with asyncio.timeout(10):
        while not transport.journal.of("start")[2:]:
            await asyncio.sleep(0.001)
    assert not transport.journal.of("signal")
    token.cancel()
    assert await task == 130
    assert [e[2:] for e in transport.journal.of("signal")] == [("controlfile", "INT")]
    steps = finished_steps(sink)
    assert [steps["a", s].status for s in STEPS] == [StepStatus.OK] * 2 + [StepStatus.CANCELLED]


async def test_cancel_during_connect_starts_nothing() -> None:
    """Cancelling while a host is still connecting abandons the handshake; no step starts."""
    transport = FakeTransport({"a": HostScript(connect_delay=30)})
    eng, sink, token = engine([target("a")], transport)
    task = asyncio.create_task(eng.run())
    async with asyncio.timeout(2):
        while not transport.journal.of("connect"):
            await asyncio.sleep(0.001)
    token.cancel()
    async with asyncio.timeout(2):
        assert await task == 130
    assert not transport.journal.of("start")
    assert host_status(sink) == {"a": HostStatus.CANCELLED}


async def test_cancel_between_steps_starts_no_later_step() -> None:
    """A cancel that lands between two steps lets no later step start."""
    transport = FakeTransport(
        {"a": HostScript(steps={"full": Behaviour(seconds=0.05, ignore_int=True)})}
    )
    eng, sink, token = engine([target("a")], transport, grace=5)
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 1)
    token.cancel()  # INT is ignored; the step finishes by itself within the grace
    assert await task == 130
    steps = finished_steps(sink)
    assert steps["a", "full"].status is StepStatus.OK
    assert steps["a", "archivelog"].status is StepStatus.SKIPPED
    assert [e[2] for e in transport.journal.of("start")] == ["full"]


async def test_cancel_after_the_run_changes_nothing() -> None:
    """A trigger after every host finished leaves the outcome and exit code as they were."""
    eng, sink, token = engine([target("a")], FakeTransport())
    assert await eng.run() == 0
    token.cancel()
    assert host_status(sink) == {"a": HostStatus.OK}


def test_core_imports_no_ssh_ui_or_storage() -> None:
    """Importing the engine pulls in neither asyncssh, rich, sqlite3, typer nor cluster mode."""
    code = (
        "import sys, fanout.engine, fanout.steps, fanout.rman, fanout.cancel, fanout.events;"
        "bad = [m for m in ('asyncssh', 'rich', 'sqlite3', 'typer', 'grpc', 'aetcd',"
        " 'fanout.cluster') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_cancel_one_host_leaves_the_others_running() -> None:
    """cancel_host stops one running host and one queued host; the rest finish normally."""
    scripts = {
        "a": HostScript(steps={"full": Behaviour(hang=True)}),
        "b": HostScript(steps={"full": Behaviour(seconds=0.05)}),
    }
    transport = FakeTransport(scripts)
    eng, sink, _ = engine(
        [target("a", 1), target("b", 2), target("c", 3)], transport, max_parallel=2
    )
    task = asyncio.create_task(eng.run())
    await wait_until_running(transport, 2)
    assert eng.cancel_host("a")
    assert eng.cancel_host("c")
    assert not eng.cancel_host("nope")
    assert await task == 1
    assert host_status(sink) == {
        "a": HostStatus.CANCELLED,
        "b": HostStatus.OK,
        "c": HostStatus.NOT_STARTED,
    }
