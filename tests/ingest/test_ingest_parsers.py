"""parse_file on real files of every kind, good and bad."""

from __future__ import annotations

import os
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from core.errors import IngestError, UnsupportedFile
from core.ingest.parsers import SUPPORTED_EXTENSIONS, detect_kind, parse_file
from core.types import ExtractedDocument

MB = 1_000_000
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def parse(path: Path, max_bytes: int = 10 * MB) -> ExtractedDocument:
    return parse_file(path, max_bytes=max_bytes)


def assert_clean(doc: ExtractedDocument) -> None:
    assert not CONTROL.search(doc.text), "no control characters but \\n and \\t"
    assert "\r" not in doc.text
    for h in doc.headings:
        assert doc.text[h.start : h.start + len(h.title)] == h.title
    for p in doc.pages:
        assert 0 <= p.start <= p.end <= len(doc.text)


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.pdf", "pdf"),
        ("A.PDF", "pdf"),
        ("b.html", "html"),
        ("b.htm", "html"),
        ("c.md", "markdown"),
        ("d.txt", "text"),
        ("e.docx", "docx"),
        ("f.py", "code"),
        ("g.rs", "code"),
        ("h.yaml", "code"),
        ("i.json", "code"),
        ("Makefile", "code"),
        ("README", "text"),
        ("photo.jpeg", None),
        ("old.doc", None),
        ("noext", None),
    ],
)
def test_detect_kind_by_extension(name: str, kind: str | None) -> None:
    assert detect_kind(Path(name)) == kind


def test_supported_extensions_agree_with_detect_kind() -> None:
    for ext in SUPPORTED_EXTENSIONS:
        assert ext.startswith(".") and ext == ext.lower()
        assert detect_kind(Path("x" + ext)) is not None


# --------------------------------------------------------------------------- PDF


def test_pdf_pages_are_spans_of_the_joined_text(files: dict[str, Path]) -> None:
    doc = parse(files["pdf"])
    assert doc.kind == "pdf"
    assert doc.title == "Seabirds"
    assert [p.number for p in doc.pages] == [1, 2, 3]
    page_texts = [doc.text[p.start : p.end] for p in doc.pages]
    assert page_texts[0].startswith("Chapter one")
    assert "harbour seals" in page_texts[1]
    assert "puffins" in page_texts[2]
    assert doc.text == "\n\n".join(page_texts)
    assert_clean(doc)


def test_encrypted_pdf_is_refused_with_a_reason(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match="encrypted PDF"):
        parse(files["encrypted_pdf"])


@pytest.mark.parametrize("key", ["truncated_pdf", "garbage_pdf"])
def test_corrupt_pdf_is_refused_with_a_reason(files: dict[str, Path], key: str) -> None:
    with pytest.raises(IngestError, match=r"not a valid PDF|damaged") as info:
        parse(files[key])
    assert type(info.value) is IngestError


def test_pdf_without_text_layer_says_scanned(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match=r"no extractable text \(scanned\?\)"):
        parse(files["scanned_pdf"])


def test_a_real_pdf_from_the_system_parses_cleanly() -> None:
    candidates = [
        Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
        Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
    ]
    found = [p for p in candidates if p.is_file()]
    if not found:
        pytest.skip("no PDF shipped by a Debian package on this machine")
    doc = parse(found[0], max_bytes=50 * MB)
    assert len(doc.pages) > 1
    assert len(doc.text) > 1000
    assert "\ufffe" not in doc.text
    assert_clean(doc)


# --------------------------------------------------------------------------- DOCX


def test_docx_keeps_body_order_tables_and_headings(files: dict[str, Path]) -> None:
    doc = parse(files["docx"])
    assert doc.kind == "docx"
    assert doc.title == "Harbour report"
    assert [(h.level, h.title) for h in doc.headings] == [
        (1, "Harbour report"),
        (1, "Ships"),
        (2, "Crew"),
    ]
    text = doc.text
    assert "Ship | Tons | Berth\nAurora | 120 | B2\nGull | 45 | A1" in text
    order = [
        text.index(s)
        for s in ("Three ships wintered", "Aurora | 120", "The table above", "Eleven sailors")
    ]
    assert order == sorted(order)
    assert_clean(doc)


def test_corrupt_docx_is_refused_with_a_reason(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match="not a valid Word document"):
        parse(files["corrupt_docx"])


# --------------------------------------------------------------------------- HTML


