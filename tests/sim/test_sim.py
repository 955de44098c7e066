"""The simulated fleet (real /bin/sh behind an in-process SSH server) through fanout's real
SshTransport, and `fanout demo` as a user runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.errors import ConnectError, ConnectionLost
from fanout.events import RecordingSink, StepFinished, StepOutput, StepStatus
from fanout.model import Host, Inventory, Settings, StepDef, StepKind
from fanout.rman import Transcript, step_cause
from fanout.sim import rman_fake
from fanout.sim.demo import FAILURES, DemoOptions, Problem, run_demo
from fanout.sim.server import ClientFiles, SimFleet
from fanout.steps import BUILTIN_STEPS, render_host, render_step
from fanout.transport.base import OutputLine, RemoteSignal
from fanout.transport.ssh import SshProcess, SshSession, SshTransport

DEADLINE = 10.0  # seconds any single wait below may take
HANG = {"behaviour": "hang", "exit_delay": 0.05}


@asynccontextmanager
async def running(
    tmp_path: Path, databases: Mapping[str, Mapping[str, Any]]
) -> AsyncIterator[tuple[SimFleet, ClientFiles]]:
    """A fleet serving in this loop with ``databases`` (SID: fake settings) and its files."""
    fleet = SimFleet(tmp_path / "fleet")
    for sid, rman in databases.items():
        fleet.database(sid, {"seconds": 0.2, **rman})
    files = fleet.write_client_files(tmp_path / "client")
    async with fleet.serve():
        yield fleet, files


def host(fleet: SimFleet, files: ClientFiles, name: str, sid: str, **fields: Any) -> Host:
    """An inventory host for the database ``sid`` (made by ``running``); ``fields`` override."""
    values: dict[str, Any] = {
        "name": name,
        "address": "127.0.0.1",
        "priority": 1,
        "oracle_sid": sid,
        "oracle_home": str(fleet.directory / sid / "dbhome"),
        "lock_dir": str(fleet.directory / sid / "locks"),
        "user": "oracle",
        "port": fleet.port,
        "identity_file": files.identity_file,
        "known_hosts": files.known_hosts,
        "ssh_config": files.ssh_config,
        "connect_retries": 0,
        "connect_timeout": 5.0,
        **fields,
    }
    return Host(**values)


def transport() -> SshTransport:
    return SshTransport(
        reconnect_backoff=0.05,
        orphan_grace=1.0,
        start_timeout=5.0,
        command_timeout=5.0,
        close_timeout=2.0,
    )


async def run_engine(
    hosts: list[Host], token: CancelToken | None = None, cancel_grace: float = 2.0
) -> tuple[int, RecordingSink]:
    inventory = Inventory(path=Path("sim.yaml"), settings=Settings(), hosts=tuple(hosts))
    targets = [Target(h, render_host(inventory, h, "simtest")) for h in hosts]
    sink = RecordingSink()
    engine = Engine(
        run_id="simtest",
        inventory="sim.yaml",
        targets=targets,
        transport=transport(),
        sink=sink,
        token=token or CancelToken(),
        max_parallel=4,
        cancel_grace=cancel_grace,
        kill_grace=1.0,
        connect_backoff=0.05,
        retry_delay=0.05,
    )
    async with asyncio.timeout(DEADLINE):
        code = await engine.run()
    return code, sink


def finished(sink: RecordingSink) -> dict[tuple[str, str], StepFinished]:
    return {(e.host, e.step): e for e in sink.events if isinstance(e, StepFinished)}


async def start_step(session: SshSession, target: Host, step: str = "full") -> SshProcess:
    rendered = render_step(target, BUILTIN_STEPS[step], "simtest")
    return await session.start(rendered.command, rendered.stdin)


async def read_until(proc: SshProcess, text: str, seen: list[OutputLine]) -> None:
    async with asyncio.timeout(DEADLINE):
        async for line in proc.lines():
            seen.append(line)
            if text in line.text:
                return
    raise AssertionError(f"{text!r} never came: {[line.text for line in seen]}")


async def drain(proc: SshProcess) -> int:
    """Every line, then the exit status (bounded)."""
    async with asyncio.timeout(DEADLINE):
        async for _line in proc.lines():
            pass
        return await proc.wait()


async def test_failure_gives_the_ora_cause_through_the_engine(tmp_path: Path) -> None:
    """A scripted ORA-19809 on `full` fails that step with that cause; the others still run."""
    bad = {"full": {"behaviour": "fail"}}
    async with running(tmp_path, {"BAD": bad, "GOOD": {}}) as (fleet, files):
        hosts = [host(fleet, files, "bad", "BAD"), host(fleet, files, "good", "GOOD")]
        code, sink = await run_engine(hosts)
        assert not fleet.processes()
    steps = finished(sink)
    assert code == 1
    assert steps["bad", "full"].status is StepStatus.FAILED
    assert steps["bad", "full"].cause == "ORA-19809: limit exceeded for recovery files"
    assert steps["bad", "full"].exit_status == 1
    assert steps["bad", "archivelog"].status is StepStatus.OK
    assert {steps["good", s].status for s in ("full", "archivelog", "controlfile")} == {
        StepStatus.OK
    }


async def test_hang_hits_the_step_timeout(tmp_path: Path) -> None:
    """A hung rman meets the step timeout; SIGINT makes it print rman's cancel stack and go."""
    async with running(tmp_path, {"HUNG": HANG}) as (fleet, files):
        target = host(fleet, files, "hung", "HUNG", steps=("full",), step_timeout=0.5)
        code, sink = await run_engine([target])
        assert not fleet.processes()
        assert not (fleet.directory / "HUNG" / "locks" / "fanout-HUNG.lock").exists()
    step = finished(sink)["hung", "full"]
    assert (code, step.status, step.cause) == (1, StepStatus.FAILED, "timeout after 0.5s")
    output = [line for e in sink.events if isinstance(e, StepOutput) for line in e.lines]
    assert "RMAN-03099: job cancelled at user request" in output


