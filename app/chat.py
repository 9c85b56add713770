"""The chat in the window as plain Python (no Qt): turns, the live answer, actions, links.

``ChatSession`` holds what one open chat knows: its ``Conversation``, the turn
being answered (question, quotes found first, tokens so far) and, for the
answers that arrived while it was open, the live ``Answer`` (its cache entry,
the provider that broke off). Saved turns keep the evidence check (quotes,
dimmed sentences, abstention), so a reopened chat looks the same; "This answer
is wrong" and "Regenerate" exist only while the chat is open.

The window feeds it the bridge's signals and asks it what a click means:
``route(href)`` turns a link of the conversation HTML into an action value
(``OpenSource``, ``Evict``, ``Regenerate``...) that the window carries out.
Usage::

    chat = ChatSession(store.new())
    chat.started("When was it built?")
    chat.quotes_arrived(quotes)            # shown at once, before the model answers
    chat.token("It was built in 1874 [1].")
    chat.answered(answer, breakers)        # the turn joins the conversation
    action = chat.route("cite:0:1")        # OpenSource(path, citation)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from app.render import Evidence, TurnActions, conversation_html, live_html
from core.conversations import Conversation, Turn, turn_from_answer
from core.types import Answer, BreakerSnapshot, Citation

EVICTED_NOTE = "Removed from the cache; ask again for a fresh answer."
NOT_CACHED_NOTE = "It was no longer in the cache; ask again for a fresh answer."
NOT_IN_CACHE = "This answer is not in the cache."
NOTHING_TO_EXPLAIN = "There is no answer to explain yet."


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class OpenSource:
    """Open ``citation.source`` with its quote (or, lacking one, its passage) highlighted."""

    citation: Citation


@dataclass(frozen=True, slots=True)
class CopyText:
    text: str


@dataclass(frozen=True, slots=True)
class ShowWhy:
    """ "Why this answer": the turn's explanation and the quotes its answer showed."""

    turn: Turn
    quotes: tuple[Citation, ...] = ()


