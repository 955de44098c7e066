"""Cluster mode's ``RunHook``: one leader's share of a run, and copying a run into a store.

``ClusterHook`` names the run, renders the targets with the fencing token (and, on a
takeover, only the steps not finished, with the ``--resume`` adoption), puts the checkpoint
writer in front of the run store and maps a lost leadership to ``EXIT_FENCED``.
``load_records`` copies a run's records from etcd into this node's run store (one history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fanout.cancel import CancelToken
from fanout.cluster import EXIT_FENCED
from fanout.cluster.checkpoint import CheckpointSink, RunRecords, replay
from fanout.cluster.leader import Leadership
from fanout.engine import Target
from fanout.events import CancelReason, Event, EventSink, RunStarted
from fanout.model import AdoptPolicy, Host, Inventory
from fanout.steps import Adopt, render_host

if TYPE_CHECKING:
    from fanout.cluster.run import Node
    from fanout.store import Store


def load_records(
    store: Store,
    records: RunRecords,
    run: dict[str, Any] | None,
    node: Node,
    *,
    finished: bool,
) -> bool:
    """Write ``records`` into ``store``; True if the plan (RunStarted) was written.

    A step another node ran keeps that node's log path as ``node:/path``.
    """
    from fanout.paths import step_log_path

    run_id = records.run_id
    detail = store.run_detail(run_id)
    known = detail is not None and bool(detail.hosts)  # the runner has begun the run: no plan
    me = node.settings.node

    def remote_path(host: str, step: str) -> str | None:
        rec = records.steps.get((host, step), {})
        path, who = rec.get("log_path"), rec.get("node")
        if path is None:
            return None
        return str(path) if who == me else f"{who}:{path}"

    store.begin_run(
        run_id=run_id,
        inventory_path=str(node.inventory.path.resolve()),
        inventory_sha256=node.inventory.sha256,
        argv=list(node.options.argv),
        log_path=remote_path,
    )
    with_plan = not known and records.plan is not None
    for event in replay(records, run, with_plan=with_plan, finished=finished):
        store.emit(event)
    store.begin_run(  # this node's own steps from now on log here
        run_id=run_id,
        inventory_path=str(node.inventory.path.resolve()),
        inventory_sha256=node.inventory.sha256,
        argv=list(node.options.argv),
        log_path=lambda host, step: str(step_log_path(node.state_dir, run_id, host, step)),
    )
    return with_plan or known


class _StoreBehindPlan:
    """The store, minus the RunStarted of a takeover whose plan was already copied in."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def emit(self, event: Event) -> None:
        if not isinstance(event, RunStarted):
            self._store.emit(event)


class ClusterHook:
    """The runner's ``RunHook`` for one leader's share of a run."""

    def __init__(
        self, node: Node, leadership: Leadership, run_id: str, records: RunRecords | None
    ) -> None:
        self.node = node
        self.leadership = leadership
        self.run_id = run_id
        self.records = records
        self.sink: CheckpointSink | None = None
        self.token: CancelToken | None = None

    def targets(self, inventory: Inventory, hosts: tuple[Host, ...]) -> list[Target]:
        token = self.leadership.token
        records = self.records
        if records is None:
            return [Target(h, render_host(inventory, h, self.run_id, token=token)) for h in hosts]
        settings = self.node.settings
        adopt = Adopt(
            self.run_id,
            stop=settings.adopt is AdoptPolicy.STOP,
            grace=inventory.settings.cancel_grace,
        )
        planned = (
            {h["name"]: tuple(h["steps"]) for h in records.plan.get("hosts", [])}
            if records.plan is not None
            else {h.name: h.steps for h in hosts}
        )
        done = records.finished_steps()
        targets = []
        for host in hosts:
            todo = [s for s in planned.get(host.name, ()) if (host.name, s) not in done]
            todo = [s for s in todo if s in host.steps]
            if todo:
                rendered = render_host(
                    inventory, host, self.run_id, only=todo, adopt=adopt, token=token
                )
                targets.append(Target(host, rendered))
        return targets

    def handing_over(self) -> bool:
        """SIGTERM (a shutdown, a service stop) stops this node, not the run: another node
        continues it. An operator's q or Ctrl-C ends the run for the whole group."""
        token = self.token
        return token is not None and token.fired and token.reason is CancelReason.SIGTERM

    def wire(self, store: Store, token: CancelToken) -> list[EventSink]:
        self.token = token
        self.leadership.on_lost(lambda _why: token.cancel(CancelReason.LEADERSHIP_LOST))
        recorder: EventSink = store
        if self.records is not None and load_records(
            store, self.records, None, self.node, finished=False
        ):
            recorder = _StoreBehindPlan(store)
        from fanout.paths import step_log_path

        state_dir, run_id = self.node.state_dir, self.run_id
        self.sink = CheckpointSink(
            self.leadership,
            self.node.keys,
            run_id,
            self.node.settings.node,
            lambda host, step: str(step_log_path(state_dir, run_id, host, step)),
            write_plan=self.records is None or self.records.plan is None,
            handing_over=self.handing_over,
        )
        self.sink.start()
        return [self.sink, recorder]

    def exit_code(self, code: int) -> int:
        if self.leadership.lost is not None:
            return EXIT_FENCED
        if (
            code == 0
            and self.records is not None
            and any(r.get("status") == "failed" for r in self.records.steps.values())
        ):
            return 1  # the dead leader's share of the run had a failure
        return code

    async def close(self) -> bool:
        """Write what is queued, stop the writer; False if leadership was lost first."""
        if self.sink is None:
            return self.leadership.leading()
        flushed = await self.sink.flush()
        await self.sink.close()
        return flushed
