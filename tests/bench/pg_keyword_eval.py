"""Keyword search in PostgreSQL vs the embedded BM25, on both question sets, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/pg_keyword_eval.py \
        [--sets python,handbook] [--json out.json]

For each set it copies an ingested knowledge base (``/work/kb/python``,
``/work/kb/handbook``: SQLite, see tests/bench/retrieval_eval.py) into a fresh
PostgreSQL database (tests/support/postgres.py; the same documents, chunk ids and
stored vectors), lets ``PgSearchIndex.load`` index it, and scores through the
product's ``Retriever`` (``core.evaluation.evaluate_retrieval``, page-level nDCG@10):

- ``embedded``: ``SearchIndex`` (BM25 in process, the vector matrix);
- ``pg-bm25``: ``PgSearchIndex``, Okapi BM25 in SQL over the app's
  analyzer's postings;
- ``pg-fts``: PostgreSQL full-text search instead (``FtsIndex`` below: a GIN-indexed
  ``to_tsvector('english', headings + text)`` per chunk, the question's lexemes OR-ed,
  ranked by ``ts_rank_cd`` normalised by length);
- ``pg-bm25-exact``: as pg-bm25 with exact vector search instead of HNSW.

Modes: bm25 (keyword alone), vector and rrf. The python set is the development set;
the handbook set is frozen (report on it, never tune on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sqlalchemy as sa  # noqa: E402

from core.config import Settings, load_settings  # noqa: E402
from core.db.engine import create_engine_for, upgrade_schema  # noqa: E402
from core.embedding import Embedder  # noqa: E402
from core.evaluation import evaluate_retrieval, load_questions  # noqa: E402
from core.retrieval.pg_search import PgSearchIndex  # noqa: E402
from core.retrieval.retriever import Retriever  # noqa: E402
from core.retrieval.search import SearchIndex  # noqa: E402
from core.types import ScoredChunk  # noqa: E402
from tests.bench.retrieval_eval import SETS  # noqa: E402
from tests.eval.corpus import find_corpus  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402

MODES = ["bm25", "vector", "rrf"]
TABLES = ("documents", "chunks", "embeddings")


def copy_kb(sqlite_file: Path, pg_engine: sa.Engine) -> int:
    """Copy documents, chunks and stored vectors (same ids) into a migrated database."""
    src = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    src.row_factory = sqlite3.Row
    md = sa.MetaData()
    md.reflect(pg_engine, only=list(TABLES))
    n = 0
    with pg_engine.begin() as conn:
        for name in TABLES:
            table = md.tables[name]
            cols = [c.name for c in table.columns]
            quoted = ", ".join(f'"{c}"' for c in cols)
            cur = src.execute(f"SELECT {quoted} FROM {name}")
            while batch := cur.fetchmany(5000):
                rows = [dict(zip(cols, tuple(r), strict=True)) for r in batch]
                if name == "documents":
                    for r in rows:
                        raw = r["pages"]
                        r["pages"] = json.loads(raw) if isinstance(raw, str) and raw else None
                conn.execute(sa.insert(table), rows)
                n += len(rows) if name == "chunks" else 0
        for name in ("documents", "chunks"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {name}))"
            )
    src.close()
    return n


class FtsIndex(PgSearchIndex):
    """``PgSearchIndex`` with PostgreSQL full-text search as its keyword side."""

    def _keyword_cte(self, text: str, params: dict[str, Any], filt: str) -> str:
        params["q_text"] = text
        return (
            "tq AS (SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(l), ' | '),"
            " '')) AS q FROM unnest(tsvector_to_array(to_tsvector('english', :q_text))) AS l),"
            " kw AS (SELECT c.chunk_id, ts_rank_cd(f.fts, tq.q, 1)::float8 AS score"
            " FROM bench_fts f JOIN search_chunks c ON c.chunk_id = f.chunk_id, tq"
            f" WHERE f.fts @@ tq.q{filt} ORDER BY score DESC, c.chunk_id LIMIT :n)"
        )


def add_fts(engine: sa.Engine) -> None:
    """The full-text column FtsIndex reads: what BM25 indexes (headings, then text)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bench_fts AS SELECT id AS chunk_id, to_tsvector('english',"
            " CASE WHEN heading_path = '' THEN text"
            " ELSE replace(heading_path, ' > ', ' / ') || E'\\n' || text END) AS fts"
            " FROM chunks"
        )
        conn.exec_driver_sql("CREATE INDEX ix_bench_fts ON bench_fts USING gin (fts)")


