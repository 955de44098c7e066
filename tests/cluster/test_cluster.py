"""Cluster mode end to end: several real `fanout run` processes, a real 3-member etcd on
loopback, the private sshd and the RMAN double. What ran remotely is read from the double's
invocation records (each carries the leader's fencing token as FANOUT_TOKEN), never from
fanout itself."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from fanout.errors import ExitCode
from fanout.model import Host
from fanout.steps import BUILTIN_STEPS, FENCED_EXIT, render_step
from tests.cluster.etcd import EtcdCluster
from tests.system.sshd import (
    REPO,
    Background,
    SshdServer,
    configure_double,
    fanout_argv,
    fanout_env,
    read_invocations,
    remote_processes,
    run_fanout,
    wait_until,
    write_inventory,
)

pytestmark = [pytest.mark.system, pytest.mark.cluster]

STEPS = ("full", "archivelog", "controlfile")
TTL = 2.0
EXIT_FENCED = ExitCode.FENCED


def cluster_inventory(
    tmp_path: Path,
    sshd: SshdServer,
    oracle_home: Path,
    etcd: EtcdCluster,
    sids: tuple[str, ...],
    **cluster: Any,
) -> Path:
    """An inventory in cluster mode; node name and state dir come from each node's env."""
    settings = {
        "state_dir": "${FANOUT_STATE}",
        "cluster": {
            "endpoints": etcd.endpoints,
            "prefix": prefix_of(tmp_path),
            "node": "${FANOUT_NODE}",
            "group": "nightly",
            "ttl": f"{TTL:g}s",
            "request_timeout": "1s",
            **cluster,
        },
    }
    return write_inventory(tmp_path, sshd, oracle_home, [{"sid": s} for s in sids], settings)


def prefix_of(tmp_path: Path) -> str:
    """The test's own etcd key prefix (tests may share one etcd)."""
    return f"/fanout-{tmp_path.name}"


def node_env(tmp_path: Path, name: str) -> dict[str, str]:
    env = fanout_env(tmp_path / name)
    env.update(FANOUT_NODE=name, FANOUT_STATE=str(tmp_path / name / "state"))
    return env


@contextmanager
def nodes(tmp_path: Path, inventory: Path, *names: str) -> Iterator[dict[str, Background]]:
    """``fanout run INVENTORY --batch`` started at once on each named node; killed on exit."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                Background(
                    fanout_argv("run", inventory, "--batch"),
                    cwd=REPO,
                    env=node_env(tmp_path, name),
                )
            )
            for name in names
        }


def leader_of(running: Mapping[str, Background], word: str = "leading run") -> str:
    """The node whose stderr says ``word`` (waits, bounded)."""
    return wait_until(
        lambda: next((n for n, b in running.items() if word in b.stderr), None),
        30,
        what=f"a node {word!r}",
    )


def starts(oracle_home: Path) -> list[dict[str, Any]]:
    return [r for r in read_invocations(oracle_home) if r["event"] == "start"]


def successes(oracle_home: Path) -> Counter[tuple[str, str]]:
    return Counter(
        (r["sid"], r["step"])
        for r in read_invocations(oracle_home)
        if r["event"] == "end" and r["status"] == 0
    )


def token_of(record: Mapping[str, Any]) -> int:
    return int(record["env"]["FANOUT_TOKEN"])


def assert_never_two_at_once(oracle_home: Path) -> None:
    """No database ever had two double rman running at the same time."""
    by_pid: dict[int, dict[str, Any]] = {}
    for record in read_invocations(oracle_home):
        by_pid.setdefault(record["pid"], {}).update(record)
    spans: dict[str, list[tuple[float, float]]] = {}
    for rec in by_pid.values():
        spans.setdefault(rec["sid"], []).append((rec["start"], rec.get("end", float("inf"))))
    for sid, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end, f"{sid}: two rman at once ({intervals})"


def show(tmp_path: Path, node: str) -> dict[str, Any]:
    result = run_fanout(tmp_path / node, "show", "--json", "--state-dir", tmp_path / node / "state")
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_three_nodes_started_together_make_exactly_one_run(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """Three nodes started at once: one leads, every step runs once, the standbys say who
    leads, exit 0 with nothing to do, and `show` on a standby shows the whole run."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 0.3}})
    sids = ("T1", "T2")
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, sids)
    with nodes(tmp_path, inventory, "n1", "n2", "n3") as running:
        results = {name: b.finish(60) for name, b in running.items()}
    leaders = [n for n, (_, _, err) in results.items() if "leading run" in err]
    assert len(leaders) == 1, {n: r[2] for n, r in results.items()}
    (leader,) = leaders
    for name, (status, _, err) in results.items():
        assert status == 0, err
        if name != leader:
            assert f"standing by: node {leader} leads group nightly" in err
            assert "nothing to do: run " in err
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    standby = next(n for n in results if n != leader)
    shown = show(tmp_path, standby)
    statuses = {(h["name"], s["step"]): s["status"] for h in shown["hosts"] for s in h["steps"]}
    assert statuses == {(s.lower(), step): "ok" for s in sids for step in STEPS}
    logs = {s["log_path"] for h in shown["hosts"] for s in h["steps"]}
    assert all(path.startswith(f"{leader}:") for path in logs), logs  # which node ran it
    assert shown["run"]["outcome"] == "ok"


