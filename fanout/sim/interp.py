"""Runs the ``sh`` that ``shell.py`` parses, against the simulated machine.

A ``Shell`` is one simulated ``/bin/sh`` process: variables (exported or not), positional
parameters, functions, traps and ``$?``. Builtins (``builtins.py``) run inside it; other
commands are simulated programs (``programs.py``: ``sleep``, ``cat``, ``mkdir``, ``ps``,
``awk``…, plus ``$ORACLE_HOME/bin/rman`` from ``rman.py`` and ``sh -c``). Anything else is
``sh: 1: NAME: not found``, exit 127.

Signals follow sh: a signal delivered to the group reaches the shell and its foreground
child alike; the shell acts on it once the child has ended: a trap runs (``trap 'exit 130'
INT``), or the shell dies of it (no EXIT trap then), or KILL ends it at once. ``exec``
replaces the shell (same pid, traps gone). Long-running commands (``sleep``, ``rman``, a
child ``sh``) are processes of their own in the shell's group, so ``ps`` lists them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

from fanout.sim.machine import SIGNALS, Signalled, SimProcess, World
from fanout.sim.shell import (
    AndOr,
    Brace,
    Command,
    For,
    FuncDef,
    If,
    Loop,
    Part,
    PartKind,
    Pipeline,
    Redirect,
    Sequence,
    ShellSyntaxError,
    Simple,
    Subshell,
    Word,
    parse,
)

__all__ = [
    "IO",
    "Builtin",
    "Context",
    "Died",
    "Exited",
    "Input",
    "Login",
    "Program",
    "Returned",
    "Shell",
    "TextInput",
    "apply_op",
    "died_status",
    "signal_name",
]

MAX_STEPS: Final = 200_000  # commands one shell may run: a runaway loop is stopped


class Input(Protocol):
    async def read_all(self, proc: SimProcess) -> str:
        """Everything until EOF (once; later calls return ""). Raises Signalled."""
        ...


@dataclass(slots=True)
class TextInput:
    text: str = ""

    async def read_all(self, proc: SimProcess) -> str:
        text, self.text = self.text, ""
        return text


@dataclass(frozen=True, slots=True)
class IO:
    stdin: Input
    out: Callable[[str], None]
    err: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Login:
    """The SSH session a shell runs for."""

    user: str
    drop: Callable[[], None]  # abort this SSH connection (the ``drop`` behaviour)


class Exited(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Returned(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Died(Exception):
    def __init__(self, sig: str) -> None:
        self.sig = sig


class _RedirectFailed(Exception):
    pass


def signal_name(text: str) -> str | None:
    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        number = int(name)
        if number == 0:
            return "EXIT"
        return next((n for n, v in SIGNALS.items() if v == number), None)
    return name if name in SIGNALS or name == "EXIT" else None


def died_status(sig: str) -> int:
    return 128 + SIGNALS.get(sig, 0)


@dataclass(slots=True)
class Shell:
    world: World
    proc: SimProcess
    login: Login
    vars: dict[str, str] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)
    positional: list[str] = field(default_factory=list)
    functions: dict[str, Command] = field(default_factory=dict)
    traps: dict[str, str] = field(default_factory=dict)
    status: int = 0
    steps: int = 0
    _subst_status: int | None = None

    @classmethod
    def login_shell(cls, world: World, proc: SimProcess, login: Login) -> Shell:
        env = {
            "HOME": f"/home/{login.user}",
            "LOGNAME": login.user,
            "USER": login.user,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "SHELL": "/bin/sh",
            "PWD": f"/home/{login.user}",
        }
        return cls(world, proc, login, dict(env), set(env))

    def child(self, proc: SimProcess | None = None) -> Shell:
        """A subshell: a copy of the state, traps reset (ignored signals stay ignored)."""
        return Shell(
            self.world,
            proc or self.proc,
            self.login,
            dict(self.vars),
            set(self.exported),
            list(self.positional),
            dict(self.functions),
            {k: v for k, v in self.traps.items() if v == ""},
            self.status,
        )

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in self.vars.items() if k in self.exported}

    # -- running -------------------------------------------------------------------------

    async def run_script(self, text: str, io: IO) -> tuple[int, str | None]:
        """Run ``text`` as ``sh -c`` would. Returns (exit status, signal it died of or None)."""
        try:
            body = parse(text)
        except ShellSyntaxError as exc:
            io.err(f"sh: 1: {exc}\n")
            return 2, None
        try:
            await self.run_sequence(body, io)
            status = self.status
        except Exited as exc:
            status = exc.status
        except Died as exc:
            return died_status(exc.sig), exc.sig
        except Returned as exc:
            status = exc.status
        return await self._exit_trap(status, io)

    async def _exit_trap(self, status: int, io: IO) -> tuple[int, str | None]:
        action = self.traps.pop("EXIT", None)
        if not action:
            return status, None
        self.status = status
        try:
            await self.run_sequence(parse(action), io)
        except Exited as exc:
            status = exc.status
        except Died as exc:
            return died_status(exc.sig), exc.sig
        except (Returned, ShellSyntaxError):
            pass
        return status, None

    async def run_sequence(self, body: Sequence, io: IO) -> int:
        for item in body.items:
            await self.run_and_or(item, io)
        return self.status

    async def run_and_or(self, item: AndOr, io: IO) -> int:
        status = await self.run_pipeline(item.first, io)
        for op, pipeline in item.rest:
            if (op == "&&") == (status == 0):
                status = await self.run_pipeline(pipeline, io)
        self.status = status
        return status

    async def run_pipeline(self, pipeline: Pipeline, io: IO) -> int:
        if len(pipeline.commands) == 1:
            status = await self.run_command(pipeline.commands[0], io)
        else:
            data: str | None = None
            status = 0
            for index, command in enumerate(pipeline.commands):
                last = index == len(pipeline.commands) - 1
                buffer: list[str] = []
                stage = replace(
                    io,
                    stdin=TextInput(data) if data is not None else io.stdin,
                    out=io.out if last else buffer.append,
                )
                sub = self.child()
                try:
                    status = await sub.run_command(command, stage)
                except Exited as exc:
                    status = exc.status
                data = "".join(buffer)
                await self.check_signals(io)
        if pipeline.negate:
            status = 0 if status else 1
        self.status = status
        return status

    async def run_command(self, command: Command, io: IO) -> int:
        match command:
            case Simple():
                return await self.run_simple(command, io)
            case Brace(body, redirects):
                return await self.run_sequence(body, await self._redirect(io, redirects))
            case Subshell(body, redirects):
                sub = self.child()
                try:
                    status = await sub.run_sequence(body, await self._redirect(io, redirects))
                except Exited as exc:
                    status = exc.status
                self.status = status
                return status
            case If(clauses, otherwise, redirects):
                io = await self._redirect(io, redirects)
                for condition, body in clauses:
                    if await self.run_sequence(condition, io) == 0:
                        return await self.run_sequence(body, io)
                self.status = 0
                return await self.run_sequence(otherwise, io) if otherwise else 0
            case Loop(condition, body, until, redirects):
                io = await self._redirect(io, redirects)
                status = 0
                while (await self.run_sequence(condition, io) == 0) != until:
                    status = await self.run_sequence(body, io)
                    await self._count(io)
                self.status = status
                return status
            case For(name, words, body, redirects):
                io = await self._redirect(io, redirects)
                values = (
                    await self.expand_words(words, io) if words is not None else self.positional
                )
                status = 0
                for value in list(values):
                    self.vars[name] = value
                    status = await self.run_sequence(body, io)
                self.status = status
                return status
            case FuncDef(name, body):
                self.functions[name] = body
                self.status = 0
                return 0
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    async def run_simple(self, command: Simple, io: IO) -> int:
        await self._count(io)
        self._subst_status = None
        argv = await self.expand_words(command.words, io)
        assigns = [(w.assign or "", await self.expand_value(w, io)) for w in command.assignments]
        try:
            io = await self._redirect(io, command.redirects)
        except _RedirectFailed:
            self.status = 2
            return 2
        if not argv:
            for name, value in assigns:
                self.vars[name] = value
            status = self._subst_status or 0
        elif (body := self.functions.get(argv[0])) is not None:
            for name, value in assigns:
                self.vars[name] = value
            saved, self.positional = self.positional, argv[1:]
            try:
                status = await self.run_command(body, io)
            except Returned as exc:
                status = exc.status
            finally:
                self.positional = saved
        elif (builtin := _builtins().get(argv[0])) is not None:
            for name, value in assigns:
                self.vars[name] = value
            status = await builtin(self, argv, io)
        else:
            env = self.environment() | dict(assigns)
            status, _ = await self.run_external(argv, env, io)
        self.status = status
        await self.check_signals(io)
        return status

    async def _count(self, io: IO) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            io.err("sh: 1: the simulator stopped a runaway script\n")
            raise Died("KILL")

    async def check_signals(self, io: IO) -> None:
        """Act on signals that reached this shell: a trap, or death (KILL: always death)."""
        while (sig := self.proc.take()) is not None:
            action = self.traps.get(sig) if sig != "KILL" else None
            if action is None:
                raise Died(sig)
            if action:
                saved = self.status
                await self.run_sequence(parse(action), io)
                self.status = saved

    async def run_external(
        self, argv: list[str], env: dict[str, str], io: IO, *, replace_shell: bool = False
    ) -> tuple[int, str | None]:
        """Run a simulated program; (status, signal it died of). ``replace_shell``: exec."""
        name = argv[0]
        runner = self.find(name, env)
        if runner is None:
            io.err(f"sh: 1: {name}: not found\n")
            return 127, None
        program, long_running = runner
        proc = self.proc
        if replace_shell:
            proc.args = " ".join(argv)
        elif long_running:
            proc = self.world.table.spawn(" ".join(argv), user=self.login.user, parent=self.proc)
        try:
            return await program(Context(self, proc, env, io), argv), None
        except Signalled as exc:
            return died_status(exc.name), exc.name
        finally:
            if proc is not self.proc:
                proc.exit()

    def find(self, name: str, env: Mapping[str, str]) -> tuple[Program, bool] | None:
        """The simulated program ``name`` runs, and whether it is long-running (own process)."""
        from fanout.sim.programs import COMMANDS, run_sh
        from fanout.sim.rman import run_rman

        base = posixpath.basename(name)
        home = env.get("ORACLE_HOME", "")
        if base == "rman" and home and name == f"{home.rstrip('/')}/bin/rman":
            return run_rman, True
        if "/" in name and posixpath.dirname(name) not in ("/bin", "/usr/bin", "/sbin"):
            return None
        if base in ("sh", "dash"):
            return run_sh, True
        if base in COMMANDS:
            return COMMANDS[base], base == "sleep"
        return None

    # -- expansion -----------------------------------------------------------------------

    async def expand_words(self, words: tuple[Word, ...], io: IO) -> list[str]:
        fields: list[str] = []
        for word in words:
            fields += await self.expand_word(word, io)
        return fields

    async def expand_value(self, word: Word, io: IO) -> str:
        """A word without field splitting (assignments, redirection targets)."""
        return "".join([await self._part(part, io) for part in word.parts])

    async def expand_word(self, word: Word, io: IO) -> list[str]:
        """A word's fields: unquoted expansions are split on blanks; no globbing."""
        fields: list[str] = []
        current: list[str] = []
        started = False
        for part in word.parts:
            if part.kind is PartKind.VAR and part.text == "@" and part.quoted:
                if self.positional:
                    current.append(self.positional[0])
                    for value in self.positional[1:]:
                        fields.append("".join(current))
                        current = [value]
                    started = True
                continue
            value = await self._part(part, io)
            if part.quoted or part.kind is PartKind.LIT:
                current.append(value)
                started = True
                continue
            pieces = value.split()
            if not pieces:
                continue
            if value[0].isspace() and started:
                fields.append("".join(current))
                current = []
            current.append(pieces[0])
            started = True
            for piece in pieces[1:]:
                fields.append("".join(current))
                current = [piece]
            if value[-1].isspace():
                fields.append("".join(current))
                current, started = [], False
        if started:
            fields.append("".join(current))
        return fields

    async def _part(self, part: Part, io: IO) -> str:
        if part.kind is PartKind.LIT:
            return part.text
        if part.kind is PartKind.VAR:
            return self._variable(part.text)
        if part.kind is PartKind.ARITH:
            text = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*|\d)\}?", lambda m: self._variable(m[1]), part.text
            )
            try:
                return str(_arith(text, self.vars))
            except (ValueError, ZeroDivisionError):
                raise Exited(2) from None
        return await self._capture(part.text, io)

    def _variable(self, name: str) -> str:
        name, _, default = name.partition(":-")
        if name == "$":
            value = str(self.proc.pid)
        elif name == "?":
            value = str(self.status)
        elif name == "#":
            value = str(len(self.positional))
        elif name in ("@", "*"):
            value = " ".join(self.positional)
        elif name == "0":
            value = "sh"
        elif name.isdigit():
            index = int(name)
            value = self.positional[index - 1] if index <= len(self.positional) else ""
        else:
            value = self.vars.get(name, "")
        return value or default

    async def _capture(self, script: str, io: IO) -> str:
        """``$(script)``: its stdout, trailing newlines removed; stderr goes where ours does."""
        out: list[str] = []
        sub = self.child()
        io = IO(TextInput(), out.append, io.err)
        try:
            body = parse(script)
            await sub.run_sequence(body, io)
            status = sub.status
        except Exited as exc:
            status = exc.status
        except ShellSyntaxError as exc:
            io.err(f"sh: 1: {exc}\n")
            status = 2
        self._subst_status = status
        return "".join(out).rstrip("\n")

    # -- redirections --------------------------------------------------------------------

    async def _redirect(self, io: IO, redirects: tuple[Redirect, ...]) -> IO:
        fs = self.world.fs
        for redirect in redirects:
            target = await self.expand_value(redirect.target, io)
            if redirect.op in (">&", "<&"):
                if target == "-":
                    sink: Callable[[str], None] = _discard
                elif target in ("1", "2"):
                    sink = io.out if target == "1" else io.err
                else:
                    io.err("sh: 1: Syntax error: Bad fd number\n")
                    raise _RedirectFailed
                io = (
                    replace(io, out=sink)
                    if redirect.fd == 1
                    else (replace(io, err=sink) if redirect.fd == 2 else io)
                )
                continue
            path = fs.normalize(target, self.vars.get("PWD", "/"))
            if redirect.op == "<":
                content, error = fs.read(path)
                if content is None:
                    io.err(f"sh: 1: cannot open {target}: {error}\n")
                    raise _RedirectFailed
                io = replace(io, stdin=TextInput(content)) if redirect.fd == 0 else io
                continue
            error = fs.write(path, "", append=redirect.op == ">>")
            if error is not None:
                io.err(f"sh: 1: cannot create {target}: {error}\n")
                raise _RedirectFailed

            def writer(text: str, path: str = path) -> None:
                fs.write(path, text, append=True)

            if redirect.fd == 1:
                io = replace(io, out=writer)
            elif redirect.fd == 2:
                io = replace(io, err=writer)
        return io


