"""The cross-encoder rerank stage: rescore the fused candidates, keep the best.

Hybrid retrieval ranks passages by two cheap, independent views of the
question (BM25 terms, embedding cosine). A cross-encoder reads the question and
one passage *together* and scores how well the passage answers it, which is
far more precise and far more expensive (one transformer pass per pair, ~25 ms
for a 100-word passage with a MiniLM-L6 model on 2 cores). So it only sees the
top ``rerank_candidates`` of the fused list and picks the final ``top_k``.

Like ``core.embedding``, nothing here imports ``sentence_transformers`` at
module import time: ``Reranker.load`` does, offline, and callers run it (and
``score``/``rerank``) in a worker thread (``asyncio.to_thread``).

Where the model comes from (``locate_model``), first match wins:

1. a folder path as given (a saved ``CrossEncoder`` or a
   ``*ForSequenceClassification`` transformers folder);
2. ``<models_dir>/<name>`` or ``<models_dir>/<last part of name>``, so a user
   can drop ``ms-marco-MiniLM-L-6-v2/`` into the models folder;
3. for a Hugging Face id such as ``cross-encoder/ms-marco-MiniLM-L-6-v2``, a
   copy already in the local Hugging Face cache (never downloaded here).

``core.models`` verifies and downloads single files only, so a catalog entry
that downloads a cross-encoder folder is future work.

    reranker = Reranker("cross-encoder/ms-marco-MiniLM-L-6-v2", settings.models_dir)
    best = await asyncio.to_thread(reranker.rerank, question, candidates, 5)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import ModelError
from core.types import ScoredChunk

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure parts


def passage_text(scored: ScoredChunk) -> str:
    """What the cross-encoder reads for a chunk: its heading path, then its text.

    A chunk deep in a section rarely repeats the section's subject; its headings
    do, and they cost only a few tokens (the same reason BM25 indexes them).
    """
    chunk = scored.chunk
    if not chunk.heading_path:
        return chunk.text
    return " / ".join(chunk.heading_path) + "\n" + chunk.text


def order_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores`` from best to worst; ties keep their previous order.

    ``sorted`` is stable, so equal scores stay in the order retrieval gave them.
    A non-finite score (NaN) sorts last instead of poisoning the comparison.
    """

    def key(i: int) -> float:
        s = scores[i]
        return -s if math.isfinite(s) else math.inf

    return sorted(range(len(scores)), key=key)


def apply_rerank(
    scored: Sequence[ScoredChunk], scores: Sequence[float], top_k: int
) -> list[ScoredChunk]:
    """The best ``top_k`` of ``scored`` by ``scores``, each carrying its rerank score.

    ``score`` (the one the ranking used) becomes the rerank score; the earlier
    scores (BM25, vector, fused) stay on the chunk to explain the answer.
    """
    if len(scores) != len(scored):
        raise ValueError(f"{len(scores)} scores for {len(scored)} passages")
    if top_k <= 0:
        return []
    return [
        dataclasses.replace(scored[i], score=float(scores[i]), rerank_score=float(scores[i]))
        for i in order_by_scores(scores)[:top_k]
    ]


# --------------------------------------------------------------------------- model folder


def _looks_like_hub_id(name: str) -> bool:
    """``owner/model``: one slash, no drive, backslash or leading ``/ . ~``."""
    owner, sep, model = name.partition("/")
    return (
        bool(sep and owner and model)
        and "/" not in model
        and not name.startswith((".", "~"))
        and not any(c in name for c in "\\: ")
    )


