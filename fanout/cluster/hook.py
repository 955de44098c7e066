"""Cluster mode's ``RunHook``: one leader's share of a run, and copying a run into a store.

``ClusterHook`` names the run and supplies the fencing token and, on a takeover, the steps not
finished with the ``--resume`` adoption (``targets.build_targets`` renders them like any run's:
level policy, ``when:``, ``requires``, expected durations); it puts the checkpoint writer in
front of the run store and maps a lost leadership to ``ExitCode.FENCED``. ``load_records``
copies a run's records from etcd into this node's run store (one history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fanout.cancel import CancelToken
from fanout.cluster.checkpoint import CheckpointSink, RunRecords, replay
from fanout.cluster.leader import Leadership
from fanout.errors import ExitCode, StoreError
from fanout.events import CancelReason, Event, EventSink, RunMeta, RunStarted
from fanout.model import AdoptPolicy
from fanout.targets import Resume

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
    """Write ``records`` into ``store``; True if the plan (RunStarted) is in the store.

    A step another node ran keeps that node's log path as ``node:/path``. Raises StoreError
    if the log paths cannot be recorded (a failed event is kept in ``store.write_error``).
    """
    run_id = records.run_id
    detail = store.run_detail(run_id)
    known = detail is not None and bool(detail.hosts)  # the runner has begun the run: no plan
    with_plan = not known and records.plan is not None
    meta = RunMeta(inventory_sha256=node.inventory.sha256, argv=tuple(node.options.argv))
    events = replay(
        records,
        run,
        with_plan=with_plan,
        finished=finished,
        inventory=str(node.inventory.path),
        meta=meta,
    )
    for event in events:
        store.emit(event)
    me = node.settings.node
    paths = {}
    for key, rec in records.steps.items():
        path, who = rec.get("log_path"), rec.get("node")
        if path is not None and rec.get("started_at") is not None and who != me:
            paths[key] = f"{who}:{path}"
    if paths:
        store.set_log_paths(run_id, paths)
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
        self.stop_running = node.settings.adopt is AdoptPolicy.STOP
        self.takeover = None if records is None else _still_to_do(records, run_id, node)

    @property
    def fencing_token(self) -> int:
        return self.leadership.token

    def handing_over(self) -> bool:
        """SIGTERM (a shutdown, a service stop) stops this node, not the run: another node
        continues it. An operator's q or Ctrl-C ends the run for the whole group."""
        token = self.token
        return token is not None and token.fired and token.reason is CancelReason.SIGTERM

    def wire(self, store: Store, token: CancelToken) -> list[EventSink]:
        self.token = token
        self.leadership.on_lost(lambda _why: token.cancel(CancelReason.LEADERSHIP_LOST))
        recorder: EventSink = store
        if self.records is not None:
            try:
                copied = load_records(store, self.records, None, self.node, finished=False)
            except StoreError:  # as a failed event: no step may start unrecorded
                token.cancel(CancelReason.STORE)
                copied = True
            if copied:
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
            return ExitCode.FENCED
        if (
            code == 0
            and self.records is not None
            and any(r.get("status") == "failed" for r in self.records.steps.values())
        ):
            return ExitCode.FAILED  # the dead leader's share of the run had a failure
        return code

    async def close(self) -> bool:
        """Write what is queued, stop the writer; False if leadership was lost first."""
        if self.sink is None:
            return self.leadership.leading()
        flushed = await self.sink.flush()
        await self.sink.close()
        return flushed


def _still_to_do(records: RunRecords, run_id: str, node: Node) -> Resume:
    """A takeover as a resume of the same run: per host, the planned steps that did not end
    for good (those it still names), adopting what the dead leader may have left running
    (``Adopt(runs=(run_id,))``: its lock is waited for or stopped, its ledger is read)."""
    hosts = node.hosts
    planned = (
        {h["name"]: tuple(h["steps"]) for h in records.plan.get("hosts", [])}
        if records.plan is not None
        else {h.name: h.steps for h in hosts}
    )
    done = records.finished_steps()
    steps: dict[str, tuple[str, ...]] = {}
    succeeded: dict[str, frozenset[str]] = {}
    for host in hosts:
        todo = tuple(
            s for s in planned.get(host.name, ()) if (host.name, s) not in done and s in host.steps
        )
        if todo:
            steps[host.name] = todo
            succeeded[host.name] = frozenset(
                step
                for (name, step), rec in records.steps.items()
                if name == host.name and rec.get("status") == "ok"
            )
    runs: dict[str, tuple[str, ...]] = dict.fromkeys(steps, (run_id,))
    return Resume(run_id, steps, runs, succeeded=succeeded)
