"""State paths and LogSink: where logs go and exactly what they hold."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fanout.events import HostStatus, OrphanUnconfirmed, StepStatus, Stream
from fanout.logs import LogSink, step_sections
from fanout.paths import (
    default_state_dir,
    existing_host_log,
    host_log_path,
    legacy_host_log_path,
    legacy_step_log_path,
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
    """Logs live in <state>/logs/<run>/<host>.log, the steps' output included."""
    state = Path("/s")
    assert run_log_dir(state, "r1") == Path("/s/logs/r1")
    assert host_log_path(state, "r1", "erp-prod") == Path("/s/logs/r1/erp-prod.log")
    assert step_log_path(state, "r1", "erp-prod", "full") == Path("/s/logs/r1/erp-prod.log")
    assert host_log_path(state, "r1", "a/b") == Path("/s/logs/r1/a%2Fb.log")


def test_legacy_log_paths_layout() -> None:
    """The earlier layout is still named, for reading old runs: <host>/<step>.log, host.log."""
    state = Path("/s")
    legacy = legacy_step_log_path(state, "r1", "erp-prod", "full")
    assert legacy == Path("/s/logs/r1/erp-prod/full.log")
    assert legacy_host_log_path(state, "r1", "erp-prod") == Path("/s/logs/r1/erp-prod/host.log")
    assert legacy_step_log_path(state, "r1", "db", "host").name == "%68ost.log"


def test_existing_host_log_finds_an_old_runs_host_log(tmp_path: Path) -> None:
    """A run written in the earlier layout is read from <host>/host.log; else the new file."""
    old = legacy_host_log_path(tmp_path, "r0", "db1")
    old.parent.mkdir(parents=True)
    old.write_text("2026-11-23T17:14:35Z connecting to db1\n")
    assert existing_host_log(tmp_path, "r0", "db1") == old
    assert existing_host_log(tmp_path, "r1", "db1") == host_log_path(tmp_path, "r1", "db1")


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


def test_host_names_never_share_a_log() -> None:
    """Two hosts never share a file, whatever their names (a host called 'x.log' included)."""
    names = ["x", "x.log", ".", "..", "a/b", "a%2Fb"]
    paths = {host_log_path(Path("/s"), "r1", name) for name in names}
    assert len(paths) == len(names)
    assert all(p.parent == Path("/s/logs/r1") for p in paths)


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
    run.host_finished("erp-prod", HostStatus.OK)
    with LogSink(tmp_path) as sink:
        feed(sink, run.events)
    assert read(host_log_path(tmp_path, RUN_ID, "erp-prod")) == (
        "2026-11-23T17:14:35Z connecting to erp-prod.example\n"
        "2026-11-23T17:14:36Z connected (attempt 1)\n"
        "\n"
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
        "\n"
        "2026-11-23T17:20:02Z finished: ok in 5m27s\n"
    )
    assert sink.error is None
    assert list(tmp_path.joinpath("logs", RUN_ID).iterdir()) == [
        host_log_path(tmp_path, RUN_ID, "erp-prod")
    ]  # one file per host, no directory