def _from_hf_cache(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` if it is already cached locally (no network)."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or no usable cache: not found, not a fault
        return None
    path = Path(folder)
    return path if path.is_dir() else None


def locate_model(name_or_path: str, models_dir: Path) -> Path:
    """The folder holding the cross-encoder ``name_or_path`` (see the module docstring).

    Raises ``ModelError`` when it cannot be found without the network.
    """
    name = name_or_path.strip()
    if not name:
        raise ModelError("No reranker model was given.")
    given = Path(name).expanduser()
    if given.is_dir():
        return given.resolve()
    if given.is_absolute() or name.startswith((".", "~")):
        raise ModelError(f"The reranker model folder {given} does not exist.")
    for candidate in (models_dir / name, models_dir / given.name):
        if candidate.is_dir():
            return candidate.resolve()
    if _looks_like_hub_id(name):
        cached = _from_hf_cache(name)
        if cached is not None:
            return cached
    raise ModelError(
        f"The reranker model {name!r} was not found: it is not a folder, not in {models_dir}, "
        "and not in the local Hugging Face cache; put the model's folder there or set "
        "retrieval.reranker to its path."
    )


def check_cross_encoder_folder(folder: Path) -> None:
    """Refuse a folder that does not hold a cross-encoder, with one clear sentence.

    ``CrossEncoder`` would happily "convert" an embedding model (all-MiniLM) by
    bolting a randomly initialised classifier on top: its scores would be noise.
    A folder is accepted when sentence-transformers saved it as a CrossEncoder,
    or when its transformers architecture is a sequence classifier.
    """
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"The reranker folder {folder} has no config.json: it is not a model.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"The reranker folder {folder} has an unreadable config.json ({exc})."
        ) from exc
    st_type = _read_st_model_type(folder)
    if st_type == "CrossEncoder":
        return
    architectures = config.get("architectures") if isinstance(config, dict) else None
    is_classifier = isinstance(architectures, list) and any(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures
    )
    if st_type is None and is_classifier:
        return
    what = f"a {st_type}" if st_type else f"a {', '.join(map(str, architectures or ['?']))}"
    raise ModelError(
        f"The model in {folder} is {what}, not a cross-encoder; "
        "choose a reranker such as cross-encoder/ms-marco-MiniLM-L-6-v2."
    )


def _read_st_model_type(folder: Path) -> str | None:
    path = folder / "config_sentence_transformers.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if isinstance(model_type, str):
        return model_type
    # sentence-transformers < 4 wrote no model_type; a Pooling module means an embedder.
    return "SentenceTransformer" if (folder / "1_Pooling").is_dir() else None


def _max_positions(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


# --------------------------------------------------------------------------- the stage


class Reranker:
    """A cross-encoder that rescores (question, passage) pairs; blocking, thread-safe.

    ``load`` takes seconds the first time (the sentence-transformers import) and
    ``score`` ~25 ms per 100-word pair on 2 cores: call both from a worker
    thread. Scoring is serialised by a lock, as for the embedder: torch already
    spreads one batch over the configured threads.

    ``threads`` (None = leave torch alone) is applied around each ``score``
    call and restored afterwards, since torch's thread count is shared.
    """

    def __init__(
        self,
        name_or_path: str,
        models_dir: Path,
        *,
        max_length: int = 256,
        batch_size: int = 16,
        threads: int | None = None,
    ) -> None:
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, not {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.name = name_or_path
        self.models_dir = models_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self.path: Path | None = None  # the folder loaded from, once loaded
        self._model: Any = None
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Find and load the model, offline (blocking, seconds): use a worker thread.

        Raises ``ModelError`` when the folder is missing, is not a cross-encoder,
        or cannot be loaded. Loading twice is a no-op.
        """
        with self._load_lock:
            if self._model is not None:
                return
            folder = locate_model(self.name, self.models_dir)
            check_cross_encoder_folder(folder)
            positions = _max_positions(folder)
            max_length = min(self.max_length, positions) if positions else self.max_length
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                from sentence_transformers import CrossEncoder

                model = CrossEncoder(
                    str(folder), device="cpu", local_files_only=True, max_length=max_length
                )
            except Exception as exc:  # any library failure is a model fault, not a bug
                raise ModelError(
                    f"The reranker model at {folder} could not be loaded: {exc}"
                ) from exc
            if model.num_labels != 1:
                raise ModelError(
                    f"The model in {folder} gives {model.num_labels} scores per pair, "
                    "not one relevance score: it is not a reranker."
                )
            model.eval()
            self.path = folder
            self._model = model
            log.info(
                "reranker loaded",
                extra={"model": self.name, "path": str(folder), "max_length": max_length},
            )

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, higher is better (blocking; loads on first use).

        The scale is the model's own (a sigmoid in 0..1 for most MS MARCO
        models); only the order matters to ``rerank``. Passages longer than
        ``max_length`` tokens (question included) are truncated, not refused.
        """
        if not passages:
            return []
        self.load()
        pairs = [(query, p) for p in passages]
        with self._lock:
            model = self._model
            if model is None:  # closed between load() and here
                raise ModelError("The reranker was closed while scoring.")
            import torch

            previous = torch.get_num_threads()
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            try:
                raw = model.predict(
                    pairs,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
            except Exception as exc:
                raise ModelError(f"The reranker failed to score passages: {exc}") from exc
            finally:
                if self.threads is not None:
                    torch.set_num_threads(previous)
        scores = [float(x) for x in raw.reshape(-1).tolist()]
        if len(scores) != len(passages):  # a multi-label model slipped through
            raise ModelError(
                f"The reranker gave {len(scores)} scores for {len(passages)} passages."
            )
        return scores

    def rerank(self, query: str, scored: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        """The best ``top_k`` of ``scored`` by cross-encoder score (blocking).

        Each result has ``rerank_score`` set and ``score`` replaced by it; ties
        keep the order of ``scored``. Fewer candidates than ``top_k`` are all
        returned, reordered.
        """
        if not scored or top_k <= 0:
            return []
        scores = self.score(query, [passage_text(s) for s in scored])
        return apply_rerank(scored, scores, top_k)

    def close(self) -> None:
        """Drop the model (a later ``score`` loads it again)."""
        with self._lock:
            self._model = None
