"""Monitoring wiring: ``fanout check`` and what follows every run (metrics file, notify).

``check_inventory`` loads the inventory, reads the run store (or, with ``connect``, asks every
selected host) and returns the exit code and the output in the chosen format; it then
rewrites ``settings.metrics_file``. ``after_run`` is called by ``fanout run`` once the engine
is done, still under the run lock: it rewrites the metrics file and runs ``settings.notify``.
Neither ever changes a run's exit code; their problems come back as warnings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fanout.errors import FanoutError, InventoryError
from fanout.freshness import FreshnessReport, evaluate, unknown_report
from fanout.inventory import load_inventory
from fanout.lock import canonical_inventory_path
from fanout.model import Host, Inventory, select_hosts
from fanout.nagios import NagiosCode, plugin_output
from fanout.paths import resolve_state_dir

__all__ = ["CheckOptions", "OutputFormat", "after_run", "check_inventory", "unknown_output"]

Warn = Callable[[str], None]


class OutputFormat(StrEnum):
    TEXT = "text"
    NAGIOS = "nagios"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class CheckOptions:
    inventory: Path
    limit: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    output: OutputFormat = OutputFormat.TEXT
    connect: bool = False
    state_dir: Path | None = None


def check_inventory(options: CheckOptions, warn: Warn) -> tuple[int, str]:
    """(exit code 0-3, output). Raises FanoutError (InventoryError, no host selected): the
    caller prints it with ``unknown_output`` and exits 3."""
    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory.hosts, options.limit, options.tags)
    if not hosts:
        raise InventoryError(str(options.inventory), None, "", "no host matches the selection")
    state_dir = resolve_state_dir(options.state_dir or inventory.settings.state_dir)
    name = canonical_inventory_path(inventory.path)
    if options.connect:
        from fanout.preflight import PreflightReport, run_preflight
        from fanout.transport.ssh import SshTransport

        max_connecting = inventory.settings.max_connecting

        async def ask() -> PreflightReport:
            transport = SshTransport(max_connecting=max_connecting)
            found = await run_preflight(transport, hosts, max_connecting=max_connecting)
            return PreflightReport(name, time.time(), found)

        report: FreshnessReport | PreflightReport = asyncio.run(ask())
    else:
        report = _freshness(inventory, hosts, state_dir, name)
    write_metrics(inventory, state_dir, warn)
    match options.output:
        case OutputFormat.NAGIOS:
            text = report.nagios()
        case OutputFormat.JSON:
            text = json.dumps(report.document(), indent=2) + "\n"
        case OutputFormat.TEXT:
            text = report.text()
    return int(report.state), text


def _freshness(
    inventory: Inventory, selected: Sequence[Host], state_dir: Path, name: str
) -> FreshnessReport:
    from fanout.store import open_store

    now = time.time()
    try:
        with open_store(state_dir) as store:
            records = store.last_backups()
    except FanoutError as exc:
        return unknown_report(name, selected, now, str(exc))
    except Exception as exc:  # sqlite3.Error, OSError: the store is unreadable, say so
        return unknown_report(name, selected, now, f"{type(exc).__name__}: {exc}")
    return evaluate(name, selected, records, now=now, warn_fraction=inventory.settings.max_age_warn)


def unknown_output(output: OutputFormat, inventory: Path, message: str) -> str:
    """What ``fanout check`` prints when it cannot check at all (exit 3)."""
    match output:
        case OutputFormat.NAGIOS:
            return plugin_output(NagiosCode.UNKNOWN, message)
        case OutputFormat.JSON:
            document = {
                "format": "fanout-check",
                "version": 1,
                "mode": "error",
                "inventory": str(inventory),
                "checked_at": time.time(),
                "state": NagiosCode.UNKNOWN.name,
                "exit_code": int(NagiosCode.UNKNOWN),
                "summary": message,
                "error": message,
            }
            return json.dumps(document, indent=2) + "\n"
        case OutputFormat.TEXT:
            return f"UNKNOWN: {message}\n"


def write_metrics(inventory: Inventory, state_dir: Path, warn: Warn) -> None:
    """Rewrite ``settings.metrics_file`` from the store (no-op when unset); problems: ``warn``."""
    path = inventory.settings.metrics_file
    if path is None:
        return
    from fanout.metrics import LastRun, render_metrics, write_textfile
    from fanout.store import open_store

    name = canonical_inventory_path(inventory.path)
    try:
        with open_store(state_dir) as store:
            records = store.last_backups()
            runs = store.recent_runs(inventory.path, limit=50)
        last = next(
            (
                LastRun(r.exit_code, r.ended_at)
                for r in runs
                if r.exit_code is not None and r.ended_at is not None
            ),
            None,
        )
        write_textfile(path, render_metrics(name, inventory.hosts, records, last))
    except Exception as exc:  # never fail a run or a check over its metrics
        warn(f"metrics file {path} not written: {exc}")


def after_run(inventory: Inventory, state_dir: Path, exit_code: int, warn: Warn) -> None:
    """After ``fanout run``: the metrics file, then ``settings.notify`` (see ``fanout.notify``)."""
    from fanout.notify import run_notify, should_notify

    write_metrics(inventory, state_dir, warn)
    notify = inventory.settings.notify
    if notify is None or not should_notify(notify, exit_code):
        return
    from fanout.store import open_store
    from fanout.ui.history import show_json

    try:
        with open_store(state_dir) as store:
            latest = store.latest_run(inventory.path)
            detail = None if latest is None else store.run_detail(latest.run_id)
    except Exception as exc:
        warn(f"notify command not run: run store unreadable: {exc}")
        return
    if detail is None:
        warn("notify command not run: the run is not in the run store")
        return
    summary = json.dumps(show_json(detail, now=time.time()), indent=2) + "\n"
    problem = run_notify(
        notify,
        summary,
        run_id=detail.run.run_id,
        exit_code=exit_code,
        inventory=detail.run.inventory_path,
    )
    if problem is not None:
        warn(problem)
