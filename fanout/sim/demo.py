"""``fanout demo``: a real ``fanout run`` against a simulated fleet, in one process.

The demo builds an inventory (the hosts of ``inventory.example.yaml``, or ``--hosts N``
generated ones with varied priorities), gives ``--failures K`` of them a scripted problem
(``FAILURES``, in order: recovery area full, archived log missing, connection refused,
connection dropped, a hang that meets the step timeout, a failed precheck), starts
``SimFleet`` and hands the inventory to the same runner as ``fanout run``: live table in a
terminal, batch lines otherwise, ``q``/``quit``/Ctrl-C as in production, run store and logs
in the state directory (a new temporary one unless ``--state-dir``), where the generated
inventory and the fleet's key files stay for ``fanout history``/``show`` and a look.
"""

from __future__ import annotations

import random
import sys
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml

from fanout.model import format_duration
from fanout.sim.behaviour import ERRORS, HostBehaviour, Mode
from fanout.sim.server import ClientFiles, SimFleet

__all__ = ["FAILURES", "DemoOptions", "build_inventory", "run_demo"]

EXAMPLE: Final = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
INVENTORY_NAME: Final = "demo-inventory.yaml"

#: Scripted problems, assigned in this order to ``--failures K`` hosts.
FAILURES: Final[tuple[tuple[str, HostBehaviour], ...]] = (
    (
        "full fails: recovery area full (ORA-19809)",
        HostBehaviour(Mode.FAIL, frozenset({"full"}), ERRORS["recovery-area-full"]),
    ),
    (
        "archivelog fails: archived log missing (ORA-19625)",
        HostBehaviour(Mode.FAIL, frozenset({"archivelog"}), ERRORS["archived-log-missing"]),
    ),
    ("connection refused", HostBehaviour(Mode.REFUSE)),
    ("connection dropped during full", HostBehaviour(Mode.DROP, frozenset({"full"}))),
    (
        "archivelog hangs until the step timeout",
        HostBehaviour(Mode.HANG, frozenset({"archivelog"})),
    ),
    ("precheck fails: /u02/fra not mounted", HostBehaviour(missing=("/u02/fra",))),
)
_APPS: Final = (
    "erp",
    "crm",
    "billing",
    "hr",
    "dwh",
    "pay",
    "sales",
    "stock",
    "mes",
    "web",
    "portal",
    "ledger",
)
_PRECHECK: Final = {
    "shell": "test -d /u02/fra && test -w /u02/fra",
    "on_failure": "stop",
    "timeout": "5m",
}
_FULL: Final = {
    "rman": "BACKUP AS COMPRESSED BACKUPSET INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';\n"
}


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