def test_kill_9_of_the_leader_a_standby_takes_over_the_same_run(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """kill -9 of the leader mid-run: a standby takes over within TTL + 2 s (plus slack for a
    loaded machine), continues the same run id, and every step ends ok exactly once on the hosts;
    nothing is left running."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 1.0}})
    sids = ("K1", "K2", "K3")
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, sids)
    with nodes(tmp_path, inventory, "n1", "n2", "n3") as running:
        leader = leader_of(running)
        wait_until(lambda: len(successes(oracle_home)) >= 3, 30, what="three finished steps")
        run_id = json.loads(etcd.get(f"{prefix_of(tmp_path)}/nightly/run") or "{}")["run_id"]
        running[leader].proc.kill()
        killed = time.monotonic()
        others = {n: b for n, b in running.items() if n != leader}
        new_leader = leader_of(others, "taking over run")
        took = time.monotonic() - killed
        results = {n: b.finish(60) for n, b in others.items()}
    assert took < TTL + 2 + 3, f"takeover after {took:.1f}s"
    assert f"taking over run {run_id}" in results[new_leader][2]
    assert results[new_leader][0] == 0, results[new_leader][2]
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    assert not remote_processes(oracle_home)
    assert_never_two_at_once(oracle_home)
    shown = show(tmp_path, new_leader)
    assert shown["run"]["run_id"] == run_id
    assert {s["status"] for h in shown["hosts"] for s in h["steps"]} == {"ok"}


def test_a_frozen_leader_is_replaced_and_on_waking_starts_nothing_and_stops_its_work(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """SIGSTOP the leader mid-step (cut off from etcd): the standby takes over; on SIGCONT the
    old leader starts no step, stops its still-running rman and exits 76; no database ever has
    two rman at once; every step ends ok exactly once."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 0.3, "full": {"seconds": 8}}})
    sids = ("P1", "P2")
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, sids)
    with nodes(tmp_path, inventory, "n1", "n2") as running:
        old = leader_of(running)
        wait_until(lambda: len(starts(oracle_home)) >= 2, 30, what="both full backups")
        old_token = token_of(starts(oracle_home)[0])
        os.kill(running[old].pid, signal.SIGSTOP)
        try:
            new = leader_of({n: b for n, b in running.items() if n != old}, "taking over run")
            resumed = time.time()
        finally:
            os.kill(running[old].pid, signal.SIGCONT)
        old_status, _, old_err = running[old].finish(30)
        new_status, _, new_err = running[new].finish(60)
    assert old_status == EXIT_FENCED, old_err
    assert "lost leadership of run" in old_err
    assert new_status == 0, new_err
    records = read_invocations(oracle_home)
    assert not [r for r in records if r["event"] == "start" and token_of(r) == old_token
                and r["start"] > resumed], "the deposed leader started a step"  # fmt: skip
    stopped = [r for r in records if r["event"] == "end" and token_of(r) == old_token]
    assert {r["ended"] for r in stopped} == {"SIGINT"}, stopped  # its rman, stopped cleanly
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    assert all(token_of(r) > old_token for r in records if r["event"] == "end" and r["status"] == 0)
    assert_never_two_at_once(oracle_home)
    assert not remote_processes(oracle_home)


def test_losing_one_etcd_member_even_the_raft_leader_needs_no_takeover(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd: EtcdCluster
) -> None:
    """kill -9 of etcd's raft leader mid-run: the run goes on under the same leader, exit 0."""
    configure_double(oracle_home, {"*": {"seconds": 0.6}})
    sids = ("E1", "E2")
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, sids)
    with nodes(tmp_path, inventory, "n1", "n2") as running:
        leader = leader_of(running)
        wait_until(lambda: len(successes(oracle_home)) >= 1, 30, what="a finished step")
        etcd.kill(etcd.raft_leader())
        results = {n: b.finish(60) for n, b in running.items()}
    assert results[leader][0] == 0, results[leader][2]
    assert not any("taking over" in err for _, _, err in results.values())
    assert all(status == 0 for status, _, _ in results.values())
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    tokens = {token_of(r) for r in starts(oracle_home)}
    assert len(tokens) == 1


