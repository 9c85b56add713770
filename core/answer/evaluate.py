"""``archivist eval answers``: answer quality, honesty and latency on a question set.

The question file is the one ``eval retrieval`` reads (JSON lines with
``question``, ``answer_contains``, ``kind``; empty ``answer_contains`` marks an
unanswerable question). For each question:

* correct: an answerable question's answer contains every ``answer_contains``
  string (case-insensitive); an unanswerable one's answer says plainly that the
  documents do not contain it (``Answer.abstained``);
* false abstention: an answerable question answered with "not in the documents";
* citation precision: a correct answer whose cited quotes (the exact supporting
  sentences) contain every answer string, over all correct answers;
* quotes: the same containment test on the quote-first sentences alone;
* first token: the model's first token when a model ran, else the quotes' time;
  total: the whole ask;
* relevant page read: an answerable question for which a passage of one of its
  ``relevant`` pages was among those retrieved for the answer (what "Why this
  answer?" lists), over all answerable questions; answer in passages: the same
  for a retrieved passage whose text holds every ``answer_contains`` string (no
  corpus folder needed). A wrong answer or a false abstention without them is a
  retrieval miss; with them, a reading miss.

Everything is reported overall, per kind and per provider. Each question's row
also gives the answer's notice (why it abstained or fell back to quotes) and the
pages it read and cited, relative to the corpus folder.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.evaluation import EvalQuestion, corpus_page
from core.retrieval.metrics import percentile
from core.types import Answer, Citation

Ask = Callable[[str], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class AnswerResult:
    id: str
    kind: str
    answerable: bool
    provider: str
    correct: bool
    abstained: bool
    cited_precisely: bool  # meaningful for correct answerable questions
    quotes_contain: bool  # the quote-first sentences hold the answer strings
    first_ms: float
    total_ms: float
    answer: str
    notice: str | None = None
    read: tuple[str, ...] = ()  # pages of the passages retrieved for it, in order
    cited: tuple[str, ...] = ()  # pages of its citations (the quotes when they answer)
    read_relevant: bool | None = None  # None: unanswerable, or no corpus folder given
    answer_read: bool | None = None  # a retrieved passage holds the answer; None: unanswerable

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "provider": self.provider,
            "correct": self.correct,
            "abstained": self.abstained,
            "cited_precisely": self.cited_precisely,
            "quotes_contain": self.quotes_contain,
            "first_ms": round(self.first_ms, 1),
            "total_ms": round(self.total_ms, 1),
            "answer": self.answer,
            "notice": self.notice,
            "read": list(self.read),
            "cited": list(self.cited),
            "read_relevant": self.read_relevant,
            "answer_read": self.answer_read,
        }


def _contains_all(text: str, needles: Sequence[str]) -> bool:
    low = text.lower()
    return all(n.lower() in low for n in needles)


def _evidence(cites: Sequence[Citation]) -> str:
    return "\n".join(c.quote or c.text for c in cites)


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def score_answer(
    q: EvalQuestion, answer: Answer, wall_ms: float, corpus: Path | None = None
) -> AnswerResult:
    """Score one answer; ``corpus`` (resolved) names its pages as the question file does."""
    answerable = bool(q.answer_contains)
    abstained = answer.abstained
    if answerable:
        correct = not abstained and _contains_all(answer.text, q.answer_contains)
        precise = correct and _contains_all(_evidence(answer.citations), q.answer_contains)
        in_quotes = _contains_all(_evidence(answer.quotes), q.answer_contains)
    else:
        correct, precise, in_quotes = abstained, False, False
    timings = answer.timings_ms
    first = timings.get("first_token")
    if first is None:
        first = timings.get("quotes", timings.get("total", wall_ms))
    else:
        first += sum(
            timings.get(k, 0.0)
            for k in ("wait_index", "embed_query", "cache_lookup", "search", "hydrate")
        )
        first += timings.get("rerank", 0.0) + timings.get("quotes", 0.0)
    read: tuple[str, ...] = ()
    cited: tuple[str, ...] = ()
    read_relevant = None
    if corpus is not None:
        read = _unique([corpus_page(sc.chunk.source, corpus) for sc in answer.retrieved])
        shown = answer.citations or answer.quotes
        cited = _unique([corpus_page(c.source, corpus) for c in shown])
        if answerable and q.relevant:
            read_relevant = any(page in q.relevant for page in read)
    return AnswerResult(
        id=q.id,
        kind=q.kind,
        answerable=answerable,
        provider=answer.provider,
        correct=correct,
        abstained=abstained,
        cited_precisely=precise,
        quotes_contain=in_quotes,
        first_ms=first,
        total_ms=timings.get("total", wall_ms),
        answer=answer.text,
        notice=answer.notice,
        read=read,
        cited=cited,
        read_relevant=read_relevant,
        answer_read=(
            any(_contains_all(sc.chunk.text, q.answer_contains) for sc in answer.retrieved)
            if answerable
            else None
        ),
    )


def summarize(results: Sequence[AnswerResult]) -> dict[str, Any]:
    def share(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    correct_answerable = [r for r in answerable if r.correct]
    first = [r.first_ms for r in results]
    total = [r.total_ms for r in results]
    return {
        "questions": len(results),
        "accuracy": share(sum(r.correct for r in results), len(results)),
        "answerable_accuracy": share(len(correct_answerable), len(answerable)),
        "abstention_on_unanswerable": share(
            sum(r.abstained for r in unanswerable), len(unanswerable)
        ),
        "false_abstention": share(sum(r.abstained for r in answerable), len(answerable)),
        "citation_precision": share(
            sum(r.cited_precisely for r in correct_answerable), len(correct_answerable)
        ),
        "quotes_hold_answer": share(sum(r.quotes_contain for r in answerable), len(answerable)),
        "relevant_page_read": share(
            sum(r.read_relevant is True for r in answerable),
            sum(r.read_relevant is not None for r in answerable),
        ),
        "answer_in_passages": share(
            sum(r.answer_read is True for r in answerable), len(answerable)
        ),
        "first_ms": {
            "p50": round(statistics.median(first), 1) if first else 0.0,
            "p95": round(percentile(first, 95), 1) if first else 0.0,
        },
        "total_ms": {
            "p50": round(statistics.median(total), 1) if total else 0.0,
            "p95": round(percentile(total, 95), 1) if total else 0.0,
        },
    }


async def evaluate_answers(
    ask: Ask, questions: Sequence[EvalQuestion], corpus: Path | None = None
) -> dict[str, Any]:
    """Ask every question (one at a time) and score the answers."""
    results: list[AnswerResult] = []
    for q in questions:
        t0 = time.perf_counter()
        answer = await ask(q.question)
        results.append(score_answer(q, answer, (time.perf_counter() - t0) * 1000, corpus))
    by_kind: dict[str, list[AnswerResult]] = {}
    by_provider: dict[str, list[AnswerResult]] = {}
    for r in results:
        by_kind.setdefault(r.kind, []).append(r)
        by_provider.setdefault(r.provider, []).append(r)
    return {
        "overall": summarize(results),
        "by_kind": {k: summarize(v) for k, v in sorted(by_kind.items())},
        "by_provider": {k: summarize(v) for k, v in sorted(by_provider.items())},
        "results": [r.to_json() for r in results],
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_answers_table(report: dict[str, Any]) -> str:
    head = (
        "| group | n | accuracy | abstain (unanswerable) | false abstain | "
        "citation precision | quotes hold answer | relevant page read | first p50 ms | "
        "total p50 ms |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, s: dict[str, Any]) -> str:
        return (
            f"| {name} | {s['questions']} | {_pct(s['accuracy'])} | "
            f"{_pct(s['abstention_on_unanswerable'])} | {_pct(s['false_abstention'])} | "
            f"{_pct(s['citation_precision'])} | {_pct(s['quotes_hold_answer'])} | "
            f"{_pct(s['relevant_page_read'])} | "
            f"{s['first_ms']['p50']:.0f} | {s['total_ms']['p50']:.0f} |"
        )

    lines.append(row("all", report["overall"]))
    for kind, s in report["by_kind"].items():
        lines.append(row(f"kind: {kind}", s))
    for provider, s in report["by_provider"].items():
        lines.append(row(f"provider: {provider}", s))
    return "\n".join(lines)
