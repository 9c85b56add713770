"""Answers asked while an ingestion's vectors are filled in: the fill paused or not.

    .venv/bin/python tests/bench/answer_during_fill.py --kb DIR --questions Q.jsonl \\
        [--n 8] [--local-model NAME] [--json]

``--kb`` is a data folder whose vector fill is unfinished (an ingestion stopped
part-way: ``archivist ingest`` interrupted after "keyword search ready"). It is
copied to a temporary folder; there the fill resumes at start-up, and the first
``--n`` questions of ``Q.jsonl`` are asked one at a time while it runs,
alternating two modes: the default (the fill waits while the model writes,
``Embedder.foreground``) and the fill left running beside the model. Reported
per mode: first token and total time (medians), and the passages the fill
embedded during the answers. Run on a quiet machine for figures worth quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import default_home, load_settings  # noqa: E402
from core.evaluation import load_questions  # noqa: E402
from core.services import Services  # noqa: E402


def _fill_done(services: Services) -> int:
    fill = services.library.fill
    return fill.progress.done if fill is not None else 0


async def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = dict(os.environ, ARCHIVIST_HOME=str(home), ARCHIVIST_LOCAL_MODEL=args.local_model)
    env.setdefault("ARCHIVIST_MODELS_DIR", str(default_home() / "models"))
    settings = load_settings(env=env)
    questions = load_questions(Path(args.questions))[: args.n]
    rows: list[dict[str, Any]] = []
    async with Services(settings) as services:
        retriever = services.asker._retriever
        paused = retriever.foreground
        await services.ask("warm-up: what is this about?", use_cache=False, session="warm")
        for i, q in enumerate(questions):
            mode = "paused" if i % 2 == 0 else "running"
            retriever.foreground = paused if mode == "paused" else contextlib.nullcontext  # type: ignore[method-assign]
            pending = services.library.vectors_pending
            before = _fill_done(services)
            t0 = time.perf_counter()
            answer = await services.ask(q.question, use_cache=False, session=f"b{i}")
            wall = (time.perf_counter() - t0) * 1000
            rows.append(
                {
                    "id": q.id,
                    "mode": mode,
                    "pending_before": pending,
                    "first_token_ms": answer.timings_ms.get("first_token"),
                    "generate_ms": answer.timings_ms.get("generate"),
                    "total_ms": round(wall, 1),
                    "fill_passages": _fill_done(services) - before,
                    "provider": answer.provider,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
        retriever.foreground = paused  # type: ignore[method-assign]

    def med(mode: str, key: str) -> float | None:
        vals = [r[key] for r in rows if r["mode"] == mode and r[key] is not None]
        return round(statistics.median(vals), 1) if vals else None

    summary = {
        mode: {
            "questions": sum(r["mode"] == mode for r in rows),
            "first_token_ms_p50": med(mode, "first_token_ms"),
            "generate_ms_p50": med(mode, "generate_ms"),
            "total_ms_p50": med(mode, "total_ms"),
            "fill_passages_per_answer_p50": med(mode, "fill_passages"),
        }
        for mode in ("paused", "running")
    }
    return {"summary": summary, "rows": rows, "cpus": os.cpu_count()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kb", type=Path, required=True)
    p.add_argument("--questions", required=True)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--local-model", default="auto")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="archivist-fillbench-"))
    try:
        home = tmp / "home"
        shutil.copytree(args.kb, home, ignore=shutil.ignore_patterns("models"))
        report = asyncio.run(run(args, home))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            "| mode | n | first token p50 ms | generate p50 ms | total p50 ms "
            "| fill passages/answer |"
        )
        print("|---|---|---|---|---|---|")
        for mode, s in report["summary"].items():
            print(
                f"| {mode} | {s['questions']} | {s['first_token_ms_p50']} | "
                f"{s['generate_ms_p50']} | {s['total_ms_p50']} | "
                f"{s['fill_passages_per_answer_p50']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
