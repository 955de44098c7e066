"""Live table render cost at 500 hosts: CPU share of one core at 4 refreshes a second.

Not a test: run it and read the numbers (target: under 5 % of one core)::

    python benchmarks/render.py [--hosts 500] [--frames 200] [--hz 4] [--history]

Each frame is what the live view's loop does 4 times a second: ``render`` the state and
``Live.update(..., refresh=True)`` into a truecolor terminal console (written to
/dev/null, escape codes included). The state is a run in full swing: a window of hosts
running with RMAN progress lines, some failed, many finished, the rest queued; it moves
between frames (progress lines, elapsed times, the spinner), so nothing is cached.
CPU time is ``time.process_time()`` (this process, all threads).

``--history``: the steps have expected durations (as after a first run), so the title shows
the expected end, and each frame one running host finishes and the next queued one starts:
the ETA's scheduler simulation is then redone as often as the state allows, and its cost is
in the frames that redo it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.live import Live

from fanout.events import (
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
    Stream,
)
from fanout.state import HostPhase, RunState
from fanout.ui.live_render import Prompt, render

RUN_ID = "20261123T171435Z-3f9a"
STEPS = ("full", "archivelog", "controlfile")
PROGRESS = (
    "channel ORA_DISK_{ch}: starting piece {n} at 2026-11-23 17:20:01",
    "input datafile file number=0000{n} name=/u01/oradata/ORCL/users0{n}.dbf",
    "channel ORA_DISK_{ch}: backup set complete, elapsed time: 00:0{n}:15",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build_state(hosts: int, clock: Clock, history: bool = False) -> RunState:
    """A run in full swing: 10 % finished ok, 2 % failed, 10 % running, the rest queued."""
    state = RunState(clock=clock)
    expected = (600.0, 60.0, 5.0) if history else ()
    planned = tuple(
        PlannedHost(
            f"db-{i:03d}.prod.example",
            1 + i // 50,
            f"ORCL{i:03d}",
            f"10.0.{i}",
            STEPS,
            expected=expected,
        )
        for i in range(hosts)
    )
    state.apply(RunStarted(RUN_ID, "nightly.yaml", planned, 50, 0.0))
    for i, host in enumerate(planned):
        name = host.name
        if i >= hosts * 22 // 100:
            break  # queued
        state.apply(HostStarted(RUN_ID, name, float(i)))
        state.apply(HostConnected(RUN_ID, name, 1, float(i)))
        state.apply(StepStarted(RUN_ID, name, "full", 1, "rman", float(i)))
        if i < hosts * 12 // 100:  # finished
            failed = i % 6 == 5
            status = StepStatus.FAILED if failed else StepStatus.OK
            cause = "ORA-19502: write error on file, block number 1234" if failed else None
            state.apply(StepFinished(RUN_ID, name, "full", 1, status, 0, cause, 60, False, 1.0))
            for step in STEPS[1:]:
                later = StepStatus.SKIPPED if failed else StepStatus.OK
                state.apply(StepFinished(RUN_ID, name, step, 1, later, 0, None, 5, False, 1.0))
            outcome = HostStatus.FAILED if failed else HostStatus.OK
            state.apply(HostFinished(RUN_ID, name, outcome, None, 70.0, None, 2.0))
    return state


def step(state: RunState, clock: Clock, frame: int, history: bool = False) -> None:
    """A quarter second of a busy run: every running host prints a progress line (and with
    ``history`` one host finishes and the next queued one starts)."""
    clock.now += 0.25
    if history:
        running = next(r for r in state.rows.values() if r.status is HostPhase.RUNNING)
        state.apply(HostFinished(RUN_ID, running.name, HostStatus.OK, None, 70.0, None, 2.0))
        queued = next((r for r in state.rows.values() if r.status is HostPhase.QUEUED), None)
        if queued is not None:
            state.apply(HostStarted(RUN_ID, queued.name, 2.0))
            state.apply(HostConnected(RUN_ID, queued.name, 1, 2.0))
            state.apply(StepStarted(RUN_ID, queued.name, "full", 1, "rman", 2.0))
    for row in state.rows.values():
        if row.current_step is not None:
            line = PROGRESS[frame % 3].format(ch=1 + frame % 4, n=frame % 9)
            state.apply(StepOutput(RUN_ID, row.name, row.current_step, Stream.STDOUT, (line,), 0.0))


def measure(
    hosts: int, frames: int, width: int, height: int, hz: float, history: bool = False
) -> float:
    """CPU seconds per frame of render + Live refresh at ``width`` x ``height``."""
    clock = Clock()
    state = build_state(hosts, clock, history)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        console = Console(
            file=devnull,
            width=width,
            height=height,
            force_terminal=True,
            color_system="truecolor",
            legacy_windows=False,
        )
        prompt = Prompt(typed="cancel db-01")
        with Live(console=console, auto_refresh=False, transient=True) as live:
            spent = 0.0
            for frame in range(frames):
                step(state, clock, frame, history)  # folding is the sinks' cost, not the render's
                start = time.process_time()
                renderable = render(state, width=width, height=height, now=clock(), prompt=prompt)
                live.update(renderable, refresh=True)
                spent += time.process_time() - start
    return spent / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--hz", type=float, default=4.0)
    parser.add_argument("--history", action="store_true", help="expected durations, ETA shown")
    args = parser.parse_args()
    measure(args.hosts, 20, 80, 24, args.hz)  # warm-up: imports, caches
    print(
        f"{args.hosts} hosts, {args.frames} frames, {args.hz:g} Hz"
        + (", with history (expected end)" if args.history else "")
    )
    for width, height in ((80, 24), (160, 50), (240, 80)):
        per_frame = measure(args.hosts, args.frames, width, height, args.hz, args.history)
        share = per_frame * args.hz * 100
        verdict = "ok" if share < 5 else "OVER BUDGET"
        print(
            f"  {width:>3}x{height:<3} {per_frame * 1000:6.2f} ms/frame"
            f"  {share:5.2f} % of one core  ({verdict}: budget 5 %)"
        )


if __name__ == "__main__":
    main()
