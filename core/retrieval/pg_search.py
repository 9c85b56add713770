"""The search index in PostgreSQL: keyword and vector search, fused in one statement.

``PgSearchIndex`` is the team-mode ``SearchBackend`` (core.retrieval.backend): every
instance whose ``ARCHIVIST_DATABASE_URL`` names the same database searches the same
index (``core.db.pg_schema``), so a second instance answers from what the first one
ingested without re-ingesting. Nothing is held in this process but the settings.

One ``search`` is one SQL statement: the keyword top-n, the vector top-n (pgvector,
HNSW on inner product) and their reciprocal rank fusion, with the chunks' documents
for page ranking; the page ranking and the per-document cap then run here, as in the
embedded index. Keyword search is Okapi BM25 computed in SQL over postings made by
the app's own analyzer, chosen by measurement over PostgreSQL full-text search
(``ts_rank_cd``), page-level nDCG@10 on keyword search alone: Python docs set 0.769
(embedded BM25 0.760) vs 0.372, Debian handbook set 0.808 (0.799) vs 0.607
(tests/bench/pg_keyword_eval.py).

All methods block: callers run them in a worker thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.db.pg_schema import DIM, has_search_schema
from core.errors import StorageError
from core.retrieval.fusion import convex_combination, leaders_first
from core.retrieval.search import _WORDS, Hit, keyword_text, lookup_terms
from core.retrieval.text import Analyzer, embedding_key
from core.types import FloatArray, IndexDelta, SearchFilters

log = logging.getLogger(__name__)

# Per pooled connection, once: a filtered vector query keeps scanning the HNSW graph
# until it has the candidates asked for (pgvector 0.8 iterative scans), and no JIT
# compilation (its start-up costs more than these short queries save).
_SESSION_SETTINGS = "SET hnsw.iterative_scan = relaxed_order; SET jit = off"
_SESSION_KEY = "archivist_pg_search"
# Indexing at start-up writes only this role's own collections (a reader may not
# write the others': row-level security would refuse, or skip rows silently).
_OWNED_ONLY = " AND c.collection_id = ANY(archivist_owned_collections())"
_EF_KEY = "archivist_pg_ef_search"


@dataclass(frozen=True, slots=True)
class _Row:
    chunk_id: int
    document_id: int
    kw_rank: int | None
    kw_score: float | None
    vec_rank: int | None
    vec_score: float | None
    rrf: float


def vector_literal(vector: FloatArray) -> str:
    """pgvector's text form of a vector: ``[0.1,0.2,...]``."""
    return "[" + ",".join(f"{float(x):.7g}" for x in np.asarray(vector).ravel()) + "]"


def at_most_per_group(
    ranked: Sequence[tuple[int, float]], group_of: dict[int, int], k: int, cap: int
) -> list[tuple[int, float]]:
    """At most ``cap`` items of one group in the first ``k``; the rest follow in order.

    The same rule as ``SearchIndex._diversify`` (``retrieval.max_per_document``).
    """
    if cap <= 0:
        return list(ranked)
    per: dict[int, int] = {}
    top: list[tuple[int, float]] = []
    rest: list[tuple[int, float]] = []
    for cid, score in ranked:
        group = group_of.get(cid, -cid)
        if len(top) < k and per.get(group, 0) < cap:
            per[group] = per.get(group, 0) + 1
            top.append((cid, score))
        else:
            rest.append((cid, score))
    return top + rest


def _filter_sql(filters: SearchFilters | None, params: dict[str, Any], column: str) -> str:
    """``AND column IN (documents matching the filters)``, or nothing."""
    if filters is None or filters.empty:
        return ""
    conds: list[str] = []
    if filters.document_ids:
        params["f_docs"] = sorted(filters.document_ids)
        conds.append("d.id = ANY(:f_docs)")
    if filters.folders:
        ors = []
        for i, folder in enumerate(filters.folders):
            params[f"f_dir{i}"] = folder.rstrip("/") + "/"
            ors.append(f"starts_with(d.path, :f_dir{i})")
        conds.append("(" + " OR ".join(ors) + ")")
    if filters.kinds:
        params["f_kinds"] = sorted(filters.kinds)
        conds.append("d.kind = ANY(:f_kinds)")
    return f" AND {column} IN (SELECT d.id FROM documents d WHERE {' AND '.join(conds)})"


