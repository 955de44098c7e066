"""`fanout run` end to end: the real CLI as a subprocess (stdin /dev/null, like cron) against the
private sshd and the RMAN double. Several inventory hosts point at the one sshd, each with its own
ORACLE_SID; what ran remotely is read from the double's invocation records, never from fanout."""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fanout.logs import step_sections
from tests.system.sshd import (
    REPO,
    SSH_KEYGEN,
    Background,
    RemoteSide,
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    json_events,
    kill_remote_processes,
    read_invocations,
    remote_processes,
    run_fanout,
    write_inventory,
)

pytestmark = pytest.mark.system

STEPS = ("full", "archivelog", "controlfile")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PLAIN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")

# docs/json-events.md: every field of every event, in order.
EVENT_FIELDS = {
    "run_started": [
        *("event", "run_id", "inventory", "hosts", "max_parallel", "at", "meta"),
        *("groups", "deadline", "deadline_label"),
    ],
    "host_started": ["event", "run_id", "host", "at"],
    "connect_failed": ["event", "run_id", "host", "attempt", "cause", "will_retry", "at"],
    "host_connected": ["event", "run_id", "host", "attempt", "at"],
    "step_started": ["event", "run_id", "host", "step", "attempt", "command", "at", "detail"],
    "step_finished": [
        *("event", "run_id", "host", "step", "attempt", "status", "exit_status", "cause"),
        *("duration", "will_retry", "at", "detail"),
    ],
    "host_finished": ["event", "run_id", "host", "status", "cause", "duration", "detail", "at"],
    "cancel_requested": ["event", "run_id", "reason", "forced", "at"],
    "run_finished": ["event", "run_id", "exit_code", "cancelled", "duration", "at"],
}


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one `fanout run --json` printed and how it exited."""

    status: int
    events: list[dict[str, Any]]
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def step(self, host: str, step: str) -> dict[str, Any]:
        """The final step_finished of ``host`` ``step`` (not an attempt that is retried)."""
        (found,) = [
            e
            for e in self.of("step_finished")
            if (e["host"], e["step"]) == (host, step) and not e["will_retry"]
        ]
        return found

    def host(self, host: str) -> dict[str, Any]:
        (found,) = [e for e in self.of("host_finished") if e["host"] == host]
        return found


def run_json(tmp_path: Path, inventory: Path, *extra: str, timeout: float = 60.0) -> Outcome:
    result = run_fanout(tmp_path / "home", "run", inventory, "--json", *extra, timeout=timeout)
    return Outcome(result.returncode, json_events(result.stdout), result.stderr)


def run_batch(tmp_path: Path, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_fanout(tmp_path / "home", "run", inventory, "--batch", *extra, timeout=60.0)


def starts(oracle_home: Path, sid: str | None = None) -> list[dict[str, Any]]:
    """The double's start records (of ``sid``), in the order they were written."""
    return [
        r
        for r in read_invocations(oracle_home)
        if r["event"] == "start" and (sid is None or r["sid"] == sid)
    ]


def intervals(oracle_home: Path) -> list[tuple[float, float, str, str]]:
    """(start, end, sid, step) of every finished double run, by start time."""
    ends = {r["pid"]: r for r in read_invocations(oracle_home) if r["event"] == "end"}
    runs = [(r["start"], ends[r["pid"]]["end"], r["sid"], r["step"]) for r in starts(oracle_home)]
    return sorted(runs)


def max_overlap(spans: list[tuple[float, float, str, str]]) -> int:
    """The most runs that were in progress at one instant."""
    edges = sorted([(s, 1) for s, *_ in spans] + [(e, -1) for _, e, *_ in spans])
    running = peak = 0
    for _, delta in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += delta
        peak = max(peak, running)
    return peak


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- order and concurrency ---------------------------------------------------------------------


