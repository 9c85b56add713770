"""Embedded backend specifics: injected-clock TTLs, persistence, capacity."""

from __future__ import annotations

from pathlib import Path

from core.cache.backends import EmbeddedBackend
from tests.support.clock import FakeClock

from .helpers import entry, vec


async def test_embedding_expires_after_its_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    b = EmbeddedBackend(tmp_path / "c.sqlite3", clock=clock)
    await b.start()
    await b.put_embedding("k", vec(1), ttl_s=60)
    clock.advance(59)
    assert await b.get_embedding("k") is not None
    clock.advance(2)
    assert await b.get_embedding("k") is None
    await b.aclose()


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "data" / "cache.sqlite3"
    b = EmbeddedBackend(path, clock=clock)
    await b.start()
    await b.put_embedding("k", vec(3), ttl_s=600)
    await b.put_result(entry("e1", question="Q1", v=vec(1), docs=(7,), now=clock()))
    await b.put_result(entry("e2", question="Q2", v=vec(2), docs=(8,), now=clock()))
    await b.evict("e2")
    await b.aclose()

    again = EmbeddedBackend(path, clock=clock)
    await again.start()
    assert await again.entry_count() == 1
    found = await again.search("ns1", vec(1), 0.9, 5)
    assert [c.question for c in found] == ["Q1"]
    got = await again.fetch("e1")
    assert got is not None and got.document_ids == (7,)
    assert await again.get_embedding("k") is not None
    assert await again.invalidate_documents([7]) == 1
    await again.aclose()


async def test_expired_rows_are_dropped_on_load(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "cache.sqlite3"
    b = EmbeddedBackend(path, clock=clock)
    await b.start()
    await b.put_result(entry("e1", v=vec(1), now=clock(), ttl=10))
    await b.aclose()
    clock.advance(11)
    again = EmbeddedBackend(path, clock=clock)
    await again.start()
    assert await again.entry_count() == 0
    await again.aclose()


async def test_capacity_evicts_entries_that_expire_soonest() -> None:
    clock = FakeClock()
    b = EmbeddedBackend(None, clock=clock, max_entries=10)
    await b.start()
    for i in range(10):
        await b.put_result(entry(f"e{i}", v=vec(i), now=clock(), ttl=100 + i))
    await b.put_result(entry("new", v=vec(50), now=clock()))
    assert await b.entry_count() == 10
    assert await b.fetch("e0") is None
    assert await b.fetch("new") is not None
    assert b.evictions == 1
    await b.aclose()