def _example_hosts() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(settings + steps, hosts) of the example inventory, or a built-in copy of them."""
    try:
        document = yaml.safe_load(EXAMPLE.read_text())
    except (OSError, yaml.YAMLError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("hosts"), list):
        hosts = [
            {
                k: v
                for k, v in h.items()
                if k
                in ("name", "priority", "oracle_sid", "oracle_home", "tags", "steps", "retries")
            }
            for h in document["hosts"]
            if isinstance(h, dict)
        ]
        return {"steps": document.get("steps") or {}}, hosts
    return {"steps": {"full": _FULL, "precheck": _PRECHECK}}, _generated(6)


def _generated(count: int) -> list[dict[str, Any]]:
    rng = random.Random(count)
    hosts = []
    for i in range(count):
        app, number = _APPS[i % len(_APPS)], i // len(_APPS) + 1
        test = i % 7 == 6
        sid = f"{app[:4].upper()}{number:02d}" if count > len(_APPS) else app[:4].upper()
        name = f"{app}-{'test' if test else 'prod'}-{number:02d}"
        host: dict[str, Any] = {
            "name": name,
            "priority": 5 if test else rng.choice((1, 1, 2, 2, 2, 3, 3, 4)),
            "oracle_sid": f"T{sid}" if test else sid,
            "tags": ["test"] if test else ["prod", app],
        }
        host["steps"] = (
            ["full", "controlfile"] if test else ["precheck", "full", "archivelog", "controlfile"]
        )
        hosts.append(host)
    return hosts


def _spread(count: int, among: int) -> list[int]:
    """``count`` indexes spread over ``range(among)``, none at the very front."""
    count = min(count, among)
    return [(k * among) // count + among // (2 * count) for k in range(count)] if count else []


def build_inventory(
    fleet_port: int,
    refused_port: int,
    files: ClientFiles,
    state_dir: Path,
    *,
    hosts: int | None,
    failures: int,
    speed: float,
) -> tuple[dict[str, Any], dict[str, HostBehaviour], list[str]]:
    """The demo inventory document, the fleet's behaviours by SID, and what was scripted."""
    extra, entries = (
        _example_hosts()
        if hosts is None
        else ({"steps": {"full": _FULL, "precheck": _PRECHECK}}, _generated(hosts))
    )
    behaviours: dict[str, HostBehaviour] = {}
    for entry in entries:  # each database its own pace, the same on every run
        sid = str(entry["oracle_sid"])
        seconds = 3.0 + (zlib.crc32(sid.encode()) % 300) / 100  # 3-6 s for a full backup
        behaviours[sid] = HostBehaviour(seconds=seconds)
    scripted = FAILURES * (failures // len(FAILURES) + 1)
    notes = []
    for slot, index in enumerate(_spread(failures, len(entries))):
        entry = entries[index]
        sid = str(entry["oracle_sid"])
        text, problem = scripted[slot]
        notes.append(f"  {entry['name']}: {text}")
        behaviours[sid] = replace(problem, seconds=behaviours[sid].seconds)
        if problem.mode is Mode.REFUSE:
            entry["port"] = refused_port
        if problem.mode is Mode.HANG:
            entry["step_timeout"] = format_duration(round(max(0.5, 10.0 / speed), 3))
        if problem.missing and "precheck" not in entry.get("steps", ["precheck"]):
            entry["steps"] = [
                "precheck",
                *entry.get("steps", ["full", "archivelog", "controlfile"]),
            ]
    document = {
        "settings": {
            "max_parallel": 4 if hosts is None else min(64, max(4, -(-hosts // 3))),  # ~3 waves
            "cancel_grace": format_duration(round(max(0.5, 30.0 / speed), 3)),
            "max_connecting": 16,
            "state_dir": str(state_dir),
        },
        "defaults": {
            "user": "oracle",
            "port": fleet_port,
            "oracle_home": "/u01/app/oracle/product/19.0.0/dbhome_1",
            "identity_file": str(files.identity_file),
            "known_hosts": str(files.known_hosts),
            "ssh_config": str(files.ssh_config),
            "step_timeout": "6h",
            "retries": 0,
            "connect_retries": 1,
            "connect_timeout": "10s",
            "steps": ["full", "archivelog", "controlfile"],
        },
        "steps": extra["steps"],
        "hosts": [{"address": "127.0.0.1", **entry} for entry in entries],
    }
    return document, behaviours, notes


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns fanout run's exit code. Raises FanoutError like ``fanout run``."""
    from fanout.runner import RunOptions, run_inventory

    state_dir = options.state_dir or Path(tempfile.mkdtemp(prefix="fanout-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir.resolve()
    probe = SimFleet(speed=options.speed)  # ports and keys first: the inventory names them
    try:
        files = probe.write_client_files(state_dir / "sim")
        document, behaviours, notes = build_inventory(
            probe.port,
            probe.refused_port,
            files,
            state_dir,
            hosts=options.hosts,
            failures=options.failures,
            speed=options.speed,
        )
        deadline = None
        if options.window:
            import time

            from fanout.sim.window import window_scenario

            deadline, more = window_scenario(
                state_dir, document, behaviours, speed=options.speed, now=time.time()
            )
            notes += more
        probe.world.behaviours = behaviours
        path = state_dir / INVENTORY_NAME
        header = (
            "# Written by `fanout demo`: every host is simulated by an in-process SSH server\n"
            f"# on 127.0.0.1:{probe.port} (its host key is in sim/known_hosts).\n"
        )
        path.write_text(header + yaml.safe_dump(document, sort_keys=False))
        err = sys.stderr
        print(
            f"fanout demo: {len(document['hosts'])} simulated hosts on 127.0.0.1:{probe.port}"
            f", speed x{options.speed:g}",
            file=err,
        )
        for line in notes:
            print(line, file=err)
        run = RunOptions(
            inventory=path,
            batch=options.batch,
            no_color=options.no_color,
            state_dir=state_dir,
            argv=options.argv,
            deadline=deadline,
        )
        code = run_inventory(run, serve=probe.serve)
    finally:
        probe.close()
    print(
        f"fanout demo: inventory, logs and run store in {state_dir}\n"
        f"  fanout history --state-dir {state_dir}\n"
        f"  fanout show --state-dir {state_dir}",
        file=sys.stderr,
    )
    return code
