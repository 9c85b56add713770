"""Which local model suits this machine (``local_model = "auto"``).

Measured with tests/bench/answers.py (README, "Which local model"): on the
same 35 Python docs questions, with the same prompt, evidence check and gate,
Qwen2.5-Coder 1.5B answered 17 correctly where the 0.5B answered 18, abstained
on the same 5 of 9 unanswerable questions, and cited precisely 11 of its 12
correct answers against 13 of 13; on 33 questions of the frozen handbook set both
answered 18 correctly and abstained on 10 of 10 unanswerable ones, the 1.5B with
fewer wrong abstentions (1 of 23 against 3) and a first token three times later.
It needs about 2 GB of memory instead of 0.7 GB and decodes at about half the
speed (shared/models.md). Once every answer is checked against the passages, the
larger model buys little here, so "auto" never picks it on its own (set
``local_model`` to use it).

What the machine decides is whether to load a model at all: with too little
memory available, loading one beside the embedder and the window would push the
system into swap, and Archivist answers with the documents' own sentences
instead (the quotes and the extractive provider).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core import models

# The 0.5B model takes ~0.7 GB, the embedder and the app ~1.5 GB: below this much
# available memory no local model is loaded by default.
MIN_AVAILABLE_FOR_LOCAL_MODEL = 3 << 30


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    available_bytes: int | None  # None when the platform does not say


def this_machine() -> Machine:
    """The cores this process may use and the memory available now (Linux: MemAvailable)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return Machine(cores, _available_memory())


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def preferred_local_model(machine: Machine) -> str | None:
    """The catalog model "auto" uses on ``machine``, or None for no local model."""
    if machine.available_bytes is not None and (
        machine.available_bytes < MIN_AVAILABLE_FOR_LOCAL_MODEL
    ):
        return None
    return models.QWEN_05B
