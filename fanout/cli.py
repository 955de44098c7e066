"""The command line: typer commands that wire the pieces together and pick exit codes.

No logic of its own. Heavy imports (asyncssh, rich, sqlite3) happen inside the
command that needs them, so ``fanout --help`` stays fast. Errors are printed here
and only here, always as one line, never as a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from fanout import __version__
from fanout.errors import FanoutError, InventoryError, LockHeldError

EXIT_USAGE = 2
EXIT_LOCKED = 75

app = typer.Typer(
    name="fanout",
    help="Run Oracle RMAN backups across a fleet of database hosts over SSH, in priority order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")

InventoryArg = Annotated[Path, typer.Argument(help="Inventory YAML file.", show_default=False)]
LimitOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--limit",
        "-l",
        help="Only hosts whose name matches this glob (repeatable).",
        show_default=False,
    ),
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", "-t", help="Only hosts carrying this tag (repeatable).", show_default=False
    ),
]


def fail(message: str, code: int) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    print(f"fanout: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``, turning fanout's errors into one line and the documented exit code."""
    try:
        return action()
    except InventoryError as exc:
        fail(str(exc), EXIT_USAGE)
    except LockHeldError as exc:
        fail(str(exc), EXIT_LOCKED)
    except FanoutError as exc:
        fail(str(exc), EXIT_USAGE)


