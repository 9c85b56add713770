"""Two ``Services`` (two desktops) on one real redis-server share their state.

Each desktop has its own data folder and SQLite database, the same documents
and the same provider (a stand-in server on 127.0.0.1), and one Redis URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from core.breaker import BreakerState
from core.config import load_settings
from core.errors import RateLimited
from core.services import Services
from tests.support.fake_llm import FakeLLM, Status, Succeed
from tests.support.redis_server import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM(Status(503)) as server:
        yield server


def desktop(
    root: Path,
    name: str,
    llm: FakeLLM,
    redis_url: str,
    extra: str = "",
    *,
    embed: bool = False,
    database_url: str | None = None,
) -> Services:
    home = root / name
    home.mkdir()
    (home / "archivist.toml").write_text(
        f"[ingest]\nembed = {'true' if embed else 'false'}\n"
        "[breaker]\nfailure_threshold = 1\nreset_timeout_s = 600\n"
        f'[[providers]]\nname = "primary"\nkind = "openai"\nbase_url = "{llm.base_url}"\n'
        'model = "m"\ntimeout_s = 5\nfirst_token_timeout_s = 2\nconnect_timeout_s = 1\n' + extra
    )
    env = {
        "ARCHIVIST_HOME": str(home),
        "ARCHIVIST_REDIS_URL": redis_url,
        "ARCHIVIST_LOCAL_MODEL": "off",
    }
    if database_url is not None:
        env["ARCHIVIST_DATABASE_URL"] = database_url
    return Services(load_settings(env=env))


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_a_provider_down_for_one_desktop_is_skipped_by_the_other(
    tmp_path: Path,
    corpus: Path,
    llm: FakeLLM,
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    a = await stack.enter_async_context(desktop(tmp_path, "a", llm, redis_server.url))
    b = await stack.enter_async_context(desktop(tmp_path, "b", llm, redis_server.url))
    await a.ingest([corpus])
    await b.ingest([corpus])

    first = await a.ask("When does the morning ferry leave?", use_cache=False)
    assert first.degraded and "07:15" in first.text  # from the documents themselves
    assert len(llm.chat_requests) == 1
    assert a.router.breaker("primary").state is BreakerState.OPEN

    answer = await b.ask("What is the aperture of the telescope?", use_cache=False)

    assert "240" in answer.text and answer.degraded
    assert len(llm.chat_requests) == 1  # B never called the provider A found down
    assert b.router.breaker("primary").state is BreakerState.OPEN
    providers = {p.name: p for p in (await b.health()).providers}
    assert providers["primary"].state is BreakerState.OPEN
    # B's audit log records the transition it took over, naming where it came from.
    audit = (await b.stats()).audit
    assert audit is not None
    [opened] = [e for e in audit.last_events if e.action == "breaker"]
    assert (opened.provider, opened.outcome) == ("primary", "open")
    assert opened.detail["reason"].startswith("shared by ")


@pytest.mark.slow  # the cache keys on the question's embedding: a real model loads
async def test_an_answer_cached_by_one_desktop_is_served_to_another_on_the_same_knowledge_base(
    tmp_path: Path,
    corpus: Path,
    llm: FakeLLM,
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    llm.set_default(Succeed(("The morning ferry leaves at 07:15 ", "[1]", ".")))
    team = f"sqlite:///{tmp_path / 'team.db'}"  # one database for both (as on a share)
    url = redis_server.url
    a = await stack.enter_async_context(
        desktop(tmp_path, "a", llm, url, embed=True, database_url=team)
    )
    await a.ingest([corpus])
    b = await stack.enter_async_context(
        desktop(tmp_path, "b", llm, url, embed=True, database_url=team)
    )

    first = await a.ask("When does the morning ferry leave?")
    assert first.cache != "result" and "07:15" in first.text
    served = len(llm.chat_requests)

    again = await b.ask("When does the morning ferry leave?")

    assert again.cache == "result"
    assert "07:15" in again.text
    assert len(llm.chat_requests) == served


async def test_the_global_rate_limit_counts_the_questions_of_every_desktop(
    tmp_path: Path,
    corpus: Path,
    llm: FakeLLM,
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    limits = "[rate_limit]\nglobal_rate_per_s = 0.001\nglobal_burst = 3\n"
    a = await stack.enter_async_context(desktop(tmp_path, "a", llm, redis_server.url, limits))
    b = await stack.enter_async_context(desktop(tmp_path, "b", llm, redis_server.url, limits))
    await a.ingest([corpus])

    await a.ask("When does the morning ferry leave?", use_cache=False)
    await a.ask("What is the aperture of the telescope?", use_cache=False)
    await b.ask("Who kept the lighthouse?", use_cache=False)

    with pytest.raises(RateLimited):
        await b.ask("When are viewing nights held?", use_cache=False)
    with pytest.raises(RateLimited):
        await a.ask("When are viewing nights held?", use_cache=False)


@pytest.mark.slow  # the cache keys on the question's embedding: a real model loads
async def test_desktops_with_different_documents_never_get_each_others_answers(
    tmp_path: Path,
    corpus: Path,
    llm: FakeLLM,
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    # B's knowledge base has as many documents as A's (the same version number)
    # but none about the ferry.
    other = tmp_path / "other-docs"
    other.mkdir()
    for i, topic in enumerate(("orchard", "bakery", "library", "harbour")):
        (other / f"{topic}.txt").write_text(f"The {topic} opens at {8 + i}:00 on weekdays.\n")
    llm.set_default(Succeed(("The morning ferry leaves at 07:15 ", "[1]", ".")))
    a = await stack.enter_async_context(desktop(tmp_path, "a", llm, redis_server.url, embed=True))
    b = await stack.enter_async_context(desktop(tmp_path, "b", llm, redis_server.url, embed=True))
    await a.ingest([corpus])
    await b.ingest([other])
    first = await a.ask("When does the morning ferry leave?")
    assert "07:15" in first.text and first.citations

    answer = await b.ask("When does the morning ferry leave?")

    assert answer.cache != "result"
    assert not any(c.source.endswith("ferry.pdf") for c in answer.citations)


async def test_each_desktop_has_its_own_session_limit(
    tmp_path: Path,
    corpus: Path,
    llm: FakeLLM,
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    # Every window asks as session "default": on one Redis that must not make
    # one desktop's questions use up another's.
    limits = "[rate_limit]\nsession_rate_per_s = 0.001\nsession_burst = 2\n"
    a = await stack.enter_async_context(desktop(tmp_path, "a", llm, redis_server.url, limits))
    b = await stack.enter_async_context(desktop(tmp_path, "b", llm, redis_server.url, limits))
    await a.ingest([corpus])

    await a.ask("When does the morning ferry leave?", use_cache=False)
    await a.ask("What is the aperture of the telescope?", use_cache=False)
    with pytest.raises(RateLimited, match="faster than the limit"):
        await a.ask("Who kept the lighthouse?", use_cache=False)

    await b.ask("Who kept the lighthouse?", use_cache=False)
    await b.ask("When are viewing nights held?", use_cache=False)
    with pytest.raises(RateLimited, match="faster than the limit"):
        await b.ask("When are the beds watered?", use_cache=False)
