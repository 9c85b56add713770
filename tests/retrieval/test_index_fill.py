"""Vectors filled in behind keyword search reach the index through ``IndexDelta.filled``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import RetrievalSettings
from core.db.engine import create_engine_for, upgrade_schema
from core.retrieval.search import SearchIndex
from core.types import Chunk, IndexDelta


def _chunk(cid: int, doc: int, text: str) -> Chunk:
    return Chunk(cid, doc, f"/docs/{doc}.txt", 0, text, 0, len(text), None, ())


def test_filled_vectors_join_keyword_indexed_passages_and_skip_removed_ones(
    tmp_path: Path,
) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")
    upgrade_schema(engine)
    index = SearchIndex(RetrievalSettings(), tmp_path / "index", dim=4)
    index.load(engine, "test-model")  # an empty knowledge base
    index.apply(
        IndexDelta(
            added=(_chunk(1, 1, "kettle descaling with vinegar"), _chunk(2, 2, "ferry at dawn")),
            kinds=("text", "text"),
            documents=frozenset({1, 2}),
        )
    )
    query = np.asarray([0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    # Keyword search is live; meaning search sees nothing yet.
    assert [h.chunk_id for h in index.search("kettle", None, k=2, fusion="bm25")] == [1]
    assert index.vector_count == 0 and index.search("x", query, k=2, fusion="vector") == []

    index.apply(IndexDelta(removed=(2,), documents=frozenset({2})))
    vectors = np.asarray([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)
    index.apply(IndexDelta(filled=(1, 2), filled_vectors=vectors))
    assert index.vector_count == 1  # chunk 2 was removed before its vector came
    hits = index.search("x", query, k=2, fusion="vector")
    assert [h.chunk_id for h in hits] == [1] and hits[0].vector_score == 0.0
    index.close()
    engine.dispose()
