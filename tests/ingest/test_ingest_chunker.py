"""chunk_document: exact offsets, bounded size, structure followed."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from core.ingest.chunker import chunk_document
from core.ingest.parsers import parse_file
from core.ingest.tokens import TokenCounter, default_tokenizer_file
from core.types import ChunkDraft, ExtractedDocument, Heading, PageSpan
from tests.ingest.conftest import make_pdf

WORDS = (
    "harbour keeper lamp oil ship storm winter archive tide pier gull seal rope anchor "
    "lantern compass chart beacon fog signal wreck coast cliff island voyage"
).split()


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def sentences(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 18))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def check_invariants(
    doc: ExtractedDocument, chunks: list[ChunkDraft], counter: TokenCounter, bound: int
) -> None:
    """What every chunking must satisfy, whatever the document."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    previous_start = -1
    for c in chunks:
        assert c.text == doc.text[c.start : c.end]
        assert c.text and c.text == c.text.strip()
        assert c.token_count == counter.count(c.text)
        assert c.token_count <= bound
        assert c.start > previous_start
        previous_start = c.start
    # Together the chunks cover every non-whitespace character.
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    uncovered = "".join(ch for ch, flag in zip(doc.text, covered, strict=True) if not flag)
    assert not uncovered.strip()


def assert_no_split_words(doc: ExtractedDocument, chunks: list[ChunkDraft]) -> None:
    text = doc.text
    for c in chunks:
        assert c.start == 0 or text[c.start - 1].isspace(), text[c.start - 10 : c.start + 10]
        assert c.end == len(text) or text[c.end].isspace(), text[c.end - 10 : c.end + 10]


# --------------------------------------------------------------------------- basics


def test_empty_and_blank_documents_give_no_chunks(counter: TokenCounter) -> None:
    assert chunk_document(ExtractedDocument("", "text"), counter=counter) == []
    assert chunk_document(ExtractedDocument(" \n\n\t ", "text"), counter=counter) == []


def test_small_paragraphs_are_packed_into_one_chunk(counter: TokenCounter) -> None:
    text = "  First paragraph.\n\nSecond paragraph.  \n\n\nThird one.\n"
    doc = ExtractedDocument(text, "text")
    (chunk,) = chunk_document(doc, counter=counter)
    assert chunk.text == "First paragraph.\n\nSecond paragraph.  \n\n\nThird one."
    assert (chunk.start, chunk.page, chunk.heading_path) == (2, None, ())


def test_whole_paragraphs_are_packed_up_to_the_bound(counter: TokenCounter) -> None:
    rng = random.Random(1)
    paragraphs = [sentences(rng, rng.randint(1, 3)) for _ in range(60)]
    doc = ExtractedDocument("\n\n".join(paragraphs), "text")
    chunks = chunk_document(doc, chunk_tokens=120, overlap_tokens=0, counter=counter)
    check_invariants(doc, chunks, counter, 120)
    starts = {doc.text.index(p) for p in paragraphs}
    ends = {doc.text.index(p) + len(p) for p in paragraphs}
    for c in chunks:  # each paragraph fits, so none is cut
        assert c.start in starts and c.end in ends
    for a, b in itertools.pairwise(chunks):  # greedy: the next paragraph did not fit
        next_paragraph = doc.text[b.start : doc.text.index("\n\n", b.start)]
        assert a.token_count + counter.count(next_paragraph) > 120


def test_chunking_is_deterministic(counter: TokenCounter) -> None:
    rng = random.Random(7)
    doc = ExtractedDocument("\n\n".join(sentences(rng, 12) for _ in range(30)), "text")
    first = chunk_document(doc, counter=counter)
    assert chunk_document(doc, counter=counter) == first
    assert chunk_document(doc, counter=TokenCounter()) == first


# --------------------------------------------------------------------------- oversized


def test_oversized_paragraph_is_split_at_sentence_ends(counter: TokenCounter) -> None:
    rng = random.Random(2)
    doc = ExtractedDocument(sentences(rng, 150), "text")
    chunks = chunk_document(doc, chunk_tokens=100, overlap_tokens=0, counter=counter)
    assert len(chunks) > 5
    check_invariants(doc, chunks, counter, 100)
    assert_no_split_words(doc, chunks)
    for c in chunks:
        assert c.text.endswith(".")
        assert c.text[0].isupper()


def test_a_sentence_longer_than_the_bound_is_split_between_words(
    counter: TokenCounter,
) -> None:
    rng = random.Random(3)
    text = " ".join(rng.choice(WORDS) for _ in range(2000))  # one sentence, no full stop
    doc = ExtractedDocument(text, "text")
    chunks = chunk_document(doc, chunk_tokens=64, overlap_tokens=10, counter=counter)
    check_invariants(doc, chunks, counter, 64)
    assert_no_split_words(doc, chunks)
    assert min(c.token_count for c in chunks[:-1]) > 50  # pieces are filled


