"""Run lock: a real flock, held by a second process, names its holder; a dead holder's is free."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fanout
from fanout.errors import LockHeldError
from fanout.lock import acquire_run_lock, lock_path_for

REPO = Path(fanout.__file__).resolve().parent.parent

HOLDER = textwrap.dedent("""
    import sys, time
    from fanout.lock import acquire_run_lock
    with acquire_run_lock(sys.argv[1], sys.argv[2], argv=["fanout", "run", sys.argv[2]]) as lock:
        print(lock.started_at, flush=True)
        time.sleep(30)  # bounded: the test kills it long before
""")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text("hosts: []\n")
    return path


def _read_line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """One line of the child's stdout, or fail once ``timeout`` has passed."""
    assert proc.stdout is not None
    deadline, buf = time.monotonic() + timeout, b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        assert left > 0, "child said nothing in time"
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"child exited {proc.wait()}"
            buf += chunk
    return buf.decode().strip()


def test_holder_info_is_written(tmp_path: Path, inventory: Path) -> None:
    """The holder's pid, hostname, start time and argv are in the 0600 lock file while held."""
    state = tmp_path / "state"
    with acquire_run_lock(state, inventory, argv=["fanout", "run", "x"]) as lock:
        assert lock.path == lock_path_for(state, inventory)
        assert lock.path.parent == state / "locks"
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        info = json.loads(lock.path.read_text())
        assert info == {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": lock.started_at,
            "argv": ["fanout", "run", "x"],
            "inventory": str(inventory.resolve()),
        }
    assert lock.path.read_text() == ""  # released: truncated, not unlinked


def test_lock_is_per_inventory_path(tmp_path: Path, inventory: Path) -> None:
    """A relative path or a symlink names the same lock; another inventory has its own."""
    link = tmp_path / "link.yaml"
    link.symlink_to(inventory)
    other = tmp_path / "weekly.yaml"
    assert lock_path_for(tmp_path, link) == lock_path_for(tmp_path, inventory)
    assert lock_path_for(tmp_path, os.path.relpath(inventory)) == lock_path_for(tmp_path, inventory)
    assert lock_path_for(tmp_path, other) != lock_path_for(tmp_path, inventory)
    with acquire_run_lock(tmp_path, inventory), acquire_run_lock(tmp_path, other):
        pass  # two inventories run side by side


def test_second_acquire_in_same_process_is_refused(tmp_path: Path, inventory: Path) -> None:
    """flock is per open file: the same process cannot take the lock twice."""
    with acquire_run_lock(tmp_path, inventory) as lock:
        with pytest.raises(LockHeldError) as caught, acquire_run_lock(tmp_path, inventory):
            pass
        assert (caught.value.pid, caught.value.started_at) == (os.getpid(), lock.started_at)
    with acquire_run_lock(tmp_path, inventory):
        pass  # free again after the block


def test_lock_held_by_other_process_then_taken_over(tmp_path: Path, inventory: Path) -> None:
    """A live holder makes us raise LockHeldError naming it; once it is killed we take over."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(inventory)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        started_at = _read_line(proc)
        with pytest.raises(LockHeldError) as caught, acquire_run_lock(tmp_path, inventory):
            pass
        err = caught.value
        assert (err.pid, err.started_at) == (proc.pid, started_at)
        assert err.lock_path == str(lock_path_for(tmp_path, inventory))
        assert f"pid {proc.pid}" in str(err)
        assert started_at in str(err)

        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    path = lock_path_for(tmp_path, inventory)
    assert json.loads(path.read_text())["pid"] == proc.pid  # the dead holder's line is still there
    with acquire_run_lock(tmp_path, inventory) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_unreadable_holder_info_still_refuses(tmp_path: Path, inventory: Path) -> None:
    """A holder whose line is not JSON still blocks us; the error names no pid."""
    path = lock_path_for(tmp_path, inventory)
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"12345\n")  # a bare pid file from some other tool
        with (
            pytest.raises(LockHeldError, match="an unknown process") as caught,
            acquire_run_lock(tmp_path, inventory),
        ):
            pass
        assert (caught.value.pid, caught.value.started_at) == (None, None)
    finally:
        os.close(fd)
