"""Orphan clean-up across an sshd outage (issue 11 item 1), against a private OpenSSH sshd of the
test's own that is stopped (listener and sessions, never the commands they started) and
restarted on the same port. The RMAN double keeps running when its stdout is gone
(``survive_epipe``), as rman writing a long backup piece does. What is left remotely is checked
by listing processes (``remote_processes``), never by trusting fanout."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.sshd import (
    REPO,
    SSHD,
    Background,
    RemoteSide,
    _die_with_parent,
    configure_double,
    descendants,
    fanout_argv,
    fanout_env,
    is_alive,
    json_events,
    kill_and_wait,
    read_invocations,
    remote_processes,
    run_fanout,
    start_sshd,
    stop_sshd,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.system

OUTAGE = 10.0  # seconds sshd stays down in the ride-out test
STEPS = ("full", "archivelog", "controlfile")
# `full` runs a minute, printing as it goes, and keeps going once its stdout is gone.
SURVIVOR = {"behaviour": "slow", "seconds": 60, "child": True, "survive_epipe": True}


class PrivateSshd:
    """An sshd for one test: stopped and restarted at will (same port, keys and config)."""

    def __init__(self, workdir: Path, remote: RemoteSide) -> None:
        self.workdir = workdir
        self.server, self._proc = start_sshd(workdir, remote)
        self.argv = [str(SSHD), "-D", "-e", "-E", str(self.server.log_path)]
        self.argv += ["-f", str(self.server.config_path)]

    @property
    def listener(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        """SIGKILL the listener and every per-connection sshd; the commands they started live on
        (no PTY: nothing signals them), re-parented, as after ``systemctl kill sshd``."""
        sshds = [self.listener]
        sshds += [p.pid for p in descendants(self.listener) if p.args.startswith("sshd")]
        for pid in sshds:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._proc.wait(10)
        wait_until(lambda: not any(is_alive(pid) for pid in sshds), 10, what="sshd gone")

    def start(self) -> None:
        """Start sshd again on the same port; returns once it answers with an SSH banner."""
        with self.server.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.server = dataclasses.replace(self.server, pid=self._proc.pid)
        wait_until(self._answers, 10, interval=0.05, what="sshd restarted")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def close(self) -> None:
        if self._proc.poll() is None:
            stop_sshd(self.server, self._proc)
        else:  # stopped by the test: only its sessions (if any) are left
            kill_and_wait([p.pid for p in descendants(self.listener)])


@pytest.fixture
def private_sshd(remote_side: RemoteSide) -> Iterator[PrivateSshd]:
    """A private sshd of this test (its own keys and authorized_keys), stopped at the end."""
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} not found")
    workdir = Path(tempfile.mkdtemp(prefix="fanout-private-sshd-"))
    workdir.chmod(0o755)  # sshd reads authorized_keys here as the login user
    sshd = PrivateSshd(workdir, dataclasses.replace(remote_side, root=workdir))
    try:
        yield sshd
    finally:
        sshd.close()
        shutil.rmtree(workdir, ignore_errors=True)


def final_steps(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in events if e["event"] == "step_finished" and not e["will_retry"]}


def full_started(oracle_home: Path) -> dict[str, Any]:
    """The start record of the `full` double, once it has printed for a moment."""
    record: dict[str, Any] = wait_until(
        lambda: next((r for r in read_invocations(oracle_home) if r["event"] == "start"), {}),
        30,
        what="the full step's double",
    )
    return record


def group_alive(oracle_home: Path, pgid: int) -> bool:
    return any(p.pgid == pgid for p in remote_processes(oracle_home))


def test_sshd_outage_of_10s_leaves_nothing_running_and_later_steps_run(
    private_sshd: PrivateSshd, oracle_home: Path, tmp_path: Path
) -> None:
    """sshd down 10 s mid-step: the step fails `connection lost`, its rman is stopped once sshd
    is back, the host's later steps run, and nothing is left running."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "ERP": {"full": SURVIVOR}})
    inventory = write_inventory(tmp_path, private_sshd.server, oracle_home, [{"sid": "ERP"}])
    argv = fanout_argv("run", inventory, "--json")
    with Background(argv, cwd=REPO, env=fanout_env(tmp_path / "home")) as run:
        record = full_started(oracle_home)
        time.sleep(1.0)  # fault injection: let the step run (and print) for a moment
        private_sshd.stop()
        time.sleep(OUTAGE)  # fault injection: the outage itself
        assert group_alive(oracle_home, record["pgid"])  # rman kept going without its session
        private_sshd.start()
        back = time.monotonic()
        wait_until(lambda: not group_alive(oracle_home, record["pgid"]), 60, what="orphan gone")
        gone = time.monotonic() - back
        status, out, err = run.finish(timeout=60)
    print(f"outage end -> last orphan gone: {gone:.1f}s")
    events = json_events(out)
    steps = final_steps(events)
    assert status == 1, err
    assert steps["full"]["status"] == "failed"
    assert steps["full"]["cause"].startswith("connection lost to "), steps["full"]["cause"]
    assert (
        f"process group {record['pgid']} was stopped after reconnecting" in (steps["full"]["cause"])
    )
    assert [steps[s]["status"] for s in STEPS[1:]] == ["ok", "ok"]  # no self-inflicted lock
    assert not [e for e in events if e["event"] == "orphan_unconfirmed"]
    assert remote_processes(oracle_home) == []


