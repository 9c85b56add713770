"""Input clean-up and safe output: questions, user-given paths, Markdown for the GUI.

* ``clean_question`` normalises what a person typed (NFKC, no control or
  invisible characters, tidy whitespace) and refuses empty or oversized input
  with a ``UsageError`` that says what to do.
* ``safe_path`` resolves a user-given relative path inside a base folder and
  refuses anything that would leave it (``..``, absolute paths, symlinks out).
* ``render_safe_markdown`` turns an answer into HTML that can load nothing: all
  HTML is escaped, a small Markdown subset is rendered, links are shown with
  their URL in plain sight and images become plain links (an answer must never
  make the GUI fetch a URL: that is how injected Markdown images exfiltrate data).
"""

from __future__ import annotations

import html
import re
import unicodedata
from pathlib import Path
from typing import Final

from core.errors import UsageError

_ZERO_WIDTH: Final = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _is_emoji(ch: str) -> bool:
    o = ord(ch)
    return o >= 0x1F000 or 0x2600 <= o <= 0x27BF or o == 0xFE0F


def strip_zero_width(text: str) -> str:
    """Remove zero-width, bidi-control and Unicode tag characters.

    A zero-width joiner between two emoji is kept (it builds 👨‍👩‍👧), and so is a
    zero-width non-joiner between letters of Arabic-script or Indic text, where
    it changes how a word is written.
    """
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if 0xE0000 <= ord(ch) <= 0xE007F:
            continue
        if ch in _ZERO_WIDTH:
            prev = text[i - 1] if i else ""
            nxt = text[i + 1] if i + 1 < n else ""
            if ch == "\u200d" and prev and nxt and _is_emoji(prev) and _is_emoji(nxt):
                out.append(ch)
            elif ch == "\u200c" and prev and nxt and _joining_script(prev) and _joining_script(nxt):
                out.append(ch)
            continue
        out.append(ch)
    return "".join(out)


def _joining_script(ch: str) -> bool:
    o = ord(ch)
    return 0x0600 <= o <= 0x08FF or 0x0900 <= o <= 0x0DFF or 0xFB50 <= o <= 0xFEFC


_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_question(text: str, max_chars: int = 2000) -> str:
    """A question fit to search with, or ``UsageError`` saying why not.

    NFKC folds compatibility forms (full-width letters, ligatures) so that the
    same question always looks the same; control characters other than newline
    and tab are dropped, spaces and tabs collapse to one space, blank lines to
    one blank line.
    """
    if not isinstance(text, str):
        raise UsageError("The question must be text.")
    text = unicodedata.normalize("NFKC", text)
    text = strip_zero_width(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for ch in text:
        if ch in "\n\t" or ch == "\u200d" or ch == "\u200c":
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


def safe_path(base: Path, user_path: str) -> Path:
    """``base / user_path`` resolved, or ``UsageError`` if it would leave ``base``.

    Symlinks are resolved before the check, so a link pointing outside is refused
    as well as ``..`` and absolute paths.
    """
    if "\x00" in user_path:
        raise UsageError("The path contains a NUL character.")
    root = base.resolve()
    candidate = (root / user_path).resolve()
    if candidate != root and not candidate.is_relative_to(root):
        raise UsageError(f"The path {user_path!r} points outside {root}; it was refused.")
    return candidate


# --------------------------------------------------------------------------- Markdown

_SAFE_SCHEMES: Final = ("http://", "https://", "mailto:")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*([^)\s]+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*([^)\s]+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\*)|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?!\w)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _url(raw_escaped: str) -> str | None:
    """The URL if its scheme is safe to show as a link (the text is already escaped)."""
    url = html.unescape(raw_escaped)
    if url.lower().startswith(_SAFE_SCHEMES):
        return url
    return None


def _link_html(label: str, raw_url: str, *, image: bool) -> str:
    url = _url(raw_url)
    shown = html.escape(html.unescape(raw_url), quote=True)
    prefix = "image: " if image else ""
    if url is None:  # javascript:, data:, file:, relative ...: text only
        return f"{prefix}{label} ({shown})"
    href = html.escape(url, quote=True)
    text = f"{prefix}{label}" if label else f"{prefix}{shown}"
    return f'<a href="{href}" rel="noopener noreferrer nofollow">{text}</a> ({shown})'


def _inline(escaped: str) -> str:
    """Inline Markdown on already-escaped text (code spans are protected first)."""
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE_SPAN.sub(keep_code, escaped)
    links: list[str] = []

    def keep(markup: str) -> str:
        links.append(markup)
        return f"\x01{len(links) - 1}\x01"

    text = _IMAGE.sub(lambda m: keep(_link_html(m.group(1), m.group(2), image=True)), text)
    text = _LINK.sub(lambda m: keep(_link_html(m.group(1), m.group(2), image=False)), text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    text = re.sub("\x01(\\d+)\x01", lambda m: links[int(m.group(1))], text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def render_safe_markdown(text: str) -> str:
    """HTML for a Markdown subset that can never load anything by itself.

    Supported: paragraphs, line breaks, ``#`` headings, ``-``/``1.`` lists,
    fenced code blocks, inline code, bold, italic, links (http, https, mailto;
    shown as text followed by the URL) and images (turned into such links). Any
    raw HTML in the input is shown as text.
    """
    text = strip_zero_width(text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = html.escape(text, quote=True).split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    list_kind: str | None = None

    def close_paragraph() -> None:
        if paragraph:
            out.append("<p>" + "<br>\n".join(_inline(x) for x in paragraph) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_kind
        if list_kind:
            out.append(f"</{list_kind}>")
            list_kind = None

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            close_paragraph()
            close_list()
            marker = fence.group(1)
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + "\n".join(body) + "</code></pre>")
            i += 1
            continue
        heading = _HEADING.match(line)
        bullet = _BULLET.match(line)
        numbered = _NUMBERED.match(line)
        if not line.strip():
            close_paragraph()
            close_list()
        elif heading:
            close_paragraph()
            close_list()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet or numbered:
            close_paragraph()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                out.append(f"<{kind}>")
                list_kind = kind
            item = (bullet or numbered).group(1)  # type: ignore[union-attr]
            out.append(f"<li>{_inline(item)}</li>")
        else:
            close_list()
            paragraph.append(line)
        i += 1
    close_paragraph()
    close_list()
    return "\n".join(out)
