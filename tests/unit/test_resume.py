"""Resume planning: which run, which hosts and steps, against the run store and the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.errors import FanoutError
from fanout.events import HostStatus, RunMeta, StepStatus
from fanout.inventory import load_inventory
from fanout.runner import Resume, plan_resume
from fanout.store import open_store
from tests.unit.events_builder import Run, feed, planned

INVENTORY = """\
defaults:
  oracle_home: /u01/app/oracle
hosts:
  - {name: a, address: db1, priority: 1, oracle_sid: A}
  - {name: b, address: db2, priority: 1, oracle_sid: B}
  - {name: c, address: db3, priority: 2, oracle_sid: C}
"""


def record_run(state: Path, inventory: Path, run_id: str, *, fail_b: bool) -> None:
    """Store a run of the three hosts: a ok; b's full failed (or ok); c never started."""
    inv = load_inventory(inventory)
    run = Run(
        [planned("a"), planned("b"), planned("c", priority=2)],
        run_id=run_id,
        inventory=str(inv.path.resolve()),
        meta=RunMeta(inv.sha256, ("fanout", "run")),
    )
    run.host_ok("a", full=1, archivelog=1, controlfile=1)
    if fail_b:
        run.host_started("b")
        run.step_started("b", "full")
        run.step_finished("b", "full", StepStatus.FAILED, duration=1, cause="ORA-19809: limit")
        run.step_ok("b", "archivelog", 1)
        run.step_ok("b", "controlfile", 1)
        run.host_finished("b", HostStatus.FAILED)
        run.host_not_started("c")
        run.finish(exit_code=1)
    else:
        run.host_ok("b", full=1, archivelog=1, controlfile=1)
        run.host_ok("c", full=1, archivelog=1, controlfile=1)
        run.finish(exit_code=0)
    with open_store(state) as store:
        feed(store, run.events)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY)
    return path


def test_resume_latest_takes_only_what_did_not_succeed(tmp_path: Path, inventory: Path) -> None:
    """--resume picks the latest failed run and only its unfinished hosts and steps."""
    record_run(tmp_path, inventory, "20261123T010000Z-aaaa", fail_b=True)
    resume = plan_resume("latest", load_inventory(inventory), tmp_path)
    assert resume == Resume(
        "20261123T010000Z-aaaa",
        {"b": ("full",), "c": ("full", "archivelog", "controlfile")},
    )


def test_resume_of_a_successful_latest_run_does_nothing(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the latest run succeeded there is nothing to resume, and fanout says so."""
    record_run(tmp_path, inventory, "20261123T010000Z-aaaa", fail_b=True)
    record_run(tmp_path, inventory, "20261124T010000Z-bbbb", fail_b=False)
    assert plan_resume("latest", load_inventory(inventory), tmp_path) is None
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_a_named_run(tmp_path: Path, inventory: Path) -> None:
    """--resume RUN_ID continues that run even when a later one exists."""
    record_run(tmp_path, inventory, "20261123T010000Z-aaaa", fail_b=True)
    record_run(tmp_path, inventory, "20261124T010000Z-bbbb", fail_b=False)
    resume = plan_resume("20261123T010000Z-aaaa", load_inventory(inventory), tmp_path)
    assert resume is not None
    assert resume.steps["b"] == ("full",)


def test_resume_of_an_unknown_run_is_an_error(tmp_path: Path, inventory: Path) -> None:
    """An unknown run id is a clear error."""
    with pytest.raises(FanoutError, match="no run 'nope'"):
        plan_resume("nope", load_inventory(inventory), tmp_path)


def test_changed_inventory_resumes_only_what_still_exists(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the inventory changed, fanout says so and resumes only hosts/steps it still names."""
    record_run(tmp_path, inventory, "20261123T010000Z-aaaa", fail_b=True)
    inventory.write_text(
        INVENTORY.replace("  - {name: c, address: db3, priority: 2, oracle_sid: C}\n", "").replace(
            "oracle_sid: B}", "oracle_sid: B, steps: [archivelog, controlfile]}"
        )
    )
    assert plan_resume("latest", load_inventory(inventory), tmp_path) is None
    assert "changed since run 20261123T010000Z-aaaa" in capsys.readouterr().err
