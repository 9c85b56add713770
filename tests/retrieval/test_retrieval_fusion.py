"""Fusion functions against hand-computed values."""

from __future__ import annotations

import pytest

from core.retrieval.fusion import (
    convex_combination,
    leaders_first,
    min_max,
    reciprocal_rank_fusion,
)


def test_rrf_sums_reciprocal_ranks_with_k() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)


def test_rrf_orders_by_score_then_id() -> None:
    # 1 and 3 tie (1/61 + 1/62 each); 2 only once.
    assert [d for d, _ in reciprocal_rank_fusion([[3, 1, 2], [1, 3]], k=60)] == [1, 3, 2]


def test_rrf_agreement_beats_a_single_first_place() -> None:
    fused = reciprocal_rank_fusion([[7, 5], [9, 5], [8, 5]], k=60)
    assert fused[0][0] == 5


def test_rrf_weights_scale_each_list_and_duplicates_count_once() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 1, 2], [2]], k=0, weights=[2.0, 0.5]))
    assert fused[1] == pytest.approx(2.0)
    assert fused[2] == pytest.approx(2.0 / 3 + 0.5)
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], weights=[1.0, 2.0])


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_min_max_scales_to_unit_interval_and_equal_scores_to_one() -> None:
    assert min_max({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert min_max({1: 5.0, 2: 5.0}) == {1: 1.0, 2: 1.0}
    assert min_max({}) == {}


def test_convex_combination_of_minmax_scores() -> None:
    bm25 = {1: 10.0, 2: 5.0, 3: 0.0}  # -> 1.0, 0.5, 0.0
    cosine = {2: 0.9, 4: 0.5}  # -> 1.0, 0.0
    fused = convex_combination([bm25, cosine], weights=[0.4, 0.6])
    assert fused == [
        (2, pytest.approx(0.4 * 0.5 + 0.6 * 1.0)),
        (1, pytest.approx(0.4)),
        (3, 0.0),
        (4, 0.0),
    ]


def test_convex_combination_without_normalisation_uses_raw_scores() -> None:
    fused = convex_combination([{1: 0.2, 2: 0.8}, {1: 1.0}], weights=[1.0, 1.0], normalise="none")
    assert fused == [(1, pytest.approx(1.2)), (2, pytest.approx(0.8))]
    with pytest.raises(ValueError):
        convex_combination([{1: 1.0}], weights=[1.0], normalise="zscore")  # type: ignore[arg-type]


PAGE = {1: 10, 2: 20, 3: 20, 4: 30, 5: 20, 6: 10}.get


def test_leaders_first_puts_each_pages_best_passage_first_then_the_rest_in_order() -> None:
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6), (5, 0.5), (6, 0.4)]
    # extra 0: pages keep the order of their best passage (10, 20, 30).
    assert [d for d, _ in leaders_first(ranked, PAGE, extra=0.0)] == [1, 2, 4, 3, 5, 6]


def test_leaders_first_lets_a_page_with_several_matches_overtake() -> None:
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6), (5, 0.5), (6, 0.4)]
    # Page 20: 0.8 + 0.5 * (0.7 + 0.5) = 1.4; page 10: 0.9 + 0.5 * 0.4 = 1.1; page 30: 0.6.
    out = leaders_first(ranked, PAGE, depth=3, extra=0.5)
    assert [d for d, _ in out] == [2, 1, 4, 3, 5, 6]
    assert dict(out) == dict(ranked)  # passages keep their own scores


def test_leaders_first_depth_limits_the_passages_that_count() -> None:
    ranked = [(1, 1.0), (2, 0.6), (3, 0.5), (5, 0.5)]
    # depth 2: page 20 = 0.6 + 1.0 * 0.5 = 1.1 > 1.0; depth 1: only best passages count.
    assert [d for d, _ in leaders_first(ranked, PAGE, depth=2, extra=1.0)][:2] == [2, 1]
    assert [d for d, _ in leaders_first(ranked, PAGE, depth=1, extra=1.0)][:2] == [1, 2]


def test_leaders_first_ties_keep_list_order_and_ungrouped_ids_stand_alone() -> None:
    ranked = [(7, 0.5), (8, 0.5), (9, 0.5)]
    assert [d for d, _ in leaders_first(ranked, lambda _: None, extra=1.0)] == [7, 8, 9]
    assert leaders_first([], PAGE) == []


def test_leaders_first_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="depth"):
        leaders_first([(1, 1.0)], PAGE, depth=0)
    with pytest.raises(ValueError, match="extra"):
        leaders_first([(1, 1.0)], PAGE, extra=-0.1)
