"""`fanout demo --window`: the backup-window scenario through the real runner and SSH transport."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_window_demo_refuses_what_cannot_fit_and_stops_at_the_deadline(tmp_path: Path) -> None:
    """The too-long host is not started with its reason, the host slower than its history is
    stopped at the hard deadline, the others finish within it, and the run exits 1."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "fanout", "demo", "--window", "--failures", "0"),
            *("--speed", "2", "--batch", "--state-dir", str(tmp_path / "state")),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    summary = out[out.rindex(" finished in ") :]  # the failures-first summary after the run
    refused = [line for line in summary.splitlines() if line.startswith("not started ")]
    assert len(refused) == 1
    assert ": would end after " in refused[0]
    assert "(expected " in refused[0]
    stopped = [line for line in summary.splitlines() if line.startswith("cancelled ")]
    # the host slower than its history; on a loaded machine another may be caught as well
    assert any("full (" in line and "usually " in line for line in stopped), stopped
    assert "stopped at the end of the window" in summary
    assert f"{6 - 1 - len(stopped)}/6 hosts ok, {len(stopped)} cancelled, 1 not started" in summary
