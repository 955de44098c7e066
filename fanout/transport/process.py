"""The remote process: one step running in its own process group on the host.

``SshSession.start`` opens the channel (see ``framing`` for the command and the pgid line);
``SshProcess`` streams its lines, signals its group through a second channel, and waits for
its exit status. If the connection dies under it, ``wait`` (or ``signal``) puts the group on
the host's to-stop list (``orphans``) and raises ``ConnectionLost`` once the group is confirmed
stopped or the ``orphan_timeout`` has passed, saying which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncssh

from fanout.errors import ConnectionLost
from fanout.events import Stream
from fanout.transport.base import OutputLine, RemoteSignal
from fanout.transport.framing import (
    CHUNK,
    MARKER_RE,
    PREAMBLE_MAX,
    LineSplitter,
    Output,
    decode,
    exit_status,
)

if TYPE_CHECKING:
    from fanout.transport.orphans import _Group
    from fanout.transport.ssh import SshSession

__all__ = ["SshProcess"]

log = logging.getLogger(__name__)


class SshProcess:
    """A step running on the remote host in its own process group (``RemoteProcess``)."""

    def __init__(self, session: SshSession, chan: asyncssh.SSHClientProcess[bytes]) -> None:
        self._session = session
        self._chan = chan
        self._pgid: int | None = None
        self._out = Output()
        self._readers: list[asyncio.Task[None]] = []
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
        return self._pgid is not None and self._chan.returncode is None

    async def read_pgid(self) -> None:
        """Consume stdout up to the ``fanout-pgid=<n>`` line (bounded by ``start_timeout``).

        Then start the stream readers. Raises ConnectionLost.
        """
        host = self._session.host.name
        timeout = self._session.transport.start_timeout
        self._readers.append(
            asyncio.create_task(self._pump(self._chan.stderr, Stream.STDERR, LineSplitter(), []))
        )
        splitter, before, after = LineSplitter(), list[bytes](), list[bytes]()
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while self._pgid is None:
                    data = await self._chan.stdout.read(CHUNK)
                    if not data:
                        raise ConnectionLost(host, await self._no_pgid_reason(before))
                    for raw in splitter.feed(data):
                        match = MARKER_RE.fullmatch(raw) if self._pgid is None else None
                        if match:
                            self._pgid = int(match[1])
                        else:
                            (before if self._pgid is None else after).append(raw)
                            seen += len(raw)
                    if self._pgid is None and seen > PREAMBLE_MAX:
                        raise ConnectionLost(host, await self._no_pgid_reason(before))
        except TimeoutError as exc:
            reason = f"no process group id from {self._session.label} within {timeout:g}s"
            raise ConnectionLost(host, reason) from exc
        except (asyncssh.Error, OSError) as exc:
            reason = f"connection lost to {self._session.label} starting a step: {exc}"
            raise ConnectionLost(host, reason) from exc
        self._readers.append(
            asyncio.create_task(
                self._pump(self._chan.stdout, Stream.STDOUT, splitter, before + after)
            )
        )
        self._readers.append(asyncio.create_task(self._watch_close()))

    async def _watch_close(self) -> None:
        await self._chan.wait_closed()
        self._out.closed.set()
        self._out.changed.set()

    async def _no_pgid_reason(self, before: list[bytes]) -> str:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._chan.wait_closed()
                await asyncio.wait(self._readers)  # the stderr reader notes the first line
        status = self._chan.returncode
        said = self._first_stderr or (decode(before[0]) if before else None)
        what = f"exited with status {exit_status(status)}" if status is not None else "ended"
        return (
            f"the remote shell on {self._session.label} {what} before reporting its process group"
            + (f": {said}" if said else "")
        )

    async def _pump(
        self,
        reader: asyncssh.SSHReader[bytes],
        stream: Stream,
        splitter: LineSplitter,
        pending: list[bytes],
    ) -> None:
        """Copy one stream into the queue, a batch of lines per chunk; always ends with EOF."""
        out = self._out
        try:
            if pending:
                await self._put(stream, pending)
            while data := await reader.read(CHUNK):
                if raws := splitter.feed(data):
                    await self._put(stream, raws)
            if (tail := splitter.flush()) is not None:
                await self._put(stream, [tail])
        except (asyncssh.Error, OSError) as exc:  # connection lost: this stream ends here
            log.debug("%s %s ended: %s", self._session.label, stream, exc)
        finally:
            out.queue.put_nowait(None)

    async def _put(self, stream: Stream, raws: list[bytes]) -> None:
        batch = [OutputLine(stream, raw.decode("utf-8", "replace")) for raw in raws]
        if stream is Stream.STDERR and self._first_stderr is None:
            self._first_stderr = batch[0].text
        out = self._out
        while out.full:
            out.changed.set()  # full: wait() discards if nobody reads
            out.space.clear()
            await out.space.wait()
        out.queued += len(batch)
        out.queue.put_nowait(batch)

    async def batches(self) -> AsyncIterator[list[OutputLine]]:
        """Like ``lines()``, a non-empty list of lines at a time (those read together).

        Cancelling the consumer loses no batch that was not yet yielded.
        """
        out = self._out
        out.consumers += 1
        out.changed.set()
        try:
            while True:
                if out.pending:
                    batch = list(out.pending)
                    out.pending.clear()
                    yield batch
                    continue
                if out.eofs >= 2:
                    break
                item = out.take(await out.queue.get())
                if item is not None:
                    yield item
        finally:
            out.consumers -= 1
            out.changed.set()

    async def lines(self) -> AsyncIterator[OutputLine]:
        """stdout and stderr lines as they arrive; ends when both streams reach EOF.

        About ``QUEUE_LINES`` lines (plus one chunk's) wait here; past that the remote side is
        held back by SSH flow control. A connection loss ends the streams (``wait`` then
        raises ConnectionLost). Cancelling the consumer loses no line that was not yet yielded.
        """
        out = self._out
        out.consumers += 1
        out.changed.set()
        try:
            while True:
                if out.pending:
                    yield out.pending.popleft()
                    continue
                if out.eofs >= 2:
                    break
                item = out.take(await out.queue.get())
                if item is not None:
                    out.pending.extend(item)
        finally:
            out.consumers -= 1
            out.changed.set()

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
            if out.consumers == 0 and out.full and not out.queue.empty():
                out.discard()
            elif out.closed.is_set() and (out.consumers == 0 or out.done.is_set()):
                break
            else:
                out.changed.clear()
                await out.changed.wait()
        status = self._chan.returncode
        if status is not None:
            return exit_status(status)
        if self._session.lost_at is None:
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
        self.cancel_readers()

    def cancel_readers(self) -> None:
        for task in self._readers:
            task.cancel()
