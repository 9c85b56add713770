"""The ``archivist`` command line.

Exit codes: 0 success, 2 usage error, 1 failure (with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from app import statusview as sv
from app.version import app_version
from core.config import Settings, load_settings
from core.errors import ArchivistError, ConfigError, RateLimited, UsageError
from core.logs import setup_logging
from core.types import (
    NO_VALUE,
    Answer,
    AuditSummary,
    FileStatus,
    HealthSnapshot,
    IngestProgress,
    IngestReport,
    StatsSnapshot,
)

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {app_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the window (the default)")

    p = sub.add_parser("ingest", help="add files or folders to the knowledge base")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--collection", metavar="NAME", help="team mode: into this collection of yours")

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

    p = sub.add_parser("eval", help="measure quality on a question set")
    ev = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    # Every evaluation takes these; add one with ev.add_parser(..., parents=[common])
    # and a coroutine in EVALUATIONS.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--questions", required=True, metavar="FILE", help="JSON lines questions")
    common.add_argument("--corpus", required=True, metavar="DIR", help="the documents folder")
    common.add_argument("--json", action="store_true")
    common.add_argument(
        "--home",
        metavar="DIR",
        help="reuse this data folder (default: a temporary one, deleted afterwards)",
    )
    r = ev.add_parser(
        "retrieval",
        parents=[common],
        help="Recall@k, MRR, nDCG and latency per retrieval mode",
    )
    r.add_argument("--modes", default=DEFAULT_EVAL_MODES, help="comma-separated")
    a = ev.add_parser(
        "answers",
        parents=[common],
        help="accuracy, abstention, citation precision and latency of the answers",
    )
    a.add_argument("--limit", type=int, default=0, help="only the first N questions")

    p = sub.add_parser("quarantine", help="list files that could not be ingested, with reasons")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "upgrade", help="copy this knowledge base into a team PostgreSQL database (no re-embedding)"
    )
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/database")
    p.add_argument("--no-audit", action="store_true", help="leave the audit log behind")
    p.add_argument("--collection", metavar="NAME", help="into this collection of yours")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = sub.add_parser("admin", help="team mode: set up the PostgreSQL database")
    ad = p.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    a = ad.add_parser("init", help="pgvector, schema, row-level security, member privileges")
    a.add_argument("--member", action="append", default=[], metavar="ROLE", help="repeatable")
    p = sub.add_parser("collection", help="team mode: who may read which documents")
    co = p.add_subparsers(dest="collection_command", metavar="ACTION", required=True)
    for action, what in (("grant", "let ROLE read NAME"), ("revoke", "stop ROLE reading NAME")):
        a = co.add_parser(action, help=what)
        a.add_argument("name", metavar="NAME")
        a.add_argument("role", metavar="ROLE")
    a = co.add_parser("list", help="the collections you can read")
    a.add_argument("--json", action="store_true")
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
        "upgrade": _upgrade,
        "admin": _admin,
        "collection": _collection,
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
        self.final_shown: tuple[int, int, str] | None = None

    def __call__(self, p: IngestProgress) -> None:
        now = time.monotonic()
        if p.last is not None and p.last.status is FileStatus.FAILED:
            self._clear()
            print(f"  failed: {p.last.path}: {p.last.reason}", file=self.stream)
        if p.vectors_total:  # files done and keyword-searchable; vectors filled in behind
            done, total = p.vectors_done, p.vectors_total
            what = "passages embedded (keyword search ready)"
        else:
            done, total = p.files_done, p.files_total
            what = f"files, {p.chunks} chunks"
        final = done == total
        if not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        if final and (done, total, what) == self.final_shown:
            return
        self.final_shown = (done, total, what) if final else None
        self.last = now
        width = 30
        frac = done / total if total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = f" ETA {p.eta_s:.0f}s" if p.eta_s is not None and not final else ""
        current = f" {Path(p.current).name}" if p.current and not final else ""
        line = f"[{bar}] {done}/{total} {what}{eta}{current}"
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
            args.paths, progress=_ProgressPrinter(sys.stderr), collection=args.collection
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


# ---------------------------------------------------------------------- team mode


async def _with_engine(settings: Settings, body: Callable[[Any], Any]) -> Any:
    """Run ``body(engine)`` in a worker thread on a short-lived engine (no models)."""
    from core import team

    return await asyncio.to_thread(team.with_engine, settings.database_url, body)


async def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from core.team import admin_init

    report = await _with_engine(settings, lambda e: admin_init(e, args.member))
    print(f"team database ready (schema {report.revision}); members join {report.members_role}")
    for member in report.members:
        print(f"  member: {member}")
    return EXIT_OK


async def _collection(args: argparse.Namespace, settings: Settings) -> int:
    from core import team

    action = args.collection_command
    if action == "list":
        infos = await _with_engine(settings, team.list_collections)
        if args.json:
            print(json.dumps([dataclasses.asdict(i) for i in infos], ensure_ascii=False))
        for i in [] if args.json else infos:
            readers = ", ".join(i.readers) or "-"
            mine = " (yours)" if i.mine else ""
            print(f"{i.name}\towner {i.owner}{mine}\t{i.documents} documents\treaders {readers}")
        return EXIT_OK
    change = team.grant if action == "grant" else team.revoke
    changed = await _with_engine(settings, lambda e: change(e, args.name, args.role))
    verb = "may now read" if action == "grant" else "may no longer read"
    note = "" if changed else " (no change)"
    print(f"{args.role} {verb} {args.name}{note}")
    return EXIT_OK


# ---------------------------------------------------------------------- upgrade


async def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Copy the knowledge base into team PostgreSQL (core.upgrade); Ctrl-C stops between batches."""
    import dataclasses
    import threading

    from core.upgrade import UpgradeProgress, upgrade_to_team

    shown = [0.0]

    def progress(p: UpgradeProgress) -> None:
        now = time.monotonic()
        if stop.is_set() or (p.documents_done < p.documents_total and now - shown[0] < 1.0):
            return
        shown[0] = now
        print(
            f"  {p.documents_done}/{p.documents_total} documents,"
            f" {p.chunks_done}/{p.chunks_total} passages",
            file=sys.stderr,
            flush=True,
        )

    stop = threading.Event()
    try:
        report = await asyncio.to_thread(
            upgrade_to_team,
            settings.database_url,
            args.to,
            model_id=settings.embedding.model,
            retrieval=settings.retrieval,
            copy_audit=not args.no_audit,
            collection=args.collection,
            progress=progress,
            cancel=stop,
        )
    except asyncio.CancelledError:
        stop.set()  # the copy ends after its current batch
        raise
    if args.json:
        print(json.dumps(dataclasses.asdict(report) | {"chunks_per_s": report.chunks_per_s}))
        return EXIT_OK
    rate = f", {report.chunks_per_s:.0f} passages/s" if report.chunks_per_s else ""
    where = report.target + (f" (collection {report.collection})" if report.collection else "")
    print(
        f"Copied {report.documents} documents ({report.chunks} passages, {report.vectors} "
        f"with their vectors, none embedded again) into {where} in "
        f"{report.elapsed_s:.1f}s{rate}; {report.already_there} already there, "
        f"{report.audit_events} audit events."
    )
    for path in report.conflicts:
        print(f"  kept the team's version of {path} (same path, other content)")
    for note in report.notes:
        print(f"  {note}")
    print(f"Team mode: point ARCHIVIST_DATABASE_URL at {report.target} on every desktop.")
    return EXIT_OK


