"""Dialogs: the source view, "why this answer", and settings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app import statusview as sv
from app.render import ERROR_COLOUR, fmt_rank, fmt_score
from app.settings_file import WATCHING_NOTE, ProviderRow, SaveResult, SettingsForm
from core.config import PROVIDER_KINDS, Settings
from core.conversations import Turn
from core.security.paths import path_problem
from core.types import Citation, FlaggedPassage

# The one fixed background: a highlighter yellow with black text, readable on any theme.
HIGHLIGHT_BG = QColor(255, 224, 102)
HIGHLIGHT_FG = QColor(0, 0, 0)
# The rest of the cited passage: the same yellow, faint, over the theme's own text colour.
PASSAGE_BG = QColor(255, 224, 102, 60)
# A passage flagged as text that speaks to an AI model: a faint red, never the highlighter.
FLAGGED_BG = QColor(220, 60, 60, 55)


def flag_words(categories: Sequence[str]) -> str:
    """A flagged passage's categories as words ("instruction override, ...")."""
    return ", ".join(c.replace("_", " ") for c in categories) or "instructions to a model"


def quote_span(citation: Citation) -> tuple[int, int]:
    """Where the evidence is in the source: the quote, or the whole passage without one."""
    if citation.quote and citation.quote_start is not None and citation.quote_end is not None:
        return citation.quote_start, citation.quote_end
    return citation.start, citation.end


