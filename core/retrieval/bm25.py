"""Okapi BM25 over an incremental inverted index.

Scores are exactly those of ``rank_bm25.BM25Okapi`` (version 0.2.2) over the
documents currently in the index::

    idf(t)      = ln(N - n_t + 0.5) - ln(n_t + 0.5)
                  (a negative idf is replaced by epsilon * mean idf over the vocabulary)
    score(d, q) = sum over query tokens t (repeats count again) of
                  idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))

but a query touches only the postings of its terms instead of looping over every
document, as ``BM25Okapi.get_scores`` does.

Layout (the idea is Lucene's): the index is a short list of immutable *segments*,
one per ``add`` batch, each holding an inverted index (term -> ascending document
slots and term frequencies, as numpy arrays) and a forward index (slot -> its
distinct terms, used to keep document frequencies right on removal). A new
segment is merged into its left neighbour while that neighbour is at most twice
its size, so there are O(log N) segments and each posting is re-merged O(log N)
times. ``remove`` only clears the slot's "alive" bit and decrements document
frequencies; dead postings are dropped at the next merge, and when half of the
slots are dead everything is compacted into one renumbered segment.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.errors import StorageError

__all__ = ["BM25Index"]

_FORMAT = "archivist-bm25"
_VERSION = 1
_MERGE_FACTOR = 2  # merge the newest segment into a neighbour at most this many times larger
_COMPACT_MIN_SLOTS = 1024

IntArray = NDArray[np.int64]
Allowed = NDArray[np.integer[Any]] | Set[int] | None


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """Concatenate ``arange(s, s + n)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def _compact_tfs(tfs: NDArray[np.integer[Any]]) -> NDArray[np.integer[Any]]:
    """Store term frequencies in 2 bytes when they fit (they always do for chunks)."""
    if len(tfs) == 0 or int(tfs.max()) <= np.iinfo(np.uint16).max:
        return tfs.astype(np.uint16, copy=False)
    return tfs.astype(np.int32, copy=False)


@dataclass(frozen=True, slots=True)
class _Segment:
    """Postings of the slots ``[start, stop)``; immutable once built."""

    start: int
    stop: int
    terms: NDArray[np.int32]  # distinct term ids, ascending
    ptr: IntArray  # postings of terms[i] are [ptr[i], ptr[i + 1])
    docs: NDArray[np.int32]  # slots, ascending within a term
    tfs: NDArray[np.integer[Any]]
    fptr: IntArray  # distinct terms of slot s are fterms[fptr[s - start]:fptr[s - start + 1]]
    fterms: NDArray[np.int32]

    @classmethod
    def build(
        cls,
        start: int,
        stop: int,
        post_terms: IntArray,
        docs: IntArray,
        tfs: NDArray[np.integer[Any]],
        flen: IntArray,
        fterms: IntArray,
    ) -> _Segment:
        """From postings already sorted by (term, slot) and the forward lists."""
        if len(post_terms):
            heads = np.flatnonzero(post_terms[1:] != post_terms[:-1]) + 1
            first = np.concatenate(([0], heads)).astype(np.int64)
            terms = post_terms[first].astype(np.int32)
            ptr = np.concatenate((first, [len(post_terms)])).astype(np.int64)
        else:
            terms = np.zeros(0, dtype=np.int32)
            ptr = np.zeros(1, dtype=np.int64)
        fptr = np.zeros(stop - start + 1, dtype=np.int64)
        np.cumsum(flen, out=fptr[1:])
        return cls(
            start=start,
            stop=stop,
            terms=terms,
            ptr=ptr,
            docs=docs.astype(np.int32, copy=False),
            tfs=_compact_tfs(tfs),
            fptr=fptr,
            fterms=fterms.astype(np.int32, copy=False),
        )

    @property
    def postings(self) -> int:
        return len(self.docs)

    def find(self, term: int) -> tuple[int, int] | None:
        i = int(np.searchsorted(self.terms, term))
        if i < len(self.terms) and int(self.terms[i]) == term:
            return int(self.ptr[i]), int(self.ptr[i + 1])
        return None

    def posting_terms(self) -> IntArray:
        """The term id of every posting (the inverted index expanded)."""
        return np.repeat(self.terms.astype(np.int64), np.diff(self.ptr))


