"""The offline extractive provider: answers by quoting the best passages.

It needs no model, so it is the last resort of the provider chain and the
answer of a fresh install. The quotes come from
:func:`core.evidence.support.quote_spans`, the quote picker (one sentence
splitter, one term analyser) that the evidence check and the quote-first answer
use: the sentences sharing the most question terms, weighted by how rare they are
among the passages, with the sentences that follow them, in reading order, each
cited with its passage marker. When no passage covers enough of the question it
says so plainly instead of quoting noise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from core.evidence.support import NOT_FOUND, quote_spans
from core.types import ContextPassage, GenerationRequest

__all__ = ["NOT_FOUND", "ExtractiveProvider", "compose"]


def compose(question: str, passages: Sequence[ContextPassage], max_sentences: int = 3) -> str:
    """The extractive answer text, with [n] markers (a pure function)."""
    spans, _ = quote_spans(question, [p.text for p in passages], max_quotes=max_sentences)
    if not spans:
        return NOT_FOUND
    lines = []
    for index, start, end in spans:
        passage = passages[index]
        lines.append(f"{_clip(passage.text[start:end])} [{passage.marker}]")
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
