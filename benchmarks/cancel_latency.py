"""Cancel latency of `fanout run` against a real sshd: SIGINT → last remote process gone.

Not a test: run it and read the numbers::

    python benchmarks/cancel_latency.py [--hosts 50] [--runs 3] [--grace 5]

Each run starts the private OpenSSH sshd of the system tests (tests/system/sshd.py; as root it
logs in as the ``fanout-test`` user), points ``--hosts`` inventory hosts at it (one ORACLE_SID
each, all dispatched at once) whose RMAN double runs a 60 s backup with a channel child process,
waits until every double has started, sends SIGINT to fanout and polls /proc every 10 ms until
each host's remote processes (wrapper shell, double, child: its whole process group) are gone.

Printed per run: time to the first and the last host's group gone, fanout's exit time and status.
Then, over all runs: p50 and max of the per-host latencies and of the per-run "last gone".
The double answers SIGINT at once (``exit_delay`` 0), so this measures fanout's side: the signal
round trips over SSH (second channel ``kill``) and the clean-up, not rman's own abort time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.system.sshd import (
    REPO,
    Background,
    SshdServer,
    close_remote_side,
    configure_double,
    fanout_argv,
    fanout_env,
    kill_remote_processes,
    open_remote_side,
    read_invocations,
    read_proc,
    remote_processes,
    start_sshd,
    stop_sshd,
    wait_until,
    write_inventory,
)

POLL = 0.01


def alive(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.state != "Z"


def one_run(
    workdir: Path, server: SshdServer, home: Path, hosts: int, grace: float
) -> tuple[list[float], float, int]:
    """Per-host latencies (s), fanout's exit time (s) and exit status of one cancelled run."""
    (home / "invocations.jsonl").unlink(missing_ok=True)
    inventory = write_inventory(
        workdir,
        server,
        home,
        [{"sid": f"DB{n:03d}"} for n in range(1, hosts + 1)],
        {"max_parallel": hosts, "cancel_grace": grace},
    )
    env = fanout_env(workdir / "home")
    with Background(fanout_argv("run", inventory, "--batch"), cwd=REPO, env=env) as run:
        wait_until(
            lambda: [r for r in read_invocations(home) if r["event"] == "start"][hosts - 1 :],
            120,
            interval=0.05,
            what=f"{hosts} doubles started",
        )
        records = [r for r in read_invocations(home) if r["event"] == "start"]
        groups = {
            r["sid"]: {r["pid"], r["pgid"], *([r["child_pid"]] if r["child_pid"] else [])}
            for r in records
        }
        gone: dict[str, float] = {}
        sent = time.monotonic()
        os.kill(run.pid, signal.SIGINT)
        deadline = sent + grace + 30
        while len(gone) < len(groups) and time.monotonic() < deadline:
            now = time.monotonic()
            for sid, pids in groups.items():
                if sid not in gone and not any(alive(pid) for pid in pids):
                    gone[sid] = now - sent
            time.sleep(POLL)
        status = run.proc.wait(grace + 30)
        exited = time.monotonic() - sent
    left = remote_processes(home)
    if left or len(gone) < len(groups):
        raise RuntimeError(f"remote processes left after the cancel: {left}")
    return sorted(gone.values()), exited, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--grace", type=float, default=5.0, help="settings.cancel_grace")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="fanout-cancel-bench-"))
    remote = open_remote_side()
    (workdir / "sshd").mkdir()
    server, sshd = start_sshd(workdir / "sshd", remote)
    home = remote.new_oracle_home("bench")
    per_host: list[float] = []
    last: list[float] = []
    try:
        configure_double(home, {"*": {"behaviour": "slow", "seconds": 60, "child": True}})
        print(f"{args.hosts} hosts, cancel_grace {args.grace:g}s, load {os.getloadavg()[0]:.1f}")
        for number in range(1, args.runs + 1):
            latencies, exited, status = one_run(workdir, server, home, args.hosts, args.grace)
            per_host += latencies
            last.append(latencies[-1])
            print(
                f"run {number}: first group gone {latencies[0] * 1000:.0f} ms,"
                f" last {latencies[-1] * 1000:.0f} ms, fanout exited {exited * 1000:.0f} ms"
                f" (status {status})"
            )
        print(
            f"per host: p50 {statistics.median(per_host) * 1000:.0f} ms,"
            f" max {max(per_host) * 1000:.0f} ms ({len(per_host)} hosts);"
            f" last gone per run: p50 {statistics.median(last) * 1000:.0f} ms,"
            f" max {max(last) * 1000:.0f} ms"
        )
    finally:
        with contextlib.suppress(Exception):
            kill_remote_processes(home)
        stop_sshd(server, sshd)
        close_remote_side(remote)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
