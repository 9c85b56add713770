"""The correctness guard of the semantic result cache (pure functions).

Embedding similarity is blind to the small words that change an answer: "enable"
and "disable dark mode" sit at cosine ~0.9, "status code 503" and "504" higher still.
So a cosine hit is only served when :func:`guard_check` finds that the two queries
agree on every *salient detail*:

========== =================================================================
negation   the count of negation cues (not, n't, no, never, without, ...)
number     numbers, versions, ordinals, number words ("three" == "3")
date       explicit dates, times, weekdays, months, today/tomorrow, seasons;
           and no clash of periods or units (daily/weekly, days/hours)
entity     capitalised words, acronyms, identifiers (``T14``), code tokens
           (``os.path``, ``--force``, ``f()``), quoted strings: each side's
           entities must occur in the other query (case-insensitively)
antonym    no word on one side whose opposite is on the other (a written list
           of contrast groups, plus un-/dis-/non-/de-/in- prefixes)
scope      the same quantifiers (all/every/each, any/some, only, both, ...)
           and no clash of audience or environment (admins/guests, staging/prod)
question   no clash of question kind (why/when/who/where vs the others;
           how many / how often / how long vs each other)
order      the same content words on the same side of a relation word
           ("X slower than Y", "A depends on B", "English to German")
========== =================================================================

Everything else (word choice, function words, word order elsewhere) is left to
the cosine threshold, so paraphrases still hit. Queries equal after
:func:`~core.cache.normalize.normalize_query` always pass.

:func:`salient_equivalent` is a stricter test (guard passes *and* the same content
words) that lets the service accept a slightly lower cosine; see ``service.py``.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from core.cache.normalize import normalize_query

__all__ = [
    "GuardVerdict",
    "SalientFeatures",
    "guard_check",
    "salient_equivalent",
    "salient_features",
    "stem",
]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """Whether a cached answer may be served, and if not, why (one sentence)."""

    allowed: bool
    reason: str | None = None
    category: str | None = None  # negation, number, date, entity, antonym, scope, ...


_ALLOWED = GuardVerdict(True)

# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<quoted>"[^"]+"|“[^”]+”|`[^`]+`|(?<![\w])'[^'\s][^']*[^'\s]'(?![\w]))
   |(?P<date>\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?
        |\d{1,2}:\d{2}(?:\s?[ap]m\b)?|\d{1,2}\s?[ap]m\b)
   |(?P<code>--?[A-Za-z][\w-]*
        |[A-Za-z_]\w*(?:(?:\.|::|->|/)[A-Za-z_]\w*)+(?:\(\))?
        |[A-Za-z_]\w*\(\)
        |\w*_\w+)
   |(?P<num>(?<![\w.])[vV]?\d+(?:,\d{3})*(?:\.\d+)*(?:st|nd|rd|th)?%?)
   |(?P<word>\w+(?:[-'’]\w+)*)
    """,
    re.VERBOSE,
)

_CONTRACTIONS = (
    (re.compile(r"\bcan[’']t\b", re.I), "can not"),
    (re.compile(r"\bwon[’']t\b", re.I), "will not"),
    (re.compile(r"\bshan[’']t\b", re.I), "shall not"),
    (re.compile(r"\bain[’']t\b", re.I), "is not"),
    (re.compile(r"\b(\w+)n[’']t\b", re.I), r"\1 not"),
    (re.compile(r"\bcannot\b", re.I), "can not"),
    (
        re.compile(r"\b(what|who|where|when|why|how|which|that|it|there|here|he|she)[’']s\b", re.I),
        r"\1 is",
    ),
    (re.compile(r"[’']re\b", re.I), " are"),
    (re.compile(r"[’']ve\b", re.I), " have"),
    (re.compile(r"[’']ll\b", re.I), " will"),
    (re.compile(r"[’']d\b", re.I), " would"),
    (re.compile(r"\bI[’']m\b"), "I am"),
    (re.compile(r"[’']s\b", re.I), ""),  # possessive: "Spain's" -> "Spain"
)

