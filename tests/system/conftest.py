"""System fixtures: a private OpenSSH sshd for the session, a fresh ORACLE_HOME with the RMAN
double for each test. Helpers live in tests/system/sshd.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.sshd import (
    SSHD,
    SshdServer,
    install_double,
    kill_remote_processes,
    start_sshd,
    stop_sshd,
)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A private sshd on 127.0.0.1, stopped by its pid when the session ends (even on failure).

    Skips when /usr/sbin/sshd is missing, unless FANOUT_REQUIRE_SSHD=1 (CI): then it fails.
    """
    if not os.access(SSHD, os.X_OK):
        message = f"{SSHD} not found: the system tests need OpenSSH's sshd"
        if os.environ.get("FANOUT_REQUIRE_SSHD") == "1":
            pytest.fail(f"{message} (FANOUT_REQUIRE_SSHD=1)", pytrace=False)
        pytest.skip(message)
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop_sshd(server, proc)


@pytest.fixture
def oracle_home(tmp_path: Path) -> Iterator[Path]:
    """A temporary ORACLE_HOME whose bin/rman is the RMAN double (double.json: every SID ok).

    Teardown SIGKILLs any double (and its process group) still alive, so one failing test cannot
    poison the next; tests assert on leftovers themselves, before this runs.
    """
    home = install_double(tmp_path / "oracle_home")
    yield home
    kill_remote_processes(home)
