"""RMAN transcript → error stack, one-line cause, live progress. Pure and incremental.

A ``Transcript`` is fed one line at a time and keeps only a bounded amount of
state (the last error stack and the last inline error, each capped; the last
progress line; counters), so a transcript of millions of lines costs no more
memory than a short one.

Verdict: a step is ok only when rman exits 0 **and** printed no error stack
(``RMAN-00571`` / ``RMAN-00569 … ERROR MESSAGE STACK FOLLOWS`` banner).
``Recovery Manager complete.`` is printed after failures too and means nothing.
A stack keeps going across blank lines while the next line still looks like
part of it (an error code, an OS error, an indented or ``[…]`` continuation),
so a message split by a blank line stays whole.

Cause rule (the one line shown in the summary), applied to the *last* stack.
The stack is cut into units: an ``RMAN-`` line and the lines under it (its
``ORA-`` lines, OS lines and continuations; RMAN-01007/01008 belong to the
syntax error above them). Oracle says to read a stack from the bottom up
(Backup and Recovery User's Guide, "Interpreting RMAN Error Stacks"), so the
*last* unit that says something specific gives the cause; framing says only
which command or channel failed and is skipped (RMAN-03002/03009 "failure of …
command", 03008/03014 catalog resync, 03010/03012 "fatal error during …",
03013 "command type", 03015 stored script, 03028, 00554 and 00601, which
Oracle documents as accompanied by the real error, 00558 "error while
parsing"). Inside the chosen unit:

1. "No files matched" (``RMAN-20242: specification does not match any archived
   log in the repository``, RMAN-20248, or that text, also when nested as in
   ``RMAN-06004: ORACLE error from recovery catalog database: RMAN-20242: …``)
   is the cause, from its code on, and marks the step as having had nothing to
   back up (``Transcript.nothing_to_backup``; a step with ``empty_ok: true``
   then succeeds).
2. A media-manager failure: the vendor's text after ``ORA-19511: … error
   text:`` (``KBHS-00715: HTTP error occurred …``, ``ANS1017E …``) rather than
   the generic SBT layers around it (ORA-19554, ORA-27023/27028/27192, …).
3. The first ``ORA-`` line that is not a pure wrapper (ORA-00604 recursive SQL,
   ORA-12801 parallel server, ORA-17628 remote server, ORA-06512 backtrace,
   ORA-00283 recovery session canceled, ORA-19870 error while restoring backup
   piece: each says "see the accompanying errors"), counting an ORA code embedded in an
   RMAN line (``RMAN-04004: error from recovery catalog database: ORA-01033: …``
   is kept whole, so a stack headed by it never yields a deeper ORA-27101).
   That is Oracle's headline error: it names the operation and its object; the
   deeper ORA lines are lower layers and say less. The operating system's
   reason, the one deeper line worth keeping, is appended: the first OS line
   below it from Linux (``Linux-x86_64 Error: 2: …``), AIX (``IBM AIX RISC
   System/6000 Error: …``), Solaris (``SVR4 Error: …``), HP-UX (``HPUX-ia64
   Error: …``) or Windows (``O/S-Error: (OS 3) …``). A headline ending in ``:``
   gets its continuation line.
4. Else the unit's own RMAN line with its continuation lines
   (``RMAN-10038: database session for channel … terminated unexpectedly``,
   ``RMAN-00600: internal error, arguments [8064] […]``,
   ``RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode``); for a syntax
   error the grammar list after "expecting one of:" is dropped and the bad
   identifier and position (RMAN-01008, RMAN-01007) are appended.

With no specific unit: the first wrapper ORA line, else the first framing
line, so a stack always yields a cause.

Errors printed inline without a final stack (``RMAN-03009: failure of backup
command on ORA_DISK_1 channel at …`` then ``ORA-19502: …``, or ``channel
ORA_DISK_1: ORA-19870: …``) are remembered as the last inline error and read by
the same rule; they give the cause of a step that exits non-zero without a
stack.

Non-failures never become the cause: the archived-log "not deleted" warnings
RMAN-08120/08137/08138, RMAN-08512 (waiting for the snapshot control file
enqueue), "backup cancelled because there are no files to backup". Causes are
one line, whitespace collapsed, at most 200 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
_ORA_ANYWHERE = re.compile(r"(?:^|[\s:(])ORA-(?P<num>\d{5})\b")
_ANY_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}-\d{4,5}\b")  # RMAN-, ORA-, KBHS-, OSD-, …
_BANNER = frozenset({"00571", "00569"})
_RMAN_FRAMING = frozenset(
    {
        "00571",
        "00569",
        "00554",  # initialization of internal recovery manager package failed
        "00558",  # error encountered while parsing input commands
        "00601",  # fatal error in recovery manager
        "03002",  # failure of … command at …
        "03008",  # error while performing automatic resync of recovery catalog
        "03009",  # failure of … command on … channel at …
        "03010",  # fatal error during library cache pre-loading
        "03012",  # fatal error during compilation of command
        "03013",  # command type: …
        "03014",  # implicit resync of recovery catalog failed
        "03015",  # error occurred in stored script …
        "03028",  # fatal error code for command …
    }
)
_RMAN_ATTACHED = frozenset({"01007", "01008"})  # where the syntax error above them is
_ORA_WRAPPERS = frozenset({"00283", "00604", "06512", "12801", "17628", "19870"})
_ORA_MEDIA_MANAGER = "19511"
_RMAN_NOT_FAILURES = frozenset({"08120", "08137", "08138", "08512"})
_NOT_FAILURE_TEXT = ("backup cancelled because there are no files to backup",)
# RMAN-20242 (archived log), RMAN-20248 (archived raft log): "specification does not match any …"
_NOTHING_MATCHED = re.compile(r"RMAN-202(?:42|48): |(?:^|: )specification does not match any ")
# "Linux-x86_64 Error: 2: …", "Linux Error: 28: …", "IBM AIX RISC System/6000 Error: 2: …",
# "SVR4 Error: 2: …", "HPUX-ia64 Error: 2: …", "O/S-Error: (OS 3) The system cannot find …"
_OS_ERROR = re.compile(r"^(?:[A-Za-z][\w ./-]{0,40} Error: \d+: \S|O/S-Error: \(OS \d+\) ?\S)")
_CHANNEL_PREFIX = re.compile(r"^\S+ \S+: (?=(?:RMAN|ORA)-\d{5}:)")  # "channel ORA_DISK_1: ORA-…"
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

    __slots__ = (
        "_blank_in_stack",
        "_in_inline",
        "_in_stack",
        "_inline",
        "_inline_failures",
        "_progress",
        "_stack",
        "_stack_has_body",
    )

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._in_stack = False
        self._stack_has_body = False
        self._blank_in_stack = False
        self._inline: list[str] = []
        self._in_inline = False
        self._progress: str | None = None
        self._inline_failures = 0

    def feed(self, line: str) -> None:
        """Take one output line (trailing newline optional). Never raises."""
        self.feed_lines((line,))

    def feed_lines(self, lines: Iterable[str]) -> None:
        """Take the lines one read completed, in order, as ``feed`` would one by one; only
        the last line with progress is parsed for it (it replaces any before it)."""
        take = self._take
        candidates = [text for text in map(take, lines) if text]
        for text in reversed(candidates):
            if text.startswith(_PROGRESS_PREFIXES):
                progress = _progress(text)
                if progress is not None:
                    self._progress = progress
                    return

    def _take(self, line: str) -> str | None:
        """Everything ``feed`` does but the progress: the stripped text that may carry
        progress, or None for a line of an error stack."""
        raw = line[:_MAX_LINE].rstrip()
        prompted = raw.startswith("RMAN>")
        text = _PROMPT.sub("", raw) if prompted else raw
        if text.startswith(_BANNER_PREFIXES):
            if not (self._in_stack and not self._stack_has_body):
                self._stack = []  # a new stack replaces the previous one
                self._in_stack = True
                self._stack_has_body = False
            self._blank_in_stack = False
            self._in_inline = False
            _append(self._stack, text)
            return None
        if self._in_stack and self._stack_line(text, prompted):
            return None
        stripped = text.strip()
        if _INLINE_FAILURE in stripped:
            self._inline_failures += 1
        if self._in_inline or "ORA-" in stripped or "RMAN-" in stripped:  # cheap screen
            self._inline_line(stripped, continued=text[:1].isspace())
        return stripped

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
        return _verdict(self._stack)[0] if self._stack else None

    @property
    def nothing_to_backup(self) -> bool:
        """True when the last stack's cause is "no files matched" (RMAN-20242 and kin)."""
        return bool(self._stack) and _verdict(self._stack)[1]

    @property
    def inline_cause(self) -> str | None:
        """The cause read from the last error printed outside a stack; None if none."""
        return _verdict(self._inline)[0] if self._inline else None

    @property
    def progress(self) -> str | None:
        """The last meaningful progress line, shortened for a live table; None before any."""
        return self._progress

    @property
    def inline_failures(self) -> int:
        """How many ``RMAN-03009 … continuing other job steps`` failures went by mid-run."""
        return self._inline_failures

    def _stack_line(self, text: str, prompted: bool) -> bool:
        """Take ``text`` into the open stack; False when it ends the stack instead."""
        ended = text.startswith("Recovery Manager complete") or (self._stack_has_body and prompted)
        if not ended and not text:
            self._blank_in_stack = self._stack_has_body
            return True
        if ended or (self._blank_in_stack and not _continues_stack(text)):
            self._in_stack = False
            return False
        self._blank_in_stack = False
        self._stack_has_body = True
        _append(self._stack, text)
        return True

    def _inline_line(self, text: str, continued: bool) -> None:
        body = _CHANNEL_PREFIX.sub("", text, count=1)
        if _CODE.match(body) and not _is_not_failure(body):
            if not self._in_inline:
                self._inline = []
                self._in_inline = True
            _append(self._inline, body)
        elif self._in_inline and body and (continued or _continues_stack(body)):
            _append(self._inline, body)
        else:
            self._in_inline = False


