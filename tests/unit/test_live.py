"""The live table: rendering as text at fixed sizes, the command line, the keyboard tty."""

from __future__ import annotations

import asyncio
import atexit
import io
import os
import random
import re
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from fanout import runner
from fanout.cancel import CancelToken
from fanout.events import CancelReason, Event, HostStatus, StepStatus
from fanout.state import HostPhase, HostRow, RunState, attention_key
from fanout.ui import live, live_render
from fanout.ui.live import Command, CommandKind, LineEditor, LiveView, parse_command
from fanout.ui.live_render import (
    ASCII,
    CANCELLING,
    FORCING,
    HELP,
    HINT,
    UNICODE,
    Prompt,
    Symbols,
    render,
    short_cause,
)
from tests.unit.events_builder import Run, feed, planned

ORA_CAUSE = 'ORA-19502: write error on file "/backup/arch_1_2.bkp", block number 1234'
PIECE = "channel ORA_DISK_1: starting piece 1 at 2026-11-23 17:20:01"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def spinner_at(now: float) -> str:
    return UNICODE.spinner[int(now * live_render.SPIN_HZ) % len(UNICODE.spinner)]


def text_of(
    state: RunState,
    now: float,
    *,
    width: int = 80,
    height: int = 40,
    prompt: Prompt | None = None,
    symbols: Symbols = UNICODE,
) -> str:
    """The view as an operator would read it: rendered by a recorded Console without colour."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(
        render(state, width=width, height=height, now=now, prompt=prompt, symbols=symbols)
    )
    return out.getvalue()


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def five_hosts(clock: FakeClock) -> RunState:
    """erp-prod running archivelog (12s), crm-prod failed ORA-19502, hr-prod ok, bi-prod
    cancelled, web-db queued."""
    run = Run(
        [
            planned("erp-prod"),
            planned("crm-prod", priority=2),
            planned("hr-prod", priority=3),
            planned("bi-prod", priority=3),
            planned("web-db", priority=4),
        ]
    )
    run.host_started("erp-prod")
    run.connected("erp-prod")
    run.step_ok("erp-prod", "full", 326)
    run.step_started("erp-prod", "archivelog")
    run.output("erp-prod", "archivelog", "channel ORA_DISK_1: starting archived log backup set")
    run.output("erp-prod", "archivelog", PIECE)
    run.host_started("crm-prod")
    run.connected("crm-prod")
    run.step_started("crm-prod", "full")
    run.step_finished("crm-prod", "full", StepStatus.FAILED, duration=41, cause=ORA_CAUSE)
    run.skipped("crm-prod", "archivelog", "controlfile")
    run.host_finished("crm-prod", HostStatus.FAILED)
    run.host_ok("hr-prod", full=60, archivelog=5, controlfile=2)
    run.host_started("bi-prod")
    run.connected("bi-prod")
    run.step_started("bi-prod", "full")
    run.step_finished("bi-prod", "full", StepStatus.CANCELLED, duration=7)
    run.skipped("bi-prod", "archivelog", "controlfile")
    run.host_finished("bi-prod", HostStatus.CANCELLED)
    state = RunState(clock=clock)
    feed(state, run.events)
    clock.now += 12
    return state


# ------------------------------------------------------------------ rendering


def test_each_state_has_a_symbol_as_well_as_a_colour() -> None:
    """Every step state reads without colour: spinner + elapsed, ✓ time, ✗ cause, ⊘, ↷, ·."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now)
    spin = spinner_at(clock.now)
    assert f"{spin} erp-prod ✓ 5m26s     {spin} 12s       · queued" in text
    assert "✗ crm-prod ✗ ORA-19502 ↷ skipped   ↷ skipped" in text
    assert "✓ hr-prod  ✓ 1m        ✓ 5s        ✓ 2s" in text
    assert "⊘ bi-prod  ⊘ cancelled ↷ skipped   ↷ skipped" in text
    assert "· web-db   · queued    · queued    · queued" in text


