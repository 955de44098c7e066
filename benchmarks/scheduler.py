"""Scheduler benchmark: makespan of synthetic fleets in simulated time (no SSH, no sleeping).

    python benchmarks/scheduler.py                 # 100 fleets, prints the table
    python benchmarks/scheduler.py --markdown      # the RESULTS.md section

Each fleet: 200 databases; durations log-normal (sigma 1.0, clipped to 3 min - 6 h; the
sum of a host's steps); priorities 1/2/3 for 20/30/50 % of the hosts, drawn independently
of size; 2-4 capacity groups, each host in at most one; global ``max_parallel`` 16. Two
profiles (``PROFILES``): *group-bound* (groups of 2-4 slots, a quarter of the hosts in
none, median 25 min: the shared filers are the bottleneck) and *nightly* (groups of 3-6
slots, 35 % in none, median 20 min: a makespan of one night). Dispatchers, all run on the
same fleet by event loops in simulated time:

* **today**: priority then file order, strict FIFO: the head of the queue waits for its
  group and everything behind it waits too (what one semaphore per group acquired in
  queue order gives);
* **file order, no HOL**: the same order through fanout's Dispatcher (a blocked group is
  passed over);
* **fanout**: ``dispatch_order`` (longest expected first within a priority) through the
  Dispatcher: what ``fanout run`` does with history;
* **fanout, priorities ignored**: the same with every host at priority 1, to separate the
  price of honouring priorities from the scheduler's own;
* the **lower bound** max(longest job, total work / slots, each group's work / its slots),
  which ignores priorities: no schedule, priority-respecting or not, beats it.

Also: how long one ``simulate`` of 500 hosts takes (the live table's ETA recomputes it at
most every 2 s and after each host's change).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fanout.scheduler import Job, Limits, dispatch_order, lower_bound, simulate  # noqa: E402

HOSTS = 200
MAX_PARALLEL = 16
GOAL = 1.10


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    group_slots: tuple[int, int]
    ungrouped: float  # share of hosts in no group
    median_minutes: float


PROFILES = (
    Profile("group-bound", (2, 4), 0.25, 25.0),
    Profile("nightly", (3, 6), 0.35, 20.0),
)


@dataclass(frozen=True, slots=True)
class Fleet:
    jobs: tuple[Job, ...]  # file order
    limits: Limits


def make_fleet(rng: random.Random, profile: Profile = PROFILES[0], hosts: int = HOSTS) -> Fleet:
    groups = {f"g{i}": rng.randint(*profile.group_slots) for i in range(rng.randint(2, 4))}
    names = sorted(groups)
    jobs = []
    for i in range(hosts):
        minutes = rng.lognormvariate(math.log(profile.median_minutes), 1.0)
        minutes = min(360.0, max(3.0, minutes))
        roll = rng.random()
        priority = 1 if roll < 0.2 else 2 if roll < 0.5 else 3
        group = () if rng.random() < profile.ungrouped else (rng.choice(names),)
        jobs.append(Job(f"db{i:03d}", priority, i, group, minutes * 60.0))
    return Fleet(tuple(jobs), Limits(MAX_PARALLEL, groups))


def file_order(jobs: Sequence[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.priority, j.index))


def fifo_makespan(queue: Sequence[Job], limits: Limits) -> float:
    """Strict FIFO with head-of-line blocking: start the head while it fits, else wait."""
    running: list[tuple[float, int, Job]] = []
    load = dict.fromkeys(limits.groups, 0)
    clock, end, seq = 0.0, 0.0, 0
    pending = list(queue)
    while pending or running:
        while pending and len(running) < limits.max_parallel:
            head = pending[0]
            if any(load[g] >= limits.groups[g] for g in head.groups):
                break
            pending.pop(0)
            for g in head.groups:
                load[g] += 1
            finish = clock + (head.expected or 0.0)
            end = max(end, finish)
            heapq.heappush(running, (finish, seq, head))
            seq += 1
        clock, _, done = heapq.heappop(running)
        for g in done.groups:
            load[g] -= 1
    return end


@dataclass(frozen=True, slots=True)
class Result:
    bound: float
    today: float
    no_hol: float
    fanout: float
    flat: float  # fanout with every host at priority 1


def measure(fleet: Fleet) -> Result:
    ordered = file_order(fleet.jobs)
    flat = [Job(j.name, 1, j.index, j.groups, j.expected) for j in fleet.jobs]
    return Result(
        bound=lower_bound(fleet.jobs, fleet.limits),
        today=fifo_makespan(ordered, fleet.limits),
        no_hol=simulate(ordered, fleet.limits).makespan,
        fanout=simulate(dispatch_order(fleet.jobs), fleet.limits).makespan,
        flat=simulate(dispatch_order(flat), fleet.limits).makespan,
    )


def simulate_cost(hosts: int = 500, repeat: int = 5) -> float:
    """Seconds for one simulate() of ``hosts`` hosts (median of ``repeat``)."""
    fleet = make_fleet(random.Random(7), hosts=hosts)
    queue = dispatch_order(fleet.jobs)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        simulate(queue, fleet.limits)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(fleets: int = 100, seed: int = 2026) -> tuple[dict[str, list[Result]], float]:
    """Per profile, the results on ``fleets`` fleets; and the cost of one 500-host simulate."""
    results = {}
    for profile in PROFILES:
        rng = random.Random(seed)
        results[profile.name] = [measure(make_fleet(rng, profile)) for _ in range(fleets)]
    return results, simulate_cost()


def _stats(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.3f} | {statistics.fmean(values):.3f} | "
        f"{max(values):.3f} | {min(values):.3f}"
    )


def markdown(results: dict[str, list[Result]], cost: float, fleets: int, seed: int) -> list[str]:
    """The RESULTS.md section."""
    out = [
        f"## Scheduler: synthetic fleets of {HOSTS} databases (`benchmarks/scheduler.py`)",
        "",
        f"Simulated time, {fleets} fleets per profile, seed {seed}. Log-normal durations"
        " (sigma 1, 3 min - 6 h), priorities 1/2/3 for 20/30/50 % of hosts, 2-4 capacity groups,"
        f" max_parallel {MAX_PARALLEL}. *group-bound*: groups of 2-4 slots, a quarter of hosts"
        " in none, median 25 min; *nightly*: groups of 3-6 slots, 35 % in none, median 20 min."
        " *today*: priority then file order, strict FIFO (a blocked group blocks the queue);"
        " *file order, no HOL*: same order, blocked groups passed over; *fanout*: longest"
        " expected first within a priority, no head-of-line blocking; *priorities ignored*:"
        " fanout with every host at priority 1. Lower bound: max(longest job, work / slots,"
        " each group's work / its slots), blind to priorities.",
        "",
        "| profile | makespan ratio | median | mean | max | min |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, rs in results.items():
        vs_bound = [r.fanout / r.bound for r in rs]
        rows = [
            ("**fanout / lower bound**", vs_bound),
            ("**fanout / today**", [r.fanout / r.today for r in rs]),
            ("today / lower bound", [r.today / r.bound for r in rs]),
            ("file order, no HOL / lower bound", [r.no_hol / r.bound for r in rs]),
            ("fanout, priorities ignored / lower bound", [r.flat / r.bound for r in rs]),
        ]
        hours = statistics.median(r.fanout for r in rs) / 3600
        out += [f"| {name} ({hours:.1f} h) | {label} | {_stats(v)} |" for label, v in rows]
        within = sum(v <= GOAL for v in vs_bound)
        worse = sum(r.fanout > r.today + 1e-6 for r in rs)
        flat_within = sum(r.flat / r.bound <= GOAL for r in rs)
        met = within == len(rs) and worse == 0
        verdicts.append(
            f"- {name}: fanout ≤ {GOAL:.2f}x the lower bound on {within} of {len(rs)} fleets"
            f" (worst {max(vs_bound):.3f}x; with priorities ignored on {flat_within}), worse than"
            f" today on {worse}: **{'met' if met else 'missed'}**"
        )
    out += ["", *verdicts]
    out += [
        f"- one `simulate` of 500 hosts (the live table's ETA, `plan --timeline`):"
        f" {cost * 1000:.1f} ms",
        "",
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results, cost = run(args.fleets, args.seed)
    if args.markdown:
        print("\n".join(markdown(results, cost, args.fleets, args.seed)))
        return 0
    for name, rs in results.items():
        print(f"{name}: fleet, bound h, then x bound: today, no HOL, fanout, priorities ignored")
        for i, r in enumerate(rs):
            print(
                f"{i:5d} {r.bound / 3600:8.2f} {r.today / r.bound:7.3f} {r.no_hol / r.bound:7.3f}"
                f" {r.fanout / r.bound:7.3f} {r.flat / r.bound:7.3f}"
            )
    print("\n".join(markdown(results, cost, args.fleets, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
