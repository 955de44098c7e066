"""The Nagios plugin output format, shared by ``fanout check`` and ``fanout check --connect``. Pure.

Plugin API (Nagios Core, also Icinga, Naemon, Checkmk's classic checks): the exit code is the
state, ``0`` OK, ``1`` WARNING, ``2`` CRITICAL, ``3`` UNKNOWN, and stdout is::

    TEXT | PERFDATA                  first line: what the web UI and notifications show
    LONG TEXT                        any further lines ("long output")
    LONG TEXT | PERFDATA             a '|' on a later line starts more performance data,
    PERFDATA                         which runs to the end of the output

Each performance datum is ``'label'=value[UOM];[warn];[crit];[min];[max]``; the label is
quoted when it holds spaces, ``U`` stands for a value that cannot be determined. The text and
the exit code are derived from the same ``NagiosCode``, so they never disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["NagiosCode", "Perfdata", "plugin_output", "severity", "worst"]


class NagiosCode(IntEnum):
    """A plugin state; the value is the exit code, the name is what the text says."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


# CRITICAL outranks UNKNOWN (a known problem beats an unknown one), which outranks WARNING.
_RANK = {NagiosCode.OK: 0, NagiosCode.WARNING: 1, NagiosCode.UNKNOWN: 2, NagiosCode.CRITICAL: 3}


def severity(code: NagiosCode) -> int:
    """Sort key: OK < WARNING < UNKNOWN < CRITICAL."""
    return _RANK[code]


def worst(codes: Iterable[NagiosCode]) -> NagiosCode:
    """The most severe of ``codes`` (OK when empty)."""
    return max(codes, key=_RANK.__getitem__, default=NagiosCode.OK)


_LABEL_SAFE = re.compile(r"[A-Za-z0-9_./:-]+")


@dataclass(frozen=True, slots=True)
class Perfdata:
    label: str
    value: float | None  # None: 'U' (undetermined, e.g. never backed up)
    uom: str = ""  # "s", "%", "B", ... or "" (a count)
    warn: float | None = None
    crit: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __str__(self) -> str:
        if "'" in self.label or "=" in self.label or "|" in self.label:
            raise ValueError(f"perfdata label {self.label!r}: no quote, '=' or '|'")
        label = self.label if _LABEL_SAFE.fullmatch(self.label) else f"'{self.label}'"
        value = "U" if self.value is None else f"{_number(self.value)}{self.uom}"
        limits = (self.warn, self.crit, self.minimum, self.maximum)
        rest = ";".join("" if x is None else _number(x) for x in limits)
        return f"{label}={value};{rest}"


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"perfdata value {value!r} is not finite")
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


# Nagios Core keeps this many bytes of a plugin's output (MAX_PLUGIN_OUTPUT_LENGTH in
# include/nagios.h, 3.x and 4.x) and silently cuts the rest, possibly mid-datum.
MAX_OUTPUT = 8192


def plugin_output(
    code: NagiosCode,
    text: str,
    perfdata: Sequence[Perfdata] = (),
    details: Sequence[str] = (),
    detail_perfdata: Sequence[Perfdata] = (),
    *,
    name: str = "fanout",
    limit: int = MAX_OUTPUT,
) -> str:
    """The whole plugin output, ending with a newline: ``name STATE - text | perf`` then details.

    ``text`` and ``details`` lose any '|' (it would start performance data) and newlines.
    ``detail_perfdata`` follows the last detail line after a '|', one datum per line.
    Within ``limit`` bytes: the first line always; then as many detail lines as fit (give the
    important ones first) and a line counting those left out; then whole perfdata only.
    """

    def clean(line: str) -> str:
        return " ".join(line.replace("|", "/").split())

    first = f"{name} {code.name} - {clean(text)}"
    if perfdata:
        first += " | " + " ".join(str(p) for p in perfdata)
    lines = [first]
    used = len(first.encode()) + 1
    reserve = 80  # room for the "... left out" line
    cleaned = [clean(line) for line in details]
    for index, line in enumerate(cleaned):
        cost = len(line.encode()) + 1
        if used + cost + (reserve if index + 1 < len(cleaned) else 0) > limit:
            lines.append(f"... {len(cleaned) - index} more lines left out (see --json)")
            used += len(lines[-1].encode()) + 1
            break
        lines.append(line)
        used += cost
    data = [str(p) for p in detail_perfdata]
    if data and used + len(data[0]) + 4 <= limit:
        if len(lines) == 1:
            lines.append("")  # long text may be empty; the '|' must not join the first line's
        lines[-1] += " | " + data[0]
        used += len(data[0]) + 3
        for datum in data[1:]:
            if used + len(datum.encode()) + 1 > limit:
                break
            lines.append(datum)
            used += len(datum.encode()) + 1
    return "\n".join(lines) + "\n"