def test_a_late_node_inside_the_dedupe_window_starts_nothing(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """A node whose cron fires after the run finished (inside the dedupe window) starts nothing
    and exits 0 naming the run; its run store then holds that run."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, ("L1",), dedupe="1h")
    with nodes(tmp_path, inventory, "n1") as running:
        status, _, err = running["n1"].finish(30)
    assert status == 0, err
    ran = len(read_invocations(oracle_home))
    with nodes(tmp_path, inventory, "n2") as running:
        status, _, err = running["n2"].finish(30)
    assert status == 0, err
    assert "nothing to do: run " in err
    assert len(read_invocations(oracle_home)) == ran
    assert show(tmp_path, "n2")["run"]["outcome"] == "ok"


def test_a_deposed_leaders_token_cannot_start_a_step_where_a_newer_one_ran(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path
) -> None:
    """The per-database lock records the token: once a step with token 9 ran on a database, the
    same step rendered with the older token 5 exits 76 on the host without starting rman."""
    configure_double(oracle_home, {"*": {"seconds": 0.1}})
    host = Host(
        name="f1",
        address=sshd.host,
        priority=1,
        oracle_sid="F1",
        oracle_home=str(oracle_home),
        lock_dir=str(oracle_home),
    )
    full = BUILTIN_STEPS["full"]

    def run_with(token: int) -> Any:
        step = render_step(host, full, "20261201T000000Z-abcd", token=token)
        return sshd.ssh(step.command, step.stdin)

    assert run_with(9).returncode == 0
    assert [token_of(r) for r in starts(oracle_home)] == [9]
    deposed = run_with(5)
    assert deposed.returncode == FENCED_EXIT
    assert "fanout: fenced: leader token 5 is older than 9" in deposed.stderr
    assert [token_of(r) for r in starts(oracle_home)] == [9]  # rman never started
    assert not (oracle_home / "fanout-F1.lock").exists()  # and the lock was released
    assert run_with(12).returncode == 0
    assert [token_of(r) for r in starts(oracle_home)] == [9, 12]


def test_quorum_loss_fences_the_leader_and_nobody_takes_over(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd: EtcdCluster
) -> None:
    """Two of three etcd members gone mid-run: the leader stops its remote work by its local
    deadline and exits 76; the standby never leads and gives up after unavailable_after (69)."""
    configure_double(oracle_home, {"*": {"seconds": 0.2, "full": {"seconds": 20}}})
    inventory = cluster_inventory(
        tmp_path, sshd, oracle_home, etcd, ("Q1",), unavailable_after="3s"
    )
    with nodes(tmp_path, inventory, "n1", "n2") as running:
        leader = leader_of(running)
        standby = next(n for n in running if n != leader)
        wait_until(lambda: starts(oracle_home), 30, what="the full backup")
        wait_until(lambda: "standing by" in running[standby].stderr, 10, what="the standby")
        for member in etcd.members[:2]:
            etcd.kill(member)
        leader_status, _, leader_err = running[leader].finish(30)
        standby_status, _, standby_err = running[standby].finish(30)
    assert leader_status == EXIT_FENCED, leader_err
    assert "lost leadership of run" in leader_err
    assert standby_status == 69, standby_err
    assert "cluster unavailable for" in standby_err
    ends = [r for r in read_invocations(oracle_home) if r["event"] == "end"]
    assert [r["ended"] for r in ends] == ["SIGINT"]
    assert not remote_processes(oracle_home)


async def test_the_etcd_adapter_campaigns_fences_prunes_and_reports_unavailable(
    etcd: EtcdCluster,
) -> None:
    """EtcdKV against the real cluster: one leader per key, tokens that grow, a fenced write
    refused for a stale token, prefix deletes in the same transaction, a member down ridden
    through, and Unavailable (never a hang) once quorum is gone."""
    from fanout.cluster.etcd import open_kv
    from fanout.cluster.kv import Unavailable
    from fanout.cluster.leader import Holder, Leadership, campaign
    from fanout.model import ClusterSettings

    settings = ClusterSettings(
        endpoints=tuple(etcd.endpoints), node="t", group="g", ttl=2.0, request_timeout=1.0
    )
    kv = open_kv(settings)
    try:
        first = await campaign(kv, "/t/leader", "a", 1, 2)
        assert isinstance(first, Leadership)
        second = await campaign(kv, "/t/leader", "b", 2, 2)
        assert isinstance(second, Holder)
        assert (second.node, second.token) == ("a", first.token)
        await first.write([("/t/runs/r1/x", b"1"), ("/t/runs/r2/x", b"2")])
        await first.write([("/t/run", b"r2")], ["/t/runs/r1/"])
        assert etcd.get_prefix("/t/runs/") == {"/t/runs/r2/x": "2"}
        await kv.revoke(first.lease)
        third = await campaign(kv, "/t/leader", "a", 1, 2)
        assert isinstance(third, Leadership)
        assert third.token > first.token
        assert not await kv.put_fenced("/t/leader", first.token, [("/t/run", b"stale")])
        assert etcd.get("/t/run") == "r2"
        etcd.kill(etcd.members[0])  # the endpoint tried first
        assert await kv.get("/t/run") is not None
        etcd.kill(etcd.members[1])
        with pytest.raises(Unavailable):
            await kv.get("/t/run")
    finally:
        await kv.close()


def test_sigterm_to_a_standby_ends_it_alone(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """SIGTERM to a standing-by node: it exits 143 with one line, the leader's run goes on."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 0.5}})
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, ("S1",))
    with nodes(tmp_path, inventory, "n1", "n2") as running:
        leader = leader_of(running)
        standby = next(n for n in running if n != leader)
        wait_until(lambda: "standing by" in running[standby].stderr, 10, what="the standby")
        running[standby].proc.send_signal(signal.SIGTERM)
        status, _, err = running[standby].finish(10)
        leader_status, _, leader_err = running[leader].finish(30)
    assert status == 143, err
    assert err.splitlines()[-1] == "fanout: stopped by SIGTERM before this node started any step"
    assert "Traceback" not in err
    assert leader_status == 0, leader_err
    assert successes(oracle_home) == Counter({("S1", step): 1 for step in STEPS})


