"""The asyncssh range fanout declares is the one CI tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [dep for dep in deps if dep.startswith("asyncssh")]
    return str(spec)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_nox_floor_session_pins_the_declared_lower_bound() -> None:
    """noxfile's ASYNCSSH_FLOOR is pyproject's lower bound for asyncssh, so CI proves it."""
    low = re.search(r">=([0-9.]+)", _declared())
    floor = re.search(r'ASYNCSSH_FLOOR = "([0-9.]+)"', (ROOT / "noxfile.py").read_text())
    assert low is not None
    assert floor is not None
    assert _version(floor[1])[:2] == _version(low[1])[:2]


def test_installed_asyncssh_is_within_the_declared_range() -> None:
    """The asyncssh these tests run on is inside the declared range."""
    low = re.search(r">=([0-9.]+)", _declared())
    high = re.search(r"<([0-9.]+)", _declared())
    assert low is not None
    assert high is not None
    assert _version(low[1]) <= _version(asyncssh.__version__) < _version(high[1])