def test_failed_cell_shows_the_short_ora_code_and_last_line_the_cause() -> None:
    """The failed cell holds ``ORA-19502``; the last-line column starts the full cause."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now, width=160)
    row = line_with(text, "crm-prod")
    assert "✗ ORA-19502 " in row
    assert row.rstrip().endswith(ORA_CAUSE)


def test_short_cause_forms() -> None:
    """short_cause takes the first error code, else the first clause, else the exit status."""
    assert short_cause(ORA_CAUSE) == "ORA-19502"
    assert short_cause("RMAN-06059: expected archived log not found") == "RMAN-06059"
    assert short_cause("attempt 2: ORA-19809: limit exceeded") == "ORA-19809"
    assert short_cause("timeout after 6h") == "timeout after 6h"
    assert short_cause("connection lost: reset by peer") == "connection lost"
    assert short_cause(None, 3) == "exit 3"
    assert short_cause(None) == "failed"


def test_header_shows_run_id_inventory_elapsed_and_counts() -> None:
    """The two header lines: run id, elapsed, inventory; then one count per host state."""
    clock = FakeClock()
    lines = text_of(five_hosts(clock), clock.now).splitlines()
    assert lines[0] == "fanout run 20261123T171435Z-3f9a · 12s · steps 10/15 · nightly.yaml"
    spin = spinner_at(clock.now)
    assert lines[1] == (f"{spin} 1 running  · 1 queued  ✓ 1 succeeded  ✗ 1 failed  ⊘ 1 cancelled")


def test_progress_line_and_host_elapsed_are_shown() -> None:
    """A running host shows its elapsed time and the last RMAN progress line."""
    clock = FakeClock()
    row = line_with(text_of(five_hosts(clock), clock.now, width=160), "erp-prod")
    assert re.search(r" 12s ORA_DISK_1: starting piece 1\s*$", row)


def test_80_columns_drop_sid_and_every_line_fits() -> None:
    """At 80 columns SID and priority are dropped (steps, time and last line stay) and no
    line is wider."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now, width=80)
    header = line_with(text, "Host").split()
    assert header == ["Host", "full", "archivelog", "controlfile", "Time", "Last", "line"]
    assert all(len(line) <= 80 for line in text.splitlines())
    assert line_with(text, "erp-prod").endswith(" 12s ORA_DISK_1: starting piec…")


def test_160_columns_show_sid_and_priority() -> None:
    """At 160 columns every column is there, SID included."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now, width=160)
    assert line_with(text, "Host").split()[:4] == ["P", "Host", "SID", "full"]
    assert " 2 crm-prod CRM_PROD ✗ ORA-19502" in text
    assert all(len(line) <= 160 for line in text.splitlines())


def test_narrow_terminal_drops_columns_by_importance() -> None:
    """At 50 columns time, last line, SID and priority go; host and step cells stay readable,
    and the counts line uses short words so every count still shows."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now, width=50)
    assert line_with(text, "Host").split() == ["Host", "full", "archivelog", "controlfile"]
    assert "✗ crm-prod ✗ ORA-19502 ↷ skipped   ↷ skipped" in text
    spin = spinner_at(clock.now)
    assert text.splitlines()[1] == f"{spin} 1 run · 1 queued ✓ 1 ok ✗ 1 failed ⊘ 1 cancelled"
    assert all(len(line) <= 50 for line in text.splitlines())


