"""The RMAN fake: ``$ORACLE_HOME/bin/rman`` of the simulated fleet, system tests, benchmarks.

Stdlib only and free of fanout imports: ``install`` copies it under an ORACLE_HOME behind a
``#!<python> -IS`` line, where it runs as rman does for fanout (``"$ORACLE_HOME/bin/rman"
target /``, the script on stdin). It prints RMAN 19c-shaped transcripts (banner, channel
allocation, backup sets, pieces, the RMAN-00571 error stack) and behaves as configured.

Configuration: ``$ORACLE_HOME/double.json``, re-read at every invocation::

    {"*":   {"behaviour": "ok", "seconds": 0.2},                 # every SID
     "ERP": {"seconds": 0.5, "full": {"behaviour": "fail"}}}     # one SID, one step kind

Settings = DEFAULTS <- ``"*"`` <- ``"*"[kind]`` <- ``SID`` <- ``SID[kind]``; ``kind`` is the step
the script is: ``full`` (DATABASE), ``archivelog``, ``controlfile`` (CONTROLFILE/SPFILE), ``other``.

    behaviour    ok | fail | slow | hang | die | flood | drop | ignore_sigint | ignore_int_term
                 ok: ``seconds`` of paced output, exit 0 (most of it writing the first piece)
                 fail: up to the first piece, then the ``error`` stack; exit 1
                 slow: ok with ``seconds`` defaulting to 60
                 hang: up to ``starting piece 1``, then wait for a signal (writes nothing more,
                 so a closed stdout does not end it, as with rman writing a long piece)
                 die: half the transcript, then a cut line and ``os._exit(1)``
                 flood: ``flood_mb`` MB of ``input archived log`` lines at once, then ok
                 drop: up to ``starting piece 1``, then asks the simulated fleet to drop the
                 SSH connection (``$FANOUT_SIM_CONTROL``) and hangs in the piece; only the
                 first invocation of a SID and kind drops, later ones are ok
                 ignore_sigint / ignore_int_term: hang, ignoring SIGINT / SIGINT and SIGTERM
    seconds      run time (default 0.2; 60 for slow)
    error        lines under ``RMAN-03009``, or a name from ERRORS; ``{sid}`` is replaced
    fail_times   the first N invocations of this SID and kind fail whatever the behaviour
                 (a step that succeeds when retried)
    flood_mb     MB printed by flood (5)
    ignore       signal names ignored on top of the behaviour, e.g. ["SIGINT"]
    exit_delay   seconds between SIGINT and exit (rman's own abort work: the RMAN-03099 /
                 ORA-01013 stack, exit 1; default 0). SIGTERM/SIGHUP: exit 1, nothing printed
    child        spawn one sleeping child in the process group (a "channel process")
    datafiles    datafiles in a database backup set (4)
    max_seconds  bounded lifetime: any invocation ends (status 1) after this long (600)
    survive_epipe  keep going when stdout is gone (EPIPE): output is dropped, the behaviour
                 goes on (rman writing a long piece after its SSH session died)

Without ORACLE_SID it fails as rman does (RMAN-04005 / ORA-12162). If ``$FANOUT_SIM_CONTROL``
names a pipe to the simulated fleet, the fake also ends (``orphaned``) once the fleet is gone.

Records: JSON lines appended (one ``os.write`` each) to ``$ORACLE_HOME/invocations.jsonl``:
``start`` once the script is read, ``end`` when it ends (not after SIGKILL), with sid, step,
behaviour, command_id, script, argv, pid, ppid, pgid, session, child_pid, env, start; ``end``
adds end, status and ended (exit | fail | SIGINT | SIGINT+SIGTERM | SIGTERM | SIGHUP | EPIPE |
die | max_seconds | orphaned).
"""

from __future__ import annotations

import signal

# A signal that arrives while the interpreter is still importing (a loaded machine, a step
# timeout of a second) is kept and acted on once the behaviour is set up, as rman would.
EARLY: list[int] = []


def _early(signum: int, _frame: object) -> None:
    EARLY.append(signum)


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _early)

