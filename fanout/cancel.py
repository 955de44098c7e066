"""CancelToken: one token per run, fired by q/quit, Ctrl-C or SIGTERM.

It stays fired. The first trigger asks every host to stop gracefully (SIGINT to
the remote rman, then SIGTERM, then SIGKILL); any further trigger escalates to
*forced* (straight to SIGKILL). Work with a remote side is never stopped with
``task.cancel()``: it watches the token and stops its remote process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fanout.events import CancelReason

Listener = Callable[[CancelReason, bool], None]


class CancelToken:
    def __init__(self) -> None:
        self._fired = asyncio.Event()
        self._forced = asyncio.Event()
        self.reason: CancelReason | None = None
        self._listeners: list[Listener] = []

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    @property
    def forced(self) -> bool:
        return self._forced.is_set()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(reason, forced)`` on every trigger (for events, the UI, a step's
        guard). A listener runs inside ``cancel``: it must not raise or wait."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (added by ``add_listener``; absent: nothing happens)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def cancel(self, reason: CancelReason = CancelReason.OPERATOR) -> None:
        """Fire the token; if it already fired, escalate to forced. Safe from signal handlers
        installed with ``loop.add_signal_handler`` (runs on the loop thread)."""
        if self._forced.is_set():
            return
        if self._fired.is_set():
            self._forced.set()
        else:
            self.reason = reason
            self._fired.set()
        for listener in tuple(self._listeners):  # a listener may add or remove listeners
            listener(reason, self._forced.is_set())

    def force(self, reason: CancelReason = CancelReason.OPERATOR) -> None:
        """Fire straight to forced."""
        if not self._fired.is_set():
            self.cancel(reason)
        if not self._forced.is_set():
            self.cancel(reason)

    async def wait(self) -> None:
        await self._fired.wait()

    async def wait_forced(self) -> None:
        await self._forced.wait()
