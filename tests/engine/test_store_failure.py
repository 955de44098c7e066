"""A run store that stops recording mid-run stops the run: the engine over a fake transport with
the real SQLite store, whose writes are refused from a chosen moment on (``PRAGMA query_only``:
SQLite itself rejects every write, as it does on a read-only or full file system)."""

from __future__ import annotations

from pathlib import Path

from fanout.cancel import CancelToken
from fanout.engine import Engine
from fanout.errors import ExitCode, StoreError
from fanout.events import (
    CancelReason,
    Event,
    FanOut,
    RecordingSink,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.store import Store, open_store
from tests.engine.test_engine import target
from tests.fakes import Behaviour, FakeTransport, HostScript


class RefuseWritesAfter:
    """A sink placed after the store: once ``host``'s ``step`` has started (and been recorded),
    the store's database refuses every further write."""

    def __init__(self, store: Store, host: str, step: str) -> None:
        self.store, self.host, self.step = store, host, step

    def emit(self, event: Event) -> None:
        if isinstance(event, StepStarted) and (event.host, event.step) == (self.host, self.step):
            self.store._db.execute("PRAGMA query_only = ON")  # fault injection point


async def test_no_step_starts_after_the_store_fails(tmp_path: Path) -> None:
    """After the store fails no step starts anywhere, the running one is stopped, exit 74."""
    slow = Behaviour(seconds=5.0)
    transport = FakeTransport({"b": HostScript(steps={"full": slow})})
    token = CancelToken()
    recording = RecordingSink()
    errors: list[StoreError] = []

    def failed(error: StoreError) -> None:
        errors.append(error)
        token.cancel(CancelReason.STORE)

    with open_store(tmp_path, on_write_error=failed) as store:
        # a's full ends and its archivelog starts after b's slow full started: the write of
        # those two, handed over together, is the first one refused
        sink = FanOut([store, RefuseWritesAfter(store, "b", "full"), recording])
        engine = Engine(
            run_id="r1",
            inventory="test.yaml",
            targets=[target("a"), target("b")],
            transport=transport,
            sink=sink,
            token=token,
            max_parallel=2,
            cancel_grace=0.05,
            kill_grace=0.05,
        )
        code = await engine.run()
        detail = store.run_detail("r1")
    assert code == ExitCode.IO_ERROR
    assert len(errors) == 1
    assert "StepFinished and StepStarted not recorded" in str(errors[0])
    started_remotely = [(host, step) for _, host, step in transport.journal.of("start")]
    assert started_remotely == [("a", "full"), ("b", "full")]
    assert detail is not None
    recorded = {(h.name, s.step) for h in detail.hosts for s in h.steps if s.attempt > 0}
    assert set(started_remotely) <= recorded  # nothing ran unrecorded
    finished = {(e.host, e.step): e.status for e in recording.events if isinstance(e, StepFinished)}
    assert finished[("a", "full")] is StepStatus.OK
    assert finished[("b", "full")] is StepStatus.CANCELLED
    assert finished[("a", "archivelog")] is StepStatus.CANCELLED  # its start was refused
    assert [e for e in recording.events if isinstance(e, StepStarted)][-1].step == "archivelog"
