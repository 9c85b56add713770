"""Knowledge-base storage: documents, chunks, embeddings, quarantine (sync SQL).

Every function takes a SQLAlchemy ``Connection`` from the one engine owned by
``Services`` and is meant to run in a worker thread. A document and its chunks
are written in one transaction, so a crash never leaves half a document.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db.schema import chunks, documents, embeddings, kb_meta, quarantine
from core.types import Chunk, ChunkDraft, ExtractedDocument, FlaggedPassage, FloatArray

HEADING_SEP = " > "


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: int
    path: str
    content_hash: str
    size: int
    mtime: float
    kind: str
    title: str | None


def _doc_row(row: Any) -> DocumentRow:
    return DocumentRow(row.id, row.path, row.content_hash, row.size, row.mtime, row.kind, row.title)


_DOC_COLS = (
    documents.c.id,
    documents.c.path,
    documents.c.content_hash,
    documents.c.size,
    documents.c.mtime,
    documents.c.kind,
    documents.c.title,
)


_TEAM_KEY = "archivist_collections"


def _own(query: sa.Select[Any], conn: Connection, own: bool) -> sa.Select[Any]:
    """With ``own``, in team mode, only the collection this connection writes to.

    Ingestion plans with these lookups: a document of a collection this role may
    read but not write (same path, same content) is not this ingest's to update,
    move or remove. On SQLite, and without collections, every document.
    """
    if not own or conn.dialect.name != "postgresql":
        return query
    info = conn.connection.info
    if _TEAM_KEY not in info:
        info[_TEAM_KEY] = bool(
            conn.execute(
                sa.text("SELECT to_regprocedure('archivist_write_collection()') IS NOT NULL")
            ).scalar()
        )
    if not info[_TEAM_KEY]:
        return query
    return query.where(sa.text("documents.collection_id = archivist_write_collection()"))


def document_by_path(conn: Connection, path: str, *, own: bool = False) -> DocumentRow | None:
    query = _own(sa.select(*_DOC_COLS).where(documents.c.path == path), conn, own)
    row = conn.execute(query).first()
    return _doc_row(row) if row else None


def documents_at(conn: Connection, path: str) -> list[DocumentRow]:
    """Every readable document at ``path`` (in team mode one per collection at most)."""
    rows = conn.execute(sa.select(*_DOC_COLS).where(documents.c.path == path))
    return [_doc_row(r) for r in rows]


def documents_by_hash(
    conn: Connection, content_hash: str, *, own: bool = False
) -> list[DocumentRow]:
    query = sa.select(*_DOC_COLS).where(documents.c.content_hash == content_hash)
    rows = conn.execute(_own(query, conn, own))
    return [_doc_row(r) for r in rows]


def documents_under(conn: Connection, folder: str, *, own: bool = False) -> list[DocumentRow]:
    prefix = folder.rstrip("/") + "/"
    # LIKE with an escaped prefix: folder names may contain % or _.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = sa.select(*_DOC_COLS).where(documents.c.path.like(escaped + "%", escape="\\"))
    rows = conn.execute(_own(query, conn, own))
    return [_doc_row(r) for r in rows]


def chunk_ids_of(conn: Connection, document_id: int) -> list[int]:
    return list(
        conn.execute(sa.select(chunks.c.id).where(chunks.c.document_id == document_id)).scalars()
    )


def write_document(
    conn: Connection,
    *,
    path: str,
    content_hash: str,
    size: int,
    mtime: float,
    doc: ExtractedDocument,
    drafts: Sequence[ChunkDraft],
    existing_id: int | None,
) -> tuple[int, list[int], list[int]]:
    """Insert or replace a document and its chunks; returns (doc id, new ids, removed ids).

    The caller wraps this in one transaction (``engine.begin()``).
    """
    pages = [[p.number, p.start, p.end] for p in doc.pages] or None
    values = {
        "path": path,
        "content_hash": content_hash,
        "size": size,
        "mtime": mtime,
        "kind": doc.kind,
        "title": doc.title,
        "text": doc.text,
        "pages": pages,
        "ingested_at": time.time(),
    }
    removed: list[int] = []
    if existing_id is None:
        key = conn.execute(sa.insert(documents).values(**values)).inserted_primary_key
        assert key is not None
        doc_id = int(key[0])
    else:
        doc_id = existing_id
        removed = chunk_ids_of(conn, doc_id)
        conn.execute(sa.delete(chunks).where(chunks.c.document_id == doc_id))
        conn.execute(sa.update(documents).where(documents.c.id == doc_id).values(**values))
    new_ids: list[int] = []
    if drafts:
        rows = [
            {
                "document_id": doc_id,
                "ordinal": d.ordinal,
                "text": d.text,
                "start": d.start,
                "end": d.end,
                "page": d.page,
                "heading_path": HEADING_SEP.join(d.heading_path),
                "token_count": d.token_count,
                "text_hash": text_hash(d.text),
            }
            for d in drafts
        ]
        conn.execute(sa.insert(chunks), rows)
        new_ids = list(
            conn.execute(
                sa.select(chunks.c.id)
                .where(chunks.c.document_id == doc_id)
                .order_by(chunks.c.ordinal)
            ).scalars()
        )
    conn.execute(sa.delete(quarantine).where(quarantine.c.path == path))
    bump_kb_version(conn)
    return doc_id, new_ids, removed


def move_document(conn: Connection, doc_id: int, new_path: str, mtime: float) -> None:
    conn.execute(
        sa.update(documents).where(documents.c.id == doc_id).values(path=new_path, mtime=mtime)
    )
    bump_kb_version(conn)


def touch_document(conn: Connection, doc_id: int, size: int, mtime: float) -> None:
    conn.execute(
        sa.update(documents).where(documents.c.id == doc_id).values(size=size, mtime=mtime)
    )


def delete_document(conn: Connection, doc_id: int) -> list[int]:
    removed = chunk_ids_of(conn, doc_id)
    conn.execute(sa.delete(chunks).where(chunks.c.document_id == doc_id))
    conn.execute(sa.delete(documents).where(documents.c.id == doc_id))
    bump_kb_version(conn)
    return removed


def record_quarantine(
    conn: Connection, path: str, reason: str, size: int | None, mtime: float | None
) -> None:
    conn.execute(sa.delete(quarantine).where(quarantine.c.path == path))
    conn.execute(
        sa.insert(quarantine).values(
            path=path, reason=reason, size=size, mtime=mtime, at=time.time()
        )
    )


def quarantined(conn: Connection) -> list[tuple[str, str, float]]:
    rows = conn.execute(
        sa.select(quarantine.c.path, quarantine.c.reason, quarantine.c.at).order_by(
            quarantine.c.at.desc()
        )
    )
    return [(r.path, r.reason, r.at) for r in rows]


def bump_kb_version(conn: Connection) -> None:
    current = conn.execute(
        sa.select(kb_meta.c.value).where(kb_meta.c.key == "kb_version")
    ).scalar_one_or_none()
    if current is None:
        conn.execute(sa.insert(kb_meta).values(key="kb_version", value="1"))
    else:
        conn.execute(
            sa.update(kb_meta)
            .where(kb_meta.c.key == "kb_version")
            .values(value=str(int(current) + 1))
        )


def kb_version(conn: Connection) -> int:
    value = conn.execute(
        sa.select(kb_meta.c.value).where(kb_meta.c.key == "kb_version")
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


_CHUNK_COLS = (
    chunks.c.id,
    chunks.c.document_id,
    documents.c.path,
    chunks.c.ordinal,
    chunks.c.text,
    chunks.c.start,
    chunks.c.end,
    chunks.c.page,
    chunks.c.heading_path,
    chunks.c.injection_score,
    chunks.c.injection_categories,
)


def _categories(value: str | None) -> tuple[str, ...]:
    return tuple(c for c in (value or "").split(",") if c)


def _chunk(row: Any) -> Chunk:
    return Chunk(
        id=row.id,
        document_id=row.document_id,
        source=row.path,
        ordinal=row.ordinal,
        text=row.text,
        start=row.start,
        end=row.end,
        page=row.page,
        heading_path=tuple(row.heading_path.split(HEADING_SEP)) if row.heading_path else (),
        injection_score=row.injection_score,
        injection_categories=_categories(row.injection_categories),
    )


# ---------------------------------------------------------------- injection flags


def set_injection_flags(
    conn: Connection, flags: Sequence[tuple[int, float, Sequence[str]]]
) -> None:
    """Store (chunk id, score, categories) for scanned chunks (clean ones score 0)."""
    if not flags:
        return
    stmt = (
        sa.update(chunks)
        .where(chunks.c.id == sa.bindparam("cid"))
        .values(
            injection_score=sa.bindparam("score"),
            injection_categories=sa.bindparam("categories"),
        )
    )
    conn.execute(
        stmt,
        [{"cid": cid, "score": score, "categories": ",".join(cats)} for cid, score, cats in flags],
    )


def unscanned_chunks(conn: Connection, limit: int = 2000) -> list[tuple[int, str]]:
    """(chunk id, text) of chunks never scanned for injection (ingested before 0003).

    In team mode only this role's own: it may read others' but not write their
    flags (row-level security would skip the update, and the caller would loop).
    """
    query = sa.select(chunks.c.id, chunks.c.text).where(chunks.c.injection_score.is_(None))
    if (
        conn.dialect.name == "postgresql"
        and conn.execute(
            sa.text("SELECT to_regprocedure('archivist_owned_collections()') IS NOT NULL")
        ).scalar()
    ):
        query = query.where(sa.text("chunks.collection_id = ANY(archivist_owned_collections())"))
    rows = conn.execute(query.order_by(chunks.c.id).limit(limit))
    return [(r.id, r.text) for r in rows]


def flagged_passages(conn: Connection, path: str, min_score: float) -> list[FlaggedPassage]:
    """The passages of the document at ``path`` scored ``>= min_score``, in text order."""
    rows = conn.execute(
        sa.select(
            chunks.c.id,
            chunks.c.start,
            chunks.c.end,
            chunks.c.page,
            chunks.c.injection_score,
            chunks.c.injection_categories,
        )
        .join(documents, documents.c.id == chunks.c.document_id)
        .where(documents.c.path == path, chunks.c.injection_score >= min_score)
        .order_by(chunks.c.ordinal)
    )
    return [
        FlaggedPassage(
            r.id, r.start, r.end, r.page, r.injection_score, _categories(r.injection_categories)
        )
        for r in rows
    ]


def chunks_by_ids(conn: Connection, ids: Sequence[int]) -> dict[int, Chunk]:
    out: dict[int, Chunk] = {}
    for start in range(0, len(ids), 500):
        batch = list(ids[start : start + 500])
        rows = conn.execute(
            sa.select(*_CHUNK_COLS)
            .join(documents, documents.c.id == chunks.c.document_id)
            .where(chunks.c.id.in_(batch))
        )
        for row in rows:
            out[row.id] = _chunk(row)
    return out


def iter_chunk_texts(
    conn: Connection, batch: int = 5000
) -> Iterator[list[tuple[int, str, tuple[str, ...]]]]:
    """All (chunk id, text, heading path) in id order, in batches (for index rebuilds)."""
    last = 0
    while True:
        rows = conn.execute(
            sa.select(chunks.c.id, chunks.c.text, chunks.c.heading_path)
            .where(chunks.c.id > last)
            .order_by(chunks.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield [
            (r.id, r.text, tuple(r.heading_path.split(HEADING_SEP)) if r.heading_path else ())
            for r in rows
        ]
        last = rows[-1].id


def chunk_meta(conn: Connection) -> list[tuple[int, int, str, str]]:
    """(chunk id, document id, path, kind) for every chunk: the filter columns."""
    rows = conn.execute(
        sa.select(chunks.c.id, chunks.c.document_id, documents.c.path, documents.c.kind).join(
            documents, documents.c.id == chunks.c.document_id
        )
    )
    return [(r.id, r.document_id, r.path, r.kind) for r in rows]


def load_embeddings(
    conn: Connection, model_id: str, hashes: Iterable[str]
) -> dict[str, FloatArray]:
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, FloatArray] = {}
    for start in range(0, len(wanted), 500):
        batch = wanted[start : start + 500]
        rows = conn.execute(
            sa.select(embeddings.c.text_hash, embeddings.c.vector).where(
                embeddings.c.model_id == model_id, embeddings.c.text_hash.in_(batch)
            )
        )
        for row in rows:
            out[row.text_hash] = np.frombuffer(row.vector, dtype="<f4").copy()
    return out


def store_embeddings(conn: Connection, model_id: str, vectors: dict[str, FloatArray]) -> None:
    if not vectors:
        return
    existing = set(load_embeddings(conn, model_id, vectors).keys())
    rows = [
        {
            "model_id": model_id,
            "text_hash": h,
            "dim": int(v.shape[0]),
            "vector": np.asarray(v, dtype="<f4").tobytes(),
        }
        for h, v in vectors.items()
        if h not in existing
    ]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # Team mode: a vector stored from a collection this role cannot read is
        # invisible (row-level security) but still holds the key; keep it.
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(embeddings).on_conflict_do_nothing(), rows)
    else:
        conn.execute(sa.insert(embeddings), rows)


def iter_chunk_vectors(
    conn: Connection, model_id: str, batch: int = 5000
) -> Iterator[tuple[list[int], FloatArray]]:
    """(chunk ids, matrix) in batches, for chunks whose embedding exists."""
    last = 0
    while True:
        rows = conn.execute(
            sa.select(chunks.c.id, embeddings.c.vector)
            .join(
                embeddings,
                sa.and_(
                    embeddings.c.text_hash == chunks.c.text_hash,
                    embeddings.c.model_id == model_id,
                ),
            )
            .where(chunks.c.id > last)
            .order_by(chunks.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        ids = [r.id for r in rows]
        matrix = np.vstack([np.frombuffer(r.vector, dtype="<f4") for r in rows]).astype(np.float32)
        yield ids, matrix
        last = ids[-1]


def document_text(conn: Connection, path: str) -> str | None:
    # first(): in team mode two collections may hold the same path.
    value: str | None = (
        conn.execute(
            sa.select(documents.c.text).where(documents.c.path == path).order_by(documents.c.id)
        )
        .scalars()
        .first()
    )
    return value


def kb_counts(conn: Connection) -> dict[str, int]:
    docs = conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one()
    n_chunks = conn.execute(sa.select(sa.func.count()).select_from(chunks)).scalar_one()
    n_q = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one()
    size = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(documents.c.size), 0))).scalar_one()
    n_emb = conn.execute(sa.select(sa.func.count()).select_from(embeddings)).scalar_one()
    return {
        "documents": int(docs),
        "chunks": int(n_chunks),
        "quarantined": int(n_q),
        "bytes": int(size),
        "embeddings": int(n_emb),
    }


def documents_by_kind(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(documents.c.kind, sa.func.count()).group_by(documents.c.kind)
    ).all()
    return {str(k): int(n) for k, n in rows}
