"""Exact cosine search over normalised float32 embeddings.

The vectors live in one row-major float32 matrix. In memory by default; after
``open(directory)`` the matrix is a memory-mapped raw file, so a large index
costs page cache rather than private memory and starts without reading
anything. Search is one matrix-vector product and an ``argpartition``-style
selection: exact, and memory-bound: ~8 ms for 100K x 384 and ~75-85 ms for 1M on
a 2-core machine (tests/bench/retrieval.py).

Files in the directory:

- ``vectors.<generation>.f32``: rows of ``dim`` float32 (capacity grows by doubling).
- ``index.npz``: the commit record: format, ``dim``, generation, and for every row
  its id and whether it is alive.

Crash safety: rows are only ever appended past the committed row count, and
removal is a tombstone in the commit record, so committed rows are never
overwritten. ``flush()`` syncs the matrix, then replaces ``index.npz``
atomically (temp file + rename): a crash leaves the previous commit intact.
Compaction (when half the rows are dead) writes a new generation file and
commits it before deleting the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Sequence, Set
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from core.errors import StorageError
from core.types import FloatArray

__all__ = ["VectorIndex"]

_FORMAT = "archivist-vectors"
_VERSION = 1
_MANIFEST = "index.npz"
_MIN_CAPACITY = 256
_COMPACT_MIN_ROWS = 1024
_COPY_ROWS = 65_536  # compaction copies this many rows at a time

IntArray = NDArray[np.int64]
Allowed = NDArray[np.integer[Any]] | Set[int] | None


def _normalise_rows(vectors: ArrayLike, dim: int) -> FloatArray:
    """Validate shape and finiteness; scale each row to unit length (zero rows stay zero)."""
    matrix = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(matrix, axis=1)
    nonzero = norms > 0
    matrix[nonzero] /= norms[nonzero, None]
    return matrix


class VectorIndex:
    """Normalised embeddings keyed by integer chunk ids, with exact cosine top-k.

    ``add`` with an id already present replaces its vector. ``search`` returns
    ``(id, cosine)`` sorted by cosine (descending) then id. One re-entrant lock
    guards every method::

        index = VectorIndex(384)
        index.open(data_dir / "vectors")  # optional: persist and memory-map
        index.add(chunk_ids, embeddings)
        index.flush()
        index.search(query_embedding, k=50)
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._lock = threading.RLock()
        self._directory: Path | None = None
        self._generation = 0
        self._matrix: FloatArray = np.zeros((_MIN_CAPACITY, dim), dtype=np.float32)
        self._reset_rows()

    def _reset_rows(self) -> None:
        self._rows = 0  # rows in use (alive or dead)
        self._row_ids: IntArray = np.zeros(len(self._matrix), dtype=np.int64)
        self._alive: NDArray[np.bool_] = np.zeros(len(self._matrix), dtype=np.bool_)
        self._id_to_row: dict[int, int] = {}
        self._invalidate()

    def _invalidate(self) -> None:
        self._dead_rows: IntArray | None = None
        self._id_lookup: tuple[IntArray, IntArray] | None = None

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        with self._lock:
            return len(self._id_to_row)

    def __contains__(self, chunk_id: object) -> bool:
        with self._lock:
            return chunk_id in self._id_to_row

    def ids(self) -> IntArray:
        """The ids in the index, ascending (to check it against the database)."""
        with self._lock:
            return np.sort(np.fromiter(self._id_to_row, dtype=np.int64))

    def get(self, chunk_id: int) -> FloatArray | None:
        """A copy of the stored (normalised) vector, or None."""
        with self._lock:
            row = self._id_to_row.get(chunk_id)
            return None if row is None else np.array(self._matrix[row])

    @property
    def directory(self) -> Path | None:
        return self._directory

    def stats(self) -> dict[str, int | str | None]:
        with self._lock:
            return {
                "vectors": len(self._id_to_row),
                "rows": self._rows,
                "capacity": len(self._matrix),
                "dim": self.dim,
                "directory": None if self._directory is None else str(self._directory),
            }

    # ------------------------------------------------------------------ persistence

    def open(self, directory: str | os.PathLike[str]) -> None:
        """Persist to ``directory``: load what is there, or write the current contents.

        Raises ``StorageError`` when the files there are damaged or hold vectors of
        another dimension (another embedding model): the caller then deletes the
        directory (or calls ``clear()`` after ``open`` fails on a fresh index) and
        re-embeds.
        """
        path = Path(directory)
        with self._lock:
            if self._directory is not None:
                raise RuntimeError(f"vector index already open at {self._directory}")
            path.mkdir(parents=True, exist_ok=True)
            if (path / _MANIFEST).exists():
                if self._rows:
                    raise ValueError("open() an existing directory only with an empty index")
                self._load(path)
            else:
                self._directory = path
                self._write_generation(self._generation + 1)
            self._remove_stray_files()

    def _load(self, path: Path) -> None:
        try:
            with (
                open(path / _MANIFEST, "rb") as handle,
                np.load(handle, allow_pickle=False) as data,
            ):
                header = json.loads(data["header"].tobytes().decode("utf-8"))
                ids = data["ids"].astype(np.int64)
                alive = data["alive"].astype(np.bool_)
            if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                raise ValueError(f"unknown format {header.get('format')!r}")
            generation, rows = int(header["generation"]), int(header["rows"])
            file = path / f"vectors.{generation}.f32"
            row_bytes = self.dim * 4
            size = file.stat().st_size
            if len(ids) != rows or len(alive) != rows or size < rows * row_bytes:
                raise ValueError("the vector file is shorter than its index")
            if len(set(ids[alive].tolist())) != int(alive.sum()):
                raise ValueError("duplicate ids")
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise StorageError(
                f"The vector index in {path} could not be read ({exc}); "
                "the documents will be embedded again."
            ) from exc
        if int(header.get("dim", -1)) != self.dim:
            raise StorageError(
                f"The vector index in {path} holds {header.get('dim')}-dimensional vectors, "
                f"but the embedding model makes {self.dim}; the documents will be embedded again."
            )
        capacity = max(size // row_bytes, 1)
        self._directory = path
        self._generation = generation
        self._matrix = np.memmap(file, dtype=np.float32, mode="r+", shape=(capacity, self.dim))
        self._rows = rows
        self._row_ids = np.zeros(capacity, dtype=np.int64)
        self._row_ids[:rows] = ids
        self._alive = np.zeros(capacity, dtype=np.bool_)
        self._alive[:rows] = alive
        live_rows = np.flatnonzero(alive)
        self._id_to_row = dict(zip(ids[live_rows].tolist(), live_rows.tolist(), strict=True))
        self._invalidate()

    def _vector_file(self, generation: int) -> Path:
        assert self._directory is not None
        return self._directory / f"vectors.{generation}.f32"

    def _write_generation(self, generation: int) -> None:
        """Write the live rows to a new file, map it and commit; the old file goes."""
        old = self._generation
        live_rows = np.flatnonzero(self._alive[: self._rows])
        capacity = max(_MIN_CAPACITY, 2 * len(live_rows))
        file = self._vector_file(generation)
        with open(file, "wb") as handle:
            handle.truncate(capacity * self.dim * 4)
        matrix = np.memmap(file, dtype=np.float32, mode="r+", shape=(capacity, self.dim))
        for lo in range(0, len(live_rows), _COPY_ROWS):
            part = live_rows[lo : lo + _COPY_ROWS]
            matrix[lo : lo + len(part)] = self._matrix[part]
        self._adopt_compacted(matrix, live_rows)
        self._generation = generation
        self._commit()
        if old and old != generation:
            self._unlink(self._vector_file(old))

    def _adopt_compacted(self, matrix: FloatArray, live_rows: IntArray) -> None:
        ids = self._row_ids[live_rows]
        self._matrix = matrix
        self._rows = len(live_rows)
        self._row_ids = np.zeros(len(matrix), dtype=np.int64)
        self._row_ids[: self._rows] = ids
        self._alive = np.zeros(len(matrix), dtype=np.bool_)
        self._alive[: self._rows] = True
        self._id_to_row = dict(zip(ids.tolist(), range(self._rows), strict=True))
        self._invalidate()

    def _commit(self) -> None:
        assert self._directory is not None
        if isinstance(self._matrix, np.memmap):
            self._matrix.flush()
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "dim": self.dim,
            "generation": self._generation,
            "rows": self._rows,
        }
        raw = json.dumps(header).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix="index.", suffix=".tmp", dir=self._directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    header=np.frombuffer(raw, dtype=np.uint8),
                    ids=self._row_ids[: self._rows],
                    alive=self._alive[: self._rows],
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._directory / _MANIFEST)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remove_stray_files(self) -> None:
        assert self._directory is not None
        keep = self._vector_file(self._generation).name
        for stray in self._directory.glob("vectors.*.f32"):
            if stray.name != keep:
                self._unlink(stray)
        for stray in self._directory.glob("index.*.tmp"):
            self._unlink(stray)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # still mapped somewhere (Windows): removed at the next open()
            pass

    def flush(self) -> None:
        """Make everything added or removed so far durable (no-op in memory)."""
        with self._lock:
            if self._directory is not None:
                self._commit()

    def close(self) -> None:
        """Flush and unmap; the index is empty and in memory afterwards."""
        with self._lock:
            if self._directory is not None:
                self._commit()
            self._directory = None
            self._generation = 0
            self._matrix = np.zeros((_MIN_CAPACITY, self.dim), dtype=np.float32)
            self._reset_rows()

    def clear(self) -> None:
        """Remove every vector (on disk too, when open)."""
        with self._lock:
            self._alive[: self._rows] = False
            self._id_to_row.clear()
            if self._directory is not None:
                self._write_generation(self._generation + 1)
            else:
                self._matrix = np.zeros((_MIN_CAPACITY, self.dim), dtype=np.float32)
                self._reset_rows()

    # ------------------------------------------------------------------ mutation

    def _ensure_capacity(self, need: int) -> None:
        capacity = len(self._matrix)
        if need <= capacity:
            return
        new_capacity = max(need, 2 * capacity)
        if self._directory is None:
            bigger = np.zeros((new_capacity, self.dim), dtype=np.float32)
            bigger[: self._rows] = self._matrix[: self._rows]
            self._matrix = bigger
        else:
            file = self._vector_file(self._generation)
            if isinstance(self._matrix, np.memmap):
                self._matrix.flush()
            self._matrix = np.zeros((0, self.dim), dtype=np.float32)  # drop the old mapping
            os.truncate(file, new_capacity * self.dim * 4)  # appends zeros; rows stay put
            self._matrix = np.memmap(
                file, dtype=np.float32, mode="r+", shape=(new_capacity, self.dim)
            )
        grown_ids = np.zeros(new_capacity, dtype=np.int64)
        grown_ids[: self._rows] = self._row_ids[: self._rows]
        grown_alive = np.zeros(new_capacity, dtype=np.bool_)
        grown_alive[: self._rows] = self._alive[: self._rows]
        self._row_ids, self._alive = grown_ids, grown_alive

    def add(self, ids: Sequence[int], vectors: ArrayLike) -> None:
        """Store vectors (normalised here); an id already present is replaced."""
        id_list = [int(i) for i in ids]
        if len(set(id_list)) != len(id_list):
            raise ValueError("duplicate ids in one add() call")
        matrix = _normalise_rows(vectors, self.dim) if id_list else None
        if matrix is None:
            return
        if len(matrix) != len(id_list):
            raise ValueError(f"{len(id_list)} ids but {len(matrix)} vectors")
        with self._lock:
            self._tombstone(id_list)
            start = self._rows
            stop = start + len(id_list)
            self._ensure_capacity(stop)
            self._matrix[start:stop] = matrix
            self._row_ids[start:stop] = id_list
            self._alive[start:stop] = True
            self._rows = stop
            self._id_to_row.update(zip(id_list, range(start, stop), strict=True))
            self._invalidate()

    def _tombstone(self, id_list: Iterable[int]) -> int:
        rows = [self._id_to_row.pop(i) for i in id_list if i in self._id_to_row]
        if rows:
            self._alive[rows] = False
            self._invalidate()
        return len(rows)

    def remove(self, ids: Iterable[int]) -> None:
        """Drop vectors by id (unknown ids are ignored); compacts when half the rows are dead.

        When the index is open, compaction also commits (like ``flush``).
        """
        with self._lock:
            if not self._tombstone([int(i) for i in ids]):
                return
            if self._rows >= _COMPACT_MIN_ROWS and 2 * len(self._id_to_row) < self._rows:
                self._compact()

    def _compact(self) -> None:
        if self._directory is not None:
            self._write_generation(self._generation + 1)
            return
        live_rows = np.flatnonzero(self._alive[: self._rows])
        matrix = np.zeros((max(_MIN_CAPACITY, 2 * len(live_rows)), self.dim), dtype=np.float32)
        matrix[: len(live_rows)] = self._matrix[live_rows]
        self._adopt_compacted(matrix, live_rows)

    # ------------------------------------------------------------------ search

    def _rows_of(self, allowed: NDArray[np.integer[Any]] | Set[int]) -> IntArray:
        if self._id_lookup is None:
            live_rows = np.flatnonzero(self._alive[: self._rows])
            ids = self._row_ids[live_rows]
            order = np.argsort(ids, kind="stable")
            self._id_lookup = (ids[order], live_rows[order].astype(np.int64))
        sorted_ids, sorted_rows = self._id_lookup
        if isinstance(allowed, np.ndarray):
            wanted = allowed.astype(np.int64, copy=False).ravel()
        else:
            wanted = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
        if len(sorted_ids) == 0 or len(wanted) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        found: IntArray = np.unique(sorted_rows[pos[sorted_ids[pos] == wanted]])
        return found

    def search(self, query: ArrayLike, k: int, allowed: Allowed = None) -> list[tuple[int, float]]:
        """The ``k`` nearest ``(id, cosine)``; ``allowed`` (ids) restricts the candidates."""
        q = _normalise_rows(query, self.dim)
        if len(q) != 1:
            raise ValueError("search() takes one query vector")
        if not q.any():
            raise ValueError("the query vector is all zeros")
        vector = q[0]
        if k <= 0:
            return []
        with self._lock:
            if not self._id_to_row:
                return []
            if allowed is None:
                scores = np.asarray(self._matrix[: self._rows] @ vector)
                if self._dead_rows is None:
                    self._dead_rows = np.flatnonzero(~self._alive[: self._rows])
                if len(self._dead_rows):
                    scores[self._dead_rows] = -np.inf
                    live = len(self._id_to_row)
                    if live < k:
                        k = live
                rows = None
            else:
                rows = self._rows_of(allowed)
                if len(rows) == 0:
                    return []
                if 4 * len(rows) < self._rows:
                    scores = np.asarray(self._matrix[rows] @ vector)
                else:
                    scores = np.asarray(self._matrix[: self._rows] @ vector)[rows]
            return _top_k(self._row_ids, rows, scores, k)


def _top_k(
    row_ids: IntArray, rows: IntArray | None, scores: NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    """Best ``k`` by score (descending), ties by id; ``rows`` maps positions to rows."""
    if len(scores) > k:
        top = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
        kth = scores[top].min()
        positions = np.flatnonzero(scores >= kth)  # every tie at the boundary
    else:
        positions = np.arange(len(scores))
    ids = row_ids[positions if rows is None else rows[positions]]
    values = scores[positions].astype(np.float64)
    order = np.lexsort((ids, -values))[:k]
    return [(int(i), float(s)) for i, s in zip(ids[order], values[order], strict=True)]
