"""The views' window additions: in the live table steps done, expected end, expected durations,
progress bars, the 3x overrun flag and why a host was not started (rendered as text, no colour);
in the cron lines the refusal, shown even with --quiet."""

from __future__ import annotations

import io
from datetime import datetime

from rich.console import Console

from fanout.events import (
    HostFinished,
    HostStarted,
    HostStatus,
    PlannedHost,
    RunStarted,
    StepStarted,
)
from fanout.state import RunState
from fanout.ui.live_render import render
from fanout.ui.plain import PlainSink

T0 = 1_796_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def text_of(state: RunState, now: float, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(
        render(state, width=width, height=30, now=now)
    )
    return out.getvalue()


def started_state(clock: Clock, *, deadline: float | None = None) -> RunState:
    state = RunState(clock=clock)
    hosts = (
        PlannedHost("erp", 1, "ERP", "a", ("full", "arch"), expected=(600.0, 60.0)),
        PlannedHost("crm", 1, "CRM", "b", ("full", "arch"), expected=(None, None)),
        PlannedHost("dwh", 2, "DWH", "c", ("full", "arch"), expected=(6000.0, 60.0)),
    )
    state.apply(
        RunStarted("r1", "nightly.yaml", hosts, 2, T0, deadline=deadline, deadline_label="06:00")
    )
    for host in ("erp", "crm"):
        state.apply(HostStarted("r1", host, T0))
        state.apply(StepStarted("r1", host, "full", 1, "", T0))
    return state


def test_title_counts_steps_and_gives_the_expected_end() -> None:
    """The title shows finished/all steps, the expected end as a time of day and how far off it
    is, and the window's end."""
    clock = Clock()
    state = started_state(clock, deadline=T0 + 3 * 3600)
    clock.now = 160.0
    title = text_of(state, clock.now).splitlines()[0]
    # erp: 540 s of full + 60 s arch left; dwh waits for a slot (crm has no history: 0 s)
    end = T0 + 60 + 6060
    assert f"steps 0/6 · expected end {datetime.fromtimestamp(end):%H:%M} (in 1h41m)" in title
    assert title.endswith("· window ends 06:00 · nightly.yaml")


def test_running_step_shows_expected_duration_and_a_progress_bar() -> None:
    """A running step with history reads `1m/10m` and gets a progress bar; one without keeps
    its plain elapsed time."""
    clock = Clock()
    state = started_state(clock)
    clock.now = 160.0
    text = text_of(state, clock.now)
    erp = next(line for line in text.splitlines() if " erp " in line)
    crm = next(line for line in text.splitlines() if " crm " in line)
    assert "1m/10m" in erp
    assert "█░░░░░░░  10%" in erp
    assert "/" not in crm.split("crm", 1)[1].split()[1]


def test_a_step_three_times_over_its_history_is_flagged() -> None:
    """Past 3x its expected duration a running step is flagged in its cell and last column."""
    clock = Clock()
    state = started_state(clock)
    clock.now = 100.0 + 1800.0
    erp = next(line for line in text_of(state, clock.now).splitlines() if " erp " in line)
    assert "! 30m/10m" in erp
    assert "3.0x its usual 10m" in erp


def test_a_host_refused_by_the_window_says_why() -> None:
    """A host not started because of the window shows the reason in its row."""
    clock = Clock()
    state = started_state(clock, deadline=T0 + 3600)
    reason = "would end after 06:00 (expected 1h42m)"
    state.apply(HostFinished("r1", "dwh", HostStatus.NOT_STARTED, reason, 0.0, None, T0))
    dwh = next(line for line in text_of(state, clock.now).splitlines() if " dwh " in line)
    assert dwh.rstrip().endswith(f"not started: {reason}")


def test_cron_lines_show_a_refusal_even_when_quiet() -> None:
    """A host the window refused is a failure line (upper case, kept by --quiet) with its cause;
    a host merely left queued by a cancel is not."""
    out = io.StringIO()
    sink = PlainSink(out, quiet=True)
    reason = "would end after 06:00 (expected 1h40m)"
    sink.emit(HostFinished("r1", "dwh", HostStatus.NOT_STARTED, reason, 0.0, None, T0))
    sink.emit(HostFinished("r1", "crm", HostStatus.NOT_STARTED, None, 0.0, None, T0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(f"dwh NOT STARTED: {reason}")
