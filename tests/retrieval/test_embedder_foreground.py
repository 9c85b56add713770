"""A question's work goes first: bulk encoding pauses while ``Embedder.foreground`` is held."""

from __future__ import annotations

import threading

import numpy as np

from core.config import EmbeddingSettings
from core.embedding import Embedder
from core.types import FloatArray


class _CountingEncoder:
    """Stands in for the model: records each call's size, returns unit rows."""

    dim = 4

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: list[str], batch_size: int) -> FloatArray:
        self.calls.append(len(texts))
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows[:, 0] = 1.0
        return rows


def _embedder() -> tuple[Embedder, _CountingEncoder]:
    embedder = Embedder(EmbeddingSettings())
    encoder = _CountingEncoder()
    embedder._model = encoder  # the model's loading is not what is tested here
    embedder.dim = encoder.dim
    return embedder, encoder


def test_bulk_encoding_waits_while_a_question_is_answered_and_then_finishes() -> None:
    embedder, encoder = _embedder()
    texts = [f"passage {i}" for i in range(40)]
    result: list[FloatArray] = []
    with embedder.foreground():
        assert embedder.paused
        worker = threading.Thread(
            target=lambda: result.append(embedder.encode_bulk(texts, batch_size=8, slice_size=10))
        )
        worker.start()
        worker.join(timeout=0.3)
        # Held: not one slice was encoded, but a question's own vector still is.
        assert worker.is_alive() and encoder.calls == []
        embedder.encode_query("the question")
        assert encoder.calls == [1]
    worker.join(timeout=5)
    assert not worker.is_alive() and not embedder.paused
    assert encoder.calls == [1, 10, 10, 10, 10]
    assert result[0].shape == (40, 4)


def test_foreground_is_released_when_the_answer_fails() -> None:
    embedder, _ = _embedder()
    try:
        with embedder.foreground():
            raise TimeoutError("the model did not answer")
    except TimeoutError:
        pass
    assert not embedder.paused


def test_a_short_bulk_call_waits_too() -> None:
    embedder, encoder = _embedder()
    with embedder.foreground():
        worker = threading.Thread(target=lambda: embedder.encode_bulk(["one", "two"], batch_size=8))
        worker.start()
        worker.join(timeout=0.2)
        assert worker.is_alive() and encoder.calls == []
    worker.join(timeout=5)
    assert encoder.calls == [2]