async def test_tls_with_a_client_certificate_and_user_password_come_from_files(
    tmp_path: Path,
) -> None:
    """A TLS etcd that requires client certificates is reached with ca/cert/key files; with
    authentication on, the password comes from password_file; a wrong one fails with one line
    that does not contain it; without the client certificate nothing gets through."""
    from fanout.cluster.etcd import open_kv
    from fanout.cluster.kv import ClusterError
    from fanout.model import ClusterSettings
    from tests.cluster.etcd import ETCD, make_tls, start_cluster, stop_cluster

    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"{ETCD} not found")
    tls = make_tls(tmp_path / "tls")
    etcd = start_cluster(tmp_path / "etcd", members=1, tls=tls)
    try:
        etcd.etcdctl("user", "add", "root:s3cret-pw")
        etcd.etcdctl("auth", "enable")
        (tmp_path / "pw").write_text("s3cret-pw\n")
        (tmp_path / "bad").write_text("wrong-pw\n")
        base = ClusterSettings(
            endpoints=tuple(etcd.endpoints), node="t", group="g", request_timeout=2.0,
            ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key,
        )  # fmt: skip
        from dataclasses import replace

        kv = open_kv(replace(base, user="root", password_file=tmp_path / "pw"))
        try:
            lease, _ = await kv.grant(5)
            created, _ = await kv.create("/g/leader", b"x", lease)
            assert created
        finally:
            await kv.close()
        bad = open_kv(replace(base, user="root", password_file=tmp_path / "bad"))
        try:
            with pytest.raises(ClusterError) as caught:
                await bad.get("/g/leader")
            assert "authentication failed" in str(caught.value)
            assert "wrong-pw" not in str(caught.value)
            assert "\n" not in str(caught.value)
        finally:
            await bad.close()
        anonymous = open_kv(replace(base, cert_file=None, key_file=None))
        try:
            with pytest.raises(ClusterError):
                await anonymous.get("/g/leader")
        finally:
            await anonymous.close()
    finally:
        stop_cluster(etcd)


