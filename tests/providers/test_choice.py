"""Which local model ``local_model = "auto"`` uses on a machine (pure logic)."""

from __future__ import annotations

from core import models
from core.providers.choice import (
    MIN_AVAILABLE_FOR_LOCAL_MODEL,
    Machine,
    preferred_local_model,
    this_machine,
)

GIB = 1 << 30


def test_the_small_model_on_any_machine_with_the_memory_for_it() -> None:
    assert preferred_local_model(Machine(2, 24 * GIB)) == models.QWEN_05B
    # More cores do not earn the 1.5B model: it measured no better once checked.
    assert preferred_local_model(Machine(32, 128 * GIB)) == models.QWEN_05B
    assert preferred_local_model(Machine(2, MIN_AVAILABLE_FOR_LOCAL_MODEL)) == models.QWEN_05B


def test_too_little_memory_means_no_local_model() -> None:
    assert preferred_local_model(Machine(8, MIN_AVAILABLE_FOR_LOCAL_MODEL - 1)) is None
    assert preferred_local_model(Machine(8, GIB)) is None


def test_unknown_memory_does_not_stop_the_model() -> None:
    assert preferred_local_model(Machine(4, None)) == models.QWEN_05B


def test_this_machine_reads_real_figures() -> None:
    m = this_machine()
    assert m.cores >= 1
    assert m.available_bytes is None or m.available_bytes > 0
