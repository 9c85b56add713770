"""Page-level retrieval metrics, exactly as ``/work/shared/eval/README.md`` defines them.

The input is the ranked list of *source pages of the retrieved chunks* (one
entry per chunk, so a page may repeat; use ``page_of`` to strip ``#anchors``)
and the set of relevant pages. Only answerable questions are scored, so an
empty ``relevant`` set is an error here rather than a silent 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["mrr_at_k", "ndcg_at_k", "page_of", "percentile", "recall_at_k"]


def page_of(source: str) -> str:
    """The page of a chunk source: ``library/functools.html#functools.cache`` -> without anchor."""
    return source.split("#", 1)[0]


def _check(relevant: set[str], k: int) -> None:
    if not relevant:
        raise ValueError("no relevant pages: only answerable questions are scored")
    if k < 1:
        raise ValueError("k must be at least 1")


def recall_at_k(ranked_pages: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant pages found among the pages of the top ``k`` chunks."""
    _check(relevant, k)
    return len(relevant.intersection(ranked_pages[:k])) / len(relevant)


def mrr_at_k(ranked_pages: Sequence[str], relevant: set[str], k: int) -> float:
    """1 / rank of the first chunk whose page is relevant, 0 if none in the top ``k``."""
    _check(relevant, k)
    for rank, page in enumerate(ranked_pages[:k], start=1):
        if page in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_pages: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain nDCG: only the first chunk of each relevant page earns a gain.

    DCG = sum of 1 / log2(rank + 1) over those first chunks in the top ``k``;
    the ideal ranking puts min(len(relevant), k) hits at ranks 1, 2, ...
    """
    _check(relevant, k)
    credited: set[str] = set()
    dcg = 0.0
    for rank, page in enumerate(ranked_pages[:k], start=1):
        if page in relevant and page not in credited:
            credited.add(page)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be between 0 and 100")
    position = (len(data) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)
