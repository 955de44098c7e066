"""Output size of a 200-host run with a few failures, and log bytes per host per run.

Not a test: run it and read the numbers::

    python benchmarks/output_lines.py [--hosts 200] [--failures 4] [--speed 40]

Runs the real ``run_inventory`` against the simulated fleet (``fanout.sim``, as ``fanout
demo`` does) once per output mode, then counts the lines of ``--batch``, ``--quiet``,
``--batch --summary-only`` (when this fanout has it), ``show`` and ``show --failed`` (when
it has it), the log bytes each host wrote per run (``logs/<run>/<host>.log``, or the directory
``logs/<run>/<host>/`` of earlier releases) and the size of
the run store per host and run.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fanout import reports
from fanout.runner import RunOptions, run_inventory
from fanout.sim.demo import INVENTORY_NAME, build_inventory
from fanout.sim.server import SimFleet


def _lines(text: str) -> int:
    return len(text.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--failures", type=int, default=4)
    parser.add_argument("--speed", type=float, default=40.0)
    args = parser.parse_args()
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    modes: list[tuple[str, dict[str, bool]]] = [
        ("--batch", {"batch": True}),
        ("--quiet", {"batch": True, "quiet": True}),
    ]
    if "summary_only" in fields:
        modes.append(("--batch --summary-only", {"batch": True, "summary_only": True}))
    with tempfile.TemporaryDirectory(prefix="fanout-lines-") as tmp:
        state_dir = Path(tmp)
        for label, flags in modes:
            fleet = SimFleet(speed=args.speed)  # one per run: serve() closes its listener
            try:
                files = fleet.write_client_files(state_dir / "sim")
                document, behaviours, notes = build_inventory(
                    fleet.port,
                    fleet.refused_port,
                    files,
                    state_dir,
                    hosts=args.hosts,
                    failures=args.failures,
                    speed=args.speed,
                )
                fleet.world.behaviours = behaviours
                path = state_dir / INVENTORY_NAME
                path.write_text(yaml.safe_dump(document, sort_keys=False))
                if label == modes[0][0]:
                    print(f"{args.hosts} hosts, scripted:", *notes, sep="\n")
                out = io.StringIO()
                options = RunOptions(inventory=path, state_dir=state_dir, **flags)  # type: ignore[arg-type]
                code = run_inventory(options, out, serve=fleet.serve)
                text = out.getvalue()
                summary = sum(1 for line in text.splitlines() if not line[:4].isdigit())
                print(
                    f"{label:<24} {_lines(text):>6} lines (exit {code}),"
                    f" {summary} of them the end-of-run summary"
                )
            finally:
                fleet.close()
        params = inspect.signature(reports.show_text).parameters
        if "failed" in params:
            shows = [
                ("show", {}),
                ("show --all", {"all_hosts": True}),
                ("show --failed", {"failed": True}),
            ]
            for label, kw in shows:
                text = reports.show_text(None, False, state_dir, **kw)  # type: ignore[arg-type]
                print(f"{label:<24} {_lines(text):>6} lines")
        else:
            print(f"{'show':<24} {_lines(reports.show_text(None, False, state_dir)):>6} lines")
        sizes = [
            sum(f.stat().st_size for f in host.iterdir()) if host.is_dir() else host.stat().st_size
            for run in (state_dir / "logs").iterdir()
            for host in run.iterdir()
        ]
        print(
            f"log bytes per host per run: median {statistics.median(sizes):.0f},"
            f" max {max(sizes)}, total {sum(sizes)} for {len(sizes)} host-runs"
        )
        db = sum(f.stat().st_size for f in state_dir.glob("fanout.db*"))
        print(
            f"run store: {db} bytes for {len(sizes)} host-runs ({db / len(sizes):.0f} per host-run)"
        )


if __name__ == "__main__":
    main()
