"""A DBA's first nights, end to end, as the README tells them: write an inventory, `plan`,
run it from cron with --quiet, read `show --failed` in the morning, `--resume`, and the next
night's clean run mails nothing. Real CLI, private sshd, RMAN double."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fanout.logs import step_sections
from tests.system.sshd import (
    REPO,
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    read_invocations,
)

pytestmark = pytest.mark.system

INVENTORY = """\
# /etc/fanout/nightly.yaml, as the README's realistic example
settings:
  max_parallel: 4
  state_dir: {state}
  retention: 30d
  cancel_grace: 5s

defaults:
  user: {user}                   # the Oracle software owner: `rman target /` needs it
  port: {port}
  oracle_home: {oracle_home}
  lock_dir: {oracle_home}
  identity_file: {key}
  known_hosts: {known_hosts}
  ssh_config: {ssh_config}
  step_timeout: 60s
  connect_retries: 0

hosts:
  - {{name: pay-prod-01, address: {host}, priority: 1, oracle_sid: PAY1, tags: [prod]}}
  - {{name: pay-prod-02, address: {host}, priority: 1, oracle_sid: PAY2, tags: [prod]}}
  - {{name: crm-prod-01, address: {host}, priority: 2, oracle_sid: CRM1, tags: [prod]}}
  - {{name: hr-test-01,  address: {host}, priority: 3, oracle_sid: HR1,  tags: [test],
      steps: [full, controlfile]}}
"""


def cron(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """fanout as cron runs it: no terminal, stdin /dev/null, TERM=dumb, output captured."""
    return subprocess.run(
        fanout_argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=REPO,
        env=fanout_env(home),
        start_new_session=True,  # no controlling terminal, as under cron
    )


def started(oracle_home: Path, since: int) -> list[tuple[str, str]]:
    return [
        (r["sid"], r["step"])
        for r in read_invocations(oracle_home)[since:]
        if r["event"] == "start"
    ]


def test_a_dbas_first_nights(tmp_path: Path, sshd: SshdServer, oracle_home: Path) -> None:
    """plan, a cron --quiet run with one failure (only it and one summary line), show --failed
    (exactly that failure, its cause and log), --resume (only the owed step), then a clean
    cron --quiet run that prints nothing at all."""
    state, home = tmp_path / "state", tmp_path / "home"
    inventory = tmp_path / "nightly.yaml"
    inventory.write_text(
        INVENTORY.format(
            state=state,
            user=sshd.user,
            port=sshd.port,
            host=sshd.host,
            oracle_home=oracle_home,
            key=sshd.client_key,
            known_hosts=sshd.known_hosts,
            ssh_config=sshd.ssh_config,
        )
    )

    # Evening: check what will run, without connecting.
    planned = cron(home, "plan", inventory)
    assert planned.returncode == 0, planned.stderr
    for name in ("pay-prod-01", "pay-prod-02", "crm-prod-01", "hr-test-01"):
        assert name in planned.stdout

    # Night 1, from cron: PAY2's full backup fails (recovery area full).
    configure_double(oracle_home, {"*": {"seconds": 0.1}, "PAY2": {"full": {"behaviour": "fail"}}})
    night = cron(home, "run", inventory, "--quiet")
    assert night.returncode == 1, night.stdout + night.stderr
    assert night.stderr == ""
    failure, summary = night.stdout.splitlines()  # the failure and one summary line, nothing else
    assert re.fullmatch(
        r"\S+Z pay-prod-02 full FAILED \S+: ORA-19809: limit exceeded for recovery files", failure
    ), failure
    assert summary.startswith("fanout run ")
    assert "3/4 hosts ok, 1 failed (pay-prod-02)" in summary
    assert summary.endswith("— exit 1 (at least one step failed)")

    # Morning: what failed, why, and where the log is.
    shown = cron(home, "show", "--failed", "--inventory", inventory)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("FAILED     pay-prod-02 full (")
    assert lines[0].endswith("ORA-19809: limit exceeded for recovery files")
    [log_line] = [line for line in lines if line.strip().startswith("log: ")]
    log = Path(log_line.split("log: ", 1)[1])
    assert log.name == "pay-prod-02.log"
    (section,) = step_sections(log.read_text(), "pay-prod-02", "full")
    assert "ORA-19809" in section
    assert len(lines) == 2  # exactly the one failure

    # Morning: resume takes only what is owed, quietly.
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    before = len(read_invocations(oracle_home))
    resumed = cron(home, "run", inventory, "--quiet", "--resume")
    assert (resumed.returncode, resumed.stdout, resumed.stderr) == (0, "", "")
    assert started(oracle_home, before) == [("PAY2", "full")]

    # Night 2: every step succeeds, and cron has nothing to mail. Retention (30d) quietly
    # removes the logs of a run from years ago that no store knows any more.
    ancient = state / "logs" / "20200101T010000Z-dead" / "pay-prod-01"
    ancient.mkdir(parents=True)
    (ancient / "full.log").write_text("RMAN> backup ...\n")
    before = len(read_invocations(oracle_home))
    clean = cron(home, "run", inventory, "--quiet")
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")
    assert len(started(oracle_home, before)) == 3 * 3 + 2
    assert not ancient.parent.exists()
    assert len(list((state / "logs").iterdir())) == 3  # the three runs of these nights

    # The history of the inventory (found through its state_dir) marks the resume.
    history = cron(home, "history", inventory)
    assert history.returncode == 0, history.stderr
    [resume_line] = [line for line in history.stdout.splitlines() if "resume of " in line]
    assert " ok " in resume_line
