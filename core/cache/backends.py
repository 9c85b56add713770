"""Cache storage behind one Protocol, and the embedded (in-process + SQLite) backend.

A backend stores two layers and knows nothing about guards, thresholds or
fallbacks (that is ``service.py``):

* layer 1: ``key -> float32 vector`` with a TTL (the key is already hashed);
* layer 2: ``ResultEntry`` rows, searched by cosine within one namespace.

Backends raise :class:`~core.errors.CacheUnavailable` for environment faults;
the service turns those into misses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.errors import CacheUnavailable
from core.types import FloatArray

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Vector = FloatArray

# Above this many rows a namespace search runs in a worker thread (a 384-d matrix
# product over 5,000 rows takes ~0.3 ms; over 100,000 rows ~10 ms).
THREAD_SEARCH_ROWS = 5_000


def as_vector(vec: npt.ArrayLike) -> Vector:
    """A contiguous 1-D float32 copy of ``vec``."""
    arr = np.ascontiguousarray(np.asarray(vec, dtype=np.float32).reshape(-1))
    return arr.copy() if arr is vec else arr


def unit_vector(vec: npt.ArrayLike) -> Vector:
    """``vec`` scaled to length 1 (a zero vector stays zero), as float32."""
    arr = as_vector(vec)
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 0 else arr


def vector_to_bytes(vec: Vector) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> Vector:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


@dataclass(frozen=True, slots=True)
class ResultEntry:
    """One cached answer. ``vector`` is the unit-length embedding of ``question``."""

    entry_id: str
    namespace: str
    question: str
    vector: Vector = field(repr=False, compare=False)
    payload: dict[str, Any]
    document_ids: tuple[int, ...]
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A cached question close to the incoming one (found without any I/O)."""

    entry_id: str
    question: str
    similarity: float


@runtime_checkable
class CacheBackend(Protocol):
    """What the cache service needs from a store. All methods may raise CacheUnavailable."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def ping(self) -> None: ...

    async def get_embedding(self, key: str) -> Vector | None: ...

    async def put_embedding(self, key: str, vec: Vector, ttl_s: float) -> None: ...

    async def search(
        self, namespace: str, vec: Vector, min_similarity: float, limit: int
    ) -> list[Candidate]:
        """The most similar live questions of ``namespace``, best first."""
        ...

    async def fetch(self, entry_id: str) -> ResultEntry | None:
        """The entry if it still exists and has not expired (one round trip)."""
        ...

    async def put_result(self, entry: ResultEntry) -> None: ...

    async def evict(self, entry_id: str) -> bool: ...

    async def invalidate_documents(self, doc_ids: Iterable[int]) -> int:
        """Remove every answer that cited one of ``doc_ids``; returns how many."""
        ...

    async def invalidate_all(self) -> None:
        """Drop every cached answer (layer 2). Embeddings stay: they depend on the model only."""
        ...

    async def entry_count(self) -> int: ...


# --------------------------------------------------------------------------- vector index


class VectorIndex:
    """Unit vectors of one namespace's cached questions, searched by one matrix product.

    Rows are kept compact (a removal moves the last row into the hole) in a
    buffer that doubles when full. A lock makes ``search`` safe to run in a worker
    thread while the event loop adds or removes rows.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._matrix: npt.NDArray[np.float32] = np.zeros((16, dim), dtype=np.float32)
        self._expires = np.zeros(16, dtype=np.float64)
        self._ids: list[str] = []
        self._questions: list[str] = []
        self._row: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._row

    def ids(self) -> list[str]:
        return list(self._ids)

    def add(self, entry_id: str, question: str, vec: Vector, expires_at: float) -> None:
        if vec.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} floats, got shape {vec.shape}")
        with self._lock:
            row = self._row.get(entry_id)
            if row is None:
                row = len(self._ids)
                if row == self._matrix.shape[0]:
                    grown = np.zeros((row * 2, self.dim), dtype=np.float32)
                    grown[:row] = self._matrix
                    self._matrix = grown
                    self._expires = np.resize(self._expires, row * 2)
                self._ids.append(entry_id)
                self._questions.append(question)
                self._row[entry_id] = row
            else:
                self._questions[row] = question
            self._matrix[row] = vec
            self._expires[row] = expires_at

    def remove(self, entry_id: str) -> bool:
        with self._lock:
            row = self._row.pop(entry_id, None)
            if row is None:
                return False
            last = len(self._ids) - 1
            if row != last:
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._expires[row] = self._expires[last]
                self._ids[row] = moved
                self._questions[row] = self._questions[last]
                self._row[moved] = row
            self._ids.pop()
            self._questions.pop()
            return True

    def search(self, vec: Vector, min_similarity: float, limit: int, now: float) -> list[Candidate]:
        with self._lock:
            n = len(self._ids)
            if n == 0 or limit <= 0:
                return []
            scores = self._matrix[:n] @ vec
            # expiry is checked on a few more than ``limit`` best rows, not on all n
            k = min(limit + 8, n)
            top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            live = [i for i in top if self._expires[i] > now and scores[i] >= min_similarity]
            if len(live) < min(limit, k) and len(top) < n and scores[top[-1]] >= min_similarity:
                scores[self._expires[:n] <= now] = -np.inf  # many expired: mask them all
                top = np.argsort(-scores, kind="stable")[:limit]
                live = [i for i in top if scores[i] >= min_similarity]
            return [
                Candidate(self._ids[i], self._questions[i], float(scores[i])) for i in live[:limit]
            ]

    def expired(self, now: float) -> list[str]:
        with self._lock:
            n = len(self._ids)
            return [self._ids[i] for i in np.nonzero(self._expires[:n] <= now)[0]]


