"""The analyzer: identifiers stay findable, stop words go, stems match."""

from __future__ import annotations

import threading

from core.retrieval.text import (
    EMBEDDING_RECIPE,
    ENGLISH_STOP_WORDS,
    Analyzer,
    embedding_key,
    embedding_text,
)


def test_dotted_identifier_matches_its_name_and_its_words() -> None:
    analyzer = Analyzer()
    doc = set(analyzer.tokens("Use functools.lru_cache to memoize."))
    assert set(analyzer.tokens("lru_cache")) <= doc
    assert set(analyzer.tokens("lru cache")) <= doc
    assert set(analyzer.tokens("functools")) <= doc
    assert "functools.lru_cache" in doc


def test_whole_identifier_precedes_its_parts() -> None:
    assert Analyzer().tokens("functools.lru_cache") == [
        "functools.lru_cache",
        "functool",
        "lru_cache",
        "lru",
        "cach",
    ]


def test_camel_case_and_dunder_names_split_into_words() -> None:
    tokens = Analyzer().tokens("HTTPServer getElementById __init__")
    assert tokens[:3] == ["httpserver", "http", "server"]
    assert {"getelementbyid", "get", "element", "id"} <= set(tokens)
    assert {"__init__", "init"} <= set(tokens)


def test_stop_words_are_dropped_from_words_but_not_from_identifiers() -> None:
    tokens = Analyzer().tokens("The value is_valid is not the default")
    assert "the" not in tokens
    assert "is_valid" in tokens
    assert "valid" in tokens
    assert "is" not in tokens
    assert "the" in ENGLISH_STOP_WORDS


def test_inflections_share_a_stem() -> None:
    analyzer = Analyzer()
    assert analyzer.tokens("caching") == analyzer.tokens("caches") == analyzer.tokens("cached")


def test_options_turn_stemming_and_stop_words_off() -> None:
    assert Analyzer(stemming=False, stop_words=False).tokens("The caches are running") == [
        "the",
        "caches",
        "are",
        "running",
    ]


def test_unicode_words_are_lowercased_and_ligatures_unfolded() -> None:
    analyzer = Analyzer(stemming=False)
    assert analyzer.tokens("Größe CAFÉ") == ["größe", "café"]
    assert analyzer.tokens("the ﬁle") == ["file"]
    assert analyzer.tokens("日本語") == ["日本語"]


def test_versions_and_options_keep_the_whole_and_the_parts() -> None:
    tokens = Analyzer().tokens("Python 3.11.2 with --no-cache-dir")
    assert {"3.11.2", "3", "11", "2", "no-cache-dir", "dir"} <= set(tokens)


def test_blobs_longer_than_a_word_are_skipped() -> None:
    assert Analyzer().tokens("x" * 200 + " word") == ["word"]


def test_empty_and_punctuation_only_text_has_no_tokens() -> None:
    assert Analyzer().tokens("") == []
    assert Analyzer().tokens("... --- !!!") == []


def test_tokens_are_the_same_across_threads() -> None:
    analyzer = Analyzer()
    text = "Running caches, generators and iterators: itertools.chain_from_iterable " * 20
    expected = Analyzer().tokens(text)
    results: list[list[str]] = []

    def work() -> None:
        for _ in range(30):
            results.append(analyzer.tokens(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 120
    assert all(r == expected for r in results)


def test_embedding_text_puts_the_heading_path_above_the_passage() -> None:
    text = embedding_text("Call basicConfig() first.", ("Logging HOWTO", "Basic tutorial"))
    assert text == "Logging HOWTO > Basic tutorial\nCall basicConfig() first."
    assert embedding_text("No headings here.", ()) == "No headings here."


def test_embedding_key_names_the_model_and_the_recipe() -> None:
    key = embedding_key("all-MiniLM-L6-v2")
    assert key.startswith("all-MiniLM-L6-v2")
    assert EMBEDDING_RECIPE in key
    assert key != "all-MiniLM-L6-v2"
