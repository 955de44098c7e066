"""Inventory: YAML in, the frozen domain types of ``fanout.model`` out, validated once at the door.

Every error is an ``InventoryError`` carrying the file, the line and the key path.
Nothing downstream re-validates.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import socket
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

import yaml

from fanout.errors import InventoryError
from fanout.model import (
    DEFAULT_LEVEL_MAX_AGE,
    DEFAULT_STEPS,
    MAX_PARALLEL,
    MAX_PRIORITY,
    MAX_RETRIES,
    AdoptPolicy,
    ClusterSettings,
    Group,
    Host,
    Inventory,
    LevelPolicy,
    Notify,
    NotifyOn,
    OnFailure,
    Settings,
    StepDef,
    StepKind,
    TimeOfDay,
    parse_duration,
    parse_time_of_day,
)
from fanout.policy import weekday_number
from fanout.scheduler import duration_problem
from fanout.steps import BUILTIN_STEPS, refused_in_run, rman_commands

# --- loading ------------------------------------------------------------------------


def load_inventory(path: Path) -> Inventory:
    """Read and validate ``path``; hosts come sorted by (priority, position in the file).

    Raises InventoryError, whose ``str()`` is one line, ``file:line: key.path: what``,
    with the path as given (line None when the file cannot be read at all).

    ``${NAME}`` in a string value becomes that environment variable (unset: an error),
    ``$$`` is a literal ``$``, any other ``$`` stays. Step bodies (``rman:``/``shell:``)
    are remote text and never expanded; integer keys take YAML integers only. A host's
    ``tags`` and ``steps`` replace those of ``defaults`` (``tags: []`` clears them).
    ``oracle_home`` is a path on the database host: absolute, ``~`` not expanded.
    Local paths (identity_file, known_hosts, ssh_config, state_dir) expand ``~``.
    """
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(file, None, "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError(file, line, "", "not valid UTF-8") from exc
    root = _compose_fast(text)
    try:
        if root is None:  # no libyaml, an empty file, or an error: say it as PyYAML does
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark and exc.context_mark and mark.index >= len(text):  # at the end: where it began
            mark = exc.context_mark
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        at = mark.line + 1 if mark else None
        raise InventoryError(file, at, "", f"invalid YAML: {what}") from exc
    except RecursionError as exc:  # compose recurses once per nesting level
        raise InventoryError(file, None, "", "invalid YAML: nested too deeply") from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise InventoryError(file, line, "", f"invalid YAML: {exc.reason}") from exc
    if root is None:
        raise InventoryError(file, None, "", "the file is empty (expected a mapping with 'hosts')")
    reader = _Reader(file, BUILTIN_STEPS)
    settings, hosts = reader.read(root)
    return Inventory(
        path=path,
        settings=settings,
        hosts=tuple(sorted(hosts, key=lambda host: (host.priority, host.index))),
        steps=MappingProxyType(reader.steps),
        sha256=hashlib.sha256(data).hexdigest(),
        groups=MappingProxyType(reader.groups),
    )


_Choice = TypeVar("_Choice", bound=StrEnum)


def _compose_fast(text: str) -> yaml.Node | None:
    """The node tree by libyaml when PyYAML has it (6x faster on a 2,000-host file; the same
    tags, values and line marks), or None: then the pure-Python loader composes (and words
    any error) exactly as before."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return None
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=loader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return node


_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # hosts, steps, tags: safe in file names
_SID = re.compile(r"[A-Za-z][A-Za-z0-9_$#]{0,29}")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_ADDRESS = re.compile(r"[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]{0,252}")  # never a leading '-' (an option)
_DECIMAL = re.compile(r"[-+]?[0-9]+")  # not YAML 1.1's 0x1f, 017 (octal!) or 1:30
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_NAME_RULE = "letters, digits, '.', '_', '-'"
_CATALOG = re.compile(r"/@[A-Za-z0-9_][A-Za-z0-9_.$#-]{0,127}")  # a wallet entry: /@TNS_ALIAS
_WALLET = "put catalog credentials in an Oracle wallet and write catalog: /@TNS_ALIAS"


