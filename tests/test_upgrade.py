"""``archivist upgrade``: a single-user knowledge base copied into team PostgreSQL.

Real parts: a SQLite home filled by ingesting the mixed-format mini corpus with the
real embedding model, the real PostgreSQL with pgvector, and a second ``Services``
on another home reading the copy. The embedder is made to fail during the copy,
and its passage encodes are counted afterwards: nothing is embedded again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from core import team
from core.config import RetrievalSettings, Settings, load_settings
from core.db.engine import create_engine_for
from core.db.pg_access import member_privileges_sql
from core.db.schema import documents
from core.embedding import Embedder
from core.errors import StorageError, UsageError
from core.services import Services
from core.upgrade import UpgradeProgress, team_url, upgrade_to_team
from tests.support.mini_corpus import QUESTIONS, write_mini_corpus
from tests.support.postgres import PostgresServer

MODEL = "all-MiniLM-L6-v2"

_CHUNK_SQL = (
    'SELECT d.path, c.ordinal, c.text, c.start, c."end", c.page, c.heading_path,'
    " c.token_count, c.text_hash, c.injection_score, c.injection_categories"
    " FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY d.path, c.ordinal"
)
# Summed: one row, or one per collection where collections exist.
_STATS = "SELECT sum(n_chunks)::int, sum(n_vectors)::int FROM search_stats"
# The HNSW index is there, and no copy holds it back.
_HNSW = (
    "SELECT to_regclass('ix_search_chunks_embedding') IS NOT NULL,"
    " (SELECT count(*)::int FROM kb_meta WHERE key = 'upgrade_vector_index')"
)
# Through the table's JSON type: SQLite holds page lists as text.
_DOC_SQL = sa.select(
    *(documents.c[n] for n in ("path", "content_hash", "size", "mtime", "kind", "title", "text")),
    documents.c.pages,
).order_by(documents.c.path)


def _settings(home: Path, url: str = "", *, embed: bool = True) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    if not embed:
        (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    env = {"ARCHIVIST_HOME": str(home), "ARCHIVIST_LOCAL_MODEL": "off"}
    if url:
        env["ARCHIVIST_DATABASE_URL"] = url
    return load_settings(None, env=env)


def _rows(url: str, sql: str | sa.Select[Any]) -> list[tuple[Any, ...]]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            query = sa.text(sql) if isinstance(sql, str) else sql
            return [tuple(r) for r in conn.execute(query)]
    finally:
        engine.dispose()


def _upgrade(source: Settings, target: str, **kwargs: Any) -> Any:
    return upgrade_to_team(
        source.database_url,
        target,
        model_id=source.embedding.model,
        retrieval=source.retrieval,
        **kwargs,
    )


def _top(hits: Any, n: int = 3) -> list[tuple[str, int | None, int, int]]:
    return [(Path(h.chunk.source).name, h.chunk.page, h.chunk.start, h.chunk.end) for h in hits[:n]]


@pytest.mark.postgres
@pytest.mark.slow
async def test_upgrade_copies_the_knowledge_base_and_a_second_home_answers_from_it(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    write_mini_corpus(corpus)
    solo = _settings(tmp_path / "solo")
    answerable = [q for q in QUESTIONS if q.answer_contains]
    question = next(q for q in answerable if q.kind == "keyword")
    async with Services(solo) as services:
        report = await services.ingest([corpus])
        assert report.summary()["added"] == 5, report
        index = (await services.health()).search_index
        assert index is not None and index.loaded_from != "postgresql"
        assert index.chunks > 0 and index.vectors == index.chunks
        solo_top = {
            q.question: _top((await services.search(q.question, k=3))[0]) for q in answerable
        }
        solo_answer = await services.ask(question.question, use_cache=False)
    assert solo_answer.citations
    solo_audit = len(_rows(solo.database_url, "SELECT id FROM audit_events"))  # flushed now

    url = postgres_server.new_database("upgrade")
    seen: list[UpgradeProgress] = []
    with monkeypatch.context() as m:
        for name in ("load", "encode", "encode_query", "encode_bulk"):
            m.setattr(Embedder, name, _refuse)
        first = _upgrade(solo, url, batch_chunks=7, progress=seen.append)

    n_chunks = len(_rows(solo.database_url, _CHUNK_SQL))
    assert (first.documents, first.chunks, first.vectors) == (5, n_chunks, n_chunks)
    assert first.without_vectors == 0 and not first.conflicts and not first.cancelled
    assert first.audit_events == solo_audit > 0
    assert len(seen) > 2 and seen[-1].chunks_done == seen[-1].chunks_total == n_chunks
    # A new team index: HNSW was built once after the copy, and is there.
    assert first.vector_index_built
    assert _rows(url, _HNSW) == [(True, 0)]
    # Every column of every document and chunk, provenance included, as the source has it.
    assert _rows(url, _DOC_SQL) == _rows(solo.database_url, _DOC_SQL)
    assert _rows(url, _CHUNK_SQL) == _rows(solo.database_url, _CHUNK_SQL)
    assert any(r[5] is not None for r in _rows(url, _CHUNK_SQL))  # the PDF's pages
    # Vectors as stored: the embeddings rows byte for byte, the search rows to float32.
    emb = "SELECT model_id, text_hash, dim, vector FROM embeddings ORDER BY 1, 2"
    assert _rows(url, emb) == _rows(solo.database_url, emb)
    vec_sql = (
        "SELECT c.text_hash, s.embedding::text, s.model_key FROM search_chunks s"
        " JOIN chunks c ON c.id = s.chunk_id"
    )
    stored = {h: np.frombuffer(v, dtype="<f4") for _, h, _, v in _rows(url, emb)}
    copied = _rows(url, vec_sql)
    assert len(copied) == n_chunks
    for text_hash, literal, key in copied:
        assert key == f"{MODEL}#headings-1"
        vector = np.array(literal.strip("[]").split(","), dtype=np.float32)
        assert np.allclose(vector, stored[text_hash], atol=1e-6)
    assert _rows(url, _STATS) == [(n_chunks, n_chunks)]

    # Twice: nothing duplicated, everything found already there.
    with monkeypatch.context() as m:
        for name in ("load", "encode", "encode_query", "encode_bulk"):
            m.setattr(Embedder, name, _refuse)
        again = _upgrade(solo, url)
    assert (again.documents, again.chunks, again.already_there, again.audit_events) == (0, 0, 5, 0)
    assert not again.vector_index_built
    assert len(_rows(url, _CHUNK_SQL)) == n_chunks
    events = _rows(url, "SELECT action FROM audit_events")
    assert len(events) == solo_audit + 2 and events.count(("upgrade",)) == 2

    # A second home on the team database: answers with the same citations, searches
    # as the source did, and never embeds a passage.
    passages: list[int] = []
    real_bulk = Embedder.encode_bulk

    def counting_bulk(self: Embedder, texts: list[str], **kwargs: Any) -> Any:
        passages.append(len(texts))
        return real_bulk(self, texts, **kwargs)

    monkeypatch.setattr(Embedder, "encode_bulk", counting_bulk)
    async with Services(_settings(tmp_path / "team", url)) as team:
        await team.wait_ready()
        index = (await team.health()).search_index
        assert index is not None and index.loaded_from == "postgresql"
        assert index.chunks == index.vectors == n_chunks
        fill = await team.library.fill_vectors()
        assert fill is not None and fill.embedded == 0
        answer = await team.ask(question.question, use_cache=False)
        assert [(Path(c.source).name, c.page, c.start, c.end) for c in answer.citations] == [
            (Path(c.source).name, c.page, c.start, c.end) for c in solo_answer.citations
        ]
        assert Path(answer.citations[0].source).name == question.source_name
        for q in answerable:
            team_top = _top((await team.search(q.question, k=3))[0])
            assert team_top == solo_top[q.question], q.question
    assert passages == []


def _refuse(*_a: object, **_k: object) -> None:
    raise AssertionError("the upgrade ran the embedding model")


@pytest.mark.postgres
@pytest.mark.slow
async def test_an_interrupted_upgrade_resumes_and_a_merge_keeps_the_teams_version(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    corpus = tmp_path / "corpus"
    write_mini_corpus(corpus)
    solo = _settings(tmp_path / "solo", embed=False)
    async with Services(solo) as services:
        await services.ingest([corpus])
    n_chunks = len(_rows(solo.database_url, _CHUNK_SQL))
    url = postgres_server.new_database("resume")

    stop = threading.Event()

    def stop_after_first(p: UpgradeProgress) -> None:
        if p.documents_done:
            stop.set()

    cut = _upgrade(solo, url, batch_chunks=1, progress=stop_after_first, cancel=stop)
    assert cut.cancelled and cut.documents == 1
    assert _rows(url, _HNSW) == [(True, 0)]  # built again when the copy stopped
    # As if killed between storing a document and indexing it (its search rows are
    # gone) while the vector index was held back (dropped, its definition kept).
    engine = create_engine_for(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM search_chunks"))
        # The marker's text is never run (any member may write kb_meta): a statement
        # planted there must not execute when the index is built again.
        conn.execute(
            sa.text(
                "INSERT INTO kb_meta VALUES ('upgrade_vector_index',"
                " 'CREATE TABLE planted_by_a_member (x int)')"
            )
        )
        conn.execute(sa.text("DROP INDEX ix_search_chunks_embedding"))
    engine.dispose()

    rest = _upgrade(solo, url)
    assert rest.documents == 4 and rest.already_there == 1
    assert _rows(url, _HNSW) == [(True, 0)]
    assert _rows(url, "SELECT to_regclass('planted_by_a_member') IS NULL") == [(True,)]
    assert rest.indexed_leftovers == cut.chunks > 0
    assert rest.without_vectors == rest.chunks  # embedding was off in this home
    assert len(_rows(url, _CHUNK_SQL)) == n_chunks
    assert _rows(url, _STATS)[0][0] == n_chunks

    # Another desktop's knowledge base: one file changed at the same path, one new.
    (corpus / "facilities_notice.txt").write_text("The canteen moves to building C.\n")
    (corpus / "new_note.md").write_text("# Note\n\nThe osprey camera is on mast 4.\n")
    other = _settings(tmp_path / "other", embed=False)
    async with Services(other) as services:
        await services.ingest([corpus])
    merged = _upgrade(other, url)
    assert merged.documents == 1 and merged.already_there == 4
    assert [Path(p).name for p in merged.conflicts] == ["facilities_notice.txt"]
    paths = [Path(r[0]).name for r in _rows(url, _DOC_SQL)]
    assert sorted(paths) == sorted([*(p.name for p in corpus.iterdir())])
    notice = [r for r in _rows(url, _DOC_SQL) if r[0].endswith("facilities_notice.txt")]
    assert "canteen moves" not in notice[0][6]  # the team's version was kept


@pytest.mark.postgres
async def test_refusals_name_the_problem(tmp_path: Path, postgres_server: PostgresServer) -> None:
    empty = _settings(tmp_path / "empty", embed=False)
    target = postgres_server.new_database("refusals")
    with pytest.raises(UsageError, match="PostgreSQL"):
        _upgrade(empty, f"sqlite:///{tmp_path / 'team.db'}")
    with pytest.raises(UsageError, match="no documents"):
        _upgrade(empty, target)
    with pytest.raises(UsageError, match="already is that database"):
        upgrade_to_team(target, target, model_id=MODEL, retrieval=RetrievalSettings())

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Herons\n\nHerons nest in colonies near water.\n")
    solo = _settings(tmp_path / "solo", embed=False)
    async with Services(solo) as services:
        await services.ingest([corpus])

    # pgvector neither installed nor installable by this role: refused, nothing changed.
    postgres_server.execute("CREATE ROLE archivist_upgrade_plain LOGIN")
    postgres_server.execute('CREATE DATABASE "upgrade_plain" OWNER archivist_upgrade_plain')
    plain = f"postgresql://archivist_upgrade_plain@127.0.0.1:{postgres_server.port}/upgrade_plain"
    with pytest.raises(StorageError, match="CREATE EXTENSION vector"):
        _upgrade(solo, plain)
    assert _rows(team_url(plain), "SELECT to_regclass('documents')") == [(None,)]

    _upgrade(solo, target)  # as postgres, who owns the collection 'default'
    # A role without privileges on the team's tables: the database's reason, in a sentence.
    postgres_server.execute("CREATE ROLE archivist_upgrade_guest LOGIN")
    guest = target.replace("//postgres@", "//archivist_upgrade_guest@")
    with pytest.raises(StorageError, match=r"permission denied .*run the command again"):
        _upgrade(solo, guest)
    # With collections: a member who does not own the collection written to is told so
    # before anything is copied (row-level security would refuse every row).
    postgres_server.execute("CREATE ROLE archivist_upgrade_member LOGIN")
    engine = create_engine_for(target)
    with engine.begin() as conn:
        conn.execute(sa.text(member_privileges_sql("archivist_upgrade_member")))
    engine.dispose()
    member = target.replace("//postgres@", "//archivist_upgrade_member@")
    with pytest.raises(UsageError, match="collection 'default', which this role does not own"):
        _upgrade(solo, member)
    # Vectors of another embedding model in the team's index: refused, not mixed.
    engine = create_engine_for(target)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE search_chunks SET model_key = 'other-model#headings-1',"
                " embedding = array_fill(0.05, ARRAY[384])::vector"
            )
        )
    engine.dispose()
    with pytest.raises(StorageError, match="another embedding model"):
        _upgrade(solo, target)


@pytest.mark.postgres
async def test_a_member_upgrades_into_a_collection_of_their_own(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ospreys.md").write_text("# Ospreys\n\nOspreys dive feet first for fish.\n")
    solo = _settings(tmp_path / "solo", embed=False)
    async with Services(solo) as services:
        await services.ingest([corpus])
    target = postgres_server.new_database("members")
    for role in ("archivist_upgrade_ann", "archivist_upgrade_bob"):
        postgres_server.execute(f"CREATE ROLE {role} LOGIN")
    engine = create_engine_for(target)
    team.admin_init(engine, members=["archivist_upgrade_ann", "archivist_upgrade_bob"])
    engine.dispose()
    ann = target.replace("//postgres@", "//archivist_upgrade_ann@")
    bob = target.replace("//postgres@", "//archivist_upgrade_bob@")

    with pytest.raises(UsageError, match="--collection NAME"):  # 'default' is not hers
        _upgrade(solo, ann)
    report = _upgrade(solo, ann, collection="ann_notes")
    assert (report.collection, report.documents, report.chunks) == ("ann_notes", 1, 1)
    in_collection = (
        "SELECT c.name, count(*)::int FROM documents d"
        " JOIN collections c ON c.id = d.collection_id GROUP BY c.name"
    )
    assert _rows(target, in_collection) == [("ann_notes", 1)]
    assert _rows(ann, _STATS) == [(1, 0)]  # she reads it (search statistics included)
    assert _rows(bob, "SELECT count(*)::int FROM documents") == [(0,)]  # he does not
    # Bob's copy of the same file goes to his own collection (a path is unique per
    # collection), also when he may read Ann's: her copy is not his to skip.
    as_ann = create_engine_for(team_url(ann))
    team.grant(as_ann, "ann_notes", "archivist_upgrade_bob")
    as_ann.dispose()
    report = _upgrade(solo, bob, collection="bob_notes")
    assert (report.collection, report.documents, report.already_there) == ("bob_notes", 1, 0)
    assert sorted(_rows(target, in_collection)) == [("ann_notes", 1), ("bob_notes", 1)]
    assert _rows(bob, "SELECT count(*)::int FROM documents") == [(2,)]  # his and hers
    assert _rows(ann, "SELECT count(*)::int FROM documents") == [(1,)]  # hers only
    again = _upgrade(solo, bob, collection="bob_notes")
    assert (again.documents, again.already_there) == (0, 1)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHIVIST_DATABASE_URL", None)
    env.pop("ARCHIVIST_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=Path(__file__).resolve().parents[1],
    )


@pytest.mark.postgres
def test_the_upgrade_command(tmp_path: Path, postgres_server: PostgresServer) -> None:
    home = tmp_path / "home"
    _settings(home, embed=False)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "herons.md").write_text("# Herons\n\nHerons nest in colonies near water.\n")
    assert _cli(home, "ingest", str(corpus)).returncode == 0
    url = postgres_server.new_database("cli").replace("postgresql+psycopg://", "postgresql://")

    done = _cli(home, "upgrade", "--to", url)
    assert done.returncode == 0, done.stderr
    assert "Copied 1 documents (1 passages" in done.stdout
    assert "(collection default)" in done.stdout  # the migrating role owns it
    assert "1/1 documents" in done.stderr  # progress
    again = _cli(home, "upgrade", "--to", url, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["documents"], report["already_there"]) == (0, 1)

    wrong = _cli(home, "upgrade", "--to", f"sqlite:///{tmp_path / 'other.db'}")
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "needs a PostgreSQL database" in wrong.stderr


def test_team_url_takes_plain_postgresql_urls() -> None:
    assert team_url("postgresql://ann:pw@db/kb") == "postgresql+psycopg://ann:pw@db/kb"
    assert team_url("postgres://db/kb") == "postgresql+psycopg://db/kb"
    assert team_url("postgresql+psycopg://db/kb") == "postgresql+psycopg://db/kb"
    with pytest.raises(UsageError, match="names no database"):
        team_url("postgresql://db")
    with pytest.raises(UsageError, match="not a database URL"):
        team_url("not a url")
