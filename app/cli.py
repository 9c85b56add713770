"""The ``archivist`` command line.

Exit codes: 0 success, 2 usage error, 1 failure (with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from core.config import Settings, load_settings
from core.errors import ArchivistError, ConfigError, RateLimited, UsageError
from core.logs import setup_logging
from core.types import Answer, FileStatus, IngestProgress, IngestReport

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_EVAL_MODES = "bm25,vector,rrf,convex"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archivist",
        description="Ask questions about your own documents, with cited answers, offline.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="settings file (default: archivist.toml in ARCHIVIST_HOME)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the window (the default)")

    p = sub.add_parser("ingest", help="add files or folders to the knowledge base")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question", nargs="?", help="the question (or use --batch)")
    p.add_argument("--batch", metavar="FILE", help="one question per line ('-' for stdin)")
    p.add_argument(
        "--json", action="store_true", help="print JSON (one object per line with --batch)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not use or fill the answer cache")
    p.add_argument("--top-k", type=int, default=None, help="passages to retrieve")
    p.add_argument(
        "--in",
        dest="within",
        action="append",
        default=[],
        metavar="PATH",
        help="only search this file or folder (repeatable)",
    )
    p.add_argument(
        "--kind",
        action="append",
        default=[],
        choices=["pdf", "html", "markdown", "text", "docx", "code"],
        help="only search files of this kind (repeatable)",
    )

    p = sub.add_parser("health", help="show the state of every component")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("stats", help="show knowledge-base and usage statistics")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--days", type=float, default=None, help="only the last N days (default: all time)"
    )

    p = sub.add_parser("cache", help="manage cached answers")
    cs = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ev_ = cs.add_parser("evict", help='drop one cached answer ("this answer is wrong")')
    ev_.add_argument("entry", help="the cache_entry of an answer (ask --json shows it)")
    cs.add_parser("clear", help="retire every cached answer")

    p = sub.add_parser("eval", help="measure retrieval quality on a question set")
    ev = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    r = ev.add_parser("retrieval", help="Recall@k, MRR, nDCG and latency per retrieval mode")
    r.add_argument("--questions", required=True, metavar="FILE", help="JSON lines questions")
    r.add_argument("--corpus", required=True, metavar="DIR", help="the documents folder")
    r.add_argument("--json", action="store_true")
    r.add_argument(
        "--home",
        metavar="DIR",
        help="reuse this data folder (default: a temporary one, deleted afterwards)",
    )
    r.add_argument("--modes", default=DEFAULT_EVAL_MODES, help="comma-separated")

    p = sub.add_parser("quarantine", help="list files that could not be ingested, with reasons")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    if command == "ask":
        if bool(args.question) == bool(args.batch):
            parser.error("ask needs either a QUESTION or --batch FILE")
        if args.top_k is not None and not 1 <= args.top_k <= 50:
            parser.error("--top-k must be between 1 and 50")
    if command == "eval" and args.home:
        os.environ["ARCHIVIST_HOME"] = str(Path(args.home).expanduser().resolve())
    tmp_home = None
    if command == "eval" and not args.home:
        import tempfile

        tmp_home = tempfile.TemporaryDirectory(prefix="archivist-eval-")
        os.environ["ARCHIVIST_HOME"] = tmp_home.name
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    setup_logging(
        settings.log_dir,
        level=settings.logging.level,
        stderr_level="INFO" if args.verbose else settings.logging.stderr_level,
        max_bytes=settings.logging.max_bytes,
        backups=settings.logging.backups,
    )
    if command == "gui":
        from app.gui import run_gui

        return run_gui(settings)
    handlers: dict[str, Callable[[Any, Settings], Awaitable[int]]] = {
        "ingest": _ingest,
        "ask": _ask,
        "health": _health,
        "stats": _stats,
        "quarantine": _quarantine,
        "eval": _eval,
        "cache": _cache,
    }
    try:
        return _run(handlers[command](args, settings))
    except UsageError as exc:
        print(f"archivist: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchivistError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    finally:
        if tmp_home is not None:
            tmp_home.cleanup()


def _fail(message: str) -> int:
    print(f"archivist: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_FAILURE


def _run(coro: Awaitable[int]) -> int:
    """Run ``coro``; SIGINT/SIGTERM cancel it so ``Services.aclose`` still runs."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        interrupted: list[int] = []

        def stop(signum: int) -> None:
            interrupted.append(signum)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop, sig)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            return await task
        except asyncio.CancelledError:
            if interrupted:
                name = signal.Signals(interrupted[0]).name
                return _fail(f"stopped by {name}; finished documents are saved")
            raise

    return asyncio.run(runner())


async def _with_services(
    settings: Settings, body: Callable[[Any], Awaitable[int]], *, warm: bool = False
) -> int:
    from core.services import Services

    services = Services(settings)
    await services.start(warm_models=warm)
    try:
        return await body(services)
    finally:
        await services.aclose()


# ---------------------------------------------------------------------- ingest


class _ProgressPrinter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, p: IngestProgress) -> None:
        now = time.monotonic()
        if p.last is not None and p.last.status is FileStatus.FAILED:
            self._clear()
            print(f"  failed: {p.last.path}: {p.last.reason}", file=self.stream)
        final = p.files_done == p.files_total
        if not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        width = 30
        frac = p.files_done / p.files_total if p.files_total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = f" ETA {p.eta_s:.0f}s" if p.eta_s is not None and not final else ""
        current = f" {Path(p.current).name}" if p.current and not final else ""
        line = f"[{bar}] {p.files_done}/{p.files_total} files, {p.chunks} chunks{eta}{current}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:120])
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")


