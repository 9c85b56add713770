"""Small reusable widgets: the conversation view and a QPainter bar chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QSizePolicy, QTextBrowser, QWidget

# Mid-tone colours that stay distinguishable on light and dark backgrounds.
SERIES_COLOURS = (
    "#3d8bd9",
    "#e0453a",
    "#2e9d44",
    "#d08a00",
    "#8e5bd9",
    "#1aa3a3",
    "#c2528b",
    "#7f8c8d",
)
KNOWN_COLOURS = {
    "ok": "#2e9d44",
    "success": "#2e9d44",
    "degraded": "#d08a00",
    "failed": "#e0453a",
    "failure": "#e0453a",
    "refused": "#8e5bd9",
    "blocked": "#c2528b",
}


def colour_for(name: str, index: int) -> QColor:
    return QColor(KNOWN_COLOURS.get(name, SERIES_COLOURS[index % len(SERIES_COLOURS)]))


class ChatView(QTextBrowser):
    """A read-only rich-text view that never loads anything by itself.

    Links are reported through ``anchorClicked`` (never followed by the view);
    ``loadResource`` refuses every resource, so no image or stylesheet is ever
    fetched, local or remote.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setAcceptDrops(False)
        self.setAccessibleName("Conversation")
        self.setAccessibleDescription(
            "The questions and answers of this chat. Citation links open the cited passage."
        )
        self.blocked_resources: list[str] = []

    def loadResource(self, type: int, name: QUrl | str) -> Any:
        self.blocked_resources.append(name.toString() if isinstance(name, QUrl) else name)
        return None


class BarChart(QWidget):
    """Stacked bars drawn with QPainter: one bar per label, one colour per series.

    ``set_data(labels, series)`` where ``series`` maps a series name to one
    value per label. Text uses the palette, so it follows light and dark themes.
    """

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.labels: list[str] = []
        self.series: dict[str, list[float]] = {}
        self.setAccessibleName(title)
        self.setMinimumHeight(self.fontMetrics().height() * 9)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        h = self.fontMetrics().height()
        return QSize(h * 22, h * 10)

    def set_data(self, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
        self.labels = list(labels)
        self.series = {k: [float(x) for x in v] for k, v in series.items()}
        totals = {k: sum(v) for k, v in self.series.items()}
        summary = ", ".join(f"{k}: {v:g}" for k, v in totals.items()) or "no data yet"
        self.setAccessibleDescription(f"{self.title}: {summary}")
        self.setToolTip(f"{self.title}\n{summary}")
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        grid = QColor(text)
        grid.setAlpha(60)
        fm = QFontMetrics(self.font())
        lh = fm.height()
        w, h = self.width(), self.height()
        p.setPen(text)
        p.drawText(QRectF(0, 0, w, lh), Qt.AlignmentFlag.AlignLeft, self.title)

        names = list(self.series)
        # Legend: one row of swatches under the title.
        x = 0.0
        legend_y = lh * 1.2
        for i, name in enumerate(names):
            p.fillRect(QRectF(x, legend_y + lh * 0.25, lh * 0.6, lh * 0.6), colour_for(name, i))
            label = f"{name} ({sum(self.series[name]):g})"
            x += lh * 0.8
            p.setPen(text)
            p.drawText(QRectF(x, legend_y, w - x, lh), Qt.AlignmentFlag.AlignLeft, label)
            x += fm.horizontalAdvance(label) + lh * 0.8

        top = legend_y + lh * 1.4
        bottom = h - lh * 1.3
        left = fm.horizontalAdvance("0000") + 6
        plot_h = max(1.0, bottom - top)
        n = len(self.labels)
        if n == 0 or not names:
            p.setPen(text)
            p.drawText(QRectF(0, top, w, plot_h), Qt.AlignmentFlag.AlignCenter, "No requests yet")
            p.end()
            return
        totals = [sum(self.series[s][i] for s in names) for i in range(n)]
        peak = max(max(totals), 1.0)
        p.setPen(grid)
        p.drawLine(int(left), int(bottom), w, int(bottom))
        p.drawLine(int(left), int(top), w, int(top))
        p.setPen(text)
        p.drawText(QRectF(0, top - lh / 2, left - 4, lh), Qt.AlignmentFlag.AlignRight, f"{peak:g}")
        p.drawText(QRectF(0, bottom - lh / 2, left - 4, lh), Qt.AlignmentFlag.AlignRight, "0")
        slot = (w - left) / n
        bar_w = max(2.0, slot * 0.7)
        every = max(1, int(fm.horizontalAdvance("00-00 ") / max(slot, 1.0)) + 1)
        for i in range(n):
            x0 = left + i * slot + (slot - bar_w) / 2
            y = bottom
            for j, name in enumerate(names):
                v = self.series[name][i]
                if v <= 0:
                    continue
                bh = plot_h * v / peak
                p.fillRect(QRectF(x0, y - bh, bar_w, bh), colour_for(name, j))
                y -= bh
            if i % every == 0 or i == n - 1:
                p.setPen(text)
                p.drawText(
                    QRectF(left + i * slot - slot, bottom + 2, slot * 3, lh),
                    Qt.AlignmentFlag.AlignHCenter,
                    self.labels[i],
                )
        p.end()
