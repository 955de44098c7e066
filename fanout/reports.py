"""`fanout history` and `fanout show`: read the run store, render text or JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fanout.errors import FanoutError
from fanout.inventory import load_inventory
from fanout.paths import resolve_state_dir
from fanout.scheduler import HISTORY_RUNS, expected_duration
from fanout.store import RunDetail, Store, open_store
from fanout.ui.history import history_json, render_history, render_show, show_json


def _state_dir(explicit: Path | None, inventory: Path | None) -> Path:
    """--state-dir, else the inventory's settings.state_dir, else the XDG default."""
    if explicit is None and inventory is not None:
        explicit = load_inventory(inventory).settings.state_dir
    return resolve_state_dir(explicit)


def history_text(inventory: Path | None, count: int, as_json: bool, state_dir: Path | None) -> str:
    """Raises InventoryError (bad inventory) or StoreError."""
    with open_store(_state_dir(state_dir, inventory)) as store:
        runs = store.recent_runs(inventory, limit=count)
    now = time.time()
    if as_json:
        return json.dumps(history_json(runs, now=now), indent=2) + "\n"
    if not runs:
        return "no runs recorded yet\n"
    return render_history(runs, now=now)


def show_text(run_id: str | None, as_json: bool, state_dir: Path | None) -> str:
    """Raises FanoutError when there is no such run, StoreError when the store is unreadable."""
    with open_store(_state_dir(state_dir, None)) as store:
        if run_id is None:
            latest = store.latest_run()
            if latest is None:
                raise FanoutError("no runs recorded yet")
            run_id = latest.run_id
        detail = store.run_detail(run_id)
        if detail is None:
            raise FanoutError(f"no run {run_id!r} in the run store")
        expected = _expected_before(store, detail)
    now = time.time()
    if as_json:
        return json.dumps(show_json(detail, now=now, expected=expected), indent=2) + "\n"
    return render_show(detail, now=now, expected=expected)


def _expected_before(store: Store, detail: RunDetail) -> dict[tuple[str, str], float | None]:
    """(host, step) -> what history expected before this run: the median of the last
    successful durations of that database's step among the runs that started earlier."""
    databases = [(h.address, h.oracle_sid) for h in detail.hosts]
    durations = store.step_durations(databases, before=detail.run.started_at, last=HISTORY_RUNS)
    return {
        (h.name, s.step): expected_duration(durations.get((h.address, h.oracle_sid, s.step), []))
        for h in detail.hosts
        for s in h.steps
    }
