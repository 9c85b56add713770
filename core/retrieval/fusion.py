"""Combining ranked lists from several retrievers (pure functions).

The fusion functions return ``(id, fused score)`` sorted by score (descending),
ties broken by id (ascending) so that results are deterministic.
``leaders_first`` then reorders a ranked list by group (the page a passage
comes from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

__all__ = [
    "convex_combination",
    "leaders_first",
    "min_max",
    "reciprocal_rank_fusion",
]

Normalise = Literal["minmax", "none"]


def _ranked(scores: Mapping[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} lists")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    return [float(w) for w in weights]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Reciprocal Rank Fusion: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and
    individual Rank Learning Methods", SIGIR 2009. Only ranks are used, so lists
    with incomparable scores (BM25 and cosine) fuse without calibration. The
    constant ``k`` damps the head of each list: with k = 60 (the paper's value,
    found on TREC data) rank 1 is worth 1/61 and rank 10 still 1/70, so one list's
    top hit cannot outvote agreement between lists, while a small k makes fusion
    follow whichever list ranks a document first. A document missing from a list
    gets nothing from it. An id repeated within one list counts at its best rank.
    """
    if k < 0:
        raise ValueError("k must not be negative")
    w = _weights(weights, len(rankings))
    fused: dict[int, float] = {}
    for weight, ranking in zip(w, rankings, strict=True):
        seen: set[int] = set()
        for rank, doc in enumerate(ranking, start=1):
            if doc in seen:
                continue
            seen.add(doc)
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return _ranked(fused)


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scale scores to [0, 1]; when all are equal (or there is one), every score is 1."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    span = high - low
    return {doc: (score - low) / span for doc, score in scores.items()}


def convex_combination(
    score_lists: Sequence[Mapping[int, float]],
    weights: Sequence[float],
    normalise: Normalise = "minmax",
) -> list[tuple[int, float]]:
    """Weighted sum of (normalised) scores: ``score(d) = sum_i w_i * norm_i(s_i(d))``.

    Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval",
    ACM TOIS 2023: a convex combination of min-max normalised lexical and
    semantic scores beats RRF once its weight is tuned on a little data, and
    unlike RRF it keeps how much better one document scored than the next.
    Min-max is computed per list over the candidates given (the retrieved
    top-n). A document missing from a list gets 0 from it (the list's minimum
    after normalisation). ``normalise="none"`` uses raw scores, for lists already
    on one scale. Weights usually sum to 1 (``alpha`` and ``1 - alpha``).
    """
    w = _weights(weights, len(score_lists))
    fused: dict[int, float] = {}
    for weight, scores in zip(w, score_lists, strict=True):
        if normalise == "minmax":
            scaled = min_max(scores)
        elif normalise == "none":
            scaled = dict(scores)
        else:
            raise ValueError(f"unknown normalisation {normalise!r}")
        for doc, score in scaled.items():
            fused[doc] = fused.get(doc, 0.0) + weight * score
    return _ranked(fused)


def leaders_first(
    ranked: Sequence[tuple[int, float]],
    group_of: Callable[[int], int | None],
    *,
    depth: int = 3,
    extra: float = 0.1,
) -> list[tuple[int, float]]:
    """Rank groups (pages) by their passages, then put each group's best passage first.

    A group's score is its best passage's score plus ``extra`` times the sum of
    its next ``depth - 1`` passage scores (in list order): a page that several
    passages match outranks a page with one equally good passage, but one
    strong passage still beats many weak ones (scores must be non-negative and
    additive, such as fused RRF scores). The result lists
    the best passage of every group by group score (ties: the group that
    appears first in ``ranked``), then every other passage in its original
    order; scores are the passages' own. ``group_of`` returns None for an id
    that belongs to no group: it is its own group. With ``extra = 0`` groups
    keep the order of their best passage (a "best chunk" page ranking).
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    if extra < 0:
        raise ValueError("extra must not be negative")
    members: dict[object, list[tuple[int, float]]] = {}
    for doc, score in ranked:
        group = group_of(doc)
        key: object = ("id", doc) if group is None else group
        members.setdefault(key, []).append((doc, score))
    order = {key: position for position, key in enumerate(members)}
    group_score = {
        key: items[0][1] + extra * sum(score for _, score in items[1:depth])
        for key, items in members.items()
    }
    keys = sorted(members, key=lambda key: (-group_score[key], order[key]))
    leaders = [members[key][0] for key in keys]
    rest = [item for key in members for item in members[key][1:]]
    position = {doc: i for i, (doc, _) in enumerate(ranked)}
    rest.sort(key=lambda item: position[item[0]])
    return leaders + rest
