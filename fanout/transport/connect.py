"""Connecting: OpenSSH options, host-key checking on every hop, and error mapping.

What a connection uses, in order of precedence (OpenSSH's own rule: the first value wins):
the host's inventory entry, then the inventory's ``defaults``, then the ssh config
(``ssh_config``, else ``~/.ssh/config``), then built-in defaults (the local user, port 22).
fanout has no command-line option for these. Keys the inventory leaves out (or sets to
``null``) are simply not passed, so the ssh config decides.

Host keys: one known_hosts file (the inventory's ``known_hosts``, else ``~/.ssh/known_hosts``)
is the trust list for *every* hop. A ``ProxyJump`` from the ssh config is opened here, hop by
hop, with the same known_hosts check, identity and config as the final host (asyncssh's own
ProxyJump handling would consult only the default known_hosts for the hops). Errors name the
file consulted.

Errors are translated at this seam (``CONNECT_ERRORS``): HostKeyError and AuthError are never
retried, ConnectError is transient, a local settings problem (bad ssh config, unreadable
identity file) is a plain ``TransportError``.

Ciphers: unless the ssh config sets ``Ciphers`` for the host (or hop), AES-GCM is offered
first (``PREFERRED_CIPHERS``), then asyncssh's defaults. OpenSSH puts chacha20-poly1305 first
because it is fast in C without AES instructions; asyncssh computes it in Python around a
dozen ``cryptography`` calls per packet (~18 µs to encrypt one, against ~3.5 µs for AES-GCM,
one call), and a fan-out client pays that on every packet of every host. Both are AEAD
ciphers OpenSSH enables by default, so the server's choice is not narrowed.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import asyncssh

from fanout.errors import AuthError, ConnectError, HostKeyError, TransportError
from fanout.model import Host

__all__ = [
    "CONNECT_ERRORS",
    "ConnectAttempt",
    "Link",
    "Resolved",
    "SshOptions",
    "resolve",
]

log = logging.getLogger(__name__)

#: asyncssh ``encryption_algs``: these first, then its default list. Not used when the ssh
#: config names ``Ciphers`` for the destination (the operator's list then decides).
PREFERRED_CIPHERS: Final = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"


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
    jump: bool = False  # this attempt is a ProxyJump hop on the way to ``host``

    @property
    def where(self) -> str:
        return f"{self.hostname}:{self.port}"

    def error(self, exc: BaseException) -> TransportError:
        """Translate ``exc`` raised while connecting. Never raises."""
        error = self._error(exc)
        if self.jump:  # name the hop: the final host was never reached
            return type(error)(error.host, f"jump host {self.where}: {error.reason}")
        return error

    def _error(self, exc: BaseException) -> TransportError:
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


class Client(asyncssh.SSHClient):
    """Notices when the connection goes away without us closing it."""

    def __init__(self) -> None:
        self.lost_at: float | None = None
        self.closing = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing and self.lost_at is None:
            self.lost_at = time.monotonic()
            log.debug("connection lost: %s", exc)


@dataclass(slots=True)
class Link:
    """One open connection to a host: the final hop, its client, and the jump hops under it."""

    conn: asyncssh.SSHClientConnection
    client: Client
    hops: list[asyncssh.SSHClientConnection] = field(default_factory=list)

    def abort(self) -> None:
        """Drop the connection and every hop at once."""
        self.client.closing = True
        self.conn.abort()
        for hop in reversed(self.hops):
            hop.abort()

    async def close(self, within: float) -> bool:
        """Close cleanly within ``within`` seconds; abort what is left. True if clean."""
        self.client.closing = True
        self.conn.close()
        for hop in reversed(self.hops):
            hop.close()
        try:
            async with asyncio.timeout(within):
                await self.conn.wait_closed()
                for hop in reversed(self.hops):
                    await hop.wait_closed()
        except TimeoutError:
            self.abort()
            return False
        return True


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a host's connection goes, after the ssh config: for ``fanout plan`` and errors."""

    user: str
    hostname: str
    port: int
    jumps: tuple[str, ...]  # ProxyJump hops, first first, as ``[user@]host[:port]``
    config: tuple[str, ...]  # the ssh config files read
    known_hosts: Path  # the trust list of every hop


def config_files(host: Host) -> list[str]:
    """The ssh config files for ``host``. Raises TransportError if the named one is unreadable."""
    if host.ssh_config is not None:
        if not os.access(host.ssh_config, os.R_OK):
            raise TransportError(host.name, f"cannot read ssh config {host.ssh_config}")
        return [str(host.ssh_config)]
    default = Path("~/.ssh/config").expanduser()
    return [str(default)] if os.access(default, os.R_OK) else []


