"""The test infrastructure itself: the private sshd, the RMAN double, the process checks.

Everything goes through the plain OpenSSH client, so these facts hold before fanout is involved.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from fanout.sim import rman_fake
from tests.system.sshd import (
    TEST_USER,
    Background,
    ProcInfo,
    SshdServer,
    configure_double,
    is_alive,
    kill_remote_processes,
    read_invocations,
    read_proc,
    remote_processes,
    rman_command,
    rman_script,
    sshd_version,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.system

ERROR_BANNER = [
    "RMAN-00571: ===========================================================",
    "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
    "RMAN-00571: ===========================================================",
]


def started(oracle_home: Path, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``count`` doubles have recorded their start; return those records."""
    return wait_until(
        lambda: [r for r in read_invocations(oracle_home) if r["event"] == "start"][count - 1 :],
        what=f"{count} double start record(s)",
    )


def ended(oracle_home: Path, pid: int) -> dict[str, Any]:
    """Wait for the end record of the double ``pid``."""
    records = wait_until(
        lambda: [
            r for r in read_invocations(oracle_home) if r["event"] == "end" and r["pid"] == pid
        ],
        what=f"end record of {pid}",
    )
    return records[0]


def proc(pid: int) -> ProcInfo:
    """The live process ``pid`` (fails the test if it is gone)."""
    info = read_proc(pid)
    assert info is not None, f"process {pid} is gone"
    return info


def ignores(pid: int, sig: signal.Signals) -> bool:
    """Whether ``pid`` has ``sig`` set to SIG_IGN (from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError(f"no SigIgn line for {pid}")


def stays_alive(pid: int, seconds: float = 0.3) -> bool:
    """True if ``pid`` is still alive after ``seconds`` (the only check a survivor allows)."""
    try:
        wait_until(lambda: not is_alive(pid), seconds, what="death")
    except TimeoutError:
        return True
    return False


def start_rman(sshd: SshdServer, oracle_home: Path, sid: str, step: str = "full") -> Background:
    return Background(sshd.ssh_argv(rman_command(oracle_home, sid)), rman_script(step))


def test_sshd_accepts_client_key_and_verifies_host_key(sshd: SshdServer) -> None:
    """The client key logs in and the host key matches known_hosts under StrictHostKeyChecking."""
    result = sshd.ssh("echo ready; id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ready", sshd.user]


def test_unknown_host_key_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    """With a known_hosts that lacks the server, BatchMode ssh refuses to connect."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = sshd.ssh("true", None, 20.0, "-o", f"UserKnownHostsFile={empty}")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_session_command_leads_its_own_process_group(sshd: SshdServer) -> None:
    """sshd setsid()s a non-PTY session: the shell's pid is its pgid and its session id."""
    result = sshd.ssh('echo "$$"; ps -o pgid= -p "$$"; ps -o sid= -p "$$"')
    assert result.returncode == 0, result.stderr
    shell_pid, pgid, session = (int(word) for word in result.stdout.split())
    assert shell_pid == pgid == session


def test_double_prints_rman_transcript_and_exits_0(sshd: SshdServer, oracle_home: Path) -> None:
    """The double behind sshd reads the script on stdin, prints RMAN-shaped output, exits 0."""
    result = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("full"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].isdigit()  # the pgid line fanout strips
    assert lines[2].startswith("Recovery Manager: Release 19.0.0.0.0 - Production on ")
    assert any(line.startswith("connected to target database: ERP (DBID=") for line in lines)
    text = "\n".join(lines)
    for expected in (
        "allocated channel: ORA_DISK_1",
        "channel ORA_DISK_1: starting incremental level 0 datafile backup set",
        "channel ORA_DISK_1: starting piece 1 at ",
        "tag=FANOUT_L0 comment=NONE",
        "Finished backup at ",
    ):
        assert expected in text
    assert lines[-1] == "Recovery Manager complete."
    assert "RMAN-" not in text


