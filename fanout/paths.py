"""Where fanout keeps its state: the run store, the lock and the per-run logs.

::

    <state_dir>/                       $XDG_STATE_HOME/fanout or ~/.local/state/fanout
      logs/<run-id>/<host>.log         one per host: connection attempts, outcome, crash
                                       traceback, and every attempt of every step (logs.py)

Earlier releases wrote ``logs/<run-id>/<host>/<step>.log`` and ``.../<host>/host.log``;
``legacy_host_log_path`` and ``legacy_step_log_path`` name those, for reading old runs
(their store rows keep the step log paths they were written with).

Host, step and run names become single path components: any character outside
``[A-Za-z0-9._~-]`` is percent-encoded (``a/b`` → ``a%2Fb``), and ``.``/``..`` are
encoded too, so a name can never climb out of its directory and two names never
share a file. Pure: nothing here touches the file system, except ``existing_host_log``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

APP_NAME = "fanout"
HOST_LOG_NAME = "host.log"


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_STATE_HOME/fanout`` if set to an absolute path, else ``~/.local/state/fanout``.

    A relative or empty ``XDG_STATE_HOME`` is ignored, as the XDG Base Directory spec requires.
    ``~`` is ``$HOME`` from ``env`` when set, else the account's home directory.
    """
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_NAME
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / APP_NAME


STATE_DIR_ENV = "FANOUT_STATE_DIR"


def choose_state_dir(
    explicit: Path | None, configured: Path | None, env: Mapping[str, str] = os.environ
) -> Path:
    """The state directory, by precedence: ``--state-dir`` (``explicit``), then
    ``$FANOUT_STATE_DIR`` (when set and not empty), then the inventory's
    ``settings.state_dir`` (``configured``), then the XDG default. ``~`` is expanded."""
    if explicit is not None:
        return explicit.expanduser()
    from_env = env.get(STATE_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return resolve_state_dir(configured, env)


def resolve_state_dir(configured: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """The inventory's ``settings.state_dir`` (``~`` expanded) if given, else the default."""
    if configured is None:
        return default_state_dir(env)
    return configured.expanduser()


def path_component(name: str) -> str:
    """``name`` as one safe, reversible path component (see the module docstring)."""
    encoded = quote(name, safe="")
    if encoded in ("", ".", ".."):
        return encoded.replace(".", "%2E") or "%00"
    return encoded


def run_log_dir(state_dir: Path, run_id: str) -> Path:
    """``<state_dir>/logs/<run-id>``: every log file of one run."""
    return state_dir / "logs" / path_component(run_id)


def host_log_name(host: str) -> str:
    """``<host>.log``, the host's log file name in its run's log directory."""
    return f"{path_component(host)}.log"


def host_log_path(state_dir: Path, run_id: str, host: str) -> Path:
    """``<state_dir>/logs/<run-id>/<host>.log``: everything of one host in one run."""
    return run_log_dir(state_dir, run_id) / host_log_name(host)


def step_log_path(state_dir: Path, run_id: str, host: str, step: str) -> Path:
    """The file holding ``step``'s output: its host's log (a section per attempt,
    ``logs.step_sections`` reads them back). ``step`` does not change the path."""
    del step  # one file per host: the step is a section inside it
    return host_log_path(state_dir, run_id, host)


def step_log_in(run_dir: Path, host: str, step: str) -> Path:
    """``step_log_path`` for a run whose log directory (``run_log_dir``) is ``run_dir``."""
    del step
    return run_dir / host_log_name(host)


def host_log_in(run_dir: Path, host: str) -> Path:
    """``host_log_path`` for a run whose log directory (``run_log_dir``) is ``run_dir``."""
    return run_dir / host_log_name(host)


# ---- the layout of earlier releases (read, never written) ------------------------------------


def legacy_host_log_path(state_dir: Path, run_id: str, host: str) -> Path:
    """``<state_dir>/logs/<run-id>/<host>/host.log`` (earlier releases)."""
    return run_log_dir(state_dir, run_id) / path_component(host) / HOST_LOG_NAME


def legacy_step_log_path(state_dir: Path, run_id: str, host: str, step: str) -> Path:
    """``<state_dir>/logs/<run-id>/<host>/<step>.log`` (earlier releases); a step named
    ``host`` was written ``%68ost.log`` so that it never shared ``host.log``."""
    component = path_component(step)
    if f"{component}.log" == HOST_LOG_NAME:
        component = f"%{ord(component[0]):02X}{component[1:]}"
    return run_log_dir(state_dir, run_id) / path_component(host) / f"{component}.log"


def existing_host_log(state_dir: Path, run_id: str, host: str) -> Path:
    """The host's log of a recorded run: this layout's file, or the earlier layout's
    ``host.log`` when only that exists (a run of an earlier release)."""
    path = host_log_path(state_dir, run_id, host)
    if not path.exists():
        legacy = legacy_host_log_path(state_dir, run_id, host)
        if legacy.exists():
            return legacy
    return path
