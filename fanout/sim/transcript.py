"""RMAN-shaped transcripts for the simulated fleet. Pure: text in, lines out.

Shapes follow ``tests/remote/rman_double.py`` (the double behind the real-sshd tests) and
the notes in ``notes/rman-and-ssh.md``: banner, ``RMAN> 2> 3>`` prompts for a script read
from stdin, ``Starting backup at``, channel allocation, backup sets and pieces,
``Finished backup at``, and the ``RMAN-00571`` banner over an error stack. Dates follow
``NLS_DATE_FORMAT`` as the step's environment sets it; ``RMAN-0300x`` stamps are always
``MM/DD/YYYY HH24:MI:SS``.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TAIL",
    "Beat",
    "banner",
    "beats",
    "cancel_stack",
    "failure_stack",
    "nls_date",
    "no_sid_stack",
    "prompts",
    "split_at_first_piece",
    "step_kind",
]

_RULE: Final = "==========================================================="
_BANNER: Final = (
    f"RMAN-00571: {_RULE}",
    "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
    f"RMAN-00571: {_RULE}",
)
_DATAFILES: Final = (
    "system01",
    "sysaux01",
    "undotbs01",
    "users01",
    "data01",
    "data02",
    "index01",
    "lob01",
)
TAIL: Final = ("RMAN> ", "", "Recovery Manager complete.")


@dataclass(frozen=True, slots=True)
class Beat:
    """Lines printed together, then a pause of ``weight`` shares of the step's run time."""

    lines: tuple[str, ...]
    weight: float = 1.0


def step_kind(script: str) -> str:
    """``full``, ``archivelog``, ``controlfile`` or ``other``, from the BACKUP commands."""
    upper = re.sub(r"'[^']*'", "''", script.upper())  # tags and command ids never decide
    if re.search(r"\bDATABASE\b", upper):
        return "full"
    if re.search(r"\bARCHIVELOG\b", upper):
        return "archivelog"
    if re.search(r"\b(CONTROLFILE|SPFILE)\b", upper):
        return "controlfile"
    return "other"


def nls_date(now: float, fmt: str | None) -> str:
    """``now`` as rman prints dates under ``NLS_DATE_FORMAT`` (default ``DD-MON-RR``)."""
    tokens = (
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("MON", "%b"),
        ("RR", "%y"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("MI", "%M"),
        ("SS", "%S"),
    )
    mapping = dict(tokens)
    pattern = re.compile("|".join(token for token, _ in tokens))
    strf = pattern.sub(lambda m: mapping[m.group(0)], fmt or "DD-MON-RR")
    return time.strftime(strf, time.localtime(now)).upper()


def _stamp(now: float) -> str:
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(now))


def _elapsed(seconds: float) -> str:
    s = max(1, round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def dbid(sid: str) -> int:
    return 1_000_000_000 + zlib.crc32(sid.encode()) % 3_000_000_000


def banner(sid: str, now: float) -> list[str]:
    return [
        "",
        "Recovery Manager: Release 19.0.0.0.0 - Production on "
        + time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)),
        "Version 19.21.0.0.0",
        "",
        "Copyright (c) 1982, 2019, Oracle and/or its affiliates.  All rights reserved.",
        "",
        f"connected to target database: {sid} (DBID={dbid(sid)})",
        "",
    ]


def prompts(script: str) -> str:
    """rman's prompts for a RUN block read from stdin: ``RMAN> 2> 3> …`` on one line."""
    body = script.split("}", 1)[0]
    count = body.count("\n") + 1 if "{" in script else 1
    return "RMAN> " + "".join(f"{n}> " for n in range(2, count + 1))


def _commands(script: str) -> list[str]:
    body = re.sub(r"#.*", "", script)
    body = re.sub(r"\bRUN\s*\{", ";", body, flags=re.IGNORECASE).replace("}", ";")
    return [" ".join(c.split()) for c in body.split(";") if c.strip()]


