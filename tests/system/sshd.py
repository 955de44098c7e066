"""Real-component test helpers: a private OpenSSH sshd on 127.0.0.1 and the RMAN double behind it.

- ``open_remote_side()`` / ``close_remote_side``: the "database host" side, shared by every test:
  the login user and a world-traversable directory for the ORACLE_HOMEs (see ``RemoteSide``).
- ``start_sshd(workdir, remote)`` / ``stop_sshd(server, proc)``: the session fixture's engine
  (conftest.py).
- ``SshdServer``: where the server listens and how to reach it (``ssh_argv``, ``ssh``).
- ``install_double``, ``configure_double``, ``read_invocations``: the RMAN fake under an
  ORACLE_HOME (``fanout/sim/rman_fake.py``, the one of the demo too, documents double.json
  and the records).
- ``remote_processes(oracle_home)``: every live process that is the double or shares a recorded
  double's process group, read from /proc without trusting fanout; ``kill_remote_processes``.
- ``rman_command``, ``rman_script``: the remote command and stdin fanout sends (notes §1).
- ``write_inventory``: a fanout inventory YAML pointing every host at the private sshd.
- ``fanout_argv``, ``fanout_env``, ``run_fanout``, ``json_events``, ``wait_with_usage``: the real
  CLI as a subprocess (``python -m fanout`` from this checkout), as cron would start it.
- ``wait_until``: the bounded poll every test waits with.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fanout.sim import rman_fake

T = TypeVar("T")

SSHD = Path("/usr/sbin/sshd")
SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
TEST_USER = "fanout-test"  # the remote login when the tests run as root
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
DURATION_KEYS = frozenset({"cancel_grace", "step_timeout", "connect_timeout", "timeout"})


# -- waiting --------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raises TimeoutError naming ``what`` (or the predicate) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout}s: {what or predicate!r}")
        time.sleep(interval)


# -- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    pgid: int
    session: int
    state: str  # R S D T Z ...
    cmdline: tuple[str, ...]

    @property
    def args(self) -> str:
        return " ".join(self.cmdline)


def read_proc(pid: int) -> ProcInfo | None:
    """The process ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces and parentheses
    cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        session=int(fields[3]),
        state=fields[0],
        cmdline=cmdline,
    )


