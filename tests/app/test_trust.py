"""Answers you can trust, in the window: quotes first, unsupported sentences dimmed,
abstentions said plainly, sources opened at the quote.

The window and the bridge are real (offscreen Qt, qasync loop); ``FakeServices``
is a small hand-written stand-in for ``core.services.Services`` with the
``ask(..., on_quotes=...)`` signature: it hands over the quotes, then waits
until the test lets the model "answer", so what the user sees in between can
be checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any

from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from app.bridge import ServicesBridge
from app.dialogs import SourceDialog, WhyDialog
from app.window import MainWindow
from core.config import load_settings
from core.conversations import turn_from_answer
from core.errors import StorageError
from core.types import Answer, AnswerChunk, Citation, SearchFilters
from tests.app.conftest import Gui, click_link
from tests.app.samples import SOURCE, SOURCE_TEXT, answer, plain, quoted

BUILT = "The Old Harbour lighthouse was built in 1874."
KEEPER = "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years."
GREY = QColor("#888888")


class _Router:
    def names(self) -> list[str]:
        return []

    def health(self) -> list[Any]:
        return []


class FakeServices:
    """What the bridge uses of ``Services``, with the quote-first ``ask``."""

    def __init__(
        self, answer: Answer, quotes: Sequence[Citation] = (), tokens: Sequence[str] = ()
    ) -> None:
        self.answer = answer
        self.quotes = tuple(quotes)
        self.tokens = tuple(tokens) or (answer.text,)
        self.release = asyncio.Event()  # set: the "model" streams its answer
        self.router = _Router()
        self.watch_listeners: list[Callable[..., None]] = []
        self.asked: list[str] = []

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def ask(
        self,
        question: str,
        *,
        use_cache: bool = True,
        on_token: Callable[[AnswerChunk], None] | None = None,
        on_quotes: Callable[[tuple[Citation, ...]], None] | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
        session: str = "default",
        skip_providers: Collection[str] = (),
    ) -> Answer:
        self.asked.append(question)
        if on_quotes is not None:
            on_quotes(self.quotes)
        await self.release.wait()
        for piece in self.tokens:
            if on_token is not None:
                on_token(AnswerChunk(piece, "fake"))
        return self.answer

    async def document_text(self, path: str) -> str:
        assert path == SOURCE
        return SOURCE_TEXT

    async def flagged_passages(self, path: str) -> list[object]:
        return []

    async def quarantined(self) -> list[tuple[str, str, float]]:
        return []

    # The health panel is not what these tests look at: status refreshes fail politely.
    async def health(self) -> Any:
        raise StorageError("No health checks in this test.")

    async def stats(self) -> Any:
        raise StorageError("No statistics in this test.")


def _open(gui: Gui, qtbot: QtBot, services: object) -> MainWindow:
    bridge = ServicesBridge(load_settings(), services=services)  # type: ignore[arg-type]
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    gui.windows.append(window)
    with qtbot.waitSignal(bridge.ready, timeout=10_000):
        bridge.start()
    return window


def _ask(window: MainWindow, qtbot: QtBot, question: str = "When was it built?") -> None:
    with qtbot.waitSignal(window.bridge.answerStarted, timeout=10_000):
        window.question.setPlainText(question)
        window.send()


def _fragments(window: MainWindow) -> dict[str, Any]:
    """Every text fragment of the chat view and its character format."""
    found = {}
    block = window.chat.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            found[frag.text()] = frag.charFormat()
            it += 1
        block = block.next()
    return found


def test_quotes_show_at_once_and_the_answer_streams_beneath_them(gui: Gui, qtbot: QtBot) -> None:
    quote = quoted(1, BUILT)
    fake = FakeServices(
        answer("It was built in 1874 [1].", citations=[quote], quotes=[quote]),
        quotes=[quote],
        tokens=["It was built ", "in 1874 [1]."],
    )
    window = _open(gui, qtbot, fake)
    with qtbot.waitSignal(window.bridge.answerQuotes, timeout=10_000) as got:
        _ask(window, qtbot)
    assert got.args == [(quote,)]
    # Before the model has said a word, the user reads the quote and can open it.
    shown = window.chat.toPlainText()
    assert "From your documents:" in shown and f"“{BUILT}”" in shown
    assert "Writing an answer" in shown
    assert 'href="cite:0:1"' in window.chat.toHtml()
    assert window.conv.turns == ()

    fake.release.set()
    qtbot.waitUntil(lambda: len(window.conv.turns) == 1, timeout=10_000)
    shown = window.chat.toPlainText()
    assert shown.index("From your documents:") < shown.index("It was built in 1874")
    assert shown.index(BUILT) < shown.index("It was built in 1874")
    assert "Writing an answer" not in shown


def test_a_sentence_the_documents_do_not_support_is_grey_with_a_tooltip(
    gui: Gui, qtbot: QtBot
) -> None:
    quote = quoted(1, BUILT)
    text = "It was built in 1874 [1]. It is painted red."
    fake = FakeServices(
        answer(text, citations=[quote], quotes=[quote], unsupported=["It is painted red."]),
        quotes=[quote],
    )
    fake.release.set()
    window = _open(gui, qtbot, fake)
    with qtbot.waitSignal(window.bridge.answerReady, timeout=10_000):
        _ask(window, qtbot)

    html = window.chat.toHtml()
    assert "color:#888888" in html
    fragments = _fragments(window)
    red = fragments["It is painted red."]
    assert red.foreground().color() == GREY
    assert red.toolTip() == "Not found in your documents"
    supported = fragments["It was built in 1874 "]
    assert supported.foreground().color() != GREY and supported.toolTip() == ""
    assert "Sentences in grey were not found in your documents." in window.chat.toPlainText()


def test_an_abstention_says_so_plainly_and_shows_the_closest_passages(
    gui: Gui, qtbot: QtBot
) -> None:
    statement = "The documents do not contain an answer to this question."
    closest = [quoted(2, KEEPER), quoted(1, BUILT)]
    fake = FakeServices(answer(statement, quotes=closest, abstained=True), quotes=closest)
    fake.release.set()
    window = _open(gui, qtbot, fake)
    with qtbot.waitSignal(window.bridge.answerReady, timeout=10_000):
        _ask(window, qtbot, "Who painted the lighthouse?")

    shown = window.chat.toPlainText()
    assert shown.index(statement) < shown.index("The closest passages in your documents:")
    assert shown.index("The closest passages") < shown.index(KEEPER) < shown.index(BUILT)
    assert "From your documents:" not in shown and "grey" not in shown


def test_clicking_a_quote_opens_the_source_with_the_quote_highlighted(
    gui: Gui, qtbot: QtBot
) -> None:
    quote = quoted(2, "She kept a logbook.")
    fake = FakeServices(answer("She kept a logbook [2].", citations=[quote], quotes=[quote]))
    fake.release.set()
    window = _open(gui, qtbot, fake)
    with qtbot.waitSignal(window.bridge.answerReady, timeout=10_000):
        _ask(window, qtbot)

    with qtbot.waitSignal(window.bridge.sourceReady, timeout=10_000):
        click_link(window.chat, "cite:0:2")
    dialog = window.source_dialog
    assert isinstance(dialog, SourceDialog)
    assert quote.quote_start is not None and quote.quote_end is not None
    assert dialog.highlighted_range() == (quote.quote_start, quote.quote_end)
    assert dialog.highlighted_text() == "She kept a logbook." == quote.quote
    assert SOURCE_TEXT[quote.quote_start : quote.quote_end] == quote.quote
    # The rest of the passage is tinted, not highlighted.
    tint, _strong = dialog.view.extraSelections()
    assert (tint.cursor.selectionStart(), tint.cursor.selectionEnd()) == (quote.start, quote.end)
    assert dialog.copy_button.text() == "Copy quote"


def test_without_a_quote_the_source_view_highlights_the_whole_passage(qtbot: QtBot) -> None:
    cited = plain(2)
    dialog = SourceDialog(SOURCE, SOURCE_TEXT, cited, None)
    qtbot.addWidget(dialog)
    assert dialog.highlighted_range() == (cited.start, cited.end)
    assert dialog.highlighted_text() == cited.text
    assert len(dialog.view.extraSelections()) == 1
    assert dialog.copy_button.text() == "Copy passage"


def test_why_this_answer_shows_the_quote_of_each_citation(qtbot: QtBot) -> None:
    quote = quoted(1, BUILT)
    done = answer("Built in 1874 [1]; a keeper lived there [2].", citations=[quote, plain(2)])
    dialog = WhyDialog(turn_from_answer(done), None, quotes=[quote, quoted(3, "The lamp")])
    qtbot.addWidget(dialog)
    lines = [dialog.quotes.item(i).text() for i in range(dialog.quotes.count())]
    assert lines == [
        f"[1] lighthouse.txt: “{BUILT}”",
        "[2] lighthouse.txt: no single sentence was singled out; the whole passage is cited.",
        "[3] lighthouse.txt: “The lamp”",
    ]
    # The first retrieved passage is shown with its quote highlighted.
    assert dialog.passage.toPlainText() == quote.text
    [selection] = dialog.passage.extraSelections()
    assert selection.cursor.selectedText() == BUILT
    dialog.table.selectRow(1)  # the keeper passage: cited without a quote
    assert dialog.passage.extraSelections() == []