_JOIN_PREFIXES = frozenset({"non", "un", "dis", "de", "anti", "in", "im", "il", "ir"})


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # as written
    low: str
    kind: str  # quoted, date, code, num, word
    sentence_start: bool


def stem(word: str) -> str:
    """A deliberately light stemmer: plural, -ing, -ed and a final -e.

    It keeps comparatives (faster, earliest) intact because they carry meaning
    here, and it is applied identically to queries and to the word lists below.
    """
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    else:
        if len(w) > 3 and w.endswith("e"):
            w = w[:-1]
        return w
    if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _tokens(text: str) -> list[_Token]:
    text = unicodedata.normalize("NFKC", text).strip()
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    out: list[_Token] = []
    prev_end = 0
    first = True
    for m in _TOKEN.finditer(text):
        gap = text[prev_end : m.start()]
        starts = first or bool(re.search(r"[.?!:;]\s*$", gap))
        kind = m.lastgroup or "word"
        raw = m.group()
        if kind == "quoted":
            raw = raw[1:-1].strip()
        out.append(_Token(raw, raw.lower(), kind, starts))
        prev_end = m.end()
        first = False
    return out


# --------------------------------------------------------------------------- lexicon

_NEGATIONS = frozenset(
    {"not", "no", "never", "without", "none", "nothing", "nobody", "nowhere", "neither", "nor"}
)

_WH = {
    "what": "generic",
    "which": "generic",
    "how": "manner",
    "why": "reason",
    "when": "time",
    "who": "person",
    "whom": "person",
    "whose": "person",
    "where": "place",
}
_HOW_SUBCLASS = {
    "many": "quantity",
    "much": "quantity",
    "often": "frequency",
    "frequently": "frequency",
    "long": "duration",
    "old": "age",
    "far": "distance",
    "big": "size",
    "large": "size",
    "soon": "time",
}
_GENERIC_HINT = {
    "time": "time",
    "date": "time",
    "day": "time",
    "year": "time",
    "month": "time",
    "hour": "time",
    "reason": "reason",
    "cause": "reason",
    "place": "place",
    "location": "place",
    "person": "person",
}
# Question kinds that change the answer whenever one side has them and the other not.
_STRONG_WH = frozenset({"reason", "time", "person", "place"})

_NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "once": "1",
    "twice": "2",
    "half": "0.5",
}

_WEEKDAYS = (
    "monday tuesday wednesday thursday friday saturday sunday "
    "tue tues wed thu thur thurs fri weekend weekday"
).split()
_MONTHS = (
    "january february march april june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
).split()
_EXPLICIT_DATE_WORDS = frozenset(
    [
        *_WEEKDAYS,
        *_MONTHS,
        *"today tomorrow yesterday tonight spring summer autumn winter".split(),
        *"weekday weekend midnight noon".split(),
    ]
)

