"""``archivist eval answers`` on the mixed-format mini corpus (PDF, DOCX, HTML, Markdown, text)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from core.answer.evaluate import format_answers_table, score_answer, summarize
from core.evaluation import EvalQuestion
from core.types import Answer, Chunk, Citation, ScoredChunk
from tests.support.mini_corpus import write_questions_file


def _questions_file(tmp_path: Path, corpus: Path) -> tuple[Path, int, int]:
    path = tmp_path / "mini.jsonl"
    questions = write_questions_file(corpus, path)
    unanswerable = sum(1 for q in questions if not q.answer_contains)
    return path, len(questions), unanswerable


def test_eval_answers_reports_accuracy_abstention_and_citation_precision(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    questions, n, unanswerable = _questions_file(tmp_path, corpus)
    env = dict(os.environ, ARCHIVIST_LOCAL_MODEL="off", HF_HUB_OFFLINE="1")
    env.pop("ARCHIVIST_HOME", None)
    command = [sys.executable, "-m", "app.cli", "eval", "answers"]
    command += ["--questions", str(questions), "--corpus", str(corpus), "--json"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    overall = report["overall"]
    assert overall["questions"] == n
    assert len(report["results"]) == n
    assert set(report["by_kind"]) >= {"keyword", "paraphrase", "specific", "unanswerable"}
    # Quotes only (no model): whatever it answers, it cites the sentence that holds it.
    assert overall["citation_precision"] == 1.0
    assert 0.0 <= overall["false_abstention"] <= 1.0
    assert report["by_kind"]["unanswerable"]["questions"] == unanswerable
    assert overall["accuracy"] > 0.4
    # Every answerable question's row names the pages it read, relative to the corpus.
    answerable = [r for r in report["results"] if r["kind"] != "unanswerable"]
    assert all(r["read"] and not r["read"][0].startswith("/") for r in answerable)
    assert 0.5 <= overall["relevant_page_read"] <= 1.0
    assert 0.5 <= overall["answer_in_passages"] <= overall["relevant_page_read"]


def _answer(text: str, cites: tuple[Citation, ...], abstained: bool = False) -> Answer:
    return Answer(
        question="q",
        text=text,
        citations=cites,
        provider="p",
        cache="miss",
        degraded=False,
        timings_ms={"total": 10.0, "quotes": 2.0},
        request_id="r",
        abstained=abstained,
    )


def test_scoring_rules() -> None:
    text = "The outage lasted 47 minutes. It began at 02:14."
    chunk = Chunk(1, 1, "/d/report.html", 0, text, 0, len(text), None)
    cite = Citation.of(1, chunk, 0.5, (0, 29))
    q = EvalQuestion("x", "How long?", frozenset({"report.html"}), "specific", ("47 minutes",))
    right = score_answer(q, _answer("It lasted 47 minutes [1].", (cite,)), 10.0)
    assert right.correct and right.cited_precisely
    wrong_cite = Citation.of(1, chunk, 0.5, (30, len(text)))
    imprecise = score_answer(q, _answer("It lasted 47 minutes [1].", (wrong_cite,)), 10.0)
    assert imprecise.correct and not imprecise.cited_precisely
    gave_up = score_answer(q, _answer("Not in the documents.", (), abstained=True), 10.0)
    assert not gave_up.correct and gave_up.abstained
    none = EvalQuestion("y", "Who?", frozenset(), "unanswerable", ())
    honest = score_answer(none, _answer("Not in the documents.", (), abstained=True), 10.0)
    assert honest.correct
    s = summarize([right, imprecise, gave_up, honest])
    assert s["false_abstention"] == round(1 / 3, 4)
    assert s["abstention_on_unanswerable"] == 1.0
    assert s["citation_precision"] == 0.5
    assert s["relevant_page_read"] is None  # no corpus folder: not known


def test_rows_name_the_pages_read_and_cited(tmp_path: Path) -> None:
    """With the corpus folder, a row tells a retrieval miss from a reading miss."""
    corpus = tmp_path / "docs"
    (corpus / "ops").mkdir(parents=True)
    text = "The outage lasted 47 minutes. It began at 02:14."
    report = Chunk(1, 1, str(corpus / "ops" / "report.html"), 0, text, 0, len(text), None)
    notes = Chunk(2, 2, str(corpus / "notes.txt"), 0, "Lunch is at noon.", 0, 17, None)
    outside = Chunk(3, 3, "/elsewhere/memo.md", 0, "A memo.", 0, 7, None)
    read = (ScoredChunk(notes, 0.9), ScoredChunk(report, 0.8), ScoredChunk(outside, 0.1))
    q = EvalQuestion("x", "How long?", frozenset({"ops/report.html"}), "specific", ("47 minutes",))
    cite = Citation.of(1, report, 0.5, (0, 29))
    answer = dataclasses.replace(
        _answer("It lasted 47 minutes [1].", (cite,)), retrieved=read, notice="checked"
    )
    row = score_answer(q, answer, 10.0, corpus.resolve())
    assert row.read == ("notes.txt", "ops/report.html", "/elsewhere/memo.md")
    assert row.cited == ("ops/report.html",)
    assert row.read_relevant is True and row.answer_read is True
    assert row.to_json()["notice"] == "checked"
    # An abstention whose passages never reached the relevant page: a retrieval miss.
    missed = dataclasses.replace(
        _answer("Not in the documents.", (), abstained=True), retrieved=read[:1]
    )
    miss = score_answer(q, missed, 10.0, corpus.resolve())
    assert miss.read_relevant is False and miss.answer_read is False and miss.cited == ()
    # Quotes shown in place of the model's answer count as what it cites.
    quoted = dataclasses.replace(_answer("", ()), quotes=(cite,), retrieved=read)
    assert score_answer(q, quoted, 10.0, corpus.resolve()).cited == ("ops/report.html",)
    none = EvalQuestion("y", "Who?", frozenset(), "unanswerable", ())
    assert score_answer(none, missed, 10.0, corpus.resolve()).read_relevant is None
    s = summarize([row, miss, score_answer(none, missed, 10.0, corpus.resolve())])
    assert s["relevant_page_read"] == 0.5
    assert s["answer_in_passages"] == 0.5
    table = format_answers_table({"overall": s, "by_kind": {}, "by_provider": {}})
    assert "relevant page read" in table.splitlines()[0]
    assert "| 0.50 |" in table.splitlines()[2]
