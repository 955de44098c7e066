"""A cancel forced while the first signal is still being sent skips the grace period."""

from __future__ import annotations

import asyncio

import pytest

from fanout.cancel import CancelToken
from fanout.engine import Engine
from fanout.events import CancelReason, RecordingSink, StepStarted
from fanout.transport.base import RemoteSignal
from tests.engine.test_engine import target
from tests.fakes import Behaviour, FakeProcess, FakeTransport, HostScript


async def test_force_during_the_int_signal_goes_straight_to_kill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forced while SIGINT is on its way: KILL follows at once, not after cancel_grace (30 s)."""
    sending = asyncio.Event()
    release = asyncio.Event()
    plain_signal = FakeProcess.signal

    async def slow_signal(self: FakeProcess, sig: RemoteSignal) -> None:
        if sig is RemoteSignal.INT:  # the kill channel takes a moment, as over SSH
            sending.set()
            await release.wait()
        await plain_signal(self, sig)

    monkeypatch.setattr(FakeProcess, "signal", slow_signal)
    stubborn = Behaviour(hang=True, ignore_int=True, ignore_term=True)
    transport = FakeTransport({"db1": HostScript(steps={"full": stubborn})})
    sink, token = RecordingSink(), CancelToken()
    engine = Engine(
        run_id="20261123T000000Z-test",
        inventory="test.yaml",
        targets=[target("db1", steps=("full",))],
        transport=transport,
        sink=sink,
        token=token,
        max_parallel=1,
        cancel_grace=30.0,
    )
    run = asyncio.create_task(engine.run())
    async with asyncio.timeout(5):
        while not any(isinstance(e, StepStarted) for e in sink.events):
            await asyncio.sleep(0.001)
        token.cancel(CancelReason.SIGINT)
        await sending.wait()
        token.cancel(CancelReason.SIGINT)  # the second one forces
        release.set()
        assert await run == 130  # within the deadline: the grace was skipped
    signals = [e[3] for e in transport.journal.of("signal")]
    assert signals == ["INT", "KILL"]
