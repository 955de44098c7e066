"""RunState: the fold of events into host rows and step cells."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from fanout.events import CancelReason, HostStatus, StepOutput, StepStatus, Stream
from fanout.rman import Transcript
from fanout.state import (
    FINISHED_PHASES,
    CellStatus,
    HostCounts,
    HostPhase,
    LastLine,
    ProgressReader,
    RunState,
    StepCounts,
    format_elapsed,
    format_instant,
)
from tests.unit.events_builder import Run, feed, planned


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fold(
    run: Run,
    *,
    new_reader: Callable[[], ProgressReader] = Transcript,
    clock: Callable[[], float] = time.monotonic,
) -> RunState:
    state = RunState(new_reader=new_reader, clock=clock)
    feed(state, run.events)
    return state


def test_plan_creates_queued_rows_in_dispatch_order() -> None:
    """RunStarted alone gives one queued row per planned host with queued step cells."""
    run = Run([planned("b", priority=1), planned("a", priority=2, steps=("full",))])
    state = fold(run)
    assert [row.name for row in state.rows.values()] == ["b", "a"]
    row = state.rows["a"]
    assert (row.index, row.priority, row.sid, row.address) == (1, 2, "A", "a.example")
    assert row.status is HostPhase.QUEUED
    assert [(c.name, c.status) for c in row.steps.values()] == [("full", CellStatus.QUEUED)]
    assert state.host_counts() == HostCounts(queued=2)
    assert state.run_id == run.run_id
    assert state.inventory == "nightly.yaml"


def test_success_folds_to_ok_with_durations() -> None:
    """A host whose steps all succeed ends ok, each cell ok with its duration and exit 0."""
    run = Run([planned("erp-prod")])
    run.host_ok("erp-prod", full=326, archivelog=41, controlfile=3)
    run.finish(0)
    state = fold(run)
    row = state.rows["erp-prod"]
    assert row.status is HostPhase.OK
    assert row.duration == 370
    assert [(c.status, c.duration, c.exit_status) for c in row.steps.values()] == [
        (CellStatus.OK, 326, 0),
        (CellStatus.OK, 41, 0),
        (CellStatus.OK, 3, 0),
    ]
    assert state.host_counts() == HostCounts(ok=1)
    assert state.step_counts() == StepCounts(ok=3)
    assert state.duration == 370
    assert state.finished is not None


def test_running_step_shows_phase_attempt_and_elapsed() -> None:
    """While a step runs, its host is running, the cell running, elapsed on the state clock."""
    clock = FakeClock()
    run = Run([planned("db1")])
    run.host_started("db1")
    run.connected("db1", after=1)
    run.step_started("db1", "full", after=1)
    state = fold(run, clock=clock)
    clock.now += 42
    row = state.rows["db1"]
    cell = row.steps["full"]
    assert (row.status, row.current_step) == (HostPhase.RUNNING, "full")
    assert (cell.status, cell.attempt, cell.started_at) == (CellStatus.RUNNING, 1, run.now)
    assert cell.elapsed(clock()) == 42
    assert row.elapsed(clock()) == 42
    assert state.elapsed() == 42
    assert state.host_counts() == HostCounts(running=1)
    assert state.step_counts() == StepCounts(queued=2, running=1)


def test_rman_progress_is_the_default_progress() -> None:
    """Without a reader given, RMAN progress lines (rman.Transcript) become the row's progress."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.connected("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "channel ORA_DISK_1: starting full datafile backup set")
    run.output("db1", "full", "some chatter that is not progress", "")
    state = fold(run)
    assert state.rows["db1"].progress == "ORA_DISK_1: starting full datafile backup set"


def test_progress_sent_with_the_output_is_used_without_a_second_parse() -> None:
    """StepOutput.progress (the engine's parse) is taken as is, the line is not fed to the
    reader; "" means none yet; None (no parse sent) falls back to the reader."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "channel ORA_DISK_1: starting full datafile backup set")
    line = run.events[-1]
    assert isinstance(line, StepOutput)
    sent = replace(line, progress="")
    state = fold(run)
    assert state.rows["db1"].progress == "ORA_DISK_1: starting full datafile backup set"
    fed: list[str] = []

    class Spy(LastLine):
        def feed(self, line: str) -> None:
            fed.append(line)
            super().feed(line)

    run.events[-1] = sent
    state = fold(run, new_reader=Spy)
    assert (state.rows["db1"].progress, fed) == (None, [])
    run.events[-1] = replace(sent, progress="piece 3 of 7\x1b[2J")
    state = fold(run, new_reader=Spy)
    assert (state.rows["db1"].progress, fed) == ("piece 3 of 7\\x1b[2J", [])


def test_last_line_reader_tracks_non_blank_lines_and_resets_per_step() -> None:
    """LastLine keeps the last non-blank line; a new step starts with no progress."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "one", "two", "   ")
    run.output("db1", "full", "err", stream=Stream.STDERR)
    state = fold(run, new_reader=LastLine)
    assert state.rows["db1"].progress == "err"
    run.step_finished("db1", "full", StepStatus.OK, duration=5)
    run.step_started("db1", "archivelog")
    state = fold(run, new_reader=LastLine)
    assert state.rows["db1"].progress is None


