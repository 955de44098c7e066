"""The worked example, docs/example-fleet.yaml: it loads, and `fanout plan` shows exactly what runs
on each host tonight and why, also against a run store that already holds a level 0."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from fanout.cli import app
from fanout.events import (
    HostFinished,
    HostStatus,
    PlannedHost,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStatus,
)
from fanout.inventory import load_inventory
from fanout.store import open_store

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-fleet.yaml"
runner = CliRunner()

SERVICE = (
    "runs only if (on the host): "
    'out=$("$ORACLE_HOME/bin/srvctl" status service -d ERP -s fanout_bkp) || exit 2; '
    'case "$out," in *[[:space:],]"$ORACLE_SID",*) exit 0 ;; *) exit 1 ;; esac'
)
ORATAB = "ORACLE_HOME: resolved on the host from /etc/oratab or /var/opt/oracle/oratab"
NIGHTLY = f"""\
Plan for {EXAMPLE}: 4 of 4 hosts, max_parallel 4, cancel_grace 2m

#  PRI  HOST      SID   SSH                             VIA  STEPS                                         EXPECTED  ORDER
1    1  erp-rac1  ERP1  oracle@erp-rac1.example.com:22  -    backup L0, archivelog, obsolete, controlfile  -         priority 1; no history: file order
2    1  erp-rac2  ERP2  oracle@erp-rac2.example.com:22  -    backup L0, archivelog, obsolete, controlfile  -         priority 1; no history: file order
3    2  crm-prod  CRM   oracle@crm-prod.example.com:22  -    backup L0, archivelog, obsolete, controlfile  -         priority 2; no history: file order
4    3  hr-test   HRT   oracle@hr-test.example.com:22   -    backup L0, archivelog, obsolete               -         priority 3; no history: file order

Host keys (every hop): {{known_hosts}}

Decided per host:
  erp-rac1  {SERVICE}
            {ORATAB} (ERP1)
            recovery catalog /@RCAT (wallet)
            backup: level 0: no successful level 0 recorded
            backup: 2 CONFIGURE command(s) before RUN
            obsolete: only if backup succeeded in this run
  erp-rac2  {SERVICE}
            {ORATAB} (ERP2)
            recovery catalog /@RCAT (wallet)
            backup: level 0: no successful level 0 recorded
            backup: 2 CONFIGURE command(s) before RUN
            obsolete: only if backup succeeded in this run
  crm-prod  {ORATAB} (CRM)
            recovery catalog /@RCAT (wallet)
            backup: level 0: no successful level 0 recorded
            backup: 2 CONFIGURE command(s) before RUN
            obsolete: only if backup succeeded in this run
  hr-test   recovery catalog /@RCAT (wallet)
            backup: level 0: no successful level 0 recorded
            backup: 2 CONFIGURE command(s) before RUN
            obsolete: only if backup succeeded in this run
"""


def plan(*args: str) -> str:
    result = runner.invoke(app, ["plan", str(EXAMPLE), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_example_loads_as_documented() -> None:
    """The example loads: RAC nodes share one database, HR keeps its explicit home."""
    inventory = load_inventory(EXAMPLE)
    by_name = {h.name: h for h in inventory.hosts}
    assert by_name["erp-rac1"].database_key == by_name["erp-rac2"].database_key == "ERP"
    assert by_name["crm-prod"].oracle_home is None
    assert by_name["hr-test"].oracle_home == "/u01/app/oracle/product/12.2.0/dbhome_1"
    assert inventory.steps["obsolete"].requires == ("backup",)
    backup = inventory.steps["backup"]
    assert backup.levels is not None
    assert backup.levels.level0_on == frozenset({6})


def test_plan_of_the_example_without_history(tmp_path: Path) -> None:
    """With an empty run store every database owes its first level 0; plan says all of it."""
    known_hosts = Path.home() / ".ssh" / "known_hosts"  # HOME is the test's (tests/conftest.py)
    assert plan("--state-dir", str(tmp_path)) == NIGHTLY.format(known_hosts=known_hosts)
    assert not list(tmp_path.iterdir())  # plan created nothing


def test_plan_of_hourly_archivelogs(tmp_path: Path) -> None:
    """--steps archivelog: only that step on every host, conditions and catalog still shown."""
    text = plan("--state-dir", str(tmp_path), "--steps", "archivelog")
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit()]
    assert [row[rows[0].index("-") + 1] for row in rows] == ["archivelog"] * 4  # STEPS after VIA
    assert "backup" not in text
    assert text.count(SERVICE) == 2


def test_plan_after_a_level_0_shows_level_1(tmp_path: Path) -> None:
    """After a level 0 of ERP (taken on either RAC node), plan shows why a level 1 follows."""
    now = datetime.now().astimezone().timestamp()
    with open_store(tmp_path) as store:
        planned = PlannedHost(
            "erp-rac2", 1, "ERP2", "erp-rac2.example.com", ("backup",), "ERP", (0,)
        )
        store.emit(RunStarted("r1", str(EXAMPLE), (planned,), 4, now - 60))
        store.emit(
            StepFinished("r1", "erp-rac2", "backup", 1, StepStatus.OK, 0, None, 60, False, now)
        )
        store.emit(HostFinished("r1", "erp-rac2", HostStatus.OK, None, 60, None, now))
        store.emit(RunFinished("r1", 0, None, 60, now))
    text = plan("--state-dir", str(tmp_path), "--limit", "erp-rac1")
    today = datetime.fromtimestamp(now - 60).astimezone().strftime("%Y-%m-%d")
    assert "backup L1, archivelog" in text
    assert f"backup: level 1: last level 0 {today} (0s ago)" in text
    crm = plan("--state-dir", str(tmp_path), "--limit", "crm-prod")
    assert "backup: level 0: no successful level 0 recorded" in crm


def test_steps_option_forms_and_errors(tmp_path: Path) -> None:
    """--steps takes comma lists and repeats; an unknown step exits 2 with one line."""
    text = plan("--state-dir", str(tmp_path), "--steps", "obsolete,archivelog", "-s", "backup")
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert "hr-test.example.com:22   -    backup L0, archivelog, obsolete " in rows[3]
    bad = runner.invoke(app, ["plan", str(EXAMPLE), "--steps", "archivelogs"])
    assert bad.exit_code == 2
    assert bad.output == (
        "fanout: --steps: unknown step 'archivelogs' "
        "(known: archivelog, backup, controlfile, full, obsolete)\n"
    )
