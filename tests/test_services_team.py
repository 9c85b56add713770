"""Team mode: two instances, two homes, one PostgreSQL with pgvector, one search index."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.services import Services
from tests.support.mini_corpus import QUESTIONS, write_mini_corpus
from tests.support.postgres import PostgresServer


def _settings(home: Path, url: str, *, embed: bool) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    if not embed:
        (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    env = {"ARCHIVIST_HOME": str(home), "ARCHIVIST_LOCAL_MODEL": "off"}
    if url:
        env["ARCHIVIST_DATABASE_URL"] = url
    return load_settings(None, env=env)


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_second_home_answers_from_what_the_first_ingested(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database("team")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_mini_corpus(corpus)
    question = next(q for q in QUESTIONS if q.answer_contains and q.kind == "keyword")
    alice_home, bob_home = tmp_path / "alice", tmp_path / "bob"

    async with Services(_settings(alice_home, url, embed=True)) as alice:
        report = await alice.ingest([corpus])
        assert report.summary()["added"] == 5, report
        live = (await alice.health()).search_index
        assert live is not None and live.loaded_from == "postgresql"
        assert live.chunks > 0 and live.vectors == live.chunks

    async with Services(_settings(bob_home, url, embed=True)) as bob:
        await bob.wait_ready()
        index = (await bob.health()).search_index
        assert index is not None and index.loaded_from == "postgresql"
        assert index.chunks > 0 and index.vectors == index.chunks
        answer = await bob.ask(question.question)
        assert answer.citations, answer
        assert Path(answer.citations[0].source).name == question.source_name
        assert any(s.lower() in answer.text.lower() for s in question.answer_contains)
        hits, _ = await bob.search(question.question, k=3, fusion="vector")
        assert hits and all(h.vector_rank is not None for h in hits)
        stats = await bob.stats()
        assert stats.knowledge_base.documents == 5

    # Bob never ingested: nothing of the index lives in his home.
    assert not list((bob_home / "index").rglob("*.npz"))
    assert not list((alice_home / "index").rglob("*.npz"))


async def test_without_postgresql_each_home_keeps_its_own_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_mini_corpus(corpus)
    async with Services(_settings(tmp_path / "solo", "", embed=False)) as solo:
        await solo.ingest([corpus])
        index = (await solo.health()).search_index
        assert index is not None and index.loaded_from != "postgresql"
    assert list((tmp_path / "solo" / "index").rglob("*.npz"))
