"""The programs a simulated host has besides rman (``rman.py``): ``sh -c``, ``sleep``, ``cat``,
``mkdir``, ``rm``, ``date``, ``tr``, ``ps``, ``awk``, ``df``, ``grep``… on the shared
``World`` (process table, file system). ``sleep`` runs as a process of its own, so signals
reach it; the rest finish at once.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Mapping
from typing import Final

from fanout.sim import awk
from fanout.sim.builtins import BUILTINS
from fanout.sim.interp import Builtin, Context, Program, Shell
from fanout.sim.machine import Signalled, format_etime

__all__ = ["COMMANDS", "run_sh"]


def _builtin_program(builtin: Builtin) -> Program:
    async def program(ctx: Context, argv: list[str]) -> int:
        return await builtin(ctx.shell, argv, ctx.io)

    return program


async def run_sh(ctx: Context, argv: list[str]) -> int:
    """``sh -c SCRIPT [NAME ARGS…]``: a new shell in this process (it may have been exec'd)."""
    args = argv[1:]
    if args[:1] != ["-c"] or len(args) < 2:
        ctx.io.err("sh: 0: the simulator only runs sh -c SCRIPT\n")
        return 2
    shell = Shell(ctx.world, ctx.proc, ctx.shell.login, dict(ctx.env), set(ctx.env))
    shell.positional = args[3:]
    status, died = await shell.run_script(args[1], ctx.io)
    if died is not None:
        raise Signalled(died)
    return status


async def _sleep(ctx: Context, argv: list[str]) -> int:
    total = 0.0
    for arg in argv[1:]:
        match = re.fullmatch(r"(\d+(?:\.\d*)?)([smhd]?)", arg)
        if match is None:
            ctx.io.err(f"sleep: invalid time interval '{arg}'\n")
            return 1
        total += float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    await ctx.proc.pause(ctx.world.scaled(total))
    return 0


async def _cat(ctx: Context, argv: list[str]) -> int:
    names = [a for a in argv[1:] if a != "-u"]
    if not names:
        ctx.io.out(await ctx.io.stdin.read_all(ctx.proc))
        return 0
    status = 0
    for name in names:
        content, error = ctx.world.fs.read(ctx.path(name))
        if content is None:
            ctx.io.err(f"cat: {name}: {error}\n")
            status = 1
        else:
            ctx.io.out(content)
    return status


async def _mkdir(ctx: Context, argv: list[str]) -> int:
    parents = "-p" in argv[1:]
    status = 0
    for name in (a for a in argv[1:] if not a.startswith("-")):
        error = ctx.world.fs.mkdir(ctx.path(name), parents=parents)
        if error:
            ctx.io.err(f"mkdir: cannot create directory '{name}': {error}\n")
            status = 1
    return status


async def _rm(ctx: Context, argv: list[str]) -> int:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    status = 0
    for name in (a for a in argv[1:] if not a.startswith("-")):
        error = ctx.world.fs.remove(ctx.path(name), recursive="r" in flags or "R" in flags)
        if error and not ("f" in flags and error.startswith("No such")):
            ctx.io.err(f"rm: cannot remove '{name}': {error}\n")
            status = 1
    return status


async def _date(ctx: Context, argv: list[str]) -> int:
    utc = "-u" in argv[1:]
    fmt = next((a[1:] for a in argv[1:] if a.startswith("+")), "%a %b %e %H:%M:%S %Z %Y")
    now = time.gmtime() if utc else time.localtime()
    text = time.strftime(fmt.replace("%Z", "UTC" if utc else "%Z"), now)
    ctx.io.out(text + "\n")
    return 0


async def _tr(ctx: Context, argv: list[str]) -> int:
    data = await ctx.io.stdin.read_all(ctx.proc)
    args = argv[1:]
    if args[:1] == ["-d"] and len(args) == 2:
        ctx.io.out(data.translate({ord(c): None for c in args[1]}))
        return 0
    if len(args) == 2:
        src, dst = args
        dst = (dst + dst[-1:] * len(src))[: len(src)] if dst else ""
        ctx.io.out(data.translate(str.maketrans(src, dst)))
        return 0
    ctx.io.err("tr: missing operand\n")
    return 1


_PS_FIELDS: Final = {
    "pid": ("PID", 7),
    "ppid": ("PPID", 7),
    "pgid": ("PGID", 7),
    "etime": ("ELAPSED", 11),
    "user": ("USER", -8),
    "args": ("COMMAND", 0),
    "command": ("COMMAND", 0),
    "cmd": ("CMD", 0),
    "comm": ("COMMAND", -15),
}


async def _ps(ctx: Context, argv: list[str]) -> int:
    """POSIX ``ps``: ``-A``/``-e``, ``-p PID[,PID]``, ``-o field[=header]`` (repeatable)."""
    args = argv[1:]
    specs: list[tuple[str, str | None]] = []
    pids: set[int] | None = None
    everyone = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-A", "-e"):
            everyone = True
        elif arg in ("-o", "-p") and i + 1 < len(args):
            i += 1
            if arg == "-o":
                for item in args[i].split(","):
                    name, eq, header = item.partition("=")
                    specs.append((name, header if eq else None))
            else:
                try:
                    pids = (pids or set()) | {int(p) for p in args[i].split(",")}
                except ValueError:
                    ctx.io.err("error: process ID list syntax error\n")
                    return 1
        elif arg in ("-f", "-ef", "-x", "ax", "aux", "-w", "-ww"):
            everyone = everyone or arg != "-w"
        else:
            ctx.io.err("error: unsupported option (BSD syntax)\n")
            return 1
        i += 1
    for name, _ in specs:
        if name not in _PS_FIELDS:
            ctx.io.err(f'error: unknown user-defined format specifier "{name}"\n')
            return 1
    if not specs:
        specs = [("pid", None), ("etime", None), ("args", None)]
    procs = ctx.world.table.all()
    if pids is not None:
        procs = [p for p in procs if p.pid in pids]
    elif not everyone:
        procs = [p for p in procs if p.user == ctx.shell.login.user]
    rows: list[str] = []
    if any(header is None or header for _, header in specs):
        rows.append(
            " ".join(
                _ps_cell(name, header or _PS_FIELDS[name][0], True) for name, header in specs
            ).rstrip()
        )
    now = time.monotonic()
    for proc in procs:
        values = {
            "pid": str(proc.pid),
            "ppid": str(proc.ppid),
            "pgid": str(proc.pgid),
            "etime": format_etime(now - proc.started),
            "user": proc.user,
            "args": proc.args,
            "command": proc.args,
            "cmd": proc.args,
            "comm": posixpath.basename(proc.args.split(" ", 1)[0]),
        }
        rows.append(" ".join(_ps_cell(name, values[name], False) for name, _ in specs).rstrip())
    ctx.io.out("".join(row + "\n" for row in rows))
    return 0 if procs or pids is None else 1


def _ps_cell(name: str, text: str, header: bool) -> str:
    width = _PS_FIELDS[name][1]
    if width > 0:
        return text.rjust(width)
    if width < 0:
        return text.ljust(-width)
    return text


async def _awk(ctx: Context, argv: list[str]) -> int:
    files: dict[str, str] = {}
    for name in argv[2:]:
        content, _ = ctx.world.fs.read(ctx.path(name))
        files[name] = content or ""
    stdin = await ctx.io.stdin.read_all(ctx.proc) if len(argv) <= 2 else ""
    status, out, err = awk.run_awk(argv[1:], stdin, files)
    ctx.io.out(out)
    if err:
        ctx.io.err(err)
    return status


async def _df(ctx: Context, argv: list[str]) -> int:
    rows = [
        "Filesystem                 1K-blocks      Used Available Use% Mounted on",
        "/dev/mapper/vg_ora-u01     104806400  61245440  43560960  59% /u01",
        "/dev/mapper/vg_fra-u02    524032000 318914560 205117440  61% /u02",
        "tmpfs                        8123456      1024   8122432   1% /dev/shm",
    ]
    ctx.io.out("\n".join(rows) + "\n")
    return 0


async def _hostname(ctx: Context, _argv: list[str]) -> int:
    ctx.io.out(ctx.world.hostname + "\n")
    return 0


async def _uname(ctx: Context, argv: list[str]) -> int:
    text = "Linux"
    if "-a" in argv[1:]:
        text = f"Linux {ctx.world.hostname} 5.15.0-300.163.18.el8uek.x86_64 #2 SMP x86_64 GNU/Linux"
    elif "-n" in argv[1:]:
        text = ctx.world.hostname
    ctx.io.out(text + "\n")
    return 0


async def _id(ctx: Context, argv: list[str]) -> int:
    user = ctx.shell.login.user
    if "-un" in argv[1:] or argv[1:] == ["-u", "-n"]:
        ctx.io.out(user + "\n")
    else:
        ctx.io.out(f"uid=54321({user}) gid=54321(oinstall) groups=54321(oinstall),54322(dba)\n")
    return 0


async def _whoami(ctx: Context, _argv: list[str]) -> int:
    ctx.io.out(ctx.shell.login.user + "\n")
    return 0


async def _env(ctx: Context, _argv: list[str]) -> int:
    ctx.io.out("".join(f"{k}={v}\n" for k, v in sorted(ctx.env.items())))
    return 0


async def _grep(ctx: Context, argv: list[str]) -> int:
    args = argv[1:]
    flags = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
    words = [a for a in args if not (a.startswith("-") and len(a) > 1)]
    if not words:
        ctx.io.err("Usage: grep [OPTION]... PATTERNS [FILE]...\n")
        return 2
    pattern = re.compile(
        re.escape(words[0]) if "F" in flags else words[0], re.IGNORECASE if "i" in flags else 0
    )
    text = await ctx.io.stdin.read_all(ctx.proc)
    hits = [line for line in text.splitlines() if bool(pattern.search(line)) != ("v" in flags)]
    if "q" not in flags:
        ctx.io.out("".join(line + "\n" for line in hits))
    return 0 if hits else 1


async def _touch(ctx: Context, argv: list[str]) -> int:
    status = 0
    for name in argv[1:]:
        path = ctx.path(name)
        if ctx.world.fs.kind(path) is None:
            error = ctx.world.fs.write(path, "", append=True)
            if error:
                ctx.io.err(f"touch: cannot touch '{name}': {error}\n")
                status = 1
    return status


COMMANDS: Final[Mapping[str, Program]] = {
    "sleep": _sleep,
    "cat": _cat,
    "mkdir": _mkdir,
    "rm": _rm,
    "date": _date,
    "tr": _tr,
    "ps": _ps,
    "awk": _awk,
    "df": _df,
    "hostname": _hostname,
    "uname": _uname,
    "id": _id,
    "whoami": _whoami,
    "env": _env,
    "printenv": _env,
    "grep": _grep,
    "touch": _touch,
    **{
        name: _builtin_program(BUILTINS[name])
        for name in ("true", "false", "echo", "printf", "test", "[", "kill")
    },
}
