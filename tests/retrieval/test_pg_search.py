"""What only the PostgreSQL index promises: sharing, SQL fusion, vectors filled in later."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.db.pg_schema import drop_search_schema
from core.errors import StorageError
from core.retrieval.backend import open_search_backend
from core.retrieval.fusion import reciprocal_rank_fusion
from core.retrieval.pg_search import PgSearchIndex, at_most_per_group
from core.retrieval.search import SearchIndex
from core.types import Chunk, ChunkDraft, ExtractedDocument, IndexDelta
from tests.retrieval.test_index_contract import MODEL, unit
from tests.support.postgres import PostgresServer

# Fused order as SQL computes it: no page ranking, no per-document cap.
PLAIN = RetrievalSettings(page_depth=0, max_per_document=0)


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Iterator[sa.Engine]:
    eng = create_engine_for(postgres_server.new_database("pgsearch"))
    upgrade_schema(eng)
    yield eng
    eng.dispose()


def write(engine: sa.Engine, path: str, passages: list[str]) -> tuple[Chunk, ...]:
    text = "\n\n".join(passages)
    drafts, pos = [], 0
    for i, p in enumerate(passages):
        drafts.append(ChunkDraft(i, p, pos, pos + len(p), None))
        pos += len(p) + 2
    with engine.begin() as conn:
        doc_id, ids, _ = store.write_document(
            conn,
            path=path,
            content_hash=path,
            size=len(text),
            mtime=0.0,
            doc=ExtractedDocument(text=text, kind="text"),
            drafts=drafts,
            existing_id=None,
        )
    return tuple(
        Chunk(cid, doc_id, path, d.ordinal, d.text, d.start, d.end, None)
        for cid, d in zip(ids, drafts, strict=True)
    )


def opened(engine: sa.Engine, settings: RetrievalSettings = PLAIN, **kw: bool) -> PgSearchIndex:
    index = PgSearchIndex(settings, **kw)
    index.load(engine, MODEL)
    return index


def test_a_second_instance_searches_what_the_first_indexed(engine: sa.Engine) -> None:
    first, second = opened(engine), opened(engine)
    chunks = write(engine, "/kb/a.txt", ["Estuary salinity rose after the storm."])
    first.apply(IndexDelta(added=chunks, vectors=unit(1)[None, :], kinds=("text",)))
    assert second.size == 1 and second.vector_count == 1
    assert [h.chunk_id for h in second.search("salinity", unit(1), k=3)] == [chunks[0].id]


def test_fusion_in_sql_is_reciprocal_rank_fusion_of_both_lists(engine: sa.Engine) -> None:
    index = opened(engine)
    rng = np.random.default_rng(0)
    words = ["tide", "gauge", "buoy", "salinity", "estuary", "heron", "probe", "wiper"]
    passages = [" ".join(rng.choice(words, size=6)) for _ in range(30)]
    chunks = write(engine, "/kb/many.txt", passages)
    vectors = np.vstack([unit(100 + i) for i in range(len(chunks))])
    index.apply(IndexDelta(added=chunks, vectors=vectors, kinds=("text",) * len(chunks)))
    query = unit(105) + 0.5 * unit(110)
    query /= np.linalg.norm(query)
    bm25 = index.search("tide buoy heron", None, k=30, fusion="bm25")
    vec = index.search("", query, k=30, fusion="vector")
    fused = index.search("tide buoy heron", query, k=30, fusion="rrf")
    expected = reciprocal_rank_fusion(
        [[h.chunk_id for h in bm25], [h.chunk_id for h in vec]], k=PLAIN.rrf_k
    )[:30]
    assert [(h.chunk_id, pytest.approx(h.score)) for h in fused] == [
        (cid, pytest.approx(score)) for cid, score in expected
    ]


def test_vectors_that_arrive_later_fill_in_without_new_postings(engine: sa.Engine) -> None:
    index = opened(engine)
    chunks = write(engine, "/kb/a.txt", ["Kelp density survey", "Kelp canopy height"])
    index.apply(IndexDelta(added=chunks, kinds=("text", "text")))
    before = index.search("kelp canopy", None, k=2, fusion="bm25")
    assert index.vector_count == 0
    index.apply(IndexDelta(added=chunks, vectors=np.vstack([unit(1), unit(2)])))
    assert index.size == 2 and index.vector_count == 2
    assert index.search("kelp canopy", None, k=2, fusion="bm25") == before
    assert index.search("", unit(2), k=1, fusion="vector")[0].chunk_id == chunks[1].id


def test_exact_and_hnsw_vector_search_agree_on_a_small_set(engine: sa.Engine) -> None:
    chunks = write(engine, "/kb/v.txt", [f"passage {i}" for i in range(200)])
    vectors = np.vstack([unit(1000 + i) for i in range(200)])
    opened(engine).apply(IndexDelta(added=chunks, vectors=vectors, kinds=("text",) * 200))
    query = unit(7)
    exact = opened(engine, exact_vectors=True).search("", query, k=10, fusion="vector")
    hnsw = opened(engine).search("", query, k=10, fusion="vector")
    brute = np.argsort(-(vectors @ query))[:10]
    assert [h.chunk_id for h in exact] == [chunks[i].id for i in brute]
    assert [h.chunk_id for h in hnsw] == [h.chunk_id for h in exact]


def test_a_database_without_the_search_tables_is_refused(tmp_path: Path) -> None:
    lite = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")
    upgrade_schema(lite)
    with pytest.raises(StorageError, match="no search tables"):
        PgSearchIndex(PLAIN).load(lite, MODEL)
    lite.dispose()


def test_at_most_per_group_moves_the_surplus_behind_the_first_k() -> None:
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)]
    assert at_most_per_group(ranked, {1: 10, 2: 10, 3: 10, 4: 20}, k=3, cap=2) == [
        (1, 0.9),
        (2, 0.8),
        (4, 0.6),
        (3, 0.7),
    ]
    assert at_most_per_group(ranked, {}, k=2, cap=0) == ranked


def test_postgresql_without_the_search_tables_keeps_the_embedded_index(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    eng = create_engine_for(postgres_server.new_database("novector"))
    upgrade_schema(eng)
    assert isinstance(open_search_backend(PLAIN, eng, tmp_path), PgSearchIndex)
    with eng.begin() as conn:
        drop_search_schema(conn)  # as if pgvector had been missing at the upgrade
    with caplog.at_level(logging.WARNING):
        index = open_search_backend(PLAIN, eng, tmp_path)
    assert isinstance(index, SearchIndex)
    assert "not shared" in caplog.text
    eng.dispose()
