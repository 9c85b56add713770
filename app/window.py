"""The main window: it lays out widgets and forwards user actions to the bridge.

No business logic and no I/O here: the bridge runs everything on the asyncio
loop (which, under qasync, is this GUI thread) and answers with signals.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeySequence,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTextEdit,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.bridge import ServicesBridge
from core.types import Answer, Citation, FileStatus, HealthSnapshot, IngestProgress, IngestReport

_MARKER = re.compile(r"\[(\d{1,2})\]")


def _local_paths(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[str]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def answer_html(answer_text: str, citations: tuple[Citation, ...]) -> str:
    """Escape the answer and turn [n] markers into citation links."""
    known = {c.marker for c in citations}

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n in known:
            return f'<a href="cite:{n}">[{n}]</a>'
        return match.group(0)

    paragraphs = [p for p in answer_text.split("\n\n") if p.strip()]
    parts = []
    for p in paragraphs:
        escaped = html.escape(p).replace("\n", "<br>")
        parts.append(f"<p>{_MARKER.sub(link, escaped)}</p>")
    return "".join(parts)


class SourceDialog(QDialog):
    """Shows a source's extracted text with the cited passage highlighted."""

    def __init__(self, path: str, text: str, citation: Citation, parent: QWidget | None) -> None:
        super().__init__(parent)
        page = f" — page {citation.page}" if citation.page else ""
        self.setWindowTitle(f"{Path(path).name}{page}")
        self.resize(760, 560)
        self.path = path
        layout = QVBoxLayout(self)
        header = QLabel(f"<b>{html.escape(path)}</b>{html.escape(page)}")
        header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(header)
        self.view = QPlainTextEdit(self)
        self.view.setReadOnly(True)
        self.view.setPlainText(text)
        self.view.setAccessibleName("Source text")
        layout.addWidget(self.view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        open_button = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
        open_button.clicked.connect(self._open_file)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.highlight(citation.start, citation.end)

    def highlight(self, start: int, end: int) -> None:
        doc = self.view.document()
        cursor = QTextCursor(doc)
        cursor.setPosition(min(start, doc.characterCount() - 1))
        cursor.setPosition(min(end, doc.characterCount() - 1), QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(255, 230, 120))
        fmt.setForeground(QColor(0, 0, 0))
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        selection.format = fmt
        self.view.setExtraSelections([selection])
        self.selected_text = cursor.selectedText().replace("\u2029", "\n")
        caret = QTextCursor(doc)
        caret.setPosition(min(start, doc.characterCount() - 1))
        self.view.setTextCursor(caret)
        self.view.centerCursor()

    def _open_file(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.path))


