"""Health and statistics snapshots, assembled from the parts ``Services`` owns.

``health_snapshot(src)`` and ``stats_snapshot(src, since, until)`` return the typed
values the window and ``archivist health/stats`` render (``HealthSnapshot``,
``StatsSnapshot`` in ``core.types``). They read their inputs through two
Protocols, ``HealthSources`` and ``StatsSources``: plain read-only properties
that ``Services`` provides, so the assembly can be tested with the parts passed
in. Blocking database work runs in a worker thread.

Usage::

    snap = await health_snapshot(services)
    print(snap.status, snap.database.counts.documents if snap.database else "-")
    stats = await stats_snapshot(services, since=time.time() - 86400)
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from core.config import redact_secrets
from core.db import store
from core.db.engine import schema_revision
from core.errors import ArchivistError
from core.security.ratelimit import (
    EmbeddedRateLimiter,
    FailoverRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from core.types import (
    DATABASE,
    EMBEDDING_MODEL,
    RATE_LIMIT,
    RERANKER,
    SEARCH_INDEX,
    WATCHER,
    AuditSummary,
    BreakerSnapshot,
    CacheHealth,
    CacheMetrics,
    ComponentHealth,
    DatabaseHealth,
    HealthSnapshot,
    IndexHealth,
    KnowledgeBaseCounts,
    ModelHealth,
    RateLimitHealth,
    SessionStats,
    StatsSnapshot,
    WatcherHealth,
)

# A failure of these stops answers altogether; any other failure only degrades them.
ESSENTIAL: frozenset[str] = frozenset({DATABASE, SEARCH_INDEX})


class LoadState(enum.StrEnum):
    """Where a part that loads in the background stands."""

    NOT_STARTED = "not_started"  # no load was started (loads on first use, if at all)
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def load_state(task: asyncio.Task[Any] | None) -> LoadState:
    """The state of a background load run by ``task`` (None: never started)."""
    if task is None:
        return LoadState.NOT_STARTED
    if not task.done():
        return LoadState.LOADING
    if task.cancelled() or task.exception() is not None:
        return LoadState.FAILED
    return LoadState.READY


# --------------------------------------------------------------------------- sources


class IndexView(Protocol):
    """What the health view reads of ``SearchIndex``."""

    @property
    def size(self) -> int: ...
    @property
    def vector_count(self) -> int: ...
    @property
    def loaded_from(self) -> str: ...
    @property
    def load_s(self) -> float: ...


class EmbedderView(Protocol):
    @property
    def model_id(self) -> str: ...
    @property
    def loaded(self) -> bool: ...
    @property
    def dim(self) -> int: ...


class RerankerView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def loaded(self) -> bool: ...


class CacheView(Protocol):
    def health(self) -> CacheHealth: ...
    def metrics(self) -> CacheMetrics: ...


class WatcherView(Protocol):
    @property
    def folders(self) -> Sequence[str]: ...
    @property
    def batches(self) -> int: ...
    @property
    def running(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...


class HealthSources(Protocol):
    """What ``health_snapshot`` reads; ``Services`` implements it with properties.

    None means "not built" (not configured, or ``start()`` has not run).
    """

    @property
    def engine(self) -> sa.Engine: ...
    @property
    def search_index(self) -> IndexView | None: ...
    @property
    def index_load(self) -> LoadState: ...
    @property
    def vectors_pending(self) -> int:
        """Passages whose vectors are being filled in behind keyword search."""
        ...

    @property
    def fill_eta_s(self) -> float | None: ...
    @property
    def embedder(self) -> EmbedderView | None: ...
    @property
    def model_load(self) -> LoadState:
        """The background warm-up of the embedding model."""
        ...

    @property
    def reranker(self) -> RerankerView | None: ...
    @property
    def reranker_error(self) -> str | None: ...
    @property
    def provider_health(self) -> Sequence[BreakerSnapshot]:
        """One breaker snapshot per routed provider, in routing order."""
        ...

    @property
    def fallback_provider(self) -> str | None:
        """The name of the offline provider used when every routed one fails."""
        ...

    @property
    def cache(self) -> CacheView | None: ...
    @property
    def watcher(self) -> WatcherView | None: ...
    @property
    def rate_limiter(self) -> RateLimiter | None: ...


class AuditFlusher(Protocol):
    async def flush(self) -> None: ...


class AuditSummarySource(Protocol):
    def summary(
        self, since: float | None = None, until: float | None = None, *, last: int = 20
    ) -> AuditSummary: ...


class StatsSources(Protocol):
    """What ``stats_snapshot`` reads; ``Services`` implements it with properties."""

    @property
    def engine(self) -> sa.Engine: ...
    @property
    def audit_log(self) -> AuditFlusher | None: ...
    @property
    def audit_stats(self) -> AuditSummarySource | None: ...
    @property
    def session_asks(self) -> int:
        """Questions this process has answered."""
        ...

    @property
    def started_at(self) -> float:
        """When ``start()`` ran (``time.time()``)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class HealthParts:
    """The parts ``Services`` owns, as both snapshots read them (one value per call)."""

    engine: sa.Engine
    started_at: float
    search_index: IndexView | None = None
    index_load: LoadState = LoadState.NOT_STARTED
    vectors_pending: int = 0  # passages searched by keywords only until their vectors are in
    fill_eta_s: float | None = None
    embedder: EmbedderView | None = None
    model_load: LoadState = LoadState.NOT_STARTED
    reranker: RerankerView | None = None
    reranker_error: str | None = None
    provider_health: Sequence[BreakerSnapshot] = ()
    fallback_provider: str | None = None
    cache: CacheView | None = None
    watcher: WatcherView | None = None
    rate_limiter: RateLimiter | None = None
    audit_log: AuditFlusher | None = None
    audit_stats: AuditSummarySource | None = None
    session_asks: int = 0


