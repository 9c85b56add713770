"""Pure functions that turn answers and conversations into safe HTML (no Qt here).

Every piece of answer text goes through the one safe renderer,
``core.security.sanitize.render_safe_markdown`` (its XSS tests are in
tests/security/test_sanitize.py): everything is escaped, links show their
address and are only followed on a click, images are never loaded. This module
adds presentation only: ``[n]`` citation markers become ``cite:TURN:n`` links
the window resolves itself, quotes from the documents are shown first, and
sentences the documents do not support are dimmed.
"""

from __future__ import annotations

import html
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from core.conversations import Explanation, Turn, answer_evidence
from core.security.sanitize import render_safe_markdown, safe_text
from core.types import Answer, Citation

NOTICE_COLOUR = "#c77700"  # readable on light and dark backgrounds
ERROR_COLOUR = "#e0453a"
UNSUPPORTED_TITLE = "Not found in your documents"
QUOTES_HEADING = "From your documents:"
CLOSEST_HEADING = "The closest passages in your documents:"
UNSUPPORTED_NOTE = "Sentences in grey were not found in your documents."
QUOTE_CHARS = 400  # a longer quote is cut (the source view shows all of it)


def markdown_html(
    text: str,
    *,
    turn: int | None = None,
    markers: Collection[int] = (),
    dim: Sequence[tuple[int, int]] = (),
) -> str:
    """Answer text as safe HTML; ``[n]`` for n in ``markers`` links to ``cite:turn:n``.

    ``dim`` spans of ``text`` are greyed with the tooltip "Not found in your documents".
    """

    def cite(n: int) -> str | None:
        return f"cite:{turn}:{n}" if turn is not None and n in markers else None

    return render_safe_markdown(text, cite=cite, dim=dim, dim_title=UNSUPPORTED_TITLE)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the evidence check said about one live answer (not saved with a turn).

    ``quotes``: the supporting sentences shown above the answer (for an
    abstention, the closest passages); ``unsupported``: spans of the answer
    text the documents were not found to say; ``abstained``: the answer says
    plainly that the documents do not contain it.
    """

    quotes: tuple[Citation, ...] = ()
    unsupported: tuple[tuple[int, int], ...] = ()
    abstained: bool = False

    @classmethod
    def of(cls, answer: Answer) -> Evidence:
        quotes, unsupported = answer_evidence(answer)
        return cls(quotes, unsupported, answer.abstained)

    @classmethod
    def of_turn(cls, turn: Turn) -> Evidence | None:
        """The evidence a saved turn kept, or None when it kept none."""
        if not (turn.quotes or turn.unsupported or turn.abstained):
            return None
        return cls(turn.quotes, turn.unsupported, turn.abstained)


def _made_of(answer: str, quotes: Sequence[Citation]) -> bool:
    """Whether ``answer`` is the quotes' own words (every quote is in it)."""
    return bool(quotes) and all(" ".join(q.quote.split()) in answer for q in quotes if q.quote)


def _one_per_marker(citations: Sequence[Citation]) -> list[Citation]:
    """The first citation of each marker, in order (a passage that supports two
    sentences with two of its own sentences is cited twice under one number)."""
    first: dict[int, Citation] = {}
    for c in citations:
        first.setdefault(c.marker, c)
    return list(first.values())


def _place(c: Citation) -> str:
    page = f", page {c.page}" if c.page else ""
    return html.escape(PurePath(c.source).name + page)


def quotes_html(index: int, quotes: Sequence[Citation], heading: str = QUOTES_HEADING) -> str:
    """Quoted passages, each with its ``[n]`` link (it opens the source at the quote)."""
    if not quotes:
        return ""
    rows = [f'<p><small style="color:gray">{html.escape(heading)}</small></p>']
    for c in quotes:
        text = " ".join((c.quote or c.text).split())
        if len(text) > QUOTE_CHARS:
            text = text[: QUOTE_CHARS - 1].rstrip() + "…"
        rows.append(
            f"<blockquote>“{safe_text(text)}” "
            f'<a href="cite:{index}:{c.marker}">[{c.marker}]</a> '
            f'<small style="color:gray">{_place(c)}</small></blockquote>'
        )
    return "".join(rows)


@dataclass(frozen=True, slots=True)
class TurnActions:
    """Per-answer actions that need the live ``Answer`` (they are not saved with a turn).

    ``wrong``: the answer sits in the result cache, so "This answer is wrong" can
    evict it; ``regenerate``: its stream broke off, so it can be asked again of
    the next model; ``note``: what an action did (shown in place of the action).
    """

    wrong: bool = False
    regenerate: bool = False
    note: str | None = None


