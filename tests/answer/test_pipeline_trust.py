"""The ask pipeline never shows a model's output as cited unchecked.

A real OpenAI-compatible stand-in server on 127.0.0.1 plays a small model that
cites the wrong passage, invents facts or answers another question; real
documents are ingested into a real SQLite knowledge base.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import load_settings
from core.services import Services
from core.types import Citation
from tests.support.fake_llm import FakeLLM, Succeed


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _config(home: Path, url: str, extra: str = "", *, embed: bool = False) -> None:
    (home / "archivist.toml").write_text(
        ("" if embed else "[ingest]\nembed = false\n")
        + "[rate_limit]\nenabled = false\n"
        + extra
        + f'[[providers]]\nname = "model"\nkind = "openai"\nbase_url = "{url}"\n'
        'model = "m"\ntimeout_s = 5\nfirst_token_timeout_s = 2\nconnect_timeout_s = 1\n'
    )


def _office_hours(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hours.txt").write_text(
        "The office closes at 17:00 on Fridays.\n\nBeds are watered on Tuesdays.\n"
    )
    return docs


def _source(c: Citation) -> str:
    return Path(c.source).name


async def test_a_wrong_marker_is_fixed_to_the_passage_that_holds_the_fact(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        # Whatever the order of the passages, [9] names none and [1]..[5] may be wrong.
        llm.push(Succeed(("The telescope has an aperture of 240 millimetres ", "[9]", ".")))
        seen: list[tuple[Citation, ...]] = []
        answer = await services.ask(
            "What is the aperture of the telescope?", on_quotes=seen.append, use_cache=False
        )
    assert len(seen) == 1 and seen[0], "quotes arrive before the model's answer"
    assert [_source(c) for c in answer.citations] == ["telescope.html"]
    cite = answer.citations[0]
    assert "240 millimetres" in cite.quote
    assert f"[{cite.marker}]" in answer.text and "[9]" not in answer.text
    assert all(s.supported for s in answer.sentences)


async def test_an_invented_fact_is_not_shown_as_the_cited_answer(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        llm.push(Succeed(("The lighthouse was built in 1921 by the navy [1].",)))
        answer = await services.ask("When was the lighthouse built?", use_cache=False)
    # The model's claim is unsupported: the passages' own words are the answer.
    assert "1921" not in answer.text
    assert "1874" in answer.text
    assert answer.notice and "could not be found in your documents" in answer.notice
    assert all("1874" in c.quote or c.quote for c in answer.citations)


async def test_unsupported_sentences_are_marked_or_dropped_by_setting(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    tokens = (
        "The lighthouse was built in 1874 [1]. ",
        "It was painted red and white in 1990 by volunteers [1].",
    )
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        llm.push(Succeed(tokens))
        marked = await services.ask("When was the lighthouse built?", use_cache=False)
    flags = [(s.supported, "1990" in s.text) for s in marked.sentences]
    assert (True, False) in flags and (False, True) in flags
    unsupported = [s for s in marked.sentences if not s.supported]
    assert all(not s.markers for s in unsupported)  # no citation for what is not there

    _config(home, llm.base_url, '[answer]\nunsupported = "drop"\n')
    async with Services(load_settings()) as services:
        llm.push(Succeed(tokens))
        dropped = await services.ask("When was the lighthouse built?", use_cache=False)
    assert "1874" in dropped.text and "1990" not in dropped.text


async def test_the_gate_abstains_without_calling_the_model_when_evidence_is_missing(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        answer = await services.ask(
            "What is the airspeed velocity of an unladen swallow?", use_cache=False
        )
    assert answer.abstained
    assert answer.text.startswith("The documents do not contain")
    assert answer.citations == ()
    assert llm.chat_requests == []  # the model was not called


def test_a_quote_outside_its_passage_cannot_be_built() -> None:
    text = "Beds are watered on Tuesdays. Compost is turned fortnightly."
    ok = Citation(1, 7, "/d/garden.md", None, 100, 100 + len(text), text, 0.5)
    assert ok.quote == ""
    good = Citation(
        1, 7, "/d/garden.md", None, 100, 100 + len(text), text, 0.5, text[:29], 100, 129
    )
    assert good.quote == "Beds are watered on Tuesdays."
    with pytest.raises(ValueError):  # a quote that is not the passage's text there
        Citation(
            1, 7, "/d/garden.md", None, 100, 100 + len(text), text, 0.5, "Beds: Mondays.", 100, 114
        )
    with pytest.raises(ValueError):  # a quote outside the passage's span
        Citation(1, 7, "/d/garden.md", None, 100, 100 + len(text), text, 0.5, "x", 90, 91)


async def test_a_question_naming_what_no_document_mentions_is_answered_honestly(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        unknown = await services.ask("How do I configure Zorblax for the lighthouse lamp?")
        # A word the knowledge base uses, even in one document of several, is known.
        known = await services.ask("How often are the compost bins turned?", use_cache=False)
    assert unknown.abstained and unknown.notice and "Zorblax" in unknown.notice
    assert unknown.quotes  # the closest passages are shown
    assert not known.abstained
    assert len(llm.chat_requests) == 1  # only the answerable question reached the model


async def test_a_model_that_finds_nothing_where_the_gate_found_evidence_gives_way_to_the_quotes(
    home: Path, corpus: Path, llm: FakeLLM
) -> None:
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        llm.push(Succeed(("The documents do not contain an answer to this question.",)))
        answer = await services.ask("When was the lighthouse built?", use_cache=False)
    assert llm.chat_requests, "the gate found evidence, so the model was asked"
    assert not answer.abstained
    assert "1874" in answer.text, "the passages' own sentence is the answer"
    assert answer.notice and "found no answer in these passages" in answer.notice
    assert any("1874" in c.quote for c in answer.citations)


@pytest.mark.parametrize(
    "reply",
    [
        "The documents do not contain an answer to this question.",
        # A small model may only restate the question: no answer either.
        "The workplace shuts at the end of the week.",
    ],
)
async def test_a_model_that_finds_nothing_gets_quotes_found_by_meaning(
    home: Path, tmp_path: Path, llm: FakeLLM, reply: str
) -> None:
    # The question shares no word with the sentence that answers it: the quotes
    # step (terms only) finds nothing, the sentence encoder does.
    docs = _office_hours(tmp_path)
    _config(home, llm.base_url, embed=True)
    question = "What time does the workplace shut at the end of the week?"
    async with Services(load_settings()) as services:
        await services.ingest([docs])
        await services.wait_ready()
        seen: list[tuple[Citation, ...]] = []
        llm.push(Succeed((reply,)))
        answer = await services.ask(question, on_quotes=seen.append, use_cache=False)
    assert seen == [()], "no quote by terms"
    assert llm.chat_requests
    assert not answer.abstained
    assert "17:00" in answer.text and reply not in answer.text
    assert answer.notice and "found no answer in these passages" in answer.notice
    assert any("17:00" in c.quote for c in answer.citations)


async def test_weak_evidence_and_a_model_that_finds_nothing_show_the_closest_sentences(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    docs = _office_hours(tmp_path)
    _config(home, llm.base_url)
    question = "When does the office shut for the weekend, and who locks the doors?"
    async with Services(load_settings()) as services:
        await services.ingest([docs])
        seen: list[tuple[Citation, ...]] = []
        llm.push(Succeed(("The documents do not contain an answer to this question.",)))
        answer = await services.ask(question, on_quotes=seen.append, use_cache=False)
    assert seen == [()], "too little of the question is covered for quotes first"
    assert llm.chat_requests and not answer.abstained
    assert "office closes at 17:00" in answer.text
    assert answer.notice and "found no answer in these passages" in answer.notice


async def test_an_answer_claiming_what_no_passage_says_still_abstains_without_quotes(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    docs = _office_hours(tmp_path)
    _config(home, llm.base_url, embed=True)
    question = "What time does the workplace shut at the end of the week?"
    async with Services(load_settings()) as services:
        await services.ingest([docs])
        await services.wait_ready()
        llm.push(Succeed(("The workplace shuts at 21:45 after the cleaners leave.",)))
        answer = await services.ask(question, use_cache=False)
    assert answer.abstained
    assert "21:45" not in answer.text


def _tool_manual(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tool.md").write_text(
        "# The indexing tool\n\n"
        "Set cache_dir in config.toml to move the index cache. "
        "Run the indexing tool with --rebuild after changing cache_dir.\n\n"
        "The indexing tool logs to the console by default.\n"
    )
    return docs


async def test_an_unsupported_answer_naming_what_no_passage_mentions_abstains(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    # The passages are on the topic (the indexing tool's options) without the answer;
    # the model answers from elsewhere with an option no document has.
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([_tool_manual(tmp_path)])
        llm.push(Succeed(("Run the indexing tool with --parallel-jobs to index faster [1].",)))
        answer = await services.ask("Which option of the indexing tool makes it index faster?")
    assert llm.chat_requests
    assert answer.abstained
    assert answer.text.startswith("The documents do not contain")
    assert answer.citations == ()
    assert answer.notice and "--parallel-jobs" in answer.notice
    assert answer.quotes, "the closest passages are still shown"
    assert all("--parallel-jobs" not in c.quote for c in answer.quotes)


async def test_an_unsupported_answer_whose_names_the_passages_hold_keeps_the_quotes(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    # Wrong, but about what the documents do hold: their own sentences answer instead.
    _config(home, llm.base_url)
    async with Services(load_settings()) as services:
        await services.ingest([_tool_manual(tmp_path)])
        llm.push(Succeed(("Delete cache_dir and reinstall the indexing tool every week [1].",)))
        answer = await services.ask("What should I run after changing cache_dir?")
    assert not answer.abstained
    assert answer.notice and "could not be found in your documents" in answer.notice
    assert any("--rebuild" in c.quote for c in answer.citations)


def _scan_manual(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"limits-{n}.md").write_text(
            "# Scan limits\n\n"
            f"The largest value the scanner accepts for a depth limit is set per site ({n}). "
            "The scanner checks every depth value it accepts against the largest value.\n"
        )
    (docs / "options.md").write_text("# Options\n\nPass --depth to go at most 12 folders down.\n")
    for n, topic in enumerate(["garden", "kitchen", "office", "garage", "attic", "porch"] * 2):
        (docs / f"notes-{n}.txt").write_text(f"The {topic} is tidied on day {n} of the month.\n")
    return docs


async def test_a_deeper_passage_naming_what_the_question_names_is_read(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    # The top passages share the question's words (depth among them) but never name
    # --depth; the one that does ranks lower. The gate would say no passage mentions it.
    _config(home, llm.base_url, "[retrieval]\ntop_k = 2\n")
    async with Services(load_settings()) as services:
        await services.ingest([_scan_manual(tmp_path)])
        question = "What is the largest value the scanner accepts for --depth?"
        top, _ = await services.search(question, k=2)
        assert all("--depth" not in sc.chunk.text for sc in top)
        llm.push(Succeed(("With --depth it goes at most 12 folders down [2].",)))
        answer = await services.ask(question, use_cache=False)
    assert llm.chat_requests, "the model was asked"
    assert "Pass --depth" in str(llm.chat_requests[-1].body)
    assert not answer.abstained
    assert [_source(c) for c in answer.citations] == ["options.md"], (
        answer.text,
        answer.sentences,
        answer.notice,
    )
    assert "12 folders" in answer.citations[0].quote
    assert Path(answer.retrieved[-1].chunk.source).name == "options.md", "shown in why-this-answer"


async def test_a_supported_answer_on_weak_evidence_stands_with_a_caution(
    home: Path, tmp_path: Path, llm: FakeLLM
) -> None:
    # No passage covers the question well enough to quote. The answer's passage shares
    # fewer of its words than the best one, yet holds the answer: with no quotes to
    # fall back on, the checked answer stands, with a caution, instead of "not found".
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.md").write_text("The harbour lighthouse opens every spring.\n")
    (docs / "crew.md").write_text("Ana Duarte paints the railings.\n")
    _config(home, llm.base_url)
    question = (
        "Which crew member repaints the harbour lighthouse railings every spring "
        "before tourists arrive?"
    )
    async with Services(load_settings()) as services:
        await services.ingest([docs])
        seen: list[tuple[Citation, ...]] = []
        llm.push(Succeed(("Ana Duarte paints the railings [2].",)))
        answer = await services.ask(question, on_quotes=seen.append, use_cache=False)
    assert seen == [()], "too little of the question is covered for quotes"
    assert not answer.abstained
    assert [_source(c) for c in answer.citations] == ["crew.md"]
    assert answer.citations[0].quote == "Ana Duarte paints the railings."
    assert answer.notice and "share few of your question's words" in answer.notice
