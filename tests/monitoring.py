"""Readers for what `fanout check` prints, written from the specs, not from fanout's code:
the Nagios plugin output rules (Nagios Core "Plugin API": first line ``TEXT | PERFDATA``, long
text lines, a later ``|`` starting more perfdata; each datum
``'label'=value[UOM];warn;crit;min;max``) and the JSON Schema embedded in docs/check-json.md."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

REPO = Path(__file__).resolve().parents[1]
NAGIOS_STATES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}

_DATUM = re.compile(
    r"""(?P<label>'[^'=]+'|[^'=\s]+)=(?P<value>-?[0-9.]+|U)(?P<uom>[a-zA-Z%]*)"""
    r"""(?:;(?P<warn>[^;\s]*))?(?:;(?P<crit>[^;\s]*))?(?:;(?P<min>[^;\s]*))?(?:;(?P<max>[^;\s]*))?"""
)


@dataclass(frozen=True)
class Datum:
    label: str
    value: float | None  # None: U
    uom: str
    warn: str
    crit: str
    min: str
    max: str


@dataclass(frozen=True)
class PluginOutput:
    service: str  # "fanout"
    state: str  # OK / WARNING / CRITICAL / UNKNOWN, from the text
    text: str  # after "STATE - "
    perfdata: list[Datum]
    long_text: list[str]


def _data(text: str) -> list[Datum]:
    found = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _DATUM.match(text, position)
        if match is None:
            raise ValueError(f"not perfdata at {text[position:]!r}")
        value = match["value"]
        found.append(
            Datum(
                match["label"].strip("'"),
                None if value == "U" else float(value),
                match["uom"],
                match["warn"] or "",
                match["crit"] or "",
                match["min"] or "",
                match["max"] or "",
            )
        )
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return found


def parse_plugin_output(output: str) -> PluginOutput:
    """Split plugin output by the rules; raises ValueError when it breaks them."""
    lines = output.rstrip("\n").split("\n")
    first, _, perf = lines[0].partition("|")
    match = re.fullmatch(r"(\S+) (OK|WARNING|CRITICAL|UNKNOWN) - (.+)", first.strip())
    if match is None:
        raise ValueError(f"first line is not 'SERVICE STATE - text': {lines[0]!r}")
    perfdata = _data(perf)
    long_text: list[str] = []
    rest = lines[1:]
    for index, line in enumerate(rest):
        if "|" in line:
            text, _, more = line.partition("|")
            if text.strip():
                long_text.append(text.rstrip())
            perfdata += _data(" ".join([more, *rest[index + 1 :]]))
            break
        long_text.append(line)
    return PluginOutput(match[1], match[2], match[3], perfdata, long_text)


def check_json_schema() -> dict[str, Any]:
    """The schema block of docs/check-json.md."""
    text = (REPO / "docs" / "check-json.md").read_text()
    block = text.split("## JSON Schema", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    schema: dict[str, Any] = json.loads(block)
    return schema


def validate_check_json(document: Any) -> None:
    """Raises jsonschema.ValidationError when ``document`` breaks the documented schema."""
    schema = check_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)
