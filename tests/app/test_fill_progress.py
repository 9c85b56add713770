"""The window shows vectors being filled in behind keyword search (real Services, int8 model)."""

from __future__ import annotations

from pathlib import Path

from core.types import FillProgress, IngestProgress
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
    # Done: the bar counts the files it took in, not passages (seen as "3 of 3 passages
    # embedded" when many more passages were embedded).
    progress = window.library.progress
    assert progress.format() == "%v of %m files"
    assert progress.value() == progress.maximum() == len(list(corpus.iterdir()))


def test_a_fill_resumed_at_start_up_shows_in_the_library_panel_and_title(
    gui: Gui, tmp_path: Path
) -> None:
    # An earlier run stored these passages without vectors (embedding was off, or
    # the app closed during the fill); this start embeds them in the background.
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(40):
        text = "\n\n".join(
            f"Note {i}.{j}: the pump in station {i} was serviced on day {j} by crew {i + j}."
            for j in range(6)
        )
        (folder / f"note{i:02}.txt").write_text(text, encoding="utf-8")
    first = gui.open()
    gui.ingest(first, [str(folder)])
    gui.close(first)

    window = gui.open(INT8)
    bridge = window.bridge
    embedder = bridge.services._embedder
    assert embedder is not None
    seen: list[FillProgress] = []
    bridge.fillProgress.connect(seen.append)

    async def refresh() -> None:
        task = bridge.refresh_status()
        assert task is not None
        await task

    with embedder.foreground():  # the fill waits while the test looks
        gui.run(refresh())
        assert seen and seen[-1].running and seen[-1].done < seen[-1].total
        assert window.library.progress.format() == "%v of %m passages embedded"
        assert window.library.eta_label.text().startswith("Every file is searchable by its words.")
        assert window.windowTitle().startswith("Archivist — embedding ")

    services = bridge.services

    async def finished() -> None:
        await gui.until(lambda: not services.fill_progress().running, 120, "the fill")  # type: ignore[union-attr]
        await refresh()

    gui.run(finished(), 150)
    assert not seen[-1].running and seen[-1].pending == 0
    assert window.library.eta_label.text() == "Search by meaning is complete."
    assert window.windowTitle() == "Archivist"