import json  # noqa: E402 (after the early signal handlers, on purpose)
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

TYPE_CHECKING = False  # typing and subprocess stay out of the start-up path (every step pays it)
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path
    from typing import Any

BEHAVIOURS = ("ok", "fail", "slow", "hang", "die", "flood", "drop")
HANGS = ("hang", "ignore_sigint", "ignore_int_term")
STEP_KINDS = ("full", "archivelog", "controlfile", "other")
ERRORS: dict[str, list[str]] = {
    "recovery-area-full": [
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit",
    ],
    "archived-log-missing": [
        "RMAN-06059: expected archived log not found, loss of archived log compromises"
        " recoverability",
        "ORA-19625: error identifying file /u02/fra/{sid}/archivelog/1_4711_1122334455.arc",
        "ORA-27037: unable to obtain file status",
        "Linux-x86_64 Error: 2: No such file or directory",
        "Additional information: 7",
    ],
    # The shapes below are taken from real transcripts (tests/rman_corpus/). A list whose first
    # line is an RMAN framing code is the whole stack: no RMAN-03009 line is put above it.
    "catalog-unavailable": [
        "RMAN-00554: initialization of internal recovery manager package failed",
        "RMAN-04004: error from recovery catalog database: ORA-01033: ORACLE initialization"
        " or shutdown in progress",
    ],
    "media-manager": [
        "RMAN-03009: failure of allocate command on ch1 channel at {stamp}",
        "ORA-19554: error allocating device, device type: SBT_TAPE, device name:",
        "ORA-27023: skgfqsbi: media manager protocol error",
        "ORA-19511: non RMAN, but media manager or vendor specific failure, error text:",
        "   KBHS-00715: HTTP error occurred 'operation-unauthorized'",
    ],
    "session-terminated": [
        "RMAN-00601: fatal error in recovery manager",
        "RMAN-03010: fatal error during library cache pre-loading",
        "RMAN-10038: database session for channel default terminated unexpectedly",
    ],
    "nothing-to-backup": [
        "RMAN-03002: failure of backup command at {stamp}",
        "RMAN-06004: ORACLE error from recovery catalog database: RMAN-20242: specification"
        " does not match any archived log in the repository",
    ],
    # Printed inline, without the error banner (``inline: true`` is implied).
    "disk-full-inline": [
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at {stamp}",
        'ORA-19502: write error on file "/u02/fra/{sid}/backupset/o1_mf_nnndf_TAG_.bkp",'
        " block number 1024 (block size=8192)",
        "ORA-27072: File I/O error",
        "Linux-x86_64 Error: 28: No space left on device",
        "Additional information: 4",
        "continuing other job steps, job failed will not be re-run",
    ],
}
INLINE_ERRORS = ("disk-full-inline",)
DEFAULTS: dict[str, Any] = {
    "behaviour": "ok",
    "error": "recovery-area-full",
    "fail_times": 0,
    "flood_mb": 5.0,
    "ignore": [],
    "exit_delay": 0.0,
    "child": False,
    "datafiles": 4,
    "max_seconds": 600.0,
    "survive_epipe": False,
}
CANCELLED = (
    "RMAN-03099: job cancelled at user request",
    "ORA-01013: user requested cancel of current operation",
)
RULE = "RMAN-00571: ==========================================================="
ERROR_BANNER = (
    RULE,
    "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
    RULE,
)
DATAFILES = ("system01", "sysaux01", "undotbs01", "users01", "data01", "data02", "index01")
ENV_KEYS = ("ORACLE_SID", "ORACLE_HOME", "NLS_LANG", "NLS_DATE_FORMAT", "PATH", "FANOUT_TOKEN")
CONTROL_ENV = "FANOUT_SIM_CONTROL"
CHILD_CODE = (
    "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); time.sleep(float(sys.argv[1]))"
)


