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
from fanout.engine import Engine
from fanout.errors import FanoutError, InventoryError, StoreError, UsageError
from fanout.events import CancelReason, CancelRequested, EventSink, FanOut, RunMeta
from fanout.forecast import limits_of, load_expected, order_hosts, resolve_deadline
from fanout.inventory import load_inventory
from fanout.model import Host, Inventory, select_hosts
from fanout.policy import select_steps
from fanout.say import note, warn
from fanout.steps import new_run_id
from fanout.targets import Resume, build_targets, plan_levels, plan_resume

if TYPE_CHECKING:
    from rich.console import Console

    from fanout.logs import LogSink
    from fanout.state import RunState
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
    steps: tuple[str, ...] = ()  # --steps: run only these (empty: every step of each host)
    stop_running: bool = False  # resume: stop the old run's still-running steps instead of waiting
    summary_only: bool = False  # batch: no line per event, only the end-of-run summary
    deadline: str | None = None  # --deadline 06:00: overrides settings.window_end
    hard_deadline: bool = False  # --hard-deadline: running steps are cancelled at the deadline


class RunHook(Protocol):
    """Cluster mode's seam into a run (``fanout.cluster.run``); a local run has none.

    It names the run (a takeover continues the same id) and supplies what its targets need
    beyond a local run's: the leader's fencing token and, on a takeover, the steps still to
    do with the adoption of what a dead leader left running (``takeover``, rendered by
    ``build_targets`` like a resume). It puts its sinks in place of the store (the
    checkpoint writer first) and has the last word on the exit code.
    """

    @property
    def run_id(self) -> str: ...

    @property
    def fencing_token(self) -> int: ...

    @property
    def takeover(self) -> Resume | None: ...

    @property
    def stop_running(self) -> bool: ...

    def wire(self, store: Store, token: CancelToken) -> list[EventSink]: ...

    def exit_code(self, code: int) -> int: ...


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (often 1024 → 524288) and return it.

    Each running host holds a socket, its log file and, in ``fanout demo``, the simulated
    side's pipes: 200 hosts at once came within 40 descriptors of a 1024 soft limit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_inventory(
    options: RunOptions,
    out: TextIO | None = None,
    *,
    serve: Callable[[], AbstractAsyncContextManager[object]] | None = None,
) -> int:
    """Load, lock and run. Returns the exit code.

    Raises InventoryError, LockHeldError, StateDirError (the state directory cannot be
    used: read-only, a file, ``locks`` a file, full) and StoreError (the run store cannot
    be opened). A store that fails during the run stops it instead (exit 74, see ``_run``).

    ``serve``: entered inside the run's event loop before the engine starts and left after
    it ends (``fanout demo`` runs its simulated fleet there); ``fanout run`` passes none.
    """
    from fanout.lock import acquire_run_lock
    from fanout.paths import choose_state_dir

    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory.hosts, options.limit, options.tags)
    if not hosts:
        raise InventoryError(str(options.inventory), None, "", "no host matches the selection")
    try:
        hosts = select_steps(inventory, hosts, options.steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    state_dir = choose_state_dir(options.state_dir, inventory.settings.state_dir)
    with acquire_run_lock(state_dir, inventory.path, argv=options.argv):
        resume = None
        raise_fd_limit()  # a wide run holds a socket per host and a log file per running host
        if inventory.settings.cluster is not None:  # -- cluster mode: fanout/cluster/run.py
            if options.resume is not None:
                raise UsageError("--resume: in cluster mode a takeover continues the run itself")
            from fanout.cluster.run import run_clustered

            exit_code = run_clustered(options, inventory, hosts, state_dir, out or sys.stdout)
        else:
            if options.resume is not None:
                resume = plan_resume(
                    options.resume, inventory, hosts, state_dir, quiet=options.quiet
                )
                for line in resume.dropped:
                    warn(line)
                hosts = tuple(h for h in hosts if h.name in resume.steps)
                if not hosts:
                    return 1 if resume.dropped else 0
            run = _run(options, inventory, hosts, state_dir, out or sys.stdout, resume)
            exit_code = asyncio.run(run if serve is None else _served(serve, run))
        if inventory.settings.retention is not None:
            _apply_retention(inventory, state_dir, inventory.settings.retention, options.quiet)
        if resume is not None and resume.dropped and exit_code == 0:
            return 1  # the work that was resumable succeeded; some owed work was not resumed
        if inventory.settings.metrics_file is not None or inventory.settings.notify is not None:
            from fanout.monitor import after_run

            after_run(inventory, state_dir, exit_code, warn)  # metrics file, notify (issue 14)
        return exit_code


async def _served(
    serve: Callable[[], AbstractAsyncContextManager[object]], run: Coroutine[Any, Any, int]
) -> int:
    """``run`` inside ``serve()``; if entering it fails, ``run`` is closed unstarted."""
    try:
        async with serve():
            return await run
    finally:
        run.close()  # no-op once awaited


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
    from fanout.paths import run_log_dir
    from fanout.state import RunState
    from fanout.store import open_store
    from fanout.transport.ssh import SshTransport

    run_id = new_run_id() if hook is None else hook.run_id
    token = CancelToken()
    state = RunState()
    console = None if options.batch else _live_console(options, out)

    def store_failed(error: StoreError) -> None:
        """No step may start unrecorded: stop the run as q would (exit 74)."""
        token.cancel(CancelReason.STORE)

    store_cm = open_store(state_dir, recover=True, on_write_error=store_failed)
    with store_cm as store, LogSink(state_dir) as logs, _signals_fire(token):
        if store.moved_aside is not None:
            warn(f"{store.path} was corrupt: moved to {store.moved_aside}, starting a fresh one")
        # History is read once the store is known good (a corrupt one was just moved aside).
        deadline = resolve_deadline(inventory, options.deadline, hard=options.hard_deadline)
        limits = limits_of(inventory, options.max_parallel)
        expected = load_expected(state_dir, hosts)
        owed, stop_running, fencing = resume, options.stop_running, None
        if hook is not None:  # cluster mode: the token, and a takeover's steps still to do
            owed, stop_running, fencing = hook.takeover, hook.stop_running, hook.fencing_token
            if owed is not None:
                hosts = tuple(h for h in hosts if h.name in owed.steps)
        hosts = tuple(order_hosts(hosts, expected, owed.steps if owed else None))
        levels = plan_levels(inventory, hosts, state_dir)
        targets = build_targets(
            inventory, hosts, run_id, levels, owed, stop_running, expected=expected, token=fencing
        )
        flusher = asyncio.create_task(_flush_every_second(logs, store), name="flush")
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
                state=state,
                tags={h.name: h.tags for h in hosts},
            )
        output = view if view is not None else _output_sink(options, out)
        recorders: list[EventSink] = [store] if hook is None else hook.wire(store, token)
        sinks: list[EventSink] = [*recorders, logs, state]
        sink = FanOut(sinks if output is None else [*sinks, output])

        def on_cancel(reason: CancelReason, forced: bool) -> None:
            sink.emit(CancelRequested(run_id, reason, forced, at=_now()))

        token.add_listener(on_cancel)
        transport = SshTransport(
            max_connecting=inventory.settings.max_connecting,
            orphan_timeout=inventory.settings.orphan_timeout,
        )
        engine = Engine(
            run_id=run_id,
            inventory=str(inventory.path),
            targets=targets,
            transport=transport,
            orphans=transport,
            sink=sink,
            token=token,
            max_parallel=limits.max_parallel,
            cancel_grace=inventory.settings.cancel_grace,
            meta=RunMeta(
                inventory_sha256=inventory.sha256,
                argv=tuple(options.argv),
                resumed_from=resume.run_id if resume else None,
            ),
            groups=limits.groups,
            deadline=deadline,
        )
        try:
            if view is not None:
                async with view:
                    exit_code = await engine.run()
            else:
                with _keyboard_fires(token, enabled=not options.batch):
                    exit_code = await engine.run()
        finally:
            flusher.cancel()
        if hook is not None:
            exit_code = hook.exit_code(exit_code)
    log_dir = run_log_dir(state_dir, run_id)
    closed = _print_summary(options, out, console, state, log_dir, exit_code)
    if view is not None and view.error is not None:
        warn(f"the live table stopped drawing: {view.error!r}")
    for failed_sink, error in sink.failures:
        if _is_broken_pipe(error):
            closed = True
        else:
            warn(f"{type(failed_sink).__name__} stopped recording: {error}")
    if closed:
        note("stdout was closed: output stopped there, the run went on to its end")
    if logs.error is not None:
        warn(f"log files incomplete: {logs.error}")
    if store.write_error is not None:
        note(f"run stopped, no step started after the run store failed: {store.write_error}")
    return exit_code


