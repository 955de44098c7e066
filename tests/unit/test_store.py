"""Run store: events become committed rows, migrations, resume plans, history and show text."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import pytest

import fanout
from fanout.errors import UsageError
from fanout.events import (
    CancelReason,
    CancelRequested,
    ConnectFailed,
    Event,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
    Stream,
)
from fanout.paths import step_log_path
from fanout.store import (
    MIGRATIONS,
    HostRecord,
    ResumeStep,
    RunDetail,
    RunSummary,
    StepRecord,
    Store,
    StoreError,
    open_store,
)
from fanout.ui.history import history_json, render_history, render_show, show_json

INVENTORY = "/etc/fanout/nightly.yaml"
T0 = 1_755_653_400.0  # 2025-08-20 01:30:00 UTC
REPO = Path(fanout.__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path) as s:
        yield s


def _plan(run: str = "r1") -> RunStarted:
    return RunStarted(
        run,
        INVENTORY,
        (
            PlannedHost("db01", 1, "PROD1", "10.0.0.1", ("full", "archivelog")),
            PlannedHost("db02", 1, "PROD2", "10.0.0.2", ("full", "archivelog")),
            PlannedHost("db03", 2, "TEST1", "10.0.0.3", ("full",)),
        ),
        max_parallel=2,
        at=T0,
    )


def _step(
    run: str,
    host: str,
    step: str,
    status: StepStatus,
    at: float,
    *,
    attempt: int = 1,
    exit_status: int | None = None,
    cause: str | None = None,
    will_retry: bool = False,
) -> StepFinished:
    if exit_status is None and status is StepStatus.OK:
        exit_status = 0
    return StepFinished(run, host, step, attempt, status, exit_status, cause, 1.0, will_retry, at)


def _night(run: str = "r1", exit_code: int = 1) -> list[Event]:
    """db01 ok; db02 full fails twice, archivelog skipped; db03 never started."""
    ora = "ORA-19809: limit exceeded for recovery files"
    return [
        _plan(run),
        HostStarted(run, "db01", T0 + 1),
        HostConnected(run, "db01", 1, T0 + 2),
        StepStarted(run, "db01", "full", 1, "rman target /", T0 + 2),
        StepOutput(run, "db01", "full", Stream.STDOUT, ("Starting backup at 20-AUG-25",), T0 + 3),
        _step(run, "db01", "full", StepStatus.OK, T0 + 600),
        StepStarted(run, "db01", "archivelog", 1, "rman target /", T0 + 600),
        _step(run, "db01", "archivelog", StepStatus.OK, T0 + 725),
        HostFinished(run, "db01", HostStatus.OK, None, 724.0, None, T0 + 725),
        HostStarted(run, "db02", T0 + 1),
        ConnectFailed(run, "db02", 1, "connection refused", True, T0 + 2),
        StepStarted(run, "db02", "full", 1, "rman target /", T0 + 10),
        _step(
            run,
            "db02",
            "full",
            StepStatus.FAILED,
            T0 + 60,
            exit_status=1,
            cause=ora,
            will_retry=True,
        ),
        StepStarted(run, "db02", "full", 2, "rman target /", T0 + 70),
        _step(
            run, "db02", "full", StepStatus.FAILED, T0 + 250, attempt=2, exit_status=1, cause=ora
        ),
        _step(run, "db02", "archivelog", StepStatus.SKIPPED, T0 + 250, attempt=0),
        HostFinished(run, "db02", HostStatus.FAILED, ora, 249.0, None, T0 + 250),
        CancelRequested(run, CancelReason.SIGTERM, False, T0 + 800),
        HostFinished(run, "db03", HostStatus.NOT_STARTED, None, 0.0, None, T0 + 800),
        RunFinished(run, exit_code, None, 800.0, T0 + 800),
    ]


def replace_at(event: Event, shift: float) -> Event:
    """The same event ``shift`` seconds later."""
    return replace(event, at=event.at + shift)


def _emit_all(store: Store, events: list[Event]) -> None:
    for event in events:
        store.emit(event)


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


# ---- events -> rows ---------------------------------------------------------------------------


def _log(store: Store, host: str, step: str) -> str:
    return str(step_log_path(store.path.parent, "r1", host, step))


def test_events_become_rows(store: Store) -> None:
    """A hand-built night lands in runs, hosts and steps exactly as the events say."""
    meta = RunMeta("ab" * 32, ("fanout", "run", INVENTORY))
    _emit_all(store, [replace(e, meta=meta) if isinstance(e, RunStarted) else e for e in _night()])
    detail = store.run_detail("r1")
    assert detail is not None
    run = detail.run
    assert (run.inventory_path, run.inventory_sha256, run.argv) == (
        INVENTORY,
        "ab" * 32,
        ("fanout", "run", INVENTORY),
    )
    assert (run.started_at, run.ended_at, run.outcome, run.exit_code) == (T0, T0 + 800, "failed", 1)
    assert (run.pid, run.hostname) == (os.getpid(), socket.gethostname())
    assert [(h.name, h.position, h.status, h.started_at, h.ended_at) for h in detail.hosts] == [
        ("db01", 0, "ok", T0 + 1, T0 + 725),
        ("db02", 1, "failed", T0 + 1, T0 + 250),
        ("db03", 2, "not started", None, T0 + 800),
    ]
    db02 = detail.hosts[1]
    assert db02.cause == "ORA-19809: limit exceeded for recovery files"
    assert db02.steps == (
        StepRecord(
            "full", 0, "failed", 2, T0 + 70, T0 + 250, 1, db02.cause, _log(store, "db02", "full")
        ),
        StepRecord("archivelog", 1, "skipped", 0, None, T0 + 250, None, None, None),
    )
    assert [(s.step, s.status, s.log_path) for s in detail.hosts[0].steps] == [
        ("full", "ok", _log(store, "db01", "full")),
        ("archivelog", "ok", _log(store, "db01", "archivelog")),
    ]
    assert detail.hosts[2].steps == (StepRecord("full", 0, "pending", 0, *[None] * 5),)
    assert store.write_error is None


def test_step_rows_are_committed_before_emit_returns(store: Store) -> None:
    """Each state change is visible at once to a separate connection: pending, running, final."""
    reader = sqlite3.connect(store.path)

    def status() -> tuple[str, int]:
        row: tuple[str, int] = reader.execute(
            "SELECT status, attempt FROM steps WHERE host = 'db02' AND step = 'full'"
        ).fetchone()
        return row

    store.emit(_plan())
    assert status() == ("pending", 0)
    store.emit(StepStarted("r1", "db02", "full", 1, "rman", T0 + 10))
    assert status() == ("running", 1)
    store.emit(_step("r1", "db02", "full", StepStatus.FAILED, T0 + 60, will_retry=True))
    assert status() == ("pending", 1)
    store.emit(StepStarted("r1", "db02", "full", 2, "rman", T0 + 70))
    assert status() == ("running", 2)
    store.emit(_step("r1", "db02", "full", StepStatus.FAILED, T0 + 250, attempt=2))
    assert status() == ("failed", 2)
    store.emit(RunFinished("r1", 1, None, 300.0, T0 + 300))
    assert reader.execute("SELECT outcome, exit_code FROM runs").fetchone() == ("failed", 1)
    reader.close()


def test_output_and_stateless_events_write_nothing(store: Store) -> None:
    """StepOutput, HostConnected, ConnectFailed and CancelRequested commit no transaction."""
    reader = sqlite3.connect(store.path)
    store.emit(_plan())
    version = reader.execute("PRAGMA data_version").fetchone()
    for i in range(1000):
        store.emit(StepOutput("r1", "db01", "full", Stream.STDERR, (f"line {i}",), T0))
    store.emit(HostConnected("r1", "db01", 1, T0))
    store.emit(ConnectFailed("r1", "db01", 1, "refused", True, T0))
    store.emit(CancelRequested("r1", CancelReason.OPERATOR, False, T0))
    assert reader.execute("PRAGMA data_version").fetchone() == version
    store.emit(StepStarted("r1", "db01", "full", 1, "rman", T0))
    assert reader.execute("PRAGMA data_version").fetchone() != version
    reader.close()


def test_host_marks_are_committed_with_the_next_change(store: Store) -> None:
    """HostStarted/HostFinished wait for the next commit (one transaction with it), or for
    flush(); a step change never waits."""
    reader = sqlite3.connect(store.path)
    store.emit(_plan())

    def seen() -> list[tuple[str, str, str | None]]:
        rows = reader.execute("SELECT name, status, started_at FROM hosts ORDER BY name")
        steps = reader.execute("SELECT host, status FROM steps WHERE status != 'pending'")
        return [*rows.fetchall(), *steps.fetchall()]

    before = seen()
    store.emit(HostStarted("r1", "db01", T0 + 1))
    store.emit(HostStarted("r1", "db02", T0 + 1))
    assert seen() == before  # staged
    store.emit(StepStarted("r1", "db01", "full", 1, "rman", T0 + 2))
    assert seen() == [
        ("db01", "running", T0 + 1),
        ("db02", "running", T0 + 1),
        ("db03", "pending", None),
        ("db01", "running"),
    ]
    store.emit(HostFinished("r1", "db02", HostStatus.FAILED, "refused", 1.0, None, T0 + 3))
    assert seen()[1] == ("db02", "running", T0 + 1)
    store.flush()
    assert seen()[1] == ("db02", "failed", T0 + 1)
    store.flush()  # nothing staged: no transaction
    reader.close()


def test_events_handed_over_together_are_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """emit_together: a step's end, output and the next start commit once, with any staged
    mark, before it returns (a separate connection sees all of them)."""
    reader = sqlite3.connect(store.path)
    store.emit(_plan())
    store.emit(StepStarted("r1", "db01", "full", 1, "rman", T0 + 1))
    store.emit(HostFinished("r1", "db02", HostStatus.FAILED, "refused", 1.0, None, T0 + 2))
    commits: list[int] = []
    commit = store._commit
    monkeypatch.setattr(store, "_commit", lambda stmts: (commits.append(len(stmts)), commit(stmts)))
    store.emit_together(
        [
            _step("r1", "db01", "full", StepStatus.OK, T0 + 60),
            StepOutput("r1", "db01", "full", Stream.STDOUT, ("Recovery Manager complete.",), T0),
            StepStarted("r1", "db01", "archivelog", 1, "rman", T0 + 60),
        ]
    )
    assert commits == [4]  # the host mark, the step's end and its backup, the next start
    steps = reader.execute("SELECT step, status FROM steps WHERE host = 'db01' ORDER BY position")
    assert steps.fetchall() == [("full", "ok"), ("archivelog", "running")]
    assert reader.execute("SELECT status FROM hosts WHERE name = 'db02'").fetchone() == ("failed",)
    assert reader.execute("SELECT last_status FROM backups").fetchall() == [("ok",)]
    reader.close()


def test_a_refused_hand_over_names_its_events(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.emit(_plan())
        store.emit(StepStarted("r1", "db01", "full", 1, "rman", T0 + 1))
        store._db.execute("PRAGMA query_only = ON")
        store.emit_together(
            [
                _step("r1", "db01", "full", StepStatus.OK, T0 + 60),
                StepStarted("r1", "db01", "archivelog", 1, "rman", T0 + 60),
            ]
        )
        assert "r1: StepFinished and StepStarted not recorded" in str(store.write_error)
        store._db.execute("PRAGMA query_only = OFF")
        full = store.run_detail("r1").hosts[0].steps[0]  # type: ignore[union-attr]
        assert (full.step, full.status) == ("full", "running")  # rolled back, both


def test_staged_host_marks_are_committed_on_leaving(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.emit(_plan())
        store.emit(HostStarted("r1", "db01", T0 + 1))
    reader = sqlite3.connect(tmp_path / "fanout.db")
    assert reader.execute("SELECT status FROM hosts WHERE name = 'db01'").fetchone() == ("running",)
    reader.close()


def test_a_staged_mark_that_fails_is_reported_as_its_own(tmp_path: Path) -> None:
    """flush() of a mark the database rejects: write_error names the staged event."""
    reported: list[StoreError] = []
    with open_store(tmp_path, on_write_error=reported.append) as store:
        store.emit(_plan())
        refuse = "CREATE TRIGGER no BEFORE UPDATE ON hosts BEGIN SELECT RAISE(ABORT, 'no'); END"
        store._db.execute(refuse)
        store.emit(HostStarted("r1", "db01", T0 + 1))
        store.flush()
        assert "r1: HostStarted not recorded" in str(store.write_error)
        assert reported == [store.write_error]


@pytest.mark.parametrize(
    ("exit_code", "outcome"), [(0, "ok"), (1, "failed"), (130, "cancelled"), (143, "cancelled")]
)
def test_outcome_agrees_with_exit_code(store: Store, exit_code: int, outcome: str) -> None:
    """A finished run's outcome is derived from RunFinished.exit_code alone."""
    store.emit(_plan())
    store.emit(RunFinished("r1", exit_code, None, 1.0, T0 + 1))
    run = store.latest_run()
    assert run is not None
    assert (run.outcome, run.exit_code) == (outcome, exit_code)


