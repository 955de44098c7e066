"""The run store: SQLite (WAL) at ``<state_dir>/fanout.db``, written from the event stream.

``Store`` is an ``EventSink``. Every state change is one small ``BEGIN IMMEDIATE``
transaction, committed before ``emit`` returns; ``StepOutput`` (the bulk of the
stream) and events that change no row return at once. A step row exists from
``RunStarted`` ('pending'), is 'running' from ``StepStarted`` and takes the final
status from ``StepFinished`` (back to 'pending' when another attempt follows), so a
row always describes the step's latest attempt.

Durability: ``synchronous=FULL``. In WAL mode NORMAL already survives ``kill -9``
of fanout, but a power or OS failure may drop the last commits, and a lost
``StepStarted`` would let ``--resume`` start a second RMAN beside one still running
on the host. FULL costs one WAL fsync per state change, ~4000 for a 500-host night:
measured 0.22 ms per event on ext4 (NORMAL: 0.04 ms), against steps of minutes to hours.
A small ``wal_autocheckpoint`` keeps the WAL file reused rather than grown, which makes each
of those fsyncs cheaper (fewer checkpoints would not make a commit any less durable).

Schema changes are functions appended to ``MIGRATIONS``; ``PRAGMA user_version``
counts those applied, and all pending ones run in one transaction.

A run whose orchestrator died keeps outcome 'running' and no end; readers report it
as 'interrupted' once its pid is gone from this machine (pid + hostname, and on
Linux the process start time, so a reused pid is not taken for it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import assert_never

from fanout.errors import FanoutError
from fanout.events import (
    CancelRequested,
    ConnectFailed,
    Event,
    HostConnected,
    HostFinished,
    HostStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)
from fanout.freshness import Attempt, BackupRecord
from fanout.lock import canonical_inventory_path

__all__ = [
    "MIGRATIONS",
    "HostRecord",
    "LogPathFor",
    "ResumeStep",
    "RunDetail",
    "RunOutcome",
    "RunSummary",
    "StepRecord",
    "Store",
    "StoreError",
    "open_store",
    "run_outcome",
]

_log = logging.getLogger(__name__)

DB_NAME = "fanout.db"
_BUSY_TIMEOUT = 5.0  # seconds: runs of other inventories write the same file
_START_SLACK = 2.0  # seconds: /proc start times are rounded to the boot time's second
# Checkpoint once the WAL holds this many pages (SQLite's default: 1000). The WAL file then
# stays small and is rewritten in place: a commit's fsync flushes data blocks only, instead
# of extending the file (block allocation, inode update) on every commit of a run.
_WAL_CHECKPOINT_PAGES = 64

LogPathFor = Callable[[str, str], str | None]  # (host, step) -> that step's log file
PathArg = str | os.PathLike[str]
_Stmt = tuple[str, Sequence[object]]


class StoreError(FanoutError):
    """The run store cannot be opened or written, or has no such run. ``str()`` is one line."""


class RunOutcome(StrEnum):
    OK = "ok"  # exit 0
    FAILED = "failed"  # exit 1, or any other code that is not a cancel
    CANCELLED = "cancelled"  # exit 130 / 143
    RUNNING = "running"  # no RunFinished yet; orchestrator alive, or on another machine
    INTERRUPTED = "interrupted"  # no RunFinished and the orchestrator is gone (read time only)


def run_outcome(exit_code: int) -> RunOutcome:
    """The recorded outcome of a finished run: derived from its exit code alone, so they agree."""
    if exit_code == 0:
        return RunOutcome.OK
    return RunOutcome.CANCELLED if exit_code in (130, 143) else RunOutcome.FAILED


# ---- schema -----------------------------------------------------------------------------------


def _migrate_v1(db: sqlite3.Connection) -> None:
    """The first schema: runs, hosts (insertion order = dispatch order), steps."""
    db.execute("""CREATE TABLE runs (
        id TEXT PRIMARY KEY, inventory_path TEXT NOT NULL, inventory_sha256 TEXT,
        argv TEXT NOT NULL DEFAULT '[]', started_at REAL NOT NULL, ended_at REAL,
        outcome TEXT NOT NULL DEFAULT 'running', exit_code INTEGER, resumed_from TEXT,
        pid INTEGER, hostname TEXT)""")
    db.execute("""CREATE TABLE hosts (
        run_id TEXT NOT NULL REFERENCES runs (id), name TEXT NOT NULL,
        priority INTEGER NOT NULL, address TEXT NOT NULL, oracle_sid TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', cause TEXT, started_at REAL, ended_at REAL,
        PRIMARY KEY (run_id, name))""")
    db.execute("""CREATE TABLE steps (
        run_id TEXT NOT NULL, host TEXT NOT NULL, step TEXT NOT NULL, position INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,
        started_at REAL, ended_at REAL, exit_status INTEGER, cause TEXT, log_path TEXT,
        PRIMARY KEY (run_id, host, step),
        FOREIGN KEY (run_id, host) REFERENCES hosts (run_id, name))""")


def _migrate_v2(db: sqlite3.Connection) -> None:
    """hosts.position: dispatch order made explicit (backfilled from insertion order).

    Also indexes runs by inventory for ``history INVENTORY`` and ``--resume``.
    """
    db.execute("ALTER TABLE hosts ADD COLUMN position INTEGER NOT NULL DEFAULT 0")
    db.execute("""UPDATE hosts SET position = (SELECT COUNT(*) FROM hosts AS h
                  WHERE h.run_id = hosts.run_id AND h.rowid < hosts.rowid)""")
    db.execute("CREATE INDEX runs_by_inventory ON runs (inventory_path, started_at)")


_LAST_BACKUP_QUERY = """SELECT lower(h.address), h.oracle_sid, s.step, s.run_id, s.status,
        s.started_at, MAX(s.ended_at), s.cause
    FROM steps AS s JOIN hosts AS h ON h.run_id = s.run_id AND h.name = s.host
    WHERE s.status IN ({statuses}) AND s.ended_at IS NOT NULL
    GROUP BY lower(h.address), h.oracle_sid, s.step"""


def _migrate_v3(db: sqlite3.Connection) -> None:
    """backups: per database (lower-case address, SID) and step, the last success and the last
    finished attempt over every run (issue 14: ``fanout check``, the metrics file), kept up to
    date by each final ``StepFinished``, so reading it never scans the history. Backfilled."""
    db.execute("""CREATE TABLE backups (
        address TEXT NOT NULL, oracle_sid TEXT NOT NULL, step TEXT NOT NULL,
        success_run TEXT, success_started_at REAL, success_ended_at REAL,
        last_run TEXT, last_status TEXT, last_started_at REAL, last_ended_at REAL, last_cause TEXT,
        PRIMARY KEY (address, oracle_sid, step))""")
    latest = db.execute(_LAST_BACKUP_QUERY.format(statuses="'ok', 'failed', 'cancelled'"))
    db.executemany(
        """INSERT INTO backups (address, oracle_sid, step, last_run, last_status,
            last_started_at, last_ended_at, last_cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        latest.fetchall(),
    )
    successes = db.execute(_LAST_BACKUP_QUERY.format(statuses="'ok'")).fetchall()
    db.executemany(
        """UPDATE backups SET success_run = ?, success_started_at = ?, success_ended_at = ?
           WHERE address = ? AND oracle_sid = ? AND step = ?""",
        [(row[3], row[5], row[6], row[0], row[1], row[2]) for row in successes],
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_v1,
    _migrate_v2,
    _migrate_v3,
)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    with _transaction(db):  # IMMEDIATE: a concurrent opener waits, then sees the new version
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{path}: schema version {version} is newer than this fanout's "
                f"{len(MIGRATIONS)}; upgrade fanout"
            )
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            migration(db)
            db.execute(f"PRAGMA user_version = {number:d}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# ---- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    inventory_path: str
    inventory_sha256: str | None
    argv: tuple[str, ...]
    started_at: float
    ended_at: float | None
    outcome: str  # a RunOutcome value, 'interrupted' included
    exit_code: int | None
    resumed_from: str | None
    pid: int | None
    hostname: str | None
    host_counts: Mapping[str, int]  # status -> number of hosts
    step_counts: Mapping[str, int]  # status -> number of steps


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    position: int
    status: str  # a StepStatus value, 'pending' or 'running'
    attempt: int  # 0: never started
    started_at: float | None  # of the latest attempt
    ended_at: float | None
    exit_status: int | None
    cause: str | None
    log_path: str | None


@dataclass(frozen=True, slots=True)
class HostRecord:
    name: str
    position: int  # dispatch order
    priority: int
    address: str
    oracle_sid: str
    status: str  # a HostStatus value, 'pending' or 'running'
    cause: str | None
    started_at: float | None
    ended_at: float | None
    steps: tuple[StepRecord, ...]


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunSummary
    hosts: tuple[HostRecord, ...]


@dataclass(frozen=True, slots=True)
class ResumeStep:
    """A step that did not succeed: 'failed', 'cancelled', 'skipped', 'pending' or 'running'."""

    step: str
    status: str
    attempt: int
    cause: str | None
    started_at: float | None

    @property
    def possibly_running(self) -> bool:
        """Seen to start, never to end: check the remote side before starting it again."""
        return self.status == "running"


# ---- SQL written per event --------------------------------------------------------------------

_BEGIN_RUN = """INSERT INTO runs (id, inventory_path, inventory_sha256, argv, started_at,
        resumed_from, pid, hostname) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET inventory_path = excluded.inventory_path,
        inventory_sha256 = excluded.inventory_sha256, argv = excluded.argv,
        resumed_from = excluded.resumed_from"""
_RUN_STARTED = """INSERT INTO runs (id, inventory_path, started_at, pid, hostname)
    VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at,
        outcome = 'running', pid = excluded.pid, hostname = excluded.hostname"""
_PLAN_HOST = """INSERT INTO hosts (run_id, name, position, priority, address, oracle_sid)
    VALUES (?, ?, ?, ?, ?, ?)"""
_PLAN_STEP = "INSERT INTO steps (run_id, host, step, position) VALUES (?, ?, ?, ?)"
_HOST_STARTED = "UPDATE hosts SET status = 'running', started_at = ? WHERE run_id = ? AND name = ?"
# A step the RunStarted plan did not name is appended to its host's steps.
_NEXT_POSITION = (
    "(SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE run_id = ?1 AND host = ?2)"
)
_STEP_STARTED = f"""INSERT INTO steps (run_id, host, step, position, status, attempt, started_at,
        log_path) VALUES (?1, ?2, ?3, {_NEXT_POSITION}, 'running', ?4, ?5, ?6)
    ON CONFLICT (run_id, host, step) DO UPDATE SET status = 'running', attempt = ?4,
        started_at = ?5, ended_at = NULL, exit_status = NULL, cause = NULL,
        log_path = COALESCE(?6, log_path)"""
_STEP_FINISHED = f"""INSERT INTO steps (run_id, host, step, position, status, attempt, ended_at,
        exit_status, cause) VALUES (?1, ?2, ?3, {_NEXT_POSITION}, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (run_id, host, step) DO UPDATE SET status = ?4, attempt = ?5, ended_at = ?6,
        exit_status = ?7, cause = ?8"""
# A final StepFinished (ok, failed, cancelled) moves its database's row in `backups` forward;
# runs after _STEP_FINISHED in the same transaction, so the steps row has this attempt's start.
# (SET expressions read the row's old values.)
_NEWER = "COALESCE({old}, -1e300) <= excluded.{new}"
_BACKUP_FINISHED = f"""INSERT INTO backups (address, oracle_sid, step, success_run,
        success_started_at, success_ended_at, last_run, last_status, last_started_at,
        last_ended_at, last_cause)
    SELECT lower(h.address), h.oracle_sid, ?3, CASE WHEN ?4 = 'ok' THEN ?1 END,
        CASE WHEN ?4 = 'ok' THEN s.started_at END, CASE WHEN ?4 = 'ok' THEN ?5 END,
        ?1, ?4, s.started_at, ?5, ?6
    FROM hosts AS h LEFT JOIN steps AS s ON s.run_id = h.run_id AND s.host = h.name AND s.step = ?3
    WHERE h.run_id = ?1 AND h.name = ?2
    ON CONFLICT (address, oracle_sid, step) DO UPDATE SET
        success_run = CASE WHEN excluded.success_ended_at IS NOT NULL
            AND {_NEWER.format(old="success_ended_at", new="success_ended_at")}
            THEN excluded.success_run ELSE success_run END,
        success_started_at = CASE WHEN excluded.success_ended_at IS NOT NULL
            AND {_NEWER.format(old="success_ended_at", new="success_ended_at")}
            THEN excluded.success_started_at ELSE success_started_at END,
        success_ended_at = CASE WHEN excluded.success_ended_at IS NOT NULL
            AND {_NEWER.format(old="success_ended_at", new="success_ended_at")}
            THEN excluded.success_ended_at ELSE success_ended_at END,
        last_run = CASE WHEN {_NEWER.format(old="last_ended_at", new="last_ended_at")}
            THEN excluded.last_run ELSE last_run END,
        last_status = CASE WHEN {_NEWER.format(old="last_ended_at", new="last_ended_at")}
            THEN excluded.last_status ELSE last_status END,
        last_started_at = CASE WHEN {_NEWER.format(old="last_ended_at", new="last_ended_at")}
            THEN excluded.last_started_at ELSE last_started_at END,
        last_cause = CASE WHEN {_NEWER.format(old="last_ended_at", new="last_ended_at")}
            THEN excluded.last_cause ELSE last_cause END,
        last_ended_at = CASE WHEN {_NEWER.format(old="last_ended_at", new="last_ended_at")}
            THEN excluded.last_ended_at ELSE last_ended_at END"""
_FINAL_STATUSES = frozenset({"ok", "failed", "cancelled"})
_HOST_FINISHED = (
    "UPDATE hosts SET status = ?, cause = ?, ended_at = ? WHERE run_id = ? AND name = ?"
)
_RUN_FINISHED = "UPDATE runs SET ended_at = ?, exit_code = ?, outcome = ? WHERE id = ?"
_RUN_COLUMNS = """id, inventory_path, inventory_sha256, argv, started_at, ended_at, outcome,
    exit_code, resumed_from, pid, hostname"""
_RunRow = tuple[
    str,
    str,
    str | None,
    str,
    float,
    float | None,
    str,
    int | None,
    str | None,
    int | None,
    str | None,
]


# ---- the store --------------------------------------------------------------------------------


@contextmanager
def open_store(state_dir: PathArg) -> Iterator[Store]:
    """Open ``<state_dir>/fanout.db`` for the ``with`` block, creating and migrating it.

    Raises ``StoreError`` if it cannot be opened, is not a database or has a newer
    schema. Closes the connection on leaving; what was committed stays committed.
    """
    path = Path(state_dir) / DB_NAME
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: {exc}") from exc
    try:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES:d}")
            db.execute("PRAGMA foreign_keys = ON")
            _migrate(db, path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from exc
        yield Store(db, path)
    finally:
        db.close()


class Store:
    """Run history in SQLite, and an EventSink. Get one from ``open_store``.

    Readers raise ``sqlite3.Error`` if the database fails under them.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._hostname = socket.gethostname()
        self._log_paths: dict[str, LogPathFor] = {}
        self.write_error: sqlite3.Error | None = None  # the first event that was not recorded

    def begin_run(
        self,
        run_id: str,
        inventory_path: PathArg,
        inventory_sha256: str,
        argv: Sequence[str],
        *,
        resumed_from: str | None = None,
        log_path: LogPathFor | None = None,
    ) -> None:
        """Record what the events do not carry; call it before ``RunStarted`` is emitted.

        ``log_path(host, step)`` names a step's log file, stored when the step starts.
        Optional: without it a run records the event's inventory and no argv or hash.
        Raises ``StoreError`` if the row cannot be written.
        """
        if log_path is not None:
            self._log_paths[run_id] = log_path
        params = (
            run_id,
            canonical_inventory_path(inventory_path),
            inventory_sha256,
            json.dumps(list(argv)),
            time.time(),
            resumed_from,
            os.getpid(),
            self._hostname,
        )
        try:
            self._commit([(_BEGIN_RUN, params)])
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record run {run_id}: {exc}") from exc

    def emit(self, event: Event) -> None:
        """Commit the row changes of one event before returning.

        A database error (disk full, locked past the busy timeout) never reaches the
        engine, so history trouble cannot fail a backup: the transaction is rolled
        back and logged, the first error is kept in ``write_error`` for the CLI to
        report, and later events are still attempted. Nothing here awaits, so
        cancellation cannot interrupt it.
        """
        match event:
            case StepOutput() | HostConnected() | ConnectFailed() | CancelRequested():
                return  # no row changes
            case RunStarted():
                stmts = self._plan(event)
            case HostStarted():
                stmts = [(_HOST_STARTED, (event.at, event.run_id, event.host))]
            case StepStarted():
                paths = self._log_paths.get(event.run_id)
                log = paths(event.host, event.step) if paths is not None else None
                key = (event.run_id, event.host, event.step)
                stmts = [(_STEP_STARTED, (*key, event.attempt, event.at, log))]
            case StepFinished():
                status = "pending" if event.will_retry else event.status.value
                key = (event.run_id, event.host, event.step)
                stmts = [
                    (
                        _STEP_FINISHED,
                        (*key, status, event.attempt, event.at, event.exit_status, event.cause),
                    )
                ]
                if status in _FINAL_STATUSES:
                    stmts.append((_BACKUP_FINISHED, (*key, status, event.at, event.cause)))
            case HostFinished():
                params = (event.status.value, event.cause, event.at, event.run_id, event.host)
                stmts = [(_HOST_FINISHED, params)]
            case RunFinished():
                outcome = run_outcome(event.exit_code).value
                stmts = [(_RUN_FINISHED, (event.at, event.exit_code, outcome, event.run_id))]
                self._log_paths.pop(event.run_id, None)
            case _:
                assert_never(event)
        try:
            self._commit(stmts)
        except sqlite3.Error as exc:
            if self.write_error is None:
                self.write_error = exc
            _log.warning("run store %s: %s not recorded: %s", self.path, type(event).__name__, exc)

    def _plan(self, event: RunStarted) -> list[_Stmt]:
        run = event.run_id
        inventory = canonical_inventory_path(event.inventory)
        stmts: list[_Stmt] = [
            (_RUN_STARTED, (run, inventory, event.at, os.getpid(), self._hostname))
        ]
        for position, host in enumerate(event.hosts):
            params = (run, host.name, position, host.priority, host.address, host.oracle_sid)
            stmts.append((_PLAN_HOST, params))
            stmts.extend((_PLAN_STEP, (run, host.name, s, i)) for i, s in enumerate(host.steps))
        return stmts

    def _commit(self, stmts: Sequence[_Stmt]) -> None:
        with _transaction(self._db):
            for sql, params in stmts:
                self._db.execute(sql, params)

    def recent_runs(
        self, inventory_path: PathArg | None = None, limit: int = 20
    ) -> list[RunSummary]:
        """Runs newest first, of one inventory or all, with host and step counts by status."""
        inventory = None if inventory_path is None else canonical_inventory_path(inventory_path)
        rows = self._db.execute(
            f"""SELECT {_RUN_COLUMNS} FROM runs WHERE ?1 IS NULL OR inventory_path = ?1
                ORDER BY started_at DESC, rowid DESC LIMIT ?2""",
            (inventory, limit),
        ).fetchall()
        return [self._summary(row) for row in rows]

    def latest_run(self, inventory_path: PathArg | None = None) -> RunSummary | None:
        """The newest run, of one inventory or of all."""
        runs = self.recent_runs(inventory_path, limit=1)
        return runs[0] if runs else None

    def latest_unfinished_run(self, inventory_path: PathArg) -> RunSummary | None:
        """The inventory's newest run if it did not fully succeed, else None.

        A later successful run supersedes older failures: those are not offered again.
        """
        latest = self.latest_run(inventory_path)
        return latest if latest is not None and latest.outcome != RunOutcome.OK else None

    def run_detail(self, run_id: str) -> RunDetail | None:
        """The run with its hosts in dispatch order, each with its steps in order."""
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        steps: dict[str, list[StepRecord]] = {}
        for host, *fields in self._db.execute(
            """SELECT host, step, position, status, attempt, started_at, ended_at, exit_status,
                      cause, log_path FROM steps WHERE run_id = ? ORDER BY host, position""",
            (run_id,),
        ):
            steps.setdefault(host, []).append(StepRecord(*fields))
        hosts = tuple(
            HostRecord(
                name, pos, prio, addr, sid, status, cause, t0, t1, tuple(steps.get(name, ()))
            )
            for name, pos, prio, addr, sid, status, cause, t0, t1 in self._db.execute(
                """SELECT name, position, priority, address, oracle_sid, status, cause,
                          started_at, ended_at FROM hosts WHERE run_id = ? ORDER BY position""",
                (run_id,),
            )
        )
        return RunDetail(self._summary(row), hosts)

    def resume_plan(self, run_id: str) -> dict[str, tuple[ResumeStep, ...]]:
        """Host -> its steps that are not 'ok', in order; hosts in dispatch order.

        Failed, cancelled, skipped, pending (host never started, or between attempts)
        and running steps are included, the last ``possibly_running``. A host whose
        steps all succeeded is absent. Raises ``StoreError`` if there is no such run.
        """
        detail = self.run_detail(run_id)
        if detail is None:
            raise StoreError(f"{self.path}: no run {run_id!r}")
        plan: dict[str, tuple[ResumeStep, ...]] = {}
        for host in detail.hosts:
            todo = tuple(
                ResumeStep(s.step, s.status, s.attempt, s.cause, s.started_at)
                for s in host.steps
                if s.status != "ok"
            )
            if todo:
                plan[host.name] = todo
        return plan

    def last_backups(self) -> dict[tuple[str, str, str], BackupRecord]:
        """Per database and step, across every run of every inventory: the last success and
        the last finished attempt (ok, failed or cancelled), keyed by ``(lower(address), sid,
        step)`` (``freshness.database_key``). For ``fanout check`` and the metrics file.

        Reads the ``backups`` table (schema v3), which every final ``StepFinished`` keeps up to
        date: one row per database and step, however long the history.
        """
        found: dict[tuple[str, str, str], BackupRecord] = {}
        for row in self._db.execute(
            """SELECT address, oracle_sid, step, success_run, success_started_at,
                      success_ended_at, last_run, last_status, last_started_at, last_ended_at,
                      last_cause FROM backups"""
        ):
            address, sid, step, s_run, s_start, s_end, l_run, l_status, l_start, l_end, cause = row
            success = None if s_end is None else Attempt(s_run, "ok", s_start, s_end)
            last = None if l_end is None else Attempt(l_run, l_status, l_start, l_end, cause)
            found[(address, sid, step)] = BackupRecord(address, sid, step, success, last)
        return found

    def _summary(self, row: _RunRow) -> RunSummary:
        run_id, inventory, sha, argv, started, ended, outcome, exit_code, resumed, pid, host = row
        if (
            outcome == RunOutcome.RUNNING
            and pid is not None
            and host == self._hostname
            and not _pid_alive(pid, since=started)
        ):
            outcome = RunOutcome.INTERRUPTED.value
        counts = {
            table: dict(
                self._db.execute(
                    f"SELECT status, COUNT(*) FROM {table} WHERE run_id = ? GROUP BY status",
                    (run_id,),
                )
            )
            for table in ("hosts", "steps")
        }
        return RunSummary(
            run_id,
            inventory,
            sha,
            tuple(json.loads(argv)),
            started,
            ended,
            outcome,
            exit_code,
            resumed,
            pid,
            host,
            counts["hosts"],
            counts["steps"],
        )


def _pid_alive(pid: int, *, since: float) -> bool:
    """Whether ``pid`` on this machine is still the process that started a run at ``since``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    proc = _proc_stat(pid)
    if proc is None:
        return True  # no /proc: kill(0) is all we know
    state, started = proc
    return state not in ("Z", "X") and started <= since + _START_SLACK


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state, start time in epoch seconds) from Linux /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
