"""``SshProcess.wait`` when the channel learns of a dead connection before the connection's
owner does: asyncssh may call the channel's ``connection_lost`` before the client's, so
``session.lost_at`` can still be None. The callbacks are driven by hand, in that order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from fanout.errors import ConnectionLost
from fanout.model import Host
from fanout.transport.ssh import SshProcess, SshSession

HOST = Host("db1", "127.0.0.1", 1, "DB1", "/u01")


class _Channel:
    """What SshProcess asks of its asyncssh channel: no exit status ever came."""

    def get_returncode(self) -> int | None:
        return None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@dataclass
class _Orphans:
    added: list[tuple[str, int, float]] = field(default_factory=list)

    def add(self, host: Host, pgid: int, lost_at: float) -> str:
        self.added.append((host.name, pgid, lost_at))
        return "group"

    async def settle(self, group: str) -> str:
        return "stopped (confirmed)"


@dataclass
class _Session:
    """What SshProcess asks of its SshSession; the connection's owner has not seen the loss."""

    host: Host = HOST
    label: str = "fanout@127.0.0.1"
    lost_at: float | None = None
    orphans: _Orphans = field(default_factory=_Orphans)


def _started(session: _Session) -> SshProcess:
    proc = SshProcess(cast(SshSession, cast(Any, session)))
    proc.connection_made(cast(Any, _Channel()))
    proc.data_received(b"fanout-pgid=4242\nRecovery Manager: Release 19.0.0.0.0\n", None)
    return proc


async def test_a_channel_cut_before_its_connection_owner_knows_orphans_the_group() -> None:
    session = _Session()
    proc = _started(session)
    proc.connection_lost(ConnectionResetError("connection reset by peer"))
    assert session.lost_at is None  # the client's own callback has not run yet
    with pytest.raises(ConnectionLost, match="remote process group 4242 stopped"):
        await proc.wait()
    assert [(h, pgid) for h, pgid, _ in session.orphans.added] == [("db1", 4242)]
    assert proc.orphaned


async def test_a_channel_closed_without_an_exit_status_on_a_live_connection_is_255() -> None:
    session = _Session()
    proc = _started(session)
    proc.connection_lost(None)  # closed cleanly, no exit-status message
    assert await proc.wait() == 255
    assert session.orphans.added == []