def test_database_error_is_kept_not_raised(tmp_path: Path) -> None:
    """A rejected event is rolled back, kept in write_error and reported once; later ones land."""
    reported: list[StoreError] = []
    with open_store(tmp_path, on_write_error=reported.append) as store:
        store.emit(StepStarted("nope", "ghost", "full", 1, "rman", T0))  # no such run or host
        store.emit(StepStarted("nope", "ghost", "arch", 1, "rman", T0))
        assert isinstance(store.write_error, StoreError)
        assert isinstance(store.write_error.__cause__, sqlite3.IntegrityError)
        assert "StepStarted not recorded" in str(store.write_error)
        assert reported == [store.write_error]
        store.emit(_plan())
        assert store.latest_run() is not None


def test_sigkill_loses_no_committed_step(tmp_path: Path) -> None:
    """kill -9 of the writer mid-run: finished steps stay, the run shows interrupted."""
    child = textwrap.dedent(f"""
        import sys, time
        from fanout.events import *
        from fanout.store import open_store
        with open_store(sys.argv[1]) as store:
            store.emit(RunStarted("r1", {INVENTORY!r},
                (PlannedHost("db01", 1, "P1", "h1", ("full", "archivelog", "controlfile")),),
                1, 1.0))
            store.emit(HostStarted("r1", "db01", 2.0))
            store.emit(StepStarted("r1", "db01", "full", 1, "rman", 3.0))
            store.emit(StepFinished("r1", "db01", "full", 1, StepStatus.OK, 0, None, 1, False, 4.0))
            store.emit(StepStarted("r1", "db01", "archivelog", 1, "rman", 5.0))
            print("committed", flush=True)
            time.sleep(30)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert _read_line(proc) == "committed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    with open_store(tmp_path) as store:
        detail = store.run_detail("r1")
        assert detail is not None
        assert [(s.step, s.status) for s in detail.hosts[0].steps] == [
            ("full", "ok"),
            ("archivelog", "running"),
            ("controlfile", "pending"),
        ]
        assert detail.run.outcome == "interrupted"
        plan = store.resume_plan("r1")
        assert [(s.step, s.possibly_running) for s in plan["db01"]] == [
            ("archivelog", True),
            ("controlfile", False),
        ]


# ---- schema -----------------------------------------------------------------------------------

V1_DDL = (
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY, inventory_path TEXT NOT NULL, inventory_sha256 TEXT,
        argv TEXT NOT NULL DEFAULT '[]', started_at REAL NOT NULL, ended_at REAL,
        outcome TEXT NOT NULL DEFAULT 'running', exit_code INTEGER, resumed_from TEXT,
        pid INTEGER, hostname TEXT)""",
    """CREATE TABLE hosts (
        run_id TEXT NOT NULL REFERENCES runs (id), name TEXT NOT NULL,
        priority INTEGER NOT NULL, address TEXT NOT NULL, oracle_sid TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', cause TEXT, started_at REAL, ended_at REAL,
        PRIMARY KEY (run_id, name))""",
    """CREATE TABLE steps (
        run_id TEXT NOT NULL, host TEXT NOT NULL, step TEXT NOT NULL, position INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,
        started_at REAL, ended_at REAL, exit_status INTEGER, cause TEXT, log_path TEXT,
        PRIMARY KEY (run_id, host, step),
        FOREIGN KEY (run_id, host) REFERENCES hosts (run_id, name))""",
)