def test_html_keeps_main_text_and_drops_navigation(files: dict[str, Path]) -> None:
    doc = parse(files["html"])
    assert doc.kind == "html"
    assert doc.title == "Tide tables & notes"
    text = doc.text
    for dropped in (
        "zebra-sentinel",
        "color: red",
        "Navigation link",
        "About us",
        "previous page",
        "Sidebar advert",
        "Copyright footer",
        "Enable JavaScript",
        "Search the site",
        "¶",
    ):
        assert dropped not in text
    assert "High tide at the north pier is at 06:40." in text
    assert "Spring tides\ncome twice a month." in text
    assert "def tide(hour):\n    return hour + 12" in text
    assert "Day | High\nMonday | 06:40" in text
    assert "First item\n\nSecond item" in text
    assert "Neap tides are weaker <by far>." in text
    assert [(h.level, h.title) for h in doc.headings] == [
        (1, "Tide tables"),
        (2, "Spring tides"),
        (3, "Neap tides"),
    ]
    assert "\n\n\n" not in text
    assert_clean(doc)


def test_html_side_boxes_keep_their_text_unless_they_are_navigation(tmp_path: Path) -> None:
    """A book's "Tip" box and a footnote are the author's text; a site's sidebar of
    links or a search box is navigation."""
    page = tmp_path / "book.html"
    page.write_text(
        "<html><body>"
        '<div class="section"><h2>Package cache</h2>'
        '<div class="para">Downloaded packages are kept on disk.</div>'
        '<div class="sidebar"><p class="title">Going further</p>'
        '<div class="para">Run <code>tidy --old</code> to remove the copies that can'
        " no longer be fetched.</div></div>"
        '<aside class="footnote" role="note"><a href="#r1">1</a> Measured on a quiet'
        " machine.</aside>"
        '<div role="complementary"><p>See also <a href="a.html">the archive</a> for'
        " older releases of every package.</p></div>"
        "</div>"
        '<aside class="sidebar"><ul><li><a href="/">Home</a></li><li><a href="/b">Blog'
        '</a></li><li><a href="/c">Contact</a></li></ul></aside>'
        '<div class="sidebar"><form><input name="q"></form><p>Search the site</p></div>'
        "<aside></aside>"
        "</body></html>",
        encoding="utf-8",
    )
    text = parse(page).text
    assert "Run tidy --old to remove the copies that can no longer be fetched." in text
    assert "Measured on a quiet machine." in text
    assert "See also the archive for older releases of every package." in text
    for navigation in ("Home", "Blog", "Contact", "Search the site"):
        assert navigation not in text


def test_html_declared_charset_is_honoured(tmp_path: Path) -> None:
    page = tmp_path / "latin.html"
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Crème brûlée “x”</p>'
    page.write_bytes(html.encode("cp1252"))
    doc = parse(page)
    assert doc.text == "Crème brûlée “x”"
    assert doc.encoding == "cp1252"


def test_python_docs_page_is_clean(python_docs: Path) -> None:
    doc = parse(python_docs / "library" / "functools.html")
    text = doc.text
    assert text.startswith("functools — Higher-order functions")
    assert doc.title is not None and doc.title.startswith("functools")
    assert doc.headings[0].level == 1
    assert any(h.title == "partial Objects" for h in doc.headings)
    assert "@functools.lru_cache(user_function)" in text
    assert ">>> factorial(10)" in text
    for noise in ("¶", "Navigation", "Previous topic", "Theme", "Quick search", "Report a Bug"):
        assert noise not in text
    assert_clean(doc)


@pytest.mark.parametrize(
    "page", ["library/os.html", "tutorial/controlflow.html", "reference/datamodel.html"]
)
def test_more_python_docs_pages_parse(python_docs: Path, page: str) -> None:
    doc = parse(python_docs / page)
    assert len(doc.text) > 5000
    assert doc.headings and doc.headings[0].level == 1
    assert "Previous topic" not in doc.text
    assert_clean(doc)


# --------------------------------------------------------------------------- Markdown


def test_markdown_text_is_kept_verbatim_with_headings(files: dict[str, Path]) -> None:
    doc = parse(files["markdown"])
    assert doc.kind == "markdown"
    assert doc.text == files["markdown"].read_text(encoding="utf-8")
    assert [(h.level, h.title) for h in doc.headings] == [
        (1, "Garden guide"),
        (2, "Watering"),
        (3, "Compost"),
        (1, "Setext title"),
    ]
    assert doc.title == "Garden guide"
    assert "# not a heading" in doc.text
    assert_clean(doc)


# --------------------------------------------------------------------------- text and code


@pytest.mark.parametrize(
    ("key", "expected", "encoding"),
    [
        ("latin1", "Café crème brûlée, naïve façade. Ça coûte cher.\n", "cp1252"),
        ("cp1252", "“Smart quotes” — and 5 € for a crêpe…\n", "cp1252"),
        ("utf16", "UTF-16 text: Grüße aus Köln, 東京.\n", "utf-16"),
    ],
)
def test_non_utf8_text_is_decoded(
    files: dict[str, Path], key: str, expected: str, encoding: str
) -> None:
    doc = parse(files[key])
    assert doc.text == expected
    assert doc.encoding == encoding
    assert doc.kind == "text"


