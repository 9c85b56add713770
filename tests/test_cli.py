"""The ``archivist`` command line, end to end, in real subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli import format_answer
from core.types import Answer, AnswerSentence, Chunk, Citation

ARCHIVIST = [sys.executable, "-m", "app.cli"]


def run(
    home: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    full_env.pop("ARCHIVIST_DATABASE_URL", None)
    full_env.pop("ARCHIVIST_REDIS_URL", None)
    full_env.update(env or {})
    return subprocess.run(
        [*ARCHIVIST, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
    )


@pytest.mark.slow
def test_ingest_then_ask_cites_the_right_file_and_span(home: Path, corpus: Path) -> None:
    bad = corpus / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\n this is not really a pdf")
    result = run(home, "ingest", str(corpus), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["added"] == 4
    assert report["summary"]["failed"] == 1
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert failed[0]["path"].endswith("broken.pdf") and failed[0]["reason"]
    assert "broken.pdf" in result.stderr  # the failure is shown as it happens

    cases = [
        ("When was the Old Harbour lighthouse built?", "lighthouse.txt", "1874", None),
        ("How much is a return ticket to Gull Island?", "ferry.pdf", "eleven euros", 2),
        ("What is the aperture of the telescope?", "telescope.html", "240 millimetres", None),
        ("On which days are the garden beds watered?", "garden.md", "Tuesdays", None),
    ]
    for question, source, fact, page in cases:
        result = run(home, "ask", question, "--json")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert set(answer) >= {
            "answer",
            "citations",
            "provider",
            "cache",
            "degraded",
            "timings_ms",
        }
        assert answer["cache"] in {"miss", "embedding", "result"}
        assert answer["degraded"] is False
        assert fact in answer["answer"]
        top = answer["citations"][0]
        assert set(top) >= {"source", "page", "start", "end", "text", "chunk_id", "score"}
        cited = [c for c in answer["citations"] if Path(c["source"]).name == source]
        assert cited, (question, answer["citations"])
        c = cited[0]
        assert Path(c["source"]).is_absolute()
        assert c["page"] == page
        assert fact in c["text"]
        # The offsets index into the extracted text of the source.
        text = _extracted_text(home, c["source"])
        assert text[c["start"] : c["end"]] == c["text"]
        assert fact in text[c["start"] : c["end"]]


def keyword_only(home: Path) -> None:
    """Skip embeddings (and the model load) for tests about the CLI itself."""
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")


def _extracted_text(home: Path, source: str) -> str:
    import sqlite3

    con = sqlite3.connect(home / "archivist.db")
    try:
        row = con.execute("SELECT text FROM documents WHERE path = ?", (source,)).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


@pytest.mark.slow
def test_batch_answers_in_order_one_json_object_per_line(home: Path, corpus: Path) -> None:
    assert run(home, "ingest", str(corpus)).returncode == 0
    questions = "When was the lighthouse built?\n\nWhen does the morning ferry leave?\n"
    result = run(home, "ask", "--batch", "-", "--json", stdin=questions)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["question"] for x in lines] == [
        "When was the lighthouse built?",
        "When does the morning ferry leave?",
    ]
    assert "1874" in lines[0]["answer"]
    assert "07:15" in lines[1]["answer"]


def test_reingesting_unchanged_files_reports_unchanged(home: Path, corpus: Path) -> None:
    keyword_only(home)
    assert run(home, "ingest", str(corpus)).returncode == 0
    again = run(home, "ingest", str(corpus), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["unchanged"] == 4


def test_question_about_something_absent_says_so(home: Path, corpus: Path) -> None:
    keyword_only(home)
    assert run(home, "ingest", str(corpus)).returncode == 0
    result = run(home, "ask", "What is the airspeed of an unladen swallow?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "do not contain" in answer["answer"]
    assert answer["citations"] == []
    # The evidence fields are always there, so a script can rely on them.
    assert {"quotes", "sentences", "abstained"} <= set(answer)
    assert isinstance(answer["quotes"], list) and isinstance(answer["abstained"], bool)


def test_usage_errors_exit_2(home: Path) -> None:
    assert run(home, "ask").returncode == 2
    assert run(home, "frobnicate").returncode == 2
    assert run(home, "ask", "--batch", str(home / "missing.txt")).returncode == 2


def test_failure_exits_1_with_one_line_reason(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[retrieval]\ntop_k = 'many'\n")
    result = run(home, "--config", str(bad), "stats")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "retrieval.top_k" in lines[0] and str(bad) in lines[0]


def test_health_and_stats_report_real_data(home: Path, corpus: Path) -> None:
    keyword_only(home)
    assert run(home, "ingest", str(corpus)).returncode == 0
    health = run(home, "health", "--json")
    assert health.returncode == 0, health.stderr
    snap = json.loads(health.stdout)
    assert snap["components"]["database"]["status"] == "ok"
    assert snap["components"]["database"]["documents"] == 4
    assert snap["components"]["search_index"]["chunks"] >= 4
    stats = run(home, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["knowledge_base"]["documents"] == 4
    assert data["documents_by_kind"] == {"html": 1, "markdown": 1, "pdf": 1, "text": 1}


@pytest.mark.slow
def test_cached_answer_can_be_evicted_from_the_command_line(home: Path, corpus: Path) -> None:
    assert run(home, "ingest", str(corpus)).returncode == 0
    q = "When was the Old Harbour lighthouse built?"
    first = json.loads(run(home, "ask", q, "--json").stdout)
    assert first["cache"] == "miss" and first["cache_entry"]
    second = json.loads(run(home, "ask", q, "--json").stdout)
    assert second["cache"] == "result"
    assert second["cache_match"]["question"].lower().startswith("when was")
    assert json.loads(run(home, "ask", q, "--json", "--no-cache").stdout)["cache"] == "miss"
    evict = run(home, "cache", "evict", first["cache_entry"])
    assert evict.returncode == 0, evict.stderr
    assert json.loads(run(home, "ask", q, "--json").stdout)["cache"] != "result"
    assert run(home, "cache", "evict", "no-such-entry").returncode == 2


# --------------------------------------------------------------------------- a pipe worker


@contextlib.contextmanager
def worker(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """``archivist ARGS`` running with pipes, and each line it prints as it prints it."""
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHIVIST_DATABASE_URL", None)
    env.pop("ARCHIVIST_REDIS_URL", None)
    env["ARCHIVIST_LOCAL_MODEL"] = "off"
    proc = subprocess.Popen(
        [*ARCHIVIST, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def ask_line(proc: subprocess.Popen[str], lines: queue.Queue[str], question: str) -> Any:
    assert proc.stdin is not None
    proc.stdin.write(question + "\n")
    proc.stdin.flush()
    try:
        return json.loads(lines.get(timeout=90))
    except queue.Empty:
        pytest.fail(f"no answer to {question!r} while standard input stays open")


def test_batch_from_stdin_answers_each_line_as_it_arrives(home: Path, corpus: Path) -> None:
    keyword_only(home)
    assert run(home, "ingest", str(corpus)).returncode == 0
    with worker(home, "ask", "--batch", "-", "--json") as (proc, lines):
        first = ask_line(proc, lines, "When was the lighthouse built?")
        assert first["question"] == "When was the lighthouse built?"
        assert "1874" in first["answer"]
        second = ask_line(proc, lines, "When does the morning ferry leave?")
        assert "07:15" in second["answer"]
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def test_sigterm_stops_a_batch_waiting_on_stdin_promptly(home: Path, corpus: Path) -> None:
    keyword_only(home)
    assert run(home, "ingest", str(corpus)).returncode == 0
    with worker(home, "ask", "--batch", "-", "--json") as (proc, lines):
        assert "1874" in ask_line(proc, lines, "When was the lighthouse built?")["answer"]
        # Now it waits for the next line: SIGTERM ends the input like end-of-file.
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop `ask --batch -` waiting on standard input")
        assert time.monotonic() - t0 < 10
        assert code == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:s3cret@host:notaport/db",  # the port is not a number
        "://user:s3cret@host/db",  # no dialect at all
        "postgresql+nodriver://user:s3cret@host/db",  # no such driver
    ],
)
def test_an_unusable_database_url_never_shows_its_password(home: Path, url: str) -> None:
    result = run(home, "stats", env={"ARCHIVIST_DATABASE_URL": url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one reason, no traceback
    assert "database" in lines[0].lower() and "***" in lines[0]
    assert "s3cret" not in result.stdout + result.stderr
    for log_file in home.rglob("*.log*"):
        assert "s3cret" not in log_file.read_text(errors="replace"), log_file


# --------------------------------------------------------------------------- answers


def _citation(marker: int, source: str, text: str, quote: str, page: int | None) -> Citation:
    chunk = Chunk(marker, marker, source, 0, text, 100, 100 + len(text), page)
    at = text.index(quote)
    return Citation.of(marker, chunk, 0.5, quote_span=(at, at + len(quote)))


def test_a_readable_answer_shows_only_supported_sentences_and_the_quotes() -> None:
    ferry = _citation(
        1,
        "/docs/ferry.pdf",
        "Tickets. A return costs eleven euros. Pay aboard.",
        "A return costs eleven euros.",
        2,
    )
    text = "A return ticket costs eleven euros [1]. It is free on Sundays."
    answer = Answer(
        question="How much is a return ticket?",
        text=text,
        citations=(ferry,),
        provider="local",
        cache="miss",
        degraded=False,
        timings_ms={},
        request_id="r1",
        quotes=(ferry,),
        sentences=(
            AnswerSentence("A return ticket costs eleven euros [1].", 0, 39, True, (1,), 0.9),
            AnswerSentence("It is free on Sundays.", 40, 62, False),
        ),
    )
    out = format_answer(answer)
    assert "A return ticket costs eleven euros [1]." in out
    assert "free on Sundays" not in out
    assert "1 sentence of the generated answer left out" in out
    assert (
        "Quotes:\n  [1] \u201cA return costs eleven euros.\u201d (/docs/ferry.pdf, page 2)" in out
    )
    assert "Sources:\n  [1] /docs/ferry.pdf, page 2" in out
    as_json = answer.to_json()
    assert as_json["quotes"][0]["quote"] == "A return costs eleven euros."
    assert [s["supported"] for s in as_json["sentences"]] == [True, False]


def test_an_abstention_is_shown_as_it_is() -> None:
    answer = Answer(
        "Who?",
        "The documents do not contain the answer.",
        (),
        "extractive",
        "miss",
        False,
        {},
        "r2",
        sentences=(AnswerSentence("x", 0, 1, False),),
        abstained=True,
    )
    assert format_answer(answer) == "The documents do not contain the answer."
