"""Benchmark the audit statistics queries against the naive load-everything approach.

    .venv/bin/python tests/bench/stats.py --rows 100000 [--json] [--runs 5]

Seeds ``--rows`` realistic audit rows (~30 days, several actions, outcomes,
providers and cache layers) into a temporary SQLite file, then times every
``AuditStats`` query (median of ``--runs``) for three windows (last day, last
week, everything) and the naive approach (SELECT every row, count in Python) on
the same database. Each approach runs in its own child process so that its peak
RSS is its own. Targets: every query under 20 ms at 100K rows, under 100 ms at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from core.audit import AuditStats, ensure_audit_indexes, nearest_rank  # noqa: E402
from core.db.engine import create_engine_for  # noqa: E402
from core.db.schema import metadata  # noqa: E402

DAY = 86400.0
NOW = 1_750_000_000.0  # a fixed "now" so runs are comparable
SPAN_DAYS = 30


def seed(path: Path, rows: int, seed_value: int = 7) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    with engine.begin() as conn:  # load without the secondary indexes, add them after
        for ix in list(sa.inspect(engine).get_indexes("audit_events")):
            conn.execute(sa.text(f"DROP INDEX {ix['name']}"))
    engine.dispose()
    rng = random.Random(seed_value)
    actions = (
        ["ask"] * 60 + ["ingest"] * 25 + ["setting"] * 10 + ["quarantine"] * 3 + ["breaker"] * 2
    )
    providers = ["openai-main"] * 6 + ["llama-local"] * 3 + ["extractive"]
    layers = ["miss"] * 6 + ["result"] * 3 + ["embedding"]
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    start = NOW - SPAN_DAYS * DAY

    def gen() -> Any:
        for i in range(rows):
            ts = start + (i + rng.random()) * (SPAN_DAYS * DAY / rows)
            action = rng.choice(actions)
            if action == "ask":
                r = rng.random()
                outcome = (
                    "ok"
                    if r < 0.9
                    else "degraded"
                    if r < 0.96
                    else "failed"
                    if r < 0.99
                    else "refused"
                )
                provider: str | None = rng.choice(providers)
                layer: str | None = rng.choice(layers)
                latency: float | None = round(rng.lognormvariate(6.5, 0.8), 2)
                qh: str | None = f"{rng.getrandbits(128):032x}"
            else:
                outcome = "ok" if rng.random() < 0.95 else "failed"
                provider = layer = qh = None
                latency = round(rng.lognormvariate(4.0, 1.0), 2) if action == "ingest" else None
            yield (
                ts,
                int(ts // DAY),
                action,
                outcome,
                f"{i:016x}",
                f"s{rng.randrange(50)}",
                provider,
                layer,
                latency,
                qh,
                None,
                None,
            )

    con.executemany(
        "INSERT INTO audit_events (ts, day, action, outcome, request_id, session, provider,"
        " cache_layer, latency_ms, question_hash, question, detail)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        gen(),
    )
    con.commit()
    con.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    ensure_audit_indexes(engine)
    engine.dispose()


def windows() -> dict[str, tuple[float | None, float | None]]:
    return {
        "day": (NOW - DAY, NOW),
        "week": (NOW - 7 * DAY, NOW),
        "all": (None, None),
    }


def timed(fn: Any, runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def child_sql(path: Path, runs: int) -> dict[str, Any]:
    engine = create_engine_for(f"sqlite:///{path}")
    stats = AuditStats(engine, clock=lambda: NOW)
    out: dict[str, Any] = {}
    for wname, (since, until) in windows().items():
        for col in ("action", "outcome", "provider", "cache_layer"):
            out[f"{wname}/counts_by_{col}"], _ = timed(
                lambda c=col, s=since, u=until: stats.counts_by(c, s, u), runs
            )
        out[f"{wname}/counts_per_day"], _ = timed(
            lambda s=since, u=until: stats.counts_per_day(s, u), runs
        )
        out[f"{wname}/latency_p50_p95_p99"], _ = timed(
            lambda s=since, u=until: stats.latency(s, u), runs
        )
        out[f"{wname}/summary"], _ = timed(lambda s=since, u=until: stats.summary(s, u), runs)
    out["last_events_50"], _ = timed(lambda: stats.last_events(50), runs)
    engine.dispose()
    return {"ms": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def naive_summary(
    con: sqlite3.Connection, since: float | None, until: float | None
) -> dict[str, Any]:
    rows = con.execute(
        "SELECT ts, day, action, outcome, provider, cache_layer, latency_ms FROM audit_events"
    ).fetchall()
    lo = -1e18 if since is None else since
    hi = 1e18 if until is None else until
    rows = [r for r in rows if lo <= r[0] < hi]
    lat = sorted(r[6] for r in rows if r[2] == "ask" and r[6] is not None)
    pct = {p: lat[nearest_rank(p, len(lat)) - 1] for p in (50, 95, 99)} if lat else {}
    return {
        "by_action": Counter(r[2] for r in rows),
        "by_outcome": Counter(r[3] for r in rows),
        "by_provider": Counter(r[4] for r in rows),
        "by_cache_layer": Counter(r[5] for r in rows),
        "per_day": Counter(r[1] for r in rows),
        "latency": pct,
    }


def child_naive(path: Path, runs: int) -> dict[str, Any]:
    con = sqlite3.connect(path)
    out: dict[str, Any] = {}
    for wname, (since, until) in windows().items():
        out[f"{wname}/summary"], _ = timed(lambda s=since, u=until: naive_summary(con, s, u), runs)
    con.close()
    return {"ms": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["sql", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fn = child_sql if args.child == "sql" else child_naive
        print(json.dumps(fn(args.db, args.runs)))
        return
    target = 20.0 if args.rows <= 100_000 else 100.0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        t0 = time.perf_counter()
        seed(db, args.rows)
        seed_s = time.perf_counter() - t0
        results = {}
        for mode in ("sql", "naive"):
            runs = args.runs if mode == "sql" else max(1, min(args.runs, 3))
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--db", str(db), "--runs", str(runs)],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            results[mode] = json.loads(proc.stdout)
        size_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
    slowest = max(v for k, v in results["sql"]["ms"].items() if not k.endswith("summary"))
    report = {
        "rows": args.rows,
        "seed_s": round(seed_s, 2),
        "db_mb": round(size_mb, 1),
        "sql_ms": {k: round(v, 2) for k, v in results["sql"]["ms"].items()},
        "naive_ms": {k: round(v, 1) for k, v in results["naive"]["ms"].items()},
        "sql_peak_rss_mb": round(results["sql"]["peak_rss_mb"], 1),
        "naive_peak_rss_mb": round(results["naive"]["peak_rss_mb"], 1),
        "slowest_single_query_ms": round(slowest, 2),
        "target_ms": target,
        "meets_target": slowest < target,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rows} rows seeded in {report['seed_s']} s ({report['db_mb']} MB)")
    print(f"{'query':40} {'median ms':>10}")
    for k, v in report["sql_ms"].items():
        print(f"{k:40} {v:10.2f}")
    print("naive (load every row, count in Python):")
    for k, v in report["naive_ms"].items():
        print(f"{k:40} {v:10.1f}")
    print(f"peak RSS: sql {report['sql_peak_rss_mb']} MB, naive {report['naive_peak_rss_mb']} MB")
    verdict = "meets" if report["meets_target"] else "MISSES"
    print(
        f"slowest single query {report['slowest_single_query_ms']} ms:"
        f" {verdict} the {target} ms target"
    )


if __name__ == "__main__":
    main()
