"""Input clean-up and safe output: questions and Markdown for the GUI.

* ``visible_text`` is the one rule for invisible characters (zero-width, bidi
  controls, Unicode tag characters): what is removed, what is kept because it
  changes how text is written (emoji and Indic/Arabic-script joiners, flag tag
  sequences) and which removals could be hiding something (the injection
  detector scores those). ``strip_zero_width`` is its text alone.
* ``clean_question`` normalises what a person typed (NFKC, no control or
  invisible characters, tidy whitespace) and refuses empty or oversized input
  with a ``UsageError`` that says what to do.
* Paths: a file the window opens (source view, "open in viewer") is always a
  document of the knowledge base: ``Services.document_text`` refuses any other
  path, so a crafted link in an answer cannot open an arbitrary file.
* ``render_safe_markdown`` is the one renderer of answers (the window shows
  nothing else): HTML that can load nothing. All HTML in the input is escaped,
  a small Markdown subset is rendered, links are shown with their URL in plain
  sight and images become such links (an answer must never make the GUI fetch
  a URL: that is how injected Markdown images exfiltrate data). ``safe_text``
  escapes plain text (a quoted passage) by the same rules.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from core.errors import UsageError

# --------------------------------------------------------------------------- invisible text

ZERO_WIDTH: Final = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e")
BIDI_OVERRIDES: Final = frozenset("\u202a\u202b\u202c\u202d\u202e")
BIDI_ISOLATES: Final = frozenset("\u2066\u2067\u2068\u2069")
_INVISIBLE: Final = ZERO_WIDTH | BIDI_OVERRIDES | BIDI_ISOLATES
_ANY_INVISIBLE = re.compile(
    "[\u200b-\u200d\u2060-\u2064\ufeff\u180e\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_BLACK_FLAG = "\U0001f3f4"  # subdivision flags: 🏴 + tag letters + cancel tag


def is_tag(ch: str) -> bool:
    """A Unicode tag character (U+E0000–U+E007F): invisible ASCII look-alikes."""
    return 0xE0000 <= ord(ch) <= 0xE007F


def _joinable(ch: str) -> bool:
    """Emoji and letters of scripts where ZWJ/ZWNJ change how a word is written."""
    o = ord(ch) if ch else 0
    return (
        o >= 0x1F000
        or 0x2600 <= o <= 0x27BF
        or o == 0xFE0F
        or 0x0600 <= o <= 0x08FF  # Arabic script (Persian ZWNJ)
        or 0x0900 <= o <= 0x0DFF  # Indic scripts
        or 0xFB50 <= o <= 0xFEFC  # Arabic presentation forms
    )


def _in_flag_sequence(text: str, i: int) -> bool:
    j = i
    while j > 0 and is_tag(text[j - 1]):
        j -= 1
    return j > 0 and text[j - 1] == _BLACK_FLAG


@dataclass(frozen=True, slots=True)
class VisibleText:
    """``text`` without the invisible characters that carry no meaning.

    ``index[i]`` is where ``text[i]`` was in the original; ``hidden`` lists the
    original positions of removed characters that could hide something (a
    byte-order mark at the very start is removed but not listed).
    """

    text: str
    index: tuple[int, ...]
    hidden: tuple[int, ...]


def visible_text(text: str) -> VisibleText:
    """Apply the one invisible-character rule (see the module docstring).

    Kept: a zero-width joiner or non-joiner between two emoji or two letters of
    Arabic-script or Indic text (👨‍👩‍👧, Persian می‌خواهم), and the tag
    characters of a subdivision flag. Removed: every other zero-width, bidi
    override/isolate and tag character.
    """
    if _ANY_INVISIBLE.search(text) is None:
        return VisibleText(text, tuple(range(len(text))), ())
    out: list[str] = []
    index: list[int] = []
    hidden: list[int] = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch in _INVISIBLE or is_tag(ch):
            prev = text[i - 1] if i else ""
            nxt = text[i + 1] if i + 1 < n else ""
            meaningful = (ch in "\u200c\u200d" and _joinable(prev) and _joinable(nxt)) or (
                is_tag(ch) and _in_flag_sequence(text, i)
            )
            if not meaningful:
                if not (ch == "\ufeff" and i == 0):
                    hidden.append(i)
                continue
        out.append(ch)
        index.append(i)
    return VisibleText("".join(out), tuple(index), tuple(hidden))


def strip_zero_width(text: str) -> str:
    """``text`` with meaningless invisible characters removed (see ``visible_text``)."""
    if _ANY_INVISIBLE.search(text) is None:
        return text
    return visible_text(text).text


# --------------------------------------------------------------------------- questions

_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_question(text: str, max_chars: int = 2000) -> str:
    """A question fit to search with, or ``UsageError`` saying why not.

    NFKC folds compatibility forms (full-width letters, ligatures) so that the
    same question always looks the same; invisible characters follow
    ``visible_text``; other control and format characters except newline and tab
    are dropped; spaces and tabs collapse to one space, blank lines to one.
    """
    if not isinstance(text, str):
        raise UsageError("The question must be text.")
    text = unicodedata.normalize("NFKC", text)
    text = strip_zero_width(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for ch in text:
        if ch in "\n\t\u200c\u200d" or is_tag(ch):  # what visible_text kept is meaningful
            kept.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            kept.append(ch)
    text = "".join(kept)
    text = "\n".join(_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    text = _MANY_NEWLINES.sub("\n\n", text).strip()
    if not text:
        raise UsageError("The question is empty: type a few words about what you want to know.")
    if len(text) > max_chars:
        raise UsageError(
            f"The question is {len(text)} characters long; the limit is {max_chars}. "
            "Shorten it or split it into several questions."
        )
    return text


# --------------------------------------------------------------------------- Markdown

DIM_COLOUR: Final = "#888888"  # mid grey: dimmed, yet readable on light and dark themes

# Private-use characters mark where a dimmed span opens and closes while the text
# goes through the block and inline rules; any in the input are replaced first.
_DIM_ON: Final = "\ue000"
_DIM_OFF: Final = "\ue001"
_M = "[\ue000\ue001]*"  # marks that may precede a line's Markdown syntax
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SAFE_SCHEMES: Final = ("http://", "https://", "mailto:")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*([^)\s]+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*([^)\s]+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)")
_MARKER = re.compile(r"\[(\d{1,3})\](?!\()")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\*)|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?!\w)")
_HEADING = re.compile(rf"^({_M})\s*(#{{1,6}})\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(rf"^({_M})\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(rf"^({_M})\s*\d{{1,3}}[.)]\s+(.*)$")
_FENCE = re.compile(rf"^{_M}\s*(```|~~~)")
_TAG_OR_MARK = re.compile("<[^>]*>|[\ue000\ue001]")

Cite = Callable[[int], str | None]


def _marks(text: str) -> str:
    return "".join(ch for ch in text if ch in (_DIM_ON, _DIM_OFF))


def _unmarked(text: str) -> str:
    return text.replace(_DIM_ON, "").replace(_DIM_OFF, "")


def _link_html(label: str, raw_url: str, *, image: bool) -> str:
    """A link shown with its URL (the text is already escaped); unsafe schemes stay text."""
    marks = _marks(raw_url)  # a dimmed span may open or close inside a URL: keep it outside
    raw_url = _unmarked(raw_url)
    url = html.unescape(raw_url)
    shown = html.escape(url, quote=True)
    text = label or shown
    if image:
        text = f"[image: {label or 'no description'}]"
    if not url.lower().startswith(_SAFE_SCHEMES):  # javascript:, data:, file:, relative ...
        return f"{text} ({shown}){marks}"
    if text == shown:
        return f'<a href="{shown}">{shown}</a>{marks}'
    return f'<a href="{shown}">{text}</a> <small>({shown})</small>{marks}'


def _inline(escaped: str, cite: Cite | None) -> str:
    """Inline Markdown on already-escaped text (code, links and markers are set aside first)."""
    kept: list[str] = []

    def keep(markup: str) -> str:
        kept.append(markup)
        return f"\x00{len(kept) - 1}\x00"

    def marker(m: re.Match[str]) -> str:
        href = cite(int(m.group(1))) if cite is not None else None
        if href is None:
            return m.group(0)
        return keep(f'<a href="{html.escape(href, quote=True)}">{m.group(0)}</a>')

    text = _CODE_SPAN.sub(lambda m: keep(f"<code>{m.group(1)}</code>"), escaped)
    text = _IMAGE.sub(lambda m: keep(_link_html(m.group(1), m.group(2), image=True)), text)
    text = _LINK.sub(lambda m: keep(_link_html(m.group(1), m.group(2), image=False)), text)
    text = _MARKER.sub(marker, text)
    text = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", text)
    text = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", text)
    for _ in range(2):  # a link label may hold a code span
        text = re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text)
    return text


def _with_marks(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with a dim-on mark at each span's start and a dim-off mark at its end."""
    edges: list[tuple[int, str]] = []
    for start, end in sorted(spans):
        start, end = max(0, start), min(len(text), end)
        if start < end:
            edges += [(start, _DIM_ON), (end, _DIM_OFF)]
    out: list[str] = []
    pos = 0
    for at, mark in sorted(edges, key=lambda e: (e[0], e[1] == _DIM_ON)):
        out += [text[pos:at], mark]
        pos = at
    out.append(text[pos:])
    return "".join(out)


