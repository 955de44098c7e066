"""The simulated ``$ORACLE_HOME/bin/rman target /``.

It reads the whole script from stdin (as rman does when fed a script), picks the
behaviour configured for ``$ORACLE_SID`` and the step kind (``behaviour.py``), and prints
the transcript (``transcript.py``) at the behaviour's pace. Dates follow the step's
``NLS_DATE_FORMAT``.

Signals, as rman handles them: SIGINT starts rman's own abort: further SIGINTs are ignored,
``cancel_delay`` later it prints the ``RMAN-03099``/``ORA-01013`` stack and exits 1.
SIGTERM, SIGHUP and SIGQUIT end it at once (killed by that signal), as does SIGKILL,
even during the abort.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fanout.sim.behaviour import Mode
from fanout.sim.machine import Signalled
from fanout.sim.transcript import (
    TAIL,
    Beat,
    banner,
    beats,
    cancel_stack,
    failure_stack,
    nls_date,
    no_sid_stack,
    prompts,
    split_at_first_piece,
    step_kind,
)

if TYPE_CHECKING:
    from fanout.sim.interp import Context

__all__ = ["run_rman"]


async def run_rman(ctx: Context, argv: list[str]) -> int:
    """Run one simulated rman; returns its exit status. Raises Signalled when killed."""
    proc, world, io = ctx.proc, ctx.world, ctx.io
    date_format = ctx.env.get("NLS_DATE_FORMAT")

    def say(*lines: str) -> None:
        date = nls_date(time.time(), date_format)
        io.out("".join(line.replace("{date}", date) + "\n" for line in lines))

    try:
        script = await io.stdin.read_all(proc)
    except Signalled as exc:
        if exc.name == "INT":
            return 1
        raise
    sid = ctx.env.get("ORACLE_SID", "")
    if not sid:
        say(*banner("", time.time())[:6], *no_sid_stack(), TAIL[-1])
        return 1
    behaviour = world.behaviour(sid)
    for sig in behaviour.ignore:
        proc.ignore(sig)
    kind = step_kind(script)
    mode = behaviour.mode_for(kind)
    seconds = world.scaled(behaviour.duration(kind))
    body = beats(script, sid=sid, now=time.time(), seconds=seconds, datafiles=behaviour.datafiles)
    total = sum(beat.weight for beat in body) or 1.0

    async def play(part: list[Beat], *, last_pause: bool = True) -> None:
        for index, beat in enumerate(part):
            say(*beat.lines)
            if last_pause or index < len(part) - 1:
                await proc.pause(seconds * beat.weight / total)

    try:
        say(*banner(sid, time.time()))
        io.out(prompts(script) + "\n")
        if mode in (Mode.OK, Mode.SLOW, Mode.REFUSE):
            await play(body)
            say(*TAIL)
            return 0
        before, after = split_at_first_piece(body)
        if mode is Mode.FAIL:
            await play(before)
            say(*failure_stack(behaviour.error, sid=sid, now=time.time()), *TAIL)
            return 1
        await play(before, last_pause=False)
        if mode is Mode.HANG:
            await proc.pause(float("inf"))
        if sid not in world.dropped:  # DROP: a network blip, once per database
            world.dropped.add(sid)
            ctx.shell.login.drop()
        await proc.pause(seconds * before[-1].weight / total if before else 0.0)
        await play(after)
        say(*TAIL)
        return 0
    except Signalled as exc:
        if exc.name != "INT":
            raise
    proc.ignore("INT")  # a second Ctrl-C does not hurry the abort
    await proc.pause(world.scaled(behaviour.cancel_delay))
    say(*cancel_stack(time.time()), *TAIL)
    return 1
