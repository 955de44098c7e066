"""One-line messages to the operator on stderr, each led by ``fanout:`` (never stdout, which
belongs to the chosen output format)."""

from __future__ import annotations

import sys


def note(message: str) -> None:
    """``fanout: <message>`` on stderr, flushed (cron mails and journald keep the order)."""
    print(f"fanout: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """``fanout: warning: <message>`` on stderr."""
    note(f"warning: {message}")
