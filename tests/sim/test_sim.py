"""The simulated fleet through fanout's real SshTransport, and `fanout demo` as a user runs it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.errors import ConnectError, ConnectionLost
from fanout.events import RecordingSink, StepFinished, StepOutput, StepStatus
from fanout.model import Host, Inventory, Settings, StepDef, StepKind
from fanout.sim.behaviour import HostBehaviour, Mode
from fanout.sim.server import ClientFiles, SimFleet
from fanout.steps import BUILTIN_STEPS, render_host, render_step
from fanout.transport.base import OutputLine, RemoteSignal
from fanout.transport.ssh import SshProcess, SshSession, SshTransport

DEADLINE = 10.0  # seconds any single wait below may take


@asynccontextmanager
async def running(
    tmp_path: Path, behaviours: Mapping[str, HostBehaviour], speed: float = 20.0
) -> AsyncIterator[tuple[SimFleet, ClientFiles]]:
    """A fleet serving in this loop, with its client files under ``tmp_path``."""
    fleet = SimFleet(behaviours, speed=speed)
    files = fleet.write_client_files(tmp_path / "sim")
    async with fleet.serve():
        yield fleet, files


def transport() -> SshTransport:
    return SshTransport(
        reconnect_backoff=0.05,
        orphan_grace=1.0,
        start_timeout=5.0,
        command_timeout=5.0,
        close_timeout=2.0,
    )


async def run_engine(
    fleet: SimFleet,
    hosts: list[Host],
    token: CancelToken | None = None,
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
        cancel_grace=2.0,
        kill_grace=1.0,
        connect_backoff=0.05,
        retry_delay=0.05,
    )
    async with asyncio.timeout(DEADLINE):
        code = await engine.run()
    return code, sink


def finished(sink: RecordingSink) -> dict[tuple[str, str], StepFinished]:
    return {(e.host, e.step): e for e in sink.events if isinstance(e, StepFinished)}


async def start_step(session: SshSession, host: Host, step: str = "full") -> SshProcess:
    rendered = render_step(host, BUILTIN_STEPS[step], "simtest")
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
    bad = HostBehaviour(Mode.FAIL, frozenset({"full"}))
    async with running(tmp_path, {"BAD": bad}) as (fleet, files):
        code, sink = await run_engine(
            fleet, [fleet.host("bad", "BAD", files), fleet.host("good", "GOOD", files)]
        )
        assert not fleet.processes
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
    async with running(tmp_path, {"HUNG": HostBehaviour(Mode.HANG)}) as (fleet, files):
        host = fleet.host("hung", "HUNG", files, steps=("full",), step_timeout=0.5)
        code, sink = await run_engine(fleet, [host])
        assert not fleet.processes
        assert fleet.world.fs.kind("/tmp/fanout-HUNG.lock") is None  # the wrapper cleaned up
    step = finished(sink)["hung", "full"]
    assert (code, step.status, step.cause) == (1, StepStatus.FAILED, "timeout after 0.5s")
    output = [e.line for e in sink.events if isinstance(e, StepOutput)]
    assert "RMAN-03099: job cancelled at user request" in output


async def test_interrupt_stops_the_step_with_an_rman_cancel_stack(tmp_path: Path) -> None:
    """signal(INT) mid-backup: rman's ORA-01013 stack, then the wrapper's INT trap exits 130."""
    async with running(tmp_path, {"BUSY": HostBehaviour(Mode.HANG)}) as (fleet, files):
        host = fleet.host("busy", "BUSY", files)
        async with transport().open_session(host) as session:
            proc = await start_step(session, host)
            seen: list[OutputLine] = []
            await read_until(proc, "starting piece 1", seen)
            assert proc.pgid is not None
            group = [p.args for p in fleet.world.table.group(proc.pgid)]
            assert group[0].startswith("/bin/sh -c echo fanout-pgid=$$")  # the wrapper's shell
            assert group[1].endswith("/bin/rman target /")  # rman, its child in the group
            await proc.signal(RemoteSignal.INT)
            async with asyncio.timeout(DEADLINE):
                seen += [line async for line in proc.lines()]
                status = await proc.wait()
        assert not fleet.processes
        assert fleet.world.fs.read("/tmp/fanout-BUSY.last")[0] == "simtest full 130\n"
    texts = [line.text for line in seen]
    assert status == 130
    assert "ORA-01013: user requested cancel of current operation" in texts
    assert "Recovery Manager complete." in texts


async def test_dropped_connection_raises_connection_lost_after_stopping_the_step(
    tmp_path: Path,
) -> None:
    """drop: ConnectionLost, once the reconnect found the group with ps and stopped it."""
    async with running(tmp_path, {"FLAKY": HostBehaviour(Mode.DROP)}) as (fleet, files):
        host = fleet.host("flaky", "FLAKY", files)
        async with transport().open_session(host) as session:
            proc = await start_step(session, host)
            with pytest.raises(ConnectionLost, match=r"stopped after reconnecting \(SIGTERM\)"):
                await drain(proc)
        assert not fleet.processes


async def test_refused_host_raises_connect_error(tmp_path: Path) -> None:
    """refuse: the host points at a closed port and connecting fails as ConnectError."""
    async with running(tmp_path, {"DOWN": HostBehaviour(Mode.REFUSE)}) as (fleet, files):
        host = fleet.host("down", "DOWN", files)
        with pytest.raises(ConnectError, match="connection refused"):
            async with transport().open_session(host):
                pass


async def test_helpers_see_ps_listing_and_unknown_commands(tmp_path: Path) -> None:
    """ps lists the step's group as fanout parses it; an unknown command is 127, not found."""
    async with running(tmp_path, {"HUNG": HostBehaviour(Mode.HANG)}) as (fleet, files):
        host = fleet.host("hung", "HUNG", files)
        shell = StepDef("odd", StepKind.SHELL, "frobnicate --now")
        async with transport().open_session(host) as session:
            proc = await start_step(session, host)
            listing = await session.run_helper(
                f"ps -A -o pgid= -o etime= -o pid= -o args= | awk '$1 == {proc.pgid}'"
            )
            await proc.kill_group(RemoteSignal.KILL)
            async with asyncio.timeout(DEADLINE):
                status = await proc.wait()
            odd = render_step(host, shell, "simtest")
            other = await session.start(odd.command, odd.stdin)
            lines = [line async for line in other.lines()]
            odd_status = await other.wait()
    rows = [row.split(None, 3) for row in listing[1].splitlines()]
    assert listing[0] == 0
    assert {row[0] for row in rows} == {str(proc.pgid)}
    assert any(row[3].endswith("/bin/rman target /") for row in rows)
    assert status == 137
    assert odd_status == 127
    assert [line.text for line in lines] == ["sh: 1: frobnicate: not found"]


@pytest.mark.parametrize(("failures", "expected"), [(2, 1), (0, 0)])
def test_demo_batch_runs_and_exits_as_its_failures_imply(
    tmp_path: Path, failures: int, expected: int
) -> None:
    """`fanout demo --hosts 5 --speed 50 --batch`: exit 1 with scripted failures, 0 without."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fanout",
            "demo",
            "--hosts",
            "5",
            "--speed",
            "50",
            "--batch",
            "--failures",
            str(failures),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == expected, result.stdout + result.stderr
    assert " hosts ok" in result.stdout
    assert ("ORA-19809: limit exceeded for recovery files" in result.stdout) == bool(failures)
    assert (tmp_path / "state" / "demo-inventory.yaml").exists()
    assert list((tmp_path / "state" / "logs").iterdir())
