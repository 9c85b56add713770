"""Does the answer say what its passages say? (pure logic: no I/O, no model of its own)

A small local model writes fluent answers whose ``[n]`` markers point at the wrong
passage, and sometimes states numbers no passage contains. ``check_answer``
reads the answer sentence by sentence and looks for the passage sentence that
supports each one, in *every* passage, not only the one its marker names:

* **coverage**: the share of the sentence's content terms (weighted by how rare
  they are among the passages' sentences, :class:`~core.evidence.text.LocalIdf`)
  that a span of one to three consecutive passage sentences contains. The window
  lets a claim that joins two neighbouring sentences still match; each extra
  sentence costs ``WINDOW_PENALTY`` so the tightest quote wins a tie.
* **hard terms**: every number, date, time and identifier of the sentence must
  be in the span, or the span does not support it ("52 minutes" is not "47
  minutes", however similar the rest).
* **negation**: a term the sentence negates must be negated in the span, and a
  term the span only negates cannot support the sentence's plain claim.
* **meaning** (when an ``embed`` callable is given): the score becomes the mean
  of the coverage and the rescaled cosine (:func:`support_score`), so a
  paraphrase can pass with few shared words and a one-word swap can fail
  despite many. Hard terms and negation still apply.

A claim that joins facts of two passages ("built in 1874; the outage lasted 47
minutes") is supported by the pair when each passage brings a hard term the
other lacks; it then cites both.

Known limit: neither signal reliably tells a one-detail substitution ("olive
oil" for "whale oil", "by the council" for "by the volunteer group") from a
paraphrase; numbers, dates and identifiers are the details it is sure about.
The figures are in ``tests/answer/test_evidence.py`` (the frozen split).

A supported sentence is cited with the passage(s) that support it (the model's
own marker is kept when it is one of them); an unsupported one loses its
marker, and with ``unsupported="drop"`` the sentence itself. Markers are
renumbered ``[1]``, ``[2]``, ... in order of first use, one per quote, and each
:class:`~core.types.Citation` carries the supporting span as its quote, cut out of
the passage itself.

Sentences that claim nothing are *neutral* (``supported=True``, no marker, not
counted in ``supported_share``): those with no content term left once stop words
and words about the answer itself are removed ("Based on the documents:", "I
hope this helps!"), a short lead-in ending with a colon ("The steps are:"), an
abstention ("The documents do not say ..."), and a
sentence that only restates the question (its content terms are all question
terms, with no number, date, identifier or negation of its own). The last rule
also makes a bare "yes" answer that repeats a yes/no question neutral: it is
left without a marker rather than risk citing a passage for it.

``find_quotes`` is the quote-first half: the passages' best sentences for the
*question*, and the coverage figures an abstention gate needs.

Thresholds were set on examples written for ``tests/answer/`` (the ``TUNE``
half of a frozen split there), not on any evaluation set: see the constants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Literal

import numpy as np

from core.evidence.text import (
    ANSWER_DROP,
    MARKER,
    QUESTION_DROP,
    LocalIdf,
    Terms,
    analyze,
    marker_numbers,
    split_sentences,
    strip_markers,
)
from core.types import AnswerSentence, Citation, FloatArray, ScoredChunk

__all__ = [
    "MIN_QUESTION_COVERAGE",
    "MIN_SUPPORT",
    "NOT_FOUND",
    "CheckedAnswer",
    "Embed",
    "Quote",
    "QuoteEvidence",
    "check_answer",
    "find_quotes",
    "is_abstention",
    "quote_spans",
    "rank_quotes",
    "select_quotes",
    "support_score",
]

NOT_FOUND = "The documents do not contain an answer to this question."

# texts -> one L2-normalised float32 row per text (a sentence-transformers model's
# ``encode(texts, normalize_embeddings=True)``). Called at most once per check.
Embed = Callable[[list[str]], FloatArray]

# A span supports a sentence from this score on: without embeddings, half of the
# sentence's rarity-weighted content terms. On TUNE (14 paraphrases, 14 one-detail
# changes) 0.45/0.5/0.55 supported 10/10/8 paraphrases and 9/9/8 changes; 0.5 keeps
# the recall. With all-MiniLM-L6-v2 and the floor below: 10 and 7.
MIN_SUPPORT = 0.5
# all-MiniLM-L6-v2 cosines below this count as topic-level similarity, not support.
# On TUNE a floor of 0.4 supported 10 paraphrases / 8 changes, 0.5 supported 10 / 7.
COSINE_FLOOR = 0.5
WINDOW = 3  # a supporting span is one to three consecutive passage sentences
WINDOW_PENALTY = 0.05  # per extra sentence in the span
# The extractive provider's gate, kept as it was: the best passage must hold a
# third of the question's (rarity-weighted) terms for any quote to be worth showing.
MIN_QUESTION_COVERAGE = 0.34
# ... or, with embeddings, one sentence must be this close to the question (not
# tuned on data: a MiniLM question/answer-sentence pair above 0.6 is on topic).
MIN_QUESTION_COSINE = 0.6
_RANK_BONUS = 0.15  # quote ranking: a nudge toward the retriever's first passages
_LONG_SENTENCE = 400  # characters; longer quotes rank lower in proportion


def support_score(coverage: float, cosine: float | None) -> float:
    """The support of a span for a claim: its coverage, or with an embedding the mean
    of the coverage and the cosine rescaled from ``COSINE_FLOOR``..1 to 0..1.

    Averaging (rather than only lifting) lets the embedding veto as well as rescue:
    swapping one word of a passage sentence ("olive oil" for "whale oil") keeps the
    coverage high but lowers the cosine, while a paraphrase has few shared words
    and a high cosine. Both modes share one threshold, ``MIN_SUPPORT``.
    """
    if cosine is None:
        return coverage
    rescaled = min(1.0, max(0.0, (cosine - COSINE_FLOOR) / (1.0 - COSINE_FLOOR)))
    return (coverage + rescaled) / 2.0


# --------------------------------------------------------------------------- passages


@dataclass(frozen=True, slots=True)
class _Sentence:
    passage: int  # index into the passages given
    position: int  # index among the passage's sentences
    row: int  # index among all sentences (embedding row)
    start: int  # span inside the passage text
    end: int
    terms: Terms


@dataclass(frozen=True, slots=True)
class _Index:
    texts: tuple[str, ...]
    passages: tuple[tuple[_Sentence, ...], ...]
    flat: tuple[_Sentence, ...]
    idf: LocalIdf

    def plain(self, s: _Sentence) -> str:
        return _plain(self.texts[s.passage][s.start : s.end])


@lru_cache(maxsize=1024)
def _read(text: str) -> tuple[tuple[int, int, Terms], ...]:
    """A passage's sentence spans and terms (cached: quotes and check read the same)."""
    return tuple((a, b, analyze(text[a:b])) for a, b in split_sentences(text))


