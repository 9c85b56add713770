"""Which local model ``local_model = "auto"`` prefers on a machine (pure logic)."""

from __future__ import annotations

from core import models
from core.providers.choice import (
    LARGE_MODEL_MIN_AVAILABLE,
    LARGE_MODEL_MIN_CORES,
    Machine,
    preferred_local_model,
    this_machine,
)

GIB = 1 << 30


def test_a_small_machine_prefers_the_small_model() -> None:
    assert preferred_local_model(Machine(2, 24 * GIB)) == models.QWEN_05B
    assert preferred_local_model(Machine(LARGE_MODEL_MIN_CORES - 1, 64 * GIB)) == models.QWEN_05B


def test_cores_and_memory_together_earn_the_larger_model() -> None:
    big = Machine(LARGE_MODEL_MIN_CORES, LARGE_MODEL_MIN_AVAILABLE)
    assert preferred_local_model(big) == models.QWEN_15B
    assert preferred_local_model(Machine(16, LARGE_MODEL_MIN_AVAILABLE - 1)) == models.QWEN_05B


def test_unknown_memory_is_not_taken_for_plenty() -> None:
    assert preferred_local_model(Machine(16, None)) == models.QWEN_05B


def test_this_machine_reads_real_figures() -> None:
    m = this_machine()
    assert m.cores >= 1
    assert m.available_bytes is None or m.available_bytes > 0
