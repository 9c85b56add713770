"""Sentences with offsets and the terms that carry a claim (pure functions).

One splitter and one analyser serve every comparison between an answer and its
passages (the evidence check, the quote picker, the extractive provider), so an
answer sentence and a passage sentence are always cut and read the same way.

``split_sentences`` returns character spans, never copies, so a quote can be cut
out of the passage itself::

    >>> text = "Call os.path.join() first. Python 3.11.2 added it [2]. Done."
    >>> [text[a:b] for a, b in split_sentences(text)]
    ['Call os.path.join() first.', 'Python 3.11.2 added it [2].', 'Done.']

``analyze`` reads one sentence into ``Terms``: stemmed content words (a generic
English stop-word list, never a domain word), and the *hard* terms a claim
cannot change without becoming another claim: numbers (``47``, ``3.5``,
``12%``, ``47 minute``), times (``15:30``), dates (``2024-03-05``, ``tuesday``)
and identifiers (``os.path.join``, ``lru_cache``, ``--force``, ``src/app.py``).
It also records which term stands in the scope of a negation (the next content
term: "not encrypted by default" negates "encrypted"), so "encrypted" is not read
as support for "not encrypted".

Known limits: no coreference ("it", "she"), no synonyms (the embedding side of
the evidence check covers paraphrase), number words only up to ninety-nine, and a
slash date (``05/03/2024``) is kept as written because its order is ambiguous.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from core.language import NEGATIONS
from core.language import stem as _light_stem
from core.retrieval.text import ENGLISH_STOP_WORDS

__all__ = [
    "ANSWER_DROP",
    "MARKER",
    "QUESTION_DROP",
    "STOP_WORDS",
    "LocalIdf",
    "Terms",
    "analyze",
    "marker_numbers",
    "split_sentences",
    "strip_markers",
]

# --------------------------------------------------------------------------- markers

# A citation marker: [3], [1, 2], [1-3]. Not an index such as a[0] (a word before it).
MARKER = re.compile(r"(?<!\w)\[\s*\d{1,3}(?:\s*(?:[,;]|[-–])\s*\d{1,3})*\s*\]")
_MARKER_WITH_SPACE = re.compile(r"[ \t]*" + MARKER.pattern)
_MARKER_RANGE = re.compile(r"(\d{1,3})\s*[-–]\s*(\d{1,3})|(\d{1,3})")


def marker_numbers(text: str) -> list[int]:
    """The marker numbers in ``text`` in order of first appearance ([1-3] is 1, 2, 3)."""
    out: list[int] = []
    for m in MARKER.finditer(text):
        for r in _MARKER_RANGE.finditer(m.group()):
            if r.group(3) is not None:
                numbers = [int(r.group(3))]
            else:
                lo, hi = int(r.group(1)), int(r.group(2))
                numbers = list(range(lo, hi + 1)) if 0 < hi - lo < 20 else [lo, hi]
            out.extend(n for n in numbers if n not in out)
    return out


def strip_markers(text: str) -> str:
    """``text`` without its ``[n]`` markers (and the spaces in front of them)."""
    return _MARKER_WITH_SPACE.sub("", text) if "[" in text else text


# --------------------------------------------------------------------------- sentences

# A list item or heading at the start of a line: "- ", "* ", "• ", "1. ", "2) ",
# "a) ", "(iv) ", "## ", "> ". A line that starts one is a sentence of its own.
_LIST_ITEM = re.compile(
    r"[ \t]*(?:[-*+•·‣▪◦–—]|\d{1,3}[.)]|[a-z][.)]|[A-Z]\)|\(\w{1,4}\)|#{1,6}|>)[ \t]+"
)
_FENCE = re.compile(r"[ \t]*(?:```|~~~|\|)")
_LINE_END = re.compile(r"[.!?:;…][\"'”’)]*$")
_TERMINAL = re.compile(r"[.!?…]+")
_CLOSERS = re.compile(r"[\"'”’)]*(?:[ \t]*" + MARKER.pattern + r")*")
_SPACE = re.compile(r"\s+")
_MULTI_INITIAL = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_ENUMERATOR = re.compile(r"\d{1,3}|[ivxlc]{1,5}|[a-zA-Z]")
_HAS_ALNUM = re.compile(r"\w")
# Abbreviations after which a period never ends a sentence ...
_ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr st vs cf al approx ca e.g i.e viz resp".split())
# ... and those that do not end one when a number follows ("No. 5", "Fig. 2").
_BEFORE_NUMBER = frozenset("no nos fig figs eq eqs vol vols pp p sec ch ref art".split())


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _line_break(prev: str, nxt: str) -> bool:
    """Whether the newline between two non-blank lines ends a sentence."""
    if _LIST_ITEM.match(nxt) or _FENCE.match(nxt) or _FENCE.match(prev):
        return True
    if _LIST_ITEM.match(prev):  # a list item continues only on a deeper indented line
        return _indent(nxt) <= _indent(prev)
    body = strip_markers(prev).rstrip()
    if _LINE_END.search(body):
        return True
    if _indent(prev) >= 4 and _indent(nxt) >= 4:  # lines of an indented code block
        return True
    # A short line without final punctuation before a capitalised one is a heading
    # ("Island ferry timetable"); hard-wrapped prose lines are long.
    return len(body.split()) <= 6 and nxt.lstrip()[:1].isupper()


def _blocks(text: str) -> list[tuple[int, int]]:
    """Runs of lines that may form one sentence (soft-wrapped prose)."""
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    prev = ""
    pos = 0
    n = len(text)
    while pos <= n:
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl
        line = text[pos:end]
        if not line.strip():
            if start is not None:
                blocks.append((start, pos - 1))
                start = None
        elif start is None:
            start = pos
        elif _line_break(prev, line):
            blocks.append((start, pos - 1))
            start = pos
        if line.strip():
            prev = line
        if nl < 0:
            break
        pos = nl + 1
    if start is not None:
        blocks.append((start, n))
    return blocks


def _keeps_period(text: str, piece_start: int, dot: int, next_char: str) -> bool:
    """True when the period at ``dot`` belongs to an abbreviation or a list number."""
    word_start = dot
    while word_start > piece_start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("([\"'“‘")
    low = word.lower()
    if low in _ABBREVIATIONS or _MULTI_INITIAL.fullmatch(word):
        return True
    if low in _BEFORE_NUMBER and next_char.isdigit():
        return True
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith"
        return True
    before = text[piece_start:word_start].rstrip()
    return bool(_ENUMERATOR.fullmatch(word)) and (not before or before.endswith(":"))


def _split_block(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    piece = start
    for m in _TERMINAL.finditer(text, start, end):
        p, q = m.span()
        stop = _CLOSERS.match(text, q, end)
        e = stop.end() if stop else q
        gap = _SPACE.match(text, e, end)
        if gap is None or gap.end() >= end:
            continue  # inside a token (3.11.2, os.path) or at the end of the block
        nxt = text[gap.end()]
        if nxt.islower():
            continue
        if text[p:q] == "." and _keeps_period(text, piece, p, nxt):
            continue
        spans.append((piece, e))
        piece = gap.end()
    spans.append((piece, end))
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    item = _LIST_ITEM.match(text, start, end)
    if item is not None and item.end() < end:
        start = item.end()
    if not _HAS_ALNUM.search(text, start, end):
        return None
    return start, end


def split_sentences(text: str) -> list[tuple[int, int]]:
    """The sentences of ``text`` as ``(start, end)`` spans, in order.

    Blank lines, list items and headings end a sentence; a soft-wrapped line does
    not. A period ends one only before whitespace and a character that is not
    lower case, and not after an abbreviation (``e.g.``, ``Dr.``), an initial or a
    list number, so ``os.path.join()``, ``3.11.2`` and ``example.com`` stay whole.
    Citation markers after the final punctuation (``... in 1874. [1]``) belong to
    the sentence they follow. Spans exclude surrounding whitespace and a leading
    bullet or list number; a piece without a letter or digit is no sentence.
    """
    spans: list[tuple[int, int]] = []
    for b_start, b_end in _blocks(text):
        for s, e in _split_block(text, b_start, b_end):
            trimmed = _trim(text, s, e)
            if trimmed is None:
                continue
            if spans and not strip_markers(text[trimmed[0] : trimmed[1]]).strip(" .,;:"):
                spans[-1] = (spans[-1][0], trimmed[1])  # a lone marker: the sentence before
                continue
            spans.append(trimmed)
    return spans


# --------------------------------------------------------------------------- terms

# Generic English only: no word of a product, a domain or a data set belongs here.
STOP_WORDS: frozenset[str] = ENGLISH_STOP_WORDS | frozenset(
    """also may might must shall can could would should one ones yes etc however therefore
    thus hence via per like just really actually please let us every many much""".split()
)
# Words an answer uses to talk about itself or its sources ("Based on the documents",
# "I hope this helps"): never evidence of a claim.
ANSWER_DROP: frozenset[str] = frozenset(
    """based according document documents passage passages context contexts provided
    information info answer answers question questions hope helps help helpful happy glad
    note summary summarize summarise mention mentions mentioned state states stated say says
    said source sources excerpt excerpts text texts ask asks asked certainly sure
    indicate indicates indicated describe describes described refer refers referred
    explain explains explained following above below here given know find found""".split()
)
# Words that shape a question rather than name what it is about.
QUESTION_DROP: frozenset[str] = ANSWER_DROP | frozenset(
    """tell show find get got way ways often long kind type sort happen happens happened
    use used uses using know""".split()
)

_NEGATIONS = frozenset("not no never none nothing nobody nowhere neither nor without".split())
_SCOPE_ENDS = frozenset("but however although though whereas while except unless yet".split())
# A negation reaches the next content term ("not encrypted by default" negates
# "encrypted", not "default"), never past punctuation or "but".
_SCOPE_TERMS = 1

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        """zero _ two three four five six seven eight nine ten eleven twelve thirteen
        fourteen fifteen sixteen seventeen eighteen nineteen""".split()
    )
    if w != "_"
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_ONES = {w: i + 1 for i, w in enumerate("one two three four five six seven eight nine".split())}
_UNITS = {
    **dict.fromkeys(["ms", "millisecond", "milliseconds"], "millisecond"),
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], "second"),
    **dict.fromkeys(["min", "mins", "minute", "minutes"], "minute"),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "hour"),
    **dict.fromkeys(["day", "days"], "day"),
    **dict.fromkeys(["week", "weeks"], "week"),
    **dict.fromkeys(["month", "months"], "month"),
    **dict.fromkeys(["yr", "yrs", "year", "years"], "year"),
}
_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_MONTH_NUMBER = (
    {m: i + 1 for i, m in enumerate(_MONTHS)}
    | {m[:3]: i + 1 for i, m in enumerate(_MONTHS)}
    | {"sept": 9}
)
_WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())

_MONTH_RE = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_TOKEN = re.compile(
    r"""
    (?P<w>(?<![\w.\-/])[A-Za-z][a-z]+(?![\w(/\-]|[.:][\w/])(?!\s+\d))  # plain word: fast path
   |(?P<url>https?://[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])
   |`(?P<code>[^`\n]+)`
   |(?P<iso>(?<!\d)\d{4}-\d{2}-\d{2})(?!\d)
   |(?P<slash>(?<![\d/])\d{1,2}/\d{1,2}/\d{2,4})(?![\d/])
   |(?P<mdate>(?<!\w)(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m1>MONTH)
            (?:,?\s+(?P<y1>\d{4}))?
        |(?P<m2>MONTH)\s+(?P<d2>\d{1,2})(?:st|nd|rd|th)?(?!\d)(?:,?\s+(?P<y2>\d{4}))?
        |(?P<m3>MONTH)\s+(?P<y3>\d{4}))(?!\w))
   |(?P<time>(?<![\d.:])(?P<th>\d{1,2})(?::(?P<tm>\d{2})(?::(?P<ts>\d{2}))?)?
        (?(tm)(?:\s?(?P<ap1>[ap])\.?m\b\.?)?|\s?(?P<ap2>[ap])\.?m\b\.?))
   |(?P<version>(?<![\w.])(?:[vV]\d+(?:\.\d+)+|\d+(?:\.\d+){2,})(?!\w))
   |(?P<flag>(?<![\w-])--?[A-Za-z][\w-]*)
   |(?P<path>(?<![\w/])(?:~|\.{1,2})?(?:/[\w.-]*\w)+/?
        |(?<!\w)[A-Za-z]:\\[\w.\\-]+
        |(?<![\w/])[\w-]+(?:/[\w-]+)*/[\w-]*\.[A-Za-z]\w*)
   |(?P<ident>(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\([^()\s]*\))?
        |(?<![\w.])[A-Za-z_]\w*\([^()\s]*\))
   |(?P<num>(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?)
        (?:(?P<ord>st|nd|rd|th)|\s?(?P<pct>%|(?i:per\s?cent)\b))?(?!\w)
   |(?P<tens>(?i:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)-(?P<ones>[a-z]+))
   |(?P<tok>\w+)
   |(?P<punct>[,;:!?()\[\]]|\.(?!\w))
   |(?P<hyphen>-)
    """.replace("MONTH", _MONTH_RE),
    re.VERBOSE,
)
# A hyphenated compound in prose: "aa-unconfined", "ssh-keygen", "built-in".
_HYPHENATED = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+(?![\w-])")
_CONTRACTIONS = (
    *NEGATIONS,
    (re.compile(r"\bno\s+(?:longer|more)\b", re.I), "not"),
    (re.compile(r"\bnot\s+only\b", re.I), "only"),
    (re.compile(r"(?<=\w)[’']s\b", re.I), ""),  # possessive or "it's": drop the s
    (re.compile(r"(?<=\w)[’'](?:re|ve|ll|d|m)\b", re.I), ""),
)
_CONTRACTION_HINT = re.compile(r"['’]|\bcannot\b|\bno\s+(?:longer|more)\b|\bnot\s+only\b", re.I)
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")
_CAMEL_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_IDENT_PARTS = re.compile(r"[^\W_]+")
# Plain words that need more than a stop-word check and a stem.
_SPECIAL_WORDS = frozenset(
    [*_NEGATIONS, *_SCOPE_ENDS, *_NUMBER_WORDS, *_TENS, *_WEEKDAYS, *_MONTH_NUMBER]
    + [d + "s" for d in _WEEKDAYS]
)
# The shared light stemmer (core.language) (plural, -ing, -ed, final -e), memoised: one
# stemmer for every comparison of claims, rather than a third copy.
stem = lru_cache(maxsize=1 << 16)(_light_stem)


@lru_cache(maxsize=64)
def _stops(drop: frozenset[str]) -> frozenset[str]:
    return STOP_WORDS | drop


_NUMBER_UNIT = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")


@dataclass(frozen=True, slots=True)
class Terms:
    """What one sentence says, as comparable terms.

    ``pos``/``neg``: content terms (stemmed words and hard terms) seen outside or
    inside the scope of a negation. ``hard``: the numbers, dates and identifiers
    as written (normalised); a span supports the sentence only if it ``match``-es
    every one. ``match``: every term a span offers, including what its hard terms
    imply (``47%`` offers ``47``; ``5 March 2024`` offers ``2024`` and ``march``).
    """

    pos: frozenset[str]
    neg: frozenset[str]
    hard: frozenset[str]
    match: frozenset[str]

    @property
    def content(self) -> frozenset[str]:
        return self.pos | self.neg


@dataclass(slots=True)
class _Builder:
    pos: set[str]
    neg: set[str]
    hard: set[str]
    match: set[str]
    stops: frozenset[str]  # STOP_WORDS and the caller's extra words
    scope: int = 0  # content terms left in the current negation scope
    added: int = 0  # terms added so far (a token that adds one uses up the scope)

    def add(self, term: str, *, hard: bool = False, implied: Iterable[str] = ()) -> None:
        self.added += 1
        (self.neg if self.scope > 0 else self.pos).add(term)
        self.match.add(term)
        self.match.update(implied)
        if hard:
            self.hard.add(term)

    def word(self, word: str) -> None:
        if word in self.stops or len(word) < 2:
            return
        self.add(stem(word))

    def consumed(self, before: int) -> None:
        """A token was read: if it added a term, the negation scope shrinks."""
        if self.scope > 0 and self.added > before:
            self.scope -= 1

    def terms(self) -> Terms:
        return Terms(
            frozenset(self.pos), frozenset(self.neg), frozenset(self.hard), frozenset(self.match)
        )


def _date(day: str | None, month: str | None, year: str | None) -> tuple[str, list[str]]:
    """The normalised date and what it implies (year, month name, day)."""
    name = ""
    mm = 0
    if month is not None:
        key = month.lower().rstrip(".")
        mm = _MONTH_NUMBER.get(key, _MONTH_NUMBER.get(key[:3], 0))
        name = _MONTHS[mm - 1] if mm else ""
    implied = [x for x in (name, year, str(int(day)) if day else None) if x]
    if year and day:
        implied += [f"{year}-{mm:02d}", f"{mm:02d}-{int(day):02d}"]
        return f"{year}-{mm:02d}-{int(day):02d}", implied
    if year:
        return f"{year}-{mm:02d}", implied
    return f"{mm:02d}-{int(day or 0):02d}", implied


def _time(m: re.Match[str]) -> str:
    hour = int(m.group("th"))
    minute = m.group("tm") or "00"
    ap = (m.group("ap1") or m.group("ap2") or "").lower()
    if ap == "p" and hour < 12:
        hour += 12
    elif ap == "a" and hour == 12:
        hour = 0
    seconds = f":{m.group('ts')}" if m.group("ts") else ""
    return f"{hour}:{minute}{seconds}"


def _identifier(raw: str, b: _Builder) -> None:
    """An identifier is one hard term; its parts are words, its tails are matches."""
    ident = raw.lower().rstrip("/")
    if ident.endswith(")") and "(" in ident:
        ident = ident[: ident.index("(")]
    tails = [ident[i + 1 :] for i, ch in enumerate(ident) if ch in "./\\" and i + 1 < len(ident)]
    b.add(ident, hard=True, implied=tails)
    for part in _IDENT_PARTS.findall(raw.split("(")[0]):
        pieces = _CAMEL_PARTS.findall(part) if _CAMEL.search(part) else [part]
        for piece in pieces:
            if not piece.isdigit():
                b.word(piece.lower())


def _token(raw: str, b: _Builder) -> str | None:
    """A ``\\w+`` run: an identifier, a number, a date word or a plain word.

    Returns the value of a number that a unit may still follow ("twelve hours").
    """
    low = raw.lower()
    if raw.isdigit():
        return raw
    if low in _NUMBER_WORDS:
        return _NUMBER_WORDS[low]
    if low in _TENS:
        return str(_TENS[low])
    if not raw.isalpha():
        joined = _NUMBER_UNIT.fullmatch(low)
        if joined is not None and joined.group(2) in _UNITS:  # 47min, 250ms
            b.add(
                f"{joined.group(1)} {_UNITS[joined.group(2)]}", hard=True, implied=[joined.group(1)]
            )
        else:
            _identifier(raw, b)
        return None
    if "_" in raw or _CAMEL.search(raw):
        _identifier(raw, b)
        return None
    day = low[:-1] if low.endswith("s") and low[:-1] in _WEEKDAYS else low
    if day in _WEEKDAYS:
        b.add(day, hard=True)
    elif low in _MONTH_NUMBER and len(low) > 3 and low != "may" and raw[0].isupper():
        b.add(low, hard=True)
    else:
        b.word(low)
    return None


def _analyze(text: str, drop: frozenset[str]) -> Terms:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = strip_markers(text)
    if _CONTRACTION_HINT.search(text):
        for pattern, repl in _CONTRACTIONS:
            text = pattern.sub(repl, text)
    stops = _stops(drop)
    b = _Builder(set(), set(), set(), set(), stops)
    pos, neg, match = b.pos, b.neg, b.match
    pending: tuple[str, int] | None = None  # a number a unit may follow: (value, end)
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "w" and pending is None:
            low = m.group().lower()
            if low not in _SPECIAL_WORDS:  # the common case, inlined: stop word or stem
                if low not in stops:
                    term = stem(low)
                    if b.scope > 0:
                        neg.add(term)
                        b.scope -= 1
                    else:
                        pos.add(term)
                    match.add(term)
                    b.added += 1
                continue
            kind = "tok"
        elif kind == "w":
            kind = "tok"
        if kind in ("ord", "pct"):
            kind = "num"
        raw = m.group()
        low = raw.lower()
        if kind == "hyphen":
            continue
        if pending is not None:
            value, end = pending
            pending = None
            before = b.added
            if kind == "tok" and low in _UNITS and text[end : m.start()] in ("", " ", "-"):
                b.add(f"{value} {_UNITS[low]}", hard=True, implied=[value])
                b.consumed(before)
                continue
            b.add(value, hard=True)
            b.consumed(before)
        if kind == "punct":
            b.scope = 0
            continue
        if kind == "tok" and low in _NEGATIONS:
            b.scope = _SCOPE_TERMS
            continue
        if kind == "tok" and low in _SCOPE_ENDS:
            b.scope = 0
            continue
        before = b.added
        if kind == "tok":
            number_word = _token(raw, b)
            if number_word is not None:
                pending = (number_word, m.end())
                continue
        elif kind == "num":
            number = m.group("num").replace(",", "")
            if m.group("pct"):
                b.add(number + "%", hard=True, implied=[number])
            else:
                pending = (number, m.end())
                continue
        elif kind == "tens":
            tens = _TENS[low.split("-")[0]]
            ones = _ONES.get(m.group("ones").lower())
            if ones is not None:
                pending = (str(tens + ones), m.end())
                continue
            b.add(str(tens), hard=True)
            b.word(m.group("ones").lower())
        elif kind == "version":
            b.add(low.lstrip("v"), hard=True)
        elif kind in ("url", "path", "flag", "ident", "code"):
            source = m.group("code").strip() if kind == "code" else raw
            parts = source.split("(")[0].split(".")
            if kind == "ident" and all(len(p) == 1 for p in parts):
                continue  # e.g, i.e, U.S: an abbreviation, not an identifier
            _identifier(source, b)
        elif kind == "iso":
            y, mo, d = raw.split("-")
            month = _MONTHS[int(mo) - 1] if 0 < int(mo) <= 12 else None
            value, implied = _date(d, month, y)
            b.add(value, hard=True, implied=implied)
        elif kind == "slash":
            parts = [str(int(x)) for x in raw.split("/")]
            b.add("/".join(parts), hard=True, implied=[parts[-1]] if len(parts[-1]) == 4 else [])
        elif kind == "mdate":
            day = m.group("d1") or m.group("d2")
            month = m.group("m1") or m.group("m2") or m.group("m3")
            year = m.group("y1") or m.group("y2") or m.group("y3")
            value, implied = _date(day, month, year)
            b.add(value, hard=True, implied=implied)
        elif kind == "time":
            b.add(_time(m), hard=True)
        b.consumed(before)
    if pending is not None:
        b.add(pending[0], hard=True)
    if "-" in text:
        # Prose splits "aa-unconfined" into its words, while the same name in a code
        # span ("`aa-unconfined`") is one identifier: a span that writes it in prose
        # still offers it whole.
        match.update(h.group().lower() for h in _HYPHENATED.finditer(text))
    return b.terms()


@lru_cache(maxsize=8192)
def analyze(text: str, drop: frozenset[str] = frozenset()) -> Terms:
    """The ``Terms`` of one sentence; ``drop`` removes more words than ``STOP_WORDS``.

    Cached: the same passages are read by the quote picker and by the evidence
    check of the answer that follows.
    """
    return _analyze(text, drop)


# --------------------------------------------------------------------------- rarity


@dataclass(frozen=True, slots=True)
class LocalIdf:
    """Rarity of a term among the sentences of the candidate passages.

    ``log(1 + (n + 1) / (df + 1))``: a term in every sentence weighs ``log 2``
    (~0.7), one in none weighs the most (~4 for 50 sentences). It is local on
    purpose: what makes a term telling is how rare it is among *these* passages,
    so a word the whole corpus repeats still counts when only one passage says it.
    """

    df: dict[str, int]
    n: int

    @classmethod
    def over(cls, term_sets: Iterable[frozenset[str]]) -> LocalIdf:
        df: Counter[str] = Counter()
        n = 0
        for terms in term_sets:
            df.update(terms)
            n += 1
        return cls(dict(df), n)

    def weight(self, term: str) -> float:
        return math.log(1.0 + (self.n + 1) / (self.df.get(term, 0) + 1))
