"""Per-chunk injection flags: migration 0003 on a real SQLite file, writes and reads."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from core.db import store
from core.db.engine import (
    MIGRATIONS_DIR,
    create_engine_for,
    head_revision,
    schema_revision,
    upgrade_schema,
)
from core.types import ChunkDraft, ExtractedDocument


def _upgrade_to(engine: sa.Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _write(conn: sa.Connection, path: str, texts: list[str]) -> list[int]:
    text = "\n\n".join(texts)
    drafts, pos = [], 0
    for i, t in enumerate(texts):
        drafts.append(ChunkDraft(ordinal=i, text=t, start=pos, end=pos + len(t), page=None))
        pos += len(t) + 2
    doc = ExtractedDocument(text=text, kind="txt", title=None)
    _, ids, _ = store.write_document(
        conn,
        path=path,
        content_hash=path,
        size=len(text),
        mtime=0.0,
        doc=doc,
        drafts=drafts,
        existing_id=None,
    )
    return ids


def test_chunks_from_before_0003_are_unscanned_then_flagged_and_read_back(
    tmp_path: Path,
) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'kb.db'}")
    try:
        _upgrade_to(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO documents (path, content_hash, size, mtime, kind, text, "
                    "ingested_at) VALUES ('/d/old.txt', 'h', 1, 0, 'txt', 'old text', 0)"
                )
            )
            conn.execute(
                sa.text(
                    'INSERT INTO chunks (document_id, ordinal, text, start, "end", '
                    "heading_path, token_count, text_hash) VALUES (1, 0, 'old text', 0, 8, "
                    "'', 2, 'x')"
                )
            )
        upgrade_schema(engine)
        assert schema_revision(engine) == head_revision()
        with engine.begin() as conn:
            assert store.unscanned_chunks(conn) == [(1, "old text")]
            assert store.chunks_by_ids(conn, [1])[1].injection_score is None
            ids = _write(conn, "/d/new.txt", ["plain words", "speaks to a model"])
            store.set_injection_flags(
                conn,
                [(1, 0.0, ()), (ids[0], 0.1, ()), (ids[1], 0.93, ("instruction_override",))],
            )
            assert store.unscanned_chunks(conn) == []
            chunk = store.chunks_by_ids(conn, [ids[1]])[ids[1]]
            assert (chunk.injection_score, chunk.injection_categories) == (
                0.93,
                ("instruction_override",),
            )
            assert store.chunks_by_ids(conn, [ids[0]])[ids[0]].injection_categories == ()
            flagged = store.flagged_passages(conn, "/d/new.txt", 0.5)
            assert [(f.chunk_id, f.start, f.end, f.score) for f in flagged] == [
                (ids[1], 13, 30, 0.93)
            ]
            assert store.flagged_passages(conn, "/d/old.txt", 0.5) == []
    finally:
        engine.dispose()