def test_step_sections_reads_each_attempt_back(tmp_path: Path) -> None:
    """step_sections returns one step's sections, header to footer, of a host's log."""
    run = Run([planned("db1", steps=("full", "archivelog"))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "first", "", "2026-11-23T17:14:35Z looks like a host line")
    run.step_finished("db1", "full", StepStatus.FAILED, duration=2, will_retry=True)
    run.step_started("db1", "full", attempt=2)
    run.output("db1", "full", "second", "50%\r\x0c100%")
    run.step_finished("db1", "full", StepStatus.OK, duration=2, attempt=2)
    run.step_started("db1", "archivelog")
    run.output("db1", "archivelog", "arch")
    run.step_finished("db1", "archivelog", StepStatus.OK, duration=1)
    run.host_finished("db1", HostStatus.OK)
    feed(LogSink(tmp_path), run.events)
    text = host_log_path(tmp_path, RUN_ID, "db1").read_bytes().decode()  # \r kept
    first, second = step_sections(text, "db1", "full")
    assert first.startswith("===== db1 full attempt 1 =====\n")
    assert "-----\nfirst\n\n2026-11-23T17:14:35Z looks like a host line\n-----\n" in first
    assert first.endswith("status:   failed (will retry)\ncause:    -\n")
    assert second.startswith("===== db1 full attempt 2 =====\n")
    assert "-----\nsecond\n50%\r\x0c100%\n-----\n" in second  # only \n ends a line
    assert second.endswith("status:   ok\ncause:    -\n")
    (arch,) = step_sections(text, "db1", "archivelog")
    assert "-----\narch\n-----\n" in arch
    assert arch.endswith("cause:    -\n")
    assert step_sections(text, "db1", "controlfile") == []


def test_retry_appends_a_new_attempt_to_the_same_file(tmp_path: Path) -> None:
    """A retried step appends a blank line and the next attempt's header to the host's log."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "ORA-27037: unable to obtain file status")
    cause = "ORA-27037: unable to obtain file status"
    run.step_finished("db1", "full", StepStatus.FAILED, duration=12, cause=cause, will_retry=True)
    run.step_started("db1", "full", attempt=2, after=30)
    run.output("db1", "full", "fine now")
    run.step_finished("db1", "full", StepStatus.OK, duration=60, attempt=2)
    with LogSink(tmp_path) as sink:
        feed(sink, run.events)
    text = read(host_log_path(tmp_path, RUN_ID, "db1"))
    hostline, first, second = text.split("\n\n===== ")
    assert hostline == "2026-11-23T17:14:35Z connecting to db1.example"
    first = "===== " + first
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
    with LogSink(tmp_path) as sink:
        feed(sink, run.events)
    text = read(host_log_path(tmp_path, RUN_ID, "db1"))
    assert "command:  export A=1\n          rman target /\nstarted:" in text


def test_host_log_records_connection_attempts(tmp_path: Path) -> None:
    """The host's log gets every connection attempt, skipped steps and the host's outcome."""
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
    assert (
        step_sections(read(host_log_path(tmp_path, RUN_ID, "crm-prod")), "crm-prod", "full") == []
    )


def test_host_lines_never_split_a_step_section(tmp_path: Path) -> None:
    """A host line arriving mid-step follows that step's footer; an orphan line after the
    host finished is appended to its log, which is closed again."""
    run = Run([planned("db1", steps=("full", "archivelog"))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "one")
    run.skipped("db1", "archivelog")  # not what the engine does today; the log copes
    run.output("db1", "full", "two")
    run.step_finished("db1", "full", StepStatus.OK, duration=1)
    run.host_finished("db1", HostStatus.FAILED, cause="connection lost")
    run.events.append(OrphanUnconfirmed(RUN_ID, "db1", 4242, "no answer", run.now))
    sink = LogSink(tmp_path)
    feed(sink, run.events)
    assert not sink._open  # nothing left open
    text = read(host_log_path(tmp_path, RUN_ID, "db1"))
    (full,) = step_sections(text, "db1", "full")
    assert "-----\none\ntwo\n-----\n" in full
    assert text.endswith(
        "cause:    -\n"
        "\n"
        "2026-11-23T17:14:35Z archivelog skipped\n"
        "2026-11-23T17:14:36Z finished: failed in 1s: connection lost\n"
        "2026-11-23T17:14:36Z may still be running: pgid 4242 (no answer)\n"
    )


def test_crash_traceback_goes_to_host_log(tmp_path: Path) -> None:
    """HostFinished.detail (fanout's own traceback) is written in full to the host's log."""
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
    assert not host_log_path(tmp_path, RUN_ID, "db1").exists()
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
        with LogSink(state_dir) as sink:
            feed(sink, run.events)
    finally:
        os.umask(old)
    log = host_log_path(state_dir, RUN_ID, "db1")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for directory in (tmp_path / "state", state_dir, state_dir / "logs", log.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_output_is_flushed_by_event_time_not_per_line(tmp_path: Path) -> None:
    """Output reaches the disk once flush_interval has passed, before the step ends."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.step_started("db1", "full")
    run.output("db1", "full", "early")
    sink = LogSink(tmp_path, flush_interval=10.0)
    feed(sink, run.events)
    path = host_log_path(tmp_path, RUN_ID, "db1")
    assert "early" not in read(path)  # buffered: not one write per line
    run.output("db1", "full", "late", after=11)
    sink.emit(run.events[-1])
    assert read(path).endswith("early\nlate\n")
    sink.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_one_open_file_per_running_host(tmp_path: Path) -> None:
    """Only running hosts hold a file open, one each across their steps; finishing closes it."""

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
    assert open_fds() == before + 3  # the next step writes to the same file
    for i in range(3):
        run.host_finished(f"db{i}", HostStatus.OK)
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
    text = read(host_log_path(tmp_path, RUN_ID, "db1"))
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