def _append(lines: list[str], text: str) -> None:
    if len(lines) < MAX_STACK_LINES:
        lines.append(text)


def _continues_stack(text: str) -> bool:
    """A line after a blank one that still belongs to the stack above it."""
    stripped = text.strip()
    return (
        text[:1].isspace()
        or bool(_ANY_CODE.match(stripped) or _OS_ERROR.match(stripped))
        or stripped.startswith(("[", "Additional information"))
    )


def stack_cause(stack: list[str] | tuple[str, ...]) -> str:
    """The one-line cause of an error stack (rule in the module docstring)."""
    return _verdict(stack)[0]


def _verdict(stack: list[str] | tuple[str, ...]) -> tuple[str, bool]:
    """(cause, nothing matched) of an error stack, read bottom-up by units."""
    lines = [line.strip() for line in stack]
    units: list[list[str]] = []
    for line in lines:
        if not line or _code_num(line, "RMAN") in _BANNER:
            continue
        num = _code_num(line, "RMAN")
        if not units or (num and num not in _RMAN_ATTACHED):
            units.append([line])
        else:
            units[-1].append(line)
    for unit in reversed(units):
        found = _unit_cause(unit)
        if found is not None:
            return _one_line(found[0]), found[1]
    body = [line for unit in units for line in unit if not _is_not_failure(line)]
    wrapper = next((line for line in body if _ora_num(line)), None)
    framing = next((line for line in body if _code_num(line, "RMAN")), None)
    fallback = wrapper or framing or next(iter(body), None)
    return _one_line(fallback or "RMAN error stack without detail"), False


