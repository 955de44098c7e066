"""The simulated machine every sim host shares: a process table and a small file system.

All simulated hosts answer on one 127.0.0.1 port, so they share this state, like databases
on one big server. Nothing collides: process ids are never reused while the fleet runs, and
every per-database path fanout uses (``/tmp/fanout-<SID>.lock``) carries the SID.

A ``SimProcess`` never blocks except in ``pause``/``interruptible``, which end early when a
signal it does not ignore arrives; that is how ``kill -s INT -- -<pgid>`` from a second SSH
channel, or the RFC 4254 signal request, reaches a step that is waiting or "working".
"""

from __future__ import annotations

import asyncio
import posixpath
import random
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

from fanout.sim.behaviour import HostBehaviour

__all__ = [
    "SIGNALS",
    "FileSystem",
    "ProcessTable",
    "Signalled",
    "SimProcess",
    "World",
    "format_etime",
]

T = TypeVar("T")

#: Signal names (as ``kill -s`` and RFC 4254 spell them) and numbers (Linux).
SIGNALS: Final = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
}


class Signalled(Exception):
    """A signal ended a ``pause``: ``name`` is ``INT``, ``TERM``, ``KILL``…"""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class SimProcess:
    """One simulated process. ``pid`` stays the same across ``exec`` (only ``args`` changes)."""

    def __init__(
        self, table: ProcessTable, pid: int, pgid: int, ppid: int, args: str, user: str
    ) -> None:
        self.table = table
        self.pid = pid
        self.pgid = pgid
        self.ppid = ppid
        self.args = args
        self.user = user
        self.started = time.monotonic()
        self.pending: list[str] = []
        self.ignored: set[str] = set()  # never KILL
        self.alive = True
        self._wake = asyncio.Event()

    def deliver(self, sig: str) -> None:
        """Queue ``sig``; a ``pause`` under way ends with Signalled.

        Like POSIX signals, one already pending is not queued twice: the RFC 4254 request
        and the second-channel ``kill`` that fanout sends together act as one.
        """
        if not self.alive or sig in self.pending or (sig in self.ignored and sig != "KILL"):
            return
        self.pending.append(sig)
        self._wake.set()

    def ignore(self, sig: str) -> None:
        """From now on ``sig`` does nothing (pending ones included); KILL cannot be ignored."""
        if sig != "KILL":
            self.ignored.add(sig)
            self.pending = [s for s in self.pending if s != sig]
            if not self.pending:
                self._wake.clear()

    def take(self) -> str | None:
        """The oldest pending signal, removed; None if there is none."""
        sig = self.pending.pop(0) if self.pending else None
        if not self.pending:
            self._wake.clear()
        return sig

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (``inf``: until a signal). Raises Signalled(name)."""
        await self.interruptible(asyncio.sleep(seconds) if seconds != float("inf") else None)

    async def interruptible(self, aw: Awaitable[T] | None) -> T | None:
        """Await ``aw`` (None: nothing, wait for a signal) unless a signal comes first.

        Raises Signalled(name) for the signal; ``aw`` is then cancelled.
        """
        if (sig := self.take()) is not None:
            if aw is not None and asyncio.iscoroutine(aw):
                aw.close()
            raise Signalled(sig)
        waker = asyncio.ensure_future(self._wake.wait())
        work = asyncio.ensure_future(aw) if aw is not None else None
        try:
            waiting = {waker} if work is None else {waker, work}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            if work is not None and not work.done():
                work.cancel()
        if work is not None and work in done:
            return work.result()
        sig = self.take()
        raise Signalled(sig or "KILL")

    def exit(self) -> None:
        """The process has ended: it leaves the table (nothing can signal it any more)."""
        self.alive = False
        self.table.remove(self.pid)


def format_etime(seconds: float) -> str:
    """``ps -o etime``: ``[[dd-]hh:]mm:ss``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{minutes:02d}:{secs:02d}"
    if hours or days:
        text = f"{hours:02d}:{text}"
    if days:
        text = f"{days}-{text}"
    return text


