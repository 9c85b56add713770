"""HTML documents are parsed again at their next ingestion.

The HTML parser used to drop every side box (``<aside>``, ``class="sidebar"``,
``role="complementary"``) as navigation. In books and manuals those boxes are the
author's text ("Tip", "Going further", footnotes): a quarter of the Debian
Administrator's Handbook was lost that way. The parser now keeps a box unless it
reads as navigation. A document's record only changes when its file does, so this
revision clears the size check and the content hash of every HTML document: the
next ingestion of its folder (or the folder watcher) parses it again. Passages
whose text is unchanged keep their vectors; nothing else is touched.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().execute(
        sa.text("UPDATE documents SET content_hash = '', mtime = -1 WHERE kind = 'html'")
    )


def downgrade() -> None:
    pass  # the records stay marked; parsing a document again loses nothing
