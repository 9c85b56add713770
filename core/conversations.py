"""Saved conversations: typed values, a folder of JSON files, Markdown export.

A conversation is a list of turns (question, answer, citations and the
"why this answer" explanation captured when the answer arrived). The store
keeps one JSON file per conversation in ``settings.home / "conversations"``;
every write goes to a temporary file in the same folder and is renamed over
the old one, so a crash never leaves half a file. Reading skips files that do
not parse (and logs them) instead of failing the whole list.

All methods are synchronous and do file I/O: call them through
``asyncio.to_thread`` from the event loop.

Usage::

    store = ConversationStore(settings.home / "conversations")
    conv = store.new().with_turn(turn_from_answer(answer, router.health()))
    store.save(conv)
    [summary] = store.search("lighthouse")
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import StorageError, UsageError
from core.types import Answer, BreakerSnapshot, Citation

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# An abstention shows this many of the closest passages when it has no quotes.
CLOSEST_PASSAGES = 3
_ID = re.compile(r"^[0-9a-f]{8,40}$")
TITLE_CHARS = 80


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class RetrievedInfo:
    """One retrieved passage and every score that ranked it (None: not computed)."""

    marker: int
    source: str
    page: int | None
    text: str
    score: float
    bm25_score: float | None = None
    bm25_rank: int | None = None
    vector_score: float | None = None
    vector_rank: int | None = None
    fused_score: float | None = None
    rerank_score: float | None = None
    # Flagged at ingestion as text that speaks to a model (kept out of the prompt).
    injection_categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    """A provider's circuit as it was when an answer arrived."""

    name: str
    state: str
    consecutive_failures: int = 0
    last_error: str | None = None
    seconds_until_half_open: float | None = None
    backend: str | None = None  # e.g. the local model's file and llama.cpp runtime


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an answer is what it is: retrieval scores, cache, provider, breakers."""

    provider: str
    cache: str  # "miss" | "embedding" | "result"
    degraded: bool
    retrieved: tuple[RetrievedInfo, ...] = ()
    breakers: tuple[BreakerInfo, ...] = ()
    cache_question: str | None = None
    cache_similarity: float | None = None
    notice: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Turn:
    """One question and its answer (or the sentence saying why there is none)."""

    question: str
    answer: str
    asked_at: float
    citations: tuple[Citation, ...] = ()
    explanation: Explanation | None = None
    error: str | None = None
    # What the evidence check said, kept so a reopened chat shows the same marks:
    # the supporting sentences shown above the answer (for an abstention, the
    # closest passages), the spans of ``answer`` the documents were not found to
    # say, and whether the answer is "the documents do not contain it".
    quotes: tuple[Citation, ...] = ()
    unsupported: tuple[tuple[int, int], ...] = ()
    abstained: bool = False


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    turns: tuple[Turn, ...] = ()

    def with_turn(self, turn: Turn) -> Conversation:
        title = self.title or make_title(turn.question)
        return replace(
            self,
            title=title,
            turns=(*self.turns, turn),
            updated_at=max(self.updated_at, turn.asked_at),
        )

    def matches(self, query: str) -> bool:
        """Case-insensitive: every word of ``query`` appears in the title or a turn."""
        words = query.casefold().split()
        if not words:
            return True
        haystack = "\n".join(
            [self.title, *(t.question for t in self.turns), *(t.answer for t in self.turns)]
        ).casefold()
        return all(w in haystack for w in words)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A line of the conversation list."""

    id: str
    title: str
    updated_at: float
    turns: int


# --------------------------------------------------------------------------- pure helpers


def make_title(question: str) -> str:
    text = " ".join(question.split())
    if len(text) <= TITLE_CHARS:
        return text
    return text[: TITLE_CHARS - 1].rstrip() + "…"


def explain(answer: Answer, breakers: Sequence[BreakerSnapshot] = ()) -> Explanation:
    """Capture an answer's explanation (call it when the answer arrives)."""
    retrieved = tuple(
        RetrievedInfo(
            marker=i + 1,
            source=s.chunk.source,
            page=s.chunk.page,
            text=s.chunk.text,
            score=s.score,
            bm25_score=s.bm25_score,
            bm25_rank=s.bm25_rank,
            vector_score=s.vector_score,
            vector_rank=s.vector_rank,
            fused_score=s.fused_score,
            rerank_score=s.rerank_score,
            injection_categories=s.chunk.injection_categories,
        )
        for i, s in enumerate(answer.retrieved)
    )
    return Explanation(
        provider=answer.provider,
        cache=answer.cache,
        degraded=answer.degraded,
        retrieved=retrieved,
        breakers=tuple(
            BreakerInfo(
                name=b.name,
                state=b.state.value,
                consecutive_failures=b.consecutive_failures,
                last_error=b.last_error,
                seconds_until_half_open=b.seconds_until_half_open,
                backend=b.backend,
            )
            for b in breakers
        ),
        cache_question=answer.cache_match.question if answer.cache_match else None,
        cache_similarity=answer.cache_match.similarity if answer.cache_match else None,
        notice=answer.notice,
        timings_ms=dict(answer.timings_ms),
        request_id=answer.request_id,
    )


