"""The gate's pure parts: which names of a model's answer no passage mentions."""

from __future__ import annotations

import pytest

from core.answer.gate import invented_names
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
