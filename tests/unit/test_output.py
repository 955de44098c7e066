"""What the operator and scripts see: plain lines, JSON lines, the summary."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from rich.console import Console

from fanout import events
from fanout.events import (
    CancelReason,
    CancelRequested,
    HostStatus,
    StepOutput,
    StepStatus,
    Stream,
)
from fanout.state import RunState
from fanout.ui import plain
from fanout.ui.jsonl import JsonSink, event_name, event_to_json
from fanout.ui.plain import PlainSink
from fanout.ui.summary import (
    CAUSE_LINES,
    render_summary_rich,
    render_summary_text,
    summary_line,
)
from tests.unit.events_builder import RUN_ID, Run, feed, planned

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path("/home/oracle/.local/state/fanout/logs") / RUN_ID
ORA = "ORA-19809: limit exceeded for recovery files"


def mixed_run() -> Run:
    """erp-prod: full ok, archivelog fails twice (retry), controlfile cancelled;
    crm-prod unreachable after a retry; hr-test never starts (operator cancel)."""
    run = Run(
        [
            planned("erp-prod", sid="ERP"),
            planned("crm-prod", sid="CRM", steps=("full", "archivelog")),
            planned("hr-test", priority=2, sid="HR", steps=("full",)),
        ]
    )
    run.host_started("erp-prod")
    run.host_started("crm-prod")
    run.connected("erp-prod", after=1)
    run.connect_failed("crm-prod", "Connection refused", attempt=1)
    run.step_ok("erp-prod", "full", 326, "channel ORA_DISK_1: starting full datafile backup set")
    run.connect_failed("crm-prod", "Connection refused", attempt=2, will_retry=False, after=1)
    run.skipped("crm-prod", "full", "archivelog")
    run.host_finished("crm-prod", HostStatus.FAILED, cause="Connection refused")
    run.step_started("erp-prod", "archivelog")
    run.step_finished(
        "erp-prod", "archivelog", StepStatus.FAILED, duration=12, cause=ORA, will_retry=True
    )
    run.step_started("erp-prod", "archivelog", attempt=2, after=10)
    run.step_finished(
        "erp-prod", "archivelog", StepStatus.FAILED, attempt=2, duration=12, cause=ORA
    )
    run.step_started("erp-prod", "controlfile")
    run.cancel(CancelReason.OPERATOR, after=1)
    run.step_finished("erp-prod", "controlfile", StepStatus.CANCELLED, duration=2, exit_status=130)
    run.host_finished("erp-prod", HostStatus.FAILED)
    run.host_not_started("hr-test")
    run.finish(130, cancelled=CancelReason.OPERATOR)
    return run


def ok_run(hosts: int = 2) -> Run:
    run = Run([planned(f"db{i:02d}") for i in range(hosts)])
    for i in range(hosts):
        run.host_ok(f"db{i:02d}", full=300, archivelog=40, controlfile=3)
    run.finish(0)
    return run


def folded(run: Run) -> RunState:
    state = RunState()
    feed(state, run.events)
    return state


# ---------------------------------------------------------------------- plain


def test_plain_lines_exact() -> None:
    """Batch mode writes one timestamped line per start, end, retry, cancel and queue leftover."""
    out = io.StringIO()
    feed(PlainSink(out), mixed_run().events)
    assert out.getvalue().splitlines() == [
        "2026-11-23T17:14:35Z fanout run 20261123T171435Z-3f9a started: 3 hosts from"
        " nightly.yaml, at most 8 at once",
        "2026-11-23T17:14:35Z erp-prod connecting",
        "2026-11-23T17:14:35Z crm-prod connecting",
        "2026-11-23T17:14:36Z crm-prod connect attempt 1 failed: Connection refused; retrying",
        "2026-11-23T17:14:36Z erp-prod full started (attempt 1)",
        "2026-11-23T17:20:02Z erp-prod full ok 5m26s",
        "2026-11-23T17:20:03Z crm-prod connect attempt 2 failed: Connection refused; giving up",
        "2026-11-23T17:20:03Z crm-prod full skipped",
        "2026-11-23T17:20:03Z crm-prod archivelog skipped",
        "2026-11-23T17:20:03Z crm-prod finished FAILED in 5m28s: Connection refused",
        "2026-11-23T17:20:03Z erp-prod archivelog started (attempt 1)",
        f"2026-11-23T17:20:15Z erp-prod archivelog FAILED 12s: {ORA} (will retry)",
        "2026-11-23T17:20:25Z erp-prod archivelog started (attempt 2)",
        f"2026-11-23T17:20:37Z erp-prod archivelog FAILED 12s: {ORA}",
        "2026-11-23T17:20:37Z erp-prod controlfile started (attempt 1)",
        "2026-11-23T17:20:38Z cancel requested by the operator; no new host starts,"
        " running steps are interrupted",
        "2026-11-23T17:20:40Z erp-prod controlfile cancelled 2s",
        "2026-11-23T17:20:40Z erp-prod finished FAILED in 6m5s",
        "2026-11-23T17:20:40Z hr-test not started",
        "2026-11-23T17:20:40Z fanout run 20261123T171435Z-3f9a finished in 6m5s, exit 130",
    ]


def test_plain_quiet_prints_only_final_failures() -> None:
    """--quiet keeps final failures only: no starts, no successes, no attempt to be retried,
    no end of a host whose failed step was already written."""
    out = io.StringIO()
    feed(PlainSink(out, quiet=True), mixed_run().events)
    assert out.getvalue().splitlines() == [
        "2026-11-23T17:20:03Z crm-prod finished FAILED in 5m28s: Connection refused",
        f"2026-11-23T17:20:37Z erp-prod archivelog FAILED 12s: {ORA}",
    ]  # erp-prod's own end adds nothing to its failed step's line


def test_plain_quiet_skips_only_events_that_are_never_a_failure() -> None:
    """The event types quiet mode skips undescribed never describe a final failure."""
    sink = PlainSink(io.StringIO())
    seen = set()
    for event in [*mixed_run().events, *ok_run().events]:
        if type(event) in plain._NEVER_A_FAILURE:
            seen.add(type(event))
            assert sink._describe(event)[1] is False, event
    assert {events.RunStarted, events.HostStarted, events.StepStarted, events.RunFinished} <= seen


def test_plain_quiet_successful_run_is_silent() -> None:
    """A run where everything succeeds prints nothing in quiet mode (the caller adds the line)."""
    out = io.StringIO()
    feed(PlainSink(out, quiet=True), ok_run().events)
    assert out.getvalue() == ""


def test_plain_edge_lines() -> None:
    """Exit status without cause, connect after retry, forced cancel, crash all read clearly."""
    run = Run([planned("db1", steps=("full",))])
    run.host_started("db1")
    run.connected("db1", attempt=3, after=4)
    run.step_started("db1", "full")
    run.step_finished("db1", "full", StepStatus.FAILED, duration=1, exit_status=127)
    run.cancel(CancelReason.SIGTERM)
    run.cancel(CancelReason.SIGTERM, forced=True)
    run.host_finished("db1", HostStatus.FAILED, cause="internal error: boom", detail="Traceback")
    out = io.StringIO()
    feed(PlainSink(out), run.events)
    assert out.getvalue().splitlines()[2:] == [
        "2026-11-23T17:14:39Z db1 connected (attempt 3)",
        "2026-11-23T17:14:39Z db1 full started (attempt 1)",
        "2026-11-23T17:14:40Z db1 full FAILED 1s: exit status 127",
        "2026-11-23T17:14:40Z cancel requested: SIGTERM received; no new host starts,"
        " running steps are interrupted",
        "2026-11-23T17:14:40Z cancel requested: SIGTERM received; forcing: running steps"
        " are killed now",
        "2026-11-23T17:14:40Z db1 finished FAILED in 5s: internal error: boom"
        " (traceback in db1.log)",
    ]


class FlushCounter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_plain_flushes_every_line() -> None:
    """Each line is flushed as written, so a cron log file is current."""
    out = FlushCounter()
    feed(PlainSink(out), ok_run(1).events)
    assert out.flushes == len(out.getvalue().splitlines())


# ---------------------------------------------------------------------- JSON


def documented_fields() -> dict[str, list[str]]:
    """Per event section of docs/json-events.md, the field names of its table, in order."""
    text = (ROOT / "docs" / "json-events.md").read_text(encoding="utf-8")
    sections = re.split(r"^### (\w+)\n", text, flags=re.MULTILINE)[1:]
    return {
        name: re.findall(r"^\| `(\w+)` \|", body, flags=re.MULTILINE)
        for name, body in zip(sections[::2], sections[1::2], strict=True)
    }


EVENT_TYPES = typing.get_args(events.Event)  # every member of the union, so none goes undocumented


def test_docs_describe_every_event_and_field() -> None:
    """docs/json-events.md has a section per event listing exactly its fields, in order.

    A StepOutput event carries a batch of lines; its JSON is one object per line, with
    ``line`` where the event has ``lines``, and without the ``progress`` kept for fanout's
    own sinks.
    """
    docs = documented_fields()
    expected = {
        event_name_of(cls): ["event", *(f.name for f in dataclasses.fields(cls))]
        for cls in EVENT_TYPES
        if cls is not StepOutput
    }
    expected["step_output"] = ["event", "run_id", "host", "step", "stream", "line", "at"]
    assert docs == expected


def event_name_of(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def test_json_lines_parse_and_match_the_docs() -> None:
    """Every line is one JSON object whose keys are the documented ones, event first."""
    out = io.StringIO()
    run = mixed_run()
    feed(JsonSink(out), run.events)
    docs = documented_fields()
    lines = out.getvalue().splitlines()
    assert len(lines) == sum(not isinstance(e, StepOutput) for e in run.events)
    for line in lines:
        record = json.loads(line)
        assert list(record) == docs[record["event"]]
        assert record["run_id"] == RUN_ID
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["at"])
        assert line == json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def test_json_values_use_enum_strings_and_numbers() -> None:
    """Statuses are the enum values, durations numbers, null where nothing applies."""
    out = io.StringIO()
    run = mixed_run()
    feed(JsonSink(out), run.events)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    final = [r for r in records if r["event"] == "step_finished" and not r["will_retry"]]
    assert {(r["host"], r["step"]): r["status"] for r in final} == {
        ("erp-prod", "full"): "ok",
        ("crm-prod", "full"): "skipped",
        ("crm-prod", "archivelog"): "skipped",
        ("erp-prod", "archivelog"): "failed",
        ("erp-prod", "controlfile"): "cancelled",
    }
    failed = next(r for r in final if r["status"] == "failed")
    assert (failed["attempt"], failed["exit_status"], failed["cause"]) == (2, 1, ORA)
    assert failed["duration"] == 12.0
    not_started = records[-2]
    assert (not_started["status"], not_started["cause"]) == ("not started", None)
    assert records[0]["hosts"][2] == {
        "name": "hr-test",
        "priority": 2,
        "oracle_sid": "HR",
        "address": "hr-test.example",
        "steps": ["full"],
        "database": "",
        "levels": [],
        "groups": [],
        "expected": [],
    }
    assert records[-1] == {
        "event": "run_finished",
        "run_id": RUN_ID,
        "exit_code": 130,
        "cancelled": "operator",
        "duration": 365.0,
        "at": "2026-11-23T17:20:40.000Z",
    }


def test_json_output_lines_only_on_request() -> None:
    """StepOutput is left out by default and written with include_output, a line an object."""
    run = ok_run(1)
    batch = StepOutput(RUN_ID, "db00", "full", Stream.STDERR, ("ünïcode", "two"), run.now, "x")
    run.events.insert(4, batch)
    plain, full = io.StringIO(), io.StringIO()
    feed(JsonSink(plain), run.events)
    feed(JsonSink(full, include_output=True), run.events)
    assert "step_output" not in plain.getvalue()
    outputs = [json.loads(x) for x in full.getvalue().splitlines() if "step_output" in x]
    assert [(o["stream"], o["line"]) for o in outputs] == [("stderr", "ünïcode"), ("stderr", "two")]
    assert all(list(o) == documented_fields()["step_output"] for o in outputs)
    assert [o["line"] for o in event_to_json(batch)] == ["ünïcode", "two"]  # no line dropped


def test_event_name() -> None:
    """Event names are the class names in snake case."""
    assert (
        event_name(CancelRequested(RUN_ID, CancelReason.SIGINT, False, 0.0)) == "cancel_requested"
    )


# ---------------------------------------------------------------------- summary


def test_summary_text_exact() -> None:
    """The text summary leads with failures and cancellations (cause, log), then one line."""
    text = render_summary_text(folded(mixed_run()), log_dir=LOG_DIR, exit_code=130)
    assert text == (
        "FAILED     erp-prod archivelog (attempt 2, 12s): ORA-19809: limit exceeded for\n"
        "           recovery files\n"
        f"           log: {LOG_DIR}/erp-prod.log\n"
        "FAILED     crm-prod (5m28s): Connection refused\n"
        f"           log: {LOG_DIR}/crm-prod.log\n"
        "cancelled  erp-prod controlfile (2s)\n"
        f"           log: {LOG_DIR}/erp-prod.log\n"
        "Not started (1): hr-test\n"
        "Cancelled: by the operator (q/quit)\n"
        "fanout run 20261123T171435Z-3f9a: 0/3 hosts ok, 2 failed (erp-prod, crm-prod),"
        " 1 not started in 6m5s — exit 130 (cancelled by the operator)\n"
    )


def test_summary_text_all_ok() -> None:
    """A clean run's summary is one line: hosts ok, duration, exit 0 explained."""
    text = render_summary_text(folded(ok_run(3)), log_dir=LOG_DIR, exit_code=0)
    assert text == (
        "fanout run 20261123T171435Z-3f9a: 3/3 hosts ok in 17m9s — exit 0 (every step succeeded)\n"
    )


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (1, "at least one step failed"),
        (2, "usage or inventory error"),
        (75, "another run holds the lock"),
        (143, "stopped by SIGTERM"),
        (3, "unexpected exit code"),
    ],
)
def test_summary_explains_exit_code(code: int, meaning: str) -> None:
    """The last line names the exit code and its meaning."""
    text = render_summary_text(folded(ok_run(1)), log_dir=LOG_DIR, exit_code=code)
    assert text.splitlines()[-1].endswith(f" — exit {code} ({meaning})")


