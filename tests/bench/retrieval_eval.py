"""Retrieval quality of the product on both question sets, in one run.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python tests/bench/retrieval_eval.py \
        [--sets python,handbook] [--python-home /work/kb/python] \
        [--handbook-home /work/kb/handbook] [--set retrieval.rrf_k=30 ...] [--naive] [--json]

It does what ``archivist eval retrieval`` does (``core.evaluation.evaluate_retrieval``
through ``Services.search``), for each set:

- ``python``: ``../shared/eval/python311_questions.jsonl`` (60 questions, 51 scored;
  the development set: tune on it) over the Python 3.11 docs;
- ``handbook``: ``tests/eval/debian_handbook_questions.jsonl`` (56 questions, 46
  scored; frozen: report on it, never tune on it) over the Debian Administrator's
  Handbook.

A knowledge base given with ``--python-home``/``--handbook-home`` that already
holds a database is copied into a scratch folder first, so the run never changes
it (``Services`` saves index files and the ingest stamps documents); ``--in-place``
skips the copy. A home without a database is created by ingesting the corpus with
the current code (that is how an ingestion experiment gets its own
``/work/kb/exp-*`` folder), then evaluated in place.

``--set section.key=value`` overrides a retrieval or ingest setting for the run
(the value is parsed as JSON when it can be, else taken as a string). Modes are
bm25, vector and the configured fusion, plus ``<fusion>+rerank`` when a reranker
is configured. ``--naive`` adds the naive pipeline of the shared README
(tests/bench/naive_baseline.py; its chunk embeddings are cached on disk).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from core.config import Settings, load_settings  # noqa: E402
from core.evaluation import evaluate_retrieval, load_questions  # noqa: E402
from tests.eval.corpus import find_corpus  # noqa: E402

SETS: dict[str, tuple[Path, str, Path]] = {
    # name: (questions, corpus name for find_corpus, default knowledge base)
    "python": (
        ROOT.parent / "shared" / "eval" / "python311_questions.jsonl",
        "python3.11-doc",
        Path("/work/kb/python"),
    ),
    "handbook": (
        ROOT / "tests" / "eval" / "debian_handbook_questions.jsonl",
        "debian-handbook",
        Path("/work/kb/handbook"),
    ),
}
METRICS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def apply_overrides(settings: Settings, pairs: list[str]) -> Settings:
    """``section.key=value`` pairs applied to a copy of ``settings`` (then validated)."""
    sections: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not hasattr(settings, section):
            raise SystemExit(f"--set wants section.key=value, got {pair!r}")
        if not hasattr(getattr(settings, section), name):
            raise SystemExit(f"unknown setting {key!r}")
        sections.setdefault(section, {})[name] = _value(raw)
    changed = {s: dataclasses.replace(getattr(settings, s), **v) for s, v in sections.items()}
    out = dataclasses.replace(settings, **changed)
    out.validate()
    return out


async def _evaluate(settings: Settings, questions_file: Path, corpus: Path) -> dict[str, Any]:
    from core.services import Services

    questions = load_questions(questions_file)
    modes = ["bm25", "vector", settings.retrieval.fusion]
    if settings.retrieval.reranker:
        modes.append(f"{settings.retrieval.fusion}+rerank")
    services = Services(settings)
    await services.start(warm_models=True)
    try:
        t0 = time.perf_counter()
        report = await services.ingest([corpus])
        ingest_s = time.perf_counter() - t0
        result = await evaluate_retrieval(services, questions, corpus, list(dict.fromkeys(modes)))
        stats = await services.stats()
        result["chunks"] = stats.knowledge_base.chunks
        result["ingest"] = {"summary": report.summary(), "elapsed_s": round(ingest_s, 1)}
    finally:
        await services.aclose()
    return result


def run_set(name: str, home: Path, overrides: list[str], in_place: bool) -> dict[str, Any]:
    questions_file, corpus_name, _ = SETS[name]
    corpus = find_corpus(corpus_name)
    if corpus is None:
        raise SystemExit(f"the {corpus_name} corpus is not installed")
    scratch: tempfile.TemporaryDirectory[str] | None = None
    run_home = home
    if (home / "archivist.db").is_file() and not in_place:
        scratch = tempfile.TemporaryDirectory(prefix=f"eval-{name}-", dir=home.parent)
        run_home = Path(scratch.name) / "home"
        shutil.copytree(home, run_home, ignore=shutil.ignore_patterns("logs"))
    try:
        env = {"ARCHIVIST_HOME": str(run_home), "ARCHIVIST_LOCAL_MODEL": "off"}
        settings = apply_overrides(load_settings(None, env=env), overrides)
        result = asyncio.run(_evaluate(settings, questions_file, corpus.resolve()))
    finally:
        if scratch is not None:
            scratch.cleanup()
    result["home"] = str(home)
    result["set"] = name
    return result


def run_naive(name: str) -> dict[str, Any]:
    from tests.bench import naive_baseline

    questions_file, corpus_name, _ = SETS[name]
    corpus = find_corpus(corpus_name)
    assert corpus is not None
    corpus = corpus.resolve()
    cache = Path("/work/kb") / f"naive-{naive_baseline._slug(corpus)}"
    return naive_baseline.run(questions_file, corpus, cache)


def table(results: dict[str, dict[str, Any]], naive: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| set | retrieval | nDCG@10 | Recall@5 | Recall@10 | MRR@10 | nDCG@10 paraphrase |",
        "|---|---|---|---|---|---|---|",
    ]
    kinds: set[str] = set()

    def row(set_name: str, label: str, r: dict[str, Any]) -> None:
        para = r["ndcg@10_by_kind"].get("paraphrase", 0.0)
        cells = " | ".join(f"{r[m]:.3f}" for m in METRICS)
        lines.append(f"| {set_name} | {label} | {cells} | {para:.3f} |")
        kinds.update(r["ndcg@10_by_kind"])

    for set_name, result in results.items():
        for mode, r in result["modes"].items():
            row(set_name, mode, r)
        if set_name in naive:
            for mode, r in naive[set_name]["modes"].items():
                row(set_name, f"naive {mode}", r)
    ordered = sorted(kinds)
    lines += ["", "nDCG@10 by kind:", "| set | retrieval | " + " | ".join(ordered) + " |"]
    lines.append("|---|---|" + "---|" * len(ordered))
    for set_name, result in results.items():
        rows = list(result["modes"].items())
        if set_name in naive:
            rows += [(f"naive {m}", r) for m, r in naive[set_name]["modes"].items()]
        for mode, r in rows:
            cells = " | ".join(f"{r['ndcg@10_by_kind'].get(k, 0):.3f}" for k in ordered)
            lines.append(f"| {set_name} | {mode} | {cells} |")
    lines.append("")
    for set_name, result in results.items():
        lines.append(
            f"{set_name}: {result['scored']} scored of {result['questions']} questions, "
            f"{result['chunks']} chunks, knowledge base {result['home']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sets", default="python,handbook")
    parser.add_argument("--python-home", type=Path, default=SETS["python"][2])
    parser.add_argument("--handbook-home", type=Path, default=SETS["handbook"][2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--in-place", action="store_true", help="do not copy the homes")
    parser.add_argument("--naive", action="store_true", help="add the naive baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; use {sorted(SETS)}")
    homes = {"python": args.python_home, "handbook": args.handbook_home}
    results = {
        n: run_set(n, homes[n].expanduser().resolve(), args.overrides, args.in_place) for n in names
    }
    naive = {n: run_naive(n) for n in names} if args.naive else {}
    if args.json:
        print(json.dumps({"overrides": args.overrides, "results": results, "naive": naive}))
    else:
        if args.overrides:
            print("overrides: " + ", ".join(args.overrides))
        print(table(results, naive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
