"""Hand-built event sequences for sink and view tests (state, logs, plain, JSON, summary, live).

A ``Run`` keeps a fake wall clock that only moves when told (``after=`` on each
call, or ``advance``), so every timestamp and duration in a test is exact::

    run = Run(hosts=[planned("erp-prod"), planned("crm-prod", priority=2)])
    run.host_ok("erp-prod", full=326, archivelog=41, controlfile=3)
    run.host_not_started("crm-prod")
    run.finish(exit_code=0)
    feed(sink, run.events)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from fanout.events import (
    CancelReason,
    CancelRequested,
    ConnectFailed,
    Event,
    EventSink,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
    Stream,
)

T0 = 1795454075.0  # 2026-11-23T17:14:35Z
RUN_ID = "20261123T171435Z-3f9a"
STEPS = ("full", "archivelog", "controlfile")


def planned(
    name: str,
    *,
    priority: int = 1,
    sid: str | None = None,
    address: str | None = None,
    steps: Sequence[str] = STEPS,
) -> PlannedHost:
    """A PlannedHost with defaults derived from the name (sid ``ERP_PROD``, ``<name>.example``)."""
    return PlannedHost(
        name=name,
        priority=priority,
        oracle_sid=sid if sid is not None else name.upper().replace("-", "_"),
        address=address if address is not None else f"{name}.example",
        steps=tuple(steps),
    )


def feed(sink: EventSink, events: Iterable[Event]) -> None:
    for event in events:
        sink.emit(event)


class Run:
    """Builds one run's events in order; ``events`` is the list so far."""

    def __init__(
        self,
        hosts: Sequence[PlannedHost],
        *,
        run_id: str = RUN_ID,
        inventory: str = "nightly.yaml",
        max_parallel: int = 8,
        start: float = T0,
        meta: RunMeta | None = None,
    ) -> None:
        self.run_id = run_id
        self.now = start
        self.start = start
        self.hosts = {host.name: host for host in hosts}
        self.events: list[Event] = [
            RunStarted(run_id, inventory, tuple(hosts), max_parallel, start, meta or RunMeta())
        ]
        self._host_started: dict[str, float] = {}

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def _add(self, event: Event) -> Event:
        self.events.append(event)
        return event

    # --------------------------------------------------------------- low level

    def host_started(self, host: str, *, after: float = 0.0) -> None:
        self._host_started[host] = self.advance(after)
        self._add(HostStarted(self.run_id, host, self.now))

    def connect_failed(
        self,
        host: str,
        cause: str,
        *,
        attempt: int = 1,
        will_retry: bool = True,
        after: float = 0.0,
    ) -> None:
        self._add(ConnectFailed(self.run_id, host, attempt, cause, will_retry, self.advance(after)))

    def connected(self, host: str, *, attempt: int = 1, after: float = 0.0) -> None:
        self._add(HostConnected(self.run_id, host, attempt, self.advance(after)))

    def step_started(
        self,
        host: str,
        step: str,
        *,
        attempt: int = 1,
        command: str | None = None,
        after: float = 0.0,
    ) -> None:
        command = command if command is not None else f"rman target / # {step}"
        self._add(StepStarted(self.run_id, host, step, attempt, command, self.advance(after)))

    def output(
        self, host: str, step: str, *lines: str, stream: Stream = Stream.STDOUT, after: float = 0.0
    ) -> None:
        for line in lines:
            self._add(StepOutput(self.run_id, host, step, stream, (line,), self.advance(after)))

    def step_finished(
        self,
        host: str,
        step: str,
        status: StepStatus,
        *,
        duration: float = 0.0,
        attempt: int = 1,
        exit_status: int | None = None,
        cause: str | None = None,
        will_retry: bool = False,
    ) -> None:
        """Moves the clock by ``duration`` (measured from the attempt's start)."""
        if exit_status is None and status in (StepStatus.OK, StepStatus.FAILED):
            exit_status = 0 if status is StepStatus.OK else 1
        at = self.advance(duration)
        self._add(
            StepFinished(
                self.run_id,
                host,
                step,
                attempt,
                status,
                exit_status,
                cause,
                duration,
                will_retry,
                at,
            )
        )

    def skipped(self, host: str, *steps: str) -> None:
        for step in steps:
            self._add(
                StepFinished(
                    self.run_id, host, step, 0, StepStatus.SKIPPED, None, None, 0.0, False, self.now
                )
            )

    def host_finished(
        self,
        host: str,
        status: HostStatus,
        *,
        cause: str | None = None,
        detail: str | None = None,
        after: float = 0.0,
    ) -> None:
        at = self.advance(after)
        duration = at - self._host_started.get(host, at)
        self._add(HostFinished(self.run_id, host, status, cause, duration, detail, at))

    def cancel(
        self,
        reason: CancelReason = CancelReason.OPERATOR,
        *,
        forced: bool = False,
        after: float = 0.0,
    ) -> None:
        self._add(CancelRequested(self.run_id, reason, forced, self.advance(after)))

    def finish(
        self, exit_code: int, *, cancelled: CancelReason | None = None, after: float = 0.0
    ) -> None:
        at = self.advance(after)
        self._add(RunFinished(self.run_id, exit_code, cancelled, at - self.start, at))

    # --------------------------------------------------------------- whole hosts

    def step_ok(self, host: str, step: str, duration: float, *lines: str) -> None:
        """StepStarted, one StepOutput per line, StepFinished(ok) after ``duration``."""
        self.step_started(host, step)
        self.output(host, step, *lines)
        self.step_finished(host, step, StepStatus.OK, duration=duration)

    def host_ok(self, host: str, **durations: float) -> None:
        """Start, connect, every step ok with the given durations (1s if not given), finish ok."""
        self.host_started(host)
        self.connected(host)
        for step in self.hosts[host].steps:
            self.step_ok(host, step, durations.get(step, 1.0))
        self.host_finished(host, HostStatus.OK)

    def host_not_started(self, host: str) -> None:
        self._add(
            HostFinished(self.run_id, host, HostStatus.NOT_STARTED, None, 0.0, None, self.now)
        )


def with_meta(
    events: Sequence[Event],
    inventory: object,
    sha256: str | None,
    argv: Sequence[str],
    *,
    resumed_from: str | None = None,
) -> list[Event]:
    """``events`` with their RunStarted naming ``inventory`` and carrying the run's metadata,
    as the runner sends it (the store records both from that event)."""
    first, *rest = events
    assert isinstance(first, RunStarted)
    meta = RunMeta(sha256, tuple(argv), resumed_from)
    return [replace(first, inventory=str(inventory), meta=meta), *rest]