# ---------------------------------------------------------------------- ask


class _LineReader:
    """Lines of a file descriptor as they arrive, without blocking the event loop.

    A pipe or a terminal is watched with ``add_reader``: no thread waits on it, so
    a signal stops the wait at once, and each line is handed over as soon as it
    is complete. A regular file (which the selector refuses, and whose reads never
    wait) is read in a worker thread.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._eof = False

    async def readline(self) -> str | None:
        """The next line without its newline, or None at the end of the input."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.decode("utf-8", errors="replace")
            if self._eof:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                return line.decode("utf-8", errors="replace")
            data = await self._read()
            self._eof = not data
            self._buffer += data

    async def _read(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            ready: asyncio.Future[None] = loop.create_future()

            def readable(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            try:
                loop.add_reader(self._fd, readable)
            except (OSError, NotImplementedError):  # a regular file, or no selector loop
                return await asyncio.to_thread(os.read, self._fd, 65536)
            try:
                await ready
            finally:
                loop.remove_reader(self._fd)
            try:
                return os.read(self._fd, 65536)  # readable: returns at once
            except BlockingIOError:  # a non-blocking descriptor woken early: wait again
                continue


def _read_questions(source: str) -> list[str]:
    """The non-blank lines of a questions file."""
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"the questions file {source} does not exist")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip()]


