"""``SimFleet``: an in-process asyncssh server on 127.0.0.1 that plays a fleet of database hosts.

fanout's real ``SshTransport`` connects to it, so a demo or test runs the production path:
host-key verification against a known_hosts file, public-key login, one exec channel per
step, the ``fanout-pgid=`` line, signals through a second channel and through the RFC 4254
request, reconnect-and-``ps`` after a dropped connection.

* Keys: a host key and a client key are generated per fleet; ``write_client_files`` writes a
  known_hosts file trusting only that host key for ``[127.0.0.1]:<port>``, the client's
  private key (0600) and an empty ssh_config (so ``~/.ssh/config`` cannot interfere). The
  server accepts only that client key, for any user name.
* Port: bound when the fleet is created (so an inventory can name it before the event loop
  runs), listening only inside ``serve()``. ``refused_port`` is bound but never listens:
  connecting to it is refused (the ``refuse`` behaviour).
* Each exec request runs as a simulated ``sh -c <command>`` (``interp.py``) in a process
  group of its own on the shared ``World``; its stdout/stderr go to the channel, its exit
  status (or the signal it died of) is reported as sshd would. As with sshd, a channel or
  connection that goes away does not stop the command.
* The RFC 4254 ``signal`` request reaches the session's process group, as OpenSSH's
  ``killpg`` does. asyncssh surfaces it as ``SignalReceived`` on a stream read, which a
  command that has read its stdin to EOF never does again, so this server uses asyncssh's
  session API (``SSHServerSession.signal_received``) instead of ``process_factory``.

This module and ``fanout.transport.ssh`` are the only importers of asyncssh in fanout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from fanout.model import Host
from fanout.sim.behaviour import HostBehaviour, Mode
from fanout.sim.interp import IO, Login, Shell
from fanout.sim.machine import SIGNALS, SimProcess, World

__all__ = ["ClientFiles", "SimFleet"]

log = logging.getLogger(__name__)

DEFAULT_ORACLE_HOME = "/u01/app/oracle/product/19.0.0/dbhome_1"


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """What an inventory needs to reach the fleet, written by ``write_client_files``."""

    known_hosts: Path
    identity_file: Path
    ssh_config: Path


class _ChannelInput:
    """The channel's stdin, collected until EOF (a step's script is small)."""

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._eof = asyncio.Event()
        self._taken = False

    def feed(self, data: bytes) -> None:
        if not self._taken:
            self._data.append(data)

    def close(self) -> None:
        self._eof.set()

    async def read_all(self, proc: SimProcess) -> str:
        if self._taken:
            return ""
        await proc.interruptible(self._eof.wait())
        self._taken = True
        data, self._data = b"".join(self._data), []
        return data.decode("utf-8", "replace")


class _Session(asyncssh.SSHServerSession[bytes]):
    """One exec channel: a simulated ``sh -c <command>``."""

    def __init__(self, fleet: SimFleet, conn: asyncssh.SSHServerConnection) -> None:
        self._fleet = fleet
        self._conn = conn
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._command: str | None = None
        self._stdin = _ChannelInput()
        self._proc: SimProcess | None = None
        self._open = True

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        self._stdin.close()

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        return False  # fanout never asks for one

    def shell_requested(self) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        command = self._command or ""
        user = str(self._conn.get_extra_info("username") or "oracle")
        proc = self._fleet.world.table.spawn(f"sh -c {' '.join(command.split())}", user=user)
        self._proc = proc
        self._fleet._start(self._run(proc, command, user))

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._stdin.feed(data)

    def eof_received(self) -> bool:
        self._stdin.close()
        return True  # half-open: output goes on after the script is read

    def break_received(self, msec: int) -> bool:
        return False

    def signal_received(self, signal: str) -> None:
        if self._proc is not None and signal in SIGNALS:
            self._fleet.world.table.signal(-self._proc.pgid, signal)

    def _write(self, data: str, stderr: bool) -> None:
        if not self._open or self._chan is None:
            return  # like a command whose client went away: output goes nowhere
        with contextlib.suppress(asyncssh.Error, OSError):
            raw = data.encode()
            if stderr:
                self._chan.write_stderr(raw)
            else:
                self._chan.write(raw)

    async def _run(self, proc: SimProcess, command: str, user: str) -> None:
        world = self._fleet.world
        io = IO(
            self._stdin, lambda text: self._write(text, False), lambda text: self._write(text, True)
        )
        shell = Shell.login_shell(world, proc, Login(user, self._conn.abort))
        try:
            status, died = await shell.run_script(command, io)
        except Exception:  # a bug in the simulator: say so, like a crashed shell
            log.exception("simulated command failed: %s", command)
            status, died = 255, None
            self._write("sim: internal error (see the log)\n", True)
        finally:
            proc.exit()
        if not self._open or self._chan is None:
            return
        with contextlib.suppress(asyncssh.Error, OSError):
            if died is not None:
                self._chan.exit_with_signal(died)
            else:
                self._chan.exit(status)


class _Server(asyncssh.SSHServer):
    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._fleet._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._fleet._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # public key only, checked against the fleet's client key

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def session_requested(self) -> _Session:
        assert self._conn is not None
        return _Session(self._fleet, self._conn)


class SimFleet:
    """A simulated fleet: ``behaviours`` by ORACLE_SID (others get ``default``).

    ``speed`` divides every simulated duration (``--speed 50``: a 4 s backup takes 80 ms).
    Create it, write the client files and an inventory, then ``async with fleet.serve():``
    inside the event loop that runs fanout. ``close()`` releases the ports if ``serve`` is
    never entered.
    """

    def __init__(
        self,
        behaviours: Mapping[str, HostBehaviour] | None = None,
        *,
        default: HostBehaviour | None = None,
        speed: float = 1.0,
        hostname: str = "dbsim01",
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.world = World(
            behaviours=dict(behaviours or {}),
            default=default or HostBehaviour(),
            speed=speed,
            hostname=hostname,
        )
        self.host_key = asyncssh.generate_private_key("ssh-ed25519", comment="fanout-sim-host")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519", comment="fanout-sim")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refuser.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        self.refused_port: int = self._refuser.getsockname()[1]
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    # -- files and hosts ---------------------------------------------------------------------

    def known_hosts_line(self) -> str:
        key = self.host_key.export_public_key().decode().strip()
        return f"[127.0.0.1]:{self.port} {key}\n"

    def write_client_files(self, directory: Path) -> ClientFiles:
        """Write known_hosts, the client's private key and an empty ssh_config."""
        directory.mkdir(parents=True, exist_ok=True)
        files = ClientFiles(
            known_hosts=directory / "known_hosts",
            identity_file=directory / "id_ed25519",
            ssh_config=directory / "ssh_config",
        )
        files.known_hosts.write_text(self.known_hosts_line())
        if files.identity_file.exists():
            files.identity_file.unlink()
        fd = os.open(files.identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.client_key.export_private_key())
        files.ssh_config.write_text("")
        return files

    def port_for(self, sid: str) -> int:
        """The port a host of ``sid`` should use: ``refused_port`` for ``refuse``."""
        refused = self.world.behaviour(sid).mode is Mode.REFUSE
        return self.refused_port if refused else self.port

    def host(self, name: str, sid: str, files: ClientFiles, **fields: Any) -> Host:
        """An inventory ``Host`` for this fleet (tests); ``fields`` override the defaults."""
        values: dict[str, Any] = {
            "name": name,
            "address": "127.0.0.1",
            "priority": 1,
            "oracle_sid": sid,
            "oracle_home": DEFAULT_ORACLE_HOME,
            "user": "oracle",
            "port": self.port_for(sid),
            "identity_file": files.identity_file,
            "known_hosts": files.known_hosts,
            "ssh_config": files.ssh_config,
            "connect_retries": 0,
            "connect_timeout": 5.0,
        }
        values.update(fields)
        return Host(**values)

    # -- serving -----------------------------------------------------------------------------

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[SimFleet]:
        """Listen (inside the running loop) until the block ends; then stop everything.

        On the way out: no new connections, every simulated process gets SIGKILL, sessions
        get a bounded moment to report, connections are closed, ports released.
        """
        self._acceptor = await asyncssh.listen(
            sock=self._listener,
            server_factory=lambda: _Server(self),
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            encoding=None,
            allow_scp=False,
            x11_forwarding=False,
            agent_forwarding=False,
            keepalive_interval=0,
        )
        try:
            yield self
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), 2.0)
            self._acceptor = None
        self.world.table.kill_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            conn.abort()
        self.close()

    def close(self) -> None:
        """Release both ports (idempotent)."""
        self._listener.close()
        self._refuser.close()

    def _start(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def processes(self) -> list[SimProcess]:
        """Every live simulated process (tests look here for leftovers)."""
        return self.world.table.all()

    def __enter__(self) -> SimFleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