@dataclass(frozen=True, slots=True)
class Evict:
    """ "This answer is wrong": drop the result-cache entry ``entry_id``."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Regenerate:
    """Ask ``question`` again without the providers in ``skip`` (then call ``regenerating``)."""

    question: str
    skip: frozenset[str]


@dataclass(frozen=True, slots=True)
class OpenExternal:
    """An http(s)/mailto link the user clicked: the system browser opens it."""

    url: str


@dataclass(frozen=True, slots=True)
class Say:
    """Nothing to do but tell the user why."""

    message: str


Action = OpenSource | CopyText | ShowWhy | Evict | Regenerate | OpenExternal | Say


def answered_message(answer: Answer) -> str:
    """The status-bar sentence for an answer that just arrived."""
    cached = " (from the cache)" if answer.cache == "result" else ""
    if answer.abstained:
        message = f"Your documents do not seem to contain the answer{cached}."
    else:
        sources = len({c.marker for c in answer.citations})  # passages, not quotes
        message = f"Answered by {answer.provider} with {sources} source(s){cached}."
    if answer.interrupted_by is not None:
        message += " The answer was cut off; you can regenerate it with another model."
    return message


# --------------------------------------------------------------------------- the session


def _kept_evidence(conv: Conversation) -> dict[int, Evidence]:
    """The evidence the saved turns of ``conv`` kept, by turn index."""
    out = {}
    for index, turn in enumerate(conv.turns):
        kept = Evidence.of_turn(turn)
        if kept is not None:
            out[index] = kept
    return out


class ChatSession:
    """One open chat: the conversation, the live answer, and what each link does."""

    def __init__(self, conv: Conversation, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.conv = conv
        self._answers: dict[int, Answer] = {}
        self._skipped: dict[int, frozenset[str]] = {}  # providers a regenerate left out
        self._notes: dict[int, str] = {}
        self._evidence = _kept_evidence(conv)  # quotes shown, sentences dimmed
        self._pending_skip: frozenset[str] = frozenset()
        self.live_question: str | None = None
        self.live_quotes: tuple[Citation, ...] = ()
        self._live_parts: list[str] = []
        self._live_started_at = 0.0

    def reset(self, conv: Conversation) -> None:
        """Show ``conv`` (a new or a loaded chat); the live answers of the old one are gone."""
        self.conv = conv
        self._answers.clear()
        self._skipped.clear()
        self._notes.clear()
        self._evidence = _kept_evidence(conv)
        self._pending_skip = frozenset()
        self._end_live()

    # ------------------------------------------------------------------ reading

    @property
    def turns(self) -> tuple[Turn, ...]:
        return self.conv.turns

    @property
    def last_index(self) -> int:
        return len(self.conv.turns) - 1

    @property
    def live_index(self) -> int:
        """The index the turn being answered will have."""
        return len(self.conv.turns)

    @property
    def answering(self) -> bool:
        return self.live_question is not None

    @property
    def live_text(self) -> str:
        """The answer streamed so far (empty when nothing is being answered)."""
        return "".join(self._live_parts)

    def turn(self, index: int) -> Turn | None:
        turns = self.conv.turns
        return turns[index] if 0 <= index < len(turns) else None

    def answer(self, index: int) -> Answer | None:
        return self._answers.get(index)

    def actions(self, index: int) -> TurnActions:
        """What the answer of turn ``index`` offers (see ``TurnActions``)."""
        answer = self._answers.get(index)
        note = self._notes.get(index)
        if answer is None:
            return TurnActions(note=note)
        return TurnActions(
            wrong=answer.cache_entry is not None,
            regenerate=answer.interrupted_by is not None,
            note=note,
        )

    def evidence(self, index: int) -> Evidence | None:
        return self._evidence.get(index)

    def html(self) -> str:
        """The whole conversation, the live turn included, as safe HTML."""
        live = ""
        if self.live_question is not None:
            live = live_html(self.live_index, self.live_question, self.live_text, self.live_quotes)
        indexes = set(self._answers) | set(self._notes)
        actions = {i: self.actions(i) for i in indexes}
        return conversation_html(self.conv.turns, live, actions, self._evidence)

    # ------------------------------------------------------------------ the live answer

    def started(self, question: str) -> None:
        self.live_question = question
        self.live_quotes = ()
        self._live_parts = []
        self._live_started_at = self._clock()

    def quotes_arrived(self, quotes: Iterable[Citation]) -> None:
        """The best supporting sentences, found before any model runs: shown first."""
        if self.live_question is not None:
            self.live_quotes = tuple(quotes)

    def token(self, piece: str) -> None:
        if self.live_question is not None:
            self._live_parts.append(piece)

    def _end_live(self) -> None:
        self.live_question = None
        self.live_quotes = ()
        self._live_parts = []

    def answered(self, answer: Answer, breakers: Sequence[BreakerSnapshot] = ()) -> Turn:
        """The answer arrived: it becomes a turn (returned) and its actions are remembered."""
        index = self.live_index
        self._answers[index] = answer
        self._evidence[index] = Evidence.of(answer)
        if self._pending_skip:
            self._skipped[index] = self._pending_skip
        self._pending_skip = frozenset()
        asked_at = self._live_started_at if self.live_question is not None else self._clock()
        turn = turn_from_answer(answer, breakers, asked_at=asked_at)
        self._end_live()
        self.conv = self.conv.with_turn(turn)
        return turn

    def failed(self, message: str) -> Turn | None:
        """The answer failed or was stopped: the partial answer becomes a turn with the error.

        ``None`` when nothing was being answered (the message is only news).
        """
        self._pending_skip = frozenset()
        question = self.live_question
        if question is None:
            return None
        turn = Turn(question, self.live_text.strip(), self._live_started_at, error=message)
        if self.live_quotes:  # the quotes shown stay above the partial answer
            self._evidence[self.live_index] = Evidence(quotes=self.live_quotes)
        self._end_live()
        self.conv = self.conv.with_turn(turn)
        return turn

    # ------------------------------------------------------------------ actions

    def copy(self, index: int) -> Action | None:
        turn = self.turn(index)
        return CopyText(turn.answer) if turn is not None and turn.answer else None

    def why(self, index: int) -> Action:
        turn = self.turn(index)
        if turn is None:
            return Say(NOTHING_TO_EXPLAIN)
        return ShowWhy(turn, self._evidence.get(index, Evidence()).quotes)

    def wrong(self, index: int) -> Action:
        """ "This answer is wrong": evict it from the cache (the answer stays in the chat)."""
        answer = self._answers.get(index)
        if answer is None or answer.cache_entry is None:
            return Say(NOT_IN_CACHE)
        return Evict(answer.cache_entry)

    def evicted(self, entry_id: str, evicted: bool) -> str:
        """The cache said whether ``entry_id`` was still there; the note to show."""
        note = EVICTED_NOTE if evicted else NOT_CACHED_NOTE
        for index, answer in list(self._answers.items()):
            if answer.cache_entry == entry_id:
                self._answers[index] = dataclasses.replace(answer, cache_entry=None)
                self._notes[index] = note
        return note

    def regenerate(self, index: int) -> Regenerate | None:
        """Turn ``index``'s question again, skipping every provider that broke off on it.

        Ask it, then call ``regenerating(skip)``: the new answer remembers what it
        skipped, so regenerating *it* skips the next provider too.
        """
        answer = self._answers.get(index)
        if answer is None or answer.interrupted_by is None:
            return None
        skip = self._skipped.get(index, frozenset()) | {answer.interrupted_by}
        return Regenerate(answer.question, skip)

    def regenerating(self, skip: frozenset[str]) -> None:
        self._pending_skip = skip

    def citation(self, index: int, marker: int) -> Citation | None:
        """What ``[marker]`` of turn ``index`` points at, with its quote when there is one.

        A citation that carries its quote wins; then a quote shown first (also
        for the turn being answered); then the plain cited passage.
        """
        if index == self.live_index and self.live_question is not None:
            return next((q for q in self.live_quotes if q.marker == marker), None)
        turn = self.turn(index)
        if turn is None:
            return None
        cited = [c for c in turn.citations if c.marker == marker]
        evidence = self._evidence.get(index, Evidence())
        quoted = [q for q in evidence.quotes if q.marker == marker]
        return next(iter([*(c for c in cited if c.quote), *quoted, *cited]), None)

    def route(self, href: str) -> Action | None:
        """What clicking ``href`` in the conversation does (``None``: nothing)."""
        scheme, _, rest = href.partition(":")
        if scheme in ("http", "https", "mailto"):
            return OpenExternal(href)  # only on an explicit click, in the user's browser
        try:
            numbers = [int(p) for p in rest.split(":")]
        except ValueError:
            return None
        if scheme == "cite" and len(numbers) == 2:
            found = self.citation(*numbers)
            return None if found is None else OpenSource(found)
        if len(numbers) != 1:
            return None
        index = numbers[0]
        if scheme == "copy":
            return self.copy(index)
        if scheme == "why":
            return self.why(index)
        if scheme == "wrong":
            return self.wrong(index)
        if scheme == "regen":
            return self.regenerate(index)
        return None
