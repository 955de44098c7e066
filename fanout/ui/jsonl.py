"""JsonSink: one compact JSON object per event, one per line (schema: docs/json-events.md).

Each object is ``{"event": "<snake_case event name>", <the event's fields in order>}``:
field names are the event dataclass's, enums are their values, ``at`` is ISO-8601
UTC with milliseconds, durations are seconds rounded to milliseconds. StepOutput
lines are left out unless ``include_output``; then each line is one ``step_output`` object
(``line``, not the event's batch of ``lines``, and not the ``progress`` fanout's own sinks
use). Every line is flushed at once; write
errors (a closed pipe) propagate to the caller.
"""

from __future__ import annotations

import dataclasses
import json
import re
from enum import Enum, IntEnum
from typing import TextIO

from fanout.events import Event, PlannedHost, RunMeta, StepOutput
from fanout.state import format_instant

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def event_name(event: Event) -> str:
    """``StepFinished`` → ``step_finished``."""
    return _SNAKE.sub("_", type(event).__name__).lower()


def _encode(name: str, value: object) -> JsonValue:
    match value:
        case IntEnum():  # an ExitCode
            return int(value)
        case Enum():
            return str(value.value)
        case float() if name == "at":
            return format_instant(value, millis=True)
        case int() | float() if name == "duration":
            return round(float(value), 3)
        case float():
            return round(value, 3)
        case str() | int() | None:
            return value
        case PlannedHost() | RunMeta():
            return {
                field.name: _encode(field.name, getattr(value, field.name))
                for field in dataclasses.fields(value)
            }
        case tuple():
            return [_encode(name, item) for item in value]
        case _:
            raise TypeError(f"cannot encode {name}={value!r} as JSON")


def event_to_json(event: Event) -> list[dict[str, JsonValue]]:
    """The JSON objects for ``event``, as documented in docs/json-events.md: one, or for a
    ``StepOutput`` (the lines one read completed) one ``step_output`` object per line."""
    if isinstance(event, StepOutput):
        return _output_to_json(event)
    record: dict[str, JsonValue] = {"event": event_name(event)}
    for field in dataclasses.fields(event):
        record[field.name] = _encode(field.name, getattr(event, field.name))
    return [record]


def _output_to_json(event: StepOutput) -> list[dict[str, JsonValue]]:
    at = _encode("at", event.at)
    return [
        {
            "event": "step_output",
            "run_id": event.run_id,
            "host": event.host,
            "step": event.step,
            "stream": str(event.stream.value),
            "line": line,
            "at": at,
        }
        for line in event.lines
    ]


class JsonSink:
    """An EventSink writing JSON lines to ``stream``."""

    def __init__(self, stream: TextIO, *, include_output: bool = False) -> None:
        self._stream = stream
        self._include_output = include_output

    def emit(self, event: Event) -> None:
        if isinstance(event, StepOutput) and not self._include_output:
            return
        self._write(*event_to_json(event))

    def _write(self, *records: dict[str, JsonValue]) -> None:
        self._stream.write(
            "".join(
                json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                for record in records
            )
        )
        self._stream.flush()