def test_fail_prints_final_error_stack_and_exits_1(sshd: SshdServer, oracle_home: Path) -> None:
    """A step configured to fail ends in the real error stack and exit 1; other steps still pass."""
    configure_double(oracle_home, {"ERP": {"full": {"behaviour": "fail"}}})
    failed = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("full"))
    passed = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("archivelog"))
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    top = lines.index(ERROR_BANNER[0])
    assert lines[top : top + 3] == ERROR_BANNER
    assert lines[top + 3].startswith(
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at "
    )
    assert lines[top + 4 : top + 6] == [
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit",
    ]
    assert lines[-1] == "Recovery Manager complete."
    assert passed.returncode == 0
    assert "archived log backup set" in passed.stdout


def test_sigint_to_the_group_stops_hang_and_its_child(sshd: SshdServer, oracle_home: Path) -> None:
    """kill -INT -- -PGID from a second session stops a hanging double and its channel child."""
    configure_double(oracle_home, {"CRM": {"behaviour": "hang", "child": True, "exit_delay": 0.2}})
    with start_rman(sshd, oracle_home, "CRM") as client:
        client.wait_for_output("starting piece 1")
        (record,) = started(oracle_home)
        pgid, child = int(record["pgid"]), int(record["child_pid"])
        assert client.stdout.splitlines()[0] == str(pgid) == str(record["pid"])
        assert {p.pid for p in remote_processes(oracle_home)} == {pgid, child}
        assert oracle_home.as_posix() not in proc(child).args  # found by pgid only

        kill = sshd.ssh(f"kill -s INT -- -{pgid}")
        assert kill.returncode == 0, kill.stderr
        status, out, _ = client.finish()

    assert status == 1
    assert "RMAN-03099: job cancelled at user request" in out
    assert out.splitlines()[-5:] == [
        "ORA-01013: user requested cancel of current operation",
        "",
        "RMAN> ",
        "",
        "Recovery Manager complete.",
    ]
    wait_until(lambda: not remote_processes(oracle_home), what="no double processes")
    assert ended(oracle_home, pgid)["ended"] == "SIGINT"


def test_ignore_sigint_survives_int_and_dies_on_term(sshd: SshdServer, oracle_home: Path) -> None:
    """ignore_sigint shrugs off SIGINT to its group, then SIGTERM ends it with status 1."""
    configure_double(oracle_home, {"*": {"behaviour": "ignore_sigint"}})
    with start_rman(sshd, oracle_home, "HR") as client:
        (record,) = started(oracle_home)
        pid = record["pid"]
        assert ignores(pid, signal.SIGINT)
        assert sshd.ssh(f"kill -s INT -- -{pid}").returncode == 0
        assert stays_alive(pid)

        assert sshd.ssh(f"kill -s TERM -- -{pid}").returncode == 0
        status, _, _ = client.finish()

    assert status == 1
    wait_until(lambda: not remote_processes(oracle_home), what="no double processes")
    assert ended(oracle_home, pid)["ended"] == "SIGTERM"


def test_ignore_int_term_dies_only_on_kill(sshd: SshdServer, oracle_home: Path) -> None:
    """ignore_int_term survives SIGINT and SIGTERM; SIGKILL ends it without an end record."""
    configure_double(oracle_home, {"*": {"behaviour": "ignore_int_term"}})
    with start_rman(sshd, oracle_home, "HR") as client:
        (record,) = started(oracle_home)
        pid = record["pid"]
        assert ignores(pid, signal.SIGINT)
        assert ignores(pid, signal.SIGTERM)
        assert sshd.ssh(f"kill -s INT -- -{pid}; kill -s TERM -- -{pid}").returncode == 0
        assert stays_alive(pid)

        assert sshd.ssh(f"kill -s KILL -- -{pid}").returncode == 0
        status, _, _ = client.finish()

    assert status == 255  # OpenSSH's answer to an exit-signal
    wait_until(lambda: not remote_processes(oracle_home), what="no double processes")
    assert [r["event"] for r in read_invocations(oracle_home)] == ["start"]


