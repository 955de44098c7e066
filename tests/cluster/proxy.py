"""A pausable TCP proxy on 127.0.0.1, run by a thread with its own event loop.

``Proxy(targets)`` listens on one free port per target (``host:port``) and forwards both ways.
``pause()`` stops forwarding: bytes are held, connections stay open, as in a network partition
that drops nothing but delivers nothing; ``resume()`` lets them through again. ``close()``
stops everything (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Proxy:
    def __init__(self, targets: list[str]) -> None:
        self._targets = targets
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self.endpoints: list[str] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._open.set()
        for target in self._targets:
            host, port = target.rsplit(":", 1)
            server = await asyncio.start_server(
                lambda r, w, h=host, p=int(port): self._serve(r, w, h, p), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.endpoints.append(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    def pause(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def close(self) -> None:
        async def stop() -> None:
            self._open.set()
            for server in self._servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        with contextlib.suppress(Exception):  # let the cancelled pumps close their sockets
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
