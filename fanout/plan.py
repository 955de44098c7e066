"""`fanout plan`: the dispatch order and why, what each host runs tonight and why (levels,
conditions, dependencies, where ORACLE_HOME comes from), optionally each step's exact command
and script, and (``--timeline``) the predicted schedule under the limits, the groups and the
window.

Each host's SSH destination is shown as it will really be used: user, address and port after
the ssh config (``HostName``, ``User``, ``Port``) and the ``ProxyJump`` chain, resolved with
asyncssh's own config parser, without connecting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fanout.errors import InventoryError, UsageError
from fanout.forecast import (
    Expected,
    job_of,
    limits_of,
    load_expected,
    order_hosts,
    resolve_deadline,
)
from fanout.inventory import load_inventory
from fanout.model import Host, Inventory, format_duration, parse_time_of_day, select_hosts
from fanout.policy import LevelChoice, select_steps
from fanout.scheduler import Deadline, Timeline, format_elapsed, order_reason, simulate
from fanout.steps import DEFAULT_ORATABS, new_run_id, render_host


@dataclass(frozen=True, slots=True)
class PlanOptions:
    show_scripts: bool = False
    steps: tuple[str, ...] = ()  # --steps
    timeline: bool = False
    deadline: str | None = None  # --deadline: overrides settings.window_end
    start: str | None = None  # --start 01:00: when the run would begin (default: now)
    state_dir: Path | None = None  # where the history is (default: settings.state_dir)
    max_parallel: int | None = None
    width: int = 100  # of the Gantt view


def render_plan(
    path: Path,
    limit: Sequence[str],
    tags: Sequence[str],
    *,
    show_scripts: bool = False,
    steps: Sequence[str] = (),
    state_dir: Path | None = None,
    options: PlanOptions | None = None,
) -> str:
    """Load ``path`` and describe what ``fanout run`` would do, without connecting anywhere
    (``steps``: ``--steps``; ``options``: the timeline and its inputs).

    Backup levels and expected durations come from the run store in ``state_dir`` (default:
    the inventory's), read only. Raises InventoryError, FanoutError (``--steps``,
    ``--start``), StoreError.
    """
    from fanout.paths import resolve_state_dir
    from fanout.targets import plan_levels

    options = options or PlanOptions(show_scripts=show_scripts, state_dir=state_dir)
    inventory = load_inventory(path)
    hosts = select_hosts(inventory.hosts, limit, tags)
    if not hosts:
        raise InventoryError(str(path), None, "", _no_match(limit, tags))
    try:
        hosts = select_steps(inventory, hosts, steps or options.steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    state_dir = resolve_state_dir(options.state_dir or state_dir or inventory.settings.state_dir)
    levels = plan_levels(inventory, hosts, state_dir)
    expected = load_expected(state_dir, hosts)
    ordered = order_hosts(hosts, expected)
    text = describe(
        inventory,
        ordered,
        show_scripts=options.show_scripts or show_scripts,
        levels=levels,
        expected=expected,
        max_parallel=options.max_parallel,
    )
    if options.timeline:
        start = _start(options.start)
        deadline = resolve_deadline(inventory, options.deadline, now=start)
        text += "\n" + timeline_text(
            inventory, ordered, expected, start=start, deadline=deadline, options=options
        )
    return text


def _start(text: str | None) -> datetime:
    now = datetime.now().astimezone()
    if text is None:
        return now
    from fanout.scheduler import next_time_of_day

    try:
        when = parse_time_of_day(text)
    except ValueError as exc:
        raise UsageError(f"--start: {exc}") from exc
    if when.zone is not None:
        raise UsageError("--start: give a local time of day (no zone), like 01:00")
    return next_time_of_day(when.hour, when.minute, now, None)


def _no_match(limit: Sequence[str], tags: Sequence[str]) -> str:
    wanted = [f"--limit {p}" for p in limit] + [f"--tag {t}" for t in tags]
    return "no host matches " + " ".join(wanted) if wanted else "no hosts"


def describe(
    inventory: Inventory,
    selected: Sequence[Host],
    *,
    show_scripts: bool,
    levels: Mapping[str, Mapping[str, LevelChoice]] | None = None,
    expected: Expected | None = None,
    max_parallel: int | None = None,
) -> str:
    """The plan as text: the dispatch order (with each host's SSH destination, expected
    duration and why it sits there), what is decided per host, then (optionally) each
    step's command and script. ``levels``: host → step → its level choice."""
    levels = levels or {}
    s = inventory.settings
    expected = expected or {}
    lines = [
        f"Plan for {inventory.path}: {len(selected)} of {len(inventory.hosts)} hosts, "
        f"max_parallel {max_parallel or s.max_parallel}, "
        f"cancel_grace {format_duration(s.cancel_grace)}",
    ]
    if inventory.groups:
        groups = ", ".join(f"{g.name} {g.max_parallel}" for g in inventory.groups.values())
        lines.append(f"Capacity groups (max_parallel): {groups}")
    if s.window_end is not None:
        hard = ", hard: running steps are cancelled then" if s.hard_deadline else ""
        lines.append(f"Window ends at {s.window_end.label}{hard}")
    lines.append("")
    rows: list[tuple[str, ...]] = [
        ("#", "PRI", "HOST", "SID", "SSH", "VIA", "STEPS", "GROUPS", "EXPECTED", "ORDER")
    ]
    trust: dict[str, None] = {}
    for i, h in enumerate(selected, 1):
        ssh, via, known = _ssh(h)
        trust[known] = None
        job = job_of(h, expected)
        rows.append(
            (
                str(i),
                str(h.priority),
                h.name,
                h.oracle_sid,
                ssh,
                via,
                _steps(h, levels),
                ",".join(h.groups) or "-",
                format_elapsed(job.expected) if job.expected is not None else "-",
                order_reason(job),
            )
        )
    if not inventory.groups:  # no capacity groups: no GROUPS column
        gone = rows[0].index("GROUPS")
        rows = [row[:gone] + row[gone + 1 :] for row in rows]
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