# --------------------------------------------------------------------------- health


def overall_status(components: Iterable[ComponentHealth]) -> Literal["ok", "degraded", "down"]:
    """Down when an essential component is down; degraded when anything is not fine."""
    worst: Literal["ok", "degraded", "down"] = "ok"
    for c in components:
        if c.status == "down" and c.name in ESSENTIAL:
            return "down"
        if c.status in ("down", "degraded"):
            worst = "degraded"
    return worst


def _database(engine: sa.Engine) -> ComponentHealth:
    """Blocking: a round trip, the schema revision and the knowledge-base counts."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            counts = store.kb_counts(conn)
        revision = schema_revision(engine)
    except (sa.exc.SQLAlchemyError, ArchivistError) as exc:
        raw_url = engine.url.render_as_string(hide_password=False)
        return ComponentHealth(DATABASE, "down", redact_secrets(str(exc), raw_url))
    info = DatabaseHealth(
        dialect=engine.dialect.name,
        url=engine.url.render_as_string(hide_password=True),
        schema_revision=revision,
        counts=_kb_counts(counts),
    )
    return ComponentHealth(DATABASE, "ok", info.dialect, info=info)


def _kb_counts(counts: dict[str, int]) -> KnowledgeBaseCounts:
    return KnowledgeBaseCounts(
        documents=counts["documents"],
        chunks=counts["chunks"],
        quarantined=counts["quarantined"],
        size_bytes=counts["bytes"],
        embeddings=counts["embeddings"],
    )


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f", about {seconds / 60:.0f} min left" if seconds >= 90 else f", {seconds:.0f} s left"


def _search_index(
    index: IndexView | None, state: LoadState, pending: int = 0, eta_s: float | None = None
) -> ComponentHealth | None:
    if index is None:
        return None
    if state is LoadState.LOADING:
        return ComponentHealth(SEARCH_INDEX, "degraded", "loading")
    if state is LoadState.NOT_STARTED:
        return ComponentHealth(SEARCH_INDEX, "degraded", "not loaded yet")
    if state is LoadState.FAILED:
        return ComponentHealth(SEARCH_INDEX, "down", "failed to load")
    info = IndexHealth(
        index.size, index.vector_count, index.loaded_from, index.load_s, pending, eta_s
    )
    detail = f"{info.chunks} chunks, {info.vectors} vectors"
    if pending:
        # Searchable by keywords already; meaning search grows as vectors come in.
        detail += f"; partial search: {pending} passages await vectors{_eta(eta_s)}"
        return ComponentHealth(SEARCH_INDEX, "degraded", detail, info=info)
    return ComponentHealth(SEARCH_INDEX, "ok", detail, info=info)


def _embedding_model(emb: EmbedderView | None, state: LoadState) -> ComponentHealth | None:
    if emb is None:
        return None
    if emb.loaded:
        info = ModelHealth(emb.model_id, loaded=True, dim=emb.dim)
        return ComponentHealth(EMBEDDING_MODEL, "ok", emb.model_id, info=info)
    info = ModelHealth(emb.model_id, loaded=False)
    if state is LoadState.LOADING:
        return ComponentHealth(EMBEDDING_MODEL, "degraded", "loading", info=info)
    detail = "not loaded (loads on first use)"
    return ComponentHealth(EMBEDDING_MODEL, "disabled", detail, info=info)


def _reranker(reranker: RerankerView | None, error: str | None) -> ComponentHealth:
    if reranker is None:
        return ComponentHealth(RERANKER, "disabled", "not configured")
    info = ModelHealth(reranker.name, loaded=reranker.loaded, error=error)
    return ComponentHealth(
        RERANKER, "degraded" if error else "ok", error or reranker.name, info=info
    )


def _providers(snaps: Sequence[BreakerSnapshot], fallback: str | None) -> list[ComponentHealth]:
    components = [snap.to_component() for snap in snaps]
    if fallback is not None:
        components.append(ComponentHealth(f"provider:{fallback}", "ok", "offline fallback"))
    return components


def _cache(cache: CacheView | None) -> ComponentHealth | None:
    if cache is None:
        return None
    with_metrics = dataclasses.replace(cache.health(), metrics=cache.metrics())
    return with_metrics.to_component()


def _watcher(watcher: WatcherView | None) -> ComponentHealth:
    if watcher is None:
        return ComponentHealth(WATCHER, "disabled", "no watched folders")
    info = WatcherHealth(
        folders=tuple(watcher.folders),
        batches=watcher.batches,
        running=watcher.running,
        last_error=watcher.last_error,
    )
    status: Literal["ok", "degraded"] = "ok" if info.running and not info.last_error else "degraded"
    return ComponentHealth(WATCHER, status, f"{len(info.folders)} folder(s)", info=info)


def rate_limit_health(limiter: RateLimiter | None) -> ComponentHealth:
    """Which store keeps the request limits, and whether it fell back to this process."""
    if limiter is None:
        return ComponentHealth(RATE_LIMIT, "disabled", "no request limit")
    if isinstance(limiter, FailoverRateLimiter):
        info = limiter.health()
    elif isinstance(limiter, RedisRateLimiter):
        info = RateLimitHealth("redis", fallback_active=False)
    elif isinstance(limiter, EmbeddedRateLimiter):
        info = RateLimitHealth("embedded", fallback_active=False)
    else:
        info = RateLimitHealth(type(limiter).__name__, fallback_active=False)
    if info.fallback_active:
        detail = "Redis unreachable: limits are kept in this process only"
        return ComponentHealth(RATE_LIMIT, "degraded", detail, info=info)
    return ComponentHealth(RATE_LIMIT, "ok", f"limits kept in {info.backend}", info=info)


async def health_snapshot(
    src: HealthSources, *, clock: Callable[[], float] = time.time
) -> HealthSnapshot:
    """Every component's state now; the database check runs in a worker thread."""
    components: list[ComponentHealth] = [await asyncio.to_thread(_database, src.engine)]
    for part in (
        _search_index(src.search_index, src.index_load, src.vectors_pending, src.fill_eta_s),
        _embedding_model(src.embedder, src.model_load),
        _reranker(src.reranker, src.reranker_error),
        *_providers(src.provider_health, src.fallback_provider),
        _cache(src.cache),
        _watcher(src.watcher),
        rate_limit_health(src.rate_limiter),
    ):
        if part is not None:
            components.append(part)
    return HealthSnapshot(overall_status(components), tuple(components), taken_at=clock())


