"""The seam between the engine and the machines it drives.

The engine only sees these protocols; ``ssh.py`` implements them with asyncssh
and the tests implement them with fakes.

Remote process contract (what every implementation must guarantee):

* ``Session.start`` runs ``command`` on the host in a process group of its own,
  writes ``stdin`` (if any) and closes it, and returns once the process group id
  is known, so that ``signal`` can always reach the whole group.
* ``RemoteProcess.lines`` yields output line by line as it arrives (never the
  whole output in memory) and ends when both streams reach EOF; ``batches``
  yields the same lines grouped as they were read together, one stream per
  batch, never empty (the engine's path: nothing is handed over per line). A
  process is read through one of them.
* ``RemoteProcess.signal`` delivers a signal to the whole remote process group.
* ``RemoteProcess.wait`` returns the exit status (``128 + n`` when killed by
  signal ``n``). If the connection dies first, it raises ``ConnectionLost`` —
  but only after making a bounded effort (reconnecting) to stop the orphaned
  remote process group, so a network blip never leaves a backup running.
* A group that could not be confirmed stopped is an ``Orphan``; ``OrphanWatch``
  (the SSH transport) returns those still unconfirmed at the end of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fanout.events import Stream
from fanout.model import Host


class RemoteSignal(StrEnum):
    INT = "INT"
    TERM = "TERM"
    KILL = "KILL"


@dataclass(frozen=True, slots=True)
class OutputLine:
    stream: Stream
    text: str  # without the trailing newline


@dataclass(frozen=True, slots=True)
class OutputBatch:
    """Lines of one stream that were read together (at least one): what arrived within one
    output tick (``framing.OUTPUT_TICK``) until the other stream's next lines."""

    stream: Stream
    lines: tuple[str, ...]  # without their trailing newlines


@dataclass(frozen=True, slots=True)
class Orphan:
    """A remote process group fanout started and could not confirm stopped."""

    host: str
    pgid: int
    reason: str  # one line: why it is unconfirmed


class OrphanWatch(Protocol):
    async def wait_orphans(self) -> list[Orphan]:
        """Wait (bounded) for the clean-ups under way; the groups still unconfirmed."""
        ...


class RemoteProcess(Protocol):
    @property
    def pgid(self) -> int | None: ...

    def lines(self) -> AsyncIterator[OutputLine]: ...

    def batches(self) -> AsyncIterator[OutputBatch]: ...

    async def signal(self, sig: RemoteSignal) -> None:
        """Send ``sig`` to the whole remote process group. Never raises for a gone process."""
        ...

    async def wait(self) -> int:
        """Exit status. Raises ConnectionLost (after trying to stop the group)."""
        ...


class Session(Protocol):
    async def start(self, command: str, stdin: str | None) -> RemoteProcess:
        """Start ``command``. Raises ConnectionLost if the connection is gone."""
        ...


class Transport(Protocol):
    def open_session(self, host: Host) -> AbstractAsyncContextManager[Session]:
        """Connect to ``host`` (one connection, reused for all its steps).

        Raises ConnectError (transient), AuthError or HostKeyError. Leaving the
        context closes the connection cleanly.
        """
        ...
