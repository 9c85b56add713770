"""The gate's pure parts: which names of a model's answer no passage mentions."""

from __future__ import annotations

import pytest

from core.answer.gate import invented_names, off_topic
from core.evidence.support import check_answer, find_quotes
from tests.answer.conftest import CONFIG, LIGHTHOUSE, make_passages

PASSAGES = make_passages(CONFIG, LIGHTHOUSE)


@pytest.mark.parametrize(
    ("answer", "names"),
    [
        ("Run it with --turbo to make it faster.", ("--turbo",)),
        ("Call `os.path.normalize_all()` first.", ("os.path.normalize_all",)),
        ("Set max_workers in config.toml.", ("max_workers",)),
        ("Write the settings to tool.ini and run again.", ("tool.ini",)),
        # What the passages hold, however it is written.
        ("Set `cache_dir` and run the tool with --rebuild.", ()),
        ("Call os.path.expanduser() on it.", ()),
        # Numbers, dates, times, quantities and plain words are not names: a wrong
        # number is the evidence check's business, and a word may be a placeholder.
        ("It was built in 1921 and lit at 21:45 on 3 May 1930.", ()),
        ("It burned oil for 47 years.", ()),
        ("Replace `username` with your own.", ()),
    ],
)
def test_names_the_passages_do_not_mention(answer: str, names: tuple[str, ...]) -> None:
    assert invented_names(answer, PASSAGES) == names


def test_names_in_an_example_are_not_claims() -> None:
    answer = (
        "Call `os.path.expanduser()` on the path [1].\n\n"
        "```python\nwith open('notes1.txt') as notes_file:\n"
        "    home = expand_home(notes_file)\n```\n"
        ">>> backup_dir = '~/old'\n"
        "That is all."
    )
    assert invented_names(answer, PASSAGES) == ()
    cut_off = "It is `--rebuild` [1].\n\n```sh\nrun_tool --fast-mode"
    assert invented_names(cut_off, PASSAGES) == ()


def _off_topic(question: str, answer: str, *texts: str) -> bool:
    passages = make_passages(*texts)
    checked = check_answer(question, answer, passages, embed=None, unsupported="mark")
    assert checked.citations, "the answer is supported by a passage"
    _, evidence = find_quotes(question, passages)
    return off_topic(checked.citations, passages, evidence, question)


def test_an_answer_from_a_passage_sharing_few_question_words_is_off_topic() -> None:
    question = "Which crew member repaints the harbour lighthouse railings every spring?"
    best = "The harbour lighthouse opens every spring, and the crew greets visitors."
    assert _off_topic(
        question, "Ana Duarte paints the railings [2].", best, "Ana Duarte paints the railings."
    )


def test_a_passage_naming_what_the_question_names_is_on_topic() -> None:
    # The best passage shares the question's words but not the option it asks about.
    question = "What is the largest value the scanner accepts for --depth?"
    best = "The largest value the scanner accepts for a depth limit is set per site."
    named = "Pass --depth to go at most 12 folders down."
    answer = "With --depth it goes at most 12 folders down [2]."
    assert not _off_topic(question, answer, best, named)
    assert _off_topic(question.replace("--depth", "a depth"), answer, best, named)
