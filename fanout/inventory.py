"""Inventory: YAML in, frozen dataclasses out, validated once at the door.

Every error is an ``InventoryError`` carrying the file, the line and the key path.
Nothing downstream re-validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

DEFAULT_STEPS: tuple[str, ...] = ("full", "archivelog", "controlfile")


class StepKind(StrEnum):
    RMAN = "rman"  # an RMAN script fed to `rman target /` on stdin
    SHELL = "shell"  # a plain POSIX sh command (pre-checks, housekeeping)


class OnFailure(StrEnum):
    CONTINUE = "continue"  # later steps still run (default: a failed full must not lose the archivelogs)
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


@dataclass(frozen=True, slots=True)
class Settings:
    max_parallel: int = 8  # hosts running at once
    cancel_grace: float = 60.0  # seconds rman gets to abort after SIGINT before SIGTERM
    state_dir: Path | None = None  # None: $XDG_STATE_HOME/fanout or ~/.local/state/fanout
    max_connecting: int = 32  # SSH handshakes in flight at once (handshakes cost CPU on both ends)


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # unique label
    address: str  # DNS name, IP, or a Host alias from ~/.ssh/config
    priority: int  # 1 = most important, dispatched first
    oracle_sid: str
    oracle_home: str
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


def load_inventory(path: Path) -> Inventory:
    """Read and validate ``path``. Raises InventoryError (one line: file:line: key.path: what)."""
    raise NotImplementedError  # implemented in the foundation work
