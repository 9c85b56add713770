"""Desktop conventions of the real window: menu bar, standard keys, About, layout memory,
notifications and ingestion progress in the title."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtDBus import QDBusConnection
from PySide6.QtGui import QAction, QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QMenu, QPushButton

from app.about import AboutDialog, ShortcutsDialog, app_version
from app.desktop import LauncherProgress, Notifier
from app.gui import configure_application
from app.resources import APP_ID
from tests.app.conftest import Gui


def _texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def _keys(action: QAction) -> list[str]:
    return [k.toString() for k in action.shortcuts()]


class OpenRecorder:
    """Stands in for QDesktopServices.openUrl: records what the window asked to open."""

    def __init__(self) -> None:
        self.urls: list[QUrl] = []

    def __call__(self, url: QUrl) -> bool:
        self.urls.append(url)
        return True


def test_the_menu_bar_has_file_edit_view_help_with_every_command(gui: Gui) -> None:
    window = gui.open()
    bar = [a.text() for a in window.menuBar().actions()]
    assert bar == ["&File", "&Edit", "&View", "&Help"]
    assert _texts(window.menus["File"]) == [
        "Add files…",
        "Add folder…",
        "New chat",
        "Export conversation…",
        "Open data folder",
        "Quit",
    ]
    edit = _texts(window.menus["Edit"])
    assert edit[0] == "Copy answer"
    assert "Find in conversations" in edit and edit[-1] == "Settings…"
    view = _texts(window.menus["View"])
    assert view == ["Library", "Health", "Toolbar", "&Theme"]
    assert _texts(window.menus["Help"]) == [
        "Keyboard shortcuts",
        "Welcome…",
        "Open log folder",
        "About Archivist",
    ]


def test_commands_carry_the_platforms_standard_keys(gui: Gui) -> None:
    window = gui.open()
    std = QKeySequence.StandardKey
    for action, key in (
        (window.new_chat_action, std.New),
        (window.add_files_action, std.Open),
        (window.find_action, std.Find),
        (window.quit_action, std.Quit),
        (window.shortcuts_action, std.HelpContents),
    ):
        # (The platform may have no binding for a key: offscreen has none for Quit.)
        wanted = [k.toString() for k in QKeySequence.keyBindings(key)]
        assert _keys(action)[: len(wanted)] == wanted, action.text()
        assert _keys(action), action.text()
    assert "Ctrl+Q" in _keys(window.quit_action)
    assert "Ctrl+," in _keys(window.settings_action)
    # Every toolbar button has an icon now, not just a text.
    assert all(not a.icon().isNull() for a in window.toolbar.actions() if not a.isSeparator())


def test_no_two_commands_share_a_key(gui: Gui) -> None:
    window = gui.open()
    seen: dict[str, str] = {}
    for action in window.findChildren(QAction):
        for key in _keys(action):
            assert key not in seen or seen[key] == action.text(), (key, seen[key], action.text())
            seen[key] = action.text()
    for shortcut in window._shortcuts:
        key = shortcut.key().toString()
        assert key not in seen, (key, seen.get(key))


def test_the_application_carries_its_desktop_entry_icon_and_version(qapp: QApplication) -> None:
    configure_application(qapp)
    assert qapp.desktopFileName() == APP_ID
    assert qapp.applicationVersion() == app_version()
    assert not qapp.windowIcon().isNull()


def test_find_moves_the_focus_to_the_conversation_search(gui: Gui) -> None:
    window = gui.open()
    window.question.setFocus()
    window.find_action.trigger()

    async def focused() -> None:
        await gui.until(lambda: window.search_box.hasFocus(), 5, "the search box focus")

    gui.run(focused())
    assert window.search_box.hasFocus()


def test_open_data_and_log_folder_hand_the_folders_to_the_desktop(gui: Gui, home: Path) -> None:
    window = gui.open()
    opened = OpenRecorder()
    window.open_url = opened
    window.open_data_action.trigger()
    window.open_log_action.trigger()
    assert [u.toLocalFile() for u in opened.urls] == [str(home), str(home / "logs")]
    assert str(home) in window.status_label.text()


def test_about_shows_the_version_the_data_folder_and_model_licences(gui: Gui, home: Path) -> None:
    window = gui.open()
    opened = OpenRecorder()
    window.open_url = opened
    window.about_action.trigger()
    dialog = window.about_dialog
    assert isinstance(dialog, AboutDialog) and dialog.isVisible()
    assert dialog.version == app_version() != "unknown"
    assert f"Archivist {app_version()}" in dialog.title.text()
    rows = {
        dialog.licences.item(r, 0).text(): dialog.licences.item(r, 2).text()
        for r in range(dialog.licences.rowCount())
    }
    assert rows["Archivist"] == "MIT"
    assert rows["all-MiniLM-L6-v2"] == "Apache-2.0"
    assert any(name.startswith("Qwen2.5") for name in rows)
    buttons = [b for b in dialog.findChildren(QPushButton) if b.text() == "Open"]
    buttons[0].click()
    assert [u.toLocalFile() for u in opened.urls] == [str(home)]


def test_keyboard_shortcuts_lists_the_menu_keys(gui: Gui) -> None:
    window = gui.open()
    window.shortcuts_action.trigger()
    dialog = window.shortcuts_dialog
    assert isinstance(dialog, ShortcutsDialog)
    rows = {
        dialog.table.item(r, 0).text(): dialog.table.item(r, 1).text()
        for r in range(dialog.table.rowCount())
    }
    assert rows["Quit"] == window.quit_action.shortcut().toString()  # the first key only
    assert rows["Find in conversations"] == "Ctrl+F"
    assert rows["Send the question"] == "Ctrl+Enter"


def test_quit_closes_the_window(gui: Gui) -> None:
    window = gui.open()
    window.quit_action.trigger()
    assert not window.isVisible()


def test_the_layout_is_remembered_across_runs(gui: Gui, home: Path) -> None:
    window = gui.open()
    window.resize(700, 500)  # inside the offscreen screen (800 x 600): not clamped
    window.splitter.setSizes([150, 600])
    sizes = window.splitter.sizes()
    window.health_dock.hide()
    gui.close(window)
    assert (home / "window.ini").is_file()

    again = gui.open()
    assert (again.width(), again.height()) == (700, 500)
    assert again.splitter.sizes() == sizes
    assert again.health_dock.isHidden() and not again.library_dock.isHidden()


def test_the_dark_theme_applies_and_is_remembered(gui: Gui, qapp: QApplication) -> None:
    window = gui.open()
    try:
        window.theme_actions["dark"].trigger()
        assert qapp.palette().color(QPalette.ColorRole.Window).name() == "#2b2b2b"
        gui.close(window)
        again = gui.open()
        assert again.theme.current == "dark"
        assert again.theme_actions["dark"].isChecked()
        again.theme_actions["system"].trigger()
        assert qapp.palette().color(QPalette.ColorRole.Window).name() != "#2b2b2b"
    finally:
        window.theme.apply("system")


def test_a_long_ingestion_ends_with_a_notification_and_the_title_shows_progress(
    gui: Gui, corpus: Path
) -> None:
    window = gui.open()
    window.long_ingest_s = 0.0  # every ingestion counts as long here
    titles: list[str] = []
    window.windowTitleChanged.connect(titles.append)
    gui.ingest(window, [str(corpus)])
    assert titles[0] == "Archivist — ingesting 0%"
    assert "Archivist — ingesting 100%" in titles
    assert titles[-1] == window.windowTitle() == "Archivist"
    channel = "tray" if Notifier.tray_available() else "status"
    assert len(window.notifier.sent) == 1
    sent_channel, message = window.notifier.sent[0]
    assert sent_channel == channel
    assert message.startswith("Finished adding documents in") and "4 added" in message
    if channel == "status":  # no tray on this platform (offscreen): the status bar says it
        assert window.status_label.text() == message


def test_a_short_ingestion_does_not_notify(gui: Gui, corpus: Path) -> None:
    window = gui.open()
    gui.ingest(window, [str(corpus / "lighthouse.txt")])
    assert window.notifier.sent == []
    assert window.windowTitle() == "Archivist"
    assert not window.windowIcon().isNull()


class BusMonitor:
    """A private D-Bus session bus and a ``dbus-monitor`` printing its LauncherEntry signals."""

    def __init__(self) -> None:
        daemon, monitor = shutil.which("dbus-daemon"), shutil.which("dbus-monitor")
        assert daemon and monitor, "dbus-daemon and dbus-monitor come with libdbus-1-3's dbus"
        self.daemon = subprocess.Popen(
            [daemon, "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.daemon.stdout is not None
        self.address = self.daemon.stdout.readline().strip()
        self.monitor = subprocess.Popen(
            [monitor, "--address", self.address, f"interface='{LauncherProgress.INTERFACE}'"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.monitor.stdout is not None
        for line in self.monitor.stdout:
            self.lines.append(line.strip())

    def updates(self) -> list[tuple[float, bool]]:
        """(progress, visible) of every Update signal seen so far."""
        found: list[tuple[float, bool]] = []
        progress: float | None = None
        for line in list(self.lines):
            if line.startswith("variant") and "double" in line:
                progress = float(line.split()[-1])
            elif line.startswith("variant") and "boolean" in line and progress is not None:
                found.append((progress, line.endswith("true")))
                progress = None
        return found

    def close(self) -> None:
        for process in (self.monitor, self.daemon):
            process.terminate()
            process.wait(5)
        self._reader.join(5)
        for process in (self.monitor, self.daemon):
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def bus_monitor() -> Iterator[BusMonitor]:
    monitor = BusMonitor()
    try:
        yield monitor
    finally:
        monitor.close()


def test_ingestion_progress_reaches_the_launcher_icon_over_dbus(
    gui: Gui, corpus: Path, bus_monitor: BusMonitor
) -> None:
    bus = QDBusConnection.connectToBus(bus_monitor.address, "archivist-launcher-test")
    try:
        assert bus.isConnected(), bus.lastError().message()
        window = gui.open()
        window.launcher = LauncherProgress(bus)
        before = _wait_for_monitor(gui, bus_monitor)
        gui.ingest(window, [str(corpus)])

        async def signalled() -> None:
            await gui.until(
                lambda: (0.0, False) in bus_monitor.updates()[before:], 10, "the last update"
            )

        gui.run(signalled())
    finally:
        QDBusConnection.disconnectFromBus("archivist-launcher-test")
    updates = bus_monitor.updates()[before:]
    assert updates[0] == (0.0, True)
    assert (1.0, True) in updates
    assert updates[-1] == (0.0, False)
    assert any("application://io.archivist.Archivist.desktop" in line for line in bus_monitor.lines)


def _wait_for_monitor(gui: Gui, monitor: BusMonitor) -> int:
    """Send probe updates until dbus-monitor prints one; the count of updates seen then."""
    probe = LauncherProgress(QDBusConnection.connectToBus(monitor.address, "archivist-probe"))

    async def listening() -> None:
        while not monitor.updates():
            probe.update(None)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # the last probes in flight arrive

    try:
        gui.run(listening(), 10)
    finally:
        QDBusConnection.disconnectFromBus("archivist-probe")
    return len(monitor.updates())


def test_without_a_session_bus_the_launcher_stays_quiet() -> None:
    launcher = LauncherProgress(QDBusConnection.connectToBus("unix:path=/nonexistent", "none"))
    try:
        assert not launcher.available
        assert launcher.update(0.5) is False
    finally:
        QDBusConnection.disconnectFromBus("none")