def test_shift_jis_text_is_decoded(files: dict[str, Path]) -> None:
    doc = parse(files["shift_jis"])
    assert doc.text.startswith("日本語のテキストです。")
    assert doc.encoding is not None and doc.encoding.replace("_", "").lower() in {
        "shiftjis",
        "cp932",
        "shiftjis2004",
        "shiftjisx0213",
    }


def test_central_european_text_is_not_mistaken_for_western(files: dict[str, Path]) -> None:
    doc = parse(files["cp1250"])
    assert doc.text.startswith("Polska jest krajem w Europie Środkowej. Stolicą Polski")
    assert doc.text.endswith("Zażółć gęślą jaźń.")


def test_code_newlines_are_normalised(files: dict[str, Path]) -> None:
    doc = parse(files["code"])
    assert doc.kind == "code"
    assert doc.text == 'def main():\n    print("hi")\n\n'
    assert doc.encoding == "utf-8"


def test_control_characters_are_dropped(files: dict[str, Path]) -> None:
    assert parse(files["controls"]).text == "bell and escape?"


def test_utf8_bom_is_not_part_of_the_text(tmp_path: Path) -> None:
    f = tmp_path / "bom.md"
    f.write_bytes(b"\xef\xbb\xbf# Title\n\nBody\n")
    doc = parse(f)
    assert doc.text == "# Title\n\nBody\n"
    assert doc.headings[0].start == 2


# --------------------------------------------------------------------------- refusals


def test_binary_content_in_a_text_file_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match="binary"):
        parse(files["binary"])


def test_empty_file_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match="is empty"):
        parse(files["empty"])


def test_whitespace_only_file_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match="only whitespace"):
        parse(files["blank"])


def test_file_over_the_limit_is_refused_before_reading(files: dict[str, Path]) -> None:
    with pytest.raises(IngestError, match=r"over the .* limit"):
        parse(files["pdf"], max_bytes=100)


def test_unsupported_extension_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedFile, match="unsupported file type"):
        parse(files["unsupported"])


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no longer exists"):
        parse(tmp_path / "gone.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("hidden", encoding="utf-8")
    f.chmod(0)
    with pytest.raises(IngestError, match="permission denied"):
        parse(f)


def test_unreadable_file_as_root_is_refused(tmp_path: Path) -> None:
    # Root ignores file modes, so make reading fail another way: a folder named like a file.
    d = tmp_path / "folder.txt"
    d.mkdir()
    with pytest.raises(IngestError, match="folder"):
        parse(d)


# --------------------------------------------------------------------------- process pool


def _parse_in_worker(path: str) -> ExtractedDocument:
    return parse_file(Path(path), max_bytes=10 * MB)


def test_parse_file_runs_in_a_process_pool(files: dict[str, Path]) -> None:
    keys = ["pdf", "docx", "html", "markdown", "latin1"]
    with ProcessPoolExecutor(max_workers=1) as pool:
        docs = list(pool.map(_parse_in_worker, [str(files[k]) for k in keys]))
    assert [d.kind for d in docs] == ["pdf", "docx", "html", "markdown", "text"]
    assert docs[0] == parse(files["pdf"])
    with ProcessPoolExecutor(max_workers=1) as pool:
        error = pool.submit(_parse_in_worker, str(files["encrypted_pdf"])).exception()
    assert isinstance(error, IngestError)
    assert "encrypted" in str(pickle.loads(pickle.dumps(error)))


def test_python_docs_tables_become_rows_of_cells(python_docs: Path) -> None:
    doc = parse(python_docs / "library" / "stdtypes.html")
    assert "Operation | Result | Notes\nx or y | if x is false, then y, else x | (1)" in doc.text


def test_minified_code_is_refused_with_a_reason(tmp_path: Path) -> None:
    from core.ingest.parsers import parse_file

    bundle = tmp_path / "bundle.min.js"
    bundle.write_text("var a=" + ",".join(str(i) for i in range(5000)) + ";\n")
    with pytest.raises(IngestError, match="minified"):
        parse_file(bundle, max_bytes=10_000_000)
    normal = tmp_path / "app.js"
    normal.write_text("function add(a, b) {\n  return a + b;\n}\n" * 50)
    assert parse_file(normal, max_bytes=10_000_000).kind == "code"


def test_link_lists_are_navigation_but_prose_with_links_stays(tmp_path: Path) -> None:
    from core.ingest.parsers import parse_file

    links = "".join(f'<li><a href="p{i}.html">Chapter {i}</a></li>' for i in range(20))
    page = tmp_path / "page.html"
    page.write_text(
        f"<html><body><main><h1>Guide</h1><ul>{links}</ul>"
        '<p>The <a href="x.html">retry</a> option waits five seconds between attempts, '
        "then gives up after three tries.</p></main></body></html>"
    )
    doc = parse_file(page, max_bytes=1_000_000)
    assert "Chapter 7" not in doc.text
    assert "waits five seconds" in doc.text and "retry" in doc.text