def test_max_parallel_1_runs_hosts_strictly_in_priority_order(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """With max_parallel 1 each host starts after the previous one ended, in priority order."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    hosts = [
        {"sid": "HR", "priority": 3},
        {"sid": "ERP", "priority": 1},
        {"sid": "DWH", "priority": 4},
        {"sid": "CRM", "priority": 2},
        {"sid": "BI", "priority": 2},  # a tie: file order decides, CRM first
    ]
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, hosts, {"max_parallel": 1}, steps=["full"]
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 0, outcome.stderr
    spans = intervals(oracle_home)
    assert [sid for _, _, sid, _ in spans] == ["ERP", "CRM", "BI", "HR", "DWH"]
    assert all(nxt[0] >= cur[1] for cur, nxt in itertools.pairwise(spans))
    assert [e["host"] for e in outcome.of("host_started")] == ["erp", "crm", "bi", "hr", "dwh"]


def test_max_parallel_n_never_exceeds_n_remote_runs(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """With max_parallel 2, at most 2 doubles ever run at once, and 2 do run together."""
    configure_double(oracle_home, {"*": {"seconds": 0.5}})
    sids = ["A1", "B2", "C3", "D4", "E5", "F6"]
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": s} for s in sids],
        {"max_parallel": 2},
        steps=["full"],
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 0, outcome.stderr
    spans = intervals(oracle_home)
    assert len(spans) == len(sids)
    assert max_overlap(spans) == 2
    first_two = {sid for _, _, sid, step in spans[:2]}
    assert first_two == {"A1", "B2"}  # the two most important hosts go first


def test_steps_run_in_sequence_on_each_host(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A host's steps run one after another, in its order, each after the previous one ended."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}})
    order = ["controlfile", "full", "archivelog"]
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM", "steps": order}]
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 0, outcome.stderr
    for sid, expected in (("ERP", list(STEPS)), ("CRM", order)):
        runs = [span for span in intervals(oracle_home) if span[2] == sid]
        assert [step for *_, step in runs] == expected
        assert all(nxt[0] >= cur[1] for cur, nxt in itertools.pairwise(runs))


# -- failures -----------------------------------------------------------------------------------


def test_failed_full_backup_is_isolated(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """ORA-19809 in a full backup fails only that step: later steps and other hosts run; exit 1."""
    configure_double(oracle_home, {"*": {"seconds": 0.2}, "CRM": {"full": {"behaviour": "fail"}}})
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM"}, {"sid": "HR"}]
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 1, outcome.stderr
    failed = outcome.step("crm", "full")
    assert failed["status"] == "failed"
    assert failed["exit_status"] == 1
    assert failed["cause"].startswith("ORA-19809")
    assert [outcome.step("crm", s)["status"] for s in ("archivelog", "controlfile")] == ["ok"] * 2
    assert [r["step"] for r in starts(oracle_home, "CRM")] == list(STEPS)
    assert outcome.host("crm")["status"] == "failed"
    assert [outcome.host(h)["status"] for h in ("erp", "hr")] == ["ok", "ok"]
    assert outcome.of("run_finished")[0]["exit_code"] == 1


def test_on_failure_stop_skips_the_hosts_later_steps(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A failed custom step with on_failure: stop skips the rest of that host; others go on."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    precheck = {"shell": "echo 'FRA not writable' >&2; exit 3", "on_failure": "stop"}
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP", "steps": ["precheck", *STEPS]}, {"sid": "CRM", "steps": ["full"]}],
        step_defs={"precheck": precheck},
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 1, outcome.stderr
    check = outcome.step("erp", "precheck")
    assert (check["status"], check["exit_status"]) == ("failed", 3)
    assert "FRA not writable" in check["cause"]
    for step in STEPS:
        skipped = outcome.step("erp", step)
        assert (skipped["status"], skipped["attempt"]) == ("skipped", 0)
    assert starts(oracle_home, "ERP") == []
    assert outcome.host("crm")["status"] == "ok"
    log = next((tmp_path / "state" / "logs").glob("*/erp.log")).read_text()
    (precheck,) = step_sections(log, "erp", "precheck")
    assert "[stderr] FRA not writable" in precheck


def test_step_timeout_fails_the_step_and_stops_the_remote_group(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A hanging step is stopped at step_timeout: `timeout after 2s`, no remote process left."""
    configure_double(oracle_home, {"HR": {"behaviour": "hang", "child": True}})
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "HR", "steps": ["full"]}, {"sid": "ERP", "steps": ["full"]}],
        {"cancel_grace": 1},
        step_timeout=2,
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 1, outcome.stderr
    step = outcome.step("hr", "full")
    assert (step["status"], step["cause"]) == ("failed", "timeout after 2s")
    assert 2.0 <= step["duration"] < 5.0
    assert remote_processes(oracle_home) == []
    assert outcome.host("erp")["status"] == "ok"


