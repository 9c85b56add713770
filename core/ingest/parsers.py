"""Read one file into an ``ExtractedDocument``.

``parse_file`` is a pure function of the file's bytes (plus ``max_bytes``) and is
picklable, so the caller may run it in a ``ProcessPoolExecutor``. Every failure
a person can do something about (an empty, huge, binary, corrupt, encrypted or
scanned file, a file they may not read, a type we do not know) is raised as
``IngestError`` or ``UnsupportedFile`` with one sentence that says why; no
library exception escapes unwrapped.

The returned ``text`` is what offsets index into, so every cleaning step
(newline normalisation, dropping control characters, stripping Sphinx's "¶")
happens *before* page and heading offsets are computed.

Per kind:

- PDF (pypdfium2): the text layer of each page, pages joined with a blank line,
  one ``PageSpan`` per page.
- HTML (lxml.html): the main content only (``<main>``, ``[role=main]``,
  Sphinx's ``div.body``, ``<article>`` ...), without scripts, styles and
  navigation (side boxes stay unless they read as navigation); block elements
  become paragraphs, ``<pre>`` keeps its lines,
  ``h1``-``h6`` become headings.
- Markdown: the text as it is; ATX (``#``) and setext headings outside fenced
  code blocks.
- Plain text and source code: decoded (BOM, strict UTF-8, then a Western
  single-byte check, then charset-normalizer) with the encoding recorded.
- DOCX (python-docx): paragraphs and tables in body order, table rows as
  ``" | "``-joined cells, headings from the "Heading N" and "Title" styles.
"""

from __future__ import annotations

import codecs
import io
import re
from pathlib import Path
from typing import Any

from core.errors import IngestError, UnsupportedFile
from core.types import ExtractedDocument, Heading, PageSpan

__all__ = [
    "CODE_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_NAMES",
    "clean_text",
    "decode_text",
    "detect_kind",
    "markdown_headings",
    "parse_file",
]

# --------------------------------------------------------------------------- kinds

_KIND_BY_EXTENSION: dict[str, str] = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".mkdn": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".log": "text",
    ".csv": "text",
    ".tsv": "text",
    ".tex": "text",
    ".org": "text",
    ".adoc": "text",
    ".docx": "docx",
}

CODE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".py", ".pyi", ".pyx", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".vue",
        ".svelte", ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".m", ".mm",
        ".java", ".kt", ".kts", ".scala", ".groovy", ".gradle", ".go", ".rs", ".rb",
        ".php", ".pl", ".pm", ".lua", ".swift", ".cs", ".fs", ".vb", ".dart", ".r",
        ".jl", ".ex", ".exs", ".erl", ".hrl", ".hs", ".ml", ".mli", ".clj", ".cljs",
        ".elm", ".zig", ".nim", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd",
        ".sql", ".toml", ".yaml", ".yml", ".json", ".jsonl", ".ini", ".cfg", ".conf",
        ".xml", ".xsl", ".css", ".scss", ".sass", ".less", ".proto", ".graphql",
        ".cmake", ".mk", ".dockerfile", ".tf", ".nix", ".el", ".vim",
    }
)  # fmt: skip

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_KIND_BY_EXTENSION) | CODE_EXTENSIONS

# Well-known extension-less file names (compared in lower case).
SUPPORTED_NAMES: dict[str, str] = {
    "makefile": "code",
    "dockerfile": "code",
    "jenkinsfile": "code",
    "readme": "text",
    "license": "text",
    "copying": "text",
    "authors": "text",
    "changelog": "text",
}


def detect_kind(path: Path) -> str | None:
    """The kind of ``path`` by its extension (or well-known name), or None if unsupported."""
    suffix = path.suffix.lower()
    if suffix in CODE_EXTENSIONS:
        return "code"
    kind = _KIND_BY_EXTENSION.get(suffix)
    if kind is not None:
        return kind
    if not suffix:
        return SUPPORTED_NAMES.get(path.name.lower())
    return None


# --------------------------------------------------------------------------- entry point


