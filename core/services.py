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
import dataclasses
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from core.audit import AuditEvent, AuditLog, AuditStats
from core.breaker import BreakerTransition, CircuitBreaker
from core.cache import CacheService, EmbeddedBackend, RedisBackend, make_namespace
from core.config import ProviderSettings, Settings
from core.db import store
from core.db.engine import create_engine_for, schema_revision, upgrade_schema
from core.embedding import Embedder
from core.errors import ArchivistError, ModelError, RateLimited, StorageError, UsageError
from core.ingest.parsers import SUPPORTED_EXTENSIONS
from core.ingest.pipeline import Ingestor
from core.logs import request_context
from core.providers.base import Provider
from core.providers.extractive import NOT_FOUND, ExtractiveProvider
from core.providers.llama_cpp import LlamaCppProvider, local_model_available
from core.providers.openai import PROMPT_VERSION, OpenAIProvider
from core.providers.router import Attempt, Done, MidStreamFailure, ProviderRouter, Token
from core.retrieval.rerank import Reranker
from core.retrieval.search import Hit, SearchIndex
from core.security.injection import InjectionDetector
from core.security.ratelimit import (
    BucketSpec,
    EmbeddedRateLimiter,
    FailoverRateLimiter,
    RateLimiter,
    RateLimitSettings,
    RedisRateLimiter,
)
from core.security.sanitize import clean_question
from core.types import (
    Answer,
    AnswerChunk,
    CacheMatch,
    Citation,
    ComponentHealth,
    ContextPassage,
    FloatArray,
    GenerationRequest,
    HealthSnapshot,
    IndexDelta,
    IngestProgress,
    IngestReport,
    ScoredChunk,
    SearchFilters,
)
from core.watch import FolderWatcher

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d{1,2})\]")
REFUSAL = (
    "This question was not answered: it looks like an attempt to change Archivist's "
    "instructions ({categories}). Ask about the content of your documents instead."
)


def _payload(answer: Answer) -> dict[str, Any]:
    """What the result cache keeps of an answer (JSON-able)."""
    return {
        "text": answer.text,
        "provider": answer.provider,
        "notice": answer.notice,
        "citations": [c.to_json() for c in answer.citations],
    }


def _answer_from_payload(
    question: str, payload: dict[str, Any], timings: dict[str, float], request_id: str
) -> Answer:
    citations = tuple(
        Citation(
            marker=int(c["marker"]),
            chunk_id=int(c["chunk_id"]),
            source=str(c["source"]),
            page=c.get("page"),
            start=int(c["start"]),
            end=int(c["end"]),
            text=str(c["text"]),
            score=float(c["score"]),
        )
        for c in payload.get("citations", [])
    )
    return Answer(
        question=question,
        text=str(payload.get("text", "")),
        citations=citations,
        provider=str(payload.get("provider", "")),
        cache="result",
        degraded=False,
        timings_ms=timings,
        request_id=request_id,
        notice=payload.get("notice"),
    )


