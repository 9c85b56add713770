"""The correctness guard of the semantic result cache (pure functions).

Embedding similarity is blind to the small words that change an answer: "show" and
"hide the toolbar" sit at cosine ~0.85, "error 1402" and "1403" at ~0.95, "who
supervises Ravi?" and "who does Ravi supervise?" at ~0.98. So a cosine hit is only
served when :func:`guard_check` finds that the two queries agree on every *salient
detail*. The checks are structural where they can be, so that they hold for words
no list names:

========== =================================================================
negation   the count of negation cues (not, n't, no, never, without, lack)
number     numbers, versions, ordinals, number words ("three" == "3")
date       explicit dates, times, weekdays, months, today/tomorrow, seasons,
           relative periods ("last month" vs "next month"); and no clash of
           periods or units (daily/weekly, days/hours)
entity     capitalised words (also after a title: "Dr. Lee"), acronyms,
           identifiers (``T14``), code tokens (``os.path``, ``--force``),
           quoted strings: each side's entities must occur in the other query
           (case-insensitively; an all-caps query has no capitalised names)
antonym    no word on one side whose opposite is on the other: contrast groups
           (also matched through comparative, superlative, -ly and -en forms:
           "heavier"/"lighter", "harden"/"soften"), negating prefixes
           (un-, dis-, non-, ...) and paired affixes (over-/under-, up-/down-,
           pre-/post-, in-/ex-, in-/out-, -ful/-less)
scope      the same quantifiers (all/every/each, any/some, only, both, ...), the
           same possessor when both say whose (my vs our vs their), and no
           clash of audience, environment or unit (admins/guests,
           staging/prod, team/company)
question   no clash of question kind (why/when/who/where vs the others; how
           many / how often / how long / how tall vs each other), refined by
           the next word ("what time" asks when, "what causes" asks why) and
           asked by the first question word only; no clash of obligation and
           permission ("do I need" vs "can I")
order      no two shared words on swapped sides of any third shared word ("A
           pays B", "A to B", "A than B"; a passive with "by" counts reversed),
           and no subject question against an object question on the same
           verb and name ("who supervises Ravi?" vs "who does Ravi supervise?")
========== =================================================================

Everything else (word choice, function words, word order elsewhere) is left to
the cosine threshold, so paraphrases still hit. Queries equal after
:func:`~core.cache.normalize.normalize_query` always pass.

:func:`salient_equivalent` is the stricter test the service applies below its plain
threshold (down to 0.85, see ``service.py``): the guard passes *and* the two queries
use the same content words, up to framing words ("is there a procedure to"), compound
spelling and derived forms. A swapped content word never passes it, which is what
makes the lower cosine safe against antonyms no list knows.
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
from core.language import NEGATIONS, stem

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
    *NEGATIONS,
    (
        re.compile(r"\b(what|who|where|when|why|how|which|that|it|there|here|he|she)[’']s\b", re.I),
        r"\1 is",
    ),
    (re.compile(r"[’']re\b", re.I), " are"),
    (re.compile(r"[’']ve\b", re.I), " have"),
    (re.compile(r"[’']ll\b", re.I), " will"),
    (re.compile(r"[’']d\b", re.I), " would"),
    (re.compile(r"\bI[’']m\b"), "I am"),
    (re.compile(r"[’']s\b", re.I), ""),  # possessive: "Kenya's" -> "Kenya"
)

_JOIN_PREFIXES = frozenset({"non", "un", "dis", "de", "anti", "in", "im", "il", "ir"})

# Abbreviated titles whose full stop is not the end of a sentence.
_TITLES = frozenset({"dr", "mr", "mrs", "ms", "mx", "prof", "st", "mt", "jr", "sr", "gen", "sgt"})


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # as written
    low: str
    kind: str  # quoted, date, code, num, word
    sentence_start: bool


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
        if starts and out and gap.lstrip().startswith(".") and out[-1].low in _TITLES:
            starts = False  # "Dr. Lee": the name after a title is not a sentence start
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
    # verbs that negate what follows ("which rooms lack a ...")
    | {"lack", "lacks", "lacked", "lacking"}
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
    "come": "reason",
}
# "What time" asks when, "what causes" asks why: the noun (or verb) after what/which,
# past a form of "be" and a determiner ("what is the reason ..."), can name the kind.
_GENERIC_HINT = {
    stem(k): v
    for k, v in {
        "time": "time",
        "date": "time",
        "day": "time",
        "year": "time",
        "month": "time",
        "hour": "time",
        "deadline": "time",
        "reason": "reason",
        "cause": "reason",
        "place": "place",
        "location": "place",
        "address": "place",
        "person": "person",
        "people": "person",
        "make": "reason",  # "what makes X fail?"
    }.items()
}
# Words between "what" and the noun that names the kind ("what is the usual *date*").
_HINT_SKIP = frozenset("the a an exact kind of best right usual typical ideal good".split())
# Words between "how" and what it asks about that do not change the kind of question.
_HOW_SKIP = frozenset({"exactly", "else", "best", "precisely"})
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

# Relative dates: "last month" and "next month" ask about different periods.
_DEICTIC = {
    "this": "this",
    "current": "this",
    "last": "last",
    "previous": "last",
    "past": "last",
    "next": "next",
    "coming": "next",
    "upcoming": "next",
}
_TIME_UNITS = frozenset(
    stem(w)
    for w in (
        "day night morning evening afternoon week weekend month quarter year season semester "
        "term sprint release"
    ).split()
)

# Whose thing is asked about: "my invoices" and "our invoices" are not the same set.
_POSSESSORS = {"my": "speaker", "mine": "speaker", "our": "group", "ours": "group"}
_POSSESSORS |= {"their": "others", "theirs": "others"}

# Asking whether one must do something is not asking whether one may: "do I need a
# ticket" and "can I get a ticket" have different answers.
_MODALITY = {
    "must": "obligation",
    "need": "obligation",
    "needs": "obligation",
    "require": "obligation",
    "requires": "obligation",
    "required": "obligation",
    "mandatory": "obligation",
    "compulsory": "obligation",
    "obliged": "obligation",
    "can": "permission",
    "may": "permission",
    "allowed": "permission",
    "permitted": "permission",
    "able": "permission",
    "possible": "permission",
}

# Words that frame a question without changing what it asks ("is there a procedure to
# ...", "may I ...", "is there a proper way to ..."). salient_equivalent ignores
# them; everything else must match.
_FRAMING = frozenset(
    stem(w)
    for w in (
        "step steps process procedure way best right proper correct need required "
        "requirement necessary allowed permitted possible able okay ok please hi hello "
        "thanks thank kindly exactly take go"
    ).split()
)

# Auxiliaries that invert with the subject in a question ("who does Ravi supervise?").
_DO_MODAL = frozenset("do does did can could will would shall should may might must".split())
_BE = frozenset("is are was were be been being am".split())
_WH_WORDS = frozenset("who whom whose what which where when why how".split())

# Contrast groups: (category, poles). Words of one pole are interchangeable; a word
# of one pole on one side and of another pole on the other side refuses the hit.
# In the groups named in _STRICT_GROUPS a word on one side only refuses as well: an
# added audience ("... for freelancers") or period ("hourly backups") narrows the
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
    ("antonym", ("success succeed pass win", "failure fail lose lost")),
    ("antonym", ("gain profit income", "loss expense lose lost")),
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
    # common everyday opposites
    ("antonym", ("full", "empty")),
    ("antonym", ("wet damp moist humid", "dry")),
    ("antonym", ("thick", "thin")),
    ("antonym", ("heavy", "light lightweight")),
    ("antonym", ("deep", "shallow")),
    ("antonym", ("wide broad", "narrow")),
    ("antonym", ("tight", "loose")),
    ("antonym", ("rich wealthy", "poor")),
    ("antonym", ("clean", "dirty")),
    ("antonym", ("loud noisy", "quiet silent")),
    ("antonym", ("soft", "hard firm")),
    ("antonym", ("sharp", "dull blunt")),
    ("antonym", ("smooth", "rough")),
    ("antonym", ("near nearby close", "far distant")),
    ("antonym", ("alive living", "dead")),
    ("antonym", ("awake", "asleep")),
    ("antonym", ("rise", "fall")),
    ("antonym", ("freeze", "thaw melt defrost")),
    ("antonym", ("heat warm", "cool chill")),
    ("antonym", ("promote", "demote")),
    ("antonym", ("remember", "forget")),
    ("antonym", ("love", "hate")),
    ("antonym", ("teach", "learn")),
    ("antonym", ("forward", "backward")),
    ("antonym", ("spend", "earn save")),
    ("antonym", ("often frequently", "rarely seldom")),
    ("antonym", ("majority", "minority")),
    ("antonym", ("winner", "loser")),
    ("antonym", ("sweet", "sour bitter")),
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
    ("scope", ("team squad", "department division", "company organization organisation firm")),
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

_STOP_STEMS = frozenset(stem(w) for w in _STOP)

_PREFIX_ANTONYMS = (("un", 3), ("dis", 3), ("non", 3), ("de", 5), ("in", 5), ("im", 5), ("il", 5))
# Paired affixes: the same word with one or the other has the opposite sense
# ("overpaid" / "underpaid", "upstream" / "downstream", "harmful" / "harmless").
_PAIRED_PREFIXES = (("over", "under"), ("up", "down"), ("pre", "post"), ("in", "ex"), ("in", "out"))
_PAIRED_SUFFIXES = (("ful", "less"),)


def _build_groups() -> dict[str, list[tuple[int, int]]]:
    index: dict[str, list[tuple[int, int]]] = {}
    for gi, (_, poles) in enumerate(_GROUPS):
        for pi, pole in enumerate(poles):
            for word in pole.split():
                index.setdefault(stem(word.replace("-", "")), []).append((gi, pi))
    return index


_GROUP_INDEX = _build_groups()


def _degree_bases(word: str) -> list[str]:
    """Possible bases of a comparative, superlative, -ly adverb or -en verb.

    Used only to look words up in the contrast groups, so that "heaviest" / "lightest",
    "quickly" / "slow" or "harden" / "soften" contrast without listing every form.
    """
    out: list[str] = []
    for suffix, min_base in (
        ("iest", 3),
        ("est", 3),
        ("ier", 3),
        ("er", 4),
        ("ily", 3),
        ("ly", 4),
        ("en", 3),
    ):
        if not word.endswith(suffix) or len(word) - len(suffix) < min_base:
            continue
        base = word[: -len(suffix)]
        if suffix in {"iest", "ier", "ily"}:
            out.append(base + "y")
            continue
        out.append(base)
        if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
            out.append(base[:-1])  # hottest -> hot, bigger -> big
        out.append(base + "e")  # ripen -> ripe, -est/-er of words ending in e
    return out


def _group_poles(word: str) -> list[tuple[int, int]]:
    poles = _GROUP_INDEX.get(stem(word))
    if poles is not None:
        return poles
    for base in _degree_bases(word):
        poles = _GROUP_INDEX.get(stem(base))
        if poles is not None:
            return poles
    return []


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
    words: tuple[str, ...]  # every word, lowercased, in order (function words included)
    possessors: frozenset[str]
    asked: frozenset[str]  # stems that only refine the question word ("what *time*")
    modality: frozenset[str]  # obligation (must, need to) / permission (can, allowed)


def _is_entity(tok: _Token, shouting: bool = False) -> bool:
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
    if shouting:
        return False  # an all-caps query says nothing through its capitals
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

    Hyphenated words are split ("sick-pay" == "sick pay") except after a
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
    letters = [c for t in toks if t.kind == "word" for c in t.text if c.isalpha()]
    shouting = len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.7 * len(letters)
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
    possessors: set[str] = set()
    asked: set[str] = set()
    modality: set[str] = set()

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
        entity = _is_entity(tok, shouting)
        if entity:
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
            for gp in _group_poles(w):
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
            if w in _DEICTIC and stem(nxt) in _TIME_UNITS:
                dates.add(f"{_DEICTIC[w]} {stem(nxt)}")
            if w in _SCOPE_POLES:
                scope.add(_SCOPE_POLES[w])
            if w in _POSSESSORS:
                possessors.add(_POSSESSORS[w])
            if w in _MODALITY:
                modality.add(_MODALITY[w])
            elif w in {"have", "has", "had"} and nxt == "to":
                modality.add("obligation")
            if w in _WH and not wh:
                # only the first question word asks: "what happens when ..." asks what
                kind, refining = _question_kind(w, lows[i + 1 :])
                wh.add(kind)
                if refining:
                    asked.add(stem(refining))
            for gp in _group_poles(w):
                groups.add(gp)
                group_words.append((gp[0], gp[1], w))
            if ((w not in _STOP and s not in _STOP_STEMS) or s in _PIVOTS) and not entity:
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
        words=tuple(w for t in toks for w in _word_parts(t)[0]),
        possessors=frozenset(possessors),
        asked=frozenset(asked),
        modality=frozenset(modality),
    )


def _question_kind(wh_word: str, rest: list[str]) -> tuple[str, str | None]:
    """The kind of answer a question word asks for, and the word after it that said so.

    "how many/much" asks a quantity, "how often" a frequency, "how heavy is" a degree of
    heaviness; "how do/can/to ..." asks for a manner. "what time" asks when.
    """
    cls = _WH[wh_word]
    if cls == "manner":
        rest = [w for w in rest if w not in _HOW_SKIP]
        nxt = rest[0] if rest else ""
        if nxt in _HOW_SUBCLASS:
            return _HOW_SUBCLASS[nxt], nxt
        after = rest[1] if len(rest) > 1 else ""
        if nxt not in _STOP and (after in _BE or after in _DO_MODAL):
            return f"degree of {stem(nxt)}", nxt  # "how heavy is ...", "how loud does ..."
        return "manner", None
    if cls == "generic":
        for w in rest[:4]:
            if w in _BE or w in _HINT_SKIP:
                continue
            hint = _GENERIC_HINT.get(stem(w))
            return (hint, w) if hint else (cls, None)
    return cls, None


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
            if not w.isalpha():
                continue
            for p1, p2 in _PAIRED_PREFIXES:
                if w.startswith(p1) and len(w) - len(p1) >= 4:
                    other = p2 + w[len(p1) :]
                    if other in y.stems - x.stems and w not in y.stems:
                        return _refuse("antonym", f"'{w}' vs '{other}'")
            for s1, s2 in _PAIRED_SUFFIXES:
                if w.endswith(s1) and len(w) - len(s1) >= 3:
                    other = w[: -len(s1)] + s2
                    if other in y.stems - x.stems and w not in y.stems:
                        return _refuse("antonym", f"'{w}' vs '{other}'")
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


def _passive_with_agent(f: SalientFeatures, pivot: str) -> bool:
    """Whether ``pivot`` is a passive verb with its agent after "by" ("is X signed by Y")."""
    words = f.words
    for i, w in enumerate(words[:-1]):
        if stem(w) == pivot and words[i + 1] == "by" and any(x in _BE for x in words[:i]):
            return True
    return False


def _check_order(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    """Two shared words on opposite sides of a third shared word, in both queries swapped.

    Any shared content word can be the pivot: a verb ("A pays B"), a relation word ("A to
    B", "A than B") or a noun. Moving a block of words (a clause to the front, "files
    kept" / "keep files") never swaps two words across a pivot, so paraphrases pass. A
    passive with an agent ("B is signed by A") states the active order reversed, so its
    sides are swapped before the comparison.
    """
    ca, cb = Counter(a.content), Counter(b.content)
    for pivot in sorted(set(a.content) & set(b.content)):
        if ca[pivot] != cb[pivot]:
            continue
        la, ra = _sides(a.content, pivot)
        lb, rb = _sides(b.content, pivot)
        if _passive_with_agent(a, pivot) != _passive_with_agent(b, pivot):
            lb, rb = rb, lb
        once = {w for w in ca if ca[w] == 1 and cb[w] == 1}
        moved_right = {w for w in la - ra if w in rb and w not in lb and w in once}
        moved_left = {w for w in ra - la if w in lb and w not in rb and w in once}
        if moved_right and moved_left:
            return _refuse(
                "order",
                f"'{_fmt(moved_right)}' and '{_fmt(moved_left)}' swap sides of '{pivot}'",
            )
    return None


def _base_forms(word: str) -> set[str]:
    """Candidate bases of an inflected word ("sued" -> sue, "manages" -> manage)."""
    forms = {word, stem(word)}
    for suffix, add in (("s", ""), ("es", ""), ("d", ""), ("ed", ""), ("ing", ""), ("ing", "e")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            forms.add(word[: -len(suffix)] + add)
    return forms


def _same_word(x: str, y: str) -> bool:
    return x == y or bool(_base_forms(x) & _base_forms(y))


def _first_wh(words: tuple[str, ...]) -> int | None:
    return next((i for i, w in enumerate(words) if w in _WH_WORDS), None)


def _check_roles(a: SalientFeatures, b: SalientFeatures) -> GuardVerdict | None:
    """A subject question against an object question on the same verb and names.

    "Who supervises Ravi?" asks for Ravi's supervisor (the question word is the subject,
    the verb follows it directly); "Who does Ravi supervise?" asks for the people he
    supervises (an auxiliary follows the question word, and Ravi, now the subject, stands
    before the verb). The same holds for "which club signed X" / "which club did X sign"
    and for a passive "who was trained by X" against "who trained X".
    """
    shared = (set(a.content) & set(b.content)) - _PIVOTS
    for p, q in ((a, b), (b, a)):
        ip, iq = _first_wh(p.words), _first_wh(q.words)
        if ip is None or iq is None:
            continue
        pw, qw = p.words[ip + 1 :], q.words[iq + 1 :]
        k = 0  # skip the shared rest of the question phrase ("which club ...")
        while (
            k < min(len(pw), len(qw))
            and _same_word(pw[k], qw[k])
            and pw[k] not in _DO_MODAL
            and pw[k] not in _BE
        ):
            k += 1
        if k >= min(len(pw), len(qw)):
            continue
        verb, aux = pw[k], qw[k]
        if verb in _STOP or verb in _DO_MODAL or verb in _BE or verb in _NEGATIONS:
            continue  # p is not a subject question with a verb right after the question word
        after_verb_p = {stem(w) for w in pw[k + 1 :]} & shared
        rest_q = [stem(w) for w in qw[k + 1 :]]
        j = next((n for n, w in enumerate(qw[k + 1 :]) if _same_word(verb, w)), -1)
        if j < 0:
            continue
        if aux in _DO_MODAL:
            movers = {w for w in rest_q[:j] if w in after_verb_p}
        elif aux in _BE and rest_q[j + 1 : j + 2] == ["by"]:
            movers = {w for w in rest_q[j + 2 :] if w in after_verb_p}
        else:
            continue
        if movers:
            return _refuse(
                "order",
                f"'{_fmt(movers)}' is the object of '{verb}' in one query, the subject in "
                "the other",
            )
    return None


def guard_check(cached: str, incoming: str) -> GuardVerdict:
    """May the answer cached for ``cached`` be served for ``incoming``?

    >>> guard_check("How do I show the toolbar?", "How do I hide the toolbar?").allowed
    False
    >>> guard_check("How can I renew a permit?", "How do I renew a permit?").allowed
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
    if a.possessors and b.possessors and a.possessors != b.possessors:
        return _refuse("scope", f"whose: {_fmt(a.possessors)} vs {_fmt(b.possessors)}")
    if a.modality and b.modality and a.modality != b.modality:
        return _refuse("question", f"asks {_fmt(a.modality)} vs {_fmt(b.modality)}")
    for check in (_check_question, _check_order, _check_roles):
        verdict = check(a, b)
        if verdict is not None:
            return verdict
    return _ALLOWED


