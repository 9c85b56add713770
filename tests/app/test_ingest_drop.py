"""Files dropped while an ingestion runs: the running one keeps its Cancel, they wait.

Real bridge, real Services, real library panel under offscreen Qt; waits are on
the bridge's signals. A folder of a few hundred notes keeps the first ingestion
busy long enough to drop a file into it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from app.window import MainWindow
from core.types import FileStatus, IngestReport
from tests.app.conftest import Gui


@pytest.fixture
def many(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"note-{i:03d}.txt").write_text(
            f"Note {i}. " + " ".join(f"word{(i * 7 + j) % 997}" for j in range(300)),
            encoding="utf-8",
        )
    return folder


@pytest.fixture
def late(tmp_path: Path) -> Path:
    path = tmp_path / "late.txt"
    path.write_text("The late note was dropped while the others were being added.")
    return path


def _drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert event.isAccepted()


def _start_busy(window: MainWindow, qtbot: QtBot, folder: Path) -> None:
    with qtbot.waitSignal(window.bridge.ingestProgress, timeout=30_000):
        window.ingest_paths([str(folder)])
    assert window.bridge.busy_ingesting
    assert window.library.cancel_button.isEnabled()


def test_dropping_files_during_an_ingestion_keeps_its_cancel_button_working(
    gui: Gui, qtbot: QtBot, many: Path, late: Path
) -> None:
    window = gui.open()
    bridge = window.bridge
    _start_busy(window, qtbot, many)

    _drop(window, [late])
    assert window.library.cancel_button.isEnabled()  # the running ingestion is still cancellable
    assert bridge.busy_ingesting
    assert "1 more item(s) will be added" in window.library.queued_label.text()

    with qtbot.waitSignal(bridge.ingestFinished, timeout=60_000) as finished:
        QTest.mouseClick(window.library.cancel_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert isinstance(report, IngestReport) and report.cancelled
    assert len(report.outcomes) < 300
    assert not window.library.cancel_button.isEnabled()
    assert window.library.eta_label.text().startswith("Cancelled")
    # Cancel dropped the waiting file too: nothing else starts.
    assert not bridge.busy_ingesting
    assert window.library.queued_label.isHidden()


def test_files_dropped_during_an_ingestion_are_added_right_after_it(
    gui: Gui, qtbot: QtBot, many: Path, late: Path
) -> None:
    window = gui.open()
    bridge = window.bridge
    reports: list[IngestReport] = []
    bridge.ingestFinished.connect(reports.append)
    _start_busy(window, qtbot, many)

    with qtbot.waitSignal(bridge.ingestQueued, timeout=5_000) as queued:
        _drop(window, [late, late])  # the same file twice waits once
    assert queued.args == [1]
    assert "will be added when the running ingestion ends" in window.status_label.text()

    qtbot.waitUntil(lambda: len(reports) == 2, timeout=120_000)
    first, second = reports
    assert first.count(FileStatus.ADDED) == 300
    assert [Path(o.path).name for o in second.outcomes] == ["late.txt"]
    assert second.count(FileStatus.ADDED) == 1
    assert window.library.queued_label.isHidden()
    assert not window.library.cancel_button.isEnabled()
