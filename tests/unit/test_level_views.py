"""The backup level where operators look: the live table's cell and `show`."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from fanout.events import (
    HostConnected,
    HostStarted,
    PlannedHost,
    RunStarted,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.state import RunState
from fanout.store import open_store
from fanout.ui.history import render_show, show_json
from fanout.ui.live_render import render

DETAIL0 = "level 0: Sunday is a level 0 day"
DETAIL1 = "level 1 cumulative: last level 0 2026-11-29 (2d ago)"


def test_live_cells_show_the_level() -> None:
    """A running backup shows its level beside the spinner; a finished one beside its time."""
    clock = [100.0]
    state = RunState(clock=lambda: clock[0])
    hosts = (
        PlannedHost("erp", 1, "ERP", "db1", ("backup", "archivelog"), "ERP@db1", (0, None)),
        PlannedHost("crm", 2, "CRM", "db2", ("backup", "archivelog"), "CRM@db2", (1, None)),
    )
    for event in (
        RunStarted("r", "nightly.yaml", hosts, 4, 1000.0),
        HostStarted("r", "erp", 1000.0),
        HostConnected("r", "erp", 1, 1000.0),
        StepStarted("r", "erp", "backup", 1, "rman", 1000.0, DETAIL0),
        HostStarted("r", "crm", 1000.0),
        HostConnected("r", "crm", 1, 1000.0),
        StepStarted("r", "crm", "backup", 1, "rman", 1000.0, DETAIL1),
    ):
        state.emit(event)
    clock[0] = 112.0
    state.emit(
        StepFinished("r", "crm", "backup", 1, StepStatus.OK, 0, None, 12.0, False, 1012.0, DETAIL1)
    )
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(
        render(state, width=100, height=20, now=112.0)
    )
    erp = next(line for line in out.getvalue().splitlines() if " erp " in line)
    crm = next(line for line in out.getvalue().splitlines() if " crm " in line)
    assert " L0 12s" in erp
    assert "✓ L1c 12s" in crm


def test_show_gives_level_and_reason(tmp_path: Path) -> None:
    """`show` prints the level and its reason under the step, and --json carries both."""
    host = PlannedHost("erp", 1, "ERP", "db1", ("backup",), "ERP@db1", (1,))
    with open_store(tmp_path) as store:
        store.emit(RunStarted("r", "nightly.yaml", (host,), 4, 1000.0))
        store.emit(StepStarted("r", "erp", "backup", 1, "rman", 1000.0, DETAIL1))
        store.emit(
            StepFinished(
                "r", "erp", "backup", 1, StepStatus.OK, 0, None, 12.0, False, 1012.0, DETAIL1
            )
        )
        detail = store.run_detail("r")
    assert detail is not None
    text = render_show(detail, now=1013.0)
    assert "  backup     ok" in text
    assert f"      {DETAIL1}\n" in text
    (step,) = show_json(detail, now=1013.0)["hosts"][0]["steps"]  # type: ignore[index]
    assert (step["level"], step["detail"]) == (1, DETAIL1)
