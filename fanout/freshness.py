"""Backup freshness: does every database have a recent successful backup of each kind? Pure.

Input: the selected hosts (each with its resolved ``max_age`` per kind), what the run store
knows about each database and kind (``BackupRecord``: the last success and the last finished
attempt, across every run), the time now and the warn fraction. Output: one ``Freshness`` per
database and kind, and a ``FreshnessReport`` that ``fanout check`` prints as text, as a Nagios
plugin line or as JSON (``docs/check-json.md``).

A database is its (address, ORACLE_SID), as the inventory loader defines it, so runs of any
inventory count (a weekly full from one file, hourly archive logs from another).

States, for one database and kind:

* CRITICAL ``never``: no successful backup recorded at all;
* CRITICAL ``failed``: the last finished attempt failed and none succeeded since;
* CRITICAL ``stale``: the last success is older than ``max_age``;
* WARNING ``ageing``: it is older than ``max_age_warn`` times ``max_age``;
* OK ``fresh``: otherwise.

A cancelled attempt is not a failure (an operator stopped it); a step still running is not
an attempt yet. A database's state is the worst of its kinds. UNKNOWN is the whole check's
state when the store cannot be read (``unknown_report``).

The kind is the step name as a plain string key, so a level policy can add
``backup/level0``-style kinds by producing records under those keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fanout.model import Host, max_age_of
from fanout.nagios import NagiosCode, Perfdata, plugin_output, severity, worst

__all__ = [
    "Attempt",
    "BackupRecord",
    "Freshness",
    "FreshnessReport",
    "Reason",
    "database_key",
    "evaluate",
    "short_duration",
    "unknown_report",
]

JSON_VERSION = 1
_NAMES_ON_FIRST_LINE = 10
_CAUSE_CHARS = 80


class Reason(StrEnum):
    FRESH = "fresh"
    AGEING = "ageing"
    STALE = "stale"
    NEVER = "never"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished step attempt, as the run store recorded it."""

    run_id: str
    status: str  # "ok", "failed" or "cancelled"
    started_at: float | None
    ended_at: float
    cause: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.started_at is None else max(0.0, self.ended_at - self.started_at)


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """What the store knows about one database and kind, across every run."""

    address: str  # lower case
    sid: str
    step: str
    last_success: Attempt | None
    last_attempt: Attempt | None  # the latest finished attempt, whatever its status


def database_key(address: str, sid: str, step: str) -> tuple[str, str, str]:
    """How records are looked up: DNS names ignore case, SIDs do not."""
    return (address.lower(), sid, step)


@dataclass(frozen=True, slots=True)
class Freshness:
    host: str
    address: str
    sid: str
    step: str
    state: NagiosCode
    reason: Reason
    age: float | None  # seconds since the last success ended; None: never
    max_age: float
    warn_age: float
    last_success: Attempt | None
    last_attempt: Attempt | None

    def describe(self) -> str:
        """``full 9d2h > 8d``, ``full never``, ``full failed: ORA-19502…``, ``full 2h (max 8d)``."""
        limit = short_duration(self.max_age)
        age = "" if self.age is None else short_duration(self.age)
        match self.reason:
            case Reason.NEVER:
                return f"{self.step} never"
            case Reason.FAILED:
                cause = self.last_attempt.cause if self.last_attempt else None
                if cause and len(cause) > _CAUSE_CHARS:
                    cause = cause[: _CAUSE_CHARS - 1] + "…"
                return f"{self.step} failed{f': {cause}' if cause else ''} (last ok {age} ago)"
            case Reason.STALE:
                return f"{self.step} {age} > {limit}"
            case Reason.AGEING:
                return f"{self.step} {age} > {short_duration(self.warn_age)} (max {limit})"
            case Reason.FRESH:
                return f"{self.step} {age} (max {limit})"


