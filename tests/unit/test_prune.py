"""Retention: old runs and logs go, what a resume still needs and running runs stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout.cli import app
from fanout.errors import InventoryError
from fanout.events import HostStatus, StepStatus
from fanout.inventory import load_inventory
from fanout.paths import host_log_path, legacy_step_log_path
from fanout.prune import format_bytes, prune, prune_text
from fanout.store import open_store
from tests.unit.events_builder import Run, feed, planned, with_meta

DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15
INVENTORY = """\
settings:
  retention: 30d
defaults:
  oracle_home: /u01/app/oracle
hosts:
  - {name: a, address: db1, priority: 1, oracle_sid: A}
  - {name: b, address: db2, priority: 1, oracle_sid: B}
"""


def run_id(days_ago: float, tag: str) -> str:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(NOW - days_ago * DAY, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{tag}"


def record(
    state: Path,
    inventory: Path,
    days_ago: float,
    tag: str,
    *,
    b: StepStatus | None,
    a: StepStatus | None = StepStatus.OK,
) -> str:
    """A run of ``days_ago`` days in which each host's full ended ``a``/``b`` (None: the host
    was not in the run). Writes a 100-byte log per host, this layout and the earlier in turn."""
    rid = run_id(days_ago, tag)
    inv = load_inventory(inventory)
    outcomes = {name: status for name, status in (("a", a), ("b", b)) if status is not None}
    run = Run([planned(name) for name in outcomes], run_id=rid, start=NOW - days_ago * DAY)
    for name, status in outcomes.items():
        run.host_started(name)
        run.step_started(name, "full")
        cause = None if status is StepStatus.OK else "ORA-19809: limit"
        run.step_finished(name, "full", status, duration=1, cause=cause)
        run.step_ok(name, "archivelog", 1)
        run.step_ok(name, "controlfile", 1)
        run.host_finished(name, HostStatus.OK if status is StepStatus.OK else HostStatus.FAILED)
    run.finish(exit_code=0 if set(outcomes.values()) == {StepStatus.OK} else 1)
    with open_store(state) as store:
        feed(store, with_meta(run.events, inv.path.resolve(), inv.sha256, ["fanout", "run"]))
    for i, name in enumerate(outcomes):  # both layouts: this release's and the earlier one
        log = (
            host_log_path(state, rid, name)
            if i % 2
            else legacy_step_log_path(state, rid, name, "full")
        )
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"x" * 100)
    return rid


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY)
    return path


def stored(state: Path) -> set[str]:
    with open_store(state) as store:
        return store.run_ids()


def owed(state: Path, inventory: Path) -> dict[str, list[tuple[str, str]]]:
    with open_store(state) as store:
        return {
            host: [(d.step, d.status) for d in debts]
            for host, debts in store.owed_steps(inventory.resolve()).items()
        }


def test_old_runs_and_their_logs_go_recent_ones_stay(tmp_path: Path, inventory: Path) -> None:
    """Runs started before the cut-off are removed with their log directories; newer stay."""
    state = tmp_path / "state"
    old = [record(state, inventory, days, f"{days:04d}", b=StepStatus.OK) for days in (50, 40)]
    new = record(state, inventory, 5, "0005", b=StepStatus.OK)

    result = prune(state, 30 * DAY, inventory=inventory.resolve(), now=NOW)

    assert [item.name for item in result.removed] == old
    assert result.log_bytes == 2 * 200
    assert stored(state) == {new}
    assert sorted(p.name for p in (state / "logs").iterdir()) == [new]


def test_runs_a_resume_needs_are_kept_and_resume_is_unchanged(
    tmp_path: Path, inventory: Path
) -> None:
    """b's full failed 60 days ago and no run since fixed it: that run, and every run after
    it (one of them holds a's latest success), survive, so the debt is exactly as before."""
    state = tmp_path / "state"
    oldest = record(state, inventory, 70, "0070", b=StepStatus.OK)
    failed = record(state, inventory, 60, "0060", b=StepStatus.FAILED)
    limited = record(state, inventory, 50, "0050", b=None)  # --limit a: b untouched
    before = owed(state, inventory)
    assert before == {"b": [("full", "failed")]}

    result = prune(state, 30 * DAY, inventory=inventory.resolve(), now=NOW)

    assert [item.name for item in result.removed] == [oldest]
    assert [run.run_id for run in result.kept] == [failed, limited]
    assert stored(state) == {failed, limited}
    assert owed(state, inventory) == before
    assert "kept 2 older runs that a resume still needs" in prune_text(result, dry_run=False)


def test_a_later_run_that_settled_a_debt_is_kept_with_the_failure_still_owed(
    tmp_path: Path, inventory: Path
) -> None:
    """a and b both failed 60 days ago; a --limit b run fixed b 50 days ago. a's failure keeps
    its run, and the run that fixed b stays too: dropping it would make b owed again."""
    state = tmp_path / "state"
    both = record(state, inventory, 60, "0060", a=StepStatus.FAILED, b=StepStatus.FAILED)
    fixed = record(state, inventory, 50, "0050", a=None, b=StepStatus.OK)
    before = owed(state, inventory)
    assert before == {"a": [("full", "failed")]}

    result = prune(state, 30 * DAY, inventory=inventory.resolve(), now=NOW)

    assert result.removed == []
    assert stored(state) == {both, fixed}
    assert owed(state, inventory) == before


def test_a_running_run_is_never_pruned(tmp_path: Path, inventory: Path) -> None:
    """A run with no end whose orchestrator is alive (this process) stays, however old."""
    state = tmp_path / "state"
    rid = run_id(90, "0090")
    inv = load_inventory(inventory)
    run = Run([planned("a")], run_id=rid, start=NOW - 90 * DAY)
    run.host_started("a")
    with open_store(state) as store:
        feed(store, with_meta(run.events, inv.path.resolve(), inv.sha256, ["fanout", "run"]))

    result = prune(state, 30 * DAY, inventory=inventory.resolve(), now=NOW)

    assert result.removed == []
    assert stored(state) == {rid}


def test_dry_run_removes_nothing_and_orphan_logs_are_found(tmp_path: Path, inventory: Path) -> None:
    """--dry-run says what would go; an old log directory no store knows is an orphan."""
    state = tmp_path / "state"
    old = record(state, inventory, 45, "0045", b=StepStatus.OK)
    orphan = state / "logs" / run_id(40, "dead")
    (orphan / "a").mkdir(parents=True)
    (orphan / "a" / "full.log").write_bytes(b"y" * 7)
    (state / "logs" / "not-a-run").mkdir()

    result = prune(state, 30 * DAY, now=NOW, dry_run=True)

    assert [(i.what, i.name) for i in result.removed] == [("run", old), ("logs", str(orphan))]
    assert stored(state) == {old}
    assert orphan.exists()
    text = prune_text(result, dry_run=True)
    assert text.splitlines()[0].startswith(f"would remove run {old} (")
    assert text.splitlines()[-1] == ("would remove 1 run and 1 orphan log directory, 207 B of logs")
    prune(state, 30 * DAY, now=NOW)
    assert stored(state) == set()
    assert sorted(p.name for p in (state / "logs").iterdir()) == ["not-a-run"]


def test_prune_command_uses_the_inventory_retention_and_state_dir(
    tmp_path: Path, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fanout prune INV` reads settings.retention; FANOUT_STATE_DIR names the store; one
    line per run removed, then the totals; a missing duration is one error line, exit 2."""
    state = tmp_path / "state"
    record(state, inventory, 400 * 365, "0old", b=StepStatus.OK)  # before any real now
    keep = record(state, inventory, -1, "0new", b=StepStatus.OK)  # "tomorrow": never old
    monkeypatch.setenv("FANOUT_STATE_DIR", str(state))
    runner = CliRunner()

    result = runner.invoke(app, ["prune", str(inventory)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("removed run ")
    assert lines[1] == "removed 1 run, 200 B of logs"
    assert stored(state) == {keep}

    result = runner.invoke(app, ["prune"])
    assert result.exit_code == 2
    assert "--older-than: expected a positive duration like 30d" in result.output


def test_retention_is_an_inventory_setting(tmp_path: Path) -> None:
    """settings.retention reads a duration; anything else is one error naming the key."""
    good = tmp_path / "good.yaml"
    good.write_text(INVENTORY)
    assert load_inventory(good).settings.retention == 30 * DAY
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVENTORY.replace("30d", "a month"))
    with pytest.raises(InventoryError, match=r"bad.yaml:2: settings.retention: expected"):
        load_inventory(bad)


def test_format_bytes() -> None:
    """Sizes read as B, KiB, MiB, GiB."""
    assert [format_bytes(n) for n in (0, 1023, 9_400, 3 << 20, 5 << 30)] == [
        "0 B",
        "1023 B",
        "9.2 KiB",
        "3.0 MiB",
        "5.0 GiB",
    ]


def test_end_of_run_retention_notes_what_it_removed_unless_quiet(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run, settings.retention prunes; one note on stderr, nothing with --quiet."""
    from fanout import runner

    state = tmp_path / "state"
    inv = load_inventory(inventory)
    record(state, inventory, 400 * 365, "0old", b=StepStatus.OK)
    record(state, inventory, 400 * 365 - 1, "1old", b=StepStatus.OK)
    runner._apply_retention(inv, state, 30 * DAY, quiet=True)
    assert capsys.readouterr() == ("", "")
    assert stored(state) == set()

    record(state, inventory, 400 * 365, "2old", b=StepStatus.OK)
    runner._apply_retention(inv, state, 30 * DAY, quiet=False)
    assert capsys.readouterr().err == ("fanout: retention 30d: removed 1 run, 200 B of logs\n")
