"""Real files for the parser and chunker tests, made with the real libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

LOREM = (
    "Lighthouses guided ships along the rocky coast for two centuries. "
    "Each keeper kept a log of the weather, the ships and the oil burned. "
    "The logs are now kept in the county archive and can be read by appointment."
)


def make_pdf(
    path: Path,
    pages: list[list[str]],
    *,
    password: str | None = None,
    title: str | None = None,
) -> Path:
    """A PDF with one text line per item, one list per page (reportlab)."""
    from reportlab.lib import pdfencrypt
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    encrypt = (
        pdfencrypt.StandardEncryption(password, ownerPassword=password + "-owner")
        if password
        else None
    )
    c = canvas.Canvas(str(path), pagesize=A4, encrypt=encrypt)
    if title:
        c.setTitle(title)
    for lines in pages:
        y = 800
        for line in lines:
            c.drawString(60, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A PDF whose pages hold only drawings (what a scan looks like to a text extractor)."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    for _ in range(2):
        c.rect(50, 50, 300, 400, fill=1)
        c.showPage()
    c.save()
    return path


def make_docx(path: Path) -> Path:
    """A Word document: title, headings, paragraphs and a table between them."""
    import docx

    d = docx.Document()
    d.core_properties.title = "Core title"
    d.add_heading("Harbour report", level=0)  # the "Title" style
    d.add_paragraph("This report covers the harbour in winter.")
    d.add_heading("Ships", level=1)
    d.add_paragraph("Three ships wintered in the harbour.")
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate(
        [("Ship", "Tons", "Berth"), ("Aurora", "120", "B2"), ("Gull", "45", "A1")]
    ):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("The table above lists every ship.")
    d.add_heading("Crew", level=2)
    d.add_paragraph("Eleven sailors stayed aboard.")
    d.save(str(path))
    return path


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tide tables &amp; notes</title>
<style>body { color: red; } .secret { display: none }</style>
<script>var tracking = "zebra-sentinel"; function f() { return 1 < 2; }</script>
</head><body>
<header><a href="/">Home</a> | <a href="/about">About us</a></header>
<nav><ul><li>Navigation link one</li><li>Navigation link two</li></ul></nav>
<div class="related" role="navigation"><a href="#">previous page</a></div>
<main>
<h1>Tide tables<a class="headerlink" href="#t">¶</a></h1>
<p>High tide at   the <b>north</b> pier
is at 06:40.</p>
<h2>Spring tides</h2>
<p>Spring tides<br>come twice a month.</p>
<pre>
def tide(hour):
    return hour + 12
</pre>
<table><tr><th>Day</th><th>High</th></tr><tr><td>Monday</td><td>06:40</td></tr></table>
<ul><li>First item</li><li>Second item</li></ul>
<form><input name="q"><button>Search the site</button></form>
<h3>Neap tides</h3>
<p>Neap tides are weaker &lt;by far&gt;.</p>
</main>
<aside>Sidebar advert</aside>
<footer>Copyright footer text</footer>
<noscript>Enable JavaScript please</noscript>
</body></html>
"""

MARKDOWN = """---
title: front matter
author: nobody
---
# Garden guide

Intro paragraph about the garden.

Watering
--------

Water the beds on Tuesdays.

```python
# not a heading
x = 1
```

### Compost   ###

Turn the compost every fortnight.

Setext title
============

The end.
"""


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ingest-files")
    out: dict[str, Path] = {}
    out["pdf"] = make_pdf(
        d / "multi.pdf",
        [
            ["Chapter one", "The quick brown fox jumps over the lazy dog."],
            ["Chapter two", "Page two talks about harbour seals."],
            ["Chapter three", "Page three talks about puffins."],
        ],
        title="Seabirds",
    )
    out["encrypted_pdf"] = make_pdf(d / "locked.pdf", [["secret text"]], password="hunter2")
    data = out["pdf"].read_bytes()
    out["truncated_pdf"] = d / "truncated.pdf"
    out["truncated_pdf"].write_bytes(data[: len(data) // 3])
    out["garbage_pdf"] = d / "garbage.pdf"
    out["garbage_pdf"].write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    out["scanned_pdf"] = make_scanned_pdf(d / "scanned.pdf")
    out["docx"] = make_docx(d / "report.docx")
    out["corrupt_docx"] = d / "corrupt.docx"
    out["corrupt_docx"].write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    out["html"] = d / "page.html"
    out["html"].write_text(HTML_PAGE, encoding="utf-8")
    out["markdown"] = d / "guide.md"
    out["markdown"].write_text(MARKDOWN, encoding="utf-8")
    out["latin1"] = d / "latin1.txt"
    out["latin1"].write_bytes("Café crème brûlée, naïve façade. Ça coûte cher.\n".encode("latin-1"))
    out["cp1252"] = d / "cp1252.txt"
    out["cp1252"].write_bytes("“Smart quotes” — and 5 € for a crêpe…\r\n".encode("cp1252"))
    out["utf16"] = d / "utf16.txt"
    out["utf16"].write_text("UTF-16 text: Grüße aus Köln, 東京.\n", encoding="utf-16")
    out["shift_jis"] = d / "sjis.txt"
    out["shift_jis"].write_bytes(
        ("日本語のテキストです。これはテストのための文章です。" * 4 + "\n").encode("shift_jis")
    )
    out["cp1250"] = d / "polish.txt"
    out["cp1250"].write_bytes(
        (
            "Polska jest krajem w Europie Środkowej. Stolicą Polski jest Warszawa, a "
            "największym miastem też. Wrocław leży nad Odrą, a Kraków nad Wisłą. "
            "Zażółć gęślą jaźń."
        ).encode("cp1250")
    )
    out["binary"] = d / "image.txt"
    out["binary"].write_bytes(bytes(range(256)) * 8)
    out["empty"] = d / "empty.md"
    out["empty"].write_bytes(b"")
    out["blank"] = d / "blank.txt"
    out["blank"].write_text("   \n\n\t\n", encoding="utf-8")
    out["code"] = d / "tool.py"
    out["code"].write_text('def main():\r\n    print("hi")\x0c\r\n', encoding="utf-8")
    out["controls"] = d / "controls.txt"
    out["controls"].write_text("bell\x07 and\x1b escape\x7f?", encoding="utf-8")
    out["unsupported"] = d / "photo.jpeg"
    out["unsupported"].write_bytes(b"\xff\xd8\xff\xe0 not parsed")
    return out
