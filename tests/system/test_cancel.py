"""Cancelling `fanout run` (issue 4): SIGINT/SIGTERM to the real CLI while RMAN doubles run behind
the private sshd. What is left remotely is checked by listing processes (``remote_processes``),
never by trusting fanout; every double spawns a "channel" child in its process group."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.sshd import (
    REPO,
    Background,
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    is_alive,
    json_events,
    read_invocations,
    remote_processes,
    run_fanout,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.system

STEPS = ("full", "archivelog", "controlfile")
SLOW = {"behaviour": "slow", "seconds": 60, "child": True}
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # linux/fcntl.h


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def fanout_run(tmp_path: Path, inventory: Path, *extra: str) -> Iterator[Background]:
    """`fanout run INVENTORY --json` in the background, stdin /dev/null; killed on the way out."""
    argv = fanout_argv("run", inventory, "--json", *extra)
    with Background(argv, cwd=REPO, env=fanout_env(tmp_path / "home")) as run:
        yield run


def started(oracle_home: Path, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until ``count`` doubles have recorded their start; return the start records."""
    return wait_until(
        lambda: (
            [r for r in read_invocations(oracle_home) if r["event"] == "start"][:count]
            if len([r for r in read_invocations(oracle_home) if r["event"] == "start"]) >= count
            else []
        ),
        timeout,
        what=f"{count} rman doubles started",
    )