def _index(texts: Sequence[str]) -> _Index:
    passages: list[tuple[_Sentence, ...]] = []
    flat: list[_Sentence] = []
    for p, text in enumerate(texts):
        sentences = []
        for position, (a, b, terms) in enumerate(_read(text)):
            s = _Sentence(p, position, len(flat), a, b, terms)
            sentences.append(s)
            flat.append(s)
        passages.append(tuple(sentences))
    idf = LocalIdf.over(s.terms.match for s in flat)
    return _Index(tuple(texts), tuple(passages), tuple(flat), idf)


def _plain(text: str) -> str:
    return " ".join(strip_markers(text).split())


def _embed(embed: Embed, texts: list[str]) -> FloatArray:
    rows = np.asarray(embed(texts), dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] != len(texts):
        raise ValueError(f"embed returned shape {rows.shape} for {len(texts)} texts")
    return rows


# --------------------------------------------------------------------------- support


@dataclass(frozen=True, slots=True)
class _Span:
    """A window of one passage judged against one answer sentence."""

    passage: int
    start: int
    end: int
    score: float
    overlap: frozenset[str]
    pos: frozenset[str]
    neg: frozenset[str]
    cosine: float | None

    def agrees_with(self, claim: Terms) -> bool:
        return _polarity_ok(claim, self.overlap, self.pos, self.neg)


def _polarity_ok(
    claim: Terms, overlap: frozenset[str], pos: frozenset[str], neg: frozenset[str]
) -> bool:
    for t in overlap:
        if t in claim.neg and t not in neg:
            return False  # the answer denies what the span does not deny
        if t in claim.pos and t not in claim.neg and t in neg and t not in pos:
            return False  # the span only ever denies it
    return True


