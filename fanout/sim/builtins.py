"""The shell builtins of the simulated ``sh`` (``:``, ``echo``, ``printf``, ``test``/``[``,
``set``, ``exit``, ``export``, ``trap``, ``kill``, ``exec``…), as dash behaves for the scripts
fanout sends. Each takes the running ``Shell``, its argv and IO, and returns the status.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from fanout.sim.interp import IO, Builtin, Died, Exited, Returned, Shell, apply_op, signal_name
from fanout.sim.machine import SIGNALS
from fanout.sim.shell import ShellSyntaxError, parse

__all__ = ["BUILTINS"]


async def _colon(_shell: Shell, _argv: list[str], _io: IO) -> int:
    return 0


async def _false(_shell: Shell, _argv: list[str], _io: IO) -> int:
    return 1


def _escapes(text: str) -> tuple[str, bool]:
    """Backslash escapes as dash's echo and printf %b read them; (text, stop at \\c)."""
    out: list[str] = []
    i = 0
    table = {
        "n": "\n",
        "t": "\t",
        "\\": "\\",
        "a": "\a",
        "b": "\b",
        "f": "\f",
        "r": "\r",
        "v": "\v",
    }
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "c":
                return "".join(out), True
            if nxt in table:
                out.append(table[nxt])
                i += 2
                continue
            if nxt == "0":
                digits = re.match(r"[0-7]{0,3}", text[i + 2 :])
                code = digits.group(0) if digits else ""
                out.append(chr(int(code or "0", 8)))
                i += 2 + len(code)
                continue
        out.append(ch)
        i += 1
    return "".join(out), False


async def _echo(_shell: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    newline = True
    if args[:1] == ["-n"]:
        args, newline = args[1:], False
    text, stop = _escapes(" ".join(args))
    io.out(text + ("\n" if newline and not stop else ""))
    return 0


_FORMAT = re.compile(r"%([-+ #0]*)(\d*|\*)(?:\.(\d*))?([diouxXcsb%])")


async def _printf(_shell: Shell, argv: list[str], io: IO) -> int:
    if len(argv) < 2:
        io.err("sh: 1: printf: usage: printf format [arg ...]\n")
        return 2
    fmt, args = argv[1], argv[2:]
    status = 0
    out: list[str] = []
    while True:
        used = 0

        def convert(match: re.Match[str], args: list[str] = args) -> str:
            nonlocal used, status
            flags, width, precision, conv = match.groups()
            if conv == "%":
                return "%"
            value = args[used] if used < len(args) else ""
            used += 1
            spec = f"%{flags}{width}" + (f".{precision}" if precision is not None else "")
            if conv in "diouxX":
                try:
                    number = int(value or "0", 0) if value[:2].lower() != "0x" else int(value, 16)
                except ValueError:
                    status = 1
                    number = 0
                return (spec + ("d" if conv in "iu" else conv)) % number
            if conv == "c":
                return (spec + "s") % value[:1]
            if conv == "b":
                return (spec + "s") % _escapes(value)[0]
            return (spec + "s") % value

        text, _ = _escapes(_FORMAT.sub(convert, fmt.replace("\\%", "\0")))
        out.append(text.replace("\0", "%"))
        if used == 0 or used >= len(args):
            break
        args = args[used:]
    io.out("".join(out))
    return status


def _test(shell: Shell, args: list[str]) -> bool | None:
    """POSIX test; None for a usage error."""
    if args[:1] == ["!"]:
        result = _test(shell, args[1:])
        return None if result is None else not result
    fs = shell.world.fs
    missing = shell.world.behaviour(shell.vars.get("ORACLE_SID", "")).missing
    if len(args) == 0:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, value = args
        path = fs.normalize(value, shell.vars.get("PWD", "/")) if value else ""
        kind = fs.kind(path, missing) if path else None
        checks: dict[str, Callable[[], bool]] = {
            "-n": lambda: value != "",
            "-z": lambda: value == "",
            "-e": lambda: kind is not None,
            "-d": lambda: kind == "dir",
            "-f": lambda: kind == "file",
            "-r": lambda: kind is not None,
            "-w": lambda: kind is not None,
            "-x": lambda: kind == "dir",
            "-s": lambda: kind == "file" and bool(fs.read(path)[0]),
        }
        return checks[op]() if op in checks else None
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "!="):
            return (left == right) == (op == "=")
        numeric = {"-eq": "==", "-ne": "!=", "-lt": "<", "-le": "<=", "-gt": ">", "-ge": ">="}
        if op in numeric:
            try:
                return bool(apply_op(numeric[op], int(left), int(right)))
            except ValueError:
                return None
    return None


