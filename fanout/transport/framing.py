"""Output framing: the wrapped remote command, its pgid line, and bytes → bounded lines.

Each step runs as one non-PTY exec channel::

    exec /bin/sh -c '<echo fanout-pgid=$$ ; newline ; the step's command>'

sshd ``setsid()``s a non-PTY session before running the login shell, and ``exec`` turns that
shell into ``/bin/sh`` with the same pid, so ``$$`` is the id of the session's process group.
The step's command runs inside that ``sh`` (it is not ``exec``ed: the step's shell stays the
group leader so it can hold the per-database lock, see ``fanout.steps``), and every child it
starts (rman and its children) stays in the group. The first stdout line,
``fanout-pgid=<n>``, is consumed by the transport and never shown as output.

Memory: a channel's receive window is ``WINDOW`` bytes, no more than one read (``CHUNK``), so
SSH flow control holds the remote writer back while fanout is slower than it; at most
``QUEUE_LINES`` lines (plus one chunk's) wait between the channel and the consumer.
Latency: a line waits at most ``OUTPUT_TICK`` before its consumer is woken (the end of the
output and a full queue wake it at once); an RMAN step's output, which comes in bursts split
over several SSH packets, then costs one hand-over per burst instead of one per packet.
No asyncssh here.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shlex
from collections.abc import Callable
from typing import Final

from fanout.transport.base import OutputBatch, OutputLine

__all__ = [
    "CHUNK",
    "MAX_LINE",
    "PGID_MARKER",
    "QUEUE_LINES",
    "WINDOW",
    "LineSplitter",
    "Output",
    "exit_status",
    "sh_command",
    "wrap_command",
]

PGID_MARKER: Final = "fanout-pgid="
CHUNK: Final = 64 * 1024  # bytes per read from a stream
WINDOW: Final = CHUNK  # SSH receive window per channel: never more than one read in flight
MAX_LINE: Final = 64 * 1024  # longer lines are split into pieces of at most this many bytes
QUEUE_LINES: Final = 128  # lines buffered between the channel and lines() (backpressure)
#: Seconds a received line may wait before its consumer is woken, so that the chunks arriving
#: meanwhile are handed over together (one batch per stream) and not one wake-up each.
OUTPUT_TICK: Final = 0.1
PREAMBLE_MAX: Final = 64 * 1024  # stdout a login shell may print before the pgid line
MARKER_RE: Final = re.compile(r"fanout-pgid=([0-9]+)")


def wrap_command(command: str) -> str:
    """The exact command line sent to sshd for ``command`` (see the module docstring)."""
    return "exec /bin/sh -c " + shlex.quote(f"echo {PGID_MARKER}$$\n{command}")


def sh_command(script: str) -> str:
    """A helper script (kill, ps) as a command line: ``exec /bin/sh -c '<script>'``."""
    return "exec /bin/sh -c " + shlex.quote(script)


def exit_status(returncode: int) -> int:
    """asyncssh gives ``-signum`` after an exit-signal; report ``128 + signum`` like a shell."""
    return 128 - returncode if returncode < 0 else returncode


class LineSplitter:
    """Bytes in, complete lines out (decoded); memory stays below ``max_line`` plus one chunk.

    A line longer than ``max_line`` bytes is emitted in pieces, cut on a UTF-8 character
    boundary. Bytes that are not UTF-8 become U+FFFD. A trailing CR is dropped (CRLF).
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        buf, limit = self._buf, self._max
        buf += data
        last = buf.rfind(b"\n")
        if last == -1:
            return self._cut() if len(buf) > limit else []
        if last > limit or len(buf) - last - 1 > limit:
            return self._cut()  # a line may be overlong: cut line by line
        # Every complete line fits: decode them in one go. A newline byte never occurs
        # inside a UTF-8 sequence, so this gives what decoding line by line gives.
        text = buf[:last].decode("utf-8", "replace")
        del buf[: last + 1]
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        return lines

    def _cut(self) -> list[str]:
        buf, limit = self._buf, self._max
        out: list[str] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            end = nl if nl != -1 else len(buf)
            if end - start > limit:
                cut = start + limit
                while cut > start + limit - 3 and buf[cut] & 0xC0 == 0x80:
                    cut -= 1  # do not split a multi-byte character
                out.append(buf[start:cut].decode("utf-8", "replace"))
                start = cut
            elif nl != -1:
                stop = nl - 1 if nl > start and buf[nl - 1] == 13 else nl
                out.append(buf[start:stop].decode("utf-8", "replace"))
                start = nl + 1
            else:
                break
        del buf[:start]
        return out

    def flush(self) -> str | None:
        """The unterminated last line at EOF, if any."""
        if not self._buf:
            return None
        rest = self._buf.decode("utf-8", "replace")
        self._buf.clear()
        return rest


