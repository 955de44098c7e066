"""`fanout check` over run stores written by real engine runs (fake transport, real SQLite store,
real inventory files): fresh, ageing, stale, never, failed-since-success, cancelled, resumed; the
Nagios output parsed by the plugin rules and the JSON validated against docs/check-json.md."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.events import CancelReason, RunMeta, StepStarted
from fanout.inventory import load_inventory
from fanout.model import Inventory
from fanout.monitor import CheckOptions, OutputFormat, check_inventory
from fanout.steps import render_host
from fanout.store import open_store
from tests.fakes import Behaviour, FakeTransport, HostScript
from tests.monitoring import REPO, parse_plugin_output, validate_check_json

HOUR = 3600.0
DAY = 86400.0
FAIL = Behaviour(
    lines=("RMAN-03009: failure of backup command on ORA_DISK_1 channel",),
    stderr=("ORA-19502: write error on file",),
    exit_status=1,
)
_run_numbers = itertools.count(1)


def write(tmp_path: Path, hosts: str, settings: str = "", name: str = "nightly.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        f"settings:\n  state_dir: {tmp_path / 'state'}\n{settings}"
        "defaults:\n  oracle_home: /u01/app/oracle\n"
        f"hosts:\n{hosts}"
    )
    return path


TWO_HOSTS = (
    "  - {name: erp, address: db1.example.com, priority: 1, oracle_sid: ERP}\n"
    "  - {name: crm, address: db2.example.com, priority: 2, oracle_sid: CRM}\n"
)


class _Tagged:
    """A sink that records which hosts got which steps started (for the cancel test)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.started: asyncio.Event = asyncio.Event()

    def emit(self, event: object) -> None:
        self.inner.emit(event)  # type: ignore[attr-defined]
        if isinstance(event, StepStarted):
            self.started.set()


def backup(
    inventory: Inventory,
    *,
    at: float,
    hosts: Sequence[str] | None = None,
    steps: Sequence[str] | None = None,
    behaviours: Mapping[str, Mapping[str, Behaviour]] | None = None,
    resumed_from: str | None = None,
    cancel: bool = False,
) -> str:
    """One engine run written to the inventory's real store, its wall clock starting at ``at``.
    Returns the run id."""
    run_id = f"20261123T0000{next(_run_numbers):02d}Z-test"
    ticks = itertools.count()
    chosen = [h for h in inventory.hosts if hosts is None or h.name in hosts]
    targets = [
        Target(
            h,
            tuple(
                # the fake transport recognises the step by a trailing "# step"
                replace(r, command=f"x # {r.name}")
                for r in render_host(inventory, h, run_id, only=steps)
            ),
        )
        for h in chosen
    ]
    scripts = {
        name: HostScript(steps=dict(b))  # type: ignore[arg-type]
        for name, b in (behaviours or {}).items()
    }
    if cancel:
        scripts = {h.name: HostScript(steps={"full": Behaviour(hang=True)}) for h in chosen}
    assert inventory.settings.state_dir is not None
    with open_store(inventory.settings.state_dir) as store:
        sink = _Tagged(store)
        token = CancelToken()
        engine = Engine(
            run_id=run_id,
            inventory=str(inventory.path),
            targets=targets,
            transport=FakeTransport(scripts),
            sink=sink,  # type: ignore[arg-type]
            token=token,
            max_parallel=4,
            cancel_grace=0.01,
            kill_grace=0.01,
            connect_backoff=0.001,
            retry_delay=0.0,
            wall=lambda: at + next(ticks) / 1000,
            meta=RunMeta(inventory.sha256, ("test",), resumed_from),
        )

        async def go() -> int:
            task = asyncio.create_task(engine.run())
            if cancel:
                async with asyncio.timeout(10):
                    await sink.started.wait()
                token.cancel(CancelReason.OPERATOR)
            async with asyncio.timeout(30):
                return await task

        asyncio.run(go())
    return run_id


def check(
    path: Path, output: OutputFormat = OutputFormat.NAGIOS, **options: object
) -> tuple[int, str]:
    warnings: list[str] = []
    code, text = check_inventory(CheckOptions(path, output=output, **options), warnings.append)  # type: ignore[arg-type]
    assert warnings == []
    return code, text


