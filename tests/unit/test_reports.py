"""history and show for an operator: the inventory's state_dir, FANOUT_STATE_DIR, failures
first, filters, and marks on resumes and partial runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout.cli import app
from fanout.events import HostStatus, StepStatus
from fanout.inventory import load_inventory
from fanout.paths import choose_state_dir
from fanout.store import open_store
from tests.unit.events_builder import Run, feed, planned, with_meta

INVENTORY = """\
settings:
  state_dir: {state}
defaults:
  oracle_home: /u01/app/oracle
hosts:
  - {{name: pay-prod-01, address: db1, priority: 1, oracle_sid: PAY1}}
  - {{name: pay-prod-02, address: db2, priority: 1, oracle_sid: PAY2}}
  - {{name: crm-prod-01, address: db3, priority: 2, oracle_sid: CRM1}}
  - {{name: hr-test-01, address: db4, priority: 3, oracle_sid: HR1}}
"""
NIGHT, MORNING = "20261123T010000Z-aaaa", "20261123T060000Z-bbbb"
ORA = "ORA-19809: limit exceeded for recovery files"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(INVENTORY.format(state=tmp_path / "inv-state"))
    return path


def record_night(state: Path, inventory: Path) -> None:
    """pay-prod-01 ok; pay-prod-02's full fails; crm-prod-01 unreachable; hr-test-01 never
    starts. Then a resume of pay-prod-02 (argv with --limit) that succeeds."""
    inv = load_inventory(inventory)
    names = ["pay-prod-01", "pay-prod-02", "crm-prod-01", "hr-test-01"]
    run = Run([planned(n) for n in names], run_id=NIGHT)
    run.host_ok("pay-prod-01", full=300, archivelog=40, controlfile=3)
    run.host_started("pay-prod-02")
    run.step_started("pay-prod-02", "full")
    run.step_finished("pay-prod-02", "full", StepStatus.FAILED, duration=12, cause=ORA)
    run.step_ok("pay-prod-02", "archivelog", 5)
    run.step_ok("pay-prod-02", "controlfile", 2)
    run.host_finished("pay-prod-02", HostStatus.FAILED)
    run.host_started("crm-prod-01")
    run.skipped("crm-prod-01", "full", "archivelog", "controlfile")
    run.host_finished("crm-prod-01", HostStatus.FAILED, cause="connection refused by db3:22")
    run.host_not_started("hr-test-01")
    run.finish(exit_code=1)
    again = Run([planned("pay-prod-02", steps=("full",))], run_id=MORNING, start=run.now + 3600)
    again.host_ok("pay-prod-02", full=200)
    again.finish(exit_code=0)
    with open_store(state) as store:
        feed(
            store,
            with_meta(run.events, inv.path.resolve(), inv.sha256, ["fanout", "run", "x.yaml"]),
        )
        argv = ["fanout", "run", "x.yaml", "--resume", "--limit", "pay-*", "-t", "prod"]
        feed(
            store, with_meta(again.events, inv.path.resolve(), inv.sha256, argv, resumed_from=NIGHT)
        )


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_state_dir_precedence(tmp_path: Path) -> None:
    """--state-dir beats FANOUT_STATE_DIR, which beats settings.state_dir, then XDG."""
    env = {"HOME": "/home/o", "FANOUT_STATE_DIR": "/env/state"}
    assert choose_state_dir(Path("/cli"), Path("/inv"), env) == Path("/cli")
    assert choose_state_dir(None, Path("/inv"), env) == Path("/env/state")
    assert choose_state_dir(None, Path("/inv"), {"HOME": "/home/o"}) == Path("/inv")
    assert choose_state_dir(None, None, {"HOME": "/home/o", "FANOUT_STATE_DIR": ""}) == Path(
        "/home/o/.local/state/fanout"
    )


def test_history_and_show_use_the_inventory_state_dir(inventory: Path, tmp_path: Path) -> None:
    """`history INV` and `show --inventory INV` find the runs in the inventory's state_dir."""
    record_night(tmp_path / "inv-state", inventory)

    code, text = invoke("history", str(inventory))
    assert code == 0, text
    assert NIGHT in text
    assert MORNING in text

    code, text = invoke("show", "--inventory", str(inventory))
    assert code == 0, text
    assert text.startswith(f"run        {MORNING}\n")