# Contrast groups: (category, poles). Words of one pole are interchangeable; a word
# of one pole on one side and of another pole on the other side refuses the hit.
# In the groups named in _STRICT_GROUPS a word on one side only refuses as well: an
# added audience ("... for contractors") or period ("daily reports") narrows the
# question.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # antonyms
    ("antonym", ("enable activate turn-on switch-on", "disable deactivate turn-off switch-off")),
    ("antonym", ("include including inclusive", "exclude excluding exclusive")),
    ("antonym", ("grant give", "revoke withdraw")),
    ("antonym", ("allow permit", "deny forbid prohibit block ban")),
    ("antonym", ("accept approve", "reject decline refuse")),
    ("antonym", ("add insert", "remove delete drop subtract")),
    ("antonym", ("create build make", "destroy delete tear")),
    ("antonym", ("start begin launch", "stop end finish halt terminate")),
    ("antonym", ("open", "close closed shut")),
    ("antonym", ("on", "off")),
    ("antonym", ("in inside inbound incoming", "out outside outbound outgoing")),
    ("antonym", ("import", "export")),
    ("antonym", ("upload", "download")),
    ("antonym", ("upgrade", "downgrade")),
    ("antonym", ("encrypt encode", "decrypt decode")),
    ("antonym", ("compress zip", "decompress unzip extract")),
    ("antonym", ("push", "pull")),
    ("antonym", ("send", "receive")),
    ("antonym", ("read", "write")),
    ("antonym", ("input", "output")),
    ("antonym", ("show display reveal", "hide hidden conceal")),
    ("antonym", ("visible", "invisible hidden")),
    ("antonym", ("expand", "collapse")),
    ("antonym", ("attach", "detach")),
    ("antonym", ("join", "leave")),
    ("antonym", ("hire", "fire dismiss")),
    ("antonym", ("arrive arrival", "depart departure")),
    ("antonym", ("enter entry entrance", "exit")),
    ("antonym", ("login log-in sign-in signin", "logout log-out sign-out signout")),
    ("antonym", ("online", "offline")),
    ("antonym", ("connect", "disconnect")),
    ("antonym", ("save keep", "discard")),
    ("antonym", ("increase raise grow", "decrease reduce shrink lower")),
    ("antonym", ("maximize", "minimize")),
    ("antonym", ("ascending", "descending")),
    ("antonym", ("before prior", "after")),
    ("antonym", ("earlier", "later")),
    ("antonym", ("earliest", "latest")),
    ("antonym", ("early", "late")),
    ("antonym", ("first", "last final")),
    ("antonym", ("next upcoming", "previous prior last past preceding")),
    ("antonym", ("above over", "below under beneath")),
    ("antonym", ("upper", "lower")),
    ("antonym", ("top", "bottom")),
    ("antonym", ("up", "down")),
    ("antonym", ("left", "right")),
    ("antonym", ("north northern", "south southern")),
    ("antonym", ("east eastern", "west western")),
    ("antonym", ("min minimum lowest smallest least fewest", "max maximum highest largest most")),
    ("antonym", ("low", "high")),
    ("antonym", ("lower", "higher")),
    ("antonym", ("more", "less fewer")),
    ("antonym", ("many", "few")),
    ("antonym", ("big large", "small little tiny")),
    ("antonym", ("bigger larger", "smaller")),
    ("antonym", ("long", "short")),
    ("antonym", ("longer", "shorter")),
    ("antonym", ("longest", "shortest")),
    ("antonym", ("fast quick rapid", "slow")),
    ("antonym", ("faster quicker", "slower")),
    ("antonym", ("fastest quickest", "slowest")),
    ("antonym", ("good", "bad")),
    ("antonym", ("better", "worse")),
    ("antonym", ("best", "worst")),
    ("antonym", ("cheap cheaper cheapest inexpensive", "expensive costly pricey")),
    ("antonym", ("easy easier easiest simple", "hard harder hardest difficult")),
    ("antonym", ("strong stronger", "weak weaker")),
    ("antonym", ("hot warm", "cold cool")),
    ("antonym", ("light", "dark")),
    ("antonym", ("new newer newest", "old older oldest legacy")),
    ("antonym", ("young younger youngest", "old older oldest")),
    ("antonym", ("public", "private")),
    ("antonym", ("internal", "external")),
    ("antonym", ("local", "remote global")),
    ("antonym", ("mandatory required compulsory", "optional")),
    ("antonym", ("synchronous sync blocking", "asynchronous async nonblocking")),
    ("antonym", ("static", "dynamic")),
    ("antonym", ("explicit", "implicit")),
    ("antonym", ("mutable", "immutable")),
    ("antonym", ("true", "false")),
    ("antonym", ("success succeed pass win", "failure fail lose")),
    ("antonym", ("gain profit income", "loss expense")),
    ("antonym", ("credit", "debit")),
    ("antonym", ("buy purchase", "sell")),
    ("antonym", ("lend", "borrow")),
    ("antonym", ("positive", "negative")),
    ("antonym", ("valid", "invalid")),
    ("antonym", ("safe secure", "unsafe insecure dangerous")),
    ("antonym", ("lock", "unlock")),
    ("antonym", ("install", "uninstall")),
    ("antonym", ("subscribe", "unsubscribe")),
    ("antonym", ("parent", "child")),
    ("antonym", ("client", "server")),
    ("antonym", ("source", "destination target")),
    ("antonym", ("sender", "recipient receiver")),
    ("antonym", ("buyer", "seller")),
    ("antonym", ("male men", "female women")),
    ("antonym", ("with", "without")),
    # question kinds are handled separately; quantifiers are in _SCOPE_POLES
    ("scope", ("admin administrator superuser root", "guest visitor anonymous")),
    (
        "scope",
        (
            "employee staff",
            "contractor freelancer",
            "intern trainee",
            "manager",
            "customer",
            "vendor supplier",
            "student",
            "teacher",
        ),
    ),
    ("scope", ("staging", "production prod", "development dev", "test testing qa", "sandbox")),
    ("scope", ("windows", "linux", "mac macos osx", "ios", "android")),
    ("scope", ("free", "paid premium")),
    ("scope", ("beginner novice", "expert advanced")),
    ("scope", ("full-time fulltime", "part-time parttime")),
    ("scope", ("mobile", "desktop")),
    ("scope", ("domestic", "international foreign abroad")),
    ("date", ("hourly", "daily", "weekly", "monthly", "quarterly", "yearly annual annually")),
    ("date", ("second", "minute", "hour", "day", "week", "month", "quarter", "year")),
    ("date", ("morning", "afternoon", "evening", "night")),
    ("date", ("past", "present current", "future")),
)