def _builtins() -> Mapping[str, Builtin]:
    from fanout.sim.builtins import BUILTINS

    return BUILTINS


def _discard(_text: str) -> None:
    pass


# --- arithmetic -------------------------------------------------------------------------------

_ARITH_TOKEN = re.compile(r"\s*(\d+|[A-Za-z_][A-Za-z0-9_]*|==|!=|<=|>=|&&|\|\||[-+*/%()<>!])")


def _arith(text: str, env: Mapping[str, str]) -> int:
    """``$(( ))``: integers, ``+ - * / %``, comparisons, ``! && ||``, parentheses."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _ARITH_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"arithmetic expression: expecting primary: {text!r}")
        tokens.append(match.group(1))
        pos = match.end()
    at = 0

    def peek() -> str:
        return tokens[at] if at < len(tokens) else ""

    def binary(levels: list[tuple[str, ...]], level: int) -> int:
        nonlocal at
        if level == len(levels):
            return unary()
        value = binary(levels, level + 1)
        while peek() in levels[level]:
            op = tokens[at]
            at += 1
            right = binary(levels, level + 1)
            value = apply_op(op, value, right)
        return value

    def unary() -> int:
        nonlocal at
        token = peek()
        at += 1
        if token == "-":
            return -unary()
        if token == "+":
            return unary()
        if token == "!":
            return int(not unary())
        if token == "(":
            value = binary(_LEVELS, 0)
            if peek() != ")":
                raise ValueError("arithmetic expression: expecting ')'")
            at += 1
            return value
        if token.isdigit():
            return int(token)
        if token and (token[0].isalpha() or token[0] == "_"):
            raw = env.get(token, "0") or "0"
            return int(raw) if re.fullmatch(r"-?\d+", raw.strip()) else 0
        raise ValueError("arithmetic expression: expecting primary")

    value = binary(_LEVELS, 0)
    if at != len(tokens):
        raise ValueError("arithmetic expression: trailing garbage")
    return value


_LEVELS: Final = [
    ("||",),
    ("&&",),
    ("==", "!="),
    ("<", ">", "<=", ">="),
    ("+", "-"),
    ("*", "/", "%"),
]


def apply_op(op: str, a: int, b: int) -> int:
    if op in ("/", "%") and b == 0:
        raise ZeroDivisionError
    return {
        "||": lambda: int(bool(a) or bool(b)),
        "&&": lambda: int(bool(a) and bool(b)),
        "==": lambda: int(a == b),
        "!=": lambda: int(a != b),
        "<": lambda: int(a < b),
        ">": lambda: int(a > b),
        "<=": lambda: int(a <= b),
        ">=": lambda: int(a >= b),
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "/": lambda: int(a / b),
        "%": lambda: a - b * int(a / b),
    }[op]()


@dataclass(frozen=True, slots=True)
class Context:
    """What a simulated program runs with."""

    shell: Shell  # the shell that started it (its world, login, file system)
    proc: SimProcess  # the program's own process (the shell's, after exec)
    env: Mapping[str, str]
    io: IO

    @property
    def world(self) -> World:
        return self.shell.world

    def path(self, name: str) -> str:
        return self.world.fs.normalize(name, self.env.get("PWD", "/"))


Program = Callable[[Context, list[str]], Awaitable[int]]
Builtin = Callable[[Shell, list[str], IO], Awaitable[int]]
