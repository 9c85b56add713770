"""Provider breakers shared through a real redis-server: two desktops in one process.

Each "desktop" has its own Redis connections, its own ``SharedBreakers`` and its
own router with a real ``OpenAIProvider``; both talk to one stand-in LLM server
on 127.0.0.1, which counts the requests that reach it. One ``FakeClock`` drives
the breakers, the records' open periods and the store breakers of both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from core.breaker import BreakerState, BreakerTransition, CircuitBreaker
from core.breaker_shared import (
    STORE_BREAKER,
    BreakerStore,
    RedisBreakerStore,
    SharedBreakers,
    breaker_key,
)
from core.config import BreakerSettings, ProviderSettings, load_settings
from core.errors import CacheUnavailable
from core.providers.chain import build_router
from core.providers.openai import OpenAIProvider
from core.providers.router import Attempt, Done, ProviderRouter, RouterEvent
from core.redisconn import RedisConnections
from core.types import ContextPassage, GenerationRequest
from tests.providers.fakes import StaticProvider
from tests.support.clock import FakeClock
from tests.support.fake_llm import FakeLLM, Status, Succeed, closed_port
from tests.support.redis_server import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.redis

REQUEST = GenerationRequest(
    question="What is the retention period?",
    passages=(ContextPassage(1, "/docs/policy.md", None, "Backups are kept for 30 days."),),
)
BREAKER = BreakerSettings(failure_threshold=2, reset_timeout_s=30.0, success_threshold=1)


def openai(name: str, url: str, client: httpx.AsyncClient) -> OpenAIProvider:
    settings = ProviderSettings(
        name=name, kind="openai", base_url=url, timeout_s=5.0, first_token_timeout_s=2.0
    )
    return OpenAIProvider(settings, client=client, api_key="")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own (some tests stop and restart it)."""
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


class Desktop:
    """One instance: its own Redis pool, shared breakers, breaker and router."""

    def __init__(
        self,
        name: str,
        llm_url: str,
        redis_url: str,
        clock: FakeClock,
        http: httpx.AsyncClient,
        op_timeout_s: float = 0.25,
    ) -> None:
        self.redis = RedisConnections(redis_url)
        store = RedisBreakerStore(self.redis.client, op_timeout_s=op_timeout_s)
        self.shared = SharedBreakers(store, instance=name, clock=clock, store_clock=clock)
        self.breaker = CircuitBreaker("primary", BREAKER, clock=clock)
        self.transitions: list[BreakerTransition] = []
        self.breaker.add_listener(self.transitions.append)
        self.shared.share(self.breaker, f"primary|{llm_url}", lease_s=10.0)
        self.router = ProviderRouter(
            [(openai("primary", llm_url, http), self.breaker)],
            StaticProvider("extractive", ["Backups are kept", " for 30 days [1]."]),
            clock=clock,
            max_retries=0,
            shared=self.shared,
        )

    async def ask(self) -> list[RouterEvent]:
        return [event async for event in self.router.stream(REQUEST)]

    async def aclose(self) -> None:
        await self.router.aclose()
        await self.shared.aclose()
        await self.redis.aclose()


def attempts(events: list[RouterEvent]) -> list[tuple[str, str]]:
    """The provider's attempts (the fallback's are left out)."""
    return [
        (e.provider, e.outcome)
        for e in events
        if isinstance(e, Attempt) and e.provider != "extractive"
    ]


