"""CacheService: guard + thresholds, scoping, TTLs, invalidation, fallback to embedded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from core.breaker import BreakerState, BreakerTransition
from core.cache.backends import EmbeddedBackend
from core.cache.redis_backend import RedisBackend
from core.cache.service import CACHE_BREAKER, CacheService
from core.config import CacheSettings
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer, free_port

from .helpers import near, vec

NS = "kb=1|model=m|prompt=1"
PAYLOAD = {"answer": "Use the toggle [1].", "citations": [{"chunk_id": 11, "document_id": 3}]}


def service(clock: FakeClock, primary: RedisBackend | None = None, **kw: object) -> CacheService:
    settings = CacheSettings(**kw)  # type: ignore[arg-type]
    return CacheService(settings, primary, EmbeddedBackend(None, clock=clock), clock=clock)


async def test_embedding_layer_round_trip_and_ttl() -> None:
    clock = FakeClock()
    cache = service(clock, embedding_ttl_s=100)
    await cache.start()
    assert await cache.get_embedding("m", "What is X?") is None
    await cache.put_embedding("m", "What is X?", vec(1))
    got = await cache.get_embedding("m", "  what is x? ")
    assert got is not None and np.allclose(got, vec(1))
    assert await cache.get_embedding("other-model", "What is X?") is None
    clock.advance(101)
    assert await cache.get_embedding("m", "What is X?") is None
    m = cache.metrics().layers["embedding"]
    assert (m.hits, m.misses) == (1, 3)
    await cache.aclose()


async def test_similar_paraphrase_hits_and_reports_similarity() -> None:
    clock = FakeClock()
    cache = service(clock)
    await cache.start()
    entry_id = await cache.put_result(NS, "How do I request a laptop?", vec(1), PAYLOAD, [3])
    hit = await cache.lookup_result(NS, "How can I request a laptop?", near(vec(1), 0.97))
    assert hit is not None
    assert hit.entry_id == entry_id and hit.payload == PAYLOAD
    assert hit.question == "How do I request a laptop?"
    assert abs(hit.similarity - 0.97) < 1e-4
    await cache.aclose()


async def test_guard_refuses_a_close_vector_that_changes_the_answer() -> None:
    cache = service(FakeClock())
    await cache.start()
    await cache.put_result(NS, "How do I enable dark mode?", vec(1), PAYLOAD, [3])
    assert await cache.lookup_result(NS, "How do I disable dark mode?", near(vec(1), 0.99)) is None
    metrics = cache.metrics()
    assert metrics.guard_refusals == {"antonym": 1}
    assert metrics.last_refusal is not None and "disable" in metrics.last_refusal
    await cache.aclose()


async def test_guard_off_serves_any_close_vector() -> None:
    cache = service(FakeClock(), guard=False)
    await cache.start()
    await cache.put_result(NS, "How do I enable dark mode?", vec(1), PAYLOAD, [3])
    assert await cache.lookup_result(NS, "How do I disable dark mode?", near(vec(1), 0.99))
    await cache.aclose()


async def test_below_threshold_misses_unless_salient_equivalent() -> None:
    cache = service(FakeClock())
    await cache.start()
    await cache.put_result(NS, "Is there free parking at the campus?", vec(1), PAYLOAD, [3])
    await cache.put_result(NS, "How do I book a room?", vec(2), PAYLOAD, [3])
    # same content words, order changed: accepted at 0.90
    assert await cache.lookup_result(NS, "Is parking free at the campus?", near(vec(1), 0.90))
    # different content words at 0.90: refused (needs the plain threshold)
    assert await cache.lookup_result(NS, "How do I reserve a room?", near(vec(2), 0.90)) is None
    assert await cache.lookup_result(NS, "How do I reserve a room?", near(vec(2), 0.96))
    await cache.aclose()


async def test_exact_question_always_hits_even_when_a_closer_one_is_refused() -> None:
    cache = service(FakeClock())
    await cache.start()
    await cache.put_result(NS, "Is Go faster than Java?", vec(1), PAYLOAD, [3])
    other = {"answer": "other"}
    await cache.put_result(NS, "Is Java faster than Go?", near(vec(1), 0.995), other, [4])
    hit = await cache.lookup_result(NS, "is java faster than go?", near(vec(1), 0.996, seed=5))
    assert hit is not None and hit.payload == other
    await cache.aclose()


async def test_entries_of_another_namespace_never_hit() -> None:
    cache = service(FakeClock())
    await cache.start()
    await cache.put_result("kb=1|model=a|prompt=1", "What is X?", vec(1), PAYLOAD, [3])
    assert await cache.lookup_result("kb=2|model=a|prompt=1", "What is X?", vec(1)) is None
    assert await cache.lookup_result("kb=1|model=b|prompt=1", "What is X?", vec(1)) is None
    assert await cache.lookup_result("kb=1|model=a|prompt=1", "What is X?", vec(1))
    await cache.aclose()


async def test_result_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache = service(clock, result_ttl_s=7200)
    await cache.start()
    await cache.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    clock.advance(7199)
    assert await cache.lookup_result(NS, "What is X?", vec(1))
    clock.advance(2)
    assert await cache.lookup_result(NS, "What is X?", vec(1)) is None
    await cache.aclose()


async def test_invalidation_by_document_evict_and_all() -> None:
    cache = service(FakeClock())
    await cache.start()
    a = await cache.put_result(NS, "What is A?", vec(1), PAYLOAD, [1, 2])
    await cache.put_result(NS, "What is B?", vec(2), PAYLOAD, [3])
    await cache.put_result(NS, "What is C?", vec(3), PAYLOAD, [4])
    assert await cache.invalidate_documents([2]) == 1
    assert await cache.lookup_result(NS, "What is A?", vec(1)) is None
    assert await cache.evict(a) is False
    hit = await cache.lookup_result(NS, "What is B?", vec(2))
    assert hit is not None and await cache.evict(hit.entry_id) is True
    assert await cache.lookup_result(NS, "What is B?", vec(2)) is None
    await cache.invalidate_all()
    assert await cache.lookup_result(NS, "What is C?", vec(3)) is None
    metrics = cache.metrics()
    assert metrics.entries == 0 and metrics.evictions == 2
    await cache.aclose()


async def test_disabled_cache_misses_and_stores_nothing() -> None:
    cache = service(FakeClock(), enabled=False)
    await cache.start()
    await cache.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    await cache.put_embedding("m", "What is X?", vec(1))
    cache.enabled = True
    assert await cache.lookup_result(NS, "What is X?", vec(1)) is None
    assert await cache.get_embedding("m", "What is X?") is None
    assert cache.health().enabled is True
    await cache.aclose()


async def test_embedded_answers_persist_across_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "cache.sqlite3"
    settings = CacheSettings()
    first = CacheService(settings, None, EmbeddedBackend(path, clock=clock), clock=clock)
    await first.start()
    await first.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    await first.aclose()
    second = CacheService(settings, None, EmbeddedBackend(path, clock=clock), clock=clock)
    await second.start()
    hit = await second.lookup_result(NS, "what is x?", vec(1))
    assert hit is not None and hit.payload == PAYLOAD
    assert second.health().active_backend == "embedded"
    await second.aclose()


# --------------------------------------------------------------------------- with Redis


@pytest.mark.redis
async def test_redis_down_at_start_uses_embedded_and_says_so(prefix: str) -> None:
    clock = FakeClock()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = service(clock, RedisBackend.from_url(url, prefix=prefix, clock=clock))
    seen: list[BreakerTransition] = []
    cache.breaker.add_listener(seen.append)
    await cache.start()
    health = cache.health()
    assert health.active_backend == "embedded" and health.fallback_active
    assert health.breaker_state == "open" and health.last_error
    assert health.retry_in_s == CACHE_BREAKER.reset_timeout_s
    assert [(t.provider, t.new) for t in seen] == [("cache", BreakerState.OPEN)]
    assert "Redis unavailable at start" in seen[0].reason
    assert health.to_component().status == "degraded"
    await cache.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    assert await cache.lookup_result(NS, "What is X?", vec(1))
    await cache.aclose()


@pytest.mark.redis
async def test_redis_killed_mid_run_falls_back_then_returns(
    own_redis: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    cache = service(clock, RedisBackend.from_url(own_redis.url, prefix=prefix, clock=clock))
    seen: list[BreakerTransition] = []
    cache.breaker.add_listener(seen.append)
    await cache.start()
    assert cache.health().active_backend == "redis"
    await cache.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    assert await cache.lookup_result(NS, "What is X?", vec(1))

    own_redis.stop()
    for _ in range(3):  # no exception reaches the caller; each fault is a miss
        assert await cache.lookup_result(NS, "What is X?", vec(1)) is None
    health = cache.health()
    assert health.fallback_active and health.active_backend == "embedded"
    await cache.put_result(NS, "What is Y?", vec(2), PAYLOAD, [4])
    await cache.put_embedding("m", "What is Y?", vec(2))
    assert await cache.lookup_result(NS, "What is Y?", vec(2))  # served by embedded
    assert await cache.get_embedding("m", "What is Y?") is not None

    own_redis.start()  # back on the same port (empty: --save '')
    clock.advance(4)
    assert cache.health().fallback_active  # still waiting for the reset timeout
    clock.advance(2)
    await cache.put_result(NS, "What is Z?", vec(3), PAYLOAD, [5])  # probes, then uses Redis
    health = cache.health()
    assert health.active_backend == "redis" and not health.fallback_active
    r = aioredis.Redis.from_url(own_redis.url)
    try:
        assert await r.exists(f"{prefix}:g0:res:" + (await _entry_id(NS, "What is Z?")))
    finally:
        await r.aclose()
    assert await cache.lookup_result(NS, "What is Z?", vec(3))
    await cache.aclose()
    # every step of the fallback reached the listeners (the audit log in the app)
    assert [(t.old, t.new) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert {t.provider for t in seen} == {"cache"}


async def _entry_id(ns: str, q: str) -> str:
    from core.cache.normalize import entry_id_for

    return entry_id_for(ns, q)


@pytest.mark.redis
async def test_slow_redis_falls_back_and_replays_missed_invalidations(
    own_redis: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    cache = service(clock, RedisBackend.from_url(own_redis.url, prefix=prefix, clock=clock))
    await cache.start()
    await cache.put_result(NS, "What is X?", vec(1), PAYLOAD, [3])
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        # every call waits at most the 0.25 s deadline, then falls back
        assert await cache.lookup_result(NS, "What is X?", vec(1)) is None
        assert await cache.invalidate_documents([3]) == 0
        await cache.lookup_result(NS, "What is X?", vec(1))
        assert cache.health().fallback_active
        await admin.execute_command("CLIENT", "UNPAUSE")
        clock.advance(6)
        # the probe replays the invalidation of document 3 before Redis is used again
        assert await cache.lookup_result(NS, "What is X?", vec(1)) is None
        assert cache.health().active_backend == "redis"
        assert await admin.exists(f"{prefix}:g0:res:" + (await _entry_id(NS, "What is X?"))) == 0
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await cache.aclose()


@pytest.mark.redis
async def test_service_hits_through_redis(redis_server: RedisServer, prefix: str) -> None:
    clock = FakeClock()
    cache = service(clock, RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock))
    await cache.start()
    await cache.put_embedding("m", "Q", vec(9))
    assert await cache.get_embedding("m", "Q") is not None
    await cache.put_result(NS, "How do I request a laptop?", vec(1), PAYLOAD, [3])
    hit = await cache.lookup_result(NS, "How can I request a laptop?", near(vec(1), 0.97))
    assert hit is not None and hit.payload == PAYLOAD
    assert cache.metrics().layers["result"].hits == 1
    assert cache.health().to_component().status == "ok"
    await asyncio.sleep(0)
    await cache.aclose()
