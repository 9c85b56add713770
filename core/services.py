"""``Services``: the one object that owns Archivist's resources.

Created inside the running event loop; ``start()`` builds, in order, the
database engine (the process's only one) and its schema, the search index, the
embedding model (loaded lazily in the background), the parsing process pool
(on first use) and the provider chain; ``aclose()`` tears them down in reverse.
The CLI and the Qt bridge call its async methods and never touch the parts.

Usage::

    services = Services(load_settings())
    await services.start()
    try:
        report = await services.ingest(["~/notes"])
        answer = await services.ask("What did we decide about the SLA?")
    finally:
        await services.aclose()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from core import store
from core.config import Settings
from core.db.engine import create_engine_for, schema_revision, upgrade_schema
from core.embedding import Embedder, FloatArray
from core.errors import ArchivistError, ModelError, StorageError, UsageError
from core.ingest.parsers import SUPPORTED_EXTENSIONS
from core.ingest.pipeline import IndexDelta, Ingestor
from core.logs import request_context
from core.providers.base import Provider
from core.providers.breaker import CircuitBreaker
from core.providers.extractive import NOT_FOUND, ExtractiveProvider
from core.providers.openai import OpenAIProvider
from core.providers.router import Attempt, Done, MidStreamFailure, ProviderRouter, Token
from core.search import Hit, SearchIndex
from core.types import (
    Answer,
    AnswerChunk,
    Citation,
    ComponentHealth,
    ContextPassage,
    GenerationRequest,
    HealthSnapshot,
    IngestProgress,
    IngestReport,
    ScoredChunk,
    SearchFilters,
)

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
_MARKER = re.compile(r"\[(\d{1,2})\]")


def _clean_question(text: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split())
    if not text:
        raise UsageError("The question is empty.")
    if len(text) > MAX_QUESTION_CHARS:
        raise UsageError(
            f"The question is too long ({len(text)} characters; the limit is {MAX_QUESTION_CHARS})."
        )
    return text


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: sa.Engine | None = None
        self._embedder: Embedder | None = None
        self._index: SearchIndex | None = None
        self._index_task: asyncio.Task[None] | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._ingestor: Ingestor | None = None
        self._router: ProviderRouter | None = None
        self._http: httpx.AsyncClient | None = None
        self._started = False
        self._closed = False
        self.started_at = 0.0
        self.engines_created = 0
        self._recent_latency_ms: list[float] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        return self._engine

    @property
    def router(self) -> ProviderRouter:
        assert self._router is not None
        return self._router

    async def start(self, *, warm_models: bool = True) -> None:
        """Create and open every resource (idempotent)."""
        if self._started:
            return
        asyncio.get_running_loop()  # must be called inside the loop that will use us
        self.started_at = time.time()
        s = self.settings
        for folder in (s.home, s.log_dir, s.index_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine_for(s.database_url)
        self.engines_created += 1
        try:
            await asyncio.to_thread(upgrade_schema, self._engine)
        except BaseException:
            self._engine.dispose()
            self._engine = None
            raise
        self._embedder = Embedder(s.embedding)
        self._index = SearchIndex(s.retrieval, s.index_dir)
        self._index_task = asyncio.create_task(
            asyncio.to_thread(self._index.load, self._engine, self._embedder.model_id),
            name="archivist-index-load",
        )
        if warm_models and s.ingest.embed:
            self._model_task = asyncio.create_task(self._warm_model(), name="archivist-model-load")
        self._router = self._build_router()
        self._started = True
        log.info("services started", extra={"home": str(s.home), "db": self._safe_db_url()})

    async def _warm_model(self) -> None:
        assert self._embedder is not None
        try:
            await asyncio.to_thread(self._embedder.load)
        except ModelError as exc:
            log.warning("embedding model unavailable; keyword search only: %s", exc)

    def _build_router(self) -> ProviderRouter:
        entries: list[tuple[Provider, CircuitBreaker]] = []
        fallback: Provider | None = None
        for p in self.settings.providers:
            provider: Provider
            if p.kind == "openai":
                if self._http is None:
                    # One client for every HTTP provider: loading CA certificates
                    # costs ~50-100 ms per client. Each provider sets its own timeouts.
                    self._http = httpx.AsyncClient()
                provider = OpenAIProvider(p, self._http)
            elif p.kind == "extractive":
                fallback = ExtractiveProvider(p.name)
                continue
            else:
                log.warning("provider %s of kind %s is not available here; skipped", p.name, p.kind)
                continue
            breaker = CircuitBreaker(p.name, p.breaker or self.settings.breaker)
            breaker.add_listener(
                lambda t: log.warning(
                    "breaker %s: %s -> %s (%s)", t.provider, t.old, t.new, t.reason
                )
            )
            entries.append((provider, breaker))
        return ProviderRouter(entries, fallback or ExtractiveProvider())

    async def aclose(self) -> None:
        """Release everything in reverse order of creation (idempotent)."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        for task in (self._model_task, self._index_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if self._router is not None:
            await self._router.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._executor = None
        if self._index is not None and self._engine is not None:
            if (
                self._index_task is not None
                and self._index_task.done()
                and not (self._index_task.cancelled() or self._index_task.exception())
            ):
                try:
                    await asyncio.to_thread(self._index.save, self._engine)
                except Exception:
                    log.exception("could not persist the search index")
            self._index.close()
        if self._embedder is not None:
            self._embedder.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        log.info("services closed")

    async def __aenter__(self) -> Services:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def wait_ready(self) -> None:
        """Wait until the search index is loaded (it loads in the background)."""
        await self._ready_index()

    async def _ready_index(self) -> SearchIndex:
        assert self._index is not None and self._index_task is not None
        try:
            await asyncio.shield(self._index_task)
        except Exception as exc:
            raise StorageError(f"The search index could not be loaded: {exc}") from exc
        return self._index

    # ------------------------------------------------------------------ ingestion

    def _get_ingestor(self) -> Ingestor:
        if self._ingestor is None:
            workers = self.settings.ingest.parse_workers
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
            self._ingestor = Ingestor(
                self.engine,
                self.settings.ingest,
                embedder=self._embedder,
                executor=self._executor,
                on_change=self._on_index_change,
                supported=SUPPORTED_EXTENSIONS,
            )
        return self._ingestor

    def _on_index_change(self, delta: IndexDelta) -> None:
        # Called from the pipeline (event loop); the index update itself is cheap
        # relative to parsing and embedding, and it keeps search consistent.
        assert self._index is not None
        self._index.apply(delta)

    async def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> IngestReport:
        if not paths:
            raise UsageError("Nothing to ingest: give at least one file or folder.")
        await self._ready_index()
        with request_context() as rid:
            log.info("ingest started", extra={"paths": [str(p) for p in paths]})
            report = await self._get_ingestor().ingest(paths, progress=progress, cancel=cancel)
            log.info("ingest done", extra={"request": rid, "summary": report.summary()})
        await asyncio.to_thread(self._index_save)
        return report

    def _index_save(self) -> None:
        assert self._index is not None
        try:
            self._index.save(self.engine)
        except OSError:
            log.exception("could not persist the search index")

    # ------------------------------------------------------------------ asking

    async def ask(
        self,
        question: str,
        *,
        use_cache: bool = True,
        on_token: Callable[[AnswerChunk], None] | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
    ) -> Answer:
        """Answer ``question`` from the knowledge base, with citations."""
        text = _clean_question(question)
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        with request_context() as rid:
            index = await self._ready_index()
            timings["wait_index"] = (time.perf_counter() - t_start) * 1000
            k = top_k or self.settings.retrieval.top_k
            scored = await self._search(index, text, k=k, filters=filters, timings=timings)

            passages = tuple(
                ContextPassage(i + 1, s.chunk.source, s.chunk.page, s.chunk.text)
                for i, s in enumerate(scored)
            )
            request = GenerationRequest(question=text, passages=passages)
            t0 = time.perf_counter()
            pieces: list[str] = []
            provider = ""
            degraded = False
            notice: str | None = None
            first_token_ms: float | None = None
            router = self.router
            async for event in router.stream(request):
                if isinstance(event, Token):
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - t0) * 1000
                    pieces.append(event.text)
                    if on_token is not None:
                        on_token(AnswerChunk(event.text, event.provider))
                elif isinstance(event, Done):
                    provider = event.provider
                    degraded = event.degraded and bool(router.names())
                    notice = event.notice if router.names() else None
                elif isinstance(event, MidStreamFailure):
                    notice = event.message
                elif isinstance(event, Attempt) and event.outcome != "success":
                    log.warning("provider %s: %s (%s)", event.provider, event.outcome, event.error)
            timings["generate"] = (time.perf_counter() - t0) * 1000
            if first_token_ms is not None:
                timings["first_token"] = first_token_ms
            answer_text = "".join(pieces).strip()
            citations = self._citations(answer_text, scored)
            timings["total"] = (time.perf_counter() - t_start) * 1000
            answer = Answer(
                question=text,
                text=answer_text,
                citations=citations,
                provider=provider,
                cache="miss",
                degraded=degraded,
                timings_ms=timings,
                request_id=rid,
                retrieved=tuple(scored),
                notice=notice,
            )
            self._recent_latency_ms.append(timings["total"])
            del self._recent_latency_ms[:-1000]
            log.info(
                "ask answered",
                extra={
                    "provider": provider,
                    "degraded": degraded,
                    "citations": len(citations),
                    "question_hash": hashlib.sha256(text.encode()).hexdigest()[:16],
                    "timings_ms": {k2: round(v, 1) for k2, v in timings.items()},
                },
            )
            return answer

    async def search(
        self,
        text: str,
        *,
        k: int = 10,
        fusion: str | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        """Retrieve the ``k`` best chunks (no generation); returns them and timings in ms."""
        text = _clean_question(text)
        timings: dict[str, float] = {}
        index = await self._ready_index()
        scored = await self._search(
            index, text, k=k, filters=filters, timings=timings, fusion=fusion
        )
        return scored, timings

    async def _search(
        self,
        index: SearchIndex,
        text: str,
        *,
        k: int,
        filters: SearchFilters | None,
        timings: dict[str, float],
        fusion: str | None = None,
        query_vector: FloatArray | None = None,
    ) -> list[ScoredChunk]:
        if query_vector is None and fusion != "bm25":
            query_vector = await self._query_vector(text, index, timings)
        t0 = time.perf_counter()
        hits = await asyncio.to_thread(
            index.search, text, query_vector, k=k, filters=filters, fusion=fusion
        )
        t1 = time.perf_counter()
        scored = await asyncio.to_thread(self._hydrate, hits)
        timings["search"] = (t1 - t0) * 1000
        timings["hydrate"] = (time.perf_counter() - t1) * 1000
        return scored

    async def _query_vector(
        self, text: str, index: SearchIndex, timings: dict[str, float]
    ) -> FloatArray | None:
        embedder = self._embedder
        if embedder is None or index.vector_count == 0 or not self.settings.ingest.embed:
            return None
        t0 = time.perf_counter()
        try:
            if not embedder.loaded:
                if self._model_task is not None:
                    await asyncio.shield(self._model_task)
                else:
                    await asyncio.to_thread(embedder.load)
            if not embedder.loaded:
                return None
            vec = await asyncio.to_thread(embedder.encode_query, text)
        except ModelError as exc:
            log.warning("query embedding unavailable: %s", exc)
            return None
        timings["embed_query"] = (time.perf_counter() - t0) * 1000
        return vec

    def _hydrate(self, hits: list[Hit]) -> list[ScoredChunk]:
        with self.engine.connect() as conn:
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

    @staticmethod
    def _citations(answer_text: str, scored: Sequence[ScoredChunk]) -> tuple[Citation, ...]:
        if not scored or answer_text.startswith(NOT_FOUND):
            return ()
        used = []
        for m in _MARKER.finditer(answer_text):
            n = int(m.group(1))
            if 1 <= n <= len(scored) and n not in used:
                used.append(n)
        if not used:  # a model that did not cite: show what it was given
            used = list(range(1, len(scored) + 1))
        return tuple(
            Citation(
                marker=n,
                chunk_id=scored[n - 1].chunk.id,
                source=scored[n - 1].chunk.source,
                page=scored[n - 1].chunk.page,
                start=scored[n - 1].chunk.start,
                end=scored[n - 1].chunk.end,
                text=scored[n - 1].chunk.text,
                score=scored[n - 1].score,
            )
            for n in sorted(used)
        )

    # ------------------------------------------------------------------ views

    async def document_text(self, path: str) -> str:
        """The extracted text of a source (citations index into it)."""

        def read() -> str | None:
            with self.engine.connect() as conn:
                return store.document_text(conn, path)

        text = await asyncio.to_thread(read)
        if text is None:
            raise UsageError(f"{path} is not in the knowledge base.")
        return text

    async def quarantined(self) -> list[tuple[str, str, float]]:
        def read() -> list[tuple[str, str, float]]:
            with self.engine.connect() as conn:
                return store.quarantined(conn)

        return await asyncio.to_thread(read)

    async def health(self) -> HealthSnapshot:
        components: list[ComponentHealth] = []

        def db_check() -> tuple[str | None, dict[str, int]]:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                return schema_revision(self.engine), store.kb_counts(conn)

        try:
            revision, counts = await asyncio.to_thread(db_check)
            components.append(
                ComponentHealth(
                    "database",
                    "ok",
                    self.engine.dialect.name,
                    {"url": self._safe_db_url(), "schema_revision": revision, **counts},
                )
            )
        except (sa.exc.SQLAlchemyError, ArchivistError) as exc:
            components.append(ComponentHealth("database", "down", str(exc)))

        index = self._index
        task = self._index_task
        if index is not None and task is not None:
            if not task.done():
                components.append(ComponentHealth("search_index", "degraded", "loading"))
            elif task.cancelled() or task.exception() is not None:
                components.append(ComponentHealth("search_index", "down", "failed to load"))
            else:
                components.append(
                    ComponentHealth(
                        "search_index",
                        "ok",
                        f"{index.size} chunks, {index.vector_count} vectors",
                        {
                            "chunks": index.size,
                            "vectors": index.vector_count,
                            "loaded_from": index.loaded_from,
                            "load_s": round(index.load_s, 3),
                        },
                    )
                )
        emb = self._embedder
        if emb is not None:
            model_task = self._model_task
            if emb.loaded:
                components.append(
                    ComponentHealth("embedding_model", "ok", emb.model_id, {"dim": emb.dim})
                )
            elif model_task is not None and not model_task.done():
                components.append(ComponentHealth("embedding_model", "degraded", "loading"))
            else:
                components.append(
                    ComponentHealth(
                        "embedding_model", "disabled", "not loaded (loads on first use)"
                    )
                )
        router = self._router
        if router is not None:
            for snap in router.health():
                components.append(snap.to_component())
            fb = router.fallback
            if fb is not None:
                components.append(ComponentHealth(f"provider:{fb.name}", "ok", "offline fallback"))
        components.append(ComponentHealth("cache", "disabled", "not configured in this build"))
        worst = "ok"
        for c in components:
            if c.status == "down" and c.name in {"database", "search_index"}:
                worst = "down"
            elif c.status in {"down", "degraded"} and worst == "ok":
                worst = "degraded"
        return HealthSnapshot(status=worst, components=tuple(components), taken_at=time.time())  # type: ignore[arg-type]

    async def stats(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            with self.engine.connect() as conn:
                return {
                    "knowledge_base": store.kb_counts(conn),
                    "documents_by_kind": store.documents_by_kind(conn),
                    "kb_version": store.kb_version(conn),
                }

        data = await asyncio.to_thread(read)
        data["session"] = {
            "asks": len(self._recent_latency_ms),
            "uptime_s": round(time.time() - self.started_at, 1),
        }
        return data

    def _safe_db_url(self) -> str:
        if self._engine is None:
            return ""
        return self._engine.url.render_as_string(hide_password=True)
