"""The run lock: one fanout run per inventory at a time, naming its holder.

``<state_dir>/locks/<sha256 of the inventory's canonical path>.lock`` is locked
with ``flock(LOCK_EX | LOCK_NB)``; the holder then truncates the file and writes
one JSON line (pid, hostname, start time, argv). A second run finds the lock
busy, reads that line and raises ``LockHeldError`` (exit 75, as ``flock -E 75 -n``).

The lock is the kernel's ``flock``, not the file's existence or its pid: when the
holder dies, however it dies, the kernel drops the lock and the next run takes it
over, simply overwriting the dead holder's line. The file is never unlinked
(unlinking a lock file lets two processes lock two different inodes).

Caveats:

* Keep ``state_dir`` on a local filesystem. On NFS, Linux emulates ``flock`` with
  POSIX byte-range locks through lockd (other systems may lock only locally),
  and a client that loses its lease loses the lock silently; CIFS is no better.
  Two machines sharing one NFS state dir are not protected reliably.
* ``flock`` belongs to the open file description: a ``fork()``-ed child without
  ``exec`` keeps the lock alive after fanout dies. The fd is ``O_CLOEXEC``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fanout.errors import LockHeldError, StateDirError

__all__ = ["RunLock", "acquire_run_lock", "canonical_inventory_path", "lock_path_for"]

_HOLDER_READ_WINDOW = 0.2  # seconds to wait for a brand-new holder to write its line


def canonical_inventory_path(inventory_path: str | os.PathLike[str]) -> str:
    """The inventory's absolute path with symlinks resolved: the identity of "this inventory".

    The run store keys runs by the same string, so history, resume and the lock agree.
    """
    return str(Path(inventory_path).expanduser().resolve())


def lock_path_for(
    state_dir: str | os.PathLike[str], inventory_path: str | os.PathLike[str]
) -> Path:
    """Where the lock file of ``inventory_path`` lives under ``state_dir``."""
    key = hashlib.sha256(canonical_inventory_path(inventory_path).encode()).hexdigest()
    return Path(state_dir) / "locks" / f"{key}.lock"


@dataclass(frozen=True, slots=True)
class RunLock:
    """What this process wrote into the lock file it holds."""

    path: Path
    pid: int
    hostname: str
    started_at: str  # ISO 8601, UTC
    argv: tuple[str, ...]
    inventory: str


@contextmanager
def acquire_run_lock(
    state_dir: str | os.PathLike[str],
    inventory_path: str | os.PathLike[str],
    *,
    argv: Sequence[str] | None = None,
) -> Iterator[RunLock]:
    """Hold the run lock of ``inventory_path`` for the ``with`` block.

    Never waits for the lock. Raises ``LockHeldError`` (lock path, holder pid and
    start time, when readable) if another live process holds it, and ``StateDirError``
    (exit 74) if the state directory cannot be created or the file opened or written
    (read-only, a file where a directory should be, full). On leaving the
    block (normally, by exception or by cancellation) the file is truncated and
    unlocked; if the process dies instead, the kernel unlocks it.
    """
    inventory = canonical_inventory_path(inventory_path)
    path = lock_path_for(state_dir, inventory_path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateDirError.from_os_error(exc, path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateDirError.from_os_error(exc, path) from exc
            pid, started_at = _read_holder(fd)
            raise LockHeldError(str(path), pid, started_at) from None
        lock = RunLock(
            path=path,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            argv=tuple(sys.argv if argv is None else argv),
            inventory=inventory,
        )
        line = json.dumps(
            {
                "pid": lock.pid,
                "hostname": lock.hostname,
                "started_at": lock.started_at,
                "argv": list(lock.argv),
                "inventory": lock.inventory,
            }
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (line + "\n").encode(), 0)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise StateDirError.from_os_error(exc, path) from exc
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """The holder's pid and start time; (None, None) if it has not written them (yet)."""
    deadline = time.monotonic() + _HOLDER_READ_WINDOW
    while True:
        raw = os.pread(fd, 64 * 1024, 0)
        if raw.strip() or time.monotonic() >= deadline:
            break
        time.sleep(0.01)  # the holder locked the file a moment ago and is about to write
    try:
        info = json.loads(raw)
    except ValueError:
        return None, None
    if not isinstance(info, dict):
        return None, None
    pid = info.get("pid")
    started_at = info.get("started_at")
    return (
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        started_at if isinstance(started_at, str) else None,
    )
