"""Collections and row-level security in PostgreSQL (team mode); nothing on SQLite.

Every document belongs to one collection; a collection has an owner role and
grants to other roles (a grant to a group role reaches its members). PostgreSQL
itself decides which rows a connection sees, so a bug in Python cannot leak:

- ``collections``: readable by its owner and by roles granted it; only the owner
  creates, renames or drops it. ``collection_grants``: readable by the grantee
  and the grantor (the owner); only the owner grants and revokes.
- ``documents``, ``chunks``, ``search_chunks``, ``search_terms``,
  ``search_term_stats``, ``search_stats`` carry ``collection_id`` (denormalised
  below ``documents``: a per-row subquery on the postings would cost every
  keyword search; set by ``BEFORE INSERT`` triggers from the row above, so a
  row cannot claim another collection than its document's). Read: the
  collection is readable; write: the reader owns it. The set of
  readable ids is computed once per statement (an InitPlan), so the policies cost
  one ``= ANY`` per row.
- BM25 statistics are kept per collection (``search_term_stats`` and
  ``search_stats`` keyed by collection) under the same policies: a reader's
  document frequencies, chunk count and average length are sums over the
  collections they may read, so scores come from what they can read and no
  count reveals a collection they cannot.
- ``embeddings`` (shared by text hash across collections): readable where a
  readable chunk has that text; anyone may add one.
- ``audit_events`` get an ``actor`` (the role that wrote it): each role reads
  and prunes its own.

``FORCE ROW LEVEL SECURITY`` makes the policies bind the tables' owner too; only
superusers and ``BYPASSRLS`` roles see everything (PostgreSQL's rule). Foreign
key cascades run as the tables' owner without forced policies, so deleting a
document still removes its postings and statistics.

The policies follow ``current_user``: each person connects with their own role.
``MEMBERS_ROLE`` is the group ``archivist admin init`` grants table privileges
to; rows are still filtered by the policies.
"""

from __future__ import annotations

import sqlalchemy as sa

DEFAULT_COLLECTION = "default"
MEMBERS_ROLE = "archivist_members"
# Session setting naming the collection new documents go to (else DEFAULT_COLLECTION).
WRITE_SETTING = "archivist.collection"

# Tables whose rows belong to a collection, in dependency order.
SCOPED_TABLES = ("documents", "chunks")
SCOPED_SEARCH_TABLES = ("search_chunks", "search_terms", "search_term_stats", "search_stats")

_READABLE = "collection_id = ANY ((SELECT archivist_readable_collections())::integer[])"
_OWNED = "collection_id = ANY ((SELECT archivist_owned_collections())::integer[])"

