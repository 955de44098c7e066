"""`fanout plan` with history: the order and why, `--timeline`, and `show`'s expected column."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fanout.cli import app
from fanout.store import open_store
from tests.unit.events_builder import T0, Run, feed, planned

runner = CliRunner()

# name -> (priority, group, minutes per night over two earlier runs)
FLEET = {
    "short": (1, None, (10, 12)),
    "long": (1, "nfs", (100, 100)),
    "mid": (1, "nfs", (40, 44)),
    "new": (1, None, None),
    "later": (2, None, (30, 30)),
}


def inventory(tmp_path: Path, *, window: str | None = None) -> Path:
    lines = [f"settings: {{max_parallel: 2, state_dir: {tmp_path / 'state'}"]
    lines[0] += f", window_end: '{window}'}}" if window else "}"
    lines += ["groups: {nfs: {max_parallel: 1}}", "hosts:"]
    for name, (priority, group, _) in FLEET.items():
        extra = f", group: {group}" if group else ""
        lines.append(
            f"  - {{name: {name}, address: {name}.example, priority: {priority},"
            f" oracle_sid: {name.upper()}, oracle_home: /oh, steps: [full]{extra}}}"
        )
    path = tmp_path / "nightly.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def record_history(state_dir: Path) -> None:
    """Two earlier nights in the run store, each host's `full` taking its minutes."""
    with open_store(state_dir) as store:
        for night in range(2):
            hosts = [
                planned(n, steps=("full",), sid=n.upper(), address=f"{n}.example")
                for n, (_, _, minutes) in FLEET.items()
                if minutes
            ]
            run = Run(hosts, run_id=f"2026112{night}T010000Z-000{night}", start=T0 + night * 86400)
            for name, (_, _, minutes) in FLEET.items():
                if minutes:
                    run.host_ok(name, full=minutes[night] * 60.0)
            run.finish(exit_code=0)
            feed(store, run.events)


def test_plan_orders_by_history_and_says_why(tmp_path: Path) -> None:
    """Within a priority: no history first, then longest expected first; each row says why."""
    record_history(tmp_path / "state")
    result = runner.invoke(app, ["plan", str(inventory(tmp_path))])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line[:1].isdigit()]
    assert [row.split()[2] for row in rows] == ["new", "long", "mid", "short", "later"]
    assert rows[0].endswith("priority 1; no history: file order")
    assert rows[1].endswith("priority 1; longest first (expected 1h40m)")
    assert "42m" in rows[2]  # median of 40 and 44 minutes
    assert "Capacity groups (max_parallel): nfs 1" in result.output


def test_plan_timeline_predicts_the_schedule_and_the_window(tmp_path: Path) -> None:
    """--timeline simulates the run: the nfs hosts never overlap, the makespan is predicted,
    and a window too short says which hosts would not start."""
    record_history(tmp_path / "state")
    path = inventory(tmp_path)
    result = runner.invoke(app, ["plan", str(path), "--timeline", "--start", "01:00"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "  long   01:00 → 02:40   1h40m" in out
    assert "  mid    02:40 → 03:22     42m" in out  # waits for the nfs slot
    assert "  new    01:00 → 01:36     36m  (no history: assumed)" in out  # the median
    assert "Predicted makespan 2h22m" in out
    assert "No window set" in out
    gantt = out.split("No window set", 1)[1]
    assert gantt.count("█") > 10

    late = runner.invoke(
        app, ["plan", str(path), "--timeline", "--start", "01:00", "--deadline", "03:00"]
    )
    assert late.exit_code == 0, late.output
    assert "  mid    not started: would end after 03:00 (expected 42m)" in late.output
    assert "Does NOT fit the window ending 03:00: 1 host would not be started." in late.output

    fits = runner.invoke(
        app, ["plan", str(path), "--timeline", "--start", "01:00", "--deadline", "05:00"]
    )
    assert "Fits the window ending 05:00 with 1h38m to spare." in fits.output


def test_bad_deadline_is_a_usage_error(tmp_path: Path) -> None:
    """--deadline that is not a time of day exits 2 with one line."""
    result = runner.invoke(app, ["plan", str(inventory(tmp_path)), "--timeline", "--deadline", "6"])
    assert result.exit_code == 2
    assert "--deadline: expected a time of day like 06:00" in result.output


def test_show_gives_expected_next_to_actual(tmp_path: Path) -> None:
    """`show` of the second night gives what the first night led to expect."""
    state = tmp_path / "state"
    record_history(state)
    result = runner.invoke(
        app, ["show", "20261121T010000Z-0001", "--all", "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("mid "))
    assert "44m" in line
    assert "expected 40m" in line


def test_step_durations_are_per_database_newest_first(tmp_path: Path) -> None:
    """The store gives each database's successful step durations newest first, limited to
    `last` and to runs before `before`; other databases are not read."""
    record_history(tmp_path)
    with open_store(tmp_path) as store:
        found = store.step_durations([("mid.example", "MID"), ("new.example", "NEW")])
        assert found == {("mid.example", "MID", "full"): [44 * 60.0, 40 * 60.0]}
        assert store.step_durations([("mid.example", "MID")], last=1) == {
            ("mid.example", "MID", "full"): [44 * 60.0]
        }
        earlier = store.step_durations([("mid.example", "MID")], before=T0 + 3600)
        assert earlier == {("mid.example", "MID", "full"): [40 * 60.0]}