async def _stdin_questions() -> AsyncIterator[str]:
    """Each non-blank line of standard input, as soon as it is complete.

    A stop signal (SIGTERM, Ctrl-C) while waiting for the next line ends the
    input like end-of-file: the answers given stand and the command exits
    normally. A signal while a question is being answered still stops it.
    """
    if sys.stdin is None:  # started with standard input closed
        return
    reader = _LineReader(sys.stdin.fileno())
    while True:
        try:
            line = await reader.readline()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.uncancel() > 0:
                raise
            return  # stopped while idle: not an error
        if line is None:
            return
        if line.strip():
            yield line.strip()


def format_answer(answer: Answer) -> str:
    """An answer for people: the supported text, the quotes that back it, the sources.

    When the answer's sentences were checked against the documents, only the
    supported ones are shown, with a note saying how many were left out.
    """
    out: list[str] = []
    if answer.sentences and not answer.abstained:
        kept = [s.text for s in answer.sentences if s.supported]
        if kept:
            out.append(" ".join(kept))
        left_out = len(answer.sentences) - len(kept)
        if left_out:
            them = "them" if left_out != 1 else "it"
            out.append(
                f"({left_out} sentence{'s' if left_out != 1 else ''} of the generated answer "
                f"left out: the documents do not support {them}.)"
            )
    else:
        out.append(answer.text)
    if answer.notice:
        out.append(f"\nNote: {answer.notice}")
    if answer.quotes:
        out.append("\nQuotes:")
        for q in answer.quotes:
            where = f", page {q.page}" if q.page else ""
            out.append(f"  [{q.marker}] \u201c{q.quote or q.text}\u201d ({q.source}{where})")
    if answer.citations:
        out.append("\nSources:")
        for c in answer.citations:
            where = f", page {c.page}" if c.page else ""
            out.append(f"  [{c.marker}] {c.source}{where} (characters {c.start}-{c.end})")
    return "\n".join(out)


def _print_answer(answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
        return
    print(format_answer(answer))
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


async def _each(questions: list[str]) -> AsyncIterator[str]:
    for q in questions:
        yield q


async def _ask(args: argparse.Namespace, settings: Settings) -> int:
    questions: AsyncIterator[str]
    if args.batch == "-":
        questions = _stdin_questions()  # answered as they arrive (a pipe worker)
    else:
        listed = (
            [args.question]
            if args.question
            else await asyncio.to_thread(_read_questions, args.batch)
        )
        if not listed:
            raise UsageError("no questions to answer")
        questions = _each(listed)

    async def body(services: Any) -> int:
        failures = 0
        async for q in questions:
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
        snap: HealthSnapshot = await services.health()
        if args.json:
            print(json.dumps(snap.to_json(), ensure_ascii=False))
        else:
            print(f"status: {snap.status}")
            for c in snap.components:
                print(f"  {c.name:<28} {c.status:<9} {c.detail}")
        return EXIT_OK if snap.status != "down" else EXIT_FAILURE

    return await _with_services(settings, body)


async def _stats(args: argparse.Namespace, settings: Settings) -> int:
    async def body(services: Any) -> int:
        since = time.time() - args.days * 86400 if args.days else None
        stats: StatsSnapshot = await services.stats(since=since)
        if args.json:
            print(json.dumps(stats.to_json(), ensure_ascii=False))
        else:
            print(format_stats(stats, args.days))
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
    return await EVALUATIONS[args.eval_command](args, settings)


async def _eval_retrieval(args: argparse.Namespace, settings: Settings) -> int:
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
        stats: StatsSnapshot = await services.stats()
        result["chunks"] = stats.knowledge_base.chunks
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['chunks']} chunks; ingest {report.elapsed_s:.0f}s")
            print(format_table(result))
        return EXIT_OK

    return await _with_services(settings, body, warm=True)


