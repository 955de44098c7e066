"""A process running in a pseudo-terminal, for the keyboard and live-table tests."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``argv`` with a new pty as its controlling terminal and stdin/stdout/stderr.

    A thread drains the master side so the child never blocks on a full pty buffer;
    ``output`` is everything written so far, ``screen`` the same without escape sequences.
    ``before`` holds the pty's termios settings from before the child started.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], *, rows: int = 24, columns: int = 100
    ) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
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
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    @property
    def screen(self) -> str:
        return ANSI.sub("", self.output)

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
