"""``Services``: the one object that owns Archivist's resources.

Created inside the running event loop; ``start()`` builds, in order, the
database engine (the process's only one) and its schema, the audit writer, the
rate limiter, the cache, the search index (loaded in the background), the
embedding model (loaded lazily in the background), the provider chain and the
ask pipeline; ``aclose()`` tears down exactly what was built, in reverse, also
after a ``start()`` that failed part-way. The parsing process pool is built on
first use. The CLI and the Qt bridge call its async methods and never touch the
parts; the work itself lives in ``core.answer`` (asking), ``core.retrieval``
(search), ``core.ingest`` (ingestion) and ``core.health`` (health and stats).

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
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from core.answer.pipeline import AskPipeline, QuotesCallback, TokenCallback
from core.audit import AuditEvent, AuditLog, AuditStats
from core.cache import CacheService, EmbeddedBackend, RedisBackend, make_namespace
from core.config import Settings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.embedding import Embedder
from core.errors import ModelError, StorageError, UsageError
from core.health import LoadState, health_snapshot, load_state, stats_snapshot
from core.ingest.parsers import SUPPORTED_EXTENSIONS
from core.ingest.pipeline import Ingestor
from core.logs import request_context
from core.providers.chain import build_router
from core.providers.openai import PROMPT_VERSION
from core.providers.router import ProviderRouter
from core.redisconn import RedisConnections
from core.retrieval.rerank import Reranker
from core.retrieval.retriever import Retriever
from core.retrieval.search import SearchIndex
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
    BreakerSnapshot,
    BreakerTransition,
    HealthSnapshot,
    IndexDelta,
    IngestProgress,
    IngestReport,
    ScoredChunk,
    SearchFilters,
    StatsSnapshot,
)
from core.watch import FolderWatcher

log = logging.getLogger(__name__)


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
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._ingestor: Ingestor | None = None
        self._router: ProviderRouter | None = None
        self._http: httpx.AsyncClient | None = None
        self._retriever: Retriever | None = None
        self._asker: AskPipeline | None = None
        self._started = False
        self._closed = False
        self.started_at = 0.0
        self.engines_created = 0
        self._audit: AuditLog | None = None
        self._audit_stats: AuditStats | None = None
        self._watcher: FolderWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache: CacheService | None = None
        self._limiter: RateLimiter | None = None
        self._redis: RedisConnections | None = None  # one pool for the cache and the limiter
        self._kb_version = 0
        self._changed_documents: set[int] = set()
        self.watch_listeners: list[Callable[[str, IngestReport], None]] = []
        # What start() built, undone in reverse by aclose() (also after a failed start).
        self._teardown: list[tuple[str, Callable[[], Awaitable[None]]]] = []
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
        if self._router is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        return self._router

    @property
    def cache(self) -> CacheService:
        if self._cache is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        return self._cache

    def _owns(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        self._teardown.append((name, close))

    async def start(self, *, warm_models: bool = True) -> None:
        """Create and open every resource (idempotent).

        If a step fails, what the earlier steps built is closed before the error
        propagates, so a failed start leaks no engine, task or connection.
        """
        if self._started:
            return
        if self._closed:
            raise RuntimeError("Services cannot be restarted after aclose()")
        self._loop = asyncio.get_running_loop()  # the loop that will use us
        self.started_at = time.time()
        try:
            await self._build(warm_models)
        except BaseException:
            await self._unwind()
            raise
        self._started = True
        if self.settings.watched_folders:
            await self.watch(self.settings.watched_folders)
        log.info("services started", extra={"home": str(self.settings.home), "db": self.db_url})

    async def _build(self, warm_models: bool) -> None:
        s = self.settings
        for folder in (s.home, s.log_dir, s.index_dir):
            folder.mkdir(parents=True, exist_ok=True)
        engine = self._engine = create_engine_for(s.database_url)
        self.engines_created += 1
        self._owns("engine", self._dispose_engine)
        await asyncio.to_thread(upgrade_schema, engine)
        audit = self._audit = AuditLog(engine, log_questions=s.audit.log_questions)
        await audit.start()
        self._owns("audit", audit.aclose)  # flushes what is queued
        self._audit_stats = AuditStats(engine)
        if s.redis_url:
            # One connection pool for the cache and the rate limiter; built first,
            # so the reverse teardown closes it after both of them.
            self._redis = RedisConnections(s.redis_url)
            self._owns("redis", self._close_redis)
        if s.rate_limit.enabled:
            self._limiter = self._build_limiter()
            self._owns("rate limiter", self._close_limiter)
        cache = self._cache = CacheService(
            s.cache,
            RedisBackend(self._redis.client) if self._redis is not None else None,
            EmbeddedBackend(s.home / "cache.sqlite3", max_entries=s.cache.max_entries),
        )
        cache.breaker.add_listener(self._on_breaker)  # before start(): audits a fallback at start
        self._owns("cache", cache.aclose)
        await cache.start()
        self._kb_version = await asyncio.to_thread(self._read_kb_version)
        embedder = self._embedder = Embedder(s.embedding)
        self._owns("embedder", _closer(embedder.close))
        if s.retrieval.reranker:
            # One thread: measured 2-4x faster than two when the other core is busy.
            reranker = self._reranker = Reranker(
                s.retrieval.reranker,
                s.models_dir,
                max_length=s.retrieval.rerank_max_length,
                threads=1,
            )
            self._owns("reranker", _closer(reranker.close))
        index = self._index = SearchIndex(s.retrieval, s.index_dir)
        self._owns("search index", self._close_index)
        self._index_task = asyncio.create_task(
            asyncio.to_thread(index.load, engine, embedder.model_id), name="archivist-index-load"
        )
        self._owns("index load", _canceller(self._index_task))
        if warm_models and s.ingest.embed:
            self._model_task = asyncio.create_task(self._warm_model(), name="archivist-model-load")
            self._owns("model load", _canceller(self._model_task))
        self._owns("parse pool", self._close_executor)
        router = self._router = build_router(s, self._http_client, self._on_breaker)
        self._owns("http client", self._close_http)
        self._owns("providers", router.aclose)
        self._retriever = Retriever(
            s, engine, self._ready_index, embedder, self._wait_model, self._reranker
        )
        self._asker = AskPipeline(
            s,
            self._retriever,
            router,
            cache=cache,
            limiter=self._limiter,
            detector=self._detector,
            audit=self.audit,
            namespace=self._namespace,
        )
        self._prune_task = asyncio.create_task(self._prune_quietly(), name="archivist-prune")
        self._owns("audit pruning", _canceller(self._prune_task))
        self._owns("watcher", self._close_watcher)

    def _http_client(self) -> httpx.AsyncClient:
        # One client for every HTTP provider: loading CA certificates costs
        # ~50-100 ms per client. Each provider sets its own timeouts.
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def aclose(self) -> None:
        """Release what ``start()`` built, in reverse order (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._unwind()
        log.info("services closed")

    async def _unwind(self) -> None:
        while self._teardown:
            name, close = self._teardown.pop()
            try:
                await close()
            except Exception:
                log.exception("closing %s failed", name)

    async def _dispose_engine(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def _close_limiter(self) -> None:
        if self._limiter is not None:
            await self._limiter.aclose()

    async def _close_redis(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _close_index(self) -> None:
        """Persist the index if it loaded completely, then release its files."""
        index, task = self._index, self._index_task
        if index is None:
            return
        if (
            task is not None
            and task.done()
            and not task.cancelled()
            and task.exception() is None
            and self._engine is not None
        ):
            try:
                await asyncio.to_thread(index.save, self._engine)
            except Exception:
                log.exception("could not persist the search index")
        index.close()

    async def _close_executor(self) -> None:
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._executor = None

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _close_watcher(self) -> None:
        if self._watcher is not None:
            await self._watcher.aclose()
            self._watcher = None

    async def __aenter__(self) -> Services:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _warm_model(self) -> None:
        assert self._embedder is not None
        try:
            await asyncio.to_thread(self._embedder.load)
        except ModelError as exc:
            log.warning("embedding model unavailable; keyword search only: %s", exc)

    async def _wait_model(self) -> None:
        """Wait for the embedding model (loading it now if nothing is loading it)."""
        if self._model_task is not None:
            await asyncio.shield(self._model_task)
        elif self._embedder is not None:
            await asyncio.to_thread(self._embedder.load)

    async def wait_ready(self) -> None:
        """Wait until the search index is loaded (it loads in the background)."""
        await self._ready_index()

    async def _ready_index(self) -> SearchIndex:
        if self._index is None or self._index_task is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        try:
            await asyncio.shield(self._index_task)
        except Exception as exc:
            raise StorageError(f"The search index could not be loaded: {exc}") from exc
        return self._index

    def _read_kb_version(self) -> int:
        with self.engine.connect() as conn:
            return store.kb_version(conn)

    @property
    def db_url(self) -> str:
        """The database URL with any password masked."""
        if self._engine is None:
            return ""
        return self._engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ events

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

    # ------------------------------------------------------------------ cache

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
        if self._redis is None:
            return local
        limiter = FailoverRateLimiter(RedisRateLimiter(self._redis.client, buckets), local)
        limiter.breaker.add_listener(self._on_breaker)
        return limiter

    # ------------------------------------------------------------------ watching

    async def watch(self, folders: Sequence[str]) -> None:
        """Follow ``folders`` (replacing any watched before): reconcile, then watch."""
        await self._close_watcher()
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
        for chunk, report in self._detector.scan_chunks(delta.added):
            # Indirect prompt injection: flagged chunks stay searchable (the user
            # may be reading about attacks) but are recorded; at ask time, chunks
            # the detector blocks are kept out of the prompt.
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
        index = await self._ready_index()
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
        try:
            await asyncio.to_thread(index.save, self.engine)
        except OSError:
            log.exception("could not persist the search index")
        await self._after_change()
        return report

    async def _after_change(self) -> None:
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

    # ------------------------------------------------------------------ asking

    @property
    def asker(self) -> AskPipeline:
        if self._asker is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        return self._asker

    async def ask(
        self,
        question: str,
        *,
        use_cache: bool = True,
        on_token: TokenCallback | None = None,
        on_quotes: QuotesCallback | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
        session: str = "default",
        skip_providers: Collection[str] = (),
    ) -> Answer:
        """Answer ``question`` with citations; see ``AskPipeline.ask``."""
        return await self.asker.ask(
            question,
            use_cache=use_cache,
            on_token=on_token,
            on_quotes=on_quotes,
            filters=filters,
            top_k=top_k,
            session=session,
            skip_providers=skip_providers,
        )

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
        if self._retriever is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        text = clean_question(text, self.settings.security.max_question_chars)
        timings: dict[str, float] = {}
        rerank: bool | None = None
        if fusion and fusion.endswith("+rerank"):
            fusion, rerank = fusion.removesuffix("+rerank"), True
        elif fusion and fusion.endswith("-rerank"):
            fusion, rerank = fusion.removesuffix("-rerank"), False
        scored = await self._retriever.search(
            text, k=k, filters=filters, timings=timings, fusion=fusion, rerank=rerank
        )
        return scored, timings

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

    # ------------------------------------------------------------------ health and stats

    @property
    def search_index(self) -> SearchIndex | None:
        return self._index

    @property
    def index_load(self) -> LoadState:
        return load_state(self._index_task)

    @property
    def embedder(self) -> Embedder | None:
        return self._embedder

    @property
    def model_load(self) -> LoadState:
        return load_state(self._model_task)

    @property
    def reranker(self) -> Reranker | None:
        return self._reranker

    @property
    def reranker_error(self) -> str | None:
        return self._retriever.reranker_error if self._retriever is not None else None

    @property
    def provider_health(self) -> Sequence[BreakerSnapshot]:
        return self._router.health() if self._router is not None else ()

    @property
    def fallback_provider(self) -> str | None:
        fb = self._router.fallback if self._router is not None else None
        return fb.name if fb is not None else None

    @property
    def watcher(self) -> FolderWatcher | None:
        return self._watcher

    @property
    def rate_limiter(self) -> RateLimiter | None:
        return self._limiter

    @property
    def audit_log(self) -> AuditLog | None:
        return self._audit

    @property
    def audit_stats(self) -> AuditStats | None:
        return self._audit_stats

    @property
    def session_asks(self) -> int:
        return self._asker.asks if self._asker is not None else 0

    async def health(self) -> HealthSnapshot:
        """Every component's state, typed (``core.health``)."""
        return await health_snapshot(self)

    async def stats(self, since: float | None = None, until: float | None = None) -> StatsSnapshot:
        """Knowledge-base counts and audit statistics over [since, until), from SQL aggregates."""
        return await stats_snapshot(self, since, until)

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


def _closer(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        close()

    return run


def _canceller(task: asyncio.Task[Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return run