class _Claim:
    """One answer sentence, its terms as bits (a window's evidence is an OR of masks)."""

    __slots__ = ("_coverage", "bits", "hard", "terms", "total", "weights", "words")

    def __init__(self, terms: Terms, idf: LocalIdf) -> None:
        self.terms = terms
        order = sorted(terms.content)
        self.bits = {t: 1 << i for i, t in enumerate(order)}
        self.weights = {t: idf.weight(t) for t in order}
        self.total = sum(self.weights.values())
        self.hard = self.mask(terms.hard)
        # The plain words: neither a hard term nor a piece of one ("inc" of "inc-2291").
        self.words = frozenset(t for t in terms.content if not any(t in h for h in terms.hard))
        self._coverage: dict[int, float] = {}

    def mask(self, terms: frozenset[str]) -> int:
        m = 0
        for t in self.terms.content & terms:
            m |= self.bits[t]
        return m

    def overlap(self, mask: int) -> frozenset[str]:
        return frozenset(t for t, bit in self.bits.items() if mask & bit)

    def coverage(self, mask: int) -> float:
        """The rarity-weighted share of the claim's terms in ``mask``."""
        found = self._coverage.get(mask)
        if found is None:
            found = sum(w for t, w in self.weights.items() if mask & self.bits[t]) / self.total
            self._coverage[mask] = found
        return found


def _passage_spans(
    claim: _Claim, sentences: tuple[_Sentence, ...], cosines: FloatArray | None, heading: int = 0
) -> tuple[_Span | None, _Span | None]:
    """The passage's best valid span and its best span by score alone.

    ``heading``: the claim's numbers and identifiers in the passage's heading
    path. One there holds for every sentence under it ("Incident INC-2291 >
    Detection" covers "Priya Raman acted as incident commander"), so it counts as
    found in any window that holds some of the claim; the quote is still the
    window's own sentences.
    """
    masks = [claim.mask(s.terms.match) for s in sentences]
    if cosines is None and not any(masks):
        return None, None
    cos = [None if cosines is None else float(cosines[s.row]) for s in sentences]
    windows: list[tuple[float, int, int, int, float | None]] = []  # score, -size, i, mask, cos
    n = len(sentences)
    for i in range(n):
        first = cos[i]
        if not masks[i] and (first is None or first <= COSINE_FLOOR):
            continue  # a window opening on a sentence that adds nothing is dominated
        mask = 0
        cosine: float | None = None
        for j in range(i, min(n, i + WINDOW)):
            c = cos[j]
            adds = bool(masks[j] & ~mask) or (c is not None and (cosine is None or c > cosine))
            mask |= masks[j] | heading
            if c is not None:
                cosine = c if cosine is None else max(cosine, c)
            if adds:  # else: the same evidence as the shorter window, plus a penalty
                score = support_score(claim.coverage(mask), cosine) - WINDOW_PENALTY * (j - i)
                windows.append((score, i - j, i, mask, cosine))
    if not windows:
        return None, None
    windows.sort(key=lambda w: (-w[0], -w[1], w[2]))  # best, then shorter, then earlier

    def span(w: tuple[float, int, int, int, float | None]) -> _Span:
        score, neg_size, i, mask, cosine = w
        window = sentences[i : i - neg_size + 1]
        return _Span(
            window[0].passage,
            window[0].start,
            window[-1].end,
            score,
            claim.overlap(mask),
            frozenset().union(*(s.terms.pos for s in window)),
            frozenset().union(*(s.terms.neg for s in window)),
            cosine,
        )

    loose = span(windows[0])
    for w in windows:
        if not claim.hard & ~(w[3] | heading):  # every hard term found: now the negations
            candidate = loose if w is windows[0] else span(w)
            if candidate.agrees_with(claim.terms):
                return candidate, loose
    return None, loose


