"""Health and statistics snapshots, assembled from parts passed in (core/health.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.audit import AuditEvent, AuditLog, AuditStats, ensure_audit_indexes
from core.db.engine import create_engine_for, upgrade_schema
from core.errors import CacheUnavailable
from core.health import (
    LoadState,
    health_snapshot,
    load_state,
    overall_status,
    rate_limit_health,
    stats_snapshot,
)
from core.security.ratelimit import (
    EmbeddedRateLimiter,
    FailoverRateLimiter,
    RateDecision,
    RateLimitSettings,
)
from core.types import (
    BreakerSnapshot,
    BreakerState,
    CacheHealth,
    CacheMetrics,
    ComponentHealth,
    IndexHealth,
    LayerMetrics,
    RateLimitHealth,
    WatcherHealth,
)

# --------------------------------------------------------------------------- fakes


@dataclass
class FakeIndex:
    size: int = 12
    vector_count: int = 12
    loaded_from: str = "disk"
    load_s: float = 0.0421


@dataclass
class FakeEmbedder:
    model_id: str = "all-MiniLM-L6-v2"
    loaded: bool = True
    dim: int = 384


@dataclass
class FakeReranker:
    name: str = "ms-marco-MiniLM"
    loaded: bool = False


class FakeCache:
    def __init__(self, fallback: bool = False) -> None:
        self.fallback = fallback

    def health(self) -> CacheHealth:
        return CacheHealth(
            enabled=True,
            active_backend="embedded" if self.fallback else "redis",
            fallback_active=self.fallback,
            breaker_state="open" if self.fallback else "closed",
            last_error="connection refused" if self.fallback else None,
            retry_in_s=4.0 if self.fallback else 0.0,
        )

    def metrics(self) -> CacheMetrics:
        layers = {
            "embedding": LayerMetrics(1, 1, 0.3, 0.3),
            "result": LayerMetrics(0, 2, None, None),
        }
        return CacheMetrics(layers=layers, entries=2, evictions=0)


@dataclass
class FakeWatcher:
    folders: list[str] = field(default_factory=lambda: ["/srv/notes"])
    batches: int = 3
    running: bool = True
    last_error: str | None = None


@dataclass
class FakeAuditLog:
    flushed: int = 0

    async def flush(self) -> None:
        self.flushed += 1


@dataclass
class Sources:
    """Both Protocols (HealthSources, StatsSources) as plain fields."""

    engine: sa.Engine
    search_index: FakeIndex | None = field(default_factory=FakeIndex)
    index_load: LoadState = LoadState.READY
    vectors_pending: int = 0
    fill_eta_s: float | None = None
    embedder: FakeEmbedder | None = field(default_factory=FakeEmbedder)
    model_load: LoadState = LoadState.READY
    reranker: FakeReranker | None = None
    reranker_error: str | None = None
    provider_health: tuple[BreakerSnapshot, ...] = ()
    fallback_provider: str | None = "extractive"
    cache: FakeCache | None = field(default_factory=FakeCache)
    watcher: FakeWatcher | None = None
    rate_limiter: EmbeddedRateLimiter | FailoverRateLimiter | None = None
    audit_log: FakeAuditLog | AuditLog | None = None
    audit_stats: AuditStats | None = None
    session_asks: int = 0
    started_at: float = 0.0


def breaker(name: str, state: BreakerState = BreakerState.CLOSED) -> BreakerSnapshot:
    open_ = state is BreakerState.OPEN
    return BreakerSnapshot(
        name=name,
        state=state,
        consecutive_failures=3 if open_ else 0,
        last_error="HTTP 503" if open_ else None,
        seconds_until_half_open=20.0 if open_ else None,
        rate_limited_for_s=None,
        successes=5,
        failures=3 if open_ else 0,
        rejections=0,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")
    upgrade_schema(engine)
    ensure_audit_indexes(engine)
    yield engine
    engine.dispose()


# --------------------------------------------------------------------------- health


async def test_every_component_carries_its_typed_figures(engine: sa.Engine) -> None:
    src = Sources(
        engine,
        reranker=FakeReranker(),
        provider_health=(breaker("openai"),),
        watcher=FakeWatcher(),
        rate_limiter=EmbeddedRateLimiter(RateLimitSettings()),
    )
    snap = await health_snapshot(src, clock=lambda: 1234.5)
    assert snap.status == "ok" and snap.taken_at == 1234.5
    assert [c.name for c in snap.components] == [
        "database",
        "search_index",
        "embedding_model",
        "reranker",
        "provider:openai",
        "provider:extractive",
        "cache",
        "watcher",
        "rate_limit",
    ]
    assert snap.database is not None
    assert snap.database.dialect == "sqlite" and snap.database.counts.documents == 0
    assert snap.database.schema_revision  # migrations ran
    assert snap.search_index == IndexHealth(
        chunks=12, vectors=12, loaded_from="disk", load_s=0.0421
    )
    assert snap.embedding_model is not None and snap.embedding_model.dim == 384
    assert snap.reranker is not None and snap.reranker.loaded is False
    assert snap.providers == (breaker("openai"),)
    assert snap.cache is not None and snap.cache.active_backend == "redis"
    assert snap.cache.metrics is not None and snap.cache.metrics.entries == 2
    assert snap.watcher == WatcherHealth(("/srv/notes",), batches=3, running=True, last_error=None)
    assert snap.rate_limit == RateLimitHealth("embedded", fallback_active=False)


async def test_json_keeps_the_shape_scripts_read(engine: sa.Engine) -> None:
    snap = await health_snapshot(Sources(engine, provider_health=(breaker("openai"),)))
    data = json.loads(json.dumps(snap.to_json()))
    assert set(data) == {"status", "taken_at", "components"}
    db = data["components"]["database"]
    assert db["status"] == "ok" and db["detail"] == "sqlite"
    assert {"url", "schema_revision", "documents", "chunks", "bytes", "embeddings"} <= set(db)
    index = data["components"]["search_index"]
    assert (index["chunks"], index["vectors"], index["load_s"]) == (12, 12, 0.042)
    provider = data["components"]["provider:openai"]
    assert provider["state"] == "closed" and "seconds_until_half_open" in provider
    cache = data["components"]["cache"]
    assert cache["backend"] == "redis" and cache["metrics"]["layers"]["result"]["misses"] == 2


async def test_a_loading_index_degrades_and_a_failed_one_is_down(engine: sa.Engine) -> None:
    loading = await health_snapshot(Sources(engine, index_load=LoadState.LOADING))
    assert loading.status == "degraded"
    assert loading.component("search_index") == ComponentHealth(
        "search_index", "degraded", "loading"
    )
    assert loading.search_index is None  # no figures until it is loaded
    failed = await health_snapshot(Sources(engine, index_load=LoadState.FAILED))
    assert failed.status == "down"


async def test_vectors_being_filled_in_make_the_search_partial_and_say_how_long(
    engine: sa.Engine,
) -> None:
    snap = await health_snapshot(Sources(engine, vectors_pending=340, fill_eta_s=300.0))
    assert snap.status == "degraded"
    component = snap.component("search_index")
    assert component is not None and component.status == "degraded"
    assert "partial search: 340 passages await vectors, about 5 min left" in component.detail
    assert snap.search_index is not None and snap.search_index.vectors_pending == 340
    assert snap.to_json()["components"]["search_index"]["vectors_pending"] == 340


async def test_degradation_elsewhere_is_visible_but_not_down(engine: sa.Engine) -> None:
    src = Sources(
        engine,
        embedder=FakeEmbedder(loaded=False),
        model_load=LoadState.LOADING,
        reranker=FakeReranker(),
        reranker_error="model folder missing",
        provider_health=(breaker("openai", BreakerState.OPEN),),
        cache=FakeCache(fallback=True),
        watcher=FakeWatcher(running=False, last_error="inotify limit"),
    )
    snap = await health_snapshot(src)
    assert snap.status == "degraded"
    status = {c.name: c.status for c in snap.components}
    assert status == {
        "database": "ok",
        "search_index": "ok",
        "embedding_model": "degraded",
        "reranker": "degraded",
        "provider:openai": "down",
        "provider:extractive": "ok",
        "cache": "degraded",
        "watcher": "degraded",
        "rate_limit": "disabled",
    }
    assert snap.reranker is not None and snap.reranker.error == "model folder missing"
    assert snap.providers[0].seconds_until_half_open == 20.0
    assert snap.cache is not None and snap.cache.fallback_active


async def test_an_unreachable_database_is_down_and_its_password_is_masked() -> None:
    engine = create_engine_for("postgresql+psycopg://ann:s3cretpw@127.0.0.1:1/kb")
    try:
        snap = await health_snapshot(Sources(engine))
    finally:
        engine.dispose()
    db = snap.component("database")
    assert db is not None and db.status == "down" and db.info is None
    assert snap.status == "down"
    assert "s3cretpw" not in json.dumps(snap.to_json())


class DeadRedisLimiter:
    """A Redis limiter whose server is gone."""

    async def acquire(self, key: str) -> RateDecision:
        raise CacheUnavailable("The rate limiter cannot reach Redis: connection refused")

    async def aclose(self) -> None:
        pass


async def test_a_rate_limiter_that_fell_back_is_degraded() -> None:
    limiter = FailoverRateLimiter(DeadRedisLimiter(), EmbeddedRateLimiter(RateLimitSettings()))
    assert rate_limit_health(limiter).info == RateLimitHealth("redis", fallback_active=False)
    assert (await limiter.acquire("cli")).allowed  # answered by the in-process buckets
    c = rate_limit_health(limiter)
    assert c.status == "degraded" and c.info == RateLimitHealth("embedded", fallback_active=True)
    assert rate_limit_health(None).status == "disabled"
    local = rate_limit_health(EmbeddedRateLimiter(RateLimitSettings()))
    assert local.status == "ok" and local.info == RateLimitHealth("embedded", False)


def test_only_an_essential_component_takes_the_whole_snapshot_down() -> None:
    def c(name: str, status: str) -> ComponentHealth:
        return ComponentHealth(name, status)  # type: ignore[arg-type]

    assert overall_status([c("database", "ok"), c("reranker", "disabled")]) == "ok"
    assert overall_status([c("database", "ok"), c("provider:openai", "down")]) == "degraded"
    assert overall_status([c("cache", "degraded"), c("search_index", "down")]) == "down"


async def test_load_state_follows_the_background_task() -> None:
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    async def fail() -> None:
        raise OSError("disk gone")

    assert load_state(None) is LoadState.NOT_STARTED
    pending = asyncio.create_task(wait())
    failing = asyncio.create_task(fail())
    cancelled = asyncio.create_task(wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    assert load_state(pending) is LoadState.LOADING
    gate.set()
    await pending
    await asyncio.gather(failing, cancelled, return_exceptions=True)
    assert load_state(pending) is LoadState.READY
    assert load_state(failing) is LoadState.FAILED
    assert load_state(cancelled) is LoadState.FAILED


# --------------------------------------------------------------------------- statistics


async def test_stats_flush_the_audit_log_first_and_are_typed(engine: sa.Engine) -> None:
    log = AuditLog(engine, flush_interval_s=60.0)  # only a flush writes before a minute
    await log.start()
    try:
        log.record(AuditEvent(ts=time.time(), action="ask", outcome="ok", latency_ms=40.0))
        src = Sources(
            engine, audit_log=log, audit_stats=AuditStats(engine), session_asks=1, started_at=100.0
        )
        stats = await stats_snapshot(src, clock=lambda: 130.0)
    finally:
        await log.aclose()
    assert stats.knowledge_base.documents == 0 and stats.documents_by_kind == {}
    assert stats.session.asks == 1 and stats.session.uptime_s == 30.0
    assert stats.audit is not None
    assert stats.audit.total == 1 and stats.audit.by_action == {"ask": 1}
    assert stats.audit.ask_latency_ms.p50 == 40.0
    data = json.loads(json.dumps(stats.to_json()))
    assert list(data) == ["knowledge_base", "documents_by_kind", "kb_version", "audit", "session"]
    assert data["session"] == {"asks": 1, "uptime_s": 30.0}
    assert data["audit"]["by_outcome"] == {"ok": 1}


async def test_stats_without_an_audit_log_leave_the_audit_out(engine: sa.Engine) -> None:
    flusher = FakeAuditLog()
    stats = await stats_snapshot(Sources(engine, audit_log=flusher), since=0.0, until=1.0)
    assert flusher.flushed == 1
    assert stats.audit is None
    assert "audit" not in stats.to_json()
