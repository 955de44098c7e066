"""``fanout demo``: a real ``fanout run`` against a simulated fleet, in one process.

The demo builds an inventory (the hosts of ``inventory.example.yaml``, or ``--hosts N``
generated ones with varied priorities), gives ``--failures K`` of them a scripted problem
(``FAILURES``, in this order, each on a host that has the step it hits), starts ``SimFleet``
and hands the inventory to the same runner as ``fanout run``: live table in a terminal, batch
lines otherwise, ``q``/``quit``/Ctrl-C as in production, run store and logs in the state
directory (a new temporary one unless ``--state-dir``), where the generated inventory, the
fleet's key files and its databases (``sim/``) stay for ``fanout history``/``show`` and a look.
"""

from __future__ import annotations

import random
import sys
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from fanout.sim.server import ClientFiles, SimFleet

__all__ = ["FAILURES", "DemoOptions", "Problem", "build_inventory", "run_demo"]

EXAMPLE: Final = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
INVENTORY_NAME: Final = "demo-inventory.yaml"
DEFAULT_STEPS: Final = ("full", "archivelog", "controlfile")
STEP_SHARE: Final = {"full": 1.0, "archivelog": 0.45, "controlfile": 0.25}  # of a host's pace


@dataclass(frozen=True, slots=True)
class Problem:
    """A scripted failure: what the demo announces, sets up, and what fanout then records."""

    text: str  # announced as "  <host>: <text>"
    step: str | None  # the step it hits (the host must have it); None: the connection
    cause: str  # how the recorded cause of that step (or host) starts
    rman: Mapping[str, Any] = field(default_factory=dict)  # the fake's settings for ``step``
    refuse: bool = False
    mounted: bool = True  # False: the recovery area is missing (the precheck fails)


#: Scripted problems, assigned in this order to ``--failures K`` hosts.
FAILURES: Final = (
    Problem(
        "full fails: recovery area full (ORA-19809)",
        "full",
        "ORA-19809: limit exceeded for recovery files",
        {"behaviour": "fail", "error": "recovery-area-full"},
    ),
    Problem(
        "archivelog fails: archived log missing (ORA-19625)",
        "archivelog",
        "ORA-19625: error identifying file",
        {"behaviour": "fail", "error": "archived-log-missing"},
    ),
    Problem("connection refused", None, "connection refused", refuse=True),
    Problem("connection dropped during full", "full", "connection lost", {"behaviour": "drop"}),
    Problem(
        "archivelog hangs until the step timeout",
        "archivelog",
        "timeout after",
        {"behaviour": "hang"},
    ),
    Problem(
        "precheck fails: recovery area not mounted", "precheck", "exit status 1", mounted=False
    ),
    Problem(
        "controlfile fails: media manager refuses (ORA-19511)",
        "controlfile",
        "ORA-19511: non RMAN, but media manager or vendor specific failure",
        {"behaviour": "fail", "error": "media-manager"},
    ),
)
_APPS: Final = "erp crm billing hr dwh pay sales stock mes web portal ledger".split()  # noqa: SIM905 (a word list)
_PRECHECK: Final = {  # the demo's recovery area sits beside each fake ORACLE_HOME
    "shell": 'test -d "$ORACLE_HOME/../fra" && test -w "$ORACLE_HOME/../fra"',
    "on_failure": "stop",
    "timeout": "5m",
}
_FULL: Final = {
    "rman": "BACKUP AS COMPRESSED BACKUPSET INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';\n"
}
_HOST_KEYS: Final = ("name", "priority", "oracle_sid", "tags", "steps", "retries")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    hosts: int | None = None  # None: the hosts of inventory.example.yaml
    failures: int = 2
    speed: float = 1.0
    state_dir: Path | None = None
    batch: bool = False
    no_color: bool = False
    argv: tuple[str, ...] = ()
    window: bool = False  # the backup-window scenario (fanout/sim/window.py)
    max_parallel: int | None = None  # None: ~3 waves, at most 64 (benchmarks raise it)


def _example_hosts() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(steps, hosts) of the example inventory, or a built-in stand-in for them."""
    try:
        document = yaml.safe_load(EXAMPLE.read_text())
    except (OSError, yaml.YAMLError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("hosts"), list):
        hosts = [
            {k: v for k, v in h.items() if k in _HOST_KEYS}
            for h in document["hosts"]
            if isinstance(h, dict)
        ]
        return {**(document.get("steps") or {}), "precheck": _PRECHECK}, hosts
    return {"full": _FULL, "precheck": _PRECHECK}, _generated(6)


def _generated(count: int) -> list[dict[str, Any]]:
    rng = random.Random(count)
    hosts = []
    for i in range(count):
        app, number = _APPS[i % len(_APPS)], i // len(_APPS) + 1
        test = i % 7 == 6
        sid = f"{app[:4].upper()}{number:02d}" if count > len(_APPS) else app[:4].upper()
        hosts.append(
            {
                "name": f"{app}-{'test' if test else 'prod'}-{number:02d}",
                "priority": 5 if test else rng.choice((1, 1, 2, 2, 2, 3, 3, 4)),
                "oracle_sid": f"T{sid}" if test else sid,
                "tags": ["test"] if test else ["prod", app],
                "steps": ["full", "controlfile"]
                if test
                else ["precheck", "full", "archivelog", "controlfile"],
            }
        )
    return hosts


def _spread(count: int, among: int) -> list[int]:
    """``count`` indexes spread over ``range(among)``, none at the very front."""
    count = min(count, among)
    return [(k * among) // count + among // (2 * count) for k in range(count)] if count else []


def assign(entries: list[dict[str, Any]], failures: int) -> dict[int, Problem]:
    """Which host (index) gets which problem: slot k takes ``FAILURES[k]`` (cyclically) to the
    first free host at or after its spread position that has the step it hits, else the next
    problem some free host can take."""
    chosen: dict[int, Problem] = {}
    for slot, start in enumerate(_spread(failures, len(entries))):
        for k in range(len(FAILURES)):
            problem = FAILURES[(slot + k) % len(FAILURES)]
            order = [(start + o) % len(entries) for o in range(len(entries))]
            free = [i for i in order if i not in chosen]
            fit = [
                i for i in free if problem.step in (None, *entries[i].get("steps", DEFAULT_STEPS))
            ]
            if fit:
                chosen[fit[0]] = problem
                break
    return chosen


def pace(sid: str, speed: float) -> float:
    """Seconds of a database's full backup: the same on every run, 3-6 s at speed 1."""
    return (3.0 + (zlib.crc32(sid.encode()) % 300) / 100) / speed


