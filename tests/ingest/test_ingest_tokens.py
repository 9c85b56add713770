"""TokenCounter counts what the embedding model's tokenizer counts."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from core.ingest.parsers import parse_file
from core.ingest.tokens import TokenCounter, default_tokenizer_file


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    c = TokenCounter()
    assert c.exact, "the packaged all-MiniLM-L6-v2 tokenizer must load"
    return c


def _model_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    path = default_tokenizer_file()
    assert path is not None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def test_counts_word_pieces_without_special_tokens(counter: TokenCounter) -> None:
    assert counter.count("hello") == 1
    assert counter.count("internationalization") == 2  # international ##ization
    assert counter.count("") == 0
    assert counter.count("   \n ") == 0
    assert counter.name == "wordpiece:all-MiniLM-L6-v2"


def test_long_text_is_not_truncated(counter: TokenCounter) -> None:
    assert counter.count("word " * 1000) == 1000


def test_word_by_word_count_equals_whole_text_count(
    counter: TokenCounter, python_docs: Path
) -> None:
    tokenizer = _model_tokenizer()
    texts: list[str] = []
    for page in ("library/functools.html", "library/re.html", "library/codecs.html"):
        texts.extend(parse_file(python_docs / page, max_bytes=10**8).text.split("\n\n"))
    texts += ["Grüße aus Köln — 東京の天気は晴れ。", "a\u200bb c\u00a0d", "x" * 300, "e\u0301te"]
    expected = [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert counter.count_batch(texts) == expected


def test_word_counts_give_offsets_and_add_up(counter: TokenCounter) -> None:
    text = "  The keeper's log, 1874.\nInternationalization  matters "
    words = counter.word_counts(text)
    assert [text[s:e] for s, e, _ in words] == text.split()
    assert sum(t for _, _, t in words) == counter.count(text)


def test_token_starts_match_the_count(counter: TokenCounter) -> None:
    text = "Internationalization of tokenizers, counted twice."
    starts = counter.token_starts(text)
    assert len(starts) == counter.count(text)
    assert starts == sorted(starts)
    assert starts[0] == 0


def test_falls_back_to_a_heuristic_when_the_tokenizer_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="core.ingest.tokens"):
        c = TokenCounter(broken)
        assert c.count("The quick brown fox jumps.") > 0
    assert not c.exact
    assert c.name == "heuristic"
    assert "heuristic" in caplog.text


def test_heuristic_overestimates_ordinary_prose(counter: TokenCounter) -> None:
    heuristic = TokenCounter(heuristic=True)
    prose = (
        "The refracting telescope has an aperture of 240 millimetres. Viewing nights are "
        "held on the first Friday of each month, weather permitting, from eight o'clock."
    )
    assert heuristic.count(prose) >= counter.count(prose)
    words = heuristic.word_counts(prose)
    assert sum(t for _, _, t in words) == heuristic.count(prose)
    assert len(heuristic.token_starts(prose)) == heuristic.count(prose)


def test_counter_survives_pickling(counter: TokenCounter) -> None:
    counter.count("warm the cache")
    copy = pickle.loads(pickle.dumps(counter))
    assert copy.exact
    assert copy.count("internationalization") == 2


def test_a_small_cache_is_trimmed_without_changing_counts() -> None:
    c = TokenCounter(cache_size=10)
    text = " ".join(f"word{i}" for i in range(100))
    first = c.count(text)
    assert c.count(text) == first
    assert len(c._cache) <= 100