async def test_ignored_sigint_is_ended_by_sigterm_after_the_grace(tmp_path: Path) -> None:
    """ignore_sigint: SIGINT changes nothing, SIGTERM after cancel_grace ends it; nothing left."""
    async with running(tmp_path, {"DEAF": {"behaviour": "ignore_sigint"}}) as (fleet, files):
        target = host(fleet, files, "deaf", "DEAF", steps=("full",), step_timeout=0.3)
        code, sink = await run_engine([target], cancel_grace=0.3)
        assert not fleet.processes()
    step = finished(sink)["deaf", "full"]
    assert (code, step.status, step.cause) == (1, StepStatus.FAILED, "timeout after 0.3s")
    records = rman_fake.read_invocations(fleet.directory / "DEAF" / "dbhome")
    (end,) = [r for r in records if r["event"] == "end"]
    assert end["ended"] == "SIGTERM"


async def test_interrupt_stops_the_step_with_an_rman_cancel_stack(tmp_path: Path) -> None:
    """signal(INT) mid-backup: rman's ORA-01013 stack, then the wrapper's INT trap exits 130."""
    async with running(tmp_path, {"BUSY": HANG}) as (fleet, files):
        target = host(fleet, files, "busy", "BUSY")
        async with transport().open_session(target) as session:
            proc = await start_step(session, target)
            seen: list[OutputLine] = []
            await read_until(proc, "starting piece 1", seen)
            assert proc.pgid is not None
            group = sorted(p for p in fleet.processes() if p[1] == proc.pgid)
            assert group[0][2].startswith("/bin/sh -c echo fanout-pgid=$$")  # the wrapper
            assert group[1][2].endswith("/bin/rman target /")  # rman, its child in the group
            await proc.signal(RemoteSignal.INT)
            async with asyncio.timeout(DEADLINE):
                seen += [line async for line in proc.lines()]
                status = await proc.wait()
        assert not fleet.processes()
        ledger = fleet.directory / "BUSY" / "locks" / "fanout-BUSY.ledger"
        assert ledger.read_text() == "simtest full 130 -\n"
    texts = [line.text for line in seen]
    assert status == 130
    assert "ORA-01013: user requested cancel of current operation" in texts
    assert "Recovery Manager complete." in texts


async def test_dropped_connection_raises_connection_lost_after_stopping_the_step(
    tmp_path: Path,
) -> None:
    """drop: ConnectionLost, once the reconnect found the group with ps and stopped it."""
    async with running(tmp_path, {"FLAKY": {"behaviour": "drop"}}) as (fleet, files):
        target = host(fleet, files, "flaky", "FLAKY")
        async with transport().open_session(target) as session:
            proc = await start_step(session, target)
            with pytest.raises(ConnectionLost, match=r"stopped after reconnecting \(SIGTERM\)"):
                await drain(proc)
        assert not fleet.processes()


