"""`fanout run` in a pseudo-terminal: the live table appears, q + Enter or Ctrl-C cancels with
exit 130, and the terminal settings afterwards are exactly those from before."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.sshd import (
    SshdServer,
    configure_double,
    read_invocations,
    wait_until,
    write_inventory,
)
from tests.system.terminal import Terminal

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
ROWS, COLUMNS = 24, 100


@pytest.fixture
def hanging_fleet(sshd: SshdServer, oracle_home: Path, tmp_path: Path) -> Path:
    """Two hosts whose rman double hangs in its first backup piece until signalled."""
    configure_double(oracle_home, {"*": {"behaviour": "hang"}})
    return write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM"}])


@contextlib.contextmanager
def fanout_in_a_terminal(inventory: Path) -> Iterator[Terminal]:
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_INTERACTIVE"):
        env.pop(name, None)
    terminal = Terminal(
        [sys.executable, "-m", "fanout", "run", str(inventory)], env, rows=ROWS, columns=COLUMNS
    )
    try:
        yield terminal
    finally:
        terminal.close()


def wait_for_the_table(terminal: Terminal, oracle_home: Path) -> None:
    """Both doubles are running and the table shows them with its command line."""
    wait_until(
        lambda: len([r for r in read_invocations(oracle_home) if r["event"] == "start"]) == 2,
        timeout=30,
        what="both rman doubles started",
    )
    wait_until(
        lambda: "2 running" in terminal.screen and "q + Enter: cancel all" in terminal.screen,
        timeout=10,
        what="the live table with 2 hosts running",
    )


def test_q_enter_cancels_with_130_and_restores_the_terminal(
    hanging_fleet: Path, oracle_home: Path
) -> None:
    """Typing q + Enter in the live table cancels every host: exit 130, the footer said so,
    the summary printed, and tcgetattr on the pty equals what it was before the run."""
    with fanout_in_a_terminal(hanging_fleet) as terminal:
        wait_for_the_table(terminal, oracle_home)
        assert re.search(r"erp\s.*crm\s", terminal.screen, re.DOTALL)
        terminal.type(b"q")
        wait_until(lambda: "> q" in terminal.screen, timeout=5, what="q echoed in the footer")
        terminal.type(b"\r")
        status = terminal.proc.wait(60)
        screen = terminal.screen
        assert status == 130, screen[-3000:]
        assert "cancelling… press Ctrl-C again to force" in screen
        assert "exit 130 (cancelled by the operator)" in " ".join(screen.split())
        assert termios.tcgetattr(terminal.slave) == terminal.before
        assert os.get_blocking(terminal.slave)


def test_ctrl_c_cancels_with_130_and_restores_the_terminal(
    hanging_fleet: Path, oracle_home: Path
) -> None:
    """Ctrl-C in the live table is SIGINT (ISIG stays on): exit 130 and the terminal settings
    are restored as they were."""
    with fanout_in_a_terminal(hanging_fleet) as terminal:
        wait_for_the_table(terminal, oracle_home)
        terminal.type(b"\x03")
        status = terminal.proc.wait(60)
        screen = terminal.screen
        assert status == 130, screen[-3000:]
        assert "cancelling… press Ctrl-C again to force" in screen
        assert termios.tcgetattr(terminal.slave) == terminal.before
