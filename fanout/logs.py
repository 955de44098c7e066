"""LogSink: the full remote output of every step, one file per host and step.

Layout (see ``fanout.paths``)::

    <state_dir>/logs/<run-id>/<host>/<step>.log   every attempt, appended
    <state_dir>/logs/<run-id>/<host>/host.log     connection attempts, outcome, traceback

A step log holds, per attempt, a header, the output exactly as received (stderr
lines prefixed ``[stderr] ``) and a footer::

    ===== erp-prod full attempt 1 =====
    run:      20261123T171435Z-3f9a
    host:     erp-prod
    address:  erp-prod.example.com
    step:     full
    attempt:  1
    command:  ORACLE_SID=ERP … rman target /
    started:  2026-11-23T17:14:35Z
    -----
    …output…
    -----
    ended:    2026-11-23T17:20:01Z
    duration: 5m26s (326.0s)
    exit:     0
    status:   ok
    cause:    -

A retry appends a blank line and the next attempt's header to the same file.

Files are created 0600 and directories 0700. At most one file is open per
running step; output is buffered and flushed every ``flush_interval`` seconds (by
event time, and by the runner calling ``flush`` each second when output pauses) and
at every step boundary, so ``tail -f`` keeps up without a write per line and kill -9
loses at most the last second. host.log is opened, appended and closed per event.

Errors: an ``OSError`` (disk full, permissions) never propagates into the
engine: losing a log must not stop backups or leave rman running. The first
error is kept in ``LogSink.error``, every open file is closed and the sink
writes nothing more; the caller reports ``error`` once when the run ends.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, assert_never

from fanout.events import (
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
    Stream,
)
from fanout.paths import host_log_path, step_log_path
from fanout.state import format_elapsed, format_instant

FILE_MODE = 0o600
DIR_MODE = 0o700
STDERR_PREFIX = "[stderr] "
_RULE = "-----"
_KEY_WIDTH = 10  # "duration: " and the values after it line up


def _field(key: str, value: str) -> str:
    """``key:`` padded, then the value; continuation lines of a multi-line value indented."""
    lines = value.splitlines() or [""]
    indent = "\n" + " " * _KEY_WIDTH
    return f"{key + ':':<{_KEY_WIDTH}}{indent.join(lines)}".rstrip() + "\n"


@dataclass(slots=True)
class _OpenLog:
    file: TextIO
    flushed_at: float


class LogSink:
    """An EventSink writing step logs and host logs under ``state_dir``. See the module doc."""

    def __init__(self, state_dir: Path, *, flush_interval: float = 1.0) -> None:
        self.state_dir = state_dir
        self.flush_interval = flush_interval
        self.error: OSError | None = None  # the first write error; the sink is off after it
        self._addresses: dict[str, str] = {}
        self._open: dict[tuple[str, str], _OpenLog] = {}
        self._dirs: set[Path] = set()

    def emit(self, event: Event) -> None:
        """Write what ``event`` says to the files it concerns. Never raises OSError."""
        if self.error is not None:
            return
        try:
            self._write(event)
        except OSError as exc:
            self.error = exc
            self.close()

    def __enter__(self) -> LogSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write out what every open step log has buffered (the runner calls it each second)."""
        if self.error is not None:
            return
        try:
            for log in self._open.values():
                log.file.flush()
        except OSError as exc:
            self.error = exc
            self.close()

    def close(self) -> None:
        """Close every open step log (a footer notes the step had not finished). Idempotent."""
        while self._open:
            (host, step), log = self._open.popitem()
            with contextlib.suppress(OSError):
                log.file.write(f"{_RULE}\n(log closed before {host} {step} finished)\n")
            with contextlib.suppress(OSError):
                log.file.close()

    # ----------------------------------------------------------------- writing

    def _write(self, event: Event) -> None:
        match event:
            case StepOutput():
                self._output(event)
            case RunStarted():
                self._addresses = {host.name: host.address for host in event.hosts}
            case HostStarted():
                address = self._addresses.get(event.host, "?")
                self._host_line(event.run_id, event.host, event.at, f"connecting to {address}")
            case ConnectFailed():
                then = "will retry" if event.will_retry else "giving up"
                text = f"connect attempt {event.attempt} failed: {event.cause} ({then})"
                self._host_line(event.run_id, event.host, event.at, text)
            case HostConnected():
                text = f"connected (attempt {event.attempt})"
                self._host_line(event.run_id, event.host, event.at, text)
            case StepStarted():
                self._start_step(event)
            case StepFinished():
                self._finish_step(event)
            case HostFinished():
                self._finish_host(event)
            case CancelRequested():
                pass
            case OrphanUnconfirmed():
                text = f"may still be running: pgid {event.pgid} ({event.cause})"
                self._host_line(event.run_id, event.host, event.at, text)
            case RunFinished():
                self.close()
            case _:
                assert_never(event)

    def _start_step(self, event: StepStarted) -> None:
        key = (event.host, event.step)
        log = self._open.get(key)
        if log is None:
            path = step_log_path(self.state_dir, event.run_id, event.host, event.step)
            file = self._open_append(path)
            log = self._open[key] = _OpenLog(file, event.at)
            if os.fstat(file.fileno()).st_size:  # an earlier attempt's log: keep them apart
                log.file.write("\n")
        header = (
            f"===== {event.host} {event.step} attempt {event.attempt} =====\n"
            + _field("run", event.run_id)
            + _field("host", event.host)
            + _field("address", self._addresses.get(event.host, "?"))
            + _field("step", event.step)
            + _field("attempt", str(event.attempt))
            + _field("command", event.command)
            + (_field("detail", event.detail) if event.detail else "")
            + _field("started", format_instant(event.at))
            + f"{_RULE}\n"
        )
        log.file.write(header)
        log.file.flush()  # a step boundary: the header is on disk before rman starts
        log.flushed_at = event.at

    def _output(self, event: StepOutput) -> None:
        log = self._open.get((event.host, event.step))
        if log is None:  # output without a start: nothing sensible to attach it to
            return
        prefix = STDERR_PREFIX if event.stream is Stream.STDERR else ""
        log.file.write(f"{prefix}{event.line}\n")
        if event.at - log.flushed_at >= self.flush_interval:
            log.file.flush()
            log.flushed_at = event.at

    def _finish_step(self, event: StepFinished) -> None:
        if event.status is StepStatus.SKIPPED:
            skipped = f"{event.step} skipped" + (f": {event.cause}" if event.cause else "")
            self._host_line(event.run_id, event.host, event.at, skipped)
        log = self._open.pop((event.host, event.step), None)
        if log is None:
            return
        exit_status = "-" if event.exit_status is None else str(event.exit_status)
        status = f"{event.status} (will retry)" if event.will_retry else str(event.status)
        footer = (
            f"{_RULE}\n"
            + _field("ended", format_instant(event.at))
            + _field("duration", f"{format_elapsed(event.duration)} ({event.duration:.1f}s)")
            + _field("exit", exit_status)
            + _field("status", status)
            + _field("cause", event.cause or "-")
            + (_field("detail", event.detail) if event.detail else "")
        )
        try:
            log.file.write(footer)
        finally:
            log.file.close()

    def _finish_host(self, event: HostFinished) -> None:
        for key in [key for key in self._open if key[0] == event.host]:
            log = self._open.pop(key)
            with contextlib.suppress(OSError):
                log.file.write(f"{_RULE}\n(host finished before {key[1]} did)\n")
            log.file.close()
        if event.status is HostStatus.NOT_STARTED:
            return  # it never left the queue: no directory for it
        text = f"finished: {event.status} in {format_elapsed(event.duration)}"
        if event.cause:
            text += f": {event.cause}"
        if event.detail:
            text += "\n" + event.detail.rstrip("\n")
        self._host_line(event.run_id, event.host, event.at, text)

    def _host_line(self, run_id: str, host: str, at: float, text: str) -> None:
        path = host_log_path(self.state_dir, run_id, host)
        with self._open_append(path) as file:
            file.write(f"{format_instant(at)} {text}\n")

    # ------------------------------------------------------------- file system

    def _open_append(self, path: Path) -> TextIO:
        self._make_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        try:
            return open(fd, "a", encoding="utf-8", errors="replace")
        except BaseException:
            os.close(fd)
            raise

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and the missing ones above it, each 0700."""
        if directory in self._dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=DIR_MODE)
        self._dirs.add(directory)
