"""Retrieval indexes and the pure ideas around them.

Modules:

- ``text``: ``Analyzer`` turns text into index/query tokens (Unicode-aware, keeps
  code identifiers such as ``functools.lru_cache`` findable as ``lru_cache`` and
  ``lru cache``; stop words; Snowball English stemming).
- ``bm25``: ``BM25Index``, an incremental inverted index whose scores equal
  ``rank_bm25.BM25Okapi`` but cost only the postings of the query terms.
- ``vectors``: ``VectorIndex``, normalised float32 embeddings in a memory-mapped,
  crash-safe file with exact cosine top-k.
- ``fusion``: ``reciprocal_rank_fusion`` and ``convex_combination``.
- ``metrics``: page-level Recall@k, MRR@k, nDCG@k and ``percentile`` for evaluation.

Both indexes are thread-safe (one lock each) and meant to be called from a worker
thread (``asyncio.to_thread``); nothing here touches the event loop or the database.
"""
