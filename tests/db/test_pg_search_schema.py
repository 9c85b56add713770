"""Migration 0004 on a real PostgreSQL with pgvector: the shared search tables."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from core.config import RetrievalSettings
from core.db.engine import (
    MIGRATIONS_DIR,
    create_engine_for,
    head_revision,
    schema_revision,
    upgrade_schema,
)
from core.db.pg_schema import SEARCH_TABLES, has_search_schema
from core.retrieval.backend import open_search_backend
from core.retrieval.search import SearchIndex
from tests.support.postgres import PostgresServer


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_creates_the_search_tables_and_downgrade_removes_them(
    postgres_server: PostgresServer,
) -> None:
    engine = create_engine_for(postgres_server.new_database("schema"))
    try:
        upgrade_schema(engine)
        assert set(SEARCH_TABLES) <= _tables(engine)
        with engine.connect() as conn:
            assert has_search_schema(conn)
            assert (
                conn.execute(
                    sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).scalar()
                == "0.8.6"
            )
            indexes = {
                r.indexname: r.indexdef
                for r in conn.execute(
                    sa.text(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE tablename = 'search_chunks'"
                    )
                )
            }
        assert "hnsw" in indexes["ix_search_chunks_embedding"]
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        assert not set(SEARCH_TABLES) & _tables(engine)
        upgrade_schema(engine)
        assert set(SEARCH_TABLES) <= _tables(engine)
    finally:
        engine.dispose()


def test_statistics_follow_chunks_deleted_by_cascade(postgres_server: PostgresServer) -> None:
    """Re-ingesting deletes chunks in core.db.store, which never names a search table."""
    engine = create_engine_for(postgres_server.new_database("stats"))
    try:
        upgrade_schema(engine)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO documents (path, content_hash, size, mtime, kind, text,"
                    " ingested_at) VALUES ('/d', 'h', 1, 0, 'text', 'x', 0)"
                )
            )
            conn.execute(
                sa.text(
                    'INSERT INTO chunks (document_id, ordinal, text, start, "end", heading_path,'
                    " token_count, text_hash) VALUES (1, 0, 'a', 0, 1, '', 1, 'a'),"
                    " (1, 1, 'b', 1, 2, '', 1, 'b')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO search_chunks (chunk_id, document_id, n_terms, embedding)"
                    " VALUES (1, 1, 3, array_fill(0.5, ARRAY[384])::vector),"
                    " (2, 1, 2, NULL)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO search_terms VALUES ('osprey', 1, 2, 3), ('heron', 1, 1, 3),"
                    " ('osprey', 2, 1, 2)"
                )
            )
        stats = "SELECT n_chunks, n_vectors, total_terms FROM search_stats"
        df = "SELECT term, df FROM search_term_stats ORDER BY term"
        with engine.connect() as conn:
            assert conn.execute(sa.text(stats)).one() == (2, 1, 5)
            assert conn.execute(sa.text(df)).all() == [("heron", 1), ("osprey", 2)]
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM chunks WHERE id = 1"))
        with engine.connect() as conn:
            assert conn.execute(sa.text(stats)).one() == (1, 0, 2)
            assert conn.execute(sa.text(df)).all() == [("heron", 0), ("osprey", 1)]
    finally:
        engine.dispose()


def test_a_role_that_cannot_create_pgvector_keeps_the_embedded_index(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """pgvector needs a superuser to create: an ordinary owner upgrades without it."""
    postgres_server.execute("CREATE ROLE archivist_plain LOGIN")
    postgres_server.execute('CREATE DATABASE "plain_kb" OWNER archivist_plain')
    url = f"postgresql+psycopg://archivist_plain@127.0.0.1:{postgres_server.port}/plain_kb"
    engine = create_engine_for(url)
    try:
        upgrade_schema(engine)
        assert schema_revision(engine) == head_revision()
        assert not set(SEARCH_TABLES) & _tables(engine)
        index = open_search_backend(RetrievalSettings(), engine, tmp_path)
        assert isinstance(index, SearchIndex)
    finally:
        engine.dispose()
