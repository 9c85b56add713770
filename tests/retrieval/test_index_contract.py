"""One contract for every search index (``core.retrieval.backend.SearchBackend``).

Each test runs against the embedded ``SearchIndex`` over a real SQLite file and
against ``PgSearchIndex`` over a real PostgreSQL 18 with pgvector (a fresh database
per test). Documents go in as ingestion writes them (``store.write_document``), and
the index learns of them through ``apply(IndexDelta)``, as ``Library`` tells it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.db.pg_schema import DIM
from core.retrieval.backend import SearchBackend
from core.retrieval.pg_search import PgSearchIndex
from core.retrieval.search import SearchIndex
from core.types import Chunk, ChunkDraft, ExtractedDocument, FloatArray, IndexDelta, SearchFilters
from tests.support.postgres import PostgresServer

MODEL = "contract-model"
SETTINGS = RetrievalSettings()


def unit(seed: int) -> FloatArray:
    """A deterministic unit vector (seed 7 is nearly orthogonal to seed 8)."""
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class Kb:
    """A knowledge base (one engine) and how to open a search index over it."""

    engine: sa.Engine
    open_index: object  # () -> SearchBackend
    index: SearchBackend
    vectors: dict[int, FloatArray] = field(default_factory=dict)

    def add(
        self,
        path: str,
        passages: list[str],
        *,
        kind: str = "text",
        seeds: list[int] | None = None,
        heading: str = "Guide",
    ) -> list[int]:
        """Write a document like ingestion does, then tell the index."""
        text = "\n\n".join(passages)
        drafts, pos = [], 0
        for i, passage in enumerate(passages):
            drafts.append(ChunkDraft(i, passage, pos, pos + len(passage), None, (heading,)))
            pos += len(passage) + 2
        with self.engine.begin() as conn:
            existing = store.document_by_path(conn, path)
            doc_id, ids, removed = store.write_document(
                conn,
                path=path,
                content_hash=str(hash(text)),
                size=len(text),
                mtime=0.0,
                doc=ExtractedDocument(text=text, kind=kind),
                drafts=drafts,
                existing_id=existing.id if existing else None,
            )
        chunks = tuple(
            Chunk(cid, doc_id, path, d.ordinal, d.text, d.start, d.end, None, d.heading_path)
            for cid, d in zip(ids, drafts, strict=True)
        )
        vectors = None
        if seeds is not None:
            vectors = np.vstack([unit(s) for s in seeds])
            self.vectors.update(zip(ids, vectors, strict=True))
        self.index.apply(
            IndexDelta(
                added=chunks,
                vectors=vectors,
                kinds=(kind,) * len(chunks),
                removed=tuple(removed),
                documents=frozenset({doc_id}),
            )
        )
        return ids

    def delete(self, path: str) -> None:
        with self.engine.begin() as conn:
            row = store.document_by_path(conn, path)
            assert row is not None
            removed = store.delete_document(conn, row.id)
        self.index.apply(IndexDelta(removed=tuple(removed), documents=frozenset({row.id})))


@pytest.fixture(params=["embedded", "postgres"])
def kb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kb]:
    if request.param == "embedded":
        engine = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")

        def open_index() -> SearchBackend:
            index = SearchIndex(SETTINGS, tmp_path / "index", dim=DIM)
            index.load(engine, MODEL)
            return index
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        engine = create_engine_for(server.new_database("contract"))

        def open_index() -> SearchBackend:
            index = PgSearchIndex(SETTINGS)
            index.load(engine, MODEL)
            return index

    upgrade_schema(engine)
    base = Kb(engine, open_index, open_index())
    yield base
    base.index.close()
    engine.dispose()


def reopen(kb: Kb, *, save: bool = True) -> SearchBackend:
    """What a restarted instance sees: save, close, open anew over the same database."""
    if save:
        kb.index.save(kb.engine)
    kb.index.close()
    kb.index = kb.open_index()  # type: ignore[operator]
    return kb.index


HANDBOOK = [
    "The buoy reports dissolved oxygen every ten minutes over the cellular link.",
    "Calibrate the conductivity probe monthly with the standard solution.",
    "Replace the anti-fouling wiper when the turbidity readings drift upward.",
]
MINUTES = [
    "The council approved the budget for two additional buoys on the north shore.",
    "Minutes were taken by the secretary; the next meeting is in March.",
]


def test_an_empty_index_finds_nothing(kb: Kb) -> None:
    assert kb.index.size == 0
    assert kb.index.vector_count == 0
    assert kb.index.search("oxygen", unit(1), k=5) == []


def test_added_chunks_are_counted_with_their_vectors(kb: Kb) -> None:
    kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    kb.add("/kb/minutes.txt", MINUTES)  # no vectors yet (embedding off or still running)
    assert kb.index.size == 5
    assert kb.index.vector_count == 3


def test_keyword_search_ranks_the_chunk_with_the_rare_words_first(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    kb.add("/kb/minutes.txt", MINUTES, seeds=[4, 5])
    hits = kb.index.search("conductivity probe calibration", None, k=5, fusion="bm25")
    assert hits[0].chunk_id == ids[1]
    assert hits[0].bm25_rank == 1 and hits[0].bm25_score is not None
    assert hits[0].bm25_score > 0
    assert all(h.vector_rank is None and h.fused_score is None for h in hits)
    # Only chunks sharing a query term come back.
    assert {h.chunk_id for h in hits} <= set(ids)


def test_keyword_search_finds_identifiers_and_heading_words(kb: Kb) -> None:
    ids = kb.add("/kb/api.md", ["Use functools.lru_cache for memoisation."], heading="Caching")
    kb.add("/kb/other.md", ["Nothing about that here."], heading="Other")
    assert [h.chunk_id for h in kb.index.search("lru_cache", None, k=3, fusion="bm25")] == ids
    assert [h.chunk_id for h in kb.index.search("caching", None, k=3, fusion="bm25")] == ids


def test_vector_search_ranks_the_nearest_chunk_first(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    hits = kb.index.search("anything", unit(3), k=3, fusion="vector")
    assert hits[0].chunk_id == ids[2]
    assert hits[0].vector_rank == 1
    assert hits[0].vector_score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].bm25_rank is None


def test_hybrid_search_fuses_both_lists(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    kb.add("/kb/minutes.txt", MINUTES, seeds=[4, 5])
    hits = kb.index.search("wiper turbidity", unit(3), k=5, fusion="rrf")
    top = hits[0]
    assert top.chunk_id == ids[2]
    assert top.bm25_rank == 1 and top.vector_rank == 1
    assert top.fused_score == pytest.approx(2 / (SETTINGS.rrf_k + 1))
    assert all(h.fused_score is not None for h in hits)


def test_without_a_query_vector_hybrid_search_is_keyword_search(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    hits = kb.index.search("wiper turbidity", None, k=5)
    assert [h.chunk_id for h in hits] == [ids[2]]
    assert hits[0].vector_rank is None


def test_vectors_filled_in_later_are_searched(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK)  # keyword-searchable first
    assert kb.index.vector_count == 0
    kb.index.apply(IndexDelta(filled=tuple(ids[1:]), filled_vectors=np.vstack([unit(2), unit(3)])))
    assert kb.index.size == 3
    assert kb.index.vector_count == 2
    hits = kb.index.search("anything", unit(3), k=3, fusion="vector")
    assert [h.chunk_id for h in hits][:1] == [ids[2]]


def test_vectors_filled_in_for_a_removed_chunk_are_dropped(kb: Kb) -> None:
    ids = kb.add("/kb/minutes.txt", MINUTES)
    kb.delete("/kb/minutes.txt")
    kb.index.apply(IndexDelta(filled=tuple(ids), filled_vectors=np.vstack([unit(4), unit(5)])))
    assert kb.index.size == 0
    assert kb.index.vector_count == 0
    assert kb.index.search("council", unit(4), k=3) == []


def test_removed_chunks_are_never_found_again(kb: Kb) -> None:
    kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    minutes = kb.add("/kb/minutes.txt", MINUTES, seeds=[4, 5])
    kb.delete("/kb/minutes.txt")
    assert kb.index.size == 3
    assert kb.index.vector_count == 3
    hits = kb.index.search("council budget buoys", unit(4), k=10)
    assert not {h.chunk_id for h in hits} & set(minutes)


def test_a_reingested_document_is_found_by_its_new_text_only(kb: Kb) -> None:
    kb.add("/kb/notice.txt", ["The lab is closed on Friday for the heron survey."], seeds=[6])
    new = kb.add("/kb/notice.txt", ["The lab reopens on Monday after the pelican count."])
    assert kb.index.size == 1
    assert kb.index.search("heron survey", None, k=5, fusion="bm25") == []
    assert [h.chunk_id for h in kb.index.search("pelican", None, k=5, fusion="bm25")] == new


def test_filters_restrict_results_to_documents_folders_and_kinds(kb: Kb) -> None:
    a = kb.add("/kb/team/a.txt", ["Shared word harbour in the team notes."], seeds=[1])
    b = kb.add("/kb/ops/b.md", ["Shared word harbour in the ops runbook."], kind="markdown")
    c = kb.add("/kb/team-old/c.txt", ["Shared word harbour in last year's notes."], seeds=[3])
    with kb.engine.connect() as conn:
        doc_a = store.document_by_path(conn, "/kb/team/a.txt")
    assert doc_a is not None

    def found(filters: SearchFilters) -> set[int]:
        return {h.chunk_id for h in kb.index.search("harbour", unit(1), k=10, filters=filters)}

    assert found(SearchFilters()) == set(a + b + c)
    assert found(SearchFilters(folders=("/kb/team",))) == set(a)  # not /kb/team-old
    assert found(SearchFilters(kinds=frozenset({"markdown"}))) == set(b)
    assert found(SearchFilters(document_ids=frozenset({doc_a.id}))) == set(a)
    assert found(SearchFilters(folders=("/kb/nowhere",))) == set()


def test_at_most_two_passages_of_one_document_lead_the_results(kb: Kb) -> None:
    long_doc = kb.add("/kb/long.txt", [f"Kestrel buoy note {i} about kestrel." for i in range(4)])
    other = kb.add("/kb/other.txt", ["A single kestrel mention."])
    hits = kb.index.search("kestrel", None, k=3, fusion="bm25")
    assert len(hits) == 3
    assert sum(h.chunk_id in long_doc for h in hits) == 2
    assert other[0] in {h.chunk_id for h in hits}


def test_k_limits_the_results(kb: Kb) -> None:
    for i in range(6):
        kb.add(f"/kb/d{i}.txt", [f"Sensor log entry {i}: sensor nominal."])
    assert len(kb.index.search("sensor", None, k=4, fusion="bm25")) == 4


def test_unknown_words_are_those_no_chunk_contains(kb: Kb) -> None:
    kb.add("/kb/handbook.txt", HANDBOOK)
    unknown = kb.index.unknown_words("Did we recalibrate the Zephyr-9 probe in KX3?")
    # "recalibrate": "calibrate" is indexed; "we", "the", "in" are too short or stop words.
    assert unknown == ["Zephyr-9", "KX3"]


@pytest.mark.parametrize("written", ["BuoyLink", "buoylink", "BUOYLINK", "buoy_link"])
def test_a_name_the_documents_write_in_camel_case_is_known_however_asked(
    kb: Kb, written: str
) -> None:
    kb.add("/kb/radio.txt", ["The BuoyLink file lists every buoy_link channel."])
    assert kb.index.unknown_words(f"What does {written} list?") == []
    assert kb.index.unknown_words("What does BuoyLinks list?") == ["BuoyLinks"]


def test_a_restarted_instance_finds_what_was_indexed(kb: Kb) -> None:
    ids = kb.add("/kb/handbook.txt", HANDBOOK, seeds=[1, 2, 3])
    before = kb.index.search("wiper turbidity", unit(3), k=3)
    index = reopen(kb)
    assert index.size == 3
    assert index.vector_count == 3
    after = index.search("wiper turbidity", unit(3), k=3)
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before]
    assert after[0].chunk_id == ids[2]


def test_an_index_opened_over_a_filled_database_indexes_it(kb: Kb) -> None:
    """Chunks stored while no index listened (an older version wrote them) are found."""
    kb.index.close()
    with kb.engine.begin() as conn:
        _, ids, _ = store.write_document(
            conn,
            path="/kb/legacy.txt",
            content_hash="legacy",
            size=10,
            mtime=0.0,
            doc=ExtractedDocument(text="Legacy osprey census.", kind="text"),
            drafts=[ChunkDraft(0, "Legacy osprey census.", 0, 21, None)],
            existing_id=None,
        )
        store.store_embeddings(conn, MODEL, {store.text_hash("Legacy osprey census."): unit(9)})
    index = reopen(kb, save=False)
    assert [h.chunk_id for h in index.search("osprey", None, k=3, fusion="bm25")] == ids
    assert [h.chunk_id for h in index.search("x", unit(9), k=1, fusion="vector")] == ids