def test_sshd_down_past_orphan_timeout_names_the_orphan(
    private_sshd: PrivateSshd, oracle_home: Path, tmp_path: Path
) -> None:
    """sshd kept down past orphan_timeout: summary and `show` say `may still be running: <host>
    pgid <n>`, the store keeps it, and the exit code is non-zero."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "ERP": {"full": SURVIVOR}})
    inventory = write_inventory(
        tmp_path,
        private_sshd.server,
        oracle_home,
        [{"sid": "ERP"}],
        settings={"orphan_timeout": "2s"},
    )
    home = tmp_path / "home"
    with Background(
        fanout_argv("run", inventory, "--batch"), cwd=REPO, env=fanout_env(home)
    ) as run:
        record = full_started(oracle_home)
        private_sshd.stop()
        status, out, err = run.finish(timeout=60)
    orphan = f"may still be running: erp pgid {record['pgid']}"
    assert status == 1, err
    assert orphan in out
    assert group_alive(oracle_home, record["pgid"])  # fanout said so, and it was right
    shown = run_fanout(home, "show", "--state-dir", tmp_path / "state", timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert orphan in shown.stdout


def test_frozen_session_is_noticed_by_keepalives_and_its_rman_stopped(
    private_sshd: PrivateSshd, oracle_home: Path, tmp_path: Path
) -> None:
    """keepalive 1s x 2: a frozen sshd session (SIGSTOP) fails the one-minute step `connection
    lost` long before it would end, and its rman is stopped over a new connection."""
    configure_double(oracle_home, {"ERP": {"full": SURVIVOR}})
    inventory = write_inventory(
        tmp_path,
        private_sshd.server,
        oracle_home,
        [{"sid": "ERP", "steps": ["full"]}],
        keepalive_interval="1s",
        keepalive_count_max=2,
    )
    before = set(private_sshd.server.session_pids())
    argv = fanout_argv("run", inventory, "--json")
    with Background(argv, cwd=REPO, env=fanout_env(tmp_path / "home")) as run:
        record = full_started(oracle_home)
        (session,) = wait_until(
            lambda: set(private_sshd.server.session_pids()) - before, what="its sshd"
        )
        os.kill(session, signal.SIGSTOP)  # fault injection: the peer stops answering
        frozen = time.monotonic()
        try:
            status, out, err = run.finish(timeout=30)  # the step itself would run 60 s
        finally:
            os.kill(session, signal.SIGCONT)
    print(f"frozen session -> step failed: {time.monotonic() - frozen:.1f}s")
    steps = final_steps(json_events(out))
    assert status == 1, err
    assert steps["full"]["cause"].startswith("connection lost to "), steps["full"]["cause"]
    assert f"process group {record['pgid']} was stopped" in steps["full"]["cause"]
    assert remote_processes(oracle_home) == []