def test_progress_is_capped() -> None:
    """A very long progress line is cut so a row stays small."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "x" * 10_000)
    state = fold(run, new_reader=LastLine)
    progress = state.rows["db1"].progress
    assert progress is not None
    assert len(progress) == 160


def test_failure_keeps_cause_and_exit_status() -> None:
    """A failed step keeps its cause and exit status; the host fails."""
    run = Run([planned("erp-prod", steps=("full", "archivelog"))])
    run.host_started("erp-prod")
    run.connected("erp-prod")
    run.step_ok("erp-prod", "full", 300)
    run.step_started("erp-prod", "archivelog")
    cause = "ORA-19809: limit exceeded for recovery files"
    run.step_finished("erp-prod", "archivelog", StepStatus.FAILED, duration=12, cause=cause)
    run.host_finished("erp-prod", HostStatus.FAILED)
    state = fold(run)
    row = state.rows["erp-prod"]
    cell = row.steps["archivelog"]
    assert (cell.status, cell.cause, cell.exit_status, cell.duration) == (
        CellStatus.FAILED,
        cause,
        1,
        12,
    )
    assert row.status is HostPhase.FAILED
    assert row.cause is None
    assert [r.name for r in state.hosts_with(HostPhase.FAILED)] == ["erp-prod"]
    assert state.step_counts() == StepCounts(ok=1, failed=1)


def test_retry_goes_retrying_then_running_with_next_attempt() -> None:
    """A failed attempt that will be retried shows retrying, then the next attempt runs afresh."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.connected("db1")
    run.step_started("db1", "full")
    run.step_finished(
        "db1", "full", StepStatus.FAILED, duration=10, cause="ORA-27037", will_retry=True
    )
    state = fold(run)
    cell = state.rows["db1"].steps["full"]
    assert (cell.status, cell.attempt, cell.cause) == (CellStatus.RETRYING, 1, "ORA-27037")
    assert state.rows["db1"].current_step == "full"
    assert state.step_counts() == StepCounts(running=1)

    run.step_started("db1", "full", attempt=2, after=5)
    state = fold(run)
    cell = state.rows["db1"].steps["full"]
    assert (cell.status, cell.attempt, cell.cause, cell.duration) == (
        CellStatus.RUNNING,
        2,
        None,
        None,
    )

    run.step_finished("db1", "full", StepStatus.OK, duration=20, attempt=2)
    run.host_finished("db1", HostStatus.OK)
    state = fold(run)
    cell = state.rows["db1"].steps["full"]
    assert (cell.status, cell.attempt, cell.duration) == (CellStatus.OK, 2, 20)


def test_cancel_gives_cancelled_skipped_and_not_started() -> None:
    """On cancel the running step is cancelled, later ones skipped, queued hosts not started."""
    run = Run([planned("a"), planned("b")])
    run.host_started("a")
    run.connected("a")
    run.step_started("a", "full")
    run.cancel(CancelReason.SIGTERM, after=30)
    run.step_finished("a", "full", StepStatus.CANCELLED, duration=35, exit_status=130)
    run.skipped("a", "archivelog", "controlfile")
    run.host_finished("a", HostStatus.CANCELLED)
    run.host_not_started("b")
    run.finish(143, cancelled=CancelReason.SIGTERM)
    state = fold(run)
    assert [c.status for c in state.rows["a"].steps.values()] == [
        CellStatus.CANCELLED,
        CellStatus.SKIPPED,
        CellStatus.SKIPPED,
    ]
    assert state.rows["b"].status is HostPhase.NOT_STARTED
    assert all(c.status is CellStatus.SKIPPED for c in state.rows["b"].steps.values())
    assert state.host_counts() == HostCounts(cancelled=1, not_started=1)
    assert state.step_counts() == StepCounts(cancelled=1, skipped=5)
    assert state.cancel_reason is CancelReason.SIGTERM
    assert state.cancel is not None
    assert not state.cancel.forced


