"""Capacity groups and the window end to end: the real CLI against the private sshd and the RMAN
double; what ran when is read from the double's invocation records, never from fanout."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.system.sshd import (
    SshdServer,
    configure_double,
    json_events,
    read_invocations,
    run_fanout,
    write_inventory,
)

pytestmark = pytest.mark.system


def with_groups(inventory: Path, groups: dict[str, int]) -> Path:
    document = yaml.safe_load(inventory.read_text())
    document = {"groups": {g: {"max_parallel": n} for g, n in groups.items()}, **document}
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    return inventory


def test_hosts_of_a_group_of_one_never_overlap(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """With `filer: {max_parallel: 1}` the three filer databases' rman runs never overlap on the
    remote side, while a host outside the group runs beside them."""
    configure_double(oracle_home, {"*": {"seconds": 0.4}})
    hosts = [
        {"sid": "FILER1", "group": "filer", "steps": ["full"]},
        {"sid": "FILER2", "group": "filer", "steps": ["full"]},
        {"sid": "FILER3", "group": ["filer"], "steps": ["full"]},
        {"sid": "OTHER", "steps": ["full"], "priority": 9},
    ]
    inventory = with_groups(write_inventory(tmp_path, sshd, oracle_home, hosts), {"filer": 1})
    result = run_fanout(tmp_path / "home", "run", inventory, "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    ends = {rec["sid"]: rec for rec in read_invocations(oracle_home) if rec["event"] == "end"}
    assert sorted(ends) == ["FILER1", "FILER2", "FILER3", "OTHER"]
    filer = sorted((ends[s]["start"], ends[s]["end"]) for s in ("FILER1", "FILER2", "FILER3"))
    for (_, first_end), (second_start, _) in itertools.pairwise(filer):
        assert first_end <= second_start
    other = ends["OTHER"]
    assert other["start"] < filer[0][1]  # not held back behind the group (no head-of-line block)
    started = json_events(result.stdout)[0]
    assert started["groups"] == [["filer", 1]]


def test_opted_in_step_reaches_rman_with_duration(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """With a deadline, a step that opted in reaches rman as BACKUP DURATION hh:mm PARTIAL with
    the time left; a step that did not keeps its script."""
    configure_double(oracle_home, {"*": {"seconds": 0.05}})
    inventory = write_inventory(
        tmp_path,
        sshd,
        oracle_home,
        [{"sid": "WIN", "steps": ["full", "controlfile"]}],
        step_defs={"full": {"window_duration": True}},
    )
    deadline = (datetime.now() + timedelta(hours=2, minutes=30)).strftime("%H:%M")
    result = run_fanout(
        tmp_path / "home", "run", inventory, "--json", "--deadline", deadline, timeout=60
    )
    assert result.returncode == 0, result.stderr
    scripts = {
        rec["script"].count("DURATION"): rec["script"]
        for rec in read_invocations(oracle_home)
        if rec["event"] == "start"
    }
    assert sorted(scripts) == [0, 1]
    assert "BACKUP DURATION 02:2" in scripts[1]  # 2h29m or 2h28m left
    assert "PARTIAL INCREMENTAL LEVEL 0 DATABASE" in scripts[1]
