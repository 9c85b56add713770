"""Migration 0005 on a real PostgreSQL: collections, and row-level security as the wall.

Two login roles without superuser rights write and read through plain SQL and
through ``PgSearchIndex``; what a role may not read is invisible to it whatever
the query.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.db.pg_access import MEMBERS_ROLE, WRITE_SETTING, member_privileges_sql
from core.retrieval.pg_search import PgSearchIndex
from core.types import ChunkDraft, ExtractedDocument, IndexDelta
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

SCOPED = (
    "documents",
    "chunks",
    "embeddings",
    "search_chunks",
    "search_terms",
    "search_term_stats",
    "search_stats",
    "collections",
    "collection_grants",
)


@dataclass
class Team:
    admin: sa.Engine
    a: sa.Engine
    b: sa.Engine
    role_a: str
    role_b: str


def _engine_as(url: str, role: str, collection: str | None = None) -> sa.Engine:
    engine = create_engine_for(url.replace("postgres@", f"{role}@", 1))
    if collection is not None:

        @sa.event.listens_for(engine, "connect")
        def _collection(dbapi: object, _record: object) -> None:
            cur = dbapi.cursor()  # type: ignore[attr-defined]
            cur.execute("SELECT set_config(%s, %s, false)", (WRITE_SETTING, collection))
            cur.close()
            dbapi.commit()  # type: ignore[attr-defined]

    return engine


@pytest.fixture
def team(postgres_server: PostgresServer) -> Iterator[Team]:
    url = postgres_server.new_database("access")
    suffix = uuid.uuid4().hex[:8]
    role_a, role_b = f"alice_{suffix}", f"bob_{suffix}"
    admin = create_engine_for(url)
    upgrade_schema(admin)
    with admin.begin() as conn:
        conn.exec_driver_sql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            f"'{MEMBERS_ROLE}') THEN CREATE ROLE {MEMBERS_ROLE} NOLOGIN; END IF; END $$"
        )
        conn.exec_driver_sql(member_privileges_sql(MEMBERS_ROLE))
    for role in (role_a, role_b):
        postgres_server.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER IN ROLE {MEMBERS_ROLE}")
    a = _engine_as(url, role_a, "eng")
    b = _engine_as(url, role_b)
    try:
        yield Team(admin, a, b, role_a, role_b)
    finally:
        for engine in (a, b, admin):
            engine.dispose()


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in SCOPED
        }


def _ingest(engine: sa.Engine, index: PgSearchIndex, path: str, texts: list[str]) -> int:
    text = "\n\n".join(texts)
    drafts = []
    pos = 0
    for i, t in enumerate(texts):
        drafts.append(ChunkDraft(i, t, pos, pos + len(t), None, (), len(t.split())))
        pos += len(t) + 2
    doc = ExtractedDocument(text=text, kind="text", title=path)
    vectors = np.random.default_rng(7).normal(size=(len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with engine.begin() as conn:
        doc_id, new_ids, _ = store.write_document(
            conn,
            path=path,
            content_hash=uuid.uuid4().hex,
            size=len(text),
            mtime=0.0,
            doc=doc,
            drafts=drafts,
            existing_id=None,
        )
        store.store_embeddings(
            conn,
            index.model_id,
            {store.text_hash(t): v for t, v in zip(texts, vectors, strict=True)},
        )
        added = store.chunks_by_ids(conn, new_ids)
    index.apply(IndexDelta(added=tuple(added[i] for i in new_ids), vectors=vectors))
    return doc_id


ALICE_TEXTS = [
    "The osprey migration report lists nesting sites along the estuary.",
    "Heron counts fell sharply after the winter storms in the marsh.",
    "Budget for the osprey cameras was approved by the committee.",
]


def _index(engine: sa.Engine) -> PgSearchIndex:
    index = PgSearchIndex(RetrievalSettings())
    index.load(engine, "all-MiniLM-L6-v2")
    return index


def _create_collection(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO collections (name) VALUES (:n)"), {"n": name})


def _grant(engine: sa.Engine, name: str, role: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO collection_grants (collection_id, role) SELECT id,"
                " (SELECT oid FROM pg_roles WHERE rolname = :r) FROM collections WHERE name = :n"
            ),
            {"n": name, "r": role},
        )


def test_a_role_without_grants_reads_nothing_by_plain_sql(team: Team) -> None:
    _create_collection(team.a, "eng")
    index_a = _index(team.a)
    _ingest(team.a, index_a, "/alice/birds.md", ALICE_TEXTS)
    mine = _counts(team.a)
    assert mine["documents"] == 1 and mine["chunks"] == 3 and mine["search_terms"] > 0
    assert mine["embeddings"] == 3 and mine["search_stats"] == 1
    assert _counts(team.b) == dict.fromkeys(SCOPED, 0)
    # Nor through the search index: no hits, no statistics, no known words.
    index_b = _index(team.b)
    assert index_b.search("osprey estuary", None, k=5) == []
    vec = np.ones(384, dtype=np.float32) / np.sqrt(384)
    assert index_b.search("osprey", vec, k=5) == []
    assert index_b.size == 0 and index_b.vector_count == 0
    assert index_b.unknown_words("osprey heron") == ["osprey", "heron"]
    assert index_a.unknown_words("osprey heron") == []
    # The superuser (who ran the migration) sees everything: the rows are there.
    assert _counts(team.admin)["chunks"] == 3


def test_a_grant_shows_a_collection_and_a_revoke_hides_it_again(team: Team) -> None:
    _create_collection(team.a, "eng")
    index_a = _index(team.a)
    _ingest(team.a, index_a, "/alice/birds.md", ALICE_TEXTS)
    index_b = _index(team.b)
    _grant(team.a, "eng", team.role_b)
    hits_b = index_b.search("osprey estuary", None, k=5)
    hits_a = index_a.search("osprey estuary", None, k=5)
    assert hits_b and [(h.chunk_id, h.bm25_score) for h in hits_b] == [
        (h.chunk_id, h.bm25_score) for h in hits_a
    ]
    assert _counts(team.b)["chunks"] == 3
    with team.b.begin() as conn:
        conn.execute(sa.text("DELETE FROM documents"))  # not the owner: nothing happens
        conn.execute(sa.text("UPDATE chunks SET text = 'x'"))
    assert _counts(team.a)["chunks"] == 3
    with (
        pytest.raises(sa.exc.ProgrammingError, match="row-level security"),
        team.b.begin() as conn,
    ):
        conn.execute(
            sa.text(
                "INSERT INTO documents (path, content_hash, size, mtime, kind, text,"
                " ingested_at, collection_id) SELECT '/bob/x', 'h', 1, 0, 'text', 'x', 0, id"
                " FROM collections WHERE name = 'eng'"
            )
        )
    with team.b.begin() as conn:  # only the owner revokes
        conn.execute(sa.text("DELETE FROM collection_grants"))
    assert index_b.search("osprey estuary", None, k=5)
    with team.a.begin() as conn:
        conn.execute(sa.text("DELETE FROM collection_grants"))
    assert index_b.search("osprey estuary", None, k=5) == []
    assert _counts(team.b) == dict.fromkeys(SCOPED, 0)


def test_scores_use_the_statistics_of_what_the_reader_may_read(team: Team) -> None:
    """Another collection's documents change neither a reader's counts nor their scores."""
    _create_collection(team.a, "eng")
    index_a = _index(team.a)
    _ingest(team.a, index_a, "/alice/birds.md", ALICE_TEXTS)
    _grant(team.a, "eng", team.role_b)
    index_b = _index(team.b)
    before = [(h.chunk_id, h.bm25_score) for h in index_b.search("osprey", None, k=5)]
    _create_collection(team.a, "private")
    a_private = _engine_as(
        str(team.a.url.render_as_string(hide_password=False)), team.role_a, "private"
    )
    try:
        _ingest(a_private, index_a, "/alice/secret.md", ["osprey osprey osprey plans"] * 4)
    finally:
        a_private.dispose()
    assert [(h.chunk_id, h.bm25_score) for h in index_b.search("osprey", None, k=5)] == before
    assert index_b.size == 3
    assert index_a.size == 7  # Alice reads both of hers
    assert len(index_a.search("osprey", None, k=10)) == 6


def test_deleting_a_document_keeps_the_owners_statistics_right(team: Team) -> None:
    _create_collection(team.a, "eng")
    index_a = _index(team.a)
    doc_id = _ingest(team.a, index_a, "/alice/birds.md", ALICE_TEXTS)
    with team.a.begin() as conn:
        store.delete_document(conn, doc_id)
    with team.a.connect() as conn:
        assert conn.execute(
            sa.text("SELECT n_chunks, n_vectors, total_terms FROM search_stats")
        ).one() == (0, 0, 0)
        assert (
            conn.execute(sa.text("SELECT count(*) FROM search_term_stats WHERE df <> 0")).scalar()
            == 0
        )
        assert conn.execute(sa.text("SELECT count(*) FROM search_terms")).scalar() == 0
    assert index_a.search("osprey", None, k=5) == []


def test_audit_events_are_each_roles_own(team: Team) -> None:
    for engine, question in ((team.a, "alpha?"), (team.b, "beta?")):
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events (ts, day, action, outcome, question)"
                    " VALUES (0, 0, 'ask', 'ok', :q)"
                ),
                {"q": question},
            )
    for engine, question in ((team.a, "alpha?"), (team.b, "beta?")):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT question FROM audit_events")).scalars().all() == [
                question
            ]


def test_a_grant_to_a_group_role_reaches_its_members(
    team: Team, postgres_server: PostgresServer
) -> None:
    group = f"readers_{uuid.uuid4().hex[:8]}"
    postgres_server.execute(f"CREATE ROLE {group} NOLOGIN")
    _create_collection(team.a, "eng")
    _ingest(team.a, _index(team.a), "/alice/birds.md", ALICE_TEXTS)
    _grant(team.a, "eng", group)
    assert _counts(team.b)["chunks"] == 0
    postgres_server.execute(f"GRANT {group} TO {team.role_b}")
    assert _counts(team.b)["chunks"] == 3
    postgres_server.execute(f"REVOKE {group} FROM {team.role_b}")
    assert _counts(team.b)["chunks"] == 0
    postgres_server.execute(f"DROP OWNED BY {group}; DROP ROLE {group}")
    # A dropped grantee's grant row stays but reaches no one (and breaks nothing).
    assert _counts(team.a)["collection_grants"] == 1
    assert _counts(team.b)["chunks"] == 0


def test_a_reader_leaves_others_unscanned_chunks_alone(team: Team) -> None:
    """Bob can read Alice's chunks but not write their flags: he must not pick them up."""
    _create_collection(team.a, "eng")
    _ingest(team.a, _index(team.a), "/alice/birds.md", ALICE_TEXTS)
    _grant(team.a, "eng", team.role_b)
    with team.a.begin() as conn:
        conn.execute(sa.text("UPDATE chunks SET injection_score = NULL"))
    with team.b.connect() as conn:
        assert store.unscanned_chunks(conn) == []
    with team.a.connect() as conn:
        assert len(store.unscanned_chunks(conn)) == 3


