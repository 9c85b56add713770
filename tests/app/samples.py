"""Hand-built answers for window tests: real ``Answer`` values, no models.

``SOURCE_TEXT`` is a document's extracted text; ``chunk(n, ...)`` cuts a passage
out of it and ``quoted(n, ...)`` cites that passage with one of its sentences
as the quote, exactly as core's ``Citation.of`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.types import Answer, AnswerSentence, Chunk, Citation, ScoredChunk

SOURCE = "/docs/lighthouse.txt"
SOURCE_TEXT = (
    "Harbour history.\n\n"
    "The Old Harbour lighthouse was built in 1874. It stands on the north pier.\n\n"
    "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years. "
    "She kept a logbook.\n\n"
    "The lamp burned whale oil until 1902, when it was converted to kerosene.\n"
)
PASSAGES = (
    "The Old Harbour lighthouse was built in 1874. It stands on the north pier.",
    "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years. She kept a logbook.",
    "The lamp burned whale oil until 1902, when it was converted to kerosene.",
)


def chunk(n: int) -> Chunk:
    """Passage ``n`` (1-based) of ``SOURCE_TEXT``."""
    text = PASSAGES[n - 1]
    start = SOURCE_TEXT.index(text)
    return Chunk(n, 1, SOURCE, n - 1, text, start, start + len(text), None)


def quoted(n: int, sentence: str) -> Citation:
    """Passage ``n`` cited as ``[n]`` with ``sentence`` (a slice of it) as the quote."""
    c = chunk(n)
    a = c.text.index(sentence)
    return Citation.of(n, c, 1.0 / n, (a, a + len(sentence)))


def plain(n: int) -> Citation:
    """Passage ``n`` cited as ``[n]`` without a quote (as saved conversations hold it)."""
    return Citation.of(n, chunk(n), 1.0 / n)


def sentences(text: str, unsupported: Sequence[str] = ()) -> tuple[AnswerSentence, ...]:
    """``text`` split at ". " with the given sentences marked unsupported."""
    out = []
    start = 0
    for piece in text.split(". "):
        body = piece if piece.endswith(".") else piece + "."
        end = min(len(text), start + len(body))
        bad = text[start:end] in unsupported
        out.append(AnswerSentence(text[start:end], start, end, not bad, () if bad else (1,)))
        start = end + 1
    return tuple(out)


def answer(
    text: str,
    *,
    question: str = "When was the lighthouse built?",
    citations: Sequence[Citation] = (),
    quotes: Sequence[Citation] = (),
    unsupported: Sequence[str] = (),
    abstained: bool = False,
    cache_entry: str | None = None,
    interrupted_by: str | None = None,
    provider: str = "extractive",
) -> Answer:
    return Answer(
        question=question,
        text=text,
        citations=tuple(citations),
        provider=provider,
        cache="miss",
        degraded=False,
        timings_ms={"total": 12.0},
        request_id="r1",
        retrieved=tuple(ScoredChunk(chunk(n), 1.0 / n) for n in (1, 2, 3)),
        cache_entry=cache_entry,
        interrupted_by=interrupted_by,
        quotes=tuple(quotes),
        sentences=() if abstained else sentences(text, unsupported),
        abstained=abstained,
    )
