"""Team mode: set-up, collections, grants, and what the reader may read.

A thin typed layer over the tables and policies of ``core.db.pg_access``:
PostgreSQL enforces who reads what; these functions only give clear errors
before it refuses (not a PostgreSQL database, no such role, not the owner) and
say what there is. Every function blocks: run it in a worker thread.

Usage::

    admin_init(engine, members=["alice", "bob"])       # once, as a role that may create
    use_collection(engine, "eng")                        # as alice: her later ingests go there
    grant(engine, "eng", "bob")                          # as alice
    [info] = list_collections(engine)                    # as bob: eng, owned by alice
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

from core.db.engine import create_engine_for, schema_revision, upgrade_schema
from core.db.pg_access import (
    DEFAULT_COLLECTION,
    MEMBERS_ROLE,
    WRITE_SETTING,
    has_access_schema,
    member_privileges_sql,
)
from core.db.pg_schema import create_search_schema, has_search_schema
from core.errors import UsageError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

NOT_TEAM = (
    "Collections need a team database: set ARCHIVIST_DATABASE_URL to a PostgreSQL "
    "database and run 'archivist admin init' there once"
)


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    owner: str  # role name ("" for a role dropped since)
    mine: bool
    documents: int
    readers: tuple[str, ...]  # roles granted it (all of them for its owner; else yours)


@dataclass(frozen=True, slots=True)
class InitReport:
    revision: str
    search_tables: bool  # the shared search index is there
    members_role: str
    members: tuple[str, ...]


def with_engine(database_url: str, body: Callable[[sa.Engine], _T]) -> _T:
    """``body(engine)`` on a short-lived engine: the command line's team commands,
    which need no models, caches or index (``Services`` owns the app's engine)."""
    engine = create_engine_for(database_url)
    try:
        return body(engine)
    finally:
        engine.dispose()


def _require_postgres(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise UsageError(f"{NOT_TEAM} (this one is {engine.dialect.name}).")


def is_team_database(engine: sa.Engine) -> bool:
    """Collections and their row-level security are there (PostgreSQL after 0005)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return has_access_schema(conn)


def _require_team(conn: sa.Connection) -> None:
    if not has_access_schema(conn):
        raise UsageError(f"{NOT_TEAM}.")


def _role_oid(conn: sa.Connection, role: str) -> int:
    oid = conn.execute(
        sa.text("SELECT oid FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).scalar_one_or_none()
    if oid is None:
        raise UsageError(
            f"There is no PostgreSQL role {role!r} (create it first: CREATE ROLE {role} LOGIN)."
        )
    return int(oid)


def _quote(conn: sa.Connection, name: str) -> str:
    quoted: str = conn.execute(sa.text("SELECT quote_ident(:n)"), {"n": name}).scalar_one()
    return quoted


def admin_init(engine: sa.Engine, members: Sequence[str] = ()) -> InitReport:
    """Set up a team database: pgvector, the schema with its policies, member privileges.

    Run once (again is harmless) by a role that may create objects: a superuser,
    or the database owner where pgvector is installed already. ``members`` (login
    roles that exist) join ``MEMBERS_ROLE``, which holds the table privileges;
    what each member then reads is decided by the collections it owns or was
    granted.
    """
    _require_postgres(engine)
    with engine.begin() as conn:
        installed = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
        ).scalar()
        if not installed:
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            except sa.exc.DBAPIError as exc:
                raise UsageError(
                    "Could not create the pgvector extension "
                    f"({' '.join(str(exc.orig).split())}): run 'archivist admin init' as a "
                    "superuser, or have one run CREATE EXTENSION vector in this database."
                ) from None
    upgrade_schema(engine)
    with engine.begin() as conn:
        if not has_search_schema(conn):
            create_search_schema(conn)  # keyed by collection: the collections exist now
        exists = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :r)"),
            {"r": MEMBERS_ROLE},
        ).scalar()
        group = _quote(conn, MEMBERS_ROLE)
        if not exists:
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(f"CREATE ROLE {group} NOLOGIN")
            except sa.exc.DBAPIError as exc:
                raise UsageError(
                    f"Could not create the role {MEMBERS_ROLE!r} "
                    f"({' '.join(str(exc.orig).split())}): run as a role with CREATEROLE."
                ) from None
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(member_privileges_sql(group))
        except sa.exc.DBAPIError as exc:
            raise UsageError(
                f"Could not grant the tables to {MEMBERS_ROLE!r} "
                f"({' '.join(str(exc.orig).split())}): run as the role that owns them."
            ) from None
        for member in members:
            _role_oid(conn, member)
            conn.exec_driver_sql(f"GRANT {group} TO {_quote(conn, member)}")
    revision = schema_revision(engine) or ""
    log.info("team database ready", extra={"revision": revision, "members": list(members)})
    return InitReport(revision, True, MEMBERS_ROLE, tuple(members))


def _collection(conn: sa.Connection, name: str) -> tuple[int, bool, str]:
    """(id, mine, owner name) of a collection this role can see, else a UsageError."""
    row = conn.execute(
        sa.text(
            "SELECT c.id, c.owner = archivist_me() AS mine,"
            " coalesce((SELECT rolname FROM pg_roles r WHERE r.oid = c.owner), '') AS owner"
            " FROM collections c WHERE c.name = :n"
        ),
        {"n": name},
    ).first()
    if row is None:
        raise UsageError(f"There is no collection {name!r} that you can see.")
    return int(row.id), bool(row.mine), str(row.owner)


def create_collection(engine: sa.Engine, name: str) -> bool:
    """Make ``name`` a collection owned by this role; False if it is one already.

    A collection of that name owned by someone else is an error (also one this
    role cannot see: names are unique across the database).
    """
    name = name.strip()
    if not name:
        raise UsageError("A collection needs a name.")
    with engine.begin() as conn:
        _require_team(conn)
        try:
            with conn.begin_nested():
                conn.execute(sa.text("INSERT INTO collections (name) VALUES (:n)"), {"n": name})
            return True
        except sa.exc.IntegrityError:
            pass
    with engine.connect() as conn:
        try:
            _, mine, owner = _collection(conn, name)
        except UsageError:
            raise UsageError(f"The collection name {name!r} is taken by another role.") from None
    if not mine:
        raise UsageError(f"The collection {name!r} belongs to {owner}: only its owner adds to it.")
    return False


class _WriteTarget:
    """The collection an engine's connections write new documents to (session setting)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_checkout(self, dbapi: Any, record: Any, _proxy: Any) -> None:
        name = self.name
        if record.info.get(WRITE_SETTING) == name:
            return
        cur = dbapi.cursor()
        try:
            cur.execute("SELECT set_config(%s, %s, false)", (WRITE_SETTING, name))
        finally:
            cur.close()
        dbapi.commit()  # a setting made in a transaction rolled back later would vanish
        record.info[WRITE_SETTING] = name


def use_collection(engine: sa.Engine, name: str | None) -> str:
    """Send this engine's later document writes to ``name`` (created if new); its name.

    ``None`` keeps the collection ``default`` (owned by whoever set the database
    up). Either way the collection must be this role's own: PostgreSQL would
    refuse the rows, this says why first.
    """
    target = name.strip() if name else DEFAULT_COLLECTION
    if name:
        create_collection(engine, target)
    else:
        with engine.connect() as conn:
            _require_team(conn)
            try:
                _, mine, owner = _collection(conn, target)
            except UsageError:
                mine, owner = False, "another role"
        if not mine:
            raise UsageError(
                f"The collection {target!r} belongs to {owner}: ingest into one of yours "
                "with --collection NAME."
            )
    current = _TARGETS.get(engine)
    if current is None:
        current = _TARGETS[engine] = _WriteTarget(target)
        event.listen(engine, "checkout", current.on_checkout)
    current.name = target
    return target


# The write target of each engine that has one (an engine belongs to one Services).
_TARGETS: weakref.WeakKeyDictionary[sa.Engine, _WriteTarget] = weakref.WeakKeyDictionary()


def grant(engine: sa.Engine, name: str, role: str) -> bool:
    """Let ``role`` (and its members) read collection ``name``; False if it could already."""
    with engine.begin() as conn:
        _require_team(conn)
        cid, mine, owner = _collection(conn, name)
        if not mine:
            raise UsageError(f"The collection {name!r} belongs to {owner}: only its owner grants.")
        oid = _role_oid(conn, role)
        added = conn.execute(
            sa.text(
                "INSERT INTO collection_grants (collection_id, role) VALUES (:c, :r)"
                " ON CONFLICT DO NOTHING"
            ),
            {"c": cid, "r": oid},
        ).rowcount
    return bool(added)


def revoke(engine: sa.Engine, name: str, role: str) -> bool:
    """Stop ``role`` reading collection ``name`` (from its next query); False if it did not."""
    with engine.begin() as conn:
        _require_team(conn)
        cid, mine, owner = _collection(conn, name)
        if not mine:
            raise UsageError(f"The collection {name!r} belongs to {owner}: only its owner revokes.")
        oid = _role_oid(conn, role)
        removed = conn.execute(
            sa.text("DELETE FROM collection_grants WHERE collection_id = :c AND role = :r"),
            {"c": cid, "r": oid},
        ).rowcount
    return bool(removed)


def list_collections(engine: sa.Engine) -> list[CollectionInfo]:
    """The collections this role can read, with their owners, readers and documents."""
    with engine.connect() as conn:
        _require_team(conn)
        rows = conn.execute(
            sa.text(
                "SELECT c.name, c.owner = archivist_me() AS mine,"
                " coalesce((SELECT rolname FROM pg_roles r WHERE r.oid = c.owner), '') AS owner,"
                " (SELECT count(*) FROM documents d WHERE d.collection_id = c.id) AS documents,"
                " coalesce((SELECT array_agg(r.rolname ORDER BY r.rolname)"
                "  FROM collection_grants g JOIN pg_roles r ON r.oid = g.role"
                "  WHERE g.collection_id = c.id), '{}') AS readers"
                " FROM collections c ORDER BY c.name"
            )
        ).all()
    return [
        CollectionInfo(r.name, r.owner, bool(r.mine), int(r.documents), tuple(r.readers))
        for r in rows
    ]


def access_scope(engine: sa.Engine) -> str:
    """What this role may read right now, and the knowledge base's version, as one key.

    Cached answers are stored under it: an answer built from a collection never
    serves a reader without it, and a grant, a revoke or another desktop's
    ingest starts a fresh scope. One query; blocking.
    """
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT value FROM kb_meta WHERE key = 'kb_version') AS kb,"
                " archivist_readable_collections() AS ids"
            )
        ).one()
    ids = ".".join(str(i) for i in row.ids)
    return f"{row.kb or 0}:c{ids}"
