"""Drive the real window on a real qasync loop (offscreen), with a real ``Services``.

``gui`` builds windows on demand (``gui.open(config=...)``); every scenario
runs with ``gui.run(coro)``, which spins the Qt event loop until the coroutine
ends. ``gui.until(predicate)`` waits while the loop keeps spinning, so
signals, timers and tasks all run.

The loop is created ``already_running`` (as inside a real ``app.exec()``):
asyncio sees it as the running loop for the whole test, so *any* Qt event
processing (pytest-qt's own hooks, ``qtbot.wait``) steps asyncio tasks
correctly. ``loop.run_until_complete`` would instead unset the running loop
between scenarios, and pytest-qt's ``processEvents()`` calls would then step
tasks (such as the audit writer) with no running loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QTextBrowser
from pytestqt.qtbot import QtBot

from app.bridge import ServicesBridge
from app.firstrun import mark_done
from app.window import MainWindow
from core.config import load_settings

T = TypeVar("T")
NO_EMBED = "[ingest]\nembed = false\n"


def click_link(view: QTextBrowser, href: str) -> None:
    """Click the anchor ``href`` in ``view`` with the mouse, like a person."""
    doc = view.document()
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.charFormat().anchorHref() == href:
                cursor = QTextCursor(doc)
                cursor.setPosition(frag.position() + max(0, frag.length() // 2))
                view.setTextCursor(cursor)
                view.ensureCursorVisible()
                rect = view.cursorRect(cursor)
                QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
                return
            it += 1
        block = block.next()
    raise AssertionError(f"no link {href} in the view")


class Gui:
    def __init__(self, qapp: QApplication, qtbot: QtBot, home: Path) -> None:
        self.qapp = qapp
        self.qtbot = qtbot
        self.home = home
        self.loop = qasync.QEventLoop(qapp, already_running=True)
        asyncio.set_event_loop(self.loop)
        self.windows: list[MainWindow] = []

    def run(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        future = asyncio.ensure_future(coro, loop=self.loop)
        try:
            self.qtbot.waitUntil(future.done, timeout=int(timeout * 1000))
        except BaseException:
            future.cancel()
            raise
        return future.result()

    async def until(
        self, predicate: Callable[[], Any], limit_s: float = 30.0, what: str = ""
    ) -> None:
        """Wait until ``predicate()`` holds, checking it every 20 ms while the loop runs."""
        deadline = self.loop.time() + limit_s
        while not predicate():
            if self.loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.02)

    def open(self, config: str | None = NO_EMBED, *, welcome: bool = False) -> MainWindow:
        """A started window on ``home`` (``config`` is written to archivist.toml first).

        Without ``welcome`` the first run counts as done (its mark is written), so
        the welcome flow does not open over the window.
        """
        if config is not None:
            (self.home / "archivist.toml").write_text(config, encoding="utf-8")
        if not welcome:
            mark_done(self.home)
        bridge = ServicesBridge(load_settings())
        window = MainWindow(bridge)
        self.qtbot.addWidget(window)
        window.show()
        self.windows.append(window)

        async def start() -> None:
            await bridge.start()
            await self.until(lambda: bridge.started, what="the bridge to start")
            await bridge.services.wait_ready()

        self.run(start())
        return window

    def close(self, window: MainWindow) -> None:
        window.close()
        self.run(window.bridge.aclose())
        self.windows.remove(window)

    def ingest(self, window: MainWindow, paths: list[str]) -> None:
        async def go() -> None:
            window.ingest_paths(paths)
            await self.until(lambda: window.last_report is not None, 120, "the ingestion")

        window.last_report = None
        self.run(go(), 150)

    def ask(self, window: MainWindow, question: str) -> None:
        async def go() -> None:
            before = len(window.conv.turns)
            window.question.setPlainText(question)
            window.send()
            await self.until(lambda: len(window.conv.turns) > before, 60, "the answer")

        self.run(go(), 90)

    def shutdown(self) -> None:
        for window in list(self.windows):
            self.close(window)
        # Leave the "already running" state without loop.stop(): that calls app.exit(),
        # which would make every later nested Qt event loop (qtbot.wait) return at once.
        self.loop._QEventLoop__is_running = False
        self.qapp.aboutToQuit.disconnect(self.loop._after_run_forever)
        self.loop._after_run_forever()
        asyncio.events._set_running_loop(None)
        self.loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def gui(qapp: QApplication, qtbot: QtBot, home: Path) -> Iterator[Gui]:
    # (PySide6 6.12.0 lost a reference to True on every emit(); pyproject.toml excludes
    # it and tests/app/test_pyside_emit.py proves it on the installed build. A refcount
    # check around each test was tried here: objects freed by earlier tests made it flaky.)
    g = Gui(qapp, qtbot, home)
    try:
        yield g
    finally:
        g.shutdown()
