"""The hand-over of received output to its consumer (``framing.Output``, ``SshProcess``).

A consumer is woken ``tick`` seconds after the first chunk it has not seen, and takes every
chunk of one stream that came meanwhile as one batch; the end of the output and a full queue
wake it at once. The channel callbacks are driven by hand, as asyncssh calls them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

from fanout.events import Stream
from fanout.model import Host
from fanout.transport.base import OutputBatch, OutputLine
from fanout.transport.framing import OUTPUT_TICK, QUEUE_LINES, Output
from fanout.transport.ssh import SshProcess, SshSession

OUT, ERR = Stream.STDOUT, Stream.STDERR


class _Channel:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def get_returncode(self) -> int | None:
        return 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


class _Session:
    host = Host("db1", "127.0.0.1", 1, "DB1", "/u01")
    label = "fanout@127.0.0.1"
    lost_at = None


async def _consume(output: Output, got: list[tuple[float, OutputBatch]]) -> None:
    """What ``SshProcess.batches`` does with ``output``, each batch stamped when taken."""
    while True:
        if (batch := output.take()) is not None:
            got.append((time.monotonic(), batch))
        elif output.ended:
            return
        else:
            await output.wait_readable()


async def test_chunks_within_a_tick_are_handed_over_once_per_stream_in_order() -> None:
    output = Output(lambda: None, tick=0.2)
    got: list[tuple[float, OutputBatch]] = []
    consumer = asyncio.create_task(_consume(output, got))
    await asyncio.sleep(0)  # the consumer waits
    start = time.monotonic()
    for batch in (
        OutputBatch(OUT, ("a1", "a2")),
        OutputBatch(OUT, ("a3",)),
        OutputBatch(ERR, ("e1",)),
        OutputBatch(ERR, ("e2",)),
        OutputBatch(OUT, ("b1",)),
    ):
        output.put(batch)
        await asyncio.sleep(0.01)  # separate packets, all within one tick
    assert got == []  # nobody was woken per packet
    await asyncio.sleep(0.25)
    assert [b for _, b in got] == [
        OutputBatch(OUT, ("a1", "a2", "a3")),
        OutputBatch(ERR, ("e1", "e2")),
        OutputBatch(OUT, ("b1",)),
    ]
    assert all(0.19 <= at - start < 0.5 for at, _ in got)  # one wake, a tick after the first
    output.put(OutputBatch(OUT, ("c1",)))  # the next tick starts with the next chunk
    await asyncio.sleep(0.25)
    assert got[-1][1] == OutputBatch(OUT, ("c1",))
    output.end()
    await asyncio.wait_for(consumer, 1)
    assert output.queued == 0


async def test_the_end_of_the_output_wakes_the_consumer_at_once() -> None:
    output = Output(lambda: None, tick=30.0)
    got: list[tuple[float, OutputBatch]] = []
    consumer = asyncio.create_task(_consume(output, got))
    await asyncio.sleep(0)
    output.put(OutputBatch(OUT, ("Recovery Manager complete.",)))
    output.end()
    await asyncio.wait_for(consumer, 1)  # not 30 s
    assert [b.lines for _, b in got] == [("Recovery Manager complete.",)]


async def test_a_full_queue_wakes_the_consumer_at_once_and_resumes_the_channel() -> None:
    resumed: list[int] = []
    output = Output(lambda: resumed.append(1), tick=30.0)
    got: list[tuple[float, OutputBatch]] = []
    consumer = asyncio.create_task(_consume(output, got))
    await asyncio.sleep(0)
    assert not output.put(OutputBatch(OUT, ("x",) * (QUEUE_LINES - 1)))
    assert output.put(OutputBatch(OUT, ("y",)))  # full: the caller pauses the channel
    await asyncio.sleep(0.05)
    assert sum(len(b.lines) for _, b in got) == QUEUE_LINES
    assert resumed == [1]
    output.end()
    await asyncio.wait_for(consumer, 1)


async def test_an_ssh_process_hands_a_burst_of_packets_over_as_one_batch() -> None:
    """Through SshProcess's channel callbacks and ``batches()`` with the default tick."""
    proc = SshProcess(cast(SshSession, cast(Any, _Session())))
    proc.connection_made(cast(Any, _Channel()))
    proc.data_received(b"fanout-pgid=4242\n", None)
    got: list[OutputBatch] = []

    async def read() -> None:
        async for batch in proc.batches():
            got.append(batch)  # noqa: PERF401 (read while it grows)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    for packet in (b"channel ORA_DISK_1: starting piece 1\n", b"piece handle=/fra/x.bkp", b"\n"):
        proc.data_received(packet, None)
    proc.data_received(b"RMAN-03009: failure\n", 1)  # extended data: stderr
    assert got == []
    await asyncio.sleep(OUTPUT_TICK * 2)
    assert got == [
        OutputBatch(OUT, ("channel ORA_DISK_1: starting piece 1", "piece handle=/fra/x.bkp")),
        OutputBatch(ERR, ("RMAN-03009: failure",)),
    ]
    proc.data_received(b"Recovery Manager complete.", None)  # no newline: flushed at EOF
    proc.eof_received()
    proc.connection_lost(None)
    await asyncio.wait_for(reader, 1)
    assert got[-1] == OutputBatch(OUT, ("Recovery Manager complete.",))
    assert await proc.wait() == 0


async def test_a_line_consumer_that_stops_mid_batch_leaves_the_rest_to_the_next() -> None:
    """``lines()`` left early (break, cancel): the next ``batches()`` starts with the rest."""
    proc = SshProcess(cast(SshSession, cast(Any, _Session())))
    proc.connection_made(cast(Any, _Channel()))
    proc.data_received(b"fanout-pgid=4242\nl1\nl2\nl3\n", None)
    proc.eof_received()
    proc.connection_lost(None)
    lines = cast(AsyncGenerator[OutputLine, None], proc.lines())
    assert (await anext(lines)).text == "l1"
    await lines.aclose()
    assert [b async for b in proc.batches()] == [OutputBatch(OUT, ("l2", "l3"))]
    assert await proc.wait() == 0
