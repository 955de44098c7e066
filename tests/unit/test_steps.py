"""steps.py: built-in RMAN steps, overrides, shell steps, quoting, run ids."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.model import Host, Inventory, OnFailure, Settings, StepDef, StepKind
from fanout.steps import (
    BUILTIN_STEPS,
    LEDGER_LINES,
    Adopt,
    RenderedStep,
    database_lock,
    lock_paths,
    new_run_id,
    render_host,
    render_step,
)

RUN_ID = "20261123T171435Z-3f9a"
HOME = "/u01/app/oracle/product/19.0.0/dbhome_1"
RMAN_TAIL = '; "$ORACLE_HOME/bin/rman" target /'


def make_host(**overrides: object) -> Host:
    fields: dict[str, object] = {
        "name": "prod1",
        "address": "db1.example.com",
        "priority": 1,
        "oracle_sid": "PROD1",
        "oracle_home": HOME,
    }
    fields.update(overrides)
    return Host(**fields)  # type: ignore[arg-type]


def make_inventory(host: Host, steps: dict[str, StepDef] | None = None) -> Inventory:
    return Inventory(
        path=Path("nightly.yaml"), settings=Settings(), hosts=(host,), steps=steps or {}
    )


def test_full_renders_exact_command_and_script() -> None:
    """The full step is a level 0 backup in one tagged RUN block, rman started from ORACLE_HOME."""
    step = render_step(make_host(), BUILTIN_STEPS["full"], RUN_ID)
    assert step == RenderedStep(
        name="full",
        kind=StepKind.RMAN,
        command=(
            f"ORACLE_SID=PROD1; ORACLE_HOME={HOME}; NLS_LANG=AMERICAN_AMERICA.AL32UTF8; "
            "NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'; "
            "export ORACLE_SID ORACLE_HOME NLS_LANG NLS_DATE_FORMAT; unset TWO_TASK; "
            f"{database_lock(make_host(), RUN_ID, 'full')}; "
            '"$ORACLE_HOME/bin/rman" target /'
        ),
        stdin=(
            "RUN {\n"
            "  SET COMMAND ID TO 'fanout-20261123T171435Z-3f9a';\n"
            "  BACKUP INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';\n"
            "}\n"
            "EXIT;\n"
        ),
        timeout=6 * 3600.0,
        retries=0,
        on_failure=OnFailure.CONTINUE,
    )


def test_archivelog_switches_the_log_then_backs_up_what_is_not_backed_up() -> None:
    """The archivelog step archives the current log first, then backs up logs not yet backed up."""
    step = render_step(make_host(), BUILTIN_STEPS["archivelog"], RUN_ID)
    assert step.stdin == (
        "RUN {\n"
        f"  SET COMMAND ID TO 'fanout-{RUN_ID}';\n"
        "  SQL 'ALTER SYSTEM ARCHIVE LOG CURRENT';\n"
        "  BACKUP ARCHIVELOG ALL NOT BACKED UP 1 TIMES TAG 'FANOUT_ARCH';\n"
        "}\n"
        "EXIT;\n"
    )


def test_controlfile_backs_up_controlfile_and_spfile() -> None:
    """The controlfile step takes a tagged control file backup and a tagged spfile backup."""
    step = render_step(make_host(), BUILTIN_STEPS["controlfile"], RUN_ID)
    assert step.stdin is not None
    assert step.stdin.splitlines()[2:4] == [
        "  BACKUP CURRENT CONTROLFILE TAG 'FANOUT_CTL';",
        "  BACKUP SPFILE TAG 'FANOUT_SPF';",
    ]


def test_builtins_delete_nothing_and_never_add_plus_archivelog() -> None:
    """No built-in deletes input or repeats archived logs via PLUS ARCHIVELOG."""
    assert set(BUILTIN_STEPS) == {"backup", "full", "archivelog", "controlfile"}
    for name, step in BUILTIN_STEPS.items():
        assert step.name == name
        assert step.kind is StepKind.RMAN
        assert "DELETE" not in step.body.upper()
        assert "PLUS ARCHIVELOG" not in step.body.upper()


def test_every_rendered_command_is_one_line() -> None:
    """Rendered commands are single lines, so log lines read well."""
    for step in render_host(make_inventory(make_host()), make_host(), RUN_ID):
        assert "\n" not in step.command
        assert step.command.endswith(RMAN_TAIL)


def test_render_host_follows_host_order_and_inventory_overrides() -> None:
    """Steps come in the host's order; the inventory's definition wins over the built-in."""
    override = StepDef(
        name="full",
        kind=StepKind.RMAN,
        body="BACKUP AS COMPRESSED BACKUPSET INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';",
    )
    host = make_host(steps=("controlfile", "full"))
    steps = render_host(make_inventory(host, {"full": override}), host, RUN_ID)
    assert [s.name for s in steps] == ["controlfile", "full"]
    assert steps[1].stdin is not None
    assert "  BACKUP AS COMPRESSED BACKUPSET INCREMENTAL LEVEL 0" in steps[1].stdin
    assert "FANOUT_CTL" in (steps[0].stdin or "")


def test_render_host_rejects_unknown_step() -> None:
    """A step name defined nowhere raises KeyError naming the host and the step."""
    host = make_host(steps=("full", "nightly_cleanup"))
    with pytest.raises(KeyError, match="nightly_cleanup"):
        render_host(make_inventory(host), host, RUN_ID)


def test_multiline_body_is_dedented_and_indented_inside_run() -> None:
    """A YAML block body is dedented, blank edges dropped, and indented two spaces in RUN."""
    body = (
        "\n\n"
        "    ALLOCATE CHANNEL t1 DEVICE TYPE SBT;\n"
        "      BACKUP DATABASE TAG 'X';   \n"
        "\n"
        "    RELEASE CHANNEL t1;\n"
        "    \n"
    )
    step = render_step(make_host(), StepDef("sbt", StepKind.RMAN, body), RUN_ID)
    assert step.stdin == (
        "RUN {\n"
        f"  SET COMMAND ID TO 'fanout-{RUN_ID}';\n"
        "  ALLOCATE CHANNEL t1 DEVICE TYPE SBT;\n"
        "    BACKUP DATABASE TAG 'X';\n"
        "\n"
        "  RELEASE CHANNEL t1;\n"
        "}\n"
        "EXIT;\n"
    )


def test_shell_step_runs_author_command_after_quoted_prologue() -> None:
    """A shell step gets the same environment prologue, its own command, and no stdin."""
    step = StepDef("check_fra", StepKind.SHELL, "  df -P /u01/fra | tail -1\n", OnFailure.STOP)
    rendered = render_step(make_host(oracle_home="/u01/my home"), step, RUN_ID)
    assert rendered.command == (
        "ORACLE_SID=PROD1; ORACLE_HOME='/u01/my home'; NLS_LANG=AMERICAN_AMERICA.AL32UTF8; "
        "NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'; "
        "export ORACLE_SID ORACLE_HOME NLS_LANG NLS_DATE_FORMAT; unset TWO_TASK; "
        "df -P /u01/fra | tail -1"
    )
    assert rendered.stdin is None
    assert rendered.kind is StepKind.SHELL
    assert rendered.on_failure is OnFailure.STOP


@pytest.mark.parametrize(
    ("step_timeout", "step_retries", "expected"),
    [
        (None, None, (7200.0, 3)),
        (60.0, None, (60.0, 3)),
        (None, 0, (7200.0, 0)),
        (90.5, 1, (90.5, 1)),
    ],
)
def test_timeout_and_retries_fall_back_to_host(
    step_timeout: float | None, step_retries: int | None, expected: tuple[float, int]
) -> None:
    """A step's own timeout/retries win; None takes the host's (retries=0 is an explicit value)."""
    host = make_host(step_timeout=7200.0, retries=3)
    step = StepDef(
        "full", StepKind.RMAN, "BACKUP DATABASE;", retries=step_retries, timeout=step_timeout
    )
    rendered = render_step(host, step, RUN_ID)
    assert (rendered.timeout, rendered.retries) == expected


@pytest.mark.parametrize(
    "run_id",
    ["", "x'; HOST 'rm -rf /", 'a"b', "a}b", "a\nb", "a;b", "-x", "a b", "x" * 41],
)
def test_hostile_run_id_is_refused(run_id: str) -> None:
    """A run id that could leave the RMAN string literal raises ValueError."""
    with pytest.raises(ValueError, match="run id"):
        render_step(make_host(), BUILTIN_STEPS["full"], run_id)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=50))
def test_accepted_run_id_stays_inside_the_literal(run_id: str) -> None:
    """Any accepted run id yields exactly one quoted COMMAND ID literal with no quote or brace."""
    try:
        step = render_step(make_host(), BUILTIN_STEPS["full"], run_id)
    except ValueError:
        return
    assert step.stdin is not None
    line = step.stdin.splitlines()[1]
    assert line == f"  SET COMMAND ID TO 'fanout-{run_id}';"
    assert not set(run_id) & set("'\"{};\n\r\\ ")


def test_nul_in_environment_value_is_refused() -> None:
    """A NUL byte cannot be carried by an environment, so rendering refuses it."""
    with pytest.raises(ValueError, match="NUL"):
        render_step(make_host(oracle_sid="PROD\0"), BUILTIN_STEPS["full"], RUN_ID)


def test_new_run_id_is_utc_stamp_plus_random_hex() -> None:
    """Run ids are YYYYMMDDTHHMMSSZ-xxxx in UTC, sortable by time, and accepted by render_step."""
    cet = timezone(timedelta(hours=1))
    run_id = new_run_id(datetime(2026, 11, 23, 18, 14, 35, tzinfo=cet))
    stamp, _, suffix = run_id.partition("-")
    assert stamp == "20261123T171435Z"
    assert len(suffix) == 4
    assert int(suffix, 16) >= 0
    later = new_run_id(datetime(2026, 11, 23, 17, 14, 36, tzinfo=UTC))
    assert run_id < later
    assert len(new_run_id()) == 21
    render_step(make_host(), BUILTIN_STEPS["full"], run_id)


def test_new_run_id_refuses_naive_datetime() -> None:
    """A naive datetime raises ValueError instead of guessing its time zone."""
    with pytest.raises(ValueError, match="aware"):
        new_run_id(datetime(2026, 11, 23, 17, 14, 35))


def test_command_execs_rman_from_oracle_home_with_script_on_stdin(tmp_path: Path) -> None:
    """Under /bin/sh the command execs $ORACLE_HOME/bin/rman `target /`, script on stdin."""
    home = tmp_path / "db home $(x)"
    (home / "bin").mkdir(parents=True)
    rman = home / "bin" / "rman"
    rman.write_text('#!/bin/sh\nprintf "%s|%s|%s\\n" "$*" "$ORACLE_SID" "$TWO_TASK"\ncat\n')
    rman.chmod(0o755)
    host = make_host(oracle_home=str(home), lock_dir=str(tmp_path))  # not the shared /tmp
    step = render_step(host, BUILTIN_STEPS["controlfile"], RUN_ID)
    env = {"PATH": os.defpath, "TWO_TASK": "OTHERDB"}
    out = subprocess.run(
        ["/bin/sh", "-c", step.command], input=step.stdin, env=env, capture_output=True,
        text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    assert out == f"target /|PROD1|\n{step.stdin}"


HOSTILE = st.lists(
    st.sampled_from(
        ["'", '"', "$(touch pwned)", "`touch pwned`", " ", "\n", ";", "\\", "$HOME",
         "&& touch pwned", "|", "*", "~", "#", "-", "é", "\t", "${x:-y}", "!", "''", "'\\''",
         ">pwned", "%s"]
    )
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=5),
    max_size=8,
).map("".join)  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(sid=HOSTILE, home=HOSTILE)
def test_hostile_values_are_set_verbatim_and_never_run(sid: str, home: str) -> None:
    """For any SID/home, a real sh exports exactly those values and runs nothing else."""
    env_bin = shutil.which("env")
    assert env_bin is not None
    locks = Path(os.environ["HOME"]) / "locks"
    locks.mkdir(exist_ok=True)
    host = make_host(oracle_sid=sid, oracle_home=home, lock_dir=str(locks))
    step = render_step(host, BUILTIN_STEPS["full"], RUN_ID)
    assert step.command.endswith(RMAN_TAIL)
    command = step.command.removesuffix(RMAN_TAIL) + f"; exec {env_bin} -0"
    cwd = Path(os.environ["HOME"]) / "sandbox"
    cwd.mkdir(exist_ok=True)
    result = subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, env={"PATH": os.defpath, "TWO_TASK": "X"},
        capture_output=True, check=True, timeout=10,
    )  # fmt: skip
    assert result.stderr == b""
    environ = dict(os.fsdecode(item).split("=", 1) for item in result.stdout.split(b"\0") if item)
    assert environ["ORACLE_SID"] == sid
    assert environ["ORACLE_HOME"] == home
    assert environ["NLS_LANG"] == "AMERICAN_AMERICA.AL32UTF8"
    assert environ["NLS_DATE_FORMAT"] == "YYYY-MM-DD HH24:MI:SS"
    assert "TWO_TASK" not in environ
    assert list(cwd.iterdir()) == []
    assert [p.name for p in locks.iterdir()] == [Path(lock_paths(host)[0]).name]  # only the lock
    shutil.rmtree(locks)


def _start_step(
    home: Path, sleep: float, run_id: str = RUN_ID, adopt: Adopt | None = None
) -> subprocess.Popen[str]:
    """Run the full step's command the way the SSH transport does: its own group, sh -c."""
    host = make_host(oracle_home=str(home), lock_dir=str(home))
    step = render_step(host, BUILTIN_STEPS["full"], run_id, adopt)
    return subprocess.Popen(
        ["/bin/sh", "-c", step.command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={"PATH": os.defpath, "SLEEP": str(sleep)},
    )


@pytest.fixture
def slow_rman(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    rman = home / "bin" / "rman"
    rman.write_text('#!/bin/sh\ncat >/dev/null\nsleep "$SLEEP"\necho done\n')
    rman.chmod(0o755)
    return home


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 5
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_database_lock_makes_a_second_backup_fail_fast(slow_rman: Path) -> None:
    """While one step holds the database lock, another exits 75 naming the holder."""
    first = _start_step(slow_rman, 30)
    try:
        _wait_for(slow_rman / "fanout-PROD1.lock" / "owner")
        second = _start_step(slow_rman, 0)
        _, err = second.communicate("", timeout=10)
        assert second.returncode == 75
        assert err.startswith(
            f"fanout: another backup of PROD1 is running (pid {first.pid}, started "
        )
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=10)
    assert first.returncode == 130
    assert not (slow_rman / "fanout-PROD1.lock").exists()
    assert (slow_rman / "fanout-PROD1.ledger").read_text() == f"{RUN_ID} full 130 -\n"


def test_database_lock_of_a_killed_step_is_taken_over(slow_rman: Path) -> None:
    """A lock left by a SIGKILLed step (leader gone) is taken over by the next step."""
    first = _start_step(slow_rman, 30)
    _wait_for(slow_rman / "fanout-PROD1.lock" / "owner")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    assert (slow_rman / "fanout-PROD1.lock").exists()
    second = _start_step(slow_rman, 0)
    out, _ = second.communicate("", timeout=10)
    assert (second.returncode, out) == (0, "done\n")
    assert (slow_rman / "fanout-PROD1.ledger").read_text() == f"{RUN_ID} full 0 -\n"
    assert not (slow_rman / "fanout-PROD1.lock").exists()


def test_lock_paths_never_leave_the_lock_dir() -> None:
    """Even an unvalidated SID cannot steer the lock path out of lock_dir."""
    lock, last = lock_paths(make_host(oracle_sid="../../etc/x", lock_dir="/var/tmp"))
    assert (lock, last) == (
        "/var/tmp/fanout-______etc_x.lock",
        "/var/tmp/fanout-______etc_x.ledger",
    )


def test_resumed_step_waits_for_its_orphan_and_does_not_repeat_a_success(slow_rman: Path) -> None:
    """Resume (wait): the old run's still-running step is waited for; its success is not redone."""
    old = _start_step(slow_rman, 1, run_id="OLD")
    _wait_for(slow_rman / "fanout-PROD1.lock" / "owner")
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("OLD",), stop=False, grace=1))
    old.communicate("", timeout=10)  # the old rman reads to EOF, then ends
    out, err = resumed.communicate("", timeout=20)
    assert old.returncode == 0
    assert resumed.returncode == 0, err
    assert "full of run OLD is still running: waiting for it to end" in out
    assert out.endswith("fanout: full already completed in run OLD while fanout was away\n")
    assert "done" not in out  # rman did not run again