class SourceDialog(QDialog):
    """A source's extracted text with the supporting quote highlighted and in view.

    The quote (``Citation.quote_start``..``quote_end``) gets the highlighter; the
    rest of its passage a faint tint. A citation without a quote highlights the
    whole passage.
    """

    def __init__(
        self,
        path: str,
        text: str,
        citation: Citation,
        parent: QWidget | None,
        flagged: Sequence[FlaggedPassage] = (),
    ) -> None:
        """``flagged``: the source's passages flagged at ingestion
        (``Library.flagged_passages``); they are tinted red and listed above the text."""
        super().__init__(parent)
        self.path = path
        self.citation = citation
        self.flagged: tuple[FlaggedPassage, ...] = ()
        page = f" — page {citation.page}" if citation.page else ""
        self.setWindowTitle(f"[{citation.marker}] {Path(path).name}{page}")
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 100, fm.height() * 32)
        layout = QVBoxLayout(self)
        kind = Path(path).suffix.lower().lstrip(".") or "file"
        where = f"Page {citation.page} of this {kind.upper()}" if citation.page else "Passage"
        self.highlight_range = quote_span(citation)
        quoted = self.highlight_range != (citation.start, citation.end)
        what = (
            "the supporting quote is highlighted below, the rest of its passage tinted."
            if quoted
            else "highlighted below."
        )
        header = QLabel(
            f"<b>{html.escape(Path(path).name)}</b><br><small>{html.escape(path)}</small><br>"
            f"{html.escape(where)}, characters {citation.start}–{citation.end}; {what}",
            self,
        )
        header.setWordWrap(True)
        header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(header)
        self.flag_note = QLabel("", self)
        self.flag_note.setWordWrap(True)
        self.flag_note.setAccessibleName("Flagged passages of this source")
        self.flag_note.hide()
        layout.addWidget(self.flag_note)
        self.view = QPlainTextEdit(self)
        self.view.setReadOnly(True)
        self.view.setPlainText(text)
        self.view.setAccessibleName("Source text")
        highlighted = "supporting quote" if quoted else "cited passage"
        self.view.setAccessibleDescription(f"The {highlighted} is highlighted.")
        layout.addWidget(self.view, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.open_button = buttons.addButton(
            "Open in system viewer", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.open_button.setAccessibleName("Open the file in the system viewer")
        self.copy_button = buttons.addButton(
            "Copy quote" if quoted else "Copy passage", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.copy_button.setAccessibleName(
            "Copy the supporting quote" if quoted else "Copy the cited passage"
        )
        self.open_button.clicked.connect(self._open_file)
        self.copy_button.clicked.connect(self._copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.selected_text = ""
        self.highlight(*self.highlight_range, passage=(citation.start, citation.end))
        if flagged:
            self.show_flagged(flagged)

    def show_flagged(self, flagged: Sequence[FlaggedPassage]) -> None:
        """Tint the passages flagged at ingestion and say what that means."""
        self.flagged = tuple(flagged)
        if not self.flagged:
            self.flag_note.hide()
        else:
            where = "; ".join(
                (f"page {f.page}, " if f.page else "")
                + f"characters {f.start}–{f.end} ({flag_words(f.categories)})"
                for f in self.flagged[:5]
            )
            more = f" and {len(self.flagged) - 5} more" if len(self.flagged) > 5 else ""
            self.flag_note.setText(
                f'<span style="color:{ERROR_COLOUR}">⚠ {len(self.flagged)} passage(s) of this '
                "source read like instructions to an AI model and are kept out of every "
                f"answer's prompt</span> (tinted red): {html.escape(where)}{more}."
            )
            self.flag_note.show()
        self.highlight(*self.highlight_range, passage=(self.citation.start, self.citation.end))

    def highlight(self, start: int, end: int, passage: tuple[int, int] | None = None) -> None:
        """Highlight ``start``..``end`` (and tint ``passage`` around it), then scroll to it."""
        doc = self.view.document()
        last = max(0, doc.characterCount() - 1)

        def selection(a: int, b: int, fmt: QTextCharFormat) -> QTextEdit.ExtraSelection:
            cursor = QTextCursor(doc)
            cursor.setPosition(min(a, last))
            cursor.setPosition(min(b, last), QTextCursor.MoveMode.KeepAnchor)
            chosen = QTextEdit.ExtraSelection()
            chosen.cursor = cursor
            chosen.format = fmt
            return chosen

        selections = []
        for f in self.flagged:
            red = QTextCharFormat()
            red.setBackground(FLAGGED_BG)
            red.setToolTip(f"Flagged: {flag_words(f.categories)}; kept out of the prompt")
            selections.append(selection(f.start, f.end, red))
        if passage is not None and passage != (start, end):
            tint = QTextCharFormat()
            tint.setBackground(PASSAGE_BG)
            selections.append(selection(*passage, tint))
        strong = QTextCharFormat()
        strong.setBackground(HIGHLIGHT_BG)
        strong.setForeground(HIGHLIGHT_FG)
        selections.append(selection(start, end, strong))
        self.view.setExtraSelections(selections)
        self.selected_text = selections[-1].cursor.selectedText().replace("\u2029", "\n")
        # Put the passage in view: scroll to its end first, then to its start.
        caret = QTextCursor(doc)
        caret.setPosition(min(end, last))
        self.view.setTextCursor(caret)
        self.view.ensureCursorVisible()
        caret.setPosition(min(start, last))
        self.view.setTextCursor(caret)
        self.view.centerCursor()

    def highlighted_range(self) -> tuple[int, int] | None:
        """The highlighted (strongest) span of the source text as the view holds it."""
        sels = self.view.extraSelections()
        if not sels:
            return None
        cursor = sels[-1].cursor
        return cursor.selectionStart(), cursor.selectionEnd()

    def highlighted_text(self) -> str:
        sels = self.view.extraSelections()
        return sels[-1].cursor.selectedText().replace("\u2029", "\n") if sels else ""

    def _open_file(self) -> None:
        problem = path_problem(self.path, "open")
        if problem is not None:
            self.flag_note.setText(html.escape(problem))
            self.flag_note.show()
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.path))

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.citation.quote or self.citation.text)


def supporting_quotes(
    citations: Sequence[Citation], quotes: Sequence[Citation] = ()
) -> list[Citation]:
    """One row per citation, carrying its quote (from ``quotes`` if it lacks its own),
    then the quotes shown first that the answer did not cite."""
    shown = {(q.marker, q.source): q for q in quotes if q.quote}
    rows = [c if c.quote else shown.get((c.marker, c.source), c) for c in citations]
    cited = {c.marker for c in citations}
    return rows + [q for q in quotes if q.marker not in cited]


def _quote_line(c: Citation) -> str:
    page = f", page {c.page}" if c.page else ""
    where = f"[{c.marker}] {Path(c.source).name}{page}"
    if not c.quote:
        return f"{where}: no single sentence was singled out; the whole passage is cited."
    return f"{where}: “{' '.join(c.quote.split())}”"


class WhyDialog(QDialog):
    """Why this answer: the quotes, retrieval scores, cache, provider and breakers."""

    COLUMNS = ("#", "Source", "Page", "BM25", "Vector", "Fused", "Rerank", "Final")

    def __init__(self, turn: Turn, parent: QWidget | None, quotes: Sequence[Citation] = ()) -> None:
        """``quotes``: what the answer showed first (the live answer's, when known)."""
        super().__init__(parent)
        self.setWindowTitle("Why this answer")
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 150, fm.height() * 44)
        layout = QVBoxLayout(self)
        why = turn.explanation
        q = QLabel(f"<b>Question:</b> {html.escape(turn.question)}", self)
        q.setWordWrap(True)
        layout.addWidget(q)
        self.supporting = supporting_quotes(turn.citations, quotes)
        if why is None:
            self._quotes(layout)
            layout.addWidget(QLabel("No explanation was recorded for this answer.", self))
            self._buttons(layout)
            return
        lines = [f"<b>Answered by:</b> {html.escape(why.provider or 'no provider')}"]
        if why.degraded:
            lines[0] += " (degraded)"
        if why.cache == "miss":
            lines.append("<b>Cache:</b> not from the cache (computed fresh)")
        else:
            match = ""
            if why.cache_question is not None:
                sim = f"{why.cache_similarity:.3f}" if why.cache_similarity is not None else "—"
                match = (
                    f"; it matched the cached question “{html.escape(why.cache_question)}” "
                    f"at similarity {sim}"
                )
            lines.append(f"<b>Cache:</b> from the {html.escape(why.cache)} cache{match}")
        if why.notice:
            lines.append(f"<b>Notice:</b> {html.escape(why.notice)}")
        if why.timings_ms:
            timing = ", ".join(f"{k} {v:.0f} ms" for k, v in why.timings_ms.items())
            lines.append(f"<b>Timings:</b> {html.escape(timing)}")
        if why.request_id:
            lines.append(f"<b>Request id:</b> {html.escape(why.request_id)}")
        self.summary = QLabel("<br>".join(lines), self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAccessibleName("Answer summary")
        layout.addWidget(self.summary)
        self._quotes(layout)

        layout.addWidget(QLabel("<b>Retrieved passages</b> (— when a score was not computed)"))
        self.table = QTableWidget(len(why.retrieved), len(self.COLUMNS), self)
        self.table.setAccessibleName("Retrieved passages and their scores")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        cited = {c.marker for c in turn.citations}
        for r, item in enumerate(why.retrieved):
            bm25 = fmt_score(item.bm25_score, 3)
            if item.bm25_rank is not None:
                bm25 += f" ({fmt_rank(item.bm25_rank)})"
            vec = fmt_score(item.vector_score, 3)
            if item.vector_rank is not None:
                vec += f" ({fmt_rank(item.vector_rank)})"
            cells = [
                f"[{item.marker}]"
                + (" cited" if item.marker in cited else "")
                + (" ⚠ kept out" if item.injection_categories else ""),
                Path(item.source).name,
                "—" if item.page is None else str(item.page),
                bm25,
                vec,
                fmt_score(item.fused_score),
                fmt_score(item.rerank_score, 3),
                fmt_score(item.score),
            ]
            flag_tip = (
                f"Flagged at ingestion ({flag_words(item.injection_categories)}): "
                "text that speaks to an AI model, kept out of the prompt."
            )
            for c, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(
                    item.source
                    if c == 1
                    else flag_tip
                    if c == 0 and item.injection_categories
                    else text
                )
                if item.injection_categories:
                    cell.setBackground(FLAGGED_BG)
                self.table.setItem(r, c, cell)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 2)
        self.flag_note = QLabel("", self)
        self.flag_note.setWordWrap(True)
        self.flag_note.setAccessibleName("Why the selected passage was flagged")
        self.flag_note.hide()
        layout.addWidget(self.flag_note)
        self.passage = QPlainTextEdit(self)
        self.passage.setReadOnly(True)
        self.passage.setAccessibleName("Selected passage")
        self.passage.setPlaceholderText("Select a row to read its passage.")
        layout.addWidget(self.passage, 1)
        self._retrieved = why.retrieved
        self.table.currentCellChanged.connect(lambda row, *_: self._show_passage(row))
        if why.retrieved:
            self.table.selectRow(0)

        layout.addWidget(QLabel("<b>Language models when the answer arrived</b>"))
        self.breakers = QTableWidget(len(why.breakers), 4, self)
        self.breakers.setAccessibleName("Circuit breakers when the answer arrived")
        self.breakers.setHorizontalHeaderLabels(["Provider", "State", "Failures", "Last error"])
        self.breakers.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.breakers.verticalHeader().hide()
        for r, b in enumerate(why.breakers):
            state = QTableWidgetItem(f"● {sv.STATE_WORDS.get(b.state, b.state)}")
            state.setForeground(QColor(sv.STATE_COLOURS.get(b.state, "gray")))
            # The local model says what runs it (its file and llama.cpp runtime).
            name = QTableWidgetItem(f"{b.name} ({b.backend})" if b.backend else b.name)
            self.breakers.setItem(r, 0, name)
            self.breakers.setItem(r, 1, state)
            self.breakers.setItem(r, 2, QTableWidgetItem(str(b.consecutive_failures)))
            self.breakers.setItem(r, 3, QTableWidgetItem(b.last_error or "—"))
        self.breakers.setWordWrap(False)
        self.breakers.resizeColumnsToContents()
        self.breakers.horizontalHeader().setStretchLastSection(True)
        if not why.breakers:
            layout.addWidget(
                QLabel("No network language model is configured (offline answers only).")
            )
            self.breakers.hide()
        layout.addWidget(self.breakers, 1)
        self._buttons(layout)

    def _quotes(self, layout: QVBoxLayout) -> None:
        layout.addWidget(
            QLabel("<b>Supporting quotes</b> (the sentence of each passage that backs the answer)")
        )
        self.quotes = QListWidget(self)
        self.quotes.setAccessibleName("Supporting quote of each citation")
        self.quotes.setWordWrap(True)
        for c in self.supporting:
            self.quotes.addItem(_quote_line(c))
        if not self.supporting:
            self.quotes.addItem("The answer cites no passage.")
        rows = max(1, min(len(self.supporting), 4))
        self.quotes.setMaximumHeight(self.fontMetrics().height() * (rows * 2 + 1))
        layout.addWidget(self.quotes)

    def _show_passage(self, row: int) -> None:
        """The selected passage in full, its supporting quote highlighted."""
        item = self._retrieved[row] if 0 <= row < len(self._retrieved) else None
        self.passage.setPlainText(item.text if item else "")
        self.passage.setExtraSelections([])
        if item is not None and item.injection_categories:
            why = html.escape(flag_words(item.injection_categories))
            self.flag_note.setText(
                f'<span style="color:{ERROR_COLOUR}">⚠ Flagged at ingestion: this passage reads '
                f"like instructions to an AI model ({why}). It was kept out of the prompt; "
                "read it as data.</span>"
            )
            self.flag_note.show()
        else:
            self.flag_note.hide()
        if item is None:
            return
        quoted = next(
            (
                c
                for c in self.supporting
                if c.quote and c.source == item.source and c.text == item.text
            ),
            None,
        )
        if quoted is None or quoted.quote_start is None or quoted.quote_end is None:
            return
        cursor = QTextCursor(self.passage.document())
        cursor.setPosition(quoted.quote_start - quoted.start)
        cursor.setPosition(quoted.quote_end - quoted.start, QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(HIGHLIGHT_BG)
        fmt.setForeground(HIGHLIGHT_FG)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        selection.format = fmt
        self.passage.setExtraSelections([selection])

    def _buttons(self, layout: QVBoxLayout) -> None:
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    """Edit providers, cache, retrieval and watched folders; validated before saving.

    ``saveRequested(SettingsForm)`` goes to the bridge; the window calls
    ``show_error`` or ``saved`` with the outcome (the dialog stays open on error).
    """

    saveRequested = Signal(object)

    PROVIDER_COLUMNS = (
        "Name",
        "Kind",
        "Base URL",
        "Model",
        "API key env var",
        "Timeout (s)",
        "API key (keyring)",
    )
    KEY_COLUMN = 6

    def __init__(self, form: SettingsForm, settings: Settings, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 150, fm.height() * 30)
        self._extras = {p.name: p.extra for p in form.providers}
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget(self)
        self.tabs.setAccessibleName("Settings sections")
        layout.addWidget(self.tabs)

        # Providers ---------------------------------------------------------
        page = QWidget(self)
        pl = QVBoxLayout(page)
        pl.addWidget(
            QLabel(
                "Language models are tried in this order; the offline extractive answerer "
                "is always the last resort. A key typed under “API key (keyring)” is saved "
                "in the operating system's keyring, never in the settings file; leave it "
                "empty to keep the stored one. An environment variable you name is the "
                "alternative and wins when it is set.",
                page,
                wordWrap=True,
            )
        )
        self.providers = QTableWidget(0, len(self.PROVIDER_COLUMNS), page)
        self.providers.setAccessibleName("Providers in routing order")
        self.providers.setHorizontalHeaderLabels(list(self.PROVIDER_COLUMNS))
        self.providers.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.providers.setWordWrap(False)
        self.providers.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.providers.verticalHeader().hide()
        pl.addWidget(self.providers)
        row = QHBoxLayout()
        self.add_provider_button = QPushButton("Add", page)
        self.add_provider_button.setAccessibleName("Add a provider")
        self.remove_provider_button = QPushButton("Remove", page)
        self.remove_provider_button.setAccessibleName("Remove the selected provider")
        self.up_button = QPushButton("Move up", page)
        self.up_button.setAccessibleName("Move the selected provider up")
        self.down_button = QPushButton("Move down", page)
        self.down_button.setAccessibleName("Move the selected provider down")
        for b in (self.add_provider_button, self.remove_provider_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.up_button)
        row.addWidget(self.down_button)
        pl.addLayout(row)
        self.tabs.addTab(page, "Providers")
        for p in form.providers:
            self._add_provider_row(p)
        self.add_provider_button.clicked.connect(
            lambda: self._add_provider_row(ProviderRow("", "openai", "http://127.0.0.1:8080/v1"))
        )
        self.remove_provider_button.clicked.connect(self._remove_provider)
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(1))

        # Cache -------------------------------------------------------------
        page = QWidget(self)
        cf = QFormLayout(page)
        self.cache_enabled = QCheckBox("Use the answer cache", page)
        self.cache_enabled.setChecked(form.cache_enabled)
        self.redis_url = QLineEdit(form.redis_url, page)
        self.redis_url.setPlaceholderText(
            "empty: the embedded cache (e.g. redis://127.0.0.1:6379/0)"
        )
        self.redis_url.setAccessibleName("Redis URL")
        self.embedding_ttl = self._spin(form.embedding_ttl_s / 3600, 0, 24 * 365, "Embedding TTL")
        self.result_ttl = self._spin(form.result_ttl_s / 3600, 0, 24 * 365, "Answer TTL")
        self.threshold = QDoubleSpinBox(page)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(form.similarity_threshold)
        self.threshold.setAccessibleName("Similarity threshold")
        cf.addRow(self.cache_enabled)
        cf.addRow("Redis URL:", self.redis_url)
        cf.addRow("Embedding TTL (hours):", self.embedding_ttl)
        cf.addRow("Answer TTL (hours):", self.result_ttl)
        cf.addRow("Similarity threshold:", self.threshold)
        if settings.redis_url and settings.redis_url != form.redis_url:
            cf.addRow(QLabel("ARCHIVIST_REDIS_URL is set and overrides this value."))
        self.tabs.addTab(page, "Cache")

        # Retrieval ---------------------------------------------------------
        page = QWidget(self)
        rf = QFormLayout(page)
        self.top_k = QSpinBox(page)
        self.top_k.setRange(0, 100)
        self.top_k.setValue(form.top_k)
        self.top_k.setAccessibleName("Passages per answer (top-k)")
        self.reranker_on = QCheckBox("Rerank passages with a cross-encoder", page)
        self.reranker_on.setChecked(form.reranker_on)
        self.reranker_model = QLineEdit(form.reranker_model, page)
        self.reranker_model.setAccessibleName("Reranker model")
        self.reranker_model.setEnabled(form.reranker_on)
        self.reranker_on.toggled.connect(self.reranker_model.setEnabled)
        rf.addRow("Passages per answer (top-k):", self.top_k)
        rf.addRow(self.reranker_on)
        rf.addRow("Reranker model or folder:", self.reranker_model)
        self.tabs.addTab(page, "Retrieval")

        # Watched folders ---------------------------------------------------
        page = QWidget(self)
        wl = QVBoxLayout(page)
        note = QLabel(WATCHING_NOTE, page)
        note.setObjectName("watch-note")
        note.setWordWrap(True)
        wl.addWidget(note)
        self.folders = QListWidget(page)
        self.folders.setAccessibleName("Watched folders")
        self.folders.addItems(list(form.watched_folders))
        wl.addWidget(self.folders)
        row = QHBoxLayout()
        self.add_folder_button = QPushButton("Add folder…", page)
        self.add_folder_button.setAccessibleName("Add a watched folder")
        self.remove_folder_button = QPushButton("Remove", page)
        self.remove_folder_button.setAccessibleName("Remove the selected watched folder")
        row.addWidget(self.add_folder_button)
        row.addWidget(self.remove_folder_button)
        row.addStretch(1)
        wl.addLayout(row)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.remove_folder_button.clicked.connect(
            lambda: [
                self.folders.takeItem(self.folders.row(i)) for i in self.folders.selectedItems()
            ]
        )
        self.tabs.addTab(page, "Watched folders")

        # Messages and buttons -----------------------------------------------
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Settings message")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setAccessibleName("Save settings")
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def _spin(self, value: float, lo: float, hi: float, name: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox(self)
        spin.setRange(lo, hi)
        spin.setDecimals(2)
        spin.setValue(value)
        spin.setAccessibleName(name)
        return spin

    # ------------------------------------------------------------------ providers

    def _add_provider_row(self, p: ProviderRow) -> None:
        r = self.providers.rowCount()
        self.providers.insertRow(r)
        for c, text in ((0, p.name), (2, p.base_url), (3, p.model), (4, p.api_key_env)):
            self.providers.setItem(r, c, QTableWidgetItem(text))
        kind = QComboBox(self.providers)
        kind.addItems(list(PROVIDER_KINDS))
        kind.setCurrentText(p.kind)
        kind.setAccessibleName("Provider kind")
        self.providers.setCellWidget(r, 1, kind)
        timeout = QDoubleSpinBox(self.providers)
        timeout.setRange(0.0, 3600.0)
        timeout.setDecimals(1)
        timeout.setValue(p.timeout_s)
        timeout.setAccessibleName("Provider timeout in seconds")
        self.providers.setCellWidget(r, 5, timeout)
        key = QLineEdit(self.providers)
        key.setEchoMode(QLineEdit.EchoMode.Password)
        key.setPlaceholderText("unchanged")
        key.setAccessibleName("API key to store in the OS keyring")
        if p.api_key:
            key.setText(p.api_key)
        self.providers.setCellWidget(r, self.KEY_COLUMN, key)

    def _row(self, r: int) -> ProviderRow:
        def text(c: int) -> str:
            item = self.providers.item(r, c)
            return item.text().strip() if item else ""

        kind = self.providers.cellWidget(r, 1)
        timeout = self.providers.cellWidget(r, 5)
        key = self.providers.cellWidget(r, self.KEY_COLUMN)
        assert isinstance(kind, QComboBox) and isinstance(timeout, QDoubleSpinBox)
        assert isinstance(key, QLineEdit)
        name = text(0)
        return ProviderRow(
            name,
            kind.currentText(),
            text(2),
            text(3),
            text(4),
            timeout.value(),
            self._extras.get(name, {}),
            api_key=key.text().strip() or None,
        )

    def _remove_provider(self) -> None:
        r = self.providers.currentRow()
        if r >= 0:
            self.providers.removeRow(r)

    def _move(self, step: int) -> None:
        r = self.providers.currentRow()
        target = r + step
        if r < 0 or not 0 <= target < self.providers.rowCount():
            return
        rows = [self._row(i) for i in range(self.providers.rowCount())]
        rows[r], rows[target] = rows[target], rows[r]
        self.providers.setRowCount(0)
        for row in rows:
            self._add_provider_row(row)
        self.providers.selectRow(target)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Watch a folder")
        if folder:
            self.folders.addItem(folder)

    # ------------------------------------------------------------------ saving

    def form(self) -> SettingsForm:
        return SettingsForm(
            providers=tuple(self._row(r) for r in range(self.providers.rowCount())),
            redis_url=self.redis_url.text().strip(),
            cache_enabled=self.cache_enabled.isChecked(),
            embedding_ttl_s=self.embedding_ttl.value() * 3600,
            result_ttl_s=self.result_ttl.value() * 3600,
            similarity_threshold=self.threshold.value(),
            top_k=self.top_k.value(),
            reranker_on=self.reranker_on.isChecked(),
            reranker_model=self.reranker_model.text(),
            watched_folders=tuple(self.folders.item(i).text() for i in range(self.folders.count())),
        )

    def _save(self) -> None:
        self.save_button.setEnabled(False)
        self.message.setText("Checking…")
        self.saveRequested.emit(self.form())

    def show_error(self, message: str) -> None:
        self.save_button.setEnabled(True)
        self.message.setText(
            f'<span style="color:{ERROR_COLOUR}">{html.escape(message)}</span><br>'
            "Nothing was saved."
        )

    def saved(self, result: SaveResult) -> None:
        self.save_button.setEnabled(True)
        self.save_result = result
        self.message.setText(html.escape(result.message()).replace("\n", "<br>"))
        self.accept()
