"""Alembic environment: runs on the connection that ``upgrade_schema`` passes in."""

from __future__ import annotations

from alembic import context

from core.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - we never run alembic from its own CLI
    raise RuntimeError("run migrations through core.db.engine.upgrade_schema")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