async def _test_builtin(shell: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    if argv[0] == "[":
        if args[-1:] != ["]"]:
            io.err("sh: 1: [: missing ]\n")
            return 2
        args = args[:-1]
    result = _test(shell, args)
    if result is None:
        io.err(f"sh: 1: {argv[0]}: {' '.join(args)}: unexpected operator\n")
        return 2
    return 0 if result else 1


async def _set(shell: Shell, argv: list[str], _io: IO) -> int:
    args = argv[1:]
    while args and args[0].startswith(("-", "+")) and args[0] != "--":
        args = args[1:]  # options (-e, -u, -x…) change nothing here
    if args[:1] == ["--"]:
        args = args[1:]
        shell.positional = list(args)
    elif args:
        shell.positional = list(args)
    return 0


async def _shift(shell: Shell, argv: list[str], io: IO) -> int:
    count = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
    if count > len(shell.positional):
        io.err("sh: 1: shift: can't shift that many\n")
        return 2
    shell.positional = shell.positional[count:]
    return 0


async def _exit(shell: Shell, argv: list[str], _io: IO) -> int:
    raise Exited(int(argv[1]) & 255 if len(argv) > 1 and argv[1].isdigit() else shell.status)


async def _return(shell: Shell, argv: list[str], _io: IO) -> int:
    raise Returned(int(argv[1]) & 255 if len(argv) > 1 and argv[1].isdigit() else shell.status)


async def _export(shell: Shell, argv: list[str], _io: IO) -> int:
    for arg in argv[1:]:
        if arg == "-p":
            continue
        name, eq, value = arg.partition("=")
        if eq:
            shell.vars[name] = value
        if argv[0] == "export":
            shell.exported.add(name)
        elif argv[0] == "local" and not eq:
            shell.vars.setdefault(name, "")
    return 0


async def _unset(shell: Shell, argv: list[str], _io: IO) -> int:
    functions = "-f" in argv[1:2]
    for name in argv[1:]:
        if name in ("-f", "-v"):
            continue
        if functions:
            shell.functions.pop(name, None)
        else:
            shell.vars.pop(name, None)
            shell.exported.discard(name)
    return 0


async def _trap(shell: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    if not args:
        for name, command in shell.traps.items():
            quoted = command.replace("'", "'\\''")
            io.out(f"trap -- '{quoted}' {name}\n")
        return 0
    action: str | None
    if len(args) == 1 or args[0] == "-":
        action, names = None, args[1:] if args[0] == "-" else args
    else:
        action, names = args[0], args[1:]
    status = 0
    for raw in names:
        sig = signal_name(raw)
        if sig is None:
            io.err(f"sh: 1: trap: {raw}: bad trap\n")
            status = 1
            continue
        if action is None:
            shell.traps.pop(sig, None)
            shell.proc.ignored.discard(sig)
        elif action == "":
            shell.traps[sig] = ""
            shell.proc.ignore(sig)
        else:
            shell.traps[sig] = action
            shell.proc.ignored.discard(sig)
    return status


async def _kill(shell: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    sig = "TERM"
    if args[:1] == ["-l"]:
        io.out(" ".join(SIGNALS) + "\n")
        return 0
    if args and args[0] in ("-s", "-n") and len(args) > 1:
        name = signal_name(args[1])
        if name is None:
            io.err(f"sh: 1: kill: invalid signal number or name: {args[1]}\n")
            return 2
        sig, args = name, args[2:]
    elif (
        args
        and args[0].startswith("-")
        and args[0] not in ("--",)
        and not (args[0][1:].isdigit() and len(args) == 1)
    ):
        name = "0" if args[0] == "-0" else signal_name(args[0][1:])
        if name is None:
            io.err(f"sh: 1: kill: invalid signal number or name: {args[0][1:]}\n")
            return 2
        sig, args = name, args[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        io.err("sh: 1: kill: Usage: kill [-s sigspec | -signum | -sigspec] [pid | job]...\n")
        return 2
    status = 0
    for target in args:
        try:
            number = int(target)
        except ValueError:
            io.err(f"sh: 1: kill: illegal number: {target}\n")
            status = 2
            continue
        if number == 0 or not shell.world.table.signal(number, sig):
            io.err("sh: 1: kill: No such process\n")
            status = 1
    return status


async def _cd(shell: Shell, argv: list[str], io: IO) -> int:
    target = argv[1] if len(argv) > 1 else shell.vars.get("HOME", "/")
    path = shell.world.fs.normalize(target, shell.vars.get("PWD", "/"))
    if shell.world.fs.kind(path) != "dir":
        io.err(f"sh: 1: cd: can't cd to {target}\n")
        return 2
    shell.vars["PWD"] = path
    return 0


async def _pwd(shell: Shell, _argv: list[str], io: IO) -> int:
    io.out(shell.vars.get("PWD", "/") + "\n")
    return 0


async def _exec(shell: Shell, argv: list[str], io: IO) -> int:
    if len(argv) == 1:
        return 0
    shell.traps.clear()
    env = shell.environment()
    status, died = await shell.run_external(argv[1:], env, io, replace_shell=True)
    if died is not None:
        raise Died(died)
    raise Exited(status)


async def _eval(shell: Shell, argv: list[str], io: IO) -> int:
    try:
        return await shell.run_sequence(parse(" ".join(argv[1:])), io)
    except ShellSyntaxError as exc:
        io.err(f"sh: 1: eval: {exc}\n")
        return 2


async def _command(shell: Shell, argv: list[str], io: IO) -> int:
    if argv[1:2] == ["-v"] and len(argv) > 2:
        name = argv[2]
        if name in BUILTINS or name in shell.functions:
            io.out(name + "\n")
            return 0
        if shell.find(name, shell.environment()) is not None:
            io.out((name if "/" in name else f"/usr/bin/{name}") + "\n")
            return 0
        return 127
    if len(argv) > 1:
        status, _ = await shell.run_external(argv[1:], shell.environment(), io)
        return status
    return 0


async def _wait(_shell: Shell, _argv: list[str], _io: IO) -> int:
    return 0


BUILTINS: Final[Mapping[str, Builtin]] = {
    ":": _colon,
    "true": _colon,
    "false": _false,
    "echo": _echo,
    "printf": _printf,
    "test": _test_builtin,
    "[": _test_builtin,
    "set": _set,
    "shift": _shift,
    "exit": _exit,
    "return": _return,
    "export": _export,
    "readonly": _export,
    "local": _export,
    "unset": _unset,
    "trap": _trap,
    "kill": _kill,
    "cd": _cd,
    "pwd": _pwd,
    "exec": _exec,
    "eval": _eval,
    "command": _command,
    "wait": _wait,
    "umask": _colon,
    "ulimit": _colon,
}