def answer_evidence(
    answer: Answer,
) -> tuple[tuple[Citation, ...], tuple[tuple[int, int], ...]]:
    """The quotes shown with ``answer`` (for an abstention without quotes, the
    closest passages) and the spans of its text the documents do not support."""
    quotes = answer.quotes
    if answer.abstained and not quotes:
        quotes = tuple(
            Citation.of(i + 1, sc.chunk, sc.score)
            for i, sc in enumerate(answer.retrieved[:CLOSEST_PASSAGES])
        )
    unsupported: tuple[tuple[int, int], ...] = ()
    if not answer.abstained:
        unsupported = tuple((s.start, s.end) for s in answer.sentences if not s.supported)
    return quotes, unsupported


def turn_from_answer(
    answer: Answer, breakers: Sequence[BreakerSnapshot] = (), *, asked_at: float | None = None
) -> Turn:
    quotes, unsupported = answer_evidence(answer)
    return Turn(
        question=answer.question,
        answer=answer.text,
        asked_at=time.time() if asked_at is None else asked_at,
        citations=answer.citations,
        explanation=explain(answer, breakers),
        quotes=quotes,
        unsupported=unsupported,
        abstained=answer.abstained,
    )


def to_markdown(conv: Conversation) -> str:
    """The conversation as a Markdown document (questions, answers, sources)."""
    lines = [f"# {conv.title or 'Conversation'}", ""]
    lines.append(f"_Exported from Archivist on {_date(time.time())}._")
    lines.append("")
    for turn in conv.turns:
        lines += [f"## {turn.question}", "", f"_{_date(turn.asked_at)}_", ""]
        if turn.error:
            lines += [f"> {turn.error}", ""]
        if turn.answer:
            lines += [_marked_answer(turn), ""]
        notice = turn.explanation.notice if turn.explanation else None
        if notice:
            lines += [f"> {notice}", ""]
        if turn.citations:
            lines += ["**Sources**", ""]
            listed: set[int] = set()
            for c in turn.citations:
                if c.marker in listed:  # one passage, cited for two of its sentences
                    continue
                listed.add(c.marker)
                page = f", page {c.page}" if c.page else ""
                snippet = " ".join(c.text.split())
                if len(snippet) > 160:
                    snippet = snippet[:159] + "…"
                lines.append(f"- [{c.marker}] `{c.source}`{page}: {snippet}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _marked_answer(turn: Turn) -> str:
    """The answer, each sentence the documents do not support followed by a mark."""
    text = turn.answer
    for start, end in sorted(turn.unsupported, reverse=True):
        if 0 <= start < end <= len(text):
            text = text[:end] + " _(not found in your documents)_" + text[end:]
    return text


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# --------------------------------------------------------------------------- JSON


def _explanation_to_json(e: Explanation) -> dict[str, Any]:
    return {
        "provider": e.provider,
        "cache": e.cache,
        "degraded": e.degraded,
        "cache_question": e.cache_question,
        "cache_similarity": e.cache_similarity,
        "notice": e.notice,
        "timings_ms": dict(e.timings_ms),
        "request_id": e.request_id,
        "retrieved": [
            {
                "marker": r.marker,
                "source": r.source,
                "page": r.page,
                "text": r.text,
                "score": r.score,
                "bm25_score": r.bm25_score,
                "bm25_rank": r.bm25_rank,
                "vector_score": r.vector_score,
                "vector_rank": r.vector_rank,
                "fused_score": r.fused_score,
                "rerank_score": r.rerank_score,
                "injection_categories": list(r.injection_categories),
            }
            for r in e.retrieved
        ],
        "breakers": [
            {
                "name": b.name,
                "state": b.state,
                "consecutive_failures": b.consecutive_failures,
                "last_error": b.last_error,
                "seconds_until_half_open": b.seconds_until_half_open,
                "backend": b.backend,
            }
            for b in e.breakers
        ],
    }


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _explanation_from_json(d: Mapping[str, Any]) -> Explanation:
    return Explanation(
        provider=str(d.get("provider", "")),
        cache=str(d.get("cache", "miss")),
        degraded=bool(d.get("degraded", False)),
        cache_question=d.get("cache_question"),
        cache_similarity=_opt_float(d.get("cache_similarity")),
        notice=d.get("notice"),
        timings_ms={str(k): float(v) for k, v in dict(d.get("timings_ms") or {}).items()},
        request_id=str(d.get("request_id", "")),
        retrieved=tuple(
            RetrievedInfo(
                marker=int(r["marker"]),
                source=str(r["source"]),
                page=_opt_int(r.get("page")),
                text=str(r.get("text", "")),
                score=float(r.get("score", 0.0)),
                bm25_score=_opt_float(r.get("bm25_score")),
                bm25_rank=_opt_int(r.get("bm25_rank")),
                vector_score=_opt_float(r.get("vector_score")),
                vector_rank=_opt_int(r.get("vector_rank")),
                fused_score=_opt_float(r.get("fused_score")),
                rerank_score=_opt_float(r.get("rerank_score")),
                injection_categories=tuple(str(c) for c in r.get("injection_categories") or ()),
            )
            for r in d.get("retrieved") or ()
        ),
        breakers=tuple(
            BreakerInfo(
                name=str(b["name"]),
                state=str(b["state"]),
                consecutive_failures=int(b.get("consecutive_failures", 0)),
                last_error=b.get("last_error"),
                seconds_until_half_open=_opt_float(b.get("seconds_until_half_open")),
                backend=b.get("backend"),
            )
            for b in d.get("breakers") or ()
        ),
    )


def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "id": conv.id,
        "title": conv.title,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "turns": [
            {
                "question": t.question,
                "answer": t.answer,
                "asked_at": t.asked_at,
                "error": t.error,
                "citations": [c.to_json() for c in t.citations],
                "explanation": (
                    None if t.explanation is None else _explanation_to_json(t.explanation)
                ),
                "quotes": [c.to_json() for c in t.quotes],
                "unsupported": [list(span) for span in t.unsupported],
                "abstained": t.abstained,
            }
            for t in conv.turns
        ],
    }


