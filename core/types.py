"""The typed values that flow between pipeline steps.

Everything here is a frozen dataclass so that mypy can check the pipeline from
file to answer: ``ExtractedDocument`` -> ``ChunkDraft`` -> ``Chunk`` ->
``ScoredChunk`` -> ``Answer`` (with ``Citation``). Progress and health are data
too (``IngestProgress``, ``HealthSnapshot``); only the Qt bridge turns them into
signals.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# One name for every float32 array (embeddings, query vectors, matrices).
FloatArray = npt.NDArray[np.float32]

# --------------------------------------------------------------------------- ingestion


@dataclass(frozen=True, slots=True)
class PageSpan:
    """Page ``number`` (1-based) covers ``text[start:end]`` of its document."""

    number: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading of ``level`` (1 = top) whose title starts at ``start`` in the text."""

    level: int
    title: str
    start: int


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    """What a parser returns: the plain text and where pages and headings are in it.

    ``text`` is the single source of truth for character offsets: every chunk and
    citation span indexes into it.
    """

    text: str
    kind: str  # "pdf", "html", "markdown", "text", "docx", "code"
    title: str | None = None
    pages: tuple[PageSpan, ...] = ()
    headings: tuple[Heading, ...] = ()
    encoding: str | None = None


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it is stored: ``text == document.text[start:end]``."""

    ordinal: int
    text: str
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...] = ()
    token_count: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stored chunk with its provenance."""

    id: int
    document_id: int
    source: str  # absolute path of the source file
    ordinal: int
    text: str
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...] = ()


class FileStatus(enum.StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    MOVED = "moved"
    REMOVED = "removed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FileOutcome:
    path: str
    status: FileStatus
    chunks: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """One progress event of an ingestion run (a plain value; the GUI adapts it)."""

    files_done: int
    files_total: int
    chunks: int
    bytes_done: int
    bytes_total: int
    current: str | None
    elapsed_s: float
    eta_s: float | None
    last: FileOutcome | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    outcomes: tuple[FileOutcome, ...]
    elapsed_s: float
    cancelled: bool = False
    timings_s: Mapping[str, float] = field(default_factory=dict)

    def count(self, status: FileStatus) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status is FileStatus.FAILED)

    def summary(self) -> dict[str, int]:
        return {s.value: self.count(s) for s in FileStatus}


@dataclass(frozen=True, slots=True)
class IndexDelta:
    """What changed in the knowledge base, for the search indexes and caches."""

    added: tuple[Chunk, ...] = ()
    vectors: FloatArray | None = None  # rows aligned with ``added`` (or None)
    kinds: tuple[str, ...] = ()  # file kind per added chunk
    removed: tuple[int, ...] = ()
    documents: frozenset[int] = frozenset()  # documents whose content changed or vanished
    moved: tuple[tuple[int, str], ...] = ()  # (document id, new path): nothing re-indexed


# --------------------------------------------------------------------------- retrieval


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Restrict retrieval to some documents, folders or file kinds (empty = no limit)."""

    document_ids: frozenset[int] = frozenset()
    folders: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.document_ids or self.folders or self.kinds)


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A retrieved chunk with every score that led to it ("why this answer")."""

    chunk: Chunk
    score: float  # the final score the ranking used
    bm25_rank: int | None = None
    bm25_score: float | None = None
    vector_rank: int | None = None
    vector_score: float | None = None
    fused_score: float | None = None
    rerank_score: float | None = None


# --------------------------------------------------------------------------- answers

CacheLayer = Literal["miss", "embedding", "result"]


@dataclass(frozen=True, slots=True)
class Citation:
    """A cited passage: ``text`` is exactly ``extracted_text(source)[start:end]``.

    ``quote`` is the sentence of the passage that supports the claim, at
    ``extracted_text(source)[quote_start:quote_end]``. A quote that is not a
    slice of the cited passage cannot be built: ``__post_init__`` refuses it, so a
    citation can never point at a passage that lacks its evidence. Build one with
    ``Citation.of(...)``, which cuts the quote out of the passage itself.
    """

    marker: int  # the [n] used in the answer text, 1-based
    chunk_id: int
    source: str
    page: int | None
    start: int
    end: int
    text: str
    score: float
    quote: str = ""
    quote_start: int | None = None
    quote_end: int | None = None

    def __post_init__(self) -> None:
        if self.end - self.start != len(self.text):
            raise ValueError("citation span does not match its text")
        if self.quote_start is None and self.quote_end is None and not self.quote:
            return
        qs, qe = self.quote_start, self.quote_end
        if qs is None or qe is None or not (self.start <= qs < qe <= self.end):
            raise ValueError("a quote must lie inside its cited passage")
        if self.text[qs - self.start : qe - self.start] != self.quote:
            raise ValueError("a quote must be the cited passage's own text")

    @classmethod
    def of(
        cls,
        marker: int,
        chunk: Chunk,
        score: float,
        quote_span: tuple[int, int] | None = None,
    ) -> Citation:
        """A citation of ``chunk``; ``quote_span`` is relative to ``chunk.text``."""
        if quote_span is None:
            c = chunk
            return cls(marker, c.id, c.source, c.page, c.start, c.end, c.text, score)
        a, b = quote_span
        return cls(
            marker,
            chunk.id,
            chunk.source,
            chunk.page,
            chunk.start,
            chunk.end,
            chunk.text,
            score,
            quote=chunk.text[a:b],
            quote_start=chunk.start + a,
            quote_end=chunk.start + b,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "marker": self.marker,
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "chunk_id": self.chunk_id,
            "score": round(self.score, 6),
            "quote": self.quote or None,
            "quote_start": self.quote_start,
            "quote_end": self.quote_end,
        }


