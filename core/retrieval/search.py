"""The hybrid search index the app queries: BM25 + vectors, fused.

``SearchIndex`` owns one ``BM25Index`` and one ``VectorIndex`` (core.retrieval)
plus the filter metadata (which document, folder and kind each chunk belongs
to). It is filled from the database at start-up, or from its persisted files
when they match the knowledge-base version, and updated incrementally from the
ingestion pipeline's ``IndexDelta``. All methods are blocking: callers run them
in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.retrieval.bm25 import BM25Index
from core.retrieval.fusion import (
    convex_combination,
    leaders_first,
    reciprocal_rank_fusion,
)
from core.retrieval.text import EMBEDDING_RECIPE, Analyzer, embedding_key
from core.retrieval.vectors import VectorIndex
from core.types import FloatArray, IndexDelta, SearchFilters

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: vectors stored under embedding_key (heading-aware recipe)
# A word as a person types it, identifiers included (sys.path, time-ordered, max_workers).
_WORDS = re.compile(r"[^\W_][\w.\-]*[^\W_]|[^\W_]", re.UNICODE)
# Common English prefixes: "re-calibrated" is about what "calibrated" is about.
_PREFIXES = ("re", "un", "pre", "non", "dis", "mis", "over", "under", "de", "co", "sub", "multi")


def lookup_terms(analyzer: Analyzer, word: str) -> set[str]:
    """The index terms under which a document would hold ``word``; empty for a stop word.

    The word as written first: a name written in camel case or with underscores is
    indexed whole, lowercased and unstemmed ("InRelease" -> "inrelease", beside its
    parts), and the lowercased word is looked up that way too, for a question that
    writes the name in lower case. Then the forms without a common English prefix.
    """
    low = word.lower()
    terms: set[str] = set()
    forms = [word] + [
        low[len(p) :] for p in _PREFIXES if low.startswith(p) and len(low) - len(p) >= 4
    ]
    for form in forms:
        tokens = analyzer.tokens(form)
        if not tokens:  # a stop word: nothing to look up, never "unknown"
            return set()
        terms.add(tokens[0])
    terms.add(low)
    return terms


def keyword_text(text: str, heading_path: tuple[str, ...]) -> str:
    """What BM25 indexes for a chunk: its section's headings, then its text.

    A chunk deep in a page rarely repeats the page's subject ("functools",
    "Logging HOWTO"); its heading path does. Indexing the headings with the
    text lets a query about the subject find every part of the section.
    """
    if not heading_path:
        return text
    return " / ".join(heading_path) + "\n" + text


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    score: float
    bm25_rank: int | None
    bm25_score: float | None
    vector_rank: int | None
    vector_score: float | None
    fused_score: float | None


class SearchIndex:
    def __init__(self, settings: RetrievalSettings, directory: Path, dim: int = 384) -> None:
        self._settings = settings
        self._dir = directory
        self._dim = dim
        self._lock = threading.RLock()
        self.analyzer = Analyzer(stemming=settings.stemming, stop_words=settings.stop_words)
        self._bm25 = BM25Index(k1=settings.bm25_k1, b=settings.bm25_b)
        self._vectors: VectorIndex | None = None
        self._chunk_doc: dict[int, int] = {}
        self._doc_path: dict[int, str] = {}
        self._doc_kind: dict[int, str] = {}
        self.model_id = ""
        self.loaded_from = "empty"
        self.load_s = 0.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def _meta_path(self) -> Path:
        return self._dir / "meta.json"

    def load(self, engine: sa.Engine, model_id: str) -> None:
        """Fill the indexes: persisted files when current, else from the database."""
        t0 = time.perf_counter()
        self.model_id = model_id
        self._dir.mkdir(parents=True, exist_ok=True)
        with engine.connect() as conn:
            version = store.kb_version(conn)
            meta_rows = store.chunk_meta(conn)
        with self._lock:
            self._chunk_doc = {cid: did for cid, did, _, _ in meta_rows}
            self._doc_path = {did: path for _, did, path, _ in meta_rows}
            self._doc_kind = {did: kind for _, did, _, kind in meta_rows}
            if self._persisted_matches(version, model_id):
                try:
                    self._bm25 = BM25Index.load(self._dir / "bm25.npz")
                    vectors = VectorIndex(self._dim)
                    vectors.open(self._dir / "vectors")
                    self._vectors = vectors
                    self.loaded_from = "disk"
                except Exception as exc:  # a damaged file: rebuild, never fail start-up
                    log.warning("search index files unusable (%s); rebuilding", exc)
                    self._rebuild(engine, model_id)
            else:
                self._rebuild(engine, model_id)
        self.load_s = time.perf_counter() - t0
        log.info(
            "search index ready",
            extra={"chunks": len(self._chunk_doc), "from": self.loaded_from, "s": self.load_s},
        )

    def _persisted_matches(self, version: int, model_id: str) -> bool:
        try:
            meta = json.loads(self._meta_path.read_text())
        except (OSError, ValueError):
            return False
        return bool(
            meta.get("format") == FORMAT_VERSION
            and meta.get("kb_version") == version
            and meta.get("model_id") == model_id
            and meta.get("bm25_k1") == self._settings.bm25_k1
            and meta.get("bm25_b") == self._settings.bm25_b
            and meta.get("stemming") == self._settings.stemming
            and meta.get("stop_words") == self._settings.stop_words
        )

    def _rebuild(self, engine: sa.Engine, model_id: str) -> None:
        self._bm25 = BM25Index(k1=self._settings.bm25_k1, b=self._settings.bm25_b)
        vectors_dir = self._dir / "vectors"
        if self._vectors is not None:
            self._vectors.close()
        shutil.rmtree(vectors_dir, ignore_errors=True)
        self._vectors = VectorIndex(self._dim)
        self._vectors.open(vectors_dir)
        with engine.connect() as conn:
            for batch in store.iter_chunk_texts(conn):
                ids = [cid for cid, _, _ in batch]
                self._bm25.add(ids, [self.analyzer.tokens(keyword_text(t, h)) for _, t, h in batch])
            have: set[int] = set()
            for ids, matrix in store.iter_chunk_vectors(conn, embedding_key(model_id)):
                self._vectors.add(ids, matrix)
                have.update(ids)
            if len(have) < len(self._chunk_doc):
                self._add_legacy_vectors(conn, model_id, have)
        self.loaded_from = "database"

    def _add_legacy_vectors(self, conn: sa.Connection, model_id: str, have: set[int]) -> None:
        """Vectors of passages embedded before ``EMBEDDING_RECIPE`` (text only, no headings).

        A knowledge base built by an older version keeps its vector search; each
        document gets heading-aware vectors when it is ingested again.
        """
        assert self._vectors is not None
        legacy = 0
        for ids, matrix in store.iter_chunk_vectors(conn, model_id):
            keep = [i for i, cid in enumerate(ids) if cid not in have]
            if keep:
                self._vectors.add([ids[i] for i in keep], matrix[keep])
                legacy += len(keep)
        if legacy:
            log.warning(
                "%d passages use vectors of an older embedding recipe until re-ingested",
                legacy,
                extra={"passages": legacy, "recipe": EMBEDDING_RECIPE},
            )

    def save(self, engine: sa.Engine) -> None:
        """Persist the indexes with the knowledge-base version they reflect."""
        with engine.connect() as conn:
            version = store.kb_version(conn)
        with self._lock:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._bm25.save(self._dir / "bm25.npz")
            if self._vectors is not None:
                self._vectors.flush()
            meta = {
                "format": FORMAT_VERSION,
                "kb_version": version,
                "model_id": self.model_id,
                "bm25_k1": self._settings.bm25_k1,
                "bm25_b": self._settings.bm25_b,
                "stemming": self._settings.stemming,
                "stop_words": self._settings.stop_words,
            }
            tmp = self._meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self._meta_path)

    def close(self) -> None:
        with self._lock:
            if self._vectors is not None:
                self._vectors.close()
                self._vectors = None

    # ------------------------------------------------------------------ updates

    def apply(self, delta: IndexDelta) -> None:
        with self._lock:
            if delta.removed:
                self._bm25.remove(list(delta.removed))
                if self._vectors is not None:
                    self._vectors.remove(list(delta.removed))
                for cid in delta.removed:
                    self._chunk_doc.pop(cid, None)
            for doc_id, path in delta.moved:
                self._doc_path[doc_id] = path
            if delta.added:
                ids = [c.id for c in delta.added]
                self._bm25.add(
                    ids,
                    [
                        self.analyzer.tokens(keyword_text(c.text, c.heading_path))
                        for c in delta.added
                    ],
                )
                if delta.vectors is not None and self._vectors is not None:
                    self._vectors.add(ids, delta.vectors)
                for chunk, kind in zip(delta.added, delta.kinds, strict=False):
                    self._chunk_doc[chunk.id] = chunk.document_id
                    self._doc_path[chunk.document_id] = chunk.source
                    self._doc_kind[chunk.document_id] = kind
            if delta.filled and delta.filled_vectors is not None and self._vectors is not None:
                # Vectors filled in behind keyword search; chunks removed meanwhile skipped.
                keep = [i for i, cid in enumerate(delta.filled) if cid in self._chunk_doc]
                if keep:
                    rows = np.asarray(delta.filled_vectors)[keep]
                    self._vectors.add([delta.filled[i] for i in keep], rows)
            live_docs = set(self._chunk_doc.values())
            for doc_id in delta.documents:
                if doc_id not in live_docs:
                    self._doc_path.pop(doc_id, None)
                    self._doc_kind.pop(doc_id, None)

    # ------------------------------------------------------------------ queries

    @property
    def size(self) -> int:
        return len(self._chunk_doc)

    @property
    def vector_count(self) -> int:
        return len(self._vectors) if self._vectors is not None else 0

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` that no indexed chunk contains (as keyword search reads them).

        A word counts as known when a form of it without a common English prefix
        is indexed ("recalibrated" where the documents say "calibrated").
        Words of one or two letters are left out.
        """
        unknown = []
        for word in _WORDS.findall(text):
            if len(word) < 3 and word.isalpha():
                continue
            terms = lookup_terms(self.analyzer, word)
            if terms and not any(self._bm25.document_frequency(t) > 0 for t in terms):
                unknown.append(word)
        return unknown

    def _diversify(self, ranked: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        """At most ``max_per_document`` chunks of one document in the top ``k``.

        Passages from other documents move up instead of a fourth slice of the
        same page; what is pushed out follows, in order, after the top ``k``.
        """
        cap = self._settings.max_per_document
        if cap <= 0:
            return ranked
        per_doc: dict[int, int] = {}
        top: list[tuple[int, float]] = []
        rest: list[tuple[int, float]] = []
        with self._lock:
            for cid, score in ranked:
                doc = self._chunk_doc.get(cid, -cid)
                if len(top) < k and per_doc.get(doc, 0) < cap:
                    per_doc[doc] = per_doc.get(doc, 0) + 1
                    top.append((cid, score))
                else:
                    rest.append((cid, score))
        return top + rest

    def _by_page(
        self, ranked: list[tuple[int, float]], *, single_list: bool
    ) -> list[tuple[int, float]]:
        """Pages ranked by their passages, each page's best passage first (``leaders_first``).

        A fused list ranks a page by its best passage plus ``page_extra`` x the
        next ones: several passages that both retrievers found are evidence. A
        single retriever's list ranks pages by their best passage only: there,
        adding a page's other passages lowered nDCG@10 for vectors on both
        question sets (tests/bench/retrieval_eval.py). Passages keep their scores.
        """
        depth = self._settings.page_depth
        if depth <= 0 or not ranked:
            return ranked
        extra = 0.0 if single_list else self._settings.page_extra
        with self._lock:
            grouped = leaders_first(ranked, self._chunk_doc.get, depth=depth, extra=extra)
        return grouped

    def allowed_ids(self, filters: SearchFilters) -> npt.NDArray[np.int64] | None:
        if filters.empty:
            return None
        folders = tuple(f.rstrip("/") + "/" for f in filters.folders)
        with self._lock:
            docs = {
                d
                for d, path in self._doc_path.items()
                if (not filters.document_ids or d in filters.document_ids)
                and (not folders or path.startswith(folders))
                and (not filters.kinds or self._doc_kind.get(d) in filters.kinds)
            }
            ids = [c for c, d in self._chunk_doc.items() if d in docs]
        return np.asarray(sorted(ids), dtype=np.int64)

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
        """The ``k`` best passages; ``by_page`` False keeps the fused passage order
        (no page ranking), which answers use: see ``Retriever.search``."""
        fusion = fusion or self._settings.fusion
        allowed = self.allowed_ids(filters) if filters is not None else None
        n = max(k, self._settings.candidates)
        with self._lock:
            bm25: list[tuple[int, float]] = []
            if fusion != "vector":
                # Only chunks sharing a query term come back. In a tiny corpus
                # Okapi idf can be <= 0 for every term; such hits still rank.
                bm25 = self._bm25.search(self.analyzer.tokens(text), n, allowed)
            vec: list[tuple[int, float]] = []
            if fusion != "bm25" and query_vector is not None and self.vector_count:
                assert self._vectors is not None
                vec = self._vectors.search(query_vector, n, allowed)
        bm25_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(bm25)}
        vec_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(vec)}
        fused: list[tuple[int, float]]
        if fusion == "bm25" or not vec:
            fused = bm25
        elif fusion == "vector" or not bm25:
            fused = vec
        elif fusion == "convex":
            alpha = self._settings.convex_alpha
            fused = convex_combination([dict(bm25), dict(vec)], weights=[1.0 - alpha, alpha])
        else:
            fused = reciprocal_rank_fusion(
                [[c for c, _ in bm25], [c for c, _ in vec]], k=self._settings.rrf_k
            )
        if by_page:
            single = fusion in ("bm25", "vector") or not (bm25 and vec)
            fused = self._by_page(fused, single_list=single)
        fused = self._diversify(fused, k)
        hits = []
        for cid, score in fused[:k]:
            b = bm25_rank.get(cid)
            v = vec_rank.get(cid)
            hits.append(
                Hit(
                    chunk_id=cid,
                    score=float(score),
                    bm25_rank=b[0] if b else None,
                    bm25_score=float(b[1]) if b else None,
                    vector_rank=v[0] if v else None,
                    vector_score=float(v[1]) if v else None,
                    fused_score=float(score) if fusion in ("rrf", "convex") else None,
                )
            )
        return hits
