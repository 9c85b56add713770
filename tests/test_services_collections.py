"""Team mode with access control: two homes, two PostgreSQL roles, one database.

Alice ingests into her collection; Bob, a member with his own role and home,
reads it only while it is granted to him: search, ask, the source's text,
statistics and cached answers all follow the grant (PostgreSQL's row-level
security decides; nothing here filters in Python).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.config import load_settings
from core.db.engine import create_engine_for
from core.errors import ArchivistError, UsageError
from core.services import Services
from core.team import admin_init, grant, list_collections, revoke
from tests.support.mini_corpus import QUESTIONS, write_mini_corpus
from tests.support.postgres import PostgresServer
from tests.support.redis_server import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.postgres

QUESTION = next(q for q in QUESTIONS if q.answer_contains and q.kind == "keyword")
PRIVATE_QUESTION = "When does the Lisbon office hiring freeze end?"
PRIVATE_TEXT = "The hiring freeze for the Lisbon office ends on 14 March 2027.\n"


@dataclass
class Team:
    server: PostgresServer
    url: str
    alice: str
    bob: str

    def url_of(self, role: str) -> str:
        return self.url.replace("postgres@", f"{role}@", 1)


@pytest.fixture
def team(postgres_server: PostgresServer) -> Iterator[Team]:
    url = postgres_server.new_database("collections")
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice_{suffix}", f"bob_{suffix}"
    for role in (alice, bob):
        postgres_server.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
    admin = create_engine_for(url)
    try:
        report = admin_init(admin, [alice, bob])
        assert report.members == (alice, bob)
    finally:
        admin.dispose()
    yield Team(postgres_server, url, alice, bob)


def _services(home: Path, url: str, redis_url: str = "", *, embed: bool = False) -> Services:
    """A desktop; ``embed`` for the cache (cached answers are found by question vector)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "archivist.toml").write_text(f"[ingest]\nembed = {str(embed).lower()}\n")
    env = {
        "ARCHIVIST_HOME": str(home),
        "ARCHIVIST_LOCAL_MODEL": "off",
        "ARCHIVIST_DATABASE_URL": url,
    }
    if redis_url:
        env["ARCHIVIST_REDIS_URL"] = redis_url
    return Services(load_settings(None, env=env))


def _corpus(root: Path) -> tuple[Path, Path]:
    shared, private = root / "shared", root / "private"
    shared.mkdir(parents=True)
    private.mkdir()
    write_mini_corpus(shared)
    (private / "hiring.txt").write_text(PRIVATE_TEXT)
    return shared, private


def _cites(answer: object, name: str) -> bool:
    citations = getattr(answer, "citations", ())
    return any(Path(c.source).name == name for c in citations)


@pytest.mark.slow
async def test_a_granted_collection_is_answered_and_a_revoked_one_is_not(
    tmp_path: Path, team: Team
) -> None:
    shared, _ = _corpus(tmp_path / "docs")
    async with _services(tmp_path / "alice", team.url_of(team.alice), embed=True) as alice:
        report = await alice.ingest([shared], collection="eng")
        assert report.summary()["added"] == 5, report
        source = str(next(shared.glob(QUESTION.source_name)))
        assert (await alice.stats()).knowledge_base.documents == 5

    engine_a = create_engine_for(team.url_of(team.alice))
    try:
        async with _services(tmp_path / "bob", team.url_of(team.bob), embed=True) as bob:
            await _bob_reads_while_granted(bob, engine_a, team, source)
    finally:
        engine_a.dispose()


async def _bob_reads_while_granted(
    bob: Services, engine_a: sa.Engine, team: Team, source: str
) -> None:
    await bob.wait_ready()
    # Nothing granted: no hits, no answer, no source text, no counts.
    hits, _ = await bob.search(QUESTION.question, k=5)
    assert hits == []
    denied = await bob.ask(QUESTION.question)
    assert not denied.citations and denied.abstained
    with pytest.raises(ArchivistError):
        await bob.document_text(source)
    assert (await bob.stats()).knowledge_base.documents == 0

    assert grant(engine_a, "eng", team.bob)
    answer = await bob.ask(QUESTION.question)  # the abstention cached above is not served
    assert answer.cache != "result"
    assert _cites(answer, QUESTION.source_name), answer
    assert any(s.lower() in answer.text.lower() for s in QUESTION.answer_contains)
    assert QUESTION.answer_contains[0] in await bob.document_text(source)
    assert (await bob.stats()).knowledge_base.documents == 5
    again = await bob.ask(QUESTION.question)
    assert again.cache == "result" and _cites(again, QUESTION.source_name)

    assert revoke(engine_a, "eng", team.bob)
    after = await bob.ask(QUESTION.question)
    # Not the cited answer cached while granted (at most the abstention from before).
    assert not after.citations and after.abstained
    assert not any(s.lower() in after.text.lower() for s in QUESTION.answer_contains)
    hits, _ = await bob.search(QUESTION.question, k=5)
    assert hits == []
    with pytest.raises(ArchivistError):
        await bob.document_text(source)


