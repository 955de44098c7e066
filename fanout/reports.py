"""`fanout history` and `fanout show`: read the run store, render text or JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from fanout.errors import UsageError
from fanout.inventory import load_inventory
from fanout.paths import choose_state_dir, existing_host_log
from fanout.scheduler import HISTORY_RUNS, expected_duration
from fanout.store import RunDetail, Store, open_store
from fanout.ui.history import (
    history_json,
    render_failed,
    render_history,
    render_show,
    render_show_brief,
    select_run_hosts,
    show_json,
)


def _state_dir(explicit: Path | None, inventory: Path | None) -> Path:
    """--state-dir, else $FANOUT_STATE_DIR, else the inventory's settings.state_dir, else the
    XDG default. Raises InventoryError for a bad inventory."""
    configured = None
    if explicit is None and inventory is not None:
        configured = load_inventory(inventory).settings.state_dir
    return choose_state_dir(explicit, configured)


def history_text(inventory: Path | None, count: int, as_json: bool, state_dir: Path | None) -> str:
    """Raises InventoryError (bad inventory) or StoreError."""
    with open_store(_state_dir(state_dir, inventory)) as store:
        runs = store.recent_runs(inventory, limit=count)
        where = store.path
    now = time.time()
    if as_json:
        return json.dumps(history_json(runs, now=now), indent=2) + "\n"
    if not runs:
        return f"no runs recorded yet in {where}\n"  # which store was read: see choose_state_dir
    return render_history(runs, now=now)


def show_text(
    run_id: str | None,
    as_json: bool,
    state_dir: Path | None,
    *,
    inventory: Path | None = None,
    hosts: Sequence[str] = (),
    failed: bool = False,
    all_hosts: bool = False,
) -> str:
    """One run (default: the latest, of ``inventory`` when given).

    Text: failures first (``render_show_brief``); ``all_hosts`` every host and step;
    ``hosts`` (globs) every step of the matching hosts; ``failed`` only what failed or was
    cancelled, nothing at all when nothing did. JSON: the run, its hosts narrowed by
    ``hosts`` and ``failed``. Raises FanoutError when there is no such run or no host
    matches, StoreError when the store is unreadable, InventoryError for a bad inventory.
    """
    directory = _state_dir(state_dir, inventory)
    with open_store(directory) as store:
        if run_id is None:
            latest = store.latest_run(inventory)
            if latest is None:
                where = f" of {inventory}" if inventory is not None else ""
                raise UsageError(f"no runs{where} recorded yet in {store.path}")
            run_id = latest.run_id
        detail = store.run_detail(run_id)
        if detail is None:
            raise UsageError(f"no run {run_id!r} in the run store {directory}")
        expected = _expected_before(store, detail)
    if hosts:
        detail = select_run_hosts(detail, hosts)
        if not detail.hosts:
            raise UsageError(f"no host of run {run_id} matches {' '.join(hosts)}")
    now = time.time()

    def host_log(name: str) -> str:
        return str(existing_host_log(directory, detail.run.run_id, name))

    if as_json:
        data = show_json(detail, now=now, expected=expected)
        if failed:
            wanted = ("failed", "cancelled")
            data["hosts"] = [
                h
                for h in data["hosts"]  # type: ignore[attr-defined]
                if h["status"] in wanted or any(s["status"] in wanted for s in h["steps"])
            ]
        return json.dumps(data, indent=2) + "\n"
    if failed:
        return render_failed(detail, host_log)
    if hosts or all_hosts:
        return render_show(detail, now=now, expected=expected)
    return render_show_brief(detail, now=now, host_log=host_log)


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
