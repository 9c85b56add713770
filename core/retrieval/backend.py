"""What the app needs of a search index, whichever engine holds it.

Two implementations, one contract suite (tests/retrieval/test_index_contract.py):

- ``core.retrieval.search.SearchIndex``: embedded, in this process (BM25 postings
  and a vector matrix in files under ``ARCHIVIST_HOME``), for one person;
- ``core.retrieval.pg_search.PgSearchIndex``: in PostgreSQL with pgvector, shared
  by every instance that uses the same database (team mode).

All methods block: callers run them in a worker thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from core.config import RetrievalSettings
from core.db.pg_schema import has_search_schema
from core.retrieval.pg_search import PgSearchIndex
from core.retrieval.search import Hit, SearchIndex
from core.types import FloatArray, IndexDelta, SearchFilters

log = logging.getLogger(__name__)


class SearchBackend(Protocol):
    loaded_from: str  # "disk", "database", "empty", ...: shown by health
    load_s: float

    def load(self, engine: sa.Engine, model_id: str) -> None:
        """Make the index answer for the knowledge base in ``engine``."""
        ...

    def save(self, engine: sa.Engine) -> None:
        """Persist what only this process holds (nothing, for a shared index)."""
        ...

    def close(self) -> None: ...

    def apply(self, delta: IndexDelta) -> None:
        """Index an ingestion change (chunks added, removed, vectors filled in)."""
        ...

    @property
    def size(self) -> int:
        """Searchable chunks."""
        ...

    @property
    def vector_count(self) -> int:
        """Chunks with an embedding."""
        ...

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` that no indexed chunk contains (as keyword search reads them)."""
        ...

    def search(
        self,
        text: str,
        query_vector: FloatArray | None,
        *,
        k: int,
        filters: SearchFilters | None = None,
        fusion: str | None = None,
        by_page: bool = True,
    ) -> list[Hit]:
        """The ``k`` best chunks; ``fusion`` is bm25, vector, rrf or convex; ``by_page``
        False keeps the fused passage order (no page ranking)."""
        ...


def open_search_backend(
    settings: RetrievalSettings, engine: sa.Engine, index_dir: Path
) -> SearchBackend:
    """The shared PostgreSQL index when the database has its tables, else the embedded one.

    Blocking (one query): run it in a worker thread. A PostgreSQL database without
    pgvector keeps the embedded index, with a warning: answers then come from what
    this instance ingested only.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            shared = has_search_schema(conn)
        if shared:
            return PgSearchIndex(settings)
        log.warning(
            "PostgreSQL without pgvector: the search index stays in %s (not shared)", index_dir
        )
    return SearchIndex(settings, index_dir)
