"""The end-of-run summary: plain text (batch, cron mail), one line, or a rich Table.

Failures first, at any size: what failed or was cancelled (host, step, cause, log
path), then the hosts that never started (a few names and a count), then one line
of totals (``summary_line``). A run where everything succeeded is that one line.
Every step of every host is in ``fanout show --all``; batch mode printed them as
they ended. The plain text path imports nothing from rich; ``render_summary_rich``
imports it when called. Layout of the text (fits 80 columns; long causes wrap,
at most ``CAUSE_LINES`` lines; a log path is never wrapped)::

    FAILED     erp-prod archivelog (attempt 2, 12s): ORA-19809: limit exceeded
               for recovery files
               log: /home/oracle/.local/state/fanout/logs/…/erp-prod.log
    FAILED     crm-prod (5m28s): Connection refused
               log: /home/oracle/.local/state/fanout/logs/…/crm-prod.log
    cancelled  erp-prod controlfile (2s)
               log: /home/oracle/.local/state/fanout/logs/…/erp-prod.log
    Not started (2): db-7, db-8
    Cancelled: by the operator (q/quit)
    fanout run 20261123T171435Z-3f9a: 0/3 hosts ok, 2 failed (erp-prod, crm-prod), …
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fanout.errors import exit_meaning
from fanout.escapes import make_visible
from fanout.events import CancelReason
from fanout.state import CellStatus, HostPhase, RunState, format_elapsed

if TYPE_CHECKING:
    from rich.console import RenderableType

WIDTH = 80
CAUSE_LINES = 3  # a longer cause is cut with " …"; the full text is in the step log
NAMES_IN_LINE = 3  # failed hosts named in the summary line
LABEL_WIDTH = len("Cancelled: ")

CANCEL_TEXT: dict[CancelReason, str] = {
    CancelReason.OPERATOR: "by the operator (q/quit)",
    CancelReason.SIGINT: "by SIGINT (Ctrl-C)",
    CancelReason.SIGTERM: "by SIGTERM",
    CancelReason.STORE: "because the run store could not record the run",
    CancelReason.LEADERSHIP_LOST: "on losing cluster leadership",
}


def _status_word(status: str) -> str:
    return status.upper() if status == CellStatus.FAILED else status


def _name_list(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, +{len(names) - limit} more" if len(names) > limit else shown


# ------------------------------------------------------------------ one line


def summary_line(state: RunState, exit_code: int) -> str:
    """``fanout run <id>: 48/50 hosts ok, 2 failed (erp-prod, crm-prod) in 3m12s — exit 1
    (at least one step failed)``: the totals in one line (never wrapped: cron mail, grep)."""
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
    if state.orphans:
        parts.append(f"{len(state.orphans)} may still be running")
    duration = format_elapsed(state.duration)
    ending = f"exit {exit_code} ({exit_meaning(exit_code)})"
    return f"fanout run {state.run_id}: {', '.join(parts)} in {duration} — {ending}"


def orphan_lines(state: RunState) -> list[str]:
    """``may still be running: <host> pgid <n>``, one per remote group left unconfirmed."""
    return [f"may still be running: {o.host} pgid {o.pgid}" for o in state.orphans]


# ------------------------------------------------------------------ plain text


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


NOT_STARTED_NAMES = 10  # hosts named in the "Not started" line; the rest are counted
KIND_WIDTH = len("cancelled  ")


@dataclass(frozen=True, slots=True)
class Problem:
    """One line of the failures-first summary: a failed or cancelled step, or a host
    that failed (or was cancelled) with no step to blame."""

    status: str  # "failed" or "cancelled"
    host: str
    step: str | None  # None: the host itself (unreachable, crashed)
    cause: str
    duration: float | None
    attempt: int
    log_path: Path | None
    expected: float | None = None  # what history expected of it (scheduler.py)


def problems(state: RunState, log_dir: Path | None) -> list[Problem]:
    """What failed or was cancelled, failures first, each group in dispatch order."""
    from fanout.paths import host_log_in, host_log_name, step_log_in

    found: list[Problem] = []
    for row in state.rows.values():
        blamed = False
        for cell in row.steps.values():
            if cell.status not in (CellStatus.FAILED, CellStatus.CANCELLED):
                continue
            blamed = blamed or cell.status is CellStatus.FAILED
            cause = cell.cause or ""
            if not cause and cell.status is CellStatus.FAILED and cell.exit_status is not None:
                cause = f"exit status {cell.exit_status}"
            log = None if log_dir is None else step_log_in(log_dir, row.name, cell.name)
            found.append(
                Problem(
                    cell.status.value,
                    row.name,
                    cell.name,
                    cause,
                    cell.duration,
                    cell.attempt,
                    log,
                    cell.expected,
                )
            )
        own_cause = row.cause and all(c.cause != row.cause for c in row.steps.values())
        if row.status in (HostPhase.FAILED, HostPhase.CANCELLED) and (
            own_cause or row.crashed or not blamed
        ):
            if row.status is HostPhase.CANCELLED and not own_cause and not row.crashed:
                continue  # its cancelled steps say it all
            cause = row.cause or ""
            if row.crashed:
                cause = f"{cause} (traceback in {host_log_name(row.name)})".lstrip()
            log = None if log_dir is None else host_log_in(log_dir, row.name)
            found.append(Problem(row.status.value, row.name, None, cause, row.duration, 0, log))
    return sorted(found, key=lambda p: p.status != CellStatus.FAILED)  # stable


def problem_lines(problem: Problem, width: int = WIDTH) -> list[str]:
    """A problem as wrapped lines: ``KIND host step (time): cause``, then ``log: PATH``."""
    what = problem.host if problem.step is None else f"{problem.host} {problem.step}"
    notes = []
    if problem.attempt > 1:
        notes.append(f"attempt {problem.attempt}")
    if problem.duration is not None:
        notes.append(format_elapsed(problem.duration))
        if problem.expected is not None:
            notes.append(f"usually {format_elapsed(problem.expected)}")
    if notes:
        what += f" ({', '.join(notes)})"
    if problem.cause:
        what += f": {problem.cause}"
    kind = _status_word(problem.status).ljust(KIND_WIDTH)
    lines = _wrap(kind + what, width, hanging=" " * KIND_WIDTH, max_lines=CAUSE_LINES)
    if problem.log_path is not None:
        lines.append(f"{' ' * KIND_WIDTH}log: {problem.log_path}")  # a path is never wrapped
    return lines


def render_summary_text(state: RunState, *, log_dir: Path, exit_code: int) -> str:
    """The summary as plain text (newline-terminated) for batch mode and the end of a run.

    Failures first: each failed or cancelled step (or host) with its cause and log file,
    the hosts that never started (named up to ``NOT_STARTED_NAMES``), how the run was
    cancelled, then the one-line totals of ``summary_line``. A run where every step
    succeeded is that one line.
    """
    lines: list[str] = []
    for problem in problems(state, log_dir):
        lines.extend(problem_lines(problem))
    not_started = []
    for row in state.hosts_with(HostPhase.NOT_STARTED):
        if row.cause:  # refused for a reason of its own (the backup window)
            text = f"not started {row.name}: {row.cause}"
            lines.extend(_wrap(text, WIDTH, hanging=" " * KIND_WIDTH))
        else:
            not_started.append(row.name)
    if not_started:
        label = f"Not started ({len(not_started)}): "
        names = _name_list(not_started, NOT_STARTED_NAMES)
        lines.extend(_wrap(label + names, WIDTH, hanging="    "))
    lines.extend(orphan_lines(state))
    reason = state.cancel_reason
    if reason is not None:
        forced = ", forced" if state.cancel is not None and state.cancel.forced else ""
        lines.extend(_labelled("Cancelled", f"{CANCEL_TEXT[reason]}{forced}"))
    lines.append(summary_line(state, exit_code))
    return "\n".join(map(make_visible, lines)) + "\n"


def _labelled(label: str, text: str) -> list[str]:
    return _wrap(f"{label + ':':<{LABEL_WIDTH}}{text}", WIDTH, hanging=" " * LABEL_WIDTH)


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


def render_summary_rich(state: RunState, *, log_dir: Path, exit_code: int) -> RenderableType:
    """The summary for the end of an interactive run: a rich Table of what failed or was
    cancelled (cause and log file under each), captioned with the totals; a run where
    everything succeeded is only the totals line."""
    from rich.table import Table
    from rich.text import Text

    found = problems(state, log_dir)
    waiting = state.hosts_with(HostPhase.NOT_STARTED)
    not_started = [row.name for row in waiting if not row.cause]
    caption_lines = list(orphan_lines(state))
    caption_lines += [f"not started: {row.name}: {row.cause}" for row in waiting if row.cause]
    if not_started:
        names = _name_list(not_started, NOT_STARTED_NAMES)
        caption_lines.append(f"not started ({len(not_started)}): {names}")
    reason = state.cancel_reason
    if reason is not None:
        forced = ", forced" if state.cancel is not None and state.cancel.forced else ""
        caption_lines.append(f"cancelled {CANCEL_TEXT[reason]}{forced}")
    caption_lines.append(summary_line(state, exit_code))
    if not found and not state.orphans:
        return Text("\n".join(caption_lines))
    caption_lines.insert(0, f"logs under {log_dir}")
    table = Table(
        title=f"fanout run {state.run_id}: what failed or was cancelled",
        caption="\n".join(caption_lines),
        caption_justify="left",
        expand=False,
    )
    table.add_column("Host", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("Step", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("Status", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Cause and log", overflow="fold", ratio=1)
    for problem in found:
        status = Text(_status_word(problem.status), style=_STYLES[problem.status])
        detail = Text(problem.cause)
        if problem.attempt > 1:
            detail = Text(f"attempt {problem.attempt}: {problem.cause}")
        if problem.log_path is not None:  # relative to the logs directory of the caption
            log = problem.log_path.relative_to(log_dir)
            detail.append(("\n" if detail else "") + f"log: {log}", style="dim")
        time_text = format_elapsed(problem.duration) if problem.duration is not None else ""
        table.add_row(problem.host, problem.step or "-", status, time_text, detail)
    return table
