"""``archivist upgrade``: how fast a single-user knowledge base is copied into PostgreSQL.

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/upgrade.py [--chunks 5000] [--json out.json]

Builds a SQLite knowledge base as ingestion leaves it (``store.write_document``:
synthetic documents of 20 chunks, 60-140 words each from a Zipf vocabulary, and a
stored 384-d unit vector per chunk under the embedding key, as in
tests/bench/pg_scale.py), then runs ``core.upgrade.upgrade_to_team`` into a fresh
database on a throwaway PostgreSQL 18.6 + pgvector (tests/support/postgres.py,
default server settings) and prints chunks/s: the whole copy, and its two parts
(rows into documents, chunks and embeddings; then the search tables: postings by
the app's analyzer, vectors into pgvector's HNSW index). A second run over the
same target shows what a rerun costs (every document already there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.config import RetrievalSettings  # noqa: E402
from core.db import store  # noqa: E402
from core.db.engine import create_engine_for, upgrade_schema  # noqa: E402
from core.retrieval.text import embedding_key  # noqa: E402
from core.types import ChunkDraft, ExtractedDocument  # noqa: E402
from core.upgrade import upgrade_to_team  # noqa: E402
from tests.bench.pg_scale import Corpus  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


def build_source(url: str, chunks: int) -> dict[str, float]:
    engine = create_engine_for(url)
    upgrade_schema(engine)
    key = embedding_key(MODEL)
    t0 = time.perf_counter()
    text_bytes = 0
    try:
        for batch in Corpus(chunks).batches():
            with engine.begin() as conn:
                for path, passages, vecs in batch:
                    text = "\n\n".join(passages)
                    text_bytes += len(text)
                    drafts, pos = [], 0
                    for i, p in enumerate(passages):
                        drafts.append(ChunkDraft(i, p, pos, pos + len(p), 1, ("Bench",)))
                        pos += len(p) + 2
                    store.write_document(
                        conn,
                        path=path,
                        content_hash=path,
                        size=len(text),
                        mtime=0.0,
                        doc=ExtractedDocument(text=text, kind="text"),
                        drafts=drafts,
                        existing_id=None,
                    )
                    store.store_embeddings(
                        conn,
                        key,
                        {store.text_hash(p): v for p, v in zip(passages, vecs, strict=True)},
                    )
    finally:
        engine.dispose()
    return {"build_s": round(time.perf_counter() - t0, 1), "text_mb": round(text_bytes / 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=2000, help="chunks per transaction")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="archivist-upgrade-bench-") as tmp:
        source = f"sqlite:///{Path(tmp) / 'archivist.db'}"
        built = build_source(source, args.chunks)
        print(f"source: {args.chunks} chunks, {built}", file=sys.stderr)
        with running_postgres() as server:
            target = server.new_database("upgrade_bench")
            runs = []
            for _ in range(2):
                report = upgrade_to_team(
                    source,
                    target,
                    model_id=MODEL,
                    retrieval=RetrievalSettings(),
                    batch_chunks=args.batch,
                )
                runs.append(report)
        first, again = runs
        result = {
            "chunks": first.chunks,
            "documents": first.documents,
            "vectors": first.vectors,
            "text_mb": built["text_mb"],
            "batch_chunks": args.batch,
            "copy_s": round(first.copy_s, 2),
            "chunks_per_s": round(first.chunks / first.copy_s),
            "store_rows_per_s": round(first.chunks / first.store_s),
            "index_rows_per_s": round(first.chunks / first.index_s),
            "total_s": round(first.elapsed_s, 2),
            "vector_index_built_after": first.vector_index_built,
            "audit_events": first.audit_events,
            "rerun_s": round(again.elapsed_s, 2),
            "rerun_copied": again.documents,
            "rerun_already_there": again.already_there,
            "load_average": round(os.getloadavg()[0], 1),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