def _pair(claim: _Claim, a: _Span, b: _Span) -> tuple[float, bool]:
    """Two passages that each hold part of the claim ("built in 1874; lasted 47 minutes").

    Only hard terms justify a pair: each span must bring a number, date or
    identifier the other lacks, together with a word of the claim the other lacks
    (what that number is about: "outage ... lasted" beside "47 minutes"), and
    each must agree with the claim's negations on its own (otherwise "logs are
    encrypted" would lend "encrypted" to "backups"). A bare figure from another
    passage never completes a claim: "the outage lasted 11 weeks" is not
    supported by an outage in one passage and a delivery time of 11 weeks in
    another.
    """
    hard = claim.terms.hard
    words = claim.words
    overlap = a.overlap | b.overlap
    cosines = [c for c in (a.cosine, b.cosine) if c is not None]
    score = support_score(claim.coverage(claim.mask(overlap)), max(cosines) if cosines else None)
    only_a, only_b = a.overlap - b.overlap, b.overlap - a.overlap
    valid = (
        hard <= overlap
        and bool(only_a & hard)
        and bool(only_b & hard)
        and bool(only_a & words)
        and bool(only_b & words)
        and _polarity_ok(claim.terms, a.overlap, a.pos, a.neg)
        and _polarity_ok(claim.terms, b.overlap, b.pos, b.neg)
    )
    return score - WINDOW_PENALTY, valid


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: Literal["supported", "unsupported", "neutral", "abstention"]
    spans: tuple[_Span, ...] = ()
    score: float = 0.0


def _judge(
    claim: Terms,
    cited: list[int],
    index: _Index,
    cosines: FloatArray | None,
    min_support: float,
    headings: Sequence[frozenset[str]] = (),
) -> _Verdict:
    c = _Claim(claim, index.idf)
    found = [
        _passage_spans(c, sentences, cosines, c.mask(headings[p]) & c.hard if headings else 0)
        for p, sentences in enumerate(index.passages)
    ]
    valid = [best for best, _ in found if best is not None]
    passing = [s for s in valid if s.score >= min_support]
    if passing:
        kept = [s for s in passing if s.passage + 1 in cited]  # the model's choice, if right
        if not kept:
            kept = [max(passing, key=lambda s: (s.score, -s.passage))]
        return _Verdict("supported", tuple(kept), max(s.score for s in kept))
    partial = sorted((w for _, w in found if w is not None), key=lambda s: (-s.score, s.passage))[
        :3
    ]
    pairs = [(_pair(c, a, b), a, b) for a, b in combinations(partial, 2)]
    good = [(score, a, b) for (score, ok), a, b in pairs if ok and score >= min_support]
    if good:
        score, a, b = max(good, key=lambda x: x[0])
        return _Verdict("supported", tuple(sorted((a, b), key=lambda s: s.passage)), score)
    best_score = max((s.score for s in valid), default=0.0)
    return _Verdict("unsupported", (), best_score)


_LEAD_IN = re.compile(r":\s*$")  # "The steps are:" introduces claims, makes none
# A colon-ended sentence with more content than that is a claim that introduces
# an example ("When the count is even, the median is the mean of the two middle
# values:"): it is checked and cited like any other. Before, its marker was lost.
_LEAD_IN_MAX_TERMS = 3


def _lead_in(raw: str, terms: Terms) -> bool:
    return bool(_LEAD_IN.search(strip_markers(raw))) and (
        len(terms.content) <= _LEAD_IN_MAX_TERMS and not terms.hard
    )


def _restates(claim: Terms, question: Terms) -> bool:
    """Only the question's own terms: no number, date, identifier or negation added."""
    return claim.content <= question.content and not claim.hard and not claim.neg


# --------------------------------------------------------------------------- abstention

_SOURCE = r"(?:documents?|passages?|context|sources?|excerpts?|texts?|provided\s+\w+)"
_ABSTAIN = re.compile(
    rf"""
    \b{_SOURCE}\s+(?:\w+\s+){{0,3}}?
        (?:do(?:es)?\s+not|don't|doesn't|did\s+not|didn't|cannot|can't|fail\s+to)\s+
        (?:\w+\s+){{0,2}}?
        (?:contain|include|mention|provide|say|specify|state|answer|cover|address|give
          |describe|explain|have|discuss|tell)
   |\b(?:no|not\s+enough|insufficient)\s+(?:relevant\s+|specific\s+)?
        (?:information|details?|mention|answer)\b.{{0,80}}\b{_SOURCE}
   |\b{_SOURCE}\b.{{0,60}}\b(?:no|not\s+enough|insufficient)\s+(?:relevant\s+)?
        (?:information|details?|mention)\b
   |\bnot\s+(?:mentioned|specified|stated|covered|found|provided|given|described)\s+in\s+
        (?:the\s+|any\s+of\s+the\s+)?{_SOURCE}
   |\bI\s+(?:do\s+not|don't|cannot|can't|could\s+not|couldn't|am\s+unable\s+to)\s+
        (?:\w+\s+)?(?:know|find|answer|determine|tell)\b
   |\b(?:cannot|can't|unable\s+to)\s+(?:be\s+)?(?:answer|determin|tell)\w*
    """,
    re.IGNORECASE | re.VERBOSE,
)