def test_new_database_is_wal_at_current_version(store: Store) -> None:
    """A fresh store is in WAL mode at the newest schema version."""
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    db.close()


def test_v1_database_migrates_keeping_rows(tmp_path: Path) -> None:
    """A v1 file built by hand opens at v2 with every row kept and dispatch order backfilled."""
    db = sqlite3.connect(tmp_path / "fanout.db")
    for ddl in V1_DDL:
        db.execute(ddl)
    db.execute(
        "INSERT INTO runs VALUES ('old', ?, 'cd', '[\"fanout\"]', ?, ?, 'ok', 0, NULL, 1, 'x')",
        (INVENTORY, T0, T0 + 60),
    )
    for name in ("db09", "db01"):  # dispatch order, not name order
        db.execute(
            "INSERT INTO hosts VALUES ('old', ?, 1, 'a', 'S', 'ok', NULL, ?, ?)", (name, T0, T0 + 9)
        )
        db.execute(
            "INSERT INTO steps VALUES ('old', ?, 'full', 0, 'ok', 1, ?, ?, 0, NULL, '/l')",
            (name, T0, T0 + 9),
        )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    with open_store(tmp_path) as store:
        detail = store.run_detail("old")
        assert detail is not None
        assert (detail.run.outcome, detail.run.exit_code, detail.run.argv) == ("ok", 0, ("fanout",))
        assert [(h.name, h.position, h.status) for h in detail.hosts] == [
            ("db09", 0, "ok"),
            ("db01", 1, "ok"),
        ]
        assert [s.log_path for h in detail.hosts for s in h.steps] == ["/l", "/l"]
    db = sqlite3.connect(tmp_path / "fanout.db")
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'runs_by_inventory'").fetchone()
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer fanout raises StoreError instead of being touched."""
    db = sqlite3.connect(tmp_path / "fanout.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"), open_store(tmp_path):
        pass


# ---- queries ----------------------------------------------------------------------------------


def test_resume_plan_lists_every_step_not_ok(store: Store) -> None:
    """failed/cancelled/skipped/pending/running steps and never-started hosts; ok ones left out."""
    run = "r1"
    store.emit(
        RunStarted(
            run,
            INVENTORY,
            (
                PlannedHost("a", 1, "A", "a", ("full", "archivelog")),
                PlannedHost("b", 1, "B", "b", ("full", "archivelog", "controlfile")),
                PlannedHost("c", 1, "C", "c", ("full", "archivelog")),
                PlannedHost("d", 2, "D", "d", ("full",)),
            ),
            3,
            T0,
        )
    )
    events: list[Event] = [
        StepStarted(run, "a", "full", 1, "x", T0),
        _step(run, "a", "full", StepStatus.OK, T0),
        StepStarted(run, "a", "archivelog", 1, "x", T0),
        _step(run, "a", "archivelog", StepStatus.OK, T0),
        StepStarted(run, "b", "full", 1, "x", T0),
        _step(run, "b", "full", StepStatus.OK, T0),
        StepStarted(run, "b", "archivelog", 1, "x", T0),
        _step(run, "b", "archivelog", StepStatus.FAILED, T0, cause="ORA-1"),
        _step(run, "b", "controlfile", StepStatus.SKIPPED, T0, attempt=0),
        StepStarted(run, "c", "full", 1, "x", T0),
        _step(run, "c", "full", StepStatus.CANCELLED, T0),
        StepStarted(run, "c", "archivelog", 1, "x", T0 + 5),
    ]
    _emit_all(store, events)
    plan = store.resume_plan(run)
    assert plan == {
        "b": (
            ResumeStep("archivelog", "failed", 1, "ORA-1", T0),
            ResumeStep("controlfile", "skipped", 0, None, None),
        ),
        "c": (
            ResumeStep("full", "cancelled", 1, None, T0),
            ResumeStep("archivelog", "running", 1, None, T0 + 5),
        ),
        "d": (ResumeStep("full", "pending", 0, None, None),),
    }
    assert list(plan) == ["b", "c", "d"]
    assert [s.possibly_running for s in plan["c"]] == [False, True]
    with pytest.raises(UsageError, match="no run 'zz'"):
        store.resume_plan("zz")


def test_recent_runs_counts_newest_first(store: Store) -> None:
    """recent_runs: newest first, filtered by inventory, with host and step counts by status."""
    _emit_all(store, _night("r1"))
    _emit_all(store, [replace_at(e, 86400) for e in _night("r2", exit_code=0)])
    other = RunStarted("r3", "/etc/fanout/other.yaml", (), 1, T0 + 2 * 86400)
    store.emit(other)
    assert [r.run_id for r in store.recent_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in store.recent_runs(INVENTORY)] == ["r2", "r1"]
    assert [r.run_id for r in store.recent_runs(limit=1)] == ["r3"]
    r1 = store.recent_runs(INVENTORY)[1]
    assert r1.host_counts == {"ok": 1, "failed": 1, "not started": 1}
    assert r1.step_counts == {"ok": 2, "failed": 1, "skipped": 1, "pending": 1}
    latest = store.latest_run(INVENTORY)
    assert latest is not None
    assert latest.run_id == "r2"
    assert store.latest_run("/nowhere.yaml") is None


def test_latest_unfinished_run_is_superseded_by_success(store: Store) -> None:
    """The newest run is offered for resume only if it did not succeed."""
    assert store.latest_unfinished_run(INVENTORY) is None
    _emit_all(store, _night("r1", exit_code=1))
    unfinished = store.latest_unfinished_run(INVENTORY)
    assert unfinished is not None
    assert unfinished.run_id == "r1"
    _emit_all(store, [replace_at(e, 86400) for e in _night("r2", exit_code=0)])
    assert store.latest_unfinished_run(INVENTORY) is None


def test_dead_orchestrator_shows_interrupted(store: Store) -> None:
    """A run with no end reads 'interrupted' once its pid is gone here; 'running' while alive."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=10)
    now = time.time()
    rows = [
        ("alive", now, os.getpid(), socket.gethostname()),
        ("dead", now - 10, dead.pid, socket.gethostname()),
        ("elsewhere", now - 20, dead.pid, "another-machine"),
        ("reused", T0, os.getpid(), socket.gethostname()),  # this pid started after that run
    ]
    db = sqlite3.connect(store.path)
    db.executemany(
        "INSERT INTO runs (id, inventory_path, started_at, pid, hostname) VALUES (?, ?, ?, ?, ?)",
        [(run_id, INVENTORY, at, pid, host) for run_id, at, pid, host in rows],
    )
    db.commit()
    db.close()
    outcomes = {r.run_id: r.outcome for r in store.recent_runs()}
    assert outcomes == {
        "alive": "running",
        "dead": "interrupted",
        "elsewhere": "running",
        "reused": "interrupted",
    }


