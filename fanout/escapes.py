"""Text from remote hosts made safe for a terminal. Pure.

Remote output (rman, a shell step, an error line) may carry control and escape
sequences: ``\\x1b]0;title\\x07`` sets the terminal's title, ``\\x1b[2J`` clears the
screen, a bare ``\\r`` overwrites what was printed, a U+202E reverses the text after
it. Every view that draws remote text (batch lines, the live table, the summaries,
``fanout show``) passes it through ``make_visible``; the step log files keep the
exact bytes.
"""

from __future__ import annotations

import re

# C0 controls but tab, DEL, C1 controls, and the Unicode bidi overrides/isolates
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def make_visible(text: str) -> str:
    """``text`` with each control character shown as an escape: ESC → ``\\x1b``.

    A tab becomes a space (it is harmless, but would break column layouts). The
    result holds no character a terminal acts on, and printable text is unchanged.
    """
    if not _UNSAFE.search(text) and "\t" not in text:
        return text
    return _UNSAFE.sub(_escape, text).replace("\t", " ")
