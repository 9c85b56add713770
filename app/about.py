"""Help menu dialogs: About Archivist and the keyboard shortcuts.

About shows the version, where the data and the logs are (each with an Open
button), and the licences of Archivist, its toolkit and the models it ships or
installs. The shortcut list is read from the window's own actions, so it is
never out of date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.desktop import app_icon
from app.version import app_version

OpenUrl = Callable[[QUrl], object]


@dataclass(frozen=True)
class Licence:
    what: str
    role: str
    licence: str


# What Archivist ships or installs, and under which licence.
LICENCES: tuple[Licence, ...] = (
    Licence("Archivist", "this application", "MIT"),
    Licence("all-MiniLM-L6-v2", "embedding model (ships with Archivist)", "Apache-2.0"),
    Licence(
        "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
        "local language model (installed by make run)",
        "Apache-2.0",
    ),
    Licence("ms-marco-MiniLM-L-6-v2", "optional reranker (when turned on)", "Apache-2.0"),
    Licence("Qt and Qt for Python (PySide6)", "the window toolkit", "LGPL-3.0"),
)


class AboutDialog(QDialog):
    def __init__(
        self,
        data_folder: Path,
        log_folder: Path,
        open_url: OpenUrl,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Archivist")
        self.version = app_version()
        layout = QVBoxLayout(self)

        head = QHBoxLayout()
        icon = QLabel(self)
        size = self.fontMetrics().height() * 4
        icon.setPixmap(app_icon().pixmap(size, size))
        head.addWidget(icon)
        title = QLabel(
            f"<h2>Archivist {self.version}</h2>"
            "<p>Ask your documents; answers quote them, with citations, on this computer.</p>"
            f"<p>Qt {qVersion()} · PySide6 {pyside_version}</p>",
            self,
        )
        title.setWordWrap(True)
        title.setAccessibleName("Archivist version")
        self.title = title
        head.addWidget(title, 1)
        layout.addLayout(head)

        grid = QGridLayout()
        for row, (name, folder) in enumerate(
            (("Data folder", data_folder), ("Log folder", log_folder))
        ):
            grid.addWidget(QLabel(f"{name}:", self), row, 0)
            path = QLabel(str(folder), self)
            path.setAccessibleName(name)
            path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(path, row, 1)
            button = QPushButton("Open", self)
            button.setAccessibleName(f"Open the {name.lower()}")
            button.clicked.connect(lambda _=False, f=folder: open_url(QUrl.fromLocalFile(str(f))))
            grid.addWidget(button, row, 2)
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)

        layout.addWidget(QLabel("<b>Licences</b>", self))
        self.licences = QTableWidget(len(LICENCES), 3, self)
        self.licences.setAccessibleName("Licences")
        self.licences.setHorizontalHeaderLabels(["Component", "Role", "Licence"])
        self.licences.verticalHeader().setVisible(False)
        self.licences.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, item in enumerate(LICENCES):
            for column, text in enumerate((item.what, item.role, item.licence)):
                self.licences.setItem(row, column, QTableWidgetItem(text))
        header = self.licences.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        rows_height = self.licences.verticalHeader().defaultSectionSize() * len(LICENCES)
        self.licences.setMinimumHeight(rows_height + header.sizeHint().height() + 4)
        layout.addWidget(self.licences, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 110, self.sizeHint().height())


def shortcut_rows(
    actions: Sequence[QAction], extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """(what, keys) for every action with a shortcut, then ``extra``, in order.

    Only an action's first key is listed: a standard key's others are alternatives
    such as the dedicated Open or Exit keys of some keyboards.
    """
    rows = []
    for action in actions:
        key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if key:
            rows.append((action.text().replace("&", ""), key))
    rows.extend(extra)
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, rows: Sequence[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (what, keys) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(what))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        # Tall enough for every row, within the screen (the table scrolls beyond that).
        rows_height = self.table.verticalHeader().defaultSectionSize() * len(rows)
        wanted = rows_height + header.sizeHint().height() + buttons.sizeHint().height() + 40
        screen = self.screen().availableGeometry().height() if self.screen() else wanted
        self.resize(self.fontMetrics().averageCharWidth() * 70, min(wanted, int(screen * 0.8)))
