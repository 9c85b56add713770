"""The Alembic migrations build exactly the schema the code queries."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from core.db.engine import create_engine_for, head_revision, schema_revision, upgrade_schema
from core.db.schema import metadata


def _shape(engine: sa.Engine) -> dict[str, tuple[set[str], set[tuple[str, ...]]]]:
    insp = sa.inspect(engine)
    out = {}
    for table in insp.get_table_names():
        if table == "alembic_version":
            continue
        cols = {c["name"] for c in insp.get_columns(table)}
        idx = {tuple(i["column_names"]) for i in insp.get_indexes(table)}
        out[table] = (cols, idx)
    return out


def test_migrated_schema_matches_the_declared_schema(tmp_path: Path) -> None:
    migrated = create_engine_for(f"sqlite:///{tmp_path / 'migrated.db'}")
    declared = create_engine_for(f"sqlite:///{tmp_path / 'declared.db'}")
    try:
        upgrade_schema(migrated)
        metadata.create_all(declared)
        assert _shape(migrated) == _shape(declared)
        assert schema_revision(migrated) == head_revision()
    finally:
        migrated.dispose()
        declared.dispose()


def _database_at(path: Path, revision: str) -> sa.Engine:
    """A SQLite database migrated up to ``revision`` only."""
    from alembic import command
    from alembic.config import Config

    from core.db.engine import MIGRATIONS_DIR

    engine = create_engine_for(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_upgrade_from_the_first_revision_keeps_rows(tmp_path: Path) -> None:
    engine = _database_at(tmp_path / "old.db", "0001")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events (ts, day, action, outcome) "
                    "VALUES (1.0, 0, 'ask', 'ok')"
                )
            )
        upgrade_schema(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar() == 1
        assert schema_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_html_documents_are_marked_for_parsing_again(tmp_path: Path) -> None:
    """0006: HTML records lose their size check and hash (the parser keeps side boxes
    now); other documents keep theirs."""
    engine = _database_at(tmp_path / "old.db", "0005")
    try:
        insert = sa.text(
            "INSERT INTO documents (path, content_hash, size, mtime, kind, title, text,"
            " ingested_at) VALUES (:path, :hash, 10, 5.0, :kind, 't', 'x', 1.0)"
        )
        with engine.begin() as conn:
            conn.execute(insert, {"path": "/d/a.html", "hash": "a" * 64, "kind": "html"})
            conn.execute(insert, {"path": "/d/b.pdf", "hash": "b" * 64, "kind": "pdf"})
        upgrade_schema(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT path, content_hash, size, mtime FROM documents ORDER BY path")
            ).all()
        assert [tuple(r) for r in rows] == [
            ("/d/a.html", "", 10, -1.0),
            ("/d/b.pdf", "b" * 64, 10, 5.0),
        ]
    finally:
        engine.dispose()