def rman_config(sid: str, speed: float) -> dict[str, Any]:
    """The RMAN fake's settings for one database of the demo (its pace per step kind)."""
    seconds = pace(sid, speed)
    rman: dict[str, Any] = {"seconds": seconds, "exit_delay": 1.5 / speed}
    rman["max_seconds"] = 600.0 / min(speed, 1.0)  # longer than any step of the demo
    for kind, share in STEP_SHARE.items():
        rman[kind] = {"seconds": seconds * share}
    return rman


def build_inventory(
    fleet: SimFleet,
    files: ClientFiles,
    state_dir: Path,
    *,
    hosts: int | None,
    failures: int,
    speed: float,
    max_parallel: int | None = None,
) -> tuple[dict[str, Any], dict[str, Problem]]:
    """The demo inventory document and the scripted problems by host name; every database is
    set up in ``fleet`` (its pace the same on every run, 3-6 s for a full backup at speed 1)."""
    steps, entries = (
        _example_hosts()
        if hosts is None
        else ({"full": _FULL, "precheck": _PRECHECK}, _generated(hosts))
    )
    problems = assign(entries, failures)
    for index, entry in enumerate(entries):
        sid, problem = str(entry["oracle_sid"]), problems.get(index)
        rman = rman_config(sid, speed)
        if problem is not None and problem.step in STEP_SHARE:
            rman[problem.step].update(problem.rman)
        db = fleet.database(sid, rman, mounted=problem is None or problem.mounted)
        entry.update(oracle_home=str(db.oracle_home), lock_dir=str(db.lock_dir))
        if problem is not None and problem.refuse:
            entry["port"] = fleet.refused_port
        if problem is not None and problem.rman.get("behaviour") == "hang":
            entry["step_timeout"] = f"{round(max(5.0, 10.0 / speed), 3):g}s"
    document = {
        "settings": {
            "max_parallel": max_parallel
            or (4 if hosts is None else min(64, max(4, -(-hosts // 3)))),
            "cancel_grace": f"{round(max(0.5, 30.0 / speed), 3):g}s",
            "max_connecting": 16,
            "state_dir": str(state_dir),
        },
        "defaults": {
            "user": "oracle",
            "port": fleet.port,
            "identity_file": str(files.identity_file),
            "known_hosts": str(files.known_hosts),
            "ssh_config": str(files.ssh_config),
            "step_timeout": "6h",
            "retries": 0,
            "connect_retries": 1,
            "connect_timeout": "10s",
            "steps": list(DEFAULT_STEPS),
        },
        "steps": steps,
        "hosts": [{"address": "127.0.0.1", **entry} for entry in entries],
    }
    return document, {str(entries[i]["name"]): p for i, p in sorted(problems.items())}


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns fanout run's exit code. Raises FanoutError like ``fanout run``."""
    from fanout.runner import RunOptions, run_inventory

    state_dir = options.state_dir or Path(tempfile.mkdtemp(prefix="fanout-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir.resolve()
    fleet = SimFleet(state_dir / "sim")  # ports and keys first: the inventory names them
    try:
        files = fleet.write_client_files(state_dir / "sim")
        document, problems = build_inventory(
            fleet,
            files,
            state_dir,
            hosts=options.hosts,
            failures=options.failures,
            speed=options.speed,
            max_parallel=options.max_parallel,
        )
        path = state_dir / INVENTORY_NAME
        header = (
            "# Written by `fanout demo`: every host is simulated by an in-process SSH server\n"
            f"# on 127.0.0.1:{fleet.port} (its host key is in sim/known_hosts).\n"
        )
        path.write_text(header + yaml.safe_dump(document, sort_keys=False))
        print(
            f"fanout demo: {len(document['hosts'])} simulated hosts on 127.0.0.1:{fleet.port}"
            f", speed x{options.speed:g}",
            file=sys.stderr,
        )
        for name, problem in problems.items():
            print(f"  {name}: {problem.text}", file=sys.stderr)
        deadline = None
        if options.window:
            import time

            from fanout.sim.window import window_scenario

            deadline, notes = window_scenario(
                state_dir, document, problems, speed=options.speed, now=time.time()
            )
            path.write_text(header + yaml.safe_dump(document, sort_keys=False))
            for note in notes:
                print(note, file=sys.stderr)
        run = RunOptions(
            inventory=path,
            batch=options.batch,
            no_color=options.no_color,
            state_dir=state_dir,
            argv=options.argv,
            deadline=deadline,
        )
        code = run_inventory(run, serve=fleet.serve)
    finally:
        fleet.close()
    print(
        f"fanout demo: inventory, logs and run store in {state_dir}\n"
        f"  fanout history --state-dir {state_dir}\n"
        f"  fanout show --state-dir {state_dir}",
        file=sys.stderr,
    )
    return code