def test_a_leader_cut_off_from_etcd_stops_its_rman_before_the_standby_takes_over(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """A partition between the leader and etcd (a proxy that holds every byte), the hosts still
    reachable: the leader stops its running rman and exits 76 by its own deadline, the standby
    takes over, and each database's rman of the old leader ended before the new one's began."""
    etcd = etcd_shared
    from tests.cluster.proxy import Proxy

    configure_double(oracle_home, {"*": {"seconds": 0.3, "full": {"seconds": 10}}})
    sids = ("X1", "X2")
    settings = {
        "state_dir": "${FANOUT_STATE}",
        "cluster": {
            "endpoints": ["${ETCD1}", "${ETCD2}", "${ETCD3}"],
            "prefix": prefix_of(tmp_path),
            "node": "${FANOUT_NODE}",
            "group": "nightly",
            "ttl": f"{TTL:g}s",
            "request_timeout": "1s",
        },
    }
    inventory = write_inventory(tmp_path, sshd, oracle_home, [{"sid": s} for s in sids], settings)
    proxy = Proxy(etcd.endpoints)
    try:

        def env(name: str, endpoints: list[str]) -> dict[str, str]:
            values = node_env(tmp_path, name)
            values.update({f"ETCD{i + 1}": e for i, e in enumerate(endpoints)})
            return values

        argv = fanout_argv("run", inventory, "--batch")
        with (
            Background(argv, cwd=REPO, env=env("n1", proxy.endpoints)) as old,
            ExitStack() as later,
        ):
            wait_until(lambda: "leading run" in old.stderr, 30, what="n1 leading")
            wait_until(lambda: len(starts(oracle_home)) >= 2, 30, what="both full backups")
            old_token = token_of(starts(oracle_home)[0])
            new = later.enter_context(Background(argv, cwd=REPO, env=env("n2", etcd.endpoints)))
            wait_until(lambda: "standing by" in new.stderr, 30, what="n2 standing by")
            proxy.pause()
            old_status, _, old_err = old.finish(30)
            new_status, new_out, new_err = new.finish(60)
    finally:
        proxy.close()
    assert old_status == EXIT_FENCED, old_err
    assert "lost leadership of run" in old_err
    assert "taking over run" in new_err
    assert new_status == 0, new_out + new_err
    records = read_invocations(oracle_home)
    old_ends = {r["sid"]: r for r in records if r["event"] == "end" and token_of(r) == old_token}
    assert {r["ended"] for r in old_ends.values()} == {"SIGINT"}
    for sid in sids:
        new_starts = [r["start"] for r in starts(oracle_home) if r["sid"] == sid
                      and token_of(r) > old_token]  # fmt: skip
        assert min(new_starts) >= old_ends[sid]["end"]
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    assert_never_two_at_once(oracle_home)
    assert not remote_processes(oracle_home)


def test_an_interactive_standby_shows_who_leads_and_the_leaders_progress(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """In a terminal a standby names the leader, then prints each step state change of the
    leader's run as it happens, then says the run finished and exits 0."""
    etcd = etcd_shared
    from tests.system.terminal import Terminal

    configure_double(oracle_home, {"*": {"seconds": 0.6}})
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, ("I1",))
    with nodes(tmp_path, inventory, "n1") as running:
        wait_until(lambda: "leading run" in running["n1"].stderr, 30, what="n1 leading")
        env = node_env(tmp_path, "n2") | {"TERM": "xterm"}
        terminal = Terminal(fanout_argv("run", inventory), env)
        try:
            assert terminal.proc.wait(60) == 0, terminal.screen
            screen = terminal.screen
        finally:
            terminal.close()
        assert running["n1"].finish(30)[0] == 0
    assert "standing by: node n1 leads group nightly (this node: n2)" in screen
    for step in STEPS:
        assert f"i1 {step}: ok" in screen, screen
    assert "[n1] " in screen
    assert "nothing to do: run " in screen


def test_sigterm_to_the_leader_hands_the_run_over(
    tmp_path: Path, sshd: SshdServer, oracle_home: Path, etcd_shared: EtcdCluster
) -> None:
    """SIGTERM to the leader (a shutdown) stops that node, not the run: it stops its rman,
    exits 143 and a standby continues the same run at once; every step ends ok exactly once."""
    etcd = etcd_shared
    configure_double(oracle_home, {"*": {"seconds": 0.4, "full": {"seconds": 6}}})
    sids = ("H1", "H2")
    inventory = cluster_inventory(tmp_path, sshd, oracle_home, etcd, sids)
    with nodes(tmp_path, inventory, "n1", "n2") as running:
        leader = leader_of(running)
        other = next(n for n in running if n != leader)
        wait_until(lambda: len(starts(oracle_home)) >= 2, 30, what="both full backups")
        running[leader].proc.send_signal(signal.SIGTERM)
        status, _, err = running[leader].finish(30)
        other_status, _, other_err = running[other].finish(60)
    assert status == 143, err
    assert "is left to a standby to continue" in err
    assert "taking over run" in other_err
    assert other_status == 0, other_err
    assert successes(oracle_home) == Counter({(s, step): 1 for s in sids for step in STEPS})
    assert_never_two_at_once(oracle_home)
    assert not remote_processes(oracle_home)