class Signalled(BaseException):
    """Unwinds the run from a signal handler (or the deadline, or the fleet's end): its name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Died(BaseException):
    """Raised by ``die`` after its cut line."""


class Run:
    """One invocation: its settings, script and deadline."""

    def __init__(self, home: str, sid: str, script: str, kind: str, cfg: dict[str, Any]) -> None:
        self.home, self.sid, self.script, self.kind, self.cfg = home, sid, script, kind, cfg
        self.child: subprocess.Popen[bytes] | None = None
        self.total = 1.0  # the transcript's total weight
        self.deadline = time.monotonic() + float(cfg["max_seconds"])
        self.preamble: list[str] = []  # what the commands before RUN printed
        self.refused: tuple[list[str] | None, str] = (None, "")  # a parse or catalog error
        self.pending: str | None = None  # a signal that came before the handlers were set
        STDOUT["survive_epipe"] = bool(cfg["survive_epipe"])
        control = os.environ.get(CONTROL_ENV, "")
        self.control = int(control) if control.isdigit() else None


# -- output and dates ---------------------------------------------------------------------------


STDOUT = {"survive_epipe": False, "gone": False}


def out(text: str) -> None:
    """Straight to fd 1: no buffer for a signal handler to leave half written.

    With ``survive_epipe``, a write that finds stdout gone (EPIPE) drops this and all later
    output and lets the behaviour go on, as rman writing a long piece does after its SSH
    session died.
    """
    if STDOUT["gone"]:
        return
    data = text.encode()
    while data:
        try:
            data = data[os.write(1, data) :]
        except BrokenPipeError:
            if not STDOUT["survive_epipe"]:
                raise
            STDOUT["gone"] = True
            return


def say(*lines: str) -> None:
    date = nls_date(time.time())
    out("".join(line.replace("{date}", date) + "\n" for line in lines))


def nls_date(now: float) -> str:
    """A date as rman prints it under $NLS_DATE_FORMAT (default DD-MON-RR)."""
    tokens = {"YYYY": "%Y", "HH24": "%H", "MON": "%b", "RR": "%y", "YY": "%y", "MM": "%m"}
    tokens.update(DD="%d", MI="%M", SS="%S")
    fmt = re.sub(
        "|".join(tokens),
        lambda m: tokens[m.group(0)],
        os.environ.get("NLS_DATE_FORMAT", "DD-MON-RR"),
    )
    return time.strftime(fmt, time.localtime(now)).upper()


def stamp(now: float) -> str:
    """The RMAN-0300x stamp: always MM/DD/YYYY HH24:MI:SS."""
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(now))


def dbid(sid: str) -> int:
    return 1_000_000_000 + zlib.crc32(sid.encode()) % 3_000_000_000


# -- configuration and script ---------------------------------------------------------------------


def detect_kind(script: str) -> str:
    upper = re.sub(r"'[^']*'", "''", script.upper())  # tags and command ids never decide
    for kind, pattern in (("full", "DATABASE"), ("archivelog", "ARCHIVELOG")):
        if re.search(rf"\b{pattern}\b", upper):
            return kind
    return "controlfile" if re.search(r"\b(CONTROLFILE|SPFILE)\b", upper) else "other"


def load_config(home: str, sid: str, kind: str) -> dict[str, Any]:
    """The settings of ``sid``'s ``kind`` steps (see the module docstring)."""
    try:
        with open(os.path.join(home, "double.json"), encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError):
        table = {}
    cfg: dict[str, Any] = dict(DEFAULTS)
    for key in ("*", sid):
        section = table.get(key) if isinstance(table, dict) else None
        if isinstance(section, dict):
            cfg.update({k: v for k, v in section.items() if k not in STEP_KINDS})
            if isinstance(section.get(kind), dict):
                cfg.update(section[kind])
    if cfg["behaviour"] not in BEHAVIOURS + HANGS:
        cfg["behaviour"] = "ok"
    cfg.setdefault("seconds", 60.0 if cfg["behaviour"] == "slow" else 0.2)
    return cfg