def _merge(
    segments: Sequence[_Segment],
    alive: NDArray[np.bool_],
    slot_map: IntArray | None = None,
    term_map: IntArray | None = None,
) -> _Segment:
    """Merge adjacent segments, dropping dead slots' postings.

    With ``slot_map``/``term_map`` (monotone renumberings of the surviving slots
    and terms) the result is also renumbered; order is preserved because both
    maps are increasing.
    """
    start, stop = segments[0].start, segments[-1].stop
    live = alive[start:stop]
    flen = np.concatenate([np.diff(s.fptr) for s in segments])
    fterms = np.concatenate([s.fterms for s in segments])
    fterms = fterms[np.repeat(live, flen)]
    flen = np.where(live, flen, 0)

    post_terms = np.concatenate([s.posting_terms() for s in segments])
    docs = np.concatenate([s.docs for s in segments])
    tfs = np.concatenate([s.tfs for s in segments])
    keep = alive[docs]
    post_terms, docs, tfs = post_terms[keep], docs[keep], tfs[keep]
    if len(segments) > 1:  # each segment is sorted by term: a stable sort merges the runs
        order = np.argsort(post_terms, kind="stable")
        post_terms, docs, tfs = post_terms[order], docs[order], tfs[order]

    docs64 = docs.astype(np.int64)
    if slot_map is not None:
        flen = flen[live]
        docs64 = slot_map[docs64]
        start, stop = 0, len(flen)  # only a full compaction renumbers; it starts at slot 0
    if term_map is not None:
        fterms = term_map[fterms]
        post_terms = term_map[post_terms]
    return _Segment.build(start, stop, post_terms, docs64, tfs, flen, fterms.astype(np.int64))


