"""Should Archivist say "the documents do not contain the answer"?

Two checks, one before generation and one after:

* ``before``: from retrieval evidence alone. When nothing was retrieved, when
  the question names something no document of the knowledge base mentions (a
  word the index has never seen that is not everyday English: a product, a
  tool, an identifier), or when a number, date or identifier of the question
  appears in no retrieved passage, the documents almost surely lack the
  answer: say so and do not call the model.
  Everything else goes to the model, whose answer is then checked.

  Measured on the Python docs set (51 answerable, 9 unanswerable questions):
  term coverage, the question/passage cosine and keyword/vector agreement do
  not separate the two kinds (coverage below 0.34: 9 answerable questions and
  2 unanswerable ones; cosines 0.47-0.74 for the unanswerable, 0.49-0.86 for
  the answerable; agreement ~1 for both), so none of them abstains on its own:
  they are recorded with each ask ("why this answer") and left to the check.
* ``after``: the model's answer, checked sentence by sentence against the
  passages (``core.evidence.support``). An answer none of whose claims the
  passages support is not shown as the answer: the quotes stay the answer, or,
  without quotes, Archivist abstains. It abstains with quotes too when that
  answer names what no passage mentions (``invented_names``). Measured on the
  Python docs set (tuning, 2026-12-01, 0.5B on xllamacpp): abstention on the
  unanswerable questions 5/9 -> 9/9, no correct answer lost; one answerable
  question whose quotes did not hold the answer became an abstention. On the
  frozen handbook set it never fired.

Thresholds are module constants, each with the data it was chosen on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass

from core.evidence.support import QuoteEvidence
from core.evidence.text import analyze
from core.types import Citation, ScoredChunk

# Rarity-weighted share of the question's content terms in the best passage below
# which the evidence is called weak (recorded, not acted on: see above).
LOW_COVERAGE = 0.34
# The model's answer is kept when at least this share of its claims is supported.
# Not tuned on the evaluation sets (set by reasoning: most of the answer must be in
# the passages); tests/bench/answers.py shows its effect.
MIN_SUPPORTED_SHARE = 0.5
# An answer built on passages that cover the question this much less than the
# best passage answers something else (a small model often quotes a neighbouring
# passage): the quotes stay the answer. A share of the best passage's coverage,
# set by reasoning, not tuned.
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
    # Words of the question that no document of the knowledge base uses and that
    # are not everyday English: the names of things the documents never mention.
    unknown_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, float | int | list[str] | None]:
        return {
            "coverage": round(self.coverage, 3),
            "sentence_coverage": round(self.sentence_coverage, 3),
            "top_cosine": None if self.top_cosine is None else round(self.top_cosine, 3),
            "agreement": round(self.agreement, 3),
            "passages": self.passages,
            "missing_constraints": list(self.missing_constraints),
            "unknown_names": list(self.unknown_names),
        }


@dataclass(frozen=True, slots=True)
class GateDecision:
    abstain: bool  # say "the documents do not contain the answer"
    call_model: bool  # worth asking the model (False when the gate is sure)
    reason: str


_VERSION = re.compile(r"\d+(?:\.\d+)+")
_SEPARATORS = re.compile(r"[._]+")
# A fenced code block (to its end, or to the end of a cut-off answer) or a console line.
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)|^[ \t]*(?:>>>|\$) .*$", re.DOTALL | re.MULTILINE)


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


def _offered(term: str, offered: Set[str]) -> bool:
    """``term`` is in the passages as written, or as all its dotted/underscored parts."""
    if term in offered:
        return True
    parts = [p for p in _SEPARATORS.split(term) if p]
    return len(parts) > 1 and all(p in offered for p in parts)


def missing_constraints(question: str, passages: Sequence[ScoredChunk]) -> tuple[str, ...]:
    """The question's numbers, dates and identifiers that no passage offers."""
    return _not_offered({h for h in analyze(question).hard if _is_constraint(h)}, passages)


def _not_offered(wanted: set[str], passages: Sequence[ScoredChunk]) -> tuple[str, ...]:
    """The terms of ``wanted`` that no passage offers, sorted."""
    if not wanted:
        return ()
    offered: set[str] = set()
    for p in passages:
        offered |= analyze(p.chunk.text).match
    return tuple(sorted(t for t in wanted if not _offered(t, offered)))