def commands(script: str) -> list[str]:
    """The script's commands, RUN blocks opened up, comments gone, one line each."""
    body = re.sub(r"\bRUN\s*\{", ";", re.sub(r"#.*", "", script), flags=re.IGNORECASE)
    return [" ".join(c.split()) for c in body.replace("}", ";").split(";") if c.strip()]


def command_id(script: str) -> str | None:
    match = re.search(r"SET\s+COMMAND\s+ID\s+TO\s+'([^']*)'", script, re.IGNORECASE)
    return match.group(1) if match else None


# -- transcript ---------------------------------------------------------------------------------


def banner(sid: str) -> list[str]:
    now = time.strftime("%a %b %d %H:%M:%S %Y")
    lines = ["", f"Recovery Manager: Release 19.0.0.0.0 - Production on {now}"]
    lines += ["Version 19.3.0.0.0", "", "Copyright (c) 1982, 2019, Oracle and/or its affiliates."]
    lines[-1] += "  All rights reserved."
    return [*lines, "", f"connected to target database: {sid} (DBID={dbid(sid)})", ""]


def prompts(script: str) -> str:
    """rman's prompts for a RUN block on stdin: ``RMAN> 2> 3> ...`` on one line."""
    count = script.split("}", 1)[0].count("\n") + 1 if "{" in script else 1
    return "RMAN> " + "".join(f"{n}> " for n in range(2, count + 1))


def transcript(run: Run) -> list[tuple[list[str], float]]:
    """The commands' output as (lines printed together, share of the run time after them);
    ``{date}`` is the moment a line is printed."""
    sid, date, datafiles = run.sid, "{date}", int(run.cfg["datafiles"])
    fra = f"/u02/fra/{sid}/backupset/{time.strftime('%Y_%m_%d')}"
    beats: list[tuple[list[str], float]] = []
    allocated, piece, sequence = False, 0, 4700 + zlib.crc32(sid.encode()) % 200
    for command in commands(run.script):
        upper = command.upper()
        if upper.startswith("SET COMMAND ID"):
            beats.append((["executing command: SET COMMAND ID"], 0.2))
        elif upper.startswith("SQL"):
            sql = re.search(r"'([^']*)'", command)
            beats.append(([f"sql statement: {sql.group(1) if sql else command[4:]}"], 1.0))
        if not upper.startswith("BACKUP"):
            continue
        tag = re.search(r"\bTAG\s*=?\s*'([^']*)'", command, re.IGNORECASE)
        tag_name = tag.group(1).upper() if tag else time.strftime("TAG%Y%m%dT%H%M%S")
        packed = "compressed " if "COMPRESSED" in upper else ""
        head = [f"Starting backup at {date}"]
        if allocated:
            head.append("using channel ORA_DISK_1")
        else:
            head += ["using target database control file instead of recovery catalog"]
            head += ["allocated channel: ORA_DISK_1"]
            head += [f"channel ORA_DISK_1: SID={100 + dbid(sid) % 900} device type=DISK"]
            allocated = True
        sets: list[tuple[str, list[str]]] = []
        if re.search(r"\bDATABASE\b", upper):
            found = re.search(r"\bLEVEL\s+([01])", upper)
            level = f"incremental level {found.group(1)}" if found else "full"
            files = [
                f"input datafile file number={n:05d} name=/u01/app/oracle/oradata/{sid}/"
                f"{DATAFILES[(n - 1) % len(DATAFILES)]}.dbf"
                for n in range(1, datafiles + 1)
            ]
            sets.append((f"{packed}{level} datafile backup set", files))
        if re.search(r"\bARCHIVELOG\b", upper):
            head.append("current log archived")
            logs = [
                f"input archived log thread=1 sequence={s} RECID={s - 90} STAMP={1209605035 + s}"
                for s in range(sequence + 1, sequence + 4)
            ]
            sequence += 3
            sets.append((f"{packed}archived log backup set", logs))
        for word, what in (("CONTROLFILE", "control file"), ("SPFILE", "SPFILE")):
            if re.search(rf"\b{word}\b", upper):
                sets.append(
                    (
                        f"{packed}full datafile backup set",
                        [f"including current {what} in backup set"],
                    )
                )
        beats.append((head, 1.0))
        for what, inputs in sets:
            piece += 1
            kind = "archived log(s)" if "archived log" in what else "datafile(s)"
            beats.append(([f"channel ORA_DISK_1: starting {what}"], 0.0))
            beats.append(([f"channel ORA_DISK_1: specifying {kind} in backup set"], 0.5))
            beats.extend(([line], 0.2) for line in inputs)
            weight = 2.0 + 4.0 * len(inputs) / max(1, datafiles)
            beats.append(([f"channel ORA_DISK_1: starting piece 1 at {date}"], weight))
            handle = f"{fra}/o1_mf_{piece:04d}_{tag_name}_{dbid(sid) % 100000:05d}_.bkp"
            took = round(float(run.cfg["seconds"]) * weight / 10) or 1
            took_text = f"{took // 3600:02d}:{took % 3600 // 60:02d}:{took % 60:02d}"
            finished = [f"channel ORA_DISK_1: finished piece 1 at {date}"]
            finished += [f"piece handle={handle} tag={tag_name} comment=NONE"]
            finished += [f"channel ORA_DISK_1: backup set complete, elapsed time: {took_text}"]
            beats.append((finished, 0.3))
        beats.append(([f"Finished backup at {date}", ""], 0.2))
    return beats


