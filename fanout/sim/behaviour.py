"""How each simulated database behaves, chosen by ORACLE_SID. Pure.

All sim hosts share one address and port, so a step is matched to its host by the
``ORACLE_SID`` its environment prologue sets (SIDs are unique per address anyway). A
behaviour applies to every step of that SID, or only to the step kinds it names:
``full``, ``archivelog``, ``controlfile``, ``other`` (an RMAN script of another kind, as
``transcript.step_kind`` detects it) and ``shell`` (a shell step such as ``precheck``).

Modes:

* ``ok``      the step's transcript at its normal pace, exit 0
* ``fail``    the transcript up to the first backup piece, then ``error`` as an RMAN error
              stack (a shell step: exit 1 after a ``missing`` path test fails), exit 1
* ``slow``    ``ok``, ``slow_factor`` times slower
* ``hang``    stops after ``starting piece 1`` and waits for a signal
* ``drop``    closes the SSH connection after ``starting piece 1`` (once per SID, as a
              network blip would); the step runs on, like any command sshd started
* ``refuse``  nothing here: the demo and tests point such a host at a closed port

Interrupts follow rman: SIGINT prints the cancel stack after ``cancel_delay`` (a second
SIGINT changes nothing) and exits 1; SIGTERM and SIGKILL end it at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ERRORS",
    "STEP_SHARE",
    "HostBehaviour",
    "Mode",
    "behaviour_for",
]


class Mode(StrEnum):
    OK = "ok"
    FAIL = "fail"
    SLOW = "slow"
    HANG = "hang"
    DROP = "drop"
    REFUSE = "refuse"


#: Real-shaped error stacks (the lines under ``RMAN-03009 … channel at …``), by name.
ERRORS: Final[Mapping[str, tuple[str, ...]]] = {
    "recovery-area-full": (
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 10737418240 bytes disk space from 107374182400 limit",
    ),
    "cannot-create-file": (
        'ORA-19504: failed to create file "/backup/rman/{sid}_%U.bkp"',
        "ORA-27040: file create error, unable to create file",
        "Linux-x86_64 Error: 2: No such file or directory",
        "Additional information: 1",
    ),
    "write-error": (
        'ORA-19502: write error on file "/u02/fra/{sid}/backupset/o1_mf_nnnd0_.bkp", block'
        " number 1310721 (block size=8192)",
        "ORA-27072: File I/O error",
        "Linux-x86_64 Error: 28: No space left on device",
    ),
    "archived-log-missing": (
        "RMAN-06059: expected archived log not found, loss of archived log compromises"
        " recoverability",
        "ORA-19625: error identifying file /u02/fra/{sid}/archivelog/1_4711_1122334455.arc",
        "ORA-27037: unable to obtain file status",
        "Linux-x86_64 Error: 2: No such file or directory",
        "Additional information: 7",
    ),
}

#: Run time of each step kind, as a share of the host's ``seconds`` (a full backup).
STEP_SHARE: Final[Mapping[str, float]] = {
    "full": 1.0,
    "archivelog": 0.45,
    "controlfile": 0.25,
    "other": 0.2,
    "shell": 0.05,
}


@dataclass(frozen=True, slots=True)
class HostBehaviour:
    """One simulated database. Durations are seconds at speed 1 (the fleet divides them)."""

    mode: Mode = Mode.OK
    steps: frozenset[str] = frozenset()  # step kinds ``mode`` applies to; empty: all
    error: tuple[str, ...] = ERRORS["recovery-area-full"]  # ``{sid}`` is replaced
    seconds: float = 4.0  # a full backup; other kinds take their STEP_SHARE of it
    slow_factor: float = 5.0
    cancel_delay: float = 1.5  # rman's own abort work between SIGINT and exit
    ignore: frozenset[str] = frozenset()  # signals rman ignores, e.g. {"INT"}
    missing: tuple[str, ...] = ()  # paths that do not exist on this host (a shell step's test)
    datafiles: int = 6

    def mode_for(self, kind: str) -> Mode:
        """The mode for a step of ``kind``: ``mode`` where it applies, else ``ok``."""
        return self.mode if not self.steps or kind in self.steps else Mode.OK

    def duration(self, kind: str) -> float:
        """Run time of a ``kind`` step at speed 1."""
        base = self.seconds * STEP_SHARE.get(kind, STEP_SHARE["other"])
        return base * self.slow_factor if self.mode_for(kind) is Mode.SLOW else base


def behaviour_for(
    behaviours: Mapping[str, HostBehaviour], sid: str, default: HostBehaviour
) -> HostBehaviour:
    """The behaviour configured for ``sid``, else ``default``."""
    return behaviours.get(sid, default)
