"""The database schema (SQLAlchemy Core tables).

Alembic migrations in ``core/db/migrations`` create and upgrade it; the tables
here are what the code queries. Portable across SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per ingested file. ``text`` is the extracted text all offsets index into.
documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("title", Text),
    Column("text", Text, nullable=False),
    Column("pages", JSON),  # [[number, start, end], ...] or null
    Column("ingested_at", Float, nullable=False),
    Index("ix_documents_content_hash", "content_hash"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "document_id",
        Integer,
        ForeignKey("documents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("start", Integer, nullable=False),
    Column("end", Integer, nullable=False),
    Column("page", Integer),
    Column("heading_path", Text, nullable=False, default=""),  # " > "-joined
    Column("token_count", Integer, nullable=False, default=0),
    Column("text_hash", String(64), nullable=False),
    # Prompt-injection flags, computed once at ingestion (NULL: not scanned yet).
    Column("injection_score", Float),
    Column("injection_categories", Text),  # comma-separated when flagged; "" when not
    Index("ix_chunks_document_id_ordinal", "document_id", "ordinal"),
)

# Embeddings are reused by (model id, chunk text hash): re-chunking or renaming a
# file never recomputes a vector that exists.
embeddings = Table(
    "embeddings",
    metadata,
    Column("model_id", String(128), primary_key=True),
    Column("text_hash", String(64), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian, normalized
)

# Files that could not be ingested, with the reason shown to the user.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("reason", Text, nullable=False),
    Column("size", BigInteger),
    Column("mtime", Float),
    Column("at", Float, nullable=False),
)

# Small key/value facts about the knowledge base (e.g. kb_version for cache scoping).
kb_meta = Table(
    "kb_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# (name, columns): the indexes the audit statistics queries in core/audit.py are
# designed for; each "count by X over a time window" walks one (X, ts) index.
# The one list: the table below and core/audit.py read it (migration 0002 keeps
# its own copy, as history; tests/db/test_migrations.py checks they agree).
AUDIT_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ix_audit_events_ts", ("ts",)),
    ("ix_audit_events_action_ts_latency_ms", ("action", "ts", "latency_ms")),
    ("ix_audit_events_action_latency_ms_ts", ("action", "latency_ms", "ts")),
    ("ix_audit_events_outcome_ts", ("outcome", "ts")),
    ("ix_audit_events_provider_ts", ("provider", "ts")),
    ("ix_audit_events_cache_layer_ts", ("cache_layer", "ts")),
    ("ix_audit_events_day_ts", ("day", "ts")),
)

# The audit log. Statistics are computed from it by aggregation in the database.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),  # unix seconds
    Column("day", Integer, nullable=False),  # unix day number (ts // 86400), for per-day counts
    Column("action", String(32), nullable=False),  # ask, ingest, quarantine, breaker, setting
    Column("outcome", String(32), nullable=False),  # ok, degraded, failed, refused, ...
    Column("request_id", String(32)),
    Column("session", String(64)),
    Column("provider", String(64)),
    Column("cache_layer", String(16)),
    Column("latency_ms", Float),
    Column("question_hash", String(64)),
    Column("question", Text),
    Column("detail", JSON),
    *(Index(name, *columns) for name, columns in AUDIT_INDEXES),
)