def test_ascii_symbols_when_the_terminal_is_not_utf8() -> None:
    """With ASCII symbols the states still read: + ok, x failed, / cancelled, . queued."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now, symbols=ASCII, prompt=Prompt(cancelling=True))
    assert "x crm-prod x ORA-19502 - skipped" in text
    assert "cancelling... press Ctrl-C again to force" in text
    assert "/ bi-prod  / cancelled" in text
    assert ". web-db   . queued" in text
    assert text.isascii()


def test_no_color_console_prints_no_colour_codes() -> None:
    """Console(no_color=True) keeps the symbols and drops every colour escape."""
    clock = FakeClock()
    out = io.StringIO()
    console = Console(
        file=out, width=80, force_terminal=True, color_system="truecolor", no_color=True
    )
    console.print(render(five_hosts(clock), width=80, height=40, now=clock.now))
    output = out.getvalue()
    assert "✗ ORA-19502" in output
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|38;)", output)  # no foreground colour


def test_no_color_option_and_env_reach_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-color gives Console(no_color=True); NO_COLOR alone is honoured by rich itself."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal as far as rich is concerned
    monkeypatch.setenv("TERM", "xterm-256color")
    options = runner.RunOptions(inventory=Path("x.yaml"), batch=False, no_color=True)
    console = runner._live_console(options, io.StringIO())
    assert console is not None
    assert console.no_color
    monkeypatch.setenv("NO_COLOR", "1")
    assert Console(file=io.StringIO()).no_color


def test_dumb_terminal_gets_no_live_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """TERM=dumb: the runner falls back to plain lines (no live console)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    options = runner.RunOptions(inventory=Path("x.yaml"), batch=False)
    assert runner._live_console(options, io.StringIO()) is None


