"""Step records in etcd: written from the event stream (fenced), read back as events. Pure.

Layout under ``<prefix>/<group>/``::

    leader                          the leader key (lease-bound; create revision = token)
    run                             the group's current or last run: id, node, times, exit code
    runs/<id>/plan                  what RunStarted announced: hosts and their steps
    runs/<id>/leaders/<token>       one per node that led this run (the continuations)
    runs/<id>/hosts/<host>          status, cause, times, node
    runs/<id>/steps/<host>/<step>   status, attempt, times, exit status, cause, node, log path

Values are JSON. A leader stopped by SIGTERM hands the run over: the steps it cancelled or
never began are recorded as ``pending``, not as final, so the node that takes over runs them.
``CheckpointSink.emit`` is synchronous like every sink: it checks that
this node still leads (a lost leadership fires the run's cancel token right there, before
the engine can start the step it is announcing), turns the event into a record and queues
it; a writer task applies the queue in fenced transactions, the latest value per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from fanout.cluster.kv import Entry, Fenced
from fanout.cluster.leader import Leadership
from fanout.events import (
    CancelRequested,
    ConnectFailed,
    Event,
    HostConnected,
    HostFinished,
    HostStarted,
    HostStatus,
    OrphanUnconfirmed,
    PlannedHost,
    RunFinished,
    RunMeta,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
    StepStatus,
)

FINAL_STEP = frozenset({"ok", "failed", "cancelled", "skipped"})


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    group: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.group}"

    @property
    def leader(self) -> str:
        return f"{self.base}/leader"

    @property
    def run(self) -> str:
        return f"{self.base}/run"

    def of_run(self, run_id: str) -> str:
        return f"{self.base}/runs/{run_id}/"

    def plan(self, run_id: str) -> str:
        return f"{self.of_run(run_id)}plan"

    def leaders(self, run_id: str, token: int) -> str:
        return f"{self.of_run(run_id)}leaders/{token:015d}"

    def host(self, run_id: str, host: str) -> str:
        return f"{self.of_run(run_id)}hosts/{host}"

    def step(self, run_id: str, host: str, step: str) -> str:
        return f"{self.of_run(run_id)}steps/{host}/{step}"


def dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def load(entry: Entry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    try:
        value = json.loads(entry.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class CheckpointSink:
    """An EventSink recording the run's state in etcd, fenced by the leader's token."""

    def __init__(
        self,
        leadership: Leadership,
        keys: Keys,
        run_id: str,
        node: str,
        log_path: Callable[[str, str], str],
        *,
        write_plan: bool,
        handing_over: Callable[[], bool] = lambda: False,
    ) -> None:
        self._leadership = leadership
        self._handing_over = handing_over
        self._keys = keys
        self._run_id = run_id
        self._node = node
        self._log_path = log_path
        self._write_plan = write_plan
        self._steps: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.writes = 0  # transactions applied
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="checkpoints")

    def emit(self, event: Event) -> None:
        if not self._leadership.leading():
            return  # lose() has fired the run's token: the engine starts nothing more
        try:
            key, value = self._record(event)
            if key is not None and value is not None:
                self._pending[key] = dump(value)
        except Exception as exc:  # never raise: FanOut would drop this sink, and its check
            self._leadership.lose(f"a checkpoint could not be recorded: {exc!r}")
            return
        self._idle.clear()
        self._wake.set()

    def _record(self, event: Event) -> tuple[str | None, dict[str, Any] | None]:
        run, node = self._run_id, self._node
        match event:
            case StepOutput() | HostConnected() | ConnectFailed() | CancelRequested():
                return None, None
            case OrphanUnconfirmed():
                return None, None  # this node's run store records it; etcd holds step states
            case RunFinished():
                return None, None  # the run's end is written by run.py with the exit code
            case RunStarted():
                if not self._write_plan:
                    return None, None
                hosts = [
                    {
                        "name": h.name,
                        "priority": h.priority,
                        "oracle_sid": h.oracle_sid,
                        "address": h.address,
                        "steps": list(h.steps),
                        "database": h.database,
                        "levels": list(h.levels),
                    }
                    for h in event.hosts
                ]
                plan = {"inventory": event.inventory, "max_parallel": event.max_parallel}
                return self._keys.plan(run), {**plan, "hosts": hosts, "at": event.at}
            case HostStarted():
                value = {"status": "running", "started_at": event.at, "node": node}
                return self._keys.host(run, event.host), value
            case HostFinished():
                if self._handing_over() and event.status is not HostStatus.OK:
                    return None, None  # unfinished business for the node that takes over
                value = {
                    "status": event.status.value,
                    "cause": event.cause,
                    "ended_at": event.at,
                    "node": node,
                }
                return self._keys.host(run, event.host), value
            case StepStarted():
                record = {
                    "status": "running",
                    "attempt": event.attempt,
                    "started_at": event.at,
                    "node": node,
                    "token": self._leadership.token,
                    "log_path": self._log_path(event.host, event.step),
                    "detail": event.detail,
                }
                self._steps[(event.host, event.step)] = record
                return self._keys.step(run, event.host, event.step), record
            case StepFinished():
                record = dict(self._steps.get((event.host, event.step), {"node": node}))
                handed_over = self._handing_over() and event.status in (
                    StepStatus.CANCELLED,
                    StepStatus.SKIPPED,
                )
                record.update(
                    status="pending" if event.will_retry or handed_over else event.status.value,
                    attempt=event.attempt,
                    ended_at=event.at,
                    exit_status=event.exit_status,
                    cause=event.cause,
                )
                if event.detail is not None:
                    record["detail"] = event.detail
                self._steps[(event.host, event.step)] = record
                return self._keys.step(run, event.host, event.step), record
            case _:
                assert_never(event)

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending.items())
                self._pending.clear()
                try:
                    await self._leadership.write(batch)
                except Fenced:
                    self._pending.clear()
                    return
                self.writes += 1
            self._idle.set()

    async def flush(self) -> bool:
        """Wait until everything queued is written; False if leadership was lost first."""
        while self._leadership.leading():
            left = self._leadership.remaining()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, left)):
                    await self._idle.wait()
                    return self._leadership.leading()
        return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with _suppress_cancel():
                await self._task


class _suppress_cancel:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> bool:
        return kind is asyncio.CancelledError


# ---- reading back -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecords:
    """Everything etcd holds about one run."""

    run_id: str
    plan: dict[str, Any] | None
    hosts: dict[str, dict[str, Any]]
    steps: dict[tuple[str, str], dict[str, Any]]
    leaders: list[dict[str, Any]]

    def finished_steps(self) -> set[tuple[str, str]]:
        """(host, step) pairs that ended for good: never started again by a takeover."""
        return {key for key, rec in self.steps.items() if rec.get("status") in FINAL_STEP}


def parse_run(keys: Keys, run_id: str, entries: list[Entry]) -> RunRecords:
    base = keys.of_run(run_id)
    plan = None
    hosts: dict[str, dict[str, Any]] = {}
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    leaders: list[dict[str, Any]] = []
    for entry in entries:
        rest = entry.key[len(base) :]
        value = load(entry)
        if value is None:
            continue
        parts = rest.split("/")
        if parts == ["plan"]:
            plan = value
        elif len(parts) == 2 and parts[0] == "hosts":
            hosts[parts[1]] = value
        elif len(parts) == 3 and parts[0] == "steps":
            steps[(parts[1], parts[2])] = value
        elif len(parts) == 2 and parts[0] == "leaders":
            leaders.append({**value, "token": int(parts[1])})
    return RunRecords(run_id, plan, hosts, steps, leaders)


def replay(
    records: RunRecords,
    run: Mapping[str, Any] | None,
    *,
    with_plan: bool,
    finished: bool,
    inventory: str | None = None,
    meta: RunMeta | None = None,
) -> Iterator[Event]:
    """The events that rebuild ``records`` in a run store (the store is an EventSink).

    ``with_plan``: start with RunStarted (the store has no row of this run yet), naming
    ``inventory`` (this node's path of it; default: the leader's) and carrying ``meta``.
    ``finished``: end with RunFinished from ``run`` (the group's run record).
    """
    rid = records.run_id
    plan = records.plan
    if with_plan and plan is not None:
        yield RunStarted(
            run_id=rid,
            inventory=inventory if inventory is not None else str(plan.get("inventory", "")),
            hosts=tuple(
                PlannedHost(
                    name=h["name"],
                    priority=int(h["priority"]),
                    oracle_sid=h["oracle_sid"],
                    address=h["address"],
                    steps=tuple(h["steps"]),
                    database=str(h.get("database") or ""),
                    levels=tuple(h.get("levels") or ()),
                )
                for h in plan.get("hosts", [])
            ),
            max_parallel=int(plan.get("max_parallel", 1)),
            at=float(plan.get("at", 0.0)),
            meta=meta if meta is not None else RunMeta(),
        )
    for name, host in records.hosts.items():
        if host.get("started_at") is not None:
            yield HostStarted(rid, name, at=float(host["started_at"]))
    for (host_name, step), rec in records.steps.items():
        attempt = int(rec.get("attempt", 1))
        if rec.get("started_at") is not None:
            at = float(rec["started_at"])
            yield StepStarted(rid, host_name, step, attempt, "", at, rec.get("detail"))
        if rec.get("status") in FINAL_STEP:
            yield StepFinished(
                run_id=rid,
                host=host_name,
                step=step,
                attempt=attempt,
                status=StepStatus(rec["status"]),
                exit_status=rec.get("exit_status"),
                cause=rec.get("cause"),
                duration=0.0,
                will_retry=False,
                at=float(rec.get("ended_at") or 0.0),
                detail=rec.get("detail"),
            )
    for name, host in records.hosts.items():
        if host.get("status") in {s.value for s in HostStatus}:
            yield HostFinished(
                rid,
                name,
                HostStatus(host["status"]),
                host.get("cause"),
                0.0,
                None,
                float(host.get("ended_at") or 0.0),
            )
    if finished and run is not None and run.get("exit_code") is not None:
        yield RunFinished(
            rid, int(run["exit_code"]), None, 0.0, float(run.get("finished_at") or 0.0)
        )
