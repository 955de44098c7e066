"""`fanout check` end to end: the real CLI against the private sshd and the RMAN double. Stores
are built by real `fanout run`s; `--connect` asks real hosts (pmon simulated by a process named
``ora_pmon_<SID>``); the metrics file is read by prometheus_client while runs rewrite it; the
notify command is a real program."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring import parse_plugin_output, validate_check_json
from tests.system.sshd import (
    RemoteSide,
    SshdServer,
    configure_double,
    run_fanout,
    wait_until,
    write_inventory,
)

pytestmark = pytest.mark.system


def check(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_fanout(tmp_path / "home", "check", *args, timeout=60.0)


class MetricsReader:
    """A thread that reads and parses the metrics file in a loop until stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reads = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                continue
            try:
                names = {f.name for f in text_string_to_metric_families(text)}
            except ValueError as exc:
                self.problems.append(f"unparsable ({exc}): {text[-200:]!r}")
                continue
            if "fanout_backup_never_succeeded" not in names or not text.endswith("\n"):
                self.problems.append(f"incomplete: {text[-200:]!r}")
            self.reads += 1

    def __enter__(self) -> MetricsReader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_one_stale_database_turns_the_nagios_check_critical(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """Never backed up: CRITICAL; after a real run: the metrics file is written (and never seen
    half-written); once erp's full passes its 2 s max_age, `check --nagios` says CRITICAL naming
    erp alone, exit 2, while crm stays OK."""
    configure_double(oracle_home, {"*": {"seconds": 0.05}})
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    metrics = textfile / "fanout.prom"
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP", "max_age": {"full": "2s"}}, {"sid": "CRM"}],
        {"metrics_file": str(metrics)},
    )

    before = check(tmp_path, inventory, "--nagios")
    assert before.returncode == 2, before.stderr
    assert before.stdout.startswith(
        "fanout CRITICAL - 2 of 2 databases stale: erp (full never, archivelog never,"
    )

    with MetricsReader(metrics) as reader:
        for _ in range(2):
            run = run_fanout(tmp_path / "home", "run", inventory, "--batch")
            assert run.returncode == 0, run.stdout + run.stderr

        def stale() -> subprocess.CompletedProcess[str] | None:
            result = check(tmp_path, inventory, "--nagios")
            return result if result.returncode == 2 else None

        result = wait_until(stale, timeout=20, interval=0.2, what="erp's full goes stale")
    assert reader.problems == []
    assert reader.reads > 0

    plugin = parse_plugin_output(result.stdout)
    assert plugin.state == "CRITICAL"
    assert re.fullmatch(r"1 of 2 databases stale: erp \(full \d+s > 2s\)", plugin.text)
    assert any(line.startswith("CRITICAL: erp (ERP) full ") for line in plugin.long_text)
    perf = {d.label: d for d in plugin.perfdata}
    assert (perf["stale"].value, perf["ok"].value) == (1, 1)
    assert perf["erp/full"].crit == "2"

    as_json = check(tmp_path, inventory, "--json")
    document = json.loads(as_json.stdout)
    validate_check_json(document)
    assert (as_json.returncode, document["state"]) == (2, "CRITICAL")
    assert document["counts"] == {
        "databases": 2,
        "ok": 1,
        "warning": 0,
        "critical": 1,
        "unknown": 0,
    }

    families = {
        f.name: {(s.labels.get("host"), s.labels.get("step")): s.value for s in f.samples}
        for f in text_string_to_metric_families(metrics.read_text())
    }
    success = families["fanout_backup_last_success_timestamp_seconds"]
    assert set(success) == {
        (h, s) for h in ("erp", "crm") for s in ("full", "archivelog", "controlfile")
    }
    assert families["fanout_backup_last_status"][("erp", "full")] == 1
    assert families["fanout_backup_max_age_seconds"][("erp", "full")] == 2
    assert list(families["fanout_run_last_exit_code"].values()) == [0]


def test_notify_gets_the_run_summary_and_cannot_change_the_exit_code(
    sshd: SshdServer, oracle_home: Path, tmp_path: Path
) -> None:
    """A failed run calls the notify command with the summary on stdin and the run's id and exit
    code in its environment; the command's own failure is a warning, the run still exits 1."""
    configure_double(oracle_home, {"ERP": {"full": {"behaviour": "fail"}}})
    got = tmp_path / "got.json"
    script = tmp_path / "notify.py"
    script.write_text(
        "import json, os, sys\n"
        "summary = json.load(sys.stdin)\n"
        f"with open({str(got)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'summary': summary, 'run_id': os.environ['FANOUT_RUN_ID'],"
        " 'exit': os.environ['FANOUT_EXIT_CODE']}) + '\\n')\n"
        "print('pager: quota exceeded', file=sys.stderr)\n"
        "sys.exit(5)\n"
    )
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "ERP"}, {"sid": "CRM"}],
        {"notify": {"command": [sys.executable, str(script)], "timeout": "20s"}},
    )

    failed = run_fanout(tmp_path / "home", "run", inventory, "--json")
    assert failed.returncode == 1
    events = [json.loads(line) for line in failed.stdout.splitlines()]  # stdout stays pure JSON
    run_id = events[0]["run_id"]
    assert (
        f"fanout: warning: notify command {sys.executable!r} exited 5: pager: quota exceeded"
        in failed.stderr
    )
    (call,) = [json.loads(line) for line in got.read_text().splitlines()]
    assert (call["run_id"], call["exit"]) == (run_id, "1")
    assert call["summary"]["run"]["run_id"] == run_id
    assert call["summary"]["run"]["exit_code"] == 1
    hosts = {h["name"]: h for h in call["summary"]["hosts"]}
    assert hosts["erp"]["status"] == "failed"
    assert [s["status"] for s in hosts["crm"]["steps"]] == ["ok", "ok", "ok"]

    configure_double(oracle_home, {})
    ok = run_fanout(tmp_path / "home", "run", inventory, "--batch")
    assert ok.returncode == 0
    assert len(got.read_text().splitlines()) == 1  # on: failure (the default): not called


