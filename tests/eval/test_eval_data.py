"""Self-checks of the frozen evaluation data (they check the data, never the product).

* every ``answer_contains`` string of the Debian handbook questions occurs in the text of
  every page listed in ``relevant`` (skipped when debian-handbook is not installed, a
  failure when CI=true);
* the cache test pairs parse, have at least 120 rows and cover every kind;
* each answer string of the mini mixed-format corpus occurs in its own file and in no other.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re
from pathlib import Path

import pytest

from tests.eval.corpus import CORPORA, find_corpus
from tests.support.mini_corpus import SOURCE_NAMES, MiniQuestion, write_mini_corpus

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "debian_handbook_questions.jsonl"
CACHE_PAIRS = HERE / "cache_pairs_test.tsv"
DEV_PAIRS = HERE.parents[2] / "shared" / "eval" / "cache_pairs_dev.tsv"

FIELDS = ["id", "question", "relevant", "answer_contains", "kind"]
QUESTION_KINDS = {"keyword", "paraphrase", "specific", "unanswerable"}
HIT_KINDS = {"normalize", "paraphrase"}
MISS_KINDS = {"antonym", "negation", "entity", "number", "date", "order", "scope", "question"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _squash(text: str) -> str:
    """Lowercase, with every run of whitespace turned into one space."""
    return re.sub(r"\s+", " ", text).strip().lower()


def _html_text(path: Path) -> str:
    import lxml.html

    return str(lxml.html.parse(str(path)).getroot().text_content())


def _load_questions() -> list[dict[str, object]]:
    with QUESTIONS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- the Debian handbook question set --------------------------------------------------


def test_question_file_shape() -> None:
    rows = _load_questions()
    assert len(rows) >= 48
    assert [r["id"] for r in rows] == [f"dh{i:03d}" for i in range(1, len(rows) + 1)]
    kinds = collections.Counter(str(r["kind"]) for r in rows)
    assert set(kinds) == QUESTION_KINDS, kinds
    assert kinds["unanswerable"] >= 8
    for r in rows:
        assert list(r) == FIELDS, r
        assert isinstance(r["question"], str) and r["question"].strip()
        relevant, answers = r["relevant"], r["answer_contains"]
        assert isinstance(relevant, list) and isinstance(answers, list)
        if r["kind"] == "unanswerable":
            assert relevant == [] and answers == [], r["id"]
            continue
        assert 1 <= len(relevant) <= 3, r["id"]
        assert 1 <= len(answers) <= 3, r["id"]
        assert len(set(relevant)) == len(relevant), r["id"]
        for page in relevant:
            assert page.endswith(".html") and "#" not in page and not page.startswith("/")
        for answer in answers:
            assert isinstance(answer, str) and answer.strip(), r["id"]


def test_answers_occur_in_every_relevant_page() -> None:
    root = find_corpus("debian-handbook")
    if root is None:
        package = CORPORA["debian-handbook"].package
        msg = f"{package} is not installed (packaging/system-deps.sh test installs it)"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    texts: dict[str, str] = {}
    problems = []
    for r in _load_questions():
        for page in r["relevant"]:  # type: ignore[attr-defined]
            path = root / page
            if not path.is_file():
                problems.append(f"{r['id']}: {page} does not exist")
                continue
            if page not in texts:
                texts[page] = _squash(_html_text(path))
            for answer in r["answer_contains"]:  # type: ignore[attr-defined]
                if _squash(answer) not in texts[page]:
                    problems.append(f"{r['id']}: {answer!r} is not in {page}")
    assert not problems, "\n".join(problems)


# --- the semantic-cache test pairs ------------------------------------------------------


def _read_pairs(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and lines[1].startswith("#")
    assert lines[1].lstrip("# ").split("\t") == [
        "cached_query",
        "incoming_query",
        "should_hit",
        "kind",
    ]
    return list(csv.reader(lines[2:], delimiter="\t", quoting=csv.QUOTE_NONE))


def test_cache_pairs_parse() -> None:
    rows = _read_pairs(CACHE_PAIRS)
    assert len(rows) >= 120
    for row in rows:
        assert len(row) == 4, row
        cached, incoming, should_hit, kind = row
        assert cached.strip() and incoming.strip() and cached != incoming, row
        assert should_hit in {"0", "1"}, row
        assert kind in (HIT_KINDS if should_hit == "1" else MISS_KINDS), row
    assert len({(r[0], r[1]) for r in rows}) == len(rows), "duplicate pairs"
    assert {r[3] for r in rows} == HIT_KINDS | MISS_KINDS
    hits = sum(r[2] == "1" for r in rows)
    assert hits >= 40 and len(rows) - hits >= 70


def test_cache_pairs_do_not_reuse_dev_sentences() -> None:
    if not DEV_PAIRS.is_file():
        pytest.skip(f"{DEV_PAIRS} is not available")
    dev = {s for row in _read_pairs(DEV_PAIRS) for s in row[:2]}
    test = {s for row in _read_pairs(CACHE_PAIRS) for s in row[:2]}
    assert not dev & test


# --- the mini mixed-format corpus -------------------------------------------------------


def _file_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".md", ".txt"}:
        return path.read_text(encoding="utf-8")
    if suffix == ".html":
        return _html_text(path)
    if suffix == ".pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        try:
            assert len(pdf) == 2
            parts = []
            for page in pdf:
                textpage = page.get_textpage()
                parts.append(textpage.get_text_range())
                textpage.close()
                page.close()
            return "\n".join(parts)
        finally:
            pdf.close()
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        return "\n".join(p.text for p in document.paragraphs)
    raise AssertionError(f"unexpected file {path.name}")


def test_mini_corpus_answers_are_in_exactly_their_own_file(tmp_path: Path) -> None:
    questions = write_mini_corpus(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(SOURCE_NAMES)
    texts = {name: _squash(_file_text(tmp_path / name)) for name in files}
    for name, text in texts.items():
        assert len(text.split()) >= 200, f"{name} is too short"

    assert all(isinstance(q, MiniQuestion) for q in questions)
    answerable = [q for q in questions if q.source_name is not None]
    unanswerable = [q for q in questions if q.source_name is None]
    assert len(answerable) >= 10 and len(unanswerable) >= 3
    assert {q.source_name for q in answerable} == set(SOURCE_NAMES)
    assert {q.kind for q in answerable} <= {"keyword", "paraphrase", "specific"}
    assert all(q.kind == "unanswerable" and not q.answer_contains for q in unanswerable)
    assert len({q.question for q in questions}) == len(questions)

    problems = []
    for q in answerable:
        assert q.answer_contains, q
        for answer in q.answer_contains:
            found = [name for name, text in texts.items() if _squash(answer) in text]
            if found != [q.source_name]:
                problems.append(f"{answer!r} ({q.source_name}) occurs in {found}")
    assert not problems, "\n".join(problems)
