"""English primitives shared by everything that compares wordings.

One light stemmer and one expansion of negated contractions, used by the
cache guard (``core.cache.guard``) and the evidence check (``core.evidence``):
two comparisons of claims must not disagree on what a word or a "not" is.
Generic English only: no word here comes from a corpus or an evaluation set.
"""

from __future__ import annotations

import re

# Negated contractions, expanded so that "not" is always a word of its own.
NEGATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bcan[’']t\b", re.I), "can not"),
    (re.compile(r"\bwon[’']t\b", re.I), "will not"),
    (re.compile(r"\bshan[’']t\b", re.I), "shall not"),
    (re.compile(r"\bain[’']t\b", re.I), "is not"),
    (re.compile(r"\b(\w+)n[’']t\b", re.I), r"\1 not"),
    (re.compile(r"\bcannot\b", re.I), "can not"),
)


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
