"""Cipher choice against the real sshd: AES-GCM first unless the ssh config names Ciphers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.inventory import load_inventory
from fanout.transport.connect import SshOptions
from tests.system.sshd import SshdServer, write_inventory

pytestmark = pytest.mark.system


async def _negotiated(inventory: Path) -> tuple[str, str]:
    host = load_inventory(inventory).hosts[0]
    options = SshOptions(
        max_connecting=1, keepalive_interval=None, keepalive_count_max=None, close_timeout=2.0
    )
    link = await options.connect(host)
    try:
        conn = link.conn
        return conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")
    finally:
        await link.close(2.0)


async def test_aes_gcm_is_offered_first(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """With no Ciphers in the ssh config, the connection runs on aes128-gcm both ways."""
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}])
    assert await _negotiated(inventory) == ("aes128-gcm@openssh.com",) * 2


async def test_ciphers_from_the_ssh_config_decide(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A Ciphers line for the host in the ssh config is the list offered, as with ssh(1)."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {sshd.host}\n  Ciphers chacha20-poly1305@openssh.com\n")
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "ERP"}], ssh_config=str(config)
    )
    assert await _negotiated(inventory) == ("chacha20-poly1305@openssh.com",) * 2
