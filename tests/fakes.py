"""In-memory fakes of the transport protocols, for engine tests that run in milliseconds.

``FakeTransport`` plays a scripted fleet: per host, connection failures to raise and,
per step name (matched in the command text), how the remote process behaves. Fake
processes honour signals the way rman does: INT aborts after ``int_delay`` (unless
``ignore_int``), TERM after ``term_delay`` (unless ``ignore_term``), KILL at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fanout.errors import ConnectionLost, TransportError
from fanout.events import Stream
from fanout.model import Host
from fanout.transport.base import OutputBatch, OutputLine, RemoteSignal

SIGNUMS = {RemoteSignal.INT: 2, RemoteSignal.TERM: 15, RemoteSignal.KILL: 9}


@dataclass
class Behaviour:
    """How one fake remote step behaves."""

    lines: tuple[str, ...] = ("Recovery Manager: Release 19.0.0.0.0", "Recovery Manager complete.")
    stderr: tuple[str, ...] = ()
    exit_status: int = 0
    seconds: float = 0.0  # run time before exiting by itself
    hang: bool = False  # never exits by itself
    ignore_int: bool = False
    ignore_term: bool = False
    int_delay: float = 0.0  # rman's own clean-up time after SIGINT
    term_delay: float = 0.0
    lose_connection: bool = False  # wait() raises ConnectionLost after ``seconds``


@dataclass
class HostScript:
    connect_errors: list[TransportError] = field(default_factory=list)  # raised in turn
    connect_delay: float = 0.0
    # step name → behaviour, or a list consumed one per attempt (the last one repeats)
    steps: dict[str, Behaviour | list[Behaviour]] = field(default_factory=dict)
    crash_on_start: BaseException | None = None  # Session.start raises this (a bug)


@dataclass
class Journal:
    """What happened, in order, for assertions."""

    entries: list[tuple[str, ...]] = field(default_factory=list)
    running: set[tuple[str, str]] = field(default_factory=set)
    max_running_hosts: int = 0
    connected: set[str] = field(default_factory=set)
    stdin: dict[tuple[str, str], str | None] = field(default_factory=dict)  # latest per step

    def add(self, *entry: str) -> None:
        self.entries.append(entry)

    def of(self, kind: str) -> list[tuple[str, ...]]:
        return [e for e in self.entries if e[0] == kind]


class FakeProcess:
    def __init__(self, host: str, step: str, behaviour: Behaviour, journal: Journal) -> None:
        self.host = host
        self.step = step
        self.b = behaviour
        self.journal = journal
        self.signals: list[RemoteSignal] = []
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._timers: list[asyncio.TimerHandle] = []
        loop = asyncio.get_running_loop()
        if not behaviour.hang:
            self._timers.append(
                loop.call_later(behaviour.seconds, self._finish, behaviour.exit_status)
            )
        journal.running.add((host, step))

    @property
    def pgid(self) -> int | None:
        return 4242

    def _finish(self, status: int) -> None:
        if not self._exit.done():
            self.journal.running.discard((self.host, self.step))
            self.journal.add("exit", self.host, self.step, str(status))
            self._exit.set_result(status)
        for t in self._timers:
            t.cancel()

    async def lines(self) -> AsyncIterator[OutputLine]:
        for text in self.b.lines:
            yield OutputLine(Stream.STDOUT, text)
        for text in self.b.stderr:
            yield OutputLine(Stream.STDERR, text)
        await asyncio.shield(self._exit)

    async def batches(self) -> AsyncIterator[OutputBatch]:
        if self.b.lines:
            yield OutputBatch(Stream.STDOUT, tuple(self.b.lines))
        if self.b.stderr:
            yield OutputBatch(Stream.STDERR, tuple(self.b.stderr))
        await asyncio.shield(self._exit)

    async def signal(self, sig: RemoteSignal) -> None:
        self.signals.append(sig)
        self.journal.add("signal", self.host, self.step, sig.value)
        loop = asyncio.get_running_loop()
        if sig is RemoteSignal.KILL:
            self._finish(128 + 9)
        elif sig is RemoteSignal.INT and not self.b.ignore_int:
            self._timers.append(loop.call_later(self.b.int_delay, self._finish, 1))
        elif sig is RemoteSignal.TERM and not self.b.ignore_term:
            self._timers.append(loop.call_later(self.b.term_delay, self._finish, 1))

    async def wait(self) -> int:
        status = await asyncio.shield(self._exit)
        if self.b.lose_connection:
            raise ConnectionLost(self.host, "connection lost")
        return status


class FakeSession:
    def __init__(
        self, host: Host, script: HostScript, journal: Journal, clock: Callable[[], float]
    ) -> None:
        self.host = host
        self.script = script
        self.journal = journal
        self.clock = clock
        self.processes: list[FakeProcess] = []

    async def start(self, command: str, stdin: str | None) -> FakeProcess:
        if self.script.crash_on_start is not None:
            raise self.script.crash_on_start
        step = command.rsplit("#", 1)[-1].strip() if "#" in command else command
        self.journal.add("start", self.host.name, step)
        self.journal.stdin[self.host.name, step] = stdin
        planned = self.script.steps.get(step, Behaviour())
        if isinstance(planned, list):
            behaviour = planned.pop(0) if len(planned) > 1 else planned[0]
        else:
            behaviour = planned
        proc = FakeProcess(self.host.name, step, behaviour, self.journal)
        self.processes.append(proc)
        return proc


class FakeTransport:
    """A scripted fleet. Steps are identified by a trailing ``# <step>`` in the command."""

    def __init__(self, scripts: dict[str, HostScript] | None = None) -> None:
        self.scripts = scripts or {}
        self.journal = Journal()
        self.sessions: dict[str, list[FakeSession]] = {}
        self._open_hosts: set[str] = set()

    @asynccontextmanager
    async def open_session(self, host: Host) -> AsyncIterator[FakeSession]:
        script = self.scripts.setdefault(host.name, HostScript())
        self.journal.add("connect", host.name)
        if script.connect_delay:
            await asyncio.sleep(script.connect_delay)
        if script.connect_errors:
            raise script.connect_errors.pop(0)
        self._open_hosts.add(host.name)
        self.journal.max_running_hosts = max(self.journal.max_running_hosts, len(self._open_hosts))
        session = FakeSession(host, script, self.journal, asyncio.get_running_loop().time)
        self.sessions.setdefault(host.name, []).append(session)
        try:
            yield session
        finally:
            self._open_hosts.discard(host.name)
            self.journal.add("close", host.name)
