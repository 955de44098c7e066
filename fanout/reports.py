"""`fanout history` and `fanout show`: read the run store, render text or JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fanout.errors import UsageError
from fanout.inventory import load_inventory
from fanout.paths import resolve_state_dir
from fanout.store import open_store
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
    """Raises UsageError when there is no such run, StoreError when the store is unreadable."""
    with open_store(_state_dir(state_dir, None)) as store:
        if run_id is None:
            latest = store.latest_run()
            if latest is None:
                raise UsageError("no runs recorded yet")
            run_id = latest.run_id
        detail = store.run_detail(run_id)
    if detail is None:
        raise UsageError(f"no run {run_id!r} in the run store")
    now = time.time()
    if as_json:
        return json.dumps(show_json(detail, now=now), indent=2) + "\n"
    return render_show(detail, now=now)
