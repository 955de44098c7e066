"""State paths and LogSink: where logs go and exactly what they hold."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fanout.events import HostStatus, StepStatus, Stream
from fanout.logs import LogSink
from fanout.paths import (
    default_state_dir,
    host_log_path,
    path_component,
    resolve_state_dir,
    run_log_dir,
    step_log_path,
)
from tests.unit.events_builder import RUN_ID, Run, feed, planned

# ---------------------------------------------------------------------- paths


def test_default_state_dir_uses_absolute_xdg_state_home() -> None:
    """An absolute $XDG_STATE_HOME is used."""
    env = {"XDG_STATE_HOME": "/var/state", "HOME": "/home/o"}
    assert default_state_dir(env) == Path("/var/state/fanout")


@pytest.mark.parametrize("xdg", ["", "relative/state", "./state"])
def test_default_state_dir_ignores_empty_or_relative_xdg(xdg: str) -> None:
    """An empty or relative $XDG_STATE_HOME falls back to ~/.local/state/fanout (XDG spec)."""
    env = {"XDG_STATE_HOME": xdg, "HOME": "/home/o"}
    assert default_state_dir(env) == Path("/home/o/.local/state/fanout")


def test_default_state_dir_without_xdg() -> None:
    """Without $XDG_STATE_HOME the default is under $HOME."""
    assert default_state_dir({"HOME": "/home/o"}) == Path("/home/o/.local/state/fanout")


def test_default_state_dir_reads_the_process_environment(isolated_home: Path) -> None:
    """By default the process environment is read (the test env sets XDG_STATE_HOME)."""
    assert default_state_dir() == isolated_home / ".local" / "state" / "fanout"


def test_resolve_state_dir_prefers_configured() -> None:
    """A configured state_dir wins, with ~ expanded; None means the default."""
    env = {"HOME": "/home/o"}
    assert resolve_state_dir(Path("/srv/fanout"), env) == Path("/srv/fanout")
    assert resolve_state_dir(Path("~/x"), env) == Path.home() / "x"
    assert resolve_state_dir(None, env) == Path("/home/o/.local/state/fanout")


def test_log_paths_layout() -> None:
    """Logs live in <state>/logs/<run>/<host>/<step>.log and .../host.log."""
    state = Path("/s")
    assert run_log_dir(state, "r1") == Path("/s/logs/r1")
    assert step_log_path(state, "r1", "erp-prod", "full") == Path("/s/logs/r1/erp-prod/full.log")
    assert host_log_path(state, "r1", "erp-prod") == Path("/s/logs/r1/erp-prod/host.log")


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("erp-prod.example.com", "erp-prod.example.com"),
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a b", "a%20b"),
    ],
)
def test_path_component_never_escapes(name: str, component: str) -> None:
    """Names become one safe path component; separators and dot names are encoded."""
    assert path_component(name) == component


def test_step_named_host_does_not_share_host_log() -> None:
    """A custom step called 'host' gets its own file, not host.log."""
    path = step_log_path(Path("/s"), "r1", "db", "host")
    assert path != host_log_path(Path("/s"), "r1", "db")
    assert path.name == "%68ost.log"


# ---------------------------------------------------------------------- LogSink


@pytest.fixture
def isolated_home(_isolated_env: Path) -> Path:
    return _isolated_env


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_step_log_has_header_output_and_footer(tmp_path: Path) -> None:
    """A step log holds the exact header, the output (stderr marked) and the footer."""
    run = Run([planned("erp-prod", steps=("full",))])
    run.host_started("erp-prod")
    run.connected("erp-prod", after=1)
    run.step_started("erp-prod", "full", command="ORACLE_SID=ERP rman target /")
    run.output("erp-prod", "full", "Recovery Manager: Release 19.0.0.0.0", "", "RMAN> backup")
    run.output("erp-prod", "full", "warning: low space", stream=Stream.STDERR)
    run.step_finished("erp-prod", "full", StepStatus.OK, duration=326)
    with LogSink(tmp_path) as sink:
        feed(sink, run.events)
    assert read(step_log_path(tmp_path, RUN_ID, "erp-prod", "full")) == (
        "===== erp-prod full attempt 1 =====\n"
        "run:      20261123T171435Z-3f9a\n"
        "host:     erp-prod\n"
        "address:  erp-prod.example\n"
        "step:     full\n"
        "attempt:  1\n"
        "command:  ORACLE_SID=ERP rman target /\n"
        "started:  2026-11-23T17:14:36Z\n"
        "-----\n"
        "Recovery Manager: Release 19.0.0.0.0\n"
        "\n"
        "RMAN> backup\n"
        "[stderr] warning: low space\n"
        "-----\n"
        "ended:    2026-11-23T17:20:02Z\n"
        "duration: 5m26s (326.0s)\n"
        "exit:     0\n"
        "status:   ok\n"
        "cause:    -\n"
    )
    assert sink.error is None


def test_retry_appends_a_new_attempt_to_the_same_file(tmp_path: Path) -> None:
    """A retried step appends a blank line and the next attempt's header to the same log."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "ORA-27037: unable to obtain file status")
    cause = "ORA-27037: unable to obtain file status"
    run.step_finished("db1", "full", StepStatus.FAILED, duration=12, cause=cause, will_retry=True)
    run.step_started("db1", "full", attempt=2, after=30)
    run.output("db1", "full", "fine now")
    run.step_finished("db1", "full", StepStatus.OK, duration=60, attempt=2)
    sink = LogSink(tmp_path)
    feed(sink, run.events)
    text = read(step_log_path(tmp_path, RUN_ID, "db1", "full"))
    first, second = text.split("\n\n===== ")
    assert first.startswith("===== db1 full attempt 1 =====\n")
    assert first.endswith(
        "-----\n"
        "ended:    2026-11-23T17:14:47Z\n"
        "duration: 12s (12.0s)\n"
        "exit:     1\n"
        "status:   failed (will retry)\n"
        "cause:    ORA-27037: unable to obtain file status"
    )
    assert second.startswith("db1 full attempt 2 =====\n")
    assert "attempt:  2\nc" in second
    assert "started:  2026-11-23T17:15:17Z\n-----\nfine now\n-----\n" in second
    assert second.endswith("status:   ok\ncause:    -\n")


