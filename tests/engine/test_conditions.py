"""The engine's fleet rules over the fake transport: `requires` skips a step whose prerequisite did
not succeed in this run, `when:` conditions run on the host first (exit 1 skips, other exits fail),
and `fanout: warning:` lines reach the step's detail."""

from __future__ import annotations

from dataclasses import replace

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.events import (
    EventSink,
    HostFinished,
    HostStatus,
    RecordingSink,
    RunStarted,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.model import Host, OnFailure, StepKind
from fanout.steps import RenderedStep
from tests.fakes import Behaviour, FakeTransport, HostScript

FAIL = Behaviour(lines=("RMAN-03009: failure", "ORA-19809: limit exceeded"), exit_status=1)


def step(name: str, **extra: object) -> RenderedStep:
    base = RenderedStep(
        name=name,
        kind=StepKind.RMAN,
        command=f"exec rman target / # {name}",
        stdin="RUN { }",
        timeout=30.0,
        retries=0,
        on_failure=OnFailure.CONTINUE,
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def target(name: str, *steps: RenderedStep, **extra: object) -> Target:
    host = Host(name, "127.0.0.1", 1, name.upper(), "/u01", steps=tuple(s.name for s in steps))
    return Target(host, steps, **extra)  # type: ignore[arg-type]


async def run(
    targets: list[Target], scripts: dict[str, HostScript]
) -> tuple[int, RecordingSink, FakeTransport]:
    transport = FakeTransport(scripts)
    sink = RecordingSink()
    return await drive(targets, transport, sink), sink, transport


async def drive(targets: list[Target], transport: FakeTransport, sink: EventSink) -> int:
    """Run ``targets`` to the end over ``transport`` into ``sink``; the exit code."""
    engine = Engine(
        run_id="20261123T000000Z-test",
        inventory="test.yaml",
        targets=targets,
        transport=transport,
        sink=sink,
        token=CancelToken(),
        max_parallel=4,
        cancel_grace=0.05,
        kill_grace=0.05,
        connect_backoff=0.001,
        retry_delay=0.0,
    )
    return await engine.run()


def results(sink: RecordingSink) -> dict[tuple[str, str], tuple[StepStatus, str | None]]:
    return {
        (e.host, e.step): (e.status, e.cause)
        for e in sink.events
        if isinstance(e, StepFinished) and not e.will_retry
    }


def hosts(sink: RecordingSink) -> dict[str, HostStatus]:
    return {e.host: e.status for e in sink.events if isinstance(e, HostFinished)}


async def test_requires_skips_after_a_failed_backup() -> None:
    """DELETE OBSOLETE requiring backup is skipped, `backup failed`, when the backup failed."""
    steps = (step("backup"), step("archivelog"), step("obsolete", requires=("backup",)))
    scripts = {"bad": HostScript(steps={"backup": FAIL}), "good": HostScript()}
    code, sink, transport = await run([target("bad", *steps), target("good", *steps)], scripts)
    assert code == 1
    got = results(sink)
    assert got["bad", "archivelog"] == (StepStatus.OK, None)
    assert got["bad", "obsolete"] == (StepStatus.SKIPPED, "backup failed")
    assert got["good", "obsolete"] == (StepStatus.OK, None)
    started = {(e[1], e[2]) for e in transport.journal.of("start")}
    assert ("bad", "obsolete") not in started
    assert ("good", "obsolete") in started


async def test_requires_met_by_an_earlier_run_when_resuming() -> None:
    """Resuming, a required step that succeeded in the resumed run counts as done."""
    obsolete = step("obsolete", requires=("backup",))
    resumed = target("db", obsolete, succeeded_before=frozenset({"backup"}))
    fresh = target("db2", obsolete)
    code, sink, _ = await run([resumed, fresh], {})
    assert results(sink)["db", "obsolete"] == (StepStatus.OK, None)
    assert results(sink)["db2", "obsolete"] == (StepStatus.SKIPPED, "backup did not run")
    assert code == 0


async def test_step_condition_false_skips_not_fails() -> None:
    """A step's when: exiting 1 skips it (`condition false`); the host and the run stay ok."""
    steps = (step("backup", when="test -f /x # role-check"), step("archivelog"))
    scripts = {"db": HostScript(steps={"role-check": Behaviour(exit_status=1)})}
    code, sink, transport = await run([target("db", *steps)], scripts)
    assert code == 0
    assert results(sink)["db", "backup"] == (StepStatus.SKIPPED, "condition false")
    assert results(sink)["db", "archivelog"] == (StepStatus.OK, None)
    assert hosts(sink) == {"db": HostStatus.OK}
    assert [e[2] for e in transport.journal.of("start")] == ["role-check", "archivelog"]
    assert not any(isinstance(e, StepStarted) and e.step == "backup" for e in sink.events)


async def test_step_condition_true_runs_the_step() -> None:
    """A condition exiting 0 lets the step run, after it."""
    steps = (step("backup", when="true # role-check"),)
    code, sink, transport = await run([target("db", *steps)], {})
    assert code == 0
    assert [e[2] for e in transport.journal.of("start")] == ["role-check", "backup"]
    assert results(sink)["db", "backup"] == (StepStatus.OK, None)


async def test_broken_condition_fails_the_step() -> None:
    """A condition exiting neither 0 nor 1 (command not found: 127) fails the step, with why."""
    steps = (step("backup", when="srvctl # svc"),)
    broken = Behaviour(lines=(), stderr=("sh: 1: srvctl: not found",), exit_status=127)
    code, sink, _ = await run([target("db", *steps)], {"db": HostScript(steps={"svc": broken})})
    assert code == 1
    status, cause = results(sink)["db", "backup"]
    assert status is StepStatus.FAILED
    assert cause is not None
    assert cause.startswith("condition: ")
    assert "srvctl: not found" in cause


async def test_host_condition_false_skips_every_step_once() -> None:
    """The host's when: runs once, before its first step; false skips all of them."""
    steps = (step("backup"), step("archivelog"), step("controlfile"))
    rac2 = target("rac2", *steps, when="srvctl status service # service-here")
    rac1 = target("rac1", *steps, when="srvctl status service # service-here")
    scripts = {
        "rac2": HostScript(steps={"service-here": Behaviour(exit_status=1)}),
        "rac1": HostScript(),
    }
    code, sink, transport = await run([rac1, rac2], scripts)
    assert code == 0
    got = results(sink)
    assert [got["rac2", s.name] for s in steps] == [(StepStatus.SKIPPED, "condition false")] * 3
    assert [got["rac1", s.name] for s in steps] == [(StepStatus.OK, None)] * 3
    rac1_starts = [e[2] for e in transport.journal.of("start") if e[1] == "rac1"]
    assert rac1_starts == ["service-here", "backup", "archivelog", "controlfile"]
    assert hosts(sink) == {"rac1": HostStatus.OK, "rac2": HostStatus.OK}


async def test_level_and_warning_reach_events() -> None:
    """The level is announced in RunStarted and StepStarted; a remote warning joins the detail."""
    backup = step("backup", level=1, detail="level 1: last level 0 2026-11-29 (2d ago)")
    warned = Behaviour(
        lines=(
            "fanout: warning: recovery catalog /@RCAT unreachable: ran NOCATALOG",
            "Recovery Manager complete.",
        )
    )
    code, sink, _ = await run(
        [target("db", backup, step("archivelog"))], {"db": HostScript(steps={"backup": warned})}
    )
    assert code == 0
    (started_run,) = [e for e in sink.events if isinstance(e, RunStarted)]
    assert started_run.hosts[0].levels == (1, None)
    assert started_run.hosts[0].database == "DB@127.0.0.1"
    (started,) = [e for e in sink.events if isinstance(e, StepStarted) and e.step == "backup"]
    assert started.detail == "level 1: last level 0 2026-11-29 (2d ago)"
    (finished,) = [e for e in sink.events if isinstance(e, StepFinished) and e.step == "backup"]
    assert finished.status is StepStatus.OK
    assert finished.detail == (
        "level 1: last level 0 2026-11-29 (2d ago); "
        "warning: recovery catalog /@RCAT unreachable: ran NOCATALOG"
    )