def test_fanout_state_dir_env_is_used_and_state_dir_option_wins(
    inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FANOUT_STATE_DIR overrides the inventory's state_dir; --state-dir overrides both."""
    record_night(tmp_path / "env-state", inventory)
    monkeypatch.setenv("FANOUT_STATE_DIR", str(tmp_path / "env-state"))

    code, text = invoke("show", NIGHT, "--inventory", str(inventory), "--failed")
    assert code == 0, text
    assert "pay-prod-02 full" in text

    code, text = invoke("show", NIGHT, "--state-dir", str(tmp_path / "inv-state"))
    assert code == 2
    assert f"no run '{NIGHT}'" in text


def test_history_marks_resumes_and_partial_runs(inventory: Path, tmp_path: Path) -> None:
    """A resume says what it continues and which --limit/--tag chose its hosts."""
    record_night(tmp_path / "inv-state", inventory)
    code, text = invoke("history", str(inventory))
    assert code == 0, text
    [morning] = [line for line in text.splitlines() if line.startswith(MORNING)]
    assert morning.endswith(f"  resume of {NIGHT}, limit pay-*, tag prod")
    [night] = [line for line in text.splitlines() if line.startswith(NIGHT)]
    assert "resume" not in night
    assert "NOTE" in text


def test_show_leads_with_failures_and_filters(inventory: Path, tmp_path: Path) -> None:
    """show: header, then only what failed (cause, log) and who never started; --failed
    only the failures; HOST globs every step of those hosts; --all everything."""
    state = tmp_path / "inv-state"
    record_night(state, inventory)

    code, text = invoke("show", NIGHT, "-i", str(inventory))
    assert code == 0, text
    body = text.split("\n\n", 1)[1].splitlines()
    host_log = state / "logs" / NIGHT / "crm-prod-01.log"
    assert body == [
        f"FAILED     pay-prod-02 full (12s): {ORA}",
        f"           log: {state / 'logs' / NIGHT / 'pay-prod-02.log'}",
        "FAILED     crm-prod-01 (0s): connection refused by db3:22",
        f"           log: {host_log}",
        "Not started (1): hr-test-01",
        "hosts      1 ok, 2 failed, 1 not started",
    ]  # failures first, the totals line last

    code, failed = invoke("show", NIGHT, "-i", str(inventory), "--failed")
    assert code == 0
    assert failed.splitlines() == body[:4]

    code, text = invoke("show", NIGHT, "pay-*", "-i", str(inventory))
    assert code == 0
    assert "pay-prod-01" in text
    assert "  archivelog" in text
    assert "crm-prod-01" not in text

    code, text = invoke("show", NIGHT, "--all", "-i", str(inventory))
    assert code == 0
    assert all(name in text for name in ("pay-prod-01", "crm-prod-01", "hr-test-01"))

    code, text = invoke("show", NIGHT, "nope-*", "-i", str(inventory))
    assert code == 2
    assert text == f"fanout: no host of run {NIGHT} matches nope-*\n"


def test_show_names_an_old_runs_host_log(inventory: Path, tmp_path: Path) -> None:
    """A run written by an earlier release (logs/<run>/<host>/host.log) is shown with that file."""
    state = tmp_path / "inv-state"
    record_night(state, inventory)
    legacy = state / "logs" / NIGHT / "crm-prod-01" / "host.log"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("2026-11-23T01:00:00Z connect attempt 1 failed: refused (giving up)\n")
    code, failed = invoke("show", NIGHT, "-i", str(inventory), "--failed")
    assert code == 0
    assert f"           log: {legacy}" in failed.splitlines()


def test_show_failed_of_a_clean_run_prints_nothing(inventory: Path, tmp_path: Path) -> None:
    """`show --failed` of a run where everything succeeded is empty (exit 0)."""
    record_night(tmp_path / "inv-state", inventory)
    code, text = invoke("show", MORNING, "-i", str(inventory), "--failed")
    assert (code, text) == (0, "")


def test_quiet_resume_with_nothing_owed_says_nothing(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quiet --resume when every debt is settled prints nothing (cron mails nothing)."""
    from fanout.targets import plan_resume

    state = tmp_path / "inv-state"
    inv = load_inventory(inventory)
    run = Run([planned(h.name) for h in inv.hosts], run_id=NIGHT)
    for host in inv.hosts:
        run.host_ok(host.name, full=1, archivelog=1, controlfile=1)
    run.finish(exit_code=0)
    with open_store(state) as store:
        feed(store, with_meta(run.events, inv.path.resolve(), inv.sha256, ["fanout", "run"]))

    resume = plan_resume("latest", inv, inv.hosts, state, quiet=True)
    assert (resume.steps, resume.dropped) == ({}, ())
    assert capsys.readouterr() == ("", "")
    plan_resume("latest", inv, inv.hosts, state)
    assert "nothing to resume" in capsys.readouterr().err


def test_show_json_follows_the_filters(inventory: Path, tmp_path: Path) -> None:
    """show --json narrows its hosts by HOST globs and by --failed, like the text."""
    record_night(tmp_path / "inv-state", inventory)
    code, text = invoke("show", NIGHT, "-i", str(inventory), "--json", "--failed")
    assert code == 0, text
    assert [h["name"] for h in json.loads(text)["hosts"]] == ["pay-prod-02", "crm-prod-01"]
    code, text = invoke("show", NIGHT, "-i", str(inventory), "--json", "*-01")
    assert code == 0, text
    names = [h["name"] for h in json.loads(text)["hosts"]]
    assert names == ["pay-prod-01", "crm-prod-01", "hr-test-01"]
