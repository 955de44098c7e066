"""Promises under local faults, end to end with the real CLI, the private sshd and the RMAN double:
a run store that fills up mid-run starts no unrecorded backup, remote escape sequences never
reach the terminal raw, a closed stdout changes no outcome, kill -9 leaves complete step logs."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout.logs import step_sections
from tests.system.sshd import (
    REPO,
    Background,
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    read_invocations,
    remote_processes,
    run_fanout,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.system

STEPS = ("full", "archivelog", "controlfile")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system says ENOSPC; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 4096)
    return filler


def remote_starts(oracle_home: Path) -> list[tuple[str, str]]:
    return [(r["sid"], r["step"]) for r in read_invocations(oracle_home) if r["event"] == "start"]


def successes(oracle_home: Path) -> Counter[tuple[str, str]]:
    return Counter(
        (r["sid"], r["step"])
        for r in read_invocations(oracle_home)
        if r["event"] == "end" and r["status"] == 0
    )


def show_json(home: Path, state: Path, *args: str) -> dict[str, object]:
    result = run_fanout(home, "show", *args, "--json", "--state-dir", state)
    assert result.returncode == 0, result.stderr
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_store_full_mid_run_starts_nothing_unrecorded_and_resume_takes_nothing_twice(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """State dir on a tiny tmpfs filled mid-run (real ENOSPC): every backup that ran on a host
    had its start recorded, none starts after the store fails, exit 74 with one line saying
    why; --resume afterwards (space freed) takes no successful backup a second time."""
    sids = ("F1", "F2", "F3")
    configure_double(oracle_home, {"*": {"seconds": 0.6}})
    home = tmp_path / "home"
    with tmpfs(tmp_path / "state", "2m") as state:
        inventory = write_inventory(
            tmp_path, sshd, oracle_home, [{"sid": s} for s in sids], {"max_parallel": 1}
        )
        with Background(
            fanout_argv("run", inventory, "--batch"), cwd=REPO, env=fanout_env(home)
        ) as run:
            wait_until(lambda: successes(oracle_home), 30, what="a first finished backup")
            filler = fill(state)
            status, stdout, stderr = run.finish(timeout=60)
        assert status == 74, stdout + stderr
        assert "Traceback" not in stderr
        stopped = [line for line in stderr.splitlines() if "run stopped" in line]
        assert len(stopped) == 1, stderr
        assert "No space left" in stopped[0] or "full" in stopped[0]
        assert not remote_processes(oracle_home)
        filler.unlink()
        first = show_json(home, state)
        recorded = {
            (h["name"].upper(), s["step"])  # type: ignore[index]
            for h in first["hosts"]  # type: ignore[attr-defined]
            for s in h["steps"]
            if s["status"] != "pending"
        }
        assert set(remote_starts(oracle_home)) <= recorded  # nothing ran unrecorded
        assert len(remote_starts(oracle_home)) < len(sids) * len(STEPS)  # it did stop early

        resumed = run_fanout(home, "run", inventory, "--batch", "--resume", timeout=90)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    assert not remote_processes(oracle_home)


ESCAPES = r"printf 'title\033]0;pwned\007 then \033[2Jclear\n'"


def test_remote_escape_sequences_are_escaped_on_screen_and_raw_in_the_log(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """A step printing ESC]0;…BEL and ESC[2J (stdout and its stderr cause): batch output and
    `show` carry them escaped (no ESC or BEL byte), the step log keeps the exact bytes."""
    evil = {"shell": f"{ESCAPES}; {ESCAPES} >&2; exit 3"}
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "E1", "steps": ["evil"]}], step_defs={"evil": evil}
    )
    home, state = tmp_path / "home", tmp_path / "state"
    result = run_fanout(home, "run", inventory, "--batch")
    assert result.returncode == 1, result.stdout + result.stderr
    visible = r"title\x1b]0;pwned\x07 then \x1b[2Jclear"
    brief = run_fanout(home, "show", "--state-dir", state).stdout
    full = run_fanout(home, "show", "--all", "--state-dir", state).stdout
    for text in (result.stdout, full):
        assert visible in text
    for text in (result.stdout, full, brief):
        assert "\x1b" not in text
        assert "\x07" not in text
    (log,) = (state / "logs").glob("*/e1.log")
    raw = log.read_bytes()
    assert b"title\x1b]0;pwned\x07 then \x1b[2Jclear\n" in raw
    assert b"[stderr] title\x1b]0;pwned\x07 then \x1b[2Jclear\n" in raw


def test_closed_stdout_changes_no_outcome(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """`fanout run … | head -1` (a real pipe closed after one line): the run goes on, every
    backup runs and is recorded, and fanout exits 0 with one line on stderr, no traceback."""
    sids = ("P1", "P2")
    configure_double(oracle_home, {"*": {"seconds": 0.3}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": s} for s in sids])
    home, state = tmp_path / "home", tmp_path / "state"
    proc = subprocess.Popen(
        fanout_argv("run", inventory, "--batch"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=fanout_env(home),
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does after its line
        status = proc.wait(60)
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert b"started" in first
    assert status == 0, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert "stdout was closed" in line
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    shown = show_json(home, state)
    assert shown["run"]["outcome"] == "ok"  # type: ignore[index]
    assert shown["run"]["exit_code"] == 0  # type: ignore[index]


def test_step_log_is_on_disk_within_a_second_and_survives_kill_9(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """rman prints and then stalls: its output reaches the step log within ~1 s without any
    further output or step boundary, and kill -9 of fanout leaves it complete."""
    configure_double(oracle_home, {"*": {"behaviour": "hang"}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "K1"}], steps=["full"])
    home, state = tmp_path / "home", tmp_path / "state"
    with Background(
        fanout_argv("run", inventory, "--batch"), cwd=REPO, env=fanout_env(home)
    ) as run:
        wait_until(lambda: remote_starts(oracle_home), 30, what="rman started")
        log = wait_until(
            lambda: next(iter((state / "logs").glob("*/k1.log")), None), 10, what="log"
        )
        wait_until(lambda: b"starting piece 1" in log.read_bytes(), 5, what="output flushed")
        run.proc.kill()
        run.finish()
    (text,) = step_sections(log.read_text(), "k1", "full")
    assert text.startswith("===== k1 full attempt 1 =====")
    assert "starting piece 1" in text
    assert "Recovery Manager" in text
