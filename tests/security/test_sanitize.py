"""Question clean-up, path confinement and Markdown that can load nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import UsageError
from core.security.sanitize import (
    clean_question,
    render_safe_markdown,
    safe_path,
    strip_zero_width,
)


def test_clean_question_normalises_and_tidies() -> None:
    raw = "  Ｗｈａｔ\u200b is\x07 the\t\tﬁle   size?\r\n\r\n\r\n\r\nAnd the date?  "
    assert clean_question(raw) == "What is the file size?\n\nAnd the date?"


def test_clean_question_removes_bidi_and_tag_characters() -> None:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "pwn")
    assert clean_question("\u202eabc\u202c" + hidden + " ok") == "abc ok"


@pytest.mark.parametrize("raw", ["", "   ", "\u200b\u200b", "\x00\x01\n\t"])
def test_an_empty_question_is_refused_with_a_clear_message(raw: str) -> None:
    with pytest.raises(UsageError, match="empty"):
        clean_question(raw)


def test_a_too_long_question_is_refused_naming_the_limit() -> None:
    with pytest.raises(UsageError, match=r"2001 characters long; the limit is 2000"):
        clean_question("a" * 2001)
    assert clean_question("b" * 2000) == "b" * 2000
    with pytest.raises(UsageError, match="limit is 10"):
        clean_question("x" * 11, max_chars=10)


def test_strip_zero_width_keeps_emoji_and_persian_joiners() -> None:
    family = "👨\u200d👩\u200d👧"
    persian = "می\u200cخواهم"
    assert strip_zero_width(family) == family
    assert strip_zero_width(persian) == persian
    assert strip_zero_width("a\u200bb\u200dc\ufeffd\u2060e") == "abcde"


def test_safe_path_resolves_inside_the_base(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    assert safe_path(tmp_path, "docs/a.txt") == (tmp_path / "docs" / "a.txt").resolve()
    assert safe_path(tmp_path, "docs/../b.txt") == (tmp_path / "b.txt").resolve()
    assert safe_path(tmp_path, ".") == tmp_path.resolve()


@pytest.mark.parametrize("bad", ["../secret", "docs/../../x", "/etc/passwd", "a/\x00b"])
def test_safe_path_refuses_escapes(tmp_path: Path, bad: str) -> None:
    (tmp_path / "docs").mkdir()
    with pytest.raises(UsageError):
        safe_path(tmp_path, bad)


def test_safe_path_refuses_a_symlink_pointing_outside(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(UsageError, match="outside"):
        safe_path(base, "link/file.txt")


def test_markdown_escapes_every_piece_of_html() -> None:
    out = render_safe_markdown('Hi <script>alert(1)</script> <img src="x" onerror="y">')
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&lt;img" in out


def test_images_become_plain_links_and_are_never_loaded() -> None:
    out = render_safe_markdown("See ![chart](https://evil.example/p.png?q=secret).")
    assert "<img" not in out
    assert '<a href="https://evil.example/p.png?q=secret"' in out
    assert "image: chart" in out
    assert "(https://evil.example/p.png?q=secret)" in out  # the URL is visible


def test_links_show_their_url_and_unsafe_schemes_stay_text() -> None:
    out = render_safe_markdown("[docs](https://x.org/a?b=1&c=2) and [bad](javascript:alert)")
    assert (
        '<a href="https://x.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">docs</a>' in out
    )
    assert "(https://x.org/a?b=1&amp;c=2)" in out
    assert "javascript:" not in out.split("bad", 1)[0]
    assert 'href="javascript' not in out
    assert "bad (javascript:alert)" in out


def test_a_quote_in_a_url_cannot_break_out_of_the_attribute() -> None:
    out = render_safe_markdown('[x](https://a.example/"onmouseover="alert(1))')
    assert 'onmouseover="' not in out


def test_the_markdown_subset_renders() -> None:
    md = (
        "# Title\n\nSome **bold**, *italic*, `a <b> code` and snake_case_name.\n"
        "line two\n\n- one\n- two\n\n1. first\n2. second\n\n```\nx < 1 **not bold**\n```"
    )
    out = render_safe_markdown(md)
    assert "<h1>Title</h1>" in out
    assert "<strong>bold</strong>" in out and "<em>italic</em>" in out
    assert "<code>a &lt;b&gt; code</code>" in out
    assert "snake_case_name" in out
    assert "<br>" in out
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in out
    assert "<ol>\n<li>first</li>\n<li>second</li>\n</ol>" in out
    assert "<pre><code>x &lt; 1 **not bold**</code></pre>" in out
