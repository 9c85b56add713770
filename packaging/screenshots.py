"""Take PNG screenshots of the main views with a small demo knowledge base.

Run under a display (``make screenshots`` uses ``xvfb-run``)::

    xvfb-run -a .venv/bin/python packaging/screenshots.py screenshots/ [README_DIR]

With README_DIR (``resources/screenshots``), the few the README shows are also
written there, scaled down.

It makes a throw-away ARCHIVIST_HOME, writes four sample documents (and a few
pages of the Python docs when python3.11-doc is installed), starts a local
stand-in language model that answers in Markdown, goes through the first-run
welcome (dropping the documents on it), asks one question, and saves:
welcome-1-documents.png, welcome-2-answering.png, welcome-3-question.png,
chat.png, menu-file.png, menu-help.png, about.png, shortcuts.png, source.png,
health.png, why.png, settings.png. The dark variants (chat-dark.png,
source-dark.png, welcome-dark.png) check that nothing assumes a light theme.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ANSWER = [
    "The Old Harbour lighthouse was **built in 1874** [1].\n\n",
    "- Its keeper, *Marta Quillon*, lit the lamp every night for thirty-one years [1].\n",
    "- The lamp burned whale oil until 1902, when it was converted to kerosene [1].\n\n",
    "See `lighthouse.txt` for the full history.",
]
QUESTION = "When was the lighthouse built, and who kept it?"


def write_docs(folder: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lighthouse.txt").write_text(
        "The Old Harbour lighthouse was built in 1874.\n\n"
        "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years.\n\n"
        "The lamp burned whale oil until 1902, when it was converted to kerosene.\n",
        encoding="utf-8",
    )
    (folder / "garden.md").write_text(
        "# Community garden\n\n## Watering rota\n\n"
        "Beds are watered on Tuesdays and Saturdays by the volunteer group.\n\n"
        "## Compost\n\nThe compost bins are turned once a fortnight.\n",
        encoding="utf-8",
    )
    (folder / "telescope.html").write_text(
        "<html><head><title>Observatory notes</title></head><body><h1>Observatory notes</h1>"
        "<p>The refracting telescope has an aperture of 240 millimetres.</p>"
        "<p>Viewing nights are held on the first Friday of each month.</p></body></html>",
        encoding="utf-8",
    )
    c = canvas.Canvas(str(folder / "ferry.pdf"), pagesize=A4)
    for text in (
        "Island ferry timetable\nThe morning ferry leaves the pier at 07:15.",
        "Fares\nA return ticket to Gull Island costs eleven euros.\n"
        "Bicycles travel free of charge on the ferry.",
    ):
        y = 800
        for line in text.split("\n"):
            c.drawString(60, y, line)
            y -= 16
        c.showPage()
    c.save()
    docs = Path("/usr/share/doc/python3.11/html/tutorial")
    if docs.is_dir():
        for name in ("controlflow.html", "datastructures.html", "errors.html"):
            if (docs / name).is_file():
                shutil.copy(docs / name, folder / f"python-{name}")


async def wait_for(predicate: object, limit_s: float = 120.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.05)


async def settle(ms: int = 400) -> None:
    await asyncio.sleep(ms / 1000)  # the loop paints meanwhile


def grab_with_menu(window: object, title: str) -> object:
    """The window with its menu ``title`` open (a popup is a window of its own)."""
    from PySide6.QtGui import QPainter
    from PySide6.QtWidgets import QMainWindow

    assert isinstance(window, QMainWindow)
    menu = window.menus[title]  # type: ignore[attr-defined]
    shot = window.grab()
    painter = QPainter(shot)
    painter.drawPixmap(window.mapFromGlobal(menu.pos()), menu.grab())
    painter.end()
    return shot


async def main(out: Path, home: Path) -> int:
    from PySide6.QtCore import QUrl
    from PySide6.QtWidgets import QScrollArea

    from app.bridge import ServicesBridge
    from app.window import MainWindow
    from core.config import load_settings
    from tests.support.fake_llm import FakeLLM, Succeed, closed_port

    docs = home / "demo-docs"
    write_docs(docs)
    with FakeLLM(Succeed(ANSWER, 0.05)) as llm:
        (home / "archivist.toml").write_text(
            f"""[ingest]
embed = true

[[providers]]
name = "local-llm"
kind = "openai"
base_url = "{llm.base_url}"
model = "demo"