def cache_words(why: Explanation) -> str:
    """Whether the answer itself came from the cache, for the line under it.

    Only a result-cache hit counts: an embedding-cache hit saved computing the
    question's vector, but the answer was still composed afresh ("Why this
    answer?" says so).
    """
    if why.cache != "result":
        return ""
    if why.cache_question is None:
        return "from the cache"
    sim = "" if why.cache_similarity is None else f" at {why.cache_similarity:.2f}"
    return f"from the cache — matched “{why.cache_question}”{sim}"


def _time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def turn_html(
    index: int, turn: Turn, extra: TurnActions | None = None, evidence: Evidence | None = None
) -> str:
    """One finished turn: the question, quotes, the answer with live citations, actions."""
    ev = evidence or Evidence()
    parts = [f'<p><b>You</b> <small style="color:gray">{_time(turn.asked_at)}</small></p>']
    parts.append(markdown_html(turn.question))
    if turn.answer or ev.quotes:
        parts.append("<p><b>Archivist</b></p>")
        # When the answer is the quotes themselves (the model's answer gave way to
        # them), they are shown once, as the answer.
        if not ev.abstained and not _made_of(turn.answer, ev.quotes):
            parts.append(quotes_html(index, ev.quotes))
        markers = {c.marker for c in (*turn.citations, *ev.quotes)}
        parts.append(markdown_html(turn.answer, turn=index, markers=markers, dim=ev.unsupported))
        if ev.abstained:
            parts.append(quotes_html(index, ev.quotes, CLOSEST_HEADING))
        elif ev.unsupported:
            parts.append(f'<p><small style="color:gray">{UNSUPPORTED_NOTE}</small></p>')
    if turn.error:
        parts.append(f'<p style="color:{ERROR_COLOUR}">{html.escape(turn.error)}</p>')
    why = turn.explanation
    if why is not None and why.notice:
        parts.append(f'<p style="color:{NOTICE_COLOUR}">{html.escape(why.notice)}</p>')
    if turn.citations:
        items = [
            f'<a href="cite:{index}:{c.marker}">[{c.marker}]</a> {_place(c)}'
            for c in _one_per_marker(turn.citations)
        ]
        parts.append("<p><small>Sources: " + " · ".join(items) + "</small></p>")
    actions = []
    if turn.answer:
        actions.append(f'<a href="copy:{index}">Copy answer</a>')
    if why is not None:
        total = why.timings_ms.get("total")
        took = f" in {total:.0f} ms" if total is not None else ""
        cached = cache_words(why)
        cached = f", {cached}" if cached else ""
        actions.insert(
            0, f"answered by {html.escape(why.provider or 'nobody')}{took}{html.escape(cached)}"
        )
        actions.append(f'<a href="why:{index}">Why this answer?</a>')
    if extra is not None:
        if extra.wrong:
            actions.append(f'<a href="wrong:{index}">This answer is wrong</a>')
        if extra.regenerate:
            actions.append(f'<a href="regen:{index}">Regenerate with another model</a>')
        if extra.note:
            actions.append(html.escape(extra.note))
    if actions:
        parts.append('<p><small style="color:gray">' + " · ".join(actions) + "</small></p>")
    parts.append("<hr>")
    return "".join(parts)


def live_html(index: int, question: str, partial: str, quotes: Sequence[Citation] = ()) -> str:
    """The turn being answered right now: quotes first (once found), then the tokens so far."""
    parts = ["<p><b>You</b></p>", markdown_html(question), "<p><b>Archivist</b></p>"]
    parts.append(quotes_html(index, quotes))
    if partial:
        markers = {c.marker for c in quotes}
        parts.append(markdown_html(partial, turn=index, markers=markers))
    elif quotes:
        parts.append("<p><i>Writing an answer…</i></p>")
    else:
        parts.append("<p><i>Searching your documents…</i></p>")
    return "".join(parts)


def conversation_html(
    turns: Sequence[Turn],
    live: str = "",
    actions: Mapping[int, TurnActions] | None = None,
    evidence: Mapping[int, Evidence] | None = None,
) -> str:
    if not turns and not live:
        return (
            '<p style="color:gray">Ask a question about your documents below '
            "(Ctrl+Enter sends). Drop files or folders anywhere on the window to add them.</p>"
        )
    extra = actions or {}
    found = evidence or {}
    body = "".join(turn_html(i, t, extra.get(i), found.get(i)) for i, t in enumerate(turns))
    return body + live


def fmt_score(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_rank(value: int | None) -> str:
    return "—" if value is None else f"#{value}"
