"""Parser and chunker throughput on a real corpus: the Python 3.11 HTML docs.

    .venv/bin/python tests/bench/parsers.py [--folder DIR] [--limit N] [--big-mb 10] [--json]

Reports:

* parsing: every file of ``--folder`` (default /usr/share/doc/python3.11/html,
  530 pages from Debian's python3.11-doc) through ``parse_file`` in this
  process: files/s, input MB/s, extracted characters;
* chunking those documents (default settings, a fresh ``TokenCounter`` so the
  word cache starts cold): chunks, chunks/s, extracted MB/s, tokens per chunk;
* chunking one synthetic document of ``--big-mb`` MB (the docs' text repeated,
  as paragraphs), and the same text as one single paragraph (the worst case:
  everything goes through the oversized-block splitter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.errors import IngestError
from core.ingest.chunker import chunk_document
from core.ingest.parsers import parse_file
from core.ingest.tokens import TokenCounter
from core.types import ExtractedDocument


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/usr/share/doc/python3.11/html"))
    parser.add_argument("--limit", type=int, default=0, help="parse at most N files")
    parser.add_argument("--big-mb", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    paths = sorted(p for p in args.folder.rglob("*.html") if p.is_file())
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        print(f"no HTML files under {args.folder}", file=sys.stderr)
        return 1

    docs: list[ExtractedDocument] = []
    failures: list[str] = []
    in_bytes = 0
    t0 = time.perf_counter()
    for path in paths:
        in_bytes += path.stat().st_size
        try:
            docs.append(parse_file(path, max_bytes=100_000_000))
        except IngestError as exc:
            failures.append(str(exc))
    parse_s = time.perf_counter() - t0
    chars = sum(len(d.text) for d in docs)

    counter = TokenCounter()
    counter.count("warm up")  # load the tokenizer outside the timing
    t0 = time.perf_counter()
    chunks = [c for d in docs for c in chunk_document(d, counter=counter)]
    chunk_s = time.perf_counter() - t0
    tokens = [c.token_count for c in chunks]

    corpus = "\n\n".join(d.text for d in docs)
    target = int(args.big_mb * 1_000_000)
    big_text = (corpus * (target // max(len(corpus), 1) + 1))[:target]
    big = ExtractedDocument(big_text, "text")
    t0 = time.perf_counter()
    big_chunks = chunk_document(big, counter=TokenCounter())
    big_s = time.perf_counter() - t0
    one = ExtractedDocument(" ".join(big_text.split()), "text")
    t0 = time.perf_counter()
    one_chunks = chunk_document(one, counter=TokenCounter())
    one_s = time.perf_counter() - t0

    result = {
        "parse": {
            "files": len(paths),
            "failed": len(failures),
            "seconds": round(parse_s, 3),
            "files_per_s": round(len(paths) / parse_s, 1),
            "input_mb": round(in_bytes / 1e6, 2),
            "input_mb_per_s": round(in_bytes / 1e6 / parse_s, 2),
            "extracted_chars": chars,
        },
        "chunk": {
            "tokenizer": counter.name,
            "chunks": len(chunks),
            "seconds": round(chunk_s, 3),
            "chunks_per_s": round(len(chunks) / chunk_s, 1),
            "text_mb_per_s": round(chars / 1e6 / chunk_s, 2),
            "tokens_mean": round(statistics.fmean(tokens), 1) if tokens else 0,
            "tokens_max": max(tokens, default=0),
        },
        "big_document": {
            "mb": round(len(big_text) / 1e6, 2),
            "paragraphs_seconds": round(big_s, 3),
            "paragraphs_chunks": len(big_chunks),
            "one_paragraph_seconds": round(one_s, 3),
            "one_paragraph_chunks": len(one_chunks),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        p, c, b = result["parse"], result["chunk"], result["big_document"]
        print(
            f"parse: {p['files']} files ({p['input_mb']} MB) in {p['seconds']} s = "
            f"{p['files_per_s']} files/s, {p['input_mb_per_s']} MB/s; "
            f"{p['extracted_chars']:,} chars extracted, {p['failed']} failed"
        )
        print(
            f"chunk: {c['chunks']} chunks in {c['seconds']} s = {c['chunks_per_s']} chunks/s, "
            f"{c['text_mb_per_s']} MB/s of text; tokens mean {c['tokens_mean']}, "
            f"max {c['tokens_max']} ({c['tokenizer']})"
        )
        print(
            f"big: {b['mb']} MB as paragraphs in {b['paragraphs_seconds']} s "
            f"({b['paragraphs_chunks']} chunks); as one paragraph in "
            f"{b['one_paragraph_seconds']} s ({b['one_paragraph_chunks']} chunks)"
        )
        for failure in failures[:10]:
            print("  failed:", failure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
