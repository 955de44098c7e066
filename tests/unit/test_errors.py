"""Exit codes and expected failures: one ExitCode table (checked against the README), and every
failure a user can cause (an unusable state dir, a full disk, a corrupt run store) as one line
on stderr with its documented code, never a traceback."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout.errors import ExitCode, FanoutError, StateDirError, StoreError
from fanout.store import open_store

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """\
settings:
  state_dir: {state}
defaults:
  oracle_home: /u01/app/oracle
  port: 1
  connect_timeout: 2s
  connect_retries: 0
hosts:
  - {{name: a, address: 127.0.0.1, priority: 1, oracle_sid: A}}
"""


def readme_exit_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {
        int(m.group(1)): m.group(2).strip()
        for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)
    }


def test_readme_exit_code_table_is_the_enum() -> None:
    """The README's exit-code table lists exactly the codes of ExitCode, nothing else."""
    assert sorted(readme_exit_codes()) == sorted(int(code) for code in ExitCode)


def test_no_module_defines_its_own_exit_codes() -> None:
    """No module but errors.py spells 74/75/130/143 as an exit-code constant."""
    pattern = re.compile(r"^\s*EXIT_[A-Z]+\s*=\s*\d+", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "fanout").rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_error_tree_maps_to_documented_codes() -> None:
    """StoreError is a StateDirError (74); the base error is a usage error (2)."""
    assert issubclass(StoreError, StateDirError)
    assert StoreError("x").exit_code is ExitCode.IO_ERROR
    assert FanoutError("x").exit_code is ExitCode.USAGE


