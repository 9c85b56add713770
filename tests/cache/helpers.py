"""Small vector helpers shared by the cache tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.cache.backends import ResultEntry, unit_vector

DIM = 16


def vec(seed: int) -> npt.NDArray[np.float32]:
    """A random unit vector; different seeds are nearly orthogonal-ish (cos well under 0.9)."""
    rng = np.random.default_rng(seed)
    return unit_vector(rng.standard_normal(DIM))


def near(v: npt.NDArray[np.float32], cos: float, seed: int = 99) -> npt.NDArray[np.float32]:
    """A unit vector whose cosine with unit ``v`` is exactly ``cos``."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(DIM).astype(np.float32)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return unit_vector(cos * v + np.sqrt(1 - cos * cos) * r)


def entry(
    entry_id: str,
    *,
    namespace: str = "ns1",
    question: str = "q",
    v: npt.NDArray[np.float32] | None = None,
    docs: tuple[int, ...] = (1,),
    now: float,
    ttl: float = 3600.0,
) -> ResultEntry:
    return ResultEntry(
        entry_id=entry_id,
        namespace=namespace,
        question=question,
        vector=vec(sum(map(ord, entry_id))) if v is None else v,
        payload={"answer": f"answer to {question}", "citations": [{"chunk_id": 1}]},
        document_ids=docs,
        created_at=now,
        expires_at=now + ttl,
    )
