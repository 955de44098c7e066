"""The backup level policy and step subsets: pure decisions, and the level-0 history read from a
real SQLite run store written through its event sink."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fanout.events import (
    HostFinished,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStatus,
)
from fanout.model import Host, Inventory, LevelPolicy, Settings
from fanout.policy import (
    LevelChoice,
    LevelHistory,
    choose_level,
    decide_levels,
    select_steps,
    weekday_number,
)
from fanout.steps import BUILTIN_STEPS
from fanout.store import open_store, read_level_history

TZ = timezone(timedelta(hours=1))
SUNDAY = datetime(2026, 11, 29, 1, 0, tzinfo=TZ)  # a Sunday, 01:00
WEEKLY = LevelPolicy(level0_every=7 * 86400.0)
SUNDAYS = LevelPolicy(level0_every=None, level0_on=frozenset({6}))


def at(day: datetime, days: float = 0, hours: float = 0) -> float:
    return (day + timedelta(days=days, hours=hours)).timestamp()


def test_no_history_takes_level_0() -> None:
    """A database with no successful level 0 recorded takes one."""
    choice = choose_level(WEEKLY, LevelHistory(), SUNDAY)
    assert choice == LevelChoice(0, "no successful level 0 recorded")
    assert choice.describe() == "level 0: no successful level 0 recorded"


def test_recent_level_0_takes_level_1() -> None:
    """Two days after a level 0, with level0_every 7d: level 1, saying when the base was taken."""
    now = SUNDAY + timedelta(days=2)
    choice = choose_level(WEEKLY, LevelHistory(last_level0=at(SUNDAY)), now)
    assert choice == LevelChoice(1, "last level 0 2026-11-29 (2d ago)")


def test_level0_every_counts_calendar_days() -> None:
    """A weekly level 0 that finished later last week is still due on the same weekday."""
    last = at(SUNDAY, hours=2)  # last Sunday's run started at 03:00
    choice = choose_level(WEEKLY, LevelHistory(last_level0=last), SUNDAY + timedelta(days=7))
    assert choice.level == 0
    assert choice.reason == "last level 0 2026-11-29 (6d22h ago), level0_every 7d"
    sub_day = LevelPolicy(level0_every=12 * 3600.0)
    assert choose_level(sub_day, LevelHistory(at(SUNDAY)), SUNDAY + timedelta(hours=11)).level == 1
    assert choose_level(sub_day, LevelHistory(at(SUNDAY)), SUNDAY + timedelta(hours=12)).level == 0


def test_level0_weekday_and_cumulative_level_1() -> None:
    """On a level0_on day a level 0, unless one succeeded that day; other days level 1."""
    policy = LevelPolicy(level0_every=None, level0_on=frozenset({6}), cumulative=True)
    last_week = LevelHistory(last_level0=at(SUNDAY, days=-7))
    assert choose_level(policy, last_week, SUNDAY) == LevelChoice(0, "Sunday is a level 0 day")
    today = LevelHistory(last_level0=at(SUNDAY, hours=-0.5))
    again = choose_level(policy, today, SUNDAY)
    assert (again.level, again.cumulative) == (1, True)
    assert again.describe().startswith("level 1 cumulative: last level 0 2026-11-29")
    monday = choose_level(policy, LevelHistory(at(SUNDAY)), SUNDAY + timedelta(days=1))
    assert (monday.level, monday.short) == (1, "L1c")


def test_failed_level_0_stays_owed() -> None:
    """A level 0 that did not succeed after the last good one is owed, weekday or not."""
    history = LevelHistory(last_level0=at(SUNDAY, days=-7), owed_since=at(SUNDAY))
    monday = SUNDAY + timedelta(days=1)
    choice = choose_level(SUNDAYS, history, monday)
    assert choice == LevelChoice(0, "the level 0 of 2026-11-29 did not succeed")


def test_naive_now_is_refused() -> None:
    """Weekdays need a time zone: a naive datetime is a ValueError."""
    with pytest.raises(ValueError, match="aware"):
        choose_level(WEEKLY, LevelHistory(), datetime(2026, 11, 29))


def test_weekday_names() -> None:
    """Weekdays are read as mon…sun or full names, any case; anything else is None."""
    assert [weekday_number(d) for d in ("mon", "Sun", "SUNDAY", "tues", "su", "x")] == [
        0,
        6,
        6,
        1,
        None,
        None,
    ]


# -- against the run store -----------------------------------------------------------------


def inventory(*hosts: Host) -> Inventory:
    return Inventory(Path("nightly.yaml"), Settings(), hosts, dict(BUILTIN_STEPS))


ERP = Host("erp", "db1.example.com", 1, "ERP", None, steps=("backup", "archivelog"))
CRM = Host("crm", "db2.example.com", 2, "CRM", "/u01/crm", steps=("backup", "archivelog"))


def record_run(
    state: Path,
    run_id: str,
    started: float,
    outcomes: dict[str, tuple[int, StepStatus, str | None]],
) -> None:
    """Write one run through the store's event sink: host → (level, backup status, cause)."""
    hosts = {"erp": ERP, "crm": CRM}
    with open_store(state) as store:
        store.emit(
            RunStarted(
                run_id,
                "nightly.yaml",
                tuple(
                    PlannedHost(
                        name,
                        hosts[name].priority,
                        hosts[name].oracle_sid,
                        hosts[name].address,
                        ("backup", "archivelog"),
                        hosts[name].database_key,
                        (level, None),
                    )
                    for name, (level, _, _) in outcomes.items()
                ),
                4,
                started,
            )
        )
        for name, (_, status, cause) in outcomes.items():
            store.emit(
                StepFinished(run_id, name, "backup", 1, status, 0, cause, 1.0, False, started + 60)
            )
            host_status = HostStatus.OK if status is StepStatus.OK else HostStatus.FAILED
            store.emit(HostFinished(run_id, name, host_status, None, 60.0, None, started + 61))
        store.emit(RunFinished(run_id, 0, None, 61.0, started + 61))