class Output:
    """The bounded hand-over between the channel's callbacks and ``lines()``/``batches()``.

    ``put`` runs in the channel's data callback and never waits: it says when the queue is full,
    and the caller then pauses the channel (SSH flow control holds the remote writer back).
    ``take`` hands a batch to a consumer and calls ``on_space`` once the queue drops below
    ``QUEUE_LINES`` (resume the channel). The queue holds one batch per chunk received (the
    lines it completed), not one item per line, so a line costs no queue operation of its own.
    ``pending`` holds the rest of a batch ``lines()`` has begun to hand out line by line.
    A consumer waiting in ``wait_readable`` is woken ``tick`` seconds after the first batch it
    has not seen, at once when the queue is full or the output ends; ``take`` hands over every
    queued batch of one stream up to the other stream's next one as one batch.
    """

    __slots__ = (
        "_timer",
        "batches",
        "changed",
        "closed",
        "consumers",
        "done",
        "ended",
        "on_space",
        "pending",
        "queued",
        "readable",
        "tick",
    )

    def __init__(self, on_space: Callable[[], None], tick: float = OUTPUT_TICK) -> None:
        self.batches: collections.deque[OutputBatch] = collections.deque()
        self.queued = 0  # lines waiting in ``batches``
        self.pending: collections.deque[OutputLine] = collections.deque()  # taken by lines()
        self.ended = False  # no batch will follow (EOF, channel closed, connection lost)
        self.done = False  # a consumer has taken everything up to the end
        self.closed = False  # the channel has closed
        self.consumers = 0  # lines()/batches() iterations under way
        self.readable = asyncio.Event()  # a batch or the end is there for a consumer
        self.changed = asyncio.Event()  # pulse for wait(): full, closed, consumers, done
        self.on_space = on_space
        self.tick = tick
        self._timer: asyncio.TimerHandle | None = None  # wakes the consumer ``tick`` after a put

    @property
    def full(self) -> bool:
        return self.queued >= QUEUE_LINES

    def put(self, batch: OutputBatch) -> bool:
        """Queue one batch (never waits); True if the queue is now full."""
        self.batches.append(batch)
        self.queued += len(batch.lines)
        if self.queued >= QUEUE_LINES:
            self._wake()
            self.changed.set()  # wait() discards if nobody reads
            return True
        if self._timer is None and not self.readable.is_set():
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._wake)
        return False

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.readable.set()

    def end(self) -> None:
        """No more batches will come."""
        self.ended = True
        self._wake()

    def take(self) -> OutputBatch | None:
        """The oldest batch, or None if none is queued (then ``ended`` says whether to wait)."""
        if not self.batches:
            if self.ended and not self.done:
                self.done = True
                self.changed.set()
            return None
        batches = self.batches
        batch = batches.popleft()
        if batches and batches[0].stream is batch.stream:  # chunks that arrived in one tick
            lines = list(batch.lines)
            while batches and batches[0].stream is batch.stream:
                lines += batches.popleft().lines
            batch = OutputBatch(batch.stream, tuple(lines))
        was_full = self.queued >= QUEUE_LINES
        self.queued -= len(batch.lines)
        if was_full and self.queued < QUEUE_LINES:
            self.on_space()
        return batch

    async def wait_readable(self) -> None:
        """Until a batch or the end is there (``take`` found none)."""
        self.readable.clear()
        await self.readable.wait()

    def discard(self) -> None:
        """Drop what is queued (nobody reads and the queue is full)."""
        self.pending.clear()
        self.batches.clear()
        was_full = self.queued >= QUEUE_LINES
        self.queued = 0
        if was_full:
            self.on_space()
