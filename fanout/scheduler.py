"""The scheduler: who may start next, and when the run will end. Pure.

The engine asks a ``Dispatcher`` which queued hosts may start now; it keeps owning the
tasks, the cancel tokens and the transport. ``plan --timeline``, the live table's ETA and
``benchmarks/scheduler.py`` run the very same ``Dispatcher`` on a simulated clock
(``simulate``), so the prediction and the run follow one rule:

- **Order** (``dispatch_order``): priority first (1 before 2); within one priority the
  longest expected host first (LPT: Graham's 4/3 bound instead of list scheduling's 2);
  hosts without history go first in file order (an unknown may be long, and with no
  estimate the window cannot refuse it later), then hosts with history, longest first.
- **Limits**: a host starts only when the global limit and every one of its capacity
  groups have a free slot. Among the hosts that can start, the order decides; a host
  whose group is full is passed over, never waited for (no head-of-line blocking).
- **The window**: a queued host whose expected duration would end after the deadline
  is refused (it would not fit at any later time either); once the deadline has
  passed nothing starts at all.

Times are plain seconds on one clock chosen by the caller (the engine uses epoch
seconds, ``simulate`` any origin). No asyncio, no I/O.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from statistics import median

from fanout.model import format_duration

HISTORY_RUNS = 7  # successful runs of a step that its expected duration is the median of
OVERRUN_FACTOR = 3.0  # a step running this many times its expected duration is flagged


@dataclass(frozen=True, slots=True)
class Job:
    """One host as the scheduler sees it."""

    name: str
    priority: int
    index: int  # position in the file: the tie-breaker
    groups: tuple[str, ...] = ()
    expected: float | None = None  # seconds; None: no history


@dataclass(frozen=True, slots=True)
class Limits:
    max_parallel: int
    groups: Mapping[str, int] = field(default_factory=dict)  # group -> its max_parallel


@dataclass(frozen=True, slots=True)
class Deadline:
    """The end of the backup window: ``at`` on the caller's clock, ``label`` as the operator
    wrote it (``06:00``); ``hard``: running steps are cancelled when it comes."""

    at: float
    label: str
    hard: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    job: Job
    reason: str  # "would end after 06:00 (expected 1h40m)"


def host_expected(step_expected: Iterable[float | None]) -> float | None:
    """A host's expected duration: the sum over its steps that have history; None if none has."""
    known = [e for e in step_expected if e is not None]
    return sum(known) if known else None


def expected_duration(durations: Sequence[float]) -> float | None:
    """The expected duration from a step's recent successful durations (newest first): the
    median of the last ``HISTORY_RUNS`` (robust to one odd night); None without history."""
    recent = [d for d in durations[:HISTORY_RUNS] if math.isfinite(d) and d >= 0]
    return float(median(recent)) if recent else None


def dispatch_order(jobs: Iterable[Job]) -> list[Job]:
    """Priority, then (within a priority) hosts without history in file order, then the
    others longest expected first (file order breaks ties)."""
    return sorted(
        jobs,
        key=lambda j: (
            j.priority,
            j.expected is not None,
            -(j.expected or 0.0),
            j.index,
        ),
    )


def order_reason(job: Job) -> str:
    """Why ``job`` sits where ``dispatch_order`` put it, for ``plan``."""
    if job.expected is None:
        return f"priority {job.priority}; no history: file order"
    return f"priority {job.priority}; longest first (expected {format_elapsed(job.expected)})"