class ProcessTable:
    """Every live simulated process; pids grow and are never reused."""

    def __init__(self, first_pid: int | None = None, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._next = first_pid if first_pid is not None else self._random.randint(20000, 40000)
        self._procs: dict[int, SimProcess] = {}

    def spawn(self, args: str, *, user: str, parent: SimProcess | None = None) -> SimProcess:
        """A new process: a session leader (pgid = pid) unless ``parent`` is given."""
        pid = self._next
        self._next += self._random.randint(1, 9)
        pgid = parent.pgid if parent is not None else pid
        ppid = parent.pid if parent is not None else 1
        proc = SimProcess(self, pid, pgid, ppid, args, user)
        self._procs[pid] = proc
        return proc

    def remove(self, pid: int) -> None:
        self._procs.pop(pid, None)

    def get(self, pid: int) -> SimProcess | None:
        return self._procs.get(pid)

    def group(self, pgid: int) -> list[SimProcess]:
        return [p for p in self._procs.values() if p.pgid == pgid]

    def all(self) -> list[SimProcess]:
        return sorted(self._procs.values(), key=lambda p: p.pid)

    def signal(self, target: int, sig: str) -> bool:
        """``kill``: ``target`` > 0 is a pid, < 0 a process group. False: no such process."""
        procs = self.group(-target) if target < 0 else [p for p in [self.get(target)] if p]
        for proc in procs:
            if sig != "0":
                proc.deliver(sig)
        return bool(procs)

    def kill_all(self) -> None:
        """SIGKILL every process (the fleet is shutting down)."""
        for proc in self.all():
            proc.deliver("KILL")


class FileSystem:
    """A small POSIX file system for the wrapper's lock files.

    Scratch areas (``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run``) start empty and hold what
    the steps create. Everything else is the database host's static tree: every directory
    exists (ORACLE_HOME, ``/u02/fra``…) except the paths a host's behaviour marks missing,
    and there are no regular files there. ``/dev/null`` swallows writes.
    """

    SCRATCH: Final = ("/tmp", "/var/tmp", "/dev/shm", "/run")

    def __init__(self) -> None:
        self._dirs: set[str] = set(self.SCRATCH)
        self._files: dict[str, str] = {}

    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        return posixpath.normpath(posixpath.join(cwd, path)) if path else ""

    def _scratch(self, path: str) -> bool:
        return any(path == s or path.startswith(s + "/") for s in self.SCRATCH)

    def kind(self, path: str, missing: Iterable[str] = ()) -> str | None:
        """ "dir", "file", "dev" or None (absent)."""
        if path == "/dev/null":
            return "dev"
        if path in self._files:
            return "file"
        if path in self._dirs:
            return "dir"
        if self._scratch(path) or not path.startswith("/"):
            return None
        if any(path == m or path.startswith(m.rstrip("/") + "/") for m in missing):
            return None
        return "dir"

    def mkdir(self, path: str, *, parents: bool = False) -> str | None:
        """Create a directory; an error message (``File exists``…) or None."""
        kind = self.kind(path)
        if kind is not None:
            return None if parents and kind == "dir" else "File exists"
        parent = posixpath.dirname(path)
        if self.kind(parent) is None:
            if not parents:
                return "No such file or directory"
            self.mkdir(parent, parents=True)
        self._dirs.add(path)
        return None

    def remove(self, path: str, *, recursive: bool) -> str | None:
        kind = self.kind(path)
        if kind is None:
            return "No such file or directory"
        if kind == "dir" and not self._scratch(path):
            return "Permission denied"
        inside = [p for p in (*self._dirs, *self._files) if p.startswith(path + "/")]
        if kind == "dir" and inside and not recursive:
            return "Is a directory"
        for p in [*inside, path]:
            self._dirs.discard(p)
            self._files.pop(p, None)
        return None

    def read(self, path: str) -> tuple[str | None, str | None]:
        """(content, error)."""
        kind = self.kind(path)
        if kind == "file":
            return self._files[path], None
        if kind == "dev":
            return "", None
        if kind == "dir":
            return None, "Is a directory"
        return None, "No such file or directory"

    def write(self, path: str, text: str, *, append: bool) -> str | None:
        kind = self.kind(path)
        if kind == "dev":
            return None
        if kind == "dir":
            return "Is a directory"
        if kind is None and self.kind(posixpath.dirname(path)) != "dir":
            return "Directory nonexistent"
        if kind is None and not self._scratch(path):
            return "Permission denied"
        self._files[path] = (self._files.get(path, "") if append else "") + text
        return None


@dataclass(slots=True)
class World:
    """Everything the simulated hosts share: processes, files, behaviours, the pace."""

    behaviours: Mapping[str, HostBehaviour] = field(default_factory=dict)  # by ORACLE_SID
    default: HostBehaviour = field(default_factory=HostBehaviour)
    speed: float = 1.0  # simulated seconds per real second
    hostname: str = "dbsim01"
    table: ProcessTable = field(default_factory=ProcessTable)
    fs: FileSystem = field(default_factory=FileSystem)
    dropped: set[str] = field(default_factory=set)  # SIDs whose connection was dropped

    def behaviour(self, sid: str) -> HostBehaviour:
        return self.behaviours.get(sid, self.default)

    def scaled(self, seconds: float) -> float:
        """Real seconds for ``seconds`` of simulated time."""
        return seconds / self.speed
