"""Collections and row-level security on PostgreSQL (team mode); nothing on SQLite.

Adds ``collections`` and ``collection_grants``, a ``collection_id`` on documents,
chunks and the search tables (per-collection BM25 statistics), and forced
row-level security policies: a role reads the rows of collections it owns or
was granted, and writes only those it owns (``core.db.pg_access``). Existing
documents go into the collection ``default``, owned by the role running this
upgrade. The single-user SQLite database is unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

from core.db.pg_access import create_access_schema, drop_access_schema
from core.db.pg_schema import has_search_schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    create_access_schema(conn, search_tables=has_search_schema(conn))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        drop_access_schema(conn, search_tables=has_search_schema(conn))
