"""SSH transport over asyncssh: the only module of fanout that imports asyncssh.

One connection per host, reused for every step. Each step is one non-PTY exec channel running::

    exec /bin/sh -c '<echo fanout-pgid=$$ ; newline ; the step's command>'

sshd ``setsid()``s a non-PTY session before running the login shell, ``exec`` turns that shell
into ``/bin/sh`` with the same pid, so ``$$`` is the id of the session's process group; the step's
command (``exec rman …``) and every child it starts stay in that group. The first stdout line,
``fanout-pgid=<n>``, is consumed here and never shown as output.

Signals reach the whole group through a second exec channel on the same connection running
``kill -s SIG -- -<pgid>``; the RFC 4254 ``signal`` request is sent as well, best effort (OpenSSH
7.9-9.9 refuse it for root logins, older servers ignore it).

If the connection dies under a running step, sshd does not stop the command. ``wait`` (or
``signal``) then reconnects (``reconnect_attempts``), checks that the process group still holds
processes that existed before the connection was lost (so a recycled pid is never killed), sends
TERM, waits ``orphan_grace`` seconds, sends KILL, and only then raises ``ConnectionLost``.

Errors are translated at this seam (``CONNECT_ERRORS``): HostKeyError and AuthError are never
retried, ConnectError is transient, a local settings problem (bad ssh config, unreadable identity
file) is a plain ``TransportError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import getpass
import logging
import os
import re
import shlex
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import asyncssh

from fanout.errors import AuthError, ConnectError, ConnectionLost, HostKeyError, TransportError
from fanout.events import Stream
from fanout.model import Host
from fanout.transport.base import OutputLine, RemoteSignal

__all__ = [
    "CONNECT_ERRORS",
    "PGID_MARKER",
    "ConnectAttempt",
    "LineSplitter",
    "SshTransport",
    "group_is_ours",
    "parse_etime",
    "wrap_command",
]

log = logging.getLogger(__name__)

PGID_MARKER: Final = "fanout-pgid="
CHUNK: Final = 64 * 1024  # bytes per read from a stream
MAX_LINE: Final = 64 * 1024  # longer lines are split into pieces of at most this many bytes
QUEUE_LINES: Final = 128  # lines buffered between the readers and lines() (backpressure)
_PREAMBLE_MAX: Final = 64 * 1024  # stdout a login shell may print before the pgid line
_POLL: Final = 0.2  # seconds between checks that an orphaned group has gone
_MARKER_RE: Final = re.compile(rb"fanout-pgid=([0-9]+)")


def _bound_receive_buffering() -> None:
    """Make a paused asyncssh channel stop asking for more data than it can hold.

    asyncssh (up to 2.24 at least) debits a channel's receive window when data arrives
    but, when a paused channel resumes, re-grants the *whole* window on the first chunk
    it delivers, although more chunks still wait in its buffer. A reader slower than the
    remote writer (a step printing gigabytes while the host is busy) then lets that
    buffer grow by a window per pause: memory grows with the output. Here, bytes still
    buffered behind the chunk being delivered count as outstanding, so credit granted
    plus data held never exceeds the window: memory per channel stays below about twice
    the window whatever the step prints. Applied once, at import.
    """
    channel_class = cast(Any, asyncssh.channel.SSHChannel)
    deliver = channel_class._deliver_data
    if getattr(deliver, "fanout_bounded", False):
        return

    def deliver_counting_buffered(self: Any, data: bytes, datatype: int | None) -> None:
        buffered = sum(len(chunk) for chunk, _ in self._recv_buf)
        self._recv_window += buffered  # asyncssh re-grants up to the full window from here
        try:
            deliver(self, data, datatype)
        finally:
            self._recv_window -= buffered

    deliver_counting_buffered.fanout_bounded = True  # type: ignore[attr-defined]
    channel_class._deliver_data = deliver_counting_buffered


_bound_receive_buffering()


def wrap_command(command: str) -> str:
    """The exact command line sent to sshd for ``command`` (see the module docstring)."""
    return "exec /bin/sh -c " + shlex.quote(f"echo {PGID_MARKER}$$\n{command}")


def _sh(script: str) -> str:
    return "exec /bin/sh -c " + shlex.quote(script)


def _exit_status(returncode: int) -> int:
    """asyncssh gives ``-signum`` after an exit-signal; report ``128 + signum`` like a shell."""
    return 128 - returncode if returncode < 0 else returncode


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


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# --- errors -----------------------------------------------------------------------------------

#: Every asyncssh disconnect reason and the fanout error it becomes while connecting. A test walks
#: ``asyncssh.DisconnectError.__subclasses__()`` so a new asyncssh class cannot slip through.
CONNECT_ERRORS: Final[Mapping[type[asyncssh.DisconnectError], type[TransportError]]] = {
    asyncssh.DisconnectError: ConnectError,  # other reason codes, e.g. "too many connections"
    asyncssh.CompressionError: ConnectError,
    asyncssh.ConnectionLost: ConnectError,  # dropped mid-handshake (MaxStartups), login timeout
    asyncssh.HostKeyNotVerifiable: HostKeyError,
    asyncssh.IllegalUserName: AuthError,
    asyncssh.KeyExchangeFailed: ConnectError,  # HostKeyError when the host key type changed
    asyncssh.MACError: ConnectError,
    asyncssh.PermissionDenied: AuthError,
    asyncssh.ProtocolError: ConnectError,  # e.g. "expected packet type 20, got -1" under load
    asyncssh.ProtocolNotSupported: ConnectError,
    asyncssh.ServiceNotAvailable: ConnectError,
}


@dataclass(slots=True)
class ConnectAttempt:
    """What one connection attempt knows, to turn an asyncssh/OS error into a one-line reason."""

    host: str  # inventory name, TransportError.host
    hostname: str  # after ssh_config HostName
    port: int
    user: str
    known_hosts: Path
    known_hosts_exists: bool = True
    connect_timeout: float = 30.0
    key_seen_for: str | None = None  # "host[:port]" asyncssh looked up in known_hosts
    keys_on_file: int = 0  # trusted keys (or CAs) known_hosts holds for it

    @property
    def where(self) -> str:
        return f"{self.hostname}:{self.port}"

    def error(self, exc: BaseException) -> TransportError:
        """Translate ``exc`` raised while connecting. Never raises."""
        if isinstance(exc, asyncssh.DisconnectError):
            return self._disconnect_error(exc)
        if isinstance(exc, TimeoutError):
            return ConnectError(
                self.host, f"connection to {self.where} timed out after {self.connect_timeout:g}s"
            )
        if isinstance(exc, ConnectionRefusedError):
            return ConnectError(self.host, f"connection refused by {self.where}")
        if isinstance(exc, ConnectionResetError):
            return ConnectError(self.host, f"connection reset by {self.where}")
        if isinstance(exc, socket.gaierror):
            return ConnectError(self.host, f"cannot resolve {self.hostname}: {exc.strerror}")
        if isinstance(exc, OSError):
            return ConnectError(self.host, f"cannot connect to {self.where}: {exc.strerror or exc}")
        if isinstance(exc, asyncssh.Error):  # ChannelOpenError from a ProxyJump hop
            return ConnectError(self.host, f"cannot reach {self.where}: {exc.reason}")
        if isinstance(exc, ValueError):  # ConfigParseError, KeyImportError, bad option values
            return TransportError(self.host, f"bad SSH settings for {self.host}: {exc}")
        return TransportError(self.host, f"cannot connect to {self.where}: {exc!r}")

    def _disconnect_error(self, exc: asyncssh.DisconnectError) -> TransportError:
        kind = next(
            (CONNECT_ERRORS[c] for c in type(exc).__mro__ if c in CONNECT_ERRORS), ConnectError
        )
        seen = self.key_seen_for or self.where
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            if not self.known_hosts_exists:
                why = f"is not trusted: {self.known_hosts} does not exist"
            elif self.keys_on_file:
                why = f"does not match {self.known_hosts}"
            else:
                why = f"is not in known_hosts ({self.known_hosts})"
            return HostKeyError(self.host, f"host key for {seen} {why}")
        if (
            isinstance(exc, asyncssh.KeyExchangeFailed)
            and self.keys_on_file
            and "host key" in exc.reason
        ):
            return HostKeyError(
                self.host,
                f"host key for {seen} does not match {self.known_hosts}"
                " (the server offers no key of the type on file)",
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            return AuthError(self.host, f"authentication failed for {self.user}@{self.hostname}")
        if isinstance(exc, asyncssh.IllegalUserName):
            return AuthError(self.host, f"user name {self.user!r} rejected by {self.where}")
        if isinstance(exc, asyncssh.ConnectionLost):
            return kind(self.host, f"connection to {self.where} dropped during login: {exc.reason}")
        return kind(self.host, f"SSH connection to {self.where} failed: {exc.reason}")


class _KnownHostsCheck:
    """known_hosts lookup for asyncssh that remembers what it found, for the error message."""

    def __init__(self, known: asyncssh.SSHKnownHosts, attempt: ConnectAttempt) -> None:
        self._known = known
        self._attempt = attempt

    def __call__(self, host: str, addr: str, port: int | None) -> Sequence[str]:
        trusted, cas, revoked, *_x509 = self._known.match(host, addr, port)
        self._attempt.key_seen_for = f"{host}:{port}" if port else host
        self._attempt.keys_on_file = len(trusted) + len(cas)
        # asyncssh accepts (host keys, CA keys, revoked keys); its annotation says Sequence[str].
        return cast(Sequence[str], (trusted, cas, revoked))


class _Client(asyncssh.SSHClient):
    """Notices when the connection goes away without us closing it."""

    def __init__(self) -> None:
        self.lost_at: float | None = None
        self.closing = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing and self.lost_at is None:
            self.lost_at = time.monotonic()
            log.debug("connection lost: %s", exc)


# --- transport --------------------------------------------------------------------------------


class SshTransport:
    """``Transport`` over asyncssh.

    ``max_connecting`` caps SSH handshakes in flight across all hosts (they cost CPU on both
    ends and sshd drops handshakes past ``MaxStartups``). ``keepalive_*`` detect a dead peer
    (interval x count seconds). ``reconnect_attempts``/``reconnect_backoff`` bound the orphan
    clean-up after a lost connection, ``orphan_grace`` is how long an orphaned group gets between
    TERM and KILL. ``start_timeout`` bounds the wait for the pgid line, ``command_timeout`` each
    helper channel (kill, ps), ``close_timeout`` the clean close of a connection.
    """

    def __init__(
        self,
        *,
        max_connecting: int = 128,
        keepalive_interval: float = 30.0,
        keepalive_count_max: int = 3,
        reconnect_attempts: int = 3,
        reconnect_backoff: float = 1.0,
        orphan_grace: float = 5.0,
        start_timeout: float = 30.0,
        command_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        if max_connecting < 1:
            raise ValueError("max_connecting must be at least 1")
        self._connecting = asyncio.Semaphore(max_connecting)
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_backoff = reconnect_backoff
        self.orphan_grace = orphan_grace
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.close_timeout = close_timeout
        self._known_cache: dict[Path, tuple[int, int, asyncssh.SSHKnownHosts]] = {}

    @asynccontextmanager
    async def open_session(self, host: Host) -> AsyncIterator[SshSession]:
        """Connect to ``host`` once; leaving the context closes the connection.

        Raises ConnectError (transient), AuthError, HostKeyError, or TransportError for local
        settings. Cancelled while connecting: the half-open connection is aborted, nothing leaks.
        Leaving the context while a step still runs sends TERM to its group first (safety net).
        """
        conn, client = await self.connect(host)
        session = SshSession(self, host, conn, client)
        try:
            yield session
        finally:
            await session.aclose()

    async def connect(self, host: Host) -> tuple[asyncssh.SSHClientConnection, _Client]:
        """One connection attempt, bounded by ``host.connect_timeout``; errors translated.

        On cancellation the connection being set up is aborted before CancelledError propagates.
        """
        attempt, options = self._prepare(host)
        client = _Client()

        async def handshake() -> asyncssh.SSHClientConnection:
            return await asyncssh.connect(host.address, client_factory=lambda: client, **options)

        async with self._connecting:
            task = asyncio.create_task(handshake())
            try:
                return await asyncio.shield(task), client
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.wait([task], timeout=self.close_timeout)
                if task.done() and not task.cancelled() and task.exception() is None:
                    task.result().abort()  # connected just as we were cancelled
                raise
            except Exception as exc:
                self._describe(host, options, attempt)
                raise attempt.error(exc) from exc

    def _prepare(self, host: Host) -> tuple[ConnectAttempt, dict[str, object]]:
        home_ssh = Path("~/.ssh").expanduser()
        known_path = host.known_hosts or home_ssh / "known_hosts"
        attempt = ConnectAttempt(
            host=host.name,
            hostname=host.address,
            port=host.port or 22,
            user=host.user or "",
            known_hosts=known_path,
            connect_timeout=host.connect_timeout,
        )
        known = self._read_known_hosts(host, attempt)
        if host.ssh_config is not None:
            if not os.access(host.ssh_config, os.R_OK):
                raise TransportError(host.name, f"cannot read ssh config {host.ssh_config}")
            config = [str(host.ssh_config)]
        else:
            default = home_ssh / "config"
            config = [str(default)] if os.access(default, os.R_OK) else []
        options: dict[str, object] = {
            "config": config,  # explicit: never asyncssh's implicit default
            "known_hosts": _KnownHostsCheck(known, attempt),  # always verified
            "connect_timeout": host.connect_timeout,  # TCP + handshake + auth
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": self.keepalive_count_max,
            "request_pty": False,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "password_auth": False,  # batch mode: never prompt
            "kbdint_auth": False,
        }
        if host.port is not None:
            options["port"] = host.port
        if host.user is not None:
            options["username"] = host.user
        if host.identity_file is not None:
            if not os.access(host.identity_file, os.R_OK):
                raise TransportError(host.name, f"cannot read identity file {host.identity_file}")
            options["client_keys"] = [str(host.identity_file)]  # the agent is still offered
        return attempt, options

    def _read_known_hosts(self, host: Host, attempt: ConnectAttempt) -> asyncssh.SSHKnownHosts:
        path = attempt.known_hosts
        try:
            st = path.stat()
        except FileNotFoundError:
            attempt.known_hosts_exists = False
            return asyncssh.import_known_hosts("")  # nothing is trusted
        except OSError as exc:
            raise HostKeyError(host.name, f"cannot read {path}: {exc.strerror}") from exc
        cached = self._known_cache.get(path)
        if cached and cached[:2] == (st.st_mtime_ns, st.st_size):
            return cached[2]
        try:
            known = asyncssh.read_known_hosts(str(path))
        except (OSError, ValueError) as exc:
            raise HostKeyError(host.name, f"cannot read {path}: {exc}") from exc
        self._known_cache[path] = (st.st_mtime_ns, st.st_size, known)
        return known

    @staticmethod
    def _describe(host: Host, options: Mapping[str, object], attempt: ConnectAttempt) -> None:
        """Fill in the user, HostName and port ssh_config resolves to (error path only)."""
        try:
            resolved = asyncssh.SSHClientConnectionOptions(
                config=options["config"],
                host=host.address,
                port=host.port if host.port is not None else (),
                username=host.user if host.user is not None else (),
                client_keys=None,
                known_hosts=None,
                agent_path=None,
            )
            attempt.user, attempt.hostname, attempt.port = (
                resolved.username,
                resolved.host,
                resolved.port,
            )
        except Exception:  # unreadable config: keep what the inventory says
            attempt.user = attempt.user or getpass.getuser()


# --- session ----------------------------------------------------------------------------------


class SshSession:
    """One SSH connection to one host; ``start`` opens a channel per step."""

    def __init__(
        self,
        transport: SshTransport,
        host: Host,
        conn: asyncssh.SSHClientConnection,
        client: _Client,
    ) -> None:
        self.transport = transport
        self.host = host
        self._conn = conn
        self._client = client
        self._closed = False
        self._procs: list[SshProcess] = []
        self.label = f"{conn.get_extra_info('username')}@{host.address}"

    @property
    def lost_at(self) -> float | None:
        """Monotonic time the connection was found dead, or None while it is up."""
        return self._client.lost_at

    async def start(self, command: str, stdin: str | None) -> SshProcess:
        """Run ``command`` (wrapped, see ``wrap_command``), write ``stdin``, close it.

        Returns once the remote process group id is known (bounded by ``start_timeout``).
        Raises ConnectionLost if the connection is gone, the channel cannot be opened, or the
        pgid line never comes (then the channel gets a KILL signal request and is closed).
        Cancelled before the pgid is known: same clean-up; the command sees EOF on stdin.
        """
        if self._closed or self.lost_at is not None:
            raise ConnectionLost(self.host.name, f"connection to {self.label} is gone")
        try:
            chan = await self._conn.create_process(
                wrap_command(command), encoding=None, request_pty=False
            )
        except asyncssh.ChannelOpenError as exc:
            raise ConnectionLost(
                self.host.name, f"cannot open a session on {self.label}: {exc.reason}"
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(
                self.host.name, f"connection lost to {self.label} starting a step: {exc}"
            ) from exc
        proc = SshProcess(self, cast("asyncssh.SSHClientProcess[bytes]", chan))
        try:
            await proc.read_pgid()
        except BaseException:
            proc.abandon()
            raise
        self._procs.append(proc)
        with contextlib.suppress(OSError, asyncssh.Error):  # already exited: wait() says so
            if stdin:
                chan.stdin.write(stdin.encode())
            chan.stdin.write_eof()
        return proc

    async def run_helper(
        self, script: str, conn: asyncssh.SSHClientConnection | None = None
    ) -> tuple[int | None, str]:
        """Run a short POSIX sh ``script`` on a new channel; (exit status, stdout).

        Bounded by ``command_timeout`` (raises TimeoutError); asyncssh errors and OSError pass.
        """
        async with (
            asyncio.timeout(self.transport.command_timeout),
            (conn or self._conn).create_process(
                _sh(script),
                stdin=asyncssh.DEVNULL,
                encoding="utf-8",
                errors="replace",
                request_pty=False,
            ) as helper,
        ):
            out, _ = await helper.communicate()
            return helper.returncode, str(out)

    async def aclose(self) -> None:
        """Safety net, then a clean close: nothing fanout started may outlive it.

        A step still running gets TERM on its group (or, if the connection died, the orphan
        clean-up of ``SshProcess.wait``); clean-ups under way are awaited. Every wait is
        bounded; cancelled (or out of time): clean-ups stop and the connection is aborted.
        """
        if self._closed:
            return
        self._closed = True
        clean = False
        try:
            for proc in self._procs:
                if proc.running and self.lost_at is None:
                    await proc.kill_group(RemoteSignal.TERM)
                elif proc.running:
                    await proc.signal(RemoteSignal.TERM)  # runs the orphan clean-up
            for proc in self._procs:
                await proc.finish_cleanup()
            self._client.closing = True
            self._conn.close()
            async with asyncio.timeout(self.transport.close_timeout):
                await self._conn.wait_closed()
            clean = True
        except TimeoutError:
            log.debug("close of %s timed out; aborting", self.label)
        finally:
            for proc in self._procs:
                proc.cancel_readers()
            if not clean:
                self._client.closing = True
                self._conn.abort()


# --- process ----------------------------------------------------------------------------------


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
    created after ours vanished and is left alone. ``etime`` has 1 s resolution, hence the 1 s.
    """
    return any(etime >= since_lost - 1.0 for _, etime in members)