def test_store_history_with_and_without_a_recent_level_0(tmp_path: Path) -> None:
    """ERP's level 0 of last Sunday makes tonight a level 1; CRM, never backed up, a level 0."""
    record_run(tmp_path, "r1", at(SUNDAY), {"erp": (0, StepStatus.OK, None)})
    monday = SUNDAY + timedelta(days=1)
    history = read_level_history(tmp_path, [ERP.database_key, CRM.database_key])
    assert history == {"ERP@db1.example.com": LevelHistory(last_level0=at(SUNDAY))}
    decided = decide_levels(inventory(ERP, CRM), [ERP, CRM], history, monday)
    assert decided["erp"]["backup"].level == 1
    assert decided["crm"]["backup"] == LevelChoice(0, "no successful level 0 recorded")


def test_store_failed_level_0_owed_until_one_succeeds(tmp_path: Path) -> None:
    """A failed level 0 keeps level 0 owed through later runs, until a level 0 succeeds."""
    record_run(tmp_path, "r1", at(SUNDAY, days=-7), {"erp": (0, StepStatus.OK, None)})
    record_run(tmp_path, "r2", at(SUNDAY), {"erp": (0, StepStatus.FAILED, "ORA-19809")})
    record_run(tmp_path, "r3", at(SUNDAY, days=1), {"erp": (1, StepStatus.OK, None)})
    (history,) = read_level_history(tmp_path, [ERP.database_key]).values()
    assert history == LevelHistory(last_level0=at(SUNDAY, days=-7), owed_since=at(SUNDAY))
    choice = choose_level(SUNDAYS, history, SUNDAY + timedelta(days=2))
    assert choice.level == 0
    record_run(tmp_path, "r4", at(SUNDAY, days=2), {"erp": (0, StepStatus.OK, None)})
    (history,) = read_level_history(tmp_path, [ERP.database_key]).values()
    assert history == LevelHistory(last_level0=at(SUNDAY, days=2))
    assert choose_level(SUNDAYS, history, SUNDAY + timedelta(days=3)).level == 1


def test_store_condition_false_does_not_owe_a_level_0(tmp_path: Path) -> None:
    """A level 0 skipped because the host's `when:` was false (the other RAC node) owes nothing."""
    record_run(tmp_path, "r1", at(SUNDAY, days=-1), {"erp": (0, StepStatus.OK, None)})
    record_run(tmp_path, "r2", at(SUNDAY), {"erp": (0, StepStatus.SKIPPED, "condition false")})
    (history,) = read_level_history(tmp_path, [ERP.database_key]).values()
    assert history.owed_since is None
    record_run(
        tmp_path, "r3", at(SUNDAY, days=1), {"erp": (0, StepStatus.SKIPPED, "backup failed")}
    )
    (history,) = read_level_history(tmp_path, [ERP.database_key]).values()
    assert history.owed_since == at(SUNDAY, days=1)


def test_no_store_means_no_history(tmp_path: Path) -> None:
    """Reading the history of a state dir without a store creates nothing and finds nothing."""
    assert read_level_history(tmp_path / "none", ["ERP@x"]) == {}
    assert not (tmp_path / "none").exists()


# -- --steps ---------------------------------------------------------------------------------


def test_select_steps_keeps_order_and_drops_hosts_without_them() -> None:
    """--steps keeps each host's own order and leaves out hosts that run none of them."""
    other = Host("dwh", "db3", 3, "DWH", "/u01", steps=("full", "controlfile"))
    inv = inventory(ERP, CRM, other)
    chosen = select_steps(inv, inv.hosts, ["archivelog"])
    assert [(h.name, h.steps) for h in chosen] == [
        ("erp", ("archivelog",)),
        ("crm", ("archivelog",)),
    ]
    both = select_steps(inv, inv.hosts, ["archivelog", "backup"])
    assert both[0].steps == ("backup", "archivelog")
    assert select_steps(inv, inv.hosts, []) == inv.hosts


def test_select_steps_refuses_unknown_or_unused_steps() -> None:
    """An unknown step name or one no selected host runs is a one-line error."""
    inv = inventory(ERP)
    with pytest.raises(ValueError, match=r"^--steps: unknown step 'archivlog' \(known: "):
        select_steps(inv, inv.hosts, ["archivlog"])
    with pytest.raises(ValueError, match=r"^--steps: no selected host runs step 'controlfile'$"):
        select_steps(inv, inv.hosts, ["controlfile"])