_CORE_DDL = f"""
CREATE FUNCTION archivist_me() RETURNS oid LANGUAGE sql STABLE
    AS $$ SELECT oid FROM pg_roles WHERE rolname = current_user $$;

CREATE TABLE collections (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 120),
    owner oid NOT NULL DEFAULT archivist_me(),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE collection_grants (
    collection_id integer NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    role oid NOT NULL,
    granted_by oid NOT NULL DEFAULT archivist_me(),
    PRIMARY KEY (collection_id, role)
);

-- Readable: owned, or granted to a role whose privileges current_user has.
-- pg_has_role on a dropped role's oid is NULL: its grants stop counting.
-- PL/pgSQL, not SQL: its query plans are cached for the session, where a SQL
-- function's body was planned again in every statement whose policies call it
-- (measured: keyword search 15 ms -> 7 ms at 5,000 chunks).
CREATE FUNCTION archivist_readable_collections() RETURNS integer[] LANGUAGE plpgsql STABLE
    AS $$ BEGIN
        RETURN (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM collections);
    END $$;
CREATE FUNCTION archivist_owned_collections() RETURNS integer[] LANGUAGE plpgsql STABLE
    AS $$ BEGIN
        RETURN (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM collections
                WHERE owner = archivist_me());
    END $$;
CREATE FUNCTION archivist_write_collection() RETURNS integer LANGUAGE plpgsql STABLE
    AS $$ BEGIN
        RETURN (SELECT id FROM collections WHERE name = coalesce(
            nullif(current_setting('{WRITE_SETTING}', true), ''), '{DEFAULT_COLLECTION}'));
    END $$;

INSERT INTO collections (name) VALUES ('{DEFAULT_COLLECTION}');

ALTER TABLE collections ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE collection_grants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY read ON collections FOR SELECT USING (
    owner = archivist_me() OR EXISTS (
        SELECT 1 FROM collection_grants g WHERE g.collection_id = collections.id
        AND pg_has_role(current_user, g.role, 'USAGE')));
CREATE POLICY own_insert ON collections FOR INSERT WITH CHECK (owner = archivist_me());
CREATE POLICY own_update ON collections FOR UPDATE USING (owner = archivist_me())
    WITH CHECK (owner = archivist_me());
CREATE POLICY own_delete ON collections FOR DELETE USING (owner = archivist_me());
CREATE POLICY read ON collection_grants FOR SELECT
    USING (granted_by = archivist_me() OR pg_has_role(current_user, role, 'USAGE'));
CREATE POLICY own_insert ON collection_grants FOR INSERT WITH CHECK (
    granted_by = archivist_me() AND EXISTS (
        SELECT 1 FROM collections c WHERE c.id = collection_id AND c.owner = archivist_me()));
CREATE POLICY own_delete ON collection_grants FOR DELETE USING (
    EXISTS (SELECT 1 FROM collections c WHERE c.id = collection_id AND c.owner = archivist_me()));

ALTER TABLE documents ADD COLUMN collection_id integer REFERENCES collections (id);
UPDATE documents SET collection_id = (SELECT id FROM collections
    WHERE name = '{DEFAULT_COLLECTION}');
ALTER TABLE documents ALTER COLUMN collection_id SET NOT NULL,
    ALTER COLUMN collection_id SET DEFAULT archivist_write_collection();
CREATE INDEX ix_documents_collection_id ON documents (collection_id);
-- A path is unique per collection: a file on a shared drive may be in two.
ALTER TABLE documents DROP CONSTRAINT uq_documents_path,
    ADD CONSTRAINT uq_documents_collection_id_path UNIQUE (collection_id, path);
CREATE INDEX ix_documents_path ON documents (path);

ALTER TABLE chunks ADD COLUMN collection_id integer;
UPDATE chunks c SET collection_id = d.collection_id FROM documents d WHERE d.id = c.document_id;
ALTER TABLE chunks ALTER COLUMN collection_id SET NOT NULL;
CREATE INDEX ix_chunks_text_hash ON chunks (text_hash);

CREATE FUNCTION chunks_collection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.collection_id := (SELECT collection_id FROM documents WHERE id = NEW.document_id);
    RETURN NEW;
END $$;
-- Always from the document (also when given): a chunk of someone else's document
-- then carries their collection, and the write policy refuses it.
CREATE TRIGGER chunks_collection BEFORE INSERT OR UPDATE OF document_id, collection_id
    ON chunks FOR EACH ROW EXECUTE FUNCTION chunks_collection();

ALTER TABLE audit_events ADD COLUMN actor name NOT NULL DEFAULT current_user;
"""

_CORE_POLICIES = """
ALTER TABLE documents ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE chunks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE embeddings ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY read ON embeddings FOR SELECT USING (
    EXISTS (SELECT 1 FROM chunks c WHERE c.text_hash = embeddings.text_hash));
CREATE POLICY add ON embeddings FOR INSERT WITH CHECK (true);
CREATE POLICY own ON audit_events USING (actor = current_user)
    WITH CHECK (actor = current_user);
"""


def _scoped(table: str) -> str:
    """Read where the collection is readable; insert, update, delete where it is owned."""
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY read ON {table} FOR SELECT USING ({_READABLE});\n"
        f"CREATE POLICY own_insert ON {table} FOR INSERT WITH CHECK ({_OWNED});\n"
        f"CREATE POLICY own_update ON {table} FOR UPDATE USING ({_OWNED})"
        f" WITH CHECK ({_OWNED});\n"
        f"CREATE POLICY own_delete ON {table} FOR DELETE USING ({_OWNED});\n"
    )


