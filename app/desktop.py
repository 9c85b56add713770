"""Desktop conventions for the window: icons, theme, remembered layout, notifications.

* ``app_icon`` and ``themed_icon``: the app icon and the toolbar's SVG icons,
  drawn in ``currentColor`` and coloured here from the palette (so they follow
  the light and the dark theme; ``MainWindow`` re-colours them on a change);
* ``Theme``: System, Light or Dark (Fusion with an explicit palette);
* ``WindowState``: size, position, docks, toolbar and splitter, kept in
  ``window.ini`` in the data folder (QSettings' INI format), so tests and
  several data folders never share a layout;
* ``Notifier``: "a long ingestion finished" as a desktop notification where
  the platform has a tray, else in the status bar.

Taskbar progress: Qt 6 has no taskbar-progress API (Qt 5's QWinTaskbarProgress
was Windows-only and is gone), and X11 has no standard one. The window shows
ingestion progress in its title (``statusview.progress_title``) everywhere, and
``LauncherProgress`` also sends it over D-Bus with the Unity LauncherEntry
signal, which KDE Plasma's task manager and the Ubuntu / Dash-to-Dock docks
draw on the app's icon; elsewhere nobody listens and nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QByteArray, QRectF, QSettings, Qt
from PySide6.QtDBus import QDBusConnection, QDBusMessage
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QSplitter,
    QStyleFactory,
    QSystemTrayIcon,
    QWidget,
)

from app.resources import APP_ID, app_icon_files, resource, toolbar_icon

ThemeName = Literal["system", "light", "dark"]
THEMES: tuple[ThemeName, ...] = ("system", "light", "dark")
ICON_SIZES = (16, 20, 24, 32, 48)


@functools.cache
def app_icon() -> QIcon:
    icon = QIcon()
    for path in app_icon_files():
        icon.addFile(str(path))
    return icon


@functools.cache
def _svg_text(name: str) -> str:
    return toolbar_icon(name).read_text(encoding="utf-8")


def _pixmap(svg: str, size: int, ratio: float) -> QPixmap:
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    px = max(1, round(size * ratio))
    image = QImage(px, px, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, px, px))
    painter.end()
    pixmap = QPixmap.fromImage(image)
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


def themed_icon(name: str, palette: QPalette, ratio: float = 1.0) -> QIcon:
    """The toolbar icon ``name`` in the palette's text colour (greyed when disabled)."""
    svg = _svg_text(name)
    normal = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText)
    icon = QIcon()
    for colour, mode in ((normal, QIcon.Mode.Normal), (disabled, QIcon.Mode.Disabled)):
        coloured = svg.replace("currentColor", colour.name())
        for size in ICON_SIZES:
            icon.addPixmap(_pixmap(coloured, size, ratio), mode)
    return icon


def stylesheet() -> str:
    """The app's stylesheet (spacing and shapes; its colours come from the palette)."""
    return resource("styles", "archivist.qss").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- theme


def dark_palette() -> QPalette:
    pal = QPalette()
    role = QPalette.ColorRole
    for r, c in (
        (role.Window, "#2b2b2b"),
        (role.WindowText, "#e6e6e6"),
        (role.Base, "#1e1e1e"),
        (role.AlternateBase, "#2b2b2b"),
        (role.Text, "#e6e6e6"),
        (role.Button, "#3a3a3a"),
        (role.ButtonText, "#e6e6e6"),
        (role.Highlight, "#3d6fb6"),
        (role.HighlightedText, "#ffffff"),
        (role.Link, "#7fb2ff"),
        (role.ToolTipBase, "#3a3a3a"),
        (role.ToolTipText, "#e6e6e6"),
        (role.PlaceholderText, "#9a9a9a"),
        (role.Mid, "#555555"),
    ):
        pal.setColor(r, QColor(c))
    disabled = QPalette.ColorGroup.Disabled
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(disabled, r, QColor("#7a7a7a"))
    return pal