def _grow(array: NDArray[Any], need: int) -> NDArray[Any]:
    if need <= len(array):
        return array
    bigger = np.zeros(max(need, 2 * len(array), 16), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class BM25Index:
    """An incremental BM25 index keyed by integer chunk ids.

    ``search`` returns the ``k`` best documents among those that contain at least
    one query token, as ``(id, score)`` sorted by score (descending) then id
    (ascending); documents without any query token (score 0 in rank-bm25) are never
    returned. Scores equal ``BM25Okapi.get_scores`` on the same documents. They
    are positive on any realistic corpus, but can be zero or negative in a tiny one
    where a term occurs in more than half of the documents (rank-bm25's epsilon
    floor uses the *mean* idf, which is then negative); such documents are still
    returned, ranked below the positive ones.

    ``add`` with an id that is already present replaces that document. Every
    method takes one re-entrant lock, so the index can be shared between threads::

        index = BM25Index()
        index.add([1, 2], [analyzer.tokens(a), analyzer.tokens(b)])
        index.search(analyzer.tokens("lru cache"), k=10)
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError("BM25 needs k1 >= 0 and 0 <= b <= 1")
        self.k1 = float(k1)
        self.b = float(b)
        self.epsilon = float(epsilon)
        self.meta: dict[str, Any] = {}  # what ``save(meta=...)`` stored, after ``load``
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df: IntArray = np.zeros(0, dtype=np.int64)
        self._slot_ids: IntArray = np.zeros(0, dtype=np.int64)
        self._doc_len: IntArray = np.zeros(0, dtype=np.int64)
        self._alive: NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self._slots = 0  # slots in use (alive or dead)
        self._id_to_slot: dict[int, int] = {}
        self._total_len = 0
        self._segments: list[_Segment] = []
        self._invalidate()

    def _invalidate(self) -> None:
        self._avg_idf: float | None = None
        self._norm: NDArray[np.float64] | None = None
        self._id_lookup: tuple[IntArray, IntArray] | None = None

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        with self._lock:
            return len(self._id_to_slot)

    def __contains__(self, chunk_id: object) -> bool:
        with self._lock:
            return chunk_id in self._id_to_slot

    def ids(self) -> IntArray:
        """The ids in the index, ascending (to check it against the database)."""
        with self._lock:
            return np.sort(np.fromiter(self._id_to_slot, dtype=np.int64))

    def stats(self) -> dict[str, int | float]:
        """Sizes for the health view and benchmarks."""
        with self._lock:
            n = len(self._id_to_slot)
            return {
                "documents": n,
                "terms": int(np.count_nonzero(self._df)),
                "segments": len(self._segments),
                "postings": sum(s.postings for s in self._segments),
                "dead_slots": self._slots - n,
                "avgdl": self._total_len / n if n else 0.0,
            }

    # ------------------------------------------------------------------ mutation

    def add(self, ids: Sequence[int], token_lists: Sequence[Sequence[str]]) -> None:
        """Index documents; an id already present is replaced."""
        if len(ids) != len(token_lists):
            raise ValueError(f"{len(ids)} ids but {len(token_lists)} token lists")
        id_list = [int(i) for i in ids]
        if len(set(id_list)) != len(id_list):
            raise ValueError("duplicate ids in one add() call")
        if not id_list:
            return
        with self._lock:
            present = [i for i in id_list if i in self._id_to_slot]
            if present:
                self._remove_locked(present)
            self._add_locked(id_list, token_lists)

    def _add_locked(self, id_list: list[int], token_lists: Sequence[Sequence[str]]) -> None:
        n = len(id_list)
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(token_lists))
        vocab, terms = self._vocab, self._terms
        for token in dict.fromkeys(flat):
            if token not in vocab:
                vocab[token] = len(terms)
                terms.append(token)
        n_terms = len(terms)
        token_ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        local = np.repeat(np.arange(n, dtype=np.int64), lengths)
        keys, tfs = np.unique(local * n_terms + token_ids, return_counts=True)
        fslots, fterms = np.divmod(keys, n_terms)  # sorted by (slot, term): the forward index
        flen = np.bincount(fslots, minlength=n).astype(np.int64)

        self._df = _grow(self._df, n_terms)
        new_terms, counts = np.unique(fterms, return_counts=True)
        self._df[new_terms] += counts

        start = self._slots
        stop = start + n
        self._slot_ids = _grow(self._slot_ids, stop)
        self._doc_len = _grow(self._doc_len, stop)
        self._alive = _grow(self._alive, stop)
        self._slot_ids[start:stop] = id_list
        self._doc_len[start:stop] = lengths
        self._alive[start:stop] = True
        self._slots = stop
        self._id_to_slot.update(zip(id_list, range(start, stop), strict=True))
        self._total_len += int(lengths.sum())

        order = np.argsort(fterms, kind="stable")  # inverted: by term, then slot
        segment = _Segment.build(
            start, stop, fterms[order], fslots[order] + start, tfs[order], flen, fterms
        )
        self._segments.append(segment)
        self._invalidate()
        self._merge_tail()

    def _merge_tail(self) -> None:
        segs = self._segments
        while len(segs) >= 2 and segs[-2].postings <= _MERGE_FACTOR * max(segs[-1].postings, 1):
            merged = _merge(segs[-2:], self._alive)
            segs[-2:] = [merged]

    def remove(self, ids: Iterable[int]) -> None:
        """Drop documents by id; unknown ids are ignored."""
        with self._lock:
            self._remove_locked([int(i) for i in ids])

    def _remove_locked(self, id_list: list[int]) -> None:
        slots = [self._id_to_slot.pop(i) for i in id_list if i in self._id_to_slot]
        if not slots:
            return
        slot_arr = np.sort(np.asarray(slots, dtype=np.int64))
        self._alive[slot_arr] = False
        self._total_len -= int(self._doc_len[slot_arr].sum())
        starts = [s.start for s in self._segments]
        where = np.asarray([bisect.bisect_right(starts, s) - 1 for s in slots], dtype=np.int64)
        gone: list[NDArray[np.int32]] = []
        for seg_index in np.unique(where):
            seg = self._segments[int(seg_index)]
            local = np.sort(np.asarray(slots, dtype=np.int64)[where == seg_index]) - seg.start
            lo = seg.fptr[local]
            gone.append(seg.fterms[_ranges(lo, seg.fptr[local + 1] - lo)])
        terms, counts = np.unique(np.concatenate(gone), return_counts=True)
        self._df[terms] -= counts
        self._invalidate()
        if not self._id_to_slot:
            self._reset()
        elif self._slots >= _COMPACT_MIN_SLOTS and 2 * len(self._id_to_slot) < self._slots:
            self._compact()

    def clear(self) -> None:
        with self._lock:
            self._reset()

    def _compact(self) -> None:
        """Merge everything into one segment, renumbering slots and dropping unused terms."""
        alive = self._alive[: self._slots]
        slot_map = np.cumsum(alive, dtype=np.int64) - 1
        used = self._df[: len(self._terms)] > 0
        term_map = np.cumsum(used, dtype=np.int64) - 1
        if self._segments:
            merged = _merge(self._segments, self._alive, slot_map, term_map)
            self._segments = [merged]
        self._terms = [t for t, u in zip(self._terms, used.tolist(), strict=True) if u]
        self._vocab = {t: i for i, t in enumerate(self._terms)}
        self._df = self._df[: len(used)][used].copy()
        self._slot_ids = self._slot_ids[: self._slots][alive].copy()
        self._doc_len = self._doc_len[: self._slots][alive].copy()
        self._slots = len(self._slot_ids)
        self._alive = np.ones(self._slots, dtype=np.bool_)
        self._id_to_slot = dict(zip(self._slot_ids.tolist(), range(self._slots), strict=True))
        self._invalidate()

    # ------------------------------------------------------------------ scoring

    def _average_idf(self) -> float:
        if self._avg_idf is None:
            n = len(self._id_to_slot)
            df = self._df[: len(self._terms)]
            counts = np.bincount(df[df > 0])
            values = np.flatnonzero(counts)
            if len(values) == 0:
                self._avg_idf = 0.0
            else:
                idf = np.log(n - values + 0.5) - np.log(values + 0.5)
                weights = counts[values]
                self._avg_idf = float((idf * weights).sum() / weights.sum())
        return self._avg_idf

    def _idf(self, term: int) -> float:
        n, n_t = len(self._id_to_slot), int(self._df[term])
        idf = math.log(n - n_t + 0.5) - math.log(n_t + 0.5)
        return self.epsilon * self._average_idf() if idf < 0 else idf

    def _length_norm(self) -> NDArray[np.float64]:
        if self._norm is None:
            avgdl = self._total_len / len(self._id_to_slot)
            doc_len = self._doc_len[: self._slots]
            norm = (self.k1 * (1 - self.b + self.b * doc_len / avgdl)).astype(np.float64)
            self._norm = norm
            return norm
        return self._norm

    def document_frequency(self, token: str) -> int:
        """How many indexed chunks contain ``token`` (0 when none does)."""
        with self._lock:
            term = self._vocab.get(token)
            return 0 if term is None else int(self._df[term])

    def idf(self, token: str) -> float:
        """The idf rank-bm25 would use for ``token`` (0.0 when it is not indexed)."""
        with self._lock:
            term = self._vocab.get(token)
            if term is None or self._df[term] == 0:
                return 0.0
            return self._idf(term)

    def _slots_of(self, allowed: NDArray[np.integer[Any]] | Set[int]) -> IntArray:
        if self._id_lookup is None:
            ids = self._slot_ids[: self._slots]
            order = np.argsort(ids, kind="stable")
            order = order[self._alive[: self._slots][order]]
            self._id_lookup = (ids[order], order.astype(np.int64))
        sorted_ids, sorted_slots = self._id_lookup
        if isinstance(allowed, np.ndarray):
            wanted = allowed.astype(np.int64, copy=False).ravel()
        else:
            wanted = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
        if len(sorted_ids) == 0 or len(wanted) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        found: IntArray = sorted_slots[pos[sorted_ids[pos] == wanted]]
        return found

    def search(
        self, query_tokens: Sequence[str], k: int, allowed: Allowed = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(id, score)`` among documents with a query token.

        ``allowed`` (ids, as an array or a set) restricts the results; idf and
        avgdl still describe the whole index, as a filter should not change scores.
        """
        if k <= 0:
            return []
        with self._lock:
            if not self._id_to_slot or self._total_len == 0:
                return []
            norm = self._length_norm()
            k1p1 = self.k1 + 1
            parts: list[tuple[NDArray[np.int32], NDArray[np.float64]]] = []
            touched = 0
            for token in query_tokens:
                term = self._vocab.get(token)
                if term is None or self._df[term] == 0:
                    continue
                idf = self._idf(term)
                for seg in self._segments:
                    span = seg.find(term)
                    if span is None:
                        continue
                    docs = seg.docs[span[0] : span[1]]
                    tf = seg.tfs[span[0] : span[1]]
                    parts.append((docs, idf * (tf * k1p1 / (tf + norm[docs]))))
                    touched += len(docs)
            if not parts:
                return []
            slots, scores = self._accumulate(parts, touched)
            keep = self._alive[slots]
            if allowed is not None:
                permitted = np.zeros(self._slots, dtype=np.bool_)
                permitted[self._slots_of(allowed)] = True
                keep &= permitted[slots]
            slots, scores = slots[keep], scores[keep]
            return _top_k(self._slot_ids[slots], scores, k)

    def _accumulate(
        self, parts: list[tuple[NDArray[np.int32], NDArray[np.float64]]], touched: int
    ) -> tuple[IntArray, NDArray[np.float64]]:
        """Sum contributions per slot, in query-token order (as rank-bm25 adds them)."""
        if touched * 8 < self._slots:  # few postings: sort them instead of a dense array
            docs = np.concatenate([p[0] for p in parts])
            slots, inverse = np.unique(docs, return_inverse=True)
            weights = np.concatenate([p[1] for p in parts])
            sums: NDArray[np.float64] = np.bincount(inverse, weights=weights).astype(np.float64)
            return slots.astype(np.int64), sums
        dense = np.zeros(self._slots, dtype=np.float64)
        hit = np.zeros(self._slots, dtype=np.bool_)
        for docs, contribution in parts:
            dense[docs] += contribution  # slots are unique within one term's postings
            hit[docs] = True
        slots = np.flatnonzero(hit)
        return slots, dense[slots]

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
        """Write the index to one ``.npz`` file atomically (temp file + rename).

        ``meta`` (JSON values, e.g. a database generation stamp) comes back as
        ``.meta`` after ``load``, so the caller can tell whether the file is stale.
        Segments are written as they are; the index is compacted first only when
        it holds removed documents.
        """
        target = Path(path)
        with self._lock:
            if self._slots != len(self._id_to_slot):
                self._compact()
            header = {
                "format": _FORMAT,
                "version": _VERSION,
                "k1": self.k1,
                "b": self.b,
                "epsilon": self.epsilon,
                "segments": [[seg.start, seg.stop] for seg in self._segments],
                "meta": dict(meta or {}),
            }
            arrays: dict[str, NDArray[Any]] = {
                "header": _json_bytes(header),
                "vocab": _json_bytes(self._terms),
                "ids": self._slot_ids[: self._slots],
                "doc_len": self._doc_len[: self._slots],
                "df": self._df[: len(self._terms)],
            }
            for number, seg in enumerate(self._segments):
                for name in _SEGMENT_ARRAYS:
                    arrays[f"s{number}_{name}"] = getattr(seg, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.savez(handle, allow_pickle=False, **arrays)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        k1: float | None = None,
        b: float | None = None,
        epsilon: float | None = None,
    ) -> BM25Index:
        """Read a file written by ``save``; parameters given here override the saved ones.

        Raises ``StorageError`` when the file is missing, damaged or of another
        format version (the caller then rebuilds from the database).
        """
        source = Path(path)
        try:
            with open(source, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                header = json.loads(data["header"].tobytes().decode("utf-8"))
                if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                    raise ValueError(f"unknown format {header.get('format')!r}")
                arrays = {name: data[name] for name in data.files}
            terms = json.loads(arrays["vocab"].tobytes().decode("utf-8"))
            index = cls(
                k1=header["k1"] if k1 is None else k1,
                b=header["b"] if b is None else b,
                epsilon=header["epsilon"] if epsilon is None else epsilon,
            )
            index._restore(header, terms, arrays)
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise StorageError(
                f"The keyword index file {source} could not be read ({exc}); "
                "it will be rebuilt from the database."
            ) from exc
        return index

    def _restore(self, header: dict[str, Any], terms: list[str], arrays: dict[str, Any]) -> None:
        ids = arrays["ids"].astype(np.int64)
        doc_len = arrays["doc_len"].astype(np.int64)
        df = arrays["df"].astype(np.int64)
        n = len(ids)
        segments: list[_Segment] = []
        expected_start = 0
        for number, (start, stop) in enumerate(header["segments"]):
            seg = _Segment(
                start=int(start),
                stop=int(stop),
                terms=arrays[f"s{number}_terms"].astype(np.int32),
                ptr=arrays[f"s{number}_ptr"].astype(np.int64),
                docs=arrays[f"s{number}_docs"].astype(np.int32),
                tfs=arrays[f"s{number}_tfs"],
                fptr=arrays[f"s{number}_fptr"].astype(np.int64),
                fterms=arrays[f"s{number}_fterms"].astype(np.int32),
            )
            if seg.start != expected_start or not _consistent(seg, len(terms)):
                raise ValueError(f"segment {number} is inconsistent")
            expected_start = seg.stop
            segments.append(seg)
        if expected_start != n or len(doc_len) != n or len(df) != len(terms):
            raise ValueError("inconsistent array sizes")
        if len(set(ids.tolist())) != n:
            raise ValueError("duplicate ids")
        self.meta = dict(header.get("meta") or {})
        self._terms = [str(t) for t in terms]
        self._vocab = {t: i for i, t in enumerate(self._terms)}
        self._df = df
        self._slot_ids = ids
        self._doc_len = doc_len
        self._alive = np.ones(n, dtype=np.bool_)
        self._slots = n
        self._id_to_slot = dict(zip(ids.tolist(), range(n), strict=True))
        self._total_len = int(doc_len.sum())
        self._segments = segments
        self._invalidate()


_SEGMENT_ARRAYS = ("terms", "ptr", "docs", "tfs", "fptr", "fterms")


def _consistent(seg: _Segment, n_terms: int) -> bool:
    """Cheap structural checks on a loaded segment (sizes and ranges, not content)."""
    return (
        seg.start <= seg.stop
        and len(seg.fptr) == seg.stop - seg.start + 1
        and len(seg.ptr) == len(seg.terms) + 1
        and int(seg.ptr[-1]) == len(seg.docs) == len(seg.tfs)
        and int(seg.fptr[-1]) == len(seg.fterms)
        and (
            len(seg.docs) == 0 or seg.start <= int(seg.docs.min()) <= int(seg.docs.max()) < seg.stop
        )
        and (len(seg.terms) == 0 or int(seg.terms.max()) < n_terms)
        and (len(seg.fterms) == 0 or int(seg.fterms.max()) < n_terms)
    )


def _json_bytes(value: Any) -> NDArray[np.uint8]:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _top_k(ids: IntArray, scores: NDArray[np.float64], k: int) -> list[tuple[int, float]]:
    """Best ``k`` by score (descending), ties by id (ascending), without a full sort."""
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        near = scores >= kth  # keeps every tie at the boundary, so id order decides
        ids, scores = ids[near], scores[near]
    order = np.lexsort((ids, -scores))[:k]
    return [(int(i), float(s)) for i, s in zip(ids[order], scores[order], strict=True)]
