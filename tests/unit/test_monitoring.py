"""Monitoring pieces on their own: the inventory keys, Nagios perfdata, the Prometheus textfile
(parsed by prometheus_client, never seen half-written), the notify command, and the preflight
script run by a local /bin/sh."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fanout.errors import InventoryError
from fanout.freshness import Attempt, BackupRecord, evaluate
from fanout.inventory import load_inventory
from fanout.metrics import LastRun, render_metrics, write_textfile
from fanout.model import Host, Notify, NotifyOn
from fanout.nagios import NagiosCode, Perfdata, plugin_output, worst
from fanout.notify import run_notify, should_notify
from fanout.preflight import CHECKS, CheckStatus, parse_output, preflight_script
from tests.monitoring import parse_plugin_output
from tests.system.sshd import wait_until

# -- inventory ----------------------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return load_inventory(path)


HOST = "hosts:\n  - {name: a, address: h, priority: 1, oracle_sid: A, oracle_home: /oh}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults: {max_age: {fulll: 8d}}\n" + HOST,
            "inv.yaml:1: defaults.max_age.fulll: unknown step 'fulll' (did you mean 'full'?)",
        ),
        (
            "defaults: {max_age: {full: soon}}\n" + HOST,
            "inv.yaml:1: defaults.max_age.full: expected a duration like 30s, 5m, 6h or 1h30m,"
            " got 'soon'",
        ),
        (
            "settings: {max_age_warn: 1.5}\n" + HOST,
            "inv.yaml:1: settings.max_age_warn: expected a number above 0 and at most 1"
            " (e.g. 0.8), got '1.5'",
        ),
        (
            "settings: {notify: 'mail -s x'}\n" + HOST,
            "inv.yaml:1: settings.notify: expected a mapping, got the string 'mail -s x'",
        ),
        (
            "settings:\n  notify: {command: [mail], on: sometimes}\n" + HOST,
            "inv.yaml:2: settings.notify.on: expected failure, always, never, got 'sometimes'",
        ),
        (
            "settings:\n  notify: {command: []}\n" + HOST,
            "inv.yaml:2: settings.notify.command: expected a command as a list of strings,"
            " e.g. [mail, -s, subject, dba@example.com], got an empty list",
        ),
        (
            "steps:\n  full: {max_age: 0s}\n" + HOST,
            "inv.yaml:2: steps.full.max_age: expected a positive duration, got '0s'",
        ),
    ],
)
def test_bad_monitoring_keys_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    """Each bad monitoring key names file, line, key path and what was expected."""
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, text)
    assert str(caught.value) == message.replace("inv.yaml", str(tmp_path / "inv.yaml"))


def test_notify_as_a_list_or_a_mapping(tmp_path: Path) -> None:
    """settings.notify takes a bare argv list (defaults: on failure, 60 s) or the full mapping."""
    inventory = _load(tmp_path, "settings: {notify: [mail, -s, 'fanout failed', dba]}\n" + HOST)
    assert inventory.settings.notify == Notify(("mail", "-s", "fanout failed", "dba"))  # type: ignore[attr-defined]
    inventory = _load(
        tmp_path,
        "settings: {notify: {command: [pager], on: always, timeout: 5s}, max_age_warn: 0.5,"
        " metrics_file: /var/lib/node_exporter/textfile/fanout.prom}\n" + HOST,
    )
    settings = inventory.settings  # type: ignore[attr-defined]
    assert settings.notify == Notify(("pager",), NotifyOn.ALWAYS, 5.0)
    assert settings.max_age_warn == 0.5
    assert settings.metrics_file == Path("/var/lib/node_exporter/textfile/fanout.prom")


def test_host_max_age_merges_key_by_key_over_defaults(tmp_path: Path) -> None:
    """A host's max_age overrides only the kinds it names; the defaults' others remain."""
    inventory = _load(
        tmp_path,
        "defaults: {oracle_home: /oh, max_age: {full: 2d, archivelog: 2h}}\n"
        "hosts:\n  - {name: a, address: h, priority: 1, oracle_sid: A, max_age: {full: 1d}}\n",
    )
    assert inventory.hosts[0].max_age == (("full", 86400.0), ("archivelog", 7200.0))  # type: ignore[attr-defined]


# -- nagios -------------------------------------------------------------------------------------


def test_perfdata_and_output_follow_the_plugin_rules() -> None:
    """Odd labels are quoted, U marks an unknown value, a '|' in the text never starts perfdata."""
    out = plugin_output(
        NagiosCode.WARNING,
        "a | b",
        [Perfdata("ok", 3, minimum=0, maximum=4), Perfdata("odd label", 1.5, "s", 2, 3)],
        ["detail one", "detail | two"],
        [Perfdata("x/full", None, "s", 10, 20, 0), Perfdata("y/full", 12, "s", 10, 20, 0)],
    )
    plugin = parse_plugin_output(out)
    assert (plugin.state, plugin.text) == ("WARNING", "a / b")
    assert plugin.long_text == ["detail one", "detail / two"]
    assert [(d.label, d.value, d.uom, d.warn, d.crit) for d in plugin.perfdata] == [
        ("ok", 3.0, "", "", ""),
        ("odd label", 1.5, "s", "2", "3"),
        ("x/full", None, "", "10", "20"),  # 'U' stands alone, without a unit
        ("y/full", 12.0, "s", "10", "20"),
    ]
    assert out.splitlines()[0] == "fanout WARNING - a / b | ok=3;;;0;4 'odd label'=1.5s;2;3;;"


def test_nagios_output_of_a_large_fleet_fits_the_plugin_limit() -> None:
    """600 databases: at most 8192 bytes (Nagios cuts the rest), problems listed first, a line
    counting what was left out, and only whole perfdata."""
    now = 1_800_000_000.0
    hosts = _hosts(600)
    records = _records(hosts, now)
    report = evaluate("/inv.yaml", hosts, records, now=now, warn_fraction=0.8)
    out = report.nagios()
    assert len(out.encode()) <= 8192
    plugin = parse_plugin_output(out)
    assert plugin.state == "CRITICAL"
    assert plugin.text.endswith(" and 590 more")
    assert plugin.long_text[0].startswith("CRITICAL: db000 (S000) full never")
    assert re.fullmatch(r"\.\.\. \d+ more lines left out \(see --json\)", plugin.long_text[-1])
    assert all(d.label.startswith("db") for d in plugin.perfdata[4:])
    assert {d.label for d in plugin.perfdata[:4]} == {"stale", "ageing", "ok", "databases"}


def test_worst_ranks_critical_over_unknown_over_warning() -> None:
    """Aggregation: CRITICAL > UNKNOWN > WARNING > OK; nothing at all is OK."""
    assert worst([NagiosCode.OK, NagiosCode.WARNING, NagiosCode.UNKNOWN]) is NagiosCode.UNKNOWN
    assert worst([NagiosCode.UNKNOWN, NagiosCode.CRITICAL]) is NagiosCode.CRITICAL
    assert worst([]) is NagiosCode.OK


# -- metrics ------------------------------------------------------------------------------------


def _hosts(count: int) -> list[Host]:
    return [
        Host(f"db{i:03d}", f"db{i:03d}.example", 1, f"S{i:03d}", "/oh", max_age=(("full", 60.0),))
        for i in range(count)
    ]


def _records(hosts: list[Host], now: float) -> dict[tuple[str, str, str], BackupRecord]:
    records = {}
    for index, host in enumerate(hosts):
        ok = Attempt("r1", "ok", now - 100, now - 10)
        failed = Attempt("r2", "failed", now - 5, now - 1, "ORA-19502")
        last = failed if index % 3 == 0 else ok
        success = None if index % 7 == 0 else ok
        records[(host.address, host.oracle_sid, "full")] = BackupRecord(
            host.address, host.oracle_sid, "full", success, last
        )
    return records


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_parse_with_prometheus_client() -> None:
    """The textfile parses; success timestamps exist only for databases that ever succeeded."""
    now = 1_800_000_000.0
    hosts = _hosts(8)
    text = render_metrics(
        '/etc/fanout/ni"ght\\ly.yaml', hosts, _records(hosts, now), LastRun(1, now)
    )
    families = _families(text)
    success = families["fanout_backup_last_success_timestamp_seconds"]
    assert {labels["host"] for labels, _ in success} == {f"db{i:03d}" for i in range(1, 7)}
    assert all(value == now - 10 for _, value in success)
    assert families["fanout_backup_last_status"][0] == (
        {"host": "db000", "sid": "S000", "step": "full"},
        0.0,
    )
    never = {
        labels["host"]: value
        for labels, value in families["fanout_backup_never_succeeded"]
        if labels["step"] == "full"
    }
    assert never["db000"] == 1.0
    assert never["db001"] == 0.0
    for step in ("archivelog", "controlfile"):  # a step never attempted has no last_status
        assert not [s for s, _ in families["fanout_backup_last_status"] if s["step"] == step]
    assert families["fanout_backup_max_age_seconds"][0][1] == 60.0
    assert families["fanout_run_last_exit_code"] == [
        ({"inventory": '/etc/fanout/ni"ght\\ly.yaml'}, 1.0)
    ]
    assert "# TYPE fanout_backup_last_success_timestamp_seconds gauge" in text


def test_metrics_file_is_never_seen_half_written(tmp_path: Path) -> None:
    """A reader looping while the file is rewritten 200 times sees one whole version each time."""
    path = tmp_path / "fanout.prom"
    now = 1_800_000_000.0
    small_hosts, big_hosts = _hosts(3), _hosts(600)
    versions = [
        render_metrics("/inv.yaml", small_hosts, _records(small_hosts, now), LastRun(0, now)),
        render_metrics("/inv.yaml", big_hosts, _records(big_hosts, now), LastRun(1, now)),
    ]
    write_textfile(path, versions[0])
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            if text not in versions:
                problems.append(f"a read of {len(text)} bytes matches no version")
                return
            list(text_string_to_metric_families(text))
            seen.append(versions.index(text))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(200):
            write_textfile(path, versions[index % 2])
    finally:
        stop.set()
        thread.join(10)
    assert problems == []
    assert len(set(seen)) == 2  # the reader saw both versions, so it did overlap the writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fanout.prom"]  # no temp file left
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_failed_metrics_write_keeps_the_old_file(tmp_path: Path) -> None:
    """When the new file cannot be written, the old one stays whole and no temp file remains."""
    path = tmp_path / "metrics" / "fanout.prom"
    path.parent.mkdir()
    write_textfile(path, "# old\n")
    path.parent.chmod(0o555)
    expected: type[OSError] = PermissionError
    try:
        if os.geteuid() == 0:  # root ignores directory permissions: block the temp file's name
            path.parent.chmod(0o755)
            (path.parent / f".{path.name}.{os.getpid()}.tmp").mkdir()
            expected = IsADirectoryError
        with pytest.raises(expected):
            write_textfile(path, "# new\n")
    finally:
        path.parent.chmod(0o755)
    assert path.read_text() == "# old\n"


# -- notify -------------------------------------------------------------------------------------


def _notify(tmp_path: Path, code: str, timeout: float = 10.0) -> Notify:
    script = tmp_path / "notify.py"
    script.write_text(code)
    return Notify((sys.executable, str(script)), NotifyOn.ALWAYS, timeout)


def test_notify_gets_the_summary_on_stdin_and_the_run_in_its_environment(tmp_path: Path) -> None:
    """The command reads the JSON summary on stdin and FANOUT_RUN_ID/FANOUT_EXIT_CODE; no shell."""
    out = tmp_path / "got.json"
    notify = _notify(
        tmp_path,
        "import json, os, sys\n"
        f"json.dump({{'stdin': json.load(sys.stdin), 'env': dict(os.environ),"
        f" 'argv': sys.argv}}, open({str(out)!r}, 'w'))\n",
    )
    summary = json.dumps({"run": {"run_id": "R1"}, "hosts": []})
    assert run_notify(notify, summary, run_id="R1", exit_code=1, inventory="/i.yaml") is None
    got = json.loads(out.read_text())
    assert got["stdin"] == {"run": {"run_id": "R1"}, "hosts": []}
    assert (got["env"]["FANOUT_RUN_ID"], got["env"]["FANOUT_EXIT_CODE"]) == ("R1", "1")
    assert got["env"]["FANOUT_INVENTORY"] == "/i.yaml"


def test_notify_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    """Past its timeout the whole group is killed and the problem is one line."""
    pid_file = tmp_path / "child.pid"
    notify = _notify(
        tmp_path,
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen(['sleep', '60'])\nopen({str(pid_file)!r}, 'w')"
        ".write(str(child.pid))\ntime.sleep(60)\n",
        timeout=1.0,
    )
    started = time.monotonic()
    problem = run_notify(notify, "{}", run_id="R", exit_code=1, inventory="/i")
    assert time.monotonic() - started < 20
    assert problem == f"notify command {sys.executable!r} timed out after 1s (killed)"
    child = int(pid_file.read_text())
    wait_until(lambda: _state(child) in ("Z", "gone"), timeout=5, what="the child killed")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def test_notify_failure_is_reported_with_its_stderr(tmp_path: Path) -> None:
    """Non-zero exit: the status and the last stderr line; a missing command: cannot start."""
    notify = _notify(
        tmp_path, "import sys\nprint('smtp: connection refused', file=sys.stderr)\nsys.exit(4)\n"
    )
    problem = run_notify(notify, "{}", run_id="R", exit_code=0, inventory="/i")
    assert problem == f"notify command {sys.executable!r} exited 4: smtp: connection refused"
    missing = Notify(("/nonexistent/mailer",))
    assert run_notify(missing, "{}", run_id="R", exit_code=1, inventory="/i") == (
        "notify command '/nonexistent/mailer' cannot start: No such file or directory"
    )


def test_notify_on_failure_always_never() -> None:
    """on: failure fires for any non-zero exit (cancel included), always for every run."""
    assert should_notify(Notify(("x",)), 1)
    assert should_notify(Notify(("x",)), 130)
    assert not should_notify(Notify(("x",)), 0)
    assert should_notify(Notify(("x",), NotifyOn.ALWAYS), 0)
    assert not should_notify(Notify(("x",), NotifyOn.NEVER), 2)
    assert not should_notify(None, 1)


# -- preflight script ---------------------------------------------------------------------------


def _run_script(host: Host) -> dict[str, tuple[CheckStatus, str | None]]:
    script = preflight_script(host)
    result = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    checks = parse_output(result.stdout.splitlines(), result.stderr.splitlines(), result.returncode)
    return {c.name: (c.status, c.cause) for c in checks}


def test_preflight_script_keeps_hostile_values_quoted(tmp_path: Path) -> None:
    """Inventory values with shell syntax stay data: nothing runs, the checks just fail."""
    marker = tmp_path / "pwned"
    hostile = f"/tmp/x'; touch {marker}; echo '$(touch {marker})`touch {marker}`"
    host = Host("a", "h", 1, "ERP", hostile, lock_dir=hostile)
    found = _run_script(host)
    assert not marker.exists()
    assert found["oracle_home"] == (CheckStatus.FAILED, f"{hostile} is not a directory")
    assert found["lock_dir"] == (CheckStatus.FAILED, f"{hostile} does not exist")
    assert set(found) == set(CHECKS[1:])


# Shell syntax of every kind; no control characters (the loader refuses them in paths).
_SHELLISH = st.text(
    alphabet=st.sampled_from(list("ab /.'\"$`;&|<>(){}*?~!#\\-=")), min_size=1, max_size=30
)


@settings(max_examples=40, deadline=None)
@given(home=_SHELLISH, lock_dir=_SHELLISH)
def test_preflight_script_never_runs_inventory_text(home: str, lock_dir: str) -> None:
    """Whatever oracle_home and lock_dir hold, the script reports them back verbatim as data."""
    home, lock_dir = "/nonexistent/" + home, "/nonexistent/" + lock_dir
    found = _run_script(Host("a", "h", 1, "ERP", home, lock_dir=lock_dir))
    assert found["shell"] == (CheckStatus.OK, None)
    assert found["oracle_home"] == (CheckStatus.FAILED, f"{home} is not a directory")
    assert found["lock_dir"] == (CheckStatus.FAILED, f"{lock_dir} does not exist")


def test_preflight_script_finds_rman_pmon_and_a_writable_lock_dir(tmp_path: Path) -> None:
    """Locally: an executable bin/rman, a process named ora_pmon_<SID>, a writable lock_dir."""
    home = tmp_path / "oh"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "rman").write_text("#!/bin/sh\n")
    (home / "bin" / "rman").chmod(0o755)
    sid = f"T{os.getpid()}"
    pmon = subprocess.Popen(["bash", "-c", f"exec -a ora_pmon_{sid} sleep 60"])
    try:
        wait_until(lambda: f"ora_pmon_{sid}" in Path(f"/proc/{pmon.pid}/cmdline").read_text())
        found = _run_script(Host("a", "h", 1, sid, str(home), lock_dir=str(tmp_path)))
    finally:
        pmon.kill()
        pmon.wait(5)
    assert found == dict.fromkeys(CHECKS[1:], (CheckStatus.OK, None))
    found = _run_script(Host("a", "h", 1, sid + "X", str(home), lock_dir=str(tmp_path)))
    assert found["pmon"] == (
        CheckStatus.FAILED,
        f"no ora_pmon_{sid}X process (instance not running)",
    )


def test_preflight_output_that_never_came_is_a_shell_failure() -> None:
    """No marker at all (the login shell broke): 'shell' fails with its complaint, rest skipped."""
    checks = parse_output(["Welcome!"], ["/home/oracle/.profile: line 3: oops"], 1)
    assert checks[0].status is CheckStatus.FAILED
    assert checks[0].cause == "login shell: /home/oracle/.profile: line 3: oops"
    assert {c.status for c in checks[1:]} == {CheckStatus.SKIPPED}


def test_pure_monitoring_modules_import_no_io_libraries() -> None:
    """freshness, nagios and preflight import none of asyncssh, rich, sqlite3, typer."""
    code = (
        "import sys, fanout.freshness, fanout.nagios, fanout.preflight\n"
        "print(sorted(m for m in ('asyncssh', 'rich', 'sqlite3', 'typer') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