class Theme:
    """Switch the whole application between the system look, light and dark.

    The stylesheet is set on the application, after the style and the palette: a
    stylesheet resolves the palette when it is applied, so it is applied again on
    every switch (set on a window instead, a later palette never reached it).
    """

    _SYSTEM_STYLE = "archivist-system-style"  # the style Qt chose, kept on the app

    def __init__(self, app: QApplication, sheet: str = "") -> None:
        self.app = app
        self.sheet = sheet
        if not app.property(self._SYSTEM_STYLE):
            style = app.style()
            app.setProperty(self._SYSTEM_STYLE, style.name() if style is not None else "fusion")
        self.current: ThemeName | None = None  # nothing applied yet

    def apply(self, name: str) -> ThemeName:
        """Apply ``name`` (an unknown name means "system"); returns what was applied."""
        theme: ThemeName = next((t for t in THEMES if t == name), "system")
        if theme == self.current and self.app.styleSheet() == self.sheet:
            return theme
        self.app.setStyleSheet("")
        if theme == "system" and self.current is None:
            pass  # the first window in the system look: Qt's style and palette stay as they are
        elif theme == "system":
            self.app.setStyle(str(self.app.property(self._SYSTEM_STYLE)))
            self.app.setPalette(QPalette())  # an unset palette: the platform's again
        else:
            fusion = QStyleFactory.create("Fusion")
            self.app.setStyle(fusion)
            self.app.setPalette(dark_palette() if theme == "dark" else fusion.standardPalette())
        self.app.setStyleSheet(self.sheet)
        self.current = theme
        return theme


# --------------------------------------------------------------------------- layout


class WindowState:
    """The window's layout across runs, in an INI file (``window.ini`` in the data folder)."""

    VERSION = 1  # bump when docks or toolbars change name: old layouts are then ignored

    def __init__(self, path: str) -> None:
        self.settings = QSettings(path, QSettings.Format.IniFormat)

    def save(self, window: QMainWindow, splitter: QSplitter, theme: str) -> None:
        s = self.settings
        s.setValue("window/geometry", window.saveGeometry())
        s.setValue("window/state", window.saveState(self.VERSION))
        s.setValue("window/splitter", splitter.saveState())
        s.setValue("window/theme", theme)
        s.sync()

    def theme(self) -> str:
        value = self.settings.value("window/theme", "system")
        return value if isinstance(value, str) else "system"

    def restore(self, window: QMainWindow, splitter: QSplitter) -> bool:
        """Restore what ``save`` kept; False when nothing was saved (first run)."""
        s = self.settings
        geometry = s.value("window/geometry")
        if not isinstance(geometry, QByteArray) or geometry.isEmpty():
            return False
        window.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            window.restoreState(state, self.VERSION)
        split = s.value("window/splitter")
        if isinstance(split, QByteArray):
            splitter.restoreState(split)
        return True


# --------------------------------------------------------------------------- notifications

Channel = Literal["tray", "status"]


class Notifier:
    """A desktop notification when the platform has a tray, else the status bar."""

    def __init__(self, parent: QWidget, fallback: Callable[[str], None]) -> None:
        self.parent = parent
        self.fallback = fallback
        self.tray: QSystemTrayIcon | None = None
        self.sent: list[tuple[Channel, str]] = []  # what was shown where (read by tests)

    @staticmethod
    def tray_available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages()

    def notify(self, title: str, message: str) -> Channel:
        if self.tray_available():
            if self.tray is None:
                self.tray = QSystemTrayIcon(app_icon(), self.parent)
                self.tray.setToolTip("Archivist")
                self.tray.activated.connect(lambda _reason: self._raise())
            self.tray.show()
            self.tray.showMessage(title, message, app_icon(), 8000)
            channel: Channel = "tray"
        else:
            self.fallback(message)
            channel = "status"
        self.sent.append((channel, message))
        return channel

    def _raise(self) -> None:
        window = self.parent.window()
        window.showNormal()
        window.raise_()
        window.activateWindow()

    def close(self) -> None:
        if self.tray is not None:
            self.tray.hide()


class LauncherProgress:
    """Ingestion progress on the launcher icon (the Unity LauncherEntry D-Bus signal)."""

    PATH = "/io/archivist/Archivist/launcher"
    INTERFACE = "com.canonical.Unity.LauncherEntry"

    def __init__(self, bus: QDBusConnection | None = None) -> None:
        self.bus = QDBusConnection.sessionBus() if bus is None else bus
        self.app_uri = f"application://{APP_ID}.desktop"  # names the .desktop entry

    @property
    def available(self) -> bool:
        return self.bus.isConnected()

    def update(self, fraction: float | None) -> bool:
        """Show ``fraction`` (0..1) on the icon, or hide the bar (None); False: no bus."""
        if not self.available:
            return False
        message = QDBusMessage.createSignal(self.PATH, self.INTERFACE, "Update")
        message.setArguments(
            [
                self.app_uri,
                {"progress": float(fraction or 0.0), "progress-visible": fraction is not None},
            ]
        )
        return self.bus.send(message)