def big_run(hosts: int = 500) -> Run:
    """500 hosts: most ok, every 50th fails with a long cause, the tail never starts."""
    long_cause = (
        'ORA-19504: failed to create file "/backup/very/long/path/to/the/backup/piece/'
        'set_20261123_0001_1.bkp" (Linux-x86_64 Error: 28: No space left on device) and more'
        " words so that the cause would need far more than three lines of the cause column"
    )
    names = [f"db-{i:03d}.prod.example.corp" for i in range(hosts)]
    run = Run([planned(name, steps=("full", "archivelog", "controlfile")) for name in names])
    for i, name in enumerate(names[:-20]):
        if i % 50 == 7:
            run.host_started(name)
            run.connected(name)
            run.step_started(name, "full")
            run.step_finished(name, "full", StepStatus.FAILED, duration=4000, cause=long_cause)
            run.skipped(name, "archivelog", "controlfile")
            run.host_finished(name, HostStatus.FAILED)
        else:
            run.host_ok(name, full=3600 * 5 + 59 * 60, archivelog=59 * 60 + 59)
    run.cancel(CancelReason.SIGTERM)
    for name in names[-20:]:
        run.host_not_started(name)
    run.finish(143, cancelled=CancelReason.SIGTERM)
    return run


def test_summary_text_fits_80_columns_for_500_hosts() -> None:
    """500 hosts, 10 failures: the summary is the failures (80 columns, log paths excepted),
    a bounded not-started line and the totals, not a line per step."""
    state = folded(big_run())
    text = render_summary_text(state, log_dir=LOG_DIR, exit_code=143)
    lines = text.splitlines()
    too_long = [line for line in lines if len(line) > 80 and "log: " not in line]
    assert too_long == [lines[-1]]  # the totals line is never wrapped
    assert sum(line.startswith("FAILED     db-") for line in lines) == 10
    assert sum("log: " in line for line in lines) == 10
    assert len(lines) <= 10 * (CAUSE_LINES + 1) + 6
    assert "Not started (20): db-480.prod.example.corp, db-481.prod.example.corp," in text
    assert "+10 more" in text
    assert any(line.endswith(" …") for line in lines)  # long causes are cut at 3 lines
    assert lines[-1].startswith("fanout run 20261123T171435Z-3f9a: 470/500 hosts ok, 10 failed")


