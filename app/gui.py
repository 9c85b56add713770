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


def install_crash_handler(log_path: str) -> None:
    """Unexpected exceptions open a dialog with a copyable report, never a traceback in place."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        report = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error\n%s", report)
        if QApplication.instance() is None:
            sys.__excepthook__(exc_type, exc, tb)
            return
        box = QMessageBox()
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("Archivist hit a bug")
        box.setText(
            "Something unexpected went wrong. Your documents are safe.\n"
            f"The details are in the report below and in the log file:\n{log_path}"
        )
        box.setDetailedText(report)
        box.exec()

    sys.excepthook = hook


def run_gui(settings: Settings) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.bridge import ServicesBridge
    from app.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Archivist")
    app.setOrganizationName("Archivist")
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
        window.hide()
        await bridge.aclose()
        return 0

    return int(qasync.run(main()))
