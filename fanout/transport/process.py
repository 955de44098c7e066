"""The remote process: one step running in its own process group on the host.

``SshSession.start`` opens the channel (see ``framing`` for the command and the pgid line);
``SshProcess`` is the channel's asyncssh session: its callbacks split what arrives into lines
and queue them for ``lines()``/``batches()`` (no reader tasks; a full queue pauses the channel,
so SSH flow control holds the remote writer back). It signals the group through a second
channel and waits for the exit status. If the connection dies under it, ``wait`` (or
``signal``) puts the group on the host's to-stop list (``orphans``) and raises
``ConnectionLost`` once the group is confirmed stopped or the ``orphan_timeout`` has passed,
saying which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import asyncssh

from fanout.errors import ConnectionLost
from fanout.events import Stream
from fanout.transport.base import OutputBatch, OutputLine, RemoteSignal
from fanout.transport.framing import (
    MARKER_RE,
    PREAMBLE_MAX,
    LineSplitter,
    Output,
    exit_status,
)

if TYPE_CHECKING:
    from fanout.transport.orphans import _Group
    from fanout.transport.ssh import SshSession

__all__ = ["SshProcess"]

log = logging.getLogger(__name__)

_STDOUT, _STDERR = Stream.STDOUT, Stream.STDERR


class SshProcess(asyncssh.SSHClientSession[bytes]):
    """A step running on the remote host in its own process group (``RemoteProcess``).

    Also the asyncssh session of the step's channel: asyncssh calls ``data_received``,
    ``eof_received`` and ``connection_lost`` on the event loop as packets arrive. None of them
    may raise or wait.
    """

    _chan: asyncssh.SSHClientChannel[bytes]  # set by connection_made, before start() returns

    def __init__(self, session: SshSession) -> None:
        self._session = session
        self._pgid: int | None = None
        self._out = Output(self._resume)
        self._paused = False
        self._stdout = LineSplitter()
        self._stderr = LineSplitter()
        self._before: list[str] = []  # stdout lines before the pgid line
        self._seen = 0  # their characters
        self._starting = asyncio.get_running_loop().create_future()  # the pgid line or the end
        self._lost: Exception | None = None  # why the connection ended under the channel
        self._first_stderr: str | None = None
        self._group: _Group | None = None

    @property
    def pgid(self) -> int | None:
        return self._pgid

    @property
    def orphaned(self) -> bool:
        """On the to-stop list (the connection died under it)."""
        return self._group is not None

    @property
    def running(self) -> bool:
        """Started and no exit status seen yet."""
        return self._pgid is not None and self._chan.get_returncode() is None

    # ------------------------------------------------------- channel callbacks

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is not None:  # extended data: stderr
            if lines := self._stderr.feed(data):
                self._put(_STDERR, lines)
        elif self._pgid is not None:
            if lines := self._stdout.feed(data):
                self._put(_STDOUT, lines)
        elif not self._starting.done():
            self._preamble(data)
        # else: start() has given up on this channel (it is being closed)

    def _preamble(self, data: bytes) -> None:
        """stdout before the ``fanout-pgid=<n>`` line; the lines around it become output."""
        after: list[str] = []
        for line in self._stdout.feed(data):
            match = MARKER_RE.fullmatch(line) if self._pgid is None else None
            if match:
                self._pgid = int(match[1])
            else:
                (self._before if self._pgid is None else after).append(line)
                self._seen += len(line)
        if self._pgid is not None:
            if lines := self._before + after:
                self._put(_STDOUT, lines)
            self._starting.set_result(None)
        elif self._seen > PREAMBLE_MAX:
            self._starting.set_result(None)

    def _put(self, stream: Stream, lines: list[str]) -> None:
        if stream is _STDERR and self._first_stderr is None:
            self._first_stderr = lines[0]
        if self._out.put(OutputBatch(stream, tuple(lines))) and not self._paused:
            self._paused = True  # until a consumer takes a batch (or wait() discards)
            self._chan.pause_reading()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._chan.resume_reading()  # may deliver buffered data right here

    def eof_received(self) -> bool:
        self._flush()
        return True  # half-close: stdin is closed by start() (like asyncssh's streams)

    def _flush(self) -> None:
        """Both streams ended: their unterminated last lines, then the end."""
        out = self._out
        if out.ended:
            return
        if (tail := self._stdout.flush()) is not None and self._pgid is not None:
            self._put(_STDOUT, [tail])
        if (tail := self._stderr.flush()) is not None:
            self._put(_STDERR, [tail])
        out.end()
        if not self._starting.done():
            self._starting.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """The channel closed; ``exc``: the connection ended under it (lines cut there)."""
        out = self._out
        if exc is not None and not out.ended:
            self._lost = exc
            out.end()
            log.debug("%s output ended: %s", self._session.label, exc)
        self._flush()
        out.closed = True
        out.changed.set()
        if not self._starting.done():
            self._starting.set_result(None)

    # ------------------------------------------------------------------ start

    async def read_pgid(self) -> None:
        """Wait for the ``fanout-pgid=<n>`` line (bounded by ``start_timeout``).

        Raises ConnectionLost.
        """
        host = self._session.host.name
        timeout = self._session.transport.start_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._starting
                if self._pgid is None:
                    if self._lost is not None:
                        reason = f"connection lost to {self._session.label} starting a step:"
                        raise ConnectionLost(host, f"{reason} {self._lost}")
                    raise ConnectionLost(host, await self._no_pgid_reason())
        except TimeoutError as exc:
            reason = f"no process group id from {self._session.label} within {timeout:g}s"
            raise ConnectionLost(host, reason) from exc

    async def _no_pgid_reason(self) -> str:
        out = self._out
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while not out.closed:
                    out.changed.clear()
                    await out.changed.wait()
        status = self._chan.get_returncode()
        before = self._before
        said = self._first_stderr or (before[0] if before else None)
        what = f"exited with status {exit_status(status)}" if status is not None else "ended"
        return (
            f"the remote shell on {self._session.label} {what} before reporting its process group"
            + (f": {said}" if said else "")
        )

    # ----------------------------------------------------------------- output

    async def batches(self) -> AsyncIterator[OutputBatch]:
        """Like ``lines()``, the lines of one stream read together at a time.

        Cancelling the consumer loses no batch that was not yet yielded.
        """
        with self._consumer():
            while (batch := await self._next()) is not None:
                yield batch

    async def lines(self) -> AsyncIterator[OutputLine]:
        """stdout and stderr lines as they arrive; ends when both streams reach EOF.

        About ``QUEUE_LINES`` lines (plus one chunk's) wait here; past that the channel is
        paused and the remote side held back by SSH flow control. A connection loss ends the
        streams (``wait`` then raises ConnectionLost). Cancelling the consumer loses no line
        that was not yet yielded: the rest of its batch waits in ``pending`` for the next one.
        """
        pending = self._out.pending
        with self._consumer():
            while (batch := await self._next()) is not None:
                pending.extend(OutputLine(batch.stream, text) for text in batch.lines)
                while pending:
                    yield pending.popleft()

    @contextlib.contextmanager
    def _consumer(self) -> Iterator[None]:
        """While a ``lines()``/``batches()`` iteration is under way (``wait`` counts them)."""
        out = self._out
        out.consumers += 1
        out.changed.set()
        try:
            yield
        finally:
            out.consumers -= 1
            out.changed.set()

    async def _next(self) -> OutputBatch | None:
        """The next batch (first what a ``lines()`` left in ``pending``); None at the end."""
        out = self._out
        while True:
            if out.pending:  # the rest of a batch lines() began (one stream)
                rest = OutputBatch(out.pending[0].stream, tuple(x.text for x in out.pending))
                out.pending.clear()
                return rest
            if (batch := out.take()) is not None:
                return batch
            if out.ended:
                return None
            await out.wait_readable()

    # ---------------------------------------------------------------- signals

    async def signal(self, sig: RemoteSignal) -> None:
        """Send ``sig`` to the whole remote process group. Never raises for a gone process.

        Sends the RFC 4254 signal request (best effort) and runs ``kill -s SIG -- -<pgid>`` on
        a second channel. If the connection is gone, puts the group on the host's to-stop list
        and waits until it is settled, as ``wait`` does. Cancelled: the kill channel is
        abandoned; the group stays on the to-stop list.
        """
        if not self.running:
            return
        with contextlib.suppress(OSError, asyncssh.Error):
            self._chan.send_signal(sig.value)
        if self._session.lost_at is None and await self.kill_group(sig):
            return
        if self._session.lost_at is not None:
            await self._orphan_outcome()

    async def kill_group(self, sig: RemoteSignal) -> bool:
        """``kill`` on a second channel; False if the channel could not be used."""
        try:
            await self._session.run_helper(f"kill -s {sig.value} -- -{self._pgid} 2>/dev/null")
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            log.debug("kill -%s on %s failed: %s", sig.value, self._session.label, exc)
            return False
        return True

    # ------------------------------------------------------------------- exit

    async def wait(self) -> int:
        """Exit status (``128 + n`` after signal ``n``; 255 if the server sent none).

        Returns once the channel has closed and, while some task iterates ``lines()``, that
        task has been handed every line; without a consumer, unread lines stay for a later
        ``lines()``, and a full buffer is discarded so the remote never stalls on it.
        If the connection died first: the group goes on the host's to-stop list (``orphans``:
        reconnect with backoff, TERM, KILL), and once it is confirmed stopped or
        ``orphan_timeout`` has passed, ConnectionLost says which. Cancelled: nothing changes
        remotely; the group stays on the to-stop list and the background clean-up goes on.
        """
        out = self._out
        while True:
            if out.consumers == 0 and out.full:
                out.discard()  # resumes the channel
            elif out.closed and (out.consumers == 0 or out.done):
                break
            else:
                out.changed.clear()
                await out.changed.wait()
        status = self._chan.get_returncode()
        if status is not None:
            return exit_status(status)
        # The channel's own connection_lost (self._lost) may run before the connection's
        # owner learns of the loss (session.lost_at): either one means the group may be
        # orphaned, never a plain exit without status.
        if self._session.lost_at is None and self._lost is None:
            return 255
        outcome = await self._orphan_outcome()
        raise ConnectionLost(
            self._session.host.name,
            f"connection lost to {self._session.label} during the step;"
            f" remote process group {self._pgid} {outcome}",
        )

    async def _orphan_outcome(self) -> str:
        """Put the group on the host's to-stop list and wait until it is settled (bounded)."""
        session = self._session
        if self._group is None:
            assert self._pgid is not None
            lost_at = session.lost_at or time.monotonic()
            self._group = session.orphans.add(session.host, self._pgid, lost_at)
        return await session.orphans.settle(self._group)

    def abandon(self) -> None:
        """Start failed or was cancelled: ask for KILL (best effort) and close the channel."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._chan.send_signal("KILL")
        self._chan.close()