def _describe(node: yaml.Node) -> str:
    """What the user wrote, for "expected X, got Y"."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping" if node.value else "an empty mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list" if node.value else "an empty list"
    if node.tag == _NULL:
        return str(node.value) or "nothing"
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        return f"the string {node.value!r}"
    return repr(node.value)


def _hint(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Walks the composed YAML nodes: every check holds its node, hence its line."""

    def __init__(self, file: str, builtins: Mapping[str, StepDef]) -> None:
        self.file = file
        self.builtins = builtins
        self.steps: dict[str, StepDef] = dict(builtins)
        self.host_lines: dict[str, int] = {}  # name → line, for duplicates
        self.databases: dict[tuple[str, str], str] = {}  # (address, sid) → host name
        self.requires: list[tuple[str, yaml.Node, str]] = []  # (step, node, key path)
        self.groups: dict[str, Group] = {}  # capacity groups (`groups:`)

    def fail(self, node: yaml.Node, key_path: str, message: str) -> NoReturn:
        raise InventoryError(self.file, node.start_mark.line + 1, key_path, message)

    # -- structure --

    def pairs(self, node: yaml.Node, path: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """A mapping's (key, value) nodes. Duplicate keys are errors: PyYAML keeps the last."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping, got {_describe(node)}")
        first_line: dict[str, int] = {}
        for key, _ in node.value:
            if key.tag == _MERGE:
                self.fail(key, path, "YAML merge keys ('<<') are not supported")
            if not isinstance(key, yaml.ScalarNode):
                self.fail(key, path, f"expected a string key, got {_describe(key)}")
            if key.value in first_line:
                first = first_line[key.value]
                self.fail(key, path, f"duplicate key {key.value!r} (first on line {first})")
            first_line[key.value] = key.start_mark.line + 1
        return list(node.value)

    def fields(
        self, node: yaml.Node, path: str, allowed: Collection[str], required: Sequence[str] = ()
    ) -> dict[str, yaml.Node]:
        """The values of a mapping by key, after checking for unknown and missing keys."""
        if node.tag == _NULL and not required:
            return {}  # `settings:` with every child commented out
        found: dict[str, yaml.Node] = {}
        for key, value in self.pairs(node, path):
            if key.value not in allowed:
                self.fail(key, path, f"unknown key {key.value!r}{_hint(key.value, allowed)}")
            found[key.value] = value
        for name in required:
            if name not in found:
                self.fail(node, path, f"missing required key {name!r}")
        return found

    def parsed(
        self, fields: Mapping[str, yaml.Node], path: str, parsers: _Parsers
    ) -> dict[str, Any]:
        """Each present key through its parser; each parser returns its dataclass field's type."""
        return {key: parsers[key](self, node, f"{path}.{key}") for key, node in fields.items()}

    # -- scalars --

    def text(self, node: yaml.Node, path: str, expected: str = "a string") -> str:
        """A scalar as written (`tags: [no]` stays 'no', not False), ``${VAR}`` expanded."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, path, f"expected {expected}, got {_describe(node)}")

        def expand(match: re.Match[str]) -> str:
            name = match[1]
            if match[0] == "$$":
                return "$"
            if name is None:
                self.fail(node, path, "unterminated '${' (write '$$' for a literal '$')")
            if not _ENV_NAME.fullmatch(name):
                self.fail(node, path, f"invalid environment reference {match[0]!r}")
            if name not in os.environ:
                self.fail(node, path, f"environment variable {name!r} is not set")
            return os.environ[name]

        value = _ENV_REF.sub(expand, node.value)
        if "\0" in value:
            self.fail(node, path, "contains a NUL character")
        return value

    def choice(self, node: yaml.Node, path: str, kind: type[_Choice]) -> _Choice:
        """One of a StrEnum's values, as written (``expected continue or stop, got 'halt'``)."""
        choices = [member.value for member in kind]
        value = self.text(node, path)
        if value not in choices:
            listed = " or ".join(choices) if len(choices) == 2 else ", ".join(choices)
            self.fail(node, path, f"expected {listed}, got {value!r}")
        return kind(value)

    def matching(self, node: yaml.Node, path: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.text(node, path, what)
        if not pattern.fullmatch(value):
            self.fail(node, path, f"expected {what}, got {value!r}")
        return value

    def integer(self, node: yaml.Node, path: str, what: str, low: int, high: int) -> int:
        is_int = isinstance(node, yaml.ScalarNode) and node.tag == _INT
        digits = is_int and _DECIMAL.fullmatch(node.value) and len(node.value) <= 20
        value = int(node.value) if digits else None  # 20 digits: never int()'s 4300 limit
        if value is None or not low <= value <= high:
            shown = _describe(node)
            shown = shown if len(shown) <= 40 else f"{shown[:20]}…{shown[-10:]}"
            self.fail(node, path, f"expected {what}, got {shown}")
        return value

    def positive(self, node: yaml.Node, path: str) -> int:
        return self.integer(node, path, "a positive integer", 1, MAX_PRIORITY)

    def parallel(self, node: yaml.Node, path: str) -> int:
        return self.integer(node, path, f"an integer from 1 to {MAX_PARALLEL}", 1, MAX_PARALLEL)

    def count(self, node: yaml.Node, path: str) -> int:
        return self.integer(node, path, f"an integer from 0 to {MAX_RETRIES}", 0, MAX_RETRIES)

    def port(self, node: yaml.Node, path: str) -> int:
        return self.integer(node, path, "a port number (1-65535)", 1, 65535)

    def duration(self, node: yaml.Node, path: str, *, allow_zero: bool = False) -> float:
        value = self.text(node, path, "a duration")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(node, path, str(exc))
        if seconds == 0 and not allow_zero:
            self.fail(node, path, f"expected a positive duration, got {value!r}")
        return seconds

    def timeout(self, node: yaml.Node, path: str) -> float:
        return self.duration(node, path)

    def grace(self, node: yaml.Node, path: str) -> float:
        return self.duration(node, path, allow_zero=True)  # 0: SIGTERM right after SIGINT

    def local_path(self, node: yaml.Node, path: str) -> Path:
        value = self.text(node, path, "a path")
        expanded = os.path.expanduser(value)  # an unknown ~user stays as written
        if _CONTROL.search(value):
            self.fail(node, path, f"contains a control character: {value!r}")
        if not os.path.isabs(expanded):
            self.fail(node, path, f"expected an absolute path (or ~/...), got {value!r}")
        return Path(expanded)

    def oracle_home(self, node: yaml.Node, path: str) -> str:
        value = self.text(node, path, "an absolute path")
        if _CONTROL.search(value):
            self.fail(node, path, f"contains a control character: {value!r}")
        if not value.startswith("/"):
            self.fail(node, path, f"expected an absolute path on the database host, got {value!r}")
        return value

    def user(self, node: yaml.Node, path: str) -> str | None:
        if node.tag == _NULL:
            return None  # defer to the ssh config (overrides a user from defaults)
        return self.matching(node, path, _USER, "a POSIX user name")

    def ssh_port(self, node: yaml.Node, path: str) -> int | None:
        if node.tag == _NULL:
            return None  # defer to the ssh config (overrides a port from defaults)
        return self.integer(node, path, "a port number (1-65535)", 1, 65535)

    def keepalive(self, node: yaml.Node, path: str) -> float:
        return self.duration(node, path, allow_zero=True)  # 0: no keepalives

    # -- fleet policy (issue 13) --

    def boolean(self, node: yaml.Node, path: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.fail(node, path, f"expected true or false, got {_describe(node)}")
        return node.value.lower() in ("true", "yes", "on", "y")

    def catalog(self, node: yaml.Node, path: str) -> str:
        """A recovery catalog reached through an Oracle wallet. The value is never echoed:
        whatever else was written may hold a password."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, path, f"expected /@TNS_ALIAS, got {_describe(node)}")
        value = self.text(node, path)
        if not _CATALOG.fullmatch(value):
            self.fail(node, path, f"expected /@TNS_ALIAS (no user, no password); {_WALLET}")
        return value

    def remote_text(self, node: yaml.Node, path: str) -> str:
        """Shell text run on the host (a ``when:`` condition): taken as written, never
        ``${VAR}``-expanded here (the remote shell expands it)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL or not node.value.strip():
            self.fail(node, path, f"expected a shell command, got {_describe(node)}")
        if "\0" in node.value:
            self.fail(node, path, "contains a NUL character")
        return str(node.value)

    def database(self, node: yaml.Node, path: str) -> str:
        return self.matching(node, path, _NAME, f"a database name of {_NAME_RULE}")

    def body_line(self, node: yaml.Node, line: int) -> int:
        """The file line of line ``line`` (1-based) of a scalar's text."""
        block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
        return node.start_mark.line + line + (1 if block else 0)

    def rman_body(self, node: yaml.Node, path: str, body: str) -> None:
        """Refuse what RMAN refuses inside RUN, naming the step (never echoing the text)."""
        refused = refused_in_run(body)
        if refused is None:
            return
        line, word = refused
        if word == "CONNECT":
            what = f"CONNECT is not allowed in a step: {_WALLET} (defaults or host)"
        elif word == "CONFIGURE":
            what = "CONFIGURE is not allowed inside RUN: move it to the step's configure: list"
        elif word in "{}":
            what = f"'{word}' is not allowed: fanout writes the RUN {{ }} block itself"
        else:
            what = f"{word} is not allowed inside RUN (RMAN accepts it only at its prompt)"
        raise InventoryError(self.file, self.body_line(node, line), path, what)

    def configure(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, path, f"expected a list of CONFIGURE commands, got {_describe(node)}")
        found = []
        for index, item in enumerate(node.value):
            item_path = f"{path}[{index}]"
            if not isinstance(item, yaml.ScalarNode) or item.tag == _NULL:
                self.fail(item, item_path, f"expected a CONFIGURE command, got {_describe(item)}")
            command = " ".join(str(item.value).split()).rstrip(";").rstrip()
            words = [word for _, word in rman_commands(command)]
            if words != ["CONFIGURE"] or "\0" in command:
                first = words[0] if words else "nothing"
                if first == "CONNECT":
                    self.fail(item, item_path, f"expected a CONFIGURE command; {_WALLET}")
                self.fail(item, item_path, f"expected one CONFIGURE command, got {first}")
            found.append(command + ";")
        return tuple(found)

    def weekdays(self, node: yaml.Node, path: str) -> frozenset[int]:
        days = set()
        for day, item, item_path in self.names(node, path, "weekday"):
            number = weekday_number(day)
            if number is None:
                self.fail(item, item_path, f"expected a weekday (mon … sun), got {day!r}")
            days.add(number)
        return frozenset(days)

    def names(self, node: yaml.Node, path: str, what: str) -> list[tuple[str, yaml.Node, str]]:
        """A list of distinct names, each with its node and key path."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got {_describe(node)}")
        found: list[tuple[str, yaml.Node, str]] = []
        for index, item in enumerate(node.value):
            item_path = f"{path}[{index}]"
            name = self.text(item, item_path, f"a {what} name")
            if any(name == other for other, _, _ in found):
                self.fail(item, item_path, f"duplicate {what} {name!r}")
            found.append((name, item, item_path))
        return found

    def tags(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        found = self.names(node, path, "tag")
        for tag, item, item_path in found:
            if not _NAME.fullmatch(tag):
                self.fail(item, item_path, f"expected a tag of {_NAME_RULE}, got {tag!r}")
        return tuple(tag for tag, _, _ in found)

    def step_names(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        found = self.names(node, path, "step")
        if not found:
            self.fail(node, path, "expected at least one step")
        for name, item, item_path in found:
            if name not in self.steps:
                hint = _hint(name, self.steps) or f" (known: {', '.join(sorted(self.steps))})"
                self.fail(item, item_path, f"unknown step {name!r}{hint}")
        return tuple(name for name, _, _ in found)

    # -- monitoring (issue 14) --

    def max_age(self, node: yaml.Node, path: str) -> dict[str, float]:
        """``{kind: duration}``: freshness thresholds by step name, or ``<step>/level0`` and
        ``<step>/level1`` for a step of the level policy."""
        found: dict[str, float] = {}
        for key, value in self.pairs(node, path):
            step, _, level = key.value.partition("/")
            if level and step in self.steps:
                if self.steps[step].levels is None or level not in ("level0", "level1"):
                    what = (
                        "expected level0 or level1"
                        if self.steps[step].levels is not None
                        else f"step {step!r} has no level policy (no per-level kinds)"
                    )
                    self.fail(key, f"{path}.{key.value}", what)
                found[key.value] = self.timeout(value, f"{path}.{key.value}")
                continue
            if key.value not in self.steps:
                hint = _hint(key.value, self.steps) or f" (known: {', '.join(sorted(self.steps))})"
                self.fail(key, f"{path}.{key.value}", f"unknown step {key.value!r}{hint}")
            found[key.value] = self.timeout(value, f"{path}.{key.value}")
        return found

    def resolve_max_age(
        self, steps: Sequence[str], own: Mapping[str, float], defaults: Mapping[str, float]
    ) -> tuple[tuple[str, float], ...]:
        """Per step of the host: own > steps.<name>.max_age > defaults (``model.max_age_of``
        adds the built-in DEFAULT_MAX_AGE)."""
        resolved = []
        for name in steps:
            step = self.steps.get(name)
            if step is not None and step.levels is not None:  # judged per level
                for level in (0, 1):
                    kind = f"{name}/level{level}"
                    plain = step.max_age if level == 0 else None  # steps.<name>.max_age: level 0
                    sources = (own.get(kind), plain, defaults.get(kind))
                    limit = next((s for s in sources if s), DEFAULT_LEVEL_MAX_AGE[level])
                    resolved.append((kind, float(limit)))
                continue
            for source in (own.get(name), step and step.max_age, defaults.get(name)):
                if source:
                    resolved.append((name, float(source)))
                    break
        return tuple(resolved)

    def fraction(self, node: yaml.Node, path: str) -> float:
        expected = "a number above 0 and at most 1 (e.g. 0.8)"
        value = self.text(node, path, expected)
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number <= 1:
            self.fail(node, path, f"expected {expected}, got {value!r}")
        return number

    def notify(self, node: yaml.Node, path: str) -> Notify:
        """A list (the command) or a mapping with command, on and timeout."""
        if isinstance(node, yaml.SequenceNode):
            return Notify(self.argv(node, path))
        fields = self.fields(node, path, ("command", "on", "timeout"), required=("command",))
        notify = Notify(self.argv(fields["command"], f"{path}.command"))
        if "on" in fields:
            notify = replace(notify, on=self.choice(fields["on"], f"{path}.on", NotifyOn))
        if "timeout" in fields:
            notify = replace(notify, timeout=self.timeout(fields["timeout"], f"{path}.timeout"))
        return notify

    def argv(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        expected = "a command as a list of strings, e.g. [mail, -s, subject, dba@example.com]"
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, path, f"expected {expected}, got {_describe(node)}")
        return tuple(
            self.text(item, f"{path}[{index}]", "a string") for index, item in enumerate(node.value)
        )

    def cluster(self, node: yaml.Node, path: str) -> ClusterSettings:
        """``settings.cluster``: etcd endpoints (required), this node, the group, timers, TLS."""
        fields = self.fields(node, path, _CLUSTER_KEYS, required=("endpoints",))
        if not fields:
            self.fail(node, path, "expected a mapping with 'endpoints'")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            at = f"{path}.{key}"
            if key == "endpoints":
                found = self.names(value, at, "endpoint")
                if not found:
                    self.fail(value, at, "expected at least one host:port")
                for endpoint, item, item_path in found:
                    if not _ENDPOINT.fullmatch(endpoint):
                        self.fail(item, item_path, f"expected host:port, got {endpoint!r}")
                values[key] = tuple(endpoint for endpoint, _, _ in found)
            elif key in ("node", "group"):
                values[key] = self.matching(value, at, _NAME, f"a name of {_NAME_RULE}")
            elif key in ("ttl", "request_timeout", "unavailable_after"):
                values[key] = self.duration(value, at)
            elif key == "dedupe":
                values[key] = self.duration(value, at, allow_zero=True)
            elif key == "adopt":
                word = self.text(value, at, "wait or stop")
                if word not in set(AdoptPolicy):
                    self.fail(value, at, f"expected wait or stop, got {word!r}")
                values[key] = AdoptPolicy(word)
            elif key == "prefix":
                values[key] = self.matching(value, at, _PREFIX, "a key prefix like /fanout")
            elif key == "user":
                values[key] = self.text(value, at, "an etcd user name")
            else:  # ca_file, cert_file, key_file, password_file
                values[key] = self.local_path(value, at)
        if values.get("ttl", 5.0) < 2.0:
            self.fail(fields["ttl"], f"{path}.ttl", "expected at least 2s (etcd rounds to seconds)")
        if ("cert_file" in values) != ("key_file" in values):
            self.fail(node, path, "cert_file and key_file go together")
        if ("user" in values) != ("password_file" in values):
            self.fail(node, path, "user and password_file go together")
        values.setdefault("node", _default_node())
        values.setdefault("group", Path(self.file).stem or "fanout")
        return ClusterSettings(**values)

    # -- sections --

    def read(self, root: yaml.Node) -> tuple[Settings, list[Host]]:
        if not isinstance(root, yaml.MappingNode):
            self.fail(
                root, "", f"expected a mapping with 'hosts' at the top, got {_describe(root)}"
            )
        top = self.fields(
            root, "", ("settings", "defaults", "steps", "groups", "hosts"), required=("hosts",)
        )
        section = {
            key: self.fields(top[key], key, parsers) for key, parsers in _SECTIONS if key in top
        }
        settings = Settings(**self.parsed(section.get("settings", {}), "settings", _SETTINGS))
        if "steps" in top and top["steps"].tag != _NULL:
            for key, node in self.pairs(top["steps"], "steps"):
                self.steps[key.value] = self.step(key, node)
        self.check_requires()
        if "groups" in top and top["groups"].tag != _NULL:
            self.read_groups(top["groups"])
        defaults = self.parsed(section.get("defaults", {}), "defaults", _INHERITED)
        hosts_node = top["hosts"]
        if not isinstance(hosts_node, yaml.SequenceNode) or not hosts_node.value:
            self.fail(
                hosts_node, "hosts", f"expected a non-empty list, got {_describe(hosts_node)}"
            )
        hosts = [self.host(node, index, defaults) for index, node in enumerate(hosts_node.value)]
        return settings, hosts

    def step(self, key: yaml.ScalarNode, node: yaml.Node) -> StepDef:
        name, path = key.value, f"steps.{key.value}"
        if not _NAME.fullmatch(name):
            self.fail(key, path, f"expected a step name of {_NAME_RULE}")
        builtin = self.builtins.get(name)
        kinds = (builtin.kind.value,) if builtin else ("rman", "shell")
        fields = self.fields(node, path, (*kinds, *_STEP_KEYS))
        given = [kind for kind in kinds if kind in fields]
        if builtin is None and len(given) != 1:
            self.fail(node, path, "a custom step takes exactly one of 'rman' or 'shell'")
        step = builtin or StepDef(name, StepKind(given[0]), "")
        if given:
            body = fields[given[0]]
            if not isinstance(body, yaml.ScalarNode) or not str(body.value).strip():
                self.fail(body, f"{path}.{given[0]}", f"expected commands, got {_describe(body)}")
            if "\0" in body.value:
                self.fail(body, f"{path}.{given[0]}", "contains a NUL character")
            step = replace(step, body=body.value)  # remote text: no ${VAR} expansion
        step = self.step_policy(step, fields, path)
        if "on_failure" in fields:
            on_failure = self.choice(fields["on_failure"], f"{path}.on_failure", OnFailure)
            step = replace(step, on_failure=on_failure)
        if "retries" in fields:
            step = replace(step, retries=self.count(fields["retries"], f"{path}.retries"))
        if "timeout" in fields:
            step = replace(step, timeout=self.timeout(fields["timeout"], f"{path}.timeout"))
        if "window_duration" in fields:
            node_w, path_w = fields["window_duration"], f"{path}.window_duration"
            if self.boolean(node_w, path_w):
                if step.kind is not StepKind.RMAN:
                    self.fail(node_w, path_w, "only an RMAN step can take DURATION")
                problem = duration_problem(step.body)
                if problem is not None:
                    self.fail(node_w, path_w, problem)
                step = replace(step, window_duration=True)

        if "empty_ok" in fields:
            step = replace(step, empty_ok=self.boolean(fields["empty_ok"], f"{path}.empty_ok"))
        if "max_age" in fields:
            step = replace(step, max_age=self.timeout(fields["max_age"], f"{path}.max_age"))
        return step

    def step_policy(self, step: StepDef, fields: Mapping[str, yaml.Node], path: str) -> StepDef:
        """configure, requires, when and the level policy of one step (issue 13)."""
        rman_only = ("configure", *_LEVEL_KEYS)
        for key in rman_only:
            if key in fields and step.kind is not StepKind.RMAN:
                self.fail(fields[key], f"{path}.{key}", "only an RMAN step takes this key")
        if "configure" in fields:
            step = replace(step, configure=self.configure(fields["configure"], f"{path}.configure"))
        if "requires" in fields:
            found = self.names(fields["requires"], f"{path}.requires", "step")
            for required, item, item_path in found:
                if required == step.name:
                    self.fail(item, item_path, "a step cannot require itself")
                self.requires.append((required, item, item_path))
            step = replace(step, requires=tuple(required for required, _, _ in found))
        if "when" in fields:
            step = replace(step, when=self.remote_text(fields["when"], f"{path}.when"))
        if any(key in fields for key in _LEVEL_KEYS) or step.levels is not None:
            levels = step.levels or LevelPolicy()
            if "level0_every" in fields:
                every = fields["level0_every"]
                if every.tag == _NULL:
                    levels = replace(levels, level0_every=None)
                else:
                    seconds = self.timeout(every, f"{path}.level0_every")
                    levels = replace(levels, level0_every=seconds)
            if "level0_on" in fields:
                days = self.weekdays(fields["level0_on"], f"{path}.level0_on")
                levels = replace(levels, level0_on=days)
            if "cumulative" in fields:
                cumulative = self.boolean(fields["cumulative"], f"{path}.cumulative")
                levels = replace(levels, cumulative=cumulative)
            step = replace(step, levels=levels)
            if "{level}" not in step.body:
                kind = step.kind.value
                self.fail(
                    fields.get(kind, next(iter(fields.values()))),
                    f"{path}.{kind}",
                    "expected commands containing {level} (the level policy writes 0 or 1)",
                )
        if step.kind is StepKind.RMAN:
            body_node = fields.get("rman")
            if body_node is not None:
                self.rman_body(body_node, f"{path}.rman", step.body)
        return step

    def check_requires(self) -> None:
        """Every ``requires`` names a step the inventory knows."""
        for required, item, item_path in self.requires:
            if required not in self.steps:
                hint = _hint(required, self.steps) or f" (known: {', '.join(sorted(self.steps))})"
                self.fail(item, item_path, f"unknown step {required!r}{hint}")

    def host_requires(self, host: Host, node: yaml.Node, path: str) -> None:
        """A required step must run on the host before the step that requires it."""
        for position, name in enumerate(host.steps):
            for required in self.steps[name].requires:
                if required not in host.steps[:position]:
                    where = "comes after it" if required in host.steps else "is not in its steps"
                    self.fail(
                        node,
                        f"{path}.steps",
                        f"step {name!r} requires {required!r}, which {where}",
                    )

    # -- the backup window --

    def read_groups(self, node: yaml.Node) -> None:
        """`groups: {nfs1: {max_parallel: 2}}`: capacity groups that hosts name in `group:`."""
        for key, value in self.pairs(node, "groups"):
            path = f"groups.{key.value}"
            if not _NAME.fullmatch(key.value):
                self.fail(key, path, f"expected a group name of {_NAME_RULE}")
            fields = self.fields(value, path, ("max_parallel",), required=("max_parallel",))
            limit = self.positive(fields["max_parallel"], f"{path}.max_parallel")
            self.groups[key.value] = Group(key.value, limit)

    def group_refs(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        """A host's `group:`, one name or a list, each defined under `groups:`."""
        if isinstance(node, yaml.SequenceNode):
            found = self.names(node, path, "group")
        else:
            found = [(self.text(node, path, "a group name"), node, path)]
        for name, item, item_path in found:
            if name not in self.groups:
                known = _hint(name, self.groups) or (
                    f" (known: {', '.join(sorted(self.groups))})"
                    if self.groups
                    else " (define it under 'groups:')"
                )
                self.fail(item, item_path, f"unknown group {name!r}{known}")
        return tuple(name for name, _, _ in found)

    def time_of_day(self, node: yaml.Node, path: str) -> TimeOfDay:
        value = self.text(node, path, "a time of day")
        try:
            when = parse_time_of_day(value)
        except ValueError as exc:
            self.fail(node, path, str(exc))
        if when.zone is not None:
            problem = zone_problem(when.zone)
            if problem is not None:
                self.fail(node, path, problem)
        return when

    def host(self, node: yaml.Node, index: int, defaults: Mapping[str, Any]) -> Host:
        path = f"hosts[{index}]"
        fields = self.fields(node, path, _HOST_KEYS, required=_HOST_REQUIRED)
        own = {key: value for key, value in fields.items() if key in _INHERITED}
        values = {**defaults, **self.parsed(own, path, _INHERITED)}
        values.setdefault("oracle_home", None)  # None: resolved on the host from its oratab
        own_max_age = values.pop("max_age", {}) if "max_age" in own else {}
        values["max_age"] = self.resolve_max_age(
            values.get("steps", DEFAULT_STEPS), own_max_age, defaults.get("max_age", {})
        )

        def at(key: str) -> tuple[yaml.Node, str]:
            return fields[key], f"{path}.{key}"

        host = Host(
            name=self.matching(*at("name"), _NAME, f"a host name of {_NAME_RULE}"),
            address=self.matching(*at("address"), _ADDRESS, "a hostname, IP address or ssh alias"),
            priority=self.positive(*at("priority")),
            oracle_sid=self.matching(*at("oracle_sid"), _SID, "an ORACLE_SID like ORCL or PROD_1"),
            index=index,
            groups=self.group_refs(*at("group")) if "group" in fields else (),
            **values,
        )
        if host.name in self.host_lines:
            first = self.host_lines[host.name]
            self.fail(*at("name"), f"duplicate host name {host.name!r} (first on line {first})")
        self.host_lines[host.name] = fields["name"].start_mark.line + 1
        database = (host.address.lower(), host.oracle_sid)  # DNS names ignore case; SIDs do not
        if database in self.databases:
            other = self.databases[database]
            self.fail(
                *at("oracle_sid"),
                f"{host.oracle_sid} on {host.address} is already backed up by host {other!r}"
                " (two backups of one database would wait on each other)",
            )
        self.databases[database] = host.name
        steps_node = fields.get("steps", node)
        self.host_requires(host, steps_node, path)
        return host


_Parsers = Mapping[str, Callable[[_Reader, yaml.Node, str], object]]

_SETTINGS: _Parsers = {
    "max_parallel": _Reader.parallel,
    "cancel_grace": _Reader.grace,
    "state_dir": _Reader.local_path,
    "max_connecting": _Reader.parallel,
    "orphan_timeout": _Reader.timeout,
    "retention": _Reader.timeout,  # a positive duration: logs and runs older are pruned
    "window_end": _Reader.time_of_day,
    "hard_deadline": _Reader.boolean,
    # monitoring (issue 14)
    "max_age_warn": _Reader.fraction,
    "metrics_file": _Reader.local_path,
    "notify": _Reader.notify,
    "cluster": _Reader.cluster,
}
_CLUSTER_KEYS = (
    "endpoints",
    "node",
    "group",
    "ttl",
    "dedupe",
    "request_timeout",
    "unavailable_after",
    "adopt",
    "prefix",
    "ca_file",
    "cert_file",
    "key_file",
    "user",
    "password_file",
)
_ENDPOINT = re.compile(r"[A-Za-z0-9_.-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")
_PREFIX = re.compile(r"(/[A-Za-z0-9._-]+)+")


def _default_node() -> str:
    """This machine's short host name, made a valid node name."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64] or "node"


# Keys of `defaults`, and of a host, which inherits them.
_INHERITED: _Parsers = {
    "user": _Reader.user,
    "port": _Reader.ssh_port,
    "oracle_home": _Reader.oracle_home,
    "lock_dir": _Reader.oracle_home,  # also an absolute path on the database host
    "identity_file": _Reader.local_path,
    "known_hosts": _Reader.local_path,
    "ssh_config": _Reader.local_path,
    "step_timeout": _Reader.timeout,
    "retries": _Reader.count,
    "connect_retries": _Reader.count,
    "connect_timeout": _Reader.timeout,
    "keepalive_interval": _Reader.keepalive,
    "keepalive_count_max": _Reader.positive,
    "steps": _Reader.step_names,
    "tags": _Reader.tags,
    # fleet policy (issue 13)
    "oratab": _Reader.oracle_home,  # an absolute path on the database host
    "catalog": _Reader.catalog,
    "catalog_optional": _Reader.boolean,
    "when": _Reader.remote_text,
    "database": _Reader.database,
    "max_age": _Reader.max_age,  # merged key by key: host over defaults (see resolve_max_age)
}
_LEVEL_KEYS = ("level0_every", "level0_on", "cumulative")
_STEP_KEYS = (
    "on_failure",
    "retries",
    "timeout",
    "configure",
    "requires",
    "when",
    "empty_ok",
    "window_duration",
    "max_age",
    *_LEVEL_KEYS,
)
_HOST_REQUIRED = ("name", "address", "priority", "oracle_sid")
_HOST_KEYS = (*_HOST_REQUIRED, *_INHERITED, "group")
_SECTIONS = (("settings", _SETTINGS), ("defaults", _INHERITED))


def zone_problem(zone: str) -> str | None:
    """Why ``zone`` is not a usable time zone name, or None."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {zone!r} (expected an IANA name like Europe/Paris or UTC)"
    return None