# The search tables (core.db.pg_schema) keyed by collection: the column, its
# triggers, the statistics per collection, then the policies.
_SEARCH_DDL = """
ALTER TABLE search_chunks ADD COLUMN collection_id integer;
UPDATE search_chunks s SET collection_id = c.collection_id FROM chunks c WHERE c.id = s.chunk_id;
ALTER TABLE search_chunks ALTER COLUMN collection_id SET NOT NULL;

ALTER TABLE search_terms ADD COLUMN collection_id integer;
UPDATE search_terms t SET collection_id = s.collection_id FROM search_chunks s
    WHERE s.chunk_id = t.chunk_id;
ALTER TABLE search_terms ALTER COLUMN collection_id SET NOT NULL;
-- The postings stay index-only for keyword search: the policy's column is included.
ALTER TABLE search_terms DROP CONSTRAINT pk_search_terms;
ALTER TABLE search_terms ADD CONSTRAINT pk_search_terms PRIMARY KEY (term, chunk_id)
    INCLUDE (tf, n_terms, collection_id);

CREATE FUNCTION search_chunks_collection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.collection_id := (SELECT collection_id FROM chunks WHERE id = NEW.chunk_id);
    RETURN NEW;
END $$;
-- Always from the chunk, as above; postings take theirs from search_chunks (given
-- by PgSearchIndex, looked up when left out: one lookup per chunk, not per posting).
CREATE TRIGGER search_chunks_collection
    BEFORE INSERT OR UPDATE OF chunk_id, collection_id ON search_chunks
    FOR EACH ROW EXECUTE FUNCTION search_chunks_collection();
CREATE FUNCTION search_terms_collection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.collection_id := (SELECT collection_id FROM search_chunks WHERE chunk_id = NEW.chunk_id);
    RETURN NEW;
END $$;
CREATE TRIGGER search_terms_collection BEFORE INSERT ON search_terms FOR EACH ROW
    WHEN (NEW.collection_id IS NULL) EXECUTE FUNCTION search_terms_collection();

-- Statistics per collection, recomputed from the postings.
DROP TABLE search_term_stats;
CREATE TABLE search_term_stats (
    term text NOT NULL,
    collection_id integer NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    df integer NOT NULL,
    PRIMARY KEY (term, collection_id) INCLUDE (df)
);
INSERT INTO search_term_stats (term, collection_id, df)
    SELECT term, collection_id, count(*) FROM search_terms GROUP BY term, collection_id;
DROP TABLE search_stats;
CREATE TABLE search_stats (
    collection_id integer PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,
    n_chunks bigint NOT NULL,
    n_vectors bigint NOT NULL,
    total_terms bigint NOT NULL
);
INSERT INTO search_stats (collection_id, n_chunks, n_vectors, total_terms)
    SELECT collection_id, count(*), count(embedding), coalesce(sum(n_terms), 0)
    FROM search_chunks GROUP BY collection_id;

CREATE OR REPLACE FUNCTION search_terms_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_term_stats AS s (term, collection_id, df)
        SELECT term, collection_id, count(*) FROM added GROUP BY term, collection_id
        ORDER BY term, collection_id
        ON CONFLICT (term, collection_id) DO UPDATE SET df = s.df + excluded.df;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_terms_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_term_stats AS s SET df = s.df - r.n
        FROM (SELECT term, collection_id, count(*) AS n FROM removed
              GROUP BY term, collection_id ORDER BY term, collection_id) AS r
        WHERE s.term = r.term AND s.collection_id = r.collection_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_chunks_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_stats AS s (collection_id, n_chunks, n_vectors, total_terms)
        SELECT collection_id, count(*), count(embedding), coalesce(sum(n_terms), 0)
        FROM added GROUP BY collection_id ORDER BY collection_id
        ON CONFLICT (collection_id) DO UPDATE SET
            n_chunks = s.n_chunks + excluded.n_chunks,
            n_vectors = s.n_vectors + excluded.n_vectors,
            total_terms = s.total_terms + excluded.total_terms;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_chunks_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_stats AS s SET
        n_chunks = s.n_chunks - r.n, n_vectors = s.n_vectors - r.v,
        total_terms = s.total_terms - r.t
        FROM (SELECT collection_id, count(*) AS n, count(embedding) AS v,
              coalesce(sum(n_terms), 0) AS t FROM removed GROUP BY collection_id) AS r
        WHERE s.collection_id = r.collection_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_chunks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_stats AS s SET n_vectors = s.n_vectors + d.v
        FROM (SELECT collection_id, sum(v) AS v FROM (
                SELECT collection_id, count(embedding) AS v FROM added GROUP BY collection_id
                UNION ALL
                SELECT collection_id, -count(embedding) FROM removed GROUP BY collection_id
              ) AS x GROUP BY collection_id) AS d
        WHERE s.collection_id = d.collection_id AND d.v <> 0;
    RETURN NULL;
END $$;
"""

_SEARCH_UNDO = """
DROP FUNCTION IF EXISTS search_chunks_collection(), search_terms_collection();
"""


def _policies(tables: tuple[str, ...]) -> str:
    return "".join(_scoped(t) for t in tables)


