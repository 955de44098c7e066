"""Fleet policy end to end: the real CLI over the private sshd with the RMAN double. ORACLE_HOME
from a test oratab, the recovery catalog (the double validates RMAN's RUN-block rules), the level
policy across runs, and a reduced version of the worked example (docs/example-fleet.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fanout.paths import step_log_path
from tests.system.sshd import (
    REPO,
    SshdServer,
    configure_double,
    json_events,
    read_invocations,
    rman_command,
    run_fanout,
    write_inventory,
)

pytestmark = pytest.mark.system

EXAMPLE = REPO / "docs" / "example-fleet.yaml"


class Run:
    """One `fanout run --json`: exit status, events, stderr."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.status = result.returncode
        self.events = json_events(result.stdout)
        self.stderr = result.stderr

    def step(self, host: str, step: str) -> dict[str, Any]:
        (found,) = [
            e
            for e in self.events
            if e["event"] == "step_finished"
            and (e["host"], e["step"]) == (host, step)
            and not e["will_retry"]
        ]
        return found

    @property
    def run_id(self) -> str:
        return str(self.events[0]["run_id"])


def fanout_run(tmp_path: Path, inventory: Path, *extra: str) -> Run:
    return Run(run_fanout(tmp_path / "home", "run", inventory, "--json", *extra, timeout=60.0))


def starts(oracle_home: Path) -> list[dict[str, Any]]:
    return [r for r in read_invocations(oracle_home) if r["event"] == "start"]


def without_default_home(path: Path, **defaults: Any) -> Path:
    """Drop defaults.oracle_home (hosts resolve it from oratab) and set other defaults."""
    document = yaml.safe_load(path.read_text())
    del document["defaults"]["oracle_home"]
    document["defaults"].update(defaults)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def write_oratab(oracle_home: Path, entries: dict[str, Path]) -> Path:
    """An oratab beside ORACLE_HOME, readable by the login user, shaped like a real one."""
    oratab = oracle_home.parent / "oratab"
    lines = ["# created by root.sh", "", "+ASM:/u01/app/19.0.0/grid:N"]
    lines += [f"{sid}:{home}:N" for sid, home in entries.items()]
    oratab.write_text("\n".join(lines) + "\n")
    oratab.chmod(0o644)
    return oratab


def test_home_from_oratab_and_missing_sid(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A host without oracle_home runs rman from its oratab home; a SID absent from it fails
    with `ORACLE_SID NOPE not in <oratab>` and no rman started."""
    oratab = write_oratab(oracle_home, {"ERP": oracle_home})
    hosts = [{"sid": "ERP", "steps": ["full"]}, {"sid": "NOPE", "steps": ["full"]}]
    inventory = without_default_home(
        write_inventory(tmp_path, sshd, oracle_home, hosts), oratab=str(oratab)
    )
    plan = run_fanout(tmp_path / "home", "plan", inventory)
    assert f"ORACLE_HOME: resolved on the host from {oratab} (ERP)" in plan.stdout
    run = fanout_run(tmp_path, inventory)
    assert run.status == 1, run.stderr
    assert run.step("erp", "full")["status"] == "ok"
    missing = run.step("nope", "full")
    assert (missing["status"], missing["cause"]) == ("failed", f"ORACLE_SID NOPE not in {oratab}")
    (only,) = starts(oracle_home)
    assert (only["sid"], only["env"]["ORACLE_HOME"]) == ("ERP", str(oracle_home))
    log = step_log_path(tmp_path / "state", run.run_id, "erp", "full").read_text()
    assert f"fanout: ORACLE_HOME {oracle_home} (from {oratab})" in log


def test_catalog_step_passes_the_doubles_run_block_rules(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """CONNECT CATALOG and CONFIGURE go before RUN, which the double (like RMAN) requires; the
    same commands inside RUN get RMAN's parse error (RMAN-00558) and nothing runs."""
    step_defs = {"backup": {"configure": ["CONFIGURE RETENTION POLICY TO REDUNDANCY 2"]}}
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP", "steps": ["backup"]}],
        step_defs=step_defs,
        catalog="/@RCAT",
    )
    run = fanout_run(tmp_path, inventory)
    assert run.status == 0, run.stderr
    finished = run.step("erp", "backup")
    assert finished["detail"] == "level 0: no successful level 0 recorded"
    (record,) = starts(oracle_home)
    assert record["catalog"] == "/@RCAT"
    assert record["catalog_connected"] is True
    assert record["configure"] == ["CONFIGURE RETENTION POLICY TO REDUNDANCY 2"]
    assert record["level"] == 0
    inside = "RUN {\n  SET COMMAND ID TO 'x';\n  CONFIGURE BACKUP OPTIMIZATION ON;\n}\nEXIT;\n"
    refused = sshd.ssh(rman_command(oracle_home, "ERP"), inside)
    assert refused.returncode == 1
    assert "RMAN-00558: error encountered while parsing input commands" in refused.stdout
    assert 'RMAN-01009: syntax error: found "configure"' in refused.stdout
    assert "RMAN-01007: at line 3 column 3 file: standard input" in refused.stdout
    assert "Starting backup" not in refused.stdout


