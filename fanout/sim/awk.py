"""A small awk for the simulated hosts: enough for the one-liners fanout's remote wrapper and
SSH transport use (``awk '$1 == 4242'``, ``awk -v p=… '$1 == p && !/<defunct>/ { f = 1 }
END { exit !f }'``) and for simple ``{ print $2 }`` use. Pure.

Supported: ``BEGIN``/``END``, pattern-action rules, ``-v name=value``, ``-F sep``; fields
``$0…$NF``, ``NR``, ``NF``; numbers, strings, ``/regex/``, ``~``/``!~``, comparisons (numeric
when both sides look like numbers), ``! && || + - * / %``, string concatenation;
statements ``print``, ``name = expr``, ``exit [expr]``, ``next``. Anything else is a syntax
error, reported as awk does, with exit status 2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["AwkError", "run_awk"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||!~|\+\+|--|[-+*/%!<>~=(){};,$])
    | (?P<nl>\n)
    )""",
    re.VERBOSE,
)


class AwkError(ValueError):
    """A program this awk cannot run (message as awk prints it)."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num str name op nl re end
    text: str


def _lex(program: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(program):
        if program[i] in " \t\r":
            i += 1
            continue
        operand_before = bool(toks) and (
            toks[-1].kind in ("num", "str", "name", "re") or toks[-1].text in (")", "$")
        )
        if program[i] == "/" and not operand_before:
            end = i + 1
            while end < len(program) and program[end] != "/":
                end += 2 if program[end] == "\\" else 1
            if end >= len(program):
                raise AwkError("non-terminated regular expression")
            toks.append(_Tok("re", program[i + 1 : end]))
            i = end + 1
            continue
        match = _TOKEN.match(program, i)
        if match is None or match.end() == i:
            raise AwkError(f"syntax error at source line 1: {program[i : i + 10]!r}")
        kind = match.lastgroup or "op"
        toks.append(_Tok(kind, match.group(kind)))
        i = match.end()
    toks.append(_Tok("end", ""))
    return toks


# expressions are closures over the record state
_Expr = Callable[["_State"], str | float]


@dataclass(slots=True)
class _State:
    fields: list[str] = field(default_factory=list)
    record: str = ""
    nr: int = 0
    vars: dict[str, str | float] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)
    separator: str | None = None

    def set_record(self, line: str) -> None:
        self.record = line
        if self.separator is None:
            self.fields = line.split()
        else:
            self.fields = line.split(self.separator)

    def field_value(self, index: int) -> str:
        if index == 0:
            return self.record
        return self.fields[index - 1] if 0 < index <= len(self.fields) else ""


def _num(value: str | float) -> float:
    if isinstance(value, float):
        return value
    match = re.match(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value)
    return float(match.group(0)) if match else 0.0


def _looks_numeric(value: str | float) -> bool:
    return (
        isinstance(value, float)
        or re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value) is not None
    )


def _str(value: str | float) -> str:
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else f"{value:.6g}"
    return value


def _truth(value: str | float) -> bool:
    return value != 0.0 if isinstance(value, float) else value != ""


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _Next(Exception):
    pass


_Stmt = Callable[[_State], None]


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.tok
        if text is not None and tok.text != text:
            raise AwkError(f"syntax error at source line 1: expected {text!r}, got {tok.text!r}")
        self.i += 1
        return tok

    def skip_newlines(self) -> None:
        while self.tok.kind == "nl" or self.tok.text == ";":
            self.i += 1

    # program ------------------------------------------------------------------
    def program(self) -> tuple[list[_Stmt], list[tuple[_Expr | None, list[_Stmt]]], list[_Stmt]]:
        begin: list[_Stmt] = []
        end: list[_Stmt] = []
        rules: list[tuple[_Expr | None, list[_Stmt]]] = []
        self.skip_newlines()
        while self.tok.kind != "end":
            if self.tok.text == "BEGIN":
                self.i += 1
                begin += self.block()
            elif self.tok.text == "END":
                self.i += 1
                end += self.block()
            elif self.tok.text == "{":
                rules.append((None, self.block()))
            else:
                pattern: _Expr | None = self.expr()
                body: list[_Stmt] = self.block() if self.tok.text == "{" else [_print_record]
                rules.append((pattern, body))
            self.skip_newlines()
        return begin, rules, end

    def block(self) -> list[_Stmt]:
        self.take("{")
        stmts: list[_Stmt] = []
        self.skip_newlines()
        while self.tok.text != "}":
            stmts.append(self.statement())
            self.skip_newlines()
        self.take("}")
        return stmts

    def statement(self) -> _Stmt:
        tok = self.tok
        if tok.text == "print":
            self.i += 1
            items: list[_Expr] = []
            if self.tok.text not in (";", "}") and self.tok.kind not in ("nl", "end"):
                items.append(self.expr())
                while self.tok.text == ",":
                    self.i += 1
                    items.append(self.expr())
            if not items:
                return _print_record

            def do_print(st: _State) -> None:
                st.out.append(" ".join(_str(e(st)) for e in items) + "\n")

            return do_print
        if tok.text == "exit":
            self.i += 1
            code: _Expr | None = None
            if self.tok.text not in (";", "}") and self.tok.kind not in ("nl", "end"):
                code = self.expr()

            def do_exit(st: _State) -> None:
                raise _Exit(int(_num(code(st))) if code is not None else 0)

            return do_exit
        if tok.text == "next":
            self.i += 1

            def do_next(_st: _State) -> None:
                raise _Next

            return do_next
        if tok.kind == "name" and self.toks[self.i + 1].text in ("=", "++", "--"):
            name = tok.text
            op = self.toks[self.i + 1].text
            self.i += 2
            if op == "=":
                value = self.expr()

                def assign(st: _State) -> None:
                    st.vars[name] = value(st)

                return assign
            delta = 1.0 if op == "++" else -1.0

            def bump(st: _State) -> None:
                st.vars[name] = _num(st.vars.get(name, 0.0)) + delta

            return bump
        expr = self.expr()

        def evaluate(st: _State) -> None:
            expr(st)

        return evaluate

    # expressions --------------------------------------------------------------
    def expr(self) -> _Expr:
        left = self.and_()
        while self.tok.text == "||":
            self.i += 1
            right = self.and_()
            left = (lambda a, b: lambda st: float(_truth(a(st)) or _truth(b(st))))(left, right)
        return left

    def and_(self) -> _Expr:
        left = self.match()
        while self.tok.text == "&&":
            self.i += 1
            right = self.match()
            left = (lambda a, b: lambda st: float(_truth(a(st)) and _truth(b(st))))(left, right)
        return left

    def match(self) -> _Expr:
        left = self.compare()
        while self.tok.text in ("~", "!~"):
            negate = self.take().text == "!~"
            if self.tok.kind == "re":
                pattern = re.compile(self.take().text)

                def regex(_st: _State, p: re.Pattern[str] = pattern) -> str:
                    return p.pattern

                right: _Expr = regex
            else:
                right = self.compare()
            left = (
                lambda a, b, n: lambda st: float(bool(re.search(_str(b(st)), _str(a(st)))) != n)
            )(left, right, negate)
        return left

    def compare(self) -> _Expr:
        left = self.concat()
        if self.tok.text in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
            right = self.concat()

            def cmp(st: _State, a: _Expr = left, b: _Expr = right) -> float:
                x, y = a(st), b(st)
                if _looks_numeric(x) and _looks_numeric(y):
                    p, q = _num(x), _num(y)
                    sign = (p > q) - (p < q)
                else:
                    r, t = _str(x), _str(y)
                    sign = (r > t) - (r < t)
                result = {
                    "==": sign == 0,
                    "!=": sign != 0,
                    "<": sign < 0,
                    "<=": sign <= 0,
                    ">": sign > 0,
                    ">=": sign >= 0,
                }[op]
                return float(result)

            return cmp
        return left

    def concat(self) -> _Expr:
        left = self.additive()
        while self.tok.kind in ("num", "str", "name") or self.tok.text in ("$", "("):
            right = self.additive()
            left = (lambda a, b: lambda st: _str(a(st)) + _str(b(st)))(left, right)
        return left

    def additive(self) -> _Expr:
        left = self.term()
        while self.tok.text in ("+", "-"):
            op = self.take().text
            right = self.term()
            if op == "+":
                left = (lambda a, b: lambda st: _num(a(st)) + _num(b(st)))(left, right)
            else:
                left = (lambda a, b: lambda st: _num(a(st)) - _num(b(st)))(left, right)
        return left

    def term(self) -> _Expr:
        left = self.unary()
        while self.tok.text in ("*", "/", "%"):
            op = self.take().text
            right = self.unary()

            def arith(st: _State, a: _Expr = left, b: _Expr = right, o: str = op) -> float:
                x, y = _num(a(st)), _num(b(st))
                if o == "*":
                    return x * y
                if y == 0:
                    raise AwkError("division by zero")
                return x / y if o == "/" else x % y

            left = arith
        return left

    def unary(self) -> _Expr:
        if self.tok.text == "!":
            self.i += 1
            inner = self.unary()
            return lambda st: float(not _truth(inner(st)))
        if self.tok.text == "-":
            self.i += 1
            inner = self.unary()
            return lambda st: -_num(inner(st))
        return self.primary()

    def primary(self) -> _Expr:
        tok = self.take()
        if tok.kind == "num":
            value = float(tok.text)
            return lambda _st: value
        if tok.kind == "str":
            text = bytes(tok.text[1:-1], "utf-8").decode("unicode_escape")
            return lambda _st: text
        if tok.kind == "re":
            pattern = re.compile(tok.text)
            return lambda st: float(bool(pattern.search(st.record)))
        if tok.text == "$":
            index = self.primary()
            return lambda st: st.field_value(int(_num(index(st))))
        if tok.text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if tok.kind == "name":
            name = tok.text
            if name == "NR":
                return lambda st: float(st.nr)
            if name == "NF":
                return lambda st: float(len(st.fields))
            if name == "length" and self.tok.text != "(":
                return lambda st: float(len(st.record))
            return lambda st: st.vars.get(name, "")
        raise AwkError(f"syntax error at source line 1: unexpected {tok.text!r}")


def _print_record(st: _State) -> None:
    st.out.append(st.record + "\n")


def run_awk(
    argv: list[str], stdin: str, files: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """``awk`` with ``argv`` (without the name); returns (status, stdout, stderr)."""
    state = _State()
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        opt = args.pop(0)
        if opt == "--":
            break
        if opt in ("-v", "-F") and args:
            opt += args.pop(0)
        if opt.startswith("-v") and "=" in opt:
            name, _, value = opt[2:].partition("=")
            state.vars[name] = value
        elif opt.startswith("-F"):
            state.separator = opt[2:].replace("\\t", "\t") or None
        else:
            return 2, "", f"awk: not an option: {opt}\n"
    if not args:
        return 2, "", "usage: awk [-F value] [-v var=value] 'prog' [file ...]\n"
    try:
        begin, rules, end = _Parser(_lex(args[0])).program()
    except AwkError as exc:
        return 2, "", f"awk: {exc}\n"
    texts = [stdin] if len(args) == 1 else [(files or {}).get(name, "") for name in args[1:]]
    status = 0
    try:
        try:
            for stmt in begin:
                stmt(state)
            for text in texts:
                for line in text.splitlines():
                    state.nr += 1
                    state.set_record(line)
                    try:
                        for pattern, body in rules:
                            if pattern is None or _truth(pattern(state)):
                                for stmt in body:
                                    stmt(state)
                    except _Next:
                        continue
        except _Exit as exc:
            status = exc.status
        for stmt in end:
            stmt(state)
    except _Exit as exc:
        status = exc.status
    except AwkError as exc:
        return 2, "".join(state.out), f"awk: {exc}\n"
    return status, "".join(state.out), ""
