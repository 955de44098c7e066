"""Resume planning: which run, which hosts and steps, against the run store and the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.errors import FanoutError
from fanout.events import HostStatus, RunMeta, StepStatus
from fanout.inventory import load_inventory
from fanout.store import open_store
from fanout.targets import Resume, plan_resume
from tests.unit.events_builder import Run, feed, planned, with_meta

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


def record_limited_run(state: Path, inventory: Path, run_id: str, *hosts: str) -> None:
    """Store a ``--limit`` run in which only ``hosts`` took part, all steps ok."""
    inv = load_inventory(inventory)
    run = Run([planned(name) for name in hosts], run_id=run_id)
    for name in hosts:
        run.host_ok(name, full=1, archivelog=1, controlfile=1)
    run.finish(exit_code=0)
    with open_store(state) as store:
        feed(
            store,
            with_meta(run.events, inv.path.resolve(), inv.sha256, ["fanout", "run", "--limit"]),
        )


def plan(wanted: str, inventory: Path, state: Path) -> Resume:
    inv = load_inventory(inventory)
    return plan_resume(wanted, inv, inv.hosts, state)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY)
    return path


FIRST, SECOND, THIRD = "20261123T010000Z-aaaa", "20261124T010000Z-bbbb", "20261124T090000Z-cccc"


def test_resume_latest_takes_only_what_did_not_succeed(tmp_path: Path, inventory: Path) -> None:
    """--resume takes, per database, only the steps whose latest outcome was not a success."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    resume = plan("latest", inventory, tmp_path)
    assert resume == Resume(
        FIRST,
        {"b": ("full",), "c": ("full", "archivelog", "controlfile")},
        {"b": (FIRST,), "c": (FIRST,)},
    )


def test_a_later_limit_run_does_not_hide_the_hosts_it_did_not_touch(
    tmp_path: Path, inventory: Path
) -> None:
    """A successful --limit run of some hosts leaves the others' failures owed (the DBA's case)."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    record_limited_run(tmp_path, inventory, SECOND, "a", "b")
    resume = plan("latest", inventory, tmp_path)
    assert resume.steps == {"c": ("full", "archivelog", "controlfile")}
    assert resume.run_id == FIRST


def test_resume_when_everything_succeeded_since_does_nothing(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When every failure has succeeded since, there is nothing to resume, and fanout says so."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    record_run(tmp_path, inventory, SECOND, fail_b=False)
    resume = plan("latest", inventory, tmp_path)
    assert (resume.steps, resume.dropped) == ({}, ())
    assert "nothing to resume" in capsys.readouterr().err


def test_a_failure_owed_across_several_runs_names_them_all(tmp_path: Path, inventory: Path) -> None:
    """A step failing night after night is owed once; every run since its last success is
    checked on the host (any of them may have finished it while fanout was away)."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    record_run(tmp_path, inventory, SECOND, fail_b=True)
    resume = plan("latest", inventory, tmp_path)
    assert resume.steps["b"] == ("full",)
    assert resume.runs["b"] == (FIRST, SECOND)
    assert resume.run_id == SECOND


def test_resume_a_named_run(tmp_path: Path, inventory: Path) -> None:
    """--resume RUN_ID continues that run's chain even when a later run exists."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    record_run(tmp_path, inventory, SECOND, fail_b=False)
    resume = plan(FIRST, inventory, tmp_path)
    assert resume.steps["b"] == ("full",)
    assert resume.runs["b"] == (FIRST,)


def test_resume_of_an_unknown_run_is_an_error(tmp_path: Path, inventory: Path) -> None:
    """An unknown run id is a clear error."""
    with pytest.raises(FanoutError, match="no run 'nope'"):
        plan("nope", inventory, tmp_path)


def test_owed_work_the_inventory_no_longer_names_is_reported_not_dropped(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step the host no longer names is reported per host (the run exits non-zero); a host
    removed from the inventory is only noted."""
    record_run(tmp_path, inventory, FIRST, fail_b=True)
    inventory.write_text(
        INVENTORY.replace("  - {name: c, address: db3, priority: 2, oracle_sid: C}\n", "").replace(
            "oracle_sid: B}", "oracle_sid: B, steps: [archivelog, controlfile]}"
        )
    )
    resume = plan("latest", inventory, tmp_path)
    assert resume.steps == {}
    assert resume.dropped == (
        f"b: cannot resume full (failed in run {FIRST}): {inventory} no longer names it"
        " for this host",
    )
    assert "c: no longer in" in capsys.readouterr().err
