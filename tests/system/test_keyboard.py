"""`q` / `quit` + Enter typed into the terminal running `fanout run` (no --batch) cancels the run:
exit 130, nothing left on the remote side, the terminal's settings exactly as before.

Both keyboard paths: the plain lines of a terminal that cannot draw the table (TERM=dumb, the
runner's own line reader) and the live table (its command line; tests/system/test_live_pty.py
covers `q` and Ctrl-C there, this file adds `quit`)."""

from __future__ import annotations

import contextlib
import os
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.sshd import (
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    read_invocations,
    remote_processes,
    wait_until,
    write_inventory,
)
from tests.system.terminal import Terminal

pytestmark = pytest.mark.system


@contextlib.contextmanager
def fanout_in_a_pty(tmp_path: Path, inventory: Path, term: str) -> Iterator[Terminal]:
    env = fanout_env(tmp_path / "home") | {"TERM": term, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)
    pty = Terminal(fanout_argv("run", inventory), env)
    try:
        yield pty
    finally:
        pty.close()


@pytest.mark.parametrize(
    ("term", "typed"),
    [("dumb", b"q\r"), ("dumb", b"quit\r"), ("xterm-256color", b"quit\r")],
    ids=["plain-q", "plain-quit", "live-quit"],
)
def test_typing_q_or_quit_cancels_with_130_and_leaves_no_trace(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path, term: str, typed: bytes
) -> None:
    """q/quit + Enter cancels: exit 130, nothing remote, the tty's settings as before the run."""
    configure_double(oracle_home, {"*": {"behaviour": "hang", "child": True}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM"}])

    with fanout_in_a_pty(tmp_path, inventory, term) as pty:
        wait_until(
            lambda: len([r for r in read_invocations(oracle_home) if r["event"] == "start"]) == 2,
            timeout=30,
            what="both rman doubles started",
        )
        pty.type(typed)
        status = pty.proc.wait(30)
        output = pty.output
        after = termios.tcgetattr(pty.slave)
        blocking = os.get_blocking(pty.slave)

    assert status == 130, output[-3000:]
    assert remote_processes(oracle_home) == []
    ends = [r["ended"] for r in read_invocations(oracle_home) if r["event"] == "end"]
    assert ends == ["SIGINT", "SIGINT"]
    assert after == pty.before
    assert blocking
    if term == "dumb":
        assert "cancel requested by the operator" in output
        assert "— exit 130 (cancelled by the operator)" in output