TAIL = ("RMAN> ", "", "Recovery Manager complete.")


def error_stack(lines: list[str]) -> list[str]:
    return ["", *ERROR_BANNER, *lines, ""]


# -- behaviours ---------------------------------------------------------------------------------


def pause(run: Run, seconds: float) -> None:
    """Sleep, never past the deadline and, under the simulated fleet, not past its end."""
    end = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if now >= run.deadline:
            raise Signalled("max_seconds")
        if now >= end:
            return
        time.sleep(min(end, run.deadline, now + 0.5) - now)
        if run.control is not None and fleet_gone(run.control):
            raise Signalled("orphaned")


def fleet_gone(fd: int) -> bool:
    """Whether the fleet's end of the control pipe is closed (a pipe's writer then polls ERR)."""
    import select

    poller = select.poll()
    poller.register(fd, 0)
    return any(mask & (select.POLLERR | select.POLLNVAL) for _, mask in poller.poll(0))


def play(run: Run, beats: list[tuple[list[str], float]], seconds: float) -> None:
    """Print ``beats``, each followed by its share of ``seconds``."""
    for lines, weight in beats:
        say(*lines)
        pause(run, seconds * weight / run.total)


def first_piece(beats: list[tuple[list[str], float]]) -> int:
    """How many beats up to and including the first ``starting piece``."""
    for index, (lines, _) in enumerate(beats):
        if any("starting piece" in line for line in lines):
            return index + 1
    return len(beats)


