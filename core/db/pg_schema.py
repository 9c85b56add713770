"""The PostgreSQL search schema: one row per searchable chunk, postings, statistics.

Only on PostgreSQL with pgvector (``core.retrieval.pg_search`` queries it):

- ``search_chunks``: per chunk its document, its analysed length and its
  embedding (``vector(384)``, HNSW on inner product: the vectors are
  L2-normalised, so inner product is cosine). HNSW over exact search by
  measurement (tests/bench/pg_scale.py, under load): exact vector search took
  90 ms at 100K chunks and 822 ms at 1M at the median; HNSW (m 16, ef_construction
  64, ef_search 100) kept 99.7 % / 84.7 % of the exact top 50 there, and ranked
  the real question sets exactly as exact search did (tests/bench/pg_keyword_eval.py);
- ``search_terms``: BM25 postings (term, chunk, tf, chunk length) from the app's
  own analyzer (``core.retrieval.text.Analyzer``), so keyword search in SQL reads
  documents as the embedded index does. No full-text (``tsvector``) column: ranked
  by ``ts_rank_cd`` it scored far below BM25 on both question sets
  (tests/bench/pg_keyword_eval.py);
- ``search_term_stats`` (document frequency per term) and ``search_stats`` (one
  row: chunks, vectors, total length), kept right by statement-level triggers with
  transition tables, also when a chunk disappears through ``ON DELETE CASCADE``
  from ``chunks`` (re-ingesting or deleting a document never touches this module).

Every row hangs off ``chunks`` by foreign key, so a later ``collection`` column on
``documents`` (and row-level security policies keyed on it) reaches these rows by
the join the queries already make; ``search_chunks.document_id`` is there for that
join.
"""

from __future__ import annotations

import sqlalchemy as sa

DIM = 384  # all-MiniLM-L6-v2; another dimension needs a migration

SEARCH_TABLES = ("search_terms", "search_term_stats", "search_chunks", "search_stats")

VECTOR_INDEX = "ix_search_chunks_embedding"
# The HNSW index as the schema creates it; ``core.upgrade`` builds it again from
# here (never from text stored in the database) after a copy that held it back.
VECTOR_INDEX_DDL = (
    f"CREATE INDEX IF NOT EXISTS {VECTOR_INDEX} ON search_chunks "
    "USING hnsw (embedding vector_ip_ops)"
)

_DDL = f"""
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE search_chunks (
    chunk_id integer PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    document_id integer NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    n_terms integer NOT NULL,
    embedding vector({DIM}),
    model_key varchar(160)
);
CREATE INDEX ix_search_chunks_document_id ON search_chunks (document_id);
{VECTOR_INDEX_DDL};

CREATE TABLE search_terms (
    term text NOT NULL,
    chunk_id integer NOT NULL REFERENCES search_chunks (chunk_id) ON DELETE CASCADE,
    tf integer NOT NULL,
    n_terms integer NOT NULL,
    CONSTRAINT pk_search_terms PRIMARY KEY (term, chunk_id) INCLUDE (tf, n_terms)
);
CREATE INDEX ix_search_terms_chunk_id ON search_terms (chunk_id);

CREATE TABLE search_term_stats (
    term text PRIMARY KEY,
    df integer NOT NULL
);

CREATE TABLE search_stats (
    id integer PRIMARY KEY CHECK (id = 1),
    n_chunks bigint NOT NULL,
    n_vectors bigint NOT NULL,
    total_terms bigint NOT NULL
);
INSERT INTO search_stats VALUES (1, 0, 0, 0);

CREATE FUNCTION search_terms_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_term_stats AS s (term, df)
        SELECT term, count(*) FROM added GROUP BY term ORDER BY term
        ON CONFLICT (term) DO UPDATE SET df = s.df + excluded.df;
    RETURN NULL;
END $$;

CREATE FUNCTION search_terms_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_term_stats AS s SET df = s.df - r.n
        FROM (SELECT term, count(*) AS n FROM removed GROUP BY term ORDER BY term) AS r
        WHERE s.term = r.term;
    RETURN NULL;
END $$;

CREATE FUNCTION search_chunks_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_stats SET
        n_chunks = n_chunks + (SELECT count(*) FROM added),
        n_vectors = n_vectors + (SELECT count(embedding) FROM added),
        total_terms = total_terms + (SELECT coalesce(sum(n_terms), 0) FROM added)
        WHERE id = 1;
    RETURN NULL;
END $$;

CREATE FUNCTION search_chunks_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_stats SET
        n_chunks = n_chunks - (SELECT count(*) FROM removed),
        n_vectors = n_vectors - (SELECT count(embedding) FROM removed),
        total_terms = total_terms - (SELECT coalesce(sum(n_terms), 0) FROM removed)
        WHERE id = 1;
    RETURN NULL;
END $$;

CREATE FUNCTION search_chunks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_stats SET
        n_vectors = n_vectors
            + (SELECT count(embedding) FROM added) - (SELECT count(embedding) FROM removed)
        WHERE id = 1;
    RETURN NULL;
END $$;

CREATE TRIGGER search_terms_added AFTER INSERT ON search_terms
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION search_terms_added();
CREATE TRIGGER search_terms_removed AFTER DELETE ON search_terms
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION search_terms_removed();
CREATE TRIGGER search_chunks_added AFTER INSERT ON search_chunks
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION search_chunks_added();
CREATE TRIGGER search_chunks_removed AFTER DELETE ON search_chunks
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION search_chunks_removed();
CREATE TRIGGER search_chunks_changed AFTER UPDATE ON search_chunks
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION search_chunks_changed();
"""

_DROP = """
DROP TABLE IF EXISTS search_terms, search_term_stats, search_chunks, search_stats;
DROP FUNCTION IF EXISTS search_terms_added(), search_terms_removed(),
    search_chunks_added(), search_chunks_removed(), search_chunks_changed();
"""


def vector_available(conn: sa.Connection) -> bool:
    """pgvector is installed in this database, or can be by this role.

    ``CREATE EXTENSION vector`` needs a superuser (pgvector is not a trusted
    extension): for any other role the extension must already be there.
    """
    found = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"
            " OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
            " AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))"
        )
    ).scalar()
    return bool(found)


def has_search_schema(conn: sa.Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(sa.text("SELECT to_regclass('search_stats') IS NOT NULL")).scalar()
    return bool(found)


def create_search_schema(conn: sa.Connection) -> None:
    """The search tables; keyed by collection where collections exist (team mode)."""
    from core.db.pg_access import has_access_schema, scope_search_tables

    conn.exec_driver_sql(_DDL)
    if has_access_schema(conn):
        scope_search_tables(conn)


def drop_search_schema(conn: sa.Connection) -> None:
    conn.exec_driver_sql(_DROP)