def test_invocations_are_recorded(sshd: SshdServer, oracle_home: Path) -> None:
    """Every run appends a start and an end record with sid, step, script, pids and status."""
    configure_double(oracle_home, {"ERP": {"controlfile": {"behaviour": "fail"}}})
    full = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("full", "r1"))
    ctl = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("controlfile", "r1"))
    assert (full.returncode, ctl.returncode) == (0, 1)

    records = read_invocations(oracle_home)
    assert [(r["event"], r["step"]) for r in records] == [
        ("start", "full"),
        ("end", "full"),
        ("start", "controlfile"),
        ("end", "controlfile"),
    ]
    start, end = records[2], records[3]
    assert start["pid"] == end["pid"] == start["pgid"] == int(ctl.stdout.splitlines()[0])
    assert start["script"] == rman_script("controlfile", "r1")
    assert start["command_id"] == "fanout-r1"
    assert start["argv"][1:] == ["target", "/"]
    assert start["env"]["ORACLE_HOME"] == str(oracle_home)
    assert (end["status"], end["ended"], end["behaviour"]) == (1, "fail", "fail")
    assert end["end"] >= end["start"]


def test_killed_ssh_client_leaves_remote_double_running(
    sshd: SshdServer, oracle_home: Path
) -> None:
    """The orphan problem: SIGKILL the ssh client and sshd ends the connection, not the double."""
    configure_double(oracle_home, {"*": {"behaviour": "hang", "child": True}})
    before = set(sshd.session_pids())
    with start_rman(sshd, oracle_home, "ERP") as client:
        (record,) = started(oracle_home)
        (session,) = wait_until(lambda: set(sshd.session_pids()) - before, what="session sshd")
        client.kill()

    wait_until(lambda: not is_alive(session), what="session sshd to end")
    survivors = {p.pid for p in remote_processes(oracle_home)}
    assert survivors == {record["pid"], record["child_pid"]}
    assert proc(record["pid"]).ppid != session  # orphaned, still running
    assert [r["event"] for r in read_invocations(oracle_home)] == ["start"]

    kill_remote_processes(oracle_home)
    assert remote_processes(oracle_home) == []


def test_killed_session_sshd_leaves_remote_double_running(
    sshd: SshdServer, oracle_home: Path
) -> None:
    """SIGKILL of the connection's sshd process drops the client (255) but not the double."""
    configure_double(oracle_home, {"*": {"behaviour": "hang"}})
    before = set(sshd.session_pids())
    with start_rman(sshd, oracle_home, "ERP") as client:
        (record,) = started(oracle_home)
        (session,) = wait_until(lambda: set(sshd.session_pids()) - before, what="session sshd")
        os.kill(session, signal.SIGKILL)
        status, _, _ = client.finish()

    assert status == 255
    assert [p.pid for p in remote_processes(oracle_home)] == [record["pid"]]
    kill_remote_processes(oracle_home)
    assert remote_processes(oracle_home) == []


def test_die_ends_mid_line_and_leaves_its_child(sshd: SshdServer, oracle_home: Path) -> None:
    """die stops mid-line with status 1; its channel child lives on, found by process group."""
    configure_double(oracle_home, {"*": {"behaviour": "die", "child": True}})
    result = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("full"))
    assert result.returncode == 1
    assert result.stdout.endswith("channel ORA_DISK_1: starting pie")
    (record,) = started(oracle_home)
    assert [p.pid for p in remote_processes(oracle_home)] == [record["child_pid"]]
    kill_remote_processes(oracle_home)
    assert remote_processes(oracle_home) == []


def test_flood_arrives_whole(sshd: SshdServer, oracle_home: Path) -> None:
    """flood pushes flood_mb MB of lines through sshd and still ends like rman."""
    configure_double(oracle_home, {"*": {"behaviour": "flood", "flood_mb": 2}})
    result = sshd.ssh(rman_command(oracle_home, "ERP"), rman_script("archivelog"))
    assert result.returncode == 0
    assert len(result.stdout) > 2 * 1024 * 1024
    assert result.stdout.count("input archived log thread=1") > 20000
    assert result.stdout.endswith("Recovery Manager complete.\n")


def test_remote_login_is_not_root_and_uses_sh(sshd: SshdServer) -> None:
    """The remote login is never root (fanout-test when the tests run as root) and runs /bin/sh."""
    result = sshd.ssh('id -u; id -un; echo "$0"')
    assert result.returncode == 0, result.stderr
    uid, user, shell = result.stdout.split()
    assert int(uid) != 0
    assert user == sshd.user == (TEST_USER if os.geteuid() == 0 else user)
    if os.geteuid() == 0:
        assert pwd.getpwnam(user).pw_shell == "/bin/sh"
        assert shell in ("sh", "/bin/sh")