# --------------------------------------------------------------------------- statistics


async def stats_snapshot(
    src: StatsSources,
    since: float | None = None,
    until: float | None = None,
    *,
    last_events: int = 10,
    clock: Callable[[], float] = time.time,
) -> StatsSnapshot:
    """Knowledge-base counts and the audit summary over ``[since, until)`` (None = open).

    The audit log is flushed first, so the figures include this process's events.
    """
    audit_log = src.audit_log
    if audit_log is not None:
        await audit_log.flush()
    engine = src.engine
    audit_stats = src.audit_stats

    def read() -> tuple[dict[str, int], dict[str, int], int, AuditSummary | None]:
        with engine.connect() as conn:
            counts = store.kb_counts(conn)
            kinds = store.documents_by_kind(conn)
            version = store.kb_version(conn)
        summary = (
            None if audit_stats is None else audit_stats.summary(since, until, last=last_events)
        )
        return counts, kinds, version, summary

    counts, kinds, version, summary = await asyncio.to_thread(read)
    return StatsSnapshot(
        knowledge_base=_kb_counts(counts),
        documents_by_kind=dict(sorted(kinds.items())),
        kb_version=version,
        session=SessionStats(asks=src.session_asks, uptime_s=clock() - src.started_at),
        audit=summary,
    )