def test_connection_refused_fails_fast_after_visible_retries(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A host on a closed port fails fast with `connection refused`, retries shown; others ok."""
    port = closed_port()
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP"}, {"sid": "DOWN", "name": "down", "port": port, "connect_retries": 1}],
    )

    result = run_batch(tmp_path, inventory)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    cause = f"connection refused by 127.0.0.1:{port}"
    assert any(f"down connect attempt 1 failed: {cause}; retrying" in line for line in lines)
    assert any(f"down connect attempt 2 failed: {cause}; giving up" in line for line in lines)
    (finished,) = [line for line in lines if " down finished " in line]
    assert re.search(rf"down finished FAILED in [0-4]s: {re.escape(cause)}$", finished)
    assert any(re.search(r" erp finished ok in ", line) for line in lines)
    assert starts(oracle_home, "DOWN") == []
    assert "Traceback" not in result.stdout + result.stderr


def test_host_key_mismatch_is_refused_and_never_retried(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """Another key in known_hosts for the host: failed with a host-key cause, no retry, no run."""
    _other_key = tmp_path / "other_host_key"
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(_other_key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    key_type, key = _other_key.with_suffix(".pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [
            {"sid": "ERP"},
            {"sid": "EVIL", "name": "spoofed", "known_hosts": str(wrong), "connect_retries": 2},
        ],
    )

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 1, outcome.stderr
    (failure,) = [e for e in outcome.of("connect_failed") if e["host"] == "spoofed"]
    assert failure["will_retry"] is False
    assert failure["cause"].startswith(f"host key for 127.0.0.1:{sshd.port} does not match")
    assert str(wrong) in failure["cause"]
    host = outcome.host("spoofed")
    assert (host["status"], host["cause"]) == ("failed", failure["cause"])
    assert {outcome.step("spoofed", s)["status"] for s in STEPS} == {"skipped"}
    assert starts(oracle_home, "EVIL") == []
    assert outcome.host("erp")["status"] == "ok"


def test_failed_attempt_is_retried_and_succeeds(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """retries: 1 reruns a step whose first attempt failed; the second attempt's ok is final."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}, "ERP": {"full": {"fail_times": 1}}})
    inventory = write_inventory(
        tmp_path, sshd, oracle_home, [{"sid": "ERP", "steps": ["full"]}], retries=1
    )

    outcome = run_json(tmp_path, inventory, timeout=60)

    assert outcome.status == 0, outcome.stderr
    attempts = [(e["attempt"], e["status"], e["will_retry"]) for e in outcome.of("step_finished")]
    assert attempts == [(1, "failed", True), (2, "ok", False)]
    assert [e["attempt"] for e in outcome.of("step_started")] == [1, 2]
    assert [r["behaviour"] for r in starts(oracle_home, "ERP")] == ["fail", "ok"]
    log = next((tmp_path / "state" / "logs").glob("*/erp.log")).read_text()
    first, second = step_sections(log, "erp", "full")
    assert first.startswith("===== erp full attempt 1 =====")
    assert second.startswith("===== erp full attempt 2 =====")
    assert "status:   failed (will retry)" in first


# -- what the operator sees ----------------------------------------------------------------------


def test_step_log_has_header_full_output_and_footer(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """<state_dir>/logs/<run>/<host>.log: host lines, and per step a header, the whole
    transcript and a footer."""
    configure_double(oracle_home, {"*": {"seconds": 0.1, "datafiles": 7}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}])

    outcome = run_json(tmp_path, inventory)

    assert outcome.status == 0, outcome.stderr
    run_id = outcome.events[0]["run_id"]
    logs = tmp_path / "state" / "logs" / run_id
    assert [p.name for p in logs.iterdir()] == ["erp.log"]  # one file per host, nothing else
    whole = (logs / "erp.log").read_text()
    first, *_, last = whole.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ connecting to 127\.0\.0\.1", first)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ finished: ok in \S+", last)
    assert [len(step_sections(whole, "erp", s)) for s in STEPS] == [1] * len(STEPS)
    (text,) = step_sections(whole, "erp", "full")
    header, output, footer = text.split("-----\n")
    assert header.splitlines()[0] == "===== erp full attempt 1 ====="
    fields = dict(line.split(":", 1) for line in header.splitlines()[1:])
    assert {k: v.strip() for k, v in fields.items() if k != "command"} == {
        "run": run_id,
        "host": "erp",
        "address": "127.0.0.1",
        "step": "full",
        "attempt": "1",
        "started": fields["started"].strip(),
    }
    assert str(oracle_home) in fields["command"]
    lines = output.splitlines()
    assert lines[1].startswith("Recovery Manager: Release 19.0.0.0.0 - Production on ")
    assert "connected to target database: ERP (DBID=" in output
    assert sum(line.startswith("input datafile file number=") for line in lines) == 7
    assert "tag=FANOUT_L0 comment=NONE" in output
    assert lines[-1] == "Recovery Manager complete."
    assert not any(line.startswith("fanout-pgid=") for line in lines)
    assert "exit:     0\nstatus:   ok\ncause:    -\n" in footer