# ---- history / show rendering -----------------------------------------------------------------


def _summary(run_id: str, started: float, **kw: object) -> RunSummary:
    fields: dict[str, object] = {
        "run_id": run_id,
        "inventory_path": INVENTORY,
        "inventory_sha256": "ab" * 32,
        "argv": ("fanout", "run", INVENTORY),
        "started_at": started,
        "ended_at": started + 3725,
        "outcome": "failed",
        "exit_code": 1,
        "resumed_from": None,
        "pid": 4242,
        "hostname": "backup01",
        "host_counts": {"ok": 12, "failed": 1},
        "step_counts": {"ok": 30, "failed": 1, "skipped": 2},
    }
    fields.update(kw)
    return RunSummary(**fields)  # type: ignore[arg-type]


RUNS = [
    _summary(
        "20250821-0130",
        T0 + 86400,
        ended_at=None,
        outcome="interrupted",
        exit_code=None,
        host_counts={"ok": 3, "running": 1, "pending": 9},
    ),
    _summary("20250820-0130", T0, inventory_path="/srv/very/long/path/to/inventories/prod.yaml"),
    _summary(
        "20250819-0130",
        T0 - 86400,
        outcome="cancelled",
        exit_code=130,
        ended_at=T0 - 86355,
        host_counts={"ok": 2, "cancelled": 3, "not started": 8},
    ),
]

