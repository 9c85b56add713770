"""Create the process's one SQLAlchemy engine and bring its schema up to date.

``Services`` calls ``create_engine_for`` once and disposes the engine on
shutdown; nothing else creates engines. SQLite gets WAL mode and pragmas that
suit a desktop app (one writer, many readers, foreign keys on).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from core.config import redact_secrets, redact_url
from core.errors import StorageError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA cache_size=-32000")  # 32 MB page cache per connection
        cur.execute("PRAGMA mmap_size=268435456")
    finally:
        cur.close()


def create_engine_for(url: str, *, echo: bool = False) -> sa.Engine:
    """The one engine of the process, for any SQLAlchemy URL."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is no number
        reason = redact_secrets(str(exc), url)
        raise StorageError(f"The database URL {redact_url(url)!r} is not valid: {reason}") from None
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Connections are used from worker threads (asyncio.to_thread).
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 5
        kwargs["pool_pre_ping"] = False
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 5
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, ImportError) as exc:
        reason = redact_secrets(str(exc), url)
        raise StorageError(f"Cannot use the database {parsed!r}: {reason}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def upgrade_schema(engine: sa.Engine) -> None:
    """Apply Alembic migrations up to head (user data is kept across upgrades)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        reason = redact_secrets(str(exc.orig), engine.url.render_as_string(hide_password=False))
        raise StorageError(f"The database could not be opened or upgraded: {reason}") from exc


def schema_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration's revision id (what ``upgrade_schema`` brings a database to)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