class NamespaceIndexes:
    """One :class:`VectorIndex` per namespace plus the entry -> namespace map."""

    def __init__(self) -> None:
        self.by_namespace: dict[str, VectorIndex] = {}
        self.namespace_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.namespace_of)

    def add(self, entry_id: str, namespace: str, question: str, vec: Vector, exp: float) -> None:
        old = self.namespace_of.get(entry_id)
        if old is not None and old != namespace:
            self.by_namespace[old].remove(entry_id)
        index = self.by_namespace.get(namespace)
        if index is None:
            index = self.by_namespace[namespace] = VectorIndex(vec.shape[0])
        index.add(entry_id, question, vec, exp)
        self.namespace_of[entry_id] = namespace

    def remove(self, entry_id: str) -> bool:
        namespace = self.namespace_of.pop(entry_id, None)
        if namespace is None:
            return False
        index = self.by_namespace[namespace]
        index.remove(entry_id)
        if not len(index):
            del self.by_namespace[namespace]
        return True

    def clear(self) -> None:
        self.by_namespace.clear()
        self.namespace_of.clear()

    async def search(
        self, namespace: str, vec: Vector, min_similarity: float, limit: int, now: float
    ) -> list[Candidate]:
        index = self.by_namespace.get(namespace)
        if index is None or vec.shape != (index.dim,):
            return []
        if len(index) >= THREAD_SEARCH_ROWS:
            return await asyncio.to_thread(index.search, vec, min_similarity, limit, now)
        return index.search(vec, min_similarity, limit, now)


# --------------------------------------------------------------------------- embedded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY, vector BLOB NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    entry_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, question TEXT NOT NULL,
    vector BLOB NOT NULL, payload TEXT NOT NULL, document_ids TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
