"""Prometheus metrics as a node_exporter textfile (``settings.metrics_file``).

``render_metrics`` is pure: the text exposition format (``# HELP``, ``# TYPE``, samples, no
timestamps), one sample per database and step of the inventory. ``write_textfile`` replaces
the file atomically: a temporary file in the same directory (named ``.<name>.<pid>.tmp``, so
the collector, which reads ``*.prom`` only, never picks it up), fsync, rename over the old
file, fsync of the directory. A reader sees the old file or the new one, never a mix.

Metrics (labels ``host``, ``sid``, ``step``; ``inventory`` is the inventory's absolute path):

* ``fanout_backup_last_success_timestamp_seconds`` — end of the last successful backup; only
  present once there was one (alert with ``absent()`` or ``fanout_backup_never_succeeded``);
* ``fanout_backup_last_duration_seconds`` — duration of the last finished attempt;
* ``fanout_backup_last_status`` — 1 if the last finished attempt succeeded, 0 if not;
* ``fanout_backup_max_age_seconds`` — the inventory's freshness threshold (``max_age``);
* ``fanout_backup_never_succeeded`` — 1 for a database and step with no success recorded;
* ``fanout_run_last_exit_code`` / ``fanout_run_last_finish_timestamp_seconds`` — the last
  finished run of the inventory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fanout.freshness import BackupRecord, database_key
from fanout.model import Host, max_age_of

__all__ = ["LastRun", "render_metrics", "write_textfile"]


@dataclass(frozen=True, slots=True)
class LastRun:
    exit_code: int
    finished_at: float


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _value(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return str(int(number)) if float(number).is_integer() else repr(float(number))


_FAMILIES: tuple[tuple[str, str], ...] = (
    (
        "fanout_backup_last_success_timestamp_seconds",
        "Unix time the last successful backup of this database and step ended.",
    ),
    (
        "fanout_backup_last_duration_seconds",
        "Duration of the last finished backup attempt of this database and step.",
    ),
    (
        "fanout_backup_last_status",
        "1 if the last finished backup attempt of this database and step succeeded, else 0.",
    ),
    (
        "fanout_backup_max_age_seconds",
        "Age after which fanout check reports this database and step CRITICAL (max_age).",
    ),
    (
        "fanout_backup_never_succeeded",
        "1 if no successful backup of this database and step is recorded, else 0.",
    ),
)


def render_metrics(
    inventory: str,
    hosts: Sequence[Host],
    records: Mapping[tuple[str, str, str], BackupRecord],
    last_run: LastRun | None,
) -> str:
    """The textfile for ``hosts`` (all of the inventory's), from the store's ``records``."""
    samples: dict[str, list[str]] = {name: [] for name, _ in _FAMILIES}
    for host in hosts:
        limits = dict(max_age_of(host))
        for step in host.steps:
            record = records.get(database_key(host.address, host.oracle_sid, step))
            labels = _labels({"host": host.name, "sid": host.oracle_sid, "step": step})
            success = record.last_success if record else None
            last = record.last_attempt if record else None
            if success is not None:
                samples["fanout_backup_last_success_timestamp_seconds"].append(
                    f"fanout_backup_last_success_timestamp_seconds{labels} "
                    + _value(success.ended_at)
                )
            if last is not None:
                if last.duration is not None:
                    samples["fanout_backup_last_duration_seconds"].append(
                        f"fanout_backup_last_duration_seconds{labels} {_value(last.duration)}"
                    )
                ok = 1 if last.status == "ok" else 0
                samples["fanout_backup_last_status"].append(
                    f"fanout_backup_last_status{labels} {ok}"
                )
            if step in limits:
                samples["fanout_backup_max_age_seconds"].append(
                    f"fanout_backup_max_age_seconds{labels} {_value(limits[step])}"
                )
            samples["fanout_backup_never_succeeded"].append(
                f"fanout_backup_never_succeeded{labels} {0 if success else 1}"
            )
    lines: list[str] = []
    for name, help_text in _FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples[name]]
    if last_run is not None:
        inv = _labels({"inventory": inventory})
        lines += [
            "# HELP fanout_run_last_exit_code Exit code of the last finished fanout run.",
            "# TYPE fanout_run_last_exit_code gauge",
            f"fanout_run_last_exit_code{inv} {last_run.exit_code}",
            "# HELP fanout_run_last_finish_timestamp_seconds "
            "Unix time the last fanout run of this inventory finished.",
            "# TYPE fanout_run_last_finish_timestamp_seconds gauge",
            f"fanout_run_last_finish_timestamp_seconds{inv} {_value(last_run.finished_at)}",
        ]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (see the module doc). Raises OSError.

    The file gets mode 0644 (node_exporter usually runs as another user). On any error the
    temporary file is removed and the old file stays as it was.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            data = text.encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