def test_resumed_step_can_stop_its_orphan_then_run(slow_rman: Path) -> None:
    """Resume (stop): the old run's step gets SIGINT, then the step runs afresh."""
    old = _start_step(slow_rman, 60, run_id="OLD")
    _wait_for(slow_rman / "fanout-PROD1.lock" / "owner")
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("OLD",), stop=True, grace=1))
    out, err = resumed.communicate("", timeout=20)
    old.communicate(timeout=5)
    assert old.returncode == 130
    assert resumed.returncode == 0, err
    assert "is still running: stopping it" in out
    assert out.endswith("done\n")
    ledger = (slow_rman / "fanout-PROD1.ledger").read_text()
    assert ledger == f"OLD full 130 -\n{RUN_ID} full 0 -\n"


def test_resumed_step_runs_when_the_old_attempt_failed(slow_rman: Path) -> None:
    """Resume: with no orphan and a failed last result, the step simply runs."""
    (slow_rman / "fanout-PROD1.ledger").write_text("OLD full 1 -\n")
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("OLD",), stop=False, grace=1))
    out, _ = resumed.communicate("", timeout=20)
    assert (resumed.returncode, out) == (0, "done\n")


def test_a_success_anywhere_in_the_chain_is_not_taken_again(slow_rman: Path) -> None:
    """Resume across a chain: a success recorded by any earlier run of the chain counts."""
    (slow_rman / "fanout-PROD1.ledger").write_text("R1 full 0 -\nR2 full 1 R1\n")
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("R1", "R2"), stop=False, grace=1))
    out, _ = resumed.communicate("", timeout=20)
    assert resumed.returncode == 0
    assert out == "fanout: full already completed in run R1 while fanout was away\n"