def _unit_cause(unit: list[str]) -> tuple[str, bool] | None:
    """The cause a unit gives, or None when it holds only framing and wrappers."""
    usable = [i for i, line in enumerate(unit) if not _is_not_failure(line)]
    for i in usable:
        m = _NOTHING_MATCHED.search(unit[i])
        if m is not None:
            return unit[i][m.start() :].lstrip(": "), True
    oras = [i for i in usable if _ora_num(unit[i])]
    for i in oras:
        if _ora_num(unit[i]) == _ORA_MEDIA_MANAGER:
            vendor = _vendor_text(unit, i)
            if vendor:
                return f"{unit[i]} {vendor}", False
    head = next((i for i in oras if _ora_num(unit[i]) not in _ORA_WRAPPERS), None)
    if head is not None:
        cause = _with_continuation(unit, head)
        os_line = next((line for line in unit[head + 1 :] if _OS_ERROR.match(line)), None)
        return (f"{cause} ({os_line})" if os_line else cause), False
    num = _code_num(unit[0], "RMAN")
    if not num or num in _RMAN_FRAMING or 0 not in usable:
        return None
    if num == "01009":  # syntax error
        return _syntax_error(unit, 0), False
    rest = []
    for line in unit[1:]:
        if _ANY_CODE.match(line) or _OS_ERROR.match(line):
            break
        rest.append(line)
    return " ".join([unit[0], *rest]), False


