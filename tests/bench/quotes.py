"""How often the quotes shown first hold the answer (no model involved).

    .venv/bin/python tests/bench/quotes.py --questions Q.jsonl --kb DIR \\
        [--followers N ...] [--span-chars N ...] [--json]

``--kb`` is a data folder where the question set's documents were ingested (it
is copied first, never changed). For each answerable question: the top-k
passages of the default retrieval, then ``find_quotes`` with each setting. It
prints how many answers are in the passages at all and how many inside a quote,
with the median length of the quotes shown. The constants
``QUOTE_FOLLOWERS``/``QUOTE_SPAN_CHARS`` (core/evidence/support.py) were chosen
with this script on the Python docs set and checked on the frozen handbook set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import load_settings  # noqa: E402
from core.evaluation import load_questions  # noqa: E402
from core.evidence.support import find_quotes  # noqa: E402
from core.services import Services  # noqa: E402


def _holds(text: str, needles: list[str]) -> bool:
    low = text.lower()
    return all(n.lower() in low for n in needles)


async def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = dict(os.environ, ARCHIVIST_HOME=str(home), ARCHIVIST_LOCAL_MODEL="off")
    questions = [q for q in load_questions(Path(args.questions)) if q.answer_contains]
    settings = [(f, c) for f in args.followers for c in args.span_chars]
    inside = dict.fromkeys(settings, 0)
    chars: dict[tuple[int, int], list[int]] = {s: [] for s in settings}
    in_passages = 0
    async with Services(load_settings(env=env)) as services:
        await services.wait_ready()
        for q in questions:
            needles = list(q.answer_contains)
            scored, _ = await services.search(q.question, k=services.settings.retrieval.top_k)
            in_passages += any(_holds(sc.chunk.text, needles) for sc in scored)
            for f, c in settings:
                quotes, _ = find_quotes(q.question, scored, followers=f, span_chars=c)
                inside[(f, c)] += any(_holds(x.quote, needles) for x in quotes)
                chars[(f, c)].append(sum(len(x.quote) for x in quotes))
    n = len(questions)
    return {
        "questions": args.questions,
        "answerable": n,
        "answer_in_passages": in_passages,
        "settings": [
            {
                "followers": f,
                "span_chars": c,
                "answer_in_quotes": inside[(f, c)],
                "share": round(inside[(f, c)] / n, 3) if n else None,
                "median_quote_chars": statistics.median(chars[(f, c)]) if n else None,
            }
            for f, c in settings
        ],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", required=True)
    p.add_argument("--kb", required=True, type=Path)
    p.add_argument("--followers", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--span-chars", type=int, nargs="+", default=[300, 400, 600])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="archivist-bench-quotes-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(args.kb, home, ignore=shutil.ignore_patterns("logs", "*.lock"))
        (home / "archivist.toml").write_text("[rate_limit]\nenabled = false\n")
        report = asyncio.run(run(args, home))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['answerable']} answerable questions; the answer is in the top-k passages "
        f"for {report['answer_in_passages']}"
    )
    print(f"{'followers':>9} {'chars':>6} {'in quotes':>10} {'share':>6} {'median chars':>13}")
    for row in report["settings"]:
        print(
            f"{row['followers']:>9} {row['span_chars']:>6} {row['answer_in_quotes']:>10} "
            f"{row['share']:>6} {row['median_quote_chars']:>13}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
