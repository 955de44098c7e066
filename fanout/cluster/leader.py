"""Leadership over a ``KV``: campaign, keepalive, the local deadline, fenced writes.

- **Campaign**: grant a lease of ``ttl`` seconds, then create the leader key bound to it if
  it does not exist. The winner's **fencing token** is the key's create revision: etcd
  revisions only grow, so a later leader always has a larger token, even on the same machine.
- **Keepalive** (a thread of its own): renew every ttl/3; after an error retry every 0.2 s
  (an etcd leader change stalls calls for up to the request deadline). The **local
  deadline** is the steady-clock time taken *before* a successful renewal plus the TTL it
  returned, minus a margin (min(1 s, ttl/4)): the lease cannot expire on etcd before it, so
  no other node can lead while this one is inside its deadline.
- **Losing it**: past the deadline, on a refused fenced write or on an expired lease,
  ``lose(why)`` runs once: the callbacks (the runner's cancel token) fire and
  ``leading()`` is False from then on. ``leading()`` also compares the clock itself, so a
  process that was frozen (SIGSTOP, a VM pause) sees the loss at its first check, before any
  timer callback has had a chance to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fanout.cluster.kv import KV, ClusterError, Entry, Fenced, Unavailable

RETRY_DELAY = 0.2


def steady_clock() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended.

    Linux's CLOCK_MONOTONIC stops during a suspend: a leader waking from one would think its
    deadline still ahead. CLOCK_BOOTTIME does not stop; elsewhere, the monotonic clock.
    """
    return time.clock_gettime(_BOOTTIME)


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def margin_for(ttl: float) -> float:
    return min(1.0, ttl / 4)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the leader key, as its value says."""

    node: str
    pid: int
    token: int  # the key's create revision
    since: float  # epoch seconds

    @classmethod
    def of(cls, entry: Entry) -> Holder:
        try:
            data = json.loads(entry.value)
            return cls(str(data["node"]), int(data["pid"]), entry.create_revision, data["at"])
        except (ValueError, KeyError, TypeError):
            return cls("?", 0, entry.create_revision, 0.0)


class Leadership:
    """This node leads: its token, its deadline, its fenced writes. Get one from ``campaign``."""

    def __init__(
        self,
        kv: KV,
        key: str,
        token: int,
        lease: int,
        ttl: int,
        deadline: float,
        *,
        request_timeout: float = 2.0,
        clock: Callable[[], float] = steady_clock,
    ) -> None:
        self.kv = kv
        self.key = key
        self.token = token
        self.lease = lease
        self.ttl = ttl
        self.deadline = deadline
        self.lost: str | None = None
        self._clock = clock
        self._margin = margin_for(ttl)
        self._callbacks: list[Callable[[str], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._request_timeout = request_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ state

    def leading(self) -> bool:
        """True while this node may start work. Checks the deadline itself (see the module)."""
        if self.lost is None and self._clock() >= self.deadline:
            self.lose("the lease was not renewed before the local deadline")
        return self.lost is None

    def remaining(self) -> float:
        """Seconds left before the local deadline (negative once past it)."""
        return self.deadline - self._clock()

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(why)`` once, when leadership is lost (at once if it already is)."""
        if self.lost is not None:
            callback(self.lost)
        else:
            self._callbacks.append(callback)

    def lose(self, why: str) -> None:
        if self.lost is not None:
            return
        self.lost = why
        for callback in self._callbacks:
            callback(why)

    # ------------------------------------------------------------ tasks

    def start(self) -> None:
        """Start the keepalive thread and the deadline watchdog (stopped by ``stop``).

        Renewals run in a thread of their own (``KV.renew_blocking``), so a loop busy with
        synchronous work (the run store's fsyncs, a burst of output) never costs the lease;
        a loss it detects is handed to the loop, where the callbacks run.
        """
        self._loop = asyncio.get_running_loop()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._keep_alive, name="cluster-keepalive", daemon=True
        )
        self._thread.start()
        self._tasks = [self._loop.create_task(self._watchdog(), name="cluster-watchdog")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._thread is not None:
            self._stopping.set()
            await asyncio.to_thread(self._thread.join, self._request_timeout + 1.0)
            self._thread = None

    async def _watchdog(self) -> None:
        while self.leading():  # noqa: ASYNC110 - the deadline moves with every renewal
            await asyncio.sleep(max(0.0, self.deadline - self._clock()) + 0.001)

    def _keep_alive(self) -> None:
        """The keepalive thread: renew until stopped or lost; each renewal bounded by the time
        left before the deadline. It only moves ``deadline`` forward; losses go to the loop."""
        while not self._stopping.is_set() and self.lost is None:
            began = self._clock()
            left = self.deadline - began
            if left <= 0:
                self._to_loop(self.leading)  # the loop's own check declares the loss
                return
            try:
                ttl = self.kv.renew_blocking(self.lease, min(self._request_timeout, left))
            except ClusterError:
                self._stopping.wait(RETRY_DELAY)
                continue
            if ttl <= 0:
                self._to_loop(self.lose, "the lease expired on etcd")
                return
            if self.lost is None:
                self.deadline = max(self.deadline, began + ttl - self._margin)
            self._stopping.wait(self.ttl / 3)

    def _to_loop(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(callback, *args)

    # ------------------------------------------------------------ writes

    async def write(
        self, puts: Sequence[tuple[str, bytes]], delete_prefixes: Sequence[str] = ()
    ) -> None:
        """Apply ``puts`` fenced by this node's token, retrying transient errors until the
        deadline (the writes are idempotent). Raises Fenced (after ``lose``) if refused or
        once leadership is lost."""
        while True:
            if not self.leading():
                raise Fenced(f"not leading: {self.lost}")
            try:
                async with asyncio.timeout(max(0.05, self.deadline - self._clock())):
                    applied = await self.kv.put_fenced(self.key, self.token, puts, delete_prefixes)
            except (Unavailable, TimeoutError):
                await asyncio.sleep(RETRY_DELAY)
                continue
            if not applied:
                self.lose("another node leads now (a fenced write was refused)")
                raise Fenced(f"not leading: {self.lost}")
            return

    async def resign(self) -> None:
        """Give the key up (revoke the lease) so a standby need not wait for the TTL.

        Best effort: if etcd cannot be reached the lease simply expires."""
        await self.stop()
        self._callbacks.clear()  # the run is over: nothing left to cancel
        self.lose("resigned")
        with contextlib.suppress(ClusterError, TimeoutError):
            async with asyncio.timeout(2.0):
                await self.kv.revoke(self.lease)


async def campaign(
    kv: KV,
    key: str,
    node: str,
    pid: int,
    ttl: float,
    *,
    request_timeout: float = 2.0,
    clock: Callable[[], float] = steady_clock,
    wall: Callable[[], float] = time.time,
) -> Leadership | Holder:
    """Try once to become leader: a ``Leadership`` (not yet started) or who holds the key.

    Raises Unavailable if etcd cannot be reached. A lost race revokes its own lease.
    """
    began = clock()
    lease, granted = await kv.grant(math.ceil(ttl))
    value = json.dumps({"node": node, "pid": pid, "lease": lease, "at": wall()}).encode()
    try:
        won, entry = await kv.create(key, value, lease)
    except Unavailable:
        # It may have been applied: if the key is ours, we lead; otherwise the lease goes.
        entry = await _get_quietly(kv, key)
        won = entry is not None and entry.lease == lease
        if not won:
            await _revoke_quietly(kv, lease)
            raise
    if not won and entry is not None and entry.lease == lease:
        won = True  # an earlier, timed-out attempt of this same call landed
    if won:
        assert entry is not None
        deadline = began + granted - margin_for(granted)
        return Leadership(
            kv,
            key,
            entry.create_revision,
            lease,
            granted,
            deadline,
            request_timeout=request_timeout,
            clock=clock,
        )
    await _revoke_quietly(kv, lease)
    if entry is None:
        return Holder("?", 0, 0, 0.0)
    return Holder.of(entry)


async def _get_quietly(kv: KV, key: str) -> Entry | None:
    with contextlib.suppress(ClusterError):
        return await kv.get(key)
    return None


async def _revoke_quietly(kv: KV, lease: int) -> None:
    with contextlib.suppress(ClusterError):
        await kv.revoke(lease)
