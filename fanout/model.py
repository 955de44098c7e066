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

# --- freshness policy (issue 14) ---
# How old the last successful backup of each kind may get before `fanout check` says CRITICAL.
# Keys are step names ("kinds"): plain strings, so a level policy can add "backup/level0" etc.
DEFAULT_MAX_AGE: dict[str, float] = {
    "full": 8 * 86400.0,
    "archivelog": 26 * 3600.0,
    "controlfile": 26 * 3600.0,
}
# A step of the level policy is judged per level, as `<step>/level0` and `<step>/level1`: by
# default a level 0 within 8 days and a level 1 within 50 hours (a weekly level 0 day takes no
# level 1, so a daily level 1 is up to two days apart).
DEFAULT_LEVEL_MAX_AGE: dict[int, float] = {0: 8 * 86400.0, 1: 50 * 3600.0}
DEFAULT_MAX_AGE_WARN = 0.8  # WARNING once the age passes this fraction of max_age


class StepKind(StrEnum):
    RMAN = "rman"  # an RMAN script fed to `rman target /` on stdin
    SHELL = "shell"  # a plain POSIX sh command (pre-checks, housekeeping)


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """When the ``backup`` step takes a level 0 instead of a level 1 (see ``fanout.policy``)."""

    level0_every: float | None = 7 * 86400.0  # seconds; None: only on ``level0_on`` days
    level0_on: frozenset[int] = frozenset()  # weekdays, 0 = Monday (date.weekday())
    cumulative: bool = False  # level 1 CUMULATIVE (everything since the last level 0)


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
    empty_ok: bool = False  # rman said "no files matched" (RMAN-20242 …): the step is ok
    # --- fleet policy (issue 13) ---
    configure: tuple[str, ...] = ()  # RMAN CONFIGURE commands, run before the RUN block
    requires: tuple[str, ...] = ()  # steps that must have succeeded in this run, else skipped
    when: str | None = None  # POSIX sh condition run on the host first; exit 1: skipped
    levels: LevelPolicy | None = None  # the `backup` step: level 0 or 1 chosen per database
    # -- the backup window (scheduler.py) --
    window_duration: bool = False  # RMAN: BACKUP … DURATION hh:mm PARTIAL with the time left
    max_age: float | None = None  # seconds; freshness threshold for every host running it


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """A time of day (the end of the backup window), in ``zone`` or the orchestrator's zone."""

    hour: int
    minute: int
    zone: str | None = None  # an IANA name ("Europe/Paris", "UTC"); None: local time

    @property
    def label(self) -> str:
        text = f"{self.hour:02d}:{self.minute:02d}"
        return f"{text} {self.zone}" if self.zone else text


_TIME_OF_DAY = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?:\s+(\S+))?")