def behave(run: Run) -> tuple[int, str]:
    """Play the configured behaviour. Returns (status, how it ended)."""
    cfg, behaviour, seconds = run.cfg, run.cfg["behaviour"], float(run.cfg["seconds"])
    beats = transcript(run)
    run.total, cut = sum(weight for _, weight in beats) or 1.0, first_piece(beats)
    hangs = behaviour in (*HANGS, "drop")  # all up to the piece in one write, then silence,
    first = [line for lines, _ in beats[:cut] for line in lines] if hangs else []
    # all up to the piece at once, so a closed stdout cannot end a hang
    say(*banner(run.sid), prompts(run.script), *run.preamble, *first)
    if behaviour == "fail":
        play(run, beats[:cut], seconds)
        named = not isinstance(cfg["error"], list)
        error = ERRORS[str(cfg["error"])] if named else cfg["error"]
        now = stamp(time.time())
        lines = [str(line).replace("{sid}", run.sid).replace("{stamp}", now) for line in error]
        if named and cfg["error"] in INLINE_ERRORS:
            say(*lines, "")
        elif lines and lines[0].startswith(
            ("RMAN-00554", "RMAN-00601", "RMAN-03002", "RMAN-03009")
        ):
            say(*error_stack(lines))
        else:
            head = f"RMAN-03009: failure of backup command on ORA_DISK_1 channel at {now}"
            say(*error_stack([head, *lines]))
        say(*TAIL)
        return 1, "fail"
    if behaviour == "flood":
        line, sent, seq = "input archived log thread=1 sequence={0} RECID={0} STAMP={1}\n", 0, 1
        while sent < float(cfg["flood_mb"]) * 1024 * 1024:
            chunk = "".join(line.format(seq + i, 1209605035 + seq + i) for i in range(800))
            out(chunk)
            seq, sent = seq + 800, sent + len(chunk)
        seconds = min(seconds, 0.1)
    elif behaviour == "die":
        flat = [line for lines, _ in beats for line in lines]
        say(*flat[: len(flat) // 2])
        out("channel ORA_DISK_1: starting pie")
        raise Died
    elif hangs:
        if behaviour == "drop" and run.control is not None:
            os.write(run.control, b"drop\n")
        pause(run, float("inf"))
    play(run, beats, seconds)
    say(*TAIL)
    return 0, "exit"


def cancel(run: Run, name: str) -> tuple[int, str]:
    """rman's answer to a signal: SIGINT aborts with a stack after ``exit_delay``."""
    if name != "SIGINT":
        return 1, name
    try:  # SIGINT stays ignored (the handler saw to it): a second one does not hurry the abort
        pause(run, float(run.cfg["exit_delay"]))
        now = stamp(time.time())
        head = f"RMAN-03009: failure of backup command on ORA_DISK_1 channel at {now}"
        say(*error_stack([head, *CANCELLED]), *TAIL)
    except Signalled as again:  # SIGTERM during the abort: leave now
        return 1, f"SIGINT+{again.name}"
    except BrokenPipeError:
        return 1, "EPIPE"
    return 1, "SIGINT"


# -- process plumbing ---------------------------------------------------------------------------


def prior_starts(home: str, sid: str, kind: str) -> int:
    """How many start records of ``sid`` and step ``kind`` invocations.jsonl already holds."""
    keys = ("event", "sid", "step")
    return sum([r.get(k) for k in keys] == ["start", sid, kind] for r in read_invocations(home))


def append_record(home: str, record: dict[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    path = os.path.join(home, "invocations.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def set_signals(ignored: set[str]) -> None:
    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:  # the request and the kill helper often come as a pair
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Signalled(signal.Signals(signum).name)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN if name in ignored else handler)


def ignored_signals(cfg: dict[str, Any]) -> set[str]:
    extra = {"ignore_sigint": {"SIGINT"}, "ignore_int_term": {"SIGINT", "SIGTERM"}}
    return {str(name) for name in cfg["ignore"]} | extra.get(cfg["behaviour"], set())


# -- the RUN-block rules, catalog, CONFIGURE, level ----------------------------------------------
#
# RMAN accepts CONNECT, CONFIGURE and the catalog/script administration commands only at its
# prompt: inside RUN { } they are a parse error (RMAN-00558 / RMAN-01009 / RMAN-01007) and the
# block does not run. Setting "catalog": "ok" (default) | "unreachable" (CONNECT CATALOG fails
# with RMAN-04004 / ORA-12154 and nothing else runs). Start records gain level (0, 1 or null),
# cumulative, catalog (the connect string or null), catalog_connected and configure (a list).

PROMPT_ONLY = frozenset(
    (
        *("CONNECT", "CONFIGURE", "CREATE", "DROP", "UPGRADE", "IMPORT", "REPLACE", "PRINT"),
        *("LIST", "REPORT", "SHOW", "SPOOL", "GRANT", "REVOKE", "RUN", "EXIT", "QUIT"),
    )
)
IN_RUN_EXPECTED = (
    '"allocate, alter, backup, catalog, change, crosscheck, delete, duplicate, execute, '
    "flashback, host, recover, release, restore, resync, send, set, shutdown, sql, startup, "
    'switch, transport, validate, }"'
)


def statements(text: str, first_line: int) -> list[tuple[int, int, str]]:
    """(line, column, command) of each ``;``-terminated command; quotes and comments aside."""

    def mask(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " " if m[0].startswith("#") else "x", m[0])

    masked = re.sub(r"'[^']*'|\"[^\"]*\"|#[^\n]*", mask, text)
    found, pos = [], 0
    for piece in masked.split(";"):
        stripped = piece.lstrip()
        if stripped.strip():
            offset = pos + len(piece) - len(stripped)
            before = text[:offset]
            column = offset - (before.rfind("\n") + 1) + 1
            command = masked[offset : pos + len(piece)].strip()
            found.append((first_line + before.count("\n"), column, command))
        pos += len(piece) + 1
    return found


def fleet_checks(script: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """What the fake checks and records about a script beyond its BACKUP commands."""
    result: dict[str, Any] = {"record": {}, "preamble": [], "error": None, "how": ""}
    match = re.search(r"\bRUN\s*\{", script, re.IGNORECASE)
    head = script[: match.start()] if match else script
    body_start = match.end() if match else len(script)
    close = script.find("}", body_start)
    body = script[body_start : close if close >= 0 else len(script)]
    body_line = script[:body_start].count("\n") + 1
    levels = re.findall(r"\bINCREMENTAL\s+LEVEL\s+([01])", body, re.IGNORECASE)
    catalog, configure = None, []
    for _line, _col, command in statements(head, 1):
        words = command.split()
        if len(words) >= 3 and [w.upper() for w in words[:2]] == ["CONNECT", "CATALOG"]:
            catalog = words[2]
        elif words and words[0].upper() == "CONFIGURE":
            configure.append(" ".join(words))
    result["record"] = {
        "level": int(levels[0]) if levels else None,
        "cumulative": bool(re.search(r"\bCUMULATIVE\b", body, re.IGNORECASE)),
        "catalog": catalog,
        "catalog_connected": None,
        "configure": configure,
    }
    for line, column, command in statements(body, body_line):
        word = command.split()[0] if command.split() else ""
        if word.upper() in PROMPT_ONLY:
            result["error"] = [
                "RMAN-00558: error encountered while parsing input commands",
                f'RMAN-01009: syntax error: found "{word.lower()}": expecting one of: '
                + IN_RUN_EXPECTED,
                f"RMAN-01007: at line {line} column {column} file: standard input",
            ]
            result["how"] = "parse"
            return result
    if catalog is not None:
        reachable = cfg.get("catalog", "ok") != "unreachable"
        result["record"]["catalog_connected"] = reachable
        if not reachable:
            result["error"] = [
                "RMAN-04004: error from recovery catalog database: "
                "ORA-12154: TNS:could not resolve the connect identifier specified"
            ]
            result["how"] = "catalog"
            return result
        result["preamble"].append("connected to recovery catalog database")
    for command in configure:
        result["preamble"] += [
            "",
            "new RMAN configuration parameters:",
            command.rstrip(";") + ";",
            "new RMAN configuration parameters are successfully stored",
        ]
    return result


def refuse(run: Run, error: list[str], how: str) -> tuple[int, str]:
    """RMAN's answer to a script it refuses: banner, the error stack, exit 1."""
    say(*banner(run.sid), prompts(run.script), *error_stack(error), *TAIL)
    return 1, how


def no_sid() -> tuple[int, str]:
    """rman without ORACLE_SID: ``target /`` cannot connect."""
    stack = ["RMAN-04005: error from target database:"]
    stack += ["ORA-12162: TNS:net service name is incorrectly specified"]
    say(*banner("")[:6], *error_stack(stack), "Recovery Manager complete.")
    return 1, "fail"


def start(home: str, record: dict[str, Any]) -> Run:
    """Read the script, settle the settings, start the channel child, record the start."""
    script = sys.stdin.read()
    sid, kind = record["sid"], detect_kind(script)
    cfg = load_config(home, sid, kind)
    if int(cfg["fail_times"]) > 0 or cfg["behaviour"] == "drop":
        before = prior_starts(home, sid, kind)
        if int(cfg["fail_times"]) > before:
            cfg["behaviour"] = "fail"
        elif cfg["behaviour"] == "drop" and before:
            cfg["behaviour"] = "ok"  # a network blip, once
    run = Run(home, sid, script, kind, cfg)
    fleet = fleet_checks(script, cfg)  # RUN-block rules, catalog, CONFIGURE, level
    record.update(fleet["record"])
    run.preamble, run.refused = fleet["preamble"], (fleet["error"], fleet["how"])
    if cfg["child"]:
        import subprocess

        run.child = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, str(cfg["max_seconds"]), "rman-double-channel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ignored = ignored_signals(cfg)
    set_signals(ignored)
    early = [signal.Signals(s).name for s in EARLY]
    run.pending = next((name for name in early if name not in ignored), None)
    record.update(step=kind, behaviour=cfg["behaviour"], command_id=command_id(script))
    record.update(script=script, child_pid=run.child.pid if run.child else None)
    append_record(home, {"event": "start", **record})
    return run


def main() -> int:
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    set_signals(set())
    record: dict[str, Any] = {
        "sid": os.environ.get("ORACLE_SID", ""),
        **dict.fromkeys(("step", "behaviour", "command_id", "script", "child_pid")),
        "argv": sys.argv,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "session": os.getsid(0),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "start": time.time(),
    }
    run: Run | None = None
    status, how = 1, "exit"
    try:
        run = start(home, record)
        if run.pending is not None:
            raise Signalled(run.pending)
        error, refused_how = run.refused
        if error:
            status, how = refuse(run, error, refused_how)
        else:
            status, how = behave(run) if run.sid else no_sid()
    except Signalled as sig:
        status, how = (
            (1, sig.name)
            if run is None or sig.name in ("max_seconds", "orphaned")
            else cancel(run, sig.name)
        )
    except Died:
        status, how = 1, "die"
    except BrokenPipeError:
        status, how = 1, "EPIPE"
    finally:
        set_signals({"SIGINT", "SIGTERM", "SIGHUP"})
    end = {"event": "end", **record, "end": time.time(), "status": status, "ended": how}
    if how == "die" and run is not None:  # a crash leaves its channel process behind
        append_record(home, end)
        os._exit(1)
    if run is not None and run.child is not None and run.child.poll() is None:
        run.child.kill()
        run.child.wait()
    append_record(home, end)
    return status


# -- for installers (the simulated fleet, tests/system/sshd.py) ---------------------------------


def install(oracle_home: Path, interpreter: str, config: dict[str, Any] | None = None) -> Path:
    """Create ``oracle_home`` with ``bin/rman`` = this fake (``#!<interpreter>``), its
    double.json (``config``, default ``{}``: every SID ok) and no invocations yet."""
    (oracle_home / "bin").mkdir(mode=0o755, parents=True, exist_ok=True)
    oracle_home.chmod(0o755)
    rman = oracle_home / "bin" / "rman"
    with open(__file__, encoding="utf-8") as fh:
        rman.write_text(f"#!{interpreter}\n{fh.read()}")
    rman.chmod(0o755)
    configure(oracle_home, config or {})
    (oracle_home / "invocations.jsonl").unlink(missing_ok=True)
    return oracle_home


def configure(oracle_home: Path, config: dict[str, Any]) -> None:
    """Write double.json atomically (the fake re-reads it at every invocation)."""
    tmp = oracle_home / "double.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.chmod(0o644)  # read by the login user
    tmp.replace(oracle_home / "double.json")


def read_invocations(oracle_home: str | Path) -> list[dict[str, Any]]:
    """Every record in ``oracle_home``'s invocations.jsonl, oldest first (torn lines skipped)."""
    try:
        with open(os.path.join(oracle_home, "invocations.jsonl"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.endswith("}")]  # a torn last line: left


if __name__ == "__main__":
    sys.exit(main())
