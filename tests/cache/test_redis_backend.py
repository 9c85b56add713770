"""Redis backend specifics: server TTLs, two processes converging, reload by SCAN, no KEYS."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.cache.redis_backend import RedisBackend, knowledge_base_scope
from core.redisconn import RedisConnections
from core.security.ratelimit import RateLimitSettings, RedisRateLimiter
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer

from .conftest import CommandMonitor
from .helpers import entry, vec

pytestmark = pytest.mark.redis


async def test_keys_carry_server_side_ttls(redis_server: RedisServer, prefix: str) -> None:
    clock = FakeClock()
    b = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    await b.start()
    await b.put_embedding("k", vec(1), ttl_s=60)
    await b.put_result(entry("e1", v=vec(1), docs=(3,), now=clock(), ttl=7200))
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        assert 59_000 < await r.pttl(f"{prefix}:emb:k") <= 60_000
        assert 7_199_000 < await r.pttl(f"{prefix}:g0:res:e1") <= 7_200_000
        assert 7_199_000 < await r.pttl(f"{prefix}:g0:doc:3") <= 7_200_000
    finally:
        await r.aclose()
        await b.aclose()


async def test_two_processes_converge_through_the_change_log(
    redis_server: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    a = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    b = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    await a.start()
    await b.start()
    try:
        await a.put_result(entry("e1", question="Q1", v=vec(1), now=clock()))
        await b.sync_now()
        assert [c.entry_id for c in await b.search("ns1", vec(1), 0.9, 5)] == ["e1"]
        await a.evict("e1")
        await b.sync_now()
        assert await b.search("ns1", vec(1), 0.9, 5) == []

        await a.put_result(entry("e2", v=vec(2), now=clock()))
        await b.sync_now()
        await a.invalidate_all()
        await b.sync_now()
        assert await b.entry_count() == 0
        assert b.generation == a.generation == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_stale_local_index_never_serves_a_removed_entry(
    redis_server: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    a = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock, sync_block_ms=60_000)
    b = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock, sync_block_ms=60_000)
    await a.start()
    await a.put_result(entry("e1", v=vec(1), docs=(5,), now=clock()))
    await a.put_result(entry("e2", v=vec(2), now=clock()))
    await b.start()  # loads both by SCAN
    try:
        await a.invalidate_documents([5])
        await a.invalidate_all()
        # b has not read the change log yet: its index still lists e2, but fetch decides
        assert b.generation == 0
        assert await b.fetch("e2") is None
        assert b.generation == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_start_loads_existing_entries_by_scan(redis_server: RedisServer, prefix: str) -> None:
    clock = FakeClock()
    a = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    await a.start()
    for i in range(2_500):  # more than two SCAN batches
        await a.put_result(entry(f"e{i}", v=vec(i), now=clock()))
    await a.aclose()
    b = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    await b.start()
    try:
        assert await b.entry_count() == 2_500
        assert [c.entry_id for c in await b.search("ns1", vec(42), 0.99, 1)] == ["e42"]
    finally:
        await b.aclose()


async def test_the_keys_command_is_never_sent(
    redis_server: RedisServer, redis_monitor: CommandMonitor, prefix: str
) -> None:
    """Every backend operation, a reload and invalidate_all, under MONITOR."""
    own = CommandMonitor(redis_server.port)
    clock = FakeClock()
    a = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    b = RedisBackend.from_url(redis_server.url, prefix=prefix, clock=clock)
    await a.start()
    await a.put_embedding("k", vec(1), 60)
    await a.get_embedding("k")
    for i in range(20):
        await a.put_result(entry(f"e{i}", v=vec(i), docs=(i % 3,), now=clock()))
    await b.start()
    await a.search("ns1", vec(1), 0.5, 5)
    await a.fetch("e1")
    await a.evict("e2")
    await a.invalidate_documents([1])
    await a.invalidate_all()
    await b.sync_now()
    await b.fetch("e3")
    await a.entry_count()
    await a.ping()
    await a.aclose()
    await b.aclose()
    await asyncio.sleep(0.2)
    own.close()
    seen = set(own.commands())
    assert {"SCAN", "HGETALL", "UNLINK", "INCRBY", "XADD", "XREAD"} <= seen, " ".join(sorted(seen))
    assert "KEYS" not in seen
    assert "KEYS" not in redis_monitor.commands()  # everything else this session sent


async def test_a_shared_client_outlives_the_backend(redis_server: RedisServer, prefix: str) -> None:
    async with RedisConnections(redis_server.url) as redis:
        backend = RedisBackend(redis.client, prefix=prefix, clock=FakeClock())
        await backend.start()
        await backend.put_embedding("k", vec(1), ttl_s=60)
        await backend.aclose()
        assert await redis.client.get(f"{prefix}:emb:k") is not None  # not closed by the backend


async def test_the_cache_and_the_rate_limiter_share_one_pool(
    own_redis: RedisServer, prefix: str
) -> None:
    """Every connection the cache backend (reader included) and the limiter open is pooled."""
    name = f"archivist-{uuid.uuid4().hex[:8]}"
    admin = aioredis.Redis.from_url(own_redis.url)
    async with RedisConnections(own_redis.url, client_name=name) as redis:
        backend = RedisBackend(redis.client, prefix=prefix, clock=FakeClock(), sync_block_ms=500)
        limiter = RedisRateLimiter(redis.client, RateLimitSettings(), prefix=f"{prefix}:rl:")
        await backend.start()
        try:
            for i in range(5):
                await backend.put_embedding(f"k{i}", vec(i), ttl_s=60)
                assert (await limiter.acquire("alice")).allowed
            me = await admin.client_id()
            others = [c for c in await admin.client_list() if int(c["id"]) != me]
            assert others, "no connection was opened"
            assert {c["name"] for c in others} == {name}  # all from the shared pool
        finally:
            await backend.aclose()
            await admin.aclose()


def test_the_change_log_reader_blocks_for_half_the_socket_timeout_at_most(
    redis_server: RedisServer,
) -> None:
    long = RedisBackend.from_url(redis_server.url, socket_timeout_s=2.0, sync_block_ms=60_000)
    short = RedisBackend.from_url(redis_server.url, socket_timeout_s=2.0, sync_block_ms=300)
    assert long._sync_block_ms == 1_000
    assert short._sync_block_ms == 300


def test_desktops_on_one_server_database_share_a_scope_whoever_logs_in() -> None:
    ann = knowledge_base_scope("postgresql+psycopg://ann:secret@db.example:5432/kb")
    bob = knowledge_base_scope("postgresql+psycopg://bob@db.example:5432/kb")
    assert ann == bob
    assert ann != knowledge_base_scope("postgresql+psycopg://ann@db.example:5432/other")
    assert ann != knowledge_base_scope("postgresql+psycopg://ann@db2.example:5432/kb")


def test_a_sqlite_database_keeps_its_scope_in_a_file_beside_it(tmp_path: Path) -> None:
    mine = f"sqlite:///{tmp_path / 'a' / 'archivist.db'}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = knowledge_base_scope(mine)
    assert knowledge_base_scope(mine) == first  # stable across runs
    assert (tmp_path / "a" / "archivist.db.cache-scope").read_text().strip() == first
    # Another desktop's database at the same path on its own disk: another scope.
    assert knowledge_base_scope(f"sqlite:///{tmp_path / 'b' / 'archivist.db'}") != first
    assert knowledge_base_scope("sqlite://") != knowledge_base_scope("sqlite://")