def parse_file(path: Path, *, max_bytes: int) -> ExtractedDocument:
    """Read ``path`` into an ``ExtractedDocument``.

    Raises ``UnsupportedFile`` for an unknown type and ``IngestError`` for any
    other file that cannot be read; the message is one sentence for a person.
    The size is checked before anything is read.
    """
    path = Path(path)
    name = path.name
    kind = detect_kind(path)
    if kind is None:
        raise UnsupportedFile(
            f"'{name}' has an unsupported file type ({path.suffix or 'no extension'})."
        )
    data = _read_bytes(path, max_bytes)
    try:
        if kind == "pdf":
            return _parse_pdf(data, name)
        if kind == "docx":
            return _parse_docx(data, name)
        if kind == "html":
            return _parse_html(data, name)
        text, encoding = decode_text(data, name)
        if kind == "markdown":
            return _parse_markdown(text, encoding, name)
        return _parse_plain(text, encoding, kind, name)
    except IngestError:
        raise
    except Exception as exc:  # a library failure on a malformed file, never a crash
        raise IngestError(
            f"'{name}' could not be read as {_KIND_LABEL[kind]} ({type(exc).__name__}: "
            f"{_short(exc)})."
        ) from exc


_KIND_LABEL = {
    "pdf": "a PDF",
    "docx": "a Word document",
    "html": "HTML",
    "markdown": "Markdown",
    "text": "text",
    "code": "source code",
}


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    name = path.name
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise IngestError(f"'{name}' is a folder, not a file.")
        if size > max_bytes:
            raise IngestError(
                f"'{name}' is {_mb(size)}, over the {_mb(max_bytes)} limit for one file."
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except IngestError:
        raise
    except FileNotFoundError as exc:
        raise IngestError(f"'{name}' no longer exists.") from exc
    except PermissionError as exc:
        raise IngestError(f"'{name}' cannot be read (permission denied).") from exc
    except OSError as exc:
        raise IngestError(f"'{name}' cannot be read ({exc.strerror or exc}).") from exc
    if len(data) > max_bytes:  # it grew after stat()
        raise IngestError(f"'{name}' is over the {_mb(max_bytes)} limit for one file.")
    if not data:
        raise IngestError(f"'{name}' is empty.")
    return data


def _mb(n: int) -> str:
    if n < 1_000_000:
        return f"{n:,} bytes"
    return f"{n / 1_000_000:.1f} MB"


# --------------------------------------------------------------------------- cleaning

# C0 controls except \t and \n (\r, \f and \v are turned into \n first), DEL,
# the noncharacters pdfium uses as markers, and lone surrogates.
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")
_NEWLINE_RE = re.compile("\r\n?|[\x0b\x0c]")


def clean_text(text: str) -> str:
    """Normalise newlines to ``\\n`` and drop control characters other than ``\\t``/``\\n``."""
    if "\r" in text or "\x0b" in text or "\x0c" in text:
        text = _NEWLINE_RE.sub("\n", text)
    return _CONTROL_RE.sub("", text)


# --------------------------------------------------------------------------- decoding

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)

# What Western European text decoded as cp1252 looks like: letters from Latin-1
# Supplement and Latin Extended-A that cp1252 has, plus its typographic marks.
# A Central European (cp1250) or Cyrillic file decoded as cp1252 shows
# superscripts, fractions and symbols between letters instead, and goes on to
# charset-normalizer, which tells those apart well.
_WESTERN_CHARS = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
    "ŒœŠšŸŽžƒ"
    "€‚„…†‡ˆ‰‹‘’“”•–—˜™›"
    "\xa0¡¢£¤¥¦§¨©ª«¬\xad®¯°±²³´µ¶·¸¹º»¼½¾¿×÷"
)
_SYMBOLS_BETWEEN_LETTERS = frozenset("¡¢£¤¥¦§¨©ª¬®¯°±²³´µ¶·¸¹º¼½¾¿×÷")

