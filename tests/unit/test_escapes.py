"""Remote control characters are made visible, never acted on: make_visible itself, and every
view of the run (batch lines, the live table, the text and rich summaries, `show`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from fanout.escapes import make_visible
from fanout.events import HostStatus, StepStatus
from fanout.state import RunState
from fanout.ui.live_render import render
from fanout.ui.plain import PlainSink
from fanout.ui.summary import render_summary_rich, render_summary_text
from tests.unit.events_builder import Run, feed, planned

EVIL = "title\x1b]0;pwned\x07 then \x1b[2Jclear\r\x9b31m\u202egnp.exe"
SHOWN = r"title\x1b]0;pwned\x07 then \x1b[2Jclear\x0d\x9b31m\u202egnp.exe"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text: ok", "plain text: ok"),
        (EVIL, SHOWN),
        ("a\tb", "a b"),
        ("\x00\x7f", r"\x00\x7f"),
        ("ORA-19502: write error on file \u00e9", "ORA-19502: write error on file \u00e9"),
    ],
)
def test_make_visible(raw: str, shown: str) -> None:
    """Control characters become escapes, printable text (non-ASCII included) is unchanged."""
    assert make_visible(raw) == shown


@given(st.text())
def test_make_visible_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    """No C0/C1 control, DEL or bidi override survives, whatever the input."""
    out = make_visible(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def evil_run() -> Run:
    run = Run([planned("db01"), planned("db02")])
    run.host_started("db01")
    run.connected("db01")
    run.step_started("db01", "full")
    run.output("db01", "full", EVIL)
    run.host_started("db02")
    run.connect_failed("db02", EVIL, will_retry=False)
    run.host_finished("db02", HostStatus.FAILED, cause=EVIL)
    return run


def assert_safe(text: str) -> None:
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\x9b" not in text
    assert "\u202e" not in text


def console_text(renderable: object, width: int = 200) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def test_live_table_shows_remote_text_escaped() -> None:
    """The live table's progress and cause columns show escapes, not raw control bytes."""
    state = RunState(clock=lambda: 0.0)
    feed(state, evil_run().events)
    text = console_text(render(state, width=200, height=20, now=0.0))
    assert_safe(text)
    assert r"\x1b]0;pwned" in text


def test_summaries_and_batch_lines_show_remote_text_escaped() -> None:
    """Batch lines, and the text and rich summaries, carry the cause escaped."""
    run = evil_run()
    run.step_finished("db01", "full", StepStatus.FAILED, cause=EVIL)
    run.host_finished("db01", HostStatus.FAILED)
    run.finish(exit_code=1)
    state = RunState(clock=lambda: 0.0)
    feed(state, run.events)
    out = io.StringIO()
    feed(PlainSink(out), run.events)
    for text in (
        out.getvalue(),
        render_summary_text(state, log_dir=Path("/logs"), exit_code=1),
        console_text(render_summary_rich(state, log_dir=Path("/logs"), exit_code=1)),
    ):
        assert_safe(text)
        assert r"\x1b]0;pwned" in text
