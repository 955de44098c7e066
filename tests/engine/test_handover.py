"""A step's end reaches the sinks together with the host's next step start (one store commit),
and never later than the host's next remote action: the engine over the fake transport, with a
sink that notes, in the transport's own journal, every hand-over as it arrives."""

from __future__ import annotations

from collections.abc import Sequence

from fanout.engine import Target
from fanout.events import Event, StepFinished, StepStarted
from tests.engine.test_conditions import FAIL, drive, step, target
from tests.fakes import Behaviour, FakeTransport, HostScript, Journal


class Handed:
    """Takes events alone or together, and notes each hand-over in ``journal``."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.calls: list[tuple[Event, ...]] = []

    def emit(self, event: Event) -> None:
        self._note((event,))

    def emit_together(self, events: Sequence[Event]) -> None:
        self._note(tuple(events))

    def _note(self, events: tuple[Event, ...]) -> None:
        self.calls.append(events)
        for event in events:
            if isinstance(event, StepFinished):
                self.journal.add("finished", event.host, event.step, str(event.attempt))


def _steps(events: tuple[Event, ...]) -> list[tuple[str, str, str]]:
    out = []
    for e in events:
        if isinstance(e, StepFinished):
            out.append(("finished", e.host, e.step))
        elif isinstance(e, StepStarted):
            out.append(("started", e.host, e.step))
    return out


async def _run(
    targets: list[Target], scripts: dict[str, HostScript]
) -> tuple[Handed, FakeTransport]:
    transport = FakeTransport(scripts)
    sink = Handed(transport.journal)
    await drive(targets, transport, sink)
    return sink, transport


async def test_a_step_end_and_the_next_start_are_handed_over_together() -> None:
    sink, _ = await _run([target("a", step("full"), step("archivelog"), step("controlfile"))], {})
    together = [_steps(call) for call in sink.calls if len(call) > 1]
    assert together == [
        [("finished", "a", "full"), ("started", "a", "archivelog")],
        [("finished", "a", "archivelog"), ("started", "a", "controlfile")],
    ]
    alone = [_steps(call) for call in sink.calls if len(call) == 1 and _steps(call)]
    assert alone == [[("started", "a", "full")], [("finished", "a", "controlfile")]]


async def test_a_step_end_is_handed_over_before_the_host_does_anything_more() -> None:
    """Whatever follows a step (a condition, a retry, a reconnect, a skip, the host's end),
    every sink has the step's end before the host's next remote action or event."""
    lost = Behaviour(lose_connection=True)
    targets = [
        target("cond", step("full"), step("archivelog", when="test -d /arch # arch-when")),
        target("retry", step("full", retries=1), step("archivelog")),
        target("lost", step("full"), step("archivelog")),
        target("unmet", step("full"), step("archivelog", requires=("full",)), step("controlfile")),
    ]
    scripts = {
        "retry": HostScript(steps={"full": [FAIL, Behaviour()]}),
        "lost": HostScript(steps={"full": lost}),
        "unmet": HostScript(steps={"full": FAIL}),
    }
    sink, transport = await _run(targets, scripts)
    entries = transport.journal.entries
    for i, (kind, host, *_rest) in enumerate(entries):
        if kind not in ("start", "connect", "close"):
            continue
        ends = {e[2] for e in entries[:i] if e[0] == "finished" and e[1] == host}
        starts = [e[2] for e in entries[:i] if e[0] == "start" and e[1] == host]
        assert set(starts) - {"arch-when"} <= ends, (i, entries[i], starts, ends)
    finished = [c for c in sink.calls if any(isinstance(e, StepFinished) for e in c)]
    assert all(len(_steps(c)) <= 2 for c in finished)
    # everything the host reported reached the sink: nothing held back at its end
    ends = {(e[1], e[2]) for e in entries if e[0] == "finished"}
    assert {(t.host.name, s.name) for t in targets for s in t.steps} == ends


async def test_retry_and_skip_keep_their_order() -> None:
    sink, _ = await _run(
        [target("r", step("full", retries=1), step("archivelog", requires=("full",)))],
        {"r": HostScript(steps={"full": FAIL})},
    )
    order = [s for call in sink.calls for s in _steps(call)]
    assert order == [
        ("started", "r", "full"),
        ("finished", "r", "full"),  # will retry: alone, before the retry's delay
        ("started", "r", "full"),
        ("finished", "r", "full"),
        ("finished", "r", "archivelog"),  # skipped: its prerequisite failed
    ]
    assert all(len(call) == 1 for call in sink.calls)  # nothing started right after an end
