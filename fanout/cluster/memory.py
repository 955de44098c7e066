"""The ``KV`` protocol in memory, on a clock the caller controls: the unit tests' etcd.

Same semantics as etcd for what cluster mode uses: one revision counter for every write,
a key's create revision kept until it is deleted, leases that expire (deleting their keys)
once ``clock()`` passes their deadline, transactions applied whole. ``down = True`` makes
every call raise ``Unavailable``, as a lost quorum does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fanout.cluster.kv import Entry, Unavailable


class MemoryKV:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, Entry] = {}
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expires at)
        self.revision = 1
        self._next_lease = 100
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("etcd unavailable (memory: down)")
        now = self._clock()
        for lease, (_, expires) in list(self._leases.items()):
            if now >= expires:
                self._drop(lease)

    def _drop(self, lease: int) -> None:
        del self._leases[lease]
        for key in [k for k, e in self._data.items() if e.lease == lease]:
            del self._data[key]
            self.revision += 1

    def _put(self, key: str, value: bytes, lease: int = 0) -> Entry:
        self.revision += 1
        old = self._data.get(key)
        created = old.create_revision if old is not None else self.revision
        entry = Entry(key, value, created, self.revision, lease)
        self._data[key] = entry
        return entry

    async def grant(self, ttl: int) -> tuple[int, int]:
        self._check()
        self._next_lease += 1
        self._leases[self._next_lease] = (ttl, self._clock() + ttl)
        return self._next_lease, ttl

    def renew_blocking(self, lease: int, timeout: float) -> int:
        self._check()
        if lease not in self._leases:
            return 0
        ttl, _ = self._leases[lease]
        self._leases[lease] = (ttl, self._clock() + ttl)
        return ttl

    async def revoke(self, lease: int) -> None:
        self._check()
        if lease in self._leases:
            self._drop(lease)

    async def get(self, key: str) -> Entry | None:
        self._check()
        return self._data.get(key)

    async def get_prefix(self, prefix: str) -> list[Entry]:
        self._check()
        return [self._data[k] for k in sorted(self._data) if k.startswith(prefix)]

    async def create(self, key: str, value: bytes, lease: int) -> tuple[bool, Entry | None]:
        self._check()
        if key in self._data:
            return False, self._data[key]
        return True, self._put(key, value, lease)

    async def put_fenced(
        self,
        guard: str,
        token: int,
        puts: Sequence[tuple[str, bytes]],
        delete_prefixes: Sequence[str] = (),
    ) -> bool:
        self._check()
        held = self._data.get(guard)
        if held is None or held.create_revision != token:
            return False
        for key, value in puts:
            self._put(key, value)
        for prefix in delete_prefixes:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]
        return True

    async def close(self) -> None:
        return None
