"""BM25Index: scores equal rank-bm25's BM25Okapi, through adds, removes, merges and reloads."""

from __future__ import annotations

import html
import random
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from core.errors import StorageError
from core.retrieval import bm25 as bm25_module
from core.retrieval.bm25 import BM25Index
from core.retrieval.text import Analyzer

PAGES = [
    "library/functools.html",
    "library/itertools.html",
    "library/collections.html",
    "library/os.path.html",
    "library/json.html",
    "library/re.html",
    "library/asyncio-task.html",
    "library/sqlite3.html",
    "tutorial/classes.html",
    "library/pathlib.html",
]


def _page_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", raw)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", raw))


@pytest.fixture(scope="module")
def doc_chunks(python_docs: Path) -> list[list[str]]:
    """300 real chunks (120 words, 30 overlapping) of the Python docs, analysed."""
    analyzer = Analyzer()
    chunks: list[list[str]] = []
    for page in PAGES:
        words = _page_text(python_docs / page).split()
        for start in range(0, max(len(words) - 30, 1), 90):
            chunks.append(analyzer.tokens(" ".join(words[start : start + 120])))
    assert len(chunks) >= 300
    return chunks[:300]


def _queries(chunks: list[list[str]], seed: int = 3) -> list[list[str]]:
    rng = random.Random(seed)
    vocab = sorted({t for c in chunks for t in c})
    counts: dict[str, int] = {}
    for chunk in chunks:
        for token in set(chunk):
            counts[token] = counts.get(token, 0) + 1
    common = sorted(counts, key=lambda t: (-counts[t], t))[:5]
    queries = [rng.sample(vocab, rng.randint(1, 5)) for _ in range(25)]
    queries.append(common)  # terms in many chunks (may have idf floored by epsilon)
    queries.append([common[0], common[0], vocab[7]])  # a repeated token counts twice
    queries.append(["not-a-token-anywhere", vocab[11]])
    return queries


def assert_same_as_rank_bm25(
    index: BM25Index, docs: dict[int, list[str]], queries: list[list[str]]
) -> None:
    """Every score equals BM25Okapi's over the same documents, to 1e-6; order and set agree."""
    ids = sorted(docs)
    reference = BM25Okapi([docs[i] for i in ids], k1=index.k1, b=index.b, epsilon=index.epsilon)
    assert len(index) == len(ids)
    for query in queries:
        expected_scores = reference.get_scores(query)
        matching = [
            (doc_id, float(score))
            for doc_id, score in zip(ids, expected_scores, strict=True)
            if any(t in docs[doc_id] for t in query)
        ]
        expected = sorted(matching, key=lambda item: (-item[1], item[0]))
        got = index.search(query, k=len(ids) + 10)
        assert [doc_id for doc_id, _ in got] == [doc_id for doc_id, _ in expected] or np.allclose(
            [s for _, s in got], [s for _, s in expected], atol=1e-9
        )
        assert {doc_id for doc_id, _ in got} == {doc_id for doc_id, _ in expected}
        by_id = dict(got)
        for doc_id, score in matching:
            assert by_id[doc_id] == pytest.approx(score, abs=1e-6)
        top = index.search(query, k=5)
        assert top == got[:5]


def test_scores_equal_bm25okapi_on_real_documentation(doc_chunks: list[list[str]]) -> None:
    index = BM25Index()
    index.add(list(range(len(doc_chunks))), doc_chunks)
    assert_same_as_rank_bm25(index, dict(enumerate(doc_chunks)), _queries(doc_chunks))