def test_summary_long_step_name_keeps_80_columns() -> None:
    """A long step name and a long cause still wrap within 80 columns."""
    run = Run([planned("db1", steps=("a-really-long-custom-step-name-for-housekeeping",))])
    run.host_started("db1")
    run.step_started("db1", "a-really-long-custom-step-name-for-housekeeping")
    run.step_finished(
        "db1",
        "a-really-long-custom-step-name-for-housekeeping",
        StepStatus.FAILED,
        duration=3,
        cause="find: '/u01/app/oracle/diag/rdbms/x/trace': Permission denied " * 2,
    )
    run.host_finished("db1", HostStatus.FAILED)
    text = render_summary_text(folded(run), log_dir=LOG_DIR, exit_code=1)
    body = text.splitlines()[:-1]
    assert all(len(line) <= 80 for line in body if "log: " not in line)
    assert body[0].startswith("FAILED     db1 a-really-long-custom-step-name-for-housekeeping")
    assert "Permission denied" in text


def test_summary_line() -> None:
    """One line: hosts ok of total, failures named, duration, exit code."""
    assert summary_line(folded(mixed_run()), 130) == (
        "fanout run 20261123T171435Z-3f9a: 0/3 hosts ok, 2 failed (erp-prod, crm-prod),"
        " 1 not started in 6m5s — exit 130 (cancelled by the operator)"
    )
    assert summary_line(folded(ok_run(2)), 0) == (
        "fanout run 20261123T171435Z-3f9a: 2/2 hosts ok in 11m26s — exit 0 (every step succeeded)"
    )


