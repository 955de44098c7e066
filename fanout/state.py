"""RunState: the pure fold of events into rows, shared by every view.

The summary reads it at the end of a run; the live table reads it 4 times a
second while the run goes on. Only the thread that calls ``apply`` may read it
(see DESIGN: the live loop task both folds and renders). No remote output is
kept: per host only the last progress line survives (a ProgressReader exists
only while its step runs), so a 500-host run stays a few hundred KB.

``exit_code`` is not decided here; the engine reports it in ``RunFinished``.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, ValuesView
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, assert_never

from fanout.escapes import make_visible
from fanout.events import (
    CancelReason,
    CancelRequested,
    ConnectFailed,
    Event,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    OrphanUnconfirmed,
    PlannedHost,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
)
from fanout.model import format_duration
from fanout.rman import Transcript
from fanout.scheduler import Deadline, Job, Limits, host_expected, remaining, simulate

_LEVEL = re.compile(r"level ([01])( cumulative)?:")

PROGRESS_MAX = 160  # characters kept of a progress line


class ProgressReader(Protocol):
    """Reads one step's output line by line; ``progress`` is the latest short status."""

    def feed(self, line: str) -> None: ...

    @property
    def progress(self) -> str | None: ...


class LastLine:
    """A ProgressReader for any command: the last non-blank line is the progress."""

    __slots__ = ("progress",)

    def __init__(self) -> None:
        self.progress: str | None = None

    def feed(self, line: str) -> None:
        self.progress = line.strip() or self.progress


class HostPhase(StrEnum):
    """A host row's status: HostStatus plus the states before the end."""

    QUEUED = "queued"
    CONNECTING = "connecting"
    RUNNING = "running"
    OK = HostStatus.OK.value
    FAILED = HostStatus.FAILED.value
    CANCELLED = HostStatus.CANCELLED.value
    NOT_STARTED = HostStatus.NOT_STARTED.value


