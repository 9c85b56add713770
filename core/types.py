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
    """A cited passage: ``text`` is exactly ``extracted_text(source)[start:end]``."""

    marker: int  # the [n] used in the answer text, 1-based
    chunk_id: int
    source: str
    page: int | None
    start: int
    end: int
    text: str
    score: float

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

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [c.to_json() for c in self.citations],
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
