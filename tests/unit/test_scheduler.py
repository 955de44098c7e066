"""The pure scheduler: order, limits without head-of-line blocking, the window, ETA arithmetic."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.events import (
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunStarted,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.scheduler import (
    Deadline,
    Dispatcher,
    Job,
    Limits,
    dispatch_order,
    duration_clause,
    duration_problem,
    expected_duration,
    host_expected,
    lower_bound,
    next_time_of_day,
    order_reason,
    overrun,
    progress,
    progress_bar,
    remaining,
    simulate,
    with_duration,
)
from fanout.state import RunState


def job(name: str, expected: float | None = None, priority: int = 1, *groups: str) -> Job:
    return Job(name, priority, int(name[1:]) if name[1:].isdigit() else 0, groups, expected)


def test_order_is_priority_then_unknown_in_file_order_then_longest_first() -> None:
    """Within a priority, hosts without history keep file order and come first; the rest go
    longest expected first; priority always wins."""
    jobs = [
        job("h0", 60),
        job("h1", None),
        job("h2", 600),
        job("h3", 300),
        job("h4", None),
        job("h5", 9000, 2),
    ]
    assert [j.name for j in dispatch_order(jobs)] == ["h1", "h4", "h2", "h3", "h0", "h5"]
    assert order_reason(job("h2", 6000)) == "priority 1; longest first (expected 1h40m)"
    assert order_reason(job("h1")) == "priority 1; no history: file order"


def test_expected_duration_is_the_median_of_the_last_runs() -> None:
    """The expected duration is the median of the newest HISTORY_RUNS successes; one odd
    night does not move it; no history gives None."""
    assert expected_duration([100, 110, 5000, 90, 105]) == 105
    assert expected_duration([10, 20, 30, 40, 50, 60, 70, 9000, 9000, 9000]) == 40
    assert expected_duration([]) is None
    assert host_expected([100.0, None, 50.0]) == 150.0
    assert host_expected([None, None]) is None


def test_a_full_group_never_blocks_other_hosts() -> None:
    """A host whose group is full is passed over: hosts behind it that can run start now."""
    limits = Limits(4, {"nfs": 1})
    d = Dispatcher([job("h0", 10, 1, "nfs"), job("h1", 10, 1, "nfs"), job("h2", 10, 2)], limits)
    starts, refused = d.poll(0.0)
    assert [j.name for j in starts] == ["h0", "h2"]
    assert refused == []
    assert [j.name for j in d.queued] == ["h1"]
    d.finished("h0")
    assert [j.name for j in d.poll(1.0)[0]] == ["h1"]


def test_a_host_needs_a_slot_in_every_one_of_its_groups() -> None:
    """A host in two groups waits while either of them is full."""
    limits = Limits(8, {"nfs": 2, "vm": 1})
    d = Dispatcher(
        [job("h0", 1, 1, "vm"), job("h1", 1, 1, "nfs", "vm"), job("h2", 1, 1, "nfs")], limits
    )
    assert [j.name for j in d.poll(0)[0]] == ["h0", "h2"]
    d.finished("h2")
    assert d.poll(1)[0] == []  # nfs free, vm still full
    d.finished("h0")
    assert [j.name for j in d.poll(2)[0]] == ["h1"]
    assert d.group_load() == {"nfs": 1, "vm": 1}


def test_the_window_refuses_what_would_end_after_it() -> None:
    """A host whose expected duration would end after the deadline is refused, with the reason;
    unknown durations start while the window is open; nothing starts once it has closed."""
    window = Deadline(1000.0, "06:00")
    d = Dispatcher(
        [job("h0", 6000), job("h1", 500), job("h2", None), job("h3", 900)],
        Limits(1),
        deadline=window,
    )
    starts, refused = d.poll(200.0)
    assert [(r.job.name, r.reason) for r in refused] == [
        ("h0", "would end after 06:00 (expected 1h40m)"),
        ("h3", "would end after 06:00 (expected 15m)"),
    ]
    assert [j.name for j in starts] == ["h1"]
    assert d.next_change(200.0) == 1000.0
    d.finished("h1")
    starts, refused = d.poll(1000.0)
    assert starts == []
    assert [(r.job.name, r.reason) for r in refused] == [("h2", "the window ended at 06:00")]


def test_next_change_is_when_a_queued_host_stops_fitting() -> None:
    """The dispatcher names the moment a waiting host would stop fitting the window."""
    d = Dispatcher([job("h0", 100), job("h1", 300)], Limits(1), deadline=Deadline(1000.0, "06:00"))
    d.poll(0.0)
    assert d.next_change(0.0) == 700.0
    assert Dispatcher([job("h0", 1)], Limits(1)).next_change(0.0) is None


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Job], Limits]:
    groups = {f"g{i}": draw(st.integers(1, 3)) for i in range(draw(st.integers(0, 3)))}
    jobs = []
    for i in range(draw(st.integers(1, 40))):
        mine = (
            draw(st.lists(st.sampled_from(sorted(groups)), unique=True, max_size=2))
            if groups
            else []
        )
        jobs.append(Job(f"h{i}", draw(st.integers(1, 3)), i, tuple(mine), draw(st.floats(1, 1000))))
    return dispatch_order(jobs), Limits(draw(st.integers(1, 6)), groups)


@settings(max_examples=60, deadline=None)
@given(fleets())
def test_simulated_schedules_respect_every_limit_and_the_lower_bound(
    fleet: tuple[list[Job], Limits],
) -> None:
    """Over random fleets: at no instant do more hosts run than the global limit or any group's;
    every host runs once; the makespan is at least the lower bound and within list scheduling's
    2x of it."""
    jobs, limits = fleet
    timeline = simulate(jobs, limits)
    assert sorted(p.job.name for p in timeline.hosts) == sorted(j.name for j in jobs)
    spans = [(p.start, p.end, p.job) for p in timeline.hosts]
    for at, _, _ in spans:
        assert at is not None
        live = [j for s, e, j in spans if s is not None and e is not None and s <= at < e]
        assert len(live) <= limits.max_parallel
        for group, slots in limits.groups.items():
            assert sum(group in j.groups for j in live) <= slots
    bound = lower_bound(jobs, limits)
    assert timeline.makespan >= bound - 1e-6
    # Priorities and groups can cost more than Graham's 2x; never more than running serially.
    assert timeline.makespan <= sum(j.expected or 0 for j in jobs) + 1e-6


def test_simulate_with_running_hosts_and_a_deadline() -> None:
    """The simulation continues a run: running hosts end after their remaining time, queued
    hosts follow under the limits, and a host that would miss the window is refused."""
    running = [(job("h0", None), 50.0)]
    queue = [job("h1", 100), job("h2", 400)]
    t = simulate(queue, Limits(1), now=1000.0, running=running, deadline=Deadline(1300.0, "6"))
    planned = {p.job.name: p for p in t.hosts}
    assert (planned["h1"].start, planned["h1"].end) == (1050.0, 1150.0)
    assert planned["h2"].refused == "would end after 6 (expected 6m40s)"
    assert t.end == 1150.0
    assert t.makespan == 150.0


def test_unknown_durations_are_assumed_to_be_the_median() -> None:
    """A host without history is simulated with the median of the others, and marked so."""
    t = simulate([job("h0", 100), job("h1", None), job("h2", 300)], Limits(3))
    h1 = next(p for p in t.hosts if p.job.name == "h1")
    assert (h1.end, h1.assumed) == (200.0, True)


def test_lpt_beats_file_order_on_a_classic_instance() -> None:
    """Longest first reaches the optimum where file order leaves the long job to the end."""
    jobs = [job(f"h{i}", d) for i, d in enumerate([1, 1, 1, 1, 4])]
    limits = Limits(2)
    assert simulate(jobs, limits).makespan == 6
    assert simulate(dispatch_order(jobs), limits).makespan == 4
    assert lower_bound(jobs, limits) == 4


def test_progress_arithmetic() -> None:
    """Progress is elapsed/expected capped at 1; remaining never goes negative; 3x is an overrun."""
    assert progress(30, 120) == 0.25
    assert progress(500, 120) == 1.0
    assert progress(5, None) is None
    assert remaining(30, 120) == 90
    assert remaining(300, 120) == 0
    assert remaining(10, None) == 0
    assert not overrun(359, 120)
    assert overrun(360, 120)
    assert not overrun(1e9, None)
    assert progress_bar(0.25, 8) == "██░░░░░░"


def test_eta_from_run_state() -> None:
    """The live state's expected end: running steps' remaining time, then the queue under the
    limit, from history carried by RunStarted."""
    clock = [0.0]
    state = RunState(clock=lambda: clock[0])
    hosts = tuple(
        PlannedHost(n, 1, n.upper(), "a", ("full", "arch"), expected=(e, 10.0))
        for n, e in (("h0", 100.0), ("h1", 200.0), ("h2", None))
    )
    state.apply(RunStarted("r", "i", hosts, 1, 0.0))
    assert state.expected_end(0.0) == 100 + 10 + 200 + 10 + 10
    state.apply(HostStarted("r", "h0", 0.0))
    state.apply(StepStarted("r", "h0", "full", 1, "", 0.0))
    clock[0] = 40.0
    assert state.expected_end(40.0) == 40 + 60 + 10 + 210 + 10
    clock[0] = 500.0  # overrunning: expected to end any moment, and the ETA moves with it
    assert state.expected_end(500.0) == 500 + 0 + 10 + 210 + 10
    state.apply(StepFinished("r", "h0", "full", 1, StepStatus.OK, 0, None, 500, False, 500.0))
    state.apply(StepStarted("r", "h0", "arch", 1, "", 500.0))
    state.apply(StepFinished("r", "h0", "arch", 1, StepStatus.OK, 0, None, 10, False, 510.0))
    state.apply(HostFinished("r", "h0", HostStatus.OK, None, 510.0, None, 510.0))
    clock[0] = 510.0
    assert state.expected_end(510.0) == 510 + 210 + 10
    assert state.step_totals() == (2, 6)


def test_eta_after_a_change_waits_longer_in_a_bigger_fleet() -> None:
    """After a change the ETA is recomputed once 0.5 s has passed at 500 hosts, and only
    after 2 s at 2,000 (the simulation costs in proportion): until then the last one shows."""
    for hosts, wait in ((500, 0.5), (2000, 2.0)):
        planned = tuple(
            PlannedHost(f"h{i}", 1, "S", "a", ("full",), expected=(100.0,)) for i in range(hosts)
        )
        state = RunState(clock=lambda: 0.0)
        state.apply(RunStarted("r", "i", planned, 1, 0.0))
        assert state.expected_end(0.0) == hosts * 100
        state.apply(HostFinished("r", "h1", HostStatus.NOT_STARTED, None, 0.0, None, 0.0))
        assert state.expected_end(wait * 0.9) == hosts * 100
        assert state.expected_end(wait) == wait + (hosts - 1) * 100


def test_eta_is_none_without_history() -> None:
    """Without any history there is no expected end to show."""
    state = RunState(clock=lambda: 0.0)
    state.apply(RunStarted("r", "i", (PlannedHost("h0", 1, "H", "a", ("full",)),), 1, 0.0))
    assert state.expected_end(0.0) is None


def test_duration_clause_fits_inside_the_time_left() -> None:
    """DURATION is rounded down to the minute (at least one) and goes after every BACKUP."""
    assert duration_clause(5999) == "DURATION 01:39 PARTIAL"
    assert duration_clause(20) == "DURATION 00:01 PARTIAL"
    script = "RUN {\n  BACKUP INCREMENTAL LEVEL 0 DATABASE;\n  backup current controlfile;\n}\n"
    assert with_duration(script, 3600) == (
        "RUN {\n  BACKUP DURATION 01:00 PARTIAL INCREMENTAL LEVEL 0 DATABASE;\n"
        "  backup DURATION 01:00 PARTIAL current controlfile;\n}\n"
    )


def test_duration_cannot_go_with_plus_archivelog() -> None:
    """RMAN refuses DURATION with PLUS ARCHIVELOG: such a step cannot opt in."""
    problem = duration_problem("BACKUP DATABASE\n  PLUS ARCHIVELOG;")
    assert problem is not None
    assert "PLUS ARCHIVELOG (line 2" in problem
    assert duration_problem("SQL 'ALTER SYSTEM ARCHIVE LOG CURRENT';") is not None
    assert duration_problem("BACKUP DURATION 2:00 DATABASE;") == "the step already sets DURATION"
    assert duration_problem("BACKUP DATABASE;") is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-01T01:00:00+00:00", "2026-12-01T06:00:00+00:00"),
        ("2026-12-01T22:00:00+00:00", "2026-12-02T06:00:00+00:00"),
        ("2026-12-01T06:00:00+00:00", "2026-12-02T06:00:00+00:00"),
    ],
)
def test_the_window_end_is_the_next_such_time_of_day(now: str, expected: str) -> None:
    """window_end 06:00 means the first 06:00 after the run starts."""
    at = next_time_of_day(6, 0, datetime.fromisoformat(now), UTC)
    assert at.isoformat() == expected


def test_the_window_end_in_an_explicit_zone() -> None:
    """'06:00 Europe/Paris' is 05:00 UTC in winter."""
    at = next_time_of_day(6, 0, datetime(2026, 12, 1, 1, 0, tzinfo=UTC), ZoneInfo("Europe/Paris"))
    assert at.astimezone(UTC).hour == 5


def test_a_local_window_end_follows_the_local_dst_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a zone, 06:00 is local time with that day's offset: across the autumn change
    (Paris, 25 Oct 2026) a run started the evening before gets 06:00 +01:00, not +02:00."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        now = datetime.fromisoformat("2026-10-24T22:00:00+02:00")
        assert next_time_of_day(6, 0, now, None).isoformat() == "2026-10-25T06:00:00+01:00"
    finally:
        monkeypatch.undo()
        time.tzset()
