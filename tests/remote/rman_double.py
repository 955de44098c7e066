"""RMAN test double: installed as ``$ORACLE_HOME/bin/rman`` under a temporary ORACLE_HOME.

fanout runs it remotely exactly as it runs rman (``exec "$ORACLE_HOME/bin/rman" target /`` with the
RMAN script on stdin). It reads the whole script, prints an RMAN-shaped transcript for the BACKUP
commands it finds (banner, channel allocation, backup sets, pieces, ``Finished backup at``,
``Recovery Manager complete.``) and behaves as configured. Stdlib only, single file: it runs under
the bare interpreter named in its shebang, with sshd's minimal environment.

Configuration: ``$ORACLE_HOME/double.json``, re-read at every invocation::

    {
      "*":   {"behaviour": "ok", "seconds": 0.2},                  # every SID
      "ERP": {"seconds": 0.5, "full": {"behaviour": "fail"}},      # one SID, one step kind
      "CRM": {"behaviour": "hang", "child": true}
    }

Effective settings = built-in defaults <- ``"*"`` <- ``"*"[kind]`` <- ``SID`` <- ``SID[kind]``,
where ``kind`` is the step detected from the script: ``full`` (``DATABASE``), ``archivelog``
(``ARCHIVELOG``), ``controlfile`` (``CONTROLFILE``/``SPFILE``), else ``other``.

Keys (all optional):
    behaviour    ok | fail | slow | hang | die | flood | ignore_sigint | ignore_int_term
                 ok:     run ``seconds``, progress lines paced evenly; exit 0
                 fail:   run up to the first piece, then the final error stack; exit ``fail_status``
                 slow:   ok, with ``seconds`` defaulting to 60
                 hang:   print up to ``starting piece 1`` and sleep until a signal
                 die:    print half the transcript, end mid-line; ``os._exit(1)`` or SIGKILL itself
                 flood:  print ``flood_mb`` MB of ``input archived log`` lines at once, then ok
                 ignore_sigint:   hang, SIGINT ignored (SIGTERM still ends it)
                 ignore_int_term: hang, SIGINT and SIGTERM ignored (only SIGKILL ends it)
    seconds      float, run time of ok/fail/slow (default 0.2; 60 for slow)
    error        list of lines under ``RMAN-03009`` (default ORA-19809 / ORA-19804)
    fail_status  int, exit status of ``fail`` (default 1)
    fail_times   int, the first N invocations of this SID and step kind (start records already in
                 invocations.jsonl) behave as ``fail``, later ones as configured (default 0):
                 a step that fails once, then succeeds when retried
    die_with     "exit" (``os._exit(1)``, default) | "kill" (SIGKILL itself: 137 through a shell)
    flood_mb     float, MB printed by ``flood`` (default 5)
    ignore       list of signal names ignored on top of the behaviour, e.g. ["SIGINT"]
    exit_delay   float, seconds between SIGINT and exit (rman's own abort work; default 0)
    cancel_lines list of lines printed under the error banner on SIGINT, ``{stamp}`` replaced
                 (default RMAN-03009 / RMAN-03099 / ORA-01013); cancel_status: int (default 1)
    term_status  int, exit status on SIGTERM / SIGHUP (default 1; nothing printed)
    child        bool, spawn one sleeping child in the same process group (a "channel process")
    datafiles    int, datafiles listed in a database backup set (default 4)
    prompts      bool, print ``RMAN> 2> 3>`` prompts, as rman does for stdin (default true)
    max_seconds  float, safety net: any invocation ends (status 1) after this long (default 600)

Unknown keys are ignored; a missing or broken double.json means the defaults. Without ORACLE_SID
the double fails the way rman does (RMAN-04005 / ORA-12162).

Record: every invocation appends JSON lines (one ``os.write`` each, O_APPEND) to
``$ORACLE_HOME/invocations.jsonl``: ``{"event": "start", ...}`` once the script is read and
``{"event": "end", ...}`` when it ends (not after SIGKILL). Fields: event, sid, step, behaviour,
command_id (from ``SET COMMAND ID``), script, argv, pid, ppid, pgid, session, child_pid, env,
start; the end record adds end, status and ended (exit | fail | SIGINT | SIGINT+SIGTERM | SIGTERM |
SIGHUP | EPIPE | die | max_seconds).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import zlib
from collections.abc import Callable

# Every step of every test starts this script: its imports are most of its CPU time, so
# typing, dataclasses and subprocess (~25 ms together) stay out of the common path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

BEHAVIOURS = (
    "ok",
    "fail",
    "slow",
    "hang",
    "die",
    "flood",
    "ignore_sigint",
    "ignore_int_term",
)
STEP_KINDS = ("full", "archivelog", "controlfile", "other")
DEFAULTS: dict[str, Any] = {
    "behaviour": "ok",
    "error": [
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit",
    ],
    "fail_status": 1,
    "fail_times": 0,
    "die_with": "exit",
    "flood_mb": 5.0,
    "ignore": [],
    "exit_delay": 0.0,
    "cancel_lines": [
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at {stamp}",
        "RMAN-03099: job cancelled at user request",
        "ORA-01013: user requested cancel of current operation",
    ],
    "cancel_status": 1,
    "term_status": 1,
    "child": False,
    "datafiles": 4,
    "prompts": True,
    "max_seconds": 600.0,
}
BANNER_RULE = "==========================================================="
ERROR_BANNER = (
    f"RMAN-00571: {BANNER_RULE}",
    "RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============",
    f"RMAN-00571: {BANNER_RULE}",
)
DATAFILES = ("system01", "sysaux01", "undotbs01", "users01", "data01", "data02", "index01")
ENV_KEYS = ("ORACLE_SID", "ORACLE_HOME", "NLS_LANG", "NLS_DATE_FORMAT", "PATH", "FANOUT_TOKEN")
CHILD_CODE = (
    "import signal, sys, time; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "time.sleep(float(sys.argv[1]))"
)


class Signalled(BaseException):
    """Raised from a signal handler to unwind the run; carries the signal name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Died(BaseException):
    """Raised by the ``die`` behaviour after its partial line."""