async def test_ssh_signal_request_reaches_the_process_group(
    sshd: SshdServer, oracle_home: Path
) -> None:
    """For this non-root login sshd (7.9+) delivers the RFC 4254 "signal" request to the group."""
    if sshd_version() < (7, 9):
        pytest.skip("OpenSSH before 7.9 ignores the signal request")
    configure_double(oracle_home, {"*": {"behaviour": "hang", "child": True}})
    async with asyncssh.connect(
        sshd.host,
        port=sshd.port,
        username=sshd.user,
        client_keys=[str(sshd.client_key)],
        known_hosts=str(sshd.known_hosts),
        config=[str(sshd.ssh_config)],
        agent_path=None,
    ) as conn:
        process = await conn.create_process(rman_command(oracle_home, "ERP"))
        process.stdin.write(rman_script("full"))
        process.stdin.write_eof()
        (record,) = await asyncio.to_thread(started, oracle_home)
        process.send_signal("INT")
        end = await asyncio.to_thread(ended, oracle_home, record["pid"])
        await asyncio.wait_for(process.wait_closed(), 10)
    assert end["ended"] == "SIGINT"
    assert "session signalling requires privilege separation" not in sshd.log()
    await asyncio.to_thread(
        wait_until, lambda: not remote_processes(oracle_home), 10.0, 0.02, "group gone"
    )


def test_double_config_layers_star_sid_and_step(oracle_home: Path) -> None:
    """double.json resolves defaults <- "*" <- "*"[step] <- SID <- SID[step], re-read each time."""
    configure_double(
        oracle_home,
        {
            "*": {"seconds": 1.0, "child": True, "archivelog": {"behaviour": "die"}},
            "ERP": {"seconds": 2.0, "full": {"behaviour": "fail", "seconds": 3.0}},
            "CRM": {"behaviour": "slow"},
        },
    )
    home = str(oracle_home)
    erp_full = rman_fake.load_config(home, "ERP", "full")
    assert (erp_full["behaviour"], erp_full["seconds"], erp_full["child"]) == ("fail", 3.0, True)
    erp_arch = rman_fake.load_config(home, "ERP", "archivelog")
    assert (erp_arch["behaviour"], erp_arch["seconds"]) == ("die", 2.0)
    assert rman_fake.load_config(home, "CRM", "full")["seconds"] == 1.0
    configure_double(oracle_home, {"CRM": {"behaviour": "slow"}})
    assert rman_fake.load_config(home, "CRM", "full")["seconds"] == 60.0
    assert rman_fake.load_config(home, "HR", "full")["behaviour"] == "ok"
    assert [
        rman_fake.detect_kind(rman_script(s)) for s in ("full", "archivelog", "controlfile")
    ] == [
        "full",
        "archivelog",
        "controlfile",
    ]


def test_write_inventory_points_hosts_at_the_private_sshd(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """write_inventory fills settings, defaults and hosts so every host reaches the private sshd."""
    path = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP"}, {"sid": "CRM", "priority": 5, "steps": ["full"]}],
        {"max_parallel": 2},
        step_timeout=30,
    )
    doc = yaml.safe_load(path.read_text())
    assert doc["settings"] == {
        "max_parallel": 2,
        "cancel_grace": "5s",
        "state_dir": str(tmp_path / "state"),
    }
    assert doc["defaults"]["port"] == sshd.port
    assert doc["defaults"]["step_timeout"] == "30s"
    assert doc["defaults"]["oracle_home"] == str(oracle_home)
    assert Path(doc["defaults"]["ssh_config"]).read_text() == ""
    assert doc["hosts"] == [
        {"name": "erp", "address": "127.0.0.1", "priority": 1, "oracle_sid": "ERP"},
        {
            "name": "crm",
            "address": "127.0.0.1",
            "priority": 5,
            "oracle_sid": "CRM",
            "steps": ["full"],
        },
    ]
