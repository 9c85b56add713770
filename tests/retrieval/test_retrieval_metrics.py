"""Page-level metrics as the evaluation README defines them, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.retrieval.metrics import mrr_at_k, ndcg_at_k, page_of, percentile, recall_at_k

RANKED = ["a.html", "x.html", "a.html", "b.html", "y.html", "c.html"]
RELEVANT = {"a.html", "b.html", "c.html"}


def test_recall_counts_distinct_relevant_pages_in_the_top_k() -> None:
    assert recall_at_k(RANKED, RELEVANT, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(1.0)


def test_mrr_is_the_reciprocal_rank_of_the_first_hit() -> None:
    assert mrr_at_k(["x", "y", "b.html"], RELEVANT, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b.html"], RELEVANT, 2) == 0.0
    assert mrr_at_k(RANKED, RELEVANT, 10) == 1.0


def test_ndcg_credits_only_the_first_chunk_of_each_relevant_page() -> None:
    # Gains at ranks 1 (a), 4 (b), 6 (c); the repeat of a at rank 3 earns nothing.
    dcg = 1 / math.log2(2) + 1 / math.log2(5) + 1 / math.log2(7)
    ideal = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx(dcg / ideal)


def test_ndcg_ideal_has_at_most_k_hits() -> None:
    # Three relevant pages, k = 2: the ideal is two hits; a and b at ranks 1-2 is perfect.
    assert ndcg_at_k(["a.html", "b.html", "c.html"], RELEVANT, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["b.html", "a.html"], {"a.html"}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["x", "y"], {"a.html"}, 10) == 0.0


def test_unanswerable_questions_are_not_scored() -> None:
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        with pytest.raises(ValueError):
            metric(RANKED, set(), 5)
        with pytest.raises(ValueError):
            metric(RANKED, RELEVANT, 0)


def test_page_of_strips_the_anchor() -> None:
    assert page_of("library/functools.html#functools.lru_cache") == "library/functools.html"
    assert page_of("library/functools.html") == "library/functools.html"


def test_percentile_interpolates_like_numpy() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 50) == 35.0
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 40) == pytest.approx(29.0)
    for q in (5, 33.3, 95, 99):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