@dataclass(frozen=True, slots=True)
class FreshnessReport:
    inventory: str
    checked_at: float
    items: tuple[Freshness, ...]
    hosts: tuple[str, ...]  # selected hosts, in dispatch order
    error: str | None = None  # set only for UNKNOWN: why the store could not be read
    by_host: Mapping[str, tuple[Freshness, ...]] = field(default_factory=dict)

    @property
    def state(self) -> NagiosCode:
        if self.error is not None:
            return NagiosCode.UNKNOWN
        return worst(item.state for item in self.items)

    def host_state(self, host: str) -> NagiosCode:
        return worst(item.state for item in self.by_host.get(host, ()))

    def counts(self) -> dict[str, int]:
        """Databases by state (a database's state is the worst of its kinds)."""
        counts = {code.name.lower(): 0 for code in NagiosCode}
        if self.error is None:
            for host in self.hosts:
                counts[self.host_state(host).name.lower()] += 1
        return {"databases": len(self.hosts), **counts}

    # -- output --

    def summary(self) -> str:
        """The one-line verdict: ``2 of 200 databases stale: erp (full 9d > 8d), crm (never)``."""
        if self.error is not None:
            return f"run store unreadable: {self.error}"
        total = len(self.hosts)
        bad = {code: [h for h in self.hosts if self.host_state(h) is code] for code in NagiosCode}
        parts = []
        if bad[NagiosCode.CRITICAL]:
            parts.append(
                f"{len(bad[NagiosCode.CRITICAL])} of {total} databases stale: "
                + self._names(bad[NagiosCode.CRITICAL], NagiosCode.CRITICAL)
            )
        if bad[NagiosCode.WARNING]:
            parts.append(
                f"{len(bad[NagiosCode.WARNING])} of {total} databases ageing: "
                + self._names(bad[NagiosCode.WARNING], NagiosCode.WARNING)
            )
        if not parts:
            return f"{total} of {total} databases fresh"
        return "; ".join(parts)

    def _names(self, hosts: Sequence[str], code: NagiosCode) -> str:
        shown = [
            f"{host} ({', '.join(i.describe() for i in self.by_host[host] if i.state is code)})"
            for host in hosts[:_NAMES_ON_FIRST_LINE]
        ]
        more = len(hosts) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")

    def nagios(self) -> str:
        """Plugin output: the verdict with counts as perfdata, then one line per non-OK item
        (then the OK ones), then each item's age as perfdata (warn and crit thresholds)."""
        counts = self.counts()
        total = counts["databases"]
        perf = [
            Perfdata("stale", counts["critical"], minimum=0, maximum=total),
            Perfdata("ageing", counts["warning"], minimum=0, maximum=total),
            Perfdata("ok", counts["ok"], minimum=0, maximum=total),
            Perfdata("databases", total, minimum=0),
        ]
        items = sorted(self.items, key=lambda i: -severity(i.state))  # stable: worst first
        details = [f"{i.state.name}: {i.host} ({i.sid}) {i.describe()}" for i in items]
        ages = [
            Perfdata(
                f"{i.host}/{i.step}",
                None if i.age is None else round(i.age),
                "s",
                round(i.warn_age),
                round(i.max_age),
                0,
            )
            for i in items
        ]
        return plugin_output(self.state, self.summary(), perf, details, ages)

    def text(self) -> str:
        """A table for a terminal: one line per database and kind, then the verdict."""
        if self.error is not None:
            return f"UNKNOWN  {self.summary()}\n"
        rows = [("HOST", "SID", "STEP", "STATE", "AGE", "MAX AGE", "LAST ATTEMPT")]
        for i in self.items:
            age = "never" if i.age is None else short_duration(i.age)
            last = "-"
            if i.last_attempt is not None:
                last = i.last_attempt.status
                if i.last_attempt.status != "ok" and i.last_attempt.cause:
                    last += f": {i.last_attempt.cause}"
            row = (i.host, i.sid, i.step, i.state.name, age, short_duration(i.max_age), last)
            rows.append(row)
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) for r in rows]
        lines = [f"{line}  {row[6]}".rstrip() for line, row in zip(lines, rows, strict=True)]
        lines.append("")
        lines.append(f"{self.state.name}: {self.summary()}")
        return "\n".join(lines) + "\n"

    def document(self) -> dict[str, Any]:
        """The ``--json`` document (``docs/check-json.md``, mode ``freshness``)."""
        return {
            "format": "fanout-check",
            "version": JSON_VERSION,
            "mode": "freshness",
            "inventory": self.inventory,
            "checked_at": self.checked_at,
            "state": self.state.name,
            "exit_code": int(self.state),
            "summary": self.summary(),
            "error": self.error,
            "counts": self.counts(),
            "checks": [_item_document(i) for i in self.items],
        }