def test_scores_stay_equal_after_incremental_adds_removes_and_replacements(
    doc_chunks: list[list[str]],
) -> None:
    index = BM25Index()
    docs: dict[int, list[str]] = {}
    rng = random.Random(11)
    ids = list(range(1000, 1000 + len(doc_chunks)))
    position = 0
    for size in [1, 7, 40, 3, 90, 2, 60, 97]:  # uneven batches force segment merges
        batch = ids[position : position + size]
        index.add(batch, [doc_chunks[i - 1000] for i in batch])
        docs.update({i: doc_chunks[i - 1000] for i in batch})
        position += size
    assert position == len(doc_chunks)
    queries = _queries(doc_chunks, seed=5)
    assert_same_as_rank_bm25(index, docs, queries)

    for _ in range(3):
        gone = rng.sample(sorted(docs), 40)
        index.remove([*gone, 999_999])  # unknown ids are ignored
        for doc_id in gone:
            del docs[doc_id]
        assert_same_as_rank_bm25(index, docs, queries)

    replaced = rng.sample(sorted(docs), 10)
    index.add(replaced, [doc_chunks[(i * 7) % len(doc_chunks)] for i in replaced])
    docs.update({i: doc_chunks[(i * 7) % len(doc_chunks)] for i in replaced})
    readded = [i for i in ids if i not in docs][:25]
    index.add(readded, [doc_chunks[i - 1000] for i in readded])
    docs.update({i: doc_chunks[i - 1000] for i in readded})
    assert_same_as_rank_bm25(index, docs, queries)


def test_compaction_after_many_removals_keeps_scores(
    doc_chunks: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bm25_module, "_COMPACT_MIN_SLOTS", 10)
    index = BM25Index()
    docs = dict(enumerate(doc_chunks))
    index.add(list(docs), list(docs.values()))
    gone = [i for i in docs if i % 4 != 0]
    index.remove(gone)
    for doc_id in gone:
        del docs[doc_id]
    stats = index.stats()
    assert stats["dead_slots"] == 0
    assert stats["segments"] == 1
    assert stats["terms"] == len({t for d in docs.values() for t in d})
    assert_same_as_rank_bm25(index, docs, _queries(list(docs.values()), seed=8))


def test_tiny_corpus_with_negative_idf_matches_and_returns_negative_scores() -> None:
    docs = {1: ["apple", "pie"], 2: ["apple", "tart"], 3: ["apple"], 4: ["apple", "pie", "pie"]}
    index = BM25Index()
    index.add(list(docs), list(docs.values()))
    assert_same_as_rank_bm25(index, docs, [["apple"], ["pie"], ["apple", "tart"]])
    assert all(score < 0 for _, score in index.search(["apple"], k=4))


def test_ties_are_broken_by_ascending_id_even_at_the_cut() -> None:
    index = BM25Index()
    index.add([9, 4, 7, 1, 5], [["x", "y"], ["x", "y"], ["x", "y"], ["z"], ["x", "y"]])
    assert [doc_id for doc_id, _ in index.search(["x"], k=3)] == [4, 5, 7]


def test_allowed_ids_restrict_results_without_changing_scores(
    doc_chunks: list[list[str]],
) -> None:
    index = BM25Index()
    index.add(list(range(len(doc_chunks))), doc_chunks)
    query = _queries(doc_chunks)[-3]
    everything = dict(index.search(query, k=1000))
    allowed = {i for i in everything if i % 2} | {12_345}
    as_set = index.search(query, k=1000, allowed=allowed)
    as_array = index.search(query, k=1000, allowed=np.array(sorted(allowed)))
    assert as_set == as_array
    assert {i for i, _ in as_set} == allowed - {12_345}
    assert all(everything[i] == score for i, score in as_set)
    assert index.search(query, k=10, allowed=set()) == []


def test_empty_index_and_unknown_query_return_nothing() -> None:
    index = BM25Index()
    assert index.search(["anything"], k=5) == []
    index.add([1, 2], [["hello", "world"], []])
    assert index.search(["nothing"], k=5) == []
    assert index.search([], k=5) == []
    assert index.search(["hello"], k=0) == []
    assert len(index) == 2
    index.remove([1, 2])
    assert len(index) == 0
    assert index.search(["hello"], k=5) == []


def test_bad_input_is_refused() -> None:
    index = BM25Index()
    with pytest.raises(ValueError):
        index.add([1, 2], [["a"]])
    with pytest.raises(ValueError):
        index.add([1, 1], [["a"], ["b"]])