def test_summary_line_names_at_most_three_failed_hosts() -> None:
    """Many failures: three names and a count of the rest."""
    line = summary_line(folded(big_run()), 143)
    assert (
        "470/500 hosts ok, 10 failed (db-007.prod.example.corp, db-057.prod.example.corp," in line
    )
    assert "db-107.prod.example.corp, +7 more), 20 not started in " in line
    assert line.endswith(" — exit 143 (stopped by SIGTERM)")


def test_summary_line_mid_run_counts_running_and_queued() -> None:
    """Before the run ends the line says how many hosts are still running or queued."""
    run = Run([planned("a"), planned("b")])
    run.host_started("a", after=3)
    assert summary_line(folded(run), 0) == (
        "fanout run 20261123T171435Z-3f9a: 0/2 hosts ok, 1 running, 1 queued in 3s — exit 0"
        " (every step succeeded)"
    )


def test_summary_rich_renders_at_80_columns() -> None:
    """The rich summary lists only what failed or was cancelled (cause, log), then totals."""
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render_summary_rich(folded(mixed_run()), log_dir=LOG_DIR, exit_code=130))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in text.splitlines())
    for expected in ("erp-prod", "crm-prod", "not started (1): hr-test", "FAILED", "recovery"):
        assert expected in text
    assert "log: erp-prod.log" in text
    assert "log: crm-prod.log" in text
    assert f"logs under {LOG_DIR}" in text
    assert " full " not in text  # the step that succeeded is not listed
    assert "exit 130 (cancelled by the operator)" in text


def test_summary_rich_all_ok_is_one_line() -> None:
    """An interactive run where everything succeeded ends with the totals line only."""
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_summary_rich(folded(ok_run(3)), log_dir=LOG_DIR, exit_code=0))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.splitlines() == [
        "fanout run 20261123T171435Z-3f9a: 3/3 hosts ok in 17m9s — exit 0 (every step succeeded)"
    ]


def test_plain_path_does_not_import_rich() -> None:
    """The text summary and plain/JSON sinks work without importing rich."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fanout.state import RunState\n"
        "from fanout.ui import plain, jsonl\n"
        "from fanout.ui.summary import render_summary_text\n"
        "render_summary_text(RunState(), log_dir=Path('/x'), exit_code=0)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'rich'], 'rich imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)
