"""Which files a dropped folder contributes (``core.ingest.pipeline.discover``)."""

from __future__ import annotations

from pathlib import Path

from core.ingest.parsers import SUPPORTED_EXTENSIONS
from core.ingest.pipeline import discover


def _names(files: list[str], root: Path) -> set[str]:
    return {str(Path(f).relative_to(root)) for f in files}


def _write(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("body { color: black; }\n" if name.endswith("ss") else "text\n")


def test_stylesheets_beside_web_pages_are_not_documents(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", "guide/setup.html", "theme/css/common.css", "extra.scss")
    files, roots, failures = discover([tmp_path], SUPPORTED_EXTENSIONS)
    assert _names(files, tmp_path) == {"index.html", "guide/setup.html"}
    assert roots == [str(tmp_path.resolve())] and failures == []


def test_stylesheets_without_pages_and_dropped_ones_are_kept(tmp_path: Path) -> None:
    site, styles = tmp_path / "site", tmp_path / "styles"
    _write(site, "index.html", "main.css")
    _write(styles, "main.css", "notes.md")
    files, _, failures = discover([styles, site / "main.css", site], SUPPORTED_EXTENSIONS)
    names = {str(Path(f).relative_to(tmp_path)) for f in files}
    # A folder of stylesheets is a project's code; a stylesheet dropped by itself is
    # wanted; only the one found beside the pages in a folder walk is skipped.
    assert names == {"styles/main.css", "styles/notes.md", "site/main.css", "site/index.html"}
    assert failures == []
