"""VectorIndex: exact cosine top-k, tombstones, compaction and crash-safe persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import StorageError
from core.retrieval import vectors as vectors_module
from core.retrieval.vectors import VectorIndex

DIM = 16


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(ids: list[int], matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = unit(matrix) @ (query / np.linalg.norm(query))
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [ids[i] for i in order[:k]]


@pytest.fixture
def data() -> tuple[list[int], np.ndarray]:
    rng = np.random.default_rng(7)
    return list(range(10, 1010)), rng.standard_normal((1000, DIM)).astype(np.float32)


def test_search_returns_the_exact_nearest_by_cosine(data: tuple[list[int], np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids, matrix * 5.0)  # stored normalised, so scale does not matter
    rng = np.random.default_rng(1)
    for query in rng.standard_normal((10, DIM)):
        got = index.search(query, k=10)
        assert [i for i, _ in got] == brute_force(ids, matrix, query, 10)
        expected = unit(matrix[[i - 10 for i, _ in got]]) @ (query / np.linalg.norm(query))
        assert np.allclose([s for _, s in got], expected, atol=1e-5)
    best_id, best_score = index.search(matrix[123], k=1)[0]
    assert best_id == 133
    assert best_score == pytest.approx(1.0, abs=1e-5)


def test_stored_vectors_are_unit_length(data: tuple[list[int], np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids[:5], matrix[:5] * 9)
    stored = index.get(ids[2])
    assert stored is not None
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-6)
    assert index.get(99_999) is None


def test_invalid_vectors_are_refused() -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValueError):
        index.add([1], np.ones((1, DIM + 1)))
    with pytest.raises(ValueError):
        index.add([1, 2], np.ones((1, DIM)))
    with pytest.raises(ValueError):
        index.add([1, 1], np.ones((2, DIM)))
    bad = np.ones((1, DIM))
    bad[0, 3] = np.nan
    with pytest.raises(ValueError):
        index.add([1], bad)
    index.add([1], np.ones((1, DIM)))
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM), k=3)
    with pytest.raises(ValueError):
        index.search(np.ones(DIM + 2), k=3)
    with pytest.raises(ValueError):
        VectorIndex(0)


def test_removed_and_replaced_vectors_are_not_found(data: tuple[list[int], np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids, matrix)
    index.remove([ids[0], ids[1], 424_242])
    assert len(index) == len(ids) - 2
    assert ids[0] not in {i for i, _ in index.search(matrix[0], k=len(ids))}
    index.add([ids[2]], matrix[500:501])  # replace: id 12 now points at row 500's vector
    top = index.search(matrix[500], k=2)
    assert {i for i, _ in top} == {ids[2], ids[500]}
    assert len(index.search(matrix[3], k=5000)) == len(ids) - 2


def test_compaction_after_many_removals_keeps_results(
    data: tuple[list[int], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors_module, "_COMPACT_MIN_ROWS", 10)
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids, matrix)
    index.remove(ids[:700])
    assert index.stats()["rows"] == 300
    query = np.random.default_rng(3).standard_normal(DIM)
    assert [i for i, _ in index.search(query, k=7)] == brute_force(
        ids[700:], matrix[700:], query, 7
    )


def test_allowed_ids_restrict_results(data: tuple[list[int], np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids, matrix)
    query = matrix[40]
    small = {ids[5], ids[40], ids[77], -3}
    got = index.search(query, k=10, allowed=small)
    assert [i for i, _ in got] == brute_force(
        [ids[5], ids[40], ids[77]], matrix[[5, 40, 77]], query, 10
    )
    large = np.array(ids[::2])
    got_large = index.search(query, k=5, allowed=large)
    assert [i for i, _ in got_large] == brute_force(ids[::2], matrix[::2], query, 5)
    assert index.search(query, k=5, allowed=set()) == []


def test_ties_are_broken_by_ascending_id() -> None:
    index = VectorIndex(DIM)
    same = np.ones((4, DIM))
    index.add([40, 10, 30, 20], same)
    assert [i for i, _ in index.search(np.ones(DIM), k=2)] == [10, 20]


def test_persisted_index_reopens_with_the_same_results(
    tmp_path: Path, data: tuple[list[int], np.ndarray]
) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.add(ids[:100], matrix[:100])  # built in memory, then persisted by open()
    index.open(tmp_path / "vec")
    index.add(ids[100:], matrix[100:])  # grows the mapped file past its capacity
    index.remove(ids[50:60])
    index.flush()
    query = np.random.default_rng(5).standard_normal(DIM)
    expected = index.search(query, k=20)
    index.close()

    reopened = VectorIndex(DIM)
    reopened.open(tmp_path / "vec")
    assert len(reopened) == len(ids) - 10
    assert reopened.search(query, k=20) == expected
    assert np.array_equal(reopened.ids(), np.array(ids[:50] + ids[60:]))


def test_unflushed_changes_are_lost_but_committed_data_survives(
    tmp_path: Path, data: tuple[list[int], np.ndarray]
) -> None:
    ids, matrix = data
    writer = VectorIndex(DIM)
    writer.open(tmp_path)
    writer.add(ids[:300], matrix[:300])
    writer.flush()
    writer.add(ids[300:], matrix[300:])  # never flushed: as if the process died here
    writer.remove(ids[:10])

    survivor = VectorIndex(DIM)
    survivor.open(tmp_path)
    assert len(survivor) == 300
    assert survivor.search(matrix[5], k=1)[0][0] == ids[5]


def test_compaction_on_disk_leaves_one_vector_file(
    tmp_path: Path, data: tuple[list[int], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors_module, "_COMPACT_MIN_ROWS", 10)
    ids, matrix = data
    index = VectorIndex(DIM)
    index.open(tmp_path)
    index.add(ids, matrix)
    index.remove(ids[:600])  # compacts, which commits
    assert len(list(tmp_path.glob("vectors.*.f32"))) == 1
    reopened = VectorIndex(DIM)
    reopened.open(tmp_path)
    assert len(reopened) == 400
    assert reopened.search(matrix[700], k=1)[0][0] == ids[700]


def test_clear_empties_the_index_on_disk(
    tmp_path: Path, data: tuple[list[int], np.ndarray]
) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.open(tmp_path)
    index.add(ids, matrix)
    index.clear()
    assert len(index) == 0
    assert index.search(matrix[0], k=3) == []
    reopened = VectorIndex(DIM)
    reopened.open(tmp_path)
    assert len(reopened) == 0


def test_other_dimension_or_damaged_files_raise_storage_error(
    tmp_path: Path, data: tuple[list[int], np.ndarray]
) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    index.open(tmp_path)
    index.add(ids[:10], matrix[:10])
    index.close()
    with pytest.raises(StorageError, match="dimensional"):
        VectorIndex(DIM * 2).open(tmp_path)
    for f in tmp_path.glob("vectors.*.f32"):
        f.write_bytes(b"")  # truncated vector file
    with pytest.raises(StorageError):
        VectorIndex(DIM).open(tmp_path)
    (tmp_path / "index.npz").write_bytes(b"garbage")
    with pytest.raises(StorageError):
        VectorIndex(DIM).open(tmp_path)


def test_concurrent_adds_and_searches(data: tuple[list[int], np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex(DIM)
    errors: list[BaseException] = []

    def writer(part: int) -> None:
        try:
            for start in range(part * 500, part * 500 + 500, 50):
                index.add(ids[start : start + 50], matrix[start : start + 50])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for row in range(0, 1000, 10):
                index.search(matrix[row], k=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in (0, 1)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == 1000
    assert index.search(matrix[999], k=1)[0][0] == ids[999]