def parse_time_of_day(text: str) -> TimeOfDay:
    """``06:00`` or ``06:00 Europe/Paris``. Raises ValueError naming ``text``; the zone name is
    checked by the caller (zoneinfo needs the system's tz database)."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a time of day like 06:00 or '06:00 Europe/Paris', got {text!r}")
    return TimeOfDay(int(match[1]), int(match[2]), match[3])


@dataclass(frozen=True, slots=True)
class Group:
    """A capacity group: a shared thing (NFS filer, media manager, VM host) that takes at
    most ``max_parallel`` backups at once."""

    name: str
    max_parallel: int


class NotifyOn(StrEnum):
    FAILURE = "failure"  # exit code other than 0 (cancelled runs included)
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Notify:
    """``settings.notify``: a command run after each run, the run's summary JSON on stdin."""

    command: tuple[str, ...]  # argv, run without a shell
    on: NotifyOn = NotifyOn.FAILURE
    timeout: float = 60.0  # seconds, then its process group is killed


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
    # How long fanout keeps trying to stop a remote process group left running by a lost
    # connection (long enough to ride out an sshd restart); later connections still try first.
    orphan_timeout: float = 300.0
    retention: float | None = None  # seconds; None: keep logs and runs forever (see prune.py)
    # -- the backup window (scheduler.py) --
    window_end: TimeOfDay | None = None  # no host starts that would end after it
    hard_deadline: bool = False  # running steps are cancelled at window_end
    # -- monitoring (issue 14) --
    max_age_warn: float = DEFAULT_MAX_AGE_WARN  # fraction of max_age: past it, check warns
    metrics_file: Path | None = None  # Prometheus textfile, rewritten after every run and check
    notify: Notify | None = None
    cluster: ClusterSettings | None = None  # None: this machine runs the inventory alone


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # unique label
    address: str  # DNS name, IP, or a Host alias from ~/.ssh/config
    priority: int  # 1 = most important, dispatched first
    oracle_sid: str
    oracle_home: str | None  # None: resolved on the host from its oratab, by ORACLE_SID
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
    keepalive_interval: float = 15.0  # seconds between SSH keepalives; 0 turns them off
    keepalive_count_max: int = 3  # unanswered keepalives before the link counts as dead
    index: int = 0  # position in the file: breaks priority ties
    # --- fleet policy (issue 13) ---
    oratab: str | None = None  # remote oratab path; None: /etc/oratab, else /var/opt/oracle/oratab
    catalog: str | None = None  # recovery catalog through an Oracle wallet: "/@RCAT"
    catalog_optional: bool = False  # catalog unreachable: run NOCATALOG, with a warning
    when: str | None = None  # POSIX sh condition run on the host before its steps
    database: str | None = None  # identity for the level policy; None: "<SID>@<address>"

    @property
    def database_key(self) -> str:
        """The database this host backs up, for the level-0 history: RAC nodes can share one."""
        return self.database or f"{self.oracle_sid}@{self.address.lower()}"

    groups: tuple[str, ...] = ()  # capacity groups (Inventory.groups): a slot in each to run
    # (step, seconds): the freshness thresholds the inventory sets for this host's steps,
    # resolved by the loader: host's max_age > steps.<name>.max_age > defaults' max_age.
    # Read them through max_age_of(host), which adds DEFAULT_MAX_AGE.
    max_age: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Inventory:
    path: Path
    settings: Settings
    hosts: tuple[Host, ...]  # sorted by (priority, index)
    # Every step a host may name: the built-ins (steps.BUILTIN_STEPS) with the
    # inventory's overrides applied, plus the inventory's custom steps.
    steps: Mapping[str, StepDef] = field(default_factory=dict)
    sha256: str = ""  # of the file's bytes, for the run store
    groups: Mapping[str, Group] = field(default_factory=dict)  # capacity groups by name


def max_age_of(host: Host) -> tuple[tuple[str, float], ...]:
    """(step, seconds) for each of the host's steps that has a freshness threshold: the
    inventory's (``host.max_age``), else ``DEFAULT_MAX_AGE``; steps with neither are not judged."""
    own = dict(host.max_age)
    found = []
    for step in host.steps:
        levels = [(kind, limit) for kind, limit in host.max_age if kind.startswith(f"{step}/")]
        if levels:  # a step of the level policy: judged per level (the loader resolved both)
            found.extend(levels)
            continue
        limit = own.get(step, DEFAULT_MAX_AGE.get(step))
        if limit is not None:
            found.append((step, limit))
    return tuple(found)


# --- durations and selection --------------------------------------------------

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+(?:\.[0-9]+)?)s)?")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


MAX_DURATION = 30 * 86400.0  # seconds: no timeout, grace or delay in an inventory is longer
MAX_RETRIES = 100  # retries, connect_retries
MAX_PARALLEL = 10_000  # max_parallel, max_connecting
MAX_PRIORITY = 2**31 - 1
_MAX_DURATION_TEXT = "30d"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``30s``, ``5m``, ``6h``, ``2d``, ``1h30m``, ``0.5s``.

    Units d/h/m/s, each at most once and in that order; only seconds may have a
    fraction. A bare number is seconds (``timeout: 90``). Zero is allowed here:
    callers that need a positive duration check. At most ``MAX_DURATION`` (30d): the
    arithmetic is exact (Decimal), so a 400-digit value is rejected, never overflows.
    Raises ValueError naming ``text``.
    """
    if _SECONDS.fullmatch(text):
        total = Decimal(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"expected a duration like 30s, 5m, 6h or 1h30m, got {text!r}")
        days, hours, minutes, seconds = (Decimal(group or 0) for group in match.groups())
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total > Decimal(int(MAX_DURATION)):
        shown = text if len(text) <= 40 else f"{text[:20]}…{text[-10:]}"
        raise ValueError(f"expected a duration of at most {_MAX_DURATION_TEXT}, got {shown!r}")
    return float(total)


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
