"""Fleet policy: what each host runs tonight, decided before the engine starts. Pure.

- **Backup level** (``choose_level``): a step with a ``LevelPolicy`` (the built-in
  ``backup``) takes a level 0 or a level 1 per database, from that database's level-0
  history in the run store (``store.Store.level_history`` builds a ``LevelHistory``).
- **Subsets** (``select_steps``): ``--steps archivelog`` keeps only those steps.

``requires`` and ``when`` are carried on the rendered steps and applied by the engine
(they depend on this run's results and on the host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from fanout.model import Host, Inventory, LevelPolicy, format_duration

__all__ = [
    "LevelChoice",
    "LevelHistory",
    "choose_level",
    "decide_levels",
    "level_steps",
    "select_steps",
]

_DAY = 86400.0
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class LevelHistory:
    """One database's level-0 record in the run store (epoch seconds of run starts)."""

    last_level0: float | None = None  # the newest run in which a level 0 succeeded
    owed_since: float | None = None  # the oldest later run whose level 0 did not succeed


@dataclass(frozen=True, slots=True)
class LevelChoice:
    """The level a step takes in this run, and why (shown by plan, the live table, show)."""

    level: int  # 0 or 1
    reason: str
    cumulative: bool = False  # level 1 only

    def describe(self) -> str:
        """``level 1 cumulative: last level 0 2026-11-29 (2d ago)``."""
        kind = " cumulative" if self.level == 1 and self.cumulative else ""
        return f"level {self.level}{kind}: {self.reason}"

    @property
    def short(self) -> str:
        """``L0``, ``L1``, ``L1c``: for narrow cells."""
        return f"L{self.level}" + ("c" if self.level == 1 and self.cumulative else "")


def choose_level(policy: LevelPolicy, history: LevelHistory, now: datetime) -> LevelChoice:
    """Level 0 or level 1 for one database at ``now`` (an aware datetime: its zone decides
    weekdays and dates).

    Level 0 when no level 0 ever succeeded; when a level 0 attempted after the last
    success did not succeed (it stays owed until one does: the next run and ``--resume``
    take a level 0); on a ``level0_on`` weekday, unless a level 0 already succeeded that
    day; or when the last one is ``level0_every`` old. ``level0_every`` in whole days
    counts calendar days, so a nightly job that started a few minutes later last week
    still takes its weekly level 0 on the same day. Otherwise level 1 (``cumulative``
    from the policy). Raises ValueError for a naive ``now``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("choose_level needs an aware datetime")
    level0 = LevelChoice(0, "", cumulative=False)
    if history.owed_since is not None:
        when = _date(history.owed_since, now)
        return replace(level0, reason=f"the level 0 of {when} did not succeed")
    if history.last_level0 is None:
        return replace(level0, reason="no successful level 0 recorded")
    last = datetime.fromtimestamp(history.last_level0, now.tzinfo)
    days = (now.date() - last.date()).days
    ago = format_duration(max(0, round((now.timestamp() - last.timestamp()) / 3600)) * 3600)
    last_text = f"last level 0 {last:%Y-%m-%d} ({ago} ago)"
    if now.weekday() in policy.level0_on and days > 0:
        return replace(level0, reason=f"{_DAY_NAMES[now.weekday()]} is a level 0 day")
    every = policy.level0_every
    if every is not None:
        if every % _DAY == 0:
            due = days >= every / _DAY
        else:
            due = now.timestamp() - last.timestamp() >= every
        if due:
            return replace(level0, reason=f"{last_text}, level0_every {format_duration(every)}")
    return LevelChoice(1, last_text, cumulative=policy.cumulative)


def level_steps(inventory: Inventory, host: Host) -> dict[str, LevelPolicy]:
    """The host's steps that carry a level policy, by name."""
    found = {}
    for name in host.steps:
        step = inventory.steps.get(name)
        if step is not None and step.levels is not None:
            found[name] = step.levels
    return found


def decide_levels(
    inventory: Inventory,
    hosts: Sequence[Host],
    history: Mapping[str, LevelHistory],
    now: datetime,
) -> dict[str, dict[str, LevelChoice]]:
    """Host name → {step → its level choice} for every host with a level-policy step.

    ``history`` is keyed by ``Host.database_key``; a database absent from it has none.
    """
    decided: dict[str, dict[str, LevelChoice]] = {}
    for host in hosts:
        steps = level_steps(inventory, host)
        if steps:
            record = history.get(host.database_key, LevelHistory())
            decided[host.name] = {
                name: choose_level(policy, record, now) for name, policy in steps.items()
            }
    return decided


def select_steps(
    inventory: Inventory, hosts: Sequence[Host], wanted: Sequence[str]
) -> tuple[Host, ...]:
    """``hosts`` running only the ``wanted`` steps (in each host's own order); hosts that
    run none of them are left out. An empty ``wanted`` keeps everything.

    Raises ValueError (one line) for a step the inventory does not know, or one that no
    selected host runs.
    """
    if not wanted:
        return tuple(hosts)
    for name in wanted:
        if name not in inventory.steps:
            known = ", ".join(sorted(inventory.steps))
            raise ValueError(f"--steps: unknown step {name!r} (known: {known})")
        if not any(name in host.steps for host in hosts):
            raise ValueError(f"--steps: no selected host runs step {name!r}")
    chosen = set(wanted)
    return tuple(
        replace(host, steps=kept)
        for host in hosts
        if (kept := tuple(s for s in host.steps if s in chosen))
    )


def weekday_number(name: str) -> int | None:
    """``sun``, ``Sun``, ``sunday`` → 6 (``date.weekday()``); None if it names no weekday."""
    text = name.strip().lower()
    for number, day in enumerate(_DAY_NAMES):
        if len(text) >= 3 and day.lower().startswith(text):
            return number
    return None


def _date(epoch: float, now: datetime) -> str:
    return f"{datetime.fromtimestamp(epoch, now.tzinfo):%Y-%m-%d}"
