"""Hybrid search at scale: PostgreSQL + pgvector vs the embedded index, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/pg_scale.py \
        [--chunks 100000[,1000000]] [--queries 200] [--backends pg,embedded] [--json out.json]

For each size it writes synthetic documents (20 chunks each, 60-140 words from a Zipf
vocabulary of 50K words, as tests/bench/retrieval.py; 384-d unit vectors drawn around
2,000 cluster centres, as real embeddings cluster by topic) through the real ingestion
path: ``store.write_document`` (documents and chunks tables, 50 documents a
transaction), then the search index's ``apply(IndexDelta)``: the chunks first
(keyword-searchable), then their vectors (``IndexDelta.filled``), as progressive
ingestion does; each step is timed. Then it
asks ``--queries`` questions of 2-5 words (the Zipf tail) with a real query embedding
(all-MiniLM-L6-v2, one thread) and measures, per query: embedding, ``search`` (rrf,
k=10 of 50 candidates per list) and hydration (``store.chunks_by_ids``), p50/p95.

- ``pg``: ``PgSearchIndex`` on a throwaway PostgreSQL 18.6 + pgvector 0.8.6
  (tests/support/postgres.py; ``VACUUM ANALYZE`` after loading, as autovacuum
  would), with HNSW (m=16, ef_construction=64, ef_search=100) and, on the first
  queries, exact vector search for comparison (latency and HNSW recall@50 of the
  vector list against the exact list);
- ``embedded``: ``SearchIndex`` over a SQLite file (BM25 postings and the vector
  matrix in process).

Ingest rows/s counts chunks: the store write and the index apply separately.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sqlalchemy as sa  # noqa: E402

from core.config import RetrievalSettings, load_settings  # noqa: E402
from core.db import store  # noqa: E402
from core.db.engine import create_engine_for, upgrade_schema  # noqa: E402
from core.embedding import Embedder  # noqa: E402
from core.retrieval.metrics import percentile  # noqa: E402
from core.retrieval.pg_search import PgSearchIndex, vector_literal  # noqa: E402
from core.retrieval.search import SearchIndex  # noqa: E402
from core.retrieval.text import embedding_key  # noqa: E402
from core.types import Chunk, ChunkDraft, ExtractedDocument, IndexDelta  # noqa: E402
from tests.bench.retrieval import make_queries, zipf_probabilities  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402

DIM = 384
PER_DOC = 20
DOCS_PER_TX = 50
CENTRES = 2000
K = 10

# A server sized for the benchmark on this 24 GB, 2-core machine.
SERVER_SETTINGS = (
    "shared_buffers=2GB",
    "maintenance_work_mem=3GB",
    "work_mem=64MB",
    "effective_cache_size=8GB",
    "max_wal_size=8GB",
    "checkpoint_timeout=30min",
    "max_parallel_maintenance_workers=1",
)


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "mean_ms": round(statistics.fmean(values), 1),
    }


class Corpus:
    """Deterministic synthetic documents and vectors, generated batch by batch."""

    def __init__(self, chunks: int, seed: int = 7, vocab: int = 50_000) -> None:
        self.chunks = chunks
        self.rng = np.random.default_rng(seed)
        self.words = np.array(
            [_word(i) for i in range(vocab)],
            dtype=object,
        )
        self.p = zipf_probabilities(vocab, 1.07)
        self.centres = self.rng.standard_normal((CENTRES, DIM)).astype(np.float32)

    def query_vectors(self, count: int, seed: int = 13) -> np.ndarray:
        """Vectors drawn as the chunks' are: a query near one topic of the corpus."""
        rng = np.random.default_rng(seed)
        centre = self.centres[rng.integers(0, CENTRES, size=count)]
        vecs = centre + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def arrays(
        self, docs_per_batch: int = 500
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(first document number, words per chunk, word ids of all chunks, vectors)."""
        docs = self.chunks // PER_DOC
        for start in range(0, docs, docs_per_batch):
            size = min(docs_per_batch, docs - start)
            n = size * PER_DOC
            lengths = self.rng.integers(60, 141, size=n)
            flat = self.rng.choice(len(self.words), size=int(lengths.sum()), p=self.p)
            centre = self.centres[self.rng.integers(0, CENTRES, size=n)]
            vecs = centre + 0.6 * self.rng.standard_normal((n, DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            yield start, lengths, flat, vecs

    def batches(self) -> Iterator[list[tuple[str, list[str], np.ndarray]]]:
        """Lists of (path, passages, vectors) for DOCS_PER_TX documents."""
        docs = self.chunks // PER_DOC
        for start in range(0, docs, DOCS_PER_TX):
            size = min(DOCS_PER_TX, docs - start)
            n = size * PER_DOC
            lengths = self.rng.integers(60, 141, size=n)
            flat = self.words[
                self.rng.choice(len(self.words), size=int(lengths.sum()), p=self.p)
            ].tolist()
            bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
            texts = [" ".join(flat[bounds[i] : bounds[i + 1]]) for i in range(n)]
            centre = self.centres[self.rng.integers(0, CENTRES, size=n)]
            vecs = centre + 0.6 * self.rng.standard_normal((n, DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            yield [
                (
                    f"/bench/d{start + d}.txt",
                    texts[d * PER_DOC : (d + 1) * PER_DOC],
                    vecs[d * PER_DOC : (d + 1) * PER_DOC],
                )
                for d in range(size)
            ]


def _word(i: int) -> str:
    """A pronounceable pseudo-word per rank (letters only: the analyzer stems words)."""
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    out = []
    i += 1
    while i:
        i, r = divmod(i, len(consonants) * len(vowels))
        out.append(consonants[r % len(consonants)] + vowels[r // len(consonants)])
    return "".join(out) + "x"


def ingest(engine: sa.Engine, index: Any, corpus: Corpus) -> dict[str, float]:
    store_s = keyword_s = vector_s = 0.0
    total = 0
    for batch in corpus.batches():
        t0 = time.perf_counter()
        chunks: list[Chunk] = []
        vectors = []
        with engine.begin() as conn:
            for path, passages, vecs in batch:
                text = "\n\n".join(passages)
                drafts, pos = [], 0
                for i, p in enumerate(passages):
                    drafts.append(ChunkDraft(i, p, pos, pos + len(p), None, ("Bench",)))
                    pos += len(p) + 2
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
                chunks.extend(
                    Chunk(cid, doc_id, path, d.ordinal, d.text, d.start, d.end, None, ("Bench",))
                    for cid, d in zip(ids, drafts, strict=True)
                )
                vectors.append(vecs)
        t1 = time.perf_counter()
        # As progressive ingestion does: keyword-searchable first, vectors filled in after.
        index.apply(
            IndexDelta(
                added=tuple(chunks),
                kinds=("text",) * len(chunks),
                documents=frozenset(c.document_id for c in chunks),
            )
        )
        t2 = time.perf_counter()
        index.apply(
            IndexDelta(filled=tuple(c.id for c in chunks), filled_vectors=np.vstack(vectors))
        )
        t3 = time.perf_counter()
        store_s += t1 - t0
        keyword_s += t2 - t1
        vector_s += t3 - t2
        total += len(chunks)
        if total % 100_000 == 0:
            print(
                f"  {total} chunks: store {store_s:.0f} s, index {keyword_s + vector_s:.0f} s",
                file=sys.stderr,
            )
    index_s = keyword_s + vector_s
    return {
        "chunks": total,
        "store_s": round(store_s, 1),
        "keyword_index_s": round(keyword_s, 1),
        "vector_index_s": round(vector_s, 1),
        "store_rows_per_s": round(total / store_s),
        "keyword_index_rows_per_s": round(total / keyword_s),
        "vector_index_rows_per_s": round(total / vector_s),
        "index_rows_per_s": round(total / index_s),
        "ingest_rows_per_s": round(total / (store_s + index_s)),
    }


def bulk_load_pg(engine: sa.Engine, corpus: Corpus, model_key: str) -> dict[str, float]:
    """Load a large knowledge base with COPY, then build the HNSW index once.

    What an administrator's bulk import would do (the per-document path of
    ``ingest`` takes hours at 1M chunks here): documents, chunks, search rows and
    postings are copied in with the statistics triggers off and the postings'
    indexes dropped, then the indexes and statistics are built in one statement
    each, and the HNSW index last.
    Postings come from the word ids directly (each pseudo-word is its own token
    for the analyzer; checked for the whole vocabulary).
    """
    raw = engine.raw_connection()
    conn = raw.driver_connection
    assert conn is not None
    words = corpus.words
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        # Everything goes into the collection "default" (core.db.pg_access).
        cur.execute("SELECT archivist_write_collection()")
        row = cur.fetchone()
        assert row is not None
        coll = int(row[0])
        cur.execute("DROP INDEX ix_search_chunks_embedding")
        cur.execute("DROP INDEX ix_search_terms_chunk_id")
        cur.execute("ALTER TABLE search_terms DROP CONSTRAINT pk_search_terms")
        cur.execute("ALTER TABLE search_chunks DISABLE TRIGGER USER")
        cur.execute("ALTER TABLE search_terms DISABLE TRIGGER USER")
        conn.commit()
        chunk_id = 0
        for start, lengths, flat, vecs in corpus.arrays():
            n = len(lengths)
            bounds = np.concatenate(([0], np.cumsum(lengths)))
            texts = [" ".join(words[flat[bounds[i] : bounds[i + 1]]]) for i in range(n)]
            with cur.copy(
                "COPY documents (id, path, content_hash, size, mtime, kind, text, ingested_at)"
                " FROM STDIN"
            ) as copy:
                for d in range(n // PER_DOC):
                    doc = start + d + 1
                    text = "\n\n".join(texts[d * PER_DOC : (d + 1) * PER_DOC])
                    copy.write_row(
                        (doc, f"/bench/d{doc}.txt", str(doc), len(text), 0.0, "text", text, 0.0)
                    )
            with cur.copy(
                'COPY chunks (id, document_id, ordinal, text, start, "end", heading_path,'
                " token_count, text_hash, collection_id) FROM STDIN"
            ) as copy:
                for i, text in enumerate(texts):
                    copy.write_row(
                        (
                            chunk_id + i + 1,
                            start + i // PER_DOC + 1,
                            i % PER_DOC,
                            text,
                            0,
                            len(text),
                            "Bench",
                            int(lengths[i]),
                            str(chunk_id + i + 1),
                            coll,
                        )
                    )
            with cur.copy(
                "COPY search_chunks (chunk_id, document_id, n_terms, embedding, model_key,"
                " collection_id) FROM STDIN"
            ) as copy:
                for i in range(n):
                    copy.write_row(
                        (
                            chunk_id + i + 1,
                            start + i // PER_DOC + 1,
                            int(lengths[i]) + 1,
                            vector_literal(vecs[i]),
                            model_key,
                            coll,
                        )
                    )
            # Postings: (chunk, word) pairs counted with numpy; "bench" is the heading.
            owner = np.repeat(np.arange(n), lengths)
            pairs, tfs = np.unique(owner * len(words) + flat, return_counts=True)
            with cur.copy(
                "COPY search_terms (term, chunk_id, tf, n_terms, collection_id) FROM STDIN"
            ) as copy:
                for pair, tf in zip(pairs.tolist(), tfs.tolist(), strict=True):
                    c, w = divmod(pair, len(words))
                    copy.write_row((words[w], chunk_id + c + 1, tf, int(lengths[c]) + 1, coll))
                for c in range(n):
                    copy.write_row(("bench", chunk_id + c + 1, 1, int(lengths[c]) + 1, coll))
            conn.commit()
            chunk_id += n
            if chunk_id % 100_000 == 0:
                print(
                    f"  {chunk_id} chunks copied, {time.perf_counter() - t0:.0f} s", file=sys.stderr
                )
        copied = time.perf_counter() - t0
        cur.execute(
            "ALTER TABLE search_terms ADD CONSTRAINT pk_search_terms"
            " PRIMARY KEY (term, chunk_id) INCLUDE (tf, n_terms, collection_id)"
        )
        cur.execute("CREATE INDEX ix_search_terms_chunk_id ON search_terms (chunk_id)")
        cur.execute(
            "INSERT INTO search_term_stats (term, collection_id, df)"
            " SELECT term, collection_id, count(*) FROM search_terms GROUP BY term, collection_id"
        )
        cur.execute(
            "INSERT INTO search_stats (collection_id, n_chunks, n_vectors, total_terms)"
            " SELECT collection_id, count(*), count(embedding), sum(n_terms)"
            " FROM search_chunks GROUP BY collection_id"
        )
        cur.execute("ALTER TABLE search_chunks ENABLE TRIGGER USER")
        cur.execute("ALTER TABLE search_terms ENABLE TRIGGER USER")
        for table in ("documents", "chunks"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id)"
                f" FROM {table}))"
            )
        conn.commit()
        stats_s = time.perf_counter() - t0 - copied
        t1 = time.perf_counter()
        cur.execute(
            "CREATE INDEX ix_search_chunks_embedding ON search_chunks"
            " USING hnsw (embedding vector_ip_ops)"
        )
        conn.commit()
        hnsw_s = time.perf_counter() - t1
    raw.close()
    return {
        "chunks": chunk_id,
        "copy_s": round(copied, 1),
        "copy_rows_per_s": round(chunk_id / copied),
        "postings_index_and_stats_s": round(stats_s, 1),
        "hnsw_build_s": round(hnsw_s, 1),
    }


def ask(
    engine: sa.Engine,
    index: Any,
    embedder: Embedder,
    queries: list[str],
    vectors: np.ndarray,
    fusion: str = "rrf",
) -> tuple[dict[str, Any], list[list[int]]]:
    """Each query: embed its text (timed), search with a vector drawn like the chunks'.

    The real model's embedding of a pseudo-word query lies nowhere near the
    synthetic chunk vectors, and an HNSW graph is searched very differently for a
    query far from all data; the drawn vector makes the search cost and recall
    those of a query about a topic of the corpus, while the embedding's cost is
    still paid and counted.
    """
    embed_ms, search_ms, hydrate_ms, total_ms = [], [], [], []
    results = []
    for text, vec in zip(queries, vectors, strict=False):
        t0 = time.perf_counter()
        embedder.encode_query(text)
        t1 = time.perf_counter()
        hits = index.search(text, vec, k=K, fusion=fusion)
        t2 = time.perf_counter()
        with engine.connect() as conn:
            store.chunks_by_ids(conn, [h.chunk_id for h in hits])
        t3 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1000)
        search_ms.append((t2 - t1) * 1000)
        hydrate_ms.append((t3 - t2) * 1000)
        total_ms.append((t3 - t0) * 1000)
        results.append([h.chunk_id for h in hits])
    return {
        "embed": ms(embed_ms),
        "search": ms(search_ms),
        "hydrate": ms(hydrate_ms),
        "total": ms(total_ms),
    }, results


def vector_recall(hnsw: Any, exact: Any, vectors: np.ndarray) -> float:
    """Mean overlap of the HNSW and exact top-50 vector lists."""
    found = []
    for vec in vectors:
        a = {h.chunk_id for h in hnsw.search("", vec, k=50, fusion="vector")}
        b = {h.chunk_id for h in exact.search("", vec, k=50, fusion="vector")}
        found.append(len(a & b) / max(1, len(b)))
    return round(statistics.fmean(found), 3)


def db_size(engine: sa.Engine) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class "
                "WHERE relname IN ('chunks', 'documents', 'search_chunks', 'search_terms', "
                "'search_term_stats', 'ix_search_chunks_embedding', 'pk_search_terms')"
            )
        ).all()
        total = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    return {r.relname: round(r.bytes / 1e6, 1) for r in rows} | {
        "database": round(int(total or 0) / 1e6, 1)
    }


def run_pg(
    server: Any,
    corpus: Corpus,
    embedder: Embedder,
    queries: list[str],
    exact_q: int,
    bulk: bool = False,
) -> dict[str, Any]:
    settings = RetrievalSettings()
    engine = create_engine_for(server.new_database(f"scale_{corpus.chunks}"))
    upgrade_schema(engine)
    index = PgSearchIndex(settings)
    out: dict[str, Any] = {}
    if bulk:
        out["bulk_load"] = bulk_load_pg(engine, corpus, embedding_key(embedder.model_id))
        index.load(engine, embedder.model_id)
    else:
        index.load(engine, embedder.model_id)
        out["ingest"] = ingest(engine, index, corpus)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    out["vacuum_analyze_s"] = round(time.perf_counter() - t0, 1)
    out["mb"] = db_size(engine)
    vectors = corpus.query_vectors(len(queries))
    ask(engine, index, embedder, queries[:5], vectors[:5])  # warm the caches
    out["hybrid_hnsw"], _ = ask(engine, index, embedder, queries, vectors)
    out["keyword_only"], _ = ask(engine, index, embedder, queries, vectors, fusion="bm25")
    exact = PgSearchIndex(settings, exact_vectors=True)
    exact.load(engine, embedder.model_id)
    out["hybrid_exact"], _ = ask(engine, exact, embedder, queries[:exact_q], vectors)
    out["hnsw_recall_at_50"] = vector_recall(index, exact, vectors[:exact_q])
    engine.dispose()
    return out


def run_embedded(corpus: Corpus, embedder: Embedder, queries: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scale-embedded-") as tmp:
        engine = create_engine_for(f"sqlite:///{Path(tmp) / 'kb.db'}")
        upgrade_schema(engine)
        index = SearchIndex(RetrievalSettings(), Path(tmp) / "index")
        index.load(engine, embedder.model_id)
        out: dict[str, Any] = {"ingest": ingest(engine, index, corpus)}
        t0 = time.perf_counter()
        index.save(engine)
        out["save_s"] = round(time.perf_counter() - t0, 1)
        out["mb"] = {
            "sqlite": round((Path(tmp) / "kb.db").stat().st_size / 1e6, 1),
            "index_files": round(
                sum(f.stat().st_size for f in (Path(tmp) / "index").rglob("*") if f.is_file())
                / 1e6,
                1,
            ),
        }
        vectors = corpus.query_vectors(len(queries))
        ask(engine, index, embedder, queries[:5], vectors[:5])
        out["hybrid"], _ = ask(engine, index, embedder, queries, vectors)
        out["keyword_only"], _ = ask(engine, index, embedder, queries, vectors, fusion="bm25")
        index.close()
        engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", default="100000", help="comma-separated sizes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=50)
    parser.add_argument("--backends", default="pg,embedded")
    parser.add_argument(
        "--bulk-from",
        type=int,
        default=1_000_000,
        help="sizes from this many chunks load PostgreSQL by COPY, then build HNSW",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(None, env={"ARCHIVIST_LOCAL_MODEL": "off"})
    embedder = Embedder(settings.embedding)
    embedder.load()
    import torch

    torch.set_num_threads(1)  # query-time encoding, as the app does under load
    backends = args.backends.split(",")
    report: dict[str, Any] = {"queries": args.queries, "k": K, "sizes": {}}
    with running_postgres(SERVER_SETTINGS) as server:
        for size in (int(s) for s in args.chunks.split(",")):
            probe = Corpus(size)
            rng = np.random.default_rng(11)
            queries = [" ".join(q) for q in make_queries(args.queries, probe.words, probe.p, rng)]
            result: dict[str, Any] = {}
            for backend in backends:
                print(f"{size} chunks: {backend}", file=sys.stderr)
                if backend == "pg":
                    result["pg"] = run_pg(
                        server,
                        Corpus(size),
                        embedder,
                        queries,
                        args.exact_queries,
                        bulk=size >= args.bulk_from,
                    )
                else:
                    result["embedded"] = run_embedded(Corpus(size), embedder, queries)
            report["sizes"][str(size)] = result
            print(json.dumps({str(size): result}, indent=1))
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    embedder.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