def known_hosts_path(host: Host) -> Path:
    return host.known_hosts or Path("~/.ssh/known_hosts").expanduser()


def resolve(host: Host) -> Resolved:
    """What the ssh config makes of ``host`` (user, HostName, Port, ProxyJump), without connecting.

    Raises TransportError for an unreadable or invalid ssh config.
    """
    config = config_files(host)
    try:
        options = _config_options(config, host.address, host.port, host.user)
    except (OSError, ValueError) as exc:
        raise TransportError(host.name, f"bad SSH settings for {host.name}: {exc}") from exc
    tunnel = options.tunnel
    jumps = tuple(hop for hop in tunnel.split(",") if hop) if isinstance(tunnel, str) else ()
    return Resolved(
        user=options.username,
        hostname=options.host,
        port=options.port,
        jumps=jumps,
        config=tuple(config),
        known_hosts=known_hosts_path(host),
    )


def _split_hop(hop: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (ProxyJump syntax) → (user, host, port)."""
    user, _, rest = hop.rpartition("@")
    address, port = rest, None
    if rest.startswith("[") and "]" in rest:  # [::1]:22
        address, _, after = rest[1:].partition("]")
        port = int(after[1:]) if after.startswith(":") else None
    elif rest.count(":") == 1:
        address, _, text = rest.partition(":")
        port = int(text)
    return user or None, address, port


class SshOptions:
    """Builds asyncssh options for a host (and its jump hops) and opens connections.

    ``keepalive_interval``/``keepalive_count_max`` override the host's own values when given
    (benchmarks); ``max_connecting`` caps handshakes in flight across every host.
    """

    def __init__(
        self,
        *,
        max_connecting: int,
        keepalive_interval: float | None,
        keepalive_count_max: int | None,
        close_timeout: float,
    ) -> None:
        if max_connecting < 1:
            raise ValueError("max_connecting must be at least 1")
        self._connecting = asyncio.Semaphore(max_connecting)
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max
        self.close_timeout = close_timeout
        self._known_cache: dict[Path, tuple[int, int, asyncssh.SSHKnownHosts]] = {}
        # Parsed once per distinct settings, reused while the files are unchanged (stat key):
        self._jumps_cache: dict[tuple[object, ...], tuple[str, ...]] = {}
        self._ciphers_cache: dict[tuple[object, ...], bool] = {}
        self._keys_cache: dict[str, tuple[tuple[object, ...], list[asyncssh.SSHKeyPair]]] = {}

    async def connect(self, host: Host) -> Link:
        """Open a connection to ``host`` through its ProxyJump hops, if any.

        Every hop is bounded by ``host.connect_timeout`` and checked against the same
        known_hosts. Raises ConnectError (transient), AuthError, HostKeyError, or
        TransportError for local settings. On cancellation whatever was set up is aborted
        before CancelledError propagates.
        """
        config = config_files(host)
        jumps = self._jumps(host, config)
        if any(hop.lower() == "none" for hop in jumps):
            jumps = ()
        hops: list[asyncssh.SSHClientConnection] = []
        try:
            for hop in jumps:
                try:
                    user, address, port = _split_hop(hop)
                except ValueError as exc:
                    raise TransportError(host.name, f"bad ProxyJump {hop!r}: {exc}") from exc
                via = hops[-1] if hops else None
                conn, _ = await self._open(host, address, port, user, config, via, jump=True)
                hops.append(conn)
            via = hops[-1] if hops else None
            conn, client = await self._open(
                host, host.address, host.port, host.user, config, via, jump=False
            )
        except BaseException:
            for opened in reversed(hops):
                opened.abort()
            raise
        return Link(conn, client, hops)

    async def _open(
        self,
        host: Host,
        address: str,
        port: int | None,
        user: str | None,
        config: list[str],
        via: asyncssh.SSHClientConnection | None,
        *,
        jump: bool,
    ) -> tuple[asyncssh.SSHClientConnection, Client]:
        attempt = ConnectAttempt(
            host=host.name,
            hostname=address,
            port=port or 22,
            user=user or "",
            known_hosts=known_hosts_path(host),
            connect_timeout=host.connect_timeout,
            jump=jump,
        )
        known = self._read_known_hosts(host, attempt)
        interval = (
            self.keepalive_interval
            if self.keepalive_interval is not None
            else host.keepalive_interval
        )
        count = (
            self.keepalive_count_max
            if self.keepalive_count_max is not None
            else host.keepalive_count_max
        )
        options: dict[str, object] = {
            "config": config,  # explicit: never asyncssh's implicit default
            "known_hosts": _KnownHostsCheck(known, attempt),  # always verified, every hop
            "connect_timeout": host.connect_timeout,  # TCP + handshake + auth
            "keepalive_interval": interval,
            "keepalive_count_max": count,
            "request_pty": False,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "password_auth": False,  # batch mode: never prompt
            "kbdint_auth": False,
            "tunnel": via if via is not None else None,  # hops are opened here, never by asyncssh
        }
        if port is not None:
            options["port"] = port
        if user is not None:
            options["username"] = user
        if not self._ciphers_configured(address, port, user, config):
            options["encryption_algs"] = PREFERRED_CIPHERS
        if host.identity_file is not None:
            if not os.access(host.identity_file, os.R_OK):
                raise TransportError(host.name, f"cannot read identity file {host.identity_file}")
            options["client_keys"] = self._client_keys(str(host.identity_file))  # + the agent
        client = Client()

        async def handshake() -> asyncssh.SSHClientConnection:
            return await asyncssh.connect(address, client_factory=lambda: client, **options)

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
                _describe(address, port, user, config, attempt)
                raise attempt.error(exc) from exc

    def _jumps(self, host: Host, config: list[str]) -> tuple[str, ...]:
        """The ProxyJump hops of ``host`` (``resolve``), parsed once per distinct settings
        while the ssh config files are unchanged."""
        key = (host.address, host.port, host.user, *((f, _file_state(f)) for f in config))
        jumps = self._jumps_cache.get(key)
        if jumps is None:
            try:
                jumps = resolve(host).jumps
            except TransportError:
                jumps = ()  # the final connect reports the config problem (not cached)
            else:
                self._jumps_cache[key] = jumps
        return jumps

    def _ciphers_configured(
        self, address: str, port: int | None, user: str | None, config: list[str]
    ) -> bool:
        """Whether the ssh config sets ``Ciphers`` for this destination (cached like ``_jumps``).

        An unreadable or invalid config counts as "no": the connect itself reports it.
        """
        key = (address, port, user, *((f, _file_state(f)) for f in config))
        configured = self._ciphers_cache.get(key)
        if configured is None:
            try:
                options = _config_options(config, address, port, user)
            except (OSError, ValueError):
                return False
            configured = self._ciphers_cache[key] = bool(options.config.get("Ciphers"))
        return configured

    def _client_keys(self, path: str) -> list[str] | list[asyncssh.SSHKeyPair]:
        """The identity file (and its ``-cert.pub``) parsed once while both are unchanged.

        A key asyncssh cannot load here (encrypted, damaged) is handed over as its path,
        so the connection attempt reports it exactly as before.
        """
        state = (_file_state(path), _file_state(path + "-cert.pub"))
        cached = self._keys_cache.get(path)
        if cached is not None and cached[0] == state:
            return cached[1]
        try:
            keys = list(asyncssh.load_keypairs([path]))
        except (OSError, ValueError, asyncssh.KeyImportError):
            return [path]
        self._keys_cache[path] = (state, keys)
        return keys

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


def _file_state(path: str) -> tuple[int, int, int, int] | None:
    """What tells a changed file: (inode, size, mtime, ctime) in ns; None if it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _config_options(
    config: list[str], address: str, port: int | None, user: str | None
) -> asyncssh.SSHClientConnectionOptions:
    """What the ssh config makes of a destination, no keys or known_hosts read (may raise
    OSError or ValueError for an unreadable or invalid config)."""
    return asyncssh.SSHClientConnectionOptions(
        config=config,
        host=address,
        port=port if port is not None else (),
        username=user if user is not None else (),
        client_keys=None,
        known_hosts=None,
        agent_path=None,
    )


def _describe(
    address: str, port: int | None, user: str | None, config: list[str], attempt: ConnectAttempt
) -> None:
    """Fill in the user, HostName and port ssh_config resolves to (error path only)."""
    try:
        resolved = _config_options(config, address, port, user)
        attempt.user, attempt.hostname, attempt.port = (
            resolved.username,
            resolved.host,
            resolved.port,
        )
    except Exception:  # unreadable config: keep what the inventory says
        attempt.user = attempt.user or getpass.getuser()
