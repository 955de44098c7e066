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
``QUEUE_LINES`` lines (plus one chunk's) wait between the stream readers and the consumer.
No asyncssh here.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shlex
from dataclasses import dataclass, field
from typing import Final

from fanout.transport.base import OutputLine

__all__ = [
    "CHUNK",
    "MAX_LINE",
    "PGID_MARKER",
    "QUEUE_LINES",
    "WINDOW",
    "LineSplitter",
    "Output",
    "decode",
    "exit_status",
    "sh_command",
    "wrap_command",
]

PGID_MARKER: Final = "fanout-pgid="
CHUNK: Final = 64 * 1024  # bytes per read from a stream
WINDOW: Final = CHUNK  # SSH receive window per channel: never more than one read in flight
MAX_LINE: Final = 64 * 1024  # longer lines are split into pieces of at most this many bytes
QUEUE_LINES: Final = 128  # lines buffered between the readers and lines() (backpressure)
PREAMBLE_MAX: Final = 64 * 1024  # stdout a login shell may print before the pgid line
MARKER_RE: Final = re.compile(rb"fanout-pgid=([0-9]+)")


def wrap_command(command: str) -> str:
    """The exact command line sent to sshd for ``command`` (see the module docstring)."""
    return "exec /bin/sh -c " + shlex.quote(f"echo {PGID_MARKER}$$\n{command}")


def sh_command(script: str) -> str:
    """A helper script (kill, ps) as a command line: ``exec /bin/sh -c '<script>'``."""
    return "exec /bin/sh -c " + shlex.quote(script)


def exit_status(returncode: int) -> int:
    """asyncssh gives ``-signum`` after an exit-signal; report ``128 + signum`` like a shell."""
    return 128 - returncode if returncode < 0 else returncode


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class LineSplitter:
    """Bytes in, complete lines out; memory stays below ``max_line`` plus one chunk.

    A line longer than ``max_line`` bytes is emitted in pieces, cut on a UTF-8 character boundary.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf, limit = self._buf, self._max
        buf += data
        out: list[bytes] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            end = nl if nl != -1 else len(buf)
            if end - start > limit:
                cut = start + limit
                while cut > start + limit - 3 and buf[cut] & 0xC0 == 0x80:
                    cut -= 1  # do not split a multi-byte character
                out.append(bytes(buf[start:cut]))
                start = cut
            elif nl != -1:
                out.append(bytes(buf[start : nl - 1 if nl > start and buf[nl - 1] == 13 else nl]))
                start = nl + 1
            else:
                break
        del buf[:start]
        return out

    def flush(self) -> bytes | None:
        """The unterminated last line at EOF, if any."""
        if not self._buf:
            return None
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


@dataclass(slots=True)
class Output:
    """The bounded hand-over between the two stream readers and ``lines()``/``batches()``.

    The queue holds one batch per chunk read (the lines it completed), not one item per line,
    so a line costs no queue or semaphore operation of its own.
    """

    queue: asyncio.Queue[list[OutputLine] | None] = field(default_factory=asyncio.Queue)
    queued: int = 0  # lines waiting in the queue
    space: asyncio.Event = field(default_factory=asyncio.Event)  # set while queued < QUEUE_LINES
    pending: collections.deque[OutputLine] = field(default_factory=collections.deque)  # lines()
    eofs: int = 0  # EOF markers taken from the queue (two streams)
    consumers: int = 0  # lines()/batches() iterations under way
    done: asyncio.Event = field(default_factory=asyncio.Event)  # both EOFs consumed
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the channel has closed
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # pulse for wait()

    @property
    def full(self) -> bool:
        return self.queued >= QUEUE_LINES

    def take(self, item: list[OutputLine] | None) -> list[OutputLine] | None:
        """Account for one item taken from the queue."""
        if item is None:
            self.eofs += 1
            if self.eofs >= 2:
                self.done.set()
                self.changed.set()
                self.queue.put_nowait(None)  # wakes any other consumer
        else:
            self.queued -= len(item)
            if self.queued < QUEUE_LINES:
                self.space.set()
        return item

    def discard(self) -> None:
        """Drop what is queued (nobody reads and the queue is full)."""
        self.pending.clear()
        while not self.queue.empty() and not self.done.is_set():
            self.take(self.queue.get_nowait())
