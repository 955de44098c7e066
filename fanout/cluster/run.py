"""``fanout run`` in cluster mode: lead the group's run or stand by, dedupe, fenced takeover.

Every node started for a group (from cron, at the same time or late) campaigns for the
leader key. The winner looks at the group's run record:

- a run that finished while this node waited, or within ``dedupe`` → nothing to do: it
  copies that run into its own run store (one history), says so in one line, exits 0;
- a run that is unfinished (its leader died or was cut off) → **takeover**: the same run id,
  the steps the checkpoints show finished are never started again, every other step runs
  with the ``--resume`` adoption (wait for, or stop, what the dead leader left running on
  the host; a step the host's ledger shows finished is not taken twice);
- otherwise → a new run.

The losers stand by: one line naming the leader, then (interactive) the leader's progress,
polling the leader key every ``poll`` seconds; when it goes away they campaign again.
A leader that loses its lease stops starting steps, stops its remote work through the
cancel token and exits ``ExitCode.FENCED`` (76).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fanout.cluster.checkpoint import Keys, RunRecords, dump, load, parse_run
from fanout.cluster.hook import ClusterHook, load_records
from fanout.cluster.kv import KV, ClusterError, Unavailable
from fanout.cluster.leader import Holder, Leadership, campaign
from fanout.errors import ExitCode
from fanout.model import ClusterSettings, Host, Inventory, format_duration
from fanout.runner import RunOptions, _run
from fanout.say import note
from fanout.steps import new_run_id


def run_clustered(
    options: RunOptions,
    inventory: Inventory,
    hosts: tuple[Host, ...],
    state_dir: Path,
    out: TextIO,
) -> int:
    """Run ``inventory`` as one node of its group; returns the exit code."""
    return asyncio.run(_main(options, inventory, hosts, state_dir, out))


async def _main(
    options: RunOptions, inventory: Inventory, hosts: tuple[Host, ...], state_dir: Path, out: TextIO
) -> int:
    try:
        from fanout.cluster.etcd import open_kv
    except ImportError as exc:
        raise ClusterError(
            f"{inventory.path}: settings.cluster needs the etcd client ({exc.name} is missing):"
            " pip install 'fanout[cluster]'"
        ) from exc

    settings = inventory.settings.cluster
    assert settings is not None
    kv = open_kv(settings)
    try:
        return await Node(kv, settings, options, inventory, hosts, state_dir, out).run()
    finally:
        await kv.close()


@dataclass
class Progress:
    """What an interactive standby has shown: the run it follows and each step's last state."""

    run_id: str | None = None
    states: dict[tuple[str, str], str] = field(default_factory=dict)


