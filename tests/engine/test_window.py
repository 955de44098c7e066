"""The engine with capacity groups, history-based order and the backup window (fake transport).

The wall clock is the event loop's own clock shifted to a fixed epoch (``Wall``), so the
deadline arithmetic is exact while steps take real (milli)seconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.events import (
    Event,
    HostFinished,
    HostStarted,
    HostStatus,
    RecordingSink,
    RunStarted,
    StepFinished,
    StepStatus,
)
from fanout.model import Host
from fanout.scheduler import Deadline, dispatch_order
from tests.engine.test_engine import target
from tests.fakes import Behaviour, FakeTransport, HostScript

EPOCH = 1_796_000_000.0


class Wall:
    """Epoch seconds that advance with the event loop's clock."""

    def __init__(self) -> None:
        self.origin = asyncio.get_running_loop().time()

    def __call__(self) -> float:
        return EPOCH + asyncio.get_running_loop().time() - self.origin


def grouped(name: str, priority: int = 1, *groups: str, expected: float | None = None) -> Target:
    t = target(name, priority, ("full",))
    return Target(replace(t.host, groups=groups), t.steps, expected=(expected,))


def make(
    targets: list[Target],
    transport: FakeTransport,
    *,
    max_parallel: int = 4,
    groups: dict[str, int] | None = None,
    deadline: Deadline | None = None,
    wall: Wall | None = None,
) -> tuple[Engine, RecordingSink]:
    sink = RecordingSink()
    eng = Engine(
        run_id="20261123T000000Z-test",
        inventory="test.yaml",
        targets=targets,
        transport=transport,
        sink=sink,
        token=CancelToken(),
        max_parallel=max_parallel,
        cancel_grace=0.05,
        kill_grace=0.05,
        connect_backoff=0.001,
        retry_delay=0.0,
        groups=groups,
        deadline=deadline,
        wall=wall or Wall(),
    )
    return eng, sink


def peak_load(events: list[Event], groups_of: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """The most hosts that ran at once, in all ("*") and per group, from the event order."""
    running: set[str] = set()
    peak: dict[str, int] = {"*": 0}
    for event in events:
        if isinstance(event, HostStarted):
            running.add(event.host)
        elif isinstance(event, HostFinished):
            running.discard(event.host)
        else:
            continue
        peak["*"] = max(peak["*"], len(running))
        for host in running:
            for group in groups_of[host]:
                load = sum(group in groups_of[h] for h in running)
                peak[group] = max(peak.get(group, 0), load)
    return peak


def finished(sink: RecordingSink) -> dict[str, HostFinished]:
    return {e.host: e for e in sink.events if isinstance(e, HostFinished)}


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Target], dict[str, int], int, dict[str, float]]:
    limits = {f"g{i}": draw(st.integers(1, 2)) for i in range(draw(st.integers(1, 3)))}
    targets, seconds = [], {}
    for i in range(draw(st.integers(2, 10))):
        groups = draw(st.lists(st.sampled_from(sorted(limits)), unique=True, max_size=2))
        targets.append(grouped(f"h{i}", draw(st.integers(1, 3)), *groups))
        seconds[f"h{i}"] = draw(st.sampled_from([0.0, 0.002, 0.005]))
    return targets, limits, draw(st.integers(1, 4)), seconds


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fleets())
def test_group_limits_are_never_exceeded(
    fleet: tuple[list[Target], dict[str, int], int, dict[str, float]],
) -> None:
    """Over random fleets, no capacity group and not the global limit ever has more hosts
    running than its max_parallel, and every host runs."""
    targets, limits, max_parallel, seconds = fleet

    async def run() -> tuple[int, RecordingSink]:
        transport = FakeTransport(
            {n: HostScript(steps={"full": Behaviour(seconds=s)}) for n, s in seconds.items()}
        )
        eng, sink = make(targets, transport, max_parallel=max_parallel, groups=limits)
        return await asyncio.wait_for(eng.run(), 10), sink

    code, sink = asyncio.run(run())
    assert code == 0
    peak = peak_load(sink.events, {t.host.name: t.host.groups for t in targets})
    assert peak["*"] <= max_parallel
    for group, slots in limits.items():
        assert peak.get(group, 0) <= slots
    assert {h for h, e in finished(sink).items() if e.status is HostStatus.OK} == set(seconds)


async def test_a_full_group_does_not_block_the_hosts_behind_it() -> None:
    """While the nfs group's only slot is busy, a lower-priority host outside it starts at once
    instead of waiting behind the second nfs host."""
    transport = FakeTransport(
        {
            "a1": HostScript(steps={"full": Behaviour(seconds=0.3)}),
            "a2": HostScript(steps={"full": Behaviour(seconds=0.01)}),
        }
    )
    targets = [grouped("a1", 1, "nfs"), grouped("a2", 1, "nfs"), grouped("b1", 2)]
    eng, sink = make(targets, transport, groups={"nfs": 1})
    assert await eng.run() == 0
    order = [
        (type(e).__name__, e.host) for e in sink.events if isinstance(e, HostStarted | HostFinished)
    ]
    assert order.index(("HostStarted", "b1")) < order.index(("HostFinished", "a1"))
    assert order.index(("HostFinished", "a1")) < order.index(("HostStarted", "a2"))