def test_a_success_outside_the_chain_does_not_count(slow_rman: Path) -> None:
    """Only the runs being continued count: last week's success of the step is no excuse."""
    (slow_rman / "fanout-PROD1.ledger").write_text("LASTWEEK full 0 -\nR2 archivelog 0 -\n")
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("R2",), stop=False, grace=1))
    out, _ = resumed.communicate("", timeout=20)
    assert (resumed.returncode, out) == (0, "done\n")


def test_kill_9_of_a_waiting_resume_then_resume_again_takes_the_backup_once(
    slow_rman: Path,
) -> None:
    """R1's step runs on; R2 waits for it and is killed -9; R1 ends ok; R3 does not redo it."""
    r1 = _start_step(slow_rman, 1.5, run_id="R1")
    _wait_for(slow_rman / "fanout-PROD1.lock" / "owner")
    r2 = _start_step(slow_rman, 0, run_id="R2", adopt=Adopt(("R1",), stop=False, grace=1))
    assert r2.stdout is not None
    assert "is still running: waiting for it to end" in r2.stdout.readline()
    os.killpg(r2.pid, signal.SIGKILL)
    r2.communicate(timeout=10)
    r1.communicate("", timeout=10)
    assert r1.returncode == 0
    r3 = _start_step(slow_rman, 0, run_id="R3", adopt=Adopt(("R1", "R2"), stop=False, grace=1))
    out, _ = r3.communicate("", timeout=20)
    assert r3.returncode == 0
    assert out == "fanout: full already completed in run R1 while fanout was away\n"
    assert (slow_rman / "fanout-PROD1.ledger").read_text() == "R1 full 0 -\n"


def test_the_ledger_stays_bounded_and_its_rotated_part_is_still_read(slow_rman: Path) -> None:
    """A full ledger moves to <ledger>.1 before the next entry; adoption reads both files."""
    ledger = slow_rman / "fanout-PROD1.ledger"
    ledger.write_text(
        "OLD full 0 -\n" + "".join(f"X{i} full 0 -\n" for i in range(LEDGER_LINES - 1))
    )
    step = _start_step(slow_rman, 0, run_id="NEW")
    step.communicate("", timeout=20)
    assert step.returncode == 0
    assert ledger.read_text() == "NEW full 0 -\n"
    assert len((slow_rman / "fanout-PROD1.ledger.1").read_text().splitlines()) == LEDGER_LINES
    resumed = _start_step(slow_rman, 0, adopt=Adopt(("OLD",), stop=False, grace=1))
    out, _ = resumed.communicate("", timeout=20)
    assert out == "fanout: full already completed in run OLD while fanout was away\n"
