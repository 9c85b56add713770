"""The bridge between core ``Services`` and Qt: async calls in, signals out.

Every operation is an asyncio task the bridge keeps a reference to (so it can
be cancelled when superseded or when the window closes) and always ends in
exactly one result signal or one failure signal. Environment faults become a
sentence (``ArchivistError``); anything else is a bug and goes to the crash
reporter through ``sys.excepthook``.

Status refreshes (health, breakers, statistics) never overlap: a refresh asked
for while one runs is folded into one more run after it. Files added while an
ingestion runs wait for it (``ingestQueued``) and are ingested right after;
Cancel stops the running one and drops the waiting ones.

Asking is quote first: ``answerQuotes`` carries the best supporting sentences
of the retrieved passages as soon as core has them (``Services.ask``'s
``on_quotes``, before any model runs), then ``answerToken`` streams the answer
and ``answerReady`` delivers it with its evidence check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QObject, Signal

from app.settings_file import SaveResult, SettingsForm, save_form, watching_note
from core.config import Settings
from core.conversations import Conversation, ConversationStore
from core.errors import ArchivistError
from core.services import Services
from core.types import (
    AnswerChunk,
    BreakerTransition,
    Citation,
    FileStatus,
    IngestProgress,
    IngestReport,
)

log = logging.getLogger(__name__)


class ServicesBridge(QObject):
    ready = Signal()
    startFailed = Signal(str)

    answerStarted = Signal(str)
    answerQuotes = Signal(object)  # tuple[core.types.Citation, ...]: quotes, before the model
    answerToken = Signal(str)
    answerReady = Signal(object, object)  # core.types.Answer, list[BreakerSnapshot] at arrival
    answerFailed = Signal(str)
    answerEvicted = Signal(str, bool)  # cache entry id, whether it was still cached
    evictFailed = Signal(str)

    ingestStarted = Signal(int)
    ingestQueued = Signal(int)  # items waiting for the running ingestion (0: none any more)
    ingestProgress = Signal(object)  # core.types.IngestProgress
    # core.types.FillProgress of a vector fill no ingestion here reports: one
    # resumed at start-up (an earlier ingestion was cut short); last one not running.
    fillProgress = Signal(object)
    ingestFinished = Signal(object)  # core.types.IngestReport
    ingestFailed = Signal(str)
    quarantineUpdated = Signal(object)  # list[(path, reason, when)]
    watchReport = Signal(str, object)  # watched folder, core.types.IngestReport

    healthUpdated = Signal(object)  # core.types.HealthSnapshot
    breakersUpdated = Signal(object)  # list[BreakerSnapshot]
    statsUpdated = Signal(object)  # dict from Services.stats()
    statusFailed = Signal(str)
    breakerChanged = Signal(object)  # BreakerTransition
    actionFailed = Signal(str)  # a small operator action (force a breaker) failed

    sourceReady = Signal(str, str, object)  # path, text, citation
    sourceFlagged = Signal(str, object)  # path, its passages flagged at ingestion (a list)
    sourceFailed = Signal(str)

    conversationsListed = Signal(str, object)  # query, list[ConversationSummary]
    conversationLoaded = Signal(object)  # Conversation
    conversationSaved = Signal(object)  # Conversation
    conversationDeleted = Signal(str)  # id
    conversationFailed = Signal(str)
    exportFinished = Signal(str)  # path
    exportFailed = Signal(str)

    settingsSaved = Signal(object)  # app.settings_file.SaveResult
    settingsFailed = Signal(str)

    def __init__(
        self,
        settings: Settings,
        parent: QObject | None = None,
        *,
        services: Services | None = None,
    ) -> None:
        """``services`` defaults to ``Services(settings)`` (tests pass a stand-in)."""
        super().__init__(parent)
        self.settings = settings
        self.services = Services(settings) if services is None else services
        self.conversations = ConversationStore(settings.home / "conversations")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ask_task: asyncio.Task[Any] | None = None
        self._ingest_task: asyncio.Task[Any] | None = None
        self._ingest_cancel: asyncio.Event | None = None
        self._ingest_queue: list[str] = []
        self._status_task: asyncio.Task[Any] | None = None
        self._status_again = False
        self._list_task: asyncio.Task[Any] | None = None
        self._listening: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self.status_refreshes = 0  # how many refreshes ran (tests check they never overlap)
        self._fill_shown = False  # a resumed fill's progress is on show
        # What the settings file holds now (the dialog edits this); ``settings`` stays
        # what the services run with, so "restart needed" is measured against it.
        self.saved_settings = settings
        # Subscribed before start(): Services reconciles watched folders as it starts.
        self.services.watch_listeners.append(self._on_watch_report)

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        if self._closing:
            # Nothing new starts once closing began: run nothing and hand back a done task.
            if asyncio.iscoroutine(coro):
                coro.close()
            coro = asyncio.sleep(0)
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(
        self, body: Callable[[], Awaitable[None]], on_error: Callable[[str], None]
    ) -> None:
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except ArchivistError as exc:
            on_error(str(exc))
        except Exception:
            on_error("Something went wrong; a crash report was opened.")
            sys.excepthook(*sys.exc_info())

    @property
    def started(self) -> bool:
        return self._started

    @property
    def busy_answering(self) -> bool:
        return self._ask_task is not None and not self._ask_task.done()

    @property
    def busy_ingesting(self) -> bool:
        return self._ingest_task is not None and not self._ingest_task.done()

    @property
    def refreshing(self) -> bool:
        return self._status_task is not None and not self._status_task.done()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task[Any]:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            await self.services.start()
            self._started = True
            self._listen_to_breakers()
            self.ready.emit()
            await self._refresh_quarantine()
            await self._refresh_status()

        return self._spawn(self._guard(body, self.startFailed.emit), "bridge-start")

    async def aclose(self) -> None:
        self._closing = True
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()
        if self._started:
            for name in self._listening:
                self.services.router.breaker(name).remove_listener(self._on_transition)
        self._listening.clear()
        if self._on_watch_report in self.services.watch_listeners:
            self.services.watch_listeners.remove(self._on_watch_report)
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
        await self.services.aclose()

    # ------------------------------------------------------------------ breakers

    def _listen_to_breakers(self) -> None:
        router = self.services.router
        for name in router.names():
            router.breaker(name).add_listener(self._on_transition)
            self._listening.append(name)

    def _on_transition(self, transition: BreakerTransition) -> None:
        # Breakers may change state from a worker thread: hop onto the loop first.
        loop = self._loop
        if loop is None or loop.is_closed() or self._closing:
            return
        loop.call_soon_threadsafe(self._transition_on_loop, transition)

    def _transition_on_loop(self, transition: BreakerTransition) -> None:
        if self._closing:
            return
        self.breakerChanged.emit(transition)
        self.breakersUpdated.emit(self.services.router.health())
        self.refresh_status()

    def force_breaker(self, name: str, state: Literal["open", "closed"]) -> None:
        """Operator override; ends in ``breakersUpdated`` or ``actionFailed``."""
        if not self._started:
            self.actionFailed.emit("Archivist is still starting; try again in a moment.")
            return
        try:
            self.services.router.force(name, state)
        except ArchivistError as exc:
            self.actionFailed.emit(str(exc))
            return
        self.breakersUpdated.emit(self.services.router.health())
        self.refresh_status()

    # ------------------------------------------------------------------ asking

    def ask(self, question: str) -> asyncio.Task[Any]:
        return self._ask(question, ())

    def regenerate(self, question: str, skip: str | Collection[str]) -> asyncio.Task[Any]:
        """Ask ``question`` again without the provider(s) ``skip`` (and not from the cache).

        For an answer whose stream broke off (``Answer.interrupted_by``); the new
        answer arrives like any other, through ``answerStarted``/``answerReady``.
        """
        return self._ask(question, frozenset({skip} if isinstance(skip, str) else skip))

    def _ask(self, question: str, skip: Collection[str]) -> asyncio.Task[Any]:
        if self._ask_task is not None and not self._ask_task.done():
            self._ask_task.cancel()  # the new question supersedes the old one

        async def body() -> None:
            self.answerStarted.emit(question)
            answer = await self.services.ask(
                question, on_token=self._token, on_quotes=self._quotes, skip_providers=skip
            )
            # The breakers as they were when this answer arrived ("why this answer").
            self.answerReady.emit(answer, self.services.router.health())
            self.refresh_status()

        self._ask_task = self._spawn(self._guard(body, self.answerFailed.emit), "bridge-ask")
        return self._ask_task

    def _token(self, piece: AnswerChunk) -> None:
        self.answerToken.emit(piece.text)

    def _quotes(self, quotes: Sequence[Citation]) -> None:
        self.answerQuotes.emit(tuple(quotes))

    def evict_answer(self, entry_id: str) -> asyncio.Task[Any]:
        """ "This answer is wrong": drop the cached answer; ends in ``answerEvicted``."""

        async def body() -> None:
            evicted = await self.services.evict_cached_answer(entry_id)
            self.answerEvicted.emit(entry_id, evicted)
            self.refresh_status()

        return self._spawn(self._guard(body, self.evictFailed.emit), "bridge-evict")

    def stop_answer(self) -> None:
        if self._ask_task is not None and not self._ask_task.done():
            self._ask_task.cancel()
            self.answerFailed.emit("Stopped.")

    # ------------------------------------------------------------------ ingestion

    def ingest(self, paths: Sequence[str | Path]) -> asyncio.Task[Any] | None:
        """Ingest ``paths``; while another ingestion runs they wait (``ingestQueued``).

        Ends in ``ingestFinished`` or ``ingestFailed``; waiting paths start right
        after the running ingestion ends, however it ended (except by Cancel).
        """
        if self.busy_ingesting:
            # The running ingestion is untouched (its Cancel stays live): these wait.
            waiting = dict.fromkeys([*self._ingest_queue, *(str(p) for p in paths)])
            self._ingest_queue = list(waiting)
            self.ingestQueued.emit(len(self._ingest_queue))
            return None
        self._ingest_cancel = asyncio.Event()
        cancel = self._ingest_cancel

        async def body() -> None:
            self.ingestStarted.emit(len(paths))
            try:
                report = await self.services.ingest(
                    [str(p) for p in paths], progress=self._progress, cancel=cancel
                )
                self.ingestFinished.emit(report)
            finally:
                if not self._closing:
                    self.refresh_quarantine()
                    self.refresh_status()

        self._ingest_task = self._spawn(self._guard(body, self.ingestFailed.emit), "bridge-ingest")
        self._ingest_task.add_done_callback(self._start_queued)
        return self._ingest_task

    def _start_queued(self, _done: asyncio.Task[Any]) -> None:
        if self._closing or not self._ingest_queue:
            return
        paths, self._ingest_queue = self._ingest_queue, []
        self.ingestQueued.emit(0)
        self.ingest(paths)

    def _progress(self, progress: IngestProgress) -> None:
        self.ingestProgress.emit(progress)

    def _on_watch_report(self, folder: str, report: IngestReport) -> None:
        # Services calls this on the event loop after each watched re-ingest.
        if self._closing:
            return
        self.watchReport.emit(folder, report)
        if any(o.status is not FileStatus.UNCHANGED for o in report.outcomes):
            self.refresh_quarantine()
            self.refresh_status()

    def cancel_ingest(self) -> None:
        """Stop the running ingestion (it reports what it finished) and drop the waiting paths."""
        if self._ingest_queue:
            self._ingest_queue = []
            self.ingestQueued.emit(0)
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()

    def refresh_quarantine(self) -> asyncio.Task[Any] | None:
        if not self._started or self._closing:
            return None
        return self._spawn(self._guard(self._refresh_quarantine, log.warning), "bridge-quarantine")

    async def _refresh_quarantine(self) -> None:
        self.quarantineUpdated.emit(await self.services.quarantined())

    # ------------------------------------------------------------------ views

    def open_source(self, path: str, citation: object) -> asyncio.Task[Any]:
        async def body() -> None:
            text = await self.services.document_text(path)
            self.sourceReady.emit(path, text, citation)
            flagged = await self.services.flagged_passages(path)
            if flagged:
                self.sourceFlagged.emit(path, flagged)

        return self._spawn(self._guard(body, self.sourceFailed.emit), "bridge-source")

    def refresh_status(self) -> asyncio.Task[Any] | None:
        """Refresh health, breakers and statistics; never two at once."""
        if not self._started or self._closing:
            return None
        if self.refreshing:
            self._status_again = True
            return self._status_task
        self._status_task = self._spawn(self._status_loop(), "bridge-status")
        return self._status_task

    # The timer in the window used to call this name.

    async def _status_loop(self) -> None:
        while True:
            self._status_again = False
            await self._guard(self._refresh_status, self.statusFailed.emit)
            if not self._status_again or self._closing:
                return

    async def _refresh_status(self) -> None:
        self.status_refreshes += 1
        self.healthUpdated.emit(await self.services.health())
        self.breakersUpdated.emit(self.services.router.health())
        self._report_resumed_fill()
        self.statsUpdated.emit(await self.services.stats())

    def _report_resumed_fill(self) -> None:
        """A fill that no ingestion of this window drives (resumed at start-up) is
        reported with the status refreshes, and once more when it stops."""
        if self.busy_ingesting:
            return
        progress = self.services.fill_progress()
        running = progress is not None and progress.running
        if progress is not None and (running or self._fill_shown):
            self.fillProgress.emit(progress)
        self._fill_shown = running

    # ------------------------------------------------------------------ conversations

    def list_conversations(self, query: str = "") -> asyncio.Task[Any]:
        """List saved conversations matching ``query``; a newer query supersedes."""
        if self._list_task is not None and not self._list_task.done():
            self._list_task.cancel()

        async def body() -> None:
            found = await asyncio.to_thread(self.conversations.search, query)
            self.conversationsListed.emit(query, found)

        self._list_task = self._spawn(
            self._guard(body, self.conversationFailed.emit), "bridge-list"
        )
        return self._list_task

    def load_conversation(self, cid: str) -> asyncio.Task[Any]:
        async def body() -> None:
            self.conversationLoaded.emit(await asyncio.to_thread(self.conversations.load, cid))

        return self._spawn(self._guard(body, self.conversationFailed.emit), "bridge-load")

    def save_conversation(self, conv: Conversation) -> asyncio.Task[Any]:
        async def body() -> None:
            await asyncio.to_thread(self.conversations.save, conv)
            self.conversationSaved.emit(conv)

        return self._spawn(self._guard(body, self.conversationFailed.emit), "bridge-save")

    def delete_conversation(self, cid: str) -> asyncio.Task[Any]:
        async def body() -> None:
            await asyncio.to_thread(self.conversations.delete, cid)
            self.conversationDeleted.emit(cid)

        return self._spawn(self._guard(body, self.conversationFailed.emit), "bridge-delete")

    def export_conversation(self, conv: Conversation, path: str) -> asyncio.Task[Any]:
        async def body() -> None:
            out = await asyncio.to_thread(self.conversations.export_markdown, conv, Path(path))
            self.exportFinished.emit(str(out))

        return self._spawn(self._guard(body, self.exportFailed.emit), "bridge-export")

    # ------------------------------------------------------------------ settings

    def save_settings(self, form: SettingsForm) -> asyncio.Task[Any]:
        """Save, record the change in the audit log, apply the watched folders at once."""

        async def body() -> None:
            result = await asyncio.to_thread(save_form, self.settings, form, self.saved_settings)
            self.saved_settings = result.settings
            if self._started and result.changed:
                self.services.audit("setting", "changed", detail={"keys": list(result.changed)})
            result = await self._apply_watched(result)
            self.settingsSaved.emit(result)
            self.refresh_status()

        return self._spawn(self._guard(body, self.settingsFailed.emit), "bridge-settings")

    async def _apply_watched(self, result: SaveResult) -> SaveResult:
        """Follow the saved watched folders now (no restart); says so in the result."""
        if not self._started or self._closing:
            return result
        folders = list(result.settings.watched_folders)
        if "watched_folders" not in result.changed:
            return result
        try:
            await self.services.watch(folders)
        except (ArchivistError, OSError) as exc:
            # The file is saved either way; say what did not take effect.
            note = f"The watched folders are saved but could not be followed: {exc}"
        else:
            note = watching_note(folders)
        return dataclasses.replace(result, notes=(*result.notes, note))