"""


class EmbeddedBackend:
    """In-process dicts and per-namespace matrices, persisted to one SQLite file.

    Reads are served from memory; every write is applied to memory at once and
    queued to a single writer thread, so the event loop never waits on SQLite and
    the file always reflects the order of writes. ``start()`` loads the file
    (dropping expired rows), ``aclose()`` drains the queue and closes it.

    ``path=None`` keeps everything in memory (tests, or no data folder).

        backend = EmbeddedBackend(settings.home / "cache.sqlite3")
        await backend.start()
        ...
        await backend.aclose()
    """

    def __init__(
        self, path: str | Path | None, *, clock: Clock = time.time, max_entries: int = 100_000
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._clock = clock
        self._max_entries = max_entries
        self._embeddings: dict[str, tuple[Vector, float]] = {}
        self._entries: dict[str, ResultEntry] = {}
        self._by_document: dict[int, set[str]] = {}
        self._index = NamespaceIndexes()
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self.evictions = 0

    @property
    def name(self) -> str:
        return "embedded"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._path is None or self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-sqlite")
        try:
            embeddings, entries = await self._run(self._open_and_load, self._clock())
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise CacheUnavailable(
                f"The cache file {self._path} could not be opened: {exc}"
            ) from exc
        self._embeddings.update(embeddings)
        for entry in entries:
            self._remember(entry)

    async def aclose(self) -> None:
        executor = self._executor
        if executor is None:
            return
        await self.flush()
        await self._run(self._close_db)
        self._executor = None
        executor.shutdown(wait=True)

    async def flush(self) -> None:
        """Wait until every queued write has reached the file."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def ping(self) -> None:
        return None

    # ------------------------------------------------------------------ layer 1

    async def get_embedding(self, key: str) -> Vector | None:
        item = self._embeddings.get(key)
        if item is None:
            return None
        vec, expires_at = item
        if expires_at <= self._clock():
            del self._embeddings[key]
            self._write(lambda db: db.execute("DELETE FROM embeddings WHERE key = ?", (key,)))
            return None
        return vec.copy()

    async def put_embedding(self, key: str, vec: Vector, ttl_s: float) -> None:
        vec = as_vector(vec)
        expires_at = self._clock() + ttl_s
        self._embeddings[key] = (vec, expires_at)
        blob = vector_to_bytes(vec)
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", (key, blob, expires_at)
            )
        )

    # ------------------------------------------------------------------ layer 2

    async def search(
        self, namespace: str, vec: Vector, min_similarity: float, limit: int
    ) -> list[Candidate]:
        return await self._index.search(namespace, vec, min_similarity, limit, self._clock())

    async def fetch(self, entry_id: str) -> ResultEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._forget([entry_id])
            return None
        return entry

    async def put_result(self, entry: ResultEntry) -> None:
        if entry.entry_id not in self._entries and len(self._entries) >= self._max_entries:
            self._make_room()
        self._forget([entry.entry_id], persist=False)
        self._remember(entry)
        row = (
            entry.entry_id,
            entry.namespace,
            entry.question,
            vector_to_bytes(entry.vector),
            json.dumps(entry.payload),
            json.dumps(list(entry.document_ids)),
            entry.created_at,
            entry.expires_at,
        )
        self._write(
            lambda db: db.execute("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?)", row)
        )

    async def evict(self, entry_id: str) -> bool:
        return self._forget([entry_id]) == 1

    async def invalidate_documents(self, doc_ids: Iterable[int]) -> int:
        ids: set[str] = set()
        for doc in doc_ids:
            ids |= self._by_document.get(int(doc), set())
        return self._forget(sorted(ids))

    async def invalidate_all(self) -> None:
        self._entries.clear()
        self._by_document.clear()
        self._index.clear()
        self._write(lambda db: db.execute("DELETE FROM results"))

    async def entry_count(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ internals

    def _remember(self, entry: ResultEntry) -> None:
        self._entries[entry.entry_id] = entry
        for doc in entry.document_ids:
            self._by_document.setdefault(doc, set()).add(entry.entry_id)
        self._index.add(
            entry.entry_id, entry.namespace, entry.question, entry.vector, entry.expires_at
        )

    def _forget(self, entry_ids: Iterable[str], *, persist: bool = True) -> int:
        gone: list[str] = []
        for entry_id in entry_ids:
            entry = self._entries.pop(entry_id, None)
            if entry is None:
                continue
            gone.append(entry_id)
            self._index.remove(entry_id)
            for doc in entry.document_ids:
                refs = self._by_document.get(doc)
                if refs is not None:
                    refs.discard(entry_id)
                    if not refs:
                        del self._by_document[doc]
        if gone and persist:
            params = [(i,) for i in gone]
            self._write(lambda db: db.executemany("DELETE FROM results WHERE entry_id = ?", params))
        return len(gone)

    def _make_room(self) -> None:
        """At capacity: drop expired entries, else the tenth that expires soonest."""
        now = self._clock()
        expired = [e.entry_id for e in self._entries.values() if e.expires_at <= now]
        if not expired:
            by_expiry = sorted(self._entries.values(), key=lambda e: e.expires_at)
            expired = [e.entry_id for e in by_expiry[: max(1, len(by_expiry) // 10)]]
        self.evictions += self._forget(expired)

    def _write(self, op: Callable[[sqlite3.Connection], object]) -> None:
        if self._executor is None:
            return

        def run() -> None:
            db = self._db
            if db is None:
                return
            try:
                op(db)
                db.commit()
            except sqlite3.Error:
                log.warning("cache: a write to %s failed", self._path, exc_info=True)

        fut = asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open_and_load(
        self, now: float
    ) -> tuple[dict[str, tuple[Vector, float]], list[ResultEntry]]:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("DELETE FROM embeddings WHERE expires_at <= ?", (now,))
        db.execute("DELETE FROM results WHERE expires_at <= ?", (now,))
        db.commit()
        self._db = db
        embeddings = {
            key: (vector_from_bytes(blob), float(exp))
            for key, blob, exp in db.execute("SELECT key, vector, expires_at FROM embeddings")
        }
        entries = [
            ResultEntry(
                entry_id=row[0],
                namespace=row[1],
                question=row[2],
                vector=vector_from_bytes(row[3]),
                payload=json.loads(row[4]),
                document_ids=tuple(int(d) for d in json.loads(row[5])),
                created_at=float(row[6]),
                expires_at=float(row[7]),
            )
            for row in db.execute("SELECT * FROM results")
        ]
        return embeddings, entries

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
