"""The first-run welcome on the real window: when it shows, each step, what it writes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.firstrun import FIRST_RUN_MARK
from app.welcome import WelcomeDialog
from app.window import MainWindow
from tests.app.conftest import Gui
from tests.support.fake_llm import FakeLLM, Succeed, closed_port


def _config(home: Path) -> dict[str, Any]:
    return tomllib.loads((home / "archivist.toml").read_text(encoding="utf-8"))


def _open_welcome(gui: Gui) -> tuple[MainWindow, WelcomeDialog]:
    window = gui.open(welcome=True)

    async def shown() -> None:
        await gui.until(lambda: window.welcome is not None, 20, "the welcome")

    gui.run(shown())
    assert window.welcome is not None
    return window, window.welcome


def _wait(gui: Gui, predicate: Any, what: str, limit_s: float = 30) -> None:
    async def go() -> None:
        await gui.until(predicate, limit_s, what)

    gui.run(go(), limit_s + 10)


def _drop(widget: WelcomeDialog, files: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    widget.dropEvent(event)
    assert event.isAccepted()


def test_the_welcome_opens_on_an_empty_knowledge_base_without_blocking_the_window(
    gui: Gui,
) -> None:
    window, welcome = _open_welcome(gui)
    assert welcome.isVisible() and not welcome.isModal()
    assert welcome.page == 0
    assert welcome.step_label.text() == "Step 1 of 3: Add your documents"
    # The window behind it works: a new chat starts while the welcome is open.
    window.new_chat_action.trigger()
    assert window.status_label.text() == "New chat."


def test_no_welcome_once_the_first_run_ended(gui: Gui, home: Path) -> None:
    window = gui.open()  # the mark is written: the first run is over
    _wait(gui, lambda: window._welcome_checked and not window.first_run._tasks, "the check")
    assert (home / FIRST_RUN_MARK).is_file()
    assert window.welcome is None


def test_no_welcome_on_a_knowledge_base_that_has_documents(
    gui: Gui, home: Path, corpus: Path
) -> None:
    window = gui.open()
    gui.ingest(window, [str(corpus / "lighthouse.txt")])
    gui.close(window)
    (home / FIRST_RUN_MARK).unlink()
    again = gui.open(welcome=True)
    _wait(gui, lambda: again._welcome_checked and not again.first_run._tasks, "the check")
    assert again.welcome is None


def test_every_step_can_be_skipped_and_skipping_writes_no_setting(gui: Gui, home: Path) -> None:
    window, welcome = _open_welcome(gui)
    before = (home / "archivist.toml").read_text(encoding="utf-8")
    welcome.skip_button.click()
    assert welcome.page == 1
    welcome.skip_button.click()
    assert welcome.page == 2
    assert not welcome.skip_button.isVisible()  # the last step has Finish instead
    assert welcome.next_button.text() == "Finish"
    assert "Ask anything" in welcome.question_intro.text()
    assert not welcome.ask_button.isEnabled()  # nothing was added: no example to ask
    welcome.next_button.click()
    _wait(gui, lambda: (home / FIRST_RUN_MARK).is_file(), "the first-run mark")
    assert window.welcome is None and not welcome.isVisible()
    assert (home / "archivist.toml").read_text(encoding="utf-8") == before
    assert window.question.hasFocus() or window.question.toPlainText() == ""


def test_skip_setup_ends_the_first_run_at_once(gui: Gui, home: Path) -> None:
    window, welcome = _open_welcome(gui)
    welcome.skip_all_button.click()
    _wait(gui, lambda: (home / FIRST_RUN_MARK).is_file(), "the first-run mark")
    assert window.welcome is None


def test_choosing_quotes_only_writes_the_setting(gui: Gui, home: Path) -> None:
    window, welcome = _open_welcome(gui)
    welcome.skip_button.click()
    welcome.quotes_radio.setChecked(True)
    welcome.next_button.click()  # "Save and continue"
    assert welcome.page == 2
    _wait(gui, lambda: welcome.save_label.text().startswith("Saved"), "the save")
    providers = _config(home)["providers"]
    assert providers == [{"name": "quotes", "kind": "extractive", "timeout_s": 30.0}]
    assert window.bridge.saved_settings.providers[0].kind == "extractive"


def test_the_local_model_shows_as_not_installed_when_it_is_off(gui: Gui) -> None:
    _, welcome = _open_welcome(gui)
    _wait(gui, lambda: "Not installed" in welcome.local_detail.text(), "the local model info")
    assert not welcome.local_radio.isEnabled()
    assert welcome.quotes_radio.isChecked()


def test_the_connection_test_reaches_a_real_server_and_the_choice_is_saved(
    gui: Gui, home: Path
) -> None:
    _, welcome = _open_welcome(gui)
    welcome.skip_button.click()
    assert not welcome.server_url.isEnabled()  # until the server is chosen
    welcome.server_radio.click()
    welcome.next_button.click()  # no address yet: the step stays and says why
    assert welcome.page == 1
    assert welcome.choice_error.text() == "Not saved: an OpenAI-compatible server needs its URL."
    welcome.server_url.setText(f"http://127.0.0.1:{closed_port()}/v1")
    welcome.test_button.click()
    _wait(gui, lambda: welcome.probe_label.text().startswith("✘"), "the failed test")
    assert "Could not connect" in welcome.probe_label.text()

    with FakeLLM(Succeed(["ok"])) as llm:
        url = llm.base_url
        welcome.server_url.setText(url)
        welcome.test_button.click()
        _wait(gui, lambda: welcome.probe_label.text().startswith("✔"), "the connection test")
        assert any(r.path.rstrip("/").endswith("/models") for r in llm.requests)
    assert welcome.server_radio.isChecked()
    welcome.next_button.click()
    _wait(gui, lambda: welcome.save_label.text().startswith("Saved"), "the save")
    (provider,) = _config(home)["providers"]
    assert provider["kind"] == "openai" and provider["base_url"] == url
    assert welcome.page == 2 and welcome.choice_error.text() == ""
    # A restart applies it, and the last step (where "Save and continue" led) says so.
    assert "Restart Archivist to apply: providers" in welcome.save_label.text()


def test_the_example_question_comes_from_a_dropped_document_and_can_be_asked(
    gui: Gui, corpus: Path
) -> None:
    window, welcome = _open_welcome(gui)
    _drop(welcome, [corpus / "garden.md", corpus / "lighthouse.txt"])
    _wait(gui, lambda: bool(welcome.example), "the example question", 60)
    headings = [
        line.lstrip("# ").strip()
        for line in (corpus / "garden.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]
    assert any(f"“{h}”" in welcome.example for h in headings), welcome.example
    assert "2 document(s)" in welcome.documents_status.text()
    welcome.skip_button.click()
    welcome.skip_button.click()
    assert welcome.example_label.text() == welcome.example
    question = welcome.example
    welcome.ask_button.click()
    _wait(gui, lambda: len(window.conv.turns) == 1, "the answer", 60)
    assert window.conv.turns[0].question == question
    assert window.conv.turns[0].citations
    assert Path(window.conv.turns[0].citations[0].source).name == "garden.md"
    assert window.welcome is None


def test_a_folder_added_in_the_welcome_is_ingested_then_watched(
    gui: Gui, home: Path, corpus: Path
) -> None:
    window, welcome = _open_welcome(gui)
    welcome.folderChosen.emit(str(corpus))  # what "Add a folder…" sends after its dialog
    _wait(gui, lambda: "watched_folders" in _config(home), "the watched folder", 90)
    assert _config(home)["watched_folders"] == [str(corpus)]
    assert window.last_report is not None and len(window.last_report.outcomes) == 4
    assert "4 document(s)" in welcome.documents_status.text()


def test_help_welcome_opens_it_again_after_the_first_run(gui: Gui) -> None:
    window = gui.open()
    window.welcome_action.trigger()
    welcome = window.welcome
    assert isinstance(welcome, WelcomeDialog) and welcome.isVisible()
    _wait(gui, lambda: "Not installed" in welcome.local_detail.text(), "the local model info")
    window.welcome_action.trigger()  # a second time: the same dialog, raised
    assert window.welcome is welcome
    welcome.close()
    assert window.welcome is None
