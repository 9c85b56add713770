"""Watched folders follow creations, edits, moves and deletions while the app runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from core.config import load_settings
from core.services import Services
from core.types import FileStatus, IngestReport


async def _until(predicate: Callable[[], bool], limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_watched_folder_is_reconciled_then_followed(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("The orchard has forty apple trees.\n")
    (home / "archivist.toml").write_text(
        f'watched_folders = ["{folder}"]\n[ingest]\nembed = false\n'
    )
    reports: list[IngestReport] = []
    services = Services(load_settings())
    services.watch_listeners.append(lambda _folder, report: reports.append(report))
    try:
        await services.start(warm_models=False)

        def seen(status: FileStatus, name: str) -> bool:
            return any(
                o.status is status and Path(o.path).name == name
                for r in reports
                for o in r.outcomes
            )

        await _until(lambda: seen(FileStatus.ADDED, "a.txt"))  # start-up reconcile
        assert services.watched_folders == [str(folder.resolve())]

        (folder / "sub" / "b.md").write_text("# Bees\n\nThe hives are inspected on Mondays.\n")
        await _until(lambda: seen(FileStatus.ADDED, "b.md"))
        answer = await services.ask("When are the hives inspected?")
        assert answer.citations and answer.citations[0].source.endswith("b.md")

        (folder / "a.txt").write_text("The orchard has fifty-two apple trees.\n")
        await _until(lambda: seen(FileStatus.UPDATED, "a.txt"))

        (folder / "sub" / "b.md").rename(folder / "bees.md")
        await _until(lambda: seen(FileStatus.MOVED, "bees.md"))
        answer = await services.ask("When are the hives inspected?")
        assert answer.citations[0].source.endswith("bees.md")

        (folder / "a.txt").unlink()
        await _until(lambda: seen(FileStatus.REMOVED, "a.txt"))
        answer = await services.ask("How many apple trees are in the orchard?")
        assert all(not c.source.endswith("a.txt") for c in answer.citations)
        health = await services.health()
        watcher = {c.name: c for c in health.components}["watcher"]
        assert watcher.status == "ok"
    finally:
        await services.aclose()