_STRICT_GROUPS = frozenset(
    gi
    for gi, (_, poles) in enumerate(_GROUPS)
    if poles[0].split()[0] in {"admin", "employee", "staging", "hourly"}
)

_SCOPE_POLES = {
    "all": "universal",
    "every": "universal",
    "each": "universal",
    "always": "universal",
    "entire": "universal",
    "whole": "universal",
    "everyone": "universal",
    "everybody": "universal",
    "everything": "universal",
    "any": "existential",
    "some": "existential",
    "sometimes": "existential",
    "anyone": "existential",
    "anybody": "existential",
    "anything": "existential",
    "someone": "existential",
    "somebody": "existential",
    "something": "existential",
    "only": "exclusive",
    "solely": "exclusive",
    "exclusively": "exclusive",
    "both": "both",
    "either": "either",
    "most": "most",
    "usually": "most",
    "several": "several",
    "multiple": "several",
    "single": "single",
}

# Relation words around which the two arguments must not swap sides.
_PIVOTS = frozenset(
    stem(w)
    for w in (
        "than to from into onto on over against before after above below under by "
        "depend depends replace replaces precede precedes follow follows beat beats "
        "outperform outperforms exceed exceeds inherit inherits extend extends "
        "call calls contain contains own owns report reports manage manages convert "
        "migrate translate prefer prefers"
    ).split()
)

_STOP = frozenset(
    (
        "a an the and or but if of for at by to in on with as is are was were be been being "
        "am do does did doing have has had having can could will would shall should may might "
        "must i me my we our you your he she it its they them their this that these those "
        "there here what which who whom whose when where why how please tell explain "
        "describe show let know find about get got any some way ways like just also "
        "really actually possible using use via per one thing things"
    ).split()
)

_PREFIX_ANTONYMS = (("un", 3), ("dis", 3), ("non", 3), ("de", 5), ("in", 5), ("im", 5), ("il", 5))