def test_host_finished_closes_cells_the_engine_left_open() -> None:
    """A cell still running when its host ends takes the host's outcome; none stays running."""
    run = Run([planned("a")])
    run.host_started("a")
    run.step_started("a", "full")
    run.host_finished("a", HostStatus.FAILED, cause="internal error: boom")
    state = fold(run)
    cells = list(state.rows["a"].steps.values())
    assert (cells[0].status, cells[0].cause) == (CellStatus.FAILED, "internal error: boom")
    assert [c.status for c in cells[1:]] == [CellStatus.SKIPPED, CellStatus.SKIPPED]


def test_connect_failure_records_attempts_and_cause() -> None:
    """Failed connection attempts are counted; the host fails with the connection's cause."""
    run = Run([planned("crm-prod")])
    run.host_started("crm-prod")
    run.connect_failed("crm-prod", "Connection refused", attempt=1, after=1)
    state = fold(run)
    row = state.rows["crm-prod"]
    assert (row.status, row.connect_attempts, row.connect_cause) == (
        HostPhase.CONNECTING,
        1,
        "Connection refused",
    )
    assert state.host_counts() == HostCounts(connecting=1)
    run.connect_failed("crm-prod", "Connection refused", attempt=2, will_retry=False, after=2)
    run.skipped("crm-prod", *planned("crm-prod").steps)
    run.host_finished("crm-prod", HostStatus.FAILED, cause="Connection refused")
    state = fold(run)
    row = state.rows["crm-prod"]
    assert (row.status, row.connect_attempts, row.cause) == (
        HostPhase.FAILED,
        2,
        "Connection refused",
    )
    assert state.step_counts() == StepCounts(skipped=3)


def test_connect_retry_then_success() -> None:
    """A host connected on its second attempt is running and remembers the attempt count."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.connect_failed("db1", "Connection reset", attempt=1)
    run.connected("db1", attempt=2, after=2)
    state = fold(run)
    row = state.rows["db1"]
    assert (row.status, row.connect_attempts) == (HostPhase.RUNNING, 2)


def test_crash_marks_row_crashed_without_keeping_the_traceback() -> None:
    """HostFinished with a traceback sets crashed; the traceback itself is not kept."""
    run = Run([planned("db1")])
    run.host_started("db1")
    run.host_finished(
        "db1", HostStatus.FAILED, cause="internal error: KeyError: 'x'", detail="Traceback…"
    )
    row = fold(run).rows["db1"]
    assert row.crashed
    assert row.cause == "internal error: KeyError: 'x'"
    assert "Traceback" not in repr(row)


def test_unknown_host_and_step_get_rows() -> None:
    """Events for a host or step the plan did not announce still fold into a row and a cell."""
    run = Run([])
    run.host_started("ghost")
    run.step_started("ghost", "custom")
    state = fold(run)
    assert state.rows["ghost"].steps["custom"].status is CellStatus.RUNNING


def test_rows_by_attention_order() -> None:
    """Running first, then failed, then other finished hosts (latest first), then the queue."""
    run = Run([planned(n) for n in ("q1", "ok1", "f1", "r1", "ok2", "f2", "q2", "r2")])
    for name in ("ok1", "f1", "ok2", "f2"):
        run.host_started(name)
    run.host_finished("ok1", HostStatus.OK, after=1)
    run.host_finished("f1", HostStatus.FAILED, after=1)
    run.host_finished("ok2", HostStatus.OK, after=1)
    run.host_finished("f2", HostStatus.FAILED, after=1)
    run.host_started("r2")
    run.host_started("r1")
    run.connected("r1")
    state = fold(run)
    assert [row.name for row in state.rows_by_attention()] == [
        "r1",
        "r2",
        "f2",
        "f1",
        "ok2",
        "ok1",
        "q1",
        "q2",
    ]


def test_duration_before_finish_is_wall_time_of_events() -> None:
    """Before RunFinished the run's duration is the span from RunStarted to the latest event."""
    run = Run([planned("a")])
    run.host_started("a", after=7)
    assert fold(run).duration == 7


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (12.4, "12s"),
        (59.6, "1m"),
        (326, "5m26s"),
        (3599.4, "59m59s"),
        (5400, "1h30m"),
        (5429, "1h30m"),
        (21600, "6h"),
        (93600, "1d2h"),
        (-1, "0s"),
        (float("nan"), "0s"),
    ],
)
def test_format_elapsed(seconds: float, text: str) -> None:
    """Display durations: whole seconds below an hour, whole minutes from an hour up."""
    assert format_elapsed(seconds) == text


