"""Database and Redis passwords are masked in every message Archivist writes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.config import load_settings, redact_secrets, redact_url
from core.db.engine import create_engine_for, upgrade_schema
from core.errors import StorageError

PASSWORD = "Tr0ub4dor-and-3"


def test_the_settings_repr_masks_the_database_and_redis_passwords(tmp_path: Path) -> None:
    env = {
        "ARCHIVIST_HOME": str(tmp_path),
        "ARCHIVIST_DATABASE_URL": f"postgresql+psycopg://ann:{PASSWORD}@db.example:5432/kb",
        "ARCHIVIST_REDIS_URL": f"redis://:{PASSWORD}@cache.example:6379/0",
    }
    settings = load_settings(env=env)
    assert settings.database_url.endswith("@db.example:5432/kb")  # the real value is kept
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert PASSWORD not in text
        assert "postgresql+psycopg://ann:***@db.example:5432/kb" in text
        assert "redis://:***@cache.example:6379/0" in text


def test_a_password_with_an_at_sign_or_in_a_query_is_masked() -> None:
    assert redact_url("postgresql://u:p@ss@host/db") == "postgresql://u:***@host/db"
    assert PASSWORD not in redact_url(f"postgresql://host/db?user=u&password={PASSWORD}")
    message = f"could not connect with password {PASSWORD} to host"
    assert PASSWORD not in redact_secrets(message, f"postgresql://u:{PASSWORD}@host/db")


def test_a_database_that_cannot_be_opened_names_the_url_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql+psycopg://ann:{PASSWORD}@127.0.0.1:1/kb?connect_timeout=1"
    with pytest.raises(StorageError) as info:
        engine = create_engine_for(url)
        try:
            upgrade_schema(engine)
        finally:
            engine.dispose()
    assert PASSWORD not in str(info.value)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
