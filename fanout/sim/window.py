"""``fanout demo --window``: a backup window that cannot fit every host.

The scenario, on top of the demo's inventory and simulated fleet:

- **history**: three earlier nights are written to the demo's run store, each step taking
  what the simulated fleet makes it take (±10 %), so the run has expected durations;
- **a host too long for the window**: the slowest database of the lowest priority gets a
  full backup of ``LONG_SECONDS``: it is not started (``would end after …``);
- **a host slower than its history**: one database's full backup runs ``SLOW_FACTOR`` times
  its usual time: the live table flags it past 3x, and the hard deadline stops it cleanly;
- **the window**: ``--deadline +WINDOW_SECONDS`` (scaled by ``--speed``) with
  ``hard_deadline: true``.

The run exits 1: hosts not started or stopped at the deadline count as failed.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
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
from fanout.sim.behaviour import HostBehaviour, Mode

NIGHTS: Final = 3
LONG_SECONDS: Final = 24.0  # the full backup that cannot fit
SLOW_FACTOR: Final = 6.0
WINDOW_SECONDS: Final = 14.0
SLACK_SECONDS: Final = 2.0
_KINDS: Final = ("full", "archivelog", "controlfile")


def window_scenario(
    state_dir: Path,
    document: MutableMapping[str, Any],
    behaviours: MutableMapping[str, HostBehaviour],
    *,
    speed: float,
    now: float,
) -> tuple[str, list[str]]:
    """Adjust the demo inventory and fleet, write the history; return (``--deadline``, notes)."""
    document["settings"]["hard_deadline"] = True
    ok = [h for h in document["hosts"] if behaviours[str(h["oracle_sid"])].mode is Mode.OK]
    notes = []
    long = max(ok, key=lambda h: (int(h.get("priority", 1)), str(h["name"])), default=None)
    slow = next((h for h in ok if h is not long), None)
    if long is not None:
        sid = str(long["oracle_sid"])
        behaviours[sid] = replace(behaviours[sid], seconds=LONG_SECONDS)
        notes.append(f"  {long['name']}: full backup of ~{LONG_SECONDS:g}s: cannot fit the window")
    seed_history(state_dir, document, behaviours, speed=speed, now=now)  # the usual pace
    if slow is not None:
        sid = str(slow["oracle_sid"])
        behaviours[sid] = replace(
            behaviours[sid], mode=Mode.SLOW, steps=frozenset({"full"}), slow_factor=SLOW_FACTOR
        )
        notes.append(
            f"  {slow['name']}: full backup {SLOW_FACTOR:g}x slower than its history:"
            " flagged, then stopped at the deadline"
        )
    # + SLACK: connecting and starting each step costs the same at every --speed
    window = format_duration(round(WINDOW_SECONDS / speed + SLACK_SECONDS, 1))
    notes.append(f"  window: --deadline +{window}, hard_deadline: true; history: {NIGHTS} nights")
    return f"+{window}", notes


def seed_history(
    state_dir: Path,
    document: Mapping[str, Any],
    behaviours: Mapping[str, HostBehaviour],
    *,
    speed: float,
    now: float,
) -> None:
    """Write ``NIGHTS`` successful earlier runs of the demo inventory into its run store."""
    from fanout.store import open_store

    defaults = document.get("defaults", {})
    step_defs = document.get("steps") or {}
    planned = []
    for host in document["hosts"]:
        steps = tuple(host.get("steps", defaults.get("steps", DEFAULT_STEPS)))
        planned.append(
            PlannedHost(
                str(host["name"]),
                int(host["priority"]),
                str(host["oracle_sid"]),
                str(host.get("address", "127.0.0.1")),
                steps,
            )
        )
    with open_store(state_dir) as store:
        for night in range(NIGHTS, 0, -1):
            run_id = f"demo-history-{night}"
            at = now - night * 86400.0
            events: list[Any] = [RunStarted(run_id, "demo", tuple(planned), 4, at)]
            for host in planned:
                behaviour = behaviours[host.oracle_sid]
                events.append(HostStarted(run_id, host.name, at))
                t = at
                for step in host.steps:
                    kind = (
                        step
                        if step in _KINDS
                        else "shell"
                        if "shell" in step_defs.get(step, {})
                        else "other"
                    )
                    jitter = 0.9 + (zlib.crc32(f"{host.name}{step}{night}".encode()) % 21) / 100
                    seconds = behaviour.duration(kind) / speed * jitter
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