_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def decode_text(data: bytes, name: str = "file", *, hint: str | None = None) -> tuple[str, str]:
    """Decode bytes of a text file; returns ``(cleaned text, encoding name)``.

    Order: a byte-order mark, strict UTF-8, ``hint`` (an HTML ``<meta charset>``),
    a cp1252 check for Western text, and finally charset-normalizer. Raises
    ``IngestError`` for binary content: NUL bytes (without a UTF-16/32 BOM),
    many control characters, or bytes no encoding explains.
    """
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            try:
                return clean_text(data[len(bom) :].decode(codec)), label
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"'{name}' starts with a {label} byte-order mark but is not valid {label}."
                ) from exc
    if b"\x00" in data:
        raise IngestError(f"'{name}' looks like a binary file, not text (it contains NUL bytes).")
    text: str | None = None
    encoding = ""
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if text is not None:
        _reject_binary(text, name)
        return clean_text(text), encoding
    if hint:
        try:
            codec_name = codecs.lookup(hint).name
            if codec_name in {"iso8859-1", "ascii"}:  # as browsers do (WHATWG Encoding)
                codec_name = "cp1252"
            if codec_name not in {"utf-8", "utf-16", "utf-32"}:
                text, encoding = data.decode(codec_name), codec_name
        except (LookupError, UnicodeDecodeError):
            text = None
    if text is None:
        western = _as_western(data)
        if western is not None:
            text, encoding = western, "cp1252"
    if text is None:
        text, encoding = _charset_normalizer(data, name)
    _reject_binary(text, name)
    return clean_text(text), encoding


def _as_western(data: bytes) -> str | None:
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    previous = " "
    for char in text:
        if char >= "\x80":
            if char not in _WESTERN_CHARS:
                return None
            if char in _SYMBOLS_BETWEEN_LETTERS and previous.isalpha():
                return None
        previous = char
    return text


