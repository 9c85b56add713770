"""Query normalization and the layer-1 cache key (pure functions).

The key must be stable across processes and restarts, so it is a sha256 over the
model id and the normalized query, never Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    """NFKC, lowercase, trim and collapse whitespace.

    NFKC first so that compatibility forms (full-width letters, ligatures such as
    "ﬁ", non-breaking spaces) become their plain equivalents before lowercasing;
    ``casefold`` would also fold "ß" to "ss", which is more than a key needs.
    Punctuation is kept: the embedding of "policy?" differs from "policy", and the
    key identifies an embedding.
    """
    text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", text.lower()).strip()


def embedding_key(model_id: str, query: str) -> str:
    """The layer-1 key: sha256 hex of ``model_id`` and the normalized query.

    A NUL separates the two parts so that ("ab", "c") and ("a", "bc") differ.
    """
    data = f"{model_id}\x00{normalize_query(query)}".encode()
    return hashlib.sha256(data).hexdigest()


def entry_id_for(namespace: str, query: str) -> str:
    """A deterministic layer-2 entry id: the same question in one scope replaces itself."""
    data = f"{namespace}\x00{normalize_query(query)}".encode()
    return hashlib.sha256(data).hexdigest()[:32]


def make_namespace(kb_version: str | int, model_id: str, prompt_version: str | int) -> str:
    """The scope of a cached answer: a knowledge-base version, a provider/model, a prompt."""
    return f"kb={kb_version}|model={model_id}|prompt={prompt_version}"