def live_processes() -> list[ProcInfo]:
    """Every process except zombies (a zombie runs nothing; its parent just has not reaped it)."""
    procs = (read_proc(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [proc for proc in procs if proc is not None and proc.state != "Z"]


def is_alive(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.state != "Z"


def descendants(pid: int) -> list[ProcInfo]:
    """Live descendants of ``pid``, parents before children."""
    procs = live_processes()
    found: list[ProcInfo] = []
    parents = {pid}
    while True:
        layer = [p for p in procs if p.ppid in parents and p not in found]
        if not layer:
            return found
        found += layer
        parents = {p.pid for p in layer}


def kill_and_wait(pids: Iterable[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pids``, SIGKILL what is still alive after ``timeout``, and wait for the end."""
    pending = [pid for pid in pids if pid != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not any(is_alive(pid) for pid in pending), timeout)
            return
    raise RuntimeError(f"processes survived SIGKILL: {[p for p in pending if is_alive(p)]}")


class Background:
    """A local process (an ssh client, a fanout run) with its output collected by threads.

    ``wait_for_output`` polls the collected stdout with a deadline; ``finish`` waits (bounded)
    and returns (status, stdout, stderr); ``kill`` SIGKILLs it. Use as a context manager so the
    process never outlives the test.
    """

    def __init__(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if stdin is not None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(stdin.encode())
            self.proc.stdin.close()

    @staticmethod
    def _drain(stream: Any, sink: list[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := stream.read1(65536):
                sink.append(chunk)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return b"".join(self._out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> str:
        """Wait until stdout contains ``text``; return stdout. Raises TimeoutError."""
        return wait_until(
            lambda: self.stdout if text in self.stdout else "", timeout, what=repr(text)
        )

    def finish(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """Wait for exit (TimeoutExpired after ``timeout``) and for the output to drain."""
        status = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return status, self.stdout, self.stderr

    def finish_with_usage(self, timeout: float = 10.0) -> tuple[int, str, str, Any]:
        """``finish``, plus the process's own ``resource.struct_rusage`` (``ru_maxrss``: KiB)."""
        status, usage = wait_with_usage(self.proc, timeout)
        for thread in self._threads:
            thread.join(timeout)
        return status, self.stdout, self.stderr, usage

    def events(self) -> list[dict[str, Any]]:
        """stdout so far as ``--json`` events (complete lines only)."""
        return json_events(self.stdout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# -- the remote side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteSide:
    """What the "database host" looks like to the tests: who logs in and where ORACLE_HOMEs live.

    Running as root, the tests log in as ``TEST_USER`` (a system user with ``/bin/sh`` as its
    login shell, like an ``oracle`` account): root's login shell may source a heavy ~/.bashrc on
    every SSH session, and OpenSSH 7.9-9.9 refuse the RFC 4254 signal request for root. Running
    as anyone else, the tests log in as themselves.

    ``root`` is a 0755 directory under the system temp dir (pytest's tmp_path sits under a 0700
    directory the login user cannot enter); every ORACLE_HOME is created below it, owned by the
    login user so the double can append its records. ``interpreter`` is the double's shebang: a
    Python the login user can execute, started isolated (``-IS``: the double is stdlib only).
    ``authorized_keys`` lives here too, since sshd reads it as the login user.
    """

    user: str
    uid: int
    gid: int
    root: Path
    interpreter: str

    def new_oracle_home(self, label: str = "oh") -> Path:
        """A fresh ORACLE_HOME with the double installed (see ``install_double``)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:40] or "oh"
        parent = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=self.root))
        parent.chmod(0o755)
        return install_double(parent / "oracle_home", self.interpreter, (self.uid, self.gid))

    def remove_oracle_home(self, oracle_home: Path) -> None:
        """Delete an ORACLE_HOME made by ``new_oracle_home`` (and its parent)."""
        if oracle_home.parent.parent == self.root:
            shutil.rmtree(oracle_home.parent, ignore_errors=True)


def ensure_test_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The system user ``name``, created (login shell /bin/sh, not locked) if missing.

    Idempotent. The password field is ``*`` (no password, not locked): sshd without PAM refuses
    every login, keys included, for an account whose password field starts with ``!``.
    Raises RuntimeError if the user cannot be created (e.g. useradd is missing).
    """
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--create-home", "--shell", "/bin/sh", "--password", "*"]
        result = subprocess.run(
            [*argv, name], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by a parallel session
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None
    _unlock(name)
    return pwd.getpwnam(name)


def _unlock(name: str) -> None:
    """Set the password field to ``*`` if it is locked (``!...``) in /etc/shadow."""
    with contextlib.suppress(OSError):
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name and fields[1:2] and fields[1].startswith("!"):
                usermod = shutil.which("usermod") or "/usr/sbin/usermod"
                subprocess.run(
                    [usermod, "--password", "*", name], capture_output=True, timeout=30, check=True
                )


def _runs_as(entry: pwd.struct_passwd, argv: Sequence[str]) -> bool:
    """Whether ``argv`` exits 0 when run as ``entry`` (no supplementary groups)."""
    try:
        if entry.pw_uid == os.geteuid():
            result = subprocess.run(list(argv), capture_output=True, timeout=30, check=False)
        else:
            result = subprocess.run(
                list(argv),
                capture_output=True,
                timeout=30,
                check=False,
                cwd="/",
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=[],
            )
    except OSError:
        return False
    return result.returncode == 0


def double_interpreter(entry: pwd.struct_passwd) -> str:
    """The double's shebang interpreter: the first Python ``entry`` can run, with ``-IS``.

    /usr/bin/python3 first, then the interpreter behind this venv, then this very interpreter.
    Raises RuntimeError if the login user can run none of them (install Debian's python3).
    """
    candidates = [SYSTEM_PYTHON, os.path.realpath(sys.executable), sys.executable]
    for candidate in dict.fromkeys(candidates):
        if os.access(candidate, os.X_OK) and _runs_as(entry, [candidate, "-IS", "-c", "pass"]):
            return f"{candidate} -IS"
    raise RuntimeError(
        f"user {entry.pw_name} can execute none of {candidates}: the RMAN double needs a Python"
        " it can run (install python3)"
    )


def open_remote_side() -> RemoteSide:
    """Pick the login user (creating TEST_USER when root), its interpreter and the ORACLE_HOME
    base directory. Undo with ``close_remote_side``. Raises RuntimeError (see the helpers)."""
    entry = ensure_test_user() if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    interpreter = double_interpreter(entry)
    root = Path(tempfile.mkdtemp(prefix="fanout-remote-"))
    try:
        root.chmod(0o755)
        probe = root / "probe"
        probe.write_text("")
        python = interpreter.split()[0]
        code = "import sys; open(sys.argv[1]).close()"
        if not _runs_as(entry, [python, "-IS", "-c", code, str(probe)]):
            raise RuntimeError(
                f"user {entry.pw_name} cannot read {probe}: point TMPDIR at a directory"
                " every user can enter"
            )
        probe.unlink()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return RemoteSide(entry.pw_name, entry.pw_uid, entry.pw_gid, root, interpreter)


def close_remote_side(remote: RemoteSide) -> None:
    """Remove the ORACLE_HOME base directory (the login user stays, for the next session)."""
    shutil.rmtree(remote.root, ignore_errors=True)


# -- the private sshd ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SshdServer:
    """A running private sshd and everything a client needs to reach it."""

    port: int
    user: str
    client_key: Path
    known_hosts: Path
    pid: int
    log_path: Path
    config_path: Path
    ssh_config: Path  # an empty OpenSSH client config: nothing from ~/.ssh leaks in
    host: str = "127.0.0.1"

    def session_pids(self) -> list[int]:
        """One sshd process per connection: the one holding its socket, parent of its commands.

        For a non-root login that is ``sshd: user@notty``, the child of the listener's child
        ``sshd: user [priv]`` (the privileged monitor); for a root login (no post-auth privilege
        separation) it is the listener's child itself; during the handshake, the pre-auth child.
        SIGKILL to it drops the connection at once; the commands it started live on.
        """
        procs = live_processes()
        children: dict[int, list[ProcInfo]] = {}
        for proc in procs:
            children.setdefault(proc.ppid, []).append(proc)
        found = []
        for top in children.get(self.pid, []):
            current = top
            while True:
                below = [p for p in children.get(current.pid, []) if p.args.startswith("sshd:")]
                if len(below) != 1:
                    break
                current = below[0]
            found.append(current.pid)
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ssh_argv(self, command: str, *options: str) -> list[str]:
        """The plain OpenSSH client command line running ``command`` on this server.

        ``options`` go first: for ssh the first value of an option wins, so they override.
        """
        return [
            SSH,
            *options,
            "-F",
            str(self.ssh_config),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(self.port),
            f"{self.user}@{self.host}",
            command,
        ]

    def ssh(
        self, command: str, stdin: str | None = None, timeout: float = 20.0, *options: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` over ssh and wait (bounded) for it."""
        return subprocess.run(
            self.ssh_argv(command, *options),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def sshd_version() -> tuple[int, int]:
    """(major, minor) of /usr/sbin/sshd, from ``sshd -V``."""
    result = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, timeout=10)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stdout + result.stderr)
    if match is None:
        raise RuntimeError(f"cannot read the sshd version: {result.stderr!r}")
    return int(match.group(1)), int(match.group(2))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _sshd_config(workdir: Path, port: int, version: tuple[int, int], authorized_keys: Path) -> str:
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {workdir / 'host_ed25519'}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",  # read as the login user
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "MaxSessions 200",
        "MaxStartups 1000:30:1000",
        "PrintMotd no",
        "LogLevel VERBOSE",
    ]
    if version >= (9, 8):  # penalties would throttle the deliberate failures some tests provoke
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the sshd child before exec: SIGTERM it if the test process dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_sshd(workdir: Path, remote: RemoteSide) -> tuple[SshdServer, subprocess.Popen[bytes]]:
    """Generate keys and config under ``workdir`` and start sshd on a free 127.0.0.1 port,
    accepting the client key for ``remote.user`` (authorized_keys under ``remote.root``).

    Returns once sshd logs that it listens and the port answers with an SSH banner. Raises
    RuntimeError with the sshd log if it exits or does not listen within START_TIMEOUT.
    """
    if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    _keygen(workdir / "host_ed25519", "fanout-test-host")
    _keygen(workdir / "client_ed25519", "fanout-test-client")
    authorized_keys = remote.root / "authorized_keys"
    shutil.copyfile(workdir / "client_ed25519.pub", authorized_keys)
    authorized_keys.chmod(0o644)
    host_key = (workdir / "host_ed25519.pub").read_text().split()
    ssh_config = workdir / "ssh_config"
    ssh_config.write_text("")
    version = sshd_version()
    log_path = workdir / "sshd.log"
    last_error = ""
    for _attempt in range(3):  # another process may grab the free port before sshd binds it
        port = _free_port()
        config_path = workdir / "sshd_config"
        config_path.write_text(_sshd_config(workdir, port, version, authorized_keys))
        (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-E", str(log_path), "-f", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        server = SshdServer(
            port=port,
            user=remote.user,
            client_key=workdir / "client_ed25519",
            known_hosts=workdir / "known_hosts",
            pid=proc.pid,
            log_path=log_path,
            config_path=config_path,
            ssh_config=ssh_config,
        )
        try:
            wait_until(
                functools.partial(_ready, server, proc), START_TIMEOUT, interval=0.05, what="sshd"
            )
            return server, proc
        except TimeoutError:
            last_error = f"did not listen within {START_TIMEOUT}s"
        except _Exited as exc:
            last_error = str(exc)
        stop_sshd(server, proc)
        if "Address already in use" not in log_path.read_text(errors="replace"):
            break
    raise RuntimeError(
        f"sshd {last_error}; log {log_path}:\n{log_path.read_text(errors='replace')}"
    )


class _Exited(Exception):
    pass


def _ready(server: SshdServer, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise _Exited(f"exited with status {proc.returncode}")
    if f"Server listening on 127.0.0.1 port {server.port}" not in server.log():
        return False
    try:
        with socket.create_connection((server.host, server.port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def stop_sshd(server: SshdServer, proc: subprocess.Popen[bytes]) -> None:
    """Stop the per-connection processes (and whatever still runs under them), then the listener.

    By pid only: SIGTERM, then SIGKILL after STOP_TIMEOUT. Children go first, while the listener
    is still there to reap them.
    """
    with contextlib.suppress(RuntimeError):
        kill_and_wait(reversed([p.pid for p in descendants(server.pid)]))
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    kill_and_wait([p.pid for p in descendants(server.pid)])


# -- the RMAN double ----------------------------------------------------------------------------


def install_double(
    oracle_home: Path, interpreter: str | None = None, owner: tuple[int, int] | None = None
) -> Path:
    """Create ``oracle_home`` with bin/rman = the RMAN fake (shebang: ``interpreter``, default
    this one), an empty double.json (every SID ``ok``) and no invocations yet. ``owner`` (uid,
    gid) gets ``oracle_home`` itself, so the fake running as that user can append its records.
    Returns ``oracle_home``."""
    rman_fake.install(oracle_home, interpreter or sys.executable)
    if owner is not None and owner != (os.geteuid(), os.getegid()):
        os.chown(oracle_home, *owner)
    return oracle_home


def configure_double(oracle_home: Path, config: Mapping[str, Any]) -> None:
    """Write double.json atomically (the fake re-reads it at every invocation)."""
    rman_fake.configure(oracle_home, dict(config))


def read_invocations(oracle_home: Path) -> list[dict[str, Any]]:
    """Every record the fake appended, oldest first (``event`` is ``start`` or ``end``)."""
    return rman_fake.read_invocations(oracle_home)


def remote_processes(oracle_home: Path) -> list[ProcInfo]:
    """Live processes that run ``<oracle_home>/bin/rman`` or share the process group of a double
    recorded in invocations.jsonl (so its children count too).

    The test process's own group is never counted. Don't put the literal rman path in a local
    command line (``rman_command`` uses ``"$ORACLE_HOME/bin/rman"``), or that process counts too.
    """
    rman = str(oracle_home / "bin" / "rman")
    pgids = {
        rec["pgid"] for rec in read_invocations(oracle_home) if isinstance(rec.get("pgid"), int)
    }
    pgids.discard(os.getpgid(0))
    me = os.getpid()
    return [
        proc
        for proc in live_processes()
        if proc.pid != me and (rman in proc.args or proc.pgid in pgids)
    ]


def kill_remote_processes(oracle_home: Path) -> list[ProcInfo]:
    """SIGKILL every process ``remote_processes`` finds and wait (bounded) until none is left.

    Returns what it killed. Raises RuntimeError if something survives three rounds.
    """
    killed: list[ProcInfo] = []
    for _round in range(3):
        found = remote_processes(oracle_home)
        if not found:
            return killed
        killed += found
        for proc in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not remote_processes(oracle_home), STOP_TIMEOUT)
    if remote_processes(oracle_home):
        raise RuntimeError(f"double processes survived SIGKILL: {remote_processes(oracle_home)}")
    return killed


def rman_command(oracle_home: Path, sid: str) -> str:
    """The remote command fanout runs for an RMAN step (notes §1); its first output line is $$."""
    q = shlex.quote
    return (
        'echo "$$"\n'
        f"ORACLE_SID={q(sid)}; ORACLE_HOME={q(str(oracle_home))}; export ORACLE_SID ORACLE_HOME\n"
        "NLS_LANG='AMERICAN_AMERICA.AL32UTF8'; NLS_DATE_FORMAT='YYYY-MM-DD HH24:MI:SS'\n"
        "export NLS_LANG NLS_DATE_FORMAT\n"
        'exec "$ORACLE_HOME/bin/rman" target /\n'
    )


_STEP_BODIES = {
    "full": ["BACKUP INCREMENTAL LEVEL 0 DATABASE TAG 'FANOUT_L0';"],
    "archivelog": ["BACKUP ARCHIVELOG ALL NOT BACKED UP 1 TIMES TAG 'FANOUT_ARCH';"],
    "controlfile": [
        "BACKUP CURRENT CONTROLFILE TAG 'FANOUT_CTL';",
        "BACKUP SPFILE TAG 'FANOUT_SPF';",
    ],
}


def rman_script(step: str = "full", run_id: str = "test") -> str:
    """The stdin script of a built-in step (notes §1)."""
    body = "".join(f" {line}\n" for line in _STEP_BODIES[step])
    return f"RUN {{\n SET COMMAND ID TO 'fanout-{run_id}';\n{body}}}\nEXIT;\n"


# -- inventory ------------------------------------------------------------------------------------


def _duration(key: str, value: Any) -> Any:
    if key in DURATION_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}s"
    return value


def write_inventory(
    tmp_path: Path,
    sshd: SshdServer,
    oracle_home: Path,
    hosts: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    *,
    filename: str = "inventory.yaml",
    step_defs: Mapping[str, Mapping[str, Any]] | None = None,
    **defaults: Any,
) -> Path:
    """Write a fanout inventory whose hosts all reach the private sshd; return its path.

    ``hosts``: mappings with ``sid`` (or ``oracle_sid``) and optionally ``name`` (default: the sid
    in lower case), ``priority`` (default: position + 1), ``address`` and any other host key
    (``steps``, ``tags``...), passed through. ``step_defs`` becomes the top-level ``steps``
    section (custom or overridden steps). ``settings`` and ``defaults`` override the test
    defaults below; numbers given for durations become ``"<n>s"``. The per-database lock goes
    in ``oracle_home`` (writable by the login user), so tests never share locks with other runs.
    """
    doc_settings = {"max_parallel": 8, "cancel_grace": "5s", "state_dir": str(tmp_path / "state")}
    doc_settings.update(settings or {})
    doc_defaults: dict[str, Any] = {
        "user": sshd.user,
        "port": sshd.port,
        "oracle_home": str(oracle_home),
        "lock_dir": str(oracle_home),  # per test: /tmp is shared with every other run on the box
        "identity_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "ssh_config": str(sshd.ssh_config),
        "step_timeout": "60s",
        "retries": 0,
        "connect_retries": 0,
        "connect_timeout": "10s",
    }
    doc_defaults.update(defaults)
    doc_hosts = []
    for index, host in enumerate(hosts):
        extra = {k: v for k, v in host.items() if k not in {"sid", "oracle_sid", "name"}}
        sid = host.get("oracle_sid", host.get("sid"))
        if not isinstance(sid, str):
            raise ValueError(f"hosts[{index}]: needs a sid")
        entry = {
            "name": host.get("name", sid.lower()),
            "address": sshd.host,
            "priority": index + 1,
            "oracle_sid": sid,
            **extra,
        }
        doc_hosts.append({k: _duration(k, v) for k, v in entry.items()})
    document: dict[str, Any] = {
        "settings": {k: _duration(k, v) for k, v in doc_settings.items()},
        "defaults": {k: _duration(k, v) for k, v in doc_defaults.items()},
    }
    if step_defs:
        document["steps"] = {
            name: {k: _duration(k, v) for k, v in step.items()} for name, step in step_defs.items()
        }
    document["hosts"] = doc_hosts
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# -- fanout as a subprocess -----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
_ENV_DROPPED = (
    "SSH_AUTH_SOCK",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_INTERACTIVE",
    "TTY_COMPATIBLE",
    # With it, stdout is a raw FileIO under a write-through TextIOWrapper, which silently drops
    # the rest of a write that a signal cut short (CPython); cron does not set it.
    "PYTHONUNBUFFERED",
)


def fanout_argv(*args: str | Path) -> list[str]:
    """``python -m fanout ARGS`` with this interpreter (run it with ``cwd=REPO``)."""
    return [sys.executable, "-m", "fanout", *(str(arg) for arg in args)]


def fanout_env(home: Path) -> dict[str, str]:
    """The environment of a fanout subprocess: this one, with HOME (and so ~/.ssh) and
    XDG_STATE_HOME under ``home``, no SSH agent, no colour overrides, no PYTHONUNBUFFERED,
    TERM=dumb, and this checkout first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        TERM="dumb",
        PYTHONPATH=str(REPO),
    )
    return env


def run_fanout(
    home: Path, *args: str | Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``fanout ARGS`` to completion like cron would (stdin /dev/null), bounded by
    ``timeout`` (subprocess.TimeoutExpired; the process is killed)."""
    return subprocess.run(
        fanout_argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=fanout_env(home),
    )


def json_events(stdout: str) -> list[dict[str, Any]]:
    """The complete lines of ``fanout run --json`` output, parsed."""
    lines = stdout.split("\n")[:-1]  # the last piece is empty or still being written
    return [json.loads(line) for line in lines if line.strip()]


def wait_with_usage(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, Any]:
    """Reap ``proc`` with wait4: (exit status, its ``resource.struct_rusage``).

    Polls every 20 ms; raises subprocess.TimeoutExpired after ``timeout`` (the process keeps
    running: the caller's context manager kills it).
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.02)