def _charset_normalizer(data: bytes, name: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:  # short or unusual text reads as "chaotic": accept more chaos once
        best = from_bytes(data, threshold=0.5).best()
    if best is None:
        raise IngestError(
            f"'{name}' looks like a binary file: it is not text in any known encoding."
        )
    return str(best), best.encoding


def _reject_binary(text: str, name: str) -> None:
    if not text:
        return
    sample = text[:65536]
    controls = sum(1 for c in sample if c < " " and c not in "\t\n\r\x0c\x0b\x1b")
    if controls > max(8, len(sample) // 100):
        raise IngestError(f"'{name}' looks like a binary file, not text (many control characters).")


# --------------------------------------------------------------------------- plain text, code


# Generated or minified code (bundles, search indexes, source maps) is written for
# machines: a few enormous lines. Indexing it floods search with noise (the Sphinx
# search index alone would be a third of the Python docs' chunks).
MINIFIED_LINE_CHARS = 1000
MINIFIED_SHARE = 0.5


def looks_minified(text: str) -> bool:
    """Most of the text sits on lines over ``MINIFIED_LINE_CHARS`` characters."""
    if len(text) < MINIFIED_LINE_CHARS:
        return False
    long_chars = sum(len(line) for line in text.split("\n") if len(line) > MINIFIED_LINE_CHARS)
    return long_chars > MINIFIED_SHARE * len(text)


def _parse_plain(text: str, encoding: str, kind: str, name: str) -> ExtractedDocument:
    if not text.strip():
        raise IngestError(f"'{name}' contains only whitespace.")
    if kind == "code" and looks_minified(text):
        raise UnsupportedFile(
            f"'{name}' looks like generated or minified code (very long lines); it was not indexed."
        )
    return ExtractedDocument(text=text, kind=kind, encoding=encoding)


# --------------------------------------------------------------------------- markdown

_ATX_RE = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATX_CLOSE_RE = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
_SETEXT_RE = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_NOT_PARAGRAPH_RE = re.compile(r" {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|#|[ \t]*$)| {4}|\t")


def _parse_markdown(text: str, encoding: str, name: str) -> ExtractedDocument:
    if not text.strip():
        raise IngestError(f"'{name}' contains only whitespace.")
    headings = markdown_headings(text)
    title = next((h.title for h in headings if h.level == 1), None)
    return ExtractedDocument(
        text=text, kind="markdown", title=title, headings=tuple(headings), encoding=encoding
    )


def markdown_headings(text: str) -> list[Heading]:
    """ATX and setext headings of a Markdown text, skipping fenced code and front matter."""
    headings: list[Heading] = []
    fence: tuple[str, int] | None = None  # (char, length) of the open fence
    prev_line: str | None = None  # the previous line if it could be a setext title
    prev_start = 0
    pos = 0
    lines = text.split("\n")
    index = 0
    if lines and lines[0].rstrip() == "---":  # YAML front matter
        for j in range(1, len(lines)):
            if lines[j].rstrip() in {"---", "..."}:
                pos = sum(len(line) + 1 for line in lines[: j + 1])
                index = j + 1
                break
    for line in lines[index:]:
        start = pos
        pos += len(line) + 1
        if fence is not None:
            stripped = line.strip()
            char, length = fence
            if (
                stripped.startswith(char * length)
                and not stripped.strip(char)
                and len(line) - len(line.lstrip(" ")) <= 3
            ):
                fence = None
            continue
        m = _FENCE_RE.match(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = (m.group(1)[0], len(m.group(1)))
            prev_line = None
            continue
        m = _ATX_RE.match(line)
        if m:
            raw = m.group(2) or ""
            title = _ATX_CLOSE_RE.sub("", raw).strip()
            if title:
                headings.append(Heading(len(m.group(1)), title, start + m.start(2)))
            prev_line = None
            continue
        if prev_line is not None and _SETEXT_RE.match(line):
            title = prev_line.strip()
            level = 1 if line.strip()[0] == "=" else 2
            offset = len(prev_line) - len(prev_line.lstrip())
            headings.append(Heading(level, title, prev_start + offset))
            prev_line = None
            continue
        if _NOT_PARAGRAPH_RE.match(line):
            prev_line = None
        else:
            prev_line, prev_start = line, start
    return headings


# --------------------------------------------------------------------------- PDF


def _parse_pdf(data: bytes, name: str) -> ExtractedDocument:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message or "security" in message:
            raise IngestError(f"'{name}' is an encrypted PDF that needs a password.") from exc
        raise IngestError(f"'{name}' is not a valid PDF (it is damaged or truncated).") from exc
    try:
        page_texts: list[str] = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    raw = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
            page_texts.append(_clean_pdf_page(raw))
        title = _pdf_title(pdf)
    except pdfium.PdfiumError as exc:
        raise IngestError(f"'{name}' is a damaged PDF: {_short(exc)}.") from exc
    finally:
        pdf.close()
    if not page_texts:
        raise IngestError(f"'{name}' is a PDF without pages.")
    if not any(t.strip() for t in page_texts):
        raise IngestError(f"'{name}' has no extractable text (scanned?).")
    pages: list[PageSpan] = []
    parts: list[str] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if number > 1:
            parts.append("\n\n")
            offset += 2
        pages.append(PageSpan(number, offset, offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    return ExtractedDocument(text="".join(parts), kind="pdf", title=title, pages=tuple(pages))


_TRAILING_SPACE_RE = re.compile(r"[ \t]+\n")


def _clean_pdf_page(raw: str) -> str:
    # pdfium marks a hyphen at a line break with \x02 (dropped by clean_text).
    text = clean_text(raw)
    text = _TRAILING_SPACE_RE.sub("\n", text)
    return text.strip()


def _pdf_title(pdf: Any) -> str | None:
    try:
        meta = pdf.get_metadata_dict()
    except Exception:
        return None
    title = " ".join(str(meta.get("Title") or "").split())
    if not title or title.lower() in {"untitled", "unknown"}:
        return None
    return clean_text(title)


# --------------------------------------------------------------------------- DOCX

_HEADING_STYLE_RE = re.compile(r"^heading ?([1-9])$", re.I)
_SPACES_RE = re.compile(r"\s+")


def _parse_docx(data: bytes, name: str) -> ExtractedDocument:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise IngestError(
            f"'{name}' is not a valid Word document (it is damaged or not a .docx file)."
        ) from exc
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    title: str | None = None
    first_h1: str | None = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            block = _docx_table(item)
            level = 0
        else:
            block = clean_text(item.text).strip()
            level = _docx_heading_level(item)
            if level and block:
                block = " ".join(block.split())
        if not block:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        if level:
            headings.append(Heading(level, block, offset))
            style = _style_name(item)
            if style.lower() == "title" and title is None:
                title = block
            elif level == 1 and first_h1 is None:
                first_h1 = block
        parts.append(block)
        offset += len(block)
    if not parts:
        raise IngestError(f"'{name}' is a Word document without text.")
    core_title = (document.core_properties.title or "").strip()
    return ExtractedDocument(
        text="".join(parts),
        kind="docx",
        title=title or (clean_text(core_title) if core_title else None) or first_h1,
        headings=tuple(headings),
    )


def _style_name(paragraph: Any) -> str:
    try:
        style = paragraph.style
    except Exception:
        return ""
    if style is None:
        return ""
    return str(style.name or style.style_id or "")


def _docx_heading_level(paragraph: Any) -> int:
    try:
        style = paragraph.style
    except Exception:
        return 0
    while style is not None:
        for label in (style.name, style.style_id):
            if not label:
                continue
            if label.lower() == "title":
                return 1
            m = _HEADING_STYLE_RE.match(label)
            if m:
                return int(m.group(1))
        style = style.base_style  # a custom style based on "Heading 2" is a heading too
    return 0


def _docx_table(table: Any) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:  # a merged cell repeats
                continue
            previous = cell._tc
            cells.append(_SPACES_RE.sub(" ", clean_text(cell.text)).strip())
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --------------------------------------------------------------------------- HTML

# Dropped with everything inside them (their tail text stays).
_DROP_TAGS = frozenset(
    {
        "script", "style", "nav", "footer", "noscript", "form", "template",
        "iframe", "svg", "math", "canvas", "button", "select", "textarea", "input",
        "object", "embed", "head", "title", "meta", "link", "img", "video", "audio",
    }
)  # fmt: skip
_DROP_CLASSES = frozenset(
    {
        "related", "sphinxsidebar", "sphinxsidebarwrapper", "footer", "mobile-nav",
        "menu-wrapper", "inline-search", "navigation", "breadcrumbs", "breadcrumb",
        "toc-drawer", "sidebar-drawer", "headerlink", "skip-link", "nav", "navbar",
        "site-header", "site-footer",
    }
)  # fmt: skip
_DROP_ROLES = frozenset({"navigation", "search", "banner", "contentinfo"})
# A box beside the text: ``<aside>``, ``class="sidebar"``, ``role="complementary"``.
# On a web site it holds navigation (links, a search form); in a book or a manual it
# is the author's own text: DocBook's "Tip" and "Going further" sidebars, Sphinx's
# sidebar directive and footnotes. It is dropped only when it reads as navigation.
_BOX_CLASSES = frozenset({"sidebar"})
_BOX_ROLES = frozenset({"complementary"})
_BOX_NAVIGATION = frozenset({"nav", "form", "input", "select", "button", "menu"})
BOX_LINK_DENSITY = 0.5
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure",
        "frameset", "header", "hgroup", "hr", "html", "legend", "li", "main", "menu",
        "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_INLINE_SPACE_RE = re.compile(r"\s+")
_LINE_SPACE_RE = re.compile(r" *\n *")
_MULTI_SPACE_RE = re.compile(r" {2,}")
_ENCODING_DECLARATION_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)


class _HtmlText:
    """Accumulates paragraphs and headings; offsets are known as text is emitted."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.inline: list[str] = []
        self.headings: list[Heading] = []

    def add_inline(self, text: str | None) -> None:
        if text:
            text = _INLINE_SPACE_RE.sub(" ", text.replace("¶", ""))
            self.inline.append(_CONTROL_RE.sub("", text))

    def has_inline_text(self) -> bool:
        return any(not piece.isspace() for piece in self.inline)

    def flush(self) -> None:
        if not self.inline:
            return
        joined = "".join(self.inline)
        self.inline.clear()
        joined = _LINE_SPACE_RE.sub("\n", _MULTI_SPACE_RE.sub(" ", joined)).strip()
        self.block(joined)

    def block(self, text: str, heading_level: int = 0) -> None:
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        if heading_level:
            self.headings.append(Heading(heading_level, text, self.length))
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


# A list or table whose text is almost all link text is navigation (a table of
# contents, an index, a link farm), the classic boilerplate signal; prose that
# merely contains links stays.
_LINK_LIST_TAGS = frozenset({"ul", "ol", "dl", "table", "nav", "menu"})
LINK_DENSITY = 0.8
LINK_MIN_LINKS = 8


def _links(el: Any) -> tuple[int, int, int]:
    """Links in ``el``, characters of their text, characters of all its text."""
    links = 0
    link_chars = 0
    for a in el.iter("a"):
        links += 1
        link_chars += len("".join(a.itertext()).strip())
    return links, link_chars, len("".join(el.itertext()).strip())


def _is_link_list(el: Any) -> bool:
    links, link_chars, total = _links(el)
    return links >= LINK_MIN_LINKS and total > 0 and link_chars / total >= LINK_DENSITY


def _is_navigation_box(el: Any) -> bool:
    """A side box that holds navigation: a search form or menu, links for most of its
    text, or no text at all."""
    if any(isinstance(d.tag, str) and d.tag.lower() in _BOX_NAVIGATION for d in el.iter()):
        return True
    _, link_chars, total = _links(el)
    return total == 0 or link_chars / total >= BOX_LINK_DENSITY


def _is_box(el: Any, tag: str) -> bool:
    if tag == "aside":
        return True
    attrib = el.attrib
    classes = attrib.get("class")
    return attrib.get("role") in _BOX_ROLES or (
        bool(classes) and not _BOX_CLASSES.isdisjoint(classes.split())
    )


def _is_dropped(el: Any, tag: str, inside_article: bool) -> bool:
    if tag in _DROP_TAGS:
        return True
    if _is_box(el, tag) and _is_navigation_box(el):
        return True
    if tag in _LINK_LIST_TAGS and _is_link_list(el):
        return True
    if tag == "header" and not inside_article:
        return True  # a page header is navigation; an article's own header holds its title
    attrib = el.attrib
    if not attrib:
        return False
    if "hidden" in attrib or attrib.get("aria-hidden") == "true":
        return True
    if attrib.get("role") in _DROP_ROLES:
        return True
    classes = attrib.get("class")
    return bool(classes) and not _DROP_CLASSES.isdisjoint(classes.split())


def _parse_html(data: bytes, name: str) -> ExtractedDocument:
    import lxml.html

    match = _META_CHARSET_RE.search(data[:4096])
    hint = match.group(1).decode("ascii", "replace") if match else None
    source, encoding = decode_text(data, name, hint=hint)
    # lxml takes bytes with an explicit encoding; an XML declaration would contradict it.
    source = _ENCODING_DECLARATION_RE.sub("", source, count=1)
    if not source.strip():
        raise IngestError(f"'{name}' contains only whitespace.")
    parser = lxml.html.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, huge_tree=True
    )
    try:
        tree = lxml.html.document_fromstring(source.encode("utf-8", "surrogatepass"), parser)
    except Exception as exc:  # lxml.etree.ParserError: "Document is empty", ...
        raise IngestError(f"'{name}' has no readable HTML content.") from exc
    page_title = _html_title(tree)
    out = _HtmlText()
    _walk_html(_html_main(tree), out)
    out.flush()
    text = out.text()
    if not text.strip():
        raise IngestError(f"'{name}' has no readable text in its HTML (only navigation or links).")
    first_h1 = next((h.title for h in out.headings if h.level == 1), None)
    return ExtractedDocument(
        text=text,
        kind="html",
        title=page_title or first_h1,
        headings=tuple(out.headings),
        encoding=encoding,
    )


def _html_title(tree: Any) -> str | None:
    element = tree.find(".//title")
    if element is None:
        return None
    title = " ".join("".join(element.itertext()).split())
    return title or None


def _html_main(tree: Any) -> Any:
    """The main content element, by preference: <main>, [role=main], Sphinx's body, <article>."""
    found: dict[int, Any] = {}
    for el in tree.iter():
        tag = el.tag
        if not isinstance(tag, str):
            continue
        if tag == "main":
            rank = 0
        elif el.get("role") == "main":
            rank = 1
        elif tag == "div" and "body" in (el.get("class") or "").split():
            rank = 2
        elif tag == "div" and "document" in (el.get("class") or "").split():
            rank = 3
        elif tag == "article":
            rank = 4
        else:
            continue
        found.setdefault(rank, el)
        if rank == 0:
            break
    if found:
        return found[min(found)]
    body = tree.find(".//body")
    return body if body is not None else tree


def _walk_html(root: Any, out: _HtmlText) -> None:
    """Depth-first walk without recursion (deeply nested pages must not overflow).

    Stack entries: (element, entering, inside_article). On the way out an element
    flushes its paragraph if it is a block, then its tail text follows.
    """
    stack: list[tuple[Any, bool, bool]] = [(root, True, False)]
    first = True
    while stack:
        el, entering, inside_article = stack.pop()
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if not entering:
            if tag in _BLOCK_TAGS:
                out.flush()
            out.add_inline(el.tail)
            continue
        is_root = first
        first = False
        if not tag or (not is_root and _is_dropped(el, tag, inside_article)):
            if not is_root:
                out.add_inline(el.tail)
            continue
        if tag in _HEADING_TAGS:
            out.flush()
            title = " ".join(clean_text(_visible_text(el)).replace("¶", "").split())
            out.block(title, _HEADING_TAGS[tag])
        elif tag == "pre":
            out.flush()
            out.block(_pre_text(clean_text(_visible_text(el))))
        elif tag == "table":
            out.flush()
            out.block(_html_table(el))
        elif tag == "br":
            out.inline.append("\n")
        else:
            if tag in _CELL_TAGS and out.has_inline_text():
                out.add_inline(" | ")
            if tag in _BLOCK_TAGS:
                out.flush()
            out.add_inline(el.text)
            inside = inside_article or tag in {"article", "main"}
            stack.append((el, False, inside_article))
            stack.extend((child, True, inside) for child in reversed(el))
            continue
        if not is_root:
            out.add_inline(el.tail)


def _html_table(table: Any) -> str:
    """A table as lines of ``" | "``-joined cells (a cell's paragraphs and lists flattened)."""
    lines: list[str] = []
    caption = table.find("caption")
    if caption is not None:
        lines.append(" ".join(clean_text(_visible_text(caption)).replace("¶", "").split()))
    for row in table.iter("tr"):
        owner = next((a for a in row.iterancestors("table")), None)
        if owner is not table:
            continue  # a row of a nested table: its cell text is in the outer cell
        cells = [
            " ".join(clean_text(_visible_text(cell)).replace("¶", "").split())
            for cell in row
            if isinstance(cell.tag, str) and cell.tag.lower() in _CELL_TAGS
        ]
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(line for line in lines if line)


def _visible_text(el: Any) -> str:
    """Text of ``el`` without the parts a reader never sees (permalinks, scripts...)."""
    parts: list[str] = []
    stack: list[tuple[Any, bool]] = [(el, True)]
    while stack:
        node, entering = stack.pop()
        if not entering:
            if node.tail:
                parts.append(node.tail)
            continue
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        if node is not el and (not tag or _is_dropped(node, tag, True)):
            if node.tail:
                parts.append(node.tail)
            continue
        if tag == "br":
            parts.append("\n")
        if node.text:
            parts.append(node.text)
        if node is not el:
            stack.append((node, False))
        stack.extend((child, True) for child in reversed(node))
    return "".join(parts)


def _pre_text(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("¶", "").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)