[[providers]]
name = "backup"
kind = "openai"
base_url = "http://127.0.0.1:{closed_port()}/v1"
""",
            encoding="utf-8",
        )
        bridge = ServicesBridge(load_settings())
        window = MainWindow(bridge)
        window.resize(1500, 900)
        window.show()
        await bridge.start()
        await wait_for(lambda: bridge.started)
        await bridge.services.wait_ready()

        # First run: the welcome opens on the empty knowledge base.
        await wait_for(lambda: window.welcome is not None, 60)
        welcome = window.welcome
        assert welcome is not None
        await settle(600)
        welcome.pathsDropped.emit([str(docs)])  # as if the folder were dropped on it
        await wait_for(lambda: window.last_report is not None, 300)
        await wait_for(lambda: bool(welcome.example), 60)
        await settle()
        welcome.grab().save(str(out / "welcome-1-documents.png"))
        welcome.skip()
        await settle()
        welcome.grab().save(str(out / "welcome-2-answering.png"))
        welcome.skip()
        await settle()
        welcome.grab().save(str(out / "welcome-3-question.png"))
        welcome.chat_button.click()  # to the chat; the example waits in the question box
        await settle()
        bridge.force_breaker("backup", "open")  # show an open circuit in the panel
        window.question.setPlainText(QUESTION)
        window.send()
        await wait_for(lambda: len(window.conv.turns) == 1, 300)  # two busy cores: be patient
        bridge.refresh_status()
        await settle(1500)
        window.chat.verticalScrollBar().setValue(0)
        await settle()
        window.library_dock.raise_()
        await settle()
        window.grab().save(str(out / "chat.png"))

        for title in ("File", "Help"):
            bar = window.menuBar()
            bar.setActiveAction(window.menus[title].menuAction())
            await settle()
            grab_with_menu(window, title).save(str(out / f"menu-{title.lower()}.png"))
            window.menus[title].hide()
            await settle(200)

        window.show_about()
        await settle()
        assert window.about_dialog is not None
        window.about_dialog.grab().save(str(out / "about.png"))
        window.about_dialog.close()
        window.show_shortcuts()
        await settle()
        assert window.shortcuts_dialog is not None
        window.shortcuts_dialog.grab().save(str(out / "shortcuts.png"))
        window.shortcuts_dialog.close()

        window.health_dock.raise_()
        await settle(600)
        window.grab().save(str(out / "health.png"))
        for area in window.health.findChildren(QScrollArea):
            area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
        await settle()
        window.health_dock.grab().save(str(out / "health-requests.png"))

        window.chat.anchorClicked.emit(QUrl("cite:0:1"))
        await wait_for(lambda: window.source_dialog is not None)
        await settle()
        assert window.source_dialog is not None
        window.source_dialog.grab().save(str(out / "source.png"))
        window.source_dialog.close()

        window.show_last_why()
        await settle()
        assert window.why_dialog is not None
        window.why_dialog.grab().save(str(out / "why.png"))
        window.why_dialog.close()

        window.open_settings()
        await settle()
        assert window.settings_dialog is not None
        window.settings_dialog.grab().save(str(out / "settings.png"))
        window.settings_dialog.close()

        # The same chat under the dark theme: text, icons and highlights must stay readable.
        window.set_theme("dark")
        window.library_dock.raise_()
        await settle(600)
        window.grab().save(str(out / "chat-dark.png"))
        window.chat.anchorClicked.emit(QUrl("cite:0:1"))
        await wait_for(
            lambda: window.source_dialog is not None and window.source_dialog.isVisible()
        )
        await settle()
        window.source_dialog.grab().save(str(out / "source-dark.png"))
        window.source_dialog.close()
        window.show_welcome()
        await settle()
        assert window.welcome is not None
        window.welcome.skip()
        await settle()
        window.welcome.grab().save(str(out / "welcome-dark.png"))
        window.welcome.close()

        window.close()
        await bridge.aclose()
    return 0


# The few the README shows (resources/screenshots/), scaled to README_WIDTH pixels.
README_SHOTS = ("welcome-1-documents", "welcome-2-answering", "chat", "menu-file", "about")
README_WIDTH = 1000


def readme_copies(out: Path, dest: Path) -> None:
    """Scaled copies of ``README_SHOTS`` from ``out`` in ``dest`` (kept small for the repo)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    dest.mkdir(parents=True, exist_ok=True)
    for name in README_SHOTS:
        image = QImage(str(out / f"{name}.png"))
        if image.width() > README_WIDTH:
            image = image.scaledToWidth(README_WIDTH, Qt.TransformationMode.SmoothTransformation)
        image.save(str(dest / f"{name}.png"), "PNG", 0)


def run() -> int:
    import qasync
    from PySide6.QtWidgets import QApplication

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="archivist-shots-") as tmp:
        home = Path(tmp)
        os.environ["ARCHIVIST_HOME"] = str(home)
        os.environ.pop("ARCHIVIST_DATABASE_URL", None)
        os.environ.pop("ARCHIVIST_REDIS_URL", None)
        app = QApplication.instance() or QApplication(sys.argv)
        assert isinstance(app, QApplication)
        from app.gui import configure_application

        configure_application(app)
        app.setQuitOnLastWindowClosed(False)  # we close the window before tearing down
        code = int(qasync.run(main(out, home)))
    if len(sys.argv) > 2 and code == 0:
        readme_copies(out, Path(sys.argv[2]).resolve())
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))
    return code


if __name__ == "__main__":
    sys.exit(run())
