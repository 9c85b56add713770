"""Dock panels: the library (ingestion, quarantine) and health & statistics.

They only display what the bridge sends and emit what the user asks for.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import statusview as sv
from app.widgets import BarChart
from core.types import (
    BreakerSnapshot,
    BreakerTransition,
    ComponentHealth,
    FileOutcome,
    FileStatus,
    FillProgress,
    HealthSnapshot,
    IngestProgress,
    IngestReport,
    StatsSnapshot,
)

STATUS_WORDS = {
    FileStatus.ADDED: "added",
    FileStatus.UPDATED: "updated",
    FileStatus.UNCHANGED: "unchanged",
    FileStatus.MOVED: "moved",
    FileStatus.REMOVED: "removed",
    FileStatus.FAILED: "failed",
}
RECENT_FILES = 300


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    return f"about {seconds / 60:.0f} min left"


class LibraryPanel(QWidget):
    """Add documents, watch their progress, cancel, and see what was quarantined."""

    addFilesRequested = Signal()
    addFolderRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.add_files_button = QPushButton("Add files…", self)
        self.add_files_button.setAccessibleName("Add files")
        self.add_folder_button = QPushButton("Add folder…", self)
        self.add_folder_button.setAccessibleName("Add folder")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName("Cancel ingestion")
        self.cancel_button.setEnabled(False)
        for b in (self.add_files_button, self.add_folder_button, self.cancel_button):
            row.addWidget(b)
        layout.addLayout(row)
        hint = QLabel("Or drop files and folders anywhere on the window.", self)
        hint.setWordWrap(True)
        layout.addWidget(hint)

        self.progress = QProgressBar(self)
        self.progress.setAccessibleName("Ingestion progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("No ingestion running")  # "0 of 1 files" would mislead
        layout.addWidget(self.progress)
        self.eta_label = QLabel("Idle.", self)
        self.eta_label.setAccessibleName("Ingestion status")
        self.eta_label.setWordWrap(True)
        layout.addWidget(self.eta_label)
        self.queued_label = QLabel("", self)
        self.queued_label.setAccessibleName("Items waiting to be added")
        self.queued_label.setWordWrap(True)
        self.queued_label.hide()
        layout.addWidget(self.queued_label)

        layout.addWidget(QLabel("Recent files", self))
        self.recent = QListWidget(self)
        self.recent.setAccessibleName("Recently ingested files")
        self.recent.setUniformItemSizes(True)
        layout.addWidget(self.recent, 2)

        self.quarantine_label = QLabel("Quarantined files", self)
        layout.addWidget(self.quarantine_label)
        self.quarantine = QListWidget(self)
        self.quarantine.setAccessibleName("Quarantined files with reasons")
        self.quarantine.setWordWrap(True)
        layout.addWidget(self.quarantine, 1)

        self.add_files_button.clicked.connect(self.addFilesRequested)
        self.add_folder_button.clicked.connect(self.addFolderRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)

    def on_started(self, n: int) -> None:
        self.progress.setFormat("%v of %m files")
        self.progress.setRange(0, 0)  # busy until the first progress event counts files
        self.cancel_button.setEnabled(True)
        self.eta_label.setText(f"Looking at {n} item(s)…")

    def on_queued(self, waiting: int) -> None:
        """Items dropped while an ingestion runs wait for it; the running one keeps Cancel."""
        self.queued_label.setText(
            f"{waiting} more item(s) will be added when this ingestion ends "
            "(Cancel drops them too)."
        )
        self.queued_label.setVisible(waiting > 0)

    def on_progress(self, p: IngestProgress) -> None:
        if p.vectors_total:
            # Every file is in and keyword-searchable; vectors are filled in behind.
            self.progress.setFormat("%v of %m passages embedded")
            self.progress.setRange(0, p.vectors_total)
            self.progress.setValue(p.vectors_done)
            self.eta_label.setText(sv.fill_text(p.vectors_done, p.vectors_total, _eta(p.eta_s)))
            return
        self.progress.setFormat("%v of %m files")
        self.progress.setRange(0, max(1, p.files_total))
        self.progress.setValue(p.files_done)
        current = f" Now: {Path(p.current).name}." if p.current else ""
        self.eta_label.setText(
            f"{p.files_done} of {p.files_total} files, {p.chunks} passages, "
            f"{_eta(p.eta_s)}.{current}"
        )
        last = p.last
        if last is not None:
            self._add_recent(last)

    def _add_recent(self, outcome: FileOutcome, suffix: str = "") -> None:
        word = STATUS_WORDS.get(outcome.status, str(outcome.status))
        extra = ""
        if outcome.chunks:
            extra = f" ({outcome.chunks} passage{'s' if outcome.chunks != 1 else ''})"
        if outcome.reason:
            extra += f": {outcome.reason}"
        item = QListWidgetItem(f"{word}: {Path(outcome.path).name}{extra}{suffix}")
        item.setToolTip(outcome.path)
        if outcome.status is FileStatus.FAILED:
            item.setForeground(QColor(sv.STATUS_COLOURS["down"]))
        self.recent.insertItem(0, item)
        while self.recent.count() > RECENT_FILES:
            self.recent.takeItem(self.recent.count() - 1)

    def on_watch_report(self, folder: str, report: IngestReport) -> None:
        """A watched folder was re-scanned: list what changed (unchanged files are not news)."""
        changed = [o for o in report.outcomes if o.status is not FileStatus.UNCHANGED]
        for outcome in changed:
            self._add_recent(outcome, " — watched folder")
        if changed and not self.cancel_button.isEnabled():  # keep a running ingestion's line
            counts = ", ".join(
                f"{n} {k}" for k, n in report.summary().items() if n and k != "unchanged"
            )
            self.eta_label.setText(f"Watched folder {Path(folder).name}: {counts}.")

    def on_fill(self, p: FillProgress) -> None:
        """Vectors being filled in with no ingestion running (resumed at start-up)."""
        if p.running:
            self.progress.setFormat("%v of %m passages embedded")
            self.progress.setRange(0, max(1, p.total))
            self.progress.setValue(p.done)
            self.eta_label.setText(sv.fill_text(p.done, p.total, _eta(p.eta_s)))
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("No ingestion running")
        self.eta_label.setText(
            "Search by meaning is complete." if p.pending == 0 else "Idle (embedding stopped)."
        )

    def on_finished(self, report: IngestReport) -> None:
        self.cancel_button.setEnabled(False)
        total = len(report.outcomes)
        # Counts files again: the bar may still carry the fill's "passages embedded".
        self.progress.setFormat("%v of %m files")
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(total)
        counts = ", ".join(f"{n} {k}" for k, n in report.summary().items() if n)
        prefix = "Cancelled" if report.cancelled else "Done"
        self.eta_label.setText(
            f"{prefix} in {report.elapsed_s:.1f} s: {counts or 'nothing to do'}."
        )

    def on_failed(self, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("No ingestion running")
        self.eta_label.setText(message)

    def show_quarantine(self, rows: Sequence[tuple[str, str, float]]) -> None:
        self.quarantine.clear()
        self.quarantine_label.setText(f"Quarantined files ({len(rows)})")
        for path, reason, _when in rows:
            item = QListWidgetItem(f"{Path(path).name}: {reason}")
            item.setToolTip(path)
            self.quarantine.addItem(item)
        if not rows:
            self.quarantine.addItem("None — every file could be read.")


def _lines_html(lines: Sequence[sv.StatusLine]) -> str:
    """Status lines as rich text: a coloured dot and colour where a status is given."""
    out = []
    for line in lines:
        text = html.escape(line.text).replace("  ", "&nbsp;&nbsp;")
        if line.status:
            colour = sv.STATUS_COLOURS.get(line.status, "gray")
            text = f'<span style="color:{colour}">● {text}</span>'
        out.append(text)
    return "<br>".join(out)


class HealthPanel(QWidget):
    """Providers' breakers, components, cache, latency, a chart and recent events."""

    forceRequested = Signal(str, str)  # provider name, "open" | "closed"

    COLUMNS = ("Provider", "State", "Failures", "Last error", "Half-open in")
    SHORT_STATE: ClassVar[dict[str, str]] = {
        "closed": "closed — healthy",
        "half_open": "half-open",
        "open": "open — failing",
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        body = QWidget(scroll)
        scroll.setWidget(body)
        layout = QVBoxLayout(body)

        self.overall = QLabel("Waiting for the first health check…", body)
        self.overall.setAccessibleName("Overall health")
        self.overall.setWordWrap(True)
        layout.addWidget(self.overall)

        box = QGroupBox("Language models (circuit breakers)", body)
        bl = QVBoxLayout(box)
        self.breakers = QTableWidget(0, len(self.COLUMNS), box)
        self.breakers.setAccessibleName("Provider circuit breakers")
        self.breakers.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.breakers.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.breakers.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.breakers.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.breakers.verticalHeader().hide()
        self.breakers.setWordWrap(False)
        header = self.breakers.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(self.fontMetrics().averageCharWidth() * 6)
        bl.addWidget(self.breakers)
        row = QHBoxLayout()
        self.force_open_button = QPushButton("Force open", box)
        self.force_open_button.setAccessibleName("Force the selected provider's circuit open")
        self.force_open_button.setToolTip("Stop sending questions to this provider")
        self.force_closed_button = QPushButton("Force closed", box)
        self.force_closed_button.setAccessibleName("Force the selected provider's circuit closed")
        self.force_closed_button.setToolTip("Send questions to this provider again")
        row.addWidget(self.force_open_button)
        row.addWidget(self.force_closed_button)
        row.addStretch(1)
        bl.addLayout(row)
        self.no_providers = QLabel(
            "No network language models are configured; answers are composed directly "
            "from your documents. Add one in Settings.",
            box,
        )
        self.no_providers.setWordWrap(True)
        bl.addWidget(self.no_providers)
        layout.addWidget(box)

        box = QGroupBox("Components", body)
        cl = QVBoxLayout(box)
        self.components = QListWidget(box)
        self.components.setAccessibleName("Component health")
        self.components.setWordWrap(True)
        cl.addWidget(self.components)
        layout.addWidget(box)

        box = QGroupBox("Cache", body)
        cl = QVBoxLayout(box)
        self.cache_label = QLabel("No cache information yet.", box)
        self.cache_label.setAccessibleName("Cache status")
        self.cache_label.setWordWrap(True)
        self.cache_label.setTextFormat(Qt.TextFormat.RichText)
        self.cache_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        cl.addWidget(self.cache_label)
        layout.addWidget(box)

        box = QGroupBox("Watched folders", body)
        wl = QVBoxLayout(box)
        self.watch_label = QLabel("No watcher information yet.", box)
        self.watch_label.setAccessibleName("Watched folders")
        self.watch_label.setWordWrap(True)
        self.watch_label.setTextFormat(Qt.TextFormat.RichText)
        self.watch_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        wl.addWidget(self.watch_label)
        layout.addWidget(box)

        box = QGroupBox("Requests", body)
        rl = QVBoxLayout(box)
        self.latency_label = QLabel("Answer latency: p50 — · p95 —", box)
        self.latency_label.setAccessibleName("Answer latency")
        rl.addWidget(self.latency_label)
        self.totals_label = QLabel("", box)
        self.totals_label.setWordWrap(True)
        rl.addWidget(self.totals_label)
        self.outcome_chart = BarChart("Requests by outcome, per refresh", box)
        rl.addWidget(self.outcome_chart)
        self.provider_chart = BarChart("Requests by provider", box)
        rl.addWidget(self.provider_chart)
        self.day_chart = BarChart("Requests per day", box)
        rl.addWidget(self.day_chart)
        layout.addWidget(box)

        box = QGroupBox("Recent events", body)
        el = QVBoxLayout(box)
        self.events = QListWidget(box)
        self.events.setAccessibleName("Recent audit events")
        el.addWidget(self.events)
        layout.addWidget(box)

        self.history = sv.OutcomeHistory()
        self.snapshots: list[BreakerSnapshot] = []
        self._snap_at = time.monotonic()
        self.last_transition: BreakerTransition | None = None
        self.countdown = QTimer(self)
        self.countdown.setInterval(1000)
        self.countdown.timeout.connect(self._tick)
        self.countdown.start()

        self.force_open_button.clicked.connect(lambda: self._force("open"))
        self.force_closed_button.clicked.connect(lambda: self._force("closed"))

    # ------------------------------------------------------------------ actions

    def selected_provider(self) -> str | None:
        rows = self.breakers.selectionModel().selectedRows()
        row = rows[0].row() if rows else (0 if self.breakers.rowCount() else -1)
        if row < 0:
            return None
        item = self.breakers.item(row, 0)
        return item.text() if item else None

    def _force(self, state: str) -> None:
        name = self.selected_provider()
        if name:
            self.forceRequested.emit(name, state)

    # ------------------------------------------------------------------ data in

    def show_breakers(self, snaps: Sequence[BreakerSnapshot]) -> None:
        self.snapshots = list(snaps)
        self._snap_at = time.monotonic()
        selected = self.selected_provider()
        self.breakers.setRowCount(len(snaps))
        for r, s in enumerate(snaps):
            state = s.state.value
            words = sv.STATE_WORDS.get(state, state)
            cells = [
                s.name,
                f"● {self.SHORT_STATE.get(state, state)}",
                f"{s.consecutive_failures} ({s.failures} total)",
                s.last_error or "—",
                "",
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 1:
                    item.setForeground(QColor(sv.STATE_COLOURS.get(state, "gray")))
                    item.setData(Qt.ItemDataRole.AccessibleTextRole, f"circuit {words}")
                    item.setToolTip(f"Circuit {words}")
                if c == 2:
                    item.setToolTip("Failures in a row (all failures since start)")
                if c == 3 and s.last_error:
                    item.setToolTip(s.last_error)
                self.breakers.setItem(r, c, item)
            if s.name == selected:
                self.breakers.selectRow(r)
        has = bool(snaps)
        rows_h = sum(self.breakers.rowHeight(r) for r in range(len(snaps)))
        frame = self.breakers.horizontalHeader().height() + 2 * self.breakers.frameWidth()
        scroll = self.breakers.horizontalScrollBar().sizeHint().height()
        self.breakers.setFixedHeight(frame + max(rows_h, self.fontMetrics().height()) + scroll)
        self.breakers.setVisible(has)
        self.no_providers.setVisible(not has)
        self.force_open_button.setEnabled(has)
        self.force_closed_button.setEnabled(has)
        self._tick()

    def state_of(self, name: str) -> str | None:
        """The state shown for provider ``name`` (the words in the State column)."""
        for r in range(self.breakers.rowCount()):
            item = self.breakers.item(r, 0)
            if item is not None and item.text() == name:
                cell = self.breakers.item(r, 1)
                return cell.text() if cell else None
        return None

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._snap_at
        for r, s in enumerate(self.snapshots):
            if r >= self.breakers.rowCount():
                break
            if s.seconds_until_half_open is None:
                text = "—"
            else:
                left = max(0.0, s.seconds_until_half_open - elapsed)
                text = f"{left:.0f} s" if left > 0 else "probing next call"
            item = self.breakers.item(r, 4)
            if item is not None:
                item.setText(text)

    def on_transition(self, t: BreakerTransition) -> None:
        self.last_transition = t
        self.events.insertItem(
            0,
            f"{time.strftime('%H:%M:%S')}  breaker {t.provider}: "
            f"{t.old.value} → {t.new.value} ({t.reason})",
        )

    def show_health(self, snap: HealthSnapshot) -> None:
        colour = sv.STATUS_COLOURS.get(snap.status, "gray")
        words = {
            "ok": "Everything is working.",
            "degraded": "Working, with some parts degraded.",
            "down": "Archivist cannot answer right now.",
        }.get(snap.status, snap.status)
        when = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
        self.overall.setText(
            f'<span style="color:{colour}">●</span> <b>{html.escape(snap.status)}</b> — '
            f"{html.escape(words)} <small>(checked {when})</small>"
        )
        self.components.clear()
        for c in snap.components:
            if c.name.startswith("provider:") and c.name[9:] in {s.name for s in self.snapshots}:
                continue  # shown in the breaker table
            if c.name in ("cache", "watcher"):
                continue  # shown in their own boxes below
            skip = ("url",) if c.name != "database" else ()
            item = QListWidgetItem(f"● {c.name}: {c.status} — {sv.component_details(c, skip)}")
            if c.status != "ok":  # colour draws the eye to what is not fine; words say it
                item.setForeground(QColor(sv.STATUS_COLOURS.get(c.status, "gray")))
            self.components.addItem(item)
        self._components = snap.components
        self._render_cache()
        self.watch_label.setText(
            _lines_html(sv.watcher_view(snap.components)) or "No watcher information."
        )

    _components: Sequence[ComponentHealth] = ()
    _stats: StatsSnapshot | None = None
    cache_text = ""  # the cache box as plain text

    def _render_cache(self) -> None:
        text = _lines_html(sv.cache_view(self._components, self._stats))
        self.cache_label.setText(text or "No cache information.")
        self.cache_text = "\n".join(sv.cache_lines(self._components, self._stats))

    def show_stats(self, stats: StatsSnapshot) -> None:
        self._stats = stats
        self.latency_label.setText(sv.latency_text(stats))
        by_outcome = sv.counts(stats, "by_outcome")
        self.totals_label.setText(sv.totals_text(stats))
        if by_outcome:
            self.history.add(by_outcome, time.time())
        chart = self.history.chart()
        self.outcome_chart.set_data(chart.labels, chart.series)
        chart = sv.provider_chart(stats)
        self.provider_chart.set_data(chart.labels, chart.series)
        self.provider_chart.setVisible(bool(chart.labels))
        chart = sv.per_day_chart(stats)
        self.day_chart.set_data(chart.labels, chart.series)
        self.day_chart.setVisible(bool(chart.labels))
        events = sv.recent_events(stats)
        if events:
            keep = [
                self.events.item(i).text()
                for i in range(self.events.count())
                if " breaker " in self.events.item(i).text()
            ][:10]
            self.events.clear()
            for text in keep:
                self.events.addItem(text)
            for e in events[:30]:
                self.events.addItem(sv.event_line(e))
        self._render_cache()