def is_abstention(sentence: str) -> bool:
    """Whether a sentence says the documents hold no answer (in any common wording)."""
    text = " ".join(strip_markers(sentence).replace("’", "'").split())
    return text.startswith(NOT_FOUND[:-1]) or _ABSTAIN.search(text) is not None


# --------------------------------------------------------------------------- check


@dataclass(frozen=True, slots=True)
class CheckedAnswer:
    """An answer after the evidence check.

    ``text`` carries corrected markers; each marker ``[n]`` is the citation whose
    ``marker`` is ``n`` and whose quote supports the sentence. ``sentences`` index
    ``text``. ``supported_share`` is the share of claim sentences (not neutral
    ones) found supported, dropped ones included; 0.0 when nothing was claimed.
    ``abstained``: the answer says the documents hold no answer and claims
    nothing they support (no citations then). ``dropped``: the sentences removed
    by ``unsupported="drop"``. ``claims``: how many sentences claim something;
    0 when the answer only restates the question or talks about itself.
    """

    text: str
    sentences: tuple[AnswerSentence, ...]
    citations: tuple[Citation, ...]
    supported_share: float
    abstained: bool = False
    dropped: tuple[str, ...] = ()
    claims: int = 0  # sentences that claim something (supported or not)


def check_answer(
    question: str,
    answer_text: str,
    passages: Sequence[ScoredChunk],
    *,
    embed: Embed | None = None,
    min_support: float = MIN_SUPPORT,
    unsupported: Literal["mark", "drop"] = "mark",
) -> CheckedAnswer:
    """Check each sentence of ``answer_text`` against ``passages`` and fix its markers.

    ``passages`` are in the order the model saw them (its marker ``[n]`` named
    ``passages[n - 1]``). ``embed``, when given, is called once with the claim
    sentences followed by every passage sentence. See the module docstring for
    the rules; a citation's ``score`` is the passage's retrieval score and the
    support score is on the ``AnswerSentence``.
    """
    index = _index([p.chunk.text for p in passages])
    headings = [analyze(" ".join(p.chunk.heading_path)).match for p in passages]
    spans = split_sentences(answer_text)
    q_terms = analyze(question, ANSWER_DROP)
    raw = [answer_text[a:b] for a, b in spans]
    claims = [analyze(r, ANSWER_DROP) for r in raw]
    abstains = [is_abstention(r) for r in raw]
    to_check = [
        i
        for i, t in enumerate(claims)
        if t.content and not abstains[i] and not _restates(t, q_terms) and not _lead_in(raw[i], t)
    ]

    cosines: FloatArray | None = None
    row_of = {i: k for k, i in enumerate(to_check)}
    if embed is not None and to_check and index.flat:
        texts = [_plain(raw[i]) for i in to_check] + [index.plain(s) for s in index.flat]
        vectors = _embed(embed, texts)
        cosines = vectors[: len(to_check)] @ vectors[len(to_check) :].T

    verdicts: list[_Verdict] = []
    for i, terms in enumerate(claims):
        if abstains[i]:
            verdicts.append(_Verdict("abstention"))
        elif i not in row_of:
            verdicts.append(_Verdict("neutral"))
        else:
            row = None if cosines is None else cosines[row_of[i]]
            verdicts.append(
                _judge(terms, marker_numbers(raw[i]), index, row, min_support, headings)
            )

    claimed = [v for v in verdicts if v.kind in ("supported", "unsupported")]
    n_supported = sum(1 for v in claimed if v.kind == "supported")
    share = n_supported / len(claimed) if claimed else 0.0
    abstained = any(abstains) and n_supported == 0

    # A marker is its passage's number, as the model and the quotes shown first
    # number them, so [n] means one passage everywhere in a turn. One citation per
    # (passage, quote span), in order of first use: a passage that supports two
    # sentences with two different sentences of its own is cited twice, both [n].
    markers: dict[tuple[int, int, int], int] = {}
    sentence_markers: list[tuple[int, ...]] = []
    for v in verdicts:
        used: list[int] = []
        if v.kind == "supported" and not abstained:
            for s in v.spans:
                n = markers.setdefault((s.passage, s.start, s.end), s.passage + 1)
                if n not in used:
                    used.append(n)
        sentence_markers.append(tuple(used))
    citations = tuple(
        Citation.of(n, passages[p].chunk, passages[p].score, quote_span=(a, b))
        for (p, a, b), n in markers.items()
    )

    drop = [unsupported == "drop" and v.kind == "unsupported" for v in verdicts]
    rewritten = [_with_markers(r, m) for r, m in zip(raw, sentence_markers, strict=True)]
    text, placed = _rebuild(answer_text, spans, rewritten, drop)
    sentences = tuple(
        AnswerSentence(
            text=rewritten[i],
            start=start,
            end=start + len(rewritten[i]),
            supported=verdicts[i].kind != "unsupported",
            markers=sentence_markers[i],
            score=round(verdicts[i].score, 4),
        )
        for i, start in placed
    )
    dropped = tuple(_plain(raw[i]) for i, d in enumerate(drop) if d)
    return CheckedAnswer(text, sentences, citations, share, abstained, dropped, len(claimed))


