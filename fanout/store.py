"""The run store: SQLite (WAL) at ``<state_dir>/fanout.db``, written from the event stream.

``Store`` is an ``EventSink``. Every change of a run or step row is one transaction,
committed before ``emit`` returns: a change of one statement runs in SQLite's autocommit
(its own transaction, as durable as an explicit one), a change of several in ``BEGIN
IMMEDIATE`` … ``COMMIT`` (a run's plan as one ``executemany`` per table). A host's marks
(``HostStarted``, ``HostFinished``) ride along with the next commit, or are committed by
``flush()`` within a second (see ``Store.emit``). Events the engine hands over together
(``emit_together``: a step's end and the host's next step start, nothing awaited between
them) are one transaction. Per host of three steps that is about 8 statements and 4
commits. ``StepOutput`` (the bulk of the stream) and events that change no row return
at once. A step row exists from
``RunStarted`` ('pending'), is 'running' from ``StepStarted`` and takes the final
status from ``StepFinished`` (back to 'pending' when another attempt follows), so a
row always describes the step's latest attempt.

Durability: ``synchronous=FULL``. In WAL mode NORMAL already survives ``kill -9``
of fanout, but a power or OS failure may drop the last commits, and a lost
``StepStarted`` would let ``--resume`` start a second RMAN beside one still running
on the host. FULL costs one WAL fsync per commit, ~2000 for a 500-host night:
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

import itertools
import json
import logging
import operator
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import assert_never

from fanout.errors import ExitCode, StoreError, UsageError
from fanout.events import (
    CancelRequested,
    ConnectFailed,
    Event,
    HostConnected,
    HostFinished,
    HostStarted,
    OrphanUnconfirmed,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)
from fanout.freshness import Attempt, BackupRecord
from fanout.lock import canonical_inventory_path
from fanout.paths import step_log_path
from fanout.policy import LevelHistory

__all__ = [
    "MIGRATIONS",
    "HostRecord",
    "OrphanRecord",
    "ResumeStep",
    "RunDetail",
    "RunOutcome",
    "RunSummary",
    "StepRecord",
    "Store",
    "StoreError",
    "open_store",
    "read_level_history",
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

PathArg = str | os.PathLike[str]
_Stmt = tuple[str, Sequence[object]]


class RunOutcome(StrEnum):
    OK = "ok"  # exit 0
    FAILED = "failed"  # exit 1, or any other code that is not a cancel
    CANCELLED = "cancelled"  # exit 130 / 143 / 74 (stopped because the store failed)
    RUNNING = "running"  # no RunFinished yet; orchestrator alive, or on another machine
    INTERRUPTED = "interrupted"  # no RunFinished and the orchestrator is gone (read time only)


def run_outcome(exit_code: int) -> RunOutcome:
    """The recorded outcome of a finished run: derived from its exit code alone, so they agree."""
    if exit_code == 0:
        return RunOutcome.OK
    stopped = (ExitCode.CANCELLED, ExitCode.TERMINATED, ExitCode.IO_ERROR)
    return RunOutcome.CANCELLED if exit_code in stopped else RunOutcome.FAILED


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


def _migrate_v3(db: sqlite3.Connection) -> None:
    """orphans: remote process groups a run could not confirm stopped (``may still be running``)."""
    db.execute("""CREATE TABLE orphans (
        run_id TEXT NOT NULL REFERENCES runs (id), host TEXT NOT NULL, pgid INTEGER NOT NULL,
        cause TEXT, at REAL NOT NULL, PRIMARY KEY (run_id, host, pgid))""")


def _migrate_levels(db: sqlite3.Connection) -> None:
    """The level policy (issue 13): steps.level (the backup level planned for the step),
    steps.detail (the level's reason, warnings such as a NOCATALOG fallback) and
    hosts.database (``Host.database_key``: whose level-0 history a step belongs to)."""
    db.execute("ALTER TABLE steps ADD COLUMN level INTEGER")
    db.execute("ALTER TABLE steps ADD COLUMN detail TEXT")
    db.execute("ALTER TABLE hosts ADD COLUMN database TEXT")
    db.execute("CREATE INDEX hosts_by_database ON hosts (database)")


# The kind a freshness record is kept under: the step name, or for a step of the level policy
# ``<step>/level0`` / ``<step>/level1`` (a weekly level 0 and a daily level 1 age separately).
_KIND = "s.step || COALESCE('/level' || s.level, '')"
_LAST_BACKUP_QUERY = f"""SELECT lower(h.address), h.oracle_sid, {_KIND}, s.run_id, s.status,
        s.started_at, MAX(s.ended_at), s.cause
    FROM steps AS s JOIN hosts AS h ON h.run_id = s.run_id AND h.name = s.host
    WHERE s.status IN ({{statuses}}) AND s.ended_at IS NOT NULL
    GROUP BY lower(h.address), h.oracle_sid, {_KIND}"""


def _migrate_backups(db: sqlite3.Connection) -> None:
    """backups: per database (lower-case address, SID) and kind (the step, split by backup
    level for a step of the level policy: ``backup/level0``), the last success and the last
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
    _migrate_levels,
    _migrate_backups,
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
    level: int | None = None  # the backup level planned for it (level-policy steps only)
    detail: str | None = None  # "level 0: no successful level 0 recorded", warnings


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
    orphans: tuple[OrphanRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class OrphanRecord:
    """A remote process group the run could not confirm stopped: it may still be running."""

    host: str
    pgid: int
    cause: str | None


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


@dataclass(frozen=True, slots=True)
class OwedStep:
    """A step a database still owes: its latest outcome, across every run of the inventory,
    was not a success.

    ``runs`` are the runs, oldest first, that attempted or planned it since its last
    success: any of them may have left it running, or finished it while fanout was away.
    """

    step: str
    status: str  # the latest: 'failed', 'cancelled', 'skipped', 'pending' or 'running'
    cause: str | None
    runs: tuple[str, ...]

    @property
    def run_id(self) -> str:
        """The latest run that owed it."""
        return self.runs[-1]

    @property
    def possibly_running(self) -> bool:
        """Seen to start, never to end: check the remote side before starting it again."""
        return self.status == "running"


# A skip that is not a debt: the host's `when:` condition said this node has nothing to do.
NOT_OWED_SKIP = "condition false"

# ---- SQL written per event --------------------------------------------------------------------

_ORPHAN = """INSERT OR REPLACE INTO orphans (run_id, host, pgid, cause, at)
    VALUES (?, ?, ?, ?, ?)"""
_RUN_STARTED = """INSERT INTO runs (id, inventory_path, inventory_sha256, argv, started_at,
        resumed_from, pid, hostname) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, outcome = 'running',
        inventory_path = excluded.inventory_path, inventory_sha256 = excluded.inventory_sha256,
        argv = excluded.argv, resumed_from = excluded.resumed_from, pid = excluded.pid,
        hostname = excluded.hostname"""
_PLAN_HOST = """INSERT INTO hosts (run_id, name, position, priority, address, oracle_sid,
        database) VALUES (?, ?, ?, ?, ?, ?, ?)"""
_PLAN_STEP = "INSERT INTO steps (run_id, host, step, position, level) VALUES (?, ?, ?, ?, ?)"
_HOST_STARTED = "UPDATE hosts SET status = 'running', started_at = ? WHERE run_id = ? AND name = ?"
# A step the RunStarted plan did not name is appended to its host's steps.
_NEXT_POSITION = (
    "(SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE run_id = ?1 AND host = ?2)"
)
_STEP_STARTED = f"""INSERT INTO steps (run_id, host, step, position, status, attempt, started_at,
        log_path, detail) VALUES (?1, ?2, ?3, {_NEXT_POSITION}, 'running', ?4, ?5, ?6, ?7)
    ON CONFLICT (run_id, host, step) DO UPDATE SET status = 'running', attempt = ?4,
        started_at = ?5, ended_at = NULL, exit_status = NULL, cause = NULL,
        log_path = COALESCE(?6, log_path), detail = COALESCE(?7, detail)"""
_STEP_FINISHED = f"""INSERT INTO steps (run_id, host, step, position, status, attempt, ended_at,
        exit_status, cause, detail) VALUES (?1, ?2, ?3, {_NEXT_POSITION}, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (run_id, host, step) DO UPDATE SET status = ?4, attempt = ?5, ended_at = ?6,
        exit_status = ?7, cause = ?8, detail = COALESCE(?9, detail)"""
# A final StepFinished (ok, failed, cancelled) moves its database's row in `backups` forward;
# runs after _STEP_FINISHED in the same transaction, so the steps row has this attempt's start.
# (SET expressions read the row's old values.)
_NEWER = "COALESCE({old}, -1e300) <= excluded.{new}"
_BACKUP_FINISHED = f"""INSERT INTO backups (address, oracle_sid, step, success_run,
        success_started_at, success_ended_at, last_run, last_status, last_started_at,
        last_ended_at, last_cause)
    SELECT lower(h.address), h.oracle_sid, ?3 || COALESCE('/level' || s.level, ''),
        CASE WHEN ?4 = 'ok' THEN ?1 END,
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
_LEVEL0_ROWS = """FROM steps AS s JOIN hosts AS h ON h.run_id = s.run_id AND h.name = s.host
    JOIN runs AS r ON r.id = s.run_id WHERE h.database = ?1 AND s.level = 0"""
_LAST_LEVEL0 = f"SELECT MAX(r.started_at) {_LEVEL0_ROWS} AND s.status = 'ok'"
_OWED_LEVEL0 = f"""SELECT MIN(r.started_at) {_LEVEL0_ROWS} AND s.status != 'ok'
    AND NOT (s.status = 'skipped' AND s.cause IS 'condition false')
    AND r.started_at > COALESCE(?2, -1)"""
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
def open_store(
    state_dir: PathArg,
    *,
    recover: bool = False,
    on_write_error: Callable[[StoreError], None] | None = None,
) -> Iterator[Store]:
    """Open ``<state_dir>/fanout.db`` for the ``with`` block, creating and migrating it.

    Raises ``StoreError`` if it cannot be opened (read-only, full, not a directory), is
    not a database or has a newer schema. With ``recover`` (``fanout run``: tonight's
    backups must not depend on last year's history) a corrupt database (not a database,
    damaged pages found by ``PRAGMA quick_check``) is moved aside to
    ``fanout.db.corrupt-<UTC time>`` and a fresh one started; ``Store.moved_aside`` names
    it. ``on_write_error`` is called once, with the first change that could not be
    recorded (see ``Store.emit``). Closes the connection on leaving.
    """
    path = Path(state_dir) / DB_NAME
    moved_aside: Path | None = None
    try:
        db = _connect(path, check=recover)
    except _Corrupt as exc:
        if not recover:
            raise StoreError(f"{path}: {exc}{_CORRUPT_HINT}") from exc
        moved_aside = _move_aside(path)
        db = _connect(path, check=False)
    store = Store(db, path, moved_aside=moved_aside, on_write_error=on_write_error)
    try:
        yield store
    finally:
        try:
            store.flush()
        finally:
            db.close()


class _Corrupt(Exception):
    """The file is not an intact SQLite database."""


_CORRUPT_MARKERS = ("not a database", "malformed", "corrupt")
_CORRUPT_HINT = " (corrupt: the next `fanout run` moves it aside and starts a fresh store)"


def _connect(path: Path, *, check: bool) -> sqlite3.Connection:
    """Open, configure and migrate; raises StoreError, or _Corrupt for a damaged file."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: {_reason(exc)}") from exc
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES:d}")
        db.execute("PRAGMA foreign_keys = ON")
        if check:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                raise _Corrupt(f"damaged: {problems[0] if problems else 'no answer'}")
        _migrate(db, path)
    except sqlite3.Error as exc:
        db.close()
        if any(marker in str(exc).lower() for marker in _CORRUPT_MARKERS):
            raise _Corrupt(str(exc)) from exc
        raise StoreError(f"{path}: {_reason(exc)}") from exc
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path) -> Path:
    """Rename the damaged database (and its WAL) to ``fanout.db.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if suffix == "-shm":
                extra.unlink(missing_ok=True)
            elif extra.exists():
                extra.rename(target.with_name(target.name + suffix))
        path.rename(target)
    except OSError as exc:
        raise StoreError(f"{path}: corrupt, and cannot be moved aside: {_reason(exc)}") from exc
    return target


def _reason(exc: BaseException) -> str:
    """One line: an OSError's strerror, else the message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_level_history(state_dir: PathArg, databases: Iterable[str]) -> dict[str, LevelHistory]:
    """``Store.level_history`` of the run store in ``state_dir``; empty when there is none
    yet (``fanout plan`` creates nothing). Raises ``StoreError`` as ``open_store`` does."""
    if not (Path(state_dir) / DB_NAME).exists():
        return {}
    with open_store(state_dir) as store:
        try:
            return store.level_history(databases)
        except sqlite3.Error as exc:
            raise StoreError(f"{store.path}: {exc}") from exc