def many_hosts(clock: FakeClock, *, running: int, failed: int, ok: int, total: int) -> RunState:
    run = Run([planned(f"db-{i:03d}", priority=1 + i // 100) for i in range(total)])
    names = [f"db-{i:03d}" for i in range(total)]
    for name in names[:running]:
        run.host_started(name)
        run.connected(name)
        run.step_started(name, "full")
    for name in names[running : running + failed]:
        run.host_started(name)
        run.connected(name)
        run.step_started(name, "full")
        run.step_finished(name, "full", StepStatus.FAILED, duration=9, cause=ORA_CAUSE)
        run.skipped(name, "archivelog", "controlfile")
        run.host_finished(name, HostStatus.FAILED)
    for name in names[running + failed : running + failed + ok]:
        run.host_ok(name)
    state = RunState(clock=clock)
    feed(state, run.events)
    clock.now += 30
    return state


def test_500_hosts_fold_into_the_height_running_and_failed_first() -> None:
    """500 hosts at 80x24: exactly 24 lines; running then failed rows; the rest as counts."""
    clock = FakeClock()
    state = many_hosts(clock, running=10, failed=3, ok=100, total=500)
    lines = text_of(state, clock.now, width=80, height=24).splitlines()
    assert len(lines) == 24
    rows = lines[3:21]  # 2 header lines, the column header; fold line + footer below
    spin = spinner_at(clock.now)
    assert [row[0] for row in rows] == [spin] * 10 + ["✗"] * 3 + ["✓"] * 5
    assert "db-112" in rows[-5]  # the most recently finished comes first
    assert lines[21] == "… 482 more: 95 succeeded, 387 queued"
    assert lines[22] == HINT
    assert lines[23].startswith("> ")


def test_failed_hosts_stay_visible_when_more_hosts_run_than_fit() -> None:
    """With 50 hosts running at 24 rows, failed hosts still get a third of the room."""
    clock = FakeClock()
    state = many_hosts(clock, running=50, failed=8, ok=0, total=500)
    lines = text_of(state, clock.now, width=80, height=24).splitlines()
    rows = lines[3:21]
    assert sum(row.startswith("✗") for row in rows) == 6
    assert sum(row.startswith(spinner_at(clock.now)) for row in rows) == 12
    assert lines[21] == "… 482 more: 38 running, 2 failed, 442 queued"


def test_small_run_keeps_dispatch_order() -> None:
    """When every host fits, rows stay in dispatch order (they do not jump around)."""
    clock = FakeClock()
    text = text_of(five_hosts(clock), clock.now)
    names = [line.split()[1] for line in text.splitlines()[3:8]]
    assert names == ["erp-prod", "crm-prod", "hr-prod", "bi-prod", "web-db"]
    assert "more:" not in text


def test_footer_after_cancel_says_cancelling_and_rows_show_stopping() -> None:
    """After q the footer says how to force; running rows say stopping, queued not starting."""
    clock = FakeClock()
    state = five_hosts(clock)
    prompt = Prompt(cancelling=True)
    text = text_of(state, clock.now, width=120, prompt=prompt)
    assert CANCELLING == "cancelling… press Ctrl-C again to force"
    assert text.splitlines()[-2] == CANCELLING
    assert "stopping… ORA_DISK_1: starting piece 1" in line_with(text, "erp-prod")
    assert line_with(text, "web-db").rstrip().endswith("not starting")


def test_footer_follows_cancel_requested_event_and_forcing() -> None:
    """A CancelRequested in the state alone shows cancelling; a forced one shows forcing."""
    clock = FakeClock()
    run = Run([planned("erp-prod")])
    run.cancel(CancelReason.SIGINT)
    state = RunState(clock=clock)
    feed(state, run.events)
    assert text_of(state, clock.now).splitlines()[-2] == CANCELLING
    run.cancel(CancelReason.SIGINT, forced=True)
    feed(state, run.events[-1:])
    assert text_of(state, clock.now).splitlines()[-2] == FORCING


def test_one_host_cancelled_shows_stopping_on_its_row_only() -> None:
    """``cancel erp-prod`` marks only that row as stopping."""
    clock = FakeClock()
    state = many_hosts(clock, running=2, failed=0, ok=0, total=2)
    text = text_of(state, clock.now, prompt=Prompt(stopping=frozenset({"db-000"})))
    assert "stopping…" in line_with(text, "db-000")
    assert "stopping…" not in line_with(text, "db-001")


def test_typed_text_and_reply_are_in_the_footer() -> None:
    """The command line shows what is typed; a reply to the last command sits above."""
    clock = FakeClock()
    prompt = Prompt(typed="cancel erp", message="unknown command 'x': type help", error=True)
    lines = text_of(five_hosts(clock), clock.now, prompt=prompt).splitlines()
    assert [line.rstrip() for line in lines[-3:]] == [
        "unknown command 'x': type help",
        HINT,
        "> cancel erp",
    ]


def test_without_keyboard_there_is_no_command_line() -> None:
    """stdin not a terminal: no prompt line, and the hint says only Ctrl-C works."""
    clock = FakeClock()
    lines = text_of(five_hosts(clock), clock.now, prompt=Prompt(keyboard=False)).splitlines()
    assert lines[-1] == live_render.HINT_NO_KEYBOARD


def test_before_run_started_the_view_shows_the_run_id() -> None:
    """An empty state still renders: the header and the footer."""
    state = RunState(clock=FakeClock())
    state.run_id, state.inventory = "r1", "inv.yaml"
    lines = text_of(state, 0.0).splitlines()
    assert lines[0] == "fanout run r1 · 0s · inv.yaml"
    assert lines[-1].startswith("> ")


# ------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("q", Command(CommandKind.QUIT)),
        ("quit", Command(CommandKind.QUIT)),
        ("  Quit ", Command(CommandKind.QUIT)),
        ("cancel erp-prod", Command(CommandKind.CANCEL, "erp-prod")),
        ("cancel", Command(CommandKind.CANCEL, "")),
        ("help", Command(CommandKind.HELP)),
        ("?", Command(CommandKind.HELP)),
        ("", Command(CommandKind.EMPTY)),
        ("   ", Command(CommandKind.EMPTY)),
        ("qq", Command(CommandKind.UNKNOWN, "qq")),
        ("q now", Command(CommandKind.UNKNOWN, "q now")),
        ("cancel a b", Command(CommandKind.UNKNOWN, "cancel a b")),
    ],
)
def test_parse_command(line: str, command: Command) -> None:
    """q/quit, cancel HOST, help; anything else is unknown (never a guess)."""
    assert parse_command(line) == command


def test_line_editor_edits_and_submits() -> None:
    """Backspace, Ctrl-W, Ctrl-U edit; CR or LF submit; several lines in one read."""
    editor = LineEditor()
    assert editor.feed("qx\x7f") == []
    assert editor.buffer == "q"
    assert editor.feed("\r") == ["q"]
    assert editor.feed("cancel erp\x17crm\x08m\n") == ["cancel crm"]
    assert editor.feed("junk\x15help\rq\r") == ["help", "q"]
    assert editor.buffer == ""


def test_line_editor_drops_escape_sequences_and_controls() -> None:
    """Arrow keys (CSI/SS3), other control characters and Ctrl-D never reach the line."""
    editor = LineEditor()
    editor.feed("\x1b[Aca\x1bOBn\x04\x01cel\x1b[1;5C x")
    assert editor.buffer == "cancel x"


class Host:
    """A cancel_host stand-in: records calls, answers True for hosts it knows."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.calls: list[str] = []

    def __call__(self, name: str) -> bool:
        self.calls.append(name)
        return name in self.known


def view_with(
    cancel_host: Callable[[str], bool] | None = None,
) -> tuple[LiveView, CancelToken, FakeClock]:
    clock = FakeClock()
    token = CancelToken()
    view = LiveView(
        run_id="r1",
        inventory="nightly.yaml",
        token=token,
        cancel_host=cancel_host or Host(set()),
        console=Console(file=io.StringIO(), width=80, height=24, color_system=None),
        clock=clock,
        keyboard_fd=None,
    )
    feed(view, five_hosts_events())
    return view, token, clock


def five_hosts_events() -> list[Event]:
    run = Run([planned("erp-prod"), planned("crm-prod"), planned("web-db")])
    run.host_started("erp-prod")
    run.connected("erp-prod")
    run.step_started("erp-prod", "full")
    run.host_ok("crm-prod")
    return run.events


def test_quit_fires_the_token_and_a_second_forces() -> None:
    """q fires the token as OPERATOR; quit again escalates to forced."""
    view, token, _ = view_with()
    view.execute(parse_command("q"))
    assert (token.fired, token.forced, token.reason) == (True, False, CancelReason.OPERATOR)
    assert view.prompt().cancelling
    view.execute(parse_command("quit"))
    assert token.forced
    assert view.prompt().forced


def test_cancel_host_stops_one_host_only() -> None:
    """cancel HOST calls cancel_host for that host, replies, and marks its row stopping."""
    host = Host({"erp-prod"})
    view, token, _ = view_with(host)
    view.execute(parse_command("cancel erp-prod"))
    assert host.calls == ["erp-prod"]
    assert not token.fired
    assert view.prompt().message == "stopping erp-prod…"
    assert view.prompt().stopping == {"erp-prod"}
    view.execute(parse_command("cancel erp-prod"))
    assert view.prompt().message == "forcing erp-prod to stop…"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cancel nope", "cancel: no host named 'nope'"),
        ("cancel crm-prod", "cancel: crm-prod has already finished"),
        ("cancel", "usage: cancel HOST (q cancels every host)"),
        ("frobnicate", "unknown command 'frobnicate': type help"),
    ],
)
def test_command_mistakes_get_a_reply_and_cancel_nothing(line: str, message: str) -> None:
    """Unknown hosts, finished hosts, a missing host and unknown commands only reply."""
    host = Host(set())
    view, token, _ = view_with(host)
    view.execute(parse_command(line))
    assert view.prompt().message == message
    assert view.prompt().error
    assert host.calls == []
    assert not token.fired


def test_help_lists_the_commands() -> None:
    """help replies with every command."""
    view, _, _ = view_with()
    view.execute(parse_command("help"))
    assert view.prompt().message == HELP
    assert all(word in HELP for word in ("q, quit", "cancel HOST", "help"))


# ------------------------------------------------------------------ the keyboard tty


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def tty_view(slave: int, token: CancelToken) -> LiveView:
    console = Console(
        file=io.StringIO(), width=80, height=24, force_terminal=True, color_system=None
    )
    return LiveView(
        run_id="r1",
        inventory="nightly.yaml",
        token=token,
        cancel_host=Host(set()),
        console=console,
        keyboard_fd=slave,
        refresh_per_second=50.0,
    )


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_typing_q_enter_in_the_tty_cancels_and_restores_the_mode(
    pty_pair: tuple[int, int],
) -> None:
    """Inside the view the tty has ECHO and ICANON off, ISIG on; q + Enter fires the token;
    afterwards the termios settings and blocking mode are as before."""
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    token = CancelToken()
    async with tty_view(slave, token) as view:
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ECHO
        assert not lflag & termios.ICANON
        assert lflag & termios.ISIG
        os.write(master, b"q")
        await wait_for(lambda: view.prompt().typed == "q")
        assert not token.fired
        os.write(master, b"\r")
        await wait_for(lambda: token.fired)
        assert token.reason is CancelReason.OPERATOR
    assert termios.tcgetattr(slave) == before
    assert os.get_blocking(slave)


async def test_tty_is_restored_when_the_block_raises(pty_pair: tuple[int, int]) -> None:
    """An exception inside the view still restores the terminal, and propagates."""
    _master, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError, match="boom"):
        async with tty_view(slave, CancelToken()):
            raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


async def test_tty_is_restored_when_the_task_is_cancelled(pty_pair: tuple[int, int]) -> None:
    """Cancelling the task inside the view restores the terminal and stays cancelled."""
    _master, slave = pty_pair
    before = termios.tcgetattr(slave)
    entered = asyncio.Event()

    async def body() -> None:
        async with tty_view(slave, CancelToken()):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert termios.tcgetattr(slave) == before


async def test_atexit_hook_restores_the_tty(
    pty_pair: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook registered at start restores the tty on its own (an exit that skips aexit)."""
    _master, slave = pty_pair
    hooks: list[Callable[[], None]] = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", lambda hook: None)
    before = termios.tcgetattr(slave)
    view = tty_view(slave, CancelToken())
    await view.__aenter__()
    try:
        assert termios.tcgetattr(slave) != before
        os.set_blocking(slave, False)
        hooks[0]()
        assert termios.tcgetattr(slave) == before
        assert os.get_blocking(slave)
    finally:
        await view.__aexit__(None, None, None)


async def test_refresh_loop_draws_and_a_draw_failure_never_sinks_the_run(
    pty_pair: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop redraws on its own; if render raises, drawing stops, ``error`` keeps why,
    and leaving the view raises nothing."""
    _, slave = pty_pair
    calls: list[float] = []
    real_render = live.render

    def counting_render(state: RunState, **kwargs: object) -> object:
        calls.append(0.0)
        if len(calls) >= 3:
            raise ValueError("bad frame")
        return real_render(state, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(live, "render", counting_render)
    async with tty_view(slave, CancelToken()) as view:
        await wait_for(lambda: view.error is not None)
    assert isinstance(view.error, ValueError)
    assert len(calls) == 3


def test_stdin_not_a_tty_means_no_keyboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """With stdin redirected the view reads no keyboard and says so in the footer."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    view = LiveView(
        run_id="r1", inventory="i", token=CancelToken(), cancel_host=Host(set()), console=Console()
    )
    assert not view.prompt().keyboard


def test_hosts_that_never_started_fold_first() -> None:
    """After a cancel, hosts that never started come after every other row (no time shown)."""
    clock = FakeClock()
    run = Run([planned(f"db-{i:02d}") for i in range(30)])
    run.host_started("db-00")
    run.connected("db-00")
    run.step_started("db-00", "full")
    run.step_finished("db-00", "full", StepStatus.CANCELLED, duration=3)
    run.skipped("db-00", "archivelog", "controlfile")
    run.host_finished("db-00", HostStatus.CANCELLED)
    for i in range(1, 30):
        run.host_not_started(f"db-{i:02d}")
    state = RunState(clock=clock)
    feed(state, run.events)
    lines = text_of(state, clock.now, height=12).splitlines()
    assert lines[3].split()[:3] == ["⊘", "1", "db-00"]
    assert lines[4].split() == ["↷", "1", "db-01", "DB_01"] + ["↷", "skipped"] * 3 + [
        "not",
        "started",
    ]
    assert lines[-3] == "… 24 more: 24 not started"


def test_connecting_and_retrying_rows_say_so() -> None:
    """A failed connection attempt shows in the last line; a step to be retried shows ↻."""
    clock = FakeClock()
    run = Run([planned("erp-prod"), planned("crm-prod")])
    run.host_started("erp-prod")
    run.connect_failed("erp-prod", "connection refused")
    run.host_started("crm-prod")
    run.connected("crm-prod")
    run.step_started("crm-prod", "full")
    run.step_finished("crm-prod", "full", StepStatus.FAILED, duration=3, will_retry=True)
    state = RunState(clock=clock)
    feed(state, run.events)
    text = text_of(state, clock.now, width=120)
    assert "connect attempt 1 failed: connection refused" in line_with(text, "erp-prod")
    assert "↻ retry 2" in line_with(text, "crm-prod")


def test_live_view_reads_the_runners_state_and_folds_nothing_itself() -> None:
    """Given the runner's RunState, the view draws it and its emit folds nothing a second time."""
    shared = RunState()
    run = Run([planned("db01")])
    run.host_started("db01")
    view = LiveView(
        run_id=run.run_id,
        inventory="nightly.yaml",
        token=CancelToken(),
        cancel_host=lambda name: False,
        console=Console(file=io.StringIO(), width=80, height=24, color_system=None),
        keyboard_fd=None,
        state=shared,
    )
    feed(view, run.events)
    assert view.state is shared
    assert shared.rows == {}  # the view did not fold: the runner's sink does that, once
    feed(shared, run.events)
    assert list(view.state.rows) == ["db01"]


def fleet_view(cancel_host: Callable[[str], bool]) -> LiveView:
    """Four hosts with tags: pay-prod-01/02 running, pay-test-01 queued, crm-prod done."""
    names = ["pay-prod-01", "pay-prod-02", "pay-test-01", "crm-prod"]
    state = RunState()
    view = LiveView(
        run_id="r1",
        inventory="nightly.yaml",
        token=CancelToken(),
        cancel_host=cancel_host,
        console=Console(file=io.StringIO(), width=80, height=24, color_system=None),
        tags={"pay-prod-01": ("prod",), "pay-prod-02": ("prod",), "pay-test-01": ("test",)},
        keyboard_fd=None,
        state=state,
    )
    run = Run([planned(name) for name in names])
    for name in names[:2]:
        run.host_started(name)
    run.host_ok("crm-prod")
    feed(state, run.events)  # the runner folds; the view reads that state
    return view


@pytest.mark.parametrize(
    ("line", "called", "message"),
    [
        (
            "cancel pay-prod-0*",
            ["pay-prod-01", "pay-prod-02"],
            "stopping 2 hosts matching pay-prod-0*: pay-prod-01, pay-prod-02…",
        ),
        ("cancel tag:test", ["pay-test-01"], "stopping 1 host matching tag:test: pay-test-01…"),
    ],
)
def test_cancel_takes_globs_and_tags(line: str, called: list[str], message: str) -> None:
    """`cancel GLOB` and `cancel tag:TAG` stop every unfinished matching host."""
    host = Host({"pay-prod-01", "pay-prod-02", "pay-test-01"})
    view = fleet_view(host)
    view.execute(parse_command(line))
    assert host.calls == called
    assert view.prompt().message == message
    assert not view.prompt().error
    assert view.prompt().stopping == set(called)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cancel db-*", "cancel: no host matches 'db-*'"),
        ("cancel tag:nope", "cancel: no host matches 'tag:nope'"),
        ("cancel crm-*", "cancel: every host matching 'crm-*' has already finished"),
    ],
)
def test_cancel_glob_mistakes_only_reply(line: str, message: str) -> None:
    """A glob or tag that matches nothing unfinished stops nothing and says why."""
    host = Host(set())
    view = fleet_view(host)
    view.execute(parse_command(line))
    assert host.calls == []
    assert view.prompt().message == message
    assert view.prompt().error


