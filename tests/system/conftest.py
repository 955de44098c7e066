"""System fixtures: the remote side (login user, ORACLE_HOME base) and a private OpenSSH sshd
for the session, a fresh ORACLE_HOME with the RMAN double for each test.

Helpers live in tests/system/sshd.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.sshd import (
    SSHD,
    RemoteSide,
    SshdServer,
    close_remote_side,
    kill_remote_processes,
    open_remote_side,
    start_sshd,
    stop_sshd,
)


@pytest.fixture(scope="session")
def remote_side() -> Iterator[RemoteSide]:
    """The login user (``fanout-test``, created if missing, when the tests run as root) and the
    world-traversable directory holding every test's ORACLE_HOME; removed when the session ends."""
    remote = open_remote_side()
    try:
        yield remote
    finally:
        close_remote_side(remote)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory, remote_side: RemoteSide) -> Iterator[SshdServer]:
    """A private sshd on 127.0.0.1, stopped by its pid when the session ends (even on failure).

    Skips when /usr/sbin/sshd is missing, unless FANOUT_REQUIRE_SSHD=1 (CI): then it fails.
    """
    if not os.access(SSHD, os.X_OK):
        message = f"{SSHD} not found: the system tests need OpenSSH's sshd"
        if os.environ.get("FANOUT_REQUIRE_SSHD") == "1":
            pytest.fail(f"{message} (FANOUT_REQUIRE_SSHD=1)", pytrace=False)
        pytest.skip(message)
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"), remote_side)
    try:
        yield server
    finally:
        stop_sshd(server, proc)


@pytest.fixture
def oracle_home(remote_side: RemoteSide, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A temporary ORACLE_HOME whose bin/rman is the RMAN double (double.json: every SID ok),
    readable and writable by the remote login user (under ``remote_side.root``, not tmp_path).

    Teardown SIGKILLs any double (and its process group) still alive, so one failing test cannot
    poison the next, then deletes the directory; tests assert on leftovers themselves, before.
    """
    home = remote_side.new_oracle_home(request.node.name)
    try:
        yield home
    finally:
        try:
            kill_remote_processes(home)
        finally:
            remote_side.remove_oracle_home(home)
