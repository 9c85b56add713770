"""The bridge between core ``Services`` and Qt: async calls in, signals out.

Every operation is an asyncio task the bridge keeps a reference to (so it can
be cancelled when superseded or when the window closes) and always ends in
exactly one result signal or one failure signal. Environment faults become a
sentence (``ArchivistError``); anything else is a bug and goes to the crash
reporter through ``sys.excepthook``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.config import Settings
from core.errors import ArchivistError
from core.services import Services
from core.types import AnswerChunk, IngestProgress

log = logging.getLogger(__name__)


class ServicesBridge(QObject):
    ready = Signal()
    startFailed = Signal(str)

    answerStarted = Signal(str)
    answerToken = Signal(str)
    answerReady = Signal(object)  # core.types.Answer
    answerFailed = Signal(str)

    ingestStarted = Signal(int)
    ingestProgress = Signal(object)  # core.types.IngestProgress
    ingestFinished = Signal(object)  # core.types.IngestReport
    ingestFailed = Signal(str)

    healthUpdated = Signal(object)  # core.types.HealthSnapshot
    sourceReady = Signal(str, str, object)  # path, text, citation
    sourceFailed = Signal(str)

    def __init__(self, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.services = Services(settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ask_task: asyncio.Task[Any] | None = None
        self._ingest_task: asyncio.Task[Any] | None = None
        self._ingest_cancel: asyncio.Event | None = None
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
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
    def busy_answering(self) -> bool:
        return self._ask_task is not None and not self._ask_task.done()

    @property
    def busy_ingesting(self) -> bool:
        return self._ingest_task is not None and not self._ingest_task.done()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task[Any]:
        async def body() -> None:
            await self.services.start()
            self._started = True
            self.ready.emit()
            await self._refresh_health()

        return self._spawn(self._guard(body, self.startFailed.emit), "bridge-start")

    async def aclose(self) -> None:
        self._closing = True
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.services.aclose()

    # ------------------------------------------------------------------ asking

    def ask(self, question: str) -> asyncio.Task[Any]:
        if self._ask_task is not None and not self._ask_task.done():
            self._ask_task.cancel()  # the new question supersedes the old one

        async def body() -> None:
            self.answerStarted.emit(question)
            answer = await self.services.ask(question, on_token=lambda piece: self._token(piece))
            self.answerReady.emit(answer)
            await self._refresh_health()

        self._ask_task = self._spawn(self._guard(body, self.answerFailed.emit), "bridge-ask")
        return self._ask_task

    def _token(self, piece: AnswerChunk) -> None:
        self.answerToken.emit(piece.text)

    def stop_answer(self) -> None:
        if self._ask_task is not None and not self._ask_task.done():
            self._ask_task.cancel()
            self.answerFailed.emit("Stopped.")

    # ------------------------------------------------------------------ ingestion

    def ingest(self, paths: Sequence[str | Path]) -> asyncio.Task[Any] | None:
        if self.busy_ingesting:
            self.ingestFailed.emit("An ingestion is already running; wait for it or cancel it.")
            return None
        self._ingest_cancel = asyncio.Event()
        cancel = self._ingest_cancel

        async def body() -> None:
            self.ingestStarted.emit(len(paths))
            report = await self.services.ingest(
                [str(p) for p in paths], progress=self._progress, cancel=cancel
            )
            self.ingestFinished.emit(report)
            await self._refresh_health()

        self._ingest_task = self._spawn(self._guard(body, self.ingestFailed.emit), "bridge-ingest")
        return self._ingest_task

    def _progress(self, progress: IngestProgress) -> None:
        self.ingestProgress.emit(progress)

    def cancel_ingest(self) -> None:
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()

    # ------------------------------------------------------------------ views

    def open_source(self, path: str, citation: object) -> asyncio.Task[Any]:
        async def body() -> None:
            text = await self.services.document_text(path)
            self.sourceReady.emit(path, text, citation)

        return self._spawn(self._guard(body, self.sourceFailed.emit), "bridge-source")

    def refresh_health(self) -> asyncio.Task[Any] | None:
        if not self._started or self._closing:
            return None
        return self._spawn(self._guard(self._refresh_health, log.warning), "bridge-health")

    async def _refresh_health(self) -> None:
        self.healthUpdated.emit(await self.services.health())
