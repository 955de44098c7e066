"""`fanout run` in a pseudo-terminal: the live table appears, q + Enter or Ctrl-C cancels with
exit 130, and the terminal settings afterwards are exactly those from before."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
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

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
ROWS, COLUMNS = 24, 100
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


class Terminal:
    """``python -m fanout run …`` with a pty as its controlling terminal and stdin/out/err.

    A thread drains the master side so the child never blocks on a full pty buffer;
    ``screen`` is everything written so far, escape sequences removed.
    """

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=REPO,
            env=env,
            start_new_session=True,  # setsid: the pty can become its controlling terminal
            preexec_fn=_take_controlling_tty,  # only an ioctl between fork and exec
        )
        self._chunks: list[bytes] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self._chunks.append(chunk)

    @property
    def screen(self) -> str:
        return ANSI.sub("", b"".join(self._chunks).decode(errors="replace"))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._stop.set()
        self._reader.join(5)
        os.close(self.master)
        os.close(self.slave)


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


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
    terminal = Terminal([sys.executable, "-m", "fanout", "run", str(inventory)], env)
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
        assert "exit 130: cancelled by the operator" in screen
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
