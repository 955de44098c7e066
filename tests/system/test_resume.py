"""Run store, resume and locking end to end: the real CLI against the private sshd and the RMAN
double. What ran remotely is read from the double's invocation records, never from fanout."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

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
SIDS = ("R1", "R2", "R3", "R4")


def successes(oracle_home: Path) -> Counter[tuple[str, str]]:
    """How many times each (SID, step) ran to a successful end on the remote side."""
    return Counter(
        (r["sid"], r["step"])
        for r in read_invocations(oracle_home)
        if r["event"] == "end" and r["status"] == 0
    )


def show(home: Path, state: Path, run_id: str | None = None) -> dict[str, Any]:
    args = ["show", *([run_id] if run_id else []), "--json", "--state-dir", state]
    result = run_fanout(home, *args)
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def recorded_ok(state: Path) -> bool:
    """Whether the run store holds a step that ended ok (read-only, as another reader would)."""
    import sqlite3

    db = state / "fanout.db"
    if not db.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM steps WHERE status = 'ok'").fetchone()
    return bool(count)


def step_statuses(shown: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(h["name"], s["step"]): s["status"] for h in shown["hosts"] for s in h["steps"]}


def test_kill_9_then_resume_takes_every_backup_exactly_once(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """After kill -9 of fanout mid-run, --resume ends with every step of every host succeeded,
    each exactly once on the remote side (no duplicate full backups)."""
    configure_double(oracle_home, {"*": {"seconds": 1.5}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": s} for s in SIDS])
    state, home = tmp_path / "state", tmp_path / "home"
    with Background(
        fanout_argv("run", inventory, "--batch"), cwd=REPO, env=fanout_env(home)
    ) as run:
        # Kill once some steps have finished (and fanout has recorded one) and others run.
        wait_until(lambda: len(successes(oracle_home)) >= 4, 30, what="four finished steps")
        wait_until(lambda: recorded_ok(state), 30, what="a success in the run store")
        run.proc.kill()
        run.finish()
    first = show(home, state)
    assert first["run"]["outcome"] == "interrupted"
    assert "ok" in step_statuses(first).values()
    assert set(step_statuses(first).values()) != {"ok"}

    resumed = run_fanout(home, "run", inventory, "--batch", "--resume", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    second = show(home, state)
    assert second["run"]["resumed_from"] == first["run"]["run_id"]
    done = {k for k, v in step_statuses(first).items() if v == "ok"}
    done |= {k for k, v in step_statuses(second).items() if v == "ok"}
    assert done == {(sid.lower(), step) for sid in SIDS for step in STEPS}
    assert successes(oracle_home) == Counter({(sid, step): 1 for sid in SIDS for step in STEPS})
    assert not remote_processes(oracle_home)
    history = run_fanout(home, "history", "--state-dir", state)
    assert first["run"]["run_id"] in history.stdout
    assert second["run"]["run_id"] in history.stdout
    assert "interrupted" in history.stdout


def test_resume_after_a_failure_reruns_only_the_failed_step(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """--resume after an ordinary failure runs only the steps that failed."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "R2": {"full": {"behaviour": "fail"}}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": s} for s in SIDS[:2]])
    home = tmp_path / "home"
    assert run_fanout(home, "run", inventory, "--batch").returncode == 1
    before = len(read_invocations(oracle_home))
    configure_double(oracle_home, {"*": {"seconds": 0.2}})
    resumed = run_fanout(home, "run", inventory, "--batch", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rerun = [
        (r["sid"], r["step"])
        for r in read_invocations(oracle_home)[before:]
        if r["event"] == "start"
    ]
    assert rerun == [("R2", "full")]
    again = run_fanout(home, "run", inventory, "--batch", "--resume")
    assert again.returncode == 0
    assert "nothing to resume" in again.stderr


def test_second_run_of_an_inventory_exits_75_naming_the_holder(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """A second run of the same inventory while one runs exits 75 with one line naming its pid."""
    configure_double(oracle_home, {"*": {"seconds": 3}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "R1"}])
    home = tmp_path / "home"
    with Background(
        fanout_argv("run", inventory, "--batch"), cwd=REPO, env=fanout_env(home)
    ) as first:
        wait_until(lambda: read_invocations(oracle_home), 30, what="the first run's rman")
        second = run_fanout(home, "run", inventory, "--batch")
        assert second.returncode == 75
        assert second.stdout == ""
        (line,) = second.stderr.splitlines()
        assert f"pid {first.pid}, started " in line
        status, _, _ = first.finish(timeout=60)
        assert status == 0


def test_remote_lock_makes_another_inventorys_backup_fail_fast(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """Two inventories naming one database: the second backup fails at once with the holder."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "R1": {"full": {"seconds": 20}}})
    first_inv = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "R1"}], filename="a.yaml", steps=["full"]
    )
    (tmp_path / "other").mkdir()
    second_inv = write_inventory(
        tmp_path / "other", sshd, oracle_home, [{"sid": "R1"}], filename="b.yaml", steps=["full"]
    )
    home = tmp_path / "home"
    with Background(
        fanout_argv("run", first_inv, "--json"), cwd=REPO, env=fanout_env(home)
    ) as first:
        holder = wait_until(
            lambda: [r for r in read_invocations(oracle_home) if r["event"] == "start"],
            30,
            what="the first backup",
        )[0]
        started = time.monotonic()
        second = run_fanout(home, "run", second_inv, "--json")
        assert time.monotonic() - started < 10
        assert second.returncode == 1
        (finished,) = [
            json.loads(line)
            for line in second.stdout.splitlines()
            if json.loads(line)["event"] == "step_finished"
        ]
        assert finished["status"] == "failed"
        assert finished["cause"].startswith(
            f"another backup of R1 is running (pid {holder['pgid']}, started "
        )
        first.kill()


def _shell_waiting_to_adopt() -> bool:
    """A resumed step's remote shell is waiting for the original step (its command line holds
    the adoption preamble)."""
    ps = subprocess.run(
        ["ps", "-e", "-ww", "-o", "args"], capture_output=True, text=True, check=True
    )
    return any(
        "already completed in run" in line and "ps -e" not in line
        for line in ps.stdout.splitlines()
    )


def test_kill_9_of_a_waiting_resume_then_resume_again_takes_each_backup_once(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """kill -9 mid-run; --resume waits for the orphaned full; kill -9 that resume too; --resume
    again: the host's ledger covers the whole chain, so every step ends ok exactly once."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "R1": {"full": {"seconds": 4}}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "R1"}])
    home = tmp_path / "home"
    env = fanout_env(home)
    with Background(fanout_argv("run", inventory, "--batch"), cwd=REPO, env=env) as first:
        wait_until(lambda: read_invocations(oracle_home), 30, what="the first run's full")
        first.proc.kill()
        first.finish()
    with Background(
        fanout_argv("run", inventory, "--batch", "--resume"), cwd=REPO, env=env
    ) as waiting:
        wait_until(_shell_waiting_to_adopt, 30, what="the resume waiting for the old full")
        waiting.proc.kill()
        waiting.finish()
    wait_until(
        lambda: any(r["event"] == "end" for r in read_invocations(oracle_home)),
        30,
        what="the orphaned full's end",
    )
    wait_until(lambda: not _shell_waiting_to_adopt(), 10, what="the orphaned waiting shell's end")
    again = run_fanout(home, "run", inventory, "--batch", "--resume", timeout=90)
    assert again.returncode == 0, again.stdout + again.stderr
    assert successes(oracle_home) == Counter({("R1", step): 1 for step in STEPS})
    assert not remote_processes(oracle_home)
    ledger = (oracle_home / "fanout-R1.ledger").read_text().splitlines()
    assert [line.split()[1] for line in ledger if line.split()[2] == "0"] == list(STEPS), ledger
