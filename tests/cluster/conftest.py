"""Cluster fixtures: a real 3-member etcd on loopback for each test, killed by pid afterwards.

The system fixtures (sshd, the RMAN double) come from tests/system/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd import ETCD, EtcdCluster, start_cluster, stop_cluster
from tests.system.conftest import oracle_home, remote_side, sshd

__all__ = ["etcd", "oracle_home", "remote_side", "sshd"]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh 3-member etcd cluster on 127.0.0.1 (fast raft timers), stopped by pid.

    Skips when /usr/bin/etcd is missing, unless FANOUT_REQUIRE_ETCD=1 (CI): then it fails."""
    if not os.access(ETCD, os.X_OK):
        message = f"{ETCD} not found: the cluster tests need etcd (Debian: etcd-server)"
        if os.environ.get("FANOUT_REQUIRE_ETCD") == "1":
            pytest.fail(f"{message} (FANOUT_REQUIRE_ETCD=1)", pytrace=False)
        pytest.skip(message)
    cluster = start_cluster(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