def format_elapsed(seconds: float) -> str:
    """Whole seconds under an hour, whole minutes from an hour up (``1h40m``)."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    return format_duration(round(seconds) if seconds < 3600 else round(seconds / 60) * 60)


class Dispatcher:
    """Who may start next. Mutable, pure: the caller reports starts' ends with ``finished``.

    ``jobs`` are taken in the order given (see ``dispatch_order``). Queued jobs sit in one
    lane per set of groups, each lane in that order, so a poll looks at the head of each
    lane only: hosts passed over because their group is full cost nothing.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        limits: Limits,
        *,
        deadline: Deadline | None = None,
    ) -> None:
        self._lanes: dict[tuple[str, ...], deque[tuple[int, Job]]] = {}
        for position, job in enumerate(jobs):
            for group in job.groups:
                if group not in limits.groups:
                    raise ValueError(f"host {job.name}: unknown group {group!r}")
            self._lanes.setdefault(job.groups, deque()).append((position, job))
        self._count = len(jobs)
        self._limits = limits
        self._deadline = deadline
        self._running: dict[str, Job] = {}
        self._group_running = dict.fromkeys(limits.groups, 0)
        self._next_refusal: float | None = None if deadline is None else -math.inf

    @property
    def queued(self) -> tuple[Job, ...]:
        """The waiting jobs, in the order given."""
        waiting = [entry for lane in self._lanes.values() for entry in lane]
        return tuple(job for _, job in sorted(waiting, key=lambda entry: entry[0]))

    def __len__(self) -> int:
        """How many jobs are queued."""
        return self._count

    @property
    def running(self) -> tuple[Job, ...]:
        return tuple(self._running.values())

    def group_load(self) -> Mapping[str, int]:
        """Running hosts per group (for tests and the plan)."""
        return dict(self._group_running)

    def poll(self, now: float) -> tuple[list[Job], list[Refusal]]:
        """The jobs to start now (already counted as running) and the jobs refused for good.

        Refused: ``now`` is past the deadline, or the job's expected duration would end
        after it. Started: in queue order, every job for which the global limit and each
        of its groups have a free slot; a job whose group is full is skipped, not waited for.
        """
        refusals = self._refuse(now)
        starts: list[Job] = []
        limit = self._limits.groups
        load = self._group_running
        while len(self._running) < self._limits.max_parallel:
            best: deque[tuple[int, Job]] | None = None
            for groups, lane in self._lanes.items():
                earlier = lane and (best is None or lane[0][0] < best[0][0])
                if earlier and all(load[g] < limit[g] for g in groups):
                    best = lane
            if best is None:
                break
            _, job = best.popleft()
            self._count -= 1
            self._start(job)
            starts.append(job)
        return starts, refusals

    def mark_running(self, job: Job, *, queued: bool = True) -> None:
        """Count ``job`` as running (started elsewhere: an ETA from the middle of a run).
        ``queued=False``: the caller knows it is not in the queue, which is then not
        searched for it (O(queue) per job: 200 running hosts x 1,800 queued at 2,000 hosts)."""
        if queued:
            self.drop(job.name)
        self._start(job)

    def finished(self, name: str) -> None:
        """A started job ended: its slots are free again. Unknown names are ignored."""
        job = self._running.pop(name, None)
        if job is not None:
            for group in job.groups:
                self._group_running[group] -= 1

    def drop(self, name: str) -> Job | None:
        """Take a queued job out (cancelled while queued); None if it is not queued."""
        for lane in self._lanes.values():
            for entry in lane:
                if entry[1].name == name:
                    lane.remove(entry)
                    self._count -= 1
                    return entry[1]
        return None

    def next_change(self, now: float) -> float | None:
        """The next time at which ``poll`` would refuse a queued job without anything having
        finished (a job stops fitting, or the deadline itself); None if never."""
        if self._deadline is None or not self._count:
            return None
        at = self._deadline.at
        times = [at - job.expected for job in self._waiting() if job.expected is not None]
        times.append(at)
        later = [t for t in times if t > now]
        return min(later) if later else now

    def _waiting(self) -> Iterable[Job]:
        return (job for lane in self._lanes.values() for _, job in lane)

    def _start(self, job: Job) -> None:
        self._running[job.name] = job
        for group in job.groups:
            self._group_running[group] += 1

    def _refuse(self, now: float) -> list[Refusal]:
        deadline = self._deadline
        if deadline is None or self._next_refusal is None or now < self._next_refusal:
            return []  # nothing can have stopped fitting since the last look
        refused: list[tuple[int, Refusal]] = []
        for groups, lane in self._lanes.items():
            kept: deque[tuple[int, Job]] = deque()
            for position, job in lane:
                reason = refusal_reason(job, now, deadline)
                if reason is None:
                    kept.append((position, job))
                else:
                    refused.append((position, Refusal(job, reason)))
            self._lanes[groups] = kept
        self._count -= len(refused)
        self._next_refusal = self.next_change(now)
        return [refusal for _, refusal in sorted(refused, key=lambda entry: entry[0])]


