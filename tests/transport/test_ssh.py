"""SshTransport against an in-process asyncssh server on 127.0.0.1.

The server runs each received command as a real local ``sh -c`` in a new session (as sshd does
for a non-PTY exec), so pgids, ``kill -- -pgid`` from a second channel and ``ps`` are real. Like
OpenSSH 7.9-9.9 for root logins, it records RFC 4254 signal requests without delivering them, so
every "stopped" below was done by fanout's second-channel kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh
import pytest

from fanout.errors import AuthError, ConnectError, ConnectionLost, HostKeyError, TransportError
from fanout.events import Stream
from fanout.model import Host
from fanout.transport import ssh
from fanout.transport.base import OutputLine, RemoteSignal
from fanout.transport.connect import SshOptions
from fanout.transport.ssh import SshProcess, SshTransport

# --- fixtures ---------------------------------------------------------------------------------


@dataclass
class Keys:
    host: asyncssh.SSHKey
    client: asyncssh.SSHKey
    stranger: asyncssh.SSHKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    """Fresh keys for this test run."""
    return Keys(*(asyncssh.generate_private_key("ssh-ed25519") for _ in range(3)))


@dataclass
class Server:
    port: int
    spawned: list[int] = field(default_factory=list)  # pids = pgids of commands run
    conns: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    forced_command: str | None = None  # like command= in authorized_keys
    handlers: list[asyncio.Task[None]] = field(default_factory=list)
    acceptor: asyncssh.SSHAcceptor | None = None

    def drop_connections(self) -> None:
        for conn in self.conns:
            conn.abort()


class _Recorder(asyncssh.SSHServer):
    def __init__(self, server: Server) -> None:
        self._server = server

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._server.conns.append(conn)

    def begin_auth(self, username: str) -> bool:
        self._server.users.append(username)
        return True


async def _copy(src: asyncio.StreamReader | None, dst: asyncssh.SSHWriter[bytes]) -> None:
    assert src is not None
    gone = False
    while data := await src.read(65536):
        if gone:
            continue  # client gone: like sshd, leave the command running
        try:
            dst.write(data)
            await dst.drain()
        except (asyncssh.Error, OSError):
            gone = True


async def _feed(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
) -> None:
    assert child.stdin is not None
    try:
        while data := await process.stdin.read(65536):
            child.stdin.write(data)
            await child.stdin.drain()
    except (asyncssh.Error, OSError):
        pass
    finally:
        child.stdin.close()


def _serve(server: Server) -> Callable[[asyncssh.SSHServerProcess[bytes]], Awaitable[None]]:
    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        server.handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        process.signal_received = server.signals.append  # type: ignore[method-assign,assignment]
        child = await asyncio.create_subprocess_shell(
            server.forced_command or process.command or "",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # sshd setsid()s non-PTY sessions
        )
        server.spawned.append(child.pid)
        feeder = asyncio.create_task(_feed(process, child))
        try:
            await asyncio.gather(
                _copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr)
            )
            status = await child.wait()
        finally:
            feeder.cancel()
        try:
            if status < 0:
                process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
            else:
                process.exit(status)
        except (asyncssh.Error, OSError):
            pass

    return handle


async def _listen(srv: Server, keys: Keys) -> None:
    """Start (or restart, on the same port) the server's acceptor."""
    srv.acceptor = await asyncssh.listen(
        "127.0.0.1",
        srv.port,
        server_factory=lambda: _Recorder(srv),
        server_host_keys=[keys.host],
        authorized_client_keys=asyncssh.import_authorized_keys(
            keys.client.export_public_key().decode()
        ),
        process_factory=_serve(srv),
        encoding=None,
        reuse_address=True,
    )
    srv.port = srv.acceptor.get_port()


@pytest.fixture
async def server(keys: Keys) -> AsyncIterator[Server]:
    """An asyncssh server on 127.0.0.1:<free port> accepting ``keys.client`` for any user."""
    srv = Server(port=0)
    await _listen(srv, keys)
    try:
        yield srv
    finally:
        assert srv.acceptor is not None
        srv.acceptor.close()
        await srv.acceptor.wait_closed()
        for pid in srv.spawned:  # hygiene only: tests assert on leftovers themselves
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if srv.handlers:
            await asyncio.wait(srv.handlers, timeout=5)


