"""The typed values that flow between pipeline steps.

Everything here is a frozen dataclass so that mypy can check the pipeline from
file to answer: ``ExtractedDocument`` -> ``ChunkDraft`` -> ``Chunk`` ->
``ScoredChunk`` -> ``Answer`` (with ``Citation``). Progress and health are data
too (``IngestProgress``, ``HealthSnapshot``); only the Qt bridge turns them into
signals.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeVar

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
    # Prompt-injection score of ``text``, stored at ingestion (None: not scanned yet),
    # and, when it was flagged there, the detector's categories (empty otherwise).
    injection_score: float | None = None
    injection_categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlaggedPassage:
    """A passage of a source the injection detector flagged (source view, audit)."""

    chunk_id: int
    start: int  # character offsets into the source's extracted text
    end: int
    page: int | None
    score: float
    categories: tuple[str, ...]


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
class FillProgress:
    """Where a fill stands: passages given vectors so far, of how many."""

    done: int
    total: int
    elapsed_s: float
    running: bool

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done)

    @property
    def rate(self) -> float | None:
        """Passages per second so far."""
        return self.done / self.elapsed_s if self.done and self.elapsed_s > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return self.pending / rate if rate else None


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
    # Vectors filled in behind keyword search (core.ingest.fill): passages given
    # vectors so far of those that lacked one; 0 of 0 before the fill starts.
    vectors_done: int = 0
    vectors_total: int = 0
    # Seconds from the start until every file was keyword-searchable (None before).
    searchable_s: float | None = None

    @property
    def filling(self) -> bool:
        """Every file is searchable by keywords; vectors are still being filled in."""
        return self.vectors_done < self.vectors_total


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
    # Vectors filled in behind keyword search for chunks indexed earlier (rows aligned).
    filled: tuple[int, ...] = ()
    filled_vectors: FloatArray | None = None


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

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Citation:
        """The inverse of ``to_json`` (a quote that does not fit raises ValueError)."""
        qs, qe = d.get("quote_start"), d.get("quote_end")
        return cls(
            marker=int(d["marker"]),
            chunk_id=int(d.get("chunk_id", 0)),
            source=str(d["source"]),
            page=None if d.get("page") is None else int(d["page"]),
            start=int(d["start"]),
            end=int(d["end"]),
            text=str(d["text"]),
            score=float(d.get("score", 0.0)),
            quote=str(d.get("quote") or ""),
            quote_start=None if qs is None else int(qs),
            quote_end=None if qe is None else int(qe),
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
    # Passages still waiting for vectors when the search ran (documents being
    # ingested): the search was partial, keyword-only for those passages.
    vectors_pending: int = 0

    @property
    def partial_search(self) -> bool:
        return self.vectors_pending > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [c.to_json() for c in self.citations],
            "quotes": [c.to_json() for c in self.quotes],
            "sentences": [s.to_json() for s in self.sentences],
            "abstained": self.abstained,
            "partial_search": self.partial_search,
            "vectors_pending": self.vectors_pending,
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
    # Near-greedy, yet sampled: the same question can get another wording. Greedy
    # decoding (0.0) was measured with the 0.5B model (archivist eval answers):
    # Python docs set (tuning) accuracy 0.633 against 0.650 at 0.1; Debian handbook
    # set 0.571 with 6 of 46 false abstentions, against 0.536 and 0.571 (6 and 3
    # of 46) in two runs at 0.1. Not better on both sets, so 0.1 stays.
    temperature: float = 0.1


# --------------------------------------------------------------------------- health

HealthStatus = Literal["ok", "degraded", "down", "disabled"]

# The components of every snapshot (providers are named ``provider:<name>``).
DATABASE: Final = "database"
SEARCH_INDEX: Final = "search_index"
EMBEDDING_MODEL: Final = "embedding_model"
RERANKER: Final = "reranker"
CACHE: Final = "cache"
WATCHER: Final = "watcher"
RATE_LIMIT: Final = "rate_limit"

# What a component's ``info`` may hold: one typed value per kind of component.
ComponentInfo: TypeAlias = (
    "DatabaseHealth | IndexHealth | ModelHealth | BreakerSnapshot | CacheHealth"
    " | WatcherHealth | RateLimitHealth"
)

_Info = TypeVar("_Info")


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One line of the health view: a name, a status and a sentence for people.

    ``info`` holds the component's figures as a typed value that the window reads
    by attribute. ``data`` is their JSON form for ``archivist health --json``: it
    is filled from ``info`` when not given, and the window never reads it.
    """

    name: str
    status: HealthStatus
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    info: ComponentInfo | None = None

    def __post_init__(self) -> None:
        if self.info is not None and not self.data:
            object.__setattr__(self, "data", self.info.to_json())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Every component's state at ``taken_at``; the typed parts are properties.

    ``components`` is the uniform view (a list of name, status, sentence); the
    properties (``database``, ``search_index``, ``cache``, ``providers``, ...)
    give each component's typed figures, or None when it reported none (it is
    down, loading or not configured).
    """

    status: Literal["ok", "degraded", "down"]
    components: tuple[ComponentHealth, ...]
    taken_at: float

    def component(self, name: str) -> ComponentHealth | None:
        return next((c for c in self.components if c.name == name), None)

    def _info(self, name: str, kind: type[_Info]) -> _Info | None:
        c = self.component(name)
        return c.info if c is not None and isinstance(c.info, kind) else None

    @property
    def database(self) -> DatabaseHealth | None:
        return self._info(DATABASE, DatabaseHealth)

    @property
    def search_index(self) -> IndexHealth | None:
        return self._info(SEARCH_INDEX, IndexHealth)

    @property
    def embedding_model(self) -> ModelHealth | None:
        return self._info(EMBEDDING_MODEL, ModelHealth)

    @property
    def reranker(self) -> ModelHealth | None:
        return self._info(RERANKER, ModelHealth)

    @property
    def providers(self) -> tuple[BreakerSnapshot, ...]:
        """The breaker of every routed provider, in routing order."""
        return tuple(c.info for c in self.components if isinstance(c.info, BreakerSnapshot))

    @property
    def cache(self) -> CacheHealth | None:
        return self._info(CACHE, CacheHealth)

    @property
    def watcher(self) -> WatcherHealth | None:
        return self._info(WATCHER, WatcherHealth)

    @property
    def rate_limit(self) -> RateLimitHealth | None:
        return self._info(RATE_LIMIT, RateLimitHealth)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "taken_at": self.taken_at,
            "components": {c.name: c.to_json() for c in self.components},
        }


@dataclass(frozen=True, slots=True)
class KnowledgeBaseCounts:
    """What the knowledge base holds."""

    documents: int
    chunks: int
    quarantined: int
    size_bytes: int  # the source files' total size
    embeddings: int

    def to_json(self) -> dict[str, int]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "quarantined": self.quarantined,
            "bytes": self.size_bytes,
            "embeddings": self.embeddings,
        }


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    dialect: str  # "sqlite", "postgresql"
    url: str  # with any password masked
    schema_revision: str | None
    counts: KnowledgeBaseCounts

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "schema_revision": self.schema_revision, **self.counts.to_json()}


@dataclass(frozen=True, slots=True)
class IndexHealth:
    """The loaded search index."""

    chunks: int
    vectors: int
    loaded_from: str  # "disk", "database" or "empty"
    load_s: float
    # Passages whose vectors are being filled in (keyword search already has them).
    vectors_pending: int = 0
    fill_eta_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "vectors": self.vectors,
            "loaded_from": self.loaded_from,
            "load_s": round(self.load_s, 3),
            "vectors_pending": self.vectors_pending,
            "fill_eta_s": None if self.fill_eta_s is None else round(self.fill_eta_s, 1),
        }


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """A local model (the embedding model or the reranker)."""

    model: str  # its name or path
    loaded: bool
    dim: int | None = None  # the embedding size, once loaded
    error: str | None = None  # why it cannot be used

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "loaded": self.loaded, "dim": self.dim, "error": self.error}


@dataclass(frozen=True, slots=True)
class LayerMetrics:
    hits: int
    misses: int
    hit_p50_ms: float | None
    hit_p95_ms: float | None

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_p50_ms": self.hit_p50_ms,
            "hit_p95_ms": self.hit_p95_ms,
        }


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    layers: Mapping[str, LayerMetrics]  # "embedding", "result"
    entries: int
    evictions: int
    guard_refusals: Mapping[str, int] = field(default_factory=dict)
    last_refusal: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": {name: m.to_json() for name, m in self.layers.items()},
            "entries": self.entries,
            "evictions": self.evictions,
            "guard_refusals": dict(self.guard_refusals),
            "last_refusal": self.last_refusal,
        }


@dataclass(frozen=True, slots=True)
class CacheHealth:
    """The answer cache: which backend serves, whether it fell back, and its figures."""

    enabled: bool
    active_backend: str  # "redis" | "embedded"
    fallback_active: bool
    breaker_state: str
    last_error: str | None
    retry_in_s: float
    metrics: CacheMetrics | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "backend": self.active_backend,
            "fallback": self.fallback_active,
            "breaker": self.breaker_state,
            "retry_in_s": round(self.retry_in_s, 1),
        }
        if self.metrics is not None:
            data["metrics"] = self.metrics.to_json()
        return data

    def to_component(self) -> ComponentHealth:
        if not self.enabled:
            status: HealthStatus = "disabled"
        else:
            status = "degraded" if self.fallback_active else "ok"
        detail = (
            f"Redis unavailable, using the embedded cache ({self.last_error})"
            if self.fallback_active
            else f"using the {self.active_backend} cache"
        )
        return ComponentHealth(name=CACHE, status=status, detail=detail, info=self)


@dataclass(frozen=True, slots=True)
class WatcherHealth:
    folders: tuple[str, ...]
    batches: int  # re-scans so far
    running: bool
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "folders": list(self.folders),
            "batches": self.batches,
            "running": self.running,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class RateLimitHealth:
    backend: str  # "redis" | "embedded"
    fallback_active: bool  # Redis unreachable: the limits are this process's only

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "fallback": self.fallback_active}


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened. ``ts`` is unix seconds; ``detail`` must be JSON-able."""

    ts: float
    action: str  # ask, ingest, quarantine, breaker, setting, ...
    outcome: str  # ok, degraded, failed, refused, blocked, ...
    request_id: str | None = None
    session: str | None = None
    provider: str | None = None
    cache_layer: str | None = None
    latency_ms: float | None = None
    question_hash: str | None = None
    question: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def setting_keys(self) -> tuple[str, ...]:
        """The settings a ``setting`` event changed (its ``detail["keys"]``), else ()."""
        keys = self.detail.get("keys") if self.action == "setting" else None
        if isinstance(keys, list | tuple):
            return tuple(str(k) for k in keys)
        return ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "action": self.action,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "session": self.session,
            "provider": self.provider,
            "cache_layer": self.cache_layer,
            "latency_ms": self.latency_ms,
            "question_hash": self.question_hash,
            "question": self.question,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Nearest-rank percentiles (the value at rank ceil(p/100·n)) of ``count`` latencies."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99}


