"""Cluster mode without etcd: settings, leadership and fencing over the in-memory KV with a
controlled clock, checkpoints to records and back, and the fenced database lock in a local sh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fanout.cancel import CancelToken
from fanout.cluster.checkpoint import CheckpointSink, Keys, RunRecords, parse_run, replay
from fanout.cluster.hook import _still_to_do
from fanout.cluster.kv import Fenced
from fanout.cluster.leader import Holder, Leadership, campaign
from fanout.cluster.memory import MemoryKV
from fanout.errors import InventoryError
from fanout.events import (
    CancelReason,
    HostFinished,
    HostStarted,
    PlannedHost,
    RunMeta,
    RunStarted,
    StepFinished,
    StepStarted,
    StepStatus,
)
from fanout.inventory import load_inventory
from fanout.model import AdoptPolicy, ClusterSettings, Host
from fanout.steps import FENCED_EXIT, database_lock
from fanout.targets import build_targets

KEYS = Keys("/fanout", "nightly")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def lead(kv: MemoryKV, clock: Clock, node: str = "a") -> Leadership:
    outcome = await campaign(kv, KEYS.leader, node, 1, 5, clock=clock)
    assert isinstance(outcome, Leadership)
    return outcome


# ---- settings -----------------------------------------------------------------------------------

HOST = "hosts:\n  - {name: a, address: x, priority: 1, oracle_sid: A, oracle_home: /o}\n"


def load(tmp_path: Path, cluster: str) -> ClusterSettings:
    path = tmp_path / "nightly.yaml"
    path.write_text(f"settings:\n  cluster:\n{cluster}{HOST}")
    settings = load_inventory(path).settings.cluster
    assert settings is not None
    return settings


def test_cluster_settings_are_read_with_defaults(tmp_path: Path) -> None:
    """settings.cluster: endpoints required; group defaults to the file's stem, TTL to 5 s."""
    cluster = load(tmp_path, "    endpoints: [10.0.0.1:2379, 'etcd3.example:2379']\n")
    assert cluster.endpoints == ("10.0.0.1:2379", "etcd3.example:2379")
    assert cluster.group == "nightly"
    assert cluster.ttl == 5.0
    assert cluster.adopt is AdoptPolicy.WAIT
    full = load(
        tmp_path,
        "    endpoints: [h:1]\n    node: b1\n    ttl: 3s\n    dedupe: 6h\n    adopt: stop\n"
        "    ca_file: /etc/fanout/ca.pem\n    user: fanout\n    password_file: /etc/fanout/pw\n",
    )
    assert full.node == "b1"
    assert full.dedupe == 6 * 3600
    assert full.adopt is AdoptPolicy.STOP
    assert full.password_file == Path("/etc/fanout/pw")


@pytest.mark.parametrize(
    ("cluster", "error"),
    [
        ("    ttl: 5s\n", "nightly.yaml:3: settings.cluster: missing required key 'endpoints'"),
        (
            "    endpoints: [http://h:2379]\n",
            "nightly.yaml:3: settings.cluster.endpoints[0]: expected host:port, "
            "got 'http://h:2379'",
        ),
        (
            "    endpoints: [h:1]\n    ttl: 1s\n",
            "nightly.yaml:4: settings.cluster.ttl: expected at least 2s (etcd rounds to seconds)",
        ),
        (
            "    endpoints: [h:1]\n    cert_file: /c.pem\n",
            "nightly.yaml:3: settings.cluster: cert_file and key_file go together",
        ),
        (
            "    endpoints: [h:1]\n    password: hunter2\n",
            "nightly.yaml:4: settings.cluster: unknown key 'password' "
            "(did you mean 'password_file'?)",
        ),
        (
            "    endpoints: [h:1]\n    adopt: kill\n",
            "nightly.yaml:4: settings.cluster.adopt: expected wait or stop, got 'kill'",
        ),
    ],
)
def test_bad_cluster_settings_fail_with_one_line(tmp_path: Path, cluster: str, error: str) -> None:
    """A wrong settings.cluster is one line naming file, line, key path and what was expected."""
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, cluster)
    assert str(caught.value).endswith(error)
    assert "hunter2" not in str(caught.value)


# ---- leadership ---------------------------------------------------------------------------------


async def test_one_campaign_wins_and_a_later_leader_gets_a_larger_token() -> None:
    """The first campaign leads; the second learns who; after the lease ends, the next leader's
    token (the key's create revision) is larger, even for the same node."""
    clock = Clock()
    kv = MemoryKV(clock)
    first = await lead(kv, clock, "a")
    second = await campaign(kv, KEYS.leader, "b", 2, 5, clock=clock)
    assert isinstance(second, Holder)
    assert (second.node, second.token) == ("a", first.token)
    clock.now += 6  # a's lease expires on "etcd"
    again = await lead(kv, clock, "a")
    assert again.token > first.token


