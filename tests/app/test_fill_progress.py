"""The window shows vectors being filled in behind keyword search (real Services, int8 model)."""

from __future__ import annotations

from pathlib import Path

from core.types import IngestProgress
from tests.app.conftest import Gui

INT8 = '[ingest]\nembed = true\n[embedding]\nmodel = "all-MiniLM-L6-v2-int8"\n'


def test_the_library_panel_and_title_follow_the_fill_after_the_files(
    gui: Gui, corpus: Path
) -> None:
    window = gui.open(INT8)
    seen: list[tuple[bool, str, str, str]] = []

    def record(p: IngestProgress) -> None:
        # Connected after the window's own slot: the panel shows this event already.
        library = window.library
        seen.append(
            (p.filling, library.progress.format(), library.eta_label.text(), window.windowTitle())
        )

    window.bridge.ingestProgress.connect(record)
    gui.ingest(window, [str(corpus)])
    filling = [s for s in seen if s[0]]
    assert filling, seen
    _, bar, label, title = filling[0]
    assert bar == "%v of %m passages embedded"
    assert label.startswith("Every file is searchable by its words. Search by meaning: 0 of ")
    assert "Answers until then say the search is partial." in label
    assert title == "Archivist — embedding 0%"
    files = [s for s in seen if not s[0]]
    assert files and files[0][1] == "%v of %m files"
    assert window.windowTitle() == "Archivist"  # nothing runs any more