class Node:
    def __init__(
        self,
        kv: KV,
        settings: ClusterSettings,
        options: RunOptions,
        inventory: Inventory,
        hosts: tuple[Host, ...],
        state_dir: Path,
        out: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.settings = settings
        self.options = options
        self.inventory = inventory
        self.hosts = hosts
        self.state_dir = state_dir
        self.out = out
        self.keys = Keys(settings.prefix, settings.group)
        self.clock = clock
        self.wall = wall
        self.started_at = wall()
        self.poll = min(0.25, settings.ttl / 8)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> int:
        """Campaign until this node led (or found nothing to do). Bounded by the group's run:
        each round waits for the current leader key to go away; etcd unreachable for
        ``unavailable_after`` ends it with ExitCode.CLUSTER_UNAVAILABLE.

        SIGINT/SIGTERM before this node leads end it with 130/143 (while it leads, the run's
        own handlers take over: they fire the cancel token as in a local run)."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        stopped: list[int] = []

        def on_signal(code: int) -> None:
            if not stopped:
                stopped.append(code)
                main.cancel()

        loop.add_signal_handler(signal.SIGINT, on_signal, ExitCode.CANCELLED)
        loop.add_signal_handler(signal.SIGTERM, on_signal, ExitCode.TERMINATED)
        try:
            return await self._campaign_until_done()
        except asyncio.CancelledError:
            if not stopped:
                raise
            note(f"stopped by {'SIGINT' if stopped[0] == ExitCode.CANCELLED else 'SIGTERM'} "
                 "before this node started any step")  # fmt: skip
            return stopped[0]

    async def _campaign_until_done(self) -> int:
        unreachable_since: float | None = None
        announced: int | None = None
        seen = Progress()
        while True:
            try:
                outcome = await campaign(
                    self.kv,
                    self.keys.leader,
                    self.settings.node,
                    os.getpid(),
                    self.settings.ttl,
                    request_timeout=self.settings.request_timeout,
                )
            except Unavailable as exc:
                now = self.clock()
                unreachable_since = unreachable_since if unreachable_since is not None else now
                if now - unreachable_since >= self.settings.unavailable_after:
                    waited = format_duration(round(now - unreachable_since))
                    note(f"cluster unavailable for {waited}, nothing started: {exc}")
                    return ExitCode.CLUSTER_UNAVAILABLE
                await asyncio.sleep(self.poll)
                continue
            unreachable_since = None
            if isinstance(outcome, Leadership):
                code = await self.lead(outcome)
                if code is not None:
                    return code
                continue
            if outcome.token and announced != outcome.token:
                announced = outcome.token
                note(
                    f"standing by: node {outcome.node} leads group {self.settings.group} "
                    f"(this node: {self.settings.node})"
                )
            await self.stand_by(outcome, seen)

    async def stand_by(self, holder: Holder, seen: Progress) -> None:
        """Return once the leader key is gone or another node holds it (or etcd fails)."""
        while True:
            try:
                entry = await self.kv.get(self.keys.leader)
                if not self.options.batch:  # after the leader check: its last changes too
                    await self._show_progress(holder, seen)
            except ClusterError:
                return
            if entry is None or entry.create_revision != holder.token:
                return
            await asyncio.sleep(self.poll)

    async def _show_progress(self, holder: Holder, seen: Progress) -> None:
        """Interactive standby: one line per step state change of the leader's run (the run
        that was unfinished when this node first looked, up to its last change)."""
        run = load(await self.kv.get(self.keys.run))
        if run is None:
            return
        run_id = str(run["run_id"])
        if seen.run_id is None and run.get("finished_at") is None:
            seen.run_id = run_id
        if seen.run_id != run_id:
            return
        records = parse_run(self.keys, run_id, await self.kv.get_prefix(self.keys.of_run(run_id)))
        by_time = sorted(records.steps.items(), key=lambda kv: kv[1].get("started_at") or 0.0)
        for (host, step), rec in by_time:
            status = str(rec.get("status"))
            if seen.states.get((host, step)) != status:
                seen.states[(host, step)] = status
                node = rec.get("node", holder.node)
                print(f"[{node}] {run_id} {host} {step}: {status}", file=self.out)
        self.out.flush()

    # ------------------------------------------------------------------ leading

    async def lead(self, leadership: Leadership) -> int | None:
        """Lead: dedupe, take over or start a run. None if leadership was lost before any
        work began (the caller campaigns again)."""
        leadership.start()
        try:
            try:
                run = load(await self._read(leadership, lambda: self.kv.get(self.keys.run)))
                now = self.wall()
                if run is not None and self._counts_as_done(run, now):
                    await self._sync_history(run)
                    ago = format_duration(max(0, round(now - float(run["finished_at"]))))
                    note(
                        f"nothing to do: run {run['run_id']} of group {self.settings.group} "
                        f"finished {ago} ago on node {run.get('node')} "
                        f"(exit {run.get('exit_code')})"
                    )
                    return 0
                takeover = (
                    run is not None
                    and run.get("finished_at") is None
                    and now - float(run.get("started_at", 0)) < max(self.settings.dedupe, 1.0)
                )
                records: RunRecords | None = None
                if takeover:
                    assert run is not None
                    run_id = str(run["run_id"])
                    entries = await self._read(
                        leadership, lambda: self.kv.get_prefix(self.keys.of_run(run_id))
                    )
                    records = parse_run(self.keys, run_id, entries)
                else:
                    run_id = new_run_id()
                    # etcd keeps the records of this run and the one before it (a late node
                    # or a standby copies the last one); older ones go in the same write.
                    previous = run.get("run_id") if run is not None else None
                    older = run.get("previous") if run is not None else None
                    run = {
                        "run_id": run_id,
                        "previous": previous,
                        "node": self.settings.node,
                        "started_at": now,
                        "finished_at": None,
                        "exit_code": None,
                        "inventory_sha256": self.inventory.sha256,
                    }
                    stale = [self.keys.of_run(str(older))] if older else []
                    await leadership.write([(self.keys.run, dump(run))], stale)
                continuation = {
                    "node": self.settings.node,
                    "pid": os.getpid(),
                    "at": now,
                    "takeover": takeover,
                }
                await leadership.write(
                    [(self.keys.leaders(run_id, leadership.token), dump(continuation))]
                )
            except ClusterError:
                return None  # lost before anything started: campaign again
            if takeover:
                assert records is not None
                before = ", ".join(sorted({str(x.get("node")) for x in records.leaders}))
                note(
                    f"taking over run {run_id} of group {self.settings.group} "
                    f"(led before by {before or '?'}; token {leadership.token})"
                )
            else:
                note(
                    f"leading run {run_id} of group {self.settings.group} "
                    f"(node {self.settings.node}, token {leadership.token})"
                )
            hook = ClusterHook(self, leadership, run_id, records)
            code = await _run(
                self.options, self.inventory, self.hosts, self.state_dir, self.out, None, hook
            )
            if leadership.lost is not None:
                note(
                    f"lost leadership of run {run_id}: {leadership.lost}; "
                    f"remote work stopped, exit {ExitCode.FENCED:d}"
                )
                return ExitCode.FENCED
            if not await hook.close():
                note(f"lost leadership of run {run_id} at its end: {leadership.lost}")
                return ExitCode.FENCED
            if hook.handing_over():
                note(f"stopped by SIGTERM: run {run_id} is left to a standby to continue")
                return code
            finished = {**run, "finished_at": self.wall(), "exit_code": code}
            finished["node"] = self.settings.node
            try:
                await leadership.write([(self.keys.run, dump(finished))])
            except ClusterError as exc:
                note(f"run {run_id} ended but its end was not recorded: {exc}")
                return ExitCode.FENCED
            return code
        finally:
            await leadership.resign()

    def _counts_as_done(self, run: dict[str, Any], now: float) -> bool:
        """A finished run counts if it ended while this node was up, or within ``dedupe``."""
        ended = run.get("finished_at")
        if ended is None:
            return False
        return float(ended) >= self.started_at - 1.0 or now - float(ended) < self.settings.dedupe

    async def _read(self, leadership: Leadership, call: Callable[[], Any]) -> Any:
        """A read retried while this node leads. Raises ClusterError once it does not."""
        while leadership.leading():
            try:
                return await call()
            except Unavailable:
                await asyncio.sleep(0.2)
        raise ClusterError(f"leadership lost: {leadership.lost}")

    async def _sync_history(self, run: dict[str, Any]) -> None:
        """Copy the group's run from etcd into this node's run store (best effort)."""
        from fanout.store import StoreError, open_store

        run_id = str(run["run_id"])
        try:
            records = parse_run(
                self.keys, run_id, await self.kv.get_prefix(self.keys.of_run(run_id))
            )
        except ClusterError as exc:
            note(f"warning: run {run_id} not copied into the local run store: {exc}")
            return
        try:
            with open_store(self.state_dir) as store:
                load_records(store, records, run, self, finished=True)
        except StoreError as exc:
            note(f"warning: run {run_id} not copied into the local run store: {exc}")