async def test_a_deposed_leaders_fenced_write_is_refused_and_it_stops_leading() -> None:
    """After a takeover the old leader's fenced write is refused: Fenced, and its loss fires."""
    clock = Clock()
    kv = MemoryKV(clock)
    old = await lead(kv, clock, "a")
    lost: list[str] = []
    old.on_lost(lost.append)
    clock.now += 6
    new = await lead(kv, clock, "b")
    await new.write([("/fanout/nightly/x", b"new")])
    old.deadline = clock.now + 10  # even a clock that believes it still leads is fenced
    with pytest.raises(Fenced):
        await old.write([("/fanout/nightly/x", b"old")])
    assert len(lost) == 1
    assert "another node leads now" in lost[0]
    entry = await kv.get("/fanout/nightly/x")
    assert entry is not None
    assert entry.value == b"new"


async def test_leading_checks_the_deadline_itself_without_any_timer() -> None:
    """Past its local deadline (before the lease can expire on etcd) a leader stops leading at
    its very next check, and the loss callbacks fire once: a frozen process sees it on waking."""
    clock = Clock()
    kv = MemoryKV(clock)
    leader = await lead(kv, clock)
    assert leader.deadline == clock.now + 5 - 1  # TTL minus the margin
    fired: list[str] = []
    leader.on_lost(fired.append)
    clock.now = leader.deadline - 0.001
    assert leader.leading()
    clock.now = leader.deadline
    assert not leader.leading()
    assert not leader.leading()
    assert fired == ["the lease was not renewed before the local deadline"]
    assert await kv.get(KEYS.leader) is not None  # etcd still holds the key: no one else leads


async def test_quorum_loss_makes_writes_wait_until_the_deadline_then_fence() -> None:
    """With etcd unreachable a fenced write retries until the local deadline, then raises
    Fenced: nothing is recorded as if it had been, and no second leader can appear."""
    clock = Clock()
    kv = MemoryKV(clock)
    leader = await lead(kv, clock)
    kv.down = True
    clock.now = leader.deadline  # the retry loop sees the deadline at once
    with pytest.raises(Fenced):
        await leader.write([("/k", b"v")])
    with pytest.raises(Exception, match="unavailable"):
        await campaign(kv, KEYS.leader, "b", 2, 5, clock=clock)


# ---- checkpoints --------------------------------------------------------------------------------

RUN = "20261201T010000Z-0001"


def run_events() -> list[object]:
    plan = (PlannedHost("h1", 1, "S1", "x", ("full", "archivelog")),)
    return [
        RunStarted(RUN, "/inv.yaml", plan, 4, at=1.0),
        HostStarted(RUN, "h1", at=2.0),
        StepStarted(RUN, "h1", "full", 1, "cmd", 3.0),
        StepFinished(RUN, "h1", "full", 1, StepStatus.OK, 0, None, 1.0, False, 4.0),
        StepStarted(RUN, "h1", "archivelog", 1, "cmd", 5.0),
    ]


async def test_checkpoints_record_each_step_fenced_and_read_back_as_events() -> None:
    """Events become step records under the run; the finished step is what a takeover skips;
    replaying the records gives the store the same plan and states."""
    clock = Clock()
    kv = MemoryKV(clock)
    leader = await lead(kv, clock, "n1")
    sink = CheckpointSink(leader, KEYS, RUN, "n1", lambda h, s: f"/logs/{h}/{s}", write_plan=True)
    sink.start()
    for event in run_events():
        sink.emit(event)  # type: ignore[arg-type]
    assert await sink.flush()
    await sink.close()
    records = parse_run(KEYS, RUN, await kv.get_prefix(KEYS.of_run(RUN)))
    assert records.finished_steps() == {("h1", "full")}
    assert records.steps[("h1", "archivelog")]["status"] == "running"
    assert records.steps[("h1", "full")]["node"] == "n1"
    assert records.steps[("h1", "full")]["token"] == leader.token
    assert records.steps[("h1", "full")]["log_path"] == "/logs/h1/full"
    meta = RunMeta(inventory_sha256="abc", argv=("fanout", "run"))
    replayed = list(
        replay(records, None, with_plan=True, finished=False, inventory="/n2.yaml", meta=meta)
    )
    assert isinstance(replayed[0], RunStarted)
    assert replayed[0].hosts[0].steps == ("full", "archivelog")
    assert (replayed[0].inventory, replayed[0].meta) == ("/n2.yaml", meta)
    finished = [e for e in replayed if isinstance(e, StepFinished)]
    assert [(e.step, e.status) for e in finished] == [("full", StepStatus.OK)]
    assert not [e for e in replayed if isinstance(e, HostFinished)]


async def test_a_lost_leader_fires_the_token_when_the_engine_announces_a_step() -> None:
    """The sink's synchronous check: announcing a step after the deadline fires the run's token
    (reason: leadership lost) before the engine can start it, and records nothing."""
    clock = Clock()
    kv = MemoryKV(clock)
    leader = await lead(kv, clock)
    token = CancelToken()
    leader.on_lost(lambda _why: token.cancel(CancelReason.LEADERSHIP_LOST))
    sink = CheckpointSink(leader, KEYS, RUN, "a", lambda h, s: "", write_plan=True)
    clock.now = leader.deadline + 30  # the process was frozen
    sink.emit(StepStarted(RUN, "h1", "full", 1, "cmd", 3.0))
    assert token.fired
    assert token.reason is CancelReason.LEADERSHIP_LOST
    assert await kv.get_prefix(KEYS.of_run(RUN)) == []