class Run:
    """One invocation: where it runs, what it was asked, how it is configured."""

    def __init__(self, home: str, sid: str, script: str, kind: str, cfg: dict[str, Any]) -> None:
        self.home = home
        self.sid = sid
        self.script = script
        self.kind = kind
        self.cfg = cfg
        self.child: subprocess.Popen[bytes] | None = None
        self.deadline = 0.0


# -- output -------------------------------------------------------------------------------------


def out(text: str) -> None:
    """Write straight to fd 1 (no buffer to corrupt when a signal handler unwinds a write)."""
    data = text.encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


def say(*lines: str) -> None:
    out("".join(line + "\n" for line in lines))


def nls_date(now: float) -> str:
    """A date as rman prints it under $NLS_DATE_FORMAT (default DD-MON-YY)."""
    fmt = os.environ.get("NLS_DATE_FORMAT", "DD-MON-RR")
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
    pattern = re.compile("|".join(token for token, _ in tokens))
    mapping = dict(tokens)
    return time.strftime(
        pattern.sub(lambda m: mapping[m.group(0)], fmt), time.localtime(now)
    ).upper()


def stamp(now: float) -> str:
    """The RMAN-0300x stamp: always MM/DD/YYYY HH24:MI:SS."""
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(now))


def elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# -- configuration and script ---------------------------------------------------------------------


def detect_kind(script: str) -> str:
    upper = re.sub(r"'[^']*'", "''", script.upper())  # tags and ids never decide the kind
    for kind, word in (("full", "DATABASE"), ("archivelog", "ARCHIVELOG")):
        if re.search(rf"\b{word}\b", upper):
            return kind
    if re.search(r"\b(CONTROLFILE|SPFILE)\b", upper):
        return "controlfile"
    return "other"


def load_config(home: str, sid: str, kind: str) -> dict[str, Any]:
    try:
        with open(os.path.join(home, "double.json"), encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError):
        table = {}
    if not isinstance(table, dict):
        table = {}
    cfg: dict[str, Any] = {}
    for key in ("*", sid):
        section = table.get(key)
        if not isinstance(section, dict):
            continue
        cfg.update({k: v for k, v in section.items() if k not in STEP_KINDS})
        step_section = section.get(kind)
        if isinstance(step_section, dict):
            cfg.update(step_section)
    merged = {**DEFAULTS, **cfg}
    if merged["behaviour"] not in BEHAVIOURS:
        merged["behaviour"] = "ok"
    merged.setdefault("seconds", 60.0 if merged["behaviour"] == "slow" else 0.2)
    return merged