class _AskTrace:
    """What one ask did, for the audit log (filled in as the ask proceeds)."""

    __slots__ = (
        "cache_layer",
        "detail",
        "outcome",
        "provider",
        "question",
        "request_id",
        "session",
        "timings",
    )

    def __init__(self, request_id: str, session: str, question: str) -> None:
        self.request_id = request_id
        self.session = session
        self.question = question
        self.outcome = "failed"
        self.provider = ""
        self.cache_layer = "miss"
        self.timings: dict[str, float] = {}
        self.detail: dict[str, Any] = {}


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: sa.Engine | None = None
        self._embedder: Embedder | None = None
        self._index: SearchIndex | None = None
        self._index_task: asyncio.Task[None] | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._reranker: Reranker | None = None
        self._reranker_error: str | None = None
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._ingestor: Ingestor | None = None
        self._router: ProviderRouter | None = None
        self._http: httpx.AsyncClient | None = None
        self._started = False
        self._closed = False
        self.started_at = 0.0
        self.engines_created = 0
        self._recent_latency_ms: list[float] = []
        self._audit: AuditLog | None = None
        self._watcher: FolderWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache: CacheService | None = None
        self._kb_version = 0
        self._changed_documents: set[int] = set()
        self.watch_listeners: list[Callable[[str, IngestReport], None]] = []
        self._audit_stats: AuditStats | None = None
        self._limiter: RateLimiter | None = None
        self._redis_limiter_client: Any = None
        self._detector = InjectionDetector(
            flag_at=settings.security.flag_at, block_at=settings.security.block_at
        )

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
        self._loop = asyncio.get_running_loop()  # the loop that will use us
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
        self._audit = AuditLog(self._engine, log_questions=s.audit.log_questions)
        await self._audit.start()
        self._audit_stats = AuditStats(self._engine)
        self._limiter = self._build_limiter() if s.rate_limit.enabled else None
        self._cache = CacheService(
            s.cache,
            RedisBackend(s.redis_url) if s.redis_url else None,
            EmbeddedBackend(s.home / "cache.sqlite3", max_entries=s.cache.max_entries),
        )
        await self._cache.start()
        self._kb_version = await asyncio.to_thread(self._read_kb_version)
        self._embedder = Embedder(s.embedding)
        if s.retrieval.reranker:
            # One thread: measured 2-4x faster than two when the other core is busy.
            self._reranker = Reranker(
                s.retrieval.reranker,
                s.models_dir,
                max_length=s.retrieval.rerank_max_length,
                threads=1,
            )
        self._index = SearchIndex(s.retrieval, s.index_dir)
        self._index_task = asyncio.create_task(
            asyncio.to_thread(self._index.load, self._engine, self._embedder.model_id),
            name="archivist-index-load",
        )
        if warm_models and s.ingest.embed:
            self._model_task = asyncio.create_task(self._warm_model(), name="archivist-model-load")
        self._router = self._build_router()
        self._prune_task = asyncio.create_task(self._prune_quietly(), name="archivist-prune")
        self._started = True
        if s.watched_folders:
            await self.watch(s.watched_folders)
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
            elif p.kind == "llama_cpp":
                provider = LlamaCppProvider(p, self.settings.models_dir, n_threads=p.threads)
            else:
                log.warning("provider %s of kind %s is not available here; skipped", p.name, p.kind)
                continue
            breaker = CircuitBreaker(p.name, p.breaker or self.settings.breaker)
            breaker.add_listener(self._on_breaker)
            entries.append((provider, breaker))
        if not self.settings.providers:
            local = self._default_local_provider()
            if local is not None:
                breaker = CircuitBreaker(local.name, self.settings.breaker)
                breaker.add_listener(self._on_breaker)
                entries.append((local, breaker))
        return ProviderRouter(entries, fallback or ExtractiveProvider())

    def _default_local_provider(self) -> LlamaCppProvider | None:
        """The local model when it is installed (and not switched off), else None."""
        choice = self.settings.local_model
        if choice == "off":
            return None
        name = local_model_available(self.settings.models_dir, None if choice == "auto" else choice)
        if name is None:
            return None
        # A CPU model needs time: prefill of ~1,000 context tokens takes seconds.
        # Answers are capped at 320 tokens: measured on the Python docs questions,
        # the 0.5B model spends most of a 15-55 s answer decoding long examples
        # (~25 tokens/s on two cores) that the question did not ask for.
        settings = ProviderSettings(
            name="local",
            kind="llama_cpp",
            model=name,
            timeout_s=180.0,
            first_token_timeout_s=90.0,
            max_tokens=320,
        )
        log.info("local model %s is the first provider", name)
        return LlamaCppProvider(settings, self.settings.models_dir)

    def _read_kb_version(self) -> int:
        with self.engine.connect() as conn:
            return store.kb_version(conn)

    @property
    def cache(self) -> CacheService:
        assert self._cache is not None
        return self._cache

    def _namespace(self) -> str:
        """Cached answers are scoped by knowledge base, provider chain and prompt."""
        router = self.router
        chain = []
        for p in router.providers:
            settings = getattr(p, "settings", None)
            chain.append(f"{p.name}:{getattr(settings, 'model', '')}")
        if router.fallback is not None:
            chain.append(router.fallback.name)
        retrieval = f"top{self.settings.retrieval.top_k}:{self.settings.retrieval.fusion}"
        if self._reranker is not None:
            retrieval += f":rerank={self._reranker.name}"
        return make_namespace(self._kb_version, ",".join(chain) + "|" + retrieval, PROMPT_VERSION)

    async def evict_cached_answer(self, entry_id: str) -> bool:
        """ "This answer is wrong": drop one cached answer."""
        evicted = await self.cache.evict(entry_id)
        self.audit("cache", "evicted" if evicted else "not_found", detail={"entry": entry_id})
        return evicted

    async def clear_cache(self) -> None:
        await self.cache.invalidate_all()
        self.audit("cache", "cleared")

    async def watch(self, folders: Sequence[str]) -> None:
        """Follow ``folders`` (replacing any watched before): reconcile, then watch."""
        if self._watcher is not None:
            await self._watcher.aclose()
            self._watcher = None
        if not folders:
            return
        self._watcher = FolderWatcher(
            folders, lambda paths: self.ingest(paths), on_report=self._on_watch_report
        )
        await self._watcher.start()

    @property
    def watched_folders(self) -> list[str]:
        return list(self._watcher.folders) if self._watcher is not None else []

    def _on_watch_report(self, folder: str, report: IngestReport) -> None:
        for listener in list(self.watch_listeners):
            try:
                listener(folder, report)
            except Exception:
                log.exception("watch listener failed")

    def _build_limiter(self) -> RateLimiter:
        """Token buckets: on Redis when configured (shared by every process), else local."""
        r = self.settings.rate_limit
        buckets = RateLimitSettings(
            per_session=BucketSpec(r.session_rate_per_s, r.session_burst)
            if r.session_rate_per_s > 0
            else None,
            global_=BucketSpec(r.global_rate_per_s, r.global_burst)
            if r.global_rate_per_s > 0
            else None,
        )
        local = EmbeddedRateLimiter(buckets)
        if not self.settings.redis_url:
            return local
        import redis.asyncio as aioredis

        self._redis_limiter_client = aioredis.Redis.from_url(
            self.settings.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        return FailoverRateLimiter(RedisRateLimiter(self._redis_limiter_client, buckets), local)

    def _on_breaker(self, t: BreakerTransition) -> None:
        log.warning("breaker %s: %s -> %s (%s)", t.provider, t.old, t.new, t.reason)
        self.audit(
            "breaker",
            str(t.new),
            provider=t.provider,
            detail={"from": str(t.old), "to": str(t.new), "reason": t.reason},
        )

    def audit(self, action: str, outcome: str, **fields: Any) -> None:
        """Record an audit event (never blocks; written in batches by one writer).

        Safe from any thread: off the loop, the event is handed to the loop.
        """
        audit = self._audit
        if audit is None:
            return
        event = AuditEvent(ts=time.time(), action=action, outcome=outcome, **fields)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop or self._loop is None:
            audit.record(event)
        else:
            self._loop.call_soon_threadsafe(audit.record, event)

    async def aclose(self) -> None:
        """Release everything in reverse order of creation (idempotent)."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        if self._watcher is not None:
            await self._watcher.aclose()
        for task in (self._prune_task, self._model_task, self._index_task):
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
        if self._limiter is not None:
            await self._limiter.aclose()
        if self._redis_limiter_client is not None:
            await self._redis_limiter_client.aclose()
        if self._cache is not None:
            await self._cache.aclose()
        if self._audit is not None:
            await self._audit.aclose()  # flushes what is queued
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
        if self._reranker is not None:
            self._reranker.close()
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
        """Apply an ingestion change (called from a worker thread of the pipeline)."""
        assert self._index is not None
        self._index.apply(delta)
        self._changed_documents.update(delta.documents)
        self._flag_injections(delta)

    def _flag_injections(self, delta: IndexDelta) -> None:
        """Indirect prompt injection: flag chunks that read like instructions to a model.

        Flagged chunks stay searchable (the user may be reading about attacks) but
        are recorded in the audit log and the log; at ask time, chunks the
        detector blocks are kept out of the prompt.
        """
        for chunk in delta.added:
            report = self._detector.scan(chunk.text, source="document")
            if report.flagged:
                log.warning(
                    "possible prompt injection in %s (chunk %d): %s",
                    chunk.source,
                    chunk.id,
                    ", ".join(report.categories),
                )
                self.audit(
                    "injection",
                    "blocked" if report.blocked else "flagged",
                    detail={
                        "path": chunk.source,
                        "chunk_id": chunk.id,
                        "page": chunk.page,
                        "score": round(report.score, 3),
                        "categories": list(report.categories),
                    },
                )

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
            for o in report.failed:
                self.audit(
                    "quarantine",
                    "failed",
                    request_id=rid,
                    detail={"path": o.path, "reason": o.reason},
                )
            self.audit(
                "ingest",
                "cancelled" if report.cancelled else ("partial" if report.failed else "ok"),
                request_id=rid,
                latency_ms=report.elapsed_s * 1000,
                detail={"summary": report.summary(), "paths": [str(p) for p in paths][:20]},
            )
        await asyncio.to_thread(self._index_save)
        await self._after_change(report)
        return report

    async def _after_change(self, report: IngestReport) -> None:
        """New knowledge-base version: cached answers of the old one stop matching.

        The namespace carries the version, so an addition (which could change any
        answer) retires every cached answer without a key walk; answers that cited
        changed or removed documents are also deleted outright.
        """
        changed = self._changed_documents
        self._changed_documents = set()
        version = await asyncio.to_thread(self._read_kb_version)
        if version != self._kb_version:
            self._kb_version = version
            if changed and self._cache is not None:
                await self._cache.invalidate_documents(changed)

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
        session: str = "default",
        skip_providers: Collection[str] = (),
    ) -> Answer:
        """Answer ``question`` from the knowledge base, with citations.

        Raises ``UsageError`` for an empty or over-long question and
        ``RateLimited`` when the session asks too fast; every other fault ends in
        an answer (degraded if need be), never in an exception.
        ``skip_providers`` regenerates an answer that broke off mid-stream on the
        next providers (and bypasses the cache).
        """
        text = clean_question(question, self.settings.security.max_question_chars)
        t_start = time.perf_counter()
        with request_context() as rid:
            trace = _AskTrace(rid, session, text)
            try:
                answer = await self._ask(
                    text,
                    trace,
                    use_cache and not skip_providers,
                    on_token,
                    filters,
                    top_k,
                    skip_providers,
                )
            except RateLimited:
                trace.outcome = "rate_limited"
                raise
            except BaseException as exc:
                trace.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
                trace.detail["error"] = type(exc).__name__
                raise
            finally:
                trace.timings["total"] = (time.perf_counter() - t_start) * 1000
                self._record_ask(trace)
            return answer

    async def _ask(
        self,
        text: str,
        trace: _AskTrace,
        use_cache: bool,
        on_token: Callable[[AnswerChunk], None] | None,
        filters: SearchFilters | None,
        top_k: int | None,
        skip_providers: Collection[str] = (),
    ) -> Answer:
        timings = trace.timings
        t_start = time.perf_counter()
        if self._limiter is not None:
            (await self._limiter.acquire(trace.session)).raise_if_denied()

        report = self._detector.scan(text, source="question")
        if report.flagged:
            trace.detail["injection"] = {"score": report.score, "categories": report.categories}
        if report.blocked and self.settings.security.question_policy == "refuse":
            trace.outcome = "refused"
            trace.provider = "policy"
            return Answer(
                question=text,
                text=REFUSAL.format(categories=", ".join(report.categories)),
                citations=(),
                provider="policy",
                cache="miss",
                degraded=False,
                timings_ms=timings,
                request_id=trace.request_id,
                notice="Refused by the prompt-injection policy (security.question_policy).",
            )
        notices: list[str] = []
        if report.flagged:
            notices.append(
                "This question looks like it tries to change Archivist's instructions ("
                + ", ".join(report.categories)
                + "); it was answered from your documents only."
            )

        index = await self._ready_index()
        timings["wait_index"] = (time.perf_counter() - t_start) * 1000
        cache = (
            self._cache if use_cache and self._cache is not None and self._cache.enabled else None
        )
        qvec = await self._cached_query_vector(text, index, timings, trace, cache)
        namespace = self._namespace()
        if cache is not None and qvec is not None and filters is None and top_k is None:
            t0 = time.perf_counter()
            hit = await cache.lookup_result(namespace, text, qvec)
            timings["cache_lookup"] = (time.perf_counter() - t0) * 1000
            if hit is not None:
                trace.cache_layer = "result"
                trace.outcome = "ok"
                trace.provider = str(hit.payload.get("provider", ""))
                trace.detail["cache_match"] = {
                    "question": hit.question,
                    "similarity": hit.similarity,
                }
                timings["total"] = (time.perf_counter() - t_start) * 1000
                answer = _answer_from_payload(text, hit.payload, timings, trace.request_id)
                answer = dataclasses.replace(
                    answer,
                    cache="result",
                    cache_match=CacheMatch(hit.question, hit.similarity),
                    cache_entry=hit.entry_id,
                )
                if on_token is not None:
                    on_token(AnswerChunk(answer.text, answer.provider))
                return answer
        k = top_k or self.settings.retrieval.top_k
        scored = await self._search(
            index, text, k=k, filters=filters, timings=timings, query_vector=qvec
        )

        # Retrieved text is data. Passages that read like instructions to a model
        # (indirect injection) are left out of the prompt and the user is told.
        # Regex scoring of every passage: a worker thread, not the (GUI) event loop.
        kept = await asyncio.to_thread(self._without_injections, scored)
        dropped = len(scored) - len(kept)
        if dropped:
            trace.detail["passages_dropped"] = dropped
            notices.append(
                f"{dropped} retrieved passage(s) contained text that looks like instructions "
                "to an AI model and were left out."
            )
        passages = tuple(
            ContextPassage(i + 1, sc.chunk.source, sc.chunk.page, sc.chunk.text)
            for i, sc in enumerate(kept)
        )
        request = GenerationRequest(question=text, passages=passages)
        t0 = time.perf_counter()
        pieces: list[str] = []
        provider = ""
        degraded = False
        first_token_ms: float | None = None
        interrupted_by: str | None = None
        router = self.router
        attempts: list[dict[str, Any]] = []
        async for event in router.stream(request, skip=skip_providers):
            if isinstance(event, Token):
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - t0) * 1000
                pieces.append(event.text)
                if on_token is not None:
                    on_token(AnswerChunk(event.text, event.provider))
            elif isinstance(event, Done):
                provider = event.provider
                # With no language model configured the extractive answer is the
                # normal answer, not a degraded one.
                degraded = event.degraded and bool(router.names())
                if event.notice and router.names():
                    notices.append(event.notice)
            elif isinstance(event, MidStreamFailure):
                interrupted_by = event.provider  # Done carries the notice
            elif isinstance(event, Attempt):
                attempts.append(
                    {
                        "provider": event.provider,
                        "outcome": event.outcome,
                        "error": event.error,
                        "ms": round(event.elapsed_ms, 1),
                    }
                )
        timings["generate"] = (time.perf_counter() - t0) * 1000
        if first_token_ms is not None:
            timings["first_token"] = first_token_ms
        answer_text = "".join(pieces).strip()
        citations = self._citations(answer_text, kept)
        timings["total"] = (time.perf_counter() - t_start) * 1000
        trace.provider = provider
        trace.outcome = (
            "degraded" if degraded else ("not_found" if answer_text.startswith(NOT_FOUND) else "ok")
        )
        trace.detail.update(
            {
                "attempts": attempts,
                "citations": len(citations),
                "breakers": {snap.name: str(snap.state) for snap in router.health()},
            }
        )
        answer = Answer(
            question=text,
            text=answer_text,
            citations=citations,
            provider=provider,
            cache="embedding" if trace.cache_layer == "embedding" else "miss",
            degraded=degraded,
            timings_ms=timings,
            request_id=trace.request_id,
            retrieved=tuple(scored),
            notice=" ".join(notices) or None,
            interrupted_by=interrupted_by,
        )
        # Only a complete, normal answer is worth serving again.
        if (
            cache is not None
            and qvec is not None
            and trace.outcome in {"ok", "not_found"}
            and filters is None
            and top_k is None
            and not dropped
        ):
            doc_ids = {sc.chunk.document_id for sc in kept}
            entry = await cache.put_result(namespace, text, qvec, _payload(answer), doc_ids)
            answer = dataclasses.replace(answer, cache_entry=entry)
        return answer

    def _without_injections(self, scored: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        return [
            sc for sc in scored if not self._detector.scan(sc.chunk.text, source="document").blocked
        ]

    def _record_ask(self, trace: _AskTrace) -> None:
        total = trace.timings.get("total", 0.0)
        self._recent_latency_ms.append(total)
        del self._recent_latency_ms[:-1000]
        detail = dict(trace.detail)
        detail["timings_ms"] = {k: round(v, 1) for k, v in trace.timings.items()}
        self.audit(
            "ask",
            trace.outcome,
            request_id=trace.request_id,
            session=trace.session,
            provider=trace.provider or None,
            cache_layer=trace.cache_layer,
            latency_ms=total,
            question=trace.question,
            detail=detail,
        )
        log.info(
            "ask %s",
            trace.outcome,
            extra={
                "provider": trace.provider,
                "cache": trace.cache_layer,
                "timings_ms": detail["timings_ms"],
            },
        )

    async def _cached_query_vector(
        self,
        text: str,
        index: SearchIndex,
        timings: dict[str, float],
        trace: _AskTrace,
        cache: CacheService | None,
    ) -> FloatArray | None:
        """The query embedding: from layer 1 of the cache, else computed (and cached)."""
        embedder = self._embedder
        if embedder is None or not self.settings.ingest.embed:
            return None
        if cache is not None:
            t0 = time.perf_counter()
            vec = await cache.get_embedding(embedder.model_id, text)
            if vec is not None:
                timings["embed_query"] = (time.perf_counter() - t0) * 1000
                trace.cache_layer = "embedding"
                return np.asarray(vec, dtype=np.float32)
        if index.vector_count == 0 and cache is None:
            return None
        vec = await self._query_vector(text, index, timings, force=cache is not None)
        if vec is not None and cache is not None:
            await cache.put_embedding(embedder.model_id, text, vec)
        return vec

    async def search(
        self,
        text: str,
        *,
        k: int = 10,
        fusion: str | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        """Retrieve the ``k`` best chunks (no generation); returns them and timings in ms.

        ``fusion`` is ``bm25``, ``vector``, ``rrf`` or ``convex``; a ``+rerank``
        suffix (e.g. ``rrf+rerank``) forces the cross-encoder stage, ``-rerank``
        turns it off; without a suffix the configured reranker applies.
        """
        text = clean_question(text, self.settings.security.max_question_chars)
        timings: dict[str, float] = {}
        index = await self._ready_index()
        rerank: bool | None = None
        if fusion and fusion.endswith("+rerank"):
            fusion, rerank = fusion.removesuffix("+rerank"), True
        elif fusion and fusion.endswith("-rerank"):
            fusion, rerank = fusion.removesuffix("-rerank"), False
        scored = await self._search(
            index, text, k=k, filters=filters, timings=timings, fusion=fusion, rerank=rerank
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
        rerank: bool | None = None,
    ) -> list[ScoredChunk]:
        reranker = self._reranker if rerank is not False else None
        if rerank and reranker is None:
            raise UsageError("No reranker is configured (set retrieval.reranker).")
        n = max(k, self.settings.retrieval.rerank_candidates) if reranker is not None else k
        if query_vector is None and fusion != "bm25":
            query_vector = await self._query_vector(text, index, timings)
        t0 = time.perf_counter()
        hits = await asyncio.to_thread(
            index.search, text, query_vector, k=n, filters=filters, fusion=fusion
        )
        t1 = time.perf_counter()
        scored = await asyncio.to_thread(self._hydrate, hits)
        timings["search"] = (t1 - t0) * 1000
        timings["hydrate"] = (time.perf_counter() - t1) * 1000
        if reranker is not None and scored:
            t2 = time.perf_counter()
            try:
                scored = await asyncio.to_thread(reranker.rerank, text, scored, k)
            except ModelError as exc:
                # Visible, not silent: health shows it and the fused order is kept.
                self._reranker_error = str(exc)
                log.warning("reranker unavailable, keeping the fused order: %s", exc)
                scored = scored[:k]
            timings["rerank"] = (time.perf_counter() - t2) * 1000
        return scored[:k]

    async def _query_vector(
        self, text: str, index: SearchIndex, timings: dict[str, float], *, force: bool = False
    ) -> FloatArray | None:
        embedder = self._embedder
        if embedder is None or not self.settings.ingest.embed:
            return None
        if index.vector_count == 0 and not force:
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

    async def filters_for(
        self, paths: Sequence[str | Path] = (), kinds: Sequence[str] = ()
    ) -> SearchFilters:
        """Filters from user input: a file limits to that document, a folder to its tree."""

        def resolve() -> SearchFilters:
            doc_ids: set[int] = set()
            folders: list[str] = []
            with self.engine.connect() as conn:
                for raw in paths:
                    p = Path(raw).expanduser().resolve()
                    if p.is_dir():
                        folders.append(str(p))
                        continue
                    row = store.document_by_path(conn, str(p))
                    if row is None:
                        raise UsageError(
                            f"{p} is neither a folder nor a document in the knowledge base."
                        )
                    doc_ids.add(row.id)
            if doc_ids and folders:
                # Both given: the union, by listing the folders' documents too.
                with self.engine.connect() as conn:
                    for folder in folders:
                        doc_ids.update(d.id for d in store.documents_under(conn, folder))
                folders = []
            return SearchFilters(
                document_ids=frozenset(doc_ids), folders=tuple(folders), kinds=frozenset(kinds)
            )

        return await asyncio.to_thread(resolve)

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
        if self._reranker is None:
            components.append(ComponentHealth("reranker", "disabled", "not configured"))
        else:
            components.append(
                ComponentHealth(
                    "reranker",
                    "degraded" if self._reranker_error else "ok",
                    self._reranker_error or self._reranker.name,
                    {"loaded": self._reranker.loaded},
                )
            )
        router = self._router
        if router is not None:
            for snap in router.health():
                components.append(snap.to_component())
            fb = router.fallback
            if fb is not None:
                components.append(ComponentHealth(f"provider:{fb.name}", "ok", "offline fallback"))
        if self._cache is not None:
            cache_health = self._cache.health().to_component()
            metrics = self._cache.metrics().to_json()
            components.append(
                dataclasses.replace(cache_health, data={**cache_health.data, "metrics": metrics})
            )
        watcher = self._watcher
        if watcher is None:
            components.append(ComponentHealth("watcher", "disabled", "no watched folders"))
        else:
            components.append(
                ComponentHealth(
                    "watcher",
                    "ok" if watcher.running and not watcher.last_error else "degraded",
                    f"{len(watcher.folders)} folder(s)",
                    {
                        "folders": watcher.folders,
                        "batches": watcher.batches,
                        "last_error": watcher.last_error,
                    },
                )
            )
        worst = "ok"
        for c in components:
            if c.status == "down" and c.name in {"database", "search_index"}:
                worst = "down"
            elif c.status in {"down", "degraded"} and worst == "ok":
                worst = "degraded"
        return HealthSnapshot(status=worst, components=tuple(components), taken_at=time.time())  # type: ignore[arg-type]

    async def stats(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """Knowledge-base counts and audit statistics over [since, until), from SQL aggregates."""
        if self._audit is not None:
            await self._audit.flush()  # so the figures include this process's events
        audit_stats = self._audit_stats

        def read() -> dict[str, Any]:
            with self.engine.connect() as conn:
                data: dict[str, Any] = {
                    "knowledge_base": store.kb_counts(conn),
                    "documents_by_kind": store.documents_by_kind(conn),
                    "kb_version": store.kb_version(conn),
                }
            if audit_stats is not None:
                data["audit"] = audit_stats.summary(since, until, last=10)
            return data

        data = await asyncio.to_thread(read)
        data["session"] = {
            "asks": len(self._recent_latency_ms),
            "uptime_s": round(time.time() - self.started_at, 1),
        }
        return data

    async def _prune_quietly(self) -> None:
        try:
            removed = await self.prune_audit()
        except Exception as exc:  # retention must never stop the app
            log.warning("audit retention pruning failed: %s", exc)
            return
        if removed:
            log.info("audit retention: %d old events removed", removed)

    async def prune_audit(self) -> int:
        """Delete audit rows older than the retention setting (in batches)."""
        assert self._audit_stats is not None
        return await asyncio.to_thread(self._audit_stats.prune, self.settings.audit.retention_days)

    def _safe_db_url(self) -> str:
        if self._engine is None:
            return ""
        return self._engine.url.render_as_string(hide_password=True)
