"""The part of POSIX ``sh`` a simulated host understands, parsed. Pure: ``interp.py`` runs it.

fanout sends every step as ``exec /bin/sh -c '<script>'``; the script is the pgid line, the
environment prologue, the per-database lock (a function, ``if``, ``$(...)``, traps) and the
step itself (see ``fanout/steps.py``). Rather than pattern-match that text, the sim parses it
as ``sh`` would and runs it, so a change to the wrapper needs no change here.

Supported: words with ``'…'``, ``"…"``, ``\\``; ``$NAME``, ``${NAME}``, ``$1``, ``$$``, ``$?``,
``$#``, ``$(…)``, ```…```, ``$((…))``; ``;`` ``&`` (run in the foreground) ``&&`` ``||``
``|`` ``!``; redirections ``<`` ``>`` ``>>`` ``>&``; ``{ …; }``, ``( … )``, ``if/elif/else``,
``while``/``until``, ``for``, ``name() { …; }``. Not supported: globbing, here-documents,
``case``, aliases. Unsupported text stays literal and usually ends as ``not found``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AndOr",
    "Brace",
    "Command",
    "For",
    "FuncDef",
    "If",
    "Loop",
    "Part",
    "PartKind",
    "Pipeline",
    "Redirect",
    "Sequence",
    "ShellSyntaxError",
    "Simple",
    "Subshell",
    "Word",
    "parse",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL_VARS = frozenset("$?#!@*0123456789")
RESERVED = frozenset(
    {"if", "then", "elif", "else", "fi", "while", "until", "do", "done", "for", "in", "{", "}", "!"}
)


class ShellSyntaxError(ValueError):
    """The script cannot be parsed; ``str()`` is what dash prints after ``sh: 1: ``."""


class PartKind(StrEnum):
    LIT = "lit"
    VAR = "var"  # text: the variable name
    CMD = "cmd"  # text: the script inside $( ) or ` `
    ARITH = "arith"  # text: the expression inside $(( ))


@dataclass(frozen=True, slots=True)
class Part:
    kind: PartKind
    text: str
    quoted: bool  # inside "…" or '…': never field-split


@dataclass(frozen=True, slots=True)
class Word:
    parts: tuple[Part, ...]
    assign: str | None = None  # NAME for ``NAME=value`` (parts are the value)

    @property
    def literal(self) -> str | None:
        """The text of an unquoted, expansion-free word (a reserved word candidate)."""
        if self.assign is None and len(self.parts) == 1:
            part = self.parts[0]
            if part.kind is PartKind.LIT and not part.quoted:
                return part.text
        return None


@dataclass(frozen=True, slots=True)
class Redirect:
    fd: int
    op: str  # "<", ">", ">>", ">&", "<&"
    target: Word


@dataclass(frozen=True, slots=True)
class Simple:
    assignments: tuple[Word, ...]
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple[AndOr, ...]


@dataclass(frozen=True, slots=True)
class Brace:
    body: Sequence
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class Subshell:
    body: Sequence
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class If:
    clauses: tuple[tuple[Sequence, Sequence], ...]  # (condition, body): if, then each elif
    otherwise: Sequence | None
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class Loop:
    condition: Sequence
    body: Sequence
    until: bool
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class For:
    name: str
    words: tuple[Word, ...] | None  # None: "$@"
    body: Sequence
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True, slots=True)
class FuncDef:
    name: str
    body: Command


Command = Simple | Brace | Subshell | If | Loop | For | FuncDef


@dataclass(frozen=True, slots=True)
class Pipeline:
    commands: tuple[Command, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class AndOr:
    """``first && second || third``: each operator in ``rest`` applies left to right."""

    first: Pipeline
    rest: tuple[tuple[str, Pipeline], ...] = ()


# --- tokenizer --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Builder:
    parts: list[Part] = field(default_factory=list)
    started: bool = False
    quoted: bool = False
    assign: str | None = None

    def add(self, kind: PartKind, text: str, quoted: bool) -> None:
        self.started = True
        last = self.parts[-1] if self.parts else None
        if (
            kind is PartKind.LIT
            and last is not None
            and last.kind is PartKind.LIT
            and last.quoted == quoted
        ):
            self.parts[-1] = Part(kind, last.text + text, quoted)
        else:
            self.parts.append(Part(kind, text, quoted))

    def name_so_far(self) -> bool:
        return (
            not self.quoted
            and len(self.parts) == 1
            and self.parts[0].kind is PartKind.LIT
            and _NAME.fullmatch(self.parts[0].text) is not None
        )


_Token = Word | Redirect | str  # str: an operator ; && || | ( )


def _matching(text: str, start: int, open_: str, close: str) -> int:
    """Index of the ``close`` balancing an ``open_`` just before ``start``; quotes respected."""
    depth, i = 1, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end == -1:
                break
            i = end + 1
            continue
        if ch == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
            continue
        if text.startswith(close, i):
            depth -= 1
            if depth == 0:
                return i
            i += len(close)
            continue
        i += 1
    raise ShellSyntaxError(f'Syntax error: end of file unexpected (expecting "{close}")')


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.out: list[_Token] = []
        self.word = _Builder()

    def end_word(self) -> None:
        if self.word.started:
            self.out.append(Word(tuple(self.word.parts), self.word.assign))
        self.word = _Builder()

    def dollar(self, quoted: bool) -> None:
        text, at = self.text, self.i
        nxt = text[at + 1 : at + 2]
        if text.startswith("$((", at):
            end = _matching(text, at + 3, "(", ")")
            if not text.startswith("))", end):
                raise ShellSyntaxError('Syntax error: ")" expected')
            self.word.add(PartKind.ARITH, text[at + 3 : end], quoted)
            self.i = end + 2
        elif nxt == "(":
            end = _matching(text, at + 2, "(", ")")
            self.word.add(PartKind.CMD, text[at + 2 : end], quoted)
            self.i = end + 1
        elif nxt == "{":
            end = text.find("}", at + 2)
            if end == -1:
                raise ShellSyntaxError("Syntax error: Missing '}'")
            self.word.add(PartKind.VAR, text[at + 2 : end], quoted)
            self.i = end + 1
        elif nxt and nxt in _SPECIAL_VARS:
            self.word.add(PartKind.VAR, nxt, quoted)
            self.i = at + 2
        elif match := _NAME.match(text, at + 1):
            self.word.add(PartKind.VAR, match.group(0), quoted)
            self.i = match.end()
        else:
            self.word.add(PartKind.LIT, "$", quoted)
            self.i = at + 1

    def backtick(self, quoted: bool) -> None:
        end = self.text.find("`", self.i + 1)
        if end == -1:
            raise ShellSyntaxError("Syntax error: EOF in backquote substitution")
        self.word.add(PartKind.CMD, self.text[self.i + 1 : end], quoted)
        self.i = end + 1

    def double_quoted(self) -> None:
        text = self.text
        self.word.quoted = True
        self.word.add(PartKind.LIT, "", True)
        self.i += 1
        while True:
            if self.i >= len(text):
                raise ShellSyntaxError("Syntax error: Unterminated quoted string")
            ch = text[self.i]
            if ch == '"':
                self.i += 1
                return
            if ch == "\\" and text[self.i + 1 : self.i + 2] in ("$", "`", '"', "\\", "\n"):
                if text[self.i + 1] != "\n":
                    self.word.add(PartKind.LIT, text[self.i + 1], True)
                self.i += 2
            elif ch == "$":
                self.dollar(quoted=True)
            elif ch == "`":
                self.backtick(quoted=True)
            else:
                self.word.add(PartKind.LIT, ch, True)
                self.i += 1

    def redirect(self) -> None:
        text = self.text
        fd = 0 if text[self.i] == "<" else 1
        word = self.word
        if word.started and not word.quoted and len(word.parts) == 1:
            only = word.parts[0]
            if only.kind is PartKind.LIT and only.text.isdigit():
                fd = int(only.text)
                self.word = _Builder()
        self.end_word()
        op = text[self.i : self.i + 2]
        if op not in (">>", ">&", "<&"):
            op = text[self.i]
        self.i += len(op)
        while self.i < len(text) and text[self.i] in " \t":
            self.i += 1
        before = len(self.out)
        self.scan(stop_at_blank=True)
        if len(self.out) != before + 1 or not isinstance(self.out[-1], Word):
            raise ShellSyntaxError("Syntax error: redirection unexpected")
        target = self.out.pop()
        assert isinstance(target, Word)
        self.out.append(Redirect(fd, op, target))

    def scan(self, *, stop_at_blank: bool = False) -> list[_Token]:
        text = self.text
        while self.i < len(text):
            ch = text[self.i]
            if ch in " \t\n" or (stop_at_blank and ch in ";&|<>()"):
                if stop_at_blank:
                    break
                self.end_word()
                if ch == "\n":
                    self.out.append(";")
                self.i += 1
            elif ch == "#" and not self.word.started:
                end = text.find("\n", self.i)
                self.i = len(text) if end == -1 else end
            elif ch in ";&|()":
                self.end_word()
                pair = text[self.i : self.i + 2]
                if pair in ("&&", "||"):
                    self.out.append(pair)
                    self.i += 2
                else:
                    self.out.append(";" if ch == "&" else ch)
                    self.i += 1
            elif ch in "<>":
                self.redirect()
            elif ch == "'":
                end = text.find("'", self.i + 1)
                if end == -1:
                    raise ShellSyntaxError("Syntax error: Unterminated quoted string")
                self.word.quoted = True
                self.word.add(PartKind.LIT, text[self.i + 1 : end], True)
                self.i = end + 1
            elif ch == '"':
                self.double_quoted()
            elif ch == "\\":
                if text[self.i + 1 : self.i + 2] not in ("", "\n"):
                    self.word.add(PartKind.LIT, text[self.i + 1], True)
                    self.word.quoted = True
                self.i += 2
            elif ch == "$":
                self.dollar(quoted=False)
            elif ch == "`":
                self.backtick(quoted=False)
            elif ch == "=" and self.word.assign is None and self.word.name_so_far():
                self.word.assign = self.word.parts[0].text
                self.word.parts.clear()
                self.i += 1
            else:
                self.word.add(PartKind.LIT, ch, False)
                self.i += 1
        self.end_word()
        return self.out


# --- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def reserved(self) -> str | None:
        token = self.peek()
        if isinstance(token, Word) and (text := token.literal) in RESERVED:
            return text
        return None

    def expect(self, word: str) -> None:
        if self.reserved() != word:
            found = self.describe(self.peek())
            raise ShellSyntaxError(f'Syntax error: {found} unexpected (expecting "{word}")')
        self.i += 1

    @staticmethod
    def describe(token: _Token | None) -> str:
        if token is None:
            return "end of file"
        if isinstance(token, Word):
            return f'"{token.literal or "word"}"'
        if isinstance(token, Redirect):
            return "redirection"
        return f'"{token}"'

    def skip_separators(self) -> None:
        while self.peek() == ";":
            self.i += 1

    def sequence(self, terminators: frozenset[str]) -> Sequence:
        items: list[AndOr] = []
        while True:
            self.skip_separators()
            token = self.peek()
            if token is None or token == ")" or self.reserved() in terminators:
                return Sequence(tuple(items))
            items.append(self.and_or())
            token = self.peek()
            if token == ";":
                continue
            if token is None or token == ")" or self.reserved() in terminators:
                return Sequence(tuple(items))
            raise ShellSyntaxError(f"Syntax error: {self.describe(token)} unexpected")

    def and_or(self) -> AndOr:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while (op := self.peek()) in ("&&", "||"):
            self.i += 1
            self.skip_separators()
            rest.append((str(op), self.pipeline()))
        return AndOr(first, tuple(rest))

    def pipeline(self) -> Pipeline:
        negate = False
        if self.reserved() == "!":
            negate = True
            self.i += 1
        commands = [self.command()]
        while self.peek() == "|":
            self.i += 1
            self.skip_separators()
            commands.append(self.command())
        return Pipeline(tuple(commands), negate)

    def redirects(self) -> tuple[Redirect, ...]:
        found: list[Redirect] = []
        while isinstance(token := self.peek(), Redirect):
            found.append(token)
            self.i += 1
        return tuple(found)

    def command(self) -> Command:
        word = self.reserved()
        token = self.peek()
        if word == "{":
            self.i += 1
            body = self.sequence(frozenset({"}"}))
            self.expect("}")
            return Brace(body, self.redirects())
        if token == "(":
            self.i += 1
            body = self.sequence(frozenset())
            if self.peek() != ")":
                raise ShellSyntaxError('Syntax error: end of file unexpected (expecting ")")')
            self.i += 1
            return Subshell(body, self.redirects())
        if word == "if":
            return self.if_clause()
        if word in ("while", "until"):
            self.i += 1
            condition = self.sequence(frozenset({"do"}))
            self.expect("do")
            body = self.sequence(frozenset({"done"}))
            self.expect("done")
            return Loop(condition, body, word == "until", self.redirects())
        if word == "for":
            return self.for_clause()
        if word is not None and word not in ("!",):
            raise ShellSyntaxError(f'Syntax error: "{word}" unexpected')
        if (
            isinstance(token, Word)
            and token.literal is not None
            and self.tokens[self.i + 1 : self.i + 3] == ["(", ")"]
        ):
            self.i += 3
            self.skip_separators()
            return FuncDef(token.literal, self.command())
        return self.simple()

    def if_clause(self) -> If:
        clauses: list[tuple[Sequence, Sequence]] = []
        otherwise: Sequence | None = None
        self.i += 1  # if
        while True:
            condition = self.sequence(frozenset({"then"}))
            self.expect("then")
            body = self.sequence(frozenset({"elif", "else", "fi"}))
            clauses.append((condition, body))
            word = self.reserved()
            self.i += 1
            if word == "elif":
                continue
            if word == "else":
                otherwise = self.sequence(frozenset({"fi"}))
                self.expect("fi")
            elif word != "fi":
                self.i -= 1
                self.expect("fi")
            return If(tuple(clauses), otherwise, self.redirects())

    def for_clause(self) -> For:
        self.i += 1  # for
        token = self.peek()
        if not isinstance(token, Word) or token.literal is None:
            raise ShellSyntaxError("Syntax error: Bad for loop variable")
        self.i += 1
        words: tuple[Word, ...] | None = None
        self.skip_separators()
        if self.reserved() == "in":
            self.i += 1
            found: list[Word] = []
            while isinstance(item := self.peek(), Word):
                found.append(item)
                self.i += 1
            words = tuple(found)
        self.skip_separators()
        self.expect("do")
        body = self.sequence(frozenset({"done"}))
        self.expect("done")
        return For(token.literal, words, body, self.redirects())

    def simple(self) -> Simple:
        assignments: list[Word] = []
        words: list[Word] = []
        redirects: list[Redirect] = []
        while True:
            token = self.peek()
            if isinstance(token, Redirect):
                redirects.append(token)
            elif isinstance(token, Word):
                if token.assign is not None and not words:
                    assignments.append(token)
                elif token.assign is not None:  # after the command name: an argument
                    lead = Part(PartKind.LIT, f"{token.assign}=", False)
                    words.append(Word((lead, *token.parts)))
                else:
                    words.append(token)
            else:
                break
            self.i += 1
        if not (assignments or words or redirects):
            raise ShellSyntaxError(f"Syntax error: {self.describe(self.peek())} unexpected")
        return Simple(tuple(assignments), tuple(words), tuple(redirects))


def parse(text: str) -> Sequence:
    """Parse ``text`` as an ``sh -c`` script. Raises ShellSyntaxError."""
    parser = _Parser(_Lexer(text).scan())
    body = parser.sequence(frozenset())
    if parser.peek() is not None:
        raise ShellSyntaxError(f"Syntax error: {parser.describe(parser.peek())} unexpected")
    return body