def _write_known_hosts(path: Path, port: int, key: asyncssh.SSHKey) -> Path:
    path.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    return path


@pytest.fixture
def host(server: Server, keys: Keys, tmp_path: Path) -> Host:
    """A Host pointing at the server, with its key in a private known_hosts file."""
    identity = tmp_path / "id_ed25519"
    keys.client.write_private_key(identity)
    identity.chmod(0o600)
    return Host(
        name="db1",
        address="127.0.0.1",
        priority=1,
        oracle_sid="ORCL",
        oracle_home="/u01/app/oracle/product/19.0.0/dbhome_1",
        user="oracle",
        port=server.port,
        identity_file=identity,
        known_hosts=_write_known_hosts(tmp_path / "known_hosts", server.port, keys.host),
        connect_timeout=5.0,
    )


@pytest.fixture
def transport() -> SshTransport:
    """A transport with short clean-up timings."""
    return SshTransport(
        orphan_timeout=1.0,
        reconnect_backoff=0.05,
        reconnect_backoff_max=0.2,
        orphan_grace=2.0,
        start_timeout=5.0,
        command_timeout=5.0,
        close_timeout=2.0,
    )


Silent = tuple[int, asyncio.Queue[asyncio.StreamReader]]  # (port, accepted connections)


# --- helpers ----------------------------------------------------------------------------------


def live_in_group(pgid: int) -> list[int]:
    """Pids of non-zombie processes in process group ``pgid``, from /proc.

    A killed process closes its pipes (which ends the channel) a moment before the kernel
    marks it a zombie, so right after ``wait()`` the tests allow that moment (``eventually``).
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(entry))
    return pids


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def collect(proc: SshProcess) -> list[OutputLine]:
    return [line async for line in proc.lines()]


def texts(lines: list[OutputLine], stream: Stream) -> list[str]:
    return [line.text for line in lines if line.stream is stream]


# --- running commands -------------------------------------------------------------------------


async def test_streams_stdout_and_stderr_separately_in_order(
    transport: SshTransport, host: Host
) -> None:
    """stdout and stderr arrive as separate streams, each in order, without the pgid line."""
    async with transport.open_session(host) as session:
        proc = await session.start("echo one; echo oops >&2; printf 'two\\r\\nthree'", None)
        lines = await collect(proc)
        assert await proc.wait() == 0
    assert texts(lines, Stream.STDOUT) == ["one", "two", "three"]
    assert texts(lines, Stream.STDERR) == ["oops"]
    assert not any(ssh.PGID_MARKER in line.text for line in lines)


async def test_pgid_is_the_remote_process_group(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """``pgid`` is the remote command's process group, led by the shell sshd started."""
    async with transport.open_session(host) as session:
        proc = await session.start("ps -o pgid= -p $$", None)
        lines = await collect(proc)
        assert await proc.wait() == 0
    assert proc.pgid == server.spawned[-1]
    assert [line.text.strip() for line in lines] == [str(proc.pgid)]


async def test_stdin_is_written_then_closed(transport: SshTransport, host: Host) -> None:
    """The stdin script reaches the command, followed by EOF."""
    script = "RUN {\n  BACKUP DATABASE;\n}\n"
    async with transport.open_session(host) as session:
        proc = await session.start("cat; echo end-of-input", script)
        lines = await collect(proc)
        assert await proc.wait() == 0
    assert texts(lines, Stream.STDOUT) == ["RUN {", "  BACKUP DATABASE;", "}", "end-of-input"]


@pytest.mark.parametrize(
    ("command", "status"), [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("kill -s TERM $$", 143)]
)
async def test_exit_status(transport: SshTransport, host: Host, command: str, status: int) -> None:
    """Exit codes pass through; death by signal n is 128 + n."""
    async with transport.open_session(host) as session:
        proc = await session.start(command, None)
        assert await proc.wait() == status