def test_a_word_longer_than_the_bound_is_cut_at_tokens(counter: TokenCounter) -> None:
    text = "start " + "abcdefghij-" * 400 + " end. " + "x" * 5000
    doc = ExtractedDocument(text, "code")
    chunks = chunk_document(doc, chunk_tokens=50, overlap_tokens=10, counter=counter)
    check_invariants(doc, chunks, counter, 50)


def test_cjk_text_without_spaces_is_split(counter: TokenCounter) -> None:
    text = "日本語のテキストです。これはテストのための文章です。" * 40
    doc = ExtractedDocument(text, "text")
    chunks = chunk_document(doc, chunk_tokens=60, overlap_tokens=0, counter=counter)
    assert len(chunks) > 3
    check_invariants(doc, chunks, counter, 60)


def test_a_huge_document_keeps_every_invariant(counter: TokenCounter) -> None:
    rng = random.Random(4)
    parts = []
    for i in range(400):
        parts.append(sentences(rng, rng.choice([1, 3, 8, 40])))
        if i % 50 == 0:
            parts.append("x" * 3000)
    doc = ExtractedDocument("\n\n".join(parts), "text")
    chunks = chunk_document(doc, counter=counter)
    check_invariants(doc, chunks, counter, 200)


# --------------------------------------------------------------------------- overlap


def test_overlap_repeats_trailing_sentences_of_the_previous_chunk(
    counter: TokenCounter,
) -> None:
    rng = random.Random(5)
    doc = ExtractedDocument(sentences(rng, 120), "text")
    chunks = chunk_document(doc, chunk_tokens=100, overlap_tokens=30, counter=counter)
    check_invariants(doc, chunks, counter, 100)
    assert_no_split_words(doc, chunks)
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start < a.end, "consecutive chunks overlap"
        shared = doc.text[b.start : a.end]
        assert 0 < counter.count(shared) <= 30
        assert a.text.endswith(shared)


def test_no_overlap_when_overlap_is_zero(counter: TokenCounter) -> None:
    rng = random.Random(6)
    doc = ExtractedDocument(sentences(rng, 80), "text")
    chunks = chunk_document(doc, chunk_tokens=100, overlap_tokens=0, counter=counter)
    for a, b in itertools.pairwise(chunks):
        assert b.start > a.end


# --------------------------------------------------------------------------- structure


def markdown_doc(rng: random.Random) -> ExtractedDocument:
    lines = ["# Guide", "", sentences(rng, 3), ""]
    for section in ("Alpha", "Beta"):
        lines += [f"## {section}", "", sentences(rng, 2), ""]
        for sub in ("one", "two"):
            lines += [f"### {section} {sub}", ""]
            lines += [sentences(rng, 6), "", sentences(rng, 6), ""]
    text = "\n".join(lines)
    headings = []
    for m in re.finditer(r"^(#+) (.+)$", text, re.M):
        headings.append(Heading(len(m.group(1)), m.group(2), m.start(2)))
    return ExtractedDocument(text, "markdown", headings=tuple(headings))


def test_chunks_never_cross_a_section_heading(counter: TokenCounter) -> None:
    doc = markdown_doc(random.Random(8))
    chunks = chunk_document(doc, chunk_tokens=150, overlap_tokens=20, counter=counter)
    check_invariants(doc, chunks, counter, 150)
    top = [h for h in doc.headings if h.level <= 2]
    for c in chunks:
        for h in top:
            line_start = doc.text.rfind("\n", 0, h.start) + 1
            assert not (c.start < line_start < c.end), (c.text[:60], h.title)


def test_heading_paths_follow_the_outline(counter: TokenCounter) -> None:
    doc = markdown_doc(random.Random(9))
    chunks = chunk_document(doc, chunk_tokens=150, overlap_tokens=20, counter=counter)
    paths = {c.heading_path for c in chunks}
    assert ("Guide",) in paths
    assert ("Guide", "Alpha") in paths
    assert ("Guide", "Beta", "Beta two") in paths
    for c in chunks:
        enclosing = [h for h in doc.headings if h.start <= max(c.start, 0) or h.start < c.end]
        assert c.heading_path[0] == "Guide"
        assert set(c.heading_path) <= {h.title for h in enclosing}
        if c.text.startswith("### "):
            assert c.heading_path[-1] == c.text[4 : c.text.index("\n")]


def test_a_title_right_above_a_section_joins_its_chunk(counter: TokenCounter) -> None:
    text = "# Manual\n\n## Install\n\nRun the installer and follow the prompts."
    doc = ExtractedDocument(
        text,
        "markdown",
        headings=(Heading(1, "Manual", 2), Heading(2, "Install", text.index("Install"))),
    )
    (chunk,) = chunk_document(doc, counter=counter)
    assert chunk.text == text
    assert chunk.heading_path == ("Manual", "Install")