def _build_groups() -> dict[str, list[tuple[int, int]]]:
    index: dict[str, list[tuple[int, int]]] = {}
    for gi, (_, poles) in enumerate(_GROUPS):
        for pi, pole in enumerate(poles):
            for word in pole.split():
                index.setdefault(stem(word.replace("-", "")), []).append((gi, pi))
    return index


_GROUP_INDEX = _build_groups()


# --------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class SalientFeatures:
    """The details of a query that decide its answer (see the module docstring)."""

    normalized: str
    negations: int
    numbers: frozenset[str]
    dates: frozenset[str]
    entities: tuple[str, ...]  # lowercased, in order of appearance
    stems: frozenset[str]  # every word stem and lowercased token
    groups: frozenset[tuple[int, int]]  # (contrast group, pole) present
    group_words: tuple[tuple[int, int, str], ...]
    scope: frozenset[str]
    wh: frozenset[str]
    content: tuple[str, ...]  # content stems in order, pivots included


def _is_entity(tok: _Token) -> bool:
    if tok.kind in {"quoted", "code"}:
        return True
    if tok.kind != "word":
        return False
    t = tok.text
    letters = [c for c in t if c.isalpha()]
    if not letters:
        return False
    has_digit = any(c.isdigit() for c in t)
    if has_digit:
        return True  # T14, node7, python3, GPT4
    upper = sum(1 for c in letters if c.isupper())
    if len(letters) >= 2 and upper >= 2:
        return True  # VPN, SDK, GPUs, MySQL, iPhone
    if upper == 1 and not letters[0].isupper():
        return True  # iPhone, eBay
    if t in {"I"}:
        return False
    return t[0].isupper() and not tok.sentence_start


def _word_parts(tok: _Token) -> tuple[list[str], list[str]]:
    """The words of a token, and extra forms that only count as stems.

    Hyphenated words are split ("parental-leave" == "parental leave") except after a
    negating prefix ("non-blocking" stays one word so that it contrasts "blocking").
    """
    if "-" not in tok.low:
        return [tok.low.replace("’", "'")], []
    parts = tok.low.split("-")
    if parts[0] in _JOIN_PREFIXES:
        return ["".join(parts)], []
    return parts, ["".join(parts)]


def _number_value(raw: str) -> str:
    s = raw.lower().lstrip("v").replace(",", "")
    s = re.sub(r"(st|nd|rd|th)$", "", s)
    if s.isdigit():
        s = str(int(s))
    return s