async def _flush_every_second(logs: LogSink, store: Store) -> None:
    """Flush the hosts' logs and the store's staged host marks every ``flush_interval`` (1 s),
    so kill -9 loses at most that much of either."""
    while True:
        await asyncio.sleep(logs.flush_interval)
        logs.flush()
        store.flush()


def _print_summary(
    options: RunOptions,
    out: TextIO,
    console: Console | None,
    state: RunState,
    log_dir: Path,
    exit_code: int,
) -> bool:
    """Print the summary; True if stdout turned out closed (a reader like ``head`` left)."""
    from fanout.ui.summary import render_summary_text, summary_line

    try:
        if console is not None:
            from fanout.ui.summary import render_summary_rich

            console.print(render_summary_rich(state, log_dir=log_dir, exit_code=exit_code))
        elif not options.json:
            if options.quiet:
                if exit_code != 0:  # cron mails what is printed: nothing when all went well
                    print(summary_line(state, exit_code), file=out)
            else:
                print(render_summary_text(state, log_dir=log_dir, exit_code=exit_code), file=out)
        out.flush()
    except OSError as exc:
        if not _is_broken_pipe(exc):  # e.g. stdout redirected to a full disk: the run stands
            warn(f"cannot print the summary: {exc.strerror or exc}")
            return False
        silence_stdout()
        return True
    return False


def _is_broken_pipe(error: BaseException) -> bool:
    import errno

    return isinstance(error, OSError) and error.errno in (errno.EPIPE, errno.ECONNRESET)


def silence_stdout() -> None:
    """Point fd 1 at /dev/null: the reader is gone and the final flush must not fail."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _apply_retention(inventory: Inventory, state_dir: Path, retention: float, quiet: bool) -> None:
    """``settings.retention``: prune this inventory's runs and logs older than ``retention``
    (never what a resume still needs). A failure is a warning: the backups are done."""
    import sqlite3

    from fanout.model import format_duration
    from fanout.prune import prune, prune_text

    try:
        result = prune(state_dir, retention, inventory=inventory.path.resolve())
    except (FanoutError, sqlite3.Error, OSError) as exc:
        warn(f"retention {format_duration(retention)}: nothing pruned: {exc}")
        return
    for error in result.errors:
        warn(f"retention: cannot remove {error}")
    if result.removed and not quiet:
        text = prune_text(result, dry_run=False, each=False).splitlines()[0]
        note(f"retention {format_duration(retention)}: {text}")


def _output_sink(options: RunOptions, out: TextIO) -> EventSink | None:
    """The sink printing events as they come; None with ``--summary-only``."""
    if options.summary_only and not options.json:
        return None
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
