"""The 2,000-host run on one machine: ``fanout demo --hosts N --max-parallel P --batch``.

    python benchmarks/scale.py [--hosts 2000] [--max-parallel 200] [--json]

Not a test. The demo's simulated fleet is an in-process asyncssh server whose hosts run
the local ``/bin/sh`` and the RMAN fake, so the fanout process carries the client *and*
the server side of every SSH connection; the shells and fakes are its child processes.
Measured: wall time; the process's own CPU (user + system, from /proc/<pid>/stat just
before it exits, children excluded) and that per host; its peak RSS (VmHWM); the most
file descriptors it held at once (sampled every 0.2 s); the run's exit code and host
outcomes from its last line; the run store's size (``fanout.db`` + WAL) and the logs'.
The demo scripts two failing hosts (``--failures 2``): exit 1 with exactly those is the
expected result. ``benchmarks/run.py --scale`` runs it and adds a section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, float, int, int] | None:
    """(user s, system s, VmHWM KiB, open fds) of ``pid``; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    hwm = re.search(r"VmHWM:\s+(\d+)", status)
    return int(fields[11]) / TICK, int(fields[12]) / TICK, int(hwm[1]) if hwm else 0, fds


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(hosts: int, max_parallel: int, state_dir: Path) -> dict[str, object]:
    argv = [PYTHON, "-m", "fanout", "demo", "--hosts", str(hosts)]
    argv += ["--max-parallel", str(max_parallel), "--batch", "--state-dir", str(state_dir)]
    start = time.monotonic()
    out = (state_dir.parent / "scale-stdout.log").open("wb")
    err = (state_dir.parent / "scale-stderr.log").open("wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    user = system = 0.0
    hwm = peak_fds = 0
    # waitid(WNOWAIT): once it has exited it stays a zombie, its own CPU counters readable
    while True:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        now = _proc(proc.pid)
        if now is not None:
            user, system = now[0], now[1]
            hwm, peak_fds = max(hwm, now[2]), max(peak_fds, now[3])  # a zombie shows none
        if info is not None:
            break
        time.sleep(0.2)
    code = proc.wait()
    wall = time.monotonic() - start
    out.close()
    err.close()
    lines = (state_dir.parent / "scale-stdout.log").read_text().splitlines()
    summary = next((line for line in reversed(lines) if line.startswith("fanout run ")), "")
    db = sum(_size(p) for n in ("fanout.db", "fanout.db-wal") if (p := state_dir / n).exists())
    return {
        "hosts": hosts,
        "max_parallel": max_parallel,
        "exit": code,
        "summary": summary,
        "wall_s": round(wall, 1),
        "cpu_s": round(user + system, 1),
        "system_s": round(system, 1),
        "cpu_ms_per_host": round((user + system) / hosts * 1000, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
        "peak_fds": peak_fds,
        "store_mib": round(db / 2**20, 2),
        "logs_mib": round(_size(state_dir / "logs") / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--max-parallel", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fanout-scale-"))
    try:
        result = run(args.hosts, args.max_parallel, work / "state")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