def _dim(markup: str, title: str) -> str:
    """Turn the dim marks into spans that never cross a tag (so they always nest)."""
    opening = f'<span style="color:{DIM_COLOUR}" title="{html.escape(title, quote=True)}">'
    out: list[str] = []
    depth = 0  # how many spans the marks have opened (spans may overlap)
    open_now = False
    pos = 0

    def text(chunk: str) -> None:
        nonlocal open_now
        if depth and not open_now and chunk.strip():
            out.append(opening)
            open_now = True
        out.append(chunk)

    for m in _TAG_OR_MARK.finditer(markup):
        if m.start() > pos:
            text(markup[pos : m.start()])
        token = m.group(0)
        if token == _DIM_ON:
            depth += 1
        elif token == _DIM_OFF:
            depth = max(0, depth - 1)
        if open_now and (token.startswith("<") or not depth):
            out.append("</span>")
            open_now = False
        if token.startswith("<"):
            out.append(token)
        pos = m.end()
    if pos < len(markup):
        text(markup[pos:])
    if open_now:
        out.append("</span>")
    return "".join(out)


def safe_text(text: str) -> str:
    """Plain text (a quoted passage) as HTML: invisible characters removed, all escaped."""
    return html.escape(strip_zero_width(_CONTROL.sub("", text)), quote=True)