def check_json(path: Path, **options: object) -> tuple[int, dict[str, object]]:
    code, text = check(path, OutputFormat.JSON, **options)
    document = json.loads(text)
    validate_check_json(document)
    assert document["exit_code"] == code
    return code, document


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory(write(tmp_path, TWO_HOSTS))


# -- freshness states ---------------------------------------------------------------------------


def test_recent_backups_are_ok_exit_0(inventory: Inventory) -> None:
    """Every kind backed up an hour ago: OK, exit 0, counts in the perfdata."""
    backup(inventory, at=time.time() - HOUR)
    code, out = check(inventory.path)
    plugin = parse_plugin_output(out)
    assert (code, plugin.state, plugin.text) == (0, "OK", "2 of 2 databases fresh")
    perf = {d.label: d for d in plugin.perfdata}
    assert perf["ok"].value == 2
    assert perf["stale"].value == 0
    assert perf["databases"].value == 2
    age = perf["erp/full"]
    assert age.uom == "s"
    assert HOUR - 60 < age.value < HOUR + 60
    assert (float(age.warn), float(age.crit)) == (0.8 * 8 * DAY, 8 * DAY)


def test_full_older_than_max_age_is_critical_naming_database_and_threshold(
    inventory: Inventory,
) -> None:
    """A full 9 days old (max 8d) while the other kinds are fresh: CRITICAL, exit 2, named."""
    backup(inventory, at=time.time() - 9 * DAY)
    backup(inventory, at=time.time() - HOUR, steps=["archivelog", "controlfile"])
    backup(inventory, at=time.time() - HOUR, hosts=["crm"], steps=["full"])
    code, out = check(inventory.path)
    plugin = parse_plugin_output(out)
    assert code == 2
    assert out.splitlines()[0].startswith(
        "fanout CRITICAL - 1 of 2 databases stale: erp (full 9d > 8d) | stale=1;;;0;2 "
    )
    assert "CRITICAL: erp (ERP) full 9d > 8d" in plugin.long_text
    code, document = check_json(inventory.path)
    (item,) = [c for c in document["checks"] if c["state"] != "OK"]  # type: ignore[union-attr]
    assert (item["host"], item["step"], item["reason"]) == ("erp", "full", "stale")


def test_past_the_warn_fraction_is_warning_exit_1(tmp_path: Path) -> None:
    """7 days into an 8-day max_age with max_age_warn 0.8: WARNING, exit 1."""
    inventory = load_inventory(write(tmp_path, TWO_HOSTS, "  max_age_warn: 0.8\n"))
    backup(inventory, at=time.time() - 7 * DAY)
    backup(inventory, at=time.time() - HOUR, steps=["archivelog", "controlfile"])
    backup(inventory, at=time.time() - HOUR, hosts=["crm"])
    code, out = check(inventory.path)
    plugin = parse_plugin_output(out)
    assert (code, plugin.state) == (1, "WARNING")
    assert plugin.text == "1 of 2 databases ageing: erp (full 7d > 6d9h (max 8d))"


def test_a_database_never_backed_up_is_critical(inventory: Inventory) -> None:
    """No success recorded for a database: CRITICAL 'never', its age perfdata 'U'."""
    backup(inventory, at=time.time() - HOUR, hosts=["erp"])
    code, out = check(inventory.path)
    plugin = parse_plugin_output(out)
    assert code == 2
    assert plugin.text == (
        "1 of 2 databases stale: crm (full never, archivelog never, controlfile never)"
    )
    assert {d.label: d.value for d in plugin.perfdata}["crm/full"] is None
    _, document = check_json(inventory.path)
    reasons = {(c["host"], c["step"]): c["reason"] for c in document["checks"]}  # type: ignore[union-attr]
    assert reasons[("crm", "full")] == "never"
    assert reasons[("erp", "full")] == "fresh"


def test_failure_after_a_success_is_critical_until_one_succeeds_again(
    inventory: Inventory,
) -> None:
    """Last full attempt failed (the previous one succeeded): CRITICAL 'failed' with the cause;
    a later success clears it."""
    backup(inventory, at=time.time() - 3 * HOUR)
    backup(inventory, at=time.time() - 2 * HOUR, behaviours={"erp": {"full": FAIL}})
    code, out = check(inventory.path)
    assert code == 2
    first = parse_plugin_output(out).text
    assert first.startswith("1 of 2 databases stale: erp (full failed: ")
    assert first.endswith("(last ok 3h ago))")
    _, document = check_json(inventory.path)
    erp_full = next(c for c in document["checks"] if (c["host"], c["step"]) == ("erp", "full"))  # type: ignore[union-attr]
    assert erp_full["reason"] == "failed"
    assert erp_full["last_attempt"]["status"] == "failed"
    assert erp_full["last_success"]["ended_at"] < erp_full["last_attempt"]["ended_at"]
    backup(inventory, at=time.time() - HOUR, hosts=["erp"], steps=["full"])
    assert check(inventory.path)[0] == 0


