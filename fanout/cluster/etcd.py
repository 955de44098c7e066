"""The ``KV`` protocol over etcd v3's gRPC API: the only importer of the etcd client and grpc.

Client choice (measured in ``shared/notes/ha-etcd.md``): aetcd 1.0.0's generated stubs
(pure wheel; grpcio and protobuf wheels for Python 3.11+), driven directly on our own
``grpc.aio`` channels. Its high-level ``Client`` is not used: it sets no gRPC deadline
by default, has no TLS, takes one endpoint and its ``watch_once`` returns errors instead
of raising them. Here every call has ``request_timeout`` as its deadline, TLS and
user/password come from files, and the endpoints are tried in turn: an endpoint that
refuses or times out sends the next call to the next one. Nothing watches: the leader
renews its lease and standbys poll the leader key, so a silent watch (etcd-io/etcd#8980)
cannot stall a takeover.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from fanout.cluster.kv import ClusterError, Entry, Unavailable
from fanout.model import ClusterSettings

T = TypeVar("T")

_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,  # "etcdserver: leader changed", "no leader" in 3.4
        grpc.StatusCode.INTERNAL,
    }
)


def open_kv(settings: ClusterSettings) -> EtcdKV:
    """An ``EtcdKV`` for ``settings``.

    Raises ClusterError if a TLS or password file is unreadable."""
    return EtcdKV(settings)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClusterError(f"settings.cluster.{what}: cannot read {path}: {exc.strerror}") from exc


class EtcdKV:
    def __init__(self, settings: ClusterSettings) -> None:
        self._endpoints = settings.endpoints
        self._timeout = settings.request_timeout
        ca = _read(settings.ca_file, "ca_file")
        cert = _read(settings.cert_file, "cert_file")
        key = _read(settings.key_file, "key_file")
        self._credentials = (
            grpc.ssl_channel_credentials(ca, key, cert) if ca or cert or key else None
        )
        self._user = settings.user
        password = _read(settings.password_file, "password_file")
        self._password = password.decode().rstrip("\n") if password is not None else None
        self._metadata: tuple[tuple[str, str], ...] | None = None
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._current = 0
        # renew_blocking's own (synchronous) channels: used only by the keepalive thread
        self._sync_channels: dict[int, grpc.Channel] = {}
        self._sync_current = 0

    # ------------------------------------------------------------------ plumbing

    def _channel(self, index: int) -> grpc.aio.Channel:
        channel = self._channels.get(index)
        if channel is None:
            target = self._endpoints[index]
            channel = (
                grpc.aio.secure_channel(target, self._credentials)
                if self._credentials is not None
                else grpc.aio.insecure_channel(target)
            )
            self._channels[index] = channel
        return channel

    async def _call(self, make: Callable[[grpc.aio.Channel, Any], Awaitable[T]]) -> T:
        """``make(channel, metadata)`` on the current endpoint; on a refusal, on the next ones.

        A timeout is not retried here (the server may be slow, not gone): the next call goes
        to the next endpoint. Raises Unavailable, or ClusterError for a non-transient error.
        """
        last: grpc.aio.AioRpcError | None = None
        for _ in range(len(self._endpoints)):
            index = self._current
            try:
                if self._user is not None and self._metadata is None:
                    await self._authenticate(self._channel(index))
                return await make(self._channel(index), self._metadata)
            except grpc.aio.AioRpcError as exc:
                last = exc
                if exc.code() is grpc.StatusCode.UNAUTHENTICATED and self._user is not None:
                    self._metadata = None  # the auth token expired: once more with a new one
                    continue
                if exc.code() not in _TRANSIENT:
                    raise ClusterError(f"etcd {self._endpoints[index]}: {exc.details()}") from exc
                self._current = (index + 1) % len(self._endpoints)
                if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    break
        assert last is not None
        raise Unavailable(f"etcd unavailable ({', '.join(self._endpoints)}): {last.details()}")

    async def _authenticate(self, channel: grpc.aio.Channel) -> None:
        request = rpc.AuthenticateRequest(name=self._user, password=self._password)
        reply = await rpc.AuthStub(channel).Authenticate(request, timeout=self._timeout)
        self._metadata = (("token", reply.token),)

    def _kv(self, channel: grpc.aio.Channel) -> Any:
        return rpc.KVStub(channel)

    # ------------------------------------------------------------------ the keepalive thread

    def renew_blocking(self, lease: int, timeout: float) -> int:
        """Renew ``lease`` (its TTL now; 0: gone) from a thread of its own: blocking, on
        separate synchronous channels, so a busy event loop (a slow disk under the run store)
        cannot starve the renewals.

        Raises Unavailable or ClusterError like every call."""
        last: grpc.RpcError | None = None
        for _ in range(len(self._endpoints)):
            index = self._sync_current
            channel = self._sync_channels.get(index)
            if channel is None:
                target = self._endpoints[index]
                channel = (
                    grpc.secure_channel(target, self._credentials)
                    if self._credentials is not None
                    else grpc.insecure_channel(target)
                )
                self._sync_channels[index] = channel
            try:
                if self._user is not None and self._metadata is None:
                    request = rpc.AuthenticateRequest(name=self._user, password=self._password)
                    reply = rpc.AuthStub(channel).Authenticate(request, timeout=timeout)
                    self._metadata = (("token", reply.token),)
                replies = rpc.LeaseStub(channel).LeaseKeepAlive(
                    iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                    timeout=timeout,
                    metadata=self._metadata,
                )
                for reply in replies:
                    replies.cancel()
                    return int(reply.TTL)
                return 0
            except grpc.RpcError as exc:
                last = exc
                code = exc.code()  # a grpc.Call in practice
                if code is grpc.StatusCode.UNAUTHENTICATED and self._user is not None:
                    self._metadata = None
                    continue
                if code not in _TRANSIENT:
                    raise ClusterError(f"etcd {self._endpoints[index]}: {exc}") from exc
                self._sync_current = (index + 1) % len(self._endpoints)
                if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                    break
        raise Unavailable(f"etcd unavailable ({', '.join(self._endpoints)}): {last}")

    # ------------------------------------------------------------------ KV

    async def grant(self, ttl: int) -> tuple[int, int]:
        reply = await self._call(
            lambda ch, md: rpc.LeaseStub(ch).LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl, ID=0), timeout=self._timeout, metadata=md
            )
        )
        return int(reply.ID), int(reply.TTL)

    async def revoke(self, lease: int) -> None:
        try:
            await self._call(
                lambda ch, md: rpc.LeaseStub(ch).LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease), timeout=self._timeout, metadata=md
                )
            )
        except ClusterError as exc:
            if "requested lease not found" not in str(exc):
                raise

    async def get(self, key: str) -> Entry | None:
        reply = await self._call(
            lambda ch, md: self._kv(ch).Range(
                rpc.RangeRequest(key=key.encode()), timeout=self._timeout, metadata=md
            )
        )
        return _entry(reply.kvs[0]) if reply.kvs else None

    async def get_prefix(self, prefix: str) -> list[Entry]:
        start = prefix.encode()
        request = rpc.RangeRequest(key=start, range_end=_prefix_end(start))
        reply = await self._call(
            lambda ch, md: self._kv(ch).Range(request, timeout=self._timeout, metadata=md)
        )
        return [_entry(kv) for kv in reply.kvs]

    async def create(self, key: str, value: bytes, lease: int) -> tuple[bool, Entry | None]:
        k = key.encode()
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=k, create_revision=0
                )
            ],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        reply = await self._call(
            lambda ch, md: self._kv(ch).Txn(request, timeout=self._timeout, metadata=md)
        )
        if reply.succeeded:
            revision = int(reply.header.revision)
            return True, Entry(key, value, revision, revision, lease)
        kvs = reply.responses[0].response_range.kvs
        return False, _entry(kvs[0]) if kvs else None

    async def put_fenced(
        self,
        guard: str,
        token: int,
        puts: Sequence[tuple[str, bytes]],
        delete_prefixes: Sequence[str] = (),
    ) -> bool:
        deletes = [
            rpc.RequestOp(
                request_delete_range=rpc.DeleteRangeRequest(
                    key=prefix.encode(), range_end=_prefix_end(prefix.encode())
                )
            )
            for prefix in delete_prefixes
        ]
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    result=rpc.Compare.EQUAL,
                    target=rpc.Compare.CREATE,
                    key=guard.encode(),
                    create_revision=token,
                )
            ],
            success=[
                *(
                    rpc.RequestOp(request_put=rpc.PutRequest(key=k.encode(), value=v))
                    for k, v in puts
                ),
                *deletes,
            ],
        )
        reply = await self._call(
            lambda ch, md: self._kv(ch).Txn(request, timeout=self._timeout, metadata=md)
        )
        return bool(reply.succeeded)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        sync_channels, self._sync_channels = list(self._sync_channels.values()), {}
        for sync_channel in sync_channels:
            sync_channel.close()


def _entry(kv: Any) -> Entry:
    return Entry(
        kv.key.decode(),
        bytes(kv.value),
        int(kv.create_revision),
        int(kv.mod_revision),
        int(kv.lease),
    )


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"