async def test_collections_say_who_owns_and_who_reads_them(tmp_path: Path, team: Team) -> None:
    shared, private = _corpus(tmp_path / "docs")
    async with _services(tmp_path / "alice", team.url_of(team.alice)) as alice:
        await alice.ingest([shared], collection="eng")
        await alice.ingest([private], collection="hr")
        # Without a collection, team mode writes to 'default', which is not Alice's.
        with pytest.raises(UsageError, match="--collection"):
            await alice.ingest([shared])
    engine_a = create_engine_for(team.url_of(team.alice))
    engine_b = create_engine_for(team.url_of(team.bob))
    try:
        grant(engine_a, "eng", team.bob)
        assert not grant(engine_a, "eng", team.bob)  # already
        mine = {c.name: c for c in list_collections(engine_a)}
        assert mine["eng"].mine and mine["eng"].documents == 5
        assert mine["eng"].readers == (team.bob,)
        assert mine["hr"].documents == 1 and mine["hr"].readers == ()
        theirs = list_collections(engine_b)
        assert [(c.name, c.owner, c.mine, c.documents) for c in theirs] == [
            ("eng", team.alice, False, 5)
        ]
        with pytest.raises(UsageError, match="only its owner"):
            revoke(engine_b, "eng", team.bob)
        with pytest.raises(UsageError, match="no collection 'hr'"):
            grant(engine_b, "hr", team.bob)
        with pytest.raises(UsageError, match="no PostgreSQL role"):
            grant(engine_a, "eng", "nobody_" + uuid.uuid4().hex[:6])
    finally:
        engine_a.dispose()
        engine_b.dispose()
    async with _services(tmp_path / "bob", team.url_of(team.bob)) as bob:
        with pytest.raises(UsageError, match="belongs to"):
            await bob.ingest([private], collection="eng")
        notes = tmp_path / "bob-notes"
        notes.mkdir()
        (notes / "plan.txt").write_text("Bob's plan: review the Lisbon budget.\n")
        report = await bob.ingest([notes], collection="bob-notes")  # his own: fine
        assert report.summary()["added"] == 1
    # The window has no --collection: ARCHIVIST_COLLECTION names where ingests go.
    more = tmp_path / "more"
    more.mkdir()
    (more / "later.txt").write_text("Bob's later note about the Porto visit.\n")
    env_home = tmp_path / "bob2"
    env_home.mkdir()
    (env_home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    env = {
        "ARCHIVIST_HOME": str(env_home),
        "ARCHIVIST_LOCAL_MODEL": "off",
        "ARCHIVIST_DATABASE_URL": team.url_of(team.bob),
        "ARCHIVIST_COLLECTION": "bob-notes",
    }
    async with Services(load_settings(None, env=env)) as bob:
        assert (await bob.ingest([more])).summary()["added"] == 1
        notes_info = {c.name: c for c in await asyncio.to_thread(list_collections, bob.engine)}
        assert notes_info["bob-notes"].documents == 2
        assert [c.name for c in await asyncio.to_thread(list_collections, bob.engine)] == [
            "bob-notes",
            "eng",
        ]


async def test_one_folder_in_two_collections_stays_each_owners_own(
    tmp_path: Path, team: Team
) -> None:
    """A shared drive: Alice and Bob ingest the same files, each into a collection."""
    shared, _ = _corpus(tmp_path / "docs")
    async with _services(tmp_path / "alice", team.url_of(team.alice)) as alice:
        await alice.ingest([shared], collection="eng")
    engine_a = create_engine_for(team.url_of(team.alice))
    try:
        grant(engine_a, "eng", team.bob)
    finally:
        engine_a.dispose()
    async with _services(tmp_path / "bob", team.url_of(team.bob)) as bob:
        # Bob reads Alice's copies, but his ingest neither takes nor skips them.
        first = await bob.ingest([shared], collection="bob-notes")
        assert first.summary()["added"] == 5, first
        again = await bob.ingest([shared], collection="bob-notes")
        assert again.summary()["unchanged"] == 5, again
        source = str(next(shared.glob(QUESTION.source_name)))
        assert QUESTION.answer_contains[0] in await bob.document_text(source)
        only = await bob.filters_for([source])
        assert len(only.document_ids) == 2  # his copy and Alice's
        mine = {c.name: c.documents for c in await asyncio.to_thread(list_collections, bob.engine)}
        assert mine == {"bob-notes": 5, "eng": 5}
    async with _services(tmp_path / "alice", team.url_of(team.alice)) as alice:
        assert (await alice.ingest([shared], collection="eng")).summary()["unchanged"] == 5


async def test_collections_need_a_team_database(tmp_path: Path) -> None:
    home = tmp_path / "solo"
    home.mkdir()
    env = {"ARCHIVIST_HOME": str(home), "ARCHIVIST_LOCAL_MODEL": "off"}
    async with Services(load_settings(None, env=env)) as solo:
        with pytest.raises(UsageError, match="PostgreSQL"):
            await solo.ingest([home], collection="eng")
    engine = create_engine_for(f"sqlite:///{home / 'x.db'}")
    try:
        with pytest.raises(UsageError, match="PostgreSQL"):
            admin_init(engine)
    finally:
        engine.dispose()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.redis
@pytest.mark.slow
async def test_a_shared_cached_answer_serves_only_readers_of_its_collections(
    tmp_path: Path, team: Team, redis_server: RedisServer
) -> None:
    _, private = _corpus(tmp_path / "docs")
    redis = redis_server.url
    async with (
        _services(tmp_path / "alice", team.url_of(team.alice), redis, embed=True) as alice,
        _services(tmp_path / "bob", team.url_of(team.bob), redis, embed=True) as bob,
    ):
        await alice.ingest([private], collection="hr")
        first = await alice.ask(PRIVATE_QUESTION)
        assert _cites(first, "hiring.txt") and "14 March" in first.text
        assert (await alice.ask(PRIVATE_QUESTION)).cache == "result"  # cached, in Redis

        denied = await bob.ask(PRIVATE_QUESTION)
        assert denied.cache != "result"
        assert "14 March" not in denied.text and not denied.citations

        engine_a = create_engine_for(team.url_of(team.alice))
        try:
            grant(engine_a, "hr", team.bob)
        finally:
            engine_a.dispose()
        # Reading what Alice reads, Bob may be served her cached answer.
        shared = await bob.ask(PRIVATE_QUESTION)
        assert shared.cache == "result" and _cites(shared, "hiring.txt")
