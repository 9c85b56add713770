"""SearchIndex over a real SQLite knowledge base: page ranking and vectors of older recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.retrieval.search import SearchIndex
from core.retrieval.text import embedding_key
from core.types import ChunkDraft, ExtractedDocument

MODEL = "test-model"
DIM = 4


def _doc(engine: sa.Engine, path: str, passages: list[str]) -> list[int]:
    text = "\n\n".join(passages)
    drafts, pos = [], 0
    for i, passage in enumerate(passages):
        drafts.append(ChunkDraft(i, passage, pos, pos + len(passage), None, ("Title",)))
        pos += len(passage) + 2
    with engine.begin() as conn:
        _, ids, _ = store.write_document(
            conn,
            path=path,
            content_hash=path,
            size=len(text),
            mtime=0.0,
            doc=ExtractedDocument(text=text, kind="text"),
            drafts=drafts,
            existing_id=None,
        )
    return ids


def _vectors(engine: sa.Engine, key: str, texts_vectors: dict[str, list[float]]) -> None:
    with engine.begin() as conn:
        store.store_embeddings(
            conn,
            key,
            {store.text_hash(t): np.asarray(v, dtype=np.float32) for t, v in texts_vectors.items()},
        )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    eng = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")
    upgrade_schema(eng)
    return eng


def _index(tmp_path: Path, engine: sa.Engine, **settings: Any) -> SearchIndex:
    index = SearchIndex(RetrievalSettings(**settings), tmp_path / "index", dim=DIM)
    index.load(engine, MODEL)
    return index


def test_fused_results_open_with_one_passage_per_page(tmp_path: Path, engine: sa.Engine) -> None:
    a = _doc(engine, "/kb/a.txt", ["kettle descaling vinegar", "kettle descaling steps", "other"])
    b = _doc(engine, "/kb/b.txt", ["kettle descaling guide"])
    _vectors(
        engine,
        embedding_key(MODEL),
        {
            "kettle descaling vinegar": [1, 0, 0, 0],
            "kettle descaling steps": [0.9, 0.1, 0, 0],
            "other": [0, 0, 1, 0],
            "kettle descaling guide": [0.8, 0.2, 0, 0],
        },
    )
    index = _index(tmp_path, engine)
    query = np.asarray([1, 0, 0, 0], dtype=np.float32)
    hits = index.search("kettle descaling", query, k=3)
    assert [h.chunk_id for h in hits][:2] == [a[0], b[0]]  # page a's second passage waits
    assert hits[2].chunk_id == a[1]
    off = _index(tmp_path / "off", engine, page_depth=0, max_per_document=0)
    assert [h.chunk_id for h in off.search("kettle descaling", query, k=3)][:2] == [a[0], a[1]]
    # Answers ask for the fused passage order with page ranking on in the settings.
    passages = index.search("kettle descaling", query, k=3, by_page=False)
    assert [h.chunk_id for h in passages][:2] == [a[0], a[1]]


def test_vectors_of_an_older_recipe_fill_in_until_reingested(
    tmp_path: Path, engine: sa.Engine
) -> None:
    old = _doc(engine, "/kb/old.txt", ["made before headings were embedded"])
    new = _doc(engine, "/kb/new.txt", ["made with headings"])
    _vectors(engine, MODEL, {"made before headings were embedded": [1, 0, 0, 0]})
    _vectors(engine, embedding_key(MODEL), {"made with headings": [0, 1, 0, 0]})
    index = _index(tmp_path, engine)
    assert index.vector_count == 2
    hits = index.search("", np.asarray([1, 0, 0, 0], dtype=np.float32), k=2, fusion="vector")
    assert [h.chunk_id for h in hits] == [old[0], new[0]]