def test_a_cancelled_attempt_is_not_a_failure(inventory: Inventory) -> None:
    """An operator's cancel after a good backup leaves the databases OK."""
    backup(inventory, at=time.time() - 2 * HOUR)
    backup(inventory, at=time.time() - HOUR, steps=["full"], cancel=True)
    _, document = check_json(inventory.path)
    statuses = {c["last_attempt"]["status"] for c in document["checks"] if c["step"] == "full"}  # type: ignore[union-attr]
    assert statuses == {"cancelled"}
    assert document["state"] == "OK"


def test_a_resumed_run_counts_like_any_other(inventory: Inventory) -> None:
    """Full failed in one run, succeeded in its --resume run: OK, last success from the resume."""
    first = backup(inventory, at=time.time() - 2 * HOUR, behaviours={"erp": {"full": FAIL}})
    resumed = backup(
        inventory, at=time.time() - HOUR, hosts=["erp"], steps=["full"], resumed_from=first
    )
    code, document = check_json(inventory.path)
    assert code == 0
    erp_full = next(c for c in document["checks"] if (c["host"], c["step"]) == ("erp", "full"))  # type: ignore[union-attr]
    assert erp_full["last_success"]["run_id"] == resumed


def test_runs_of_another_inventory_count_for_the_same_database(tmp_path: Path) -> None:
    """A database is its address (any case) and SID: hourly.yaml's archivelogs count in
    nightly.yaml's check."""
    nightly = load_inventory(write(tmp_path, TWO_HOSTS))
    hourly_hosts = (
        "  - {name: erp-arch, address: DB1.example.com, priority: 1, oracle_sid: ERP,"
        " steps: [archivelog]}\n"
    )
    hourly = load_inventory(write(tmp_path, hourly_hosts, name="hourly.yaml"))
    backup(nightly, at=time.time() - 2 * DAY)
    backup(hourly, at=time.time() - HOUR)
    _, document = check_json(nightly.path, limit=("erp",))
    ages = {c["step"]: c["age_seconds"] for c in document["checks"]}  # type: ignore[union-attr]
    assert ages["archivelog"] < 2 * HOUR < 2 * DAY <= ages["full"]


def test_max_age_from_defaults_step_and_host(tmp_path: Path) -> None:
    """Thresholds: host over steps.<name> over defaults over the built-in ones; a custom step
    without max_age is not judged."""
    path = tmp_path / "inv.yaml"
    path.write_text(
        f"settings: {{state_dir: {tmp_path / 'state'}}}\n"
        "steps:\n  full: {max_age: 2d}\n  purge: {shell: 'true'}\n"
        "defaults: {oracle_home: /u01, max_age: {full: 5d, archivelog: 3h}}\n"
        "hosts:\n"
        "  - {name: a, address: h1, priority: 1, oracle_sid: A,"
        " steps: [full, archivelog, controlfile, purge], max_age: {controlfile: 1h}}\n"
        "  - {name: b, address: h2, priority: 1, oracle_sid: B, max_age: {full: 9d}}\n"
    )
    _, document = check_json(path)
    limits = {(c["host"], c["step"]): c["max_age_seconds"] for c in document["checks"]}  # type: ignore[union-attr]
    assert limits == {
        ("a", "full"): 2 * DAY,  # steps.full (defaults' 5d is weaker than the step's own)
        ("a", "archivelog"): 3 * HOUR,
        ("a", "controlfile"): HOUR,
        ("b", "full"): 9 * DAY,
        ("b", "archivelog"): 3 * HOUR,
        ("b", "controlfile"): 26 * HOUR,
    }