def naming_passages(
    terms: Sequence[str], candidates: Sequence[ScoredChunk], limit: int
) -> list[ScoredChunk]:
    """Up to ``limit`` of ``candidates``, in their order, each the first that offers
    one of ``terms`` (a passage offering several counts once)."""
    found: list[ScoredChunk] = []
    wanted = list(terms)
    for sc in candidates:
        if not wanted or len(found) >= limit:
            break
        offered = analyze(sc.chunk.text).match
        named = [t for t in wanted if _offered(t, offered)]
        if named:
            found.append(sc)
            wanted = [t for t in wanted if t not in named]
    return found


def invented_names(answer: str, passages: Sequence[ScoredChunk]) -> tuple[str, ...]:
    """Names in a model's answer that no passage offers: identifiers, options,
    dotted and underscored names, file names (not numbers, dates or times).

    Asked only of an answer the evidence check did not support. A small model that
    does not find the answer in the passages answers from what it learnt elsewhere,
    and then names things (an option, a function, a setting) the documents never
    mention: the documents do not hold that answer, and the passages' sentences on
    the same topic would not answer it either.
    """
    # Only what the answer says in prose: an example's code block is full of names
    # the model makes up on purpose (variables, file names).
    prose = _CODE_BLOCK.sub(" ", answer)
    named = {h for h in analyze(prose).hard if _is_constraint(h) and _is_name(h)}
    return _not_offered(named, passages)


def _is_name(term: str) -> bool:
    """A hard term with letters that is more than a word: ``--rebuild``, ``cache_dir``,
    ``os.path``, ``x86_64``. Not a number, a time, a quantity ("47 minutes"), nor a
    plain word (a weekday, a month, a word in a code span: often a placeholder)."""
    return (
        any(c.isalpha() for c in term)
        and not term.isalpha()
        and " " not in term
        and ":" not in term
    )


def features(
    question: str,
    evidence: QuoteEvidence,
    passages: Sequence[ScoredChunk],
    unknown_names: Sequence[str] = (),
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
        unknown_names=tuple(unknown_names),
    )


def before(f: GateFeatures) -> GateDecision:
    """The decision from retrieval evidence, before any model runs."""
    if f.passages == 0:
        return GateDecision(True, False, "nothing was retrieved")
    if f.unknown_names:
        names = ", ".join(f.unknown_names)
        return GateDecision(True, False, f"no document mentions {names}")
    if f.missing_constraints:
        return GateDecision(True, False, "no passage mentions " + ", ".join(f.missing_constraints))
    if f.coverage < LOW_COVERAGE:
        return GateDecision(False, True, "weak evidence: the answer will be checked")
    return GateDecision(False, True, "evidence found")


def after(supported_share: float) -> bool:
    """Whether the model's checked answer may stand as the answer (a share of 0 means
    it made no claim at all)."""
    return supported_share >= MIN_SUPPORTED_SHARE


def off_topic(
    citations: Sequence[Citation],
    passages: Sequence[ScoredChunk],
    evidence: QuoteEvidence,
    question: str = "",
) -> bool:
    """Whether an answer cites only passages that cover the question far worse than the best.

    ``evidence.passage_coverage`` is in the order of ``passages``. A cited passage
    that names what the question names (a number, an identifier) and the best
    passage does not is on the topic however few of the question's other words it
    shares: it is about the very thing asked, the best passage about its neighbours.
    """
    if not citations or not evidence.passage_coverage:
        return False
    position = {p.chunk.id: i for i, p in enumerate(passages)}
    cited_at = [
        position[c.chunk_id]
        for c in citations
        if c.chunk_id in position and position[c.chunk_id] < len(evidence.passage_coverage)
    ]
    if not cited_at:
        return False
    cited = [evidence.passage_coverage[i] for i in cited_at]
    if max(cited) >= OFF_TOPIC_SHARE * evidence.best_coverage:
        return False
    best = max(range(len(evidence.passage_coverage)), key=evidence.passage_coverage.__getitem__)
    asked = {h for h in analyze(question).hard if _is_constraint(h)}
    if asked and best < len(passages):
        best_lacks = set(_not_offered(asked, [passages[best]]))
        cited_lacks = set(_not_offered(asked, [passages[i] for i in cited_at]))
        if best_lacks - cited_lacks:
            return False
    return True
