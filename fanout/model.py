"""fanout's domain types: the inventory's values, durations and host selection.

Frozen dataclasses and enums, built by ``inventory.py`` (the YAML loader) and read by every
other module. Pure: no I/O, no YAML.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

DEFAULT_STEPS: tuple[str, ...] = ("full", "archivelog", "controlfile")


class StepKind(StrEnum):
    RMAN = "rman"  # an RMAN script fed to `rman target /` on stdin
    SHELL = "shell"  # a plain POSIX sh command (pre-checks, housekeeping)


class OnFailure(StrEnum):
    CONTINUE = (
        "continue"  # later steps still run (default: a failed full must not lose the archivelogs)
    )
    STOP = "stop"  # later steps of this host are skipped


@dataclass(frozen=True, slots=True)
class StepDef:
    """A named step: a built-in, a built-in overridden by the inventory, or a custom one."""

    name: str
    kind: StepKind
    body: str  # RMAN commands (wrapped in RUN { ... } by steps.py) or a shell command
    on_failure: OnFailure = OnFailure.CONTINUE
    retries: int | None = None  # None: the host's `retries`
    timeout: float | None = None  # seconds; None: the host's `step_timeout`


class AdoptPolicy(StrEnum):
    """What a node taking over a run does with a step its predecessor left running on a host."""

    WAIT = "wait"  # wait for it to end (a finished backup is not taken twice)
    STOP = "stop"  # stop it (SIGINT, SIGTERM after cancel_grace, SIGKILL) and run it again


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``settings.cluster``: run one inventory from several machines, coordinated through etcd.

    Secrets come from files only (``password_file``, ``key_file``), never from the command line.
    """

    endpoints: tuple[str, ...]  # etcd client URLs' host:port, e.g. ("10.0.0.1:2379", ...)
    node: str  # this machine's name in the cluster (default: the host name)
    group: str  # what the nodes agree on: one run at a time per group (default: file stem)
    ttl: float = 5.0  # leader lease, seconds: a dead leader is replaced after about this long
    dedupe: float = 12 * 3600.0  # a run of the group that finished this recently counts
    request_timeout: float = 2.0  # every etcd call has this deadline
    unavailable_after: float = 60.0  # etcd unreachable this long (no leader yet): give up
    adopt: AdoptPolicy = AdoptPolicy.WAIT
    prefix: str = "/fanout"
    ca_file: Path | None = None  # TLS: CA bundle; with cert_file/key_file: client certificate
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str | None = None  # etcd authentication; the password is read from password_file
    password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    max_parallel: int = 8  # hosts running at once
    cancel_grace: float = 60.0  # seconds rman gets to abort after SIGINT before SIGTERM
    state_dir: Path | None = None  # None: $XDG_STATE_HOME/fanout or ~/.local/state/fanout
    max_connecting: int = 128  # SSH handshakes in flight at once (they cost CPU on both ends)
    cluster: ClusterSettings | None = None  # None: this machine runs the inventory alone


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # unique label
    address: str  # DNS name, IP, or a Host alias from ~/.ssh/config
    priority: int  # 1 = most important, dispatched first
    oracle_sid: str
    oracle_home: str
    lock_dir: str = "/tmp"  # remote directory for the per-database lock (see steps.py)
    steps: tuple[str, ...] = DEFAULT_STEPS
    tags: tuple[str, ...] = ()
    user: str | None = None  # None: ~/.ssh/config, else the local user
    port: int | None = None  # None: ~/.ssh/config, else 22
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts (host keys are always verified)
    ssh_config: Path | None = None  # None: ~/.ssh/config if it exists
    step_timeout: float = 6 * 3600.0
    retries: int = 0  # extra attempts for a failed step
    connect_retries: int = 2  # extra attempts for transient connection failures
    connect_timeout: float = 30.0
    index: int = 0  # position in the file: breaks priority ties


@dataclass(frozen=True, slots=True)
class Inventory:
    path: Path
    settings: Settings
    hosts: tuple[Host, ...]  # sorted by (priority, index)
    # Every step a host may name: the built-ins (steps.BUILTIN_STEPS) with the
    # inventory's overrides applied, plus the inventory's custom steps.
    steps: Mapping[str, StepDef] = field(default_factory=dict)
    sha256: str = ""  # of the file's bytes, for the run store


# --- durations and selection --------------------------------------------------

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+(?:\.[0-9]+)?)s)?")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``30s``, ``5m``, ``6h``, ``2d``, ``1h30m``, ``0.5s``.

    Units d/h/m/s, each at most once and in that order; only seconds may have a
    fraction. A bare number is seconds (``timeout: 90``). Zero is allowed here:
    callers that need a positive duration check. Raises ValueError naming ``text``.
    """
    if _SECONDS.fullmatch(text):
        return float(Decimal(text))
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"expected a duration like 30s, 5m, 6h or 1h30m, got {text!r}")
    days, hours, minutes, seconds = (Decimal(group or 0) for group in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def format_duration(seconds: float) -> str:
    """``seconds`` as ``parse_duration`` reads it: 21600 → ``6h``, 5400 → ``1h30m``, 0.5 → ``0.5s``.

    Exact to the millisecond. Raises ValueError for a negative or non-finite value.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative number of seconds, got {seconds!r}")
    whole, millis = divmod(round(seconds * 1000), 1000)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if millis:
        parts.append(f"{secs}.{millis:03d}".rstrip("0") + "s")
    elif secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


def select_hosts(
    hosts: Iterable[Host], limit: Sequence[str], tags: Sequence[str]
) -> tuple[Host, ...]:
    """The hosts matching both ``limit`` and ``tags``, in their given order.

    ``limit``: fnmatch globs on host names (case-sensitive); a host matches if any glob does.
    ``tags``: a host matches if it carries *any* of them. So repeating either option
    widens it, and the two options narrow each other. An empty sequence does not filter.
    """
    wanted = set(tags)
    return tuple(
        host
        for host in hosts
        if (not limit or any(fnmatch.fnmatchcase(host.name, glob) for glob in limit))
        and (not wanted or not wanted.isdisjoint(host.tags))
    )