class Store:
    """Run history in SQLite, and an EventSink. Get one from ``open_store``.

    Readers raise ``StoreError`` if the database fails under them (damaged pages).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        moved_aside: Path | None = None,
        on_write_error: Callable[[StoreError], None] | None = None,
    ) -> None:
        self._db = db
        self.path = path
        self.moved_aside = moved_aside  # where a corrupt database was moved by open_store
        self._on_write_error = on_write_error
        self._hostname = socket.gethostname()
        self.write_error: StoreError | None = None  # the first change that was not recorded
        self._log_paths: dict[tuple[str, str], str] = {}  # (run, host) -> its log file
        # Host marks waiting for the next commit or flush() (see emit), and the first event
        # among them, named if that commit fails.
        self._staged: list[_Stmt] = []
        self._staged_by: Event | None = None

    def emit(self, event: Event) -> None:
        """Commit the row changes of one event before returning; a host's marks excepted.

        ``HostStarted`` and ``HostFinished`` are staged instead, and committed with the next
        change or by ``flush()`` (the runner calls it every second, and leaving
        ``open_store`` calls it): a group commit for hosts dispatched or finishing together,
        and two fsyncs fewer per host. Nothing depends on their durability:
        ``--resume``, ``check`` and the level choices read step rows, which are committed
        before ``emit`` returns (a step cannot start unrecorded); a crash loses at most the
        last second of host marks, as it loses at most the last second of log output.

        A database error (disk full, read-only, corrupt, locked past the busy timeout)
        never raises into the engine: the transaction is rolled back and logged, the
        first error is kept in ``write_error`` and passed to ``on_write_error`` (the
        runner fires the cancel token: no step may start unrecorded), and later events
        are still attempted. Nothing here awaits, so cancellation cannot interrupt it.
        """
        if type(event) is StepOutput:
            return  # no row changes; the bulk of the stream, so tested first
        stmts = self._changes(event)
        if stmts:
            self._record(event, stmts)

    def emit_together(self, events: Sequence[Event]) -> None:
        """Commit the row changes of ``events`` as one transaction before returning.

        The engine hands over a step's ``StepFinished`` with the host's next
        ``StepStarted`` this way (nothing awaited between them): one commit where ``emit``
        would make two, and each change is as durable, as soon, as with ``emit``. An
        error names the events that change a row.
        """
        stmts: list[_Stmt] = []
        changing: list[Event] = []
        for event in events:
            changes = self._changes(event)
            if changes:
                stmts += changes
                changing.append(event)
        if changing:
            self._record(changing[0], stmts, " and ".join(type(e).__name__ for e in changing))

    def _changes(self, event: Event) -> list[_Stmt]:
        """The statements that record ``event``; [] if it changes no row now (staged)."""
        match event:
            case StepOutput() | HostConnected() | ConnectFailed() | CancelRequested():
                return []  # no row changes
            case RunStarted():
                stmts = self._plan(event)
            case HostStarted():
                self._stage(event, (_HOST_STARTED, (event.at, event.run_id, event.host)))
                return []
            case StepStarted():
                log = self._log_paths.get((event.run_id, event.host))
                if log is None:  # one file per host: the path is the same for every step
                    log = str(step_log_path(self.path.parent, event.run_id, event.host, event.step))
                    self._log_paths[event.run_id, event.host] = log
                key = (event.run_id, event.host, event.step)
                stmts = [(_STEP_STARTED, (*key, event.attempt, event.at, log, event.detail))]
            case StepFinished():
                status = "pending" if event.will_retry else event.status.value
                key = (event.run_id, event.host, event.step)
                stmts = [
                    (
                        _STEP_FINISHED,
                        (
                            *key,
                            status,
                            event.attempt,
                            event.at,
                            event.exit_status,
                            event.cause,
                            event.detail,
                        ),
                    )
                ]
                if status in _FINAL_STATUSES:
                    stmts.append((_BACKUP_FINISHED, (*key, status, event.at, event.cause)))
            case HostFinished():
                params = (event.status.value, event.cause, event.at, event.run_id, event.host)
                self._stage(event, (_HOST_FINISHED, params))
                return []
            case OrphanUnconfirmed():
                orphan = (event.run_id, event.host, event.pgid, event.cause, event.at)
                stmts = [(_ORPHAN, orphan)]
            case RunFinished():
                outcome = run_outcome(event.exit_code).value
                stmts = [(_RUN_FINISHED, (event.at, event.exit_code, outcome, event.run_id))]
            case _:
                assert_never(event)
        return stmts

    def flush(self) -> None:
        """Commit the staged host marks, if any (errors as in ``emit``)."""
        if self._staged_by is not None:
            self._record(self._staged_by, [])

    def _stage(self, event: Event, stmt: _Stmt) -> None:
        self._staged.append(stmt)
        if self._staged_by is None:
            self._staged_by = event

    def _record(self, event: Event, stmts: list[_Stmt], names: str | None = None) -> None:
        """Commit the staged statements and ``stmts`` as one transaction, or report why not
        (naming ``names``, by default the type of ``event``)."""
        if self._staged_by is not None:
            event = self._staged_by if not stmts else event
            stmts = [*self._staged, *stmts]
            self._staged.clear()
            self._staged_by = None
        try:
            self._commit(stmts)
        except sqlite3.Error as exc:
            names = names or type(event).__name__
            if self.write_error is None:
                what = f"{event.run_id}: {names} not recorded"
                self.write_error = StoreError(f"{self.path}: {what}: {_reason(exc)}")
                self.write_error.__cause__ = exc
                if self._on_write_error is not None:
                    self._on_write_error(self.write_error)
            _log.debug("run store %s: %s not recorded: %s", self.path, names, exc)

    def _plan(self, event: RunStarted) -> list[_Stmt]:
        run = event.run_id
        inventory = canonical_inventory_path(event.inventory)
        meta: RunMeta = event.meta
        started = (
            run,
            inventory,
            meta.inventory_sha256,
            json.dumps(list(meta.argv)),
            event.at,
            meta.resumed_from,
            os.getpid(),
            self._hostname,
        )
        stmts: list[_Stmt] = [(_RUN_STARTED, started)]
        steps: list[_Stmt] = []  # after every host: commit groups them into executemany
        for position, host in enumerate(event.hosts):
            database = host.database or f"{host.oracle_sid}@{host.address.lower()}"
            params = (
                run,
                host.name,
                position,
                host.priority,
                host.address,
                host.oracle_sid,
                database,
            )
            stmts.append((_PLAN_HOST, params))
            levels = dict(zip(host.steps, host.levels, strict=False))
            steps.extend(
                (_PLAN_STEP, (run, host.name, s, i, levels.get(s)))
                for i, s in enumerate(host.steps)
            )
        return stmts + steps

    def _commit(self, stmts: Sequence[_Stmt]) -> None:
        """Run ``stmts`` as one committed transaction; consecutive runs of one SQL text
        go to ``executemany``. One statement alone is its own (autocommit) transaction."""
        if len(stmts) == 1:
            sql, params = stmts[0]
            self._db.execute(sql, params)
            return
        with _transaction(self._db):
            for sql, group in itertools.groupby(stmts, key=operator.itemgetter(0)):
                self._db.executemany(sql, [params for _, params in group])

    def recent_runs(
        self, inventory_path: PathArg | None = None, limit: int = 20
    ) -> list[RunSummary]:
        """Runs newest first, of one inventory or all, with host and step counts by status."""
        inventory = None if inventory_path is None else canonical_inventory_path(inventory_path)
        with self._reading():
            rows = self._db.execute(
                f"""SELECT {_RUN_COLUMNS} FROM runs WHERE ?1 IS NULL OR inventory_path = ?1
                    ORDER BY started_at DESC, rowid DESC LIMIT ?2""",
                (inventory, limit),
            ).fetchall()
            return [self._summary(row) for row in rows]

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            corrupt = any(marker in str(exc).lower() for marker in _CORRUPT_MARKERS)
            hint = _CORRUPT_HINT if corrupt else ""
            raise StoreError(f"{self.path}: cannot read: {_reason(exc)}{hint}") from exc

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
        with self._reading():
            return self._run_detail(run_id)

    def _run_detail(self, run_id: str) -> RunDetail | None:
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        steps: dict[str, list[StepRecord]] = {}
        for host, *fields in self._db.execute(
            """SELECT host, step, position, status, attempt, started_at, ended_at, exit_status,
                      cause, log_path, level, detail FROM steps WHERE run_id = ?
               ORDER BY host, position""",
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
        orphans = tuple(
            OrphanRecord(*fields)
            for fields in self._db.execute(
                "SELECT host, pgid, cause FROM orphans WHERE run_id = ? ORDER BY at, host",
                (run_id,),
            )
        )
        return RunDetail(self._summary(row), hosts, orphans)

    def resume_plan(self, run_id: str) -> dict[str, tuple[ResumeStep, ...]]:
        """Host -> its steps that are not 'ok', in order; hosts in dispatch order.

        Failed, cancelled, skipped, pending (host never started, or between attempts)
        and running steps are included, the last ``possibly_running``. A host whose
        steps all succeeded is absent. Raises ``StoreError`` if there is no such run.
        """
        detail = self.run_detail(run_id)
        if detail is None:
            raise UsageError(f"no run {run_id!r} in {self.path}")
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

    def level_history(self, databases: Iterable[str]) -> dict[str, LevelHistory]:
        """Each database's level-0 record (``Host.database_key``), for ``policy.choose_level``.

        ``last_level0``: the start of the newest run in which a level 0 of it succeeded.
        ``owed_since``: the oldest later run in which its planned level 0 did not succeed
        (failed, cancelled, skipped for any reason but a false ``when``, never started,
        or still 'running' in a run that died). Databases with no level-0 row are absent.
        """
        found: dict[str, LevelHistory] = {}
        for database in databases:
            (last,) = self._db.execute(_LAST_LEVEL0, (database,)).fetchone()
            (owed,) = self._db.execute(_OWED_LEVEL0, (database, last)).fetchone()
            if last is not None or owed is not None:
                found[database] = LevelHistory(last, owed)
        return found

    def owed_steps(
        self, inventory_path: PathArg | None, runs: Collection[str] | None = None
    ) -> dict[str, tuple[OwedStep, ...]]:
        """Host -> the steps it still owes, by the latest outcome across all runs of the
        inventory: full runs, ``--limit`` runs and resumes alike. Hosts and steps come in
        the order they last ran; a host owing nothing is absent.

        A step is owed when its latest record is not 'ok' (a skip whose cause starts with
        ``NOT_OWED_SKIP`` is no debt). Runs that never named a host leave it untouched.
        ``runs`` narrows the history to those runs (a run's chain, for ``--resume RUN``).
        """
        rows = self._db.execute(
            """WITH history AS (
                   SELECT s.host, s.step, s.status, s.cause, s.run_id, s.position,
                          r.started_at AS at, r.rowid AS seq
                   FROM steps AS s JOIN runs AS r ON r.id = s.run_id
                   WHERE (?1 IS NULL OR r.inventory_path = ?1)
                     AND (?2 IS NULL OR r.id IN (SELECT value FROM json_each(?2)))),
               last_ok AS (
                   SELECT host, step, MAX(at) AS at FROM history WHERE status = 'ok'
                   GROUP BY host, step)
               SELECT h.host, h.step, h.status, h.cause, h.run_id FROM history AS h
               LEFT JOIN last_ok AS o ON o.host = h.host AND o.step = h.step
               WHERE o.at IS NULL OR h.at > o.at
               ORDER BY h.at, h.seq, h.position""",
            (
                None if inventory_path is None else canonical_inventory_path(inventory_path),
                None if runs is None else json.dumps(list(runs)),
            ),
        ).fetchall()
        chains: dict[tuple[str, str], list[str]] = {}
        latest: dict[tuple[str, str], tuple[str, str | None]] = {}
        for host, step, status, cause, run_id in rows:
            chains.setdefault((host, step), []).append(run_id)
            latest[host, step] = (status, cause)
        owed: dict[str, list[OwedStep]] = {}
        for (host, step), (status, cause) in latest.items():
            if status == "skipped" and (cause or "").startswith(NOT_OWED_SKIP):
                continue
            owed.setdefault(host, []).append(
                OwedStep(step, status, cause, tuple(chains[host, step]))
            )
        return {host: tuple(steps) for host, steps in owed.items()}

    def run_chain(self, run_id: str) -> tuple[str, ...]:
        """``run_id`` with the runs it continues and the runs that continue it, oldest first."""
        rows = self._db.execute(
            """WITH RECURSIVE
                 up(id) AS (SELECT ? UNION SELECT r.resumed_from FROM runs AS r JOIN up
                            ON r.id = up.id WHERE r.resumed_from IS NOT NULL),
                 down(id) AS (SELECT ? UNION SELECT r.id FROM runs AS r JOIN down
                              ON r.resumed_from = down.id)
               SELECT id FROM runs WHERE id IN (SELECT id FROM up UNION SELECT id FROM down)
               ORDER BY started_at, rowid""",
            (run_id, run_id),
        ).fetchall()
        return tuple(run for (run,) in rows)

    def inventories(self) -> list[str]:
        """Every inventory path with a run in the store."""
        rows = self._db.execute("SELECT DISTINCT inventory_path FROM runs ORDER BY 1")
        return [path for (path,) in rows]

    def run_ids(self) -> set[str]:
        """Every run id in the store."""
        return {run for (run,) in self._db.execute("SELECT id FROM runs")}

    def prunable_runs(
        self, inventory_path: PathArg, before: float
    ) -> tuple[list[RunSummary], list[RunSummary]]:
        """(prunable, kept): the inventory's runs started before ``before``, split.

        Kept: a run still running, and every run started at or after the oldest run in any
        chain of ``owed_steps`` (what a bare ``--resume`` still needs). Removing only runs
        older than that leaves ``owed_steps`` unchanged: a debt's runs all stay, and every
        record that decides a step's latest outcome is newer than what is removed or goes
        with all older records of that step. Oldest first.
        """
        owed = self.owed_steps(inventory_path)
        needed = {run for debts in owed.values() for debt in debts for run in debt.runs}
        starts = [
            started
            for (started,) in self._db.execute(
                "SELECT started_at FROM runs WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(needed)),),
            )
        ]
        horizon = min([before, *starts])
        old = self.recent_runs(inventory_path, limit=-1)
        prunable: list[RunSummary] = []
        kept: list[RunSummary] = []
        for run in reversed(old):
            if run.started_at >= before:
                continue
            if run.started_at < horizon and run.outcome != RunOutcome.RUNNING:
                prunable.append(run)
            else:
                kept.append(run)
        return prunable, kept

    def set_log_paths(self, run_id: str, paths: Mapping[tuple[str, str], str]) -> None:
        """Set the log path of steps already recorded, ``(host, step) → path``, in one
        transaction: cluster mode copies a step another node ran as ``node:/its/path``
        (the store otherwise derives each step's log path from its own state dir).

        Raises ``StoreError`` if the database fails (nothing is changed then).
        """
        sql = "UPDATE steps SET log_path = ? WHERE run_id = ? AND host = ? AND step = ?"
        try:
            self._commit(
                [(sql, (path, run_id, host, step)) for (host, step), path in paths.items()]
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: {run_id}: log paths not recorded: {_reason(exc)}"
            ) from exc

    def delete_runs(self, run_ids: Collection[str]) -> None:
        """Remove these runs with their hosts and steps, in one transaction.

        Raises ``sqlite3.Error`` if the database fails (nothing is removed then).
        """
        ids = json.dumps(sorted(run_ids))
        members = "SELECT value FROM json_each(?)"
        self._commit(
            [
                (f"DELETE FROM steps WHERE run_id IN ({members})", (ids,)),
                (f"DELETE FROM orphans WHERE run_id IN ({members})", (ids,)),
                (f"DELETE FROM hosts WHERE run_id IN ({members})", (ids,)),
                (f"DELETE FROM runs WHERE id IN ({members})", (ids,)),
            ]
        )

    def step_durations(
        self,
        databases: Sequence[tuple[str, str]],
        *,
        before: float | None = None,
        last: int = 7,
        max_runs: int = 60,
    ) -> dict[tuple[str, str, str], list[float]]:
        """(address, oracle_sid, step) -> the durations of that database's ``last`` successful
        runs of the step, newest first; only runs started before ``before`` if given.

        A database is its (address, SID), whatever host name an inventory gave it. The
        duration is the latest attempt's (the one that succeeded). Reads runs newest first,
        by primary key, until every database seen has ``last`` values per step and every
        wanted one was seen, or ``max_runs`` runs were read: a year of nightly 500-host
        runs costs what the last week does.
        """
        wanted = {(address, sid) for address, sid in databases}
        found: dict[tuple[str, str, str], list[float]] = {}
        if not wanted:
            return found
        runs = self._db.execute(
            """SELECT id FROM runs WHERE ?1 IS NULL OR started_at < ?1
               ORDER BY started_at DESC, rowid DESC LIMIT ?2""",
            (before, max_runs),
        ).fetchall()
        seen: set[tuple[str, str]] = set()
        for (run_id,) in runs:
            for address, sid, step, duration in self._db.execute(
                """SELECT h.address, h.oracle_sid, s.step, s.ended_at - s.started_at
                   FROM steps AS s JOIN hosts AS h ON h.run_id = s.run_id AND h.name = s.host
                   WHERE s.run_id = ? AND s.status = 'ok'
                     AND s.started_at IS NOT NULL AND s.ended_at IS NOT NULL""",
                (run_id,),
            ):
                if (address, sid) in wanted:
                    seen.add((address, sid))
                    values = found.setdefault((address, sid, step), [])
                    if len(values) < last:
                        values.append(max(0.0, duration))
            if seen == wanted and all(len(v) >= last for v in found.values()):
                break
        return found

    def last_backups(self) -> dict[tuple[str, str, str], BackupRecord]:
        """Per database and step, across every run of every inventory: the last success and
        the last finished attempt (ok, failed or cancelled), keyed by ``(lower(address), sid,
        step)`` (``freshness.database_key``). For ``fanout check`` and the metrics file.

        Reads the ``backups`` table (schema v5), which every final ``StepFinished`` keeps up to
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
