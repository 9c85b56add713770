"""Token buckets: one contract for the embedded and the Redis limiter, plus each one's own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import RateLimited
from core.security.ratelimit import (
    BucketSpec,
    EmbeddedRateLimiter,
    RateDecision,
    RateLimiter,
    RateLimitSettings,
    RedisRateLimiter,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
            limiters = [RedisRateLimiter(c, settings) for c in clients]
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
