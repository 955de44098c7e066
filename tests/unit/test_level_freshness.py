"""Freshness per backup level: a step of the level policy is judged as `<step>/level0` and
`<step>/level1`, each with its own threshold and its own last success (Checkmk's DB_INCR_0 and
DB_INCR_1), from a real run store."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.errors import InventoryError
from fanout.events import PlannedHost, RunStarted, StepFinished, StepStarted, StepStatus
from fanout.freshness import evaluate
from fanout.inventory import load_inventory
from fanout.model import max_age_of
from fanout.store import open_store

DAY, HOUR = 86400.0, 3600.0
INVENTORY = """\
defaults:
  oracle_home: /u01/app/oracle
  steps: [backup, archivelog]
{defaults_extra}
steps:
  backup:
    level0_on: [sun]
hosts:
  - {{name: erp, address: db1, priority: 1, oracle_sid: ERP}}
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY.format(defaults_extra=extra))
    return path


def backup(store: object, run: str, level: int, status: StepStatus, at: float) -> None:
    """One run of erp's backup step at ``level`` ending ``status`` at ``at``."""
    host = PlannedHost("erp", 1, "ERP", "db1", ("backup",), "ERP@db1", (level,))
    emit = store.emit  # type: ignore[attr-defined]
    emit(RunStarted(run, "nightly.yaml", (host,), 4, at - 60))
    emit(StepStarted(run, "erp", "backup", 1, "rman", at - 60))
    emit(StepFinished(run, "erp", "backup", 1, status, 0, None, 60.0, False, at))


def test_a_level_policy_step_is_judged_per_level_with_its_defaults(tmp_path: Path) -> None:
    """`backup` becomes two kinds: level 0 within 8 days, level 1 within 50 hours."""
    (host,) = load_inventory(write(tmp_path)).hosts
    assert dict(max_age_of(host)) == {
        "backup/level0": 8 * DAY,
        "backup/level1": 50 * HOUR,
        "archivelog": 26 * HOUR,
    }


def test_per_level_thresholds_can_be_set(tmp_path: Path) -> None:
    """`max_age: {backup/level1: 30h}` sets the level 1 threshold; `steps.backup.max_age`
    would set the level 0 one."""
    path = write(tmp_path, "  max_age: {backup/level1: 30h, backup/level0: 10d}")
    (host,) = load_inventory(path).hosts
    assert dict(max_age_of(host))["backup/level1"] == 30 * HOUR
    assert dict(max_age_of(host))["backup/level0"] == 10 * DAY


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  max_age: {backup/level2: 1d}", "defaults.max_age.backup/level2: expected level0 or"),
        ("  max_age: {archivelog/level0: 1d}", "step 'archivelog' has no level policy"),
    ],
)
def test_a_level_kind_must_exist(tmp_path: Path, extra: str, message: str) -> None:
    """A per-level kind is only for a step with a level policy, and only level0/level1."""
    with pytest.raises(InventoryError, match=message):
        load_inventory(write(tmp_path, extra))


def test_store_keeps_each_level_apart_and_check_judges_them(tmp_path: Path) -> None:
    """A failed level 0 after an old one and a fresh level 1: level 0 is CRITICAL (its last
    attempt failed), level 1 is OK, each from its own record."""
    now = 100 * DAY
    inventory = load_inventory(write(tmp_path))
    with open_store(tmp_path / "state") as store:
        backup(store, "r1", 0, StepStatus.OK, now - 6 * DAY)
        backup(store, "r2", 1, StepStatus.OK, now - 2 * HOUR)
        backup(store, "r3", 0, StepStatus.FAILED, now - HOUR)
        records = store.last_backups()
    level0 = records["db1", "ERP", "backup/level0"]
    level1 = records["db1", "ERP", "backup/level1"]
    assert level0.last_success is not None
    assert level0.last_success.run_id == "r1"
    assert level0.last_attempt is not None
    assert level0.last_attempt.status == "failed"
    assert level1.last_success is not None
    assert level1.last_success.run_id == "r2"
    report = evaluate("nightly.yaml", inventory.hosts, records, now=now, warn_fraction=0.8)
    states = {item.step: item.state.name for item in report.items}
    assert states["backup/level0"] == "CRITICAL"
    assert states["backup/level1"] == "OK"
