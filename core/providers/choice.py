"""Which local model suits this machine (``local_model = "auto"``).

Measured with tests/bench/answers.py on both evaluation sets (see the README,
"Which local model"): the 1.5B model and the 0.5B model, same prompt, evidence
check and gate, on a 2-core machine. The larger model needs about 2 GB of memory
(the 0.5B about 0.7 GB) and decodes at roughly half the speed, so on a small
machine it turns a ~10 s answer into a ~20-30 s one. It is preferred only where
it has the cores to answer at about the speed the small one has on two, and the
memory to load beside the embedder and the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core import models

# The 1.5B model decodes at ~29 tokens/s on 2 threads where the 0.5B does ~50
# (shared/models.md): with twice the cores it answers about as fast as the 0.5B
# does on two.
LARGE_MODEL_MIN_CORES = 4
# Its ~2 GB, plus the embedder and the app (~1.5 GB), plus room for the documents
# being parsed and the user's other programs.
LARGE_MODEL_MIN_AVAILABLE = 6 << 30


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


def preferred_local_model(machine: Machine) -> str:
    """The catalog model to use first on ``machine`` (when it is installed)."""
    memory_ok = (
        machine.available_bytes is not None and machine.available_bytes >= LARGE_MODEL_MIN_AVAILABLE
    )
    if machine.cores >= LARGE_MODEL_MIN_CORES and memory_ok:
        return models.QWEN_15B
    return models.QWEN_05B
