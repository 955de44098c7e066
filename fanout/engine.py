"""The orchestrator: priority dispatch, one TaskGroup per host, timeouts, retries, cancellation.

The only module that knows about order, concurrency and cancellation. It imports no
SSH, no UI and no storage: it talks to a ``Transport`` and emits events to one sink.

Dispatch: the targets come in dispatch order (``scheduler.dispatch_order``) and the
engine asks a ``scheduler.Dispatcher`` who may start whenever something changes (a host
ends, a queued host stops fitting the window): a host starts when ``max_parallel`` and
each of its capacity groups have a free slot, and a host that would not fit before the
deadline is not started. With a hard deadline the running hosts are stopped at the
deadline through their cancel tokens, like ``cancel HOST``. Inside a host the steps
run strictly in sequence inside the host's ``asyncio.TaskGroup``; each running step has a
guard (a timer and a token listener, no task) that enforces the step timeout and the
cancel token: when one fires, a task in the host's TaskGroup signals the remote process
group.

Remote work is never stopped with ``task.cancel()``: the guard sends SIGINT (rman's
own clean abort), SIGTERM after ``cancel_grace`` and SIGKILL ``kill_grace`` later;
a forced cancel goes straight to SIGKILL. Only local waits (a TCP/SSH handshake, a
backoff sleep) are interrupted by cancelling the waiting task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

from fanout.cancel import CancelToken
from fanout.errors import ConnectionLost, ExitCode, TransportError
from fanout.events import (
    CancelReason,
    ConnectFailed,
    Event,
    EventSink,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    OrphanUnconfirmed,
    PlannedHost,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
    Stream,
    emit_together,
)
from fanout.model import Host, OnFailure, StepKind, format_duration
from fanout.rman import Transcript, step_cause
from fanout.scheduler import Deadline, Dispatcher, Job, Limits, host_expected, with_duration
from fanout.steps import WARNING_PREFIX, RenderedStep
from fanout.transport.base import OrphanWatch, RemoteProcess, RemoteSignal, Session, Transport

# what a fired token's reason makes the run's exit code
_CANCEL_EXIT = {
    CancelReason.OPERATOR: ExitCode.CANCELLED,
    CancelReason.SIGINT: ExitCode.CANCELLED,
    CancelReason.SIGTERM: ExitCode.TERMINATED,
    CancelReason.STORE: ExitCode.IO_ERROR,
    CancelReason.LEADERSHIP_LOST: ExitCode.FENCED,  # cluster mode: another node continues
}


@dataclass(frozen=True, slots=True)
class Target:
    """One host and the rendered steps to run on it, in order.

    ``when``: the host's condition command (run once, before its first step; exit 1 skips
    every step). ``succeeded_before``: steps that already succeeded in the run being
    resumed, which satisfy a ``requires`` like a success in this run.
    """

    host: Host
    steps: tuple[RenderedStep, ...]
    when: str | None = None
    succeeded_before: frozenset[str] = frozenset()
    # -- the backup window (scheduler.py) --
    expected: tuple[float | None, ...] = ()  # per step, seconds from history (None: none)
    window_steps: frozenset[str] = frozenset()  # RMAN steps given DURATION hh:mm PARTIAL

    def job(self, index: int) -> Job:
        """This target as the scheduler sees it; ``index`` breaks ties (file order)."""
        host = self.host
        return Job(host.name, host.priority, index, host.groups, host_expected(self.expected))


@dataclass(frozen=True, slots=True)
class StepResult:
    status: StepStatus
    exit_status: int | None
    cause: str | None
    connection_lost: bool = False
    warnings: tuple[str, ...] = ()  # "fanout: warning: …" lines the remote command printed


CONDITION_FALSE = "condition false"  # the cause of a step skipped by its `when:`


class _Interrupted(Exception):
    """The cancel token fired during a local wait."""


class Engine:
    """Runs ``targets`` (already in dispatch order) and returns the exit code.

    ``clock`` is monotonic (durations, deadlines), ``wall`` is epoch time for events.
    """

    def __init__(
        self,
        *,
        run_id: str,
        inventory: str,
        targets: Sequence[Target],
        transport: Transport,
        sink: EventSink,
        token: CancelToken,
        max_parallel: int,
        cancel_grace: float,
        kill_grace: float = 5.0,
        connect_backoff: float = 1.0,
        retry_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        meta: RunMeta | None = None,
        orphans: OrphanWatch | None = None,
        groups: Mapping[str, int] | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.run_id = run_id
        self._meta = meta or RunMeta()
        self._inventory = inventory
        self._targets = tuple(targets)
        self._transport = transport
        self._sink = sink
        self._token = token
        self._max_parallel = max_parallel
        self._cancel_grace = cancel_grace
        self._kill_grace = kill_grace
        self._connect_backoff = connect_backoff
        self._retry_delay = retry_delay
        self._clock = clock
        self._wall = wall
        self._host_status: dict[str, HostStatus] = {}
        self._orphans = orphans  # remote groups a lost connection left: waited for at the end
        self._unconfirmed = 0
        self._groups = dict(groups or {})
        self._deadline = deadline  # on the ``wall`` clock
        self._wake = asyncio.Event()  # a host ended or was cancelled while queued
        self._started: set[str] = set()
        self._past_deadline: set[str] = set()  # hosts stopped by the hard deadline
        # One token per host: the run's token fans out to all of them, and
        # cancel_host() fires just one (the live table's `cancel HOST`).
        self._host_tokens = {t.host.name: CancelToken() for t in self._targets}
        token.add_listener(self._fan_out_cancel)

    # ---------------------------------------------------------------- run

    async def run(self) -> int:
        """Dispatch every target, wait for all of them, emit RunFinished, return the exit code.

        On cancellation (the token) it dispatches nothing more and waits for the running
        hosts to stop their remote work; it never abandons a host.
        """
        started = self._clock()
        self._sink.emit(
            RunStarted(
                run_id=self.run_id,
                inventory=self._inventory,
                hosts=tuple(
                    PlannedHost(
                        name=t.host.name,
                        priority=t.host.priority,
                        oracle_sid=t.host.oracle_sid,
                        address=t.host.address,
                        steps=tuple(s.name for s in t.steps),
                        database=t.host.database_key,
                        levels=tuple(s.level for s in t.steps),
                        groups=t.host.groups,
                        expected=t.expected,
                    )
                    for t in self._targets
                ),
                max_parallel=self._max_parallel,
                at=self._wall(),
                meta=self._meta,
                groups=tuple(self._groups.items()),
                deadline=self._deadline.at if self._deadline else None,
                deadline_label=self._deadline.label if self._deadline else None,
            )
        )
        hard = None
        if self._deadline is not None and self._deadline.hard:
            hard = asyncio.get_running_loop().create_task(self._hard_deadline(self._deadline))
        try:
            async with asyncio.TaskGroup() as hosts:
                await self._dispatch(hosts)
        finally:
            if hard is not None:
                hard.cancel()  # a local timer: nothing remote to stop
        if self._orphans is not None:  # bounded by the transport's orphan_timeout
            for orphan in await self._orphans.wait_orphans():
                self._unconfirmed += 1
                self._sink.emit(
                    OrphanUnconfirmed(
                        self.run_id, orphan.host, orphan.pgid, orphan.reason, self._wall()
                    )
                )
        exit_code = self.exit_code()
        self._sink.emit(
            RunFinished(
                run_id=self.run_id,
                exit_code=exit_code,
                cancelled=self._token.reason if self._token.fired else None,
                duration=self._clock() - started,
                at=self._wall(),
            )
        )
        return exit_code

    async def _dispatch(self, hosts: asyncio.TaskGroup) -> None:
        """Start hosts as the Dispatcher allows until none is queued or the token fires.

        Wakes when a host ends, a queued host is cancelled, the token fires or a queued
        host stops fitting the window. Whatever is still queued at the end is not started.
        """
        by_name = {t.host.name: t for t in self._targets}
        dispatcher = Dispatcher(
            [t.job(i) for i, t in enumerate(self._targets)],
            Limits(self._max_parallel, self._groups),
            deadline=self._deadline,
        )
        while not self._token.fired:
            self._wake.clear()
            for job in dispatcher.queued:
                if self._host_tokens[job.name].fired:  # `cancel HOST` while it was queued
                    dispatcher.drop(job.name)
                    self._finish_host(job.name, HostStatus.NOT_STARTED, None, 0.0)
            now = self._wall()
            starts, refusals = dispatcher.poll(now)
            for refusal in refusals:
                self._finish_host(refusal.job.name, HostStatus.NOT_STARTED, refusal.reason, 0.0)
            for job in starts:
                self._started.add(job.name)
                hosts.create_task(
                    self._host_in_slot(by_name[job.name], dispatcher), name=f"host:{job.name}"
                )
            if not len(dispatcher):
                return
            change = dispatcher.next_change(now)
            within = None if change is None else max(0.0, change - now)
            await _wait_any((self._wake.wait(), self._token.wait()), within=within)
        for job in dispatcher.queued:
            self._finish_host(job.name, HostStatus.NOT_STARTED, None, 0.0)

    async def _host_in_slot(self, target: Target, dispatcher: Dispatcher) -> None:
        try:
            await self._run_host(target)
        finally:
            dispatcher.finished(target.host.name)
            self._wake.set()

    async def _hard_deadline(self, deadline: Deadline) -> None:
        """At the deadline, stop every started host that has not finished (its token fires,
        exactly like ``cancel HOST``); the dispatcher refuses what is still queued."""
        await asyncio.sleep(max(0.0, deadline.at - self._wall()))
        for name in sorted(self._started):
            if name not in self._host_status:
                self._past_deadline.add(name)
                self._host_tokens[name].cancel(CancelReason.OPERATOR)
        self._wake.set()

    def cancel_host(self, name: str, reason: CancelReason = CancelReason.OPERATOR) -> bool:
        """Stop one host as the run's token would (a second call forces). False if unknown."""
        host_token = self._host_tokens.get(name)
        if host_token is None or name in self._host_status:
            return False
        host_token.cancel(reason)
        self._wake.set()
        return True

    def _fan_out_cancel(self, reason: CancelReason, forced: bool) -> None:
        for host_token in self._host_tokens.values():
            if forced:
                host_token.force(reason)
            elif not host_token.fired:
                host_token.cancel(reason)

    def exit_code(self) -> ExitCode:
        if self._token.fired and self._token.reason is not None:
            return _CANCEL_EXIT[self._token.reason]
        if self._unconfirmed or any(s is not HostStatus.OK for s in self._host_status.values()):
            return ExitCode.FAILED  # a backup failed, or one may still be running
        return ExitCode.OK

    # --------------------------------------------------------------- host

    async def _run_host(self, target: Target) -> None:
        """The isolation boundary: whatever happens here ends as this host's outcome."""
        name = target.host.name
        token = self._host_tokens[name]
        started = self._clock()
        self._sink.emit(HostStarted(self.run_id, name, at=self._wall()))
        reported: dict[str, StepStatus] = {}
        cause: str | None = None
        detail: str | None = None
        try:
            cause = await self._run_steps(target, reported, token)
        except Exception as exc:  # isolation boundary: one host never sinks another
            cause = f"internal error: {_describe(exc)}"
            detail = "".join(traceback.format_exception(exc))
        for step in target.steps:  # anything not reported never ran
            if step.name not in reported:
                self._finish_step(
                    name,
                    step.name,
                    0,
                    StepResult(StepStatus.SKIPPED, None, None),
                    0.0,
                    detail=step.detail,
                )
                reported[step.name] = StepStatus.SKIPPED
        statuses = set(reported.values())
        if cause is not None or StepStatus.FAILED in statuses:
            status = HostStatus.FAILED
        elif StepStatus.CANCELLED in statuses or (token.fired and StepStatus.SKIPPED in statuses):
            status = HostStatus.CANCELLED
        else:
            status = HostStatus.OK
        self._finish_host(name, status, cause, self._clock() - started, detail)

    async def _run_steps(
        self, target: Target, reported: dict[str, StepStatus], token: CancelToken
    ) -> str | None:
        """Connect, run the steps in sequence; return a host-level failure cause or None."""
        host = target.host
        held = _Held(self._sink)
        async with AsyncExitStack() as stack, asyncio.TaskGroup() as group:
            session: Session | None = None
            stop = False
            host_when = target.when
            try:
                for step in target.steps:
                    if stop or token.fired:
                        break
                    unmet = _unmet(step, reported, target.succeeded_before)
                    if unmet is not None:
                        held.release()
                        skipped = StepResult(StepStatus.SKIPPED, None, unmet)
                        self._finish_step(host.name, step.name, 0, skipped, 0.0, detail=step.detail)
                        reported[step.name] = StepStatus.SKIPPED
                        continue
                    skip: StepResult | None = None
                    for by_host, condition in ((True, host_when), (False, step.when)):
                        if condition is None:
                            continue
                        held.release()  # an await follows
                        if session is None:
                            session = await self._connect(host, stack, token)
                        started = self._clock()
                        skip = await self._check(group, session, host, step, condition, token)
                        if skip is not None and skip.connection_lost:
                            session = None
                        if by_host:  # the host's condition runs once, before its first step
                            host_when = None
                        if skip is not None:
                            attempt = 0 if skip.status is StepStatus.SKIPPED else 1
                            duration = self._clock() - started
                            self._finish_step(
                                host.name, step.name, attempt, skip, duration, detail=step.detail
                            )
                            reported[step.name] = skip.status
                            break
                    if skip is not None:
                        if skip.status is StepStatus.CANCELLED:
                            stop = True
                        elif by_host:
                            # the host's condition: false or broken, none of its steps run
                            for later in target.steps:
                                if later.name not in reported and skip.cause == CONDITION_FALSE:
                                    self._finish_step(
                                        host.name, later.name, 0, skip, 0.0, detail=later.detail
                                    )
                                    reported[later.name] = StepStatus.SKIPPED
                            stop = True
                        continue
                    for attempt in range(1, step.retries + 2):
                        if session is None:
                            held.release()  # an await follows
                            session = await self._connect(host, stack, token)
                        started = self._clock()
                        held.emit(  # with the step before's end, if held: one commit
                            StepStarted(
                                self.run_id,
                                host.name,
                                step.name,
                                attempt,
                                step.command,
                                self._wall(),
                                step.detail,
                            )
                        )
                        windowed = self._in_window(target, step)
                        result = await self._run_step(group, session, host, windowed, token)
                        if result.connection_lost:
                            session = None  # reconnect for what follows
                        will_retry = (
                            result.status is StepStatus.FAILED
                            and attempt <= step.retries
                            and not token.fired
                        )
                        detail = "; ".join(
                            part for part in (step.detail, *result.warnings) if part is not None
                        )
                        self._finish_step(
                            host.name,
                            step.name,
                            attempt,
                            result,
                            self._clock() - started,
                            will_retry,
                            detail=detail or None,
                            to=None if will_retry else held.hold,  # no await before the next event
                        )
                        if not will_retry:
                            reported[step.name] = result.status
                            break
                        try:
                            await self._sleep(self._retry_delay, token)
                        except _Interrupted:
                            reported[step.name] = result.status
                            break
                    status = reported.get(step.name)
                    if status is StepStatus.FAILED and step.on_failure is OnFailure.STOP:
                        stop = True
                    if status is StepStatus.CANCELLED:
                        stop = True
            except _Interrupted:  # the token fired while connecting: nothing runs remotely
                return None
            except TransportError as exc:  # could not (re)connect
                return exc.reason
            finally:
                held.release()  # before the session closes (an await)
        return None

    async def _check(
        self,
        group: asyncio.TaskGroup,
        session: Session,
        host: Host,
        step: RenderedStep,
        condition: str,
        token: CancelToken,
    ) -> StepResult | None:
        """Run a ``when:`` condition for ``step``: None when it holds (exit 0).

        Otherwise the step's result: skipped with ``condition false`` (exit 1), failed
        with the condition's cause (any other exit, a timeout after the step's timeout, a
        lost connection), or cancelled. Stopped like a step when the token fires.
        """
        probe = replace(step, kind=StepKind.SHELL, command=condition, stdin=None)
        result = await self._run_step(group, session, host, probe, token)
        if result.status is StepStatus.OK:
            return None
        if result.status is StepStatus.FAILED and result.exit_status == 1:
            return StepResult(StepStatus.SKIPPED, None, CONDITION_FALSE)
        if result.status is StepStatus.FAILED:
            return replace(result, cause=f"condition: {result.cause}")
        return result

    def _in_window(self, target: Target, step: RenderedStep) -> RenderedStep:
        """``step`` with DURATION hh:mm PARTIAL (the time left) if it opted in to the window."""
        if self._deadline is None or step.name not in target.window_steps or step.stdin is None:
            return step
        left = self._deadline.at - self._wall()
        return replace(step, stdin=with_duration(step.stdin, left))

    async def _connect(self, host: Host, stack: AsyncExitStack, token: CancelToken) -> Session:
        """Open the host's connection, retrying transient failures with backoff.

        Raises the last TransportError, or _Interrupted if the token fires (the handshake
        in flight is abandoned: nothing runs remotely yet).
        """
        attempts = host.connect_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                async with self._interruptible(token):
                    session = await stack.enter_async_context(self._transport.open_session(host))
            except TransportError as exc:
                will_retry = exc.retryable and attempt < attempts and not token.fired
                self._sink.emit(
                    ConnectFailed(
                        self.run_id, host.name, attempt, exc.reason, will_retry, self._wall()
                    )
                )
                if not will_retry:
                    raise
                await self._sleep(self._connect_backoff * 2 ** (attempt - 1), token)
                continue
            self._sink.emit(HostConnected(self.run_id, host.name, attempt, self._wall()))
            return session
        raise AssertionError("unreachable")  # pragma: no cover

    # --------------------------------------------------------------- step

    async def _run_step(
        self,
        group: asyncio.TaskGroup,
        session: Session,
        host: Host,
        step: RenderedStep,
        token: CancelToken,
    ) -> StepResult:
        """Run one attempt of ``step``; a failure is a value, never an exception.

        If this task is cancelled (a sibling crashed), the remote process group is killed
        (shielded) before the cancellation propagates.
        """
        if token.fired:
            return StepResult(StepStatus.CANCELLED, None, None)
        try:
            proc = await session.start(step.command, step.stdin)
        except ConnectionLost as exc:
            return StepResult(StepStatus.FAILED, None, exc.reason, connection_lost=True)
        transcript = Transcript()
        last_stderr: list[str] = []
        warnings: list[str] = []
        guard = _Guard(group, proc, step.timeout, token, self._cancel_grace, self._kill_grace)
        try:
            await self._pump(proc, host.name, step.name, transcript, last_stderr, warnings)
        except BaseException as exc:
            guard.disarm()
            if not isinstance(exc, Exception):  # cancelled while the step still runs
                await asyncio.shield(self._kill_quietly(proc))
            raise
        exit_status: int | None = None
        lost: str | None = None
        try:
            exit_status = await proc.wait()
        except ConnectionLost as exc:
            lost = exc.reason
        finally:
            guard.disarm()
        await guard.wait_stopped()
        if lost is not None:
            return StepResult(StepStatus.FAILED, None, lost, connection_lost=True)
        assert exit_status is not None
        if guard.reason == "cancelled":
            if exit_status == 0 and not transcript.failed:
                return StepResult(
                    StepStatus.OK, exit_status, None
                )  # finished before the signal landed
            if host.name in self._past_deadline and self._deadline is not None:
                why = f"stopped at the end of the window ({self._deadline.label})"
                return StepResult(StepStatus.CANCELLED, exit_status, why)
            return StepResult(StepStatus.CANCELLED, exit_status, "cancelled by operator")
        if guard.reason is not None:
            return StepResult(
                StepStatus.FAILED, exit_status, f"timeout after {format_duration(step.timeout)}"
            )
        found = tuple(warnings)
        if exit_status == 0 and not transcript.failed:
            return StepResult(StepStatus.OK, exit_status, None, warnings=found)
        if step.empty_ok and transcript.nothing_to_backup:
            return StepResult(
                StepStatus.OK, exit_status, None, warnings=found
            )  # nothing matched: fine here
        cause = step_cause(exit_status, transcript, last_stderr[0] if last_stderr else None)
        return StepResult(StepStatus.FAILED, exit_status, cause, warnings=found)

    async def _pump(
        self,
        proc: RemoteProcess,
        host: str,
        step: str,
        transcript: Transcript,
        last_stderr: list[str],
        warnings: list[str],
    ) -> None:
        emit = self._sink.emit
        feed = transcript.feed_lines
        wall = self._wall
        run_id = self.run_id
        stderr = Stream.STDERR
        try:
            async for batch in proc.batches():
                at = wall()  # the lines of a batch arrived together
                lines = batch.lines
                feed(lines)
                if batch.stream is stderr:
                    for text in reversed(lines):
                        if stripped := text.strip():
                            last_stderr[:] = [stripped]
                            break
                elif len(warnings) < 5:  # bounded: remote text
                    warnings += [
                        "warning: " + text[len(WARNING_PREFIX) :].strip()
                        for text in lines
                        if text.startswith(WARNING_PREFIX)
                    ][: 5 - len(warnings)]
                progress = transcript.progress or ""  # travels with the lines: no second parse
                emit(StepOutput(run_id, host, step, batch.stream, lines, at, progress))
        except ConnectionLost:
            return  # wait() reports it, after making sure the remote group is stopped

    async def _kill_quietly(self, proc: RemoteProcess) -> None:
        with contextlib.suppress(Exception):
            await proc.signal(RemoteSignal.KILL)

    # -------------------------------------------------------------- utils

    def _finish_step(
        self,
        host: str,
        step: str,
        attempt: int,
        result: StepResult,
        duration: float,
        will_retry: bool = False,
        *,
        detail: str | None = None,
        to: Callable[[StepFinished], None] | None = None,
    ) -> None:
        """Emit the step's ``StepFinished`` (or hand it ``to``, e.g. ``_Held.hold``)."""
        (to or self._sink.emit)(
            StepFinished(
                run_id=self.run_id,
                host=host,
                step=step,
                attempt=attempt,
                status=result.status,
                exit_status=result.exit_status,
                cause=result.cause,
                duration=duration,
                will_retry=will_retry,
                at=self._wall(),
                detail=detail,
            )
        )

    def _finish_host(
        self,
        host: str,
        status: HostStatus,
        cause: str | None,
        duration: float,
        detail: str | None = None,
    ) -> None:
        self._host_status[host] = status
        self._sink.emit(
            HostFinished(self.run_id, host, status, cause, duration, detail, self._wall())
        )

    async def _sleep(self, seconds: float, token: CancelToken) -> None:
        """Sleep, unless ``token`` fires first (then raise _Interrupted)."""
        async with self._interruptible(token):
            await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def _interruptible(self, token: CancelToken) -> AsyncIterator[None]:
        """Turn the token firing into _Interrupted for a purely local wait in this block.

        The waiting task is cancelled only while it is suspended inside the block (the token
        listener defers to a callback on the loop, and ``active`` is cleared on the way out),
        so no stray cancellation ever leaks past it. No task is started for the watch.
        """
        if token.fired:
            raise _Interrupted
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        active = True
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            if active and not interrupted:
                interrupted = True
                task.cancel()

        def on_token(_reason: CancelReason, _forced: bool) -> None:
            loop.call_soon(interrupt)  # runs between task steps: the task is suspended

        token.add_listener(on_token)
        try:
            yield
        except asyncio.CancelledError:
            if interrupted and task.uncancel() == 0:
                raise _Interrupted from None
            raise
        finally:
            active = False
            token.remove_listener(on_token)
        if interrupted:  # the block swallowed our cancellation and finished anyway
            task.uncancel()


