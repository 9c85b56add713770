"""``archivist eval retrieval``: retrieval quality and latency on a question set.

The question file is JSON lines with ``id``, ``question``, ``relevant`` (pages
relative to the corpus folder) and ``kind``, as in the shared evaluation set.
Relevance is page-level: a retrieved chunk is a hit when its source file,
relative to the corpus folder, is one of the relevant pages. Unanswerable
questions (empty ``relevant``) are not scored for retrieval.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import UsageError
from core.retrieval.metrics import mrr_at_k, ndcg_at_k, page_of, percentile, recall_at_k
from core.types import ScoredChunk

MODES = ("bm25", "vector", "rrf", "convex", "rrf+rerank", "convex+rerank")


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    id: str
    question: str
    relevant: frozenset[str]
    kind: str
    answer_contains: tuple[str, ...] = ()


class Searcher(Protocol):
    async def search(
        self, text: str, *, k: int = 10, fusion: str | None = None
    ) -> tuple[list[ScoredChunk], dict[str, float]]: ...


def load_questions(path: Path) -> list[EvalQuestion]:
    if not path.is_file():
        raise UsageError(f"the questions file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(
                EvalQuestion(
                    id=str(row.get("id", n)),
                    question=str(row["question"]),
                    relevant=frozenset(page_of(p) for p in row.get("relevant", [])),
                    kind=str(row.get("kind", "")),
                    answer_contains=tuple(row.get("answer_contains", [])),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}:{n}: not a question object ({exc})") from exc
    return out


def corpus_page(source: str, corpus: Path) -> str:
    """A passage's page as a question file names it: its source relative to the
    (resolved) ``corpus`` folder, without an anchor; the source itself when it
    lies outside the corpus."""
    try:
        rel = Path(source).resolve().relative_to(corpus)
    except ValueError:
        rel = Path(source)
    return page_of(rel.as_posix())


def _pages(chunks: Sequence[ScoredChunk], corpus: Path) -> list[str]:
    return [corpus_page(c.chunk.source, corpus) for c in chunks]


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2)}


async def evaluate_retrieval(
    searcher: Searcher,
    questions: Sequence[EvalQuestion],
    corpus: Path,
    modes: Sequence[str] = MODES,
    k: int = 10,
) -> dict[str, Any]:
    """Run every answerable question in every mode; ``corpus`` must be resolved."""
    scored = [q for q in questions if q.relevant]
    results: dict[str, Any] = {}
    for mode in modes:
        per_q: list[dict[str, float]] = []
        by_kind: dict[str, list[float]] = {}
        stage_ms: dict[str, list[float]] = {}
        wall: list[float] = []
        for q in scored:
            t0 = time.perf_counter()
            # Plain modes never rerank, even when a reranker is configured.
            fusion = mode if mode.endswith("+rerank") else f"{mode}-rerank"
            chunks, timings = await searcher.search(q.question, k=k, fusion=fusion)
            wall.append((time.perf_counter() - t0) * 1000)
            for stage, ms in timings.items():
                stage_ms.setdefault(stage, []).append(ms)
            pages = _pages(chunks, corpus)
            rel = set(q.relevant)
            m = {
                "recall@5": recall_at_k(pages, rel, 5),
                "recall@10": recall_at_k(pages, rel, 10),
                "mrr@10": mrr_at_k(pages, rel, 10),
                "ndcg@10": ndcg_at_k(pages, rel, 10),
            }
            per_q.append(m)
            by_kind.setdefault(q.kind, []).append(m["ndcg@10"])
        results[mode] = {
            **{
                key: round(statistics.fmean(m[key] for m in per_q), 4) if per_q else 0.0
                for key in ("recall@5", "recall@10", "mrr@10", "ndcg@10")
            },
            "ndcg@10_by_kind": {
                kind: round(statistics.fmean(v), 4) for kind, v in sorted(by_kind.items())
            },
            "latency_ms": {"total": _summary(wall)}
            | {stage: _summary(v) for stage, v in sorted(stage_ms.items())},
        }
    return {
        "questions": len(questions),
        "scored": len(scored),
        "k": k,
        "modes": results,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['scored']} answerable questions of {report['questions']}; k = {report['k']}",
        "",
        "| retrieval | nDCG@10 | Recall@5 | Recall@10 | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in report["modes"].items():
        lat = r["latency_ms"]["total"]
        lines.append(
            f"| {mode} | {r['ndcg@10']:.3f} | {r['recall@5']:.3f} | {r['recall@10']:.3f} | "
            f"{r['mrr@10']:.3f} | {lat['p50']:.1f} | {lat['p95']:.1f} |"
        )
    kinds = sorted({k for r in report["modes"].values() for k in r["ndcg@10_by_kind"]})
    if kinds:
        lines += ["", "nDCG@10 by kind:", "| retrieval | " + " | ".join(kinds) + " |"]
        lines.append("|---|" + "---|" * len(kinds))
        for mode, r in report["modes"].items():
            cells = " | ".join(f"{r['ndcg@10_by_kind'].get(k, 0):.3f}" for k in kinds)
            lines.append(f"| {mode} | {cells} |")
    return "\n".join(lines)
