"""Answer quality, honesty and latency on a question set (the ``eval answers`` figures).

    .venv/bin/python tests/bench/answers.py --questions Q.jsonl --corpus DIR \\
        [--kb DIR] [--local-model off|auto|NAME] [--limit N] [--json] [--features]
    .venv/bin/python tests/bench/answers.py --mini [--local-model ...]

``--kb`` is a data folder where ``DIR`` was already ingested (it is copied to a
temporary folder first, so it is never changed); without it the corpus is
ingested into a temporary folder. ``--local-model off`` answers with the quotes
and the extractive provider only; ``auto`` uses the installed local model (from
``ARCHIVIST_MODELS_DIR``, else the default data folder's ``models/``).
``--features`` also prints the abstention gate's features per question, the data
the gate's constants were chosen on (see core/answer/gate.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.answer.evaluate import evaluate_answers, format_answers_table  # noqa: E402
from core.config import default_home, load_settings  # noqa: E402
from core.evaluation import load_questions  # noqa: E402
from core.services import Services  # noqa: E402
from core.types import Answer  # noqa: E402
from tests.support.mini_corpus import write_questions_file  # noqa: E402


async def gate_features(services: Services, questions: list[Any]) -> list[dict[str, Any]]:
    """The gate's inputs per question, computed as the ask pipeline computes them."""
    rows = []
    for q in questions:
        scored, _ = await services.search(q.question, k=services.settings.retrieval.top_k)
        f = await services.asker.gate_features(q.question, scored)
        rows.append(
            {"id": q.id, "kind": q.kind, "answerable": bool(q.answer_contains)} | f.to_json()
        )
    return rows


async def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["ARCHIVIST_HOME"] = str(home)
    env["ARCHIVIST_LOCAL_MODEL"] = args.local_model
    if "ARCHIVIST_MODELS_DIR" not in env:
        # The scratch copy of the knowledge base has no models/: use the user's.
        env["ARCHIVIST_MODELS_DIR"] = str(default_home() / "models")
    settings = load_settings(env=env)
    questions = load_questions(Path(args.questions))[: args.limit or None]
    gates: list[dict[str, Any]] = []
    async with Services(settings) as services:
        if args.kb is None:
            await services.ingest([args.corpus])
        await services.wait_ready()

        async def ask(text: str) -> Answer:
            return await services.ask(text, use_cache=False, session=f"bench-{len(gates)}")

        if args.features:
            return {"features": await gate_features(services, questions)}
        corpus = args.corpus.resolve() if args.corpus is not None else None
        report = await evaluate_answers(ask, questions, corpus)
    report["settings"] = {"local_model": args.local_model, "questions": args.questions}
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions")
    p.add_argument("--corpus", type=Path)
    p.add_argument(
        "--mini",
        action="store_true",
        help="the mixed-format mini corpus (tests/support/mini_corpus.py) and its questions",
    )
    p.add_argument("--kb", type=Path)
    p.add_argument("--local-model", default="off")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--features", action="store_true")
    args = p.parse_args()
    if not args.mini and (args.questions is None or args.corpus is None):
        p.error("--questions and --corpus are required (or --mini)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="archivist-bench-answers-") as tmp:
        home = Path(tmp) / "home"
        if args.mini:
            args.corpus = Path(tmp) / "mini"
            args.corpus.mkdir()
            args.questions = str(Path(tmp) / "mini.jsonl")
            write_questions_file(args.corpus, Path(args.questions))
            args.kb = None
        if args.kb is not None:
            shutil.copytree(args.kb, home, ignore=shutil.ignore_patterns("logs", "*.lock"))
        else:
            home.mkdir()
        (home / "archivist.toml").write_text("[rate_limit]\nenabled = false\n")
        report = asyncio.run(run(args, home))
    if args.json or args.features:
        print(json.dumps(report, indent=2))
    else:
        print(format_answers_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
