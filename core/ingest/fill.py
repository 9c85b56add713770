"""Vectors filled in behind keyword search.

Ingestion stores each document's passages and indexes them for keyword search
as soon as they are parsed (seconds per hundred pages); the embedding model,
the slow part (tens of passages a second on two cores), runs afterwards here.
``VectorFill`` embeds every stored passage that has no vector under the
current model (``embedding_key``), oldest first, in batches: each batch is
stored and handed to the search index at once, so meaning search grows while
the user already asks. Because the database says what is missing, a fill cut
short (the app closed, the batch cancelled) resumes on the next run, and a
change of embedding model re-embeds every passage under the new key instead of
mixing two vector spaces.

Usage::

    fill = VectorFill(engine, embedder, batch=64, on_vectors=index.add_vectors)
    result = await fill.run(progress=lambda p: print(p.done, p.total))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from core.db import store
from core.db.schema import chunks, embeddings
from core.embedding import Embedder
from core.errors import ModelError
from core.retrieval.text import embedding_key, embedding_text
from core.types import FillProgress, FloatArray

log = logging.getLogger(__name__)

OnVectors = Callable[[Sequence[int], FloatArray], None]


def partial_notice(pending: int) -> str:
    """What an answer says while ``pending`` passages still wait for their vectors."""
    return (
        f"Partial search: {pending} passages are still being embedded, so they were "
        "found by their words only (not yet by meaning)."
    )


@dataclass(frozen=True, slots=True)
class FillResult:
    embedded: int  # passages that got vectors in this run
    elapsed_s: float
    cancelled: bool = False
    error: str | None = None  # the model failed: keyword search only until the next run


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    text_hash: str
    text: str


def missing_vectors(conn: sa.Connection, key: str, after: int, limit: int) -> list[_Row]:
    """Passages after chunk ``after`` (id order) whose text has no vector under ``key``."""
    has_vector = sa.exists().where(
        embeddings.c.model_id == key, embeddings.c.text_hash == chunks.c.text_hash
    )
    rows = conn.execute(
        sa.select(chunks.c.id, chunks.c.text_hash, chunks.c.text, chunks.c.heading_path)
        .where(chunks.c.id > after, ~has_vector)
        .order_by(chunks.c.id)
        .limit(limit)
    ).all()
    return [
        _Row(
            r.id,
            r.text_hash,
            embedding_text(
                r.text, tuple(r.heading_path.split(store.HEADING_SEP)) if r.heading_path else ()
            ),
        )
        for r in rows
    ]


def count_missing(conn: sa.Connection, key: str) -> int:
    has_vector = sa.exists().where(
        embeddings.c.model_id == key, embeddings.c.text_hash == chunks.c.text_hash
    )
    n = conn.execute(sa.select(sa.func.count()).select_from(chunks).where(~has_vector))
    return int(n.scalar_one())


def chunks_with_hashes(conn: sa.Connection, hashes: Sequence[str]) -> list[tuple[int, str]]:
    """Every (chunk id, text hash) whose text hash is one of ``hashes``."""
    out: list[tuple[int, str]] = []
    for start in range(0, len(hashes), 500):
        part = list(hashes[start : start + 500])
        rows = conn.execute(
            sa.select(chunks.c.id, chunks.c.text_hash).where(chunks.c.text_hash.in_(part))
        )
        out.extend((r.id, r.text_hash) for r in rows)
    return out


class VectorFill:
    """Gives every stored passage a vector under the embedder's model, behind keyword search.

    One fill runs at a time (``run`` waits for a running one, which then has
    nothing left to do). ``on_vectors`` is called from a worker thread with
    each batch's chunk ids and their vectors, for the search index.
    """

    def __init__(
        self,
        engine: sa.Engine,
        embedder: Embedder,
        *,
        batch: int,
        on_vectors: OnVectors,
    ) -> None:
        self._engine = engine
        self._embedder = embedder
        self._batch = max(1, batch)
        self._on_vectors = on_vectors
        self._lock = asyncio.Lock()
        self._progress = FillProgress(0, 0, 0.0, running=False)
        self.last_error: str | None = None

    @property
    def key(self) -> str:
        return embedding_key(self._embedder.model_id)

    @property
    def progress(self) -> FillProgress:
        """The running fill's progress (or the last one's, with ``running`` False)."""
        return self._progress

    @property
    def running(self) -> bool:
        return self._progress.running

    def count_missing(self) -> int:
        """Passages without a vector under the current model (blocking)."""
        with self._engine.connect() as conn:
            return count_missing(conn, self.key)

    async def run(
        self,
        *,
        progress: Callable[[FillProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> FillResult:
        async with self._lock:
            return await self._run(progress, cancel)

    async def _run(
        self,
        progress: Callable[[FillProgress], None] | None,
        cancel: asyncio.Event | None,
    ) -> FillResult:
        started = time.perf_counter()
        total = await asyncio.to_thread(self.count_missing)
        if total == 0:
            return FillResult(0, 0.0)
        done = 0
        last = 0
        error: str | None = None

        def report(running: bool) -> None:
            self._progress = FillProgress(done, total, time.perf_counter() - started, running)
            if progress is not None:
                progress(self._progress)

        report(True)
        try:
            while not (cancel is not None and cancel.is_set()):
                step = await asyncio.to_thread(self._step, last)
                if step is None:
                    break
                last, given = step
                done += given
                # Passages stored meanwhile (another document) join the total.
                total = max(total, done + await asyncio.to_thread(self.count_missing))
                report(True)
        except ModelError as exc:
            error = self.last_error = str(exc)
            log.warning("vectors not filled in (keyword search only): %s", exc)
        finally:
            report(False)
        elapsed = time.perf_counter() - started
        log.info(
            "vectors filled in",
            extra={"passages": done, "s": round(elapsed, 2), "model": self._embedder.model_id},
        )
        return FillResult(
            done, elapsed, cancelled=cancel is not None and cancel.is_set(), error=error
        )

    def _step(self, after: int) -> tuple[int, int] | None:
        """Embed one batch after chunk ``after``: (last chunk id seen, chunks given vectors)."""
        key = self.key
        with self._engine.connect() as conn:
            rows = missing_vectors(conn, key, after, self._batch)
        if not rows:
            return None
        texts = {r.text_hash: r.text for r in rows}  # one encode per distinct text
        hashes = list(texts)
        matrix = self._embedder.encode_bulk([texts[h] for h in hashes], batch_size=self._batch)
        fresh = {h: matrix[i] for i, h in enumerate(hashes)}
        with self._engine.begin() as conn:
            store.store_embeddings(conn, key, fresh)
            # Later passages with the same text get the vector too (they will not
            # come up as missing any more).
            targets = chunks_with_hashes(conn, hashes)
        ids = [cid for cid, _ in targets]
        vectors = np.vstack([fresh[h] for _, h in targets]).astype(np.float32)
        self._on_vectors(ids, vectors)
        return rows[-1].id, len(ids)