async def _wait_any(aws: Sequence[Coroutine[Any, Any, object]], within: float | None) -> bool:
    """Wait until one coroutine completes or ``within`` seconds pass; True if one completed."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    return bool(done)


class _Held:
    """A host's ``StepFinished``, held back to reach the sinks in one call with the host's
    next event (``emit_together``): the run store then commits a step's end and the next
    step's start as one transaction. ``_run_steps`` holds it only across code that does not
    await and releases it before anything else of the host is emitted, before every await
    and on every exit, so every sink gets it before anything can follow from it."""

    __slots__ = ("_event", "_sink")

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._event: StepFinished | None = None

    def hold(self, event: StepFinished) -> None:
        assert self._event is None, "a StepFinished is already held"
        self._event = event

    def emit(self, event: Event) -> None:
        """Emit ``event``, with the held one before it if any."""
        if self._event is None:
            self._sink.emit(event)
            return
        held, self._event = self._event, None
        emit_together(self._sink, (held, event))

    def release(self) -> None:
        """Emit the held event now, if any."""
        if self._event is not None:
            held, self._event = self._event, None
            self._sink.emit(held)


class _Guard:
    """Stops a step's remote process group when the token fires or the step times out.

    Armed with a timer and a token listener, so a step that ends normally costs no task:
    only when one of them fires does a task (in the host's TaskGroup) send SIGINT, SIGTERM
    after ``cancel_grace`` and SIGKILL ``kill_grace`` later; a forced token skips straight
    to SIGKILL. ``reason`` is then "cancelled" or "timeout". ``disarm`` once the process
    has exited (or the step is being torn down).
    """

    __slots__ = ("_grace", "_group", "_proc", "_timer", "_token", "_wake", "done", "reason", "task")

    def __init__(
        self,
        group: asyncio.TaskGroup,
        proc: RemoteProcess,
        limit: float,
        token: CancelToken,
        cancel_grace: float,
        kill_grace: float,
    ) -> None:
        self._group = group
        self._proc = proc
        self._token = token
        self._grace = (cancel_grace, kill_grace)
        self._wake: asyncio.Event | None = None  # exited or forced, while stopping
        self._timer: asyncio.TimerHandle | None = None
        self.done = False  # disarmed: the process has exited or the step is torn down
        self.reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        token.add_listener(self._on_token)
        if token.fired:
            self._fire("cancelled")
        else:
            self._timer = asyncio.get_running_loop().call_later(limit, self._fire, "timeout")

    def _on_token(self, _reason: CancelReason, forced: bool) -> None:
        if self.reason is None:
            self._fire("cancelled")
        elif forced and self._wake is not None:
            self._wake.set()  # go on to SIGKILL now

    def _fire(self, reason: str) -> None:
        if self.done or self.reason is not None:
            return
        self.reason = reason
        if self._timer is not None:
            self._timer.cancel()
        self._wake = asyncio.Event()
        stop = self._stop(self._wake)
        try:
            self.task = self._group.create_task(stop)
        except RuntimeError:  # the TaskGroup is shutting down: the step's task is being
            stop.close()  # cancelled, and kills the remote group itself (shielded)

    async def _stop(self, wake: asyncio.Event) -> None:
        proc, token = self._proc, self._token
        cancel_grace, kill_grace = self._grace
        plan = (
            (RemoteSignal.INT, cancel_grace),
            (RemoteSignal.TERM, kill_grace),
            (RemoteSignal.KILL, None),
        )
        for sig, grace in plan:
            if self.done:
                return
            if token.forced and sig is not RemoteSignal.KILL:
                continue
            await proc.signal(sig)
            if grace is None:
                break
            if not token.forced:  # forced while this signal was sent: on to SIGKILL at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await wake.wait()

    def disarm(self) -> None:
        if self.done:
            return
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
        self._token.remove_listener(self._on_token)
        if self._wake is not None:
            self._wake.set()

    async def wait_stopped(self) -> None:
        """Until the signalling task (if one started) has finished."""
        if self.task is not None:
            await self.task


def _unmet(
    step: RenderedStep, reported: dict[str, StepStatus], before: frozenset[str]
) -> str | None:
    """Why ``step`` cannot run for its ``requires`` (``backup failed``), or None."""
    for name in step.requires:
        status = reported.get(name)
        if name in before or status is StepStatus.OK:
            continue
        return f"{name} {status.value}" if status is not None else f"{name} did not run"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}"
