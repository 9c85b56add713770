"""The two-layer cache inside ``Services.ask``: hits, the guard, scoping, invalidation, Redis."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import load_settings
from core.services import Services
from tests.support.redis_server import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture
async def services(home: Path, corpus: Path) -> AsyncIterator[Services]:
    s = Services(load_settings())
    await s.start()
    await s.ingest([corpus])
    try:
        yield s
    finally:
        await s.aclose()


async def test_repeated_and_paraphrased_questions_hit_the_result_cache(
    services: Services,
) -> None:
    first = await services.ask("When was the Old Harbour lighthouse built?")
    assert first.cache == "miss" and "1874" in first.text
    assert first.cache_entry is not None

    again = await services.ask("  when was the old harbour LIGHTHOUSE built? ")
    assert again.cache == "result"
    assert again.cache_match is not None and again.cache_match.similarity > 0.99
    assert again.text == first.text
    assert [c.to_json() for c in again.citations] == [c.to_json() for c in first.citations]

    # A detail that changes the answer is refused by the guard, however similar.
    other = await services.ask("When was the Old Harbour lighthouse not built?")
    assert other.cache != "result"

    bypass = await services.ask("When was the Old Harbour lighthouse built?", use_cache=False)
    assert bypass.cache == "miss"

    stats = await services.stats()
    assert stats.audit.by_cache_layer.get("result", 0) >= 1
    health = {c.name: c for c in (await services.health()).components}
    metrics = health["cache"].data["metrics"]
    assert metrics["layers"]["result"]["hits"] >= 1


async def test_changing_a_document_retires_answers_that_cited_it(
    services: Services, corpus: Path
) -> None:
    q = "When was the Old Harbour lighthouse built?"
    assert "1874" in (await services.ask(q)).text
    assert (await services.ask(q)).cache == "result"
    (corpus / "lighthouse.txt").write_text(
        "The Old Harbour lighthouse was built in 1881.\n\nIt was painted white.\n"
    )
    report = await services.ingest([corpus])
    assert report.summary()["updated"] == 1
    fresh = await services.ask(q)
    assert fresh.cache != "result"
    assert "1881" in fresh.text


async def test_evicting_a_wrong_answer(services: Services) -> None:
    q = "How much is a return ticket to Gull Island?"
    first = await services.ask(q)
    assert first.cache_entry is not None
    assert (await services.ask(q)).cache == "result"
    assert await services.evict_cached_answer(first.cache_entry)
    assert (await services.ask(q)).cache != "result"


@pytest.mark.redis
async def test_redis_backend_and_fallback_when_redis_dies(
    home: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: RedisServer = redis_server_or_skip()
    try:
        monkeypatch.setenv("ARCHIVIST_REDIS_URL", server.url)
        async with Services(load_settings()) as services:
            await services.ingest([corpus])
            health = {c.name: c for c in (await services.health()).components}
            assert health["cache"].data["backend"] == "redis"
            q = "When does the morning ferry leave?"
            assert "07:15" in (await services.ask(q)).text
            assert (await services.ask(q)).cache == "result"

            server.stop()  # Redis goes away mid-run: answers keep coming
            answer = await services.ask("What is the aperture of the telescope?")
            assert "240" in answer.text
            again = await services.ask("What is the aperture of the telescope?")
            assert "240" in again.text
            health = {c.name: c for c in (await services.health()).components}
            assert health["cache"].data["fallback"] is True, health["cache"]
            assert health["cache"].status != "ok"
    finally:
        server.close()


def test_redis_server_binary_is_installed_in_ci() -> None:
    import os

    if os.environ.get("CI", "").lower() == "true":
        assert shutil.which("redis-server"), "CI must install redis-server"
