"""The chat session without Qt: turns, quotes first, regenerate, "wrong", link routing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.chat import (
    EVICTED_NOTE,
    NOT_CACHED_NOTE,
    ChatSession,
    CopyText,
    Evict,
    OpenExternal,
    OpenSource,
    Regenerate,
    Say,
    ShowWhy,
    answered_message,
)
from core.conversations import Conversation
from tests.app.samples import answer, plain, quoted

ROOT = Path(__file__).resolve().parents[2]
BUILT = "The Old Harbour lighthouse was built in 1874."


def _session() -> ChatSession:
    return ChatSession(Conversation("c0ffee00", "", 0.0, 0.0), clock=lambda: 100.0)


def _ask(chat: ChatSession, text: str = "It was built in 1874 [1].", **kw: object) -> None:
    chat.started(str(kw.pop("question", "When was the lighthouse built?")))
    chat.token(text)
    chat.answered(answer(text, **kw))  # type: ignore[arg-type]


def test_the_chat_module_loads_no_qt() -> None:
    code = (
        "import sys, app.chat; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'qasync')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_quotes_show_first_then_the_streamed_answer_beneath_them() -> None:
    chat = _session()
    chat.started("When was the lighthouse built?")
    assert "Searching your documents" in chat.html()
    chat.quotes_arrived([quoted(1, BUILT)])
    page = chat.html()
    assert "From your documents:" in page and "Searching" not in page
    assert f"“{BUILT}”" in page and '<a href="cite:0:1">[1]</a>' in page
    chat.token("It was built in 1874 [1].")
    page = chat.html()
    assert page.index("From your documents:") < page.index("It was built in 1874")
    assert chat.live_text == "It was built in 1874 [1]."


def test_a_quote_link_opens_the_source_at_the_quote_while_the_answer_streams() -> None:
    chat = _session()
    chat.started("When?")
    quote = quoted(1, BUILT)
    chat.quotes_arrived([quote])
    assert chat.route("cite:0:1") == OpenSource(quote)
    assert chat.route("cite:0:9") is None


def test_an_answered_turn_keeps_its_quotes_and_dims_unsupported_sentences() -> None:
    chat = _session()
    quote = quoted(1, BUILT)
    text = "It was built in 1874 [1]. It is painted red."
    chat.started("When was the lighthouse built?")
    chat.quotes_arrived([quote])
    chat.answered(answer(text, citations=[plain(1)], quotes=[quote], unsupported=[text[26:]]))
    assert chat.live_question is None and len(chat.turns) == 1
    assert chat.turns[0].asked_at == 100.0
    page = chat.html()
    assert page.index("From your documents:") < page.index("It was built in 1874")
    assert 'title="Not found in your documents">It is painted red.</span>' in page
    assert "Sentences in grey were not found in your documents." in page
    # The quote wins over the plain citation of the same passage.
    assert chat.route("cite:0:1") == OpenSource(quote)


def test_an_abstention_states_it_plainly_and_shows_the_closest_passages() -> None:
    chat = _session()
    statement = "The documents do not contain an answer to this question."
    _ask(chat, statement, abstained=True)
    page = chat.html()
    assert page.index(statement) < page.index("The closest passages in your documents:")
    assert "From your documents:" not in page and "grey" not in page
    action = chat.route("cite:0:2")  # built from the closest retrieved passages
    assert isinstance(action, OpenSource) and action.citation.text.startswith("Its keeper")


def test_a_stopped_answer_keeps_its_partial_text_and_the_quotes_it_showed() -> None:
    chat = _session()
    chat.started("When?")
    quote = quoted(1, BUILT)
    chat.quotes_arrived([quote])
    chat.token("Partial [1]")
    turn = chat.failed("Stopped.")
    assert turn is not None and turn.answer == "Partial [1]" and turn.error == "Stopped."
    assert "From your documents:" in chat.html()
    assert chat.route("cite:0:1") == OpenSource(quote)
    assert chat.failed("Nothing running") is None  # only news: no turn


def test_this_answer_is_wrong_evicts_by_the_cache_entry_and_notes_it() -> None:
    chat = _session()
    _ask(chat, cache_entry="entry-7")
    _ask(chat)  # not from the cache
    assert chat.actions(0).wrong and not chat.actions(1).wrong
    assert chat.route("wrong:0") == Evict("entry-7")
    assert chat.wrong(1) == Say("This answer is not in the cache.")
    assert chat.evicted("entry-7", True) == EVICTED_NOTE
    assert not chat.actions(0).wrong and chat.actions(0).note == EVICTED_NOTE
    assert EVICTED_NOTE in chat.html()
    assert chat.evicted("entry-gone", False) == NOT_CACHED_NOTE


def test_an_interrupted_answer_regenerates_skipping_every_provider_that_broke_off() -> None:
    chat = _session()
    _ask(chat, interrupted_by="primary", provider="primary")
    assert chat.actions(0).regenerate
    first = chat.route("regen:0")
    assert first == Regenerate("When was the lighthouse built?", frozenset({"primary"}))
    chat.regenerating(first.skip)
    _ask(chat, interrupted_by="secondary", provider="secondary")
    # Regenerating the regenerated answer skips both providers that broke off.
    assert chat.regenerate(1) == Regenerate(
        "When was the lighthouse built?", frozenset({"primary", "secondary"})
    )
    _ask(chat)
    assert chat.regenerate(2) is None and not chat.actions(2).regenerate


def test_a_failure_while_regenerating_forgets_the_pending_skip() -> None:
    chat = _session()
    _ask(chat, interrupted_by="primary")
    chat.regenerating(frozenset({"primary"}))
    chat.started("again")
    chat.failed("The question is empty.")
    _ask(chat, interrupted_by="secondary")
    assert chat.regenerate(2) == Regenerate(
        "When was the lighthouse built?", frozenset({"secondary"})
    )


def test_links_route_to_their_actions() -> None:
    chat = _session()
    _ask(chat, citations=[plain(1)])
    assert chat.route("copy:0") == CopyText("It was built in 1874 [1].")
    why = chat.route("why:0")
    assert isinstance(why, ShowWhy) and why.turn is chat.turns[0]
    assert chat.route("why:5") == Say("There is no answer to explain yet.")
    assert chat.route("cite:0:1") == OpenSource(plain(1))  # no quote: the whole passage
    assert chat.route("https://example.org/a?b=1") == OpenExternal("https://example.org/a?b=1")
    assert chat.route("mailto:a@b.c") == OpenExternal("mailto:a@b.c")
    for junk in ("cite:x:1", "cite:0", "copy:", "javascript:alert(1)", "file:///etc/passwd", ""):
        assert chat.route(junk) is None, junk


def test_a_new_or_loaded_chat_forgets_the_live_answers() -> None:
    chat = _session()
    _ask(chat, cache_entry="e1", interrupted_by="p")
    chat.started("half-way")
    other = Conversation("beef0000", "Other", 0.0, 0.0, chat.turns)
    chat.reset(other)
    assert chat.conv is other and chat.live_question is None
    assert chat.actions(0) == chat.actions(0).__class__()  # nothing to offer any more
    assert chat.route("wrong:0") == Say("This answer is not in the cache.")
    assert "From your documents:" not in chat.html()


def test_the_status_line_says_who_answered_or_that_the_documents_lack_it() -> None:
    assert answered_message(answer("x [1]", citations=[plain(1)])) == (
        "Answered by extractive with 1 source(s)."
    )
    # One passage quoted for two sentences is one source.
    two_quotes = [quoted(1, BUILT), quoted(1, "It stands on the north pier.")]
    assert answered_message(answer("x [1]. y [1].", citations=two_quotes)) == (
        "Answered by extractive with 1 source(s)."
    )
    assert answered_message(answer("No.", abstained=True)) == (
        "Your documents do not seem to contain the answer."
    )
    cut = answered_message(answer("Part", interrupted_by="primary", provider="secondary"))
    assert cut.endswith("you can regenerate it with another model.")


def test_a_reopened_chat_shows_the_quotes_and_grey_sentences_it_had() -> None:
    chat = _session()
    quote = quoted(1, BUILT)
    text = "It was built in 1874 [1]. It is painted red."
    chat.started("When was the lighthouse built?")
    chat.quotes_arrived([quote])
    chat.answered(answer(text, citations=[plain(1)], quotes=[quote], unsupported=[text[26:]]))
    reopened = ChatSession(chat.conv)
    page = reopened.html()
    assert page.index("From your documents:") < page.index("It was built in 1874")
    assert 'title="Not found in your documents">It is painted red.</span>' in page
    assert reopened.route("cite:0:1") == OpenSource(quote)


def test_an_answer_made_of_the_quotes_shows_them_once() -> None:
    chat = _session()
    quote = quoted(1, BUILT)
    chat.started("When was the lighthouse built?")
    chat.quotes_arrived([quote])
    chat.answered(answer(f"{BUILT} [1]", citations=[quote], quotes=[quote]))
    page = chat.html()
    assert "From your documents:" not in page
    assert page.count("built in 1874") == 1
    assert chat.route("cite:0:1") == OpenSource(quote)
