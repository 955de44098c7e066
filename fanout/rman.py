"""RMAN transcript → error stack, one-line cause, live progress. Pure and incremental.

A ``Transcript`` is fed one line at a time and keeps only a bounded amount of
state (the last error stack, capped; the last progress line; counters), so a
transcript of millions of lines costs no more memory than a short one.

Verdict: a step is ok only when rman exits 0 **and** printed no error stack
(``RMAN-00571`` / ``RMAN-00569 … ERROR MESSAGE STACK FOLLOWS`` banner).
``Recovery Manager complete.`` is printed after failures too and means nothing.

Cause rule (the one line shown in the summary), applied to the *last* stack:

1. The first ``ORA-`` line that is not a pure wrapper (ORA-00604 recursive SQL,
   ORA-12801 parallel server, ORA-17628 remote server, ORA-06512 backtrace;
   a wrapper is used only when nothing else is there). That is Oracle's headline error: it names the
   operation and its object (``ORA-19504: failed to create file "/bk/x"``,
   ``ORA-19809: limit exceeded for recovery files``, the file in
   ``ORA-19625``) and it is the code a DBA looks up. The deeper ORA lines
   are the same failure seen from lower layers and say less
   (``ORA-27040: file create error``, ``ORA-27037: unable to obtain file
   status``, the byte counts of ``ORA-19804``); the RMAN lines above it
   (``RMAN-03009``/``RMAN-03002``) only name the channel or the command.
   The operating system's reason is the one deeper line worth keeping, so the
   first OS line below it is appended:
   ``ORA-19504: failed to create file "/bk/x" (Linux-x86_64 Error: 2: No such file or directory)``.
   A headline ending in ``:`` (``ORA-19511: … error text:``) gets its
   continuation line, where the media manager puts its message.
2. With no ORA line, the first ``RMAN-`` line that is not framing (00571,
   00569 banner; 03002/03009 "failure of … command at"; 00558 "error while
   parsing"): ``RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode``,
   ``RMAN-01009: syntax error: found "…"``; for a syntax error the grammar list
   after "expecting one of:" is dropped and the bad identifier and position
   (RMAN-01008, RMAN-01007) are appended in parentheses.
3. Otherwise the first framing line, so a stack always yields a cause.

Non-failures never become the cause even inside a stack: the archived-log
"not deleted" warnings RMAN-08120/08137/08138, RMAN-08512 (waiting for the
snapshot control file enqueue), "specification does not match any archived
log", "backup cancelled because there are no files to backup". Causes are one
line, whitespace collapsed, at most 200 characters.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_CAUSE",
    "MAX_STACK_LINES",
    "Transcript",
    "describe_exit",
    "stack_cause",
    "step_cause",
]

MAX_STACK_LINES = 50  # lines kept of the last error stack (its head holds the cause)
MAX_CAUSE = 200  # characters of a cause
_MAX_LINE = 1000  # characters of any one line looked at or kept
_MAX_PROGRESS = 80

_PROMPT = re.compile(r"^RMAN>\s*(?:\d+>\s*)*")  # "RMAN> 2> 3> " echoed for stdin input
_CODE = re.compile(r"^(?P<fac>RMAN|ORA)-(?P<num>\d{5}):")
_BANNER = frozenset({"00571", "00569"})
_RMAN_FRAMING = frozenset({"00571", "00569", "03002", "03009", "00558"})
_ORA_WRAPPERS = frozenset({"00604", "06512", "12801", "17628"})
_RMAN_NOT_FAILURES = frozenset({"08120", "08137", "08138", "08512"})
_NOT_FAILURE_TEXT = (
    "specification does not match any archived log",
    "backup cancelled because there are no files to backup",
)
# "Linux-x86_64 Error: 2: …", "Linux Error: 28: …", "IBM AIX RISC System/6000 Error: 2: …",
# "SVR4 Error: 2: …", "HPUX-ia64 Error: 2: …"
_OS_ERROR = re.compile(r"^[A-Za-z][\w ./-]{0,40} Error: \d+: \S")
_INLINE_FAILURE = "continuing other job steps"

_CHANNEL = r"channel (?P<ch>\S+): "
_AT = r"(?: at .*)?$"
# (literal every match starts with, pattern, template): the literal screens a line with one
# ``startswith`` before any pattern runs (most lines match none); within a literal, order counts.
_PROGRESS_SPEC: tuple[tuple[str, str, str], ...] = (
    ("channel ", _CHANNEL + r"starting (?P<what>.*?backup set)$", "{ch}: starting {what}"),
    ("channel ", _CHANNEL + r"(?P<what>(?:starting|finished) piece \d+)" + _AT, "{ch}: {what}"),
    (
        "channel ",
        _CHANNEL + r"backup set complete, elapsed time: (?P<t>\S+)",
        "{ch}: backup set complete, elapsed {t}",
    ),
    ("channel ", _CHANNEL + r"(?P<what>deleting archived log\(s\))$", "{ch}: {what}"),
    (
        "input datafile ",
        r"^input datafile file number=(?P<n>\d+) name=(?:.*[/\\])?(?P<f>.+)$",
        "input datafile {n} {f}",
    ),
    (
        "input archived log ",
        r"^input archived log thread=(?P<t>\d+) sequence=(?P<s>\d+)",
        "input archived log thread={t} sequence={s}",
    ),
    (
        "including current ",
        r"^including current (?P<what>control file|SPFILE) in backup set$",
        "including current {what}",
    ),
    ("Starting ", r"^(?P<what>(?:Starting|Finished) .+?)" + _AT, "{what}"),
    ("Finished ", r"^(?P<what>(?:Starting|Finished) .+?)" + _AT, "{what}"),
    (
        "RMAN-08512: ",
        r"^(?:RMAN-08512: )?(?P<what>waiting for snapshot control file enqueue)",
        "{what}",
    ),
    (
        "waiting ",
        r"^(?:RMAN-08512: )?(?P<what>waiting for snapshot control file enqueue)",
        "{what}",
    ),
    (
        "backup cancelled ",
        r"^(?P<what>backup cancelled because there are no files to backup)",
        "{what}",
    ),
    ("current log ", r"^(?P<what>current log archived)$", "{what}"),
    ("allocated channel: ", r"^allocated channel: (?P<ch>\S+)$", "allocated channel {ch}"),
    ("connected to target ", r"^connected to target database: (?P<db>\S+)", "connected to {db}"),
)
_PROGRESS_PREFIXES = tuple(dict.fromkeys(prefix for prefix, _, _ in _PROGRESS_SPEC))
_PROGRESS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    prefix: tuple((re.compile(p), t) for q, p, t in _PROGRESS_SPEC if q == prefix)
    for prefix in _PROGRESS_PREFIXES
}
_BANNER_PREFIXES = ("RMAN-00571:", "RMAN-00569:")  # _CODE, fac RMAN, num in _BANNER

_SIGNALS = {
    1: "hung up by SIGHUP",
    2: "interrupted by SIGINT",
    3: "quit by SIGQUIT",
    6: "aborted by SIGABRT",
    9: "killed by SIGKILL",
    11: "crashed with SIGSEGV",
    13: "killed by SIGPIPE",
    15: "terminated by SIGTERM",
}


class Transcript:
    """Incremental reader of one rman run's output (stdout and stderr, in arrival order)."""

    __slots__ = ("_in_stack", "_inline_failures", "_progress", "_stack", "_stack_has_body")

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._in_stack = False
        self._stack_has_body = False
        self._progress: str | None = None
        self._inline_failures = 0

    def feed(self, line: str) -> None:
        """Take one output line (trailing newline optional). Never raises."""
        raw = line[:_MAX_LINE].rstrip()
        prompted = raw.startswith("RMAN>")
        text = _PROMPT.sub("", raw) if prompted else raw
        if text.startswith(_BANNER_PREFIXES):
            if not (self._in_stack and not self._stack_has_body):
                self._stack = []  # a new stack replaces the previous one
                self._in_stack = True
                self._stack_has_body = False
            self._append(text)
            return
        if self._in_stack:
            ended = text.startswith("Recovery Manager complete") or (
                self._stack_has_body and (prompted or not text)
            )
            if not ended:
                if text:
                    self._stack_has_body = True
                    self._append(text)
                return
            self._in_stack = False
        if _INLINE_FAILURE in text:
            self._inline_failures += 1
        progress = _progress(text.strip())
        if progress is not None:
            self._progress = progress

    @property
    def failed(self) -> bool:
        """True once an error stack was printed: the step failed whatever the exit status."""
        return bool(self._stack)

    @property
    def error_stack(self) -> tuple[str, ...]:
        """The last error stack from its banner, at most MAX_STACK_LINES lines; () if none."""
        return tuple(self._stack)

    @property
    def cause(self) -> str | None:
        """One line from the last error stack (rule in the module docstring); None if none."""
        return stack_cause(self._stack) if self._stack else None

    @property
    def progress(self) -> str | None:
        """The last meaningful progress line, shortened for a live table; None before any."""
        return self._progress

    @property
    def inline_failures(self) -> int:
        """How many ``RMAN-03009 … continuing other job steps`` failures went by mid-run."""
        return self._inline_failures

    def _append(self, text: str) -> None:
        if len(self._stack) < MAX_STACK_LINES:
            self._stack.append(text)


