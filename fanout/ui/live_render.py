"""The live table's pure rendering: ``render(state, width, height, now, prompt)`` → a renderable.

Split from ``live.py`` (the keyboard, the command line and the ``Live`` loop) so that each
module has one reason to change. Layout and the reasons behind it: ``live.py``'s docstring.
"""

from __future__ import annotations

import heapq
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Final, assert_never

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from fanout.scheduler import overrun, progress, progress_bar
from fanout.state import (
    CellStatus,
    HostPhase,
    HostRow,
    RunState,
    StepCell,
    format_elapsed,
)

# ------------------------------------------------------------------ symbols and styles


@dataclass(frozen=True, slots=True)
class Symbols:
    """One character per state, so colour is never the only carrier of meaning."""

    queued: str
    ok: str
    failed: str
    cancelled: str
    skipped: str
    retrying: str
    spinner: tuple[str, ...]
    ascii: bool = False  # also spell the separators and ellipses of the text in ASCII

    def text(self, text: str) -> str:
        """``text`` as this terminal can show it."""
        return text.translate(_TO_ASCII) if self.ascii else text


_TO_ASCII: Final = str.maketrans({"·": "-", "…": "...", "—": "-"})
UNICODE: Final = Symbols("·", "✓", "✗", "⊘", "↷", "↻", tuple("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"))
ASCII: Final = Symbols(".", "+", "x", "/", "-", "r", tuple("|/-\\"), ascii=True)

STYLES: Final[dict[str, str]] = {
    CellStatus.QUEUED: "dim",
    CellStatus.RUNNING: "cyan",
    CellStatus.RETRYING: "yellow",
    CellStatus.OK: "green",
    CellStatus.FAILED: "bold red",
    CellStatus.CANCELLED: "yellow",
    CellStatus.SKIPPED: "dim",
}

SPIN_HZ = 4.0  # spinner frames per second (one per refresh)
HOST_MIN, HOST_MAX = 8, 24
STEP_MIN, STEP_NATURAL, STEP_MAX = 7, 11, 13  # "✗ ORA-19502" is 11
SID_MAX = 10
TIME_WIDTH = 6  # "12m05s"
LAST_MIN, LAST_COMFORT, LAST_MAX = 20, 32, 120
CAUSE_MIN = 16  # the last-line column when it carries a failure's cause: "connection refus…"
TYPED_MAX = 200

HINT = "q + Enter: cancel all · cancel HOST · help · Ctrl-C: cancel all"
HINT_NO_KEYBOARD = "Ctrl-C: cancel all (stdin is not a terminal)"
CANCELLING = "cancelling… press Ctrl-C again to force"
FORCING = "forced: stopping every host now…"
HELP = "q, quit: cancel every host · cancel HOST, a glob or tag:TAG: stop those · help"

_CAUSE_CODE = re.compile(r"\b[A-Z][A-Z0-9]{1,7}-\d{3,5}\b")


def short_cause(cause: str | None, exit_status: int | None = None) -> str:
    """The failed cell's text: ``ORA-19502`` from its cause, else the cause's first clause."""
    if cause:
        code = _CAUSE_CODE.search(cause)
        return code.group(0) if code else cause.split(":", 1)[0].strip()
    return f"exit {exit_status}" if exit_status is not None else "failed"


# ------------------------------------------------------------------ what the view adds to state


@dataclass(frozen=True, slots=True)
class Prompt:
    """The view's own state beside RunState: the command line and what the operator did."""

    typed: str = ""
    message: str | None = None  # reply to the last command
    error: bool = False  # the message reports a mistake
    keyboard: bool = True  # stdin is read (else only Ctrl-C)
    cancelling: bool = False  # the run's token fired
    forced: bool = False  # … twice
    stopping: frozenset[str] = frozenset()  # hosts stopped one by one (cancel HOST)


# ------------------------------------------------------------------ render


