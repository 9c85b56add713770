"""The offline extractive provider: answers by quoting the best passages.

It needs no model, so it is the last resort of the provider chain and the
answer of a fresh install. It picks the sentences that share the most
question terms (weighted by how rare they are among the passages), keeps them
in reading order and cites each with its passage marker. When no passage
covers enough of the question it says so plainly instead of quoting noise.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from core.types import ContextPassage, GenerationRequest

NOT_FOUND = "The documents do not contain an answer to this question."

_WORD = re.compile(r"[^\W_]+(?:[._][^\W_]+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n\s*\n")
_STOP = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours use used using get does tell show explain way python""".split()
)


def _terms(text: str) -> list[str]:
    out: list[str] = []
    for match in _WORD.finditer(text.lower()):
        word = match.group(0)
        out.append(word)
        if "." in word or "_" in word:
            out.extend(p for p in re.split(r"[._]", word) if p)
    return [w for w in out if w not in _STOP and len(w) > 1]


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True, slots=True)
class _Sentence:
    marker: int
    rank: int  # passage rank (0 = best)
    position: int
    text: str
    score: float


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def compose(question: str, passages: Sequence[ContextPassage], max_sentences: int = 3) -> str:
    """The extractive answer text, with [n] markers (a pure function)."""
    q_terms = {_stem(t) for t in _terms(question)}
    if not passages or not q_terms:
        return NOT_FOUND
    # Rarity of each question term across the passages (a local idf).
    passage_terms = [{_stem(t) for t in _terms(p.text)} for p in passages]
    n = len(passages)
    idf = {
        t: math.log(1 + (n + 1) / (1 + sum(1 for s in passage_terms if t in s))) for t in q_terms
    }
    total = sum(idf.values())
    best_cover = max(sum(idf[t] for t in q_terms if t in s) / total for s in passage_terms)
    if best_cover < 0.34:
        return NOT_FOUND

    sentences: list[_Sentence] = []
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(split_sentences(passage.text)):
            s_terms = {_stem(t) for t in _terms(sentence)}
            overlap = sum(idf[t] for t in q_terms if t in s_terms)
            if overlap <= 0:
                continue
            length_penalty = 1.0 + max(0, len(sentence) - 400) / 400
            score = overlap / total / length_penalty + 0.15 / (1 + rank)
            sentences.append(_Sentence(passage.marker, rank, position, sentence, score))
    if not sentences:
        return NOT_FOUND
    chosen = sorted(sentences, key=lambda s: -s.score)[:max_sentences]
    chosen.sort(key=lambda s: (s.rank, s.position))
    lines = [f"{_clip(s.text)} [{s.marker}]" for s in chosen]
    return "From your documents:\n\n" + "\n\n".join(lines)


def _clip(sentence: str, limit: int = 600) -> str:
    sentence = " ".join(sentence.split())
    if len(sentence) <= limit:
        return sentence
    cut = sentence.rfind(" ", 0, limit)
    return sentence[: cut if cut > 0 else limit] + " …"


class ExtractiveProvider:
    """Implements ``core.providers.base.Provider`` without any model."""

    kind = "extractive"

    def __init__(self, name: str = "extractive") -> None:
        self.name = name

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        text = compose(request.question, request.passages)
        # Stream paragraph by paragraph so the UI path is the same as for an LLM.
        parts = text.split("\n\n")
        for i, part in enumerate(parts):
            yield part if i == len(parts) - 1 else part + "\n\n"

    async def aclose(self) -> None:
        return None
