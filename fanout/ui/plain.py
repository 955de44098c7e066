"""PlainSink: timestamped lines for batch runs and cron logs.

One line per host and step start and end, connection retries, cancel requests,
hosts that never started and the end of the run::

    2026-11-23T17:14:35Z erp-prod full started (attempt 1)
    2026-11-23T17:20:01Z erp-prod full ok 5m26s
    2026-11-23T17:20:13Z erp-prod archivelog FAILED 12s: ORA-19809: limit exceeded for …

Failures are upper case (``FAILED``) so ``grep FAILED`` finds them. With ``quiet``
only final failures are written (not an attempt that will be retried, nor the
end of a host whose failed steps were already written). The
summary (``ui.summary``: the line when quiet, the text otherwise) is the
caller's to print after the run, since it knows where the logs are.

Times are the events' own ``at`` in UTC (no clock of its own), so these lines
agree with the JSON output and the run store.

Every line is flushed at once (cron redirects to files). Never reads stdin.
Write errors (a closed pipe) propagate to the caller.
"""

from __future__ import annotations

from typing import TextIO, assert_never

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
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
)
from fanout.paths import host_log_name
from fanout.state import format_elapsed, format_instant

# Events whose line is never a final failure (see _describe): quiet mode skips them at once.
_NEVER_A_FAILURE: frozenset[type] = frozenset(
    {
        RunStarted,
        HostStarted,
        ConnectFailed,
        HostConnected,
        StepStarted,
        CancelRequested,
        RunFinished,
    }
)


def _status_word(status: str) -> str:
    """Failures shout; everything else stays lower case."""
    return status.upper() if status == StepStatus.FAILED else status


def _with_cause(text: str, cause: str | None) -> str:
    return f"{text}: {cause}" if cause else text


class PlainSink:
    """An EventSink writing one flushed line per notable event to ``stream``."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet

    def emit(self, event: Event) -> None:
        """Write the line for ``event``, if it has one. Raises what ``stream`` raises."""
        if type(event) is StepOutput:
            return  # no line; the bulk of the stream, so tested first
        if self._quiet and type(event) in _NEVER_A_FAILURE:
            return  # quiet mode writes failures only: not worth describing
        line, failure = self._describe(event)
        if line is not None and (failure or not self._quiet):
            self._write(event.at, line)

    def _write(self, at: float, text: str) -> None:
        self._stream.write(f"{format_instant(at)} {make_visible(text)}\n")
        self._stream.flush()

    def _describe(self, event: Event) -> tuple[str | None, bool]:
        """The line for ``event`` (None: no line) and whether it is a final failure
        (quiet mode writes only those)."""
        match event:
            case StepOutput():
                return None, False
            case RunStarted():
                hosts = len(event.hosts)
                text = (
                    f"fanout run {event.run_id} started: {hosts} host{'s' if hosts != 1 else ''}"
                    f" from {event.inventory}, at most {event.max_parallel} at once"
                )
                return text, False
            case HostStarted():
                return f"{event.host} connecting", False
            case ConnectFailed():
                then = "retrying" if event.will_retry else "giving up"
                text = f"{event.host} connect attempt {event.attempt} failed: {event.cause}; {then}"
                return text, False
            case HostConnected():
                if event.attempt == 1:
                    return None, False
                return f"{event.host} connected (attempt {event.attempt})", False
            case StepStarted():
                return f"{event.host} {event.step} started (attempt {event.attempt})", False
            case StepFinished():
                return self._step_finished(event)
            case HostFinished():
                return self._host_finished(event)
            case CancelRequested():
                return _cancel_text(event), False
            case OrphanUnconfirmed():
                return f"may still be running: {event.host} pgid {event.pgid} ({event.cause})", True
            case RunFinished():
                duration = format_elapsed(event.duration)
                text = f"fanout run {event.run_id} finished in {duration}, exit {event.exit_code}"
                return text, False
            case _:
                assert_never(event)

    @staticmethod
    def _step_finished(event: StepFinished) -> tuple[str, bool]:
        head = f"{event.host} {event.step} {_status_word(event.status)}"
        if event.status is StepStatus.SKIPPED:
            return head, False
        text = f"{head} {format_elapsed(event.duration)}"
        cause = event.cause
        if cause is None and event.status is StepStatus.FAILED and event.exit_status is not None:
            cause = f"exit status {event.exit_status}"
        text = _with_cause(text, cause)
        if event.will_retry:
            return f"{text} (will retry)", False
        return text, event.status is StepStatus.FAILED

    @staticmethod
    def _host_finished(event: HostFinished) -> tuple[str, bool]:
        if event.status is HostStatus.NOT_STARTED:
            if event.cause:  # the window refused it: a failure for the exit code, so shown
                return f"{event.host} NOT STARTED: {event.cause}", True
            return f"{event.host} not started", False
        text = f"{event.host} finished {_status_word(event.status)} in"
        text = _with_cause(f"{text} {format_elapsed(event.duration)}", event.cause)
        if event.detail:
            text += f" (traceback in {host_log_name(event.host)})"
        # quiet: a host that failed only through its steps adds nothing to their lines
        own = event.cause is not None or event.detail is not None
        return text, event.status is HostStatus.FAILED and own


def _cancel_text(event: CancelRequested) -> str:
    match event.reason:
        case CancelReason.OPERATOR:
            text = "cancel requested by the operator"
        case CancelReason.SIGINT | CancelReason.SIGTERM:
            text = f"cancel requested: {event.reason} received"
        case CancelReason.STORE:
            text = "stopping: the run store cannot record the run"
        case CancelReason.LEADERSHIP_LOST:
            text = "cluster leadership lost: stopping, another node takes over"
        case _:
            assert_never(event.reason)
    if event.forced:
        return f"{text}; forcing: running steps are killed now"
    return f"{text}; no new host starts, running steps are interrupted"
