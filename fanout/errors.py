"""The exit codes and the exception tree. Only ``cli.py`` prints these and exits.

::

    FanoutError                                            → exit_code
    ├── InventoryError   path, line, key_path              → 2  USAGE
    ├── UsageError       no such run, nothing selected     → 2  USAGE
    ├── LockHeldError    holder pid, started_at            → 75 LOCKED
    ├── StateDirError    path, OSError: the state directory → 74 IO_ERROR
    │   └── StoreError   fanout.db unreadable, corrupt, full, newer schema
    └── TransportError   host                              (a step/host outcome, never an exit)
        ├── ConnectError     refused / reset / timeout: retried with backoff
        ├── AuthError        never retried
        ├── HostKeyError     never retried
        └── ConnectionLost   the connection died under a running step

An expected step failure (non-zero exit, RMAN error stack, timeout) is a value
(``engine.StepResult``), not an exception. ``ExitCode`` is the one table of exit
codes; the README's table is checked against it by a test.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code fanout uses, with the meaning the README documents."""

    OK = 0  # every step succeeded (a resume with nothing left to do too)
    FAILED = 1  # at least one step failed, or a host could not be reached
    USAGE = 2  # usage or inventory error
    CLUSTER_UNAVAILABLE = 69  # EX_UNAVAILABLE: cluster mode, etcd unreachable before leading
    IO_ERROR = 74  # EX_IOERR: the state directory or run store is unusable (full, read-only, …)
    LOCKED = 75  # EX_TEMPFAIL: another run of this inventory holds the lock
    FENCED = 76  # cluster mode: leadership lost, remote work stopped, another node continues
    CANCELLED = 130  # cancelled by the operator (q, Ctrl-C)
    TERMINATED = 143  # stopped by SIGTERM

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "every step succeeded",
    ExitCode.FAILED: "at least one step failed",
    ExitCode.USAGE: "usage or inventory error",
    ExitCode.CLUSTER_UNAVAILABLE: "cluster mode: etcd could not be reached",
    ExitCode.IO_ERROR: "the state directory or run store is unusable",
    ExitCode.LOCKED: "another run holds the lock",
    ExitCode.FENCED: "cluster leadership lost: another node continues the run",
    ExitCode.CANCELLED: "cancelled by the operator",
    ExitCode.TERMINATED: "stopped by SIGTERM",
}


def exit_meaning(code: int) -> str:
    """The documented meaning of ``code``, or "unexpected exit code"."""
    try:
        return ExitCode(code).meaning
    except ValueError:
        return "unexpected exit code"


class FanoutError(Exception):
    """Base of every error fanout raises on purpose. ``str()`` is one line."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(FanoutError):
    """The command cannot do what was asked (no such run, nothing selected)."""


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

    exit_code = ExitCode.LOCKED

    def __init__(self, lock_path: str, pid: int | None, started_at: str | None) -> None:
        self.lock_path = lock_path
        self.pid = pid
        self.started_at = started_at
        holder = f"pid {pid}" if pid else "an unknown process"
        since = f", started {started_at}" if started_at else ""
        super().__init__(f"another fanout run holds {lock_path} ({holder}{since})")


class StateDirError(FanoutError):
    """A local file in the state directory cannot be created, read or written.

    ``str()`` names the path and the system's reason: ``/var/lib/fanout/locks: Not a
    directory``. A local I/O problem, never "a step failed".
    """

    exit_code = ExitCode.IO_ERROR

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> StateDirError:
        """One line from ``exc``: its file name (or ``path``) and strerror."""
        where = exc.filename if exc.filename is not None else path
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):  # mkdir(exist_ok=True) met a file
            reason = "Not a directory"
        return cls(f"{where}: {reason}" if where is not None else reason)


class StoreError(StateDirError):
    """The run store cannot be opened, read or written (corrupt, full, read-only, newer)."""


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
