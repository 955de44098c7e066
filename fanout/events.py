"""Events: the one stream every sink consumes (log lines, JSON, log files, store, live table).

Events are small frozen values, past tense. ``at`` is wall-clock epoch seconds
(``time.time()``); durations are measured on the monotonic clock by the engine.
A status enum's values are exactly what the JSON output and the store show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"  # interrupted by the operator
    SKIPPED = "skipped"  # never begun: cancelled run, on_failure: stop, host unreachable,
    # a `when:` condition false ("condition false"), a required step failed ("backup failed")


class HostStatus(StrEnum):
    OK = "ok"  # every step ok
    FAILED = "failed"  # a step failed, or the host could not be reached, or fanout crashed on it
    CANCELLED = "cancelled"  # stopped by the operator after it was dispatched
    NOT_STARTED = "not started"  # still queued when the run was cancelled


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class CancelReason(StrEnum):
    OPERATOR = "operator"  # q / quit typed at the prompt
    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    STORE = "store"  # the run store could not record a change: no step may start unrecorded
    LEADERSHIP_LOST = "leadership lost"  # cluster mode: this node may no longer lead the run


@dataclass(frozen=True, slots=True)
class PlannedHost:
    """What RunStarted announces for each selected host, in dispatch order."""

    name: str
    priority: int
    oracle_sid: str
    address: str
    steps: tuple[str, ...]
    database: str = ""  # Host.database_key: whose level-0 history its backup steps extend
    levels: tuple[int | None, ...] = ()  # per step: the backup level planned (None: no policy)
    # -- the backup window (scheduler.py) --
    groups: tuple[str, ...] = ()  # capacity groups
    expected: tuple[float | None, ...] = ()  # per step: seconds from history, None: no history


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What the run store keeps about a run beyond its plan (the CLI knows it, the engine not)."""

    inventory_sha256: str | None = None
    argv: tuple[str, ...] = ()
    resumed_from: str | None = None  # the run this one continues (--resume)


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    inventory: str
    hosts: tuple[PlannedHost, ...]
    max_parallel: int
    at: float
    meta: RunMeta = RunMeta()
    # -- the backup window (scheduler.py) --
    groups: tuple[tuple[str, int], ...] = ()  # (capacity group, its max_parallel)
    deadline: float | None = None  # epoch seconds: the end of the window
    deadline_label: str | None = None  # as the operator wrote it: "06:00"


@dataclass(frozen=True, slots=True)
class HostStarted:
    """The host left the queue; fanout is connecting to it."""

    run_id: str
    host: str
    at: float


@dataclass(frozen=True, slots=True)
class HostConnected:
    run_id: str
    host: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """One connection attempt failed; ``will_retry`` says whether another follows."""

    run_id: str
    host: str
    attempt: int
    cause: str
    will_retry: bool
    at: float


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    host: str
    step: str
    attempt: int
    command: str
    at: float
    detail: str | None = None  # "level 1: last level 0 2026-11-29 (2d ago)"


@dataclass(frozen=True, slots=True)
class StepOutput:
    """Lines of remote output that arrived together, from one stream (newlines stripped).

    One event per batch, not per line: the sinks' cost per event is paid once for the
    lines of a read. The JSON stream still has one ``step_output`` object per line.
    """

    run_id: str
    host: str
    step: str
    stream: Stream
    lines: tuple[str, ...]  # at least one
    at: float  # when the engine took them: at most the transport's output tick after arrival
    # The step's progress as the engine's rman.Transcript read it through these lines, so
    # that no sink parses them again: "" when it read none yet; None when the emitter did
    # not read the output (RunState then reads it itself).
    progress: str | None = None


@dataclass(frozen=True, slots=True)
class StepFinished:
    run_id: str
    host: str
    step: str
    attempt: int
    status: StepStatus
    exit_status: int | None  # None: the step never ran, or the connection died
    cause: (
        str | None
    )  # one line: "ORA-19809: limit exceeded for recovery files", "timeout after 6h"
    duration: float
    will_retry: bool
    at: float
    # the level choice and any warning ("warning: recovery catalog /@RCAT unreachable: …")
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class HostFinished:
    run_id: str
    host: str
    status: HostStatus
    cause: str | None
    duration: float
    detail: (
        str | None
    )  # e.g. the traceback when fanout itself crashed on this host (goes to its log)
    at: float


@dataclass(frozen=True, slots=True)
class CancelRequested:
    run_id: str
    reason: CancelReason
    forced: bool
    at: float


@dataclass(frozen=True, slots=True)
class OrphanUnconfirmed:
    """At the end of the run: a remote process group fanout started (its connection was lost)
    that it could not confirm stopped within ``orphan_timeout``: it may still be running."""

    run_id: str
    host: str
    pgid: int
    cause: str  # one line: why it is unconfirmed
    at: float


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    exit_code: int
    cancelled: CancelReason | None
    duration: float
    at: float


Event = (
    RunStarted
    | HostStarted
    | HostConnected
    | ConnectFailed
    | StepStarted
    | StepOutput
    | StepFinished
    | HostFinished
    | CancelRequested
    | OrphanUnconfirmed
    | RunFinished
)


class EventSink(Protocol):
    """Consumes events. ``emit`` is synchronous and quick: cancellation cannot interrupt it.

    A sink may also have ``emit_together(events)``, taking events that happened together
    (no await between them) in one call: the run store commits them as one transaction.
    ``emit_together`` below hands them to any sink, with or without it.
    """

    def emit(self, event: Event) -> None: ...


def emit_together(sink: EventSink, events: Sequence[Event]) -> None:
    """Hand ``events`` to ``sink`` in order: in one call if it takes them together."""
    together: Callable[[Sequence[Event]], None] | None = getattr(sink, "emit_together", None)
    if together is not None:
        together(events)
        return
    for event in events:
        sink.emit(event)


class FanOut:
    """An EventSink that hands every event to several sinks, in order.

    A sink that raises (a closed stdout pipe, a full disk) is dropped and its error
    kept in ``failures``: losing one view of the run must never crash a host or
    leave its remote backup running. The caller reports ``failures`` at the end.
    """

    __slots__ = ("_sinks", "failures")

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self._sinks = list(sinks)
        self.failures: list[tuple[EventSink, Exception]] = []

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception as exc:  # isolation: see the class docstring
                self._drop(sink, exc)

    def emit_together(self, events: Sequence[Event]) -> None:
        """Every sink takes ``events`` before the next one sees them (store first: recorded
        before reported), together where it can (``emit_together``)."""
        for sink in self._sinks:
            try:
                emit_together(sink, events)
            except Exception as exc:  # isolation: see the class docstring
                self._drop(sink, exc)

    def _drop(self, sink: EventSink, exc: Exception) -> None:
        self.failures.append((sink, exc))
        self._sinks = [s for s in self._sinks if s is not sink]


class RecordingSink:
    """Keeps every event in a list (tests, and the JSON summary)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
