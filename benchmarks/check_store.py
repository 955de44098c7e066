"""How long `fanout check` takes on a store holding a year of nightly runs, and what keeping
the ``backups`` table costs a run.

Builds ``<tmp>/fanout.db`` with RUNS runs x HOSTS hosts x 3 steps (rows inserted in bulk, one
transaction per run, as the store would leave them), drops it back to schema v4 and times the
v5 migration (the one-time backfill of ``backups``). Then times ``Store.last_backups`` +
``freshness.evaluate`` + the Nagios and JSON renderings, ``metrics.render_metrics``, and one
more night through ``Store.emit`` (StepStarted + StepFinished per step, each its own
``synchronous=FULL`` transaction; StepFinished now also updates ``backups``).

    python benchmarks/check_store.py [--runs 365] [--hosts 500]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from fanout.events import PlannedHost, RunStarted, StepFinished, StepStarted, StepStatus
from fanout.freshness import evaluate
from fanout.metrics import render_metrics
from fanout.model import Host
from fanout.store import open_store

STEPS = ("full", "archivelog", "controlfile")


def build(state_dir: Path, runs: int, hosts: int) -> None:
    """Rows as the store writes them, inserted in one transaction per run (a year builds in
    seconds, not the hours of one fsync per event)."""
    with open_store(state_dir):
        pass  # create and migrate
    db = sqlite3.connect(state_dir / "fanout.db", isolation_level=None)
    start = time.time() - runs * 86400.0
    for run in range(runs):
        run_id = f"2026{run:04d}T010000Z-{run % 65536:04x}"
        t0 = start + run * 86400.0
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO runs (id, inventory_path, started_at, ended_at, outcome, exit_code)"
            " VALUES (?, '/etc/fanout/nightly.yaml', ?, ?, 'ok', 0)",
            (run_id, t0, t0 + 3600),
        )
        for h in range(hosts):
            db.execute(
                "INSERT INTO hosts (run_id, name, position, priority, address, oracle_sid,"
                " status) VALUES (?, ?, ?, 1, ?, ?, 'ok')",
                (run_id, f"db{h:04d}", h, f"db{h:04d}.example", f"S{h:04d}"),
            )
            for position, step in enumerate(STEPS):
                status = "failed" if (run + h + position) % 97 == 0 else "ok"
                db.execute(
                    "INSERT INTO steps (run_id, host, step, position, status, attempt,"
                    " started_at, ended_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    (run_id, f"db{h:04d}", step, position, status, t0 + h, t0 + h + 60),
                )
        db.execute("COMMIT")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=365)
    parser.add_argument("--hosts", type=int, default=500)
    args = parser.parse_args()
    hosts = [
        Host(f"db{h:04d}", f"db{h:04d}.example", 1, f"S{h:04d}", "/oh") for h in range(args.hosts)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        t = time.perf_counter()
        build(state_dir, args.runs, args.hosts)
        rows = args.runs * args.hosts * len(STEPS)
        print(f"store: {rows} step rows, built in {time.perf_counter() - t:.1f} s")
        db = sqlite3.connect(state_dir / "fanout.db", isolation_level=None)
        db.execute("DROP TABLE backups")
        db.execute("PRAGMA user_version = 4")  # v5 adds backups (store.MIGRATIONS)
        db.close()
        t = time.perf_counter()
        with open_store(state_dir):
            pass
        print(f"migration to v5 (backfill of backups): {time.perf_counter() - t:.2f} s")
        for attempt in range(3):
            t = time.perf_counter()
            with open_store(state_dir) as store:
                records = store.last_backups()
            query = time.perf_counter() - t
            t = time.perf_counter()
            report = evaluate("/inv.yaml", hosts, records, now=time.time(), warn_fraction=0.8)
            nagios = report.nagios()
            document = json.dumps(report.document())
            render = time.perf_counter() - t
            t = time.perf_counter()
            metrics = render_metrics("/inv.yaml", hosts, records, None)
            prom = time.perf_counter() - t
            print(
                f"#{attempt + 1}: last_backups {query * 1000:.0f} ms, evaluate+nagios+json"
                f" {render * 1000:.0f} ms, metrics {prom * 1000:.0f} ms"
                f" ({len(nagios)} B nagios, {len(document)} B json, {len(metrics)} B metrics)"
            )
        night(state_dir, hosts)


def night(state_dir: Path, hosts: list[Host]) -> None:
    """One more run's step events through Store.emit: ms per StepStarted and StepFinished."""
    run_id = "20271231T010000Z-ffff"
    planned = tuple(PlannedHost(h.name, 1, h.oracle_sid, h.address, STEPS) for h in hosts)
    now = time.time()
    with open_store(state_dir) as store:
        store.emit(RunStarted(run_id, "/etc/fanout/nightly.yaml", planned, 8, now))
        started = finished = 0.0
        for h in hosts:
            for step in STEPS:
                t = time.perf_counter()
                store.emit(StepStarted(run_id, h.name, step, 1, "rman", now))
                started += time.perf_counter() - t
                t = time.perf_counter()
                store.emit(
                    StepFinished(run_id, h.name, step, 1, StepStatus.OK, 0, None, 1.0, False, now)
                )
                finished += time.perf_counter() - t
        assert store.write_error is None
    count = len(hosts) * len(STEPS)
    print(
        f"one night through Store.emit: StepStarted {started / count * 1000:.3f} ms,"
        f" StepFinished (with backups) {finished / count * 1000:.3f} ms per event"
    )


if __name__ == "__main__":
    main()