async def test_refused_host_raises_connect_error(tmp_path: Path) -> None:
    """refuse: the host points at a closed port and connecting fails as ConnectError."""
    async with running(tmp_path, {"DOWN": {}}) as (fleet, files):
        target = host(fleet, files, "down", "DOWN", port=fleet.refused_port)
        with pytest.raises(ConnectError, match="connection refused"):
            async with transport().open_session(target):
                pass


async def test_helpers_see_ps_listing_and_unknown_commands(tmp_path: Path) -> None:
    """ps lists the step's group as fanout parses it; an unknown command is 127, not found."""
    async with running(tmp_path, {"HUNG": HANG}) as (fleet, files):
        target = host(fleet, files, "hung", "HUNG")
        shell = StepDef("odd", StepKind.SHELL, "frobnicate --now")
        async with transport().open_session(target) as session:
            proc = await start_step(session, target)
            listing = await session.run_helper(
                f"ps -A -o pgid= -o etime= -o pid= -o args= | awk '$1 == {proc.pgid}'"
            )
            await proc.kill_group(RemoteSignal.KILL)
            async with asyncio.timeout(DEADLINE):
                status = await proc.wait()
            odd = render_step(target, shell, "simtest")
            other = await session.start(odd.command, odd.stdin)
            lines = [line async for line in other.lines()]
            odd_status = await other.wait()
    rows = [row.split(None, 3) for row in listing[1].splitlines()]
    assert listing[0] == 0
    assert {row[0] for row in rows} == {str(proc.pgid)}
    assert any(row[3].endswith("/bin/rman target /") for row in rows)
    assert status == 137
    assert odd_status == 127
    assert [line.text.endswith("frobnicate: not found") for line in lines] == [True]


# -- fanout demo ---------------------------------------------------------------------------------