def test_multiline_command_is_indented(tmp_path: Path) -> None:
    """A command spanning lines keeps its continuation lines under the value column."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full", command="export A=1\nrman target /")
    run.step_finished("db1", "full", StepStatus.OK, duration=1)
    feed(LogSink(tmp_path), run.events)
    text = read(step_log_path(tmp_path, RUN_ID, "db1", "full"))
    assert "command:  export A=1\n          rman target /\nstarted:" in text


def test_host_log_records_connection_attempts(tmp_path: Path) -> None:
    """host.log gets every connection attempt, skipped steps and the host's outcome."""
    run = Run([planned("crm-prod", steps=("full", "archivelog"))])
    run.host_started("crm-prod")
    run.connect_failed("crm-prod", "Connection refused", attempt=1, after=1)
    run.connect_failed("crm-prod", "Connection refused", attempt=2, will_retry=False, after=2)
    run.skipped("crm-prod", "full", "archivelog")
    run.host_finished("crm-prod", HostStatus.FAILED, cause="Connection refused")
    feed(LogSink(tmp_path), run.events)
    assert read(host_log_path(tmp_path, RUN_ID, "crm-prod")) == (
        "2026-11-23T17:14:35Z connecting to crm-prod.example\n"
        "2026-11-23T17:14:36Z connect attempt 1 failed: Connection refused (will retry)\n"
        "2026-11-23T17:14:38Z connect attempt 2 failed: Connection refused (giving up)\n"
        "2026-11-23T17:14:38Z full skipped\n"
        "2026-11-23T17:14:38Z archivelog skipped\n"
        "2026-11-23T17:14:38Z finished: failed in 3s: Connection refused\n"
    )
    assert not step_log_path(tmp_path, RUN_ID, "crm-prod", "full").exists()