def timeline_text(
    inventory: Inventory,
    ordered: Sequence[Host],
    expected: Expected,
    *,
    start: datetime,
    deadline: Deadline | None,
    options: PlanOptions,
) -> str:
    """The predicted schedule: each host's start and end, the makespan, whether it fits the
    window, and a Gantt view. The same Dispatcher as ``run``, on a simulated clock."""
    origin = start.timestamp()
    timeline = simulate(
        [job_of(h, expected) for h in ordered],
        limits_of(inventory, options.max_parallel),
        now=origin,
        deadline=deadline,
    )
    lines = [f"Timeline (predicted from history; starting {start:%Y-%m-%d %H:%M}):", ""]
    if all(p.job.expected is None for p in timeline.hosts):
        lines.append(
            "  No history for these hosts yet: the timeline needs one successful run of theirs."
        )
        return "\n".join(lines) + "\n"
    width = max(len(p.job.name) for p in timeline.hosts)
    for p in timeline.hosts:
        if p.start is None or p.end is None:
            lines.append(f"  {p.job.name:<{width}}  not started: {p.refused}")
            continue
        guess = "  (no history: assumed)" if p.assumed else ""
        lines.append(
            f"  {p.job.name:<{width}}  {_clock(p.start)} → {_clock(p.end)}  "
            f"{format_elapsed(p.end - p.start):>6}{guess}"
        )
    lines += [
        "",
        f"Predicted makespan {format_elapsed(timeline.makespan)}, "
        f"ending {_clock(timeline.end, days_from=origin)}",
    ]
    lines.append(_verdict(timeline, deadline))
    lines += ["", *gantt(timeline, deadline, width=options.width)]
    return "\n".join(lines) + "\n"


def _verdict(timeline: Timeline, deadline: Deadline | None) -> str:
    if deadline is None:
        return "No window set (settings.window_end or --deadline)."
    refused = len(timeline.refused)
    if refused:
        return (
            f"Does NOT fit the window ending {deadline.label}: "
            f"{refused} host{'s' if refused != 1 else ''} would not be started."
        )
    if timeline.end > deadline.at:
        late = format_elapsed(timeline.end - deadline.at)
        return f"Does NOT fit the window ending {deadline.label}: {late} late."
    spare = format_elapsed(deadline.at - timeline.end)
    return f"Fits the window ending {deadline.label} with {spare} to spare."


def gantt(timeline: Timeline, deadline: Deadline | None, *, width: int = 100) -> list[str]:
    """A text Gantt view: one row per started host, ``█`` while it runs, ``|`` at the deadline."""
    started = [p for p in timeline.hosts if p.start is not None and p.end is not None]
    if not started:
        return []
    name_w = min(24, max(len(p.job.name) for p in started))
    span_end = max(timeline.end, deadline.at if deadline is not None else timeline.end)
    span = max(1.0, span_end - timeline.start)
    cols = max(10, width - name_w - 3)

    def col(at: float) -> int:
        return min(cols - 1, int((at - timeline.start) / span * cols))

    mark = col(deadline.at) if deadline is not None else None
    end = f"+{format_elapsed(span)}"
    lines = [f"{'':<{name_w}}  " + "+0".ljust(cols - len(end)) + end]
    for p in started:
        assert p.start is not None
        assert p.end is not None
        a, b = col(p.start), max(col(p.start), col(p.end) - 1)
        row = [" "] * cols
        if mark is not None:
            row[mark] = "|"
        for c in range(a, b + 1):
            row[c] = "█"
        lines.append(f"{p.job.name[:name_w]:<{name_w}}  {''.join(row)}")
    return lines


def _clock(at: float, days_from: float | None = None) -> str:
    moment = datetime.fromtimestamp(at).astimezone()
    text = f"{moment:%H:%M}"
    if days_from is not None:
        days = (moment.date() - datetime.fromtimestamp(days_from).astimezone().date()).days
        if days:
            text += f" (+{days}d)"
    return text
