"""Client CPU of the event sinks alone: a recorded-shape event stream replayed in-process.

    python benchmarks/sinks.py [--hosts 200] [--repeat 5] [--json]

Builds the event stream of a run of HOSTS hosts x 3 steps (RunStarted, per host
HostStarted, HostConnected, per step StepStarted, the 32 output lines RMAN's test
double prints for a 1 s step, StepFinished, then HostFinished, RunFinished), interleaved
as a parallel run interleaves them (every running host's n-th line before any n+1-th),
then feeds it to each sink on its own in a fresh state directory: ``state`` (RunState),
``plain`` (PlainSink quiet), ``logs`` (LogSink), ``store`` (SQLite run store, fsync per
state change as in a run) and ``all`` (the four, as ``fanout run --batch --quiet``).
Prints the median CPU (user+sys, ``getrusage``) per host in ms of REPEAT replays.
Output events carry the progress the engine read (``StepOutput.progress``) as in a run.
No network, no sshd: steadier than ``attribute.py``, which measures whole runs. To compare
with another checkout, copy this file outside any checkout and run it with that checkout's
venv python (it then imports that checkout's ``fanout``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fanout.events import (
    Event,
    EventSink,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
    Stream,
)
from fanout.rman import Transcript

STEPS = ("full", "archivelog", "controlfile")
RUN_ID = "20261201T155123Z-bench"
T0 = 1_796_140_283.0
BATCH = 7  # lines per StepOutput: against the RMAN double 4,800 lines came as 683 events (50 hosts)


def transcript(sid: str, step: str) -> list[str]:
    """What the RMAN test double prints for a one-second step (32 lines)."""
    files = [
        f"input datafile file number={i:05d} name=/u01/oradata/{sid}/f{i}.dbf" for i in range(1, 5)
    ]
    return [
        "",
        "Recovery Manager: Release 19.0.0.0.0 - Production on Tue Dec 01 15:51:23 2026",
        "Version 19.3.0.0.0",
        "",
        "Copyright (c) 1982, 2019, Oracle and/or its affiliates.  All rights reserved.",
        "",
        f"connected to target database: {sid} (DBID=1466797891)",
        "",
        "RMAN> 2> 3> 4> ",
        "executing command: SET COMMAND ID",
        "Starting backup at 2026-12-01 15:51:23",
        "using target database control file instead of recovery catalog",
        "allocated channel: ORA_DISK_1",
        "channel ORA_DISK_1: SID=491 device type=DISK",
        f"channel ORA_DISK_1: starting {step} backup set",
        "channel ORA_DISK_1: specifying datafile(s) in backup set",
        *files,
        "channel ORA_DISK_1: starting piece 1 at 2026-12-01 15:51:23",
        "channel ORA_DISK_1: finished piece 1 at 2026-12-01 15:51:24",
        f"piece handle=/u02/fra/{sid}/backupset/o1_mf_0001_.bkp tag=FANOUT comment=NONE",
        "channel ORA_DISK_1: backup set complete, elapsed time: 00:00:01",
        "Finished backup at 2026-12-01 15:51:24",
        "",
        "RMAN> ",
        "",
        "Recovery Manager complete.",
        "",
        "",
    ]


FIELDS = {f.name for f in dataclasses.fields(StepOutput)}


def output(host: str, step: str, lines: list[str], at: float, reader: Transcript) -> list[Event]:
    """The StepOutput events engine._pump emits for ``lines`` read together: one per line
    in a fanout from before output batches, else one. With the progress its Transcript read
    when this fanout's StepOutput has that field (the engine's parse is not the sinks' cost).
    """
    batched = "lines" in FIELDS
    out: list[Event] = []
    for text in [tuple(lines)] if batched else lines:
        event = StepOutput(RUN_ID, host, step, Stream.STDOUT, text, at)  # type: ignore[arg-type]
        if "progress" in FIELDS:
            for line in text if batched else (text,):
                reader.feed(line)
            event = dataclasses.replace(event, progress=reader.progress or "")
        out.append(event)
    return out


def stream(n: int) -> list[tuple[Event, ...]]:
    """The events of an n-host run, hosts interleaved line by line, as the engine hands them
    over: one at a time, but a step's end with the host's next step start (``emit_together``)."""
    names = [f"db{i:04d}" for i in range(n)]
    hosts = tuple(PlannedHost(h, 1, h.upper(), "127.0.0.1", STEPS) for h in names)
    meta = RunMeta(argv=("fanout", "run", "bench.yaml"))
    events: list[tuple[Event, ...]] = [(RunStarted(RUN_ID, "bench.yaml", hosts, n, T0, meta=meta),)]
    now = T0
    events += [(HostStarted(RUN_ID, h, now),) for h in names]
    events += [(HostConnected(RUN_ID, h, 1, now + 0.1),) for h in names]
    ended: dict[str, tuple[Event, ...]] = dict.fromkeys(names, ())
    for step in STEPS:
        now += 0.2
        events += [
            (*ended[h], StepStarted(RUN_ID, h, step, 1, "rman target /", now)) for h in names
        ]
        lines = {h: transcript(h.upper(), step) for h in names}
        readers = {h: Transcript() for h in names}
        count = len(lines[names[0]])
        for i in range(0, count, BATCH):
            now += BATCH / count
            for h in names:
                events += [(e,) for e in output(h, step, lines[h][i : i + BATCH], now, readers[h])]
        now += 0.1
        for h in names:
            ended[h] = (StepFinished(RUN_ID, h, step, 1, StepStatus.OK, 0, None, 1.1, False, now),)
    events += [ended[h] for h in names]
    events += [(HostFinished(RUN_ID, h, HostStatus.OK, None, now - T0, None, now),) for h in names]
    events.append((RunFinished(RUN_ID, 0, None, now - T0, now),))
    return events


@contextmanager
def sinks(kind: str, state_dir: Path) -> Iterator[list[EventSink]]:
    from fanout.logs import LogSink
    from fanout.state import RunState
    from fanout.store import open_store
    from fanout.ui.plain import PlainSink

    with ExitStack() as stack:
        chosen: list[EventSink] = []
        if kind in ("state", "all"):
            chosen.append(RunState())
        if kind in ("plain", "all"):
            chosen.append(PlainSink(io.StringIO(), quiet=True))
        if kind in ("logs", "all"):
            chosen.append(stack.enter_context(LogSink(state_dir)))
        if kind in ("store", "all"):
            chosen.append(stack.enter_context(open_store(state_dir)))
        yield chosen


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def replay(kind: str, events: list[tuple[Event, ...]]) -> float:
    """CPU seconds to feed ``events`` to the ``kind`` sinks (opening them excluded). Events
    handed over together go to a sink's ``emit_together`` where this fanout has one."""
    with tempfile.TemporaryDirectory(prefix="fanout-sinks-") as tmp, sinks(kind, Path(tmp)) as out:
        emits: list[Callable[[Event], None]] = [s.emit for s in out]
        togethers = [getattr(s, "emit_together", None) for s in out]
        start = cpu()
        for handed in events:
            if len(handed) == 1:
                for emit in emits:
                    emit(handed[0])
                continue
            for emit, together in zip(emits, togethers, strict=True):
                if together is not None:
                    together(handed)
                else:
                    for event in handed:
                        emit(event)
        return cpu() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="state,plain,logs,store,all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = stream(args.hosts)
    result = {}
    for kind in args.kinds.split(","):
        times = [replay(kind, events) for _ in range(args.repeat)]
        result[kind] = round(statistics.median(times) * 1000 / args.hosts, 3)
    if args.json:
        print(json.dumps({"hosts": args.hosts, "ms_per_host": result}))
    else:
        for kind, ms in result.items():
            print(f"{kind:6} {ms:7.3f} ms/host")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
