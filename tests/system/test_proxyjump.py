"""ProxyJump against the real sshd (issue 12 item 2): a jump through the private sshd to itself,
with the host key only in the inventory's known_hosts (HOME has no ~/.ssh at all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system.sshd import SshdServer, remote_processes, run_fanout, write_inventory

pytestmark = pytest.mark.system


def _jump_config(tmp_path: Path, sshd: SshdServer) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host behind-bastion\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        f"  ProxyJump {sshd.user}@{sshd.host}:{sshd.port}\n"
    )
    return config


def test_proxyjump_hops_use_the_inventory_known_hosts(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A host behind a ProxyJump runs, every hop verified against the inventory's file."""
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP", "address": "behind-bastion", "steps": ["controlfile"]}],
        ssh_config=str(_jump_config(tmp_path, sshd)),
        port=None,
    )
    home = tmp_path / "home"
    assert not (home / ".ssh").exists()
    result = run_fanout(home, "run", inventory, "--batch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert remote_processes(oracle_home) == []

    plan = run_fanout(home, "plan", inventory)
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if " erp " in f" {line} ")
    assert f"{sshd.user}@{sshd.host}:{sshd.port}" in row
    assert row.split()[4:6] == [f"{sshd.user}@{sshd.host}:{sshd.port}"] * 2  # SSH, VIA
    assert f"Host keys (every hop): {sshd.known_hosts}" in plan.stdout


def test_unknown_jump_host_key_names_the_file_consulted(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A jump host whose key is not in the inventory's known_hosts fails naming that file."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP", "address": "behind-bastion", "steps": ["controlfile"]}],
        ssh_config=str(_jump_config(tmp_path, sshd)),
        known_hosts=str(empty),
        port=None,
    )
    result = run_fanout(tmp_path / "home", "run", inventory, "--batch")
    assert result.returncode == 1
    expected = (
        f"jump host {sshd.host}:{sshd.port}: host key for {sshd.host}:{sshd.port}"
        f" is not in known_hosts ({empty})"
    )
    assert expected in result.stdout, result.stdout