async def test_one_connection_serves_every_step(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """Several steps in one session share a single SSH connection."""
    async with transport.open_session(host) as session:
        for n in range(3):
            proc = await session.start(f"exit {n}", None)
            assert await proc.wait() == n
    assert len(server.conns) == 1


async def test_long_line_is_split_and_memory_stays_bounded(
    transport: SshTransport, host: Host
) -> None:
    """50 MB without a newline arrives in pieces of at most MAX_LINE; RSS does not follow."""
    size = 50_000_000

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    baseline, peak, total, longest = rss(), 0, 0, 0
    async with transport.open_session(host) as session:
        proc = await session.start(f"head -c {size} /dev/zero | tr '\\0' x", None)
        async for line in proc.lines():
            total += len(line.text)
            longest = max(longest, len(line.text))
            peak = max(peak, rss())
        assert await proc.wait() == 0
    assert total == size
    assert longest == ssh.MAX_LINE
    assert peak - baseline < 40_000_000


def blocked_writer(pgid: int) -> tuple[int, int] | None:
    """(pid, bytes written) of a process of group ``pgid`` asleep in a write to a full pipe."""
    for pid in live_in_group(pgid):
        with contextlib.suppress(OSError):
            if "pipe_write" in Path(f"/proc/{pid}/wchan").read_text():
                io = Path(f"/proc/{pid}/io").read_text()
                return pid, int(io.split("wchar:")[1].split()[0])
    return None


async def test_unread_output_holds_the_remote_writer_until_read(
    transport: SshTransport, host: Host, tmp_path: Path
) -> None:
    """Unread lines pause the channel, so the remote writer stays blocked; reading resumes it."""
    count, written = 1_000_000, tmp_path / "written"
    async with transport.open_session(host) as session:
        proc = await session.start(f"seq 1 {count}; touch {written}", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        lines = proc.lines()
        assert (await anext(lines)).text == "1"
        deadline, last = time.monotonic() + 10, None
        while (now := blocked_writer(pgid)) is None or now != last:  # blocked, no progress
            assert time.monotonic() < deadline, "the remote writer was never held back"
            last = now
            await asyncio.sleep(0.3)
        assert not written.exists()
        async with asyncio.timeout(30):
            rest = [line.text async for line in lines]
            assert await proc.wait() == 0
    assert rest == [str(n) for n in range(2, count + 1)]
    assert written.exists()


async def test_invalid_utf8_is_replaced(transport: SshTransport, host: Host) -> None:
    """Undecodable bytes become U+FFFD instead of failing the step."""
    async with transport.open_session(host) as session:
        proc = await session.start("printf 'caf\\351\\n'", None)
        assert [line.text for line in await collect(proc)] == ["caf\ufffd"]
        assert await proc.wait() == 0


async def test_wait_without_reading_lines_does_not_stall(
    transport: SshTransport, host: Host
) -> None:
    """Output nobody reads is discarded once the buffer is full, so wait() still returns."""
    async with transport.open_session(host) as session:
        proc = await session.start("seq 1 300000; echo bye >&2", None)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0


async def test_lines_started_after_wait_still_get_everything(
    transport: SshTransport, host: Host
) -> None:
    """A consumer started right after wait() is not robbed of lines."""
    async with transport.open_session(host) as session:
        proc = await session.start("seq 1 50", None)
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(collect(proc))
            status = await proc.wait()
        assert status == 0
        assert [line.text for line in reader.result()] == [str(n) for n in range(1, 51)]


async def test_forced_command_is_reported(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """A server that runs something else (forced command) fails start() with what it said."""
    server.forced_command = "echo 'this account is restricted' >&2; exit 1"
    async with transport.open_session(host) as session:
        with pytest.raises(ConnectionLost) as caught:
            await session.start("exec rman target /", "RUN {}")
    assert caught.value.reason == (
        "the remote shell on oracle@127.0.0.1 exited with status 1 before reporting its"
        " process group: this account is restricted"
    )


async def test_missing_pgid_line_times_out(host: Host, server: Server) -> None:
    """start() gives up after start_timeout when the pgid line never comes."""
    server.forced_command = "sleep 30"
    transport = SshTransport(start_timeout=0.3)
    async with transport.open_session(host) as session:
        with pytest.raises(ConnectionLost, match=r"no process group id .* within 0\.3s"):
            await session.start("true", None)


# --- signals ----------------------------------------------------------------------------------


async def test_signal_stops_the_whole_group(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """TERM through the second channel ends the shell and its children; nothing is left."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000 & sleep 1000; wait", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        await eventually(lambda: len(live_in_group(pgid)) == 3)
        await proc.signal(RemoteSignal.TERM)
        async with asyncio.timeout(5):
            assert await proc.wait() == 128 + signal.SIGTERM
        await eventually(lambda: live_in_group(pgid) == [], within=2.0)
    assert server.signals == ["TERM"]  # the RFC 4254 request went out too


async def test_int_spares_background_children_until_term(
    transport: SshTransport, host: Host
) -> None:
    """INT ends the foreground (rman's case); `&` children ignore INT (POSIX sh); TERM ends them."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000 & sleep 1000; wait", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        await eventually(lambda: len(live_in_group(pgid)) == 3)
        await proc.signal(RemoteSignal.INT)
        await eventually(lambda: len(live_in_group(pgid)) == 1)
        await proc.signal(RemoteSignal.TERM)
        async with asyncio.timeout(5):
            assert await proc.wait() == 128 + signal.SIGINT  # how the leader died
        await eventually(lambda: live_in_group(pgid) == [], within=2.0)


async def test_signal_after_exit_is_harmless(transport: SshTransport, host: Host) -> None:
    """Signalling a finished step neither raises nor sends anything."""
    async with transport.open_session(host) as session:
        proc = await session.start("true", None)
        assert await proc.wait() == 0
        await proc.signal(RemoteSignal.KILL)


async def test_leaving_the_session_terms_a_running_step(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """Closing the session with a step still running stops its group and the connection."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000", None)
        assert proc.pgid is not None
        pgid = proc.pgid
    await eventually(lambda: live_in_group(pgid) == [])
    await eventually(server.conns[0].is_closed)


# --- connection lost --------------------------------------------------------------------------


async def test_dropped_connection_reconnects_and_kills_the_group(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """A dropped connection ends in ConnectionLost only after the orphaned group was stopped."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000 & sleep 1000; wait", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        await eventually(lambda: len(live_in_group(pgid)) == 3)
        server.drop_connections()
        with pytest.raises(ConnectionLost) as caught:
            async with asyncio.timeout(10):
                await proc.wait()
        assert live_in_group(pgid) == []
    assert caught.value.host == "db1"
    assert f"remote process group {pgid} was stopped after reconnecting" in caught.value.reason
    assert len(server.conns) == 2


async def test_signal_on_a_dropped_connection_cleans_up(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """signal() on a dead connection runs the same reconnect-and-kill; wait() then raises."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        server.drop_connections()
        await eventually(lambda: session.lost_at is not None)
        await proc.signal(RemoteSignal.INT)
        assert live_in_group(pgid) == []
        with pytest.raises(ConnectionLost, match="was stopped after reconnecting"):
            await proc.wait()


async def test_unreachable_after_drop_says_the_group_may_still_run(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """When reconnecting fails, ConnectionLost says the group may still be running."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000", None)
        assert server.acceptor is not None
        server.acceptor.close()
        server.drop_connections()
        with pytest.raises(ConnectionLost, match=r"may still be running.*connection refused"):
            async with asyncio.timeout(10):
                await proc.wait()
    (orphan,) = await transport.wait_orphans()
    assert (orphan.host, orphan.pgid) == ("db1", proc.pgid)


async def test_a_later_connection_stops_a_listed_orphan_first(
    transport: SshTransport, host: Host, server: Server, keys: Keys
) -> None:
    """A group left unconfirmed (server down past orphan_timeout) is stopped by the host's next
    connection before the session is handed out; then nothing is left to report."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        assert server.acceptor is not None
        server.acceptor.close()
        await server.acceptor.wait_closed()
        server.drop_connections()
        with pytest.raises(ConnectionLost, match="may still be running"):
            async with asyncio.timeout(10):
                await proc.wait()
    assert live_in_group(pgid) != []
    await _listen(server, keys)
    async with transport.open_session(host):
        assert live_in_group(pgid) == []  # before anything else ran on the new connection
    assert await transport.wait_orphans() == []


async def test_leaving_after_a_drop_still_cleans_up(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """Leaving the session after a drop, without wait(), still stops the orphaned group."""
    async with transport.open_session(host) as session:
        proc = await session.start("sleep 1000", None)
        assert proc.pgid is not None
        pgid = proc.pgid
        server.drop_connections()
        await eventually(lambda: session.lost_at is not None)
    assert live_in_group(pgid) == []


async def test_start_on_a_lost_connection_raises(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """start() after the connection died raises ConnectionLost naming the host."""
    async with transport.open_session(host) as session:
        server.drop_connections()
        await eventually(lambda: session.lost_at is not None)
        with pytest.raises(ConnectionLost, match=r"oracle@127\.0\.0\.1"):
            await session.start("true", None)


# --- connecting -------------------------------------------------------------------------------


async def test_host_key_mismatch(
    transport: SshTransport, host: Host, keys: Keys, server: Server
) -> None:
    """A different key on file for the host is a HostKeyError naming host and file."""
    assert host.known_hosts is not None
    _write_known_hosts(host.known_hosts, server.port, keys.stranger)
    with pytest.raises(HostKeyError) as caught:
        async with transport.open_session(host):
            pass
    assert caught.value.reason == (
        f"host key for 127.0.0.1:{server.port} does not match {host.known_hosts}"
    )


async def test_host_key_of_another_type_is_a_mismatch(
    transport: SshTransport, host: Host, server: Server
) -> None:
    """Only an RSA key on file while the server has ed25519: still a HostKeyError."""
    assert host.known_hosts is not None
    _write_known_hosts(
        host.known_hosts, server.port, asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    )
    with pytest.raises(HostKeyError, match="does not match"):
        async with transport.open_session(host):
            pass


async def test_unknown_host_is_not_trusted(
    transport: SshTransport, host: Host, tmp_path: Path
) -> None:
    """A host absent from known_hosts is refused, never accepted on first use."""
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match=r"is not in known_hosts \(.*empty_known_hosts\)"):
        async with transport.open_session(replace(host, known_hosts=empty)):
            pass


async def test_missing_default_known_hosts_trusts_nothing(
    transport: SshTransport, host: Host
) -> None:
    """Without host.known_hosts and without ~/.ssh/known_hosts, every host key is refused."""
    with pytest.raises(HostKeyError) as caught:
        async with transport.open_session(replace(host, known_hosts=None)):
            pass
    home = os.environ["HOME"]
    assert caught.value.reason.endswith(f"{home}/.ssh/known_hosts does not exist")


async def test_wrong_client_key_is_an_auth_error(
    transport: SshTransport, host: Host, keys: Keys, tmp_path: Path
) -> None:
    """A key the server does not accept gives AuthError naming user@host."""
    other = tmp_path / "id_other"
    keys.stranger.write_private_key(other)
    with pytest.raises(AuthError) as caught:
        async with transport.open_session(replace(host, identity_file=other)):
            pass
    assert caught.value.reason == "authentication failed for oracle@127.0.0.1"


async def test_closed_port_is_refused_fast(transport: SshTransport, host: Host) -> None:
    """Nothing listening: a transient ConnectError, quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        async with transport.open_session(replace(host, port=port)):
            pass
    assert caught.value.reason == f"connection refused by 127.0.0.1:{port}"
    assert caught.value.retryable
    assert time.monotonic() - started < 2


@pytest.fixture
async def silent_port() -> AsyncIterator[tuple[int, asyncio.Queue[asyncio.StreamReader]]]:
    """A TCP server that accepts and never speaks SSH; yields (port, accepted readers)."""
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await accepted.put(reader)

    tcp = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield tcp.sockets[0].getsockname()[1], accepted
    finally:
        for writer in writers:
            writer.close()
        tcp.close()
        await tcp.wait_closed()


async def test_handshake_timeout_is_a_connect_error(
    transport: SshTransport,
    host: Host,
    silent_port: Silent,
) -> None:
    """A server that never answers times out after host.connect_timeout."""
    port, _ = silent_port
    with pytest.raises(ConnectError, match=rf"connection to 127.0.0.1:{port} timed out after 0.3s"):
        async with transport.open_session(replace(host, port=port, connect_timeout=0.3)):
            pass


async def test_cancel_during_connect_closes_the_socket(
    transport: SshTransport,
    host: Host,
    silent_port: Silent,
) -> None:
    """Cancelling a handshake in progress closes the half-open connection."""
    port, accepted = silent_port

    async def connect() -> None:
        async with transport.open_session(replace(host, port=port)):
            pass

    task = asyncio.create_task(connect())
    async with asyncio.timeout(5):
        reader = await accepted.get()
        await reader.readline()  # the client's SSH version line: the handshake has begun
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while await reader.read(4096):  # EOF: the client closed its end
            pass


async def test_ssh_config_alias_user_port_and_identity(
    transport: SshTransport, host: Host, server: Server, tmp_path: Path
) -> None:
    """Host alias, HostName, Port, User and IdentityFile come from ssh_config when unset."""
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host db-alias\n"
        "  HostName 127.0.0.1\n"
        f"  Port {server.port}\n"
        "  User backup\n"
        f"  IdentityFile {host.identity_file}\n"
    )
    bare = replace(
        host, address="db-alias", port=None, user=None, identity_file=None, ssh_config=config
    )
    async with transport.open_session(bare) as session:
        proc = await session.start("echo ok", None)
        assert [line.text for line in await collect(proc)] == ["ok"]
    assert server.users == ["backup"]


async def test_handshakes_are_capped(
    host: Host, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_connecting bounds handshakes in flight; the rest wait their turn."""
    transport = SshTransport(max_connecting=2)
    in_flight = peak = 0
    original = asyncssh.connect

    async def counting(*args: object, **kwargs: object) -> asyncssh.SSHClientConnection:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(asyncssh, "connect", counting)
    async with asyncio.TaskGroup() as tg:
        for _ in range(5):
            tg.create_task(_open_and_close(transport, host))
    assert peak == 2
    assert len(server.conns) == 5


async def _open_and_close(transport: SshTransport, host: Host) -> None:
    async with transport.open_session(host):
        pass


# --- error mapping ----------------------------------------------------------------------------


def _subclasses(cls: type[asyncssh.DisconnectError]) -> Iterator[type[asyncssh.DisconnectError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _attempt() -> ssh.ConnectAttempt:
    return ssh.ConnectAttempt(
        host="db1", hostname="db1.example", port=22, user="oracle", known_hosts=Path("/kh")
    )


@pytest.mark.parametrize(
    "cls",
    [asyncssh.DisconnectError, *_subclasses(asyncssh.DisconnectError)],
    ids=lambda c: c.__name__,
)
def test_every_asyncssh_disconnect_error_maps(cls: type[asyncssh.DisconnectError]) -> None:
    """Each asyncssh DisconnectError class has an explicit entry and becomes a TransportError."""
    assert cls in ssh.CONNECT_ERRORS
    args = (11, "reason") if cls is asyncssh.DisconnectError else ("reason",)
    exc = cls(*args)
    error = _attempt().error(exc)
    assert isinstance(error, ssh.CONNECT_ERRORS[cls])
    assert error.host == "db1"
    assert "\n" not in error.reason


_HOST = "db1.example"


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (ConnectionRefusedError(111, "x"), ConnectError, f"connection refused by {_HOST}:22"),
        (ConnectionResetError(104, "x"), ConnectError, f"connection reset by {_HOST}:22"),
        (TimeoutError(), ConnectError, f"connection to {_HOST}:22 timed out after 30s"),
        (socket.gaierror(-2, "Unknown"), ConnectError, f"cannot resolve {_HOST}: Unknown"),
        (OSError(113, "No route"), ConnectError, f"cannot connect to {_HOST}:22: No route"),
        (asyncssh.PermissionDenied("x"), AuthError, f"authentication failed for oracle@{_HOST}"),
        (asyncssh.ChannelOpenError(2, "no"), ConnectError, f"cannot reach {_HOST}:22: no"),
        (asyncssh.ConfigParseError("bad"), TransportError, "bad SSH settings for db1: bad"),
    ],
)
def test_os_and_other_errors_map(exc: Exception, kind: type[TransportError], reason: str) -> None:
    """Socket errors, timeouts and local settings problems get their class and one-line reason."""
    error = _attempt().error(exc)
    assert type(error) is kind
    assert error.reason == reason


# --- pure helpers -----------------------------------------------------------------------------


def test_wrap_command_shape() -> None:
    """The remote command execs /bin/sh, which prints its pid first."""
    assert ssh.wrap_command("exec rman target /") == (
        "exec /bin/sh -c 'echo fanout-pgid=$$\nexec rman target /'"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:05", 5), ("  01:02:03", 3723), ("2-00:00:01", 172801)]
)
def test_parse_etime(text: str, seconds: int) -> None:
    """POSIX etime [[dd-]hh:]mm:ss becomes seconds."""
    assert ssh.parse_etime(text) == seconds


def test_group_is_ours_only_if_it_predates_the_loss() -> None:
    """A group holding a process older than the disconnect is ours; a younger group is not."""
    assert ssh.group_is_ours([(100, 600), (130, 2)], since_lost=30.0)
    assert ssh.group_is_ours([(100, 0)], since_lost=0.4)
    assert not ssh.group_is_ours([(100, 5), (101, 4)], since_lost=30.0)


async def test_a_slow_ps_does_not_make_our_group_look_newer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loss's age is taken before ps runs: a slow round trip cannot disown our group."""
    from fanout.transport import orphans

    now = [100.0]  # the step started at 99.8, the connection was found dead at 100.0
    sent: list[str] = []

    async def members(conn: object, pgid: int, within: float) -> list[tuple[int, int]]:
        # ps samples at 100.9: our rman has run 1.1 s, which procps may print as 0 (whole
        # seconds of uptime minus whole seconds of start); the answer takes 1.5 s to arrive
        now[0] += 1.5
        return [(4242, 0)] if not sent else []  # gone once TERM was sent

    async def script(conn: object, text: str, within: float) -> tuple[int | None, str]:
        sent.append(text)
        return 0, ""

    monkeypatch.setattr(orphans, "group_members", members)
    monkeypatch.setattr(orphans, "run_script", script)
    stopper = orphans.OrphanStopper(
        SshOptions(
            max_connecting=1, keepalive_interval=None, keepalive_count_max=None, close_timeout=1
        ),
        timeout=60,
        grace=5,
        command_timeout=5,
        backoff=1,
        backoff_max=5,
        clock=lambda: now[0],
    )
    now[0] = 100.9
    host = Host(name="db1", address="127.0.0.1", priority=1, oracle_sid="ORCL", oracle_home="/o")
    group = orphans._Group(host, 4242, lost_at=100.0, deadline=160.0)
    outcome = await stopper._stop_group(None, group)  # type: ignore[arg-type]
    assert outcome == "was stopped after reconnecting (SIGTERM)"
    assert sent == ["kill -s TERM -- -4242 2>/dev/null"]


def test_line_splitter_cuts_on_character_boundaries() -> None:
    """Overlong lines are cut at max_line without splitting a UTF-8 character; CRLF is stripped."""
    splitter = ssh.LineSplitter(max_line=4)
    assert splitter.feed("aaé".encode()) == []
    assert splitter.feed("é\r\nbc".encode()) == ["aaé", "é"]
    assert splitter.feed(b"") == []
    assert splitter.flush() == "bc"
    assert splitter.flush() is None


def test_line_splitter_decodes_a_read_at_once_as_it_would_line_by_line() -> None:
    """The fast path (a read's complete lines decoded together) gives exactly the lines, and
    the U+FFFD replacements, of splitting the bytes first and decoding each line; invalid
    and cut UTF-8, CRLF, lone CR, empty lines and chunk edges anywhere included."""
    rng = random.Random(17)
    alphabet = [b"a", b"\n", b"\r", b"\r\n", "é".encode(), "€".encode(), b"\xe2\x82", b"\xff", b" "]
    for _ in range(300):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
        expected = [
            (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
            for line in data.split(b"\n")[:-1]
        ]
        splitter = ssh.LineSplitter(max_line=1000)
        got: list[str] = []
        at = 0
        while at < len(data):
            step = rng.randrange(1, 12)
            got += splitter.feed(data[at : at + step])
            at += step
        assert got == expected, data
        tail = data.rsplit(b"\n", 1)[-1] if b"\n" in data else data
        assert splitter.flush() == (tail.decode("utf-8", "replace") if tail else None)
