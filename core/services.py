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
import dataclasses
import inspect
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from core import team
from core.answer.pipeline import AskPipeline, QuotesCallback, TokenCallback
from core.audit import AuditEvent, AuditLog, AuditStats, prune_quietly
from core.breaker_shared import RedisBreakerStore, SharedBreakers
from core.cache import CacheService, EmbeddedBackend, RedisBackend, knowledge_base_scope
from core.config import Settings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.embedding import Embedder
from core.errors import StorageError, UsageError
from core.health import HealthParts, LoadState, health_snapshot, load_state, stats_snapshot
from core.ingest.fill import partial_notice
from core.ingest.library import Library
from core.providers.chain import build_router
from core.providers.router import ProviderRouter
from core.redisconn import RedisConnections
from core.retrieval.backend import SearchBackend, open_search_backend
from core.retrieval.rerank import Reranker
from core.retrieval.retriever import Retriever
from core.security.injection import InjectionDetector
from core.security.ratelimit import FailoverRateLimiter, RateLimiter, build_limiter
from core.security.sanitize import clean_question
from core.types import (
    Answer,
    BreakerTransition,
    FillProgress,
    FlaggedPassage,
    HealthSnapshot,
    IngestProgress,
    IngestReport,
    ScoredChunk,
    SearchFilters,
    StatsSnapshot,
)

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: sa.Engine | None = None
        self._embedder: Embedder | None = None
        self._index: SearchBackend | None = None
        self._index_task: asyncio.Task[None] | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._reranker: Reranker | None = None
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._library: Library | None = None
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
        self._cache: CacheService | None = None
        self._limiter: RateLimiter | None = None
        self._redis: RedisConnections | None = None  # one pool for the cache and the limiter
        self._kb_version = 0
        self._team = False  # PostgreSQL with collections: row-level security decides reads
        self._access = ""  # in team mode, what this role may read (core.team)
        self.watch_listeners: list[Callable[[str, IngestReport], None]] = []
        # What start() built, undone in reverse by aclose() (also after a failed start).
        self._teardown: list[tuple[str, Callable[[], object]]] = []
        self._detector = InjectionDetector(
            flag_at=settings.security.flag_at, block_at=settings.security.block_at
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> sa.Engine:
        return _built(self._engine)

    @property
    def router(self) -> ProviderRouter:
        return _built(self._router)

    @property
    def cache(self) -> CacheService:
        return _built(self._cache)

    def _owns(self, name: str, close: Callable[[], object]) -> None:
        """``close`` (sync or async) undoes what was just built."""
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
        self._team = await asyncio.to_thread(team.is_team_database, engine)
        audit = self._audit = AuditLog(engine, log_questions=s.audit.log_questions)
        await audit.start()
        self._owns("audit", audit.aclose)  # flushes what is queued
        self._audit_stats = AuditStats(engine)
        if s.redis_url:
            # One connection pool for the cache and the rate limiter; built first,
            # so the reverse teardown closes it after both of them.
            self._redis = RedisConnections(s.redis_url)
            self._owns("redis", self._redis.aclose)
        if s.rate_limit.enabled:
            redis = self._redis.client if self._redis is not None else None
            # Session buckets are this process's own; the global one is everyone's.
            scope = self._redis.instance if self._redis is not None else ""
            limiter = self._limiter = build_limiter(s.rate_limit, redis, session_scope=scope)
            if isinstance(limiter, FailoverRateLimiter):
                limiter.breaker.add_listener(self._on_breaker)
            self._owns("rate limiter", limiter.aclose)
        primary = None
        if self._redis is not None:
            # Answers are shared only by desktops that share the knowledge base.
            kb = await asyncio.to_thread(knowledge_base_scope, s.database_url)
            primary = RedisBackend(self._redis.client, prefix=f"archivist:cache:{kb}")
        cache = self._cache = CacheService(
            s.cache,
            primary,
            EmbeddedBackend(s.home / "cache.sqlite3", max_entries=s.cache.max_entries),
        )
        cache.breaker.add_listener(self._on_breaker)  # before start(): audits a fallback at start
        self._owns("cache", cache.aclose)
        await cache.start()
        self._kb_version = await asyncio.to_thread(self._read_kb_version)
        embedder = self._embedder = Embedder(s.embedding)
        self._owns("embedder", embedder.close)
        if s.retrieval.reranker:
            # One thread: measured 2-4x faster than two when the other core is busy.
            reranker = self._reranker = Reranker(
                s.retrieval.reranker,
                s.models_dir,
                max_length=s.retrieval.rerank_max_length,
                threads=1,
            )
            self._owns("reranker", reranker.close)
        # The shared index in PostgreSQL when the database has it (team mode).
        index = self._index = await asyncio.to_thread(
            open_search_backend, s.retrieval, engine, s.index_dir
        )
        self._owns("search index", self._close_index)
        self._index_task = asyncio.create_task(
            asyncio.to_thread(index.load, engine, embedder.model_id), name="archivist-index-load"
        )
        self._owns("index load", _canceller(self._index_task))
        if warm_models and s.ingest.embed:
            self._model_task = asyncio.create_task(
                asyncio.to_thread(embedder.load_or_warn), name="archivist-model-load"
            )
            self._owns("model load", _canceller(self._model_task))
        self._owns("parse pool", self._close_executor)
        self._library = Library(
            engine,
            s.ingest,
            wait_index=self._ready_index,
            embedder=embedder,
            detector=self._detector,
            audit=self.audit,
            make_executor=self._parse_pool,
            after_change=self._after_change,
            watch_listeners=self.watch_listeners,
        )
        self._owns("watcher", self._library.aclose)
        if warm_models and s.ingest.embed:
            # Passages an earlier run left without vectors (cut short, or another
            # embedding model) get them behind keyword search; health shows it.
            stop = asyncio.Event()
            fill = asyncio.create_task(
                self._library.fill_vectors(cancel=stop), name="archivist-vector-fill"
            )
            self._owns("vector fill", _stopper(stop, fill))
        shared: SharedBreakers | None = None
        if self._redis is not None:
            # Provider breakers shared with every instance on this Redis.
            store = RedisBreakerStore(self._redis.client)
            shared = SharedBreakers(store, instance=self._redis.instance)
            shared.breaker.add_listener(self._on_breaker)
            self._owns("shared breakers", shared.aclose)
        router = self._router = build_router(s, self._http_client, self._on_breaker, shared)
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
            kb_version=self._cache_scope,
        )
        prune = prune_quietly(self._audit_stats, s.audit.retention_days)
        self._owns("audit pruning", _canceller(asyncio.create_task(prune, name="archivist-prune")))

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
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("closing %s failed", name)

    def _dispose_engine(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def _close_index(self) -> None:
        """Persist the index if it loaded completely, then release its files."""
        index, task = _built(self._index), self._index_task
        if load_state(task) is LoadState.READY and self._engine is not None:
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

    async def __aenter__(self) -> Services:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _wait_model(self) -> None:
        """Wait for the embedding model (loading it now if nothing is loading it)."""
        if self._model_task is not None:
            await asyncio.shield(self._model_task)
        elif self._embedder is not None:
            await asyncio.to_thread(self._embedder.load)

    async def wait_ready(self) -> None:
        """Wait until the search index is loaded (it loads in the background)."""
        await self._ready_index()

    async def _ready_index(self) -> SearchBackend:
        if self._index is None or self._index_task is None:
            raise RuntimeError("Services.start() has not run (or aclose() already did)")
        try:
            await asyncio.shield(self._index_task)
        except Exception as exc:
            raise StorageError(f"The search index could not be loaded: {exc}") from exc
        return self._index

    def _cache_scope(self) -> int | str:
        """The knowledge base cached answers belong to. In team mode: its version as
        the database has it (others ingest too) and what this role may read, read
        before each question (an answer built from a collection never serves a
        reader without it, and a revoke retires what the reader had cached)."""
        return self._access if self._team else self._kb_version

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
        """Record an audit event (never blocks, safe from any thread; see ``AuditLog``)."""
        if self._audit is not None:
            self._audit.record(AuditEvent(time.time(), action, outcome, **fields))

    # ------------------------------------------------------------------ cache

    async def evict_cached_answer(self, entry_id: str) -> bool:
        """ "This answer is wrong": drop one cached answer."""
        evicted = await self.cache.evict(entry_id)
        self.audit("cache", "evicted" if evicted else "not_found", detail={"entry": entry_id})
        return evicted

    async def clear_cache(self) -> None:
        await self.cache.invalidate_all()
        self.audit("cache", "cleared")

    # ------------------------------------------------------------------ knowledge base

    @property
    def library(self) -> Library:
        return _built(self._library)

    def _parse_pool(self) -> concurrent.futures.Executor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.settings.ingest.parse_workers,
                mp_context=multiprocessing.get_context("spawn"),
            )
        return self._executor

    async def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
        collection: str | None = None,
    ) -> IngestReport:
        """Ingest ``paths``; in team mode into ``collection`` (this role's own, created
        if new; without one, ``settings.collection``, else the collection ``default``
        if this role owns it)."""
        collection = collection or self.settings.collection or None
        if self._team:
            await asyncio.to_thread(team.use_collection, self.engine, collection)
        elif collection:
            raise UsageError(f"{team.NOT_TEAM}.")
        return await self.library.ingest(paths, progress=progress, cancel=cancel)

    async def watch(self, folders: Sequence[str]) -> None:
        """Follow ``folders`` (replacing any watched before): reconcile, then watch.

        In team mode changes go to ``settings.collection`` when it is set (else to
        ``default``, where only its owner may write)."""
        if self._team and self.settings.collection:
            await asyncio.to_thread(team.use_collection, self.engine, self.settings.collection)
        await self.library.watch(folders)

    @property
    def watched_folders(self) -> list[str]:
        return self._library.watched_folders if self._library is not None else []

    async def _after_change(self, changed: set[int]) -> None:
        """New knowledge-base version: cached answers of the old one stop matching.

        The namespace carries the version, so an addition (which could change any
        answer) retires every cached answer without a key walk; answers that cited
        changed or removed documents are also deleted outright.
        """
        version = await asyncio.to_thread(self._read_kb_version)
        if version != self._kb_version:
            self._kb_version = version
            if changed and self._cache is not None:
                await self._cache.invalidate_documents(changed)

    async def filters_for(
        self, paths: Sequence[str | Path] = (), kinds: Sequence[str] = ()
    ) -> SearchFilters:
        """Filters from user input: a file limits to that document, a folder to its tree."""
        return await self.library.filters_for(paths, kinds)

    async def document_text(self, path: str) -> str:
        """The extracted text of a source (citations index into it)."""
        return await self.library.document_text(path)

    async def flagged_passages(self, path: str) -> list[FlaggedPassage]:
        """The passages of a source flagged at ingestion (kept out of every prompt)."""
        return await self.library.flagged_passages(path)

    async def quarantined(self) -> list[tuple[str, str, float]]:
        return await self.library.quarantined()

    # ------------------------------------------------------------------ asking

    @property
    def asker(self) -> AskPipeline:
        return _built(self._asker)

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
        """Answer ``question`` with citations; see ``AskPipeline.ask``.

        While vectors are filled in behind keyword search the answer says the
        search was partial, and it neither comes from nor goes to the cache.
        """
        pending = self.library.vectors_pending
        if self._team and use_cache and not pending:
            self._access = await asyncio.to_thread(team.access_scope, self.engine)
        answer = await self.asker.ask(
            question,
            use_cache=use_cache and not pending,
            on_token=on_token,
            on_quotes=on_quotes,
            filters=filters,
            top_k=top_k,
            session=session,
            skip_providers=skip_providers,
        )
        if not pending:
            return answer
        notice = " ".join(n for n in (answer.notice, partial_notice(pending)) if n)
        return dataclasses.replace(answer, vectors_pending=pending, notice=notice)

    async def search(
        self,
        text: str,
        *,
        k: int = 10,
        fusion: str | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        """The ``k`` best chunks (no generation) and timings in ms; see ``Retriever.find``."""
        text = clean_question(text, self.settings.security.max_question_chars)
        return await _built(self._retriever).find(text, k=k, mode=fusion, filters=filters)

    # ------------------------------------------------------------------ health and stats

    def _parts(self) -> HealthParts:
        router = self._router
        fallback = router.fallback if router is not None else None
        return HealthParts(
            engine=self.engine,
            started_at=self.started_at,
            search_index=self._index,
            index_load=load_state(self._index_task),
            vectors_pending=self._library.vectors_pending if self._library is not None else 0,
            fill_eta_s=self._fill_eta(),
            embedder=self._embedder,
            model_load=load_state(self._model_task),
            reranker=self._reranker,
            reranker_error=self._retriever.reranker_error if self._retriever else None,
            provider_health=router.health() if router is not None else (),
            fallback_provider=fallback.name if fallback is not None else None,
            cache=self._cache,
            watcher=self._library.watcher if self._library is not None else None,
            rate_limiter=self._limiter,
            audit_log=self._audit,
            audit_stats=self._audit_stats,
            session_asks=self._asker.asks if self._asker is not None else 0,
        )

    def fill_progress(self) -> FillProgress | None:
        """The background vector fill's progress (None when embedding is off)."""
        fill = self._library.fill if self._library is not None else None
        return fill.progress if fill is not None else None

    def _fill_eta(self) -> float | None:
        progress = self.fill_progress()
        return progress.eta_s if progress is not None and progress.running else None

    async def health(self) -> HealthSnapshot:
        """Every component's state, typed (``core.health``)."""
        return await health_snapshot(self._parts())

    async def stats(self, since: float | None = None, until: float | None = None) -> StatsSnapshot:
        """Knowledge-base counts and audit statistics over [since, until), from SQL aggregates."""
        return await stats_snapshot(self._parts(), since, until)


_T = TypeVar("_T")


def _built(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("Services.start() has not run (or aclose() already did)")
    return value


def _stopper(stop: asyncio.Event, task: asyncio.Task[Any]) -> Callable[[], Awaitable[None]]:
    """Ask ``task`` to stop at its next step (a batch in a worker thread ends first)."""

    async def run() -> None:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return run


def _canceller(task: asyncio.Task[Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return run