@dataclass(frozen=True, slots=True)
class AnswerSentence:
    """One sentence of a generated answer and the evidence found for it.

    ``start``/``end`` index the answer text. ``markers`` are the citations whose
    quotes support the sentence (empty when ``supported`` is false: the
    documents were not found to say it).
    """

    text: str
    start: int
    end: int
    supported: bool
    markers: tuple[int, ...] = ()
    score: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "supported": self.supported,
            "markers": list(self.markers),
            "score": round(self.score, 4),
        }


@dataclass(frozen=True, slots=True)
class CacheMatch:
    question: str
    similarity: float


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    provider: str
    cache: CacheLayer
    degraded: bool
    timings_ms: Mapping[str, float]
    request_id: str
    retrieved: tuple[ScoredChunk, ...] = ()
    cache_match: CacheMatch | None = None
    notice: str | None = None  # shown to the user, e.g. why the answer is degraded
    cache_entry: str | None = None  # the result-cache entry holding it (to evict it)
    # The provider whose stream broke off after text reached the user: the UI offers
    # to regenerate with ``ask(question, skip_providers={interrupted_by})``.
    interrupted_by: str | None = None
    # Quote first: the best supporting sentences of the passages, shown at once
    # (before any model runs) and kept as the answer when the model's is unsupported.
    quotes: tuple[Citation, ...] = ()
    # The answer's sentences after the evidence check (empty for quotes-only answers).
    sentences: tuple[AnswerSentence, ...] = ()
    # True when Archivist said "the documents do not contain the answer".
    abstained: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [c.to_json() for c in self.citations],
            "quotes": [c.to_json() for c in self.quotes],
            "sentences": [s.to_json() for s in self.sentences],
            "abstained": self.abstained,
            "provider": self.provider,
            "cache": self.cache,
            "cache_match": (
                None
                if self.cache_match is None
                else {
                    "question": self.cache_match.question,
                    "similarity": round(self.cache_match.similarity, 4),
                }
            ),
            "degraded": self.degraded,
            "notice": self.notice,
            "cache_entry": self.cache_entry,
            "interrupted_by": self.interrupted_by,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "request_id": self.request_id,
        }


@dataclass(frozen=True, slots=True)
class AnswerChunk:
    """A piece of a streaming answer (the GUI appends ``text`` as it arrives)."""

    text: str
    provider: str


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True, slots=True)
class ContextPassage:
    """A retrieved passage as the provider sees it: data, with its citation marker."""

    marker: int
    source: str
    page: int | None
    text: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    question: str
    passages: tuple[ContextPassage, ...]
    max_tokens: int = 512
    temperature: float = 0.1


# --------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    status: Literal["ok", "degraded", "down", "disabled"]
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    status: Literal["ok", "degraded", "down"]
    components: tuple[ComponentHealth, ...]
    taken_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "taken_at": self.taken_at,
            "components": {c.name: c.to_json() for c in self.components},
        }


# --------------------------------------------------------------------------- breakers


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A state change, delivered to listeners (for the audit log and the GUI)."""

    provider: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float  # the breaker's clock
    retry_in_s: float | None = None  # set when the circuit opens


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state for ``archivist health`` (a plain value)."""

    name: str
    state: BreakerState
    consecutive_failures: int
    last_error: str | None
    seconds_until_half_open: float | None  # None unless OPEN
    rate_limited_for_s: float | None  # None unless a Retry-After is running
    successes: int
    failures: int
    rejections: int  # calls the breaker refused without trying

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "seconds_until_half_open": _round(self.seconds_until_half_open),
            "rate_limited_for_s": _round(self.rate_limited_for_s),
            "successes": self.successes,
            "failures": self.failures,
            "rejections": self.rejections,
        }

    def to_component(self, kind: str = "") -> ComponentHealth:
        """This provider as one component of a ``HealthSnapshot``."""
        status: Literal["ok", "degraded", "down"]
        if self.state is BreakerState.OPEN:
            status = "down"
            detail = f"circuit open; retrying in {self.seconds_until_half_open or 0:.0f} s"
        elif self.state is BreakerState.HALF_OPEN:
            status, detail = "degraded", "circuit half-open; probing"
        elif self.rate_limited_for_s:
            status = "degraded"
            detail = f"rate limited for {self.rate_limited_for_s:.0f} s"
        else:
            status, detail = "ok", "circuit closed"
        if self.last_error and status != "ok":
            detail += f" (last error: {self.last_error})"
        data = {"kind": kind, **self.to_json()} if kind else self.to_json()
        data.pop("name")
        return ComponentHealth(
            name=f"provider:{self.name}", status=status, detail=detail, data=data
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
