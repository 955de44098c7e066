"""LiveView: the interactive live table (rich ``Live``) with a command line at the bottom.

Layout at 80 columns, as an operator sees it (text from the unit tests; colour repeats
what the symbols say)::

    fanout run 20261123T171435Z-3f9a · 12s · nightly.yaml
    ⠇ 1 running  · 1 queued  ✓ 1 succeeded  ✗ 1 failed  ⊘ 1 cancelled
      Host     full        archivelog  controlfile   Time Last line
    ⠇ erp-prod ✓ 5m26s     ⠇ 12s       · queued       12s ORA_DISK_1: starting piec…
    ✗ crm-prod ✗ ORA-19502 ↷ skipped   ↷ skipped      41s ORA-19502: write error on…
    ✓ hr-prod  ✓ 1m        ✓ 5s        ✓ 2s          1m7s
    ⊘ bi-prod  ⊘ cancelled ↷ skipped   ↷ skipped       7s cancelled
    … 480 more: 480 queued
    q + Enter: cancel all · cancel HOST · help · Ctrl-C: cancel all
    > cancel erp█

Columns by importance: host and steps always; then host time, last line, SID, priority
while they fit (SID and priority appear from about 100 columns). With more hosts than
rows, running and failed hosts come first, then the most recently finished; the rest
fold into the counts line.

``render`` is pure: state, size and clock in, a renderable out. ``LiveView`` reads the
runner's ``RunState`` (the one fold of the event stream, shared with the summary) and, 4
times a second, a loop task renders it (``auto_refresh=False``: nothing but the loop
thread touches the state).

Keyboard: the tty on stdin is put in non-canonical mode with echo off (ISIG stays on, so
Ctrl-C is still SIGINT for the runner's handler); ``loop.add_reader`` delivers bytes, a
``LineEditor`` turns them into the command line shown in the footer. The saved termios
settings and blocking mode are restored on every way out: ``__aexit__`` (normal end,
exception, cancellation) and an atexit hook.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import fnmatch
import os
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import assert_never

from rich.console import Console
from rich.live import Live

from fanout.cancel import CancelToken
from fanout.events import CancelReason, Event
from fanout.state import (
    RunState,
)
from fanout.ui.live_render import (
    ASCII,
    HELP,
    TYPED_MAX,
    UNICODE,
    Prompt,
    render,
)

# ------------------------------------------------------------------ the command line


class LineEditor:
    """Turns raw keyboard input (non-canonical, no echo) into a command line.

    Printable characters append; Backspace/DEL erases one, Ctrl-W a word, Ctrl-U the line;
    Enter (CR or LF) submits; escape sequences (arrow keys…) and other control characters
    are dropped, so nothing odd reaches the screen.
    """

    __slots__ = ("_escape", "buffer")

    def __init__(self) -> None:
        self.buffer = ""
        self._escape = 0  # 0: normal, 1: after ESC, 2: inside CSI/SS3

    def feed(self, text: str) -> list[str]:
        """Take decoded input; return the lines submitted by it (without the line end)."""
        submitted: list[str] = []
        for char in text:
            if self._escape == 1:
                self._escape = 2 if char in "[O" else 0
                continue
            if self._escape == 2:
                if "\x40" <= char <= "\x7e":
                    self._escape = 0
                continue
            if char == "\x1b":
                self._escape = 1
            elif char in "\r\n":
                submitted.append(self.buffer)
                self.buffer = ""
            elif char in "\x7f\x08":
                self.buffer = self.buffer[:-1]
            elif char == "\x15":  # Ctrl-U
                self.buffer = ""
            elif char == "\x17":  # Ctrl-W
                self.buffer = self.buffer.rstrip().rpartition(" ")[0]
                self.buffer += " " if self.buffer else ""
            elif char.isprintable() and len(self.buffer) < TYPED_MAX:
                self.buffer += char
        return submitted


class CommandKind(StrEnum):
    EMPTY = "empty"
    QUIT = "quit"
    CANCEL = "cancel"
    HELP = "help"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    arg: str = ""  # the host of ``cancel HOST``; the text of an unknown command


def parse_command(line: str) -> Command:
    """``q``/``quit`` · ``cancel HOST`` · ``help``/``?``; anything else is UNKNOWN."""
    words = line.split()
    if not words:
        return Command(CommandKind.EMPTY)
    verb = words[0].lower()
    if verb in ("q", "quit") and len(words) == 1:
        return Command(CommandKind.QUIT)
    if verb in ("help", "?", "h") and len(words) == 1:
        return Command(CommandKind.HELP)
    if verb == "cancel" and len(words) <= 2:
        return Command(CommandKind.CANCEL, words[1] if len(words) == 2 else "")
    return Command(CommandKind.UNKNOWN, line.strip())


# ------------------------------------------------------------------ the view


def live_supported(console: Console) -> bool:
    """Whether ``console`` can show a live table (an interactive terminal, not TERM=dumb)."""
    return console.is_terminal and not console.is_dumb_terminal


class LiveView:
    """An EventSink and async context manager showing the run as a live table.

    ``emit`` folds an event into ``state`` (cheap; no drawing). Inside ``async with``, a
    loop task redraws 4 times a second and a reader on the keyboard fd (stdin by default,
    when it is a tty) runs the commands typed at the bottom: ``q``/``quit`` fires ``token``
    (a second one forces), ``cancel HOST`` calls ``cancel_host``. Leaving the block draws
    the last frame, stops Live (the table is erased: the caller prints the summary) and
    restores the terminal; that restoration also runs from atexit if the block is never
    left. A failure to draw never propagates into the run: drawing stops and the
    exception is kept in ``error`` for the caller to report. Cancellation of the
    enclosing task is not swallowed.
    """

    def __init__(
        self,
        *,
        run_id: str,
        inventory: str,
        token: CancelToken,
        cancel_host: Callable[[str], bool],
        console: Console | None = None,
        tags: Mapping[str, Sequence[str]] | None = None,
        refresh_per_second: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
        keyboard_fd: int | None = -1,
        state: RunState | None = None,
    ) -> None:
        """``keyboard_fd``: -1 = stdin if it is a tty; None = no keyboard; else that tty fd.

        ``state``: the runner's ``RunState``, folded by the runner's sinks; the view only
        reads it (on the loop thread) and ``emit`` does nothing. Without it the view folds
        events into a state of its own.
        """
        self._owns_state = state is None
        self.state = state if state is not None else RunState(clock=clock)
        self.state.run_id = run_id
        self.state.inventory = inventory
        self._token = token
        self._cancel_host = cancel_host
        self._tags = tags or {}  # host -> its tags, for ``cancel tag:TAG``
        self._console = console if console is not None else Console()
        self._symbols = UNICODE if self._console.encoding.lower().startswith("utf") else ASCII
        self._interval = 1.0 / refresh_per_second
        self._clock = clock
        self._keyboard_fd = _stdin_tty() if keyboard_fd == -1 else keyboard_fd
        self._editor = LineEditor()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._message: str | None = None
        self._error = False
        self._stopping: set[str] = set()
        self._live: Live | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved_tty: list[int | list[bytes | int]] | None = None
        self._reading = False
        self.error: Exception | None = None  # why the table stopped drawing, if it did

    # --------------------------------------------------------------- sink

    def emit(self, event: Event) -> None:
        if self._owns_state:
            self.state.apply(event)

    # --------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> LiveView:
        self._loop = asyncio.get_running_loop()
        self._live = Live(
            console=self._console,
            auto_refresh=False,
            transient=True,
            vertical_overflow="crop",
        )
        try:
            self._open_keyboard()
            self._live.start()
            self.draw()
            self._task = self._loop.create_task(self._refresh_loop(), name="fanout-live")
        except BaseException:
            self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait({task})  # never raises the task's own outcome
            if self.error is None:
                self.draw()  # the final state, before Live erases itself
        except Exception as exc:  # the view is lost, never the run: see ``error``
            self.error = exc
        finally:
            self._close()

    def draw(self) -> None:
        """Render the current state into Live now (loop thread only)."""
        if self._live is None or not self._live.is_started:
            return
        size = self._console.size
        self._live.update(
            render(
                self.state,
                width=size.width,
                height=size.height,
                now=self._clock(),
                prompt=self.prompt(),
                symbols=self._symbols,
            ),
            refresh=True,
        )

    def prompt(self) -> Prompt:
        return Prompt(
            typed=self._editor.buffer,
            message=self._message,
            error=self._error,
            keyboard=self._saved_tty is not None,
            cancelling=self._token.fired,
            forced=self._token.forced,
            stopping=frozenset(self._stopping),
        )

    async def _refresh_loop(self) -> None:
        """Redraw every interval; a failing draw stops the loop and is kept in ``error``."""
        while self.error is None:
            await asyncio.sleep(self._interval)
            try:
                self.draw()
            except Exception as exc:  # a view must never sink the run (events.FanOut)
                self.error = exc

    def _close(self) -> None:
        """Stop Live and restore the terminal; idempotent, never raises for the terminal."""
        live, self._live = self._live, None
        try:
            if live is not None:
                live.stop()
        finally:
            self._restore_terminal()

    # --------------------------------------------------------------- keyboard

    def _open_keyboard(self) -> None:
        fd = self._keyboard_fd
        if fd is None or self._loop is None:
            return
        try:
            saved = termios.tcgetattr(fd)
        except (termios.error, OSError):
            return  # not a terminal: only Ctrl-C
        self._saved_tty = saved
        atexit.register(self._restore_terminal)
        mode = termios.tcgetattr(fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON)  # lflag; ISIG stays: Ctrl-C is SIGINT
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSADRAIN, mode)
        self._loop.add_reader(fd, self._on_input)
        self._reading = True

    def _restore_terminal(self) -> None:
        """Put the keyboard tty back as it was (settings and blocking mode). Idempotent."""
        saved, self._saved_tty = self._saved_tty, None
        fd = self._keyboard_fd
        if self._reading and fd is not None and self._loop is not None:
            with contextlib.suppress(Exception):  # the loop may be closed (atexit)
                self._loop.remove_reader(fd)
            self._reading = False
        if saved is None or fd is None:
            return
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)
        atexit.unregister(self._restore_terminal)

    def _on_input(self) -> None:
        fd = self._keyboard_fd
        assert fd is not None
        try:
            data = os.read(fd, 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF (the terminal went away): stop reading, keep the run going
            if self._loop is not None:
                self._loop.remove_reader(fd)
            self._reading = False
            return
        for line in self._editor.feed(self._decoder.decode(data)):
            self.execute(parse_command(line))
        if self.error is None:
            try:
                self.draw()  # echo at once, not at the next tick
            except Exception as exc:  # see _refresh_loop
                self.error = exc

    def execute(self, command: Command) -> None:
        """Run one command line; its reply goes to the footer."""
        self._message, self._error = None, False
        match command.kind:
            case CommandKind.EMPTY:
                pass
            case CommandKind.QUIT:
                self._token.cancel(CancelReason.OPERATOR)
            case CommandKind.HELP:
                self._message = HELP
            case CommandKind.CANCEL:
                self._cancel_one(command.arg)
            case CommandKind.UNKNOWN:
                self._message = f"unknown command {command.arg!r}: type help"
                self._error = True
            case _:
                assert_never(command.kind)

    def _cancel_one(self, host: str) -> None:
        row = self.state.rows.get(host)
        if row is None and (host.startswith("tag:") or any(c in host for c in "*?[")):
            self._cancel_many(host)
            return
        if not host:
            self._message, self._error = "usage: cancel HOST (q cancels every host)", True
        elif row is None:
            self._message, self._error = f"cancel: no host named {host!r}", True
        elif row.finished:
            self._message, self._error = f"cancel: {host} has already finished", True
        elif self._cancel_host(host):
            forced = host in self._stopping
            self._stopping.add(host)
            self._message = f"forcing {host} to stop…" if forced else f"stopping {host}…"
        else:
            self._message, self._error = f"cancel: {host} cannot be stopped now", True

    def _cancel_many(self, pattern: str) -> None:
        """``cancel GLOB`` (host names, fnmatch) or ``cancel tag:TAG``: every unfinished
        host that matches is stopped as ``cancel HOST`` would stop it."""
        tag = pattern[4:] if pattern.startswith("tag:") else None
        matched = [
            row
            for row in self.state.rows.values()
            if (
                tag in self._tags.get(row.name, ())
                if tag is not None
                else fnmatch.fnmatchcase(row.name, pattern)
            )
        ]
        unfinished = [row.name for row in matched if not row.finished]
        stopped = [name for name in unfinished if self._cancel_host(name)]
        if not matched:
            self._message, self._error = f"cancel: no host matches {pattern!r}", True
        elif not unfinished:
            self._message = f"cancel: every host matching {pattern!r} has already finished"
            self._error = True
        elif not stopped:
            self._message = f"cancel: no host matching {pattern!r} can be stopped now"
            self._error = True
        else:
            self._stopping.update(stopped)
            shown = ", ".join(stopped[:3]) + (
                f", +{len(stopped) - 3} more" if len(stopped) > 3 else ""
            )
            noun = "host" if len(stopped) == 1 else "hosts"
            self._message = f"stopping {len(stopped)} {noun} matching {pattern}: {shown}…"


def _stdin_tty() -> int | None:
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    return fd if os.isatty(fd) else None
