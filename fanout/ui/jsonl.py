"""JsonSink: one compact JSON object per event, one per line (schema: docs/json-events.md).

Each object is ``{"event": "<snake_case event name>", <the event's fields in order>}``:
field names are the event dataclass's, enums are their values, ``at`` is ISO-8601
UTC with milliseconds, durations are seconds rounded to milliseconds. StepOutput
lines are left out unless ``include_output``. Every line is flushed at once; write
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


# Fields for fanout's own sinks, not part of the documented JSON stream.
NOT_IN_JSON: frozenset[tuple[type, str]] = frozenset(
    {(StepOutput, "progress")}  # the engine's parse handed to RunState
)


def event_to_json(event: Event) -> dict[str, JsonValue]:
    """The JSON object for ``event``, as documented in docs/json-events.md."""
    record: dict[str, JsonValue] = {"event": event_name(event)}
    for field in dataclasses.fields(event):
        if (type(event), field.name) in NOT_IN_JSON:
            continue
        record[field.name] = _encode(field.name, getattr(event, field.name))
    return record


class JsonSink:
    """An EventSink writing JSON lines to ``stream``."""

    def __init__(self, stream: TextIO, *, include_output: bool = False) -> None:
        self._stream = stream
        self._include_output = include_output

    def emit(self, event: Event) -> None:
        if isinstance(event, StepOutput) and not self._include_output:
            return
        line = json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":"))
        self._stream.write(line + "\n")
        self._stream.flush()