@lru_cache(maxsize=4096)
def salient_features(text: str) -> SalientFeatures:
    """Extract the salient details of one query (cached: queries repeat)."""
    toks = _tokens(text)
    negations = 0
    numbers: set[str] = set()
    dates: set[str] = set()
    entities: list[str] = []
    stems: set[str] = set()
    groups: set[tuple[int, int]] = set()
    group_words: list[tuple[int, int, str]] = []
    scope: set[str] = set()
    wh: set[str] = set()
    content: list[str] = []

    lows = [t.low for t in toks]
    for i, tok in enumerate(toks):
        nxt = lows[i + 1] if i + 1 < len(lows) else ""
        if tok.kind == "date":
            dates.add(tok.low.replace(" ", ""))
            content.append(tok.low)
            continue
        if tok.kind == "num":
            numbers.add(_number_value(tok.low))
            content.append(tok.low)
            continue
        if _is_entity(tok):
            entities.append(tok.low)
            stems.add(tok.low)
            stems.add(stem(tok.low))
            content.append(stem(tok.low))
            if tok.kind in {"quoted", "code"}:
                continue
        if tok.kind == "word" and tok.text == "May" and not tok.sentence_start:
            dates.add("may")
        words, extra = _word_parts(tok)
        for w in extra:
            stems.add(w)
            for gp in _GROUP_INDEX.get(stem(w), ()):
                groups.add(gp)
                group_words.append((gp[0], gp[1], w))
        for w in words:
            s = stem(w)
            stems.add(w)
            stems.add(s)
            if w in _NEGATIONS:
                negations += 1
            if w in _NUMBER_WORDS:
                numbers.add(_NUMBER_WORDS[w])
            if w in _EXPLICIT_DATE_WORDS:
                dates.add(w)
            if w in _SCOPE_POLES:
                scope.add(_SCOPE_POLES[w])
            if w in _WH:
                cls = _WH[w]
                if cls == "manner" and nxt in _HOW_SUBCLASS:
                    cls = _HOW_SUBCLASS[nxt]
                elif cls == "generic" and stem(nxt) in _GENERIC_HINT:
                    cls = _GENERIC_HINT[stem(nxt)]
                wh.add(cls)
            for gp in _GROUP_INDEX.get(s, ()):
                groups.add(gp)
                group_words.append((gp[0], gp[1], w))
            if (w not in _STOP or s in _PIVOTS) and not _is_entity(tok):
                if w not in _NEGATIONS:
                    content.append(s)
    # two-word forms of contrast words ("turn on", "log in", "sign out")
    for a, b in itertools.pairwise(lows):
        joined = stem(a + b)
        for gp in _GROUP_INDEX.get(joined, ()) if a in {"turn", "switch", "log", "sign"} else ():
            groups.add(gp)
            group_words.append((gp[0], gp[1], f"{a} {b}"))
    return SalientFeatures(
        normalized=normalize_query(text),
        negations=negations,
        numbers=frozenset(numbers),
        dates=frozenset(dates),
        entities=tuple(entities),
        stems=frozenset(stems),
        groups=frozenset(groups),
        group_words=tuple(group_words),
        scope=frozenset(scope),
        wh=frozenset(wh),
        content=tuple(content),
    )


# --------------------------------------------------------------------------- checks


