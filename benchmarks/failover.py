"""Cluster mode: failover time after kill -9 of the leader, and the per-step cost of cluster mode.

Not a test: run it and read the numbers::

    python benchmarks/failover.py [--runs 5] [--ttl 5] [--hosts 20]

Failover: each run starts a fresh 3-member etcd on loopback (tests/cluster/etcd.py, fast raft
timers) and two ``fanout run --json`` nodes of one group against the private sshd of the system
tests (RMAN double, 3 hosts x 3 steps of 2 s). Once the leader has started its first step it is
killed with SIGKILL; failover = the ``at`` of the new leader's first ``step_started`` event minus
the kill time (both wall clock, one machine). Printed per run, then p50 and max.

Per-step cost: one node runs ``--hosts`` hosts x 3 steps of 0.05 s, once locally (no
``settings.cluster``) and once in cluster mode (etcd as above), ``--runs`` times each; the
difference of the medians of wall time and of fanout's own CPU time, divided by the steps.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster.etcd import EtcdCluster, start_cluster, stop_cluster
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
    start_sshd,
    stop_sshd,
    wait_until,
    write_inventory,
)


def node_env(work: Path, name: str) -> dict[str, str]:
    env = fanout_env(work / name)
    env.update(FANOUT_NODE=name, FANOUT_STATE=str(work / name / "state"))
    return env


def inventory(
    work: Path, sshd: SshdServer, home: Path, sids: list[str], cluster: dict[str, Any] | None
) -> Path:
    settings: dict[str, Any] = {"state_dir": "${FANOUT_STATE}", "max_parallel": 64}
    if cluster is not None:
        settings["cluster"] = cluster
    return write_inventory(work, sshd, home, [{"sid": s} for s in sids], settings)


def first_step_at(events: list[dict[str, Any]]) -> float | None:
    """Epoch seconds of the first step_started event (``at`` is ISO-8601 UTC, millis)."""
    at = next((e["at"] for e in events if e["event"] == "step_started"), None)
    if at is None:
        return None
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def failover_once(work: Path, sshd: SshdServer, home: Path, ttl: float) -> float:
    work.mkdir(parents=True, exist_ok=True)
    etcd = start_cluster(work / "etcd")
    try:
        configure_double(home, {"*": {"seconds": 2.0}})
        cluster = {"endpoints": etcd.endpoints, "node": "${FANOUT_NODE}", "ttl": f"{ttl:g}s"}
        inv = inventory(work, sshd, home, ["B1", "B2", "B3"], cluster)
        nodes = {
            n: Background(fanout_argv("run", inv, "--json"), cwd=REPO, env=node_env(work, n))
            for n in ("n1", "n2")
        }
        try:
            leader = wait_until(
                lambda: next((n for n, b in nodes.items() if "leading run" in b.stderr), None),
                30,
            )
            wait_until(lambda: first_step_at(nodes[leader].events()), 30)
            nodes[leader].proc.send_signal(signal.SIGKILL)
            killed = time.time()
            (other,) = (b for n, b in nodes.items() if n != leader)
            started = wait_until(lambda: first_step_at(other.events()), ttl + 30)
            other.finish(120)
            return started - killed
        finally:
            for b in nodes.values():
                b.kill()
    finally:
        stop_cluster(etcd)
        kill_remote_processes(home)


def timed_run(work: Path, inv: Path) -> tuple[float, float]:
    began = time.monotonic()
    with Background(fanout_argv("run", inv, "--batch"), cwd=REPO, env=node_env(work, "n1")) as b:
        status, _, err, usage = b.finish_with_usage(300)
    if status != 0:
        raise RuntimeError(f"run failed ({status}): {err}")
    return time.monotonic() - began, usage.ru_utime + usage.ru_stime


def step_cost(work: Path, sshd: SshdServer, home: Path, hosts: int, runs: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    configure_double(home, {"*": {"seconds": 0.05}})
    sids = [f"C{i}" for i in range(hosts)]
    steps = hosts * 3
    results: dict[str, list[tuple[float, float]]] = {"local": [], "cluster": []}
    for i in range(runs):
        results["local"].append(timed_run(work, inventory(work, sshd, home, sids, None)))
        etcd: EtcdCluster = start_cluster(work / f"etcd-cost{i}")
        try:
            cluster = {"endpoints": etcd.endpoints, "node": "n1", "group": f"cost{i}"}
            inv = inventory(work, sshd, home, sids, cluster)
            results["cluster"].append(timed_run(work, inv))
        finally:
            stop_cluster(etcd)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in results.items()}  # fmt: skip
    for kind, (wall, cpu) in med.items():
        print(f"{kind:8s} {hosts} hosts x 3 steps: wall {wall:.2f} s, fanout CPU {cpu:.2f} s")
    wall_ms = (med["cluster"][0] - med["local"][0]) / steps * 1000
    cpu_ms = (med["cluster"][1] - med["local"][1]) / steps * 1000
    print(f"cluster mode per step: +{wall_ms:.1f} ms wall, +{cpu_ms:.1f} ms fanout CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--cost-only", action="store_true", help="skip the failover runs")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    work = Path(tempfile.mkdtemp(prefix="fanout-failover-"))
    remote = open_remote_side()
    (work / "sshd").mkdir()
    sshd, proc = start_sshd(work / "sshd", remote)
    home = remote.new_oracle_home("failover")
    try:
        times = []
        for i in range(0 if args.cost_only else args.runs):
            took = failover_once(work / f"run{i}", sshd, home, args.ttl)
            times.append(took)
            print(f"run {i + 1}: leader killed -> first step of the new leader {took:.2f} s")
        if times:
            print(
                f"failover at TTL {args.ttl:g} s over {len(times)} runs: "
                f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s, "
                f"min {min(times):.2f} s"
            )
        step_cost(work / "cost", sshd, home, args.hosts, args.runs)
    finally:
        stop_sshd(sshd, proc)
        kill_remote_processes(home)
        remote.remove_oracle_home(home)
        close_remote_side(remote)


if __name__ == "__main__":
    main()