HISTORY_TEXT = """\
inventory /etc/fanout/nightly.yaml
RUN            STARTED          DURATION  OUTCOME     OK FAIL CANC EXIT
20250821-0130  2025-08-21 01:30        -  interrupted  3    0    0    -
20250819-0130  2025-08-19 01:30      45s  cancelled    2    0    3  130

inventory /srv/very/long/path/to/inventories/prod.yaml
RUN            STARTED          DURATION  OUTCOME     OK FAIL CANC EXIT
20250820-0130  2025-08-20 01:30     1h2m  failed      12    1    0    1
"""


def test_history_text_is_aligned_at_80_columns() -> None:
    """history: aligned lines within 80 columns, grouped by inventory, newest group first."""
    text = render_history(RUNS, now=T0 + 90000, tz=UTC)
    assert text == HISTORY_TEXT
    assert max(map(len, text.splitlines())) <= 80
    assert render_history([], now=T0) == "no runs recorded\n"


DETAIL = RunDetail(
    _summary(
        "20250820-0130",
        T0,
        resumed_from="20250819-0130",
        host_counts={"ok": 1, "failed": 1, "not started": 1},
    ),
    (
        HostRecord(
            "db01",
            0,
            1,
            "10.0.0.1",
            "PROD1",
            "ok",
            None,
            T0,
            T0 + 725,
            (
                StepRecord("full", 0, "ok", 1, T0 + 1, T0 + 600, 0, None, "/logs/db01.log"),
                StepRecord("archivelog", 1, "ok", 1, T0 + 600, T0 + 725, 0, None, None),
            ),
        ),
        HostRecord(
            "db02",
            1,
            1,
            "10.0.0.2",
            "PROD2",
            "failed",
            "ssh: connection refused",
            T0,
            T0 + 31,
            (StepRecord("full", 0, "skipped", 0, None, T0 + 31, *[None] * 3),),
        ),
        HostRecord(
            "db03-standby",
            2,
            2,
            "10.0.0.3",
            "STBY",
            "failed",
            "ORA-19809: limit",
            T0,
            T0 + 250,
            (
                StepRecord(
                    "full",
                    0,
                    "failed",
                    2,
                    T0 + 70,
                    T0 + 250,
                    1,
                    "ORA-19809: limit",
                    "/logs/db03.log",
                ),
            ),
        ),
    ),
)

