"""Structured logging: JSON lines to a rotating file, readable lines on stderr.

A request id lives in a context variable, so every record logged while an
``ask`` or ``ingest`` runs carries it, across awaits and ``asyncio.to_thread``
(which copies the context).
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "archivist_request_id", default=None
)

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    rid = request_id or new_request_id()
    token = request_id_var.set(rid)
    try:
        yield rid
    finally:
        request_id_var.reset(token)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        prefix = f"[{rid}] " if rid else ""
        return f"archivist: {record.levelname.lower()}: {prefix}{record.getMessage()}"


_installed: list[logging.Handler] = []


def setup_logging(
    log_dir: Path,
    *,
    level: str = "INFO",
    stderr_level: str = "WARNING",
    max_bytes: int = 5_000_000,
    backups: int = 3,
) -> Path:
    """Install the handlers on the ``archivist`` root loggers; returns the log file path.

    Idempotent: calling it again replaces the handlers it installed before.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "archivist.jsonl"
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()

    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    file_handler.setLevel(level.upper())
    file_handler.setFormatter(JsonFormatter())
    file_handler.addFilter(_RequestIdFilter())

    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(stderr_level.upper())
    stderr_handler.setFormatter(ReadableFormatter())
    stderr_handler.addFilter(_RequestIdFilter())

    for handler in (file_handler, stderr_handler):
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(
        min(logging.getLevelName(level.upper()), logging.getLevelName(stderr_level.upper()))
    )
    # Libraries are chatty at INFO; keep them at WARNING.
    for name in (
        "httpx",
        "httpcore",
        "sentence_transformers",
        "transformers",
        "urllib3",
        "alembic",
        "filelock",
        "asyncio",
        "qasync",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    return path


def teardown_logging() -> None:
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