def _fmt(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "none"


def _refuse(category: str, reason: str) -> GuardVerdict:
    return GuardVerdict(False, f"{category}: {reason}", category)


def _entity_present(entity: str, other: SalientFeatures) -> bool:
    joined = entity.replace("-", "")
    if {entity, joined, stem(entity), stem(joined)} & other.stems:
        return True
    if " " in entity or not entity.isalnum():
        return re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", other.normalized) is not None
    return False


def _check_entities(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    missing_in_b = [e for e in dict.fromkeys(a.entities) if not _entity_present(e, b)]
    missing_in_a = [e for e in dict.fromkeys(b.entities) if not _entity_present(e, a)]
    if missing_in_b or missing_in_a:
        return _refuse(
            "entity",
            f"cached names {_fmt(missing_in_b)} vs incoming names {_fmt(missing_in_a)}",
        )
    return None


def _check_groups(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    only_a = a.groups - b.groups
    only_b = b.groups - a.groups
    for gi, p in sorted(only_a | only_b):
        if gi in _STRICT_GROUPS:
            x = a if (gi, p) in only_a else b
            word = next(w for g, q, w in x.group_words if (g, q) == (gi, p))
            side = "cached" if x is a else "incoming"
            return _refuse(_GROUPS[gi][0], f"'{word}' only in the {side} query")
    for gi, pa in sorted(only_a):
        for gj, pb in sorted(only_b):
            if gi == gj and pa != pb:
                wa = next(w for g, p, w in a.group_words if (g, p) == (gi, pa))
                wb = next(w for g, p, w in b.group_words if (g, p) == (gj, pb))
                return _refuse(_GROUPS[gi][0], f"'{wa}' in the cached query vs '{wb}'")
    # prefix antonyms: "supported" vs "unsupported", "able" vs "unable"
    for x, y in ((a, b), (b, a)):
        for w in x.stems - y.stems:
            for prefix, min_len in _PREFIX_ANTONYMS:
                if len(w) >= min_len and w.isalpha():
                    neg = prefix + w
                    if neg in y.stems and neg not in x.stems and w not in y.stems:
                        return _refuse("antonym", f"'{w}' vs '{neg}'")
    return None


def _check_question(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    spec_a = a.wh - {"generic"}
    spec_b = b.wh - {"generic"}
    strong = (spec_a ^ spec_b) & _STRONG_WH
    if strong:
        return _refuse("question", f"asks {_fmt(spec_a or a.wh)} vs {_fmt(spec_b or b.wh)}")
    weak_a, weak_b = spec_a - {"manner"}, spec_b - {"manner"}
    if weak_a and weak_b and weak_a != weak_b:
        return _refuse("question", f"asks {_fmt(weak_a)} vs {_fmt(weak_b)}")
    if (weak_a and not weak_b and "manner" in spec_b) or (
        weak_b and not weak_a and "manner" in spec_a
    ):
        return _refuse("question", f"asks {_fmt(spec_a)} vs {_fmt(spec_b)}")
    return None


def _sides(content: tuple[str, ...], pivot: str) -> tuple[set[str], set[str]]:
    i = content.index(pivot)
    left = {w for w in content[:i] if w not in _PIVOTS}
    right = {w for w in content[i + 1 :] if w not in _PIVOTS}
    return left, right


def _check_order(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    ca, cb = Counter(a.content), Counter(b.content)
    for pivot in sorted(set(a.content) & set(b.content) & _PIVOTS):
        if ca[pivot] != cb[pivot]:
            continue
        la, ra = _sides(a.content, pivot)
        lb, rb = _sides(b.content, pivot)
        moved_right = {w for w in la - ra if w in rb and w not in lb}
        moved_left = {w for w in ra - la if w in lb and w not in rb}
        if moved_right and moved_left:
            return _refuse(
                "order",
                f"'{_fmt(moved_right)}' and '{_fmt(moved_left)}' swap sides of '{pivot}'",
            )
    return None


def guard_check(cached: str, incoming: str) -> GuardVerdict:
    """May the answer cached for ``cached`` be served for ``incoming``?

    >>> guard_check("How do I enable dark mode?", "How do I disable dark mode?").allowed
    False
    >>> guard_check("How can I request a laptop?", "How do I request a laptop?").allowed
    True
    """
    a, b = salient_features(cached), salient_features(incoming)
    if a.normalized == b.normalized:
        return _ALLOWED
    if a.negations != b.negations:
        return _refuse(
            "negation", f"{a.negations} negation(s) in the cached query vs {b.negations}"
        )
    if a.numbers != b.numbers:
        return _refuse("number", f"{_fmt(a.numbers)} vs {_fmt(b.numbers)}")
    if a.dates != b.dates:
        return _refuse("date", f"{_fmt(a.dates)} vs {_fmt(b.dates)}")
    for check in (_check_entities, _check_groups):
        verdict = check(a, b)
        if verdict is not None:
            return verdict
    if a.scope != b.scope:
        return _refuse("scope", f"quantifiers {_fmt(a.scope)} vs {_fmt(b.scope)}")
    for check in (_check_question, _check_order):
        verdict = check(a, b)
        if verdict is not None:
            return verdict
    return _ALLOWED


def salient_equivalent(cached: str, incoming: str) -> bool:
    """Guard passes and both queries use the same content words and names in order.

    Only word order and function words may differ ("Is there free parking at the
    campus?" / "Is parking free at the campus?"). Such pairs are safe to accept at a
    lower cosine than pairs that also change content words.
    """
    if not guard_check(cached, incoming).allowed:
        return False
    a, b = salient_features(cached), salient_features(incoming)
    common = set(a.entities) & set(b.entities)
    order_a = [e for e in dict.fromkeys(a.entities) if e in common]
    order_b = [e for e in dict.fromkeys(b.entities) if e in common]
    return set(a.content) == set(b.content) and order_a == order_b