@pytest.fixture
async def desktops(
    redis_server: RedisServer, fake_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> AsyncIterator[tuple[Desktop, Desktop]]:
    a = Desktop("desktop-a", fake_llm.base_url, redis_server.url, clock, http_client)
    b = Desktop("desktop-b", fake_llm.base_url, redis_server.url, clock, http_client)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def trip(desktop: Desktop, fake_llm: FakeLLM) -> None:
    """Make the provider fail for ``desktop`` until its breaker opens."""
    fake_llm.set_default(Status(503))
    for _ in range(BREAKER.failure_threshold):
        assert attempts(await desktop.ask()) == [("primary", "failure")]
    assert desktop.breaker.state is BreakerState.OPEN


# ---------------------------------------------------------------- shared state


async def test_a_provider_failing_for_one_desktop_is_open_for_the_other(
    desktops: tuple[Desktop, Desktop], fake_llm: FakeLLM, clock: FakeClock
) -> None:
    a, b = desktops
    assert attempts(await b.ask()) == [("primary", "success")]
    await trip(a, fake_llm)
    served = len(fake_llm.chat_requests)

    clock.advance(10.0)
    events = await b.ask()

    assert attempts(events) == [("primary", "circuit_open")]
    assert len(fake_llm.chat_requests) == served  # B sent nothing to the dead provider
    final = events[-1]
    assert isinstance(final, Done) and final.degraded and final.provider == "extractive"
    assert b.breaker.state is BreakerState.OPEN
    # The same end of the open period as A's (opened 10 s ago, 30 s reset).
    assert b.breaker.seconds_until_half_open() == pytest.approx(20.0)
    [opened] = b.transitions
    assert (opened.old, opened.new) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert opened.reason.startswith("shared by desktop-a: 2 consecutive failures")


async def test_after_the_reset_exactly_one_desktop_probes(
    desktops: tuple[Desktop, Desktop], fake_llm: FakeLLM, clock: FakeClock
) -> None:
    a, b = desktops
    await trip(a, fake_llm)
    assert attempts(await b.ask()) == [("primary", "circuit_open")]
    clock.advance(BREAKER.reset_timeout_s)
    # The probe streams for about a second, so every other attempt meets it in flight.
    fake_llm.set_default(Succeed(("Backups", " are", " kept", "."), delay_s=0.25))
    served = len(fake_llm.chat_requests)

    results = await asyncio.gather(*(d.ask() for d in (a, b) * 10))

    assert len(fake_llm.chat_requests) - served == 1  # one probe reached the provider
    outcomes = [outcome for events in results for _, outcome in attempts(events)]
    assert outcomes.count("success") == 1
    assert outcomes.count("circuit_open") == 19
    # The probe closed the circuit for both; B's next question reaches the provider.
    fake_llm.set_default(Succeed())
    assert attempts(await b.ask()) == [("primary", "success")]
    assert attempts(await a.ask()) == [("primary", "success")]
    assert a.breaker.state is b.breaker.state is BreakerState.CLOSED
    assert len(fake_llm.chat_requests) - served == 3


async def test_a_failed_probe_reopens_the_circuit_for_both(
    desktops: tuple[Desktop, Desktop], fake_llm: FakeLLM, clock: FakeClock
) -> None:
    a, b = desktops
    await trip(a, fake_llm)
    clock.advance(BREAKER.reset_timeout_s)
    assert attempts(await b.ask()) == [("primary", "failure")]  # B probed, still 503
    served = len(fake_llm.chat_requests)

    assert attempts(await a.ask()) == [("primary", "circuit_open")]

    assert len(fake_llm.chat_requests) == served
    assert a.breaker.state is BreakerState.OPEN
    assert a.breaker.seconds_until_half_open() == pytest.approx(BREAKER.reset_timeout_s)


async def test_redis_away_each_desktop_runs_on_its_local_breaker_then_shares_again(
    desktops: tuple[Desktop, Desktop],
    redis_server: RedisServer,
    fake_llm: FakeLLM,
    clock: FakeClock,
) -> None:
    a, b = desktops
    assert attempts(await a.ask()) == [("primary", "success")]
    assert attempts(await b.ask()) == [("primary", "success")]

    redis_server.stop()
    await trip(a, fake_llm)  # A's breaker opens on its own calls, Redis or not
    assert a.shared.local_only
    served = len(fake_llm.chat_requests)
    assert attempts(await a.ask()) == [("primary", "circuit_open")]
    assert len(fake_llm.chat_requests) == served
    # B has not heard: it keeps calling the provider and counting for itself.
    assert attempts(await b.ask()) == [("primary", "failure")]
    assert len(fake_llm.chat_requests) == served + 1
    assert b.breaker.state is BreakerState.CLOSED
    assert b.shared.local_only

    redis_server.start()  # back on the same port, empty
    clock.advance(STORE_BREAKER.reset_timeout_s)
    assert attempts(await a.ask()) == [("primary", "circuit_open")]  # A re-publishes
    assert not a.shared.local_only
    served = len(fake_llm.chat_requests)

    assert attempts(await b.ask()) == [("primary", "circuit_open")]

    assert len(fake_llm.chat_requests) == served
    assert b.breaker.state is BreakerState.OPEN
    assert not b.shared.local_only


async def test_a_redis_that_does_not_answer_costs_one_deadline_then_stays_local(
    redis_server: RedisServer, fake_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    a = Desktop("desktop-a", fake_llm.base_url, redis_server.url, clock, http_client, 0.05)
    try:
        assert attempts(await a.ask()) == [("primary", "success")]
        await a.redis.client.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        started = time.perf_counter()
        assert attempts(await a.ask()) == [("primary", "success")]  # after one 0.05 s deadline
        assert attempts(await a.ask()) == [("primary", "success")]  # without asking Redis
        assert time.perf_counter() - started < 1.5  # not the pause, nor the 2 s socket timeout
        assert a.shared.local_only
        assert "no answer within 0.05 s" in (a.shared.breaker.snapshot().last_error or "")
    finally:
        redis_server.stop()  # ends the pause at once
        await a.aclose()


async def test_the_redis_breaker_transitions_are_reported(
    desktops: tuple[Desktop, Desktop], redis_server: RedisServer, clock: FakeClock
) -> None:
    a, _ = desktops
    seen: list[BreakerTransition] = []
    a.shared.breaker.add_listener(seen.append)
    redis_server.stop()
    assert attempts(await a.ask()) == [("primary", "success")]  # the provider is fine
    redis_server.start()
    clock.advance(STORE_BREAKER.reset_timeout_s)
    assert attempts(await a.ask()) == [("primary", "success")]
    assert [(t.provider, t.new) for t in seen] == [
        ("breakers", BreakerState.OPEN),
        ("breakers", BreakerState.HALF_OPEN),
        ("breakers", BreakerState.CLOSED),
    ]
    assert "cannot reach Redis" in seen[0].reason


# ---------------------------------------------------------------- the store contract


class BreakerStoreContract:
    """What every ``BreakerStore`` must do; subclasses provide the ``store`` fixture."""

    async def test_the_store_satisfies_the_protocol(self, store: BreakerStore) -> None:
        assert isinstance(store, BreakerStore)

    async def test_publish_is_a_compare_and_set_on_the_epoch(self, store: BreakerStore) -> None:
        assert await store.read("k") is None
        first = await store.publish(
            "k", 0, BreakerState.OPEN, 1030.0, "a", "2 consecutive failures", ttl_s=60
        )
        assert first > 0
        # B still believes there is no record: its write is refused.
        assert await store.publish("k", 0, BreakerState.OPEN, 1040.0, "b", "x", ttl_s=60) == 0
        record = await store.read("k")
        assert record is not None
        assert (record.epoch, record.state, record.until, record.by) == (
            first,
            BreakerState.OPEN,
            1030.0,
            "a",
        )
        closed = await store.publish("k", first, BreakerState.CLOSED, 0.0, "b", "ok", ttl_s=60)
        assert closed == first + 1
        record = await store.read("k")
        assert record is not None and record.state is BreakerState.CLOSED

    async def test_one_probe_lease_at_a_time(self, store: BreakerStore) -> None:
        epoch = await store.publish("k", 0, BreakerState.OPEN, 0.0, "a", "down", ttl_s=60)
        assert not await store.take_probe("k", epoch - 1, "a#1", 10.0)  # a stale epoch
        assert await store.take_probe("k", epoch, "a#1", 10.0)
        assert not await store.take_probe("k", epoch, "b#1", 10.0)
        await store.release_probe("k", "b#1")  # not b's to give back
        assert not await store.take_probe("k", epoch, "b#2", 10.0)
        await store.release_probe("k", "a#1")
        assert await store.take_probe("k", epoch, "b#3", 10.0)

    async def test_a_publish_gives_back_the_publishers_lease(self, store: BreakerStore) -> None:
        first = await store.publish("k", 0, BreakerState.OPEN, 0.0, "a", "down", ttl_s=60)
        assert await store.take_probe("k", first, "a#1", 10.0)
        epoch = await store.publish(
            "k", first, BreakerState.CLOSED, 0.0, "a", "probe ok", ttl_s=60, lease_owner="a#1"
        )
        assert epoch == first + 1
        assert await store.take_probe("k", epoch, "b#1", 10.0)

    async def test_a_new_record_never_reuses_an_earlier_epoch(self, store: BreakerStore) -> None:
        first = await store.publish("k", 0, BreakerState.OPEN, 0.0, "a", "down", ttl_s=60)
        second = await store.publish("other", 0, BreakerState.OPEN, 0.0, "a", "down", ttl_s=60)
        assert second > first  # a record made later (as after a restart) starts higher


class TestRedisBreakerStore(BreakerStoreContract):
    @pytest.fixture
    async def store(self, redis_server: RedisServer) -> AsyncIterator[RedisBreakerStore]:
        async with RedisConnections(redis_server.url) as redis:
            yield RedisBreakerStore(redis.client)

    async def test_records_and_leases_carry_ttls(self, redis_server: RedisServer) -> None:
        async with RedisConnections(redis_server.url) as redis:
            store = RedisBreakerStore(redis.client)
            epoch = await store.publish("k", 0, BreakerState.OPEN, 0.0, "a", "down", ttl_s=600)
            assert await store.take_probe("k", epoch, "a#1", 35.0)
            assert 599_000 < await redis.client.pttl("k") <= 600_000
            assert 34_000 < await redis.client.pttl("k:probe") <= 35_000

    async def test_an_unreachable_redis_raises_cache_unavailable(self) -> None:
        async with RedisConnections(f"redis://127.0.0.1:{closed_port()}/0") as redis:
            store = RedisBreakerStore(redis.client)
            with pytest.raises(CacheUnavailable, match="cannot reach Redis"):
                await store.read("k")


def test_keys_name_the_provider_and_hash_its_address() -> None:
    one = breaker_key("primary|https://a.example/v1", "primary")
    assert one.startswith("archivist:breaker:primary:")
    assert one != breaker_key("primary|https://b.example/v1", "primary")


# ---------------------------------------------------------------- wiring


async def test_the_chain_shares_http_providers_unless_told_not_to(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    (tmp_path / "archivist.toml").write_text(
        "[[providers]]\n"
        'name = "team"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        "[[providers]]\n"
        'name = "mine"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        "[providers.breaker]\nshared = false\n"
        "[[providers]]\n"
        'name = "local"\nkind = "llama_cpp"\n'
    )
    settings = load_settings(env={"ARCHIVIST_HOME": str(tmp_path)})
    async with RedisConnections(redis_server.url) as redis, httpx.AsyncClient() as http:
        shared = SharedBreakers(RedisBreakerStore(redis.client))
        router = build_router(settings, lambda: http, lambda t: None, shared)
        try:
            assert router.shared is shared
            assert shared.shares(router.breaker("team"))
            assert not shared.shares(router.breaker("mine"))
            assert not shared.shares(router.breaker("local"))  # each desktop's own model
        finally:
            await router.aclose()


def test_breakers_are_shared_by_default_and_can_be_switched_off(tmp_path: Path) -> None:
    env = {"ARCHIVIST_HOME": str(tmp_path)}
    assert load_settings(env=env).breaker.shared is True
    (tmp_path / "archivist.toml").write_text("[breaker]\nshared = false\n")
    assert load_settings(env=env).breaker.shared is False
