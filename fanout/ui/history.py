"""Text and JSON for ``fanout history`` and ``fanout show``: pure functions of store records.

Plain aligned text that reads at 80 columns, no colour, no rich. Times show in
local time unless ``tz`` is given; JSON times are ISO 8601 in UTC and durations are
seconds. ``now`` (epoch seconds) gives the elapsed time of a run still running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from fnmatch import fnmatchcase
from pathlib import Path

from fanout.escapes import make_visible
from fanout.state import format_elapsed
from fanout.store import HostRecord, RunDetail, RunOutcome, RunSummary, StepRecord
from fanout.ui.summary import NOT_STARTED_NAMES, Problem, problem_lines

__all__ = [
    "format_duration",
    "history_json",
    "render_failed",
    "render_history",
    "render_show",
    "render_show_brief",
    "run_json",
    "run_marks",
    "run_problems",
    "select_run_hosts",
    "show_json",
]

_NONE = "-"
_STATUS_ORDER = ("ok", "failed", "cancelled", "skipped", "not started", "running", "pending")
_Row = Callable[[str, str, str, str], str]  # name, status, duration, extra -> aligned line
# (host, step) -> seconds history expected before the run (median of earlier successes)
Expected = Mapping[tuple[str, str], float | None]


def format_duration(seconds: float | None) -> str:
    """``45s``, ``12m5s``, ``3h7m``: the format of the summary and the live table; ``-`` when
    unknown."""
    return _NONE if seconds is None or seconds < 0 else format_elapsed(seconds)


def _span(started: float | None, ended: float | None, live: bool, now: float) -> float | None:
    """Seconds from start to end; to ``now`` while the run is live; None when unknown."""
    if started is None:
        return None
    if ended is not None:
        return ended - started
    return now - started if live else None


def _live(run: RunSummary) -> bool:
    return run.outcome == RunOutcome.RUNNING


def _time(ts: float | None, tz: tzinfo | None, fmt: str) -> str:
    return _NONE if ts is None else datetime.fromtimestamp(ts, tz).strftime(fmt)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- history ----------------------------------------------------------------------------------


def render_history(runs: Sequence[RunSummary], *, now: float, tz: tzinfo | None = None) -> str:
    """Recent runs, one aligned line each (71 columns for 13-character run ids), plus a NOTE
    column when a run was a resume or selected hosts (``run_marks``).

    Runs are grouped under their inventory's path, groups ordered by their newest
    run, runs kept in the given order (newest first) within a group.
    """
    if not runs:
        return "no runs recorded\n"
    # (header, right-aligned, gap before, cells)
    columns: list[tuple[str, bool, int, list[str]]] = [
        ("RUN", False, 0, [r.run_id for r in runs]),
        ("STARTED", False, 2, [_time(r.started_at, tz, "%Y-%m-%d %H:%M") for r in runs]),
        ("DURATION", True, 1, [format_duration(_run_span(r, now)) for r in runs]),
        ("OUTCOME", False, 2, [r.outcome for r in runs]),
        ("OK", True, 1, [str(r.host_counts.get("ok", 0)) for r in runs]),
        ("FAIL", True, 1, [str(r.host_counts.get("failed", 0)) for r in runs]),
        ("CANC", True, 1, [str(r.host_counts.get("cancelled", 0)) for r in runs]),
        ("EXIT", True, 1, [_NONE if r.exit_code is None else str(r.exit_code) for r in runs]),
    ]
    marks = [run_marks(r) for r in runs]
    if any(marks):  # resumes and --limit/--tag runs say so; a full run leaves it blank
        columns.append(("NOTE", False, 2, marks))
    widths = [max(len(h), *map(len, cells)) for h, _, _, cells in columns]

    def line(cells: Sequence[str]) -> str:
        return "".join(
            " " * gap + (cell.rjust(w) if right else cell.ljust(w))
            for (_, right, gap, _), w, cell in zip(columns, widths, cells, strict=True)
        ).rstrip()

    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.inventory_path, []).append(i)
    sections = [
        "\n".join(
            [f"inventory {inventory}", line([h for h, _, _, _ in columns])]
            + [line([cells[i] for _, _, _, cells in columns]) for i in indexes]
        )
        for inventory, indexes in groups.items()
    ]
    return "\n\n".join(sections) + "\n"


def _run_span(run: RunSummary, now: float) -> float | None:
    return _span(run.started_at, run.ended_at, _live(run), now)


def run_json(run: RunSummary, *, now: float) -> dict[str, object]:
    """One run as JSON-ready data (``history --json`` lists these, ``show --json`` nests one)."""
    return {
        "run_id": run.run_id,
        "inventory": run.inventory_path,
        "inventory_sha256": run.inventory_sha256,
        "argv": list(run.argv),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "duration_seconds": _seconds(_run_span(run, now)),
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "resumed_from": run.resumed_from,
        "pid": run.pid,
        "hostname": run.hostname,
        "host_counts": dict(run.host_counts),
        "step_counts": dict(run.step_counts),
    }


def history_json(runs: Sequence[RunSummary], *, now: float) -> list[dict[str, object]]:
    """``history --json``: the runs in the given order."""
    return [run_json(r, now=now) for r in runs]


# ---- show -------------------------------------------------------------------------------------


def render_show(
    detail: RunDetail, *, now: float, tz: tzinfo | None = None, expected: Expected | None = None
) -> str:
    """One run: a header block, then each host and its steps with status and duration (and
    what history expected of them before the run, where it had any).

    Under a step: its cause and log path. Under a host: its cause, unless a step shows it.
    """
    run, live = detail.run, _live(detail.run)
    exit_text = "" if run.exit_code is None else f" (exit {run.exit_code})"
    order = {status: i for i, status in enumerate(_STATUS_ORDER)}
    ordered = sorted(run.host_counts.items(), key=lambda item: (order.get(item[0], 99), item[0]))
    counts = ", ".join(f"{n} {status}" for status, n in ordered)
    header = [
        ("run", run.run_id),
        ("outcome", run.outcome + exit_text),
        ("inventory", run.inventory_path),
        ("sha256", run.inventory_sha256 or _NONE),
        ("command", " ".join(run.argv) or _NONE),
        ("started", _time(run.started_at, tz, "%Y-%m-%d %H:%M:%S")),
        ("ended", _time(run.ended_at, tz, "%Y-%m-%d %H:%M:%S")),
        ("duration", format_duration(_span(run.started_at, run.ended_at, live, now))),
        ("resumed", f"from {run.resumed_from}" if run.resumed_from else None),
        ("by", f"pid {run.pid} on {run.hostname}" if run.pid is not None else None),
        ("hosts", counts or _NONE),
    ]
    lines = [f"{key:<10} {value}" for key, value in header if value is not None]
    lines += [f"may still be running: {o.host} pgid {o.pgid}" for o in detail.orphans]
    if not detail.hosts:
        return "\n".join(map(make_visible, lines)) + "\n"

    name_w = max(len("HOST / STEP"), *(len(h.name) for h in detail.hosts))
    name_w = max(name_w, *(2 + len(s.step) for h in detail.hosts for s in h.steps), 0)
    statuses = [h.status for h in detail.hosts] + [s.status for h in detail.hosts for s in h.steps]
    status_w = max(len("STATUS"), *map(len, statuses))

    def row(name: str, status: str, duration: str, extra: str = "") -> str:
        text = f"{name:<{name_w}}  {status:<{status_w}}  {duration:>8}"
        return (text + (f"  {extra}" if extra else "")).rstrip()

    lines += ["", row("HOST / STEP", "STATUS", "DURATION")]
    for host in detail.hosts:
        span = _span(host.started_at, host.ended_at, live, now)
        usual = _host_expected(host, expected)
        note = f"expected {format_duration(usual)}" if usual is not None else ""
        lines.append(row(host.name, host.status, format_duration(span), note))
        if host.cause and all(s.cause != host.cause for s in host.steps):
            lines.append(f"      {host.cause}")
        for step in host.steps:
            step_usual = (expected or {}).get((host.name, step.step))
            lines.extend(_step_lines(step, live, now, row, step_usual))
    return "\n".join(map(make_visible, lines)) + "\n"


def _host_expected(host: HostRecord, expected: Expected | None) -> float | None:
    known = [e for s in host.steps if (e := (expected or {}).get((host.name, s.step))) is not None]
    return sum(known) if known else None


def _step_lines(
    step: StepRecord, live: bool, now: float, row: _Row, usual: float | None = None
) -> list[str]:
    notes = []
    if usual is not None:
        notes.append(f"expected {format_duration(usual)}")
    if step.attempt > 1:
        notes.append(f"attempt {step.attempt}")
    if step.exit_status not in (None, 0):
        notes.append(f"exit {step.exit_status}")
    span = _span(step.started_at, step.ended_at, live, now)
    lines = [row(f"  {step.step}", step.status, format_duration(span), ", ".join(notes))]
    if step.cause:
        lines.append(f"      {step.cause}")
    if step.detail:
        lines.append(f"      {step.detail}")
    if step.log_path:
        lines.append(f"      log: {step.log_path}")
    return lines


def show_json(
    detail: RunDetail, *, now: float, expected: Expected | None = None
) -> dict[str, object]:
    """``show --json``: the run, then its hosts in dispatch order with their steps."""
    live = _live(detail.run)
    return {
        "run": run_json(detail.run, now=now),
        "hosts": [_host_json(h, live, now, expected or {}) for h in detail.hosts],
        "may_still_be_running": [
            {"host": o.host, "pgid": o.pgid, "cause": o.cause} for o in detail.orphans
        ],
    }


def _host_json(host: HostRecord, live: bool, now: float, expected: Expected) -> dict[str, object]:
    return {
        "name": host.name,
        "priority": host.priority,
        "address": host.address,
        "oracle_sid": host.oracle_sid,
        "status": host.status,
        "cause": host.cause,
        "started_at": _iso(host.started_at),
        "ended_at": _iso(host.ended_at),
        "duration_seconds": _seconds(_span(host.started_at, host.ended_at, live, now)),
        "expected_seconds": _seconds(_host_expected(host, expected)),
        "steps": [
            {
                "step": s.step,
                "status": s.status,
                "attempt": s.attempt,
                "started_at": _iso(s.started_at),
                "ended_at": _iso(s.ended_at),
                "duration_seconds": _seconds(_span(s.started_at, s.ended_at, live, now)),
                "expected_seconds": _seconds(expected.get((host.name, s.step))),
                "exit_status": s.exit_status,
                "cause": s.cause,
                "log_path": s.log_path,
                "level": s.level,
                "detail": s.detail,
            }
            for s in host.steps
        ],
    }


# ---- show, failures first ---------------------------------------------------------------------

_PROBLEM_STEPS = ("failed", "cancelled", "running")  # 'running' in a run that ended: interrupted


def run_problems(
    detail: RunDetail, host_log: Callable[[str], str | None] | None = None
) -> list[Problem]:
    """What failed or was cancelled in a recorded run, failures first, in dispatch order.

    A step that is still 'running' in a run that is not (interrupted) counts too. A host
    appears on its own when it failed or was cancelled with a cause no step carries, or
    with no failed step at all (unreachable); ``host_log(name)`` names the host's log.
    """
    live = _live(detail.run)
    found: list[Problem] = []
    for host in detail.hosts:
        blamed = False
        for s in host.steps:
            if s.status not in _PROBLEM_STEPS or (live and s.status == "running"):
                continue
            blamed = blamed or s.status == "failed"
            cause = s.cause or ""
            if not cause and s.status == "failed" and s.exit_status is not None:
                cause = f"exit status {s.exit_status}"
            if s.status == "running":
                cause = cause or "never seen to end (the run was interrupted)"
            found.append(
                Problem(
                    s.status,
                    host.name,
                    s.step,
                    cause,
                    _span(s.started_at, s.ended_at, False, 0.0),
                    s.attempt,
                    Path(s.log_path) if s.log_path else None,
                )
            )
        own_cause = bool(host.cause) and all(s.cause != host.cause for s in host.steps)
        if host.status == "failed" and (own_cause or not blamed):
            log = host_log(host.name) if host_log is not None else None
            span = _span(host.started_at, host.ended_at, False, 0.0)
            found.append(
                Problem(
                    "failed", host.name, None, host.cause or "", span, 0, Path(log) if log else None
                )
            )
    return sorted(found, key=lambda p: p.status != "failed")  # stable


def render_failed(detail: RunDetail, host_log: Callable[[str], str | None] | None = None) -> str:
    """``show --failed``: only what failed or was cancelled, with cause and log file."""
    lines = [line for p in run_problems(detail, host_log) for line in problem_lines(p)]
    return "\n".join(map(make_visible, lines)) + "\n" if lines else ""


def render_show_brief(
    detail: RunDetail,
    *,
    now: float,
    tz: tzinfo | None = None,
    host_log: Callable[[str], str | None] | None = None,
) -> str:
    """``show``: the run's header block, then what failed or was cancelled (cause and log
    file), the hosts that never started, and last the totals line (``hosts``), which the
    header of ``render_show`` carries. Every step of every host: ``render_show``."""
    head = render_show(RunDetail(detail.run, (), detail.orphans), now=now, tz=tz).splitlines()
    totals = [line for line in head if line.startswith("hosts ")]
    head = [line for line in head if not line.startswith("hosts ")]
    lines = [line for p in run_problems(detail, host_log) for line in problem_lines(p)]
    never = [h.name for h in detail.hosts if h.status == "not started"]
    if never:
        names = ", ".join(never[:NOT_STARTED_NAMES])
        more = f", +{len(never) - NOT_STARTED_NAMES} more" if len(never) > NOT_STARTED_NAMES else ""
        lines.append(f"Not started ({len(never)}): {names}{more}")
    shown = [*head, "", *lines, *totals] if lines else [*head, *totals]
    return "\n".join(map(make_visible, shown)) + "\n"  # remote text: escaped for the terminal


def select_run_hosts(detail: RunDetail, globs: Sequence[str]) -> RunDetail:
    """The run with only the hosts whose name matches one of ``globs`` (fnmatch)."""
    hosts = tuple(h for h in detail.hosts if any(fnmatchcase(h.name, g) for g in globs))
    names = {h.name for h in hosts}
    return RunDetail(detail.run, hosts, tuple(o for o in detail.orphans if o.host in names))


def run_marks(run: RunSummary) -> str:
    """What set a run apart from a full run of its inventory: ``resume of RUN``, the
    ``--limit`` globs and ``--tag`` tags of its command line; empty for a full run."""
    marks: list[str] = []
    if run.resumed_from:
        marks.append(f"resume of {run.resumed_from}")
    argv = list(run.argv)
    for i, arg in enumerate(argv):
        for long, short, word in (("--limit", "-l", "limit"), ("--tag", "-t", "tag")):
            if arg in (long, short) and i + 1 < len(argv):
                marks.append(f"{word} {argv[i + 1]}")
            elif arg.startswith(long + "="):
                marks.append(f"{word} {arg.split('=', 1)[1]}")
    return ", ".join(marks)