# Functions run as the caller and resolve table names through the caller's
# search_path, where the session's temporary schema comes first unless named: a
# member's own TEMP TABLE collections would otherwise decide what the policies
# let them read and write. Each function gets this schema, then pg_temp, last.
_CORE_FUNCTIONS = (
    "archivist_me()",
    "archivist_readable_collections()",
    "archivist_owned_collections()",
    "archivist_write_collection()",
    "chunks_collection()",
)
_SEARCH_FUNCTIONS = (
    "search_chunks_collection()",
    "search_terms_collection()",
    "search_terms_added()",
    "search_terms_removed()",
    "search_chunks_added()",
    "search_chunks_removed()",
    "search_chunks_changed()",
)


def _pin_search_path(conn: sa.Connection, functions: tuple[str, ...]) -> None:
    schema = conn.execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    for function in functions:
        conn.exec_driver_sql(f"ALTER FUNCTION {function} SET search_path = {schema}, pg_temp")


def has_access_schema(conn: sa.Connection) -> bool:
    """Collections and their policies are there (migration 0005 ran on PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(sa.text("SELECT to_regclass('collection_grants') IS NOT NULL")).scalar()
    return bool(found)


def search_tables_scoped(conn: sa.Connection) -> bool:
    """The search tables carry ``collection_id`` (and their policies)."""
    found = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'search_terms' AND column_name = 'collection_id'"
            " AND table_schema = current_schema())"
        )
    ).scalar()
    return bool(found)


def create_access_schema(conn: sa.Connection, *, search_tables: bool) -> None:
    """Collections, the ``collection_id`` columns and every policy (migration 0005)."""
    conn.exec_driver_sql(_CORE_DDL)
    _pin_search_path(conn, _CORE_FUNCTIONS)
    conn.exec_driver_sql(_policies(SCOPED_TABLES) + _CORE_POLICIES)
    if search_tables:
        scope_search_tables(conn)


def scope_search_tables(conn: sa.Connection) -> None:
    """Key the search tables (``core.db.pg_schema``) by collection, with their policies.

    Run by migration 0005 where the search tables exist, and by ``archivist admin
    init`` after it creates them in a database upgraded without pgvector.
    """
    conn.exec_driver_sql(_SEARCH_DDL)
    _pin_search_path(conn, _SEARCH_FUNCTIONS)
    conn.exec_driver_sql(_policies(SCOPED_SEARCH_TABLES))


def drop_access_schema(conn: sa.Connection, *, search_tables: bool) -> None:
    """Undo ``create_access_schema`` (the search tables go back to one global count)."""
    for table in (*SCOPED_TABLES, "embeddings", "audit_events"):
        conn.exec_driver_sql(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        for (policy,) in conn.exec_driver_sql(
            f"SELECT policyname FROM pg_policies WHERE tablename = '{table}'"
        ).all():
            conn.exec_driver_sql(f"DROP POLICY {policy} ON {table}")
    conn.exec_driver_sql("ALTER TABLE audit_events DROP COLUMN actor")
    if search_tables:
        # The simplest faithful undo: the search tables as 0004 made them, empty;
        # PgSearchIndex.load() re-indexes every chunk from the database.
        from core.db.pg_schema import create_search_schema, drop_search_schema

        drop_search_schema(conn)
        conn.exec_driver_sql(_SEARCH_UNDO)
    conn.exec_driver_sql(
        "DROP INDEX ix_documents_path;"
        "ALTER TABLE documents DROP CONSTRAINT uq_documents_collection_id_path,"
        " ADD CONSTRAINT uq_documents_path UNIQUE (path);"
        "DROP TRIGGER chunks_collection ON chunks; DROP FUNCTION chunks_collection();"
        "DROP INDEX ix_chunks_text_hash;"
        "ALTER TABLE chunks DROP COLUMN collection_id;"
        "ALTER TABLE documents DROP COLUMN collection_id;"
        "DROP TABLE collection_grants, collections;"
        "DROP FUNCTION archivist_write_collection(), archivist_owned_collections(),"
        " archivist_readable_collections(), archivist_me();"
    )
    if search_tables:
        create_search_schema(conn)


def member_privileges_sql(role: str) -> str:
    """What a member role needs on Archivist's tables; rows stay filtered by the policies.

    ``role`` must already be quoted (``quote_ident``) by the caller.
    """
    return (
        f"GRANT USAGE ON SCHEMA public TO {role};\n"
        f"GRANT SELECT ON alembic_version TO {role};\n"
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public"
        f" TO {role};\n"
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role};\n"
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};\n"
    )
