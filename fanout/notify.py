"""``settings.notify``: run the operator's command after a run, the summary on its stdin.

The command is an argv list, executed without a shell, in a process group (session) of its own,
with the run's summary (the ``fanout show RUN_ID --json`` document) on stdin and
``FANOUT_RUN_ID``, ``FANOUT_EXIT_CODE`` and ``FANOUT_INVENTORY`` added to fanout's environment.
Its stdout and stderr are collected, never mixed into fanout's own output (``--json`` stays
parseable). Past ``timeout`` seconds the whole group is killed. Whatever happens to it, the
run's exit code stays the run's: ``run_notify`` returns a one-line problem for the CLI to print.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping

from fanout.model import Notify, NotifyOn, format_duration

__all__ = ["run_notify", "should_notify"]

_DRAIN_TIMEOUT = 5.0  # seconds to collect output after the group was killed
_CAUSE_CHARS = 200


def should_notify(notify: Notify | None, exit_code: int) -> bool:
    """``on: failure`` (any exit code but 0, cancelled runs included), ``always`` or ``never``."""
    if notify is None or notify.on is NotifyOn.NEVER:
        return False
    return notify.on is NotifyOn.ALWAYS or exit_code != 0


def run_notify(
    notify: Notify,
    summary: str,
    *,
    run_id: str,
    exit_code: int,
    inventory: str,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Run the command to completion (bounded by ``notify.timeout``).

    Returns None when it exited 0, else one line saying what went wrong (cannot start, exit
    status with the last line of its stderr, killed by a signal, timed out). Never raises for
    the command's own failures.
    """
    command = list(notify.command)
    environment = dict(os.environ if env is None else env)
    environment.update(
        FANOUT_RUN_ID=run_id, FANOUT_EXIT_CODE=str(exit_code), FANOUT_INVENTORY=inventory
    )
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        return f"notify command {command[0]!r} cannot start: {exc.strerror or exc}"
    try:
        _, err = proc.communicate(summary.encode(), timeout=notify.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=_DRAIN_TIMEOUT)
        if proc.poll() is None:  # out of our group and still alive: do not wait any longer
            proc.kill()
            proc.wait(_DRAIN_TIMEOUT)
        return (
            f"notify command {command[0]!r} timed out after "
            f"{format_duration(notify.timeout)} (killed)"
        )
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(_DRAIN_TIMEOUT)
        raise
    if proc.returncode == 0:
        return None
    last = next(
        (line.strip() for line in reversed(err.decode(errors="replace").splitlines()) if line),
        "",
    )
    if proc.returncode < 0:
        what = f"was killed by {signal.Signals(-proc.returncode).name}"
    else:
        what = f"exited {proc.returncode}"
    detail = f": {last[:_CAUSE_CHARS]}" if last else ""
    return f"notify command {command[0]!r} {what}{detail}"