# Common irregular past forms, so that a passive ("how is X made") matches its active.
_IRREGULAR = {
    "made": "make",
    "built": "build",
    "sent": "send",
    "taken": "take",
    "took": "take",
    "given": "give",
    "gave": "give",
    "written": "write",
    "wrote": "write",
    "bought": "buy",
    "sold": "sell",
    "paid": "pay",
    "held": "hold",
    "kept": "keep",
    "told": "tell",
    "found": "find",
    "brought": "bring",
    "thought": "think",
    "taught": "teach",
    "chosen": "choose",
    "drawn": "draw",
    "driven": "drive",
    "eaten": "eat",
    "grown": "grow",
    "known": "know",
    "shown": "show",
    "spent": "spend",
    "stolen": "steal",
    "worn": "wear",
    "won": "win",
    "ran": "run",
    "began": "begin",
    "begun": "begin",
    "broke": "break",
    "broken": "break",
    "froze": "freeze",
    "frozen": "freeze",
}
# Suffixes that derive a noun or an agent from a verb ("ship" / "shipment").
_DERIVATIONAL = frozenset(
    "ment ments al ion ation ations ing er ers or ors ence enc ance anc".split()
)


def _derived(x: str, y: str) -> bool:
    """One stem extends the other ("observ" / "observation", "ship" / "shipment")."""
    short, long_ = sorted((x, y), key=len)
    if not long_.startswith(short) or len(short) < 3:
        return False
    return len(short) >= 5 or long_[len(short) :] in _DERIVATIONAL