def beats(script: str, *, sid: str, now: float, seconds: float, datafiles: int = 6) -> list[Beat]:
    """The body of the transcript for ``script``; the longest pause follows each
    ``starting piece`` (the backup piece being written). ``{date}`` in a line stands for the
    time it is printed (``nls_date``)."""
    date = "{date}"
    fra = f"/u02/fra/{sid}/backupset/{time.strftime('%Y_%m_%d', time.localtime(now))}"
    out: list[Beat] = []
    allocated = False
    piece = 0
    sequence = 4700 + zlib.crc32(sid.encode()) % 200
    for command in _commands(script):
        upper = command.upper()
        if upper.startswith("SET COMMAND ID"):
            out.append(Beat(("executing command: SET COMMAND ID",), 0.2))
            continue
        if upper.startswith("SQL"):
            sql = re.search(r"'([^']*)'", command)
            out.append(Beat((f"sql statement: {sql.group(1) if sql else upper[4:]}",), 1.0))
            continue
        if not upper.startswith("BACKUP"):
            continue
        tag_match = re.search(r"\bTAG\s*=?\s*'([^']*)'", command, re.IGNORECASE)
        tag = tag_match.group(1).upper() if tag_match else time.strftime("TAG%Y%m%dT%H%M%S")
        compressed = "compressed " if "COMPRESSED" in upper else ""
        head = [f"Starting backup at {date}"]
        if not allocated:
            head += [
                "using target database control file instead of recovery catalog",
                "allocated channel: ORA_DISK_1",
                f"channel ORA_DISK_1: SID={100 + zlib.crc32(sid.encode()) % 900} device type=DISK",
            ]
            allocated = True
        else:
            head.append("using channel ORA_DISK_1")
        sets: list[tuple[str, list[str]]] = []
        if re.search(r"\bDATABASE\b", upper):
            level = "incremental level 0" if "LEVEL 0" in upper else "full"
            sets.append(
                (
                    f"{compressed}{level} datafile backup set",
                    [
                        f"input datafile file number={n:05d} name=/u01/app/oracle/oradata/{sid}/"
                        f"{_DATAFILES[(n - 1) % len(_DATAFILES)]}.dbf"
                        for n in range(1, datafiles + 1)
                    ],
                )
            )
        if re.search(r"\bARCHIVELOG\b", upper):
            head.append("current log archived")
            logs = []
            for _ in range(3):
                sequence += 1
                logs.append(
                    f"input archived log thread=1 sequence={sequence} "
                    f"RECID={sequence - 90} STAMP={1209605035 + sequence}"
                )
            sets.append((f"{compressed}archived log backup set", logs))
        if re.search(r"\bCONTROLFILE\b", upper):
            sets.append(
                (
                    f"{compressed}full datafile backup set",
                    ["including current control file in backup set"],
                )
            )
        if re.search(r"\bSPFILE\b", upper):
            sets.append(
                (
                    f"{compressed}full datafile backup set",
                    ["including current SPFILE in backup set"],
                )
            )
        out.append(Beat(tuple(head), 1.0))
        for what, inputs in sets:
            piece += 1
            files = "archived log(s)" if "archived log" in what else "datafile(s)"
            out.append(
                Beat(
                    (
                        f"channel ORA_DISK_1: starting {what}",
                        f"channel ORA_DISK_1: specifying {files} in backup set",
                    ),
                    0.5,
                )
            )
            out.extend(Beat((line,), 0.2) for line in inputs)
            weight = 2.0 + 4.0 * len(inputs) / max(1, datafiles)
            out.append(Beat((f"channel ORA_DISK_1: starting piece 1 at {date}",), weight))
            handle = f"{fra}/o1_mf_{piece:04d}_{tag}_{dbid(sid) % 100000:05d}_.bkp"
            out.append(
                Beat(
                    (
                        f"channel ORA_DISK_1: finished piece 1 at {date}",
                        f"piece handle={handle} tag={tag} comment=NONE",
                        "channel ORA_DISK_1: backup set complete, elapsed time: "
                        + _elapsed(seconds * weight / 10),
                    ),
                    0.3,
                )
            )
        out.append(Beat((f"Finished backup at {date}", ""), 0.2))
    return out


def split_at_first_piece(body: list[Beat]) -> tuple[list[Beat], list[Beat]]:
    """(up to and including the first ``starting piece``, the rest)."""
    for index, beat in enumerate(body):
        if any("starting piece" in line for line in beat.lines):
            return body[: index + 1], body[index + 1 :]
    return body, []


def _stack(lines: list[str]) -> list[str]:
    return ["", *_BANNER, *lines, ""]


def failure_stack(error: tuple[str, ...], *, sid: str, now: float) -> list[str]:
    """The stack of a backup that failed on its channel, ``{sid}`` filled in."""
    head = f"RMAN-03009: failure of backup command on ORA_DISK_1 channel at {_stamp(now)}"
    return _stack([head, *(line.replace("{sid}", sid) for line in error)])


def cancel_stack(now: float) -> list[str]:
    """What rman prints when SIGINT aborts a running backup."""
    return _stack(
        [
            f"RMAN-03009: failure of backup command on ORA_DISK_1 channel at {_stamp(now)}",
            "RMAN-03099: job cancelled at user request",
            "ORA-01013: user requested cancel of current operation",
        ]
    )


def no_sid_stack() -> list[str]:
    """rman ``target /`` without ORACLE_SID."""
    return _stack(
        [
            "RMAN-04005: error from target database:",
            "ORA-12162: TNS:net service name is incorrectly specified",
        ]
    )
