"""Should Archivist say "the documents do not contain the answer"?

Two checks, one before generation and one after:

* ``before``: from retrieval evidence alone. When the question's rare terms
  are missing from every passage AND the best passage is semantically far
  from the question AND keyword and vector search disagree, the documents
  almost surely lack the answer: say so and do not call the model at all.
  Weaker evidence still goes to the model, whose answer is then checked.
* ``after``: the model's answer, checked sentence by sentence against the
  passages (``core.evidence.support``). An answer none of whose claims the
  passages support is not shown as the answer: the quotes stay the answer, or,
  without quotes, Archivist abstains.

Thresholds are module constants, each with the data it was chosen on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.evidence.support import QuoteEvidence
from core.evidence.text import analyze
from core.types import Citation, ScoredChunk

# Chosen on the Python 3.11 docs questions (shared/eval, 51 answerable + 9
# unanswerable), then checked unchanged on the frozen Debian handbook set
# (tests/eval): see tests/bench/answers.py and the closing note of the change.
# all-MiniLM-L6-v2 cosine of the question to the best retrieved chunk; below this
# the passages are about something else.
FAR_COSINE = 0.35
# Rarity-weighted share of the question's content terms in the best passage;
# below this most of what the question asks about is absent.
LOW_COVERAGE = 0.34
# The model's answer is kept when at least this share of its claims is supported.
MIN_SUPPORTED_SHARE = 0.5
# An answer built on passages that cover the question this much less than the best
# passage answers something else (a small model often quotes a neighbouring
# passage): the quotes stay the answer. A share of the best passage's coverage.
OFF_TOPIC_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class GateFeatures:
    coverage: float  # best passage's share of the question's rare terms
    sentence_coverage: float  # the same for the best sentence window
    top_cosine: float | None  # question vs best chunk (vector search), None without vectors
    agreement: float  # share of the passages that both keyword and vector search found
    passages: int
    # Numbers, dates and identifiers of the question that no passage contains
    # ("the 2019 budget", "version 4.2", "KX-2" when the passages say "KX-3").
    missing_constraints: tuple[str, ...] = ()

    def to_json(self) -> dict[str, float | int | list[str] | None]:
        return {
            "coverage": round(self.coverage, 3),
            "sentence_coverage": round(self.sentence_coverage, 3),
            "top_cosine": None if self.top_cosine is None else round(self.top_cosine, 3),
            "agreement": round(self.agreement, 3),
            "passages": self.passages,
            "missing_constraints": list(self.missing_constraints),
        }


@dataclass(frozen=True, slots=True)
class GateDecision:
    abstain: bool  # say "the documents do not contain the answer"
    call_model: bool  # worth asking the model (False when the gate is sure)
    reason: str


_VERSION = re.compile(r"\d+(?:\.\d+)+")
_SEPARATORS = re.compile(r"[._]+")


def _is_constraint(term: str) -> bool:
    """A hard term that pins the question down and that a passage should repeat.

    Not: a bare small number; a version number (a documentation set rarely
    repeats its own version next to the facts); a one-letter option (``-u``:
    written many ways); a path (a user's own file names are not in the documents).
    """
    if term.isdigit() and len(term) < 3:
        return False
    if _VERSION.fullmatch(term) or "/" in term:
        return False
    return not (term.startswith("-") and len(term.lstrip("-")) < 2)


def _offered(term: str, offered: set[str]) -> bool:
    """``term`` is in the passages as written, or as all its dotted/underscored parts."""
    if term in offered:
        return True
    parts = [p for p in _SEPARATORS.split(term) if p]
    return len(parts) > 1 and all(p in offered for p in parts)


def missing_constraints(question: str, passages: Sequence[ScoredChunk]) -> tuple[str, ...]:
    """The question's numbers, dates and identifiers that no passage offers."""
    wanted = {h for h in analyze(question).hard if _is_constraint(h)}
    if not wanted:
        return ()
    offered: set[str] = set()
    for p in passages:
        offered |= analyze(p.chunk.text).match
    return tuple(sorted(t for t in wanted if not _offered(t, offered)))


def features(
    question: str, evidence: QuoteEvidence, passages: Sequence[ScoredChunk]
) -> GateFeatures:
    cosines = [p.vector_score for p in passages if p.vector_score is not None]
    both = sum(1 for p in passages if p.bm25_rank is not None and p.vector_rank is not None)
    return GateFeatures(
        coverage=evidence.best_coverage,
        sentence_coverage=evidence.best_sentence_coverage,
        top_cosine=max(cosines) if cosines else None,
        agreement=both / len(passages) if passages else 0.0,
        passages=len(passages),
        missing_constraints=missing_constraints(question, passages),
    )


def before(f: GateFeatures) -> GateDecision:
    """The decision from retrieval evidence, before any model runs."""
    if f.passages == 0:
        return GateDecision(True, False, "nothing was retrieved")
    if f.missing_constraints:
        return GateDecision(True, False, "no passage mentions " + ", ".join(f.missing_constraints))
    low_terms = f.coverage < LOW_COVERAGE
    far = f.top_cosine is not None and f.top_cosine < FAR_COSINE
    if low_terms and (far or f.top_cosine is None) and f.agreement == 0.0:
        return GateDecision(True, False, "the passages do not cover the question")
    return GateDecision(False, True, "evidence found")


def after(supported_share: float, has_claims: bool) -> bool:
    """Whether the model's checked answer may stand as the answer."""
    return has_claims and supported_share >= MIN_SUPPORTED_SHARE


def off_topic(
    citations: Sequence[Citation], passages: Sequence[ScoredChunk], evidence: QuoteEvidence
) -> bool:
    """Whether an answer cites only passages that cover the question far worse than the best.

    ``evidence.passage_coverage`` is in the order of ``passages``.
    """
    if not citations or not evidence.passage_coverage:
        return False
    position = {p.chunk.id: i for i, p in enumerate(passages)}
    cited = [
        evidence.passage_coverage[position[c.chunk_id]]
        for c in citations
        if c.chunk_id in position and position[c.chunk_id] < len(evidence.passage_coverage)
    ]
    if not cited:
        return False
    return max(cited) < OFF_TOPIC_SHARE * evidence.best_coverage