_IRREGULAR_STEMS = {stem(past): stem(base) for past, base in _IRREGULAR.items()}


def _base(content_stem: str) -> str:
    return _IRREGULAR_STEMS.get(content_stem, content_stem)


# Relation words that are function words: salient_equivalent compares them through
# _relations (the word each one governs), not as content ("to renew" / "for renewing").
_RELATION_WORDS = frozenset(
    stem(w)
    for w in (
        "than to from into onto on over against before after above below under by between"
    ).split()
)
_DETERMINERS = frozenset("the a an my our your their his her its this that these those".split())


def _core_content(f: SalientFeatures) -> list[str]:
    return [
        _base(w.replace("-", ""))
        for w in f.content
        if w not in _FRAMING and w not in f.asked and w not in _RELATION_WORDS
    ]


def _relations(f: SalientFeatures) -> dict[str, str]:
    """The relation word in front of each word it governs: "from the depot" -> depot: from."""
    out: dict[str, str] = {}
    words = f.words
    for i, w in enumerate(words):
        if stem(w) in _RELATION_WORDS:
            j = i + 1
            while j < len(words) and words[j] in _DETERMINERS:
                j += 1
            if j < len(words):
                out.setdefault(stem(words[j]), {"into": "to", "onto": "on"}.get(w, w))
    return out


