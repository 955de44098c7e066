"""`fanout plan`: the dispatch order and, optionally, each step's exact command and script.

Each host's SSH destination is shown as it will really be used: user, address and port after
the ssh config (``HostName``, ``User``, ``Port``) and the ``ProxyJump`` chain, resolved with
asyncssh's own config parser, without connecting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fanout.errors import InventoryError
from fanout.inventory import load_inventory
from fanout.model import Host, Inventory, format_duration, select_hosts
from fanout.steps import new_run_id, render_host


def render_plan(
    path: Path, limit: Sequence[str], tags: Sequence[str], *, show_scripts: bool
) -> str:
    """Load ``path`` and describe what ``fanout run`` would do. Raises InventoryError."""
    inventory = load_inventory(path)
    hosts = select_hosts(inventory.hosts, limit, tags)
    if not hosts:
        raise InventoryError(str(path), None, "", _no_match(limit, tags))
    return describe(inventory, hosts, show_scripts=show_scripts)


def _no_match(limit: Sequence[str], tags: Sequence[str]) -> str:
    wanted = [f"--limit {p}" for p in limit] + [f"--tag {t}" for t in tags]
    return "no host matches " + " ".join(wanted) if wanted else "no hosts"


def describe(inventory: Inventory, selected: Sequence[Host], *, show_scripts: bool) -> str:
    """The plan as text: the dispatch order, then (optionally) each step's command and script."""
    s = inventory.settings
    lines = [
        f"Plan for {inventory.path}: {len(selected)} of {len(inventory.hosts)} hosts, "
        f"max_parallel {s.max_parallel}, cancel_grace {format_duration(s.cancel_grace)}",
        "",
    ]
    rows = [("#", "PRI", "HOST", "SID", "SSH", "VIA", "STEPS")]
    trust: dict[str, None] = {}
    for i, h in enumerate(selected, 1):
        ssh, via, known = _ssh(h)
        trust[known] = None
        rows.append((str(i), str(h.priority), h.name, h.oracle_sid, ssh, via, ", ".join(h.steps)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    right = {0, 1}
    for row in rows:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines += ["", f"Host keys (every hop): {', '.join(trust)}"]
    if show_scripts:
        run_id = new_run_id()
        lines += ["", f"Scripts (rendered for run id {run_id}; each run gets its own):"]
        for host in selected:
            for step in render_host(inventory, host, run_id):
                lines += [
                    "",
                    f"--- {host.name} / {step.name} ({step.kind}, "
                    f"timeout {format_duration(step.timeout)}, retries {step.retries}, "
                    f"on_failure {step.on_failure})",
                    f"$ {step.command}",
                ]
                if step.stdin:
                    lines += [
                        "  " + line if line else "" for line in step.stdin.rstrip("\n").split("\n")
                    ]
    return "\n".join(lines) + "\n"


def _ssh(host: Host) -> tuple[str, str, str]:
    """(user@address:port, jump chain or "-", known_hosts) as the connection will use them."""
    from fanout.errors import TransportError
    from fanout.transport.connect import known_hosts_path, resolve

    try:
        where = resolve(host)
    except TransportError as exc:  # shown, not fatal: `run` reports it for this host
        target = f"{host.user}@{host.address}" if host.user else host.address
        return f"{target}:{host.port or 22} ({exc.reason})", "-", str(known_hosts_path(host))
    via = ",".join(where.jumps) or "-"
    return f"{where.user}@{where.hostname}:{where.port}", via, str(where.known_hosts)