def test_parsed_markdown_file_chunks_by_section(
    files: dict[str, Path], counter: TokenCounter
) -> None:
    doc = parse_file(files["markdown"], max_bytes=10**6)
    chunks = chunk_document(doc, counter=counter)
    check_invariants(doc, chunks, counter, 200)
    by_text = {c.heading_path: c.text for c in chunks}
    assert "Water the beds on Tuesdays." in by_text[("Garden guide", "Watering")]
    assert by_text[("Setext title",)] == "Setext title\n============\n\nThe end."


# --------------------------------------------------------------------------- pages


def test_chunks_stay_on_their_page(tmp_path: Path, counter: TokenCounter) -> None:
    rng = random.Random(10)
    pages = []
    for _ in range(4):
        lines = []
        for _ in range(30):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(9)))
        pages.append(lines)
    doc = parse_file(make_pdf(tmp_path / "pages.pdf", pages), max_bytes=10**7)
    assert len(doc.pages) == 4
    chunks = chunk_document(doc, chunk_tokens=80, overlap_tokens=20, counter=counter)
    check_invariants(doc, chunks, counter, 80)
    assert {c.page for c in chunks} == {1, 2, 3, 4}
    for c in chunks:
        assert c.page is not None
        page = doc.pages[c.page - 1]
        assert page.start <= c.start and c.end <= page.end


def test_page_is_the_page_holding_the_start(counter: TokenCounter) -> None:
    text = "one two three\n\nfour five six"
    doc = ExtractedDocument(text, "pdf", pages=(PageSpan(1, 0, 13), PageSpan(2, 15, 28)))
    chunks = chunk_document(doc, counter=counter)
    assert [(c.text, c.page) for c in chunks] == [("one two three", 1), ("four five six", 2)]


# --------------------------------------------------------------------------- the model window


def test_chunks_fit_the_model_window_with_special_tokens(python_docs: Path) -> None:
    from tokenizers import Tokenizer

    path = default_tokenizer_file()
    assert path is not None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    counter = TokenCounter()
    for page in ("library/stdtypes.html", "library/codecs.html"):
        doc = parse_file(python_docs / page, max_bytes=10**8)
        chunks = chunk_document(doc, chunk_tokens=256, overlap_tokens=40, counter=counter)
        check_invariants(doc, chunks, counter, 254)
        lengths = [len(e.ids) for e in tokenizer.encode_batch([c.text for c in chunks])]
        assert max(lengths) <= 256  # [CLS] + text + [SEP]


def test_python_docs_chunks_are_well_formed(python_docs: Path, counter: TokenCounter) -> None:
    doc = parse_file(python_docs / "library" / "functools.html", max_bytes=10**8)
    chunks = chunk_document(doc, counter=counter)
    check_invariants(doc, chunks, counter, 200)
    assert chunks[0].heading_path == (doc.headings[0].title,)
    partial = [c for c in chunks if c.heading_path[-1:] == ("partial Objects",)]
    assert partial and partial[0].text.startswith("partial Objects")


def test_heuristic_counter_keeps_a_margin() -> None:
    counter = TokenCounter(heuristic=True)
    rng = random.Random(11)
    doc = ExtractedDocument(sentences(rng, 300), "text")
    chunks = chunk_document(doc, chunk_tokens=254, overlap_tokens=30, counter=counter)
    check_invariants(doc, chunks, counter, 203)


def test_a_heading_with_text_under_it_is_not_merged_into_the_next_section(
    counter: TokenCounter,
) -> None:
    text = "# Manual\nRead this first.\n\n## Install\n\nRun the installer."
    doc = ExtractedDocument(
        text,
        "markdown",
        headings=(Heading(1, "Manual", 2), Heading(2, "Install", text.index("Install"))),
    )
    chunks = chunk_document(doc, counter=counter)
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("# Manual\nRead this first.", ("Manual",)),
        ("## Install\n\nRun the installer.", ("Manual", "Install")),
    ]


def test_a_long_paragraph_under_a_heading_shares_its_first_chunk(
    counter: TokenCounter,
) -> None:
    rng = random.Random(12)
    body = sentences(rng, 60)
    text = "## Storms\n\n" + body
    doc = ExtractedDocument(text, "markdown", headings=(Heading(2, "Storms", 3),))
    chunks = chunk_document(doc, chunk_tokens=100, overlap_tokens=20, counter=counter)
    check_invariants(doc, chunks, counter, 100)
    assert chunks[0].text.startswith("## Storms\n\n")
    assert chunks[0].token_count > 60
    assert all(c.heading_path == ("Storms",) for c in chunks)