def salient_equivalent(cached: str, incoming: str) -> bool:
    """Guard passes, both ask the same kind of question, and use the same content words.

    Only word order, function words, framing words ("is there a procedure to", "may
    I"), the spelling of a compound ("drop-off" / "dropoff") and a derived form
    ("observe" / "observation") may differ. A swapped content word never passes, so an
    antonym the guard's lists do not know ("stiffen" / "slacken") cannot be served through
    this test; such pairs are safe to accept at a lower cosine (see ``service.py``).
    """
    if not guard_check(cached, incoming).allowed:
        return False
    a, b = salient_features(cached), salient_features(incoming)
    if a.wh - {"generic", "manner"} != b.wh - {"generic", "manner"}:
        return False
    common = set(a.entities) & set(b.entities)
    order_a = [e for e in dict.fromkeys(a.entities) if e in common]
    order_b = [e for e in dict.fromkeys(b.entities) if e in common]
    if order_a != order_b:
        return False
    rel_a, rel_b = _relations(a), _relations(b)
    if any(rel_a[w] != rel_b[w] for w in rel_a.keys() & rel_b.keys()):
        return False  # "parcels to the depot" / "parcels from the depot"
    ca, cb = _core_content(a), _core_content(b)
    if "".join(ca) == "".join(cb):
        return True  # also "drop-off" / "dropoff"
    only_a, only_b = set(ca) - set(cb), set(cb) - set(ca)
    return all(any(_derived(x, y) for y in only_b) for x in only_a) and all(
        any(_derived(y, x) for x in only_a) for y in only_b
    )