def test_a_temporary_table_cannot_stand_in_for_the_collections(team: Team) -> None:
    """Functions the policies call resolve their tables in the schema, never pg_temp.

    A session's temporary tables come first in name lookup unless search_path says
    otherwise; a reader's own temporary ``collections`` listing every id must not
    open the other collections to reads or writes.
    """
    _create_collection(team.a, "eng")
    _ingest(team.a, _index(team.a), "/alice/birds.md", ALICE_TEXTS)
    with team.admin.connect() as conn:
        eng = conn.execute(sa.text("SELECT id FROM collections WHERE name = 'eng'")).scalar_one()
    with team.b.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TEMP TABLE collections AS SELECT CAST(:id AS integer) AS id,"
                " archivist_me() AS owner, 'eng'::text AS name"
            ),
            {"id": eng},
        )
        conn.execute(sa.text("CREATE TEMP TABLE pg_roles AS SELECT * FROM pg_catalog.pg_roles"))
        assert conn.execute(sa.text("SELECT count(*) FROM chunks")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM public.documents")).scalar() == 0
        assert conn.execute(sa.text("SELECT archivist_readable_collections()")).scalar() == []
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            conn.execute(
                sa.text(
                    "INSERT INTO documents (path, content_hash, size, mtime, kind, text,"
                    " ingested_at, collection_id) VALUES ('/bob/x', 'h', 1, 0, 'text', 'x', 0,"
                    " :id)"
                ),
                {"id": eng},
            )


def test_a_chunk_takes_its_documents_collection_whatever_the_writer_says(team: Team) -> None:
    """Bob cannot hang a chunk of his collection onto Alice's document (nor index it)."""
    _create_collection(team.a, "eng")
    doc_id = _ingest(team.a, _index(team.a), "/alice/birds.md", ALICE_TEXTS)
    _create_collection(team.b, "bobs")
    with team.admin.connect() as conn:
        bobs = conn.execute(sa.text("SELECT id FROM collections WHERE name = 'bobs'")).scalar_one()
    with (
        pytest.raises(sa.exc.ProgrammingError, match="row-level security"),
        team.b.begin() as conn,
    ):
        conn.execute(
            sa.text(
                'INSERT INTO chunks (document_id, ordinal, text, start, "end", heading_path,'
                " token_count, text_hash, collection_id) VALUES (:d, 9, 'x', 0, 1, '', 1, 'x', :c)"
            ),
            {"d": doc_id, "c": bobs},
        )
    with team.a.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chunks")).scalar() == 3
