"""Token buckets: one contract for the embedded and the Redis limiter, plus each one's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.breaker import BreakerState, BreakerTransition
from core.errors import CacheUnavailable, RateLimited
from core.redisconn import RedisConnections
from core.security.ratelimit import (
    FAILOVER_BREAKER,
    BucketSpec,
    EmbeddedRateLimiter,
    FailoverRateLimiter,
    RateDecision,
    RateLimiter,
    RateLimitSettings,
    RedisRateLimiter,
)
from core.types import RateLimitHealth
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer, redis_server_or_skip

# Slow refill so real time (Redis TIME) cannot add a token during a test.
SLOW = 0.001


class RateLimiterContract:
    """Behaviour every RateLimiter must have; subclasses provide ``make``."""

    async def make(self, settings: RateLimitSettings) -> RateLimiter:
        raise NotImplementedError

    async def test_a_session_gets_its_burst_then_is_refused(self) -> None:
        limiter = await self.make(RateLimitSettings(BucketSpec(SLOW, 3), None))
        got = [await limiter.acquire("alice") for _ in range(5)]
        assert [d.allowed for d in got] == [True, True, True, False, False]
        assert got[3].limited_by == "session"
        assert got[3].retry_after_s == pytest.approx(1 / SLOW, rel=0.01)

    async def test_sessions_have_separate_buckets(self) -> None:
        limiter = await self.make(RateLimitSettings(BucketSpec(SLOW, 2), None))
        assert [(await limiter.acquire("a")).allowed for _ in range(3)] == [True, True, False]
        assert (await limiter.acquire("b")).allowed

    async def test_the_global_bucket_limits_all_sessions_together(self) -> None:
        limiter = await self.make(RateLimitSettings(BucketSpec(SLOW, 5), BucketSpec(SLOW, 4)))
        allowed = [(await limiter.acquire(f"user{i % 2}")).allowed for i in range(6)]
        assert allowed.count(True) == 4
        refused = await limiter.acquire("someone-new")
        assert not refused.allowed and refused.limited_by == "global"

    async def test_a_refused_request_costs_no_session_token(self) -> None:
        limiter = await self.make(RateLimitSettings(BucketSpec(SLOW, 2), BucketSpec(SLOW, 1)))
        assert (await limiter.acquire("a")).allowed
        assert not (await limiter.acquire("b")).allowed  # global empty: b keeps its tokens
        decision = await limiter.acquire("b")
        assert decision.limited_by == "global"

    async def test_no_limits_configured_allows_everything(self) -> None:
        limiter = await self.make(RateLimitSettings(None, None))
        assert all([(await limiter.acquire("x")).allowed for _ in range(100)])


class TestEmbeddedRateLimiter(RateLimiterContract):
    async def make(self, settings: RateLimitSettings) -> RateLimiter:
        return EmbeddedRateLimiter(settings, clock=FakeClock())

    async def test_tokens_refill_at_the_configured_rate(self) -> None:
        clock = FakeClock()
        limiter = EmbeddedRateLimiter(RateLimitSettings(BucketSpec(2.0, 2), None), clock=clock)
        assert (await limiter.acquire("a")).allowed
        assert (await limiter.acquire("a")).allowed
        refused = await limiter.acquire("a")
        assert refused.retry_after_s == pytest.approx(0.5)
        clock.advance(0.49)
        assert not (await limiter.acquire("a")).allowed
        clock.advance(0.01)
        assert (await limiter.acquire("a")).allowed
        clock.advance(100)  # refills to burst, never beyond
        assert [(await limiter.acquire("a")).allowed for _ in range(3)] == [True, True, False]

    async def test_a_clock_running_backwards_adds_no_tokens(self) -> None:
        clock = FakeClock()
        limiter = EmbeddedRateLimiter(RateLimitSettings(BucketSpec(1.0, 1), None), clock=clock)
        assert (await limiter.acquire("a")).allowed
        clock.advance(-50)
        assert not (await limiter.acquire("a")).allowed

    async def test_full_buckets_are_forgotten_beyond_max_sessions(self) -> None:
        clock = FakeClock()
        limiter = EmbeddedRateLimiter(
            RateLimitSettings(BucketSpec(1.0, 1), None), clock=clock, max_sessions=10
        )
        for i in range(10):
            await limiter.acquire(f"s{i}")
        clock.advance(5)
        await limiter.acquire("new")
        assert len(limiter._sessions) == 1

    async def test_fifty_simultaneous_requests_with_burst_ten_let_exactly_ten_through(
        self,
    ) -> None:
        limiter = EmbeddedRateLimiter(RateLimitSettings(None, BucketSpec(SLOW, 10)))
        results = await asyncio.gather(*(limiter.acquire(f"u{i}") for i in range(50)))
        assert sum(d.allowed for d in results) == 10


@pytest.mark.redis
class TestRedisRateLimiter(RateLimiterContract):
    @pytest.fixture(autouse=True)
    def _client(self, redis_client: Any) -> None:
        self.client = redis_client

    async def make(self, settings: RateLimitSettings) -> RateLimiter:
        return RedisRateLimiter(self.client, settings)

    async def test_concurrent_clients_at_one_instant_get_exactly_the_burst(
        self, redis_url: str
    ) -> None:
        import redis.asyncio as aioredis

        settings = RateLimitSettings(None, BucketSpec(SLOW, 10))
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(5)]
        try:
            # What is checked is atomicity, not speed: 50 calls opening 5 connections at
            # once took longer than the default 0.25 s on a loaded 2-core CI machine.
            limiters = [RedisRateLimiter(c, settings, timeout_s=5.0) for c in clients]
            results = await asyncio.gather(
                *(limiters[i % 5].acquire(f"user{i}") for i in range(50))
            )
        finally:
            for c in clients:
                await c.aclose()
        assert sum(d.allowed for d in results) == 10
        assert all(d.retry_after_s > 0 for d in results if not d.allowed)

    async def test_two_limiters_sharing_redis_share_one_session_bucket(self) -> None:
        settings = RateLimitSettings(BucketSpec(SLOW, 4), None)
        a, b = RedisRateLimiter(self.client, settings), RedisRateLimiter(self.client, settings)
        allowed = [(await (a if i % 2 else b).acquire("same")).allowed for i in range(8)]
        assert allowed.count(True) == 4

    async def test_session_scopes_keep_sessions_apart_but_share_the_global_bucket(
        self,
    ) -> None:
        settings = RateLimitSettings(BucketSpec(SLOW, 2), BucketSpec(SLOW, 3))
        a = RedisRateLimiter(self.client, settings, session_scope="desk-a")
        b = RedisRateLimiter(self.client, settings, session_scope="desk-b")
        assert [(await a.acquire("default")).allowed for _ in range(3)] == [True, True, False]
        assert (await b.acquire("default")).allowed  # B's own session bucket is full
        refused = await b.acquire("default")  # but the global bucket is spent
        assert not refused.allowed and refused.limited_by == "global"

    async def test_tokens_come_back_with_server_time(self) -> None:
        limiter = RedisRateLimiter(self.client, RateLimitSettings(BucketSpec(50.0, 1), None))
        assert (await limiter.acquire("a")).allowed
        refused = await limiter.acquire("a")
        assert not refused.allowed and 0 < refused.retry_after_s <= 0.02 + 1e-9
        await asyncio.sleep(refused.retry_after_s + 0.03)
        assert (await limiter.acquire("a")).allowed

    async def test_buckets_expire_once_they_would_be_full(self) -> None:
        limiter = RedisRateLimiter(self.client, RateLimitSettings(BucketSpec(SLOW, 2), None))
        await limiter.acquire("a")
        ttl_ms = await self.client.pttl("archivist:ratelimit:s:a")
        assert 0 < ttl_ms <= 2 / SLOW * 1000 + 1000


async def test_an_unreachable_redis_raises_cache_unavailable() -> None:
    import socket

    import redis.asyncio as aioredis

    from core.errors import CacheUnavailable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    limiter = RedisRateLimiter(client, RateLimitSettings())
    with pytest.raises(CacheUnavailable, match="cannot reach Redis"):
        await limiter.acquire("a")
    await client.aclose()


def test_a_refusal_becomes_rate_limited_naming_the_retry_time() -> None:
    with pytest.raises(RateLimited, match=r"try again in 13 s") as info:
        RateDecision(False, 12.2, "session").raise_if_denied()
    assert info.value.retry_after_s == pytest.approx(12.2)
    with pytest.raises(RateLimited, match="too many questions at once"):
        RateDecision(False, 0.3, "global").raise_if_denied()
    RateDecision(True).raise_if_denied()


def test_bucket_specs_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        BucketSpec(0, 1)
    with pytest.raises(ValueError):
        BucketSpec(1.0, 0)


# --------------------------------------------------------------------------- failover


class CountingLimiter:
    """Passes requests on to ``inner`` and counts them: each one is a try to reach Redis."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.calls = 0

    async def acquire(self, key: str) -> RateDecision:
        self.calls += 1
        return await self.inner.acquire(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


class BrokenLimiter:
    """A primary with a bug: every request raises something that is not an outage."""

    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self, key: str) -> RateDecision:
        self.calls += 1
        raise RuntimeError("a bug, not an outage")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop and restart."""
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


GENEROUS = RateLimitSettings(BucketSpec(SLOW, 1000), None)


def failover(
    redis: RedisConnections, clock: FakeClock
) -> tuple[FailoverRateLimiter, CountingLimiter]:
    primary = CountingLimiter(RedisRateLimiter(redis.client, GENEROUS))
    limiter = FailoverRateLimiter(primary, EmbeddedRateLimiter(GENEROUS, clock=clock), clock=clock)
    return limiter, primary


@pytest.mark.redis
async def test_while_open_no_request_reaches_redis_and_after_the_reset_it_returns(
    own_redis: RedisServer,
) -> None:
    clock = FakeClock()
    async with RedisConnections(own_redis.url) as redis:
        limiter, primary = failover(redis, clock)
        seen: list[BreakerTransition] = []
        limiter.breaker.add_listener(seen.append)
        assert (await limiter.acquire("alice")).allowed
        assert primary.calls == 1
        assert limiter.health() == RateLimitHealth(backend="redis", fallback_active=False)

        own_redis.stop()
        assert (await limiter.acquire("alice")).allowed  # Redis failed: answered locally
        assert primary.calls == 2
        assert limiter.breaker.state is BreakerState.OPEN
        for _ in range(50):
            assert (await limiter.acquire("alice")).allowed
        assert primary.calls == 2  # the open breaker sent nothing to Redis
        assert limiter.health() == RateLimitHealth(backend="embedded", fallback_active=True)

        own_redis.start()  # back on the same port
        clock.advance(FAILOVER_BREAKER.reset_timeout_s - 0.01)
        await limiter.acquire("alice")
        assert primary.calls == 2  # still inside the reset timeout
        clock.advance(0.01)
        assert (await limiter.acquire("alice")).allowed  # the probe, on Redis
        assert primary.calls == 3
        assert limiter.breaker.state is BreakerState.CLOSED
        assert limiter.health() == RateLimitHealth(backend="redis", fallback_active=False)
        await limiter.acquire("alice")
        assert primary.calls == 4

    assert [(t.old, t.new) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert {t.provider for t in seen} == {"ratelimit"}  # the breaker's name
    assert "cannot reach Redis" in seen[0].reason


@pytest.mark.redis
async def test_a_failed_probe_reopens_and_waits_a_full_reset_again(
    own_redis: RedisServer,
) -> None:
    clock = FakeClock()
    async with RedisConnections(own_redis.url) as redis:
        limiter, primary = failover(redis, clock)
        own_redis.stop()
        await limiter.acquire("a")
        clock.advance(FAILOVER_BREAKER.reset_timeout_s)
        assert (await limiter.acquire("a")).allowed  # the probe fails; answered locally
        assert primary.calls == 2
        assert limiter.breaker.state is BreakerState.OPEN
        assert limiter.breaker.seconds_until_half_open() == FAILOVER_BREAKER.reset_timeout_s
        await limiter.acquire("a")
        assert primary.calls == 2


@pytest.mark.redis
async def test_after_the_reset_only_one_request_probes_redis(own_redis: RedisServer) -> None:
    clock = FakeClock()
    async with RedisConnections(own_redis.url) as redis:
        limiter, primary = failover(redis, clock)
        own_redis.stop()
        await limiter.acquire("a")
        own_redis.start()
        clock.advance(FAILOVER_BREAKER.reset_timeout_s)
        decisions = await asyncio.gather(*(limiter.acquire(f"s{i}") for i in range(10)))
        assert all(d.allowed for d in decisions)
        assert primary.calls == 2  # one probe; the nine others stayed local meanwhile
        assert limiter.breaker.state is BreakerState.CLOSED


@pytest.mark.redis
async def test_a_redis_that_does_not_answer_costs_one_deadline(own_redis: RedisServer) -> None:
    async with RedisConnections(own_redis.url) as redis:
        limiter = RedisRateLimiter(redis.client, GENEROUS, timeout_s=0.05)
        assert (await limiter.acquire("a")).allowed
        admin = redis.client
        await admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        try:
            started = time.perf_counter()
            with pytest.raises(CacheUnavailable, match=r"no answer within 0\.05 s"):
                await limiter.acquire("a")
            assert time.perf_counter() - started < 1.0  # not the pool's 2 s socket timeout
        finally:
            own_redis.stop()  # ends the pause at once


async def test_a_bug_in_the_primary_propagates_and_frees_the_probe() -> None:
    clock = FakeClock()
    broken = BrokenLimiter()
    limiter = FailoverRateLimiter(broken, EmbeddedRateLimiter(GENEROUS, clock=clock), clock=clock)
    limiter.breaker.force_open()
    clock.advance(FAILOVER_BREAKER.reset_timeout_s)
    with pytest.raises(RuntimeError):
        await limiter.acquire("a")
    assert limiter.breaker.state is BreakerState.HALF_OPEN  # a bug says nothing about Redis
    with pytest.raises(RuntimeError):
        await limiter.acquire("a")  # the slot was freed: the next request probes
    assert broken.calls == 2