def wait_for_event(run: Background, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for the first --json event of ``kind`` on the run's stdout."""
    return wait_until(
        lambda: next((e for e in run.events() if e["event"] == kind), {}),
        timeout,
        what=f"a {kind} event",
    )


def finish_within(run: Background, seconds: float) -> tuple[int, list[dict[str, Any]], float]:
    """Wait (at most ``seconds`` plus slack, then fail) for the run to end: status, events and
    how long the wait took."""
    begin = time.monotonic()
    try:
        status, out, _ = run.finish(timeout=seconds + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fanout still running {seconds + 10:.0f}s after the cancel")
    return status, json_events(out), time.monotonic() - begin


def by_host(events: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {e["host"]: e for e in events if e["event"] == kind}


def final_steps(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["host"], e["step"]): e
        for e in events
        if e["event"] == "step_finished" and not e["will_retry"]
    }


def stored_run(tmp_path: Path, state_dir: Path) -> dict[str, Any]:
    """`fanout show --json` of the latest run: what the run store recorded."""
    result = run_fanout(tmp_path / "home", "show", "--json", "--state-dir", state_dir, timeout=30)
    assert result.returncode == 0, result.stderr
    detail: dict[str, Any] = json.loads(result.stdout)
    return detail


def group_members(records: list[dict[str, Any]]) -> set[int]:
    """pids of the recorded doubles, their channel children and their wrapper shells."""
    pids: set[int] = set()
    for record in records:
        pids |= {record["pid"], record["pgid"]}
        if record.get("child_pid"):
            pids.add(record["child_pid"])
    return pids


def fleet(
    tmp_path: Path,
    sshd: SshdServer,
    oracle_home: Path,
    count: int,
    settings: dict[str, Any] | None = None,
    **defaults: Any,
) -> Path:
    sids = [f"DB{n:02d}" for n in range(1, count + 1)]
    return write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": s} for s in sids], settings, **defaults
    )


# -- SIGINT, SIGTERM ----------------------------------------------------------------------------


def test_sigint_cancels_every_host_and_leaves_nothing_remote(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGINT mid-run: exit 130 within cancel_grace + 3 s, all hosts cancelled, nothing remote."""
    configure_double(oracle_home, {"*": SLOW})
    inventory = fleet(tmp_path, sshd, oracle_home, 10, {"max_parallel": 10, "cancel_grace": 5})

    with fanout_run(tmp_path, inventory) as run:
        records = started(oracle_home, 10)
        os.kill(run.pid, signal.SIGINT)
        status, events, took = finish_within(run, 5 + 3)

    assert status == 130
    assert took < 5 + 3
    assert remote_processes(oracle_home) == []
    assert not any(is_alive(pid) for pid in group_members(records))
    (cancel,) = [e for e in events if e["event"] == "cancel_requested"]
    assert (cancel["reason"], cancel["forced"]) == ("SIGINT", False)
    hosts = by_host(events, "host_finished")
    assert {h["status"] for h in hosts.values()} == {"cancelled"}
    assert len(hosts) == 10
    steps = final_steps(events)
    for host in hosts:
        assert steps[(host, "full")]["status"] == "cancelled"
        assert [steps[(host, s)]["status"] for s in STEPS[1:]] == ["skipped", "skipped"]
    assert (events[-1]["exit_code"], events[-1]["cancelled"]) == (130, "SIGINT")
    ends = [r for r in read_invocations(oracle_home) if r["event"] == "end"]
    assert sorted(r["ended"] for r in ends) == ["SIGINT"] * 10  # rman's own clean abort

    stored = stored_run(tmp_path, tmp_path / "state")
    assert stored["run"]["exit_code"] == 130
    assert {h["status"] for h in stored["hosts"]} == {"cancelled"}
    assert {(s["step"], s["status"]) for h in stored["hosts"] for s in h["steps"]} == {
        ("full", "cancelled"),
        ("archivelog", "skipped"),
        ("controlfile", "skipped"),
    }


def test_ignored_sigint_gets_sigterm_after_cancel_grace(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A double ignoring SIGINT gets SIGTERM when cancel_grace (2 s) has passed, then is gone."""
    configure_double(oracle_home, {"*": {"behaviour": "ignore_sigint", "child": True}})
    inventory = fleet(tmp_path, sshd, oracle_home, 2, {"cancel_grace": 2})

    with fanout_run(tmp_path, inventory) as run:
        started(oracle_home, 2)
        sent = time.time()
        os.kill(run.pid, signal.SIGINT)
        status, events, took = finish_within(run, 2 + 3)

    assert status == 130
    assert took < 2 + 3
    ends = [r for r in read_invocations(oracle_home) if r["event"] == "end"]
    assert [r["ended"] for r in ends] == ["SIGTERM", "SIGTERM"]
    for end in ends:
        assert 1.8 <= end["end"] - sent < 4.0, end["end"] - sent
    assert remote_processes(oracle_home) == []
    assert {h["status"] for h in by_host(events, "host_finished").values()} == {"cancelled"}


def test_ignored_sigint_and_sigterm_get_sigkill_5s_after_sigterm(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A double ignoring SIGINT and SIGTERM is SIGKILLed 5 s after the SIGTERM at cancel_grace."""
    configure_double(oracle_home, {"*": {"behaviour": "ignore_int_term", "child": True}})
    inventory = fleet(tmp_path, sshd, oracle_home, 1, {"cancel_grace": 2})

    with fanout_run(tmp_path, inventory) as run:
        records = started(oracle_home, 1)
        members = group_members(records)
        sent = time.monotonic()
        os.kill(run.pid, signal.SIGINT)
        wait_until(
            lambda: not any(is_alive(pid) for pid in members), 15, 0.01, "SIGKILL of the group"
        )
        gone = time.monotonic() - sent
        status, events, _ = finish_within(run, 3)

    assert 2 + 5 - 0.3 <= gone < 2 + 5 + 2, gone
    assert status == 130
    assert [r["event"] for r in read_invocations(oracle_home)] == ["start"]  # no end: SIGKILL
    assert remote_processes(oracle_home) == []
    step = final_steps(events)[("db01", "full")]
    assert (step["status"], step["exit_status"]) == ("cancelled", 137)


def test_second_sigint_forces_the_stop_at_once(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A second SIGINT skips the grace: doubles ignoring INT and TERM are killed right away."""
    configure_double(oracle_home, {"*": {"behaviour": "ignore_int_term", "child": True}})
    inventory = fleet(tmp_path, sshd, oracle_home, 3, {"cancel_grace": 30})

    with fanout_run(tmp_path, inventory) as run:
        started(oracle_home, 3)
        os.kill(run.pid, signal.SIGINT)
        wait_for_event(run, "cancel_requested")
        os.kill(run.pid, signal.SIGINT)
        status, events, took = finish_within(run, 3)

    assert status == 130
    assert took < 3  # far below cancel_grace (30 s)
    cancels = [(e["reason"], e["forced"]) for e in events if e["event"] == "cancel_requested"]
    assert cancels == [("SIGINT", False), ("SIGINT", True)]
    assert remote_processes(oracle_home) == []
    assert {h["status"] for h in by_host(events, "host_finished").values()} == {"cancelled"}


def test_sigterm_cancels_with_143_and_leaves_nothing_remote(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGTERM stops the run like SIGINT does, but the exit code is 143."""
    configure_double(oracle_home, {"*": SLOW})
    inventory = fleet(tmp_path, sshd, oracle_home, 4, {"cancel_grace": 5})

    with fanout_run(tmp_path, inventory) as run:
        records = started(oracle_home, 4)
        os.kill(run.pid, signal.SIGTERM)
        status, events, took = finish_within(run, 5 + 3)

    assert status == 143
    assert took < 5 + 3
    assert remote_processes(oracle_home) == []
    assert not any(is_alive(pid) for pid in group_members(records))
    assert (events[-1]["exit_code"], events[-1]["cancelled"]) == (143, "SIGTERM")
    assert {h["status"] for h in by_host(events, "host_finished").values()} == {"cancelled"}


# -- where the cancel lands ------------------------------------------------------------------------


def test_dropped_connection_fails_the_step_and_stops_its_remote_group(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A connection dropped mid-step fails the step; its orphaned remote group is stopped."""
    # SIGKILL of the connection's sshd; fanout reconnects to stop the group (TERM), and the
    # next steps run on a new connection. `hang` writes nothing more, so no EPIPE ends it.
    hang = {"behaviour": "hang", "child": True}
    configure_double(oracle_home, {"*": {"seconds": 0.1}, "ERP": {"full": hang}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}])
    before = set(sshd.session_pids())

    with fanout_run(tmp_path, inventory) as run:
        (record,) = started(oracle_home, 1)
        (session,) = wait_until(lambda: set(sshd.session_pids()) - before, what="its sshd")
        os.kill(session, signal.SIGKILL)
        status, events, _ = finish_within(run, 15)

    assert status == 1
    full = final_steps(events)[("erp", "full")]
    assert full["status"] == "failed"
    assert full["exit_status"] is None
    assert full["cause"].startswith("connection lost to "), full["cause"]
    assert "during the step" in full["cause"]
    assert f"process group {record['pgid']} was stopped after reconnecting" in full["cause"]
    assert not any(is_alive(pid) for pid in group_members([record]))
    (end,) = [
        r for r in read_invocations(oracle_home) if r["event"] == "end" and r["step"] == "full"
    ]
    assert end["ended"] == "SIGTERM"
    assert [final_steps(events)[("erp", s)]["status"] for s in STEPS[1:]] == ["ok", "ok"]
    assert [e["attempt"] for e in events if e["event"] == "host_connected"] == [1, 1]
    assert remote_processes(oracle_home) == []


def test_cancel_during_connect_ends_promptly_and_starts_nothing(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGINT during a hanging SSH handshake: prompt exit, that host cancelled, nothing started."""
    configure_double(oracle_home, {"*": SLOW})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the TCP handshake; nobody ever says a word
        port = silent.getsockname()[1]
        inventory = write_inventory(
            tmp_path,
            sshd,
            oracle_home,
            [{"sid": "MUTE", "name": "mute", "port": port}, {"sid": "ERP"}],
            connect_timeout=30,
        )
        with fanout_run(tmp_path, inventory) as run:
            started(oracle_home, 1)
            wait_until(
                lambda: any(
                    e["event"] == "host_started" and e["host"] == "mute" for e in run.events()
                ),
                what="mute connecting",
            )
            os.kill(run.pid, signal.SIGINT)
            status, events, took = finish_within(run, 3)

    assert status == 130
    assert took < 3
    mute = [e for e in events if e.get("host") == "mute"]
    assert [e["event"] for e in mute] == ["host_started", *["step_finished"] * 3, "host_finished"]
    assert {e["status"] for e in mute if e["event"] == "step_finished"} == {"skipped"}
    assert (mute[-1]["status"], mute[-1]["cause"]) == ("cancelled", None)
    assert by_host(events, "host_finished")["erp"]["status"] == "cancelled"
    assert [r["sid"] for r in read_invocations(oracle_home) if r["event"] == "start"] == ["ERP"]
    assert remote_processes(oracle_home) == []


def test_cancel_leaves_queued_hosts_not_started(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGINT with 2 of 10 hosts running: those 2 are cancelled, the 8 queued never start."""
    configure_double(oracle_home, {"*": SLOW})
    inventory = fleet(tmp_path, sshd, oracle_home, 10, {"max_parallel": 2, "cancel_grace": 5})

    with fanout_run(tmp_path, inventory) as run:
        records = started(oracle_home, 2)
        os.kill(run.pid, signal.SIGINT)
        status, events, _ = finish_within(run, 5 + 3)

    assert status == 130
    assert {r["sid"] for r in records} == {"DB01", "DB02"}
    hosts = {name: e["status"] for name, e in by_host(events, "host_finished").items()}
    assert hosts == {"db01": "cancelled", "db02": "cancelled"} | {
        f"db{n:02d}": "not started" for n in range(3, 11)
    }
    assert {e["host"] for e in events if e["event"] == "host_started"} == {"db01", "db02"}
    assert len([r for r in read_invocations(oracle_home) if r["event"] == "start"]) == 2
    assert remote_processes(oracle_home) == []


def test_sigint_after_the_run_finished_changes_nothing(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGINT once every host has finished (fanout still printing the summary) keeps the exit
    code the run decided (1: the summary lists failures only, so every step fails here)."""
    steps = {f"s{n:02d}": {"shell": "false"} for n in range(1, 41)}  # a summary of ~20 KiB
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": f"DB{n}"} for n in range(1, 5)],
        step_defs=steps,
        steps=list(steps),
    )
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # the summary (> 4 KiB) will not fit
    proc = subprocess.Popen(
        fanout_argv("run", inventory, "--batch"),
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=fanout_env(tmp_path / "home"),
    )
    os.close(write_end)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while not re.search(rb"fanout run \S+ finished in .*\n", output):
            assert time.monotonic() < deadline, output.decode()
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:  # small reads: stop at most 255 bytes past the run's last line
                chunk = os.read(read_end, 256)
                assert chunk, output.decode()
                output += chunk
        # stop reading: fanout blocks writing the summary, after the run has ended
        capacity = fcntl.fcntl(read_end, F_GETPIPE_SZ)
        wait_until(lambda: _buffered(read_end) >= capacity, 10, what="fanout blocked")
        os.kill(proc.pid, signal.SIGINT)
        output += _read_to_eof(read_end, time.monotonic() + 20)
        status = proc.wait(10)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(read_end)
        if proc.stderr:
            proc.stderr.close()

    text = output.decode()
    assert "Traceback" not in stderr, stderr
    assert status == 1, (text[-500:], stderr)
    assert text.rstrip().endswith("— exit 1 (at least one step failed)"), text[-300:]


def _read_to_eof(fd: int, deadline: float) -> bytes:
    """Everything the pipe ``fd`` delivers until EOF; fails the test at ``deadline``."""
    data = b""
    while True:
        assert time.monotonic() < deadline, "fanout kept its stdout open"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk


def _buffered(fd: int) -> int:
    """Bytes waiting in the pipe ``fd`` reads from."""
    (count,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))
    return int(count)


# -- latency --------------------------------------------------------------------------------------


def test_cancel_of_50_hosts_stops_every_remote_group_quickly(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """SIGINT to 50 running hosts: every remote process group is gone within 3 s."""
    # Latencies are printed (-s) and kept in cancel_latency.txt; benchmarks/cancel_latency.py
    # repeats the measurement over several runs.
    configure_double(oracle_home, {"*": SLOW})
    inventory = fleet(tmp_path, sshd, oracle_home, 50, {"max_parallel": 50, "cancel_grace": 5})
    gone: dict[str, float] = {}

    with fanout_run(tmp_path, inventory) as run:
        groups = {r["sid"]: group_members([r]) for r in started(oracle_home, 50, 60)}
        sent = time.monotonic()
        os.kill(run.pid, signal.SIGINT)

        def all_gone() -> bool:
            now = time.monotonic() - sent
            for sid, pids in groups.items():
                if sid not in gone and not any(is_alive(pid) for pid in pids):
                    gone[sid] = now
            return len(gone) == len(groups)

        wait_until(all_gone, 5 + 5, 0.01, "every remote group gone")
        status, _, exited = finish_within(run, 5 + 3)

    assert status == 130
    assert remote_processes(oracle_home) == []
    report = (
        f"cancel latency, 50 hosts (load {os.getloadavg()[0]:.1f}): remote groups gone p50"
        f" {statistics.median(gone.values()) * 1000:.0f} ms, max {max(gone.values()) * 1000:.0f}"
        f" ms; fanout exited {(max(gone.values()) + exited) * 1000:.0f} ms after SIGINT"
    )
    print(report)
    (tmp_path / "cancel_latency.txt").write_text(report + "\n")
    assert max(gone.values()) < 3.0, report
