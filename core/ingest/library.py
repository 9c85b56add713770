"""The knowledge base as the user sees it: what is in it, and how it changes.

``Library`` runs ingestion (the ``Ingestor`` pipeline), applies each change to
the search index, flags passages that read like instructions to a model
(indirect prompt injection: scored once here and stored per chunk, so asking
never re-scans), audits it all and follows watched folders; it also answers the
reads the window and the CLI need (filters from paths, a source's text and its
flagged passages, the quarantine). ``Services`` hands it the engine, the index, the embedder
and the parsing pool (created on first use through ``make_executor``) and
closes it; the folder watcher is the one thing it starts and stops itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from core.audit import AuditFn
from core.config import IngestSettings
from core.db import store
from core.embedding import Embedder
from core.errors import UsageError
from core.ingest.fill import FillResult, VectorFill
from core.ingest.parsers import SUPPORTED_EXTENSIONS
from core.ingest.pipeline import Ingestor
from core.logs import request_context
from core.retrieval.backend import SearchBackend
from core.security.injection import InjectionDetector
from core.security.paths import path_problem
from core.types import (
    Chunk,
    FillProgress,
    FlaggedPassage,
    FloatArray,
    IndexDelta,
    IngestProgress,
    IngestReport,
    SearchFilters,
)
from core.watch import FolderWatcher

log = logging.getLogger(__name__)


class Library:
    def __init__(
        self,
        engine: sa.Engine,
        settings: IngestSettings,
        *,
        wait_index: Callable[[], Awaitable[SearchBackend]],
        embedder: Embedder | None,
        detector: InjectionDetector,
        audit: AuditFn,
        make_executor: Callable[[], concurrent.futures.Executor],
        after_change: Callable[[set[int]], Awaitable[None]],
        watch_listeners: list[Callable[[str, IngestReport], None]],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._wait_index = wait_index
        self._embedder = embedder
        self._detector = detector
        self._audit = audit
        self._make_executor = make_executor
        self._ingestor: Ingestor | None = None
        self._index: SearchBackend | None = None
        self._ingesting = 0
        self.fill: VectorFill | None = (
            VectorFill(engine, embedder, batch=settings.embed_batch, on_vectors=self._on_vectors)
            if embedder is not None and settings.embed
            else None
        )
        self._changed: set[int] = set()
        self._after_change = after_change
        self._listeners = watch_listeners
        self.watcher: FolderWatcher | None = None

    async def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> IngestReport:
        if not paths:
            raise UsageError("Nothing to ingest: give at least one file or folder.")
        for p in paths:
            problem = path_problem(p, "ingest")
            if problem is not None:
                raise UsageError(problem)
        index = self._index = await self._wait_index()
        await asyncio.to_thread(self.flag_unscanned)
        if self._ingestor is None:
            self._ingestor = Ingestor(
                self._engine,
                self._settings,
                fill=self.fill,
                executor=self._make_executor(),
                on_change=self._on_change,
                on_vectors=self._on_vectors,
                supported=SUPPORTED_EXTENSIONS,
            )
        with request_context() as rid:
            log.info("ingest started", extra={"paths": [str(p) for p in paths]})
            self._ingesting += 1
            try:
                report = await self._ingestor.ingest(paths, progress=progress, cancel=cancel)
            finally:
                self._ingesting -= 1
            log.info("ingest done", extra={"request": rid, "summary": report.summary()})
            for o in report.failed:
                self._audit(
                    "quarantine",
                    "failed",
                    request_id=rid,
                    detail={"path": o.path, "reason": o.reason},
                )
            self._audit(
                "ingest",
                "cancelled" if report.cancelled else ("partial" if report.failed else "ok"),
                request_id=rid,
                latency_ms=report.elapsed_s * 1000,
                detail={"summary": report.summary(), "paths": [str(p) for p in paths][:20]},
            )
        try:
            await asyncio.to_thread(index.save, self._engine)
        except OSError:
            log.exception("could not persist the search index")
        changed, self._changed = self._changed, set()
        await self._after_change(changed)
        return report

    async def fill_vectors(
        self,
        progress: Callable[[FillProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> FillResult | None:
        """Embed what an earlier run left without vectors (cut short, or another model).

        ``Services`` runs it in the background after start-up; None when embedding is off.
        """
        if self.fill is None:
            return None
        index = self._index = await self._wait_index()
        result = await self.fill.run(progress=progress, cancel=cancel)
        if result.embedded:
            try:
                await asyncio.to_thread(index.save, self._engine)
            except OSError:
                log.exception("could not persist the search index")
        return result

    @property
    def vectors_pending(self) -> int:
        """Passages searched by keywords only until their vectors are in (0: complete).

        While files are being parsed that is every indexed passage without a
        vector; while the fill runs, what it has left.
        """
        fill = self.fill
        if fill is None:
            return 0
        if fill.running:
            return fill.progress.pending
        if self._ingesting and self._index is not None:
            return max(0, self._index.size - self._index.vector_count)
        return 0

    def _on_vectors(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Vectors filled in behind keyword search (called from a worker thread)."""
        if self._index is not None:
            self._index.apply(IndexDelta(filled=tuple(ids), filled_vectors=vectors))

    # ------------------------------------------------------------------ watching

    async def watch(self, folders: Sequence[str]) -> None:
        """Follow ``folders`` (replacing any watched before): reconcile, then watch."""
        await self.aclose()
        allowed = []
        for folder in folders:
            problem = path_problem(folder, "watch", require_exists=False)
            if problem is None:
                allowed.append(folder)
                continue
            log.warning("not watching %s: %s", folder, problem)
            self._audit("watch", "refused", detail={"path": folder, "reason": problem})
        folders = allowed
        if folders:
            self.watcher = FolderWatcher(folders, self.ingest, on_report=self._on_watch_report)
            await self.watcher.start()

    @property
    def watched_folders(self) -> list[str]:
        return list(self.watcher.folders) if self.watcher is not None else []

    def _on_watch_report(self, folder: str, report: IngestReport) -> None:
        for listener in list(self._listeners):
            try:
                listener(folder, report)
            except Exception:
                log.exception("watch listener failed")

    async def aclose(self) -> None:
        """Stop watching folders."""
        if self.watcher is not None:
            await self.watcher.aclose()
            self.watcher = None

    def _on_change(self, delta: IndexDelta) -> None:
        """Apply an ingestion change (called from a worker thread of the pipeline)."""
        assert self._index is not None
        if delta.added:
            self._flag(delta.added)
        self._index.apply(delta)
        self._changed.update(delta.documents)

    def _flag(self, chunks: Sequence[Chunk]) -> None:
        """Score each new chunk once and store it; record the flagged ones.

        Indirect prompt injection: flagged chunks stay searchable and readable
        (the user may be reading about attacks) but never reach a model's prompt.
        """
        scores: list[tuple[int, float, tuple[str, ...]]] = []
        for chunk in chunks:
            report = self._detector.scan(chunk.text, source="document")
            scores.append((chunk.id, report.score, report.categories if report.flagged else ()))
            if not report.flagged:
                continue
            log.warning(
                "possible prompt injection in %s (chunk %d): %s",
                chunk.source,
                chunk.id,
                ", ".join(report.categories),
            )
            self._audit(
                "injection",
                "blocked" if report.blocked else "flagged",
                detail={
                    "path": chunk.source,
                    "chunk_id": chunk.id,
                    "page": chunk.page,
                    "score": round(report.score, 3),
                    "categories": list(report.categories),
                },
            )
        with self._engine.begin() as conn:
            store.set_injection_flags(conn, scores)

    def flag_unscanned(self) -> int:
        """Score chunks stored before flags existed (blocking: a worker thread)."""
        done = 0
        while True:
            with self._engine.connect() as conn:
                batch = store.unscanned_chunks(conn)
            if not batch:
                return done
            scores = []
            for cid, text in batch:
                report = self._detector.scan(text, source="document")
                scores.append((cid, report.score, report.categories if report.flagged else ()))
            with self._engine.begin() as conn:
                store.set_injection_flags(conn, scores)
            done += len(batch)

    # ------------------------------------------------------------------ reads

    async def filters_for(
        self, paths: Sequence[str | Path] = (), kinds: Sequence[str] = ()
    ) -> SearchFilters:
        """Filters from user input: a file limits to that document, a folder to its tree."""

        def resolve() -> SearchFilters:
            doc_ids: set[int] = set()
            folders: list[str] = []
            with self._engine.connect() as conn:
                for raw in paths:
                    p = Path(raw).expanduser().resolve()
                    if p.is_dir():
                        folders.append(str(p))
                        continue
                    rows = store.documents_at(conn, str(p))
                    if not rows:
                        raise UsageError(
                            f"{p} is neither a folder nor a document in the knowledge base."
                        )
                    doc_ids.update(row.id for row in rows)
                if doc_ids and folders:
                    # Both given: the union, by listing the folders' documents too.
                    for folder in folders:
                        doc_ids.update(d.id for d in store.documents_under(conn, folder))
                    folders = []
            return SearchFilters(
                document_ids=frozenset(doc_ids), folders=tuple(folders), kinds=frozenset(kinds)
            )

        return await asyncio.to_thread(resolve)

    async def document_text(self, path: str) -> str:
        """The extracted text of a source (citations index into it)."""

        def read() -> str | None:
            with self._engine.connect() as conn:
                return store.document_text(conn, path)

        text = await asyncio.to_thread(read)
        if text is None:
            raise UsageError(f"{path} is not in the knowledge base.")
        return text

    async def flagged_passages(self, path: str) -> list[FlaggedPassage]:
        """The passages of a source that are kept out of every prompt, in text order."""

        def read() -> list[FlaggedPassage]:
            with self._engine.connect() as conn:
                return store.flagged_passages(conn, path, self._detector.flag_at)

        return await asyncio.to_thread(read)

    async def quarantined(self) -> list[tuple[str, str, float]]:
        def read() -> list[tuple[str, str, float]]:
            with self._engine.connect() as conn:
                return store.quarantined(conn)

        return await asyncio.to_thread(read)