# Events per value of a column, largest first; None counts events without a value
# (an ingest has no provider).
Counts: TypeAlias = Mapping[str | None, int]
NO_VALUE: Final = "(none)"  # how JSON names the None key


@dataclass(frozen=True, slots=True)
class AuditSummary:
    """The audit log over ``[since, until)`` (None = open), from SQL aggregates."""

    since: float | None
    until: float | None
    total: int
    by_action: Counts
    by_outcome: Counts
    by_provider: Counts
    by_cache_layer: Counts
    ask_latency_ms: LatencyStats
    per_day: Mapping[dt.date, int]  # UTC days, oldest first
    last_events: tuple[AuditEvent, ...] = ()  # newest first

    def to_json(self) -> dict[str, Any]:
        def named(counts: Counts) -> dict[str, int]:
            return {(NO_VALUE if k is None else k): v for k, v in counts.items()}

        return {
            "since": self.since,
            "until": self.until,
            "total": self.total,
            "by_action": named(self.by_action),
            "by_outcome": named(self.by_outcome),
            "by_provider": named(self.by_provider),
            "by_cache_layer": named(self.by_cache_layer),
            "ask_latency_ms": self.ask_latency_ms.to_json(),
            "per_day": {d.isoformat(): n for d, n in self.per_day.items()},
            "last_events": [e.to_json() for e in self.last_events],
        }


