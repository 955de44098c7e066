"""`fanout run` tunes the cyclic GC before its event loop (``cli.long_lived_heap``); `demo`,
whose in-process sshds leave many cycles, keeps the interpreter's defaults."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import fanout.runner
import fanout.sim.demo
from fanout.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"


@pytest.fixture
def gc_state() -> Iterator[list[tuple[tuple[int, int, int], int]]]:
    """What the GC looked like when the command's run began; the GC restored afterwards."""
    threshold = gc.get_threshold()
    seen: list[tuple[tuple[int, int, int], int]] = []
    yield seen
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _record(seen: list[tuple[tuple[int, int, int], int]]) -> Any:
    def fake_run(options: object) -> int:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return 0

    return fake_run


def test_run_freezes_the_loaded_heap_and_collects_young_objects_less_often(
    gc_state: list[tuple[tuple[int, int, int], int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.unfreeze()
    monkeypatch.setattr(fanout.runner, "run_inventory", _record(gc_state))
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--batch"])
    assert result.exit_code == 0, result.output
    [(threshold, frozen)] = gc_state
    assert threshold[0] == 10_000
    assert frozen > 1000  # the modules and the inventory loaded by then


def test_demo_keeps_the_default_gc(
    gc_state: list[tuple[tuple[int, int, int], int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    monkeypatch.setattr(fanout.sim.demo, "run_demo", _record(gc_state))
    result = CliRunner().invoke(app, ["demo", "--batch"])
    assert result.exit_code == 0, result.output
    assert gc_state == [(before, 0)]
