"""Fixtures for the cache tests: a fake clock, a real redis-server, a MONITOR log."""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # tests/support is imported as tests.support
    sys.path.insert(0, str(_ROOT))

from core.cache.backends import EmbeddedBackend  # noqa: E402
from core.cache.redis_backend import RedisBackend  # noqa: E402
from tests.support.clock import FakeClock  # noqa: E402
from tests.support.redis_server import RedisServer, redis_server_or_skip  # noqa: E402


class CommandMonitor:
    """Every command the server receives, via MONITOR on a separate raw connection."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.sendall(b"MONITOR\r\n")
        self._buffer = b""
        self.lines: list[str] = []
        self._lock = threading.Lock()
        first = self._read_line()
        assert first == "+OK", first
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read_line(self) -> str | None:
        while b"\r\n" not in self._buffer:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def _run(self) -> None:
        while (line := self._read_line()) is not None:
            with self._lock:
                self.lines.append(line)

    def commands(self) -> list[str]:
        with self._lock:
            lines = list(self.lines)
        names = []
        for line in lines:
            _, _, rest = line.partition("] ")
            if rest.startswith('"'):
                names.append(rest[1:].split('"', 1)[0].upper())
        return names

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_monitor(redis_server: RedisServer) -> Iterator[CommandMonitor]:
    """Records every command of the whole session; KEYS at any point fails the session."""
    monitor = CommandMonitor(redis_server.port)
    try:
        yield monitor
    finally:
        time.sleep(0.2)  # let the last replies arrive
        commands = monitor.commands()
        monitor.close()
        assert "KEYS" not in commands, "the KEYS command was sent to Redis"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to kill and restart."""
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["embedded", "redis"])
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str, tmp_path: Path
) -> AsyncIterator[EmbeddedBackend | RedisBackend]:
    """A started backend of each kind (the Redis one on the session server, under MONITOR)."""
    b: EmbeddedBackend | RedisBackend
    if request.param == "embedded":
        b = EmbeddedBackend(tmp_path / "cache.sqlite3", clock=clock)
    else:
        server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_monitor")
        b = RedisBackend.from_url(server.url, prefix=prefix, clock=clock, sync_block_ms=100)
    await b.start()
    try:
        yield b
    finally:
        await b.aclose()