def test_format_instant() -> None:
    """Timestamps are ISO-8601 UTC with a Z, optionally with milliseconds."""
    assert format_instant(1795454075.25) == "2026-11-23T17:14:35Z"
    assert format_instant(1795454075.25, millis=True) == "2026-11-23T17:14:35.250Z"


def test_format_instant_cached_by_second_reads_as_datetime_does() -> None:
    """The per-second cache gives what datetime gives, at and near every second's edges
    (datetime rounds to the microsecond first: 35.9999996 is already 36)."""
    rng = random.Random(17)
    samples = [1795454075 + d for d in (0.0, 0.5, 0.998, 0.999, 0.9999994, 0.9999996, 1.0)]
    samples += [rng.uniform(0, 4e9) for _ in range(2000)] + [0.0, 0.4, -0.4, -1.5]
    for at in samples:
        moment = datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")
        assert format_instant(at) == moment.removesuffix("+00:00") + "Z", at


def test_step_totals_kept_incrementally_agree_with_a_recount() -> None:
    """step_totals() (kept as events apply) equals counting finished cells, event by event."""
    run = Run(hosts=[planned("a"), planned("b", steps=("full",)), planned("c")])
    run.host_started("a")
    run.step_started("a", "full")
    run.step_finished("a", "full", StepStatus.FAILED, will_retry=True)
    run.step_started("a", "full", attempt=2)
    run.step_finished("a", "full", StepStatus.OK)
    run.step_started("a", "archivelog")
    run.step_started("a", "unplanned")  # a step the plan did not announce gets a cell
    run.host_finished("a", HostStatus.FAILED, cause="connection lost")
    run.host_started("b")
    run.step_started("b", "full")
    run.step_finished("b", "full", StepStatus.OK)
    run.host_finished("b", HostStatus.OK)
    run.host_not_started("c")
    state = RunState()
    for event in run.events:
        state.apply(event)
        cells = [cell for row in state.rows.values() for cell in row.steps.values()]
        assert state.step_totals() == (sum(cell.finished for cell in cells), len(cells))
    assert state.step_totals() == (8, 8)


def shuffled_run(seed: int, hosts: int) -> Run:
    """Hosts leaving the queue out of dispatch order, connecting, finishing (some twice, some
    started again after finishing), and a host the plan never named."""
    rnd = random.Random(seed)
    names = [f"db-{i:02d}" for i in range(hosts)]
    run = Run([planned(name) for name in names])
    for _ in range(hosts * 4):
        host = rnd.choice([*names, "ghost"])
        match rnd.randrange(4):
            case 0:
                run.host_started(host)
            case 1:
                run.connected(host)
            case 2:
                run.step_started(host, "full")
            case _:
                run.host_finished(host, rnd.choice(list(HostStatus)), after=1)
    return run


def test_phase_rows_and_counts_follow_every_status_change() -> None:
    """After every event, phase_rows holds exactly the rows in each phase (the queue in
    dispatch order, finished phases in finish order), latest_rows the reverse, and
    host_counts agrees with counting every row."""
    for seed in range(20):
        state = RunState(clock=FakeClock())
        for event in shuffled_run(seed, 12).events:
            state.apply(event)
            for phase in HostPhase:
                rows = [row for row in state.rows.values() if row.status is phase]
                if phase in FINISHED_PHASES:
                    rows.sort(key=lambda row: row.finish_seq)
                got = list(state.phase_rows(phase))
                assert list(state.latest_rows(phase)) == got[::-1]
                if phase in (HostPhase.CONNECTING, HostPhase.RUNNING):  # any order
                    got.sort(key=lambda row: row.index)
                assert got == rows, (seed, event, phase)
            counts = Counter(row.status for row in state.rows.values())
            assert state.host_counts() == HostCounts(
                queued=counts[HostPhase.QUEUED],
                connecting=counts[HostPhase.CONNECTING],
                running=counts[HostPhase.RUNNING],
                ok=counts[HostPhase.OK],
                failed=counts[HostPhase.FAILED],
                cancelled=counts[HostPhase.CANCELLED],
                not_started=counts[HostPhase.NOT_STARTED],
            )
            assert [row.name for row in state.hosts_with(HostPhase.QUEUED)] == [
                row.name for row in state.phase_rows(HostPhase.QUEUED)
            ]