@dataclass(slots=True)
class _Output:
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


class SshProcess:
    """A step running on the remote host in its own process group (``RemoteProcess``)."""

    def __init__(self, session: SshSession, chan: asyncssh.SSHClientProcess[bytes]) -> None:
        self._session = session
        self._chan = chan
        self._pgid: int | None = None
        self._out = _Output()
        self._readers: list[asyncio.Task[None]] = []
        self._first_stderr: str | None = None
        self._cleanup: asyncio.Task[str] | None = None

    @property
    def pgid(self) -> int | None:
        return self._pgid

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
                        match = _MARKER_RE.fullmatch(raw) if self._pgid is None else None
                        if match:
                            self._pgid = int(match[1])
                        else:
                            (before if self._pgid is None else after).append(raw)
                            seen += len(raw)
                    if self._pgid is None and seen > _PREAMBLE_MAX:
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
        said = self._first_stderr or (_decode(before[0]) if before else None)
        what = f"exited with status {_exit_status(status)}" if status is not None else "ended"
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
        a second channel. If the connection is gone, runs the orphan clean-up instead (see
        ``wait``). Cancelled: the kill channel is abandoned; the clean-up, if started, goes on.
        """
        if not self.running:
            return
        with contextlib.suppress(OSError, asyncssh.Error):
            self._chan.send_signal(sig.value)
        if self._session.lost_at is None and await self.kill_group(sig):
            return
        if self._session.lost_at is not None:
            await self._orphan_cleanup()

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
        If the connection died first: reconnect, stop the orphaned group (TERM, then KILL after
        ``orphan_grace``), then raise ConnectionLost naming what happened to the group.
        Cancelled: nothing changes remotely; a clean-up already under way continues, and the
        session's close waits for it.
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
            return _exit_status(status)
        if self._session.lost_at is None:
            return 255
        outcome = await self._orphan_cleanup()
        raise ConnectionLost(
            self._session.host.name,
            f"connection lost to {self._session.label} during the step;"
            f" remote process group {self._pgid} {outcome}",
        )

    async def _orphan_cleanup(self) -> str:
        if self._cleanup is None:
            self._cleanup = asyncio.create_task(self._stop_orphans())
        return await asyncio.shield(self._cleanup)

    async def finish_cleanup(self) -> None:
        """Wait for a running orphan clean-up (it is bounded); used by the session's close."""
        if self._cleanup is not None:
            with contextlib.suppress(Exception):
                await self._cleanup

    async def _stop_orphans(self) -> str:
        transport, session = self._session.transport, self._session
        lost_at = session.lost_at or time.monotonic()
        failure = "no attempt made"
        for attempt in range(transport.reconnect_attempts):
            if attempt:
                await asyncio.sleep(transport.reconnect_backoff * 2 ** (attempt - 1))
            try:
                conn, client = await transport.connect(session.host)
            except TransportError as exc:
                failure = exc.reason
                if not exc.retryable:
                    break
                continue
            try:
                return await self._stop_group(conn, lost_at)
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                failure = str(exc) or type(exc).__name__
            finally:
                client.closing = True
                conn.abort()
        return f"may still be running: could not reconnect to stop it ({failure})"

    async def _stop_group(self, conn: asyncssh.SSHClientConnection, lost_at: float) -> str:
        members = await self._members(conn)
        if not members:
            return "had already exited"
        if not group_is_ours(members, time.monotonic() - lost_at):
            return "had exited (its id now belongs to a newer process group, left alone)"
        steps = (
            (RemoteSignal.TERM, self._session.transport.orphan_grace),
            (RemoteSignal.KILL, 2.0),
        )
        for sig, limit in steps:
            kill = f"kill -s {sig.value} -- -{self._pgid} 2>/dev/null"
            await self._session.run_helper(kill, conn)
            deadline = time.monotonic() + limit
            while members and time.monotonic() < deadline:
                await asyncio.sleep(_POLL)
                members = await self._members(conn)
            if not members:
                return f"was stopped after reconnecting (SIG{sig.value})"
        return "did not stop after SIGKILL"

    async def _members(self, conn: asyncssh.SSHClientConnection) -> list[tuple[int, int]]:
        """(pid, etime) of the live (non-zombie) processes in our group, via POSIX ps."""
        script = f"ps -A -o pgid= -o etime= -o pid= -o args= | awk '$1 == {self._pgid}'"
        _, listing = await self._session.run_helper(script, conn)
        members = []
        for row in listing.splitlines():
            fields = row.split(None, 3)
            if len(fields) < 3 or "<defunct>" in row:
                continue
            with contextlib.suppress(ValueError):
                members.append((int(fields[2]), parse_etime(fields[1])))
        return members

    def abandon(self) -> None:
        """Start failed or was cancelled: ask for KILL (best effort) and close the channel."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._chan.send_signal("KILL")
        self._chan.close()
        self.cancel_readers()

    def cancel_readers(self) -> None:
        for task in self._readers:
            task.cancel()
