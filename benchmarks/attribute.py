"""Where fanout's client CPU goes: the same run with parts of the pipeline switched off.

    python benchmarks/attribute.py INVENTORY.yaml --sinks none|state|logs|store|all [--json]

Runs the inventory in-process through fanout's real Engine and SshTransport (as ``fanout run``
does, without the CLI), with only the chosen sinks: ``none`` (events dropped), ``state``
(the RunState fold + quiet batch lines), ``logs`` (per-step log files), ``store`` (SQLite run
store), ``all`` (what ``fanout run --batch --quiet`` uses). Prints import time, then user and
system CPU seconds and wall time of the run itself (``getrusage(RUSAGE_SELF)``, all threads).
``benchmarks/run.py --attribute`` runs every variant and adds a table to RESULTS.md.

Experiments (not fanout's behaviour, to size a possible fix): ``--keepalive 0`` turns asyncssh
keepalives off (with them on, asyncssh re-arms a timer for every chunk received);
``--preload-key`` hands asyncssh the client key parsed once instead of its path (asyncssh
otherwise reads and parses the key file for every connection).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import sys
import time
from pathlib import Path

start_import = time.process_time()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fanout.cancel import CancelToken  # noqa: E402
from fanout.engine import Engine, Target  # noqa: E402
from fanout.events import Event, EventSink, FanOut  # noqa: E402
from fanout.inventory import load_inventory  # noqa: E402
from fanout.steps import new_run_id, render_host  # noqa: E402
from fanout.transport.ssh import SshTransport  # noqa: E402


def preload_keys() -> None:
    """Wrap asyncssh.connect as fanout's transport sees it: key paths become parsed keys."""
    import asyncssh

    from fanout.transport import connect as ssh  # the module that calls asyncssh.connect

    cache: dict[str, asyncssh.SSHKey] = {}
    real = asyncssh.connect

    def connect(*args: object, **kwargs: object) -> object:
        keys = kwargs.get("client_keys")
        if isinstance(keys, list):
            kwargs["client_keys"] = [
                cache.setdefault(k, asyncssh.read_private_key(k)) if isinstance(k, str) else k
                for k in keys
            ]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    ssh.asyncssh = type("_Shim", (), {"__getattr__": lambda _s, n: getattr(asyncssh, n)})()
    ssh.asyncssh.connect = connect  # type: ignore[attr-defined]


class Drop:
    def emit(self, event: Event) -> None:
        pass


async def run(path: Path, resolved: str, sinks: str, keepalive: float) -> int:
    from fanout.logs import LogSink
    from fanout.state import RunState
    from fanout.store import open_store
    from fanout.ui.plain import PlainSink

    inventory = load_inventory(path)
    state_dir = inventory.settings.state_dir or path.parent / "state"
    run_id = new_run_id()
    targets = [Target(h, render_host(inventory, h, run_id)) for h in inventory.hosts]
    chosen: list[EventSink] = [Drop()]
    with open_store(state_dir) as store, LogSink(state_dir) as logs:
        if sinks in ("state", "all"):
            chosen += [RunState(), PlainSink(io.StringIO(), quiet=True)]
        if sinks in ("logs", "all"):
            chosen.append(logs)
        if sinks in ("store", "all"):
            chosen.append(store)
        engine = Engine(
            run_id=run_id,
            inventory=str(path),
            targets=targets,
            transport=SshTransport(
                max_connecting=inventory.settings.max_connecting, keepalive_interval=keepalive
            ),
            sink=FanOut(chosen),
            token=CancelToken(),
            max_parallel=inventory.settings.max_parallel,
            cancel_grace=inventory.settings.cancel_grace,
        )
        return await engine.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--sinks", choices=("none", "state", "logs", "store", "all"), default="all")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keepalive", type=float, default=30.0, help="experiment, see above")
    parser.add_argument("--preload-key", action="store_true", help="experiment, see above")
    args = parser.parse_args()
    if args.preload_key:
        preload_keys()
    imported = time.process_time() - start_import
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    resolved = str(args.inventory.resolve())
    code = asyncio.run(run(args.inventory, resolved, args.sinks, args.keepalive))
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "sinks": args.sinks,
        "keepalive": args.keepalive,
        "preload_key": args.preload_key,
        "import_cpu": imported,
        "user": after.ru_utime - before.ru_utime,
        "system": after.ru_stime - before.ru_stime,
        "wall": wall,
        "exit": code,
    }
    print(json.dumps(result) if args.json else result)
    return code


if __name__ == "__main__":
    sys.exit(main())