async def test_longest_expected_first_within_a_priority() -> None:
    """Targets ordered by the scheduler start longest expected first within a priority,
    priority still first, unknowns in file order ahead of them."""
    expected = {"h0": 60.0, "h1": 600.0, "h2": None, "h3": 300.0, "h4": 9000.0}
    priorities = {"h4": 2}
    targets = [
        replace(grouped(n, priorities.get(n, 1), expected=e), host=_indexed(n, priorities))
        for n, e in expected.items()
    ]
    jobs = dispatch_order(t.job(i) for i, t in enumerate(targets))
    by_name = {t.host.name: t for t in targets}
    transport = FakeTransport()
    eng, sink = make([by_name[j.name] for j in jobs], transport, max_parallel=1)
    assert await eng.run() == 0
    assert [e[1] for e in transport.journal.of("start")] == ["h2", "h1", "h3", "h0", "h4"]
    started = next(e for e in sink.events if isinstance(e, RunStarted))
    assert [h.expected for h in started.hosts] == [(None,), (600.0,), (300.0,), (60.0,), (9000.0,)]


def _indexed(name: str, priorities: dict[str, int]) -> Host:
    return replace(target(name, priorities.get(name, 1), ("full",)).host, index=int(name[1:]))


async def test_hosts_that_would_end_after_the_deadline_are_not_started() -> None:
    """A host expected to end after the deadline is not started (cause names the deadline and
    its expected duration), a host without history still starts, and the run exits 1."""
    wall = Wall()
    deadline = Deadline(wall() + 100.0, "06:00")
    targets = [
        grouped("fits", expected=10.0),
        grouped("long", expected=6000.0),
        grouped("unknown"),
    ]
    eng, sink = make(targets, FakeTransport(), deadline=deadline, wall=wall)
    assert await eng.run() == 1
    done = finished(sink)
    assert (done["long"].status, done["long"].cause) == (
        HostStatus.NOT_STARTED,
        "would end after 06:00 (expected 1h40m)",
    )
    assert done["fits"].status is HostStatus.OK
    assert done["unknown"].status is HostStatus.OK
    assert not any(isinstance(e, HostStarted) and e.host == "long" for e in sink.events)


async def test_a_queued_host_is_refused_as_soon_as_it_stops_fitting() -> None:
    """Waiting for a slot, a host is refused the moment its expected duration no longer fits,
    not only when the slot frees up."""
    wall = Wall()
    deadline = Deadline(wall() + 1.0, "06:00")
    transport = FakeTransport({"first": HostScript(steps={"full": Behaviour(seconds=0.6)})})
    targets = [grouped("first", expected=0.6), grouped("second", expected=0.8)]
    eng, sink = make(targets, transport, max_parallel=1, deadline=deadline, wall=wall)
    assert await eng.run() == 1
    ends = [e.host for e in sink.events if isinstance(e, HostFinished)]
    assert ends == ["second", "first"]
    refused = finished(sink)["second"]
    assert refused.cause == "would end after 06:00 (expected 1s)"
    assert 0.15 <= refused.at - EPOCH - (deadline.at - EPOCH - 1.0) < 0.6  # at ~0.2 s, not 0.6


async def test_hard_deadline_cancels_running_steps_cleanly() -> None:
    """At a hard deadline the running rman gets SIGINT through the cancel protocol, its step
    ends cancelled with the deadline as cause, queued hosts are not started, and the run
    exits 1 (failed), not 130."""
    wall = Wall()
    deadline = Deadline(wall() + 0.2, "06:00", hard=True)
    transport = FakeTransport({"busy": HostScript(steps={"full": Behaviour(hang=True)})})
    targets = [grouped("busy"), grouped("waiting")]
    eng, sink = make(targets, transport, max_parallel=1, deadline=deadline, wall=wall)
    assert await asyncio.wait_for(eng.run(), 5) == 1
    assert transport.journal.of("signal") == [("signal", "busy", "full", "INT")]
    step = next(e for e in sink.events if isinstance(e, StepFinished) and e.host == "busy")
    assert (step.status, step.cause) == (
        StepStatus.CANCELLED,
        "stopped at the end of the window (06:00)",
    )
    done = finished(sink)
    assert done["busy"].status is HostStatus.CANCELLED
    assert (done["waiting"].status, done["waiting"].cause) == (
        HostStatus.NOT_STARTED,
        "the window ended at 06:00",
    )
    assert transport.journal.running == set()


async def test_opted_in_rman_steps_get_the_time_left_as_duration() -> None:
    """A step that opted in gets DURATION hh:mm PARTIAL with the time left in the window;
    others keep their script."""
    wall = Wall()
    deadline = Deadline(wall() + 2 * 3600 + 90, "06:00")
    t = target("db", 1, ("full", "controlfile"))
    t = Target(
        t.host,
        tuple(replace(s, stdin=f"RUN {{\n  BACKUP {s.name};\n}}\n") for s in t.steps),
        window_steps=frozenset({"full"}),
    )
    transport = FakeTransport()
    eng, _ = make([t], transport, deadline=deadline, wall=wall)
    assert await eng.run() == 0
    assert (
        transport.journal.stdin["db", "full"] == "RUN {\n  BACKUP DURATION 02:01 PARTIAL full;\n}\n"
    )
    assert transport.journal.stdin["db", "controlfile"] == "RUN {\n  BACKUP controlfile;\n}\n"