def backup_commands(script: str) -> list[str]:
    upper = re.sub(r"#.*", "", script.upper())
    return [m.group(0) for m in re.finditer(r"\bBACKUP\b[^;]*", upper)]


def tag_of(command: str, now: float) -> str:
    match = re.search(r"\bTAG\s*=?\s*'([^']*)'", command)
    return match.group(1) if match else time.strftime("TAG%Y%m%dT%H%M%S", time.localtime(now))


def command_id(script: str) -> str | None:
    match = re.search(r"SET\s+COMMAND\s+ID\s+TO\s+'([^']*)'", script, re.IGNORECASE)
    return match.group(1) if match else None


def dbid(sid: str) -> int:
    return 1_000_000_000 + zlib.crc32(sid.encode()) % 3_000_000_000


# -- transcript ---------------------------------------------------------------------------------


def banner(sid: str, now: float) -> list[str]:
    return [
        "",
        "Recovery Manager: Release 19.0.0.0.0 - Production on "
        + time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)),
        "Version 19.3.0.0.0",
        "",
        "Copyright (c) 1982, 2019, Oracle and/or its affiliates.  All rights reserved.",
        "",
        f"connected to target database: {sid} (DBID={dbid(sid)})",
        "",
    ]


def prompts(script: str) -> str:
    """rman's prompts for a RUN block on stdin: ``RMAN> 2> 3> ...`` on one line."""
    body = script.split("}", 1)[0] if "}" in script else script
    count = body.count("\n") + 1 if "{" in script else 1
    return "RMAN> " + "".join(f"{n}> " for n in range(2, count + 1))


def backup_lines(run: Run, now: float) -> list[list[str]]:
    """Transcript of every BACKUP command, as groups; a group's last line is a progress beat."""
    sid = run.sid
    groups: list[list[str]] = []
    date = nls_date(now)
    fra = f"/u01/app/oracle/fast_recovery_area/{sid}/backupset/{time.strftime('%Y_%m_%d')}"
    first = True
    sequence = 100
    piece = 0
    for command in backup_commands(run.script) or []:
        tag = tag_of(command, now)
        compressed = "compressed " if "COMPRESSED" in command else ""
        head = [f"Starting backup at {date}"]
        if first:
            head += [
                "using target database control file instead of recovery catalog",
                "allocated channel: ORA_DISK_1",
                "channel ORA_DISK_1: SID=622 device type=DISK",
            ]
            first = False
        else:
            head.append("using channel ORA_DISK_1")
        sets: list[tuple[str, list[str]]] = []
        if re.search(r"\bDATABASE\b", command):
            level = "incremental level 0" if "LEVEL 0" in command else "full"
            inputs = [
                f"input datafile file number={n:05d} name=/u01/app/oracle/oradata/{sid}/"
                f"{DATAFILES[(n - 1) % len(DATAFILES)]}.dbf"
                for n in range(1, int(run.cfg["datafiles"]) + 1)
            ]
            sets.append((f"{compressed}{level} datafile backup set", inputs))
        if re.search(r"\bARCHIVELOG\b", command):
            head.append("current log archived")
            inputs = []
            for _ in range(3):
                sequence += 1
                inputs.append(
                    f"input archived log thread=1 sequence={sequence} RECID={sequence - 90} "
                    f"STAMP={1209605035 + sequence}"
                )
            sets.append((f"{compressed}archived log backup set", inputs))
        if re.search(r"\bCONTROLFILE\b", command):
            sets.append(
                (
                    f"{compressed}full datafile backup set",
                    ["including current control file in backup set"],
                )
            )
        if re.search(r"\bSPFILE\b", command):
            sets.append(
                (
                    f"{compressed}full datafile backup set",
                    ["including current SPFILE in backup set"],
                )
            )
        groups.append(head)
        for what, inputs in sets:
            piece += 1
            handle = f"{fra}/o1_mf_{piece:04d}_{tag}_{dbid(sid) % 100000:05d}_.bkp"
            start = [f"channel ORA_DISK_1: starting {what}"]
            files = "archived log(s)" if "archived log" in what else "datafile(s)"
            start.append(f"channel ORA_DISK_1: specifying {files} in backup set")
            groups.append(start)
            groups.extend([line] for line in inputs)
            groups.append([f"channel ORA_DISK_1: starting piece 1 at {date}"])
            groups.append(
                [
                    f"channel ORA_DISK_1: finished piece 1 at {date}",
                    f"piece handle={handle} tag={tag} comment=NONE",
                    f"channel ORA_DISK_1: backup set complete, elapsed time: "
                    f"{elapsed(run.cfg['seconds'] / max(1, len(sets)))}",
                ]
            )
        groups.append([f"Finished backup at {date}", ""])
    return groups


