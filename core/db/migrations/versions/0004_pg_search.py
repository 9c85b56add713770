"""The shared search index in PostgreSQL (pgvector + keyword postings); nothing on SQLite.

Created only on PostgreSQL where the ``vector`` extension is installed or can be
(``CREATE EXTENSION`` needs a superuser: pgvector is not a trusted extension).
Elsewhere this revision does nothing and Archivist keeps its embedded index; the
tables are created by ``core.db.pg_schema.create_search_schema``, which a later
administrator step can run again once the extension is there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import logging

from alembic import op

from core.db.pg_schema import create_search_schema, drop_search_schema, vector_available

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    if not vector_available(conn):
        log.warning("pgvector is not available: the search index stays embedded")
        return
    create_search_schema(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        drop_search_schema(conn)