def fanout(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "fanout", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fanout: ")
    for needle in needles:
        assert needle in lines[0]


def write_inventory(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY.format(state=state))
    return path


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Write until the file system says ENOSPC."""
    with (directory / "filler").open("wb", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 4096)


def test_read_only_state_dir_is_one_line_exit_74(tmp_path: Path) -> None:
    """A read-only state dir: `run` prints one line naming it and exits 74, no traceback."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as state:
        result = fanout("run", write_inventory(tmp_path, state), "--batch")
    assert_one_line(result, ExitCode.IO_ERROR, str(state), "Read-only file system")


def test_a_file_where_the_state_dir_should_be_is_exit_74(tmp_path: Path) -> None:
    """A regular file as the state dir: one line, exit 74, for run, history and show."""
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    inventory = write_inventory(tmp_path, state)
    assert_one_line(fanout("run", inventory, "--batch"), ExitCode.IO_ERROR, str(state))
    assert_one_line(fanout("history", "--state-dir", state), ExitCode.IO_ERROR, str(state))
    assert_one_line(fanout("show", "--state-dir", state), ExitCode.IO_ERROR, str(state))


def test_locks_being_a_file_is_exit_74(tmp_path: Path) -> None:
    """``<state_dir>/locks`` a regular file: one line naming it, exit 74."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "locks").write_text("")
    result = fanout("run", write_inventory(tmp_path, state), "--batch")
    assert_one_line(result, ExitCode.IO_ERROR, str(state / "locks"), "Not a directory")


def test_full_file_system_under_the_state_dir_is_exit_74(tmp_path: Path) -> None:
    """A state dir on a full tmpfs (real ENOSPC): one line, exit 74, nothing started."""
    with tmpfs(tmp_path / "full", "size=256k") as state:
        fill(state)
        result = fanout("run", write_inventory(tmp_path, state), "--batch")
    assert_one_line(result, ExitCode.IO_ERROR, "No space left on device")
    assert result.stdout == ""


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real fanout.db holding one finished run (written by a real `run` that fails to connect)."""
    base = tmp_path_factory.mktemp("recorded")
    result = fanout("run", write_inventory(base, base / "state"), "--batch")
    assert result.returncode == ExitCode.FAILED, result.stderr
    return (base / "state" / "fanout.db").read_bytes()


def make_store_with_a_run(state: Path, recorded: bytes) -> Path:
    state.mkdir(parents=True)
    (state / "fanout.db").write_bytes(recorded)
    return state / "fanout.db"


def corrupt(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "garbage":
        db.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        db.write_bytes(data[:1000])
    elif how == "damaged pages":  # header intact, every later page scribbled over
        page = int.from_bytes(data[16:18], "big")
        db.write_bytes(data[:page] + bytes([0xA5]) * (len(data) - page))
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["garbage", "truncated", "damaged pages"])
def test_corrupt_store_history_and_show_are_one_line(
    tmp_path: Path, how: str, recorded_store: bytes
) -> None:
    """history and show on a corrupt fanout.db: one line naming it, exit 74, file left alone."""
    state = tmp_path / "state"
    db = make_store_with_a_run(state, recorded_store)
    corrupt(db, how)
    before = db.read_bytes()
    for command in ("history", "show"):
        result = fanout(command, "--state-dir", state)
        assert_one_line(result, ExitCode.IO_ERROR, str(db))
    assert db.read_bytes() == before


@pytest.mark.parametrize("how", ["garbage", "truncated", "damaged pages"])
def test_open_store_recover_moves_a_corrupt_store_aside(
    tmp_path: Path, how: str, recorded_store: bytes
) -> None:
    """open_store(recover=True) renames a corrupt db to fanout.db.corrupt-<time>, starts fresh."""
    state = tmp_path / "state"
    db = make_store_with_a_run(state, recorded_store)
    corrupt(db, how)
    damaged = db.read_bytes()
    with open_store(state, recover=True) as store:
        assert store.moved_aside is not None
        assert store.moved_aside.name.startswith("fanout.db.corrupt-")
        assert store.moved_aside.read_bytes() == damaged
        assert store.recent_runs() == []
    with open_store(tmp_path / "intact") as intact:
        pass
    (tmp_path / "intact" / "fanout.db").write_bytes(recorded_store)
    with open_store(tmp_path / "intact", recover=True) as intact:
        assert intact.moved_aside is None
        assert len(intact.recent_runs()) == 1
    with sqlite3.connect(db) as fresh:
        assert fresh.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_run_on_a_corrupt_store_proceeds_with_one_warning(
    tmp_path: Path, recorded_store: bytes
) -> None:
    """`run` on a garbage fanout.db: one warning line, the run is recorded in a fresh store."""
    state = tmp_path / "state"
    db = make_store_with_a_run(state, recorded_store)
    corrupt(db, "garbage")
    result = fanout("run", write_inventory(tmp_path, state), "--batch")
    assert result.returncode == ExitCode.FAILED  # the host is unreachable: a real outcome
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "corrupt" in line]
    assert len(warnings) == 1, result.stderr
    assert "fanout.db.corrupt-" in warnings[0]
    shown = fanout("history", "--state-dir", state)
    assert shown.returncode == 0, shown.stderr
    assert len([line for line in shown.stdout.splitlines() if "failed" in line]) == 1


def test_json_shows_an_exit_code_as_a_number() -> None:
    """run_finished carries the ExitCode the engine returns as a JSON number, not a string."""
    import io
    import json

    from fanout.events import CancelReason, RunFinished
    from fanout.ui.jsonl import JsonSink

    out = io.StringIO()
    JsonSink(out).emit(RunFinished("r1", ExitCode.CANCELLED, CancelReason.SIGINT, 1.0, 0.0))
    assert json.loads(out.getvalue())["exit_code"] == 130


def test_history_into_a_closed_pipe_is_quiet_and_exits_0(tmp_path: Path) -> None:
    """`fanout history | head -0`: the reader is gone before fanout writes; exit 0, no stderr."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["PYTHONPATH"] = str(REPO)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "fanout", "history", "--state-dir", str(tmp_path / "state")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
            cwd=REPO,
            env=env,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")
