"""`fanout run`: wire inventory, lock, store, sinks, transport and engine for one run.

Signals: SIGINT (Ctrl-C) and SIGTERM fire the run's CancelToken through
``loop.add_signal_handler`` (never KeyboardInterrupt mid-cleanup); a second one
forces. In interactive mode (a terminal, no ``--batch``) the live table
(``ui.live.LiveView``) is the output sink and its command line fires it too (``q`` /
``quit`` + Enter; ``cancel HOST`` stops one host); the rich summary follows. On a
terminal that cannot draw it (TERM=dumb) the plain lines and ``q`` + Enter remain.
Batch mode never reads stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from fanout.cancel import CancelToken
from fanout.engine import Engine, Target
from fanout.errors import FanoutError, InventoryError
from fanout.events import CancelReason, CancelRequested, EventSink, FanOut
from fanout.inventory import load_inventory
from fanout.model import Host, Inventory, select_hosts
from fanout.steps import Adopt, new_run_id, render_host

if TYPE_CHECKING:
    from rich.console import Console

    from fanout.store import Store


@dataclass(frozen=True, slots=True)
class RunOptions:
    inventory: Path
    limit: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    batch: bool = True
    quiet: bool = False
    json: bool = False
    no_color: bool = False
    state_dir: Path | None = None
    max_parallel: int | None = None
    argv: tuple[str, ...] = ()
    resume: str | None = None  # a run id, or "latest": the latest run of this inventory that failed
    stop_running: bool = False  # resume: stop the old run's still-running steps instead of waiting


class RunHook(Protocol):
    """Cluster mode's seam into a run (``fanout.cluster.run``); a local run has none.

    It names the run (a takeover continues the same id), renders the targets (with the
    fencing token, and adoption of what a dead leader left running), puts its sinks in
    place of the store (the checkpoint writer first) and has the last word on the exit code.
    """

    run_id: str

    def targets(self, inventory: Inventory, hosts: tuple[Host, ...]) -> list[Target]: ...

    def wire(self, store: Store, token: CancelToken) -> list[EventSink]: ...

    def exit_code(self, code: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Resume:
    """What a resumed run continues: the earlier run and, per host, the steps still to do."""

    run_id: str
    steps: dict[str, tuple[str, ...]]


def run_inventory(
    options: RunOptions,
    out: TextIO | None = None,
    *,
    serve: Callable[[], AbstractAsyncContextManager[object]] | None = None,
) -> int:
    """Load, lock and run. Returns the exit code. Raises InventoryError, LockHeldError.

    ``serve``: entered inside the run's event loop before the engine starts and left after
    it ends (``fanout demo`` runs its simulated fleet there); ``fanout run`` passes none.
    """
    from fanout.lock import acquire_run_lock
    from fanout.paths import resolve_state_dir

    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory.hosts, options.limit, options.tags)
    if not hosts:
        raise InventoryError(str(options.inventory), None, "", "no host matches the selection")
    state_dir = resolve_state_dir(options.state_dir or inventory.settings.state_dir)
    with acquire_run_lock(state_dir, inventory.path, argv=options.argv):
        if inventory.settings.cluster is not None:  # -- cluster mode: fanout/cluster/run.py
            if options.resume is not None:
                raise FanoutError("--resume: in cluster mode a takeover continues the run itself")
            from fanout.cluster.run import run_clustered

            return run_clustered(options, inventory, hosts, state_dir, out or sys.stdout)
        resume = None
        if options.resume is not None:
            resume = plan_resume(options.resume, inventory, state_dir)
            if resume is None:
                return 0
            hosts = tuple(h for h in hosts if h.name in resume.steps)
            if not hosts:
                _note(f"nothing to resume in run {resume.run_id} for the selected hosts")
                return 0
        run = _run(options, inventory, hosts, state_dir, out or sys.stdout, resume)
        return asyncio.run(run if serve is None else _served(serve, run))


async def _served(
    serve: Callable[[], AbstractAsyncContextManager[object]], run: Coroutine[Any, Any, int]
) -> int:
    """``run`` inside ``serve()``; if entering it fails, ``run`` is closed unstarted."""
    try:
        async with serve():
            return await run
    finally:
        run.close()  # no-op once awaited


def plan_resume(wanted: str, inventory: Inventory, state_dir: Path) -> Resume | None:
    """The run to continue and its unfinished steps that this inventory still names.

    ``wanted`` is a run id or "latest" (the latest run of this inventory, if it did
    not fully succeed). Returns None, after saying why, when there is nothing to do.
    Raises FanoutError for an unknown run id.
    """
    from fanout.store import open_store

    with open_store(state_dir) as store:
        if wanted == "latest":
            run = store.latest_unfinished_run(inventory.path)
            if run is None:
                _note(
                    f"nothing to resume: the latest run of {inventory.path} succeeded (or none ran)"
                )
                return None
            run_id = run.run_id
        else:
            detail = store.run_detail(wanted)
            if detail is None:
                raise FanoutError(f"no run {wanted!r} in the run store of {state_dir}")
            run_id, run = wanted, detail.run
        todo = store.resume_plan(run_id)
    if run.inventory_sha256 and run.inventory_sha256 != inventory.sha256:
        _note(f"{inventory.path} changed since run {run_id}: resuming only what it still names")
    hosts = {h.name: h for h in inventory.hosts}
    steps = {
        name: kept
        for name, records in todo.items()
        if name in hosts and (kept := tuple(s.step for s in records if s.step in hosts[name].steps))
    }
    if not steps:
        _note(f"nothing to resume in run {run_id}")
        return None
    return Resume(run_id, steps)


async def _run(
    options: RunOptions,
    inventory: Inventory,
    hosts: tuple[Host, ...],
    state_dir: Path,
    out: TextIO,
    resume: Resume | None,
    hook: RunHook | None = None,
) -> int:
    from fanout.logs import LogSink
    from fanout.paths import run_log_dir, step_log_path
    from fanout.state import RunState
    from fanout.store import open_store
    from fanout.transport.ssh import SshTransport
    from fanout.ui.summary import render_summary_text, summary_line

    run_id = new_run_id() if hook is None else hook.run_id
    token = CancelToken()
    if hook is not None:
        targets = hook.targets(inventory, hosts)
    elif resume is None:
        targets = [Target(h, render_host(inventory, h, run_id)) for h in hosts]
    else:
        adopt = Adopt(
            resume.run_id, stop=options.stop_running, grace=inventory.settings.cancel_grace
        )
        targets = [
            Target(h, render_host(inventory, h, run_id, only=resume.steps[h.name], adopt=adopt))
            for h in hosts
        ]
    state = RunState()
    console = None if options.batch else _live_console(options, out)
    with open_store(state_dir) as store, LogSink(state_dir) as logs, _signals_fire(token):
        store.begin_run(
            run_id=run_id,
            inventory_path=str(inventory.path.resolve()),
            inventory_sha256=inventory.sha256,
            argv=list(options.argv),
            resumed_from=resume.run_id if resume else None,
            log_path=lambda host, step: str(step_log_path(state_dir, run_id, host, step)),
        )
        view = None
        if console is not None:
            from fanout.ui.live import LiveView

            view = LiveView(
                run_id=run_id,
                inventory=str(inventory.path),
                token=token,
                # late-bound: the engine is built below, with the view among its sinks
                cancel_host=lambda name: engine.cancel_host(name),
                console=console,
            )
        output = view if view is not None else _output_sink(options, out)
        recorders: list[EventSink] = [store] if hook is None else hook.wire(store, token)
        sink = FanOut([*recorders, logs, state, output])

        def on_cancel(reason: CancelReason, forced: bool) -> None:
            sink.emit(CancelRequested(run_id, reason, forced, at=_now()))

        token.add_listener(on_cancel)
        engine = Engine(
            run_id=run_id,
            inventory=str(inventory.path),
            targets=targets,
            transport=SshTransport(max_connecting=inventory.settings.max_connecting),
            sink=sink,
            token=token,
            max_parallel=options.max_parallel or inventory.settings.max_parallel,
            cancel_grace=inventory.settings.cancel_grace,
        )
        if view is not None:
            async with view:
                exit_code = await engine.run()
        else:
            with _keyboard_fires(token, enabled=not options.batch):
                exit_code = await engine.run()
        if hook is not None:
            exit_code = hook.exit_code(exit_code)
    log_dir = run_log_dir(state_dir, run_id)
    if console is not None:
        from fanout.ui.summary import render_summary_rich

        console.print(render_summary_rich(state, log_dir=log_dir, exit_code=exit_code))
    elif not options.json:
        if options.quiet:
            print(summary_line(state, exit_code), file=out)
        else:
            print(
                render_summary_text(state, log_dir=log_dir, exit_code=exit_code),
                file=out,
            )
    if view is not None and view.error is not None:
        _warn(f"the live table stopped drawing: {view.error!r}")
    for failed_sink, error in sink.failures:
        _warn(f"{type(failed_sink).__name__} stopped recording: {error}")
    if logs.error is not None:
        _warn(f"log files incomplete: {logs.error}")
    if store.write_error is not None:
        _warn(f"run store incomplete: {store.write_error}")
    out.flush()
    return exit_code


def _note(message: str) -> None:
    print(f"fanout: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"fanout: warning: {message}", file=sys.stderr)


def _output_sink(options: RunOptions, out: TextIO) -> EventSink:
    if options.json:
        from fanout.ui.jsonl import JsonSink

        return JsonSink(out)
    from fanout.ui.plain import PlainSink

    return PlainSink(out, quiet=options.quiet)


def _live_console(options: RunOptions, out: TextIO) -> Console | None:
    """The console for the live table, or None where it cannot draw (TERM=dumb, no tty).

    ``--no-color`` forces plain output; otherwise rich honours NO_COLOR itself.
    """
    from rich.console import Console

    from fanout.ui.live import live_supported

    console = Console(file=out, no_color=True if options.no_color else None, highlight=False)
    return console if live_supported(console) else None


def _now() -> float:
    import time

    return time.time()


@contextlib.contextmanager
def _signals_fire(token: CancelToken) -> Iterator[None]:
    """SIGINT and SIGTERM fire the token (a second one forces) for the duration of the run.

    Afterwards they are ignored until the event loop closes: the run is over and its exit
    code decided, so one arriving while the summary prints changes nothing (it used to raise
    KeyboardInterrupt there and turn a successful run's exit 0 into 130).
    """
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, token.cancel, CancelReason.SIGINT)
    loop.add_signal_handler(signal.SIGTERM, token.cancel, CancelReason.SIGTERM)
    try:
        yield
    finally:
        loop.add_signal_handler(signal.SIGINT, _after_the_run)  # replaces token.cancel
        loop.add_signal_handler(signal.SIGTERM, _after_the_run)


def _after_the_run() -> None:
    """A signal once the run has ended: nothing left to cancel (asyncio.run's close removes it)."""


@contextlib.contextmanager
def _keyboard_fires(token: CancelToken, *, enabled: bool) -> Iterator[None]:
    """In a terminal, ``q`` or ``quit`` + Enter fires the token.

    The terminal stays in canonical mode and stdin blocking: ``add_reader`` only
    watches the fd and a line is read once it is complete, so nothing needs restoring.
    """
    fd = sys.stdin.fileno() if enabled and sys.stdin.isatty() else None
    if fd is None:
        yield
        return
    loop = asyncio.get_running_loop()

    def on_line() -> None:
        try:
            data = os.read(fd, 1024)
        except OSError:
            data = b""
        if not data:  # EOF: stop watching
            loop.remove_reader(fd)
            return
        if data.decode(errors="replace").strip().lower() in ("q", "quit"):
            token.cancel(CancelReason.OPERATOR)

    loop.add_reader(fd, on_line)
    try:
        yield
    finally:
        loop.remove_reader(fd)
