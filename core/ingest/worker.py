"""The part of ingestion that runs in a worker process: parse, then chunk.

Kept tiny and picklable so ``ProcessPoolExecutor`` can run it; it imports the
parsing libraries once per worker process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ArchivistError
from core.types import ChunkDraft, ExtractedDocument


@dataclass(frozen=True, slots=True)
class ParseResult:
    path: str
    document: ExtractedDocument | None
    drafts: tuple[ChunkDraft, ...]
    error: str | None
    parse_s: float
    chunk_s: float


_counter = None


def parse_and_chunk(
    path: str, max_bytes: int, chunk_tokens: int, overlap_tokens: int
) -> ParseResult:
    global _counter
    from core.ingest.chunker import chunk_document
    from core.ingest.parsers import parse_file
    from core.ingest.tokens import TokenCounter

    if _counter is None:
        _counter = TokenCounter()
    t0 = time.perf_counter()
    try:
        doc = parse_file(Path(path), max_bytes=max_bytes)
    except ArchivistError as exc:
        return ParseResult(path, None, (), str(exc), time.perf_counter() - t0, 0.0)
    except MemoryError:
        return ParseResult(path, None, (), "the file is too large to parse", 0.0, 0.0)
    except Exception as exc:  # a parser bug must not abort the batch
        return ParseResult(
            path, None, (), f"unexpected parser error ({type(exc).__name__}: {exc})", 0.0, 0.0
        )
    t1 = time.perf_counter()
    drafts = chunk_document(
        doc, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens, counter=_counter
    )
    t2 = time.perf_counter()
    if not drafts:
        return ParseResult(path, None, (), "no text could be extracted", t1 - t0, t2 - t1)
    return ParseResult(path, doc, tuple(drafts), None, t1 - t0, t2 - t1)
