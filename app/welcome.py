"""The first-run welcome: add documents, choose how to answer, ask a first question.

Shown (not modal) when the knowledge base is empty and no first run has ended
(``app.firstrun.needs_welcome``). Three steps, each with Skip; closing the
dialog at any point ends the first run. The dialog lays out and asks the window
to act (``addFilesRequested``, ``folderChosen``, ``pathsDropped``,
``saveRequested``, ``askRequested``); ``WelcomeBridge`` runs what takes time
(the first-run mark, the local model's figures, the connection test, the
example question) on the asyncio loop and answers with signals.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import firstrun
from app.bridge import ServicesBridge
from app.desktop import app_icon
from app.firstrun import Choice, LocalModelInfo, ProbeResult, ServerChoice
from app.settings_file import SaveResult, form_from_settings
from core.errors import ArchivistError
from core.types import IngestReport


class WelcomeBridge(QObject):
    """The welcome's slow parts as tasks; each ends in its result signal or ``failed``."""

    checked = Signal(bool)  # whether to welcome
    localInfo = Signal(object)  # app.firstrun.LocalModelInfo
    probed = Signal(object)  # app.firstrun.ProbeResult
    exampleReady = Signal(str)  # "" when no document offers one
    failed = Signal(str)

    def __init__(self, bridge: ServicesBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.home = bridge.settings.home
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe: asyncio.Task[Any] | None = None

    def _spawn(self, body: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[Any]:
        async def guarded() -> None:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except (ArchivistError, OSError) as exc:
                self.failed.emit(str(exc))
            except Exception:
                self.failed.emit("Something went wrong; a crash report was opened.")
                sys.excepthook(*sys.exc_info())

        task = asyncio.ensure_future(guarded())
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def check(self, documents: int) -> asyncio.Task[Any]:
        async def body() -> None:
            show = await asyncio.to_thread(firstrun.needs_welcome, self.home, documents)
            self.checked.emit(show)

        return self._spawn(body, "welcome-check")

    def local_info(self) -> asyncio.Task[Any]:
        async def body() -> None:
            services = self.bridge.services
            available = "local" in services.router.names()
            stats = await services.stats()
            events = stats.audit.last_events if stats.audit is not None else ()
            info = await asyncio.to_thread(
                firstrun.local_model_info, available, self.bridge.settings.models_dir, events
            )
            self.localInfo.emit(info)

        return self._spawn(body, "welcome-local-info")

    def probe(self, base_url: str, api_key_env: str) -> asyncio.Task[Any]:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()  # a newer test supersedes

        async def body() -> None:
            self.probed.emit(await firstrun.probe_server(base_url, api_key_env))

        self._probe = self._spawn(body, "welcome-probe")
        return self._probe

    def example(self, paths: Sequence[str]) -> asyncio.Task[Any]:
        async def body() -> None:
            question = await firstrun.example_question(self.bridge.services, list(paths))
            self.exampleReady.emit(question or "")

        return self._spawn(body, "welcome-example")

    def mark_done(self) -> asyncio.Task[Any]:
        async def body() -> None:
            # Nothing is emitted: this may finish after the window has gone.
            await asyncio.to_thread(firstrun.mark_done, self.home)

        return self._spawn(body, "welcome-mark")

    def cancel(self, keep_marking: bool = False) -> None:
        """Cancel whatever still runs (the window is closing), except the mark when asked."""
        for task in list(self._tasks):
            if not (keep_marking and task.get_name() == "welcome-mark"):
                task.cancel()


def _title(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName("welcome-title")
    label.setWordWrap(True)
    return label


def _text(text: str, parent: QWidget, name: str = "") -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    if name:
        label.setObjectName(name)
    return label


class WelcomeDialog(QDialog):
    """Three pages; ``page`` is 0 (documents), 1 (answering) or 2 (first question)."""

    addFilesRequested = Signal()
    folderChosen = Signal(str)  # add and watch this folder
    pathsDropped = Signal(list)
    saveRequested = Signal(object)  # app.settings_file.SettingsForm
    askRequested = Signal(str)  # ask this now
    chatRequested = Signal(str)  # go to the chat with this in the question box

    STEPS = ("Add your documents", "Choose how to answer", "Ask your first question")

    def __init__(self, worker: WelcomeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to Archivist")
        self.setAccessibleName("Welcome")
        self.setAcceptDrops(True)
        self.setModal(False)
        self.worker = worker
        self.bridge = bridge = worker.bridge
        self.reports: list[IngestReport] = []
        self.ingesting = False
        self.example = ""
        self.choice: Choice | None = None
        self.done_marked = False

        layout = QVBoxLayout(self)
        self.step_label = _text("", self, "welcome-step")
        layout.addWidget(self.step_label)
        self.pages = QStackedWidget(self)
        layout.addWidget(self.pages, 1)
        self.pages.addWidget(self._documents_page())
        self.pages.addWidget(self._answer_page())
        self.pages.addWidget(self._question_page())

        nav = QHBoxLayout()
        self.skip_all_button = QPushButton("Skip setup", self)
        self.skip_all_button.setAccessibleName("Skip the whole welcome")
        self.skip_all_button.setAutoDefault(False)
        nav.addWidget(self.skip_all_button)
        nav.addStretch(1)
        self.back_button = QPushButton("Back", self)
        self.back_button.setAutoDefault(False)
        self.skip_button = QPushButton("Skip this step", self)
        self.skip_button.setAutoDefault(False)
        self.next_button = QPushButton("Next", self)
        self.next_button.setDefault(True)
        for b in (self.back_button, self.skip_button, self.next_button):
            nav.addWidget(b)
        layout.addLayout(nav)

        self.skip_all_button.clicked.connect(self.close)
        self.back_button.clicked.connect(lambda: self.go(self.page - 1))
        self.skip_button.clicked.connect(self.skip)
        self.next_button.clicked.connect(self.next)
        w = self.worker
        w.localInfo.connect(self._on_local_info)
        w.probed.connect(self._on_probed)
        w.exampleReady.connect(self._on_example)
        w.failed.connect(self._on_failed)
        self.finished.connect(self._disconnect)

        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 88, fm.height() * 30)
        self.go(0)
        if bridge.started:
            w.local_info()
        else:  # opened from the menu while Archivist starts
            bridge.ready.connect(w.local_info, Qt.ConnectionType.SingleShotConnection)

    # ------------------------------------------------------------------ pages

    def _documents_page(self) -> QWidget:
        page = QWidget(self)
        v = QVBoxLayout(page)
        head = QHBoxLayout()
        icon = QLabel(page)
        size = self.fontMetrics().height() * 3
        icon.setPixmap(app_icon().pixmap(size, size))
        head.addWidget(icon)
        head.addWidget(_title("Welcome to Archivist", page), 1)
        v.addLayout(head)
        v.addWidget(
            _text(
                "Archivist answers questions from your own documents (PDF, Word, HTML, "
                "Markdown and text), on this computer, and shows where each answer comes "
                "from. Start by adding some documents.",
                page,
            )
        )
        buttons = QHBoxLayout()
        self.add_folder_button = QPushButton("Add a folder…", page)
        self.add_folder_button.setToolTip(
            "Add every document in a folder and keep following it: new and edited files "
            "are added as you save them"
        )
        self.add_files_button = QPushButton("Add files…", page)
        buttons.addWidget(self.add_folder_button)
        buttons.addWidget(self.add_files_button)
        buttons.addStretch(1)
        v.addLayout(buttons)
        drop = QFrame(page)
        drop.setObjectName("drop-area")
        dl = QVBoxLayout(drop)
        hint = _text("…or drop files and folders here (or anywhere on the main window).", drop)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        dl.addWidget(hint)
        v.addWidget(drop, 1)
        self.documents_status = _text("Nothing added yet.", page)
        self.documents_status.setAccessibleName("What was added")
        v.addWidget(self.documents_status)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.add_files_button.clicked.connect(self.addFilesRequested.emit)
        return page

    def _answer_page(self) -> QWidget:
        page = QWidget(self)
        v = QVBoxLayout(page)
        v.addWidget(_title("How should Archivist answer?", page))
        v.addWidget(
            _text(
                "Whatever you choose, Archivist first shows the sentences of your documents "
                "that answer the question, with their sources. You can change this later in "
                "Settings.",
                page,
            )
        )
        self.choices = QButtonGroup(page)
        self.local_radio = QRadioButton("The local model: private, runs on this computer", page)
        self.local_detail = _text("Looking for the local model…", page, "welcome-step")
        self.local_detail.setAccessibleName("Local model")
        self.server_radio = QRadioButton(
            "An OpenAI-compatible server (OpenAI, LM Studio, Ollama, llama.cpp, vLLM)", page
        )
        server = QWidget(page)
        form = QFormLayout(server)
        form.setContentsMargins(self.fontMetrics().height() * 2, 0, 0, 0)
        self.server_url = QLineEdit(server)
        self.server_url.setPlaceholderText("http://127.0.0.1:8080/v1")
        self.server_url.setAccessibleName("Server address")
        self.server_model = QLineEdit(server)
        self.server_model.setPlaceholderText("model name (optional)")
        self.server_model.setAccessibleName("Model name")
        self.server_key = QLineEdit(server)
        self.server_key.setPlaceholderText("OPENAI_API_KEY (optional)")
        self.server_key.setAccessibleName("Environment variable holding the API key")
        form.addRow("Address:", self.server_url)
        form.addRow("Model:", self.server_model)
        form.addRow("API key variable:", self.server_key)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test connection", server)
        self.test_button.setAutoDefault(False)
        self.probe_label = _text("", server)
        self.probe_label.setAccessibleName("Connection test result")
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.probe_label, 1)
        form.addRow(test_row)
        self.quotes_radio = QRadioButton(
            "Quotes only: no model, answers quote the best passages (offline, instant)", page
        )
        for i, radio in enumerate((self.local_radio, self.server_radio, self.quotes_radio)):
            self.choices.addButton(radio, i)
        v.addWidget(self.local_radio)
        v.addWidget(self.local_detail)
        v.addWidget(self.server_radio)
        v.addWidget(server)
        v.addWidget(self.quotes_radio)
        v.addStretch(1)
        self.choice_error = _text("", page)
        self.choice_error.setAccessibleName("Why the choice was not saved")
        v.addWidget(self.choice_error)
        self.server_fields = server
        self.local_radio.setEnabled(False)
        self.quotes_radio.setChecked(True)
        self.server_fields.setEnabled(False)
        self.server_radio.toggled.connect(self.server_fields.setEnabled)
        self.test_button.clicked.connect(self.test_connection)
        self.server_url.returnPressed.connect(self.test_connection)
        return page

    def _question_page(self) -> QWidget:
        page = QWidget(self)
        v = QVBoxLayout(page)
        v.addWidget(_title("Ask your first question", page))
        self.question_intro = _text("", page)
        v.addWidget(self.question_intro)
        self.example_label = _text("", page, "example-question")
        self.example_label.setAccessibleName("Example question")
        self.example_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.example_label)
        row = QHBoxLayout()
        self.ask_button = QPushButton("Ask it", page)
        self.ask_button.setAutoDefault(False)
        self.chat_button = QPushButton("Go to the chat", page)
        self.chat_button.setAutoDefault(False)
        row.addWidget(self.ask_button)
        row.addWidget(self.chat_button)
        row.addStretch(1)
        v.addLayout(row)
        # What saving the choice of step 2 did (e.g. that a restart applies it).
        self.save_label = _text("", page)
        self.save_label.setAccessibleName("What was saved")
        v.addWidget(self.save_label)
        v.addStretch(1)
        v.addWidget(
            _text(
                "Tips: click a [1] marker to see the passage it cites; drop more documents "
                "on the window at any time; Help ▸ Keyboard shortcuts lists every key.",
                page,
                "welcome-step",
            )
        )
        self.ask_button.clicked.connect(self._ask_example)
        self.chat_button.clicked.connect(self._go_to_chat)
        return page

    # ------------------------------------------------------------------ navigation

    @property
    def page(self) -> int:
        return self.pages.currentIndex()

    def go(self, index: int) -> None:
        index = max(0, min(index, self.pages.count() - 1))
        self.pages.setCurrentIndex(index)
        self.step_label.setText(f"Step {index + 1} of {len(self.STEPS)}: {self.STEPS[index]}")
        self.back_button.setEnabled(index > 0)
        last = index == self.pages.count() - 1
        self.skip_button.setVisible(not last)
        self.next_button.setText(
            "Finish" if last else ("Save and continue" if index == 1 else "Next")
        )
        if last:
            self._show_example()

    def skip(self) -> None:
        """Go on without doing this step's action."""
        self.go(self.page + 1)

    def next(self) -> None:
        if self.page == 1 and not self.save_choice():
            return  # stay: the choice is incomplete (the page says why)
        if self.page == self.pages.count() - 1:
            self._go_to_chat()
            return
        self.go(self.page + 1)

    # ------------------------------------------------------------------ step 1: documents

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add and watch a folder")
        if folder:
            self.folderChosen.emit(folder)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        paths = [p for p in paths if p]
        if paths:
            event.acceptProposedAction()
            self.pathsDropped.emit(paths)

    def on_ingest_started(self, n: int) -> None:
        self.ingesting = True
        self.documents_status.setText(f"Adding {n} item(s)… you can go on meanwhile.")

    def on_ingest_finished(self, report: IngestReport) -> None:
        self.ingesting = False
        self.reports.append(report)
        paths = firstrun.ingested_paths(self.reports)
        failed = len(report.failed)
        text = f"{len(paths)} document(s) in your knowledge base."
        if failed:
            text += f" {failed} could not be read (see the Library panel)."
        self.documents_status.setText(text)
        if paths:
            self.worker.example(paths)

    def on_ingest_failed(self, message: str) -> None:
        self.ingesting = False
        self.documents_status.setText(message)

    # ------------------------------------------------------------------ step 2: answering

    def _on_local_info(self, info: LocalModelInfo) -> None:
        self.local_detail.setText(info.describe())
        self.local_radio.setEnabled(info.choosable)
        if info.available and self.choice is None:
            self.local_radio.setChecked(True)

    def test_connection(self) -> None:
        self.server_radio.setChecked(True)
        self.probe_label.setText("Testing…")
        self.worker.probe(self.server_url.text(), self.server_key.text())

    def _on_probed(self, result: ProbeResult) -> None:
        self.probe_label.setText(("✔ " if result.ok else "✘ ") + result.message)
        if result.ok and result.models and not self.server_model.text().strip():
            self.server_model.setText(result.models[0])

    def chosen(self) -> Choice:
        if self.server_radio.isChecked():
            return "server"
        if self.local_radio.isChecked():
            return "local"
        return "quotes"

    def save_choice(self) -> bool:
        """Write the chosen way of answering through the settings writer (via the bridge).

        False when the choice is incomplete (a server without its address).
        """
        choice = self.chosen()
        server = ServerChoice(
            self.server_url.text(), self.server_model.text(), self.server_key.text()
        )
        try:
            form = firstrun.form_for_choice(
                form_from_settings(self.bridge.saved_settings), choice, server
            )
        except ValueError as exc:
            self.choice_error.setText(f"Not saved: {exc}.")
            return False
        self.choice = choice
        self.choice_error.setText("")
        self.save_label.setText("Saving your choice…")
        self.saveRequested.emit(form)
        return True

    def on_settings_saved(self, result: SaveResult) -> None:
        self.save_label.setText(result.message().replace("\n", " "))

    def on_settings_failed(self, message: str) -> None:
        self.save_label.setText(f"Not saved: {message}")

    # ------------------------------------------------------------------ step 3: first question

    def _on_example(self, question: str) -> None:
        self.example = question
        self._show_example()

    def _show_example(self) -> None:
        if self.example:
            self.question_intro.setText("Here is a question drawn from your own documents:")
            self.example_label.setText(self.example)
        elif self.ingesting:
            self.question_intro.setText(
                "Your documents are still being added; a question from them appears here "
                "when they are in."
            )
            self.example_label.setText("")
        else:
            self.question_intro.setText(
                "Ask anything about your documents in the box at the bottom of the window."
            )
            self.example_label.setText("")
        self.example_label.setVisible(bool(self.example))
        self.ask_button.setEnabled(bool(self.example))

    def _ask_example(self) -> None:
        if self.example:
            self.askRequested.emit(self.example)
            self.close()

    def _go_to_chat(self) -> None:
        self.chatRequested.emit(self.example)
        self.close()

    def _on_failed(self, message: str) -> None:
        self.step_label.setText(message)

    # ------------------------------------------------------------------ end

    def done(self, result: int) -> None:
        # However the welcome ends (Finish, Skip setup, Esc, the close button), the
        # first run is over.
        if not self.done_marked:
            self.done_marked = True
            self.worker.mark_done()
        super().done(result)

    def _disconnect(self) -> None:
        w = self.worker
        for signal, slot in (
            (w.localInfo, self._on_local_info),
            (w.probed, self._on_probed),
            (w.exampleReady, self._on_example),
            (w.failed, self._on_failed),
        ):
            signal.disconnect(slot)