def _vendor_text(unit: list[str], i: int) -> str:
    """The media manager's own lines after ORA-19511, up to the next RMAN/ORA line."""
    text = unit[i].split("error text:", 1)[1].strip() if "error text:" in unit[i] else ""
    parts = [text] if text else []
    for line in unit[i + 1 :]:
        if _CODE.match(line):
            break
        if not _OS_ERROR.match(line):
            parts.append(line)
    return " ".join(parts)


def describe_exit(exit_status: int) -> str:
    """``exit status 1``; ``killed by SIGKILL`` for 137 (the shell's 128 + signal)."""
    return _SIGNALS.get(exit_status - 128, f"exit status {exit_status}")


FANOUT_PREFIX = "fanout: "  # stderr lines of fanout's remote wrapper (e.g. the database lock)


def step_cause(exit_status: int, transcript: Transcript, last_stderr: str | None) -> str | None:
    """The one-line cause of a finished step; None when it succeeded.

    An error stack decides (even with exit 0); a message from fanout's remote wrapper
    (``fanout: another backup of ERP is running (pid 4242, started …)``) is the cause as
    it stands; an error rman printed inline (without a final stack) explains a non-zero
    exit that is not a signal; else the exit is described, followed by the last stderr
    line: ``exit status 127: sh: 1: exec: …/rman: not found``.
    """
    if transcript.failed:
        return transcript.cause
    if exit_status == 0:
        return None
    if last_stderr and last_stderr.startswith(
        FANOUT_PREFIX
    ):  # fanout's own remote wrapper speaking
        return _one_line(last_stderr[len(FANOUT_PREFIX) :])
    inline = transcript.inline_cause
    if inline is not None and exit_status < 128:
        return inline
    what = describe_exit(exit_status)
    detail = " ".join((last_stderr or "").split())
    return _one_line(f"{what}: {detail}" if detail else what)


def _code_num(line: str, fac: str) -> str:
    m = _CODE.match(line)
    return m["num"] if m and m["fac"] == fac else ""


def _ora_num(line: str) -> str:
    """The first ORA code of a line, at its start or embedded (``RMAN-04004: …: ORA-01033``)."""
    m = _ORA_ANYWHERE.search(line)
    return m["num"] if m else ""


def _is_not_failure(line: str) -> bool:
    if _code_num(line, "RMAN") in _RMAN_NOT_FAILURES:
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
    where = [line for line in lines[i + 1 :] if _code_num(line, "RMAN") in _RMAN_ATTACHED]
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