_AFTER_PUNCT = re.compile(r"[.!?…][\"'”’)]*(?:[ \t]*" + MARKER.pattern + r")+\s*$")
_TAIL = re.compile(r"[.!?…:;]+[\"'”’)]*$")


def _with_markers(sentence: str, markers: Sequence[int]) -> str:
    """The sentence with its markers replaced by ``markers``, where the model put them."""
    body = strip_markers(sentence).strip()
    if not markers:
        return body
    tag = "".join(f"[{n}]" for n in markers)
    tail = _TAIL.search(body)
    if tail is None or _AFTER_PUNCT.search(sentence):
        return f"{body} {tag}"
    return f"{body[: tail.start()]} {tag}{body[tail.start() :]}"


_LINE_PREFIX = re.compile(
    r"[ \t]*(?:(?:[-*+•·‣▪◦–—]|\d{1,3}[.)]|[a-z][.)]|[A-Z]\)|\(\w{1,4}\)|#{1,6}|>)[ \t]+)?"
)
_BLANK_LINES = re.compile(r"(?:[ \t]*\n){3,}")


def _rebuild(
    text: str, spans: list[tuple[int, int]], rewritten: list[str], drop: list[bool]
) -> tuple[str, list[tuple[int, int]]]:
    """The answer with sentences rewritten or dropped; (sentence, new start) pairs."""
    parts: list[str] = []
    length = 0
    placed: list[tuple[int, int]] = []
    gap = ""
    prev = 0
    for i, (a, b) in enumerate(spans):
        before = text[prev:a]
        prev = b
        if drop[i]:
            line_start = text.rfind("\n", 0, a) + 1
            line_end = text.find("\n", b)
            rest = text[b : len(text) if line_end < 0 else line_end]
            prefix = text[line_start:a]
            if (
                line_start >= a - len(before)
                and _LINE_PREFIX.fullmatch(prefix)
                and not rest.strip()
            ):
                # The sentence is its line (a list item): the line goes, newline too.
                before = before[: len(before) - len(prefix)]
                if before.endswith("\n"):
                    before = before[:-1]
            gap += before
            continue
        gap += before
        piece = _tidy(gap, first=not parts)
        parts.append(piece)
        length += len(piece)
        placed.append((i, length))
        parts.append(rewritten[i])
        length += len(rewritten[i])
        gap = ""
    parts.append(_tidy(gap + text[prev:], first=not parts, last=True))
    return "".join(parts), placed


def _tidy(gap: str, *, first: bool, last: bool = False) -> str:
    if first:
        gap = gap.lstrip()
    if last:
        return gap.rstrip()
    if "\n" not in gap:
        return " " if gap and gap.isspace() else gap
    gap = _BLANK_LINES.sub("\n\n", gap)
    head, _, line = gap.rpartition("\n")
    if line.strip():
        line = line.rstrip() + " "  # "- " before the next item, spaces collapsed
    return f"{head}\n{line}"


# --------------------------------------------------------------------------- quotes