def _attempt_document(attempt: Attempt | None) -> dict[str, Any] | None:
    if attempt is None:
        return None
    return {
        "run_id": attempt.run_id,
        "status": attempt.status,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "duration_seconds": attempt.duration,
        "cause": attempt.cause,
    }


def _item_document(item: Freshness) -> dict[str, Any]:
    return {
        "host": item.host,
        "address": item.address,
        "sid": item.sid,
        "step": item.step,
        "state": item.state.name,
        "reason": item.reason.value,
        "age_seconds": item.age,
        "max_age_seconds": item.max_age,
        "warn_age_seconds": item.warn_age,
        "last_success": _attempt_document(item.last_success),
        "last_attempt": _attempt_document(item.last_attempt),
    }


def evaluate(
    inventory: str,
    hosts: Sequence[Host],
    records: Mapping[tuple[str, str, str], BackupRecord],
    *,
    now: float,
    warn_fraction: float,
) -> FreshnessReport:
    """Judge every kind with a ``max_age`` of every host in ``hosts`` (see the module doc).

    ``records`` is keyed by ``database_key``; a missing key means never attempted.
    """
    items: list[Freshness] = []
    by_host: dict[str, tuple[Freshness, ...]] = {}
    for host in hosts:
        own = []
        for step, max_age in max_age_of(host):
            record = records.get(database_key(host.address, host.oracle_sid, step))
            own.append(_judge(host, step, max_age, record, now, warn_fraction))
        by_host[host.name] = tuple(own)
        items.extend(own)
    return FreshnessReport(
        inventory, now, tuple(items), tuple(h.name for h in hosts), by_host=by_host
    )


def _judge(
    host: Host,
    step: str,
    max_age: float,
    record: BackupRecord | None,
    now: float,
    warn_fraction: float,
) -> Freshness:
    success = record.last_success if record else None
    last = record.last_attempt if record else None
    age = None if success is None else max(0.0, now - success.ended_at)
    warn_age = max_age * warn_fraction
    if age is None or success is None:
        state, reason = NagiosCode.CRITICAL, Reason.NEVER
    elif last is not None and last.status == "failed" and last.ended_at >= success.ended_at:
        state, reason = NagiosCode.CRITICAL, Reason.FAILED
    elif age > max_age:
        state, reason = NagiosCode.CRITICAL, Reason.STALE
    elif age > warn_age and warn_fraction < 1:
        state, reason = NagiosCode.WARNING, Reason.AGEING
    else:
        state, reason = NagiosCode.OK, Reason.FRESH
    return Freshness(
        host.name,
        host.address,
        host.oracle_sid,
        step,
        state,
        reason,
        age,
        max_age,
        warn_age,
        success,
        last,
    )


def unknown_report(
    inventory: str, hosts: Sequence[Host], now: float, error: str
) -> FreshnessReport:
    """The report when the store cannot be read: UNKNOWN, with ``error`` as its reason."""
    return FreshnessReport(inventory, now, (), tuple(h.name for h in hosts), error=error)


def short_duration(seconds: float) -> str:
    """Two units at most, rounded down: ``9d2h``, ``26h``, ``22h5m``, ``14m``, ``30s`` (hours
    up to 48h, as thresholds like ``26h`` are written)."""
    whole = int(max(0.0, seconds))
    days, rest = divmod(whole, 86400)
    if days < 2:
        days, rest = 0, whole
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = parts[:2]
    if len(shown) == 2 and shown[1][0] == 0:
        shown = shown[:1]
    return "".join(f"{n}{unit}" for n, unit in shown)