def test_save_and_load_round_trip_with_meta(doc_chunks: list[list[str]], tmp_path: Path) -> None:
    index = BM25Index(k1=1.2, b=0.6)
    index.add(list(range(100)), doc_chunks[:100])
    index.add(list(range(100, 200)), doc_chunks[100:200])
    index.remove(range(0, 200, 5))
    path = tmp_path / "sub" / "bm25.npz"
    index.save(path, meta={"generation": 42})
    assert sorted(p.name for p in path.parent.iterdir()) == ["bm25.npz"]

    loaded = BM25Index.load(path)
    assert loaded.meta == {"generation": 42}
    assert (loaded.k1, loaded.b, loaded.epsilon) == (1.2, 0.6, 0.25)
    assert np.array_equal(loaded.ids(), index.ids())
    for query in _queries(doc_chunks):
        assert loaded.search(query, k=20) == index.search(query, k=20)

    loaded.add([500], [doc_chunks[250]])
    loaded.remove([1, 2, 3])
    docs = {i: doc_chunks[i] for i in range(200) if i % 5 and i not in (1, 2, 3)}
    docs[500] = doc_chunks[250]
    assert_same_as_rank_bm25(loaded, docs, _queries(doc_chunks, seed=9))

    overridden = BM25Index.load(path, k1=2.0)
    assert overridden.k1 == 2.0


def test_empty_index_saves_and_loads(tmp_path: Path) -> None:
    BM25Index().save(tmp_path / "empty.npz")
    loaded = BM25Index.load(tmp_path / "empty.npz")
    assert len(loaded) == 0
    assert loaded.search(["a"], k=3) == []


def test_damaged_or_missing_file_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        BM25Index.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(StorageError):
        BM25Index.load(bad)
    index = BM25Index()
    index.add([1], [["a"]])
    index.save(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError):
        BM25Index.load(bad)


def test_idf_matches_rank_bm25_including_the_epsilon_floor() -> None:
    docs = [["a", "b"], ["a", "c"], ["a", "d"], ["e"]]
    index = BM25Index()
    index.add([0, 1, 2, 3], docs)
    reference = BM25Okapi(docs)
    for token in "abcde":
        assert index.idf(token) == pytest.approx(reference.idf[token], abs=1e-12)
    assert index.idf("zzz") == 0.0


def test_concurrent_adds_removes_and_searches_stay_consistent(
    doc_chunks: list[list[str]],
) -> None:
    index = BM25Index()
    index.add(list(range(100)), doc_chunks[:100])
    errors: list[BaseException] = []
    queries = _queries(doc_chunks)

    def writer(offset: int) -> None:
        try:
            for start in range(100 + offset, 300, 40):
                batch = list(range(start, min(start + 20, 300)))
                index.add(batch, [doc_chunks[i] for i in batch])
                index.remove([start - 100])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(20):
                for query in queries[:5]:
                    index.search(query, k=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 20)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    present = [int(i) for i in index.ids()]
    assert_same_as_rank_bm25(index, {i: doc_chunks[i] for i in present}, queries)


def test_analyzed_query_finds_the_identifier_it_names(doc_chunks: list[list[str]]) -> None:
    analyzer = Analyzer()
    index = BM25Index()
    index.add(list(range(len(doc_chunks))), doc_chunks)
    best, _ = index.search(analyzer.tokens("lru cache decorator"), k=1)[0]
    assert "lru_cache" in doc_chunks[best]


def test_multi_segment_index_saves_without_merging_and_loads_equal(
    doc_chunks: list[list[str]], tmp_path: Path
) -> None:
    index = BM25Index()
    index.add(list(range(200)), doc_chunks[:200])
    index.add(list(range(200, 210)), doc_chunks[200:210])
    assert index.stats()["segments"] == 2
    index.save(tmp_path / "bm25.npz")
    loaded = BM25Index.load(tmp_path / "bm25.npz")
    assert loaded.stats() == index.stats()
    assert_same_as_rank_bm25(
        loaded, {i: doc_chunks[i] for i in range(210)}, _queries(doc_chunks, seed=4)
    )