@dataclass(frozen=True, slots=True)
class Quote:
    """A passage sentence chosen for the question: ``texts[passage][start:end]``."""

    passage: int
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class QuoteEvidence:
    """How well the passages cover the question (for an abstention gate).

    Coverages are rarity-weighted shares of the question's content terms.
    ``missing_terms``: question terms that no passage contains, the usual reason
    the evidence is missing.
    """

    question_terms: tuple[str, ...]
    passage_coverage: tuple[float, ...]  # per passage, in the order given
    best_coverage: float
    best_sentence_coverage: float
    best_cosine: float | None  # question vs best passage sentence; None without embed
    missing_terms: tuple[str, ...]
    sufficient: bool  # the gate ``find_quotes`` applied


# A quote runs on for up to this many sentences after its best one, within this
# many characters (the length the window shows before cutting a quote). Chosen on
# the Python docs set (0-3 followers x 300/400/600 characters: 2 within 400 puts the
# answer inside a quote for 20 of 51 questions instead of 13; 3 gains two more
# with longer quotes), checked on the frozen handbook set (14 -> 18 of 46):
# tests/bench/quotes.py.
QUOTE_FOLLOWERS = 2
QUOTE_SPAN_CHARS = 400
# Quotes scoring below this share of the best quote are left out (set by reasoning,
# not tuned: half as good as the best is no longer evidence for the same answer).
QUOTE_FLOOR = 0.5
_SENTENCE_END = re.compile(r"[.!?:;…][\"'”’)\]]*\s*(?:\[\d+\]\s*)*$")


def _heading_like(index: _Index, s: _Sentence) -> bool:
    """A short line without sentence punctuation: a title, not a statement."""
    text = index.plain(s)
    return len(text.split()) < 8 and not _SENTENCE_END.search(text)


def rank_quotes(
    question: str,
    texts: Sequence[str],
    *,
    max_quotes: int = 3,
    embed: Embed | None = None,
    min_coverage: float = MIN_QUESTION_COVERAGE,
    min_cosine: float = MIN_QUESTION_COSINE,
) -> tuple[tuple[Quote, ...], QuoteEvidence]:
    """The best sentences of ``texts`` for ``question``, in passage and reading order.

    A sentence scores by the question terms it holds (weighted by rarity among
    the passages' sentences; lifted by its cosine to the question when ``embed``
    is given), less for very long sentences, plus a small bonus for earlier
    passages. No quote is returned unless the best passage covers
    ``min_coverage`` of the question (or, with ``embed``, a sentence reaches
    ``min_cosine``): quoting noise is worse than saying the evidence is missing.
    """
    q = analyze(question, QUESTION_DROP)
    terms = sorted(q.content)
    index = _index(texts)
    if not terms or not index.flat:
        empty = QuoteEvidence(tuple(terms), (0.0,) * len(texts), 0.0, 0.0, None, (), False)
        return (), empty
    weights = {t: index.idf.weight(t) for t in terms}
    total = sum(weights.values())
    q_set = frozenset(terms)

    def coverage(found: frozenset[str]) -> float:
        return sum(weights[t] for t in q_set & found) / total

    passage_cov = tuple(
        coverage(frozenset().union(*(s.terms.match for s in sentences)))
        for sentences in index.passages
    )
    cosines: FloatArray | None = None
    if embed is not None:
        vectors = _embed(embed, [_plain(question)] + [index.plain(s) for s in index.flat])
        cosines = vectors[1:] @ vectors[0]
    candidates: list[tuple[float, _Sentence]] = []
    best_sentence = 0.0
    for s in index.flat:
        cov = coverage(s.terms.match)
        best_sentence = max(best_sentence, cov)
        cos = None if cosines is None else float(cosines[s.row])
        if cov <= 0.0 and (cos is None or cos <= COSINE_FLOOR):
            continue
        length_penalty = 1.0 + max(0, (s.end - s.start) - _LONG_SENTENCE) / _LONG_SENTENCE
        score = support_score(cov, cos) / length_penalty + _RANK_BONUS / (1 + s.passage)
        candidates.append((score, s))
    best_cos = None if cosines is None else float(np.max(cosines))
    best_cov = max(passage_cov)
    sufficient = best_cov >= min_coverage or (best_cos is not None and best_cos >= min_cosine)
    seen = frozenset().union(*(s.terms.match for s in index.flat))
    evidence = QuoteEvidence(
        question_terms=tuple(terms),
        passage_coverage=passage_cov,
        best_coverage=best_cov,
        best_sentence_coverage=best_sentence,
        best_cosine=best_cos,
        missing_terms=tuple(t for t in terms if t not in seen),
        sufficient=sufficient and bool(candidates),
    )
    if not evidence.sufficient:
        return (), evidence
    candidates.sort(key=lambda x: (-x[0], x[1].row))
    # A quote far weaker than the best one is noise next to it, and a heading
    # ("Working hours") names a topic without saying anything about it.
    floor = QUOTE_FLOOR * candidates[0][0]
    kept = [c for c in candidates if c[0] >= floor and not _heading_like(index, c[1])]
    chosen = sorted((s for _, s in (kept or candidates)[:max_quotes]), key=lambda s: s.row)
    scores = {s.row: score for score, s in candidates}
    return tuple(Quote(s.passage, s.start, s.end, scores[s.row]) for s in chosen), evidence


