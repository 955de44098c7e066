"""Retention: remove run records and log directories older than a cut-off.

``settings.retention`` (e.g. ``30d``) prunes at the end of every run of that inventory;
``fanout prune [INVENTORY] [--older-than 30d] [--dry-run]`` does it on demand. Never
removed: a run still running, and any run a bare ``--resume`` still needs — every run
from the oldest one in a chain of ``Store.owed_steps`` on (``Store.prunable_runs`` says
why that keeps every debt). A log directory ``logs/<run id>/`` goes with its run; one
whose run is in no store (the store was lost or replaced) goes once the time in its
run id is past the cut-off. Nothing here prints: ``prune_text`` renders the result.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fanout.paths import run_log_dir
from fanout.store import RunSummary, open_store

RUN_ID_TIME = "%Y%m%dT%H%M%SZ"  # the prefix of steps.new_run_id()


@dataclass(frozen=True, slots=True)
class Removed:
    """One thing pruned (or, on a dry run, that would be)."""

    what: str  # "run" or "logs"
    name: str  # the run id, or the log directory
    detail: str  # inventory and start of a run; why an orphan log directory goes
    log_bytes: int


@dataclass(slots=True)
class PruneResult:
    removed: list[Removed] = field(default_factory=list)
    kept: list[RunSummary] = field(default_factory=list)  # old, but a resume needs them
    errors: list[str] = field(default_factory=list)  # log directories that could not go

    @property
    def log_bytes(self) -> int:
        return sum(item.log_bytes for item in self.removed)


def prune(
    state_dir: Path,
    older_than: float,
    *,
    inventory: Path | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneResult:
    """Remove the runs (of ``inventory``, else of every inventory in the store) started more
    than ``older_than`` seconds before ``now``, with their logs, and orphan log directories
    as old. Store rows go first, in one transaction per inventory, then the directories.

    Raises ``StoreError`` if the store cannot be opened and ``sqlite3.Error`` if it fails
    while deleting (then no row of that inventory is removed); a log directory that cannot
    be removed is reported in ``errors``, never raised.
    """
    cutoff = (time.time() if now is None else now) - older_than
    result = PruneResult()
    with open_store(state_dir) as store:
        paths = [str(inventory)] if inventory is not None else store.inventories()
        for path in paths:
            prunable, kept = store.prunable_runs(path, cutoff)
            result.kept.extend(kept)
            if not prunable:
                continue
            if not dry_run:
                store.delete_runs([run.run_id for run in prunable])
            for run in prunable:
                directory = run_log_dir(state_dir, run.run_id)
                started = _when(run.started_at)
                detail = f"{run.inventory_path}, started {started}, {run.outcome}"
                result.removed.append(Removed("run", run.run_id, detail, _size(directory)))
                _remove(directory, dry_run, result)
        known = store.run_ids()
    for directory in _orphans(state_dir, known, cutoff):
        detail = "no run of that id in the run store"
        result.removed.append(Removed("logs", str(directory), detail, _size(directory)))
        _remove(directory, dry_run, result)
    return result


def _orphans(state_dir: Path, known: set[str], cutoff: float) -> Iterator[Path]:
    """Log directories of runs no store knows, whose run id dates them before ``cutoff``."""
    logs = state_dir / "logs"
    if not logs.is_dir():
        return
    for directory in sorted(logs.iterdir()):
        if not directory.is_dir() or directory.name in known:
            continue
        try:
            stamp = datetime.strptime(directory.name[:16], RUN_ID_TIME).replace(tzinfo=UTC)
        except ValueError:
            continue  # not a run's directory: leave it alone
        if stamp.timestamp() < cutoff:
            yield directory


def _size(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def _remove(directory: Path, dry_run: bool, result: PruneResult) -> None:
    if dry_run or not directory.exists():
        return
    try:
        shutil.rmtree(directory)
    except OSError as exc:
        result.errors.append(f"{directory}: {exc.strerror or exc}")


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


def format_bytes(count: int) -> str:
    """``512 B``, ``9.1 KiB``, ``3.4 MiB``, ``1.2 GiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def prune_text(result: PruneResult, *, dry_run: bool, each: bool = True) -> str:
    """One line per thing removed (``each``), then one line of totals and what was kept."""
    verb = "would remove" if dry_run else "removed"
    lines: list[str] = []
    if each:
        lines.extend(
            f"{verb} {item.what} {item.name} ({item.detail};"
            f" {format_bytes(item.log_bytes)} of logs)"
            for item in result.removed
        )
    runs = sum(item.what == "run" for item in result.removed)
    orphans = len(result.removed) - runs
    total = f"{verb} {runs} run{'s' if runs != 1 else ''}"
    if orphans:
        total += f" and {orphans} orphan log director{'ies' if orphans != 1 else 'y'}"
    total += f", {format_bytes(result.log_bytes)} of logs"
    if result.kept:
        total += f"; kept {len(result.kept)} older run{'s' if len(result.kept) != 1 else ''}"
        total += " that a resume still needs (or still running)"
    lines.append(total)
    lines.extend(f"cannot remove {error}" for error in result.errors)
    return "\n".join(lines) + "\n"
