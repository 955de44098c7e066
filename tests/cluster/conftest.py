"""Cluster fixtures: a real 3-member etcd on loopback for each test, killed by pid afterwards.

The system fixtures (sshd, the RMAN double) come from tests/system/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd import ETCD, EtcdCluster, start_cluster, stop_cluster
from tests.system.conftest import oracle_home, remote_side, sshd

__all__ = ["etcd", "etcd_shared", "oracle_home", "remote_side", "sshd"]


def _need_etcd() -> None:
    """Skip when /usr/bin/etcd is missing, unless FANOUT_REQUIRE_ETCD=1 (CI): then fail."""
    if not os.access(ETCD, os.X_OK):
        message = f"{ETCD} not found: the cluster tests need etcd (Debian: etcd-server)"
        if os.environ.get("FANOUT_REQUIRE_ETCD") == "1":
            pytest.fail(f"{message} (FANOUT_REQUIRE_ETCD=1)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh 3-member etcd cluster on 127.0.0.1 (fast raft timers), stopped by pid: for the
    tests that kill members."""
    _need_etcd()
    cluster = start_cluster(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
def etcd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One 3-member etcd for the module's tests that leave it running; each test keeps to its
    own key prefix (``cluster_inventory`` derives it from the test's tmp_path)."""
    _need_etcd()
    cluster = start_cluster(tmp_path_factory.mktemp("etcd-shared"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