def find_quotes(
    question: str,
    passages: Sequence[ScoredChunk],
    *,
    max_quotes: int = 3,
    embed: Embed | None = None,
    min_coverage: float = MIN_QUESTION_COVERAGE,
    min_cosine: float = MIN_QUESTION_COSINE,
    followers: int = QUOTE_FOLLOWERS,
    span_chars: int = QUOTE_SPAN_CHARS,
) -> tuple[tuple[Citation, ...], QuoteEvidence]:
    """Quote first: citations of the best sentences for ``question``, and the figures.

    One citation per passage, marker ``n`` for ``passages[n - 1]``, in marker
    order; the spans are :func:`quote_spans`'. ``()`` when the evidence is missing
    (``QuoteEvidence.sufficient`` is false).
    """
    spans, evidence = quote_spans(
        question,
        [p.chunk.text for p in passages],
        max_quotes=max_quotes,
        embed=embed,
        min_coverage=min_coverage,
        min_cosine=min_cosine,
        followers=followers,
        span_chars=span_chars,
    )
    citations = tuple(
        Citation.of(p + 1, passages[p].chunk, passages[p].score, (start, end))
        for p, start, end in spans
    )
    return citations, evidence


def quote_spans(
    question: str,
    texts: Sequence[str],
    *,
    max_quotes: int = 3,
    embed: Embed | None = None,
    min_coverage: float = MIN_QUESTION_COVERAGE,
    min_cosine: float = MIN_QUESTION_COSINE,
    followers: int = QUOTE_FOLLOWERS,
    span_chars: int = QUOTE_SPAN_CHARS,
) -> tuple[tuple[tuple[int, int, int], ...], QuoteEvidence]:
    """The quotes as ``(passage index, start, end)`` spans of ``texts``, in passage order.

    At most one span per passage: when several chosen sentences come from one
    passage, the best run of consecutive ones (a quote is one contiguous span),
    followed by up to ``followers`` next sentences within ``span_chars``.
    """
    quotes, evidence = rank_quotes(
        question,
        texts,
        max_quotes=max_quotes,
        embed=embed,
        min_coverage=min_coverage,
        min_cosine=min_cosine,
    )
    by_passage: dict[int, list[list[Quote]]] = {}
    for q in quotes:
        runs = by_passage.setdefault(q.passage, [])
        text = texts[q.passage]
        if runs and not text[runs[-1][-1].end : q.start].strip():
            runs[-1].append(q)  # the next sentence of the same run
        else:
            runs.append([q])
    spans = []
    for p, runs in sorted(by_passage.items()):
        run = max(runs, key=lambda r: max(q.score for q in r))
        text = texts[p]
        start, end = _with_followers(text, run[0].start, run[-1].end, followers, span_chars)
        spans.append((p, start, end))
    return tuple(spans), evidence


def _with_followers(
    text: str, start: int, end: int, followers: int, span_chars: int
) -> tuple[int, int]:
    """The quote ``text[start:end]`` and up to ``followers`` sentences after it,
    while the whole stays within ``span_chars``.

    The sentence that matches the question best often names the topic and the
    next one states the fact ("X reads the stream. Its default size is 4 KiB.").
    """
    spans = split_sentences(text)
    after = [b for a, b in spans if a >= end]
    for b in after[:followers]:
        if b - start > span_chars:
            break
        end = b
    return start, end


def select_quotes(
    question: str,
    passages: Sequence[ScoredChunk],
    *,
    max_quotes: int = 3,
    embed: Embed | None = None,
) -> tuple[Citation, ...]:
    """The citations of :func:`find_quotes` without its figures."""
    return find_quotes(question, passages, max_quotes=max_quotes, embed=embed)[0]