# -- --connect ----------------------------------------------------------------------------------


@pytest.fixture
def start_pmon() -> Iterator[Callable[[str], int]]:
    """Start ``ora_pmon_<SID>`` stand-ins on demand (``start(sid)``); killed by pid afterwards."""
    started: dict[str, subprocess.Popen[bytes]] = {}

    def start(sid: str) -> int:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec -a ora_pmon_{sid} sleep 120"], start_new_session=True
        )
        started[sid] = proc
        wait_until(lambda: f"ora_pmon_{sid}" in Path(f"/proc/{proc.pid}/cmdline").read_text())
        return proc.pid

    try:
        yield start
    finally:
        for proc in started.values():
            proc.kill()
            proc.wait(5)


def test_connect_names_each_hosts_problem(
    sshd: SshdServer,
    oracle_home: Path,
    remote_side: RemoteSide,
    tmp_path: Path,
    start_pmon: Callable[[str], int],
) -> None:
    """--connect: one ready host; rman missing; pmon absent; unknown host key; lock held by a live
    process; lock_dir not writable: exit 2, each with its one-line cause, in JSON and Nagios."""
    tag = f"{os.getpid() % 100000}"
    sids = {
        name: f"{name.upper()}{tag}"
        for name in ("ok", "norman", "nopmon", "badkey", "locked", "ro")
    }
    for name, sid in sids.items():
        if name != "nopmon":
            start_pmon(sid)
    no_rman = Path(tempfile.mkdtemp(prefix="norman-", dir=remote_side.root))
    no_rman.chmod(0o755)
    (no_rman / "bin").mkdir(mode=0o755)
    empty_known = tmp_path / "known_hosts_empty"
    empty_known.write_text("")
    read_only = Path(tempfile.mkdtemp(prefix="ro-", dir=remote_side.root))
    read_only.chmod(0o755)  # owned by root: the login user cannot write there
    holder = subprocess.Popen(["sleep", "120"], start_new_session=True)  # a live group leader
    lock = oracle_home / f"fanout-{sids['locked']}.lock"
    lock.mkdir()
    (lock / "owner").write_text(f"{holder.pid} 20261123T000000Z-abcd full\n")
    try:
        hosts = [
            {"name": "ok", "sid": sids["ok"]},
            {"name": "norman", "sid": sids["norman"], "oracle_home": str(no_rman)},
            {"name": "nopmon", "sid": sids["nopmon"]},
            {"name": "badkey", "sid": sids["badkey"], "known_hosts": str(empty_known)},
            {"name": "locked", "sid": sids["locked"]},
        ]
        if os.geteuid() == 0:  # otherwise the login user is the tests' own and owns the dir
            hosts.append({"name": "ro", "sid": sids["ro"], "lock_dir": str(read_only)})
        inventory = write_inventory(tmp_path, sshd, oracle_home, hosts)

        result = check(tmp_path, inventory, "--connect", "--json")
        document = json.loads(result.stdout)
        validate_check_json(document)
        assert result.returncode == 2, result.stderr
        causes = {h["host"]: h["cause"] for h in document["hosts"]}
        assert causes["ok"] is None
        assert causes["norman"] == f"rman: {no_rman}/bin/rman is missing or not executable"
        assert causes["nopmon"] == (
            f"pmon: no ora_pmon_{sids['nopmon']} process (instance not running)"
        )
        assert causes["badkey"].startswith("ssh: host key not verified: ")
        assert causes["locked"] == (
            f"lock: {lock} is held by pid {holder.pid} (run 20261123T000000Z-abcd, step full)"
        )
        if "ro" in causes:
            assert causes["ro"] == f"lock_dir: {read_only} is not writable by {remote_side.user}"
        statuses = {
            h["host"]: {c["name"]: c["status"] for c in h["checks"]} for h in document["hosts"]
        }
        assert set(statuses["ok"].values()) == {"ok"}
        assert statuses["badkey"]["ssh"] == "failed"
        assert set(statuses["badkey"].values()) - {"failed"} == {"skipped"}
        assert [c for c, s in statuses["norman"].items() if s != "ok"] == ["rman"]

        nagios = check(tmp_path, inventory, "--connect", "--nagios")
        plugin = parse_plugin_output(nagios.stdout)
        bad = len(hosts) - 1
        assert (nagios.returncode, plugin.state) == (2, "CRITICAL")
        assert plugin.text.startswith(f"{bad} of {len(hosts)} hosts not ready: norman (rman: ")
        assert {d.label: d.value for d in plugin.perfdata} == {"ready": 1, "not_ready": bad}
        assert "OK: ok (" in plugin.long_text[-1]

        ready = check(tmp_path, inventory, "--connect", "--limit", "ok", "--nagios")
        assert ready.returncode == 0
        assert ready.stdout.startswith("fanout OK - 1 of 1 hosts ready | ready=1;;;0;1")
    finally:
        holder.kill()
        holder.wait(5)