def _report_json(report: IngestReport) -> dict[str, Any]:
    return {
        "summary": report.summary(),
        "elapsed_s": round(report.elapsed_s, 3),
        "cancelled": report.cancelled,
        "files": [
            {"path": o.path, "status": o.status.value, "chunks": o.chunks, "reason": o.reason}
            for o in report.outcomes
        ],
    }


async def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        report: IngestReport = await services.ingest(
            args.paths, progress=_ProgressPrinter(sys.stderr)
        )
        if args.json:
            print(json.dumps(_report_json(report), ensure_ascii=False))
        else:
            counts = report.summary()
            print(
                ", ".join(f"{counts[s.value]} {s.value}" for s in FileStatus)
                + f" in {report.elapsed_s:.1f}s"
            )
            for o in report.failed:
                print(f"  failed: {o.path}: {o.reason}")
        # Quarantined files are reported, not fatal: the batch did its job.
        return EXIT_OK

    return await _with_services(settings, body)


# ---------------------------------------------------------------------- ask


def _read_questions(source: str) -> Iterable[str]:
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"the questions file {source} does not exist")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _print_answer(answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
        return
    print(answer.text)
    if answer.notice:
        print(f"\nNote: {answer.notice}")
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            where = f", page {c.page}" if c.page else ""
            print(f"  [{c.marker}] {c.source}{where} (characters {c.start}-{c.end})")
    print(flush=True)


async def _ask_one(services: Any, question: str, args: argparse.Namespace) -> Answer:
    """One answer; a batch waits out the rate limit instead of failing."""
    while True:
        try:
            filters = None
            if args.within or args.kind:
                filters = await services.filters_for(args.within, args.kind)
            answer: Answer = await services.ask(
                question,
                use_cache=not args.no_cache,
                top_k=args.top_k,
                session="cli",
                filters=filters,
            )
            return answer
        except RateLimited as exc:
            if not args.batch:
                raise
            await asyncio.sleep(max(0.05, exc.retry_after_s))


async def _ask(args: argparse.Namespace, settings: Settings) -> int:
    questions = [args.question] if args.question else list(_read_questions(args.batch))
    if not questions:
        raise UsageError("no questions to answer")

    async def body(services: Any) -> int:
        failures = 0
        for q in questions:
            try:
                answer = await _ask_one(services, q, args)
            except ArchivistError as exc:
                if not args.batch:
                    raise
                failures += 1
                if args.json:
                    print(json.dumps({"question": q, "error": str(exc)}), flush=True)
                else:
                    print(f"archivist: error: {q!r}: {exc}", file=sys.stderr)
                continue
            _print_answer(answer, args.json)
        return EXIT_FAILURE if failures else EXIT_OK

    return await _with_services(settings, body)


# ---------------------------------------------------------------------- health/stats


async def _health(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        try:
            await services.wait_ready()
        except ArchivistError:
            pass  # the snapshot shows what failed
        snap = await services.health()
        if args.json:
            print(json.dumps(snap.to_json(), ensure_ascii=False, default=str))
        else:
            print(f"status: {snap.status}")
            for c in snap.components:
                print(f"  {c.name:<28} {c.status:<9} {c.detail}")
        return EXIT_OK if snap.status != "down" else EXIT_FAILURE

    return await _with_services(settings, body)


async def _stats(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        since = time.time() - args.days * 86400 if args.days else None
        data = await services.stats(since=since)
        if args.json:
            print(json.dumps(data, ensure_ascii=False, default=str))
        else:
            _print_tree(data)
        return EXIT_OK

    return await _with_services(settings, body)


async def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        rows = await services.quarantined()
        if args.json:
            print(json.dumps([{"path": p, "reason": r, "at": at} for p, r, at in rows]))
        elif not rows:
            print("No quarantined files.")
        else:
            for p, r, _ in rows:
                print(f"{p}: {r}")
        return EXIT_OK

    return await _with_services(settings, body)


async def _cache(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        if args.cache_command == "evict":
            if not await services.evict_cached_answer(args.entry):
                raise UsageError(f"no cached answer {args.entry!r} (it may have expired)")
            print("Removed from the cache.")
        else:
            await services.clear_cache()
            print("Every cached answer was retired.")
        return EXIT_OK

    return await _with_services(settings, body)


def _eval_inputs(args: argparse.Namespace) -> tuple[list[Any], Path]:
    from core.evaluation import load_questions

    corpus = Path(args.corpus).expanduser().resolve()
    if not corpus.is_dir():
        raise UsageError(f"the corpus folder {corpus} does not exist")
    return load_questions(Path(args.questions)), corpus


async def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from core.evaluation import MODES, evaluate_retrieval, format_table

    questions, corpus = _eval_inputs(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if settings.retrieval.reranker and args.modes == DEFAULT_EVAL_MODES:
        modes.append(f"{settings.retrieval.fusion}+rerank")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"unknown retrieval mode(s) {', '.join(unknown)}; use {', '.join(MODES)}")

    async def body(services: Any) -> int:
        report = await services.ingest([corpus], progress=_ProgressPrinter(sys.stderr))
        result = await evaluate_retrieval(services, questions, corpus, modes)
        result["ingest"] = {
            "summary": report.summary(),
            "elapsed_s": round(report.elapsed_s, 1),
            "timings_s": {k: round(v, 1) for k, v in report.timings_s.items()},
        }
        stats = await services.stats()
        result["chunks"] = stats["knowledge_base"]["chunks"]
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['chunks']} chunks; ingest {report.elapsed_s:.0f}s")
            print(format_table(result))
        return EXIT_OK

    return await _with_services(settings, body, warm=True)


def _print_tree(data: dict[str, Any], indent: int = 0) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {value}")


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