class PgSearchIndex:
    """The shared search index; see the module docstring.

    Usage::

        index = PgSearchIndex(settings.retrieval)
        index.load(engine, "all-MiniLM-L6-v2")   # fills in chunks not yet indexed
        hits = index.search("rotate logs", query_vector, k=10)
    """

    def __init__(
        self,
        settings: RetrievalSettings,
        *,
        exact_vectors: bool = False,
    ) -> None:
        self._settings = settings
        self.exact_vectors = exact_vectors
        self.analyzer = Analyzer(stemming=settings.stemming, stop_words=settings.stop_words)
        self._engine: sa.Engine | None = None
        self.model_id = ""
        self._key = ""
        self.loaded_from = "empty"
        self.load_s = 0.0

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise RuntimeError("PgSearchIndex.load() has not run")
        return self._engine

    # ------------------------------------------------------------------ lifecycle

    def load(self, engine: sa.Engine, model_id: str) -> None:
        """Check the schema, then index what is stored but not yet indexed.

        Chunks written before the search schema existed (or by an instance that
        stopped before indexing them) are indexed here from the database, with
        their stored vectors; vectors of another model are dropped.
        """
        t0 = time.perf_counter()
        with engine.connect() as conn:
            if not has_search_schema(conn):
                raise StorageError(
                    "This PostgreSQL database has no search tables: the pgvector "
                    "extension was missing when its schema was upgraded."
                )
        self._engine = engine
        self.model_id = model_id
        self._key = embedding_key(model_id)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE search_chunks SET embedding = NULL, model_key = NULL "
                    "WHERE embedding IS NOT NULL AND model_key <> :key"
                ),
                {"key": self._key},
            )
        added = self._index_missing_chunks()
        filled = self._fill_missing_vectors()
        self.loaded_from = "postgresql"
        self.load_s = time.perf_counter() - t0
        log.info(
            "search index ready (PostgreSQL)",
            extra={"indexed_now": added, "vectors_now": filled, "s": self.load_s},
        )

    def _index_missing_chunks(self, batch: int = 2000) -> int:
        """Chunks with no search row, with their stored vectors (this recipe, then older)."""
        done = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT c.id, c.document_id, c.text, c.heading_path,"
                        " coalesce(e1.vector, e2.vector) AS vector FROM chunks c"
                        " LEFT JOIN embeddings e1 ON e1.text_hash = c.text_hash"
                        " AND e1.model_id = :key"
                        " LEFT JOIN embeddings e2 ON e2.text_hash = c.text_hash"
                        " AND e2.model_id = :legacy"
                        " WHERE NOT EXISTS (SELECT 1 FROM search_chunks s WHERE s.chunk_id = c.id)"
                        f"{_OWNED_ONLY} ORDER BY c.id LIMIT :n"
                    ),
                    {"n": batch, "key": self._key, "legacy": self.model_id},
                ).all()
            if not rows:
                return done
            items = [
                (
                    r.id,
                    r.document_id,
                    keyword_text(
                        r.text,
                        tuple(r.heading_path.split(store.HEADING_SEP)) if r.heading_path else (),
                    ),
                    None if r.vector is None else np.frombuffer(r.vector, dtype="<f4"),
                )
                for r in rows
            ]
            with self.engine.begin() as conn:
                self._write(conn, items)
            done += len(rows)

    def _fill_missing_vectors(self) -> int:
        """Vectors stored since their chunks were indexed without one."""
        filled = 0
        for key in (self._key, self.model_id):
            while True:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        sa.text(
                            "SELECT s.chunk_id, e.vector FROM search_chunks s "
                            "JOIN chunks c ON c.id = s.chunk_id "
                            "JOIN embeddings e ON e.text_hash = c.text_hash AND e.model_id = :key "
                            f"WHERE s.embedding IS NULL{_OWNED_ONLY} ORDER BY s.chunk_id LIMIT 2000"
                        ),
                        {"key": key},
                    ).all()
                if not rows:
                    break
                vectors = [np.frombuffer(r.vector, dtype="<f4") for r in rows]
                with self.engine.begin() as conn:
                    self._set_vectors(conn, [r.chunk_id for r in rows], vectors)
                filled += len(rows)
        return filled

    def save(self, engine: sa.Engine) -> None:
        """Nothing to persist: every write already went to the database."""

    def close(self) -> None:
        """Nothing to release: the engine belongs to ``Services``."""

    # ------------------------------------------------------------------ updates

    def apply(self, delta: IndexDelta) -> None:
        with self.engine.begin() as conn:
            if delta.removed:
                conn.execute(
                    sa.text("DELETE FROM search_chunks WHERE chunk_id = ANY(:ids)"),
                    {"ids": list(delta.removed)},
                )
            if delta.added:
                vectors: Sequence[FloatArray | None] = (
                    [None] * len(delta.added) if delta.vectors is None else list(delta.vectors)
                )
                items = [
                    (c.id, c.document_id, keyword_text(c.text, c.heading_path), v)
                    for c, v in zip(delta.added, vectors, strict=True)
                ]
                self._write(conn, items)
            if delta.filled and delta.filled_vectors is not None:
                # Vectors filled in behind keyword search; chunks removed meanwhile skipped.
                self._set_vectors(conn, list(delta.filled), list(delta.filled_vectors))

    def _write(
        self, conn: sa.Connection, items: Sequence[tuple[int, int, str, FloatArray | None]]
    ) -> None:
        """Index (chunk id, document id, keyword text, vector) rows not indexed yet.

        Rows are staged with COPY, then inserted: a chunk already deleted is
        skipped, one indexed meanwhile (by another instance's start-up) keeps its
        row and only gains a vector it lacked. Postings go in only for the rows
        this call inserted.
        """
        tokens = [self.analyzer.tokens(text) for _, _, text, _ in items]
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staged_chunks (chunk_id integer, "
            "document_id integer, n_terms integer, embedding text) "
            "ON COMMIT DELETE ROWS"
        )
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staged_terms (term text, chunk_id integer, "
            "tf integer, n_terms integer) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE staged_chunks, staged_terms")
        with cur.copy("COPY staged_chunks FROM STDIN") as copy:
            for (cid, did, _, vec), toks in zip(items, tokens, strict=True):
                copy.write_row((cid, did, len(toks), None if vec is None else vector_literal(vec)))
        with cur.copy("COPY staged_terms FROM STDIN") as copy:
            for (cid, _, _, _), toks in zip(items, tokens, strict=True):
                n = len(toks)
                for term, tf in Counter(toks).items():
                    copy.write_row((term, cid, tf, n))
        cur.execute(
            "WITH inserted AS ("
            " INSERT INTO search_chunks (chunk_id, document_id, n_terms, embedding, model_key,"
            " collection_id)"
            " SELECT s.chunk_id, s.document_id, s.n_terms, s.embedding::vector,"
            " CASE WHEN s.embedding IS NULL THEN NULL ELSE %s END, c.collection_id"
            " FROM staged_chunks s JOIN chunks c ON c.id = s.chunk_id"
            " ORDER BY s.chunk_id"
            # A chunk indexed before its vector was (progressive ingestion) gets it now.
            " ON CONFLICT (chunk_id) DO UPDATE"
            " SET embedding = excluded.embedding, model_key = excluded.model_key"
            " WHERE search_chunks.embedding IS NULL AND excluded.embedding IS NOT NULL"
            " RETURNING chunk_id, collection_id, xmax = 0 AS inserted)"
            # The collection given here: no per-posting trigger lookup.
            " INSERT INTO search_terms (term, chunk_id, tf, n_terms, collection_id)"
            " SELECT t.term, t.chunk_id, t.tf, t.n_terms, i.collection_id FROM staged_terms t"
            " JOIN inserted i ON i.chunk_id = t.chunk_id AND i.inserted"
            " ORDER BY t.term, t.chunk_id",
            (self._key,),
        )
        cur.close()

    def _set_vectors(
        self,
        conn: sa.Connection,
        ids: Sequence[int],
        vectors: Iterable[FloatArray],
    ) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staged_vectors (chunk_id integer, embedding text) "
            "ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE staged_vectors")
        with cur.copy("COPY staged_vectors FROM STDIN") as copy:
            for cid, vec in zip(ids, vectors, strict=True):
                copy.write_row((cid, vector_literal(vec)))
        cur.execute(
            "UPDATE search_chunks c SET embedding = s.embedding::vector, model_key = %s "
            "FROM staged_vectors s WHERE c.chunk_id = s.chunk_id",
            (self._key,),
        )
        cur.close()

    # ------------------------------------------------------------------ queries

    def _stats(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT coalesce(sum(n_chunks), 0) AS n_chunks,"
                    " coalesce(sum(n_vectors), 0) AS n_vectors FROM search_stats"
                )
            ).one()
        return int(row.n_chunks), int(row.n_vectors)

    @property
    def size(self) -> int:
        return self._stats()[0] if self._engine is not None else 0

    @property
    def vector_count(self) -> int:
        return self._stats()[1] if self._engine is not None else 0

    def unknown_words(self, text: str) -> list[str]:
        """As ``SearchIndex.unknown_words``, with one query for every word's forms."""
        words: list[tuple[str, set[str]]] = []
        for word in _WORDS.findall(text):
            if len(word) < 3 and word.isalpha():
                continue
            terms = lookup_terms(self.analyzer, word)
            if terms:
                words.append((word, terms))
        wanted = sorted({t for _, terms in words for t in terms})
        known: set[str] = set()
        if wanted:
            with self.engine.connect() as conn:
                known = set(
                    conn.execute(
                        sa.text(
                            "SELECT term FROM search_term_stats WHERE term = ANY(:t) AND df > 0"
                        ),
                        {"t": wanted},
                    ).scalars()
                )
        return [word for word, terms in words if not any(t in known for t in terms)]

    def _keyword_cte(self, text: str, params: dict[str, Any], filt: str) -> str:
        params["q_terms"] = self.analyzer.tokens(text)
        params["k1"] = self._settings.bm25_k1
        params["b"] = self._settings.bm25_b
        return (
            "q AS (SELECT t.term, count(*)::float8 AS qtf"
            " FROM unnest(CAST(:q_terms AS text[])) AS t(term) GROUP BY t.term),"
            # Statistics are kept per collection: summed over those this role may
            # read (row-level security), so scores come from what it can read.
            " st AS (SELECT coalesce(sum(n_chunks), 0)::float8 AS n,"
            " greatest(sum(total_terms), 1)::float8 / greatest(sum(n_chunks), 1) AS avgdl"
            " FROM search_stats),"
            " df AS (SELECT s.term, sum(s.df)::float8 AS df FROM search_term_stats s"
            " WHERE s.term = ANY(CAST(:q_terms AS text[])) GROUP BY s.term),"
            " w AS (SELECT q.term, q.qtf * ln(1 + (st.n - s.df + 0.5) / (s.df + 0.5)) AS idf"
            " FROM q JOIN df s ON s.term = q.term CROSS JOIN st WHERE s.df > 0),"
            " kw AS (SELECT p.chunk_id, sum(w.idf * p.tf * (:k1 + 1)"
            " / (p.tf + :k1 * (1 - :b + :b * p.n_terms / st.avgdl))) AS score"
            " FROM w JOIN search_terms p ON p.term = w.term CROSS JOIN st"
            + (
                f" WHERE p.chunk_id IN (SELECT c.chunk_id FROM search_chunks c WHERE true{filt})"
                if filt
                else ""
            )
            + " GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT :n)"
        )

    def _query(
        self,
        text: str,
        query_vector: FloatArray | None,
        n: int,
        filters: SearchFilters | None,
        *,
        keyword: bool,
    ) -> list[_Row]:
        params: dict[str, Any] = {"n": n, "rrf_k": self._settings.rrf_k}
        filt = _filter_sql(filters, params, "c.document_id")
        ctes: list[str] = []
        if keyword:
            ctes.append(self._keyword_cte(text, params, filt))
        else:
            ctes.append("kw AS (SELECT NULL::integer AS chunk_id, NULL::float8 AS score LIMIT 0)")
        if query_vector is not None:
            params["qv"] = vector_literal(query_vector)
            order = "c.embedding <#> CAST(:qv AS vector)"
            if self.exact_vectors:  # no index: the exact top-n by a full scan
                order = f"({order}) + 0"
            ctes.append(
                "vec AS (SELECT c.chunk_id, c.embedding <#> CAST(:qv AS vector) AS dist"
                f" FROM search_chunks c WHERE c.embedding IS NOT NULL{filt}"
                f" ORDER BY {order} LIMIT :n)"
            )
        else:
            ctes.append("vec AS (SELECT NULL::integer AS chunk_id, NULL::float8 AS dist LIMIT 0)")
        sql = (
            "WITH " + ", ".join(ctes) + ", kr AS (SELECT chunk_id, score,"
            " row_number() OVER (ORDER BY score DESC, chunk_id) AS r FROM kw),"
            " vr AS (SELECT chunk_id, -dist AS score,"
            " row_number() OVER (ORDER BY dist, chunk_id) AS r FROM vec),"
            # Materialised: the fused rows (at most 2n) then find their documents
            # by primary key; inlined, the planner hashed every readable row of
            # search_chunks under row-level security (7 ms at 5,000 chunks).
            " f AS MATERIALIZED (SELECT coalesce(kr.chunk_id, vr.chunk_id) AS chunk_id,"
            " kr.r AS kr, kr.score AS ks, vr.r AS vr, vr.score AS vs,"
            " coalesce(1.0::float8 / (:rrf_k + kr.r), 0)"
            " + coalesce(1.0::float8 / (:rrf_k + vr.r), 0) AS rrf"
            " FROM kr FULL JOIN vr ON kr.chunk_id = vr.chunk_id)"
            " SELECT f.chunk_id, c.document_id, f.kr, f.ks, f.vr, f.vs, f.rrf"
            " FROM f JOIN search_chunks c ON c.chunk_id = f.chunk_id"
            " ORDER BY f.rrf DESC, f.chunk_id"
        )
        # ef_search: the HNSW candidate list, at least twice the candidates we fuse
        # (pgvector's default, 40, is below the 50 candidates asked for).
        ef = max(40, 2 * n)
        with self.engine.connect() as conn:
            info = conn.connection.info
            fresh = not info.get(_SESSION_KEY)
            if fresh:
                conn.exec_driver_sql(_SESSION_SETTINGS)
            if info.get(_EF_KEY) != ef:
                conn.exec_driver_sql(f"SET hnsw.ef_search = {int(ef)}")
            rows = conn.execute(sa.text(sql), params).all()
            conn.commit()  # a SET in a rolled-back transaction is undone: mark after this
            info[_SESSION_KEY] = True
            info[_EF_KEY] = ef
        return [
            _Row(
                r.chunk_id,
                r.document_id,
                r.kr,
                None if r.ks is None else float(r.ks),
                r.vr,
                None if r.vs is None else float(r.vs),
                float(r.rrf),
            )
            for r in rows
        ]

    def search(
        self,
        text: str,
        query_vector: FloatArray | None,
        *,
        k: int,
        filters: SearchFilters | None = None,
        fusion: str | None = None,
        by_page: bool = True,
    ) -> list[Hit]:
        """The ``k`` best chunks, ranked as ``SearchIndex.search`` ranks them."""
        fusion = fusion or self._settings.fusion
        n = max(k, self._settings.candidates)
        if fusion == "bm25":
            query_vector = None
        if query_vector is not None:
            vec = np.asarray(query_vector, dtype=np.float32).ravel()
            if vec.shape[0] != DIM or not math.isfinite(float(vec.sum())):
                raise ValueError(f"a query vector must have {DIM} finite values")
        rows = self._query(text, query_vector, n, filters, keyword=fusion != "vector")
        doc_of = {r.chunk_id: r.document_id for r in rows}
        kw = sorted((r for r in rows if r.kw_rank is not None), key=lambda r: r.kw_rank or 0)
        vc = sorted((r for r in rows if r.vec_rank is not None), key=lambda r: r.vec_rank or 0)
        bm25 = [(r.chunk_id, r.kw_score or 0.0) for r in kw]
        vecs = [(r.chunk_id, r.vec_score or 0.0) for r in vc]
        fused: list[tuple[int, float]]
        if fusion == "bm25" or not vecs:
            fused = bm25
        elif fusion == "vector" or not bm25:
            fused = vecs
        elif fusion == "convex":
            alpha = self._settings.convex_alpha
            fused = convex_combination([dict(bm25), dict(vecs)], weights=[1.0 - alpha, alpha])
        else:
            fused = [(r.chunk_id, r.rrf) for r in rows]  # already in RRF order
        single = fusion in ("bm25", "vector") or not (bm25 and vecs)
        depth = self._settings.page_depth
        if by_page and depth > 0 and fused:
            extra = 0.0 if single else self._settings.page_extra
            fused = leaders_first(fused, doc_of.get, depth=depth, extra=extra)
        fused = at_most_per_group(fused, doc_of, k, self._settings.max_per_document)
        by_id = {r.chunk_id: r for r in rows}
        hits = []
        for cid, score in fused[:k]:
            r = by_id[cid]
            hits.append(
                Hit(
                    chunk_id=cid,
                    score=float(score),
                    bm25_rank=r.kw_rank if fusion != "vector" else None,
                    bm25_score=r.kw_score if fusion != "vector" else None,
                    vector_rank=r.vec_rank,
                    vector_score=r.vec_score,
                    fused_score=float(score) if fusion in ("rrf", "convex") else None,
                )
            )
        return hits