def refusal_reason(job: Job, now: float, deadline: Deadline) -> str | None:
    """Why ``job`` may not start at ``now`` under ``deadline``, or None if it may."""
    if now >= deadline.at:
        return f"the window ended at {deadline.label}"
    if job.expected is not None and now + job.expected > deadline.at:
        return f"would end after {deadline.label} (expected {format_elapsed(job.expected)})"
    return None


# ---- the simulated clock -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Planned:
    """One host in a predicted schedule. ``start``/``end`` None: refused (``refused`` says
    why). ``assumed``: no history, the duration is the fleet's median guess."""

    job: Job
    start: float | None
    end: float | None
    refused: str | None = None
    assumed: bool = False


@dataclass(frozen=True, slots=True)
class Timeline:
    start: float
    hosts: tuple[Planned, ...]  # in start order (refused ones last)

    @property
    def end(self) -> float:
        """When the last predicted host ends (``start`` if none runs)."""
        return max((p.end for p in self.hosts if p.end is not None), default=self.start)

    @property
    def makespan(self) -> float:
        return self.end - self.start

    @property
    def refused(self) -> tuple[Planned, ...]:
        return tuple(p for p in self.hosts if p.refused is not None)


def simulate(
    queue: Sequence[Job],
    limits: Limits,
    *,
    now: float = 0.0,
    deadline: Deadline | None = None,
    running: Sequence[tuple[Job, float]] = (),
    unknown: float | None = None,
) -> Timeline:
    """Run the ``Dispatcher`` on a simulated clock from ``now``.

    ``queue``: the waiting jobs in dispatch order. ``running``: jobs already started, each
    with its expected remaining seconds. A job without an expected duration takes
    ``unknown`` (default: the median of the known ones, else 0) and is marked ``assumed``.
    O(events x queue); 500 hosts take a few milliseconds.
    """
    if unknown is None:
        known = [j.expected for j in queue if j.expected is not None]
        unknown = float(median(known)) if known else 0.0
    dispatcher = Dispatcher(queue, limits, deadline=deadline)
    ends: list[tuple[float, int, str]] = []
    planned: dict[str, Planned] = {}
    seq = 0
    waiting = {job.name for job in queue} if running else set()
    for job, remaining in running:
        dispatcher.mark_running(job, queued=job.name in waiting)
        heapq.heappush(ends, (now + max(0.0, remaining), seq, job.name))
        seq += 1
    clock = now
    order: list[str] = []
    refused: list[Planned] = []
    while True:
        starts, refusals = dispatcher.poll(clock)
        refused.extend(Planned(r.job, None, None, r.reason) for r in refusals)
        for job in starts:
            duration = job.expected if job.expected is not None else unknown
            end = clock + duration
            planned[job.name] = Planned(job, clock, end, assumed=job.expected is None)
            order.append(job.name)
            heapq.heappush(ends, (end, seq, job.name))
            seq += 1
        if not ends:
            break  # nothing running: the queue is empty (a zero limit would also end here)
        clock, _, name = heapq.heappop(ends)
        dispatcher.finished(name)
        while ends and ends[0][0] <= clock:
            dispatcher.finished(heapq.heappop(ends)[2])
    hosts = tuple(planned[name] for name in order) + tuple(refused)
    return Timeline(now, hosts)


