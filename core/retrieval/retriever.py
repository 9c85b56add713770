"""Retrieval as one step: query embedding, hybrid search, hydration, rerank.

``Retriever`` owns nothing: ``Services`` builds the index, the embedder and the
reranker and hands them in. Every blocking call (embedding, BM25 scoring,
SQLite reads, the cross-encoder) runs in a worker thread, never on the event
loop (which is the GUI thread under qasync).

Usage::

    retriever = Retriever(settings, engine, wait_index, embedder, wait_model, reranker)
    scored = await retriever.search("how do I rotate the logs?", k=5, timings={})
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext

import sqlalchemy as sa

from core.config import Settings
from core.db import store
from core.embedding import Embedder, common_words
from core.errors import ModelError, UsageError
from core.retrieval.backend import SearchBackend
from core.retrieval.rerank import Reranker
from core.retrieval.search import Hit
from core.types import FloatArray, ScoredChunk, SearchFilters

log = logging.getLogger(__name__)

Timings = dict[str, float]


def _name_like(word: str) -> bool:
    """An identifier, a number or a name written with inner capitals (not a plain word)."""
    return not word.isalpha() or any(c.isupper() for c in word[1:])


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


class Retriever:
    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        wait_index: Callable[[], Awaitable[SearchBackend]],
        embedder: Embedder | None,
        wait_model: Callable[[], Awaitable[None]],
        reranker: Reranker | None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._wait_index = wait_index
        self._embedder = embedder
        self._wait_model = wait_model
        self.reranker = reranker
        self.reranker_error: str | None = None
        self._common: frozenset[str] | None = None

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Answering a question: background embedding waits (``Embedder.foreground``)."""
        with self._embedder.foreground() if self._embedder is not None else nullcontext():
            yield

    @property
    def embedding_model_id(self) -> str | None:
        if self._embedder is None or not self._settings.ingest.embed:
            return None
        return self._embedder.model_id

    async def index(self) -> SearchBackend:
        return await self._wait_index()

    async def query_vector(
        self, text: str, timings: Timings, *, force: bool = False
    ) -> FloatArray | None:
        """The query's embedding, or None (no model, no vectors, or the model failed).

        Without ``force`` an index with no vectors skips the model entirely.
        """
        embedder = self._embedder
        if embedder is None or not self._settings.ingest.embed:
            return None
        if not force and (await self.index()).vector_count == 0:
            return None
        t0 = time.perf_counter()
        try:
            if not embedder.loaded:
                await self._wait_model()
            if not embedder.loaded:
                return None
            vec = await asyncio.to_thread(embedder.encode_query, text)
        except ModelError as exc:
            log.warning("query embedding unavailable: %s", exc)
            return None
        timings["embed_query"] = _ms_since(t0)
        return vec

    async def unknown_names(self, text: str) -> tuple[str, ...]:
        """Words of ``text`` that the knowledge base never uses and that are not
        everyday English (names, identifiers, numbers): what the documents lack."""
        if self._common is None:
            self._common = await asyncio.to_thread(common_words, self._settings.embedding.model)
        common = self._common
        index = await self.index()
        unknown = await asyncio.to_thread(index.unknown_words, text)
        return tuple(w for w in unknown if not common or _name_like(w) or w.lower() not in common)

    def sentence_encoder(self) -> Callable[[list[str]], FloatArray] | None:
        """A blocking encoder of sentences (L2-normalised rows) when the model is loaded.

        For the evidence check, which runs in a worker thread. None without a
        loaded model: the check then works on terms alone.
        """
        embedder = self._embedder
        if embedder is None or not embedder.loaded or not self._settings.ingest.embed:
            return None
        return embedder.encode

    async def search(
        self,
        text: str,
        *,
        k: int,
        timings: Timings,
        filters: SearchFilters | None = None,
        fusion: str | None = None,
        query_vector: FloatArray | None = None,
        rerank: bool | None = None,
        by_page: bool = True,
    ) -> list[ScoredChunk]:
        """The ``k`` best chunks for ``text``; ``rerank`` None means "as configured".

        ``by_page`` ranks pages first (each page's best passage, then the rest), which
        finds the right documents; False keeps the fused passage order, which puts
        more passages that hold the answer in front of a reader. Measured on the
        Python docs set (tuning): the answer strings were in the top 5 passages for
        37/51 answerable questions by page and 41/51 by passage; the Debian handbook
        set (frozen) agreed, 27/46 and 31/46.
        """
        reranker = self.reranker if rerank is not False else None
        if rerank and reranker is None:
            raise UsageError("No reranker is configured (set retrieval.reranker).")
        index = await self.index()
        n = max(k, self._settings.retrieval.rerank_candidates) if reranker is not None else k
        if query_vector is None and fusion != "bm25":
            query_vector = await self.query_vector(text, timings)
        t0 = time.perf_counter()
        hits = await asyncio.to_thread(
            index.search, text, query_vector, k=n, filters=filters, fusion=fusion, by_page=by_page
        )
        timings["search"] = _ms_since(t0)
        t1 = time.perf_counter()
        scored = await asyncio.to_thread(self._hydrate, hits)
        timings["hydrate"] = _ms_since(t1)
        if reranker is not None and scored:
            t2 = time.perf_counter()
            try:
                scored = await asyncio.to_thread(reranker.rerank, text, scored, k)
            except ModelError as exc:
                # Visible, not silent: health shows it and the fused order is kept.
                self.reranker_error = str(exc)
                log.warning("reranker unavailable, keeping the fused order: %s", exc)
            timings["rerank"] = _ms_since(t2)
        return scored[:k]

    async def find(
        self,
        text: str,
        *,
        k: int,
        mode: str | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[list[ScoredChunk], Timings]:
        """``search`` for a user-chosen mode, with its timings.

        ``mode`` is ``bm25``, ``vector``, ``rrf`` or ``convex``; a ``+rerank``
        suffix (e.g. ``rrf+rerank``) forces the cross-encoder stage, ``-rerank``
        turns it off; without a suffix the configured reranker applies.
        """
        timings: Timings = {}
        rerank: bool | None = None
        if mode and mode.endswith("+rerank"):
            mode, rerank = mode.removesuffix("+rerank"), True
        elif mode and mode.endswith("-rerank"):
            mode, rerank = mode.removesuffix("-rerank"), False
        scored = await self.search(
            text, k=k, filters=filters, timings=timings, fusion=mode, rerank=rerank
        )
        return scored, timings

    def _hydrate(self, hits: list[Hit]) -> list[ScoredChunk]:
        with self._engine.connect() as conn:
            chunks = store.chunks_by_ids(conn, [h.chunk_id for h in hits])
        out = []
        for h in hits:
            chunk = chunks.get(h.chunk_id)
            if chunk is None:  # deleted between search and hydrate
                continue
            out.append(
                ScoredChunk(
                    chunk=chunk,
                    score=h.score,
                    bm25_rank=h.bm25_rank,
                    bm25_score=h.bm25_score,
                    vector_rank=h.vector_rank,
                    vector_score=h.vector_score,
                    fused_score=h.fused_score,
                )
            )
        return out