def _version(value: bool) -> None:
    if value:
        print(f"fanout {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """fanout: RMAN backups over SSH, fanned out by priority, stopped cleanly."""


@app.command()
def plan(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    tag: TagOpt = None,
    show_scripts: Annotated[
        bool,
        typer.Option("--show-scripts", help="Print each step's remote command and RMAN script."),
    ] = False,
) -> None:
    """Show the dispatch order (and scripts) without connecting anywhere."""
    from fanout.plan import render_plan

    def action() -> str:
        return render_plan(inventory, limit or [], tag or [], show_scripts=show_scripts)

    print(guarded(action), end="")


@app.command()
def run(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    tag: TagOpt = None,
    batch: Annotated[
        bool, typer.Option("--batch", help="Plain log lines, no live table, never read stdin.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Batch: print only failures and the summary line.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per event on stdout.")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (NO_COLOR is honoured too).")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Logs, run store and locks (default: settings.state_dir)."
        ),
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", min=1, help="Override settings.max_parallel.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[RUN_ID]",
            help="Run only the steps that did not succeed in RUN_ID "
            "(default: the latest run of this inventory, if it did not fully succeed).",
            show_default=False,
        ),
    ] = None,
    stop_running: Annotated[
        bool,
        typer.Option(
            "--stop-running",
            help="With --resume: stop a step the earlier run left running on a host "
            "(default: wait for it to end).",
        ),
    ] = False,
) -> None:
    """Run the backup steps on every selected host; exit 0 ok, 1 failed, 130/143 cancelled."""
    from fanout.runner import RunOptions, run_inventory

    options = RunOptions(
        inventory=inventory,
        limit=tuple(limit or ()),
        tags=tuple(tag or ()),
        batch=batch or quiet or json_output or not sys.stdout.isatty(),
        quiet=quiet,
        json=json_output,
        no_color=no_color,
        state_dir=state_dir,
        max_parallel=max_parallel,
        argv=tuple(sys.argv),
        resume=resume,
        stop_running=stop_running,
    )
    code = guarded(lambda: run_inventory(options))
    raise typer.Exit(code)


StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Where the run store lives (default: $XDG_STATE_HOME/fanout)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]


@app.command()
def history(
    inventory: Annotated[
        Path | None, typer.Argument(help="Only runs of this inventory.", show_default=False)
    ] = None,
    count: Annotated[int, typer.Option("-n", min=1, help="How many runs.")] = 20,
    json_output: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """Recent runs, newest first, with outcome and counts."""
    from fanout.reports import history_text

    print(guarded(lambda: history_text(inventory, count, json_output, state_dir)), end="")


@app.command()
def show(
    run_id: Annotated[
        str | None, typer.Argument(help="Default: the latest run.", show_default=False)
    ] = None,
    json_output: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """One run: every host and step with status, duration, cause and log path."""
    from fanout.reports import show_text

    print(guarded(lambda: show_text(run_id, json_output, state_dir)), end="")


@app.command()
def demo(
    hosts: Annotated[
        int | None,
        typer.Option(
            "--hosts",
            min=1,
            max=2000,
            help="Generate this many hosts (default: those of inventory.example.yaml).",
            show_default=False,
        ),
    ] = None,
    failures: Annotated[
        int, typer.Option("--failures", min=0, help="Hosts given a scripted problem.")
    ] = 2,
    speed: Annotated[
        float, typer.Option("--speed", min=0.01, help="Simulated seconds per real second.")
    ] = 1.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Inventory, logs and run store (default: a new temporary dir)."
        ),
    ] = None,
    batch: Annotated[
        bool, typer.Option("--batch", help="Plain log lines, no live table, never read stdin.")
    ] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours.")] = False,
) -> None:
    """Run fanout for real against a simulated fleet on 127.0.0.1 (exit codes as `run`)."""
    from fanout.sim.demo import DemoOptions, run_demo

    options = DemoOptions(
        hosts=hosts,
        failures=failures,
        speed=speed,
        state_dir=state_dir,
        batch=batch or not sys.stdout.isatty(),
        no_color=no_color,
        argv=tuple(sys.argv),
    )
    raise typer.Exit(guarded(lambda: run_demo(options)))


@app.command()
def check(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    tag: TagOpt = None,
    nagios: Annotated[
        bool,
        typer.Option("--nagios", help="Nagios plugin output: one status line, then details."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="The JSON document of docs/check-json.md.")
    ] = False,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect",
            help="Preflight instead: SSH, shell, ORACLE_HOME, rman, pmon, lock_dir, lock "
            "on every selected host (no RMAN runs).",
        ),
    ] = False,
    state_dir: StateDirOpt = None,
) -> None:
    """Is every database's last good backup recent enough? Exit 0 OK, 1 WARNING, 2 CRITICAL,
    3 UNKNOWN (the Nagios plugin codes)."""
    from fanout.monitor import CheckOptions, OutputFormat, check_inventory, unknown_output

    if nagios and json_output:
        fail("--nagios and --json exclude each other", 3)
    output = (
        OutputFormat.NAGIOS if nagios else OutputFormat.JSON if json_output else OutputFormat.TEXT
    )
    options = CheckOptions(
        inventory=inventory,
        limit=tuple(limit or ()),
        tags=tuple(tag or ()),
        output=output,
        connect=connect,
        state_dir=state_dir,
    )

    def warn(message: str) -> None:
        print(f"fanout: warning: {message}", file=sys.stderr)

    try:
        code, text = check_inventory(options, warn)
    except FanoutError as exc:
        if output is OutputFormat.TEXT:
            print(f"fanout: {exc}", file=sys.stderr)
        else:
            print(unknown_output(output, inventory, str(exc)), end="")
        raise typer.Exit(3) from None
    print(text, end="")
    raise typer.Exit(code)


_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}|latest")


def optional_resume_value(argv: list[str]) -> list[str]:
    """Let ``--resume`` stand alone, meaning ``--resume latest``.

    Typer has no options with an optional value, so a bare ``--resume`` (one not
    followed by a run id) gets the value ``latest`` before parsing: in
    ``fanout run --resume nightly.yaml`` the inventory is never taken for a run id.
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--resume":
            following = argv[i + 1] if i + 1 < len(argv) else ""
            if not _RUN_ID.fullmatch(following):
                out.append("latest")
    return out


def main() -> None:
    """Console-script entry point."""
    app(args=optional_resume_value(sys.argv[1:]), prog_name="fanout")
