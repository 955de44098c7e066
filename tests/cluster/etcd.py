"""A real etcd cluster on 127.0.0.1 for the tests: free ports, fast raft timers, killed by pid.

``start_cluster(workdir, members=3)`` starts ``/usr/bin/etcd`` members with
``--heartbeat-interval 10 --election-timeout 100`` (healthy in well under a second) and
returns an ``EtcdCluster``; ``stop_cluster`` SIGKILLs every member by its pid. Members can be
killed, frozen (SIGSTOP) and restarted one by one. ``raft_leader()`` asks etcdctl.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")
START_TIMEOUT = 15.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass(frozen=True)
class Tls:
    """PEM files: a CA, the server's certificate (SAN 127.0.0.1) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(workdir: Path) -> Tls:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    workdir.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    ca, ca_key = workdir / "ca.pem", workdir / "ca-key.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=fanout-test-ca")  # fmt: skip
    paths = {}
    extensions = {"server": "subjectAltName=IP:127.0.0.1", "client": "extendedKeyUsage=clientAuth"}
    for name, ext in extensions.items():
        key, csr, cert = (workdir / f"{name}{s}" for s in ("-key.pem", ".csr", ".pem"))
        openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        extfile = workdir / f"{name}.ext"
        extfile.write_text(ext + "\n")
        signing = ("-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2")
        openssl("x509", "-req", "-in", str(csr), *signing, "-out", str(cert), "-extfile", extfile)
        paths[name] = (cert, key)
    return Tls(ca, *paths["server"], *paths["client"])


@dataclass
class EtcdCluster:
    members: list[Member]
    token: str
    state: str = "new"
    _initial: str = field(default="")
    tls: Tls | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start_member(self, member: Member, state: str = "new") -> None:
        argv = [
            str(ETCD),
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", f"{self.scheme}://{member.endpoint}",
            "--advertise-client-urls", f"{self.scheme}://{member.endpoint}",
            "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster", self._initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", state,
            "--heartbeat-interval", "10",
            "--election-timeout", "100",
        ]  # fmt: skip
        if self.tls is not None:
            argv += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        with member.log.open("ab") as log:
            member.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self, member: Member) -> None:
        """SIGKILL one member and reap it."""
        if member.proc is not None and member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait(5)

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> str:
        env = {**os.environ, "ETCDCTL_API": "3"}
        tls = []
        if self.tls is not None:
            tls = [f"--cacert={self.tls.ca}", f"--cert={self.tls.client_cert}",
                   f"--key={self.tls.client_key}"]  # fmt: skip
        urls = [f"{self.scheme}://{e}" for e in endpoints or self.endpoints]
        result = subprocess.run(
            [str(ETCDCTL), "--endpoints", ",".join(urls), *tls, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def healthy(self, members: list[Member] | None = None) -> bool:
        try:
            self.etcdctl(
                "endpoint", "health", endpoints=[m.endpoint for m in members or self.members]
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def raft_leader(self) -> Member:
        """The member that leads raft now (from ``etcdctl endpoint status``)."""
        alive = [m for m in self.members if m.proc is not None and m.proc.poll() is None]
        out = self.etcdctl(
            "endpoint", "status", "-w", "json", endpoints=[m.endpoint for m in alive]
        )
        status = json.loads(out)
        for entry in status:
            if entry["Status"]["header"]["member_id"] == entry["Status"]["leader"]:
                endpoint = entry["Endpoint"].split("://")[-1]
                return next(m for m in self.members if m.endpoint == endpoint)
        raise RuntimeError(f"no raft leader in {out}")

    def get(self, key: str) -> str | None:
        out = self.etcdctl("get", key, "--print-value-only")
        return out.rstrip("\n") if out else None

    def get_prefix(self, prefix: str) -> dict[str, str]:
        out = self.etcdctl("get", prefix, "--prefix", "-w", "json")
        import base64

        kvs = json.loads(out).get("kvs", [])
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
            for kv in kvs
        }


def start_cluster(workdir: Path, members: int = 3, tls: Tls | None = None) -> EtcdCluster:
    """Start ``members`` etcd members on free loopback ports; wait (bounded) until healthy.

    Raises RuntimeError (after killing what started) if it is not healthy in time."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * members)
    nodes = [
        Member(
            f"m{i}",
            ports[2 * i],
            ports[2 * i + 1],
            workdir / f"m{i}.etcd",
            workdir / f"m{i}.log",
        )
        for i in range(members)
    ]
    cluster = EtcdCluster(nodes, token=f"fanout-test-{os.getpid()}-{ports[0]}", tls=tls)
    cluster._initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in nodes)
    for member in nodes:
        cluster.start_member(member)
    deadline = time.monotonic() + START_TIMEOUT
    while not cluster.healthy():
        if time.monotonic() > deadline or any(
            m.proc is not None and m.proc.poll() is not None for m in nodes
        ):
            stop_cluster(cluster)
            logs = "\n".join(m.log.read_text()[-2000:] for m in nodes if m.log.exists())
            raise RuntimeError(f"etcd cluster not healthy in {START_TIMEOUT}s:\n{logs}")
        time.sleep(0.05)
    return cluster


def stop_cluster(cluster: EtcdCluster) -> None:
    """SIGKILL every member by pid (SIGCONT first, in case a test froze one) and reap it."""
    for member in cluster.members:
        if member.proc is not None and member.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.proc.pid, signal.SIGCONT)
            cluster.kill(member)
    for member in cluster.members:
        shutil.rmtree(member.data_dir, ignore_errors=True)