class CellStatus(StrEnum):
    """A step cell's status: StepStatus plus the states before the end."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed and another one follows
    OK = StepStatus.OK.value
    FAILED = StepStatus.FAILED.value
    CANCELLED = StepStatus.CANCELLED.value
    SKIPPED = StepStatus.SKIPPED.value


FINISHED_PHASES = frozenset(
    {HostPhase.OK, HostPhase.FAILED, HostPhase.CANCELLED, HostPhase.NOT_STARTED}
)
FINISHED_CELLS = frozenset(
    {CellStatus.OK, CellStatus.FAILED, CellStatus.CANCELLED, CellStatus.SKIPPED}
)


def format_elapsed(seconds: float) -> str:
    """A duration for display: ``12s``, ``5m26s``, ``1h30m``, ``6h``, ``1d2h``.

    Whole seconds under an hour and whole minutes from an hour up, written by
    ``model.format_duration`` (so the text reads back as a duration).
    """
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    return format_duration(round(seconds) if seconds < 3600 else round(seconds / 60) * 60)


def format_instant(at: float, *, millis: bool = False) -> str:
    """Epoch seconds as ISO-8601 UTC: ``2026-11-23T17:14:35Z`` (``…35.120Z`` with ``millis``)."""
    if not millis and at >= 0:
        second = int(at)
        if at - second < 0.999:  # clear of datetime's rounding to the microsecond
            return _format_second(second)  # a run's events share their seconds: cached
    moment = datetime.fromtimestamp(at, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
    return text.removesuffix("+00:00") + "Z"


@functools.lru_cache(maxsize=256)
def _format_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=UTC).isoformat().removesuffix("+00:00") + "Z"


@dataclass(slots=True)
class StepCell:
    """One step of one host. ``duration``/``exit_status``/``cause`` describe the latest attempt."""

    name: str
    status: CellStatus = CellStatus.QUEUED
    attempt: int = 0  # 0: never started
    started_at: float | None = None  # wall clock (event ``at``) of the latest attempt
    started_mono: float | None = None  # the state's clock when that attempt started
    duration: float | None = None
    exit_status: int | None = None
    cause: str | None = None
    detail: str | None = None  # the backup level and why ("level 0: …"), warnings
    expected: float | None = None  # seconds, from history (scheduler.py); None: no history

    @property
    def level(self) -> str | None:
        """``L0``, ``L1``, ``L1c`` (cumulative) from the detail of a level-policy step."""
        match = _LEVEL.match(self.detail or "")
        return None if match is None else f"L{match[1]}" + ("c" if match[2] else "")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_CELLS

    def elapsed(self, now_mono: float) -> float | None:
        """Seconds of the latest attempt: final if finished, running time if not."""
        if self.finished or self.status is CellStatus.RETRYING:
            return self.duration
        if self.started_mono is None:
            return None
        return max(0.0, now_mono - self.started_mono)


@dataclass(slots=True)
class HostRow:
    """One host: what the live table shows on a line and the summary in a block."""

    index: int  # dispatch order (position in RunStarted.hosts)
    name: str
    priority: int
    sid: str
    address: str
    steps: dict[str, StepCell]  # in the order the host runs them
    status: HostPhase = HostPhase.QUEUED
    current_step: str | None = None
    progress: str | None = None  # last progress line of the current (or last) step
    connect_attempts: int = 0
    connect_cause: str | None = None  # latest failed connection attempt
    cause: str | None = None  # host-level cause from HostFinished (unreachable, internal error)
    crashed: bool = False  # HostFinished carried a traceback (it is in the host's log)
    started_at: float | None = None  # wall clock of HostStarted
    started_mono: float | None = None
    ended_at: float | None = None  # wall clock of HostFinished
    duration: float | None = None
    finish_seq: int = 0  # 1 for the first host to finish, 2 for the next… (0: not finished)
    groups: tuple[str, ...] = ()  # capacity groups

    @property
    def expected(self) -> float | None:
        """The host's expected duration: its steps' from history; None without any."""
        return host_expected(cell.expected for cell in self.steps.values())

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_PHASES

    def elapsed(self, now_mono: float) -> float | None:
        """Seconds since the host left the queue (final once it finished)."""
        if self.finished:
            return self.duration
        if self.started_mono is None:
            return None
        return max(0.0, now_mono - self.started_mono)


@dataclass(frozen=True, slots=True)
class HostCounts:
    queued: int = 0
    connecting: int = 0
    running: int = 0
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    not_started: int = 0

    @property
    def total(self) -> int:
        return (
            self.queued
            + self.connecting
            + self.running
            + self.ok
            + self.failed
            + self.cancelled
            + self.not_started
        )

    @property
    def active(self) -> int:
        """Hosts out of the queue and not finished (connecting or running)."""
        return self.connecting + self.running

    @property
    def finished(self) -> int:
        return self.ok + self.failed + self.cancelled + self.not_started


@dataclass(frozen=True, slots=True)
class StepCounts:
    queued: int = 0
    running: int = 0  # retrying included
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.ok + self.failed + self.cancelled + self.skipped


def attention_key(row: HostRow) -> tuple[int, int]:
    """Sort key for views: running/connecting first (dispatch order), then failed, then the
    other finished hosts (most recently finished first within each), then the queue."""
    match row.status:
        case HostPhase.RUNNING | HostPhase.CONNECTING:
            return (0, row.index)
        case HostPhase.FAILED:
            return (1, -row.finish_seq)
        case HostPhase.OK | HostPhase.CANCELLED | HostPhase.NOT_STARTED:
            return (2, -row.finish_seq)
        case HostPhase.QUEUED:
            return (3, row.index)
        case _:
            assert_never(row.status)


class RunState:
    """Folds events into per-host rows. Also an EventSink (``emit`` = ``apply``).

    ``new_reader`` makes the ProgressReader fed the output of each running step
    (default: ``rman.Transcript``; ``LastLine`` for anything); one exists per
    running step only, and only its ``progress`` outlives the step. ``clock`` is
    monotonic, for the elapsed times of what is still running. Events for hosts
    or steps the plan did not announce get a row/cell of their own.
    """

    def __init__(
        self,
        *,
        new_reader: Callable[[], ProgressReader] = Transcript,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._new_reader = new_reader
        self._readers: dict[tuple[str, str], ProgressReader] = {}
        self._raw_progress: dict[str, str] = {}  # host -> the progress its row shows, unescaped
        self._clock = clock
        self.run_id: str = ""
        self.inventory: str = ""
        self.max_parallel: int = 0
        self.started_at: float | None = None  # wall clock of RunStarted
        self.started_mono: float | None = None
        self.last_at: float | None = None  # wall clock of the latest event
        self.cancel: CancelRequested | None = None  # the latest cancel request
        self.finished: RunFinished | None = None
        self.rows: dict[str, HostRow] = {}  # dispatch order
        # the same rows by phase: the queue in dispatch order, finished phases in finish order
        # (so views and counts never walk every row; see ``phase_rows``)
        self._phases: dict[HostPhase, dict[str, HostRow]] = {phase: {} for phase in HostPhase}
        self.layout = 0  # bumped when a row or a step cell is added (views cache on it)
        self._steps_all = 0  # step cells, and how many are finished: step_totals() in O(1)
        self._steps_done = 0
        self.orphans: list[OrphanUnconfirmed] = []  # remote groups that may still be running
        self._finished_hosts = 0
        # -- the backup window (scheduler.py) --
        self.groups: dict[str, int] = {}  # capacity group -> max_parallel
        self.deadline: float | None = None  # wall clock
        self.deadline_label: str | None = None
        self._changes = 0  # bumped by every event that can move the expected end
        self._eta: tuple[tuple[int, float], float | None] | None = None  # ((changes, at), end)

    # ------------------------------------------------------------------ fold

    def emit(self, event: Event) -> None:
        self.apply(event)

    def apply(self, event: Event) -> None:
        """Fold one event in. Never raises for a well-typed event."""
        self.last_at = event.at
        if type(event) is StepOutput:  # ~95 % of the stream: the shortest path
            reader = self._readers.get((event.host, event.step))
            if reader is None:
                return  # output outside a running step
            progress = event.progress  # the engine's reading, when it sent one
            if progress is None:
                for line in event.lines:
                    reader.feed(line)
                progress = reader.progress
            if progress and progress is not self._raw_progress.get(event.host):
                self._raw_progress[event.host] = progress  # unchanged: nothing to redo
                self._row(event.host).progress = make_visible(progress[:PROGRESS_MAX])
            return
        self._changes += 1
        match event:
            case StepOutput():
                pass  # above
            case RunStarted():
                self.run_id = event.run_id
                self.inventory = event.inventory
                self.max_parallel = event.max_parallel
                self.started_at = event.at
                self.started_mono = self._clock()
                self.groups = dict(event.groups)
                self.deadline = event.deadline
                self.deadline_label = event.deadline_label
                for planned in event.hosts:
                    self._add_row(planned)
            case HostStarted():
                row = self._row(event.host)
                self._set_phase(row, HostPhase.CONNECTING)
                row.started_at = event.at
                row.started_mono = self._clock()
            case ConnectFailed():
                row = self._row(event.host)
                row.connect_attempts = event.attempt
                row.connect_cause = make_visible(event.cause)
            case HostConnected():
                row = self._row(event.host)
                row.connect_attempts = event.attempt
                self._set_phase(row, HostPhase.RUNNING)
            case StepStarted():
                row = self._row(event.host)
                self._set_phase(row, HostPhase.RUNNING)
                row.current_step = event.step
                row.progress = None
                self._raw_progress.pop(event.host, None)
                self._readers[event.host, event.step] = self._new_reader()
                cell = self._cell(row, event.step)
                self._steps_done -= cell.finished
                cell.status = CellStatus.RUNNING
                cell.attempt = event.attempt
                cell.started_at = event.at
                cell.started_mono = self._clock()
                cell.duration = cell.exit_status = cell.cause = None
                cell.detail = event.detail or cell.detail
            case StepFinished():
                self._readers.pop((event.host, event.step), None)
                row = self._row(event.host)
                cell = self._cell(row, event.step)
                self._steps_done -= cell.finished
                cell.status = (
                    CellStatus.RETRYING if event.will_retry else CellStatus(event.status.value)
                )
                self._steps_done += cell.finished
                cell.attempt = max(cell.attempt, event.attempt)
                cell.duration = event.duration
                cell.exit_status = event.exit_status
                cell.cause = _visible(event.cause)
                cell.detail = event.detail or cell.detail
                if row.current_step == event.step and not event.will_retry:
                    row.current_step = None
            case HostFinished():
                self._finish_host(event)
            case CancelRequested():
                self.cancel = event
            case OrphanUnconfirmed():
                self.orphans.append(event)
            case RunFinished():
                self.finished = event
            case _:
                assert_never(event)

    def _add_row(self, planned: PlannedHost) -> HostRow:
        row = HostRow(
            index=len(self.rows),
            name=planned.name,
            priority=planned.priority,
            sid=planned.oracle_sid,
            address=planned.address,
            steps={step: StepCell(step) for step in planned.steps},
            groups=planned.groups,
        )
        for step, expected in zip(planned.steps, planned.expected, strict=False):
            row.steps[step].expected = expected
        self.rows[planned.name] = row
        self._phases[row.status][row.name] = row
        self.layout += 1
        self._steps_all += len(row.steps)
        return row

    def _row(self, host: str) -> HostRow:
        row = self.rows.get(host)
        if row is None:
            row = self._add_row(PlannedHost(host, 0, "", "", ()))
        return row

    def _set_phase(self, row: HostRow, phase: HostPhase) -> None:
        """Move ``row`` to ``phase``; a row entering a phase goes last in it (finish order)."""
        if phase is not row.status or phase in FINISHED_PHASES:
            del self._phases[row.status][row.name]
            row.status = phase
            self._phases[phase][row.name] = row

    def _cell(self, row: HostRow, step: str) -> StepCell:
        cell = row.steps.get(step)
        if cell is None:
            cell = row.steps[step] = StepCell(step)
            self.layout += 1
            self._steps_all += 1
        return cell

    def _finish_host(self, event: HostFinished) -> None:
        row = self._row(event.host)
        self._set_phase(row, HostPhase(event.status.value))
        row.cause = _visible(event.cause)
        row.crashed = event.detail is not None
        row.ended_at = event.at
        row.duration = event.duration
        row.current_step = None
        self._finished_hosts += 1
        row.finish_seq = self._finished_hosts
        for key in [key for key in self._readers if key[0] == event.host]:
            del self._readers[key]
        # A host ends every step it began; steps it never reached (a host that was
        # never started gets no StepFinished at all) count as skipped.
        for cell in row.steps.values():
            if cell.status is CellStatus.QUEUED:
                cell.status = CellStatus.SKIPPED
                self._steps_done += 1
            elif not cell.finished:  # running/retrying: the engine did not say; keep it honest
                cancelled = row.status is HostPhase.CANCELLED
                cell.status = CellStatus.CANCELLED if cancelled else CellStatus.FAILED
                cell.cause = cell.cause or row.cause
                self._steps_done += 1

    # ----------------------------------------------------------------- reads

    def host_counts(self) -> HostCounts:
        """Hosts per phase, in O(1)."""
        phases = self._phases
        return HostCounts(
            queued=len(phases[HostPhase.QUEUED]),
            connecting=len(phases[HostPhase.CONNECTING]),
            running=len(phases[HostPhase.RUNNING]),
            ok=len(phases[HostPhase.OK]),
            failed=len(phases[HostPhase.FAILED]),
            cancelled=len(phases[HostPhase.CANCELLED]),
            not_started=len(phases[HostPhase.NOT_STARTED]),
        )

    def phase_rows(self, phase: HostPhase) -> ValuesView[HostRow]:
        """The rows in ``phase``, without walking every row: in the order they entered it,
        so the queue is in dispatch order and a finished phase in finish order. A live,
        read-only view (it changes as events are applied)."""
        return self._phases[phase].values()

    def latest_rows(self, phase: HostPhase) -> Iterator[HostRow]:
        """``phase_rows`` backwards: for a finished phase, the most recently finished first."""
        return reversed(self._phases[phase].values())

    def step_counts(self) -> StepCounts:
        counts = Counter(cell.status for row in self.rows.values() for cell in row.steps.values())
        return StepCounts(
            queued=counts[CellStatus.QUEUED],
            running=counts[CellStatus.RUNNING] + counts[CellStatus.RETRYING],
            ok=counts[CellStatus.OK],
            failed=counts[CellStatus.FAILED],
            cancelled=counts[CellStatus.CANCELLED],
            skipped=counts[CellStatus.SKIPPED],
        )

    def hosts_with(self, status: HostPhase) -> list[HostRow]:
        """Rows in ``status``, in dispatch order."""
        return sorted(self._phases[status].values(), key=_dispatch_order)

    def rows_by_attention(self) -> list[HostRow]:
        """Rows sorted by ``attention_key``: what a view with little room shows first."""
        return sorted(self.rows.values(), key=attention_key)

    @property
    def cancel_reason(self) -> CancelReason | None:
        if self.finished is not None and self.finished.cancelled is not None:
            return self.finished.cancelled
        return self.cancel.reason if self.cancel is not None else None

    @property
    def duration(self) -> float:
        """Run duration: RunFinished's, or wall time from RunStarted to the latest event."""
        if self.finished is not None:
            return self.finished.duration
        if self.started_at is None or self.last_at is None:
            return 0.0
        return max(0.0, self.last_at - self.started_at)

    def elapsed(self) -> float:
        """Seconds since RunStarted on the monotonic clock (final once the run finished)."""
        if self.finished is not None:
            return self.finished.duration
        if self.started_mono is None:
            return 0.0
        return max(0.0, self._clock() - self.started_mono)

    # ------------------------------------------------------- the window and the ETA

    def expected_end(self, now: float, *, every: float = 2.0) -> float | None:
        """When the run is expected to end, on the state's monotonic clock; None without history.

        The scheduler's simulation from ``now``: running hosts keep what history leaves of
        their steps, queued hosts go through the same limits, groups and window as the
        engine. Recomputed every ``every`` seconds, and after a change once ``every / 4`` has
        passed (one simulation of 500 hosts costs a few ms: not at every frame). Above 500
        hosts both spans grow with the fleet, as the simulation's cost does (2,000 hosts:
        ~10 ms, at most every 2 s), so the ETA stays near 0.5 % of a core at any size.
        """
        if self.finished is not None or self.started_mono is None:
            return None
        if self._eta is not None:
            (changes, at), end = self._eta
            every *= max(1.0, len(self.rows) / 500)
            fresh = now - at < every and (changes == self._changes or now - at < every / 4)
            if fresh and now >= at:
                return end
        end = self._simulate_end(now)
        self._eta = ((self._changes, now), end)
        return end

    def _simulate_end(self, now: float) -> float | None:
        if all(row.expected is None for row in self.rows.values()):
            return None
        running: list[tuple[Job, float]] = []
        queued: list[Job] = []
        for row in self.rows.values():
            if row.status in (HostPhase.CONNECTING, HostPhase.RUNNING):
                left = 0.0
                for cell in row.steps.values():
                    if cell.status in (CellStatus.RUNNING, CellStatus.RETRYING):
                        left += remaining(cell.elapsed(now) or 0.0, cell.expected)
                    elif cell.status is CellStatus.QUEUED:
                        left += cell.expected or 0.0
                running.append((Job(row.name, row.priority, row.index, row.groups), left))
            elif row.status is HostPhase.QUEUED:
                queued.append(Job(row.name, row.priority, row.index, row.groups, row.expected))
        deadline = None
        if self.deadline is not None and self.started_at is not None and self.started_mono:
            at = self.started_mono + (self.deadline - self.started_at)
            deadline = Deadline(at, self.deadline_label or "")
        limits = Limits(max(1, self.max_parallel), self.groups)
        groups_known = all(g in self.groups for job in queued for g in job.groups) and all(
            g in self.groups for job, _ in running for g in job.groups
        )
        if not groups_known:
            limits = Limits(max(1, self.max_parallel))
            queued = [Job(j.name, j.priority, j.index, (), j.expected) for j in queued]
            running = [(Job(j.name, j.priority, j.index), left) for j, left in running]
        return simulate(queued, limits, now=now, deadline=deadline, running=running).end

    def step_totals(self) -> tuple[int, int]:
        """(finished steps, all steps) over every host (kept as events are applied)."""
        return self._steps_done, self._steps_all


def _dispatch_order(row: HostRow) -> int:
    return row.index


def _visible(text: str | None) -> str | None:
    """Remote text as every view shows it: control characters escaped (``fanout.escapes``)."""
    return None if text is None else make_visible(text)