def test_optional_catalog_unreachable_runs_nocatalog_with_a_warning(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """catalog_optional: an unreachable catalog gives a NOCATALOG backup and a warning, not a
    failure; without catalog_optional the same step fails with RMAN-04004."""
    configure_double(oracle_home, {"*": {"catalog": "unreachable"}})
    hosts = [{"sid": "ERP", "steps": ["full"], "catalog_optional": True}, {"sid": "CRM"}]
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [hosts[0], {**hosts[1], "steps": ["full"]}],
        catalog="/@RCAT",
    )
    run = fanout_run(tmp_path, inventory)
    assert run.status == 1
    optional = run.step("erp", "full")
    assert optional["status"] == "ok"
    assert optional["detail"] == "warning: recovery catalog /@RCAT unreachable: ran NOCATALOG"
    required = run.step("crm", "full")
    assert required["status"] == "failed"
    assert required["cause"].startswith("RMAN-04004")
    erp = [r for r in starts(oracle_home) if r["sid"] == "ERP"]
    assert [(r["step"], r["catalog"]) for r in erp] == [("other", "/@RCAT"), ("full", None)]


def test_failed_level_0_is_taken_again_then_level_1(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A failed level 0 stays owed: --resume takes a level 0 (not a level 1), then the next
    run a level 1; show and the events give the level and its reason."""
    configure_double(oracle_home, {"ERP": {"full": {"fail_times": 1}}})
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "ERP", "steps": ["backup", "archivelog"]}]
    )
    first = fanout_run(tmp_path, inventory)
    assert first.status == 1
    assert first.step("erp", "backup")["status"] == "failed"
    resumed = fanout_run(tmp_path, inventory, "--resume")
    assert resumed.status == 0, resumed.stderr
    owed = resumed.step("erp", "backup")
    assert owed["status"] == "ok"
    assert owed["detail"].startswith("level 0: the level 0 of ")
    assert owed["detail"].endswith(" did not succeed")
    third = fanout_run(tmp_path, inventory)
    assert third.status == 0
    assert third.step("erp", "backup")["detail"].startswith("level 1: last level 0 ")
    levels = [(r["step"], r["level"]) for r in starts(oracle_home) if r["step"] == "full"]
    assert levels == [("full", 0), ("full", 0), ("full", 1)]
    state = tmp_path / "state"
    shown = run_fanout(tmp_path / "home", "show", third.run_id, "--all", "--state-dir", state)
    assert "level 1: last level 0 " in shown.stdout


def reduced_example(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, oratab: Path
) -> tuple[Path, dict[str, Any]]:
    """docs/example-fleet.yaml with its steps and host rules unchanged, every host pointed at
    the private sshd, ORACLE_HOMEs from the test oratab (hr-test: an explicit home)."""
    example = yaml.safe_load(EXAMPLE.read_text())
    hosts = []
    for index, host in enumerate(example["hosts"]):
        entry = {k: v for k, v in host.items() if k not in ("address", "oracle_home", "tags")}
        entry["priority"] = index + 1
        if "oracle_home" in host:
            entry["oracle_home"] = str(oracle_home)
        hosts.append(entry)
    path = write_inventory(
        tmp_path, sshd, oracle_home, hosts, step_defs=example["steps"], steps=None
    )
    document = yaml.safe_load(path.read_text())
    del document["defaults"]["oracle_home"]
    del document["defaults"]["steps"]
    document["defaults"].update(
        {k: v for k, v in example["defaults"].items() if k in ("catalog", "steps")}
    )
    document["defaults"]["oratab"] = str(oratab)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path, example


def test_reduced_worked_example_end_to_end(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """The worked example runs: one RAC node backs up (its srvctl says the service is there),
    the other is skipped `condition false`; level 0 with catalog and CONFIGURE; archive logs
    deleted after their backup; DELETE OBSOLETE only after a successful backup; then the
    hourly `--steps archivelog` subset."""
    srvctl = oracle_home / "bin" / "srvctl"
    srvctl.write_text("#!/bin/sh\necho 'Service fanout_bkp is running on instance(s) ERP1'\n")
    srvctl.chmod(0o755)
    oratab = write_oratab(
        oracle_home, {"ERP1": oracle_home, "ERP2": oracle_home, "CRM": oracle_home}
    )
    inventory, _ = reduced_example(tmp_path, sshd, oracle_home, oratab)

    night = fanout_run(tmp_path, inventory)
    assert night.status == 0, night.stderr
    steps = ("backup", "archivelog", "obsolete", "controlfile")
    for step in steps:
        assert night.step("erp-rac1", step)["status"] == "ok"
        skipped = night.step("erp-rac2", step)
        assert (skipped["status"], skipped["cause"]) == ("skipped", "condition false")
        assert night.step("crm-prod", step)["status"] == "ok"
    assert night.step("hr-test", "obsolete")["status"] == "ok"
    records = starts(oracle_home)
    assert {r["sid"] for r in records} == {"ERP1", "CRM", "HRT"}
    backups = [r for r in records if r["step"] == "full"]
    assert {(r["sid"], r["level"], r["catalog"]) for r in backups} == {
        ("ERP1", 0, "/@RCAT"),
        ("CRM", 0, "/@RCAT"),
        ("HRT", 0, "/@RCAT"),
    }
    assert backups[0]["configure"] == [
        "CONFIGURE RETENTION POLICY TO RECOVERY WINDOW OF 14 DAYS",
        "CONFIGURE CONTROLFILE AUTOBACKUP ON",
    ]
    erp_order = [
        "backup" if r["step"] == "full" else r["step"] for r in records if r["sid"] == "ERP1"
    ]
    assert erp_order == ["backup", "archivelog", "other", "controlfile"]
    arch = next(r for r in records if r["sid"] == "ERP1" and r["step"] == "archivelog")
    assert "DELETE NOPROMPT ARCHIVELOG ALL BACKED UP 1 TIMES TO DISK;" in arch["script"]

    configure_double(oracle_home, {"CRM": {"full": {"behaviour": "fail"}}})
    second = fanout_run(tmp_path, inventory)
    assert second.status == 1
    assert second.step("crm-prod", "backup")["status"] == "failed"
    obsolete = second.step("crm-prod", "obsolete")
    assert (obsolete["status"], obsolete["cause"]) == ("skipped", "backup failed")
    assert second.step("crm-prod", "archivelog")["status"] == "ok"
    assert second.step("erp-rac1", "backup")["detail"].startswith("level 1: last level 0 ")
    assert second.step("erp-rac1", "obsolete")["status"] == "ok"
    crm_steps = [r["step"] for r in starts(oracle_home)[len(records) :] if r["sid"] == "CRM"]
    assert "other" not in crm_steps  # DELETE OBSOLETE never reached the host

    before = len(starts(oracle_home))
    hourly = fanout_run(tmp_path, inventory, "--steps", "archivelog")
    assert hourly.status == 0, hourly.stderr
    assert {r["step"] for r in starts(oracle_home)[before:]} == {"archivelog"}
    assert {e["step"] for e in hourly.events if e["event"] == "step_finished"} == {"archivelog"}