def test_quiet_prints_only_failures_and_the_summary_line(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """--quiet: final failures (FAILED) and one summary line, nothing about healthy hosts."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}, "CRM": {"full": {"behaviour": "fail"}}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM"}])

    result = run_batch(tmp_path, inventory, "--quiet")

    assert result.returncode == 1, result.stderr
    *failures, summary = result.stdout.splitlines()
    assert failures, result.stdout
    assert all(PLAIN_LINE.match(line) and " FAILED" in line for line in failures)
    assert all(" crm " in line for line in failures)
    assert any("crm full FAILED" in line and "ORA-19809" in line for line in failures)
    assert summary.startswith("fanout run ")
    assert "1/2 hosts ok, 1 failed (crm)" in summary
    assert summary.endswith("exit 1 (at least one step failed)")
    assert "erp" not in result.stdout


def test_json_prints_one_documented_object_per_line(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """--json: one object per line, `event` first, exactly the documented fields, ends the run."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}, "CRM": {"full": {"behaviour": "fail"}}})
    port = closed_port()
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP"}, {"sid": "CRM"}, {"sid": "DOWN", "port": port}],
        {"max_parallel": 3},
    )

    result = run_fanout(tmp_path / "home", "run", inventory, "--json", timeout=60)

    assert result.returncode == 1, result.stderr
    events = json_events(result.stdout)
    assert len(events) == len(result.stdout.splitlines())
    kinds = {e["event"] for e in events}
    assert kinds == set(EVENT_FIELDS) - {"cancel_requested"}
    for event in events:
        assert list(event) == EVENT_FIELDS[event["event"]], event
        assert ISO_UTC.match(event["at"]), event["at"]
    run_id = events[0]["run_id"]
    assert {e["run_id"] for e in events} == {run_id}
    assert (events[0]["event"], events[-1]["event"]) == ("run_started", "run_finished")
    assert events[-1]["exit_code"] == 1
    assert events[-1]["cancelled"] is None
    planned = events[0]["hosts"]
    assert [h["name"] for h in planned] == ["erp", "crm", "down"]
    assert planned[0] == {
        "name": "erp",
        "priority": 1,
        "oracle_sid": "ERP",
        "address": "127.0.0.1",
        "steps": list(STEPS),
        "database": "ERP@127.0.0.1",
        "levels": [None, None, None],
        "groups": [],
        "expected": [None, None, None],
    }
    statuses = {e["host"]: e["status"] for e in events if e["event"] == "host_finished"}
    assert statuses == {"erp": "ok", "crm": "failed", "down": "failed"}
    assert not any(e["event"] == "step_output" for e in events)


