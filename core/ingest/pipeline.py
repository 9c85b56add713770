"""The ingestion pipeline: discover → plan → parse (processes) → store → fill vectors.

* **Incremental.** A file whose size and mtime match its record costs a stat;
  one whose content hash matches costs a hash. A file whose content matches a
  document whose path is gone is a move: its record is re-pointed, nothing is
  re-parsed or re-embedded. Documents under an ingested folder whose files are
  gone are removed.
* **Never abort.** Every per-file failure becomes a ``FAILED`` outcome with a
  reason and a quarantine row; the batch goes on.
* **Atomic per document.** A document's chunks are replaced in one
  transaction; a kill mid-run leaves the knowledge base consistent and the next
  run resumes (finished files are then unchanged).
* **Keyword search first, vectors behind.** Parsing runs in a process pool
  while the previous documents are stored and indexed for keyword search (a
  worker thread), so a folder is searchable as fast as it parses. Passages whose
  text already has a vector (an unchanged passage of an edited document) get it
  at once; the others are embedded afterwards by ``VectorFill`` (the slow part),
  whose progress the same callback reports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from core.config import IngestSettings
from core.db import store
from core.ingest.fill import OnVectors, VectorFill
from core.ingest.worker import ParseResult, parse_and_chunk
from core.types import (
    Chunk,
    FileOutcome,
    FileStatus,
    FillProgress,
    IndexDelta,
    IngestProgress,
    IngestReport,
)

log = logging.getLogger(__name__)

# Folders that never hold the user's documents: version control, dependencies,
# caches, and Sphinx build artefacts (``_sources`` repeats every page as reST,
# ``_static`` holds themes and minified JavaScript).
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".mypy_cache",
        "_sources",
        "_static",
    }
)

# Stylesheets in a folder that holds web pages style those pages: they are not
# documents (a documentation folder's common.css made 58 passages of selectors).
# Dropped on their own, or in a folder without pages, they are ingested as code.
PAGE_STYLESHEETS = frozenset({".css", ".scss", ".sass", ".less"})
_PAGE_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


@dataclass(slots=True)
class _Work:
    path: str
    size: int
    mtime: float
    content_hash: str
    existing_id: int | None


@dataclass(slots=True)
class _Plan:
    outcomes: list[FileOutcome] = field(default_factory=list)
    work: list[_Work] = field(default_factory=list)
    removed_docs: list[tuple[int, str]] = field(default_factory=list)
    moves: list[tuple[int, str, str, float]] = field(default_factory=list)  # id, old, new, mtime


def sha256_file(path: str, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(block):
            h.update(data)
    return h.hexdigest()


def discover(
    paths: Iterable[str | os.PathLike[str]], supported: frozenset[str]
) -> tuple[list[str], list[str], list[FileOutcome]]:
    """Expand folders: (files, folder roots, outcomes for unusable explicit paths)."""
    files: list[str] = []
    roots: list[str] = []
    failures: list[FileOutcome] = []
    seen: set[str] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        try:
            p = p.resolve(strict=True)
        except (OSError, RuntimeError):
            failures.append(FileOutcome(str(p.absolute()), FileStatus.FAILED, reason="not found"))
            continue
        if p.is_dir():
            roots.append(str(p))
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames[:] = sorted(
                    d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                )
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    full = os.path.join(dirpath, name)
                    if Path(name).suffix.lower() in supported and full not in seen:
                        seen.add(full)
                        found.append(full)
            if any(Path(f).suffix.lower() in _PAGE_SUFFIXES for f in found):
                found = [f for f in found if Path(f).suffix.lower() not in PAGE_STYLESHEETS]
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in supported:
                failures.append(
                    FileOutcome(
                        str(p), FileStatus.FAILED, reason=f"unsupported file type '{p.suffix}'"
                    )
                )
            elif str(p) not in seen:
                seen.add(str(p))
                files.append(str(p))
        else:
            failures.append(FileOutcome(str(p), FileStatus.FAILED, reason="not a regular file"))
    return files, roots, failures


class Ingestor:
    """Runs ingestion batches against the one engine; reports index changes."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: IngestSettings,
        *,
        fill: VectorFill | None,
        executor: concurrent.futures.Executor,
        on_change: Callable[[IndexDelta], None],  # called from worker threads
        on_vectors: OnVectors,  # called from worker threads
        supported: frozenset[str],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._fill = fill if settings.embed else None
        self._on_vectors = on_vectors
        self._executor = executor
        self._on_change = on_change
        self._supported = supported
        self._lock = asyncio.Lock()  # one batch at a time: the store has one writer

    async def ingest(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> IngestReport:
        # One batch stores at a time (the store has one writer); the vector fill
        # runs after the lock is released, so a second batch dropped meanwhile is
        # keyword-searchable at once and the running fill takes its passages too.
        await self._lock.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._lock.release()

        try:
            return await self._ingest(paths, progress, cancel, release)
        finally:
            release()

    async def _ingest(
        self,
        paths: Sequence[str | os.PathLike[str]],
        progress: Callable[[IngestProgress], None] | None,
        cancel: asyncio.Event | None,
        release: Callable[[], None],
    ) -> IngestReport:
        started = time.perf_counter()
        timings = {"plan": 0.0, "parse": 0.0, "chunk": 0.0, "embed": 0.0, "store": 0.0}
        files, roots, failures = await asyncio.to_thread(discover, paths, self._supported)
        plan = await asyncio.to_thread(self._plan, files, roots)
        timings["plan"] = time.perf_counter() - started
        outcomes: list[FileOutcome] = list(failures) + plan.outcomes
        for outcome in failures:
            await asyncio.to_thread(self._quarantine, outcome.path, outcome.reason or "failed")
        await asyncio.to_thread(self._apply_moves_and_removals, plan, outcomes)

        total = len(plan.work) + len(outcomes)
        bytes_total = sum(w.size for w in plan.work)
        done = len(outcomes)
        bytes_done = 0
        chunks_done = 0
        fill: FillProgress | None = None

        def emit(current: str | None, last: FileOutcome | None) -> None:
            if progress is None:
                return
            elapsed = time.perf_counter() - started
            remaining = bytes_total - bytes_done
            rate = bytes_done / elapsed if elapsed > 0 and bytes_done else 0.0
            eta = remaining / rate if rate > 0 else None
            progress(
                IngestProgress(
                    files_done=done,
                    files_total=total,
                    chunks=chunks_done,
                    bytes_done=bytes_done,
                    bytes_total=bytes_total,
                    current=current,
                    elapsed_s=elapsed,
                    eta_s=eta if fill is None else fill.eta_s,
                    last=last,
                    vectors_done=fill.done if fill is not None else 0,
                    vectors_total=fill.total if fill is not None else 0,
                    searchable_s=searchable_s,
                )
            )

        searchable_s: float | None = None
        emit(plan.work[0].path if plan.work else None, outcomes[-1] if outcomes else None)
        cancelled = False

        def stopped() -> bool:
            return cancel is not None and cancel.is_set()

        # Parsing (process pool) feeds storing and keyword indexing (a worker
        # thread); the vectors are filled in after the last document is searchable.
        parsed: asyncio.Queue[tuple[_Work, ParseResult] | None] = asyncio.Queue(maxsize=16)

        async def parse_stage() -> None:
            loop = asyncio.get_running_loop()
            max_in_flight = max(2, self._settings.parse_workers * 2)
            max_bytes = int(self._settings.max_file_mb * 1024 * 1024)
            pending: dict[asyncio.Future[ParseResult], _Work] = {}
            queue = list(reversed(plan.work))
            try:
                while queue or pending:
                    while queue and len(pending) < max_in_flight and not stopped():
                        work = queue.pop()
                        fut = loop.run_in_executor(
                            self._executor,
                            parse_and_chunk,
                            work.path,
                            max_bytes,
                            self._settings.chunk_tokens,
                            self._settings.overlap_tokens,
                        )
                        pending[fut] = work
                    if not pending:
                        break
                    finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for fut in finished:
                        work = pending.pop(fut)
                        try:
                            result = fut.result()
                        except Exception as exc:  # a dead worker process, say
                            result = ParseResult(
                                work.path, None, (), f"the parser crashed ({exc})", 0.0, 0.0
                            )
                        timings["parse"] += result.parse_s
                        timings["chunk"] += result.chunk_s
                        if not stopped():
                            await parsed.put((work, result))
            finally:
                for fut in pending:
                    fut.cancel()
                await parsed.put(None)

        async def store_stage() -> None:
            nonlocal done, bytes_done, chunks_done
            while True:
                item = await parsed.get()
                if item is None:
                    return
                work, result = item
                outcome = await self._finish(work, result, timings)
                outcomes.append(outcome)
                done += 1
                bytes_done += work.size
                chunks_done += outcome.chunks
                emit(None if done >= total else work.path, outcome)

        tasks = [
            asyncio.create_task(parse_stage(), name="ingest-parse"),
            asyncio.create_task(store_stage(), name="ingest-store"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = stopped() and done < total
        searchable_s = time.perf_counter() - started
        timings["searchable"] = searchable_s
        release()

        if self._fill is not None and not stopped():
            # Also what an earlier run left (cut short, or another embedding model).
            def on_fill(p: FillProgress) -> None:
                nonlocal fill
                fill = p
                emit(None, None)

            filled = await self._fill.run(progress=on_fill, cancel=cancel)
            timings["embed"] = filled.elapsed_s
            cancelled = cancelled or filled.cancelled

        report = IngestReport(
            outcomes=tuple(outcomes),
            elapsed_s=time.perf_counter() - started,
            cancelled=cancelled,
            timings_s=timings,
        )
        log.info(
            "ingest finished",
            extra={"summary": report.summary(), "elapsed_s": round(report.elapsed_s, 3)},
        )
        return report

    # ------------------------------------------------------------------ planning

    def _plan(self, files: list[str], roots: list[str]) -> _Plan:
        plan = _Plan()
        found = set(files)
        max_bytes = int(self._settings.max_file_mb * 1024 * 1024)
        with self._engine.connect() as conn:
            missing: dict[str, list[store.DocumentRow]] = {}
            for root in roots:
                for doc in store.documents_under(conn, root, own=True):
                    if doc.path not in found and not os.path.exists(doc.path):
                        missing.setdefault(doc.content_hash, []).append(doc)
            claimed: set[int] = set()
            for path in files:
                try:
                    st = os.stat(path)
                except OSError as exc:
                    plan.outcomes.append(
                        FileOutcome(
                            path, FileStatus.FAILED, reason=f"cannot be read ({exc.strerror})"
                        )
                    )
                    continue
                if st.st_size > max_bytes:
                    mb = st.st_size / 1024 / 1024
                    plan.outcomes.append(
                        FileOutcome(
                            path,
                            FileStatus.FAILED,
                            reason=f"too large ({mb:.0f} MB; the limit is "
                            f"{self._settings.max_file_mb:g} MB)",
                        )
                    )
                    continue
                existing = store.document_by_path(conn, path, own=True)
                if existing and existing.size == st.st_size and existing.mtime == st.st_mtime:
                    plan.outcomes.append(FileOutcome(path, FileStatus.UNCHANGED))
                    continue
                try:
                    digest = sha256_file(path)
                except OSError as exc:
                    plan.outcomes.append(
                        FileOutcome(
                            path, FileStatus.FAILED, reason=f"cannot be read ({exc.strerror})"
                        )
                    )
                    continue
                if existing is not None:
                    if existing.content_hash == digest:
                        with self._engine.begin() as wconn:
                            store.touch_document(wconn, existing.id, st.st_size, st.st_mtime)
                        plan.outcomes.append(FileOutcome(path, FileStatus.UNCHANGED))
                    else:
                        plan.work.append(_Work(path, st.st_size, st.st_mtime, digest, existing.id))
                    continue
                moved_from = self._find_moved(conn, digest, missing, claimed)
                if moved_from is not None:
                    claimed.add(moved_from.id)
                    plan.moves.append((moved_from.id, moved_from.path, path, st.st_mtime))
                    continue
                plan.work.append(_Work(path, st.st_size, st.st_mtime, digest, None))
            for docs in missing.values():
                for doc in docs:
                    if doc.id not in claimed:
                        plan.removed_docs.append((doc.id, doc.path))
        return plan

    @staticmethod
    def _find_moved(
        conn: sa.Connection,
        digest: str,
        missing: dict[str, list[store.DocumentRow]],
        claimed: set[int],
    ) -> store.DocumentRow | None:
        for doc in missing.get(digest, []):
            if doc.id not in claimed:
                return doc
        for doc in store.documents_by_hash(conn, digest, own=True):
            if doc.id not in claimed and not os.path.exists(doc.path):
                return doc
        return None

    def _apply_moves_and_removals(self, plan: _Plan, outcomes: list[FileOutcome]) -> None:
        removed_chunks: list[int] = []
        changed_docs: set[int] = set()
        moved: list[tuple[int, str]] = []
        with self._engine.begin() as conn:
            for doc_id, old, new, mtime in plan.moves:
                store.move_document(conn, doc_id, new, mtime)
                n = len(store.chunk_ids_of(conn, doc_id))
                outcomes.append(
                    FileOutcome(new, FileStatus.MOVED, chunks=n, reason=f"moved from {old}")
                )
                moved.append((doc_id, new))
                changed_docs.add(doc_id)
            for doc_id, path in plan.removed_docs:
                removed_chunks.extend(store.delete_document(conn, doc_id))
                outcomes.append(FileOutcome(path, FileStatus.REMOVED))
                changed_docs.add(doc_id)
        if changed_docs:
            self._on_change(
                IndexDelta(
                    removed=tuple(removed_chunks),
                    documents=frozenset(changed_docs),
                    moved=tuple(moved),
                )
            )

    # ------------------------------------------------------------------ per file

    def _quarantine(self, path: str, reason: str) -> None:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = None, None
        with self._engine.begin() as conn:
            store.record_quarantine(conn, path, reason, size, mtime)
        log.warning("quarantined %s: %s", path, reason, extra={"path": path, "reason": reason})

    async def _finish(
        self, work: _Work, result: ParseResult, timings: dict[str, float]
    ) -> FileOutcome:
        if result.error is not None or result.document is None:
            reason = result.error or "no text could be extracted"
            await asyncio.to_thread(self._quarantine, work.path, reason)
            return FileOutcome(work.path, FileStatus.FAILED, reason=reason)
        t0 = time.perf_counter()
        try:
            delta = await asyncio.to_thread(self._store, work, result)
        except sa.exc.SQLAlchemyError as exc:
            reason = f"could not be stored ({type(exc).__name__})"
            log.exception("store failed for %s", work.path)
            return FileOutcome(work.path, FileStatus.FAILED, reason=reason)
        timings["store"] += time.perf_counter() - t0
        # Index updates tokenize every chunk: a worker thread, never the event loop.
        await asyncio.to_thread(self._index_document, delta)
        status = FileStatus.ADDED if work.existing_id is None else FileStatus.UPDATED
        return FileOutcome(work.path, status, chunks=len(result.drafts))

    def _index_document(self, delta: IndexDelta) -> None:
        """Keyword-index a stored document; passages whose text has a vector get it now."""
        self._on_change(delta)
        if self._fill is None or not delta.added:
            return
        hashes = [store.text_hash(c.text) for c in delta.added]
        with self._engine.connect() as conn:
            known = store.load_embeddings(conn, self._fill.key, hashes)
        have = [(c.id, known[h]) for c, h in zip(delta.added, hashes, strict=True) if h in known]
        if have:
            self._on_vectors([cid for cid, _ in have], np.vstack([v for _, v in have]))

    def _store(self, work: _Work, result: ParseResult) -> IndexDelta:
        assert result.document is not None
        with self._engine.begin() as conn:
            doc_id, new_ids, removed = store.write_document(
                conn,
                path=work.path,
                content_hash=work.content_hash,
                size=work.size,
                mtime=work.mtime,
                doc=result.document,
                drafts=result.drafts,
                existing_id=work.existing_id,
            )
        added = tuple(
            Chunk(
                id=cid,
                document_id=doc_id,
                source=work.path,
                ordinal=d.ordinal,
                text=d.text,
                start=d.start,
                end=d.end,
                page=d.page,
                heading_path=d.heading_path,
            )
            for cid, d in zip(new_ids, result.drafts, strict=True)
        )
        return IndexDelta(
            added=added,
            kinds=tuple(result.document.kind for _ in added),
            removed=tuple(removed),
            documents=frozenset({doc_id}),
        )
