"""The end-of-run summary: plain text (batch, cron mail), one line, or a rich Table.

The plain text path imports nothing from rich; ``render_summary_rich`` imports it
when called. Layout of the text (fits 80 columns; long causes wrap under their
column, at most ``CAUSE_LINES`` lines)::

    fanout run 20261123T171435Z-3f9a (nightly.yaml), 3m12s

    erp-prod (ERP, priority 1): FAILED in 5m40s
      full         ok         5m26s
      archivelog   FAILED       12s  ORA-19809: limit exceeded for recovery files
      controlfile  skipped
    Not started (2): db-7, db-8

    Hosts:     0 ok, 1 failed, 0 cancelled, 2 not started (3 in all)
    Steps:     1 ok, 1 failed, 0 cancelled, 7 skipped (9 in all)
    Failed:    erp-prod
    Logs:      /home/oracle/.local/state/fanout/logs/20261123T171435Z-3f9a
    Exit:      1 (at least one step failed)
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fanout.events import CancelReason
from fanout.state import CellStatus, HostPhase, HostRow, RunState, StepCell, format_elapsed

if TYPE_CHECKING:
    from rich.table import Table

WIDTH = 80
CAUSE_LINES = 3  # a longer cause is cut with " …"; the full text is in the step log
STEP_WIDTH_MAX = 24  # a longer step name pushes its own row's columns right
NAMES_IN_LINE = 3  # failed hosts named in the summary line
LABEL_WIDTH = len("Cancelled: ")

CANCEL_TEXT: dict[CancelReason, str] = {
    CancelReason.OPERATOR: "by the operator (q/quit)",
    CancelReason.SIGINT: "by SIGINT (Ctrl-C)",
    CancelReason.SIGTERM: "by SIGTERM",
    CancelReason.LEADERSHIP_LOST: "on losing cluster leadership",
}

EXIT_MEANINGS: dict[int, str] = {
    0: "every step succeeded",
    1: "at least one step failed",
    2: "usage or inventory error",
    75: "another run holds the lock",
    76: "cluster leadership lost: another node continues the run",
    130: "cancelled by the operator",
    143: "stopped by SIGTERM",
}


def exit_meaning(exit_code: int) -> str:
    return EXIT_MEANINGS.get(exit_code, "unexpected exit code")


def _status_word(status: str) -> str:
    return status.upper() if status == CellStatus.FAILED else status


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _name_list(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, +{len(names) - limit} more" if len(names) > limit else shown


# ------------------------------------------------------------------ one line


def summary_line(state: RunState, exit_code: int) -> str:
    """``fanout run <id>: 48/50 hosts ok, 2 failed (erp-prod, crm-prod) in 3m12s — exit 1``."""
    counts = state.host_counts()
    parts = [f"{counts.ok}/{counts.total} hosts ok"]
    if counts.failed:
        failed = [row.name for row in state.hosts_with(HostPhase.FAILED)]
        parts.append(f"{counts.failed} failed ({_name_list(failed, NAMES_IN_LINE)})")
    if counts.cancelled:
        parts.append(f"{counts.cancelled} cancelled")
    if counts.not_started:
        parts.append(f"{counts.not_started} not started")
    if counts.active or counts.queued:  # only before the run has finished
        parts.append(f"{counts.active} running, {counts.queued} queued")
    duration = format_elapsed(state.duration)
    return f"fanout run {state.run_id}: {', '.join(parts)} in {duration} — exit {exit_code}"


# ------------------------------------------------------------------ plain text


def _cause_text(cell: StepCell) -> str:
    """What the cause column says: retries, then the cause (or the exit status)."""
    parts: list[str] = []
    if cell.attempt > 1:
        parts.append(f"attempt {cell.attempt}")
    if cell.cause:
        parts.append(cell.cause)
    elif cell.status is CellStatus.FAILED and cell.exit_status is not None:
        parts.append(f"exit status {cell.exit_status}")
    return ": ".join(parts)


def _time_text(cell: StepCell) -> str:
    if cell.status in (CellStatus.SKIPPED, CellStatus.QUEUED) or cell.duration is None:
        return ""
    return format_elapsed(cell.duration)


def _wrap(
    text: str, width: int, indent: str = "", *, hanging: str = "", max_lines: int | None = None
) -> list[str]:
    """Word-wrap ``text``: the first line starts with ``indent``, the rest ``indent + hanging``."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + hanging,
        break_on_hyphens=False,
        max_lines=max_lines,
        placeholder=" …",
    )


def _host_header(row: HostRow) -> str:
    sid = f"{row.sid}, " if row.sid else ""
    text = f"{row.name} ({sid}priority {row.priority}): {_status_word(row.status)}"
    if row.finished and row.duration is not None:
        text += f" in {format_elapsed(row.duration)}"
    if row.cause:
        text += f": {row.cause}"
    if row.crashed:
        text += " (traceback in host.log)"
    return text


def _host_block(row: HostRow, step_width: int) -> Iterable[str]:
    yield from _wrap(_host_header(row), WIDTH, hanging="    ")
    for cell in row.steps.values():
        name = cell.name.ljust(step_width)
        head = f"  {name}  {_status_word(cell.status):<9} {_time_text(cell):>6}"
        cause = _cause_text(cell)
        if not cause:
            yield head.rstrip()
            continue
        column = len(head) + 2
        if WIDTH - column >= 20:
            lines = _wrap(cause, WIDTH - column, max_lines=CAUSE_LINES)
            yield f"{head}  {lines[0]}"
            yield from (" " * column + line for line in lines[1:])
        else:  # no room beside a very long step name: the cause goes below
            yield head.rstrip()
            yield from _wrap(cause, WIDTH, " " * 6, max_lines=CAUSE_LINES)


