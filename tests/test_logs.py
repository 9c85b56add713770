"""Structured logs: JSON lines in the data folder, the request id carried through an ask."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from core.config import load_settings
from core.logs import setup_logging, teardown_logging
from core.services import Services


async def test_ask_and_ingest_log_json_lines_with_their_request_id(
    home: Path, corpus: Path
) -> None:
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    settings = load_settings()
    path = setup_logging(settings.log_dir, level="INFO", stderr_level="CRITICAL")
    try:
        async with Services(settings) as services:
            await services.ingest([corpus])
            answer = await services.ask("When was the lighthouse built?")
        for handler in logging.getLogger().handlers:
            handler.flush()
        records = [json.loads(line) for line in path.read_text().splitlines()]
    finally:
        teardown_logging()
    assert path.parent == home / "logs"
    mine = [r for r in records if r.get("request_id") == answer.request_id]
    assert any(r["msg"].startswith("ask ") for r in mine), mine
    ingest = [r for r in records if r["msg"] == "ingest done"]
    assert ingest and ingest[0]["request_id"]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
