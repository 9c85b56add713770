"""Upgrade a single-user knowledge base to team mode: copy it into PostgreSQL.

``upgrade_to_team(source_url, target_url, ...)`` (``archivist upgrade --to URL``)
reads this desktop's database (SQLite by default) and writes its documents,
chunks (text, page, character span, heading path, token count, injection flags)
and their stored vectors into a PostgreSQL database with pgvector, and indexes
them in the shared search tables (``core.retrieval.pg_search``): keyword postings
made by the same analyzer, vectors copied as stored. The embedding model is never
run: a vector comes from the source's ``embeddings`` table (the one the embedded
index's files under ``ARCHIVIST_HOME/index`` are rebuilt from) and goes into the
target's ``embeddings`` table and ``search_chunks``, so no instance on the team
database embeds these passages again. Passages the source had not embedded yet
are copied without a vector; the next instance on the team database embeds them,
as the source would have.

Target: migrated to head (Alembic) first. Refused when it is not PostgreSQL, when
pgvector is missing (and this role cannot install it), or when its search index
holds vectors of another embedding model (two vector spaces are never mixed).
With collections (migration 0005) the documents go to the collection this role
writes to (``default`` unless chosen), which it must own: refused before copying
otherwise, as row-level security would refuse every row.

Merging: a target that already holds documents is merged into, by path within
the collection written to (a path is unique per collection; copies of a file in
other collections are theirs). A source document whose path it has with the same
content hash is already there (an earlier run, or a teammate's ingest) and is
skipped; one whose path it has with other content is a conflict: the team's
version is kept, the path is reported, and nothing of it is copied. Everything
else is copied.

Resumable: documents go in batches, each document with its chunks and vectors in
one transaction, so an interrupted run leaves whole documents; running again skips
them (by path and hash) and indexes any chunk an interrupted run left unindexed.
Running it twice duplicates nothing.

Also copied: the quarantine list (by path), and the audit log, once (a marker in
the target's ``kb_meta`` records the last event copied from this source).
Conversations and cached answers stay in ``ARCHIVIST_HOME``: they are this
person's, and their citations name source paths and character spans, which the
copy keeps.

Blocking: run it in a worker thread. ``cancel`` stops it between batches.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from core import team
from core.config import RetrievalSettings, redact_secrets, redact_url
from core.db import store
from core.db.engine import create_engine_for, upgrade_schema
from core.db.pg_access import DEFAULT_COLLECTION, WRITE_SETTING, has_access_schema
from core.db.pg_schema import (
    VECTOR_INDEX,
    VECTOR_INDEX_DDL,
    create_search_schema,
    has_search_schema,
    vector_available,
)
from core.db.schema import audit_events, chunks, documents, embeddings, kb_meta, quarantine
from core.errors import StorageError, UsageError
from core.retrieval.pg_search import PgSearchIndex
from core.retrieval.text import embedding_key
from core.types import Chunk, IndexDelta

log = logging.getLogger(__name__)

AUDIT_MARKER = "upgrade_audit:"  # + the source's id: the last audit event id copied
_VECTOR_INDEX_MARKER = "upgrade_vector_index"  # a flag while a copy holds the index back
_SMALL_INDEX = 256 * 1024  # bytes: at most ~120 vectors in HNSW (about 2 kB each)


@dataclass(frozen=True, slots=True)
class UpgradeProgress:
    """Where a copy stands (documents and chunks of this run's copy)."""

    documents_done: int
    documents_total: int
    chunks_done: int
    chunks_total: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    source: str  # URLs with passwords masked
    target: str
    model_key: str
    collection: str  # where the documents went ("" in a database without collections)
    documents: int  # copied by this run
    chunks: int
    vectors: int  # chunks copied with their stored vector
    without_vectors: int  # chunks the source had not embedded yet
    already_there: int  # same path and content in the target: skipped
    conflicts: tuple[str, ...]  # same path, other content in the target: the team's kept
    indexed_leftovers: int  # chunks an earlier, interrupted run left unindexed
    quarantined: int
    audit_events: int
    elapsed_s: float
    copy_s: float  # documents, chunks and vectors (the rows/s figure) ...
    store_s: float  # ... of which rows written to documents, chunks, embeddings
    index_s: float  # ... and the search tables (postings, pgvector, HNSW)
    cancelled: bool = False
    vector_index_built: bool = False  # HNSW built once after the copy (a new team index)
    notes: tuple[str, ...] = field(default=())

    @property
    def chunks_per_s(self) -> float | None:
        return self.chunks / self.copy_s if self.chunks and self.copy_s > 0 else None


def team_url(url: str) -> str:
    """``url`` as SQLAlchemy needs it: ``postgresql://`` gets the psycopg driver.

    Raises ``UsageError`` for a URL that does not name a PostgreSQL database.
    """
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise UsageError(
            f"{redact_url(url)!r} is not a database URL; team mode needs "
            "postgresql://user@host/database"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "postgresql":
        raise UsageError(
            f"Team mode needs a PostgreSQL database, not {parsed.get_backend_name()} "
            f"({redact_url(url)}): use postgresql://user@host/database"
        )
    if not parsed.database:
        raise UsageError(f"{redact_url(url)} names no database")
    return parsed.render_as_string(hide_password=False)


def _same_database(a: str, b: str) -> bool:
    x, y = make_url(a), make_url(b)
    return (x.get_backend_name(), x.host, x.port, x.database) == (
        y.get_backend_name(),
        y.host,
        y.port,
        y.database,
    )


def _source_id(url: str) -> str:
    """A short id of the source database (its URL without credentials)."""
    parsed = make_url(url)
    name = (
        f"{parsed.get_backend_name()}://{parsed.host or ''}:{parsed.port or ''}/{parsed.database}"
    )
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _check_target(engine: sa.Engine, url: str) -> None:
    """Connect; refuse before any change when pgvector is neither there nor installable."""
    try:
        with engine.connect() as conn:
            if has_search_schema(conn) or vector_available(conn):
                return
            role = conn.execute(sa.text("SELECT current_user")).scalar()
    except sa.exc.OperationalError as exc:
        reason = redact_secrets(str(exc.orig), url)
        raise StorageError(f"Cannot connect to {redact_url(url)}: {reason}") from None
    raise StorageError(
        f"The database {redact_url(url)} has no pgvector extension and the role {role!r} "
        "cannot install it: a superuser must run CREATE EXTENSION vector in it once "
        "(the server needs the pgvector package), then run this command again."
    )


def _ensure_search_schema(engine: sa.Engine, url: str) -> None:
    """The search tables, also where the schema was upgraded before pgvector came."""
    with engine.begin() as conn:
        if has_search_schema(conn):
            return
        if not vector_available(conn):  # pragma: no cover - _check_target refused earlier
            raise StorageError(f"{redact_url(url)} has no search tables and no pgvector")
        create_search_schema(conn)


def _check_model(engine: sa.Engine, key: str) -> None:
    with engine.connect() as conn:
        other = conn.execute(
            sa.text(
                "SELECT model_key FROM search_chunks"
                " WHERE model_key IS NOT NULL AND model_key <> :key LIMIT 1"
            ),
            {"key": key},
        ).scalar()
    if other is not None:
        raise StorageError(
            f"The team database's search index holds vectors of another embedding model "
            f"({other}); this knowledge base's are {key}. Copying would mix two vector "
            "spaces: set [embedding] model to the team's model and re-ingest instead, "
            "or upgrade into another database."
        )


def _defer_vector_index(engine: sa.Engine) -> bool:
    """Drop the HNSW index for the copy when it holds next to nothing: built once after.

    Inserting into HNSW vector by vector is the slowest part of a copy (measured
    on 4,000 passages under load: ~150 vectors/s with the index, ~1,000/s without
    it, plus 8 s to build it after). Only for an index of at most ``_SMALL_INDEX``
    bytes (a new team database: other people's searches lose nothing), and only
    where this role may drop it (it owns the table). A marker in ``kb_meta`` says
    it is held back until it is built again, so a run killed meanwhile leaves the
    next run (or ``_restore_vector_index``) the job. The marker is only a flag:
    every member may write ``kb_meta``, so the index is built from the schema's
    own statement (``VECTOR_INDEX_DDL``), never from text stored there.
    """
    with engine.begin() as conn:
        small = conn.execute(
            sa.text("SELECT true FROM to_regclass(:name) AS i WHERE pg_relation_size(i) <= :small"),
            {"name": VECTOR_INDEX, "small": _SMALL_INDEX},
        ).scalar()
        if small is None:
            return False
        definition = "held back by archivist upgrade"
        try:
            with conn.begin_nested():
                conn.execute(sa.text(f"DROP INDEX {VECTOR_INDEX}"))
        except sa.exc.ProgrammingError:  # not the owner: vectors go into the index one by one
            return False
        conn.execute(
            pg_insert(kb_meta)
            .values(key=_VECTOR_INDEX_MARKER, value=definition)
            .on_conflict_do_update(index_elements=["key"], set_={"value": definition})
        )
    log.info("vector index deferred until the copy is done")
    return True


def _restore_vector_index(engine: sa.Engine) -> bool:
    """Build the HNSW index a copy (this one, or one killed earlier) held back."""
    with engine.connect() as conn:
        marker = conn.execute(
            sa.select(kb_meta.c.value).where(kb_meta.c.key == _VECTOR_INDEX_MARKER)
        ).scalar_one_or_none()
    if marker is None:
        return False
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(VECTOR_INDEX_DDL))  # the marker's text is never run
        conn.execute(sa.delete(kb_meta).where(kb_meta.c.key == _VECTOR_INDEX_MARKER))
    log.info("vector index built", extra={"s": round(time.perf_counter() - t0, 2)})
    return True


def _count_unindexed(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        n = conn.execute(
            sa.text(
                "SELECT count(*) FROM chunks c"
                " WHERE NOT EXISTS (SELECT 1 FROM search_chunks s WHERE s.chunk_id = c.id)"
            )
        ).scalar_one()
    return int(n)


def _check_write_collection(engine: sa.Engine) -> str:
    """The collection new documents go to ("" without collections).

    With collections (migration 0005), refused before copying when this role does
    not own it (row-level security would refuse every row). Superusers and
    ``BYPASSRLS`` roles are not held back.
    """
    with engine.connect() as conn:
        if not has_access_schema(conn):
            return ""
        row = conn.execute(
            sa.text(
                "SELECT coalesce(current_setting(:setting, true), '') AS chosen,"
                " (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)"
                " AS bypass,"
                " (SELECT c.owner = archivist_me() FROM collections c"
                " WHERE c.id = archivist_write_collection()) AS mine,"
                " (SELECT coalesce(pg_get_userbyid(c.owner), '') FROM collections c"
                " WHERE c.id = archivist_write_collection()) AS owner"
            ),
            {"setting": WRITE_SETTING},
        ).one()
    name = str(row.chosen or DEFAULT_COLLECTION)
    if row.mine or row.bypass:
        return name
    whose = f" (it belongs to {row.owner})" if row.owner else ""
    raise UsageError(
        f"In the team database new documents go to the collection {name!r}, which this "
        f"role does not own{whose}: only its owner adds to it. Choose one of yours with "
        "--collection NAME (created if new)."
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    copy: list[tuple[int, str, int]]  # (source document id, path, chunks)
    already_there: int
    conflicts: tuple[str, ...]


def _plan(source: sa.Engine, target: sa.Engine) -> _Plan:
    with source.connect() as conn:
        docs = conn.execute(
            sa.select(documents.c.id, documents.c.path, documents.c.content_hash).order_by(
                documents.c.id
            )
        ).all()
        counts: dict[int, int] = dict(
            conn.execute(
                sa.select(chunks.c.document_id, sa.func.count()).group_by(chunks.c.document_id)
            ).all()
        )
    there: dict[str, str] = {}
    paths = [d.path for d in docs]
    with target.connect() as conn:
        # With collections, only the one written to: a path is unique per collection,
        # and a granted collection's copy is not this copy's to skip or compare with.
        own = (
            sa.text("documents.collection_id = archivist_write_collection()")
            if has_access_schema(conn)
            else sa.true()
        )
        for start in range(0, len(paths), 1000):
            rows = conn.execute(
                sa.select(documents.c.path, documents.c.content_hash).where(
                    documents.c.path.in_(paths[start : start + 1000]), own
                )
            )
            there.update((r.path, r.content_hash) for r in rows)
    copy: list[tuple[int, str, int]] = []
    same = 0
    conflicts: list[str] = []
    for d in docs:
        theirs = there.get(d.path)
        if theirs is None:
            copy.append((d.id, d.path, int(counts.get(d.id, 0))))
        elif theirs == d.content_hash:
            same += 1
        else:
            conflicts.append(d.path)
    return _Plan(copy, same, tuple(conflicts))


def _batches(
    docs: Sequence[tuple[int, str, int]], max_chunks: int
) -> list[list[tuple[int, str, int]]]:
    """Consecutive documents, at most ``max_chunks`` chunks a batch (one document at least)."""
    out: list[list[tuple[int, str, int]]] = []
    current: list[tuple[int, str, int]] = []
    size = 0
    for doc in docs:
        if current and size + doc[2] > max_chunks:
            out.append(current)
            current, size = [], 0
        current.append(doc)
        size += doc[2]
    if current:
        out.append(current)
    return out


@dataclass(frozen=True, slots=True)
class _Copied:
    chunks: list[Chunk]
    kinds: list[str]
    vectors: list[bytes | None]  # float32 little-endian, as stored


def _copy_batch(
    source: sa.Engine, target: sa.Engine, doc_ids: Sequence[int], keys: Sequence[str]
) -> _Copied:
    """One transaction on the target: the documents, their chunks, their vectors."""
    doc_cols = [c for c in documents.c if c.name != "id"]
    chunk_cols = [c for c in chunks.c if c.name not in ("id", "document_id")]
    with source.connect() as conn:
        doc_rows = conn.execute(
            sa.select(documents.c.id, *doc_cols)
            .where(documents.c.id.in_(doc_ids))
            .order_by(documents.c.id)
        ).all()
        chunk_rows = conn.execute(
            sa.select(chunks.c.document_id, *chunk_cols)
            .where(chunks.c.document_id.in_(doc_ids))
            .order_by(chunks.c.document_id, chunks.c.ordinal, chunks.c.id)
        ).all()
        hashes = sorted({r.text_hash for r in chunk_rows})
        stored: dict[tuple[str, str], Any] = {}
        for start in range(0, len(hashes), 500):
            for r in conn.execute(
                sa.select(embeddings).where(
                    embeddings.c.model_id.in_(keys),
                    embeddings.c.text_hash.in_(hashes[start : start + 500]),
                )
            ):
                stored[(r.model_id, r.text_hash)] = r
    with target.begin() as conn:
        new_docs = conn.execute(
            sa.insert(documents).returning(documents.c.id, sort_by_parameter_order=True),
            [{c.name: getattr(r, c.name) for c in doc_cols} for r in doc_rows],
        ).all()
        doc_map = {old.id: int(new.id) for old, new in zip(doc_rows, new_docs, strict=True)}
        path_of = {old.id: old.path for old in doc_rows}
        kind_of = {old.id: old.kind for old in doc_rows}
        new_chunks: Sequence[Any] = ()
        if chunk_rows:
            new_chunks = conn.execute(
                sa.insert(chunks).returning(chunks.c.id, sort_by_parameter_order=True),
                [
                    {"document_id": doc_map[r.document_id]}
                    | {c.name: getattr(r, c.name) for c in chunk_cols}
                    for r in chunk_rows
                ],
            ).all()
        if stored:
            conn.execute(
                pg_insert(embeddings).on_conflict_do_nothing(),
                [
                    {
                        "model_id": r.model_id,
                        "text_hash": r.text_hash,
                        "dim": r.dim,
                        "vector": r.vector,
                    }
                    for r in stored.values()
                ],
            )
        store.bump_kb_version(conn)
    out = _Copied([], [], [])
    for r, new in zip(chunk_rows, new_chunks, strict=True):
        out.chunks.append(
            Chunk(
                id=int(new.id),
                document_id=doc_map[r.document_id],
                source=path_of[r.document_id],
                ordinal=r.ordinal,
                text=r.text,
                start=r.start,
                end=r.end,
                page=r.page,
                heading_path=tuple(r.heading_path.split(store.HEADING_SEP))
                if r.heading_path
                else (),
                injection_score=r.injection_score,
                injection_categories=tuple(
                    c for c in (r.injection_categories or "").split(",") if c
                ),
            )
        )
        out.kinds.append(kind_of[r.document_id])
        row = next((stored[(k, r.text_hash)] for k in keys if (k, r.text_hash) in stored), None)
        out.vectors.append(None if row is None else bytes(row.vector))
    return out


def _index(index: PgSearchIndex, copied: _Copied) -> int:
    """Index the copied chunks: postings by the index's analyzer, vectors as stored."""
    with_vec = [i for i, v in enumerate(copied.vectors) if v is not None]
    without = [i for i, v in enumerate(copied.vectors) if v is None]
    if with_vec:
        matrix = np.vstack(
            [np.frombuffer(copied.vectors[i] or b"", dtype="<f4") for i in with_vec]
        ).astype(np.float32)
        index.apply(
            IndexDelta(
                added=tuple(copied.chunks[i] for i in with_vec),
                vectors=matrix,
                kinds=tuple(copied.kinds[i] for i in with_vec),
            )
        )
    if without:
        index.apply(
            IndexDelta(
                added=tuple(copied.chunks[i] for i in without),
                kinds=tuple(copied.kinds[i] for i in without),
            )
        )
    return len(with_vec)


def _copy_quarantine(source: sa.Engine, target: sa.Engine) -> int:
    with source.connect() as conn:
        rows = [
            {c.name: getattr(r, c.name) for c in quarantine.c if c.name != "id"}
            for r in conn.execute(sa.select(quarantine))
        ]
    if not rows:
        return 0
    with target.begin() as conn:
        result = conn.execute(
            pg_insert(quarantine)
            .on_conflict_do_nothing(index_elements=["path"])
            .returning(quarantine.c.id),
            rows,
        )
        return len(result.all())


def _copy_audit(source: sa.Engine, target: sa.Engine, source_id: str, batch: int = 5000) -> int:
    """Audit events not copied from this source yet (a marker in ``kb_meta``)."""
    marker = AUDIT_MARKER + source_id
    with target.connect() as conn:
        value = conn.execute(
            sa.select(kb_meta.c.value).where(kb_meta.c.key == marker)
        ).scalar_one_or_none()
    last = int(value) if value is not None else 0
    cols = [c for c in audit_events.c if c.name != "id"]
    copied = 0
    while True:
        with source.connect() as conn:
            rows = conn.execute(
                sa.select(audit_events.c.id, *cols)
                .where(audit_events.c.id > last)
                .order_by(audit_events.c.id)
                .limit(batch)
            ).all()
        if not rows:
            return copied
        last = int(rows[-1].id)
        with target.begin() as conn:
            conn.execute(
                sa.insert(audit_events), [{c.name: getattr(r, c.name) for c in cols} for r in rows]
            )
            conn.execute(
                pg_insert(kb_meta)
                .values(key=marker, value=str(last))
                .on_conflict_do_update(index_elements=["key"], set_={"value": str(last)})
            )
        copied += len(rows)


def _record(target: sa.Engine, report: UpgradeReport) -> None:
    now = time.time()
    with target.begin() as conn:
        conn.execute(
            sa.insert(audit_events).values(
                ts=now,
                day=int(now // 86400),
                action="upgrade",
                outcome="cancelled" if report.cancelled else "ok",
                latency_ms=report.elapsed_s * 1000.0,
                detail={
                    "source": report.source,
                    "documents": report.documents,
                    "chunks": report.chunks,
                    "vectors": report.vectors,
                    "already_there": report.already_there,
                    "conflicts": len(report.conflicts),
                    "audit_events": report.audit_events,
                },
            )
        )


def upgrade_to_team(
    source_url: str,
    target_url: str,
    *,
    model_id: str,
    retrieval: RetrievalSettings,
    batch_chunks: int = 2000,
    copy_audit: bool = True,
    collection: str | None = None,
    progress: Callable[[UpgradeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> UpgradeReport:
    """Copy the knowledge base at ``source_url`` into the team database; see the module."""
    t0 = time.perf_counter()
    target_url = team_url(target_url)
    if _same_database(source_url, target_url):
        raise UsageError("This knowledge base already is that database: nothing to upgrade")
    key = embedding_key(model_id)
    keys = [key, model_id]  # this recipe's vectors, then older ones (as the indexes read them)
    source = create_engine_for(source_url)
    target: sa.Engine | None = None
    try:
        upgrade_schema(source)  # what every start does; the source keeps all its data
        with source.connect() as conn:
            n_docs = conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one()
        if not n_docs:
            raise UsageError(
                f"The knowledge base at {redact_url(source_url)} has no documents: nothing "
                "to upgrade (point ARCHIVIST_DATABASE_URL at the team database and ingest there)"
            )
        target = create_engine_for(target_url)
        _check_target(target, target_url)
        upgrade_schema(target)
        _ensure_search_schema(target, target_url)
        _check_model(target, key)
        if collection is not None:  # this role's own, created if new (core.team)
            team.use_collection(target, collection)
        written_to = _check_write_collection(target)
        index = PgSearchIndex(retrieval)
        # Chunks an interrupted run stored but did not index yet are indexed here.
        unindexed = _count_unindexed(target)
        index.load(target, model_id)
        leftovers = unindexed - _count_unindexed(target)
        plan = _plan(source, target)
        total_chunks = sum(n for _, _, n in plan.copy)
        done_docs = done_chunks = vectors = 0
        store_s = index_s = 0.0
        cancelled = False
        t_copy = time.perf_counter()

        def report_progress() -> None:
            if progress is not None:
                progress(
                    UpgradeProgress(
                        done_docs,
                        len(plan.copy),
                        done_chunks,
                        total_chunks,
                        time.perf_counter() - t_copy,
                    )
                )

        report_progress()
        if plan.copy:
            _defer_vector_index(target)
        built = False
        try:
            for batch in _batches(plan.copy, batch_chunks):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                t1 = time.perf_counter()
                copied = _copy_batch(source, target, [d for d, _, _ in batch], keys)
                t2 = time.perf_counter()
                vectors += _index(index, copied)
                store_s += t2 - t1
                index_s += time.perf_counter() - t2
                done_docs += len(batch)
                done_chunks += len(copied.chunks)
                report_progress()
        finally:
            # Also after an error or a cancel: the team never keeps a copy's missing index.
            t2 = time.perf_counter()
            built = _restore_vector_index(target)
            index_s += time.perf_counter() - t2
        copy_s = time.perf_counter() - t_copy
        n_quarantine = 0 if cancelled else _copy_quarantine(source, target)
        n_audit = _copy_audit(source, target, _source_id(source_url)) if copy_audit else 0
        notes: list[str] = []
        if plan.conflicts:
            notes.append(
                f"{len(plan.conflicts)} documents have another version in the team database "
                "(same path, other content): the team's version was kept"
            )
        if done_chunks > vectors:
            notes.append(
                f"{done_chunks - vectors} passages had no vector yet: the first instance "
                "on the team database embeds them"
            )
        report = UpgradeReport(
            source=redact_url(source_url),
            target=redact_url(target_url),
            model_key=key,
            collection=written_to,
            documents=done_docs,
            chunks=done_chunks,
            vectors=vectors,
            without_vectors=done_chunks - vectors,
            already_there=plan.already_there,
            conflicts=plan.conflicts,
            indexed_leftovers=leftovers,
            quarantined=n_quarantine,
            audit_events=n_audit,
            elapsed_s=time.perf_counter() - t0,
            copy_s=copy_s,
            store_s=store_s,
            index_s=index_s,
            cancelled=cancelled,
            vector_index_built=built,
            notes=tuple(notes),
        )
        _record(target, report)
        log.info(
            "upgraded to team mode",
            extra={
                "target": report.target,
                "documents": report.documents,
                "chunks": report.chunks,
                "vectors": report.vectors,
                "s": round(report.elapsed_s, 2),
            },
        )
        return report
    except sa.exc.DBAPIError as exc:
        # E.g. a role without privileges (or, with collections, not owning the one
        # written to): whole documents copied so far stay; a rerun goes on from there.
        where = target_url if target is not None else source_url
        reason = redact_secrets(str(exc.orig).strip().splitlines()[0], where)
        raise StorageError(
            f"The upgrade into {redact_url(target_url)} failed: {reason}. Documents copied "
            "before this are kept; run the command again once it is fixed."
        ) from exc
    finally:
        source.dispose()
        if target is not None:
            target.dispose()