def test_crash_traceback_goes_to_host_log(tmp_path: Path) -> None:
    """HostFinished.detail (fanout's own traceback) is written in full to host.log."""
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'x'\n"
    run = Run([planned("db1")])
    run.host_started("db1")
    run.connected("db1", after=1)
    run.host_finished(
        "db1", HostStatus.FAILED, cause="internal error: KeyError: 'x'", detail=traceback
    )
    feed(LogSink(tmp_path), run.events)
    assert read(host_log_path(tmp_path, RUN_ID, "db1")) == (
        "2026-11-23T17:14:35Z connecting to db1.example\n"
        "2026-11-23T17:14:36Z connected (attempt 1)\n"
        "2026-11-23T17:14:36Z finished: failed in 1s: internal error: KeyError: 'x'\n" + traceback
    )


def test_not_started_host_gets_no_directory(tmp_path: Path) -> None:
    """A host that never left the queue leaves nothing on disk."""
    run = Run([planned("db1")])
    run.host_not_started("db1")
    feed(LogSink(tmp_path), run.events)
    assert not host_log_path(tmp_path, RUN_ID, "db1").parent.exists()


def test_modes_are_private(tmp_path: Path) -> None:
    """Log files are 0600 and every directory fanout creates is 0700."""
    state_dir = tmp_path / "state" / "fanout"
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.step_finished("db1", "full", StepStatus.OK, duration=1)
    old = os.umask(0o022)
    try:
        feed(LogSink(state_dir), run.events)
    finally:
        os.umask(old)
    log = step_log_path(state_dir, RUN_ID, "db1", "full")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(host_log_path(state_dir, RUN_ID, "db1").stat().st_mode) == 0o600
    for directory in (tmp_path / "state", state_dir, state_dir / "logs", log.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_output_is_flushed_by_event_time_not_per_line(tmp_path: Path) -> None:
    """Output reaches the disk once flush_interval has passed, before the step ends."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "early")
    sink = LogSink(tmp_path, flush_interval=10.0)
    feed(sink, run.events)
    path = step_log_path(tmp_path, RUN_ID, "db1", "full")
    assert "early" not in read(path)  # buffered: not one write per line
    run.output("db1", "full", "late", after=11)
    sink.emit(run.events[-1])
    assert read(path).endswith("early\nlate\n")
    sink.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_one_open_file_per_running_step(tmp_path: Path) -> None:
    """Only running steps hold a file open; finishing a step closes it."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    run = Run([planned(f"db{i}", steps=("full",)) for i in range(3)])
    sink = LogSink(tmp_path)
    feed(sink, run.events)
    before = open_fds()
    for i in range(3):
        run.host_started(f"db{i}")
        run.step_started(f"db{i}", "full")
        run.output(f"db{i}", "full", "line")
    feed(sink, run.events[1:])
    assert open_fds() == before + 3
    for i in range(3):
        run.step_finished(f"db{i}", "full", StepStatus.OK, duration=1)
        sink.emit(run.events[-1])
    assert open_fds() == before


def test_close_marks_unfinished_step_logs(tmp_path: Path) -> None:
    """Closing the sink mid-step flushes the log and notes the step did not finish."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "halfway")
    with LogSink(tmp_path) as sink:
        feed(sink, run.events)
    text = read(step_log_path(tmp_path, RUN_ID, "db1", "full"))
    assert text.endswith("halfway\n-----\n(log closed before db1 full finished)\n")


def test_write_error_is_kept_not_raised(tmp_path: Path) -> None:
    """An OSError (here: state_dir is a file) is kept in .error; the sink then goes quiet."""
    state_dir = tmp_path / "not-a-dir"
    state_dir.write_text("")
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "x")
    run.step_finished("db1", "full", StepStatus.OK, duration=1)
    run.host_finished("db1", HostStatus.OK)
    run.finish(0)
    sink = LogSink(state_dir)
    feed(sink, run.events)
    assert isinstance(sink.error, OSError)