SHOW_TEXT = """\
run        20250820-0130
outcome    failed (exit 1)
inventory  /etc/fanout/nightly.yaml
sha256     abababababababababababababababababababababababababababababababab
command    fanout run /etc/fanout/nightly.yaml
started    2025-08-20 01:30:00
ended      2025-08-20 02:32:05
duration   1h2m
resumed    from 20250819-0130
by         pid 4242 on backup01
hosts      1 ok, 1 failed, 1 not started

HOST / STEP   STATUS   DURATION
db01          ok          12m5s
  full        ok          9m59s
      log: /logs/db01.log
  archivelog  ok           2m5s
db02          failed        31s
      ssh: connection refused
  full        skipped         -
db03-standby  failed      4m10s
  full        failed         3m  attempt 2, exit 1
      ORA-19809: limit
      log: /logs/db03.log
"""


def test_show_text_lists_hosts_and_steps() -> None:
    """show: header block, then hosts and steps with status, duration, cause and log path."""
    text = render_show(DETAIL, now=T0 + 9999, tz=UTC)
    assert text == SHOW_TEXT
    assert max(map(len, text.splitlines())) <= 80


def test_json_shapes() -> None:
    """history --json and show --json: ISO UTC times, seconds, counts, nested hosts and steps."""
    [first, second, _] = history_json(RUNS, now=T0 + 90000)
    assert second == {
        "run_id": "20250820-0130",
        "inventory": "/srv/very/long/path/to/inventories/prod.yaml",
        "inventory_sha256": "ab" * 32,
        "argv": ["fanout", "run", INVENTORY],
        "started_at": "2025-08-20T01:30:00+00:00",
        "ended_at": "2025-08-20T02:32:05+00:00",
        "duration_seconds": 3725.0,
        "outcome": "failed",
        "exit_code": 1,
        "resumed_from": None,
        "pid": 4242,
        "hostname": "backup01",
        "host_counts": {"ok": 12, "failed": 1},
        "step_counts": {"ok": 30, "failed": 1, "skipped": 2},
    }
    assert (first["outcome"], first["ended_at"], first["duration_seconds"]) == (
        "interrupted",
        None,
        None,
    )
    shown = show_json(DETAIL, now=T0)
    assert set(shown) == {"run", "hosts", "may_still_be_running"}
    hosts = shown["hosts"]
    assert isinstance(hosts, list)
    assert [h["name"] for h in hosts] == ["db01", "db02", "db03-standby"]
    assert hosts[2]["steps"] == [
        {
            "step": "full",
            "status": "failed",
            "attempt": 2,
            "started_at": "2025-08-20T01:31:10+00:00",
            "ended_at": "2025-08-20T01:34:10+00:00",
            "duration_seconds": 180.0,
            "expected_seconds": None,
            "exit_status": 1,
            "cause": "ORA-19809: limit",
            "log_path": "/logs/db03.log",
            "level": None,
            "detail": None,
        }
    ]
    json.dumps(shown)  # serialisable as is


