"""What the app needs of a search index, whichever engine holds it.

Two implementations, one contract suite (tests/retrieval/test_index_contract.py):

- ``core.retrieval.search.SearchIndex``: embedded, in this process (BM25 postings
  and a vector matrix in files under ``ARCHIVIST_HOME``), for one person;
- ``core.retrieval.pg_search.PgSearchIndex``: in PostgreSQL with pgvector, shared
  by every instance that uses the same database (team mode).

All methods block: callers run them in a worker thread.
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa

from core.retrieval.search import Hit
from core.types import FloatArray, IndexDelta, SearchFilters


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
    ) -> list[Hit]:
        """The ``k`` best chunks; ``fusion`` is bm25, vector, rrf or convex."""
        ...