def lower_bound(jobs: Sequence[Job], limits: Limits) -> float:
    """No schedule can be shorter: max(longest job, total work / slots, each group's work /
    its slots). Jobs without an expected duration count as 0."""
    work = [j.expected or 0.0 for j in jobs]
    bound = max([max(work, default=0.0), sum(work) / max(1, limits.max_parallel)])
    for group, slots in limits.groups.items():
        group_work = sum(j.expected or 0.0 for j in jobs if group in j.groups)
        bound = max(bound, group_work / max(1, slots))
    return bound


# ---- progress and ETA arithmetic ----------------------------------------------------------


def progress(elapsed: float, expected: float | None) -> float | None:
    """Fraction done of a step that usually takes ``expected``: in [0, 1], None without history."""
    if expected is None or expected <= 0:
        return None
    return min(1.0, max(0.0, elapsed / expected))


def overrun(elapsed: float, expected: float | None, factor: float = OVERRUN_FACTOR) -> bool:
    """Whether a step has been running ``factor`` times longer than it usually takes."""
    return expected is not None and expected > 0 and elapsed >= factor * expected


def remaining(elapsed: float, expected: float | None) -> float:
    """Expected seconds left of a running step: what history leaves, or 0 once past it
    (an overrunning step is expected to end any moment: the ETA moves as it goes on)."""
    if expected is None:
        return 0.0
    return max(0.0, expected - elapsed)


def progress_bar(fraction: float, width: int, *, full: str = "█", empty: str = "░") -> str:
    """``fraction`` as a bar of ``width`` cells."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return full * filled + empty * (width - filled)


# ---- the window for RMAN -----------------------------------------------------------------

_BACKUP = re.compile(r"^(\s*BACKUP)\b", re.IGNORECASE | re.MULTILINE)
PLUS_ARCHIVELOG = re.compile(r"\bPLUS\s+ARCHIVELOG\b", re.IGNORECASE)
_DURATION = re.compile(r"\bDURATION\b", re.IGNORECASE)


def duration_clause(seconds: float) -> str:
    """``DURATION hh:mm PARTIAL`` for the time left, rounded down to the minute (at least 1)."""
    minutes = max(1, math.floor(seconds / 60))
    return f"DURATION {minutes // 60:02d}:{minutes % 60:02d} PARTIAL"


def with_duration(script: str, seconds: float) -> str:
    """``script`` with each ``BACKUP`` statement given ``DURATION hh:mm PARTIAL`` (RMAN keeps
    the backup sets finished in time and stops there, without an error)."""
    clause = duration_clause(seconds)
    return _BACKUP.sub(lambda m: f"{m.group(1)} {clause}", script)


def duration_problem(body: str) -> str | None:
    """Why an RMAN step body cannot take a DURATION clause, or None if it can."""
    if not _BACKUP.search(body):
        return "the step has no BACKUP command to give DURATION to"
    if _DURATION.search(body):
        return "the step already sets DURATION"
    match = PLUS_ARCHIVELOG.search(body)
    if match is not None:
        line = body.count("\n", 0, match.start()) + 1
        return (
            f"RMAN cannot combine DURATION with PLUS ARCHIVELOG (line {line} of the script); "
            "back up the archive logs in a step of their own"
        )
    return None


# ---- time of day ---------------------------------------------------------------------------


def next_time_of_day(hour: int, minute: int, now: datetime, tz: tzinfo | None) -> datetime:
    """The first ``hour:minute`` after ``now`` (an aware datetime) in ``tz``, or in the system's
    local time (with its DST rules) when ``tz`` is None. A run starting at 22:00 with a window
    ending at 06:00 gets tomorrow's 06:00."""
    if tz is None:
        local = now.astimezone().replace(tzinfo=None)  # naive local wall time
        wall = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if wall <= local:
            wall += timedelta(days=1)
        return wall.astimezone()  # naive -> aware: the local offset of that very day
    local = now.astimezone(tz)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate + timedelta(days=1)).replace(hour=hour, minute=minute)
    return candidate
