"""LogSink: the full remote output of every step, one file per host and run.

Layout (see ``fanout.paths``)::

    <state_dir>/logs/<run-id>/<host>.log   connection attempts, outcome, every step attempt

A host's log holds its timestamped lines (connection attempts, skipped steps, the
outcome, fanout's own traceback if it crashed) and, in between, one section per
step attempt: a header, the output exactly as received (stderr lines prefixed
``[stderr] ``) and a footer, with a blank line before and after::

    2026-11-23T17:14:35Z connecting to erp-prod.example.com
    2026-11-23T17:14:35Z connected (attempt 1)

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

    2026-11-23T17:20:01Z finished: ok in 5m26s

A retry is the next section, ``attempt 2``. ``step_sections`` reads one step's
sections back out of a host's log. Earlier releases wrote
``<run-id>/<host>/<step>.log`` and ``<run-id>/<host>/host.log``; readers accept both
(``fanout.paths``).

Files are created 0600 and directories 0700. Steps of one host run in sequence, so
one file is open per running host, from its first line to its outcome; output is
buffered and flushed every ``flush_interval`` seconds (by event time, and by the
runner calling ``flush`` each second when output pauses) and at every step boundary
and host line, so ``tail -f`` keeps up without a write per line and kill -9 loses at
most the last second (plus the transport's 0.1 s output tick, ``framing.OUTPUT_TICK``).

Errors: an ``OSError`` (disk full, permissions) never propagates into the
engine: losing a log must not stop backups or leave rman running. The first
error is kept in ``LogSink.error``, every open file is closed and the sink
writes nothing more; the caller reports ``error`` once when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
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
from fanout.paths import host_log_path
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
class _HostLog:
    file: TextIO
    flushed_at: float
    empty: bool  # nothing in the file yet: no blank line before a first section
    step: str | None = None  # the step whose section is open
    after_section: bool = False  # a blank line goes before the next host line
    held: list[str] = field(default_factory=list)  # host lines that came mid-section


class LogSink:
    """An EventSink writing one log per host under ``state_dir``. See the module doc."""

    def __init__(self, state_dir: Path, *, flush_interval: float = 1.0) -> None:
        self.state_dir = state_dir
        self.flush_interval = flush_interval
        self.error: OSError | None = None  # the first write error; the sink is off after it
        self._addresses: dict[str, str] = {}
        self._open: dict[str, _HostLog] = {}
        self._dirs: set[Path] = set()

    def emit(self, event: Event) -> None:
        """Write what ``event`` says to the file it concerns. Never raises OSError."""
        if self.error is not None:
            return
        try:
            if type(event) is StepOutput:  # ~95 % of events: the shortest path
                log = self._open.get(event.host)
                if log is None or log.step != event.step:
                    return  # output without a start: nothing sensible to attach it to
                if event.stream is Stream.STDERR:
                    log.file.write("".join(f"{STDERR_PREFIX}{line}\n" for line in event.lines))
                else:
                    log.file.write("\n".join(event.lines) + "\n")
                if event.at - log.flushed_at >= self.flush_interval:
                    log.file.flush()
                    log.flushed_at = event.at
                return
            self._write(event)
        except OSError as exc:
            self.error = exc
            self.close()

    def __enter__(self) -> LogSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write out what every open log has buffered (the runner calls it each second)."""
        if self.error is not None:
            return
        try:
            for log in self._open.values():
                log.file.flush()
        except OSError as exc:
            self.error = exc
            self.close()

    def close(self) -> None:
        """Close every open log (a footer notes a step had not finished). Idempotent."""
        while self._open:
            host, log = self._open.popitem()
            with contextlib.suppress(OSError):
                if log.step is not None:
                    log.file.write(f"{_RULE}\n(log closed before {host} {log.step} finished)\n")
                    log.file.write("".join(["\n", *log.held]) if log.held else "")
            with contextlib.suppress(OSError):
                log.file.close()

    # ----------------------------------------------------------------- writing

    def _write(self, event: Event) -> None:
        match event:
            case StepOutput():
                pass  # emit() writes it
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
            case OrphanUnconfirmed():  # after the host finished: its log is opened again
                text = f"may still be running: pgid {event.pgid} ({event.cause})"
                was_open = event.host in self._open
                self._host_line(event.run_id, event.host, event.at, text)
                if not was_open:
                    self._open.pop(event.host).file.close()
            case RunFinished():
                self.close()
            case _:
                assert_never(event)

    def _start_step(self, event: StepStarted) -> None:
        log = self._log(event.run_id, event.host)
        if log.step is not None:  # steps of a host run in sequence: this should not happen
            self._end_section(
                log, f"{_RULE}\n(log closed before {event.host} {log.step} finished)\n"
            )
        header = (
            ("" if log.empty else "\n")
            + f"===== {event.host} {event.step} attempt {event.attempt} =====\n"
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
        log.empty = False
        log.step = event.step

    def _finish_step(self, event: StepFinished) -> None:
        log = self._open.get(event.host)
        if log is not None and log.step == event.step:
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
            self._end_section(log, footer)
            log.flushed_at = event.at
        if event.status is StepStatus.SKIPPED:
            skipped = f"{event.step} skipped" + (f": {event.cause}" if event.cause else "")
            self._host_line(event.run_id, event.host, event.at, skipped)

    def _end_section(self, log: _HostLog, footer: str) -> None:
        """Write the footer and any host line held meanwhile; flush (a step boundary)."""
        log.file.write(footer)
        log.step = None
        log.after_section = True
        if log.held:
            log.file.write("\n")
            log.file.writelines(log.held)
            log.held.clear()
            log.after_section = False
        log.file.flush()

    def _finish_host(self, event: HostFinished) -> None:
        log = self._open.get(event.host)
        if log is not None and log.step is not None:
            self._end_section(log, f"{_RULE}\n(host finished before {log.step} did)\n")
        if event.status is not HostStatus.NOT_STARTED:  # else it never left the queue
            text = f"finished: {event.status} in {format_elapsed(event.duration)}"
            if event.cause:
                text += f": {event.cause}"
            if event.detail:
                text += "\n" + event.detail.rstrip("\n")
            self._host_line(event.run_id, event.host, event.at, text)
        log = self._open.pop(event.host, None)
        if log is not None:
            log.file.close()

    def _host_line(self, run_id: str, host: str, at: float, text: str) -> None:
        log = self._log(run_id, host)
        line = f"{format_instant(at)} {text}\n"
        if log.step is not None:  # keep the open section whole: written after its footer
            log.held.append(line)
            return
        if log.after_section:
            line = "\n" + line
            log.after_section = False
        log.file.write(line)
        log.file.flush()  # rare, and what an operator tails for
        log.empty = False

    # ------------------------------------------------------------- file system

    def _log(self, run_id: str, host: str) -> _HostLog:
        """The host's open log, opened (created 0600) on its first line."""
        log = self._open.get(host)
        if log is None:
            path = host_log_path(self.state_dir, run_id, host)
            self._make_dirs(path.parent)
            file = _open_append(path)
            empty = os.fstat(file.fileno()).st_size == 0
            log = self._open[host] = _HostLog(file, 0.0, empty)
        return log

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


def _open_append(path: Path) -> TextIO:
    """``path`` opened for appending, created 0600 if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    try:
        return open(fd, "a", encoding="utf-8", errors="replace")
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------------- reading

_HEADER = re.compile(r"===== (?P<title>.*) attempt (?P<attempt>\d+) =====")
_HOST_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
_FOOTER_STARTS = ("ended:", "(log closed before ", "(host finished before ")


def step_sections(text: str, host: str, step: str) -> list[str]:
    """The sections of ``step`` (one per attempt, in order) in a host's log ``text``.

    A section runs from its header through its footer (``-----`` then ``ended:``, or
    the note that the log was closed first), up to the blank line before the next
    header or host line, or the end. Output that itself prints a rule, an ``ended:``
    line, a blank line and a header can end a section early; the file holds
    everything either way. A step log of the earlier layout reads the same way.
    """
    title = f"{host} {step}"
    lines = [line + "\n" for line in text.split("\n")]  # only \n ends a line: raw output
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    found: list[str] = []
    start: int | None = None
    footer = False
    for i, line in enumerate(lines):
        at_boundary = i == 0 or lines[i - 1] == "\n"
        header = _HEADER.fullmatch(line.rstrip("\n")) if at_boundary else None
        if start is not None:
            if footer and at_boundary and (header or _HOST_LINE.match(line)):
                found.append("".join(lines[start : i - 1]))  # not the blank line between
                start = None
            elif line == f"{_RULE}\n" and i + 1 < len(lines):
                footer = footer or lines[i + 1].startswith(_FOOTER_STARTS)
        if header is not None and header["title"] == title:
            start, footer = i, False
    if start is not None:
        found.append("".join(lines[start:]))
    return found