class MainWindow(QMainWindow):
    def __init__(self, bridge: ServicesBridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.setWindowTitle("Archivist")
        self.resize(1000, 720)
        self.setAcceptDrops(True)
        self._answer_parts: list[str] = []
        self._current_citations: tuple[Citation, ...] = ()
        self._conversation_html: list[str] = []
        self._pending_question = ""
        self.source_dialog: SourceDialog | None = None
        self.last_answer: Answer | None = None
        self.last_report: IngestReport | None = None

        self._build_toolbar()
        self._build_central()
        self._build_status()
        self._connect()

        self.health_timer = QTimer(self)
        self.health_timer.setInterval(5000)
        self.health_timer.timeout.connect(self.bridge.refresh_health)
        self.health_timer.start()

    # ------------------------------------------------------------------ layout

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main", self)
        bar.setMovable(False)
        self.addToolBar(bar)
        self.add_files_action = QAction("Add files…", self)
        self.add_files_action.triggered.connect(self._choose_files)
        self.add_folder_action = QAction("Add folder…", self)
        self.add_folder_action.triggered.connect(self._choose_folder)
        self.new_chat_action = QAction("New chat", self)
        self.new_chat_action.setShortcut(QKeySequence("Ctrl+N"))
        self.new_chat_action.triggered.connect(self.new_chat)
        bar.addAction(self.add_files_action)
        bar.addAction(self.add_folder_action)
        bar.addSeparator()
        bar.addAction(self.new_chat_action)

    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        splitter = QSplitter(Qt.Orientation.Vertical, central)

        self.conversation = QTextBrowser(splitter)
        self.conversation.setOpenLinks(False)
        self.conversation.setAcceptDrops(False)
        self.conversation.setAccessibleName("Conversation")
        self.conversation.setPlaceholderText(
            "Drop files or folders here, or use Add files…, then ask a question below."
        )

        self.sources = QListWidget(splitter)
        self.sources.setAccessibleName("Sources of the last answer")
        self.sources.setAcceptDrops(False)
        splitter.addWidget(self.conversation)
        splitter.addWidget(self.sources)
        splitter.setSizes([520, 140])
        layout.addWidget(splitter, 1)

        row = QHBoxLayout()
        self.question = QPlainTextEdit(central)
        self.question.setPlaceholderText("Ask a question about your documents (Ctrl+Enter to send)")
        self.question.setAccessibleName("Question")
        self.question.setMaximumHeight(80)
        self.question.installEventFilter(self)
        self.ask_button = QPushButton("Ask", central)
        self.ask_button.setAccessibleName("Ask")
        self.ask_button.setEnabled(False)
        self.stop_button = QPushButton("Stop", central)
        self.stop_button.setAccessibleName("Stop answering")
        self.stop_button.setEnabled(False)
        row.addWidget(self.question, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.ask_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        layout.addLayout(row)
        self.setCentralWidget(central)

        self._shortcuts = []
        for keys, slot in (
            ("Ctrl+Return", self.send),
            ("Ctrl+Enter", self.send),
            ("Escape", self.stop),
            ("Ctrl+L", self.question.setFocus),
        ):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(slot)
            self._shortcuts.append(shortcut)

    def _build_status(self) -> None:
        status = self.statusBar()
        self.status_label = QLabel("Starting…", self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(260)
        self.progress.setAccessibleName("Ingestion progress")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName("Cancel ingestion")
        self.cancel_button.hide()
        self.health_label = QLabel("", self)
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.health_label)

    def _connect(self) -> None:
        b = self.bridge
        self.ask_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(b.cancel_ingest)
        self.conversation.anchorClicked.connect(self._citation_clicked)
        self.sources.itemActivated.connect(self._source_activated)
        self.sources.itemClicked.connect(self._source_activated)
        b.ready.connect(self._on_ready)
        b.startFailed.connect(self._on_start_failed)
        b.answerStarted.connect(self._on_answer_started)
        b.answerToken.connect(self._on_token)
        b.answerReady.connect(self._on_answer)
        b.answerFailed.connect(self._on_answer_failed)
        b.ingestStarted.connect(self._on_ingest_started)
        b.ingestProgress.connect(self._on_ingest_progress)
        b.ingestFinished.connect(self._on_ingest_finished)
        b.ingestFailed.connect(self._on_ingest_failed)
        b.healthUpdated.connect(self._on_health)
        b.sourceReady.connect(self._show_source)
        b.sourceFailed.connect(lambda msg: self.status_label.setText(msg))

    # ------------------------------------------------------------------ actions

    def send(self) -> None:
        text = self.question.toPlainText().strip()
        if not text or not self.ask_button.isEnabled():
            return
        self.question.clear()
        self.bridge.ask(text)

    def stop(self) -> None:
        if self.bridge.busy_answering:
            self.bridge.stop_answer()

    def new_chat(self) -> None:
        self._conversation_html.clear()
        self.conversation.clear()
        self.sources.clear()
        self._current_citations = ()

    def ingest_paths(self, paths: list[str]) -> None:
        if paths:
            self.bridge.ingest(paths)

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add files to Archivist")
        self.ingest_paths(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to Archivist")
        if folder:
            self.ingest_paths([folder])

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.ingest_paths(paths)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # File drops on the question box ingest the files instead of pasting paths.
        if watched is self.question and event.type() in (
            QEvent.Type.DragEnter,
            QEvent.Type.DragMove,
            QEvent.Type.Drop,
        ):
            assert isinstance(event, QDragEnterEvent | QDropEvent)
            if _local_paths(event):
                if event.type() == QEvent.Type.Drop:
                    self.dropEvent(event)
                else:
                    event.acceptProposedAction()
                return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ bridge signals

    def _on_ready(self) -> None:
        self.ask_button.setEnabled(True)
        self.status_label.setText("Ready. Drop documents here or ask a question.")

    def _on_start_failed(self, message: str) -> None:
        self.status_label.setText(f"Archivist could not start: {message}")

    def _render_conversation(self, live: str = "") -> None:
        self.conversation.setHtml("".join(self._conversation_html) + live)
        bar = self.conversation.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_answer_started(self, question: str) -> None:
        self._pending_question = question
        self._answer_parts = []
        self.stop_button.setEnabled(True)
        self.status_label.setText("Answering…")
        self._conversation_html.append(f"<p><b>You:</b> {html.escape(question)}</p>")
        self._render_conversation("<p><i>Searching your documents…</i></p>")

    def _on_token(self, piece: str) -> None:
        self._answer_parts.append(piece)
        self._render_conversation(answer_html("".join(self._answer_parts), ()))

    def _on_answer(self, answer: Answer) -> None:
        self.last_answer = answer
        self.stop_button.setEnabled(False)
        self._current_citations = answer.citations
        body = answer_html(answer.text, answer.citations)
        total = answer.timings_ms.get("total", 0.0)
        meta = f"answered by {html.escape(answer.provider)} in {total:.0f} ms"
        notice = (
            f'<p style="color:#b35c00">{html.escape(answer.notice)}</p>' if answer.notice else ""
        )
        self._conversation_html.append(
            f"<p><b>Archivist:</b></p>{body}{notice}"
            f"<p style='color:gray'><small>{meta}</small></p><hr>"
        )
        self._render_conversation()
        self.sources.clear()
        for c in answer.citations:
            page = f", page {c.page}" if c.page else ""
            snippet = " ".join(c.text.split())[:120]
            item = QListWidgetItem(f"[{c.marker}] {Path(c.source).name}{page} — {snippet}")
            item.setData(Qt.ItemDataRole.UserRole, c)
            item.setToolTip(c.source)
            self.sources.addItem(item)
        self.status_label.setText(f"Answered with {len(answer.citations)} source(s).")

    def _on_answer_failed(self, message: str) -> None:
        self.stop_button.setEnabled(False)
        self._conversation_html.append(f'<p style="color:#b00020">{html.escape(message)}</p><hr>')
        self._render_conversation()
        self.status_label.setText(message)

    def _citation_clicked(self, url: QUrl) -> None:
        if url.scheme() != "cite":
            return
        n = int(url.path() or url.toString().split(":", 1)[1])
        for c in self._current_citations:
            if c.marker == n:
                self.bridge.open_source(c.source, c)
                return

    def _source_activated(self, item: QListWidgetItem) -> None:
        c = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(c, Citation):
            self.bridge.open_source(c.source, c)

    def _show_source(self, path: str, text: str, citation: object) -> None:
        assert isinstance(citation, Citation)
        if self.source_dialog is not None:
            self.source_dialog.close()
        self.source_dialog = SourceDialog(path, text, citation, self)
        self.source_dialog.show()

    def _on_ingest_started(self, n: int) -> None:
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.status_label.setText(f"Adding {n} item(s)…")

    def _on_ingest_progress(self, p: IngestProgress) -> None:
        self.progress.setRange(0, max(1, p.files_total))
        self.progress.setValue(p.files_done)
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s else ""
        current = f" — {Path(p.current).name}" if p.current else ""
        self.status_label.setText(
            f"Ingesting {p.files_done}/{p.files_total} files, {p.chunks} chunks{eta}{current}"
        )

    def _on_ingest_finished(self, report: IngestReport) -> None:
        self.last_report = report
        self.progress.hide()
        self.cancel_button.hide()
        counts = report.summary()
        text = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        prefix = "Cancelled: " if report.cancelled else "Done: "
        self.status_label.setText(prefix + (text or "nothing to do"))
        failed = [o for o in report.outcomes if o.status is FileStatus.FAILED]
        if failed:
            lines = "".join(
                f"<li>{html.escape(Path(o.path).name)}: {html.escape(o.reason or '')}</li>"
                for o in failed[:20]
            )
            self._conversation_html.append(
                f"<p><b>{len(failed)} file(s) could not be added:</b></p><ul>{lines}</ul><hr>"
            )
            self._render_conversation()

    def _on_ingest_failed(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.status_label.setText(message)

    def _on_health(self, snap: HealthSnapshot) -> None:
        parts = {c.name: c for c in snap.components}
        index = parts.get("search_index")
        docs = parts.get("database")
        n_docs = docs.data.get("documents", 0) if docs else 0
        n_chunks = index.data.get("chunks", 0) if index else 0
        colour = {"ok": "#2e7d32", "degraded": "#b35c00", "down": "#b00020"}[snap.status]
        self.health_label.setText(
            f'<span style="color:{colour}">●</span> {snap.status} · {n_docs} documents · '
            f"{n_chunks} chunks"
        )
        self.health_label.setToolTip(
            "\n".join(f"{c.name}: {c.status} {c.detail}" for c in snap.components)
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        self.health_timer.stop()
        super().closeEvent(event)
