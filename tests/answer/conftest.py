"""Passages and a deterministic stand-in embedder for the evidence tests."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from core.types import Chunk, FloatArray, ScoredChunk

OUTAGE = (
    "Incident report for the billing service.\n\n"
    "The outage on 5 March lasted 47 minutes. It affected the billing service. "
    "Engineers restored service by rolling back release 3.11.2."
)
LIGHTHOUSE = (
    "The Old Harbour lighthouse was built in 1874. Its keeper, Marta Quillon, lit the lamp "
    "every night for thirty-one years. The lamp burned whale oil until 1902."
)
GARDEN = (
    "Beds are watered on Tuesdays and Saturdays by the volunteer group. The compost bins are "
    "turned once a fortnight; brown leaves go in bin three."
)
CONFIG = (
    "Set cache_dir in config.toml to move the cache. Run the tool with --rebuild after "
    "changing it; os.path.expanduser() expands ~ in paths."
)


def make_passages(*texts: str, offset: int = 1000) -> list[ScoredChunk]:
    """Retrieved passages in model order: marker n is ``passages[n - 1]``."""
    out = []
    for i, text in enumerate(texts):
        chunk = Chunk(
            id=10 + i,
            document_id=100 + i,
            source=f"/docs/file{i + 1}.txt",
            ordinal=0,
            text=text,
            start=offset,
            end=offset + len(text),
            page=None,
        )
        out.append(ScoredChunk(chunk=chunk, score=1.0 - 0.1 * i))
    return out


class ConceptEmbed:
    """A bag-of-concepts embedder: real cosine behaviour, no model.

    Words are mapped through ``synonyms`` to a concept, hashed into ``dim``
    buckets and L2-normalised, so two sentences are close exactly when they share
    concepts. ``calls`` counts invocations (the check must batch once).
    """

    _STOP = frozenset("a an the of in on at to by for and or is are was were it its".split())

    def __init__(self, synonyms: dict[str, str] | None = None, dim: int = 512) -> None:
        self.synonyms = synonyms or {}
        self.dim = dim
        self.calls = 0
        self.batches: list[int] = []

    def __call__(self, texts: list[str]) -> FloatArray:
        self.calls += 1
        self.batches.append(len(texts))
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in self._STOP:
                    continue
                concept = self.synonyms.get(word, word)
                rows[i, zlib.crc32(concept.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1.0, norms)


class Docs:
    """The texts of the standard passages (attributes, so tests read like prose)."""

    outage = OUTAGE
    lighthouse = LIGHTHOUSE
    garden = GARDEN
    config = CONFIG


@pytest.fixture
def docs() -> type[Docs]:
    return Docs


@pytest.fixture
def make() -> Callable[..., list[ScoredChunk]]:
    """``make(text, ...)``: passages for these texts, marker n = n-th text."""
    return make_passages


@pytest.fixture
def standard() -> Sequence[ScoredChunk]:
    """[1] outage, [2] lighthouse, [3] garden, [4] config."""
    return make_passages(OUTAGE, LIGHTHOUSE, GARDEN, CONFIG)


@pytest.fixture
def concept_embed() -> Callable[..., ConceptEmbed]:
    return ConceptEmbed