@dataclass(frozen=True, slots=True)
class SessionStats:
    asks: int  # questions answered by this process
    uptime_s: float

    def to_json(self) -> dict[str, Any]:
        return {"asks": self.asks, "uptime_s": round(self.uptime_s, 1)}


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Knowledge-base counts, the audit summary (None without an audit log), this session."""

    knowledge_base: KnowledgeBaseCounts
    documents_by_kind: Mapping[str, int]
    kb_version: int
    session: SessionStats
    audit: AuditSummary | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "knowledge_base": self.knowledge_base.to_json(),
            "documents_by_kind": dict(self.documents_by_kind),
            "kb_version": self.kb_version,
        }
        if self.audit is not None:
            data["audit"] = self.audit.to_json()
        data["session"] = self.session.to_json()
        return data


# --------------------------------------------------------------------------- breakers


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A state change, delivered to listeners (for the audit log and the GUI).

    ``provider`` is the breaker's name: a provider's name, or ``"cache"`` /
    ``"ratelimit"`` for the breakers in front of Redis (the field keeps its
    name for the audit log's ``provider`` column and the GUI).
    """

    provider: str  # the breaker's name
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
    # What runs behind the breaker when it is worth saying (the local model and its
    # llama.cpp runtime); set by the router from the provider, not by the breaker.
    backend: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
        if self.backend is not None:
            out["backend"] = self.backend
        return out

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
        if self.backend:
            detail = f"{self.backend}; {detail}"
        data = {"kind": kind, **self.to_json()} if kind else self.to_json()
        data.pop("name")
        return ComponentHealth(
            name=f"provider:{self.name}", status=status, detail=detail, data=data, info=self
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
