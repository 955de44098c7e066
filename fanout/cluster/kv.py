"""The key-value protocol cluster mode needs from etcd, and its errors. Pure.

Keys and values are ``str`` and ``bytes``. Every call either completes or raises
``Unavailable`` (no answer within the deadline, no endpoint reachable): a timed-out write
may still have been applied, so callers only retry idempotent, fenced writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fanout.errors import FanoutError


class ClusterError(FanoutError):
    """Cluster mode cannot go on. ``str()`` is one line."""


class Unavailable(ClusterError):
    """etcd did not answer in time, or no endpoint could be reached (quorum lost, network)."""


class Fenced(ClusterError):
    """A fenced write was refused: another node holds the leader key now."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int  # 0: none


class KV(Protocol):
    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        ...

    def renew_blocking(self, lease: int, timeout: float) -> int:
        """Renew ``lease``: its TTL now (0: it has expired and its keys are gone). Blocking,
        for the keepalive thread (safe beside the loop's calls); ``timeout`` in seconds."""
        ...

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys."""
        ...

    async def get(self, key: str) -> Entry | None: ...

    async def get_prefix(self, prefix: str) -> list[Entry]:
        """Every key starting with ``prefix``, in key order."""
        ...

    async def create(self, key: str, value: bytes, lease: int) -> tuple[bool, Entry | None]:
        """Put ``key`` bound to ``lease`` if it does not exist: (created, the entry now there).

        The entry is None only if the key vanished between the two halves (a race).
        """
        ...

    async def put_fenced(
        self,
        guard: str,
        token: int,
        puts: Sequence[tuple[str, bytes]],
        delete_prefixes: Sequence[str] = (),
    ) -> bool:
        """Apply ``puts`` and delete every key under ``delete_prefixes``, in one transaction,
        if ``guard``'s create revision is ``token``."""
        ...

    async def close(self) -> None: ...