def conversation_from_json(d: Mapping[str, Any]) -> Conversation:
    return Conversation(
        id=str(d["id"]),
        title=str(d.get("title", "")),
        created_at=float(d["created_at"]),
        updated_at=float(d["updated_at"]),
        turns=tuple(
            Turn(
                question=str(t["question"]),
                answer=str(t.get("answer", "")),
                asked_at=float(t["asked_at"]),
                error=t.get("error"),
                citations=tuple(Citation.from_json(c) for c in t.get("citations") or ()),
                explanation=(
                    None
                    if t.get("explanation") is None
                    else _explanation_from_json(t["explanation"])
                ),
                quotes=tuple(Citation.from_json(c) for c in t.get("quotes") or ()),
                unsupported=tuple(
                    (int(span[0]), int(span[1])) for span in t.get("unsupported") or ()
                ),
                abstained=bool(t.get("abstained", False)),
            )
            for t in d.get("turns") or ()
        ),
    )


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- store


class ConversationStore:
    """One JSON file per conversation in ``folder``; see the module docstring."""

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self._clock = clock

    def new(self) -> Conversation:
        """A fresh, empty conversation (not written until it has a turn)."""
        now = self._clock()
        # Time first so file names sort by creation; the random tail makes them unique.
        cid = f"{int(now * 1000):013x}{uuid.uuid4().hex[:12]}"
        return Conversation(id=cid, title="", created_at=now, updated_at=now)

    def _path(self, cid: str) -> Path:
        if not _ID.match(cid):
            raise UsageError(f"{cid!r} is not a conversation id.")
        return self.folder / f"{cid}.json"

    def save(self, conv: Conversation) -> None:
        text = json.dumps(conversation_to_json(conv), ensure_ascii=False, indent=1)
        try:
            write_atomically(self._path(conv.id), text)
        except OSError as exc:
            raise StorageError(f"The conversation could not be saved: {exc}") from exc

    def load(self, cid: str) -> Conversation:
        path = self._path(cid)
        try:
            return conversation_from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise UsageError("That conversation no longer exists.") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"The conversation file {path} cannot be read: {exc}") from exc

    def delete(self, cid: str) -> None:
        self._path(cid).unlink(missing_ok=True)

    def _all(self) -> Iterable[Conversation]:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.json"):
            try:
                yield conversation_from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable conversation file %s: %s", path, exc)

    def search(self, query: str = "") -> list[ConversationSummary]:
        """Conversations matching ``query`` (every word, anywhere), newest first."""
        found = [
            ConversationSummary(c.id, c.title or "(untitled)", c.updated_at, len(c.turns))
            for c in self._all()
            if c.matches(query)
        ]
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found

    def export_markdown(self, conv: Conversation, path: Path) -> Path:
        try:
            write_atomically(Path(path), to_markdown(conv))
        except OSError as exc:
            raise StorageError(f"The conversation could not be exported: {exc}") from exc
        return Path(path)