def render_summary_text(state: RunState, *, log_dir: Path, exit_code: int) -> str:
    """The summary as plain text (newline-terminated) for batch mode and the end of a run.

    Hosts in dispatch order, every step with its time and cause; hosts that never
    started are listed by name; then the totals, the failed hosts, the log
    directory and the exit code with its meaning.
    """
    lines: list[str] = []
    title = f"fanout run {state.run_id} ({state.inventory}), {format_elapsed(state.duration)}"
    lines.extend(_wrap(title, WIDTH, hanging="    "))
    lines.append("")
    names = [len(cell.name) for row in state.rows.values() for cell in row.steps.values()]
    step_width = min(max(names, default=4), STEP_WIDTH_MAX)
    not_started: list[str] = []
    for row in state.rows.values():
        if row.status is HostPhase.NOT_STARTED:
            not_started.append(row.name)
        else:
            lines.extend(_host_block(row, step_width))
    if not_started:
        label = f"Not started ({len(not_started)}): "
        lines.extend(_wrap(label + ", ".join(not_started), WIDTH, hanging="    "))
    lines.append("")
    lines.extend(_totals(state, log_dir, exit_code))
    return "\n".join(lines) + "\n"


def _labelled(label: str, text: str) -> list[str]:
    return _wrap(f"{label + ':':<{LABEL_WIDTH}}{text}", WIDTH, hanging=" " * LABEL_WIDTH)


def _totals(state: RunState, log_dir: Path, exit_code: int) -> Iterable[str]:
    hosts = state.host_counts()
    steps = state.step_counts()
    host_totals = (
        f"{hosts.ok} ok, {hosts.failed} failed, {hosts.cancelled} cancelled,"
        f" {hosts.not_started} not started ({hosts.total} in all)"
    )
    if hosts.active or hosts.queued:
        host_totals += f", {hosts.active} running, {hosts.queued} queued"
    yield from _labelled("Hosts", host_totals)
    step_totals = (
        f"{steps.ok} ok, {steps.failed} failed, {steps.cancelled} cancelled,"
        f" {steps.skipped} skipped ({steps.total} in all)"
    )
    if steps.running or steps.queued:
        step_totals += f", {steps.running} running, {steps.queued} queued"
    yield from _labelled("Steps", step_totals)
    failed = [row.name for row in state.hosts_with(HostPhase.FAILED)]
    if failed:
        yield from _labelled("Failed", ", ".join(failed))
    reason = state.cancel_reason
    if reason is not None:
        forced = ", forced" if state.cancel is not None and state.cancel.forced else ""
        yield from _labelled("Cancelled", f"{CANCEL_TEXT[reason]}{forced}")
    yield f"{'Logs:':<{LABEL_WIDTH}}{log_dir}"  # a path is never wrapped
    yield from _labelled("Exit", f"{exit_code} ({exit_meaning(exit_code)})")


# ------------------------------------------------------------------ rich

_STYLES: dict[str, str] = {
    CellStatus.OK: "green",
    CellStatus.FAILED: "bold red",
    CellStatus.CANCELLED: "yellow",
    CellStatus.SKIPPED: "dim",
    CellStatus.QUEUED: "dim",
    CellStatus.RUNNING: "cyan",
    CellStatus.RETRYING: "cyan",
    HostPhase.CONNECTING: "cyan",
    HostPhase.NOT_STARTED: "dim",
}


def render_summary_rich(state: RunState, *, log_dir: Path, exit_code: int) -> Table:
    """The summary as a rich Table for the end of an interactive run (one row per step)."""
    from rich.table import Table
    from rich.text import Text

    hosts = state.host_counts()
    steps = state.step_counts()
    caption = (
        f"hosts {hosts.ok} ok · {hosts.failed} failed · {hosts.cancelled} cancelled ·"
        f" {hosts.not_started} not started — steps {steps.ok} ok · {steps.failed} failed ·"
        f" {steps.cancelled} cancelled · {steps.skipped} skipped\n"
        f"logs {log_dir}\nexit {exit_code}: {exit_meaning(exit_code)}"
    )
    table = Table(
        title=f"fanout run {state.run_id} · {format_elapsed(state.duration)}",
        caption=caption,
        caption_justify="left",
        expand=False,
    )
    table.add_column("Host", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("Step", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("Status", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Cause", overflow="fold", ratio=1)
    for row in state.rows.values():
        host = Text(row.name, style="bold red" if row.status is HostPhase.FAILED else "")
        if row.status is HostPhase.NOT_STARTED or not row.steps or row.cause:
            host_time = format_elapsed(row.duration) if row.duration else ""
            status = Text(_status_word(row.status), style=_STYLES[row.status])
            table.add_row(host, "-", status, host_time, row.cause)
            host = Text("")
            if row.status is HostPhase.NOT_STARTED:
                continue
        for cell in row.steps.values():
            status = Text(_status_word(cell.status), style=_STYLES[cell.status])
            table.add_row(host, cell.name, status, _time_text(cell), _cause_text(cell))
            host = Text("")
    return table
