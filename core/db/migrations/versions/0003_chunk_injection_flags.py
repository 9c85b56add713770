"""Prompt-injection flags per chunk, computed once at ingestion.

``injection_score`` is the detector's score of the chunk's text (NULL: not scanned
yet, e.g. a chunk ingested before this revision); ``injection_categories`` the
comma-separated categories that made it (empty when none did).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("injection_score", sa.Float, nullable=True))
    op.add_column("chunks", sa.Column("injection_categories", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("injection_categories")
        batch.drop_column("injection_score")
