"""What a run will do, before it starts: the resume plan, level choices and rendered targets.

``plan_resume`` reads what the selected hosts still owe from the run store (by database,
or one run's chain); ``plan_levels`` decides level 0 or 1 for the level-policy steps from
the store's history; ``build_targets`` renders each host's steps (the resume adoption, the
levels, cluster mode's fencing token) into the engine's ``Target``s. ``fanout run``,
``fanout plan`` and cluster takeovers share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fanout.engine import Target
from fanout.errors import UsageError
from fanout.forecast import Expected
from fanout.model import Host, Inventory
from fanout.policy import LevelChoice, decide_levels
from fanout.say import note
from fanout.steps import Adopt, render_condition, render_host

__all__ = ["Resume", "build_targets", "plan_levels", "plan_resume"]


@dataclass(frozen=True, slots=True)
class Resume:
    """What a resumed run continues.

    ``steps``: per selected host, the steps it still owes, in the inventory's order.
    ``runs``: per host, the earlier runs that may have left one of those steps running or
    finished it unseen (the host's ledger is checked against them). ``run_id``: the latest
    of them, recorded as the run this one continues. ``dropped``: owed work this inventory
    can no longer resume, one line each: the run then exits non-zero.
    """

    run_id: str
    steps: dict[str, tuple[str, ...]]
    runs: dict[str, tuple[str, ...]]
    dropped: tuple[str, ...] = ()
    # per host, the steps that succeeded before (``requires`` counts them); None: every
    # step of the host not in ``steps`` (a resume owes exactly what did not succeed)
    succeeded: dict[str, frozenset[str]] | None = None


def plan_resume(
    wanted: str,
    inventory: Inventory,
    hosts: tuple[Host, ...],
    state_dir: Path,
    *,
    quiet: bool = False,
) -> Resume:
    """What the selected ``hosts`` still owe, and what cannot be resumed.

    ``wanted`` "latest" (a bare ``--resume``): by database, every step whose latest outcome
    across all runs of this inventory (full, ``--limit`` and resumed runs alike) was not a
    success. A run id: that run's chain (the runs it continues and those continuing it).
    An owed step the host no longer names is reported in ``dropped``, never silently
    left out; a host no longer in the inventory is only noted (its removal was a choice).
    Says "nothing to resume" only when nothing is owed. Raises UsageError for an
    unknown run id, StoreError for an unreadable store. ``quiet`` (cron): the notes are
    not printed, only what ``dropped`` says.
    """
    from fanout.store import open_store

    tell = (lambda message: None) if quiet else note

    with open_store(state_dir) as store:
        if wanted == "latest":
            owed = store.owed_steps(inventory.path)
        else:
            if store.run_detail(wanted) is None:
                raise UsageError(f"no run {wanted!r} in the run store of {state_dir}")
            owed = store.owed_steps(None, runs=store.run_chain(wanted))
    where = f"run {wanted}" if wanted != "latest" else str(inventory.path)
    known = {h.name for h in inventory.hosts}
    for name in owed:
        if name not in known:
            tell(f"{name}: no longer in {inventory.path}; its unfinished steps are not resumed")
    steps: dict[str, tuple[str, ...]] = {}
    runs: dict[str, tuple[str, ...]] = {}
    dropped: list[str] = []
    latest_run = ""
    for host in hosts:
        debts = {debt.step: debt for debt in owed.get(host.name, ())}
        kept = tuple(step for step in host.steps if step in debts)
        dropped.extend(
            f"{host.name}: cannot resume {debt.step} ({debt.status} in run "
            f"{debt.run_id}): {inventory.path} no longer names it for this host"
            for debt in debts.values()
            if debt.step not in host.steps
        )
        if kept:
            steps[host.name] = kept
            chain = sorted({run for debt in debts.values() for run in debt.runs})
            runs[host.name] = tuple(chain)
            latest_run = max(latest_run, *chain)
    if not steps and not dropped:
        tell(f"nothing to resume: every step of {where} has succeeded since it last failed")
    return Resume(latest_run or wanted, steps, runs, tuple(dropped))


def plan_levels(
    inventory: Inventory, hosts: tuple[Host, ...], state_dir: Path
) -> dict[str, dict[str, LevelChoice]]:
    """The level of each host's level-policy steps, from the run store's history, decided
    once before the engine starts (``fanout plan`` shows the same choice)."""
    from datetime import datetime

    from fanout.policy import level_steps
    from fanout.store import read_level_history

    keys = {h.database_key for h in hosts if level_steps(inventory, h)}
    history = read_level_history(state_dir, keys) if keys else {}
    return decide_levels(inventory, hosts, history, datetime.now().astimezone())


def build_targets(
    inventory: Inventory,
    hosts: tuple[Host, ...],
    run_id: str,
    levels: dict[str, dict[str, LevelChoice]],
    resume: Resume | None = None,
    stop_running: bool = False,
    *,
    expected: Expected | None = None,
    token: int | None = None,
) -> list[Target]:
    """Each host's rendered steps, its ``when:`` condition, (resuming) the steps that
    already succeeded, which satisfy ``requires``, and what history expects of each step
    (``expected``, for the scheduler and the window). ``token``: cluster mode's fencing
    token, checked by every rman step on its host (a takeover passes its ``resume``)."""
    window_steps = frozenset(name for name, step in inventory.steps.items() if step.window_duration)
    targets = []
    for host in hosts:
        adopt = only = None
        if resume is not None:
            grace = inventory.settings.cancel_grace
            continues = resume.run_id if resume.run_id != run_id else None  # not a takeover
            adopt = Adopt(resume.runs[host.name], stop_running, grace, continues=continues)
            only = resume.steps[host.name]
        steps = render_host(
            inventory,
            host,
            run_id,
            only=only,
            adopt=adopt,
            levels=levels.get(host.name),
            token=token,
        )
        if resume is not None and resume.succeeded is not None:
            done = resume.succeeded.get(host.name, frozenset())
        else:
            done = frozenset(s for s in host.steps if only is not None and s not in only)
        when = render_condition(host, host.when) if host.when else None
        own = (expected or {}).get(host.name, {})
        targets.append(
            Target(
                host,
                steps,
                when=when,
                succeeded_before=done,
                expected=tuple(own.get(s.name) for s in steps),
                window_steps=window_steps,
            )
        )
    return targets
