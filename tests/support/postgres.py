"""A real, throwaway PostgreSQL server for tests (Debian's postgresql-15 binaries).

``postgres_url`` is a session-scoped pytest fixture: it runs ``initdb`` and
``pg_ctl start`` as the ``postgres`` user (PostgreSQL refuses to run as root) on a
free 127.0.0.1 port, with its data and socket in a temporary folder, creates a
database and yields ``postgresql+psycopg://postgres@127.0.0.1:PORT/archivist_test``.
It stops the server and deletes the folder at the end. Without the binaries it
skips, except under CI (``CI=true``) where a missing server is a failure.

Register it in a conftest with ``from tests.support.postgres import postgres_url``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("ARCHIVIST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DB_NAME = "archivist_test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def _as_postgres(args: list[str], **kwargs: object) -> list[str]:
    """Run as the postgres user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server, create the test database, yield its SQLAlchemy URL, clean up."""
    initdb = PG_BIN / "initdb"
    pg_ctl = PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        _unavailable(f"no initdb/pg_ctl in {PG_BIN} (apt-get install postgresql-15)")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            _unavailable("runuser is missing")
    tmp = Path(tempfile.mkdtemp(prefix="archivist-pg-"))
    data = tmp / "data"
    sock = tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        for path in (tmp, sock):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    log_file = tmp / "server.log"
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(initdb),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -h 127.0.0.1 -k {sock} -F "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(pg_ctl),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        started = True
        _create_database(port)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DB_NAME}"
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log_file.exists():
            detail += log_file.read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL failed to start: {detail}") from exc
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(tmp, ignore_errors=True)


def _create_database(port: int) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a real PostgreSQL database, for the whole test session."""
    with running_postgres() as url:
        yield url
