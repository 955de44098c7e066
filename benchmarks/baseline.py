"""Baseline for the benchmarks: the least a Python client must do for the same work as fanout.

One asyncssh connection per host, all hosts at once (``asyncio.gather``); on each, its steps in
sequence, each an exec channel running the environment prologue and ``rman target /`` with
the RMAN script on stdin, output collected. Host keys are verified against the inventory's
known_hosts file (read once), the client key is read once, ssh_config is not consulted, and
the ciphers offered are fanout's (``PREFERRED_CIPHERS``: AES-GCM first), so the ratio measures
fanout's own client work, not a cipher choice. No events, logs, store, limits, retries or
signal handling.

    python benchmarks/baseline.py INVENTORY.yaml [--wrapped]

``--wrapped`` sends fanout's exact remote command instead (pgid line, per-database lock,
``fanout.steps.render_step`` + ``fanout.transport.ssh.wrap_command``), which separates the
cost of that remote wrapper from the cost of fanout's client. Exit 0 if every step exited 0.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

import asyncssh
import yaml

#: fanout.transport.connect.PREFERRED_CIPHERS, spelled out so that the baseline does not pay
#: for importing fanout (run.py checks that the two agree).
PREFERRED_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
#: Seconds for TCP + handshake + auth; run.py gives fanout's inventories the same.
CONNECT_TIMEOUT = 60

STEP_BODIES = {
    "full": "BACKUP INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';",
    "archivelog": "SQL 'ALTER SYSTEM ARCHIVE LOG CURRENT';\n"
    "BACKUP ARCHIVELOG ALL NOT BACKED UP 1 TIMES TAG 'FANOUT_ARCH';",
    "controlfile": "BACKUP CURRENT CONTROLFILE TAG 'FANOUT_CTL';\nBACKUP SPFILE TAG 'FANOUT_SPF';",
}


def plain_step(host: dict[str, Any], step: str) -> tuple[str, str]:
    env = {
        "ORACLE_SID": host["oracle_sid"],
        "ORACLE_HOME": host["oracle_home"],
        "NLS_LANG": "AMERICAN_AMERICA.AL32UTF8",
        "NLS_DATE_FORMAT": "YYYY-MM-DD HH24:MI:SS",
    }
    prologue = "; ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f'{prologue}; export {" ".join(env)}; exec "$ORACLE_HOME/bin/rman" target /'
    body = "".join(f"  {line}\n" for line in STEP_BODIES[step].splitlines())
    script = f"RUN {{\n  SET COMMAND ID TO 'baseline';\n{body}}}\nEXIT;\n"
    return command, script


def wrapped_steps(path: Path) -> dict[str, list[tuple[str, str]]]:
    from fanout.inventory import load_inventory
    from fanout.steps import render_host
    from fanout.transport.ssh import wrap_command

    inventory = load_inventory(path)
    out = {}
    for host in inventory.hosts:
        steps = render_host(inventory, host, "20261123T000000Z-base")
        out[host.name] = [(wrap_command(s.command), s.stdin or "") for s in steps]
    return out


async def run_host(
    host: dict[str, Any],
    steps: list[tuple[str, str]],
    known: asyncssh.SSHKnownHosts,
    key: asyncssh.SSHKey,
) -> bool:
    async with asyncssh.connect(
        host["address"],
        port=host["port"],
        username=host["user"],
        known_hosts=known,
        client_keys=[key],
        config=None,
        agent_path=None,
        connect_timeout=CONNECT_TIMEOUT,
        encryption_algs=PREFERRED_CIPHERS,
    ) as conn:
        ok = True
        for command, script in steps:
            result = await conn.run(command, input=script, check=False)
            ok = ok and result.exit_status == 0
        return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--wrapped", action="store_true", help="fanout's exact remote command")
    args = parser.parse_args()
    document = yaml.safe_load(args.inventory.read_text())
    defaults = document.get("defaults", {})
    hosts = [{**defaults, **h} for h in document["hosts"]]
    known = asyncssh.read_known_hosts(defaults["known_hosts"])
    key = asyncssh.read_private_key(defaults["identity_file"])
    names = ("full", "archivelog", "controlfile")
    wrapped = wrapped_steps(args.inventory) if args.wrapped else {}
    results = await asyncio.gather(
        *(
            run_host(h, wrapped.get(h["name"]) or [plain_step(h, s) for s in names], known, key)
            for h in hosts
        ),
        return_exceptions=True,
    )
    failures = [r for r in results if r is not True]
    for failure in failures[:5]:
        print(f"baseline: {failure!r}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
