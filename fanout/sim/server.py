"""``SimFleet``: an in-process SSH server on 127.0.0.1 whose "hosts" run the local ``/bin/sh``.

fanout's real ``SshTransport`` talks to it: host-key check, public-key login (the fleet's client
key, any user name), one exec channel per step, signals, reconnect-and-``ps`` after a drop.
``write_client_files`` writes the known_hosts, client key and empty ssh_config an inventory
names. The ports are bound at creation (an inventory can name them before the loop runs) and
listen only inside ``serve()``; ``refused_port`` never listens.

A session runs its command as sshd does: ``/bin/sh -c <command>`` in a new session (``ps``,
process groups and ``kill -- -PGID`` are real), stdio wired to the channel, ``exit-status`` or
``exit-signal`` at the end; the RFC 4254 ``signal`` request is a ``killpg`` of the session's
group. A lost connection does not stop the command: stdin ends and its next write to stdout
fails (EPIPE). ``$FANOUT_SIM_CONTROL`` is a pipe to the fleet: the fake's ``drop`` asks through
it for the connection to be aborted, and a fake waiting on it ends once the fleet is gone.

This package and ``fanout.transport`` are the only importers of asyncssh in fanout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from fanout.sim import rman_fake

__all__ = ["ClientFiles", "Database", "SimFleet"]

SIGNALS = frozenset({"HUP", "INT", "KILL", "QUIT", "TERM", "USR1", "USR2"})  # as OpenSSH's
SHUTDOWN_WAIT = 2.0  # seconds the fleet waits for its killed sessions to report


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """What an inventory needs to reach the fleet, written by ``write_client_files``."""

    known_hosts: Path
    identity_file: Path
    ssh_config: Path


@dataclass(frozen=True, slots=True)
class Database:
    """One simulated database's directories on the (local) database host."""

    sid: str
    oracle_home: Path  # bin/rman: the RMAN fake; double.json: how it behaves
    lock_dir: Path
    recovery_area: Path  # ``$ORACLE_HOME/../fra``; missing when not "mounted"


