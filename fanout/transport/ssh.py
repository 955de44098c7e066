"""SSH transport over asyncssh: ``SshTransport`` (the ``Transport``) and ``SshSession``.

One connection per host, reused for every step; each step is one non-PTY exec channel.
The jobs live in their own modules of this package (the only importers of asyncssh in fanout
besides the simulated fleet's server):

* ``connect``: ssh config and known_hosts (every ProxyJump hop checked against the same
  list), keepalives, the handshake cap, and asyncssh/OS errors → fanout's TransportErrors;
* ``framing``: the wrapped command and its pgid line, bytes → bounded lines, the receive
  window;
* ``process``: a step's remote process group, read through the channel's session callbacks
  (lines, signals through a second channel, exit status);
* ``orphans``: the per-host to-stop list of process groups left behind by a lost connection.

Signals reach the whole group through a second exec channel on the same connection running
``kill -s SIG -- -<pgid>``; the RFC 4254 ``signal`` request is sent as well, best effort
(OpenSSH 7.9-9.9 refuse it for root logins, older servers ignore it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncssh

from fanout.errors import ConnectionLost
from fanout.model import Host
from fanout.transport.base import Orphan, RemoteSignal
from fanout.transport.connect import CONNECT_ERRORS, ConnectAttempt, Link, SshOptions, resolve
from fanout.transport.framing import MAX_LINE, PGID_MARKER, WINDOW, LineSplitter, wrap_command
from fanout.transport.orphans import OrphanStopper, group_is_ours, parse_etime, run_script
from fanout.transport.process import SshProcess

__all__ = [
    "CONNECT_ERRORS",
    "MAX_LINE",
    "PGID_MARKER",
    "ConnectAttempt",
    "LineSplitter",
    "SshProcess",
    "SshSession",
    "SshTransport",
    "group_is_ours",
    "parse_etime",
    "resolve",
    "wrap_command",
]

log = logging.getLogger(__name__)


class SshTransport:
    """``Transport`` (and ``OrphanWatch``) over asyncssh.

    ``max_connecting`` caps SSH handshakes in flight across all hosts (they cost CPU on both
    ends and sshd drops handshakes past ``MaxStartups``). ``keepalive_*`` override the hosts'
    own ``keepalive_interval``/``keepalive_count_max`` when given. ``orphan_timeout`` bounds how
    long a process group left by a lost connection is retried in the background (every later
    connection to its host still tries first), ``reconnect_backoff`` is the first pause between
    those attempts (doubling up to ``reconnect_backoff_max``), ``orphan_grace`` how long an
    orphaned group gets between TERM and KILL. ``start_timeout`` bounds the wait for the pgid
    line, ``command_timeout`` each helper channel (kill, ps), ``close_timeout`` the clean close
    of a connection.
    """

    def __init__(
        self,
        *,
        max_connecting: int = 128,
        keepalive_interval: float | None = None,
        keepalive_count_max: int | None = None,
        orphan_timeout: float = 300.0,
        reconnect_backoff: float = 1.0,
        reconnect_backoff_max: float = 5.0,
        orphan_grace: float = 5.0,
        start_timeout: float = 30.0,
        command_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.options = SshOptions(
            max_connecting=max_connecting,
            keepalive_interval=keepalive_interval,
            keepalive_count_max=keepalive_count_max,
            close_timeout=close_timeout,
        )
        self.orphans = OrphanStopper(
            self.options,
            timeout=orphan_timeout,
            grace=orphan_grace,
            command_timeout=command_timeout,
            backoff=reconnect_backoff,
            backoff_max=reconnect_backoff_max,
        )
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.close_timeout = close_timeout

    @asynccontextmanager
    async def open_session(self, host: Host) -> AsyncIterator[SshSession]:
        """Connect to ``host`` once; leaving the context closes the connection.

        Before the session is handed out, process groups on the host's to-stop list (left by
        an earlier lost connection) are stopped over it. Raises ConnectError (transient),
        AuthError, HostKeyError, or TransportError for local settings. Cancelled while
        connecting: the half-open connection is aborted, nothing leaks. Leaving the context
        while a step still runs sends TERM to its group first (safety net).
        """
        link = await self.options.connect(host)
        session = SshSession(self, host, link)
        try:
            await self.orphans.stop_listed(host, link.conn)
            yield session
        finally:
            await session.aclose()

    async def wait_orphans(self) -> list[Orphan]:
        """Wait for the background clean-ups (bounded by ``orphan_timeout``); what is left."""
        return await self.orphans.wait_all()


class SshSession:
    """One SSH connection to one host; ``start`` opens a channel per step."""

    def __init__(self, transport: SshTransport, host: Host, link: Link) -> None:
        self.transport = transport
        self.orphans = transport.orphans
        self.host = host
        self._link = link
        self._conn = link.conn
        self._closed = False
        self._procs: list[SshProcess] = []
        self.label = f"{link.conn.get_extra_info('username')}@{host.address}"

    @property
    def lost_at(self) -> float | None:
        """Monotonic time the connection was found dead, or None while it is up."""
        return self._link.client.lost_at

    async def start(self, command: str, stdin: str | None) -> SshProcess:
        """Run ``command`` (wrapped, see ``wrap_command``), write ``stdin``, close it.

        Returns once the remote process group id is known (bounded by ``start_timeout``).
        Raises ConnectionLost if the connection is gone, the channel cannot be opened, or the
        pgid line never comes (then the channel gets a KILL signal request and is closed).
        Cancelled before the pgid is known: same clean-up; the command sees EOF on stdin.
        """
        if self._closed or self.lost_at is not None:
            raise ConnectionLost(self.host.name, f"connection to {self.label} is gone")
        proc = SshProcess(self)
        try:
            chan, _ = await self._conn.create_session(
                lambda: proc,
                wrap_command(command),
                encoding=None,
                request_pty=False,
                window=WINDOW,  # flow control bounds what waits unread (framing)
            )
        except asyncssh.ChannelOpenError as exc:
            raise ConnectionLost(
                self.host.name, f"cannot open a session on {self.label}: {exc.reason}"
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(
                self.host.name, f"connection lost to {self.label} starting a step: {exc}"
            ) from exc
        try:
            await proc.read_pgid()
        except BaseException:
            proc.abandon()
            raise
        self._procs.append(proc)
        with contextlib.suppress(OSError, asyncssh.Error):  # already exited: wait() says so
            if stdin:
                chan.write(stdin.encode())
            chan.write_eof()
        return proc

    async def run_helper(self, script: str) -> tuple[int | None, str]:
        """Run a short POSIX sh ``script`` on a new channel; (exit status, stdout).

        Bounded by ``command_timeout`` (raises TimeoutError); asyncssh errors and OSError pass.
        """
        return await run_script(self._conn, script, self.transport.command_timeout)

    async def aclose(self) -> None:
        """Safety net, then a clean close: nothing fanout started may outlive it.

        A step still running gets TERM on its group, or, if the connection died, goes on the
        host's to-stop list and is waited for (bounded by ``orphan_timeout``). Every wait is
        bounded; cancelled (or out of time): the connection is aborted, the to-stop list stays.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for proc in self._procs:
                if proc.running and self.lost_at is None:
                    await proc.kill_group(RemoteSignal.TERM)
                elif proc.running or proc.orphaned:
                    await proc.signal(RemoteSignal.TERM)  # waits for the orphan clean-up
            await self._link.close(self.transport.close_timeout)
        finally:
            self._link.abort()