def test_exit_code_0_when_every_step_succeeds(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """Every step ok: exit 0 and the text summary says so."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": "ERP"}, {"sid": "CRM"}])

    result = run_batch(tmp_path, inventory)

    assert result.returncode == 0, result.stderr
    assert "— exit 0 (every step succeeded)" in result.stdout
    assert "FAILED" not in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hosts:\n  - {name: a, address: h, priority: high, oracle_sid: A, oracle_home: /o}\n",
            "hosts[0].priority: expected a positive integer, got 'high'",
        ),
        ("settings: {max_parallel: 2}\n", "missing required key 'hosts'"),
    ],
)
def test_bad_inventory_exits_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    """A bad inventory: exit 2 and one line on stderr naming file and key, no traceback."""
    inventory = tmp_path / "nightly.yaml"
    inventory.write_text(text)

    result = run_batch(tmp_path, inventory)

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"fanout: {inventory}:")
    assert message in line


# -- large output --------------------------------------------------------------------------------

FLOOD_MB = 50
FLOOD_LINE = re.compile(r"input archived log thread=1 sequence=(\d+) RECID=(\d+) STAMP=(\d+)")


def flood_line_count(mb: float) -> int:
    """How many lines the double's ``flood`` prints for ``flood_mb: mb`` (its own loop)."""
    total, sent, seq = int(mb * 1024 * 1024), 0, 1
    while sent < total:
        sent += sum(
            len(f"input archived log thread=1 sequence={n} RECID={n} STAMP={1209605035 + n}\n")
            for n in range(seq, seq + 800)
        )
        seq += 800
    return seq - 1


@dataclass(frozen=True, slots=True)
class Flooded:
    """One archivelog step of a tiny flood and one of FLOOD_MB, with fanout's peak RSS."""

    status: int
    stderr: str
    log: Path
    baseline_kib: int  # peak RSS of the run printing ~10 kB
    peak_kib: int  # peak RSS of the run printing FLOOD_MB


def _measure(tmp: Path, inventory: Path) -> tuple[int, str, str, int]:
    with Background(
        fanout_argv("run", inventory, "--json"), cwd=REPO, env=fanout_env(tmp / "home")
    ) as run:
        status, out, err, usage = run.finish_with_usage(timeout=120)
    return status, out, err, int(usage.ru_maxrss)


@pytest.fixture(scope="module")
def flooded(
    sshd: SshdServer, remote_side: RemoteSide, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flooded]:
    """Run the flood once for the module's tests (it takes ~10 s of fanout CPU)."""
    tmp = tmp_path_factory.mktemp("flood")
    home = remote_side.new_oracle_home("flood")
    try:
        inventory = write_inventory(tmp, sshd, home, [{"sid": "ERP", "steps": ["archivelog"]}])
        configure_double(home, {"*": {"behaviour": "flood", "flood_mb": 0.01}})
        _, _, _, baseline = _measure(tmp, inventory)
        configure_double(home, {"*": {"behaviour": "flood", "flood_mb": FLOOD_MB}})
        status, out, err, peak = _measure(tmp, inventory)
        run_id = json_events(out)[0]["run_id"]
        log = tmp / "state" / "logs" / run_id / "erp.log"
        yield Flooded(status, err, log, baseline, peak)
        assert remote_processes(home) == []
    finally:
        kill_remote_processes(home)
        remote_side.remove_oracle_home(home)


def test_flood_of_output_reaches_the_log_file_whole(flooded: Flooded) -> None:
    """~50 MB printed at once by rman all land in the step log, in order, no line lost."""
    assert flooded.status == 0, flooded.stderr
    expected = 1
    size = 0
    after: list[str] = []
    with flooded.log.open(encoding="utf-8") as log:
        for line in log:
            size += len(line)
            match = FLOOD_LINE.fullmatch(line.rstrip("\n"))
            if match and match[1] == match[2]:  # the flood's lines have RECID == sequence
                assert int(match[1]) == expected, line
                expected += 1
            elif expected > 1:
                after.append(line)
    assert expected - 1 == flood_line_count(FLOOD_MB)
    assert size > FLOOD_MB * 1024 * 1024
    assert "cause:    -\n" in after  # the step's footer follows the flood, then the outcome
    assert after[-1][21:].startswith("finished: ok in ")


def test_flood_of_output_keeps_fanout_memory_bounded(flooded: Flooded) -> None:
    """fanout's peak RSS grows by under 8 MiB while ~50 MB stream through (SSH window = read)."""
    assert flooded.status == 0, flooded.stderr
    growth_mib = (flooded.peak_kib - flooded.baseline_kib) / 1024
    print(f"peak RSS {flooded.peak_kib / 1024:.0f} MiB, baseline {flooded.baseline_kib / 1024:.0f}")
    assert growth_mib < 8