def test_store_records_render(store: Store) -> None:
    """Records read back from the store render and serialise without adaptation."""
    _emit_all(store, _night())
    detail = store.run_detail("r1")
    assert detail is not None
    assert "db02          failed" in render_show(detail, now=T0, tz=UTC)
    assert "r1" in render_history(store.recent_runs(), now=T0, tz=UTC)
    json.dumps(show_json(detail, now=T0))


async def test_a_run_commits_staged_host_marks_every_second(tmp_path: Path) -> None:
    """The runner's periodic flush commits a staged mark while the run goes on (no other
    change needed): a host's 'running' is visible to another reader within the interval."""
    from fanout.logs import LogSink
    from fanout.runner import _flush_every_second

    reader = sqlite3.connect(tmp_path / "fanout.db")
    with open_store(tmp_path) as store, LogSink(tmp_path, flush_interval=0.05) as logs:
        store.emit(_plan())
        store.emit(HostStarted("r1", "db01", T0 + 1))
        status = "SELECT status FROM hosts WHERE name = 'db01'"
        assert reader.execute(status).fetchone() == ("pending",)
        flusher = asyncio.create_task(_flush_every_second(logs, store))
        try:
            await asyncio.sleep(0.3)
            assert reader.execute(status).fetchone() == ("running",)
        finally:
            flusher.cancel()
    reader.close()
