"""What the scheduler needs from an inventory and the run store: expected durations, the
dispatch order and the deadline. Shared by ``fanout run`` (runner.py) and ``fanout plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fanout.errors import FanoutError
from fanout.model import Host, Inventory, TimeOfDay, parse_duration, parse_time_of_day
from fanout.scheduler import (
    HISTORY_RUNS,
    Deadline,
    Job,
    Limits,
    dispatch_order,
    expected_duration,
    host_expected,
    next_time_of_day,
)

Expected = Mapping[str, Mapping[str, float | None]]  # host -> step -> seconds (None: no history)


def load_expected(
    state_dir: Path, hosts: Sequence[Host], *, before: float | None = None
) -> dict[str, dict[str, float | None]]:
    """Host -> step -> the median of that database's last successful runs of the step.

    Reads ``<state_dir>/fanout.db`` if it exists (``plan`` never creates it); no store, no
    history. Raises StoreError if the store exists but cannot be read.
    """
    from fanout.store import DB_NAME, open_store

    durations: dict[tuple[str, str, str], list[float]] = {}
    if (state_dir / DB_NAME).exists():
        with open_store(state_dir) as store:
            durations = store.step_durations(
                [(h.address, h.oracle_sid) for h in hosts], before=before, last=HISTORY_RUNS
            )
    return {
        h.name: {
            step: expected_duration(durations.get((h.address, h.oracle_sid, step), []))
            for step in h.steps
        }
        for h in hosts
    }


def job_of(host: Host, expected: Expected, steps: Sequence[str] | None = None) -> Job:
    """``host`` as the scheduler sees it (its expected duration over ``steps``, default all)."""
    own = expected.get(host.name, {})
    names = host.steps if steps is None else steps
    return Job(
        host.name, host.priority, host.index, host.groups, host_expected(own.get(s) for s in names)
    )


def order_hosts(
    hosts: Sequence[Host],
    expected: Expected,
    steps: Mapping[str, Sequence[str]] | None = None,
) -> list[Host]:
    """``hosts`` in dispatch order: priority, then unknowns in file order, then longest first.

    ``steps``: per host, the steps that will run (a resume); default all of the host's.
    """
    by_name = {h.name: h for h in hosts}
    jobs = (job_of(h, expected, None if steps is None else steps.get(h.name)) for h in hosts)
    return [by_name[job.name] for job in dispatch_order(jobs)]


def limits_of(inventory: Inventory, max_parallel: int | None = None) -> Limits:
    return Limits(
        max_parallel or inventory.settings.max_parallel,
        {name: group.max_parallel for name, group in inventory.groups.items()},
    )


def resolve_deadline(
    inventory: Inventory,
    override: str | None,
    *,
    hard: bool = False,
    now: datetime | None = None,
) -> Deadline | None:
    """The window's end as epoch seconds: ``--deadline`` if given, else ``settings.window_end``;
    the first such time of day after ``now``. ``--deadline +2h30m`` is relative to ``now``.
    Raises FanoutError for a bad ``override``."""
    when: TimeOfDay | None = inventory.settings.window_end
    now = now or datetime.now().astimezone()
    hard = hard or inventory.settings.hard_deadline
    if override is not None and override.startswith("+"):
        try:
            seconds = parse_duration(override[1:])
        except ValueError as exc:
            raise FanoutError(f"--deadline: {exc}") from exc
        at = now + timedelta(seconds=seconds)
        label = f"{at:%H:%M:%S}" if at.second or at.microsecond else f"{at:%H:%M}"
        return Deadline(at.timestamp(), label, hard)
    if override is not None:
        try:
            when = parse_time_of_day(override)
        except ValueError as exc:
            raise FanoutError(f"--deadline: {exc}") from exc
        if when.zone is not None:
            from fanout.inventory import zone_problem

            problem = zone_problem(when.zone)
            if problem is not None:
                raise FanoutError(f"--deadline: {problem}")
    if when is None:
        return None
    tz = ZoneInfo(when.zone) if when.zone else None
    at = next_time_of_day(when.hour, when.minute, now, tz)
    return Deadline(at.timestamp(), when.label, hard)
