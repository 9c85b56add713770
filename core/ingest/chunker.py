"""Cut an ``ExtractedDocument`` into chunks that follow its structure.

The text is split into *blocks*: blank-line paragraphs, cut again where a
heading's line starts and where a page starts. Blocks are grouped into
*segments* that a chunk never crosses: a heading of level 1 or 2 and a new page
start a new segment. Within a segment, whole blocks are packed greedily up to
the token bound; a heading of level 3 or deeper starts a new chunk once the
current one is half full. A chunk that holds only headings (a title right above
a section heading) carries on into the next segment on the same page rather
than standing alone.

A block over the bound is cut at the last sentence end (or line break) that
fits, if that keeps at least a third of the bound, else at the last whitespace;
only a single "word" longer than the bound is cut inside, at a token boundary.

When a chunk ends because it is full, the next one in the same segment starts
with an overlap: the trailing sentences of the previous chunk, or its trailing
words when no whole sentence fits, up to ``overlap_tokens``. There is no overlap
across a heading or a page.

Every chunk satisfies ``text == doc.text[start:end]``, starts and ends on
non-whitespace, and has ``token_count <= min(chunk_tokens, 254)`` as counted by
the ``TokenCounter`` (254 + [CLS] + [SEP] = the model's 256-token window; with
the heuristic counter the cap is 203, a 20% margin).
``page`` is the page holding ``start``; ``heading_path`` the titles of the
headings enclosing the chunk's first non-heading block.

Cost is linear: each block is tokenized once (in batches); an oversized block
is tokenized again in windows; overlaps tokenize a short tail.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from core.ingest.tokens import MODEL_MAX_TOKENS, SPECIAL_TOKENS, TokenCounter
from core.types import ChunkDraft, ExtractedDocument, Heading

__all__ = ["chunk_document"]

_PARAGRAPH_BREAK_RE = re.compile(r"\n[^\S\n]*\n")
_NON_SPACE_RE = re.compile(r"\S")
_SPACE_RE = re.compile(r"\s+")
_WORD_WINDOW = 65536  # characters of an oversized block counted at a time
_COUNT_BATCH = 2048
_DEFAULT_COUNTER: TokenCounter | None = None


@dataclass(slots=True)
class _Block:
    start: int
    end: int
    heading_level: int  # > 0 if the block begins with a heading
    heading_only: bool  # the block is nothing but that heading
    path: tuple[str, ...]
    page: int | None
    segment: int


@dataclass(slots=True)
class _Unit:
    """A span packed as a whole: a block, or a piece of an oversized block."""

    start: int
    end: int
    tokens: int
    block: _Block
    first_of_block: bool


def chunk_document(
    doc: ExtractedDocument,
    *,
    chunk_tokens: int = 200,
    overlap_tokens: int = 30,
    counter: TokenCounter | None = None,
) -> list[ChunkDraft]:
    """Chunks of ``doc`` in text order (see the module docstring for the rules)."""
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be positive")
    if counter is None:
        counter = _default_counter()
    budget = min(chunk_tokens, MODEL_MAX_TOKENS - SPECIAL_TOKENS)
    if not counter.exact:  # the heuristic can undercount odd text: keep a margin
        budget = min(budget, (MODEL_MAX_TOKENS - SPECIAL_TOKENS) * 4 // 5)
    overlap = max(0, min(overlap_tokens, budget // 2))
    text = doc.text
    blocks = _blocks(doc)
    if not blocks:
        return []
    units = _units(text, blocks, budget, overlap, counter)
    return _pack(text, units, budget, overlap, counter)


def _default_counter() -> TokenCounter:
    global _DEFAULT_COUNTER
    if _DEFAULT_COUNTER is None:
        _DEFAULT_COUNTER = TokenCounter()
    return _DEFAULT_COUNTER


# --------------------------------------------------------------------------- blocks


def _strip(text: str, a: int, b: int) -> tuple[int, int] | None:
    m = _NON_SPACE_RE.search(text, a, b)
    if m is None:
        return None
    start = m.start()
    end = start + len(text[start:b].rstrip())
    return start, end


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _blocks(doc: ExtractedDocument) -> list[_Block]:
    text = doc.text
    n = len(text)
    headings = sorted(
        (h for h in doc.headings if 0 <= h.start < n), key=lambda h: (h.start, h.level)
    )
    pages = sorted(doc.pages, key=lambda p: p.start)
    page_starts = [p.start for p in pages]

    # Cut points inside paragraphs: where a heading's line starts, where a page starts.
    cuts = sorted(
        {_line_start(text, h.start) for h in headings} | {p.start for p in pages if p.start > 0}
    )

    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _PARAGRAPH_BREAK_RE.finditer(text):
        _add_spans(text, pos, m.start(), cuts, spans)
        pos = m.end()
    _add_spans(text, pos, n, cuts, spans)

    starts = [s for s, _ in spans]
    heading_at: dict[int, Heading] = {}
    for h in headings:
        i = bisect.bisect_right(starts, h.start) - 1
        if i >= 0 and h.start < spans[i][1] and i not in heading_at:
            heading_at[i] = h

    blocks: list[_Block] = []
    stack: list[Heading] = []
    hi = 0
    segment = 0
    previous_page: int | None = None
    for i, (start, end) in enumerate(spans):
        while hi < len(headings) and headings[hi].start < end:
            h = headings[hi]
            while stack and stack[-1].level >= h.level:
                stack.pop()
            stack.append(h)
            hi += 1
        page = _page_at(pages, page_starts, start)
        heading = heading_at.get(i)
        level = heading.level if heading is not None else 0
        only = heading is not None and _is_heading_only(text, heading, end)
        if blocks and (0 < level <= 2 or page != previous_page):
            segment += 1
        previous_page = page
        path = tuple(h.title for h in stack)
        blocks.append(_Block(start, end, level, only, path, page, segment))
    return blocks


_UNDERLINE_RE = re.compile(r"\s*[=-]+\s*")


def _is_heading_only(text: str, heading: Heading, block_end: int) -> bool:
    """Does the block ending at ``block_end`` hold only ``heading`` (and a setext underline)?"""
    line_end = text.find("\n", heading.start, block_end)
    if line_end < 0:
        return True
    return _UNDERLINE_RE.fullmatch(text, line_end, block_end) is not None


def _add_spans(text: str, a: int, b: int, cuts: Sequence[int], out: list[tuple[int, int]]) -> None:
    i = bisect.bisect_right(cuts, a)
    pos = a
    while i < len(cuts) and cuts[i] < b:
        stripped = _strip(text, pos, cuts[i])
        if stripped is not None:
            out.append(stripped)
        pos = cuts[i]
        i += 1
    stripped = _strip(text, pos, b)
    if stripped is not None:
        out.append(stripped)


def _page_at(pages: Sequence[object], page_starts: list[int], pos: int) -> int | None:
    if not page_starts:
        return None
    i = bisect.bisect_right(page_starts, pos) - 1
    page = pages[max(i, 0)]
    return int(page.number)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- units


def _units(
    text: str, blocks: list[_Block], budget: int, overlap: int, counter: TokenCounter
) -> list[_Unit]:
    units: list[_Unit] = []
    for first in range(0, len(blocks), _COUNT_BATCH):
        batch = blocks[first : first + _COUNT_BATCH]
        counts = counter.count_batch([text[b.start : b.end] for b in batch])
        for block, tokens in zip(batch, counts, strict=True):
            if tokens <= budget:
                units.append(_Unit(block.start, block.end, tokens, block, True))
                continue
            # Pieces leave room for the overlap that will precede them; right under
            # its heading, the first piece shares a chunk with the heading instead.
            piece_budget = budget - overlap
            first_budget = piece_budget
            if units:
                previous = units[-1]
                if (
                    previous.block.heading_only
                    and previous.block.segment == block.segment
                    and previous.tokens < budget // 2
                ):
                    first_budget = budget - previous.tokens
            pieces = _split_oversized(
                text, block.start, block.end, piece_budget, counter, first_budget
            )
            for k, (s, e, t) in enumerate(pieces):
                units.append(_Unit(s, e, t, block, k == 0))
    return units


def _iter_words(text: str, a: int, b: int, counter: TokenCounter) -> Iterator[tuple[int, int, int]]:
    """``(start, end, tokens)`` of the words of ``text[a:b]``, counted window by window."""
    pos = a
    while pos < b:
        end = min(b, pos + _WORD_WINDOW)
        if end < b:  # never end a window inside a word
            m = _SPACE_RE.search(text, end, b)
            end = m.start() if m else b
        for s, e, t in counter.word_counts(text[pos:end]):
            yield pos + s, pos + e, t
        pos = end


def _split_oversized(
    text: str, a: int, b: int, budget: int, counter: TokenCounter, first_budget: int
) -> list[tuple[int, int, int]]:
    """Cut ``text[a:b]`` into pieces of at most ``budget`` tokens (see module docstring).

    Pieces end at whitespace, so their counts add up exactly; only a single word
    longer than the bound is cut inside (``_split_word``).
    """
    pieces: list[tuple[int, int, int]] = []
    bound = first_budget
    words: list[tuple[int, int, int]] = []  # the words of the piece being built
    tokens = 0
    for word in _iter_words(text, a, b, counter):
        t = word[2]
        if t > budget:
            if words:
                pieces.append((words[0][0], words[-1][1], tokens))
                words, tokens, bound = [], 0, budget
            pieces.extend(_split_word(text, word[0], word[1], budget, counter))
            continue
        while words and tokens + t > bound:
            keep = _cut_index(text, words, bound)
            kept = sum(w[2] for w in words[:keep])
            pieces.append((words[0][0], words[keep - 1][1], kept))
            words, tokens, bound = words[keep:], tokens - kept, budget
        words.append(word)
        tokens += t
    if words:
        pieces.append((words[0][0], words[-1][1], tokens))
    return pieces


def _cut_index(text: str, words: list[tuple[int, int, int]], bound: int) -> int:
    """How many of ``words`` the piece keeps: up to the last sentence end if that
    keeps a third of ``bound``, else all of them."""
    cumulative = list(itertools.accumulate(w[2] for w in words))
    minimum = max(1, bound // 3)
    for j in range(len(words) - 1, 0, -1):
        if cumulative[j - 1] < minimum:
            break
        if _starts_sentence(text, words[j][0]):
            return j
    return len(words)


_SENTENCE_BEFORE_RE = re.compile(r"(?:[.!?…][\"'”’»)\]]*\s+|[。！？][」』”’）]*\s*|\n\s*)$")


def _starts_sentence(text: str, pos: int) -> bool:
    """Does a sentence (or a line) start at ``pos``, judging by the text just before it?"""
    return _SENTENCE_BEFORE_RE.search(text, max(0, pos - 16), pos) is not None


def _split_word(
    text: str, a: int, b: int, budget: int, counter: TokenCounter
) -> list[tuple[int, int, int]]:
    """Cut one whitespace-free run longer than ``budget`` tokens at token boundaries.

    The cut prefers a place where the pre-tokenizer splits anyway (next to
    punctuation or CJK), so the pieces' counts add up; each piece is recounted
    alone and halved until it fits.
    """
    pieces: list[tuple[int, int, int]] = []
    pos = a
    window = budget * 16
    while pos < b:
        end = min(b, pos + window)
        starts = counter.token_starts(text[pos:end])
        if len(starts) <= budget:
            if end < b:
                window *= 2
                continue
            pieces.append((pos, b, counter.count(text[pos:b])))
            break
        cut = pos + starts[budget]
        for k in range(budget, max(budget // 2, 1), -1):
            c = pos + starts[k]
            if not (text[c - 1].isalnum() and text[c].isalnum()):
                cut = c
                break
        tokens = counter.count(text[pos:cut])
        while tokens > budget and cut - pos > 1:
            cut = pos + (cut - pos) // 2
            tokens = counter.count(text[pos:cut])
        pieces.append((pos, cut, tokens))
        pos = cut
    return pieces


# --------------------------------------------------------------------------- packing


def _pack(
    text: str, units: list[_Unit], budget: int, overlap: int, counter: TokenCounter
) -> list[ChunkDraft]:
    chunks: list[ChunkDraft] = []
    current: list[_Unit] = []
    tokens = 0
    start = 0  # may lie before current[0].start when the chunk opens with an overlap
    start_tokens = 0  # tokens of the overlap

    def emit() -> None:
        body = next((u for u in current if not u.block.heading_only), current[-1])
        chunks.append(
            ChunkDraft(
                ordinal=len(chunks),
                text=text[start : current[-1].end],
                start=start,
                end=current[-1].end,
                page=current[0].block.page,
                heading_path=body.block.path,
                token_count=tokens,
            )
        )

    for unit in units:
        if not current:
            current, tokens, start, start_tokens = [unit], unit.tokens, unit.start, 0
            continue
        last = current[-1].block
        block = unit.block
        fits = tokens + unit.tokens <= budget
        glued = not text[unit.start - 1].isspace()  # a piece of a giant word
        if block.segment != last.segment:
            only_headings = all(u.block.heading_only for u in current)
            if only_headings and fits and block.page == last.page:
                current.append(unit)
                tokens += unit.tokens
                continue
            emit()
            current, tokens, start, start_tokens = [unit], unit.tokens, unit.start, 0
            continue
        at_heading = unit.first_of_block and block.heading_level > 0
        half_full = tokens - start_tokens >= budget // 2
        if glued or (at_heading and block.heading_level >= 3 and half_full):
            emit()
            current, tokens, start, start_tokens = [unit], unit.tokens, unit.start, 0
            continue
        if fits:
            current.append(unit)
            tokens += unit.tokens
            continue
        # Full: the next chunk opens with the tail of this one, unless it opens a heading.
        previous_start, previous_end = start, current[-1].end
        emit()
        room = 0 if at_heading else min(overlap, budget - unit.tokens)
        tail_start, tail_tokens = unit.start, 0
        if room > 0:
            tail_start, tail_tokens = _overlap_tail(
                text, previous_start, previous_end, room, counter
            )
        current = [unit]
        start = tail_start if tail_tokens else unit.start
        start_tokens = tail_tokens
        tokens = tail_tokens + unit.tokens
    if current:
        emit()
    return chunks


def _overlap_tail(
    text: str, chunk_start: int, chunk_end: int, room: int, counter: TokenCounter
) -> tuple[int, int]:
    """Start and token count of the longest tail of a chunk within ``room`` tokens.

    Whole trailing sentences are preferred; when they give less than half of
    ``room``, trailing words are taken instead. ``(chunk_end, 0)`` if none fit.
    """
    a = max(chunk_start, chunk_end - max(64, room * 12))
    if a > chunk_start:  # begin the window at a word start
        m = _SPACE_RE.search(text, a, chunk_end)
        if m is None:
            return chunk_end, 0
        a = m.end()
    words = [(a + s, t) for s, _e, t in counter.word_counts(text[a:chunk_end])]
    total = 0
    word_tail: tuple[int, int] = (chunk_end, 0)
    sentence_tail: tuple[int, int] = (chunk_end, 0)
    for s, t in reversed(words):
        if total + t > room or s <= chunk_start:
            break
        total += t
        word_tail = (s, total)
        if _starts_sentence(text, s):
            sentence_tail = (s, total)
    if sentence_tail[1] * 2 >= room:
        return sentence_tail
    return word_tail