def demo_argv(state_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fanout", "demo", "--batch", "--state-dir", str(state_dir), *args]


def announced(stderr: str) -> dict[str, Problem]:
    """The scripted problems the demo announced (``  <host>: <text>``), by host."""
    by_text = {problem.text: problem for problem in FAILURES}
    found = {}
    for line in stderr.splitlines():
        name, _, text = line.strip().partition(": ")
        if line.startswith("  ") and text in by_text:
            found[name] = by_text[text]
    return found


def assert_outcomes_match(state_dir: Path, problems: Mapping[str, Problem]) -> None:
    """Every host's recorded steps are what its scripted problem (or none) implies."""
    inventory = yaml.safe_load((state_dir / "demo-inventory.yaml").read_text())
    stops = {n for n, s in inventory["steps"].items() if s.get("on_failure") == "stop"}
    with sqlite3.connect(state_dir / "fanout.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        host_rows = db.execute("SELECT name, status, cause FROM hosts WHERE run_id = ?", (run_id,))
        hosts = {name: (status, cause) for name, status, cause in host_rows}
        step_rows = db.execute(
            "SELECT host, step, status, cause FROM steps WHERE run_id = ?", (run_id,)
        ).fetchall()
    recorded: dict[str, dict[str, tuple[str, str | None]]] = {}
    for name, step, status, cause in step_rows:
        recorded.setdefault(name, {})[step] = (status, cause)
    assert set(recorded) == set(hosts) == {h["name"] for h in inventory["hosts"]}
    for entry in inventory["hosts"]:
        name = entry["name"]
        problem = problems.get(name)
        steps = entry.get("steps", inventory["defaults"]["steps"])
        expected, after = {}, "ok"
        for step in steps:
            if problem is not None and problem.step == step:
                expected[step], after = "failed", ("skipped" if step in stops else "ok")
            else:
                expected[step] = after if problem is None or problem.step else "skipped"
        got = recorded[name]
        assert {s: got[s][0] for s in steps} == expected, (name, problem, got)
        assert hosts[name][0] == ("ok" if problem is None else "failed"), (name, hosts[name])
        if problem is not None:
            cause = got[problem.step][1] if problem.step else hosts[name][1]
            assert (cause or "").startswith(problem.cause), (name, cause)


@pytest.mark.parametrize(("failures", "expected"), [(2, 1), (0, 0)])
def test_demo_batch_runs_and_exits_as_its_failures_imply(
    tmp_path: Path, failures: int, expected: int
) -> None:
    """`fanout demo --hosts 5 --speed 50 --batch`: exit 1 with scripted failures, 0 without."""
    argv = demo_argv(tmp_path / "state", "--hosts", "5", "--speed", "50")
    result = subprocess.run(
        [*argv, "--failures", str(failures)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == expected, result.stdout + result.stderr
    assert " hosts ok" in result.stdout
    assert ("ORA-19809: limit exceeded for recovery files" in result.stdout) == bool(failures)
    assert list((tmp_path / "state" / "logs").iterdir())


@pytest.mark.timeout(120)  # ~200 steps, each a real sh + rman fake process
def test_demo_50_hosts_5_failures_each_host_ends_as_scripted(tmp_path: Path) -> None:
    """`fanout demo --hosts 50 --failures 5`: 5 problems announced, every host ends as scripted."""
    argv = demo_argv(tmp_path / "state", "--hosts", "50", "--failures", "5", "--speed", "50")
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=110, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    problems = announced(result.stderr)
    assert list(problems.values()) == list(FAILURES[:5])
    assert_outcomes_match(tmp_path / "state", problems)


@pytest.mark.timeout(240)  # ~750 steps, each a real sh + rman fake process: ~30 s of CPU
def test_demo_200_hosts_10_failures_announced_equals_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--hosts 200 --failures 10: each failure on a step its host has, each one recorded."""
    options = DemoOptions(
        hosts=200, failures=10, speed=50, state_dir=tmp_path / "state", batch=True
    )
    code = run_demo(options)
    problems = announced(capsys.readouterr().err)
    assert code == 1
    assert len(problems) == 10
    assert {p.text for p in problems.values()} == {p.text for p in FAILURES}
    assert_outcomes_match(tmp_path / "state", problems)


def test_sigkilled_demo_leaves_no_rman_fake_running(tmp_path: Path) -> None:
    """SIGKILL the demo mid-backup: every fake it started ends on its own within seconds."""
    state = tmp_path / "state"
    argv = demo_argv(state, "--hosts", "4", "--failures", "0", "--speed", "0.1")
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as demo:
        try:
            deadline = time.monotonic() + 30
            while not (starts := started_fakes(state)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert starts, "no fake started"
        finally:
            demo.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(r["pid"]) for r in starts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [r["pid"] for r in starts if alive(r["pid"])]


def started_fakes(state: Path) -> list[dict[str, Any]]:
    homes = state.glob("sim/*/dbhome")
    return [r for h in homes for r in rman_fake.read_invocations(h) if r["event"] == "start"]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_fake_is_standalone_stdlib(tmp_path: Path) -> None:
    """Installed, the fake runs under `python -IS` (no fanout import): no ORACLE_SID, no connect."""
    home = rman_fake.install(tmp_path / "oh", f"{sys.executable} -IS")
    result = subprocess.run(
        [home / "bin" / "rman", "target", "/"],
        input="EXIT;\n",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ORACLE_SID"},
        cwd="/",
    )
    assert result.returncode == 1
    assert "ORA-12162: TNS:net service name is incorrectly specified" in result.stdout


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("recovery-area-full", "ORA-19809: limit exceeded for recovery files"),
        ("archived-log-missing", "ORA-19625: error identifying file /u02/fra/ERP/archivelog/"),
        ("catalog-unavailable", "RMAN-04004: error from recovery catalog database: ORA-01033:"),
        ("media-manager", "ORA-19511: non RMAN, but media manager or vendor specific failure,"),
        ("session-terminated", "RMAN-10038: database session for channel default terminated"),
        ("nothing-to-backup", "RMAN-20242: specification does not match any archived log"),
        ("disk-full-inline", 'ORA-19502: write error on file "/u02/fra/ERP/backupset/'),
    ],
)
def test_every_failure_shape_of_the_fake_reads_as_a_dba_would(
    tmp_path: Path, error: str, cause: str
) -> None:
    """Each named error stack the fake prints (shapes of real transcripts) gives the cause
    fanout's RMAN reader finds in the real transcripts of tests/rman_corpus."""
    home = rman_fake.install(tmp_path / "home", sys.executable + " -IS")
    rman_fake.configure(home, {"*": {"behaviour": "fail", "error": error, "seconds": 0}})
    result = subprocess.run(
        [str(home / "bin" / "rman"), "target", "/"],
        input="RUN {\n  BACKUP DATABASE;\n}\nEXIT;\n",
        env={"ORACLE_SID": "ERP", "ORACLE_HOME": str(home), "PATH": os.defpath},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    transcript = Transcript()
    for line in result.stdout.splitlines():
        transcript.feed(line)
    assert result.returncode == 1
    found = step_cause(result.returncode, transcript, None)
    assert found is not None
    assert found.startswith(cause), found
    assert transcript.nothing_to_backup == (error == "nothing-to-backup")