def test_80_columns_keep_the_cause_of_an_unreachable_host() -> None:
    """Four steps at 80 columns: a host that failed to connect still shows its cause, the
    step cells keep their full text (the time column gives way instead)."""
    clock = FakeClock()
    steps = ("precheck", "full", "archivelog", "controlfile")
    run = Run([planned(n, steps=steps) for n in ("stock-prod-15", "pay-test-11", "crm-prod-03")])
    run.host_started("pay-test-11")
    run.skipped("pay-test-11", *steps)
    run.host_finished("pay-test-11", HostStatus.FAILED, cause="connection refused by 10.0.0.9")
    run.host_started("crm-prod-03")
    run.step_started("crm-prod-03", "precheck")
    run.step_finished(
        "crm-prod-03", "precheck", StepStatus.FAILED, duration=1, cause="ORA-19502: write error"
    )
    state = RunState(clock=clock)
    feed(state, run.events)
    text = text_of(state, clock.now, width=80)
    assert "↷ skipped   connection refu…" in line_with(text, "pay-test-11")
    assert "✗ ORA-19502" in line_with(text, "crm-prod-03")
    assert all(len(line) <= 80 for line in text.splitlines())


FOLD_WORDS = {
    HostPhase.RUNNING: "running",
    HostPhase.CONNECTING: "running",
    HostPhase.FAILED: "failed",
    HostPhase.OK: "succeeded",
    HostPhase.CANCELLED: "cancelled",
    HostPhase.QUEUED: "queued",
    HostPhase.NOT_STARTED: "not started",
}


