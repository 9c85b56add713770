"""Pure functions that turn answers and conversations into safe HTML (no Qt here).

The Markdown subset: paragraphs, ``#``–``###`` headings, ``-``/``*`` and ``1.``
lists, fenced code blocks, inline code, ``**bold**``, ``*italic*``/``_italic_``
and ``[text](https://…)`` links. Everything is HTML-escaped first, so a
document or a model can never inject markup. Links are shown with their
address and are only followed when the user clicks them; images are never
loaded (``![alt](src)`` becomes the text ``[image: alt]``). ``[n]`` citation
markers become ``cite:TURN:n`` links the window resolves itself.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from core.conversations import Explanation, Turn

_MARKER = re.compile(r"\[(\d{1,2})\](?!\()")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]*)\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_U = re.compile(r"(?<![\w])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w])")
_CODE = re.compile(r"`([^`\n]+)`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")

NOTICE_COLOUR = "#c77700"  # readable on light and dark backgrounds
ERROR_COLOUR = "#e0453a"


def _inline(text: str, turn: int | None, known: Collection[int]) -> str:
    """Escape one line of text and apply the inline Markdown subset."""
    codes: list[str] = []

    def stash(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(stash, text)
    out = html.escape(text, quote=True)
    out = _IMAGE.sub(lambda m: f"[image: {m.group(1) or 'no description'}]", out)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2)
        raw = html.unescape(url)
        if not raw.lower().startswith(_SAFE_SCHEMES):
            return m.group(0)
        if label == url:
            return f'<a href="{url}">{url}</a>'
        return f'<a href="{url}">{label}</a> <small>({url})</small>'

    out = _LINK.sub(link, out)
    out = _BOLD.sub(r"<b>\1</b>", out)
    out = _ITALIC.sub(r"<i>\1</i>", out)
    out = _ITALIC_U.sub(r"<i>\1</i>", out)
    if turn is not None:

        def cite(m: re.Match[str]) -> str:
            n = int(m.group(1))
            if n in known:
                return f'<a href="cite:{turn}:{n}">[{n}]</a>'
            return m.group(0)

        out = _MARKER.sub(cite, out)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], out)


def markdown_html(text: str, *, turn: int | None = None, markers: Collection[int] = ()) -> str:
    """Render the Markdown subset (see the module docstring) as escaped HTML."""
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    code: list[str] | None = None

    def flush_para() -> None:
        if para:
            blocks.append("<p>" + "<br>".join(_inline(p, turn, markers) for p in para) + "</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal list_tag
        if items:
            body = "".join(f"<li>{i}</li>" for i in items)
            blocks.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
        list_tag = ""

    for line in text.replace("\r\n", "\n").split("\n"):
        if code is not None:
            if line.strip().startswith("```"):
                blocks.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.strip().startswith("```"):
            flush_para()
            flush_list()
            code = []
            continue
        if not line.strip():
            flush_para()
            flush_list()
            continue
        heading = _HEADING.match(line)
        if heading:
            flush_para()
            flush_list()
            level = min(len(heading.group(1)) + 2, 6)  # keep headings modest in a chat
            blocks.append(f"<h{level}>{_inline(heading.group(2), turn, markers)}</h{level}>")
            continue
        bullet = _BULLET.match(line)
        numbered = None if bullet else _NUMBERED.match(line)
        if bullet or numbered:
            tag = "ul" if bullet else "ol"
            flush_para()
            if list_tag and list_tag != tag:
                flush_list()
            list_tag = tag
            m = bullet or numbered
            assert m is not None
            items.append(_inline(m.group(1), turn, markers))
            continue
        if items:
            flush_list()
        para.append(line.strip())
    if code is not None:  # an unterminated fence (e.g. while streaming)
        blocks.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
    flush_para()
    flush_list()
    return "".join(blocks)


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


def turn_html(index: int, turn: Turn, extra: TurnActions | None = None) -> str:
    """One finished turn: the question, the answer with live citations, actions."""
    parts = [f'<p><b>You</b> <small style="color:gray">{_time(turn.asked_at)}</small></p>']
    parts.append(markdown_html(turn.question))
    if turn.answer:
        parts.append("<p><b>Archivist</b></p>")
        markers = {c.marker for c in turn.citations}
        parts.append(markdown_html(turn.answer, turn=index, markers=markers))
    if turn.error:
        parts.append(f'<p style="color:{ERROR_COLOUR}">{html.escape(turn.error)}</p>')
    why = turn.explanation
    if why is not None and why.notice:
        parts.append(f'<p style="color:{NOTICE_COLOUR}">{html.escape(why.notice)}</p>')
    if turn.citations:
        items = []
        for c in turn.citations:
            page = f", page {c.page}" if c.page else ""
            name = html.escape(c.source.rsplit("/", 1)[-1])
            items.append(
                f'<a href="cite:{index}:{c.marker}">[{c.marker}]</a> {name}{html.escape(page)}'
            )
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


def live_html(question: str, partial: str, searching: bool) -> str:
    """The turn being answered right now (tokens so far; no citation links yet)."""
    parts = ["<p><b>You</b></p>", markdown_html(question), "<p><b>Archivist</b></p>"]
    if partial:
        parts.append(markdown_html(partial))
    if searching:
        parts.append("<p><i>Searching your documents…</i></p>")
    return "".join(parts)


def conversation_html(
    turns: Sequence[Turn], live: str = "", actions: Mapping[int, TurnActions] | None = None
) -> str:
    if not turns and not live:
        return (
            '<p style="color:gray">Ask a question about your documents below '
            "(Ctrl+Enter sends). Drop files or folders anywhere on the window to add them.</p>"
        )
    extra = actions or {}
    return "".join(turn_html(i, t, extra.get(i)) for i, t in enumerate(turns)) + live


def fmt_score(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_rank(value: int | None) -> str:
    return "—" if value is None else f"#{value}"
