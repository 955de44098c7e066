"""Orphan clean-up: remote process groups fanout could not yet confirm stopped, per host.

sshd never stops a command when its connection dies (no PTY: no SIGHUP), so a step whose
connection is lost leaves its process group running: rman goes on writing its backup and
holds the per-database lock. Such a group goes on its host's *to-stop list* here, and stays
there until fanout has seen it gone:

* a background task per host reconnects with backoff (``backoff`` doubling up to
  ``backoff_max``) and stops every listed group, for at most ``timeout`` seconds after the
  loss (``settings.orphan_timeout``, long enough to ride out an sshd restart);
* every later connection to that host (the host's next step, a retry) stops the listed
  groups first, before anything else runs on it, deadline or not;
* ``wait_all`` (the end of the run) waits for the background tasks and returns what is still
  unconfirmed, which the run records and reports as ``may still be running``.

Stopping a group: list its live members with POSIX ``ps``; a group made only of processes
younger than the loss is not ours (its id was reused) and is left alone; otherwise TERM, up
to ``grace`` seconds, then KILL, up to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import asyncssh

from fanout.errors import TransportError
from fanout.model import Host, format_duration
from fanout.transport.base import Orphan, RemoteSignal
from fanout.transport.connect import SshOptions
from fanout.transport.framing import sh_command

__all__ = ["OrphanStopper", "group_is_ours", "parse_etime", "run_script"]

log = logging.getLogger(__name__)

_POLL: Final = 0.2  # seconds between checks that a group has gone
_KILL_WAIT: Final = 2.0  # seconds a group gets to vanish after SIGKILL


async def run_script(
    conn: asyncssh.SSHClientConnection, script: str, within: float
) -> tuple[int | None, str]:
    """Run a short POSIX sh ``script`` on a new channel of ``conn``; (exit status, stdout).

    Bounded by ``within`` seconds (raises TimeoutError); asyncssh errors and OSError pass.
    """
    async with (
        asyncio.timeout(within),
        conn.create_process(
            sh_command(script),
            stdin=asyncssh.DEVNULL,
            encoding="utf-8",
            errors="replace",
            request_pty=False,
        ) as helper,
    ):
        out, _ = await helper.communicate()
        return helper.returncode, str(out)


def parse_etime(text: str) -> int:
    """POSIX ``ps -o etime`` (``[[dd-]hh:]mm:ss``) in seconds."""
    days, _, rest = text.strip().rpartition("-")
    seconds = 0
    for part in rest.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def group_is_ours(members: Sequence[tuple[int, int]], since_lost: float) -> bool:
    """Whether a process group found after reconnecting is the one we started.

    ``members`` are (pid, etime seconds) of its live processes. The kernel does not reuse a pid
    while a group of that id exists, and our group existed when the connection was lost. So a
    member at least as old as the loss is ours; a group made only of younger processes was
    created after ours vanished and is left alone. ``etime`` has 1 s resolution (procps takes
    whole seconds of uptime minus whole seconds of start time, so it reads up to 1 s short),
    hence the 1 s; ``since_lost`` must be taken no later than ps samples.
    """
    return any(etime >= since_lost - 1.0 for _, etime in members)


async def group_members(
    conn: asyncssh.SSHClientConnection, pgid: int, within: float
) -> list[tuple[int, int]]:
    """(pid, etime) of the live (non-zombie) processes in group ``pgid``, via POSIX ps."""
    script = f"ps -A -o pgid= -o etime= -o pid= -o args= | awk '$1 == {pgid}'"
    _, listing = await run_script(conn, script, within)
    members = []
    for row in listing.splitlines():
        fields = row.split(None, 3)
        if len(fields) < 3 or "<defunct>" in row:
            continue
        with contextlib.suppress(ValueError):
            members.append((int(fields[2]), parse_etime(fields[1])))
    return members


@dataclass(eq=False, slots=True)
class _Group:
    """One orphaned remote process group on the to-stop list."""

    host: Host
    pgid: int
    lost_at: float  # monotonic time the connection was found dead
    deadline: float  # background retries stop here; later connections still try
    outcome: str | None = None  # once confirmed: "was stopped after reconnecting (SIGTERM)"...
    failure: str = "no attempt made"  # why the last attempt did not confirm it
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # confirmed or past deadline


class OrphanStopper:
    """The to-stop lists of one run's transport (see the module docstring)."""

    def __init__(
        self,
        options: SshOptions,
        *,
        timeout: float,
        grace: float,
        command_timeout: float,
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self.timeout = timeout
        self.grace = grace
        self.command_timeout = command_timeout
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._clock = clock
        self._lists: dict[str, list[_Group]] = {}  # host name → groups still to stop
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, host: Host, pgid: int, lost_at: float) -> _Group:
        """Put ``pgid`` on ``host``'s list (once) and make sure a background task works on it."""
        groups = self._lists.setdefault(host.name, [])
        for group in groups:
            if group.pgid == pgid:
                return group
        group = _Group(host, pgid, lost_at, deadline=lost_at + self.timeout)
        groups.append(group)
        task = self._tasks.get(host.name)
        if task is None or task.done():
            self._tasks[host.name] = asyncio.create_task(
                self._retry(host), name=f"orphans:{host.name}"
            )
        return group

    def has(self, host: Host) -> bool:
        return bool(self._lists.get(host.name))

    async def settle(self, group: _Group) -> str:
        """Wait until ``group`` is confirmed stopped or its deadline passed; say which.

        Cancelled: the group stays on the list and the background task goes on.
        """
        await group.settled.wait()
        return self.describe(group)

    def describe(self, group: _Group) -> str:
        if group.outcome is not None:
            return group.outcome
        return (
            f"may still be running: not confirmed stopped within"
            f" {format_duration(self.timeout)} ({group.failure})"
        )

    async def stop_listed(self, host: Host, conn: asyncssh.SSHClientConnection) -> None:
        """Stop every group on ``host``'s list over ``conn``. Never raises (but on cancel)."""
        if not self.has(host):
            return
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            for group in list(self._lists.get(host.name, ())):
                try:
                    outcome = await self._stop_group(conn, group)
                except (asyncssh.Error, OSError, TimeoutError) as exc:
                    group.failure = str(exc) or type(exc).__name__
                    continue
                if outcome is None:
                    group.failure = "it did not stop after SIGKILL"
                    continue
                group.outcome = outcome
                group.settled.set()
                self._lists[host.name].remove(group)
                log.debug("%s: process group %d %s", host.name, group.pgid, outcome)

    async def wait_all(self) -> list[Orphan]:
        """Wait for every background task (each bounded by its deadline); what is left."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.wait(tasks)
        return [
            Orphan(name, group.pgid, self.describe(group))
            for name, groups in self._lists.items()
            for group in groups
        ]

    async def _retry(self, host: Host) -> None:
        """Reconnect with backoff until the host's list is empty or every deadline passed.

        However it ends (a bug, the loop shutting down), no waiter is left waiting.
        """
        try:
            await self._retry_until_settled(host)
        except Exception as exc:  # a bug: report it as the groups' failure, never hang a waiter
            log.exception("orphan clean-up on %s failed", host.name)
            self._give_up(host, f"clean-up failed: {exc!r}")
        except BaseException:
            self._give_up(host, "clean-up cancelled")
            raise

    def _give_up(self, host: Host, why: str) -> None:
        for group in self._lists.get(host.name, ()):
            if not group.settled.is_set():
                group.failure = why
                group.settled.set()

    async def _retry_until_settled(self, host: Host) -> None:
        delay = self.backoff
        while True:
            self._expire(host)
            waiting = [g for g in self._lists.get(host.name, ()) if not g.settled.is_set()]
            if not waiting:
                return
            try:
                link = await self._options.connect(host)
            except TransportError as exc:
                for group in waiting:
                    group.failure = exc.reason
                if not exc.retryable:  # a host key or auth problem does not heal by itself
                    for group in waiting:
                        group.settled.set()
                    return
            else:
                try:
                    await self.stop_listed(host, link.conn)
                finally:
                    link.abort()
            self._expire(host)
            waiting = [g for g in self._lists.get(host.name, ()) if not g.settled.is_set()]
            if not waiting:
                return
            left = min(g.deadline for g in waiting) - self._clock()
            await asyncio.sleep(max(0.0, min(delay, left)))
            delay = min(delay * 2, self.backoff_max)

    def _expire(self, host: Host) -> None:
        now = self._clock()
        for group in self._lists.get(host.name, ()):
            if now >= group.deadline:
                group.settled.set()

    async def _stop_group(self, conn: asyncssh.SSHClientConnection, group: _Group) -> str | None:
        """TERM, then KILL the group if it is ours; its outcome, or None if it would not stop."""
        # Measured before ps runs: taken after its round trip, the loss would look older than
        # the etime ps reported, and a group of ours started just before the loss could be
        # taken for a newer one and left running (seen under load: 200-host demo in CI).
        since_lost = self._clock() - group.lost_at
        members = await group_members(conn, group.pgid, self.command_timeout)
        if not members:
            return "had already exited"
        if not group_is_ours(members, since_lost):
            return "had exited (its id now belongs to a newer process group, left alone)"
        for sig, limit in ((RemoteSignal.TERM, self.grace), (RemoteSignal.KILL, _KILL_WAIT)):
            kill = f"kill -s {sig.value} -- -{group.pgid} 2>/dev/null"
            await run_script(conn, kill, self.command_timeout)
            deadline = self._clock() + limit
            while members and self._clock() < deadline:
                await asyncio.sleep(_POLL)
                members = await group_members(conn, group.pgid, self.command_timeout)
            if not members:
                return f"was stopped after reconnecting (SIG{sig.value})"
        return None
