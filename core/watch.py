"""Watched folders: reconcile at start-up, then follow changes while the app runs.

Each change batch (creations, edits, deletions, moves, subfolders included)
re-ingests the watched folder it belongs to. That is correct by construction,
because the pipeline's plan already handles every case (an unchanged file costs
a stat, a moved file is recognised by its content hash and not re-embedded, a
deleted file is removed), and cheap, because a folder of thousands of unchanged
files costs a few milliseconds of stats. ``watchfiles`` (inotify on Linux)
debounces bursts such as a whole folder being copied in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from core.types import IngestReport

log = logging.getLogger(__name__)

IngestFn = Callable[[list[str]], Awaitable[IngestReport]]


class FolderWatcher:
    """Owns one background task; ``start()`` reconciles, ``aclose()`` stops it."""

    def __init__(
        self,
        folders: Sequence[str],
        ingest: IngestFn,
        *,
        debounce_ms: int = 800,
        on_report: Callable[[str, IngestReport], None] | None = None,
        force_polling: bool | None = None,
    ) -> None:
        self.folders = [str(Path(f).expanduser().resolve()) for f in folders]
        self._ingest = ingest
        self._debounce_ms = debounce_ms
        self._on_report = on_report
        self._force_polling = force_polling
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None and self.folders:
            self._task = asyncio.create_task(self._run(), name="archivist-watch")

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _run(self) -> None:
        from watchfiles import awatch

        existing = await asyncio.to_thread(lambda: [f for f in self.folders if Path(f).is_dir()])
        for missing in sorted(set(self.folders) - set(existing)):
            log.warning("watched folder %s does not exist; not watched", missing)
        if not existing:
            return
        # Reconcile first: whatever changed while the app was closed.
        for folder in existing:
            await self._reingest(folder)
        try:
            async for changes in awatch(
                *existing,
                debounce=self._debounce_ms,
                stop_event=self._stop,
                force_polling=self._force_polling,
                ignore_permission_denied=True,
            ):
                roots = {self._root_of(path) for _, path in changes}
                for root in sorted(r for r in roots if r is not None):
                    await self._reingest(root)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a folder deleted under us, inotify limits...
            self.last_error = str(exc)
            log.warning("folder watching stopped: %s", exc)

    def _root_of(self, path: str) -> str | None:
        best = None
        for folder in self.folders:
            if (path == folder or path.startswith(folder.rstrip("/") + "/")) and (
                best is None or len(folder) > len(best)
            ):
                best = folder
        return best

    async def _reingest(self, folder: str) -> None:
        try:
            report = await self._ingest([folder])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = str(exc)
            log.warning("re-ingesting watched folder %s failed: %s", folder, exc)
            return
        self.batches += 1
        changed = {k: v for k, v in report.summary().items() if v and k != "unchanged"}
        if changed:
            log.info("watched folder %s: %s", folder, changed)
        if self._on_report is not None:
            self._on_report(folder, report)
