"""Start the window on a qasync event loop (the asyncio loop *is* the GUI thread)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from types import TracebackType

from core.config import Settings

log = logging.getLogger(__name__)


class _CrashState:
    showing = False
    reports: list[str] = []  # noqa: RUF012 (one process-wide list, read by tests)


def crash_dialog(report: str, log_path: str) -> object:
    """A dialog with the report, the log path and a Copy button (returned unshown)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import (
        QDialog,
        QDialogButtonBox,
        QLabel,
        QPlainTextEdit,
        QVBoxLayout,
    )

    dialog = QDialog()
    dialog.setWindowTitle("Archivist hit a bug")
    layout = QVBoxLayout(dialog)
    label = QLabel(
        "Something unexpected went wrong. Your documents are safe, and Archivist keeps "
        "running.\nPlease copy the report below into a bug report. The full log is in:",
        dialog,
    )
    label.setWordWrap(True)
    layout.addWidget(label)
    path = QLabel(log_path, dialog)
    path.setAccessibleName("Log file path")
    path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    layout.addWidget(path)
    details = QPlainTextEdit(report, dialog)
    details.setReadOnly(True)
    details.setAccessibleName("Crash report")
    layout.addWidget(details, 1)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
    copy = buttons.addButton("Copy report", QDialogButtonBox.ButtonRole.ActionRole)
    copy.setAccessibleName("Copy the crash report")
    copy.clicked.connect(
        lambda: QGuiApplication.clipboard().setText(f"{report}\nLog file: {log_path}\n")
    )
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)
    fm = dialog.fontMetrics()
    dialog.resize(fm.averageCharWidth() * 100, fm.height() * 28)
    return dialog


def install_crash_handler(log_path: str) -> None:
    """Unexpected exceptions open a dialog with a copyable report, never a traceback in place."""
    from PySide6.QtWidgets import QApplication, QDialog

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        report = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error\n%s", report)
        _CrashState.reports.append(report)
        if QApplication.instance() is None:
            sys.__excepthook__(exc_type, exc, tb)
            return
        if _CrashState.showing:  # one dialog at a time; the rest are in the log
            return
        _CrashState.showing = True
        try:
            dialog = crash_dialog(report, log_path)
            assert isinstance(dialog, QDialog)
            dialog.exec()
        finally:
            _CrashState.showing = False

    sys.excepthook = hook


def configure_application(app: object) -> None:
    """Name, version, icon and desktop entry of the running QApplication."""
    from PySide6.QtWidgets import QApplication

    from app.desktop import app_icon
    from app.resources import APP_ID
    from app.version import app_version

    assert isinstance(app, QApplication)
    app.setApplicationName("Archivist")
    app.setOrganizationName("Archivist")
    app.setApplicationVersion(app_version())
    # Lets the desktop match the window to io.archivist.Archivist.desktop (its icon, its name).
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())


def run_gui(settings: Settings) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        # Qt would abort with a core dump; say what to do instead.
        print(
            "archivist: error: no display found (DISPLAY and WAYLAND_DISPLAY are unset); "
            "run it in a desktop session, under xvfb-run, or use the command line "
            "(archivist --help)",
            file=sys.stderr,
        )
        return 1
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.bridge import ServicesBridge
    from app.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    configure_application(app)
    install_crash_handler(str(settings.log_dir / "archivist.jsonl"))

    async def main() -> int:
        closed = asyncio.Event()
        bridge = ServicesBridge(settings)
        window = MainWindow(bridge)
        app.aboutToQuit.connect(closed.set)
        app.lastWindowClosed.connect(closed.set)
        window.show()
        bridge.start()
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, closed.set)
            except (NotImplementedError, RuntimeError):
                pass
        await closed.wait()
        window.save_layout()  # also when Ctrl+C or SIGTERM ended it (no closeEvent then)
        window.hide()
        await bridge.aclose()
        return 0

    return int(qasync.run(main()))
