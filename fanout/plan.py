"""`fanout plan`: the dispatch order, what each host runs tonight and why (levels,
conditions, dependencies, where ORACLE_HOME comes from) and, optionally, each step's
exact command and script.

Each host's SSH destination is shown as it will really be used: user, address and port after
the ssh config (``HostName``, ``User``, ``Port``) and the ``ProxyJump`` chain, resolved with
asyncssh's own config parser, without connecting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fanout.errors import FanoutError, InventoryError
from fanout.inventory import load_inventory
from fanout.model import Host, Inventory, format_duration, select_hosts
from fanout.policy import LevelChoice, select_steps
from fanout.steps import DEFAULT_ORATABS, new_run_id, render_host


def render_plan(
    path: Path,
    limit: Sequence[str],
    tags: Sequence[str],
    *,
    show_scripts: bool,
    steps: Sequence[str] = (),
    state_dir: Path | None = None,
) -> str:
    """Load ``path`` and describe what ``fanout run`` would do (``steps``: ``--steps``).

    Backup levels are decided from the run store in ``state_dir`` (default: the
    inventory's), read only. Raises InventoryError, FanoutError (``--steps``), StoreError.
    """
    from fanout.paths import resolve_state_dir
    from fanout.runner import plan_levels

    inventory = load_inventory(path)
    hosts = select_hosts(inventory.hosts, limit, tags)
    if not hosts:
        raise InventoryError(str(path), None, "", _no_match(limit, tags))
    try:
        hosts = select_steps(inventory, hosts, steps)
    except ValueError as exc:
        raise FanoutError(str(exc)) from exc
    levels = plan_levels(
        inventory, hosts, resolve_state_dir(state_dir or inventory.settings.state_dir)
    )
    return describe(inventory, hosts, show_scripts=show_scripts, levels=levels)


def _no_match(limit: Sequence[str], tags: Sequence[str]) -> str:
    wanted = [f"--limit {p}" for p in limit] + [f"--tag {t}" for t in tags]
    return "no host matches " + " ".join(wanted) if wanted else "no hosts"


def describe(
    inventory: Inventory,
    selected: Sequence[Host],
    *,
    show_scripts: bool,
    levels: Mapping[str, Mapping[str, LevelChoice]] | None = None,
) -> str:
    """The plan as text: the dispatch order, what is decided per host, then (optionally)
    each step's command and script. ``levels``: host → step → its level choice."""
    levels = levels or {}
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
        rows.append((str(i), str(h.priority), h.name, h.oracle_sid, ssh, via, _steps(h, levels)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    right = {0, 1}
    for row in rows:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines += ["", f"Host keys (every hop): {', '.join(trust)}"]
    noted = [(host.name, _notes(inventory, host, levels)) for host in selected]
    noted = [(name, notes) for name, notes in noted if notes]
    if noted:
        width = max(len(name) for name, _ in noted)
        lines += ["", "Decided per host:"]
        for name, notes in noted:
            lines += [f"  {(name if i == 0 else ''):<{width}}  {n}" for i, n in enumerate(notes)]
    if show_scripts:
        run_id = new_run_id()
        lines += ["", f"Scripts (rendered for run id {run_id}; each run gets its own):"]
        for host in selected:
            for step in render_host(inventory, host, run_id, levels=levels.get(host.name)):
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


def _steps(host: Host, levels: Mapping[str, Mapping[str, LevelChoice]]) -> str:
    chosen = levels.get(host.name, {})
    return ", ".join(
        f"{name} {chosen[name].short}" if name in chosen else name for name in host.steps
    )


def _notes(
    inventory: Inventory, host: Host, levels: Mapping[str, Mapping[str, LevelChoice]]
) -> list[str]:
    """What ``fanout run`` decides for ``host`` beyond its step list: one line each."""
    notes = []
    if host.when:
        notes += _condition("runs only if (on the host):", host.when)
    if host.oracle_home is None:
        files = (host.oratab,) if host.oratab else DEFAULT_ORATABS
        notes.append(
            f"ORACLE_HOME: resolved on the host from {' or '.join(files)} ({host.oracle_sid})"
        )
    if host.catalog:
        optional = ", NOCATALOG with a warning if unreachable" if host.catalog_optional else ""
        notes.append(f"recovery catalog {host.catalog} (wallet){optional}")
    for name in host.steps:
        step = inventory.steps[name]
        choice = levels.get(host.name, {}).get(name)
        if choice is not None:
            notes.append(f"{name}: {choice.describe()}")
        if step.requires:
            notes.append(f"{name}: only if {', '.join(step.requires)} succeeded in this run")
        if step.when:
            notes += _condition(f"{name}: only if (on the host):", step.when)
        if step.configure:
            notes.append(f"{name}: {len(step.configure)} CONFIGURE command(s) before RUN")
    return notes


def _condition(label: str, text: str) -> list[str]:
    """A condition as written: on the label's line if it is one line, else indented below."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) == 1:
        return [f"{label} {lines[0].strip()}"]
    return [label, *(f"  {line}" for line in lines)]
