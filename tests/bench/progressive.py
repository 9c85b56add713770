"""Answers while ingesting: how soon a dropped folder answers, and how long the vectors take.

    apt-get install -y postgresql-doc-15      # the corpus: 1,169 HTML pages
    .venv/bin/python tests/bench/progressive.py [--corpus DIR] [--model NAME] [--json]

Drops the corpus into a fresh knowledge base (a temporary ``ARCHIVIST_HOME``,
models warmed as the app does, no local LLM: answers are the documents' own
sentences with citations) and, from the moment of the drop, asks three questions
in turn, each answered by a known page, until each answer cites its page.
Reports:

- **keyword-live**: seconds until every file was stored and keyword-searchable;
- **first cited answer**: seconds from the drop until an answer cited a page of
  the corpus, and per question until it cited *its* page (with whether the
  answer said the search was partial);
- **full embed**: seconds until the last vector was in (the ``ingest`` call
  returns), the fill's own seconds and passages/s;
- ask latencies during the fill (median).

The machine's other core is often busy with other work: say so with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_CORPUS = Path("/usr/share/doc/postgresql-doc-15/html")
QUESTIONS = (
    ("How do I build an index without locking out writes to the table?", "sql-createindex.html"),
    ("What does VACUUM FULL do differently from plain VACUUM?", "sql-vacuum.html"),
    ("What is the difference between the json and jsonb types?", "datatype-json.html"),
)


@dataclass
class Asked:
    question: str
    page: str
    first_cited_s: float | None = None  # cited any page of the corpus
    right_page_s: float | None = None  # cited its own page
    partial: bool | None = None  # the right-page answer said the search was partial
    latencies_ms: list[float] = field(default_factory=list)


async def run(corpus: Path, model: str | None) -> dict[str, Any]:
    from core.config import load_settings
    from core.services import Services
    from core.types import IngestProgress

    with tempfile.TemporaryDirectory(prefix="archivist-progressive-") as home:
        os.environ["ARCHIVIST_HOME"] = home
        os.environ["ARCHIVIST_LOCAL_MODEL"] = "off"
        # The questions come every second or so, faster than the default limit.
        config = "[ingest]\nembed = true\n[rate_limit]\nenabled = false\n"
        if model:
            config += f'[embedding]\nmodel = "{model}"\n'
        Path(home, "archivist.toml").write_text(config)
        async with Services(load_settings()) as services:
            await services.wait_ready()
            last: list[IngestProgress] = []
            shown = [0.0]

            def on_progress(p: IngestProgress) -> None:
                # Milestones on stderr as they happen (a long fill can be cut short).
                last.append(p)
                now = time.perf_counter() - dropped
                if p.vectors_total and (now - shown[0] >= 60 or p.vectors_done == 0):
                    shown[0] = now
                    _say(f"{now:.0f} s: {p.vectors_done}/{p.vectors_total} passages embedded")

            dropped = time.perf_counter()
            ingest = asyncio.create_task(services.ingest([corpus], progress=on_progress))
            asked = [Asked(q, page) for q, page in QUESTIONS]
            first_cited: float | None = None
            while not ingest.done() and any(a.right_page_s is None for a in asked):
                for a in asked:
                    if a.right_page_s is not None:
                        continue
                    t0 = time.perf_counter()
                    answer = await services.ask(a.question, use_cache=False)
                    now = time.perf_counter()
                    a.latencies_ms.append((now - t0) * 1000)
                    sources = [c.source for c in answer.citations]
                    if any(s.startswith(str(corpus)) for s in sources):
                        if first_cited is None:
                            _say(f"{now - dropped:.1f} s: first cited answer")
                        first_cited = first_cited or now - dropped
                        a.first_cited_s = a.first_cited_s or now - dropped
                    if any(Path(s).name == a.page for s in sources):
                        a.right_page_s = now - dropped
                        a.partial = answer.partial_search
                        _say(f"{a.right_page_s:.1f} s: {a.page} cited")
                await asyncio.sleep(1.0)
            report = await ingest
            full_s = time.perf_counter() - dropped
            stats = await services.stats()
            health = await services.health()
    embedded = int(last[-1].vectors_total) if last and last[-1].vectors_total else 0
    embed_s = report.timings_s.get("embed", 0.0)
    during = [ms for a in asked for ms in a.latencies_ms]
    return {
        "corpus": str(corpus),
        "model": model or "all-MiniLM-L6-v2",
        "files": report.summary()["added"],
        "failed": report.summary()["failed"],
        "chunks": stats.knowledge_base.chunks,
        "keyword_live_s": round(report.timings_s.get("searchable", 0.0), 1),
        "first_cited_answer_s": None if first_cited is None else round(first_cited, 1),
        "questions": [
            {
                "question": a.question,
                "page": a.page,
                "first_cited_s": _r(a.first_cited_s),
                "right_page_s": _r(a.right_page_s),
                "said_partial": a.partial,
                "asks": len(a.latencies_ms),
            }
            for a in asked
        ],
        "ask_ms_median_during_ingest": round(statistics.median(during), 1) if during else None,
        "full_embed_s": round(full_s, 1),
        "fill_s": round(embed_s, 1),
        "passages_embedded": embedded,
        "fill_passages_per_s": round(embedded / embed_s, 1) if embed_s else None,
        "vectors": health.search_index.vectors if health.search_index else None,
        "split_s": {k: round(v, 1) for k, v in report.timings_s.items()},
    }


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", default=None, help="embedding.model (default: the app's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is missing: apt-get install -y postgresql-doc-15")
    result = asyncio.run(run(args.corpus.resolve(), args.model))
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if key == "questions":
            for q in value:
                print(
                    f"{'':>28}{q['page']}: cited the corpus at {q['first_cited_s']} s, "
                    f"its page at {q['right_page_s']} s (partial: {q['said_partial']}, "
                    f"{q['asks']} asks)"
                )
        else:
            print(f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
