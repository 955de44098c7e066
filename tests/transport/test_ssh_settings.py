"""SSH-related inventory keys: keepalives, orphan_timeout, and null user/port deferring to the
ssh config (precedence: host entry > defaults > ssh config > built-in defaults)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from fanout.errors import InventoryError
from fanout.inventory import load_inventory
from fanout.model import Host, Settings
from fanout.transport.connect import SshOptions, resolve

HOST = "{name: a, address: db-alias, priority: 1, oracle_sid: A, oracle_home: /oh"


def _load(tmp_path: Path, text: str) -> tuple[Settings, tuple[Host, ...]]:
    path = tmp_path / "nightly.yaml"
    path.write_text(text)
    inventory = load_inventory(path)
    return inventory.settings, inventory.hosts


def test_builtin_keepalive_detects_a_dead_link_well_under_two_minutes() -> None:
    """Without settings, a dead link is noticed after 15 s x 3 = 45 s, and orphans get 5m."""
    host = Host(name="a", address="a", priority=1, oracle_sid="A", oracle_home="/oh")
    assert host.keepalive_interval * host.keepalive_count_max < 120
    assert Settings().orphan_timeout == 300


def test_keepalive_and_orphan_timeout_are_read(tmp_path: Path) -> None:
    """keepalive_* in defaults (a host overrides them) and settings.orphan_timeout."""
    text = (
        "settings: {orphan_timeout: 10m}\n"
        "defaults: {keepalive_interval: 5s, keepalive_count_max: 2}\n"
        f"hosts:\n  - {HOST}}}\n  - {HOST.replace('a,', 'b,').replace(': A', ': B')},"
        " keepalive_interval: 0}\n"
    )
    settings, (a, b) = _load(tmp_path, text)
    assert settings.orphan_timeout == 600
    assert (a.keepalive_interval, a.keepalive_count_max) == (5, 2)
    assert (b.keepalive_interval, b.keepalive_count_max) == (0, 2)


def test_bad_keepalive_count_is_one_line(tmp_path: Path) -> None:
    """keepalive_count_max must be a positive integer: file:line: key path: expected …"""
    path = tmp_path / "nightly.yaml"
    path.write_text(f"hosts:\n  - {HOST}, keepalive_count_max: 0}}\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value).endswith(
        ":2: hosts[0].keepalive_count_max: expected a positive integer, got '0'"
    )


def test_null_user_and_port_defer_to_the_ssh_config(tmp_path: Path) -> None:
    """`port: null`/`user: null` on a host undo the defaults' values: the ssh config decides."""
    config = tmp_path / "ssh_config"
    config.write_text("Host db-alias\n  HostName 127.0.0.1\n  Port 2299\n  User backup\n")
    text = (
        f"defaults: {{user: oracle, port: 22, ssh_config: {config}}}\n"
        f"hosts:\n  - {HOST}}}\n  - {HOST.replace('a,', 'b,').replace(': A', ': B')},"
        " port: null, user: null}\n"
    )
    _, (pinned, deferred) = _load(tmp_path, text)
    assert (pinned.user, pinned.port) == ("oracle", 22)
    assert (deferred.user, deferred.port) == (None, None)
    wins = resolve(pinned)  # what the user wrote beats the ssh config
    assert (wins.user, wins.hostname, wins.port) == ("oracle", "127.0.0.1", 22)
    defers = resolve(deferred)
    assert (defers.user, defers.hostname, defers.port) == ("backup", "127.0.0.1", 2299)


def test_unset_user_and_port_come_from_the_ssh_config_then_builtins(tmp_path: Path) -> None:
    """Nothing in the inventory: ssh config values; nothing there either: port 22."""
    config = tmp_path / "ssh_config"
    config.write_text("Host db-alias\n  User backup\n  ProxyJump jump@bastion:2222,relay\n")
    host = Host(
        name="a",
        address="db-alias",
        priority=1,
        oracle_sid="A",
        oracle_home="/oh",
        ssh_config=config,
    )
    resolved = resolve(host)
    assert (resolved.user, resolved.hostname, resolved.port) == ("backup", "db-alias", 22)
    assert resolved.jumps == ("jump@bastion:2222", "relay")
    assert resolved.config == (str(config),)


def _options() -> SshOptions:
    return SshOptions(
        max_connecting=1, keepalive_interval=None, keepalive_count_max=None, close_timeout=1
    )


def test_identity_is_parsed_once_and_reread_when_it_changes(tmp_path: Path) -> None:
    """The parsed client key is reused across connections until the key or its cert changes."""
    key_path = tmp_path / "id_ed25519"
    first = asyncssh.generate_private_key("ssh-ed25519")
    first.write_private_key(key_path)
    options = _options()
    keys = options._client_keys(str(key_path))
    assert options._client_keys(str(key_path)) is keys  # cached: no second parse
    assert keys[0].public_data == first.public_data
    second = asyncssh.generate_private_key("ssh-ed25519")
    second.write_private_key(key_path)  # the operator rotated the key
    rotated = options._client_keys(str(key_path))
    assert rotated[0].public_data == second.public_data
    ca = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca.generate_user_certificate(second, "oracle", principals=["oracle"])
    cert.write_certificate(str(key_path) + "-cert.pub")  # a certificate appears beside it
    with_cert = options._client_keys(str(key_path))
    assert with_cert is not rotated
    assert with_cert[0].get_algorithm().endswith("-cert-v01@openssh.com")
    damaged = tmp_path / "id_damaged"
    damaged.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    assert options._client_keys(str(damaged)) == [str(damaged)]  # connect reports it as before


def test_proxyjump_is_resolved_once_per_settings_and_config_version(tmp_path: Path) -> None:
    """The ssh config's ProxyJump is re-read when the file or the host's settings change."""
    config = tmp_path / "ssh_config"
    config.write_text("Host db-alias\n  ProxyJump jump@bastion\n")
    host = Host(
        name="a", address="db-alias", priority=1, oracle_sid="A", oracle_home="/oh",
        ssh_config=config,
    )  # fmt: skip
    options = _options()
    assert options._jumps(host, [str(config)]) == ("jump@bastion",)
    config.write_text("Host db-alias\n  ProxyJump relay:2222,jump@bastion\n")
    assert options._jumps(host, [str(config)]) == ("relay:2222", "jump@bastion")
    other = replace(host, address="db-other")
    assert options._jumps(other, [str(config)]) == ()