def render(
    state: RunState,
    *,
    width: int,
    height: int,
    now: float,
    prompt: Prompt | None = None,
    symbols: Symbols = UNICODE,
) -> RenderableType:
    """The whole live view at ``width`` x ``height``; ``now`` is on the state's monotonic clock.

    Every host gets a row if they fit (dispatch order); otherwise running and failed hosts
    come first, then the most recently finished, and the rest fold into one line of counts.
    """
    prompt = prompt if prompt is not None else Prompt()
    spin = symbols.spinner[int(now * SPIN_HZ) % len(symbols.spinner)]
    header = _header(state, now, spin, width, symbols)
    footer = _footer(state, prompt, width, symbols)
    room = max(0, height - len(header) - len(footer) - 1)  # 1: the table's header
    hidden: list[tuple[str, int]] = []
    if len(state.rows) > room:
        rows, hidden = _choose_rows(state, max(0, room - 1))  # 1: the fold line
    else:
        rows = list(state.rows.values())
    table = _table(state, rows, width, now, spin, prompt, symbols)
    parts: list[RenderableType] = [*header, table]
    if hidden:
        parts.append(_fold_line(hidden, symbols))
    parts.extend(footer)
    return Group(*parts)


def _choose_rows(state: RunState, room: int) -> tuple[list[HostRow], list[tuple[str, int]]]:
    """(shown, hidden) for ``room`` rows: the rows in view order (running hosts in dispatch
    order, failed ones most recent first, then the most recently finished, then the queue,
    then the hosts that never started) and the hidden ones counted by fold word, in the order
    their first row would have come. Failed hosts keep up to a third of the room even when
    more hosts are running than fit.

    O(room + running hosts): every phase's rows come from ``state.phase_rows`` in the order
    they are shown, so no frame sorts or walks all the hosts (2,000 at 4 frames a second).
    """
    phase = state.phase_rows
    failed = len(phase(HostPhase.FAILED))
    failed_kept = min(room // 3, failed)
    left = room - failed_kept
    active = [*phase(HostPhase.RUNNING), *phase(HostPhase.CONNECTING)]
    running = heapq.nsmallest(left, active, key=_dispatch_order) if left > 0 else []
    left -= len(running)
    failed_shown = failed_kept + min(left, failed - failed_kept)
    left -= failed_shown - failed_kept
    done = heapq.merge(
        state.latest_rows(HostPhase.OK),
        state.latest_rows(HostPhase.CANCELLED),
        key=_recent_first,
    )
    finished = list(islice(done, left + 1))  # one more: the first hidden orders the words
    first_hidden = finished.pop() if len(finished) > left else None
    left -= len(finished)
    queued = list(islice(phase(HostPhase.QUEUED), left))
    left -= len(queued)
    never = phase(HostPhase.NOT_STARTED)
    not_started = heapq.nsmallest(left, never, key=_dispatch_order) if left > 0 else []
    shown = [
        *running,
        *islice(state.latest_rows(HostPhase.FAILED), failed_shown),
        *finished,
        *queued,
        *not_started,
    ]
    counts = state.host_counts()
    ok_shown = sum(row.status is HostPhase.OK for row in finished)
    done_words = [
        ("succeeded", counts.ok - ok_shown),
        ("cancelled", counts.cancelled - (len(finished) - ok_shown)),
    ]
    if first_hidden is not None and first_hidden.status is HostPhase.CANCELLED:
        done_words.reverse()
    hidden = [
        ("running", counts.active - len(running)),
        ("failed", counts.failed - failed_shown),
        *done_words,
        ("queued", counts.queued - len(queued)),
        ("not started", counts.not_started - len(not_started)),
    ]
    return shown, [(word, n) for word, n in hidden if n]


def _dispatch_order(row: HostRow) -> int:
    return row.index


def _recent_first(row: HostRow) -> int:
    return -row.finish_seq


def _line(sym: Symbols, *parts: tuple[str, str]) -> Text:
    """One line of text, cut with an ellipsis at the edge of the terminal."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for part, style in parts:
        text.append(sym.text(part), style or None)
    return text


def _header(state: RunState, now: float, spin: str, width: int, sym: Symbols) -> list[Text]:
    if state.finished is not None:
        elapsed = state.finished.duration
    elif state.started_mono is not None:
        elapsed = max(0.0, now - state.started_mono)
    else:
        elapsed = 0.0
    title = _line(
        sym,
        (f"fanout run {state.run_id}", "bold"),
        (f" · {format_elapsed(elapsed)}", ""),
        *_eta_parts(state, now),
        (f" · {state.inventory}", ""),
    )
    counts = state.host_counts()
    parts = [
        (spin, counts.active, "running", "run", "cyan"),
        (sym.queued, counts.queued, "queued", "queued", ""),
        (sym.ok, counts.ok, "succeeded", "ok", "green"),
        (sym.failed, counts.failed, "failed", "failed", "bold red"),
        (sym.cancelled, counts.cancelled, "cancelled", "cancelled", "yellow"),
    ]
    if counts.not_started:
        parts.append((sym.skipped, counts.not_started, "not started", "not started", "dim"))
    words = [(f"{symbol} {n} {long}", style if n else "") for symbol, n, long, _, style in parts]
    gap = "  "
    if sum(cell_len(text) for text, _ in words) + 2 * (len(words) - 1) > width:  # narrow
        words = [(f"{sym_} {n} {short}", style if n else "") for sym_, n, _, short, style in parts]
        gap = " "
    spaced = [(f"{gap}{text}" if i else text, style) for i, (text, style) in enumerate(words)]
    return [title, _line(sym, *spaced)]


def _eta_parts(state: RunState, now: float) -> list[tuple[str, str]]:
    """`` · steps 12/30 · expected end 05:40 (in 38m) · window ends 06:00`` for the title."""
    done, total = state.step_totals()
    parts: list[tuple[str, str]] = [(f" · steps {done}/{total}", "")] if total else []
    end = state.expected_end(now) if state.finished is None else None
    late = False
    if end is not None and state.started_at is not None and state.started_mono is not None:
        end_wall = state.started_at + (end - state.started_mono)
        late = state.deadline is not None and end_wall > state.deadline
        parts.append(
            (
                f" · expected end {clock_time(end_wall)} (in {format_elapsed(end - now)})",
                "bold red" if late else "",
            )
        )
    if state.deadline_label:
        parts.append((f" · window ends {state.deadline_label}", "bold red" if late else ""))
    return parts


def clock_time(at: float) -> str:
    """Epoch seconds as the local time of day, ``05:40``."""
    return datetime.fromtimestamp(at).astimezone().strftime("%H:%M")


def _footer(state: RunState, prompt: Prompt, width: int, sym: Symbols) -> list[Text]:
    lines: list[Text] = []
    if prompt.message:
        lines.append(_line(sym, (prompt.message, "bold red" if prompt.error else "bold")))
    forced = prompt.forced or (state.cancel is not None and state.cancel.forced)
    if forced:
        lines.append(_line(sym, (FORCING, "bold red")))
    elif prompt.cancelling or state.cancel is not None:
        lines.append(_line(sym, (CANCELLING, "bold yellow")))
    else:
        lines.append(_line(sym, (HINT if prompt.keyboard else HINT_NO_KEYBOARD, "dim")))
    if prompt.keyboard:
        typed = prompt.typed[-max(1, width - 3) :]
        lines.append(_line(sym, ("> ", "bold"), (typed, ""), (" ", "reverse")))
    return lines


def _fold_line(hidden: list[tuple[str, int]], sym: Symbols) -> Text:
    text = ", ".join(f"{n} {word}" for word, n in hidden)
    return _line(sym, (f"… {sum(n for _, n in hidden)} more: {text}", "dim"))


@dataclass(slots=True)
class _Widths:
    """Column widths; 0 means the column is dropped."""

    prio: int
    host: int
    sid: int
    steps: list[int]
    time: int
    last: int

    def used(self) -> int:
        columns = [1, self.prio, self.host, self.sid, *self.steps, self.time, self.last]
        shown = [w for w in columns if w]
        return sum(shown) + len(shown) - 1  # one space between columns


def _plan_widths(
    width: int,
    *,
    prio: int,
    host: int,
    sid: int,
    steps: list[int],
    last: int,
    cause: bool = False,
    needs: list[int] | None = None,
) -> _Widths:
    """Fit the columns into ``width``: shrink steps and host to their minimum if need be, then
    add the optional columns by importance (time, last line, SID, priority) until one does
    not fit, and give what is left to the last line and the host name.

    ``needs``: per step, the widest cell on screen: a column shrinks into its unused room
    before any cell is cut. ``cause``: a row on screen failed, and its last-line cell holds
    the cause. That column then comes before the time, and step columns give up the room
    their cells do not use to keep ``CAUSE_MIN`` for it (cutting no text), so at 80 columns
    a failure no longer shows only as ``↷ skipped`` or ``✗ connecti…``."""
    plan = _Widths(0, min(host, HOST_MAX), 0, list(steps), 0, 0)
    while plan.used() > width and max(plan.steps, default=0) > STEP_MIN:
        widest = plan.steps.index(max(plan.steps))
        plan.steps[widest] -= 1
    while plan.used() > width and plan.host > HOST_MIN:
        plan.host -= 1
    if cause:  # make room for the cause out of the step columns' unused room, if that suffices
        keep, before = CAUSE_MIN + 1, list(plan.steps)
        needs = list(needs) if needs is not None else [STEP_MIN] * len(steps)
        while plan.used() + keep > width:
            slack = [w - max(n, STEP_MIN) for w, n in zip(plan.steps, needs, strict=True)]
            if max(slack, default=0) <= 0:
                plan.steps, cause = before, False  # no room without cutting: as before
                break
            plan.steps[slack.index(max(slack))] -= 1
    order = [("time", TIME_WIDTH), ("last", LAST_MIN), ("sid", sid), ("prio", prio)]
    if cause:
        order[:2] = [("last", CAUSE_MIN), ("time", TIME_WIDTH)]
    for name, wanted in order:
        # SID and priority only take room the last line can spare (up to LAST_COMFORT)
        reserve = max(0, min(last, LAST_COMFORT) - plan.last) if name in ("sid", "prio") else 0
        if plan.used() + wanted + 1 + reserve > width:
            break  # a column that does not fit takes the less important ones with it
        setattr(plan, name, wanted)
    spare = width - plan.used()
    if plan.last and spare > 0:
        grow = min(spare, max(0, min(last, LAST_MAX) - plan.last))
        plan.last += grow
        spare -= grow
    if spare > 0:
        plan.host += min(spare, max(0, min(host, HOST_MAX) - plan.host))
    return plan


Cell = tuple[str, str]  # (text, style)


def _fit(text: str, width: int, *, right: bool = False, ellipsis: str = "…") -> str:
    """``text`` cut (ending in the one-cell ``ellipsis``) or padded to exactly ``width`` cells."""
    size = cell_len(text)
    if size > width:
        text = set_cell_size(text, width - 1) + ellipsis if width > 1 else text[:width]
        size = width
    padding = " " * (width - size)
    return padding + text if right else text + padding


class Lines:
    """Lines of ``(text, style)`` parts, handed to rich as segments: what the host table
    renders to. A rich ``Text`` of the same lines costs 3x more per frame (wrapping, dividing
    and re-joining 80 lines it never needs to wrap); the parts are already cut to their
    columns, and rich still crops a line wider than the terminal."""

    __slots__ = ("lines",)

    def __init__(self, lines: list[list[Cell]]) -> None:
        self.lines = lines  # unstyled neighbours already joined into one part

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        styles: dict[str, Style] = {}
        newline = Segment.line()
        for parts in self.lines:
            for text, name in parts:
                if not name:
                    yield Segment(text)
                    continue
                style = styles.get(name)
                if style is None:
                    style = styles[name] = console.get_style(name)
                yield Segment(text, style)
            yield newline


def _table(
    state: RunState,
    rows: list[HostRow],
    width: int,
    now: float,
    spin: str,
    prompt: Prompt,
    sym: Symbols,
) -> Lines:
    """The host table as lines of fixed-width columns (``Lines``).

    Not a rich Table: a Table renders every cell through its own layout pass, which costs
    4x more CPU per frame with 50 rows on screen.
    """
    steps, host_width = _layout(state)
    cancelling = prompt.cancelling or state.cancel is not None
    lasts = [_last_line(row, cancelling, prompt.stopping, now) for row in rows]
    cell_rows = [
        [
            _step_cell(cell, now, spin, sym) if (cell := row.steps.get(step)) else ("", "")
            for step in steps
        ]
        for row in rows
    ]
    needs = [
        max([cell_len(step), *(cell_len(sym.text(cells[i][0])) for cells in cell_rows)])
        for i, step in enumerate(steps)
    ]
    failed = [
        row.status is HostPhase.FAILED and bool(last[0])
        for row, last in zip(rows, lasts, strict=True)
    ]
    plan = _plan_widths(
        width,
        prio=max((len(str(row.priority)) for row in rows), default=1),
        host=host_width,
        sid=min(SID_MAX, max((cell_len(row.sid) for row in rows), default=0)),
        steps=[min(STEP_MAX, max(STEP_NATURAL, cell_len(step))) for step in steps],
        last=max((cell_len(text) for text, _ in lasts), default=0),
        cause=any(failed),
        needs=needs,
    )
    ellipsis = "." if sym.ascii else "…"
    widths = [(1, False), (plan.prio, True), (plan.host, False), (plan.sid, False)]
    widths += [(w, False) for w in plan.steps]
    widths += [(plan.time, True), (plan.last, False)]
    shown = [(i, w, right) for i, (w, right) in enumerate(widths) if w]

    def line(cells: list[Cell]) -> list[Cell]:
        """One table line: the cells cut to their columns, one unstyled space between."""
        parts: list[Cell] = []
        plain = ""  # unstyled text not yet in ``parts``
        for i, w, right in shown:
            text, style = cells[i]
            text = _fit(sym.text(text), w, right=right, ellipsis=ellipsis)
            if i:
                plain += " "  # the gap between columns, never styled
            if style:
                if plain:
                    parts.append((plain, ""))
                    plain = ""
                parts.append((text, style))
            else:
                plain += text
        if plain:
            parts.append((plain, ""))
        return parts

    bold = "bold"
    heading: list[Cell] = [("", ""), ("P", bold), ("Host", bold), ("SID", bold)]
    heading += [(step, bold) for step in steps]
    heading += [("Time", bold), ("Last line", bold)]
    lines = [line(heading)]
    for row, last, cells in zip(rows, lasts, cell_rows, strict=True):
        elapsed = None if row.status is HostPhase.NOT_STARTED else row.elapsed(now)
        lines.append(
            line(
                [
                    _row_symbol(row, spin, sym),
                    (str(row.priority), ""),
                    (row.name, "bold red" if row.status is HostPhase.FAILED else ""),
                    (row.sid, ""),
                    *cells,
                    (format_elapsed(elapsed) if elapsed is not None else "", ""),
                    last,
                ]
            )
        )
    return Lines(lines)


_LAYOUT: weakref.WeakKeyDictionary[RunState, tuple[int, list[str], int]] = (
    weakref.WeakKeyDictionary()
)  # state -> (its layout, step names, host width)


def _layout(state: RunState) -> tuple[list[str], int]:
    """Every step name (first-seen order) and the widest host name: O(hosts), so computed
    again only when ``state.layout`` says a row or a step was added."""
    cached = _LAYOUT.get(state)
    if cached is not None and cached[0] == state.layout:
        return cached[1], cached[2]
    steps = _step_names(state.rows.values())
    width = max((cell_len(row.name) for row in state.rows.values()), default=4)
    _LAYOUT[state] = (state.layout, steps, width)
    return steps, width


def _step_names(rows: Iterable[HostRow]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for step in row.steps:
            names.setdefault(step, None)
    return list(names)


def _row_symbol(row: HostRow, spin: str, sym: Symbols) -> tuple[str, str]:
    match row.status:
        case HostPhase.RUNNING | HostPhase.CONNECTING:
            return spin, "cyan"
        case HostPhase.OK:
            return sym.ok, "green"
        case HostPhase.FAILED:
            return sym.failed, "bold red"
        case HostPhase.CANCELLED:
            return sym.cancelled, "yellow"
        case HostPhase.NOT_STARTED:
            return sym.skipped, "dim"
        case HostPhase.QUEUED:
            return sym.queued, "dim"
        case _:
            assert_never(row.status)


def _step_cell(cell: StepCell, now: float, spin: str, sym: Symbols) -> Cell:
    elapsed = cell.elapsed(now)
    time_text = format_elapsed(elapsed) if elapsed is not None else ""
    match cell.status:
        case CellStatus.QUEUED:
            text = f"{sym.queued} queued"
        case CellStatus.RUNNING:
            if cell.expected is not None and elapsed is not None:
                text = f"{spin} {time_text}/{format_elapsed(cell.expected)}"
                if overrun(elapsed, cell.expected):
                    return f"! {time_text}/{format_elapsed(cell.expected)}", "bold yellow"
            else:
                text = f"{spin} {time_text}"
        case CellStatus.RETRYING:
            text = f"{sym.retrying} retry {cell.attempt + 1}"
        case CellStatus.OK:
            text = f"{sym.ok} {time_text}"
        case CellStatus.FAILED:
            text = f"{sym.failed} {short_cause(cell.cause, cell.exit_status)}"
        case CellStatus.CANCELLED:
            text = f"{sym.cancelled} cancelled"
        case CellStatus.SKIPPED:
            text = f"{sym.skipped} skipped"
        case _:
            assert_never(cell.status)
    level = cell.level  # the backup step's level: "✓ L0 1h02m"
    if level is not None and cell.status is not CellStatus.SKIPPED:
        mark, _, rest = text.partition(" ")
        text = f"{mark} {level} {rest}".rstrip()
    return text, STYLES[cell.status]


def _running_last(row: HostRow, now: float) -> str:
    """A running host's last column: a progress bar from history, or an overrun warning,
    then the latest progress line."""
    cell = row.steps.get(row.current_step) if row.current_step else None
    text = row.progress or ""
    if cell is None or cell.expected is None:
        return text
    elapsed = cell.elapsed(now) or 0.0
    if overrun(elapsed, cell.expected):
        times = elapsed / cell.expected
        return f"{times:.1f}x its usual {format_elapsed(cell.expected)} · {text}".rstrip(" ·")
    fraction = progress(elapsed, cell.expected) or 0.0
    return f"{progress_bar(fraction, 8)} {fraction:4.0%} {text}".rstrip()


def _last_line(
    row: HostRow, cancelling: bool, stopping: frozenset[str], now: float = 0.0
) -> tuple[str, str]:
    """The last column: progress, the cause of a failure, or what the host is doing."""
    match row.status:
        case HostPhase.QUEUED:
            return ("not starting" if cancelling else ""), "dim"
        case HostPhase.CONNECTING | HostPhase.RUNNING:
            if cancelling or row.name in stopping:
                return f"stopping… {row.progress or ''}".rstrip(), "yellow"
            if row.status is HostPhase.CONNECTING:
                if row.connect_cause:
                    return f"connect attempt {row.connect_attempts} failed: {row.connect_cause}", (
                        "yellow"
                    )
                return "connecting…", "cyan"
            return _running_last(row, now), ""
        case HostPhase.FAILED:
            cause = row.cause or next(
                (c.cause for c in row.steps.values() if c.status is CellStatus.FAILED and c.cause),
                None,
            )
            return cause or row.progress or "", "red"
        case HostPhase.CANCELLED:
            return "cancelled", "yellow"
        case HostPhase.NOT_STARTED:
            return (f"not started: {row.cause}" if row.cause else "not started"), "dim"
        case HostPhase.OK:
            return row.progress or "", "dim"
        case _:
            assert_never(row.status)