def rows_by_sorting(state: RunState, room: int) -> tuple[list[str], str]:
    """The fold rule applied by sorting every host: (names shown, fold line)."""

    def key(row: HostRow) -> tuple[int, int]:
        return (4, row.index) if row.status is HostPhase.NOT_STARTED else attention_key(row)

    ordered = sorted(state.rows.values(), key=key)
    keep = [row.name for row in ordered if row.status is HostPhase.FAILED][: room // 3]
    keep += [row.name for row in ordered if row.name not in keep][: room - len(keep)]
    hidden = [row for row in ordered if row.name not in keep]
    counts: dict[str, int] = {}
    for row in hidden:
        counts[FOLD_WORDS[row.status]] = counts.get(FOLD_WORDS[row.status], 0) + 1
    words = ", ".join(f"{n} {word}" for word, n in counts.items())
    return [row.name for row in ordered if row.name in keep], f"… {len(hidden)} more: {words}"


def test_folded_rows_are_those_sorting_every_host_gives_frame_after_frame() -> None:
    """Over runs that change between frames (hosts starting out of order, failing, finishing
    twice, started again), each frame shows the rows and fold counts that sorting every host
    by the view's order gives: nothing kept from an earlier frame goes stale."""
    for seed in range(12):
        rnd = random.Random(seed)
        names = [f"db-{i:02d}" for i in range(40)]
        run = Run([planned(name) for name in names])
        state = RunState(clock=FakeClock())
        for _ in range(25):
            for _ in range(rnd.randrange(1, 8)):
                host = rnd.choice(names)
                match rnd.randrange(5):
                    case 0 | 1:
                        run.host_started(host)
                    case 2:
                        run.step_started(host, "full")
                    case _:
                        run.host_finished(host, rnd.choice(list(HostStatus)), after=1)
            feed(state, run.events)
            run.events.clear()
            height = rnd.randrange(8, 30)
            lines = text_of(state, 200.0, width=120, height=height).splitlines()
            # 2 title lines, the column names, the fold line and 2 footer lines
            shown, fold = rows_by_sorting(state, height - 6)
            table = lines[3 : 3 + len(shown)]
            assert [re.findall(r"db-\d\d", line)[0] for line in table] == shown, seed
            assert lines[3 + len(shown)] == fold, seed