def until_first_piece(groups: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    for index, group in enumerate(groups):
        if any("starting piece" in line for line in group):
            return groups[: index + 1], groups[index + 1 :]
    return groups, []


def tail(run: Run) -> list[str]:
    return (
        ["RMAN> ", "", "Recovery Manager complete."]
        if run.cfg["prompts"]
        else ["Recovery Manager complete."]
    )


def error_stack(lines: list[str]) -> list[str]:
    return ["", *ERROR_BANNER, *lines, ""]


# -- behaviours ---------------------------------------------------------------------------------


def pause(run: Run, seconds: float) -> None:
    """Sleep, but never past the safety deadline."""
    remaining = run.deadline - time.monotonic()
    if seconds >= remaining:
        time.sleep(max(0.0, remaining))
        raise Signalled("max_seconds")
    time.sleep(max(0.0, seconds))


def paced(run: Run, groups: list[list[str]], seconds: float) -> None:
    beat = seconds / max(1, len(groups))
    for group in groups:
        say(*group)
        pause(run, beat)


def behave(run: Run) -> tuple[int, str]:
    """Play the configured behaviour. Returns (status, how it ended)."""
    cfg = run.cfg
    behaviour = cfg["behaviour"]
    now = time.time()
    say(*banner(run.sid, now))
    if cfg["prompts"]:
        out(prompts(run.script) + "\n")
    groups = backup_lines(run, now)
    seconds = float(cfg["seconds"])
    if behaviour in ("ok", "slow"):
        paced(run, groups, seconds)
        say(*tail(run))
        return 0, "exit"
    if behaviour == "fail":
        before, _ = until_first_piece(groups)
        paced(run, before, seconds)
        lines = [
            f"RMAN-03009: failure of backup command on ORA_DISK_1 channel at {stamp(time.time())}"
        ]
        say(*error_stack([*lines, *cfg["error"]]), *tail(run))
        return int(cfg["fail_status"]), "fail"
    if behaviour == "flood":
        line = "input archived log thread=1 sequence={0} RECID={0} STAMP={1}\n"
        total = int(float(cfg["flood_mb"]) * 1024 * 1024)
        sent, seq = 0, 1
        while sent < total:
            chunk = "".join(line.format(seq + i, 1209605035 + seq + i) for i in range(800))
            seq += 800
            out(chunk)
            sent += len(chunk)
        paced(run, groups, min(seconds, 0.1))
        say(*tail(run))
        return 0, "exit"
    if behaviour == "die":
        flat = [line for group in groups for line in group]
        say(*flat[: len(flat) // 2])
        out("channel ORA_DISK_1: starting pie")
        raise Died
    # hang, ignore_sigint, ignore_int_term: start the work, then wait for a signal
    before, _ = until_first_piece(groups)
    for group in before:
        say(*group)
    pause(run, float("inf"))
    raise AssertionError("unreachable")  # pragma: no cover


# -- process plumbing ---------------------------------------------------------------------------


def prior_starts(home: str, sid: str, kind: str) -> int:
    """How many start records of ``sid`` and step ``kind`` invocations.jsonl already holds."""
    try:
        with open(os.path.join(home, "invocations.jsonl"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0
    count = 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (record.get("event"), record.get("sid"), record.get("step")) == ("start", sid, kind):
            count += 1
    return count


def append_record(home: str, record: dict[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(
        os.path.join(home, "invocations.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def set_signals(handler: Callable[[int, Any], None], ignored: set[str]) -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN if name in ignored else handler)


def raise_signalled(signum: int, _frame: Any) -> None:
    raise Signalled(signal.Signals(signum).name)


def stop_child(run: Run) -> None:
    if run.child is None or run.child.poll() is not None:
        return
    run.child.kill()
    run.child.wait()


def ignored_signals(cfg: dict[str, Any]) -> set[str]:
    ignored = {str(name) for name in cfg["ignore"]}
    if cfg["behaviour"] == "ignore_sigint":
        ignored.add("SIGINT")
    if cfg["behaviour"] == "ignore_int_term":
        ignored |= {"SIGINT", "SIGTERM"}
    return ignored


def no_sid(run: Run) -> tuple[int, str]:
    """rman without ORACLE_SID: ``target /`` cannot connect."""
    say(*banner("", time.time())[:6])
    stack = [
        "RMAN-04005: error from target database:",
        "ORA-12162: TNS:net service name is incorrectly specified",
    ]
    say(*error_stack(stack), "Recovery Manager complete.")
    return 1, "fail"


def cancel(run: Run, name: str) -> tuple[int, str]:
    """rman's answer to a signal: SIGINT aborts with a stack after ``exit_delay``."""
    if name != "SIGINT":
        return int(run.cfg["term_status"]), name
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not hurry the abort
    try:
        time.sleep(float(run.cfg["exit_delay"]))
        now = stamp(time.time())
        lines = [str(line).replace("{stamp}", now) for line in run.cfg["cancel_lines"]]
        say(*error_stack(lines), *tail(run))
    except Signalled as again:  # SIGTERM during the abort: leave now
        return int(run.cfg["term_status"]), f"SIGINT+{again.name}"
    return int(run.cfg["cancel_status"]), "SIGINT"


def main() -> int:
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    set_signals(raise_signalled, set())
    record: dict[str, Any] = {
        "sid": os.environ.get("ORACLE_SID", ""),
        "step": None,
        "behaviour": None,
        "command_id": None,
        "script": None,
        "argv": sys.argv,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "session": os.getsid(0),
        "child_pid": None,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "start": time.time(),
    }
    run: Run | None = None
    status, how = 1, "exit"
    try:
        script = sys.stdin.read()
        kind = detect_kind(script)
        cfg = load_config(home, record["sid"], kind)
        if int(cfg["fail_times"]) > prior_starts(home, record["sid"], kind):
            cfg["behaviour"] = "fail"
        run = Run(home=home, sid=record["sid"], script=script, kind=kind, cfg=cfg)
        run.deadline = time.monotonic() + float(cfg["max_seconds"])
        if cfg["child"]:
            import subprocess

            run.child = subprocess.Popen(
                [sys.executable, "-c", CHILD_CODE, str(cfg["max_seconds"]), "rman-double-channel"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        set_signals(raise_signalled, ignored_signals(cfg))
        record.update(
            step=kind,
            behaviour=cfg["behaviour"],
            command_id=command_id(script),
            script=script,
            child_pid=run.child.pid if run.child else None,
        )
        append_record(home, {"event": "start", **record})
        status, how = behave(run) if run.sid else no_sid(run)
    except Signalled as sig:
        if run is None or sig.name == "max_seconds":
            status, how = 1, sig.name
        else:
            status, how = cancel(run, sig.name)
    except Died:
        status, how = 1, "die"
    except BrokenPipeError:
        status, how = 1, "EPIPE"
    finally:
        set_signals(raise_signalled, {"SIGINT", "SIGTERM", "SIGHUP"})
    end = {"event": "end", **record, "end": time.time(), "status": status, "ended": how}
    if how == "die" and run is not None:  # a crash leaves its channel process behind
        if run.cfg["die_with"] == "kill":
            append_record(home, {**end, "status": -9})
            os.kill(os.getpid(), signal.SIGKILL)
        append_record(home, end)
        os._exit(1)
    if run is not None:
        stop_child(run)
    append_record(home, end)
    return status


if __name__ == "__main__":
    sys.exit(main())
