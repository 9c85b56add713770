"""Ingestion speed on a real corpus nobody here wrote: the Python 3.11 HTML docs.

    .venv/bin/python tests/bench/ingest.py [--corpus DIR] [--no-embed] [--json]

Ingests the corpus into a temporary data folder, then ingests it again
unchanged, and reports files/s, chunks/s, MB/s, peak RSS, the time split into
parse / chunk / embed / store (parse and chunk are summed over worker
processes), and the share of wall time the embedder was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path("/usr/share/doc/python3.11/html")


async def run(corpus: Path, embed: bool) -> dict[str, Any]:
    from core.config import load_settings
    from core.services import Services

    with tempfile.TemporaryDirectory(prefix="archivist-bench-") as home:
        os.environ["ARCHIVIST_HOME"] = home
        os.environ["ARCHIVIST_LOCAL_MODEL"] = "off"
        Path(home, "archivist.toml").write_text(f"[ingest]\nembed = {str(embed).lower()}\n")
        async with Services(load_settings()) as services:
            await services.wait_ready()
            first = await services.ingest([corpus])
            again = await services.ingest([corpus])
            stats = await services.stats()
    size = sum(Path(o.path).stat().st_size for o in first.outcomes if o.status.value == "added")
    files = first.summary()["added"]
    chunks = stats.knowledge_base.chunks
    wall = first.elapsed_s
    t = first.timings_s
    return {
        "corpus": str(corpus),
        "embed": embed,
        "files": files,
        "failed": first.summary()["failed"],
        "chunks": chunks,
        "mb": round(size / 1e6, 2),
        "wall_s": round(wall, 2),
        "files_per_s": round(files / wall, 2),
        "chunks_per_s": round(chunks / wall, 2),
        "mb_per_s": round(size / 1e6 / wall, 3),
        "split_s": {k: round(v, 2) for k, v in t.items()},
        "embedder_busy": round(t.get("embed", 0.0) / wall, 3) if embed else None,
        "reingest_unchanged_s": round(again.elapsed_s, 2),
        "reingest_summary": again.summary(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-embed", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(run(args.corpus.resolve(), embed=not args.no_embed))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
