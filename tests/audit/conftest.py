"""Fixtures for the audit tests: a SQLite file engine and a real PostgreSQL engine."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

# `tests.support` lives next to `core`; make the repository root importable even
# when pytest is started as `.venv/bin/pytest` (which does not add the cwd).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from core.audit import ensure_audit_indexes  # noqa: E402
from core.db.engine import create_engine_for  # noqa: E402
from core.db.schema import audit_events, metadata  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'audit.db'}")
    metadata.create_all(engine)
    ensure_audit_indexes(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def audit_postgres_url(postgres_server: PostgresServer) -> str:
    """A database of their own: these tests create the tables without migrations."""
    return postgres_server.new_database("audit")


@pytest.fixture
def postgres_engine(audit_postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_engine_for(audit_postgres_url)
    metadata.create_all(engine)
    ensure_audit_indexes(engine)
    with engine.begin() as conn:
        conn.execute(audit_events.delete())
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    """The same test on a SQLite file and on a real PostgreSQL server."""
    name = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    result: sa.Engine = request.getfixturevalue(name)
    return result