class _Child(asyncio.SubprocessProtocol):
    """The session's ``/bin/sh``: output to the channel, its end to the session."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._session.attach(transport)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._session.output(data, stderr=fd == 2)

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.ended()  # it exited and its stdout and stderr are closed


class _Session(asyncssh.SSHServerSession[bytes]):
    """One exec channel: ``/bin/sh -c <command>``."""

    def __init__(self, fleet: SimFleet, conn: asyncssh.SSHServerConnection) -> None:
        self._fleet, self._conn = fleet, conn
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._command = ""
        self._proc: asyncio.SubprocessTransport | None = None
        self._early: list[bytes | None] = []  # stdin (None: EOF) that came before the process
        self._open = True
        self._control = -1
        self.done = asyncio.Event()
        fleet.sessions.add(self)

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def session_started(self) -> None:
        self._fleet.start_task(self._spawn())

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        self._control, writer = os.pipe()
        user = str(self._conn.get_extra_info("username") or "oracle")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self._fleet.directory)}
        env.update(USER=user, LOGNAME=user, SHELL="/bin/sh", LANG="C")
        env[rman_fake.CONTROL_ENV] = str(writer)
        loop.add_reader(self._control, self._on_control)
        try:
            await loop.subprocess_exec(
                lambda: _Child(self),
                "/bin/sh",
                "-c",
                self._command,
                env=env,
                cwd=self._fleet.directory,
                start_new_session=True,
                pass_fds=(writer,),
            )
        except OSError as exc:
            self.output(f"sim: cannot run /bin/sh: {exc}\n".encode(), stderr=True)
            self._report(127)
            self.shutdown()
        finally:
            os.close(writer)

    def attach(self, proc: asyncio.SubprocessTransport) -> None:
        """The process runs: stdin that came early goes to it."""
        self._proc = proc
        self._fleet.pgids.add(proc.get_pid())
        for data in self._early:
            self._stdin(data)
        if not self._open:
            self.connection_lost(None)

    def _stdin(self, data: bytes | None) -> None:
        pipe = self._proc.get_pipe_transport(0) if self._proc else None
        if not isinstance(pipe, asyncio.WriteTransport):
            self._early.append(data)
        elif data is None:
            pipe.close()
        elif not pipe.is_closing():
            pipe.write(data)

    def _on_control(self) -> None:
        with contextlib.suppress(OSError):
            data = os.read(self._control, 512)
            if b"drop" in data:
                self._conn.abort()
            if data:
                return
        self._close_control()  # every writer is gone

    def _close_control(self) -> None:
        if self._control >= 0:
            asyncio.get_running_loop().remove_reader(self._control)
            os.close(self._control)
            self._control = -1

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._stdin(data)

    def eof_received(self) -> bool:
        self._stdin(None)
        return True  # half-open: output goes on after the script is read

    def signal_received(self, signal_name: str) -> None:
        if self._proc is not None and signal_name in SIGNALS:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.get_pid(), getattr(signal, f"SIG{signal_name}"))

    def pause_writing(self) -> None:
        for pipe in self._pipes(1, 2):
            if isinstance(pipe, asyncio.ReadTransport):
                pipe.pause_reading()

    def resume_writing(self) -> None:
        for pipe in self._pipes(1, 2):
            if isinstance(pipe, asyncio.ReadTransport):
                pipe.resume_reading()

    def _pipes(self, *fds: int) -> list[asyncio.BaseTransport]:
        pipes = [self._proc.get_pipe_transport(fd) for fd in fds] if self._proc else []
        return [pipe for pipe in pipes if pipe is not None and not pipe.is_closing()]

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False  # the client is gone: stdin ends, and the next write to stdout fails
        for pipe in self._pipes(0, 1, 2):
            pipe.close()

    def output(self, data: bytes, *, stderr: bool) -> None:
        if self._open and self._chan is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                if stderr:
                    self._chan.write_stderr(data)
                else:
                    self._chan.write(data)

    def ended(self) -> None:
        if self._proc is not None:
            self._report(self._proc.get_returncode())
        self.shutdown(kill=False)

    def _report(self, status: int | None) -> None:
        if self._open and self._chan is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                if status is not None and status < 0:
                    self._chan.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
                else:
                    self._chan.exit(255 if status is None else status)

    @property
    def running(self) -> bool:
        return self._proc is not None

    def shutdown(self, *, kill: bool = True) -> None:
        """Close the control pipe and the process transport (which kills the process if it
        still runs: only when the fleet stops, ``kill``); the fleet forgets the session."""
        self._close_control()
        if self._proc is not None and (kill or self._proc.get_returncode() is not None):
            self._proc.close()
        self._fleet.sessions.discard(self)
        self.done.set()


class _Server(asyncssh.SSHServer):
    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._fleet.conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._fleet.conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # public key only, checked against the fleet's client key

    def session_requested(self) -> _Session:
        assert self._conn is not None
        return _Session(self._fleet, self._conn)


class SimFleet:
    """A simulated fleet whose databases live under ``directory``.

    Create it, add ``database``s, write the client files and an inventory, then
    ``async with fleet.serve():`` inside the loop that runs fanout. ``close()`` releases the
    ports if ``serve`` is never entered.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519", comment="fanout-sim-host")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519", comment="fanout-sim")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refuser.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        self.refused_port: int = self._refuser.getsockname()[1]
        self.conns: set[asyncssh.SSHServerConnection] = set()
        self.sessions: set[_Session] = set()
        self.pgids: set[int] = set()  # every session's process group
        self._tasks: set[asyncio.Task[None]] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def database(
        self, sid: str, rman: Mapping[str, Any] | None = None, *, mounted: bool = True
    ) -> Database:
        """Create (or reconfigure) ``sid``'s directories. ``rman``: the fake's settings for this
        SID (its double.json section, e.g. ``{"full": {"behaviour": "fail"}}``);
        ``mounted=False``: no recovery area."""
        base = self.directory / sid
        db = Database(sid, base / "dbhome", base / "locks", base / "fra")
        config = {sid: dict(rman or {})}
        if (db.oracle_home / "bin" / "rman").exists():
            rman_fake.configure(db.oracle_home, config)
        else:
            rman_fake.install(db.oracle_home, f"{sys.executable} -IS", config)
        db.lock_dir.mkdir(exist_ok=True)
        if mounted:
            db.recovery_area.mkdir(exist_ok=True)
        elif db.recovery_area.exists():
            db.recovery_area.rmdir()
        return db

    def write_client_files(self, directory: Path) -> ClientFiles:
        """Write known_hosts, the client's private key (0600) and an empty ssh_config."""
        files = ClientFiles(*(directory / n for n in ("known_hosts", "id_ed25519", "ssh_config")))
        directory.mkdir(parents=True, exist_ok=True)
        key = self.host_key.export_public_key().decode().strip()
        files.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key}\n")
        files.identity_file.unlink(missing_ok=True)
        fd = os.open(files.identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.client_key.export_private_key())
        files.ssh_config.write_text("")
        return files

    def processes(self) -> list[tuple[int, int, str]]:
        """(pid, pgid, args) of every live process in a session's group (leftovers)."""
        found = []
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                args = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            state, _ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
            if state != "Z" and int(pgid) in self.pgids:
                found.append((int(name), int(pgid), args.decode(errors="replace").strip()))
        return found

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[SimFleet]:
        """Listen (inside the running loop) until the block ends; then stop everything:
        no new connections, SIGKILL to every session's group, a bounded moment for them to
        report, connections closed, ports released."""
        self._acceptor = await asyncssh.listen(
            sock=self._listener,
            server_factory=lambda: _Server(self),
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            encoding=None,
            agent_forwarding=False,
        )
        try:
            yield self
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), SHUTDOWN_WAIT)
            self._acceptor = None
        for pgid in {pgid for _pid, pgid, _args in self.processes()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        ends = [asyncio.ensure_future(s.done.wait()) for s in self.sessions if s.running]
        if ends or self._tasks:
            _, late = await asyncio.wait([*ends, *self._tasks], timeout=SHUTDOWN_WAIT)
            for task in late:
                task.cancel()
        for session in list(self.sessions):
            session.shutdown()
        for conn in list(self.conns):
            conn.abort()
        self.close()

    def close(self) -> None:
        """Release both ports (idempotent)."""
        self._listener.close()
        self._refuser.close()

    def start_task(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