class _Searcher:
    def __init__(self, retriever: Retriever) -> None:
        self._r = retriever

    async def search(
        self, text: str, *, k: int = 10, fusion: str | None = None
    ) -> tuple[list[ScoredChunk], dict[str, float]]:
        return await self._r.find(text, k=k, mode=fusion)


async def _score(
    settings: Settings, engine: sa.Engine, index: Any, embedder: Embedder, name: str
) -> dict[str, Any]:
    questions_file, corpus_name, _ = SETS[name]
    corpus = find_corpus(corpus_name)
    assert corpus is not None

    async def wait_index() -> Any:
        return index

    async def wait_model() -> None:
        return None

    retriever = Retriever(settings, engine, wait_index, embedder, wait_model, None)
    return await evaluate_retrieval(
        _Searcher(retriever), load_questions(questions_file), corpus.resolve(), MODES
    )


def run_set(name: str, server: Any, embedder: Embedder) -> dict[str, Any]:
    kb = SETS[name][2]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=f"pg-kw-{name}-") as tmp:
        home = Path(tmp)
        shutil.copy(kb / "archivist.db", home / "archivist.db")
        settings = load_settings(
            None, env={"ARCHIVIST_HOME": str(home), "ARCHIVIST_LOCAL_MODEL": "off"}
        )
        lite = create_engine_for(f"sqlite:///{home / 'archivist.db'}")
        upgrade_schema(lite)
        embedded = SearchIndex(settings.retrieval, home / "index")
        embedded.load(lite, embedder.model_id)
        out["embedded"] = asyncio.run(_score(settings, lite, embedded, embedder, name))
        embedded.close()
        lite.dispose()

        pg = create_engine_for(server.new_database(f"kw_{name}"))
        upgrade_schema(pg)
        chunks = copy_kb(home / "archivist.db", pg)
        add_fts(pg)
        variants: dict[str, PgSearchIndex] = {
            "pg-bm25": PgSearchIndex(settings.retrieval),
            "pg-fts": FtsIndex(settings.retrieval),
            "pg-bm25-exact": PgSearchIndex(settings.retrieval, exact_vectors=True),
        }
        for label, index in variants.items():
            index.load(pg, embedder.model_id)
            if label == "pg-bm25":
                out["load_s"] = round(index.load_s, 1)
            out[label] = asyncio.run(_score(settings, pg, index, embedder, name))
        out["chunks"] = chunks
        pg.dispose()
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| set | index | bm25 nDCG@10 | vector | rrf | rrf R@10 | rrf p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for label in ("embedded", "pg-bm25", "pg-fts", "pg-bm25-exact"):
            m = res[label]["modes"]
            lines.append(
                f"| {name} ({res['chunks']} chunks) | {label} | {m['bm25']['ndcg@10']:.3f} | "
                f"{m['vector']['ndcg@10']:.3f} | {m['rrf']['ndcg@10']:.3f} | "
                f"{m['rrf']['recall@10']:.3f} | "
                f"{m['rrf']['latency_ms']['total']['p50']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="python,handbook")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(None, env={"ARCHIVIST_LOCAL_MODEL": "off"})
    embedder = Embedder(settings.embedding)
    embedder.load()
    results: dict[str, dict[str, Any]] = {}
    with running_postgres() as server:
        for name in args.sets.split(","):
            results[name] = run_set(name, server, embedder)
            print(f"{name}: done", file=sys.stderr)
    embedder.close()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