def stack_cause(stack: list[str] | tuple[str, ...]) -> str:
    """The one-line cause of an error stack (rule in the module docstring)."""
    lines = [line.strip() for line in stack]
    candidates = [i for i, line in enumerate(lines) if not _is_not_failure(line)]
    oras = [i for i in candidates if (m := _CODE.match(lines[i])) and m["fac"] == "ORA"]
    if oras:
        head = next((i for i in oras if _code_num(lines[i]) not in _ORA_WRAPPERS), oras[0])
        cause = _with_continuation(lines, head)
        os_line = next((line for line in lines[head + 1 :] if _OS_ERROR.match(line)), None)
        if os_line is not None:
            cause = f"{cause} ({os_line})"
        return _one_line(cause)
    rmans = [i for i in candidates if _CODE.match(lines[i])]
    specific = [i for i in rmans if _code_num(lines[i]) not in _RMAN_FRAMING]
    if specific:
        head = specific[0]
        if _code_num(lines[head]) == "01009":  # syntax error
            return _one_line(_syntax_error(lines, head))
        return _one_line(_with_continuation(lines, head))
    framing = [i for i in rmans if _code_num(lines[i]) not in _BANNER]
    if framing:
        return _one_line(lines[framing[0]])
    body = [line for line in lines if line and not _CODE.match(line)]
    return _one_line(body[0]) if body else "RMAN error stack without detail"