def test_a_v4_store_is_backfilled_when_migrated(inventory: Inventory) -> None:
    """A store from before the backups table (schema v4) gets it filled from its history."""
    backup(inventory, at=time.time() - 3 * HOUR)
    backup(inventory, at=time.time() - 2 * HOUR, behaviours={"erp": {"full": FAIL}})
    backup(inventory, at=time.time() - HOUR, hosts=["crm"], steps=["full"], cancel=True)
    state_dir = inventory.settings.state_dir
    assert state_dir is not None
    with open_store(state_dir) as store:
        written = store.last_backups()
    db = sqlite3.connect(state_dir / "fanout.db")
    db.execute("DROP TABLE backups")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    with open_store(state_dir) as store:
        assert store.last_backups() == written
    assert written[("db1.example.com", "ERP", "full")].last_attempt.status == "failed"  # type: ignore[union-attr]
    assert written[("db2.example.com", "CRM", "full")].last_attempt.status == "cancelled"  # type: ignore[union-attr]
    assert len(written) == 6


def test_selection_flags_narrow_the_check(inventory: Inventory) -> None:
    """--limit and --tag select databases as for run: the never-backed-up crm is left out."""
    backup(inventory, at=time.time() - HOUR, hosts=["erp"])
    assert check(inventory.path, limit=("erp",))[0] == 0
    assert check(inventory.path, limit=("e*", "c*"))[0] == 2


def test_unreadable_store_is_unknown_exit_3(inventory: Inventory) -> None:
    """A run store that is not a database: UNKNOWN, exit 3, the reason in the text."""
    assert inventory.settings.state_dir is not None
    inventory.settings.state_dir.mkdir(parents=True)
    (inventory.settings.state_dir / "fanout.db").write_bytes(b"not a database" * 100)
    code, out = check(inventory.path)
    plugin = parse_plugin_output(out)
    assert (code, plugin.state) == (3, "UNKNOWN")
    assert plugin.text.startswith("run store unreadable: ")
    code, document = check_json(inventory.path)
    assert (code, document["state"], document["checks"]) == (3, "UNKNOWN", [])


def test_text_output_has_one_line_per_database_and_kind(inventory: Inventory) -> None:
    """Default output: a table row per database and kind, then the verdict line."""
    backup(inventory, at=time.time() - HOUR, hosts=["erp"])
    code, out = check(inventory.path, OutputFormat.TEXT)
    lines = out.splitlines()
    assert lines[0].split() == [
        "HOST",
        "SID",
        "STEP",
        "STATE",
        "AGE",
        "MAX",
        "AGE",
        "LAST",
        "ATTEMPT",
    ]
    assert [line.split()[:4] for line in lines[1:7]] == [
        ["erp", "ERP", "full", "OK"],
        ["erp", "ERP", "archivelog", "OK"],
        ["erp", "ERP", "controlfile", "OK"],
        ["crm", "CRM", "full", "CRITICAL"],
        ["crm", "CRM", "archivelog", "CRITICAL"],
        ["crm", "CRM", "controlfile", "CRITICAL"],
    ]
    assert lines[-1].startswith("CRITICAL: 1 of 2 databases stale: crm (")
    assert code == 2


# -- the command line ---------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", "check", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_cli_exit_code_and_nagios_line_agree(inventory: Inventory) -> None:
    """`fanout check --nagios`: stdout follows the plugin rules and the exit code is its state."""
    backup(inventory, at=time.time() - HOUR, hosts=["erp"])
    result = _cli(inventory.path, "--nagios")
    plugin = parse_plugin_output(result.stdout)
    assert result.returncode == 2 == {"OK": 0, "WARNING": 1, "CRITICAL": 2}[plugin.state]
    assert result.stderr == ""
    result = _cli(inventory.path, "--json", "--limit", "erp")
    validate_check_json(json.loads(result.stdout))
    assert result.returncode == 0


def test_cli_bad_inventory_is_unknown_in_every_format(tmp_path: Path) -> None:
    """An invalid inventory: exit 3 (UNKNOWN, not CRITICAL) with the one-line error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: []\n")
    nagios = _cli(bad, "--nagios")
    assert nagios.returncode == 3
    assert parse_plugin_output(nagios.stdout).state == "UNKNOWN"
    assert "hosts: expected a non-empty list" in nagios.stdout
    as_json = _cli(bad, "--json")
    document = json.loads(as_json.stdout)
    validate_check_json(document)
    assert (as_json.returncode, document["mode"]) == (3, "error")
    text = _cli(bad)
    assert text.returncode == 3
    assert text.stderr.startswith("fanout: ")
    assert "Traceback" not in text.stderr
