"""Numbers in the inventory have sane bounds: whatever number or duration is written, loading
either succeeds within the bounds or fails with one ``file:line: key: expected …`` line, never
a traceback or an overflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanout.errors import InventoryError
from fanout.inventory import load_inventory
from fanout.model import MAX_DURATION, MAX_PARALLEL, MAX_RETRIES, format_duration

TEMPLATE = """\
settings:
  {settings_key}: {settings_value}
defaults:
  oracle_home: /u01/app/oracle
  {defaults_key}: {defaults_value}
hosts:
  - {{name: a, address: h, priority: 1, oracle_sid: A}}
"""

SETTINGS_KEYS = ("max_parallel", "max_connecting", "cancel_grace")
DEFAULTS_KEYS = ("port", "retries", "connect_retries", "step_timeout", "connect_timeout")

digits = st.text("0123456789", min_size=1, max_size=450)
durations = st.one_of(
    digits,
    st.builds(lambda n, u: f"{n}{u}", digits, st.sampled_from("dhms")),
    st.builds(lambda a, b: f"{a}.{b}s", digits, digits),
    st.builds(lambda d, h: f"{d}d{h}h", digits, digits),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [".inf", "-.inf", ".nan", "1e20", "0x1f", "017", "1:30", "~", "''", "[]", "9" * 5000]
    ),
    digits,
    durations,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(repr),
)


def load(tmp_path: Path, settings_key: str, settings_value: str, key: str, value: str) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text(
        TEMPLATE.format(
            settings_key=settings_key,
            settings_value=settings_value,
            defaults_key=key,
            defaults_value=value,
        )
    )
    try:
        inventory = load_inventory(path)
    except InventoryError as exc:
        line = str(exc)
        assert "\n" not in line
        assert re.match(rf"{re.escape(str(path))}:\d+: (settings|defaults)\.\w+: ", line), line
        return
    s, host = inventory.settings, inventory.hosts[0]
    assert 1 <= s.max_parallel <= MAX_PARALLEL
    assert 1 <= s.max_connecting <= MAX_PARALLEL
    assert 0 <= host.retries <= MAX_RETRIES
    assert 0 <= host.connect_retries <= MAX_RETRIES
    assert host.port is None or 1 <= host.port <= 65535
    for seconds in (s.cancel_grace, host.step_timeout, host.connect_timeout):
        assert 0 <= seconds <= MAX_DURATION
        format_duration(seconds)  # every view formats it: must not raise


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    settings_key=st.sampled_from(SETTINGS_KEYS),
    settings_value=numbers,
    key=st.sampled_from(DEFAULTS_KEYS),
    value=numbers,
)
def test_random_numbers_never_raise_a_traceback(
    tmp_path: Path, settings_key: str, settings_value: str, key: str, value: str
) -> None:
    """Any number or duration under any numeric key: loaded within bounds, or one error line."""
    load(tmp_path, settings_key, settings_value, key, value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("step_timeout", "9" * 400 + "s", "expected a duration of at most 30d"),
        ("step_timeout", "100000000000000000000d", "expected a duration of at most 30d"),
        ("connect_timeout", "9" * 400, "expected a duration of at most 30d"),
        ("connect_timeout", ".inf", "expected a duration like"),
        ("retries", "2147483648", "expected an integer from 0 to 100"),
        ("retries", "9" * 5000, "expected an integer from 0 to 100"),
        ("port", "65536", "expected a port number (1-65535)"),
    ],
)
def test_out_of_range_values_name_file_line_and_key(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    """The issue's examples: each is one line `file:5: defaults.KEY: expected …`."""
    path = tmp_path / "nightly.yaml"
    path.write_text(
        TEMPLATE.format(
            settings_key="max_parallel", settings_value=4, defaults_key=key, defaults_value=value
        )
    )
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value).startswith(f"{path}:5: defaults.{key}: {expected}")


def test_settings_bounds(tmp_path: Path) -> None:
    """max_parallel and max_connecting above 10000 are rejected at load, with file:line: key."""
    path = tmp_path / "nightly.yaml"
    for key in ("max_parallel", "max_connecting"):
        path.write_text(
            TEMPLATE.format(
                settings_key=key, settings_value=10_001, defaults_key="retries", defaults_value=0
            )
        )
        with pytest.raises(InventoryError, match=rf":2: settings\.{key}: expected an integer from"):
            load_inventory(path)