def render_safe_markdown(
    text: str,
    *,
    cite: Cite | None = None,
    dim: Sequence[tuple[int, int]] = (),
    dim_title: str = "",
) -> str:
    """HTML for a Markdown subset that can never load anything by itself.

    Supported: paragraphs, line breaks, ``#`` headings (rendered two levels
    smaller: they sit inside a chat), ``-``/``1.`` lists, fenced code blocks,
    inline code, bold, italic, links (http, https, mailto; shown as text
    followed by the URL) and images (turned into such links, never loaded). Any
    raw HTML in the input is shown as text.

    ``cite(n)`` gives the link target of a ``[n]`` citation marker (``None``
    leaves the marker as text). ``dim`` lists ``text[start:end]`` spans to show
    in grey with ``dim_title`` as their tooltip (unsupported sentences).
    """
    text = text.replace(_DIM_ON, "\ufffd").replace(_DIM_OFF, "\ufffd")
    if dim:
        text = _with_marks(text, dim)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = strip_zero_width(_CONTROL.sub("", text))
    lines = html.escape(text, quote=True).split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_kind = ""

    def close_paragraph() -> None:
        if paragraph:
            out.append("<p>" + "<br>".join(_inline(x, cite) for x in paragraph) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_kind
        if items:
            rows = "".join(f"<li>{item}</li>" for item in items)
            out.append(f"<{list_kind}>{rows}</{list_kind}>")
            items.clear()
        list_kind = ""

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            close_paragraph()
            close_list()
            marker = fence.group(1)
            out.append(_marks(line))
            body: list[str] = []
            i += 1
            while i < len(lines) and not _unmarked(lines[i]).strip().startswith(marker):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + "\n".join(body) + "</code></pre>")
            if i < len(lines):
                out.append(_marks(lines[i]))
            i += 1
            continue
        heading = _HEADING.match(line)
        bullet = _BULLET.match(line)
        numbered = None if bullet else _NUMBERED.match(line)
        if not _unmarked(line).strip():
            close_paragraph()
            close_list()
            out.append(_marks(line))
        elif heading:
            close_paragraph()
            close_list()
            level = min(len(heading.group(2)) + 2, 6)
            content = heading.group(1) + heading.group(3)
            out.append(f"<h{level}>{_inline(content, cite)}</h{level}>")
        elif bullet or numbered:
            close_paragraph()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                list_kind = kind
            m = bullet or numbered
            assert m is not None
            items.append(_inline(m.group(1) + m.group(2), cite))
        else:
            close_list()
            paragraph.append(line.strip())
        i += 1
    close_paragraph()
    close_list()
    markup = "".join(out)
    return _dim(markup, dim_title) if dim else markup