# ---- the fenced database lock, in a local sh --------------------------------------------------


def test_the_database_lock_refuses_an_older_token_and_releases_the_lock(tmp_path: Path) -> None:
    """Under the lock the step compares its token with the database's .fence file: an older
    token exits 76 at once (lock released, no ledger entry); equal or newer tokens proceed."""
    host = Host(
        name="h", address="x", priority=1, oracle_sid="S1", oracle_home="/o", lock_dir=str(tmp_path)
    )

    def step(token: int) -> subprocess.CompletedProcess[str]:
        script = f"{database_lock(host, 'r1', 'full', token=token)}; echo ran $FANOUT_TOKEN"
        return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=10)

    assert step(7).stdout == "ran 7\n"
    assert (tmp_path / "fanout-S1.fence").read_text() == "7\n"
    old = step(3)
    assert old.returncode == FENCED_EXIT
    assert old.stdout == ""
    assert "fanout: fenced: leader token 3 is older than 7" in old.stderr
    assert not (tmp_path / "fanout-S1.lock").exists()
    assert (tmp_path / "fanout-S1.ledger").read_text() == "r1 full 0 -\n"
    assert step(7).stdout == "ran 7\n"
    assert step(8).stdout == "ran 8\n"
    assert (tmp_path / "fanout-S1.fence").read_text() == "8\n"


def test_cluster_mode_without_the_extra_fails_with_one_line(tmp_path: Path) -> None:
    """settings.cluster without the cluster extra installed: exit 2, one line saying what to
    install, no traceback."""
    inventory = tmp_path / "nightly.yaml"
    inventory.write_text(
        f"settings:\n  state_dir: {tmp_path / 'state'}\n"
        "  cluster:\n    endpoints: [127.0.0.1:1]\n" + HOST
    )
    code = (
        "import sys; sys.modules['aetcd'] = None\n"
        "from fanout.cli import main\n"
        f"sys.argv = ['fanout', 'run', {str(inventory)!r}, '--batch']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"fanout: {inventory}: settings.cluster needs the etcd client (aetcd is missing):"
        " pip install 'fanout[cluster]'\n"
    )


def test_resume_is_refused_in_cluster_mode(tmp_path: Path) -> None:
    """`run --resume` with settings.cluster: exit 2 and one line (a takeover continues the run
    itself), before etcd is ever contacted."""
    inventory = tmp_path / "nightly.yaml"
    inventory.write_text(
        f"settings:\n  state_dir: {tmp_path / 'state'}\n"
        "  cluster:\n    endpoints: [127.0.0.1:1]\n" + HOST
    )
    code = (
        "from fanout.cli import main; import sys\n"
        f"sys.argv = ['fanout', 'run', {str(inventory)!r}, '--batch', '--resume']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "fanout: --resume: in cluster mode a takeover continues the run itself\n"
    )


def test_a_takeover_is_rendered_by_build_targets_with_the_token_and_adoption(
    tmp_path: Path,
) -> None:
    """A takeover's targets: only the planned steps not finished for good, each rman step
    adopting the same run (its lock waited for, its ledger read) and fenced by the new token;
    the step that ended ok before satisfies `requires`, the one that failed does not."""
    path = tmp_path / "nightly.yaml"
    path.write_text(
        "steps:\n  archivelog: {requires: [full]}\n"
        "hosts:\n"
        "  - {name: a, address: x, priority: 1, oracle_sid: A, oracle_home: /o}\n"
        "  - {name: b, address: y, priority: 1, oracle_sid: B, oracle_home: /o}\n"
    )
    inventory = load_inventory(path)
    steps = ("full", "archivelog", "controlfile")
    plan = {"hosts": [{"name": h, "steps": list(steps)} for h in ("a", "b")]}
    records = RunRecords(
        RUN,
        plan,
        {},
        {
            ("a", "full"): {"status": "ok"},
            ("a", "archivelog"): {"status": "running"},  # in flight when the leader died
            ("b", "full"): {"status": "failed"},
            ("b", "archivelog"): {"status": "skipped"},
            ("b", "controlfile"): {"status": "ok"},
        },
        [],
    )
    node = SimpleNamespace(hosts=inventory.hosts)
    takeover = _still_to_do(records, RUN, node)  # type: ignore[arg-type]
    assert takeover.steps == {"a": ("archivelog", "controlfile")}
    hosts = tuple(h for h in inventory.hosts if h.name in takeover.steps)  # as _run does
    (target,) = build_targets(inventory, hosts, RUN, {}, takeover, False, token=42)
    assert [s.name for s in target.steps] == ["archivelog", "controlfile"]
    assert target.succeeded_before == frozenset({"full"})
    for step in target.steps:
        assert f"runs=' {RUN} '" in step.command  # Adopt(runs=(run_id,))
        assert "cont=-" in step.command  # the same run: it continues no other
        assert 'echo 42 >"$fence"' in step.command
