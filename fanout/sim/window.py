"""``fanout demo --window``: a backup window that cannot fit every host.

The scenario, on top of the demo's inventory and simulated fleet:

- **history**: three earlier nights are written to the demo's run store, each step taking
  what the simulated fleet makes it take (±10 %), so the run has expected durations;
- **a host too long for the window**: the lowest-priority database without a scripted
  problem gets a full backup of ``LONG_SECONDS`` (its history says so): it is not started
  (``would end after …``);
- **a host slower than its history**: another database's full backup runs ``SLOW_FACTOR``
  times its usual time: the live table flags it past 3x, and the hard deadline stops it;
- **the window**: ``--deadline +WINDOW_SECONDS`` (scaled by ``--speed``) with
  ``hard_deadline: true``.

The run exits 1: hosts not started or stopped at the deadline count as failed. The fleet's
fake rman re-reads its settings at every invocation, so the scenario rewrites them in place.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Final

from fanout.events import (
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.model import DEFAULT_STEPS, format_duration
from fanout.sim import rman_fake

NIGHTS: Final = 3
LONG_SECONDS: Final = 24.0  # the full backup that cannot fit
SLOW_FACTOR: Final = 6.0
WINDOW_SECONDS: Final = 14.0
SLACK_SECONDS: Final = 2.0  # connecting and starting each step cost the same at every --speed
SHELL_SECONDS: Final = 0.1  # a shell step (the precheck)


def window_scenario(
    state_dir: Path,
    document: MutableMapping[str, Any],
    problems: Mapping[str, object],
    *,
    speed: float,
    now: float,
) -> tuple[str, list[str]]:
    """Adjust the demo inventory and fleet, write the history; return (``--deadline``, notes).

    ``problems``: the hosts with a scripted problem (left alone).
    """
    from fanout.sim.demo import rman_config

    document["settings"]["hard_deadline"] = True
    ok = [h for h in document["hosts"] if str(h["name"]) not in problems]
    notes: list[str] = []
    long = max(ok, key=lambda h: (int(h.get("priority", 1)), str(h["name"])), default=None)
    slow = next((h for h in ok if h is not long), None)
    durations = {
        str(h["oracle_sid"]): _seconds(rman_config(str(h["oracle_sid"]), speed))
        for h in document["hosts"]
    }
    if long is not None:
        sid = str(long["oracle_sid"])
        durations[sid]["full"] = LONG_SECONDS / speed
        _configure(long, {"full": {"seconds": LONG_SECONDS / speed}}, speed)
        notes.append(f"  {long['name']}: full backup of ~{LONG_SECONDS:g}s: cannot fit the window")
    seed_history(state_dir, document, durations, now=now)  # the usual pace
    if slow is not None:
        sid = str(slow["oracle_sid"])
        usual = durations[sid]["full"]
        _configure(slow, {"full": {"seconds": usual * SLOW_FACTOR}}, speed)
        notes.append(
            f"  {slow['name']}: full backup {SLOW_FACTOR:g}x slower than its history:"
            " flagged, then stopped at the deadline"
        )
    window = format_duration(round(WINDOW_SECONDS / speed + SLACK_SECONDS, 1))
    notes.append(f"  window: --deadline +{window}, hard_deadline: true; history: {NIGHTS} nights")
    return f"+{window}", notes


def _seconds(config: Mapping[str, Any]) -> dict[str, float]:
    """Step kind -> seconds, from the fake's settings of one database."""
    return {
        kind: float(value["seconds"])
        for kind, value in config.items()
        if isinstance(value, Mapping) and "seconds" in value
    }


def _configure(host: Mapping[str, Any], change: Mapping[str, Any], speed: float) -> None:
    """Rewrite one database's fake settings: the demo's pace with ``change`` on top."""
    from fanout.sim.demo import rman_config

    config = rman_config(str(host["oracle_sid"]), speed)
    for kind, values in change.items():
        config[kind].update(values)
    rman_fake.configure(Path(str(host["oracle_home"])), {str(host["oracle_sid"]): config})


def seed_history(
    state_dir: Path,
    document: Mapping[str, Any],
    durations: Mapping[str, Mapping[str, float]],
    *,
    now: float,
) -> None:
    """Write ``NIGHTS`` successful earlier runs of the demo inventory into its run store."""
    from fanout.store import open_store

    defaults = document.get("defaults", {})
    planned = [
        PlannedHost(
            str(host["name"]),
            int(host["priority"]),
            str(host["oracle_sid"]),
            str(host.get("address", "127.0.0.1")),
            tuple(host.get("steps", defaults.get("steps", DEFAULT_STEPS))),
        )
        for host in document["hosts"]
    ]
    with open_store(state_dir) as store:
        for night in range(NIGHTS, 0, -1):
            run_id = f"demo-history-{night}"
            at = now - night * 86400.0
            events: list[Any] = [RunStarted(run_id, "demo", tuple(planned), 4, at)]
            for host in planned:
                events.append(HostStarted(run_id, host.name, at))
                t = at
                for step in host.steps:
                    jitter = 0.9 + (zlib.crc32(f"{host.name}{step}{night}".encode()) % 21) / 100
                    base = durations[host.oracle_sid].get(step, SHELL_SECONDS)
                    seconds = base * jitter
                    events.append(StepStarted(run_id, host.name, step, 1, "", t))
                    t += seconds
                    events.append(
                        StepFinished(
                            run_id, host.name, step, 1, StepStatus.OK, 0, None, seconds, False, t
                        )
                    )
                events.append(HostFinished(run_id, host.name, HostStatus.OK, None, t - at, None, t))
            events.append(RunFinished(run_id, 0, None, 60.0, at + 60.0))
            for event in events:
                store.emit(event)
