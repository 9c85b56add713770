"""Quote first: the passages' own best sentences for a question, and the extractive answer.

Passages of the ``standard`` fixture: [1] outage, [2] lighthouse, [3] garden,
[4] config (see ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.evidence.support import find_quotes, rank_quotes, select_quotes
from core.providers.extractive import NOT_FOUND, ExtractiveProvider, compose
from core.types import ContextPassage, GenerationRequest, ScoredChunk
from tests.answer.conftest import make_passages


def test_the_quote_is_the_sentence_that_answers(standard: Sequence[ScoredChunk]) -> None:
    quotes, _ = find_quotes("When was the lighthouse built?", standard, followers=0)
    assert quotes[0].quote == "The Old Harbour lighthouse was built in 1874."
    for q in quotes:
        assert q.quote == q.text[q.quote_start - q.start : q.quote_end - q.start]  # type: ignore[operator]
    assert quotes[0].marker == 2 and quotes[0].chunk_id == standard[1].chunk.id
    assert quotes[0].score == standard[1].score  # the retrieval score, as for any citation


def test_quotes_come_in_marker_order_one_per_passage(standard: Sequence[ScoredChunk]) -> None:
    quotes = select_quotes("When are the beds watered and when was the outage?", standard)
    markers = [q.marker for q in quotes]
    assert markers == sorted(set(markers))
    assert markers[0] == 1  # the outage passage
    assert any(q.quote.startswith("Beds are watered") for q in quotes)


def test_consecutive_sentences_of_one_passage_make_one_quote(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    passages = make(
        "The ferry leaves the pier at 07:15. The ferry returns from the island at 18:40. "
        "Tickets are sold on board."
    )
    quotes, _ = find_quotes(
        "When does the ferry leave and return?", passages, max_quotes=2, followers=0
    )
    assert len(quotes) == 1
    assert quotes[0].quote == (
        "The ferry leaves the pier at 07:15. The ferry returns from the island at 18:40."
    )


def test_a_quote_runs_on_into_the_sentences_after_it_within_a_length(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    # The sentence that names the topic comes first; the fact follows it.
    text = (
        "The harbour ferry links the pier with the island. It leaves at 07:15 on weekdays. "
        "Tickets are sold on board. " + "Bicycles travel free of charge on the lower deck. " * 8
    )
    passages = make(text)
    quote = select_quotes("Tell me about the harbour ferry to the island", passages)[0]
    assert quote.quote == (
        "The harbour ferry links the pier with the island. It leaves at 07:15 on weekdays. "
        "Tickets are sold on board."
    )
    assert quote.quote == text[quote.quote_start - quote.start : quote.quote_end - quote.start]  # type: ignore[operator]
    short, _ = find_quotes("Tell me about the harbour ferry to the island", passages, span_chars=90)
    assert short[0].quote.endswith("07:15 on weekdays.")  # the next one would pass 90


def test_no_quote_when_the_question_terms_are_missing(standard: Sequence[ScoredChunk]) -> None:
    quotes, evidence = find_quotes("What colour is the ferry to the island?", standard)
    assert quotes == ()
    assert not evidence.sufficient
    assert set(evidence.missing_terms) == {"colour", "ferry", "island"}
    assert evidence.best_coverage == 0.0


def test_the_figures_show_how_well_the_passages_cover_the_question(
    standard: Sequence[ScoredChunk],
) -> None:
    quotes, evidence = find_quotes("Who was the keeper of the lighthouse in 1874?", standard)
    assert quotes and evidence.sufficient
    assert set(evidence.question_terms) == {"keeper", "lighthous", "1874"}
    assert evidence.passage_coverage[1] == evidence.best_coverage == 1.0
    assert evidence.passage_coverage[0] == 0.0
    assert 0.0 < evidence.best_sentence_coverage < 1.0  # no single sentence has all three
    assert evidence.best_cosine is None and evidence.missing_terms == ()


def test_a_partly_covered_question_is_gated_by_coverage(
    standard: Sequence[ScoredChunk],
) -> None:
    # Only the common word is found: a third of the rarity-weighted terms is not enough.
    quotes, evidence = find_quotes("Which telescope did the billing astronomer buy?", standard)
    assert quotes == () and 0.0 < evidence.best_coverage < 0.34


def test_an_embedding_finds_a_quote_for_a_question_in_other_words(
    make: Callable[..., list[ScoredChunk]], concept_embed: Callable[..., Any]
) -> None:
    passages = make("The lighthouse was built in 1874.", "Beds are watered on Tuesdays.")
    question = "When was the beacon erected?"
    assert select_quotes(question, passages) == ()
    embed = concept_embed({"beacon": "lighthouse", "erected": "built"})
    quotes, evidence = find_quotes(question, passages, embed=embed)
    assert [q.quote for q in quotes] == ["The lighthouse was built in 1874."]
    assert evidence.best_cosine is not None and evidence.best_cosine > 0.6
    assert embed.calls == 1


def test_rank_quotes_works_on_plain_texts() -> None:
    texts = ["Nothing here.", "Backups are kept for 30 days. Restores take an hour."]
    quotes, _ = rank_quotes("How long are backups kept?", texts)
    assert [(q.passage, texts[q.passage][q.start : q.end]) for q in quotes] == [
        (1, "Backups are kept for 30 days.")
    ]


# --------------------------------------------------------------------------- extractive


def _context(*texts: str, first_marker: int = 1) -> list[ContextPassage]:
    return [
        ContextPassage(marker=first_marker + i, source=f"/d/{i}.txt", page=None, text=t)
        for i, t in enumerate(texts)
    ]


def test_extractive_answer_quotes_with_the_passage_markers(docs: Any) -> None:
    passages = _context(docs.garden, docs.lighthouse, first_marker=5)
    text = compose("When was the lighthouse built?", passages)
    assert text.startswith("From your documents:\n\n")
    [line] = text.split("\n\n")[1:]  # one quote per passage, running on (as quoted first)
    assert line.startswith("The Old Harbour lighthouse was built in 1874.")
    assert line.endswith(" [6]")


def test_extractive_answer_says_not_found_instead_of_quoting_noise(docs: Any) -> None:
    assert compose("What colour is the ferry?", _context(docs.garden)) == NOT_FOUND
    assert compose("When was the lighthouse built?", []) == NOT_FOUND
    assert compose("the of and", _context(docs.garden)) == NOT_FOUND  # nothing to look for


def test_extractive_answer_is_the_quotes_shown_first(docs: Any) -> None:
    question = "lighthouse keeper lamp whale oil"
    passages = _context(docs.garden, docs.lighthouse)
    lines = compose(question, passages).split("\n\n")[1:]
    chunks = make_passages(docs.garden, docs.lighthouse)
    quotes, _ = find_quotes(question, chunks)
    assert lines == [f"{' '.join(q.quote.split())} [{q.marker}]" for q in quotes]
    assert lines == [
        "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years. "
        "The lamp burned whale oil until 1902. [2]"
    ]


def test_extractive_answer_counts_words_the_old_list_dropped() -> None:
    passages = _context(
        "The ferry timetable changes in spring.",
        "Python 3.11 is required by the installer.",
    )
    text = compose("Which Python version is required?", passages)
    assert "Python 3.11 is required by the installer. [2]" in text


def test_extractive_answer_clips_a_very_long_sentence() -> None:
    long = "The archive keeps " + "old records and " * 60 + "ledgers."
    text = compose("What does the archive keep?", _context(long))
    line = text.split("\n\n")[1]
    assert line.endswith("… [1]") and len(line) < 620


async def test_extractive_provider_streams_paragraphs(docs: Any) -> None:
    provider = ExtractiveProvider("offline")
    request = GenerationRequest("When was the lighthouse built?", tuple(_context(docs.lighthouse)))
    parts = [p async for p in provider.stream(request)]
    assert "".join(parts) == compose(request.question, request.passages)
    assert parts[0] == "From your documents:\n\n"
    assert provider.name == "offline" and provider.kind == "extractive"
    await provider.aclose()
