"""The exception tree. Only ``cli.py`` turns these into messages and exit codes.

::

    FanoutError
    ├── InventoryError   path, line, key_path              → exit 2
    ├── LockHeldError    holder pid, started_at            → exit 75
    └── TransportError   host
        ├── ConnectError     refused / reset / timeout: retried with backoff
        ├── AuthError        never retried
        ├── HostKeyError     never retried
        └── ConnectionLost   the connection died under a running step

An expected step failure (non-zero exit, RMAN error stack, timeout) is a value
(``engine.StepResult``), not an exception.
"""

from __future__ import annotations


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""


class InventoryError(FanoutError):
    """The inventory file is unreadable or invalid.

    ``str()`` is the one line the operator sees:
    ``nightly.yaml:14: hosts[2].priority: expected a positive integer, got 'high'``.
    """

    def __init__(self, path: str, line: int | None, key_path: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key_path = key_path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return (
            f"{where}: {self.key_path}: {self.message}"
            if self.key_path
            else f"{where}: {self.message}"
        )


class LockHeldError(FanoutError):
    """Another fanout run holds the lock of this inventory."""

    def __init__(self, lock_path: str, pid: int | None, started_at: str | None) -> None:
        self.lock_path = lock_path
        self.pid = pid
        self.started_at = started_at
        holder = f"pid {pid}" if pid else "an unknown process"
        since = f", started {started_at}" if started_at else ""
        super().__init__(f"another fanout run holds {lock_path} ({holder}{since})")


class TransportError(FanoutError):
    """Talking to a host failed. ``str()`` is a one-line cause for the summary."""

    retryable = False

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(reason)


class ConnectError(TransportError):
    """Transient: refused, reset, unreachable, timed out. Retried with backoff."""

    retryable = True


class AuthError(TransportError):
    """The server refused every credential. Never retried."""


class HostKeyError(TransportError):
    """The host key is unknown or does not match known_hosts. Never retried."""


class ConnectionLost(TransportError):
    """The connection died while a step was running."""
