"""The end of a run waits for the transport's orphan clean-ups and reports what is left."""

from __future__ import annotations

import asyncio

from fanout.cancel import CancelToken
from fanout.engine import Engine
from fanout.events import OrphanUnconfirmed, RecordingSink, RunFinished
from fanout.transport.base import Orphan
from tests.engine.test_engine import target
from tests.fakes import FakeTransport


class Watch:
    """An OrphanWatch whose clean-up takes ``delay`` seconds and leaves ``left``."""

    def __init__(self, left: list[Orphan], delay: float = 0.0) -> None:
        self.left = left
        self.delay = delay
        self.waited = False

    async def wait_orphans(self) -> list[Orphan]:
        await asyncio.sleep(self.delay)
        self.waited = True
        return self.left


async def run(watch: Watch) -> tuple[int, RecordingSink]:
    sink = RecordingSink()
    engine = Engine(
        run_id="20261123T000000Z-test",
        inventory="test.yaml",
        targets=[target("db1")],
        transport=FakeTransport(),
        sink=sink,
        token=CancelToken(),
        max_parallel=1,
        cancel_grace=0.05,
        orphans=watch,
    )
    return await engine.run(), sink


async def test_unconfirmed_orphan_is_an_event_before_run_finished_and_exit_1() -> None:
    """Every step ok but a group may still run: OrphanUnconfirmed, then RunFinished exit 1."""
    watch = Watch([Orphan("db1", 4242, "may still be running: not confirmed stopped within 5m")])
    code, sink = await run(watch)
    assert code == 1
    orphan, finished = sink.events[-2:]
    assert isinstance(orphan, OrphanUnconfirmed)
    assert (orphan.host, orphan.pgid) == ("db1", 4242)
    assert isinstance(finished, RunFinished)
    assert finished.exit_code == 1


async def test_run_finishes_only_after_the_clean_ups() -> None:
    """RunFinished comes after the transport's clean-ups end; none left means exit 0."""
    watch = Watch([], delay=0.05)
    code, sink = await run(watch)
    assert watch.waited
    assert code == 0
    assert not [e for e in sink.events if isinstance(e, OrphanUnconfirmed)]