def describe_exit(exit_status: int) -> str:
    """``exit status 1``; ``killed by SIGKILL`` for 137 (the shell's 128 + signal)."""
    return _SIGNALS.get(exit_status - 128, f"exit status {exit_status}")


FANOUT_PREFIX = "fanout: "  # stderr lines of fanout's remote wrapper (e.g. the database lock)


def step_cause(exit_status: int, transcript: Transcript, last_stderr: str | None) -> str | None:
    """The one-line cause of a finished step; None when it succeeded.

    An error stack decides (even with exit 0); a message from fanout's remote wrapper
    (``fanout: another backup of ERP is running (pid 4242, started …)``) is the cause as
    it stands; else a non-zero exit is described, followed by the last stderr line:
    ``exit status 127: sh: 1: exec: …/rman: not found``.
    """
    if transcript.failed:
        return transcript.cause
    if exit_status == 0:
        return None
    if last_stderr and last_stderr.startswith(
        FANOUT_PREFIX
    ):  # fanout's own remote wrapper speaking
        return _one_line(last_stderr[len(FANOUT_PREFIX) :])
    what = describe_exit(exit_status)
    detail = " ".join((last_stderr or "").split())
    return _one_line(f"{what}: {detail}" if detail else what)


def _code_num(line: str) -> str:
    m = _CODE.match(line)
    return m["num"] if m else ""


def _is_not_failure(line: str) -> bool:
    m = _CODE.match(line)
    if m and m["fac"] == "RMAN" and m["num"] in _RMAN_NOT_FAILURES:
        return True
    return any(text in line for text in _NOT_FAILURE_TEXT)


def _with_continuation(lines: list[str], i: int) -> str:
    line = lines[i]
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    if line.endswith(":") and nxt and not _CODE.match(nxt) and not _OS_ERROR.match(nxt):
        return f"{line} {nxt}"
    return line


def _syntax_error(lines: list[str], i: int) -> str:
    # RMAN-01009 lists the whole grammar after "expecting one of:"; the bad token
    # (RMAN-01008) and where it is (RMAN-01007, line numbers of the stdin script) say more.
    headline = lines[i].split(": expecting one of:", 1)[0]
    where = [line for line in lines[i + 1 :] if _code_num(line) in {"01008", "01007"}]
    return f"{headline} ({'; '.join(where)})" if where else headline


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1].rstrip() + "…"


def _progress(text: str) -> str | None:
    if not text.startswith(_PROGRESS_PREFIXES):
        return None
    for prefix, patterns in _PROGRESS.items():
        if text.startswith(prefix):
            return _first_match(text, patterns)
    return None


def _first_match(text: str, patterns: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, template in patterns:
        m = pattern.match(text)
        if m:
            short = template.format(**m.groupdict())
            return short if len(short) <= _MAX_PROGRESS else short[: _MAX_PROGRESS - 1] + "…"
    return None
