"""``archivist eval answers`` on the mixed-format mini corpus (PDF, DOCX, HTML, Markdown, text)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.answer.evaluate import score_answer, summarize
from core.evaluation import EvalQuestion
from core.types import Answer, Chunk, Citation
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
