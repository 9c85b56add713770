"""The cross-encoder stage in Services (a tiny random cross-encoder: its cost, not its sense)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.services import Services
from tests.support.cross_encoder import build_cross_encoder


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reranker")
    build_cross_encoder(folder)
    return folder


async def test_reranker_scores_candidates_and_reports_every_score(
    home: Path, corpus: Path, tiny_reranker: Path
) -> None:
    (home / "archivist.toml").write_text(
        f'[ingest]\nembed = false\n[retrieval]\nreranker = "{tiny_reranker}"\n'
        "top_k = 3\nrerank_candidates = 10\n"
    )
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        chunks, timings = await services.search("lighthouse keeper lamp", k=3)
        assert "rerank" in timings
        assert 0 < len(chunks) <= 3
        assert all(c.rerank_score is not None for c in chunks)
        scores = [c.rerank_score for c in chunks]
        assert scores == sorted(scores, reverse=True)
        plain, plain_t = await services.search("lighthouse keeper lamp", k=3, fusion="bm25-rerank")
        assert "rerank" not in plain_t and all(c.rerank_score is None for c in plain)
        answer = await services.ask("Who kept the lighthouse lamp?")
        assert "rerank" in answer.timings_ms
        health = {c.name: c for c in (await services.health()).components}
        assert health["reranker"].status == "ok"


async def test_missing_reranker_model_is_visible_and_search_still_works(
    home: Path, corpus: Path, tmp_path: Path
) -> None:
    (home / "archivist.toml").write_text(
        f'[ingest]\nembed = false\n[retrieval]\nreranker = "{tmp_path / "nope"}"\n'
    )
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        answer = await services.ask("When was the lighthouse built?")
        assert "1874" in answer.text
        health = {c.name: c for c in (await services.health()).components}
        assert health["reranker"].status == "degraded"