async def _eval_answers(args: argparse.Namespace, settings: Settings) -> int:
    from core.answer.evaluate import evaluate_answers, format_answers_table

    questions, corpus = _eval_inputs(args)
    if args.limit:
        questions = questions[: args.limit]

    async def body(services: Any) -> int:
        report = await services.ingest([corpus], progress=_ProgressPrinter(sys.stderr))
        await services.wait_ready()

        async def ask(text: str) -> Any:
            # Every question is answered afresh (no cache), in its own session so
            # the rate limiter measures nothing but the answers.
            return await services.ask(text, use_cache=False, session=f"eval-{text[:40]}")

        result = await evaluate_answers(ask, questions, corpus)
        result["ingest"] = {"summary": report.summary(), "elapsed_s": round(report.elapsed_s, 1)}
        if args.json:
            print(json.dumps(result))
        else:
            print(format_answers_table(result))
        return EXIT_OK

    return await _with_services(settings, body, warm=True)


# ``archivist eval WHAT``: one coroutine per evaluation subcommand.
EVALUATIONS: dict[str, Callable[[argparse.Namespace, Settings], Awaitable[int]]] = {
    "retrieval": _eval_retrieval,
    "answers": _eval_answers,
}


def _counts_text(counts: Mapping[str | None, int]) -> str:
    return ", ".join(f"{NO_VALUE if k is None else k} {n}" for k, n in counts.items()) or "none"


def format_stats(stats: StatsSnapshot, days: float | None = None) -> str:
    """``archivist stats`` for people."""
    kb = stats.knowledge_base
    kinds = ", ".join(f"{k} {n}" for k, n in stats.documents_by_kind.items()) or "none"
    lines = [
        f"Knowledge base: {kb.documents} documents, {kb.chunks} passages, "
        f"{kb.embeddings} embeddings, {kb.quarantined} quarantined, {kb.size_bytes} bytes",
        f"  by kind: {kinds}",
        f"  version: {stats.kb_version}",
    ]
    audit = stats.audit
    if audit is None:
        lines.append("Requests: the audit log is not available")
    else:
        lines += _audit_lines(audit, days)
    s = stats.session
    lines.append(f"This session: {s.asks} question(s), up {s.uptime_s:.0f} s")
    return "\n".join(lines)


def _audit_lines(audit: AuditSummary, days: float | None) -> list[str]:
    window = f"last {days:g} days" if days else "all time"
    lat = audit.ask_latency_ms

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    lines = [
        f"Events ({window}): {audit.total}",
        f"  by action: {_counts_text(audit.by_action)}",
        f"  by outcome: {_counts_text(audit.by_outcome)}",
        f"  by provider: {_counts_text(audit.by_provider)}",
        f"  by cache layer: {_counts_text(audit.by_cache_layer)}",
        f"  answer latency: p50 {ms(lat.p50)}, p95 {ms(lat.p95)}, p99 {ms(lat.p99)}"
        f" ({lat.count} answer{'s' if lat.count != 1 else ''})",
    ]
    if audit.per_day:
        per_day = ", ".join(f"{d.isoformat()} {n}" for d, n in audit.per_day.items())
        lines.append(f"  per day: {per_day}")
    if audit.last_events:
        lines.append("  last events:")
        lines += [f"    {sv.event_line(e)}" for e in audit.last_events]
    return lines


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
