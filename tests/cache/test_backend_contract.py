"""One contract, two backends: every test runs against the embedded and the Redis backend."""

from __future__ import annotations

import numpy as np

from core.cache.backends import CacheBackend, EmbeddedBackend
from core.cache.redis_backend import RedisBackend
from tests.support.clock import FakeClock

from .helpers import entry, near, vec


class TestCacheContract:
    async def test_backend_satisfies_the_protocol(self, backend: CacheBackend) -> None:
        assert isinstance(backend, CacheBackend)
        await backend.ping()

    async def test_embedding_round_trip_keeps_float32_values(self, backend: CacheBackend) -> None:
        v = vec(1) * 3.5
        await backend.put_embedding("k1", v, 3600)
        got = await backend.get_embedding("k1")
        assert got is not None and got.dtype == np.float32
        np.testing.assert_array_equal(got, v)
        assert await backend.get_embedding("missing") is None

    async def test_put_result_is_found_and_fetched(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        e = entry("e1", question="How do I X?", v=vec(1), docs=(4, 5), now=clock())
        await backend.put_result(e)
        found = await backend.search("ns1", vec(1), 0.9, 5)
        assert [(c.entry_id, c.question) for c in found] == [("e1", "How do I X?")]
        assert abs(found[0].similarity - 1.0) < 1e-5
        got = await backend.fetch("e1")
        assert got is not None
        assert got.payload == e.payload and got.document_ids == (4, 5)
        assert got.namespace == "ns1" and got.question == "How do I X?"
        assert await backend.entry_count() == 1

    async def test_search_is_scoped_by_namespace(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        await backend.put_result(entry("e1", namespace="kb1", v=vec(1), now=clock()))
        assert await backend.search("kb2", vec(1), 0.5, 5) == []
        assert len(await backend.search("kb1", vec(1), 0.5, 5)) == 1

    async def test_search_ranks_best_first_and_applies_floor_and_limit(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        base = vec(7)
        for i, cos in enumerate([0.91, 0.99, 0.96, 0.5]):
            await backend.put_result(entry(f"e{i}", v=near(base, cos, seed=i), now=clock()))
        found = await backend.search("ns1", base, 0.9, 2)
        assert [c.entry_id for c in found] == ["e1", "e2"]
        assert [round(c.similarity, 3) for c in found] == [0.99, 0.96]
        assert len(await backend.search("ns1", base, 0.9, 10)) == 3

    async def test_same_entry_id_replaces_the_entry(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        await backend.put_result(entry("e1", question="old", v=vec(1), now=clock()))
        await backend.put_result(entry("e1", question="new", v=vec(2), now=clock()))
        assert await backend.entry_count() == 1
        found = await backend.search("ns1", vec(2), 0.9, 5)
        assert [c.question for c in found] == ["new"]
        got = await backend.fetch("e1")
        assert got is not None and got.question == "new"

    async def test_evict_removes_one_entry(self, backend: CacheBackend, clock: FakeClock) -> None:
        await backend.put_result(entry("e1", v=vec(1), now=clock()))
        await backend.put_result(entry("e2", v=vec(2), now=clock()))
        assert await backend.evict("e1") is True
        assert await backend.evict("e1") is False
        assert await backend.fetch("e1") is None
        assert await backend.search("ns1", vec(1), 0.9, 5) == []
        assert await backend.fetch("e2") is not None

    async def test_invalidate_documents_removes_answers_that_cited_them(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        await backend.put_result(entry("a", v=vec(1), docs=(1, 2), now=clock()))
        await backend.put_result(entry("b", v=vec(2), docs=(2, 3), now=clock()))
        await backend.put_result(entry("c", v=vec(3), docs=(4,), now=clock()))
        assert await backend.invalidate_documents([2, 99]) == 2
        assert await backend.fetch("a") is None and await backend.fetch("b") is None
        assert await backend.fetch("c") is not None
        assert await backend.entry_count() == 1
        assert await backend.invalidate_documents([2]) == 0

    async def test_invalidate_all_drops_answers_but_keeps_embeddings(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        await backend.put_embedding("k", vec(1), 3600)
        for i in range(3):
            await backend.put_result(entry(f"e{i}", v=vec(i), now=clock()))
        await backend.invalidate_all()
        assert await backend.entry_count() == 0
        assert await backend.search("ns1", vec(1), 0.5, 5) == []
        assert await backend.fetch("e1") is None
        assert await backend.get_embedding("k") is not None
        await backend.put_result(entry("after", v=vec(1), now=clock()))
        assert await backend.fetch("after") is not None

    async def test_expired_entries_are_not_served(
        self, backend: CacheBackend, clock: FakeClock
    ) -> None:
        await backend.put_result(entry("e1", v=vec(1), now=clock(), ttl=30))
        clock.advance(31)
        assert await backend.search("ns1", vec(1), 0.5, 5) == []
        if isinstance(backend, EmbeddedBackend):
            assert await backend.fetch("e1") is None
        else:  # the server still holds it for its real TTL; the entry's own expiry rules
            assert isinstance(backend, RedisBackend)
            assert await backend.fetch("e1") is None
