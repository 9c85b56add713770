"""A real OpenAI-compatible HTTP server on 127.0.0.1 that can be told to misbehave.

``FakeLLM`` serves ``POST /v1/chat/completions`` with streamed (chunked SSE)
answers from a thread. Each request takes the next behaviour from a queue
(``server.push(...)``), or ``server.default`` when the queue is empty:

* ``Succeed(tokens, delay_s)``: stream the tokens (slowly when ``delay_s`` > 0)
* ``Hang(after_headers)``: never answer (or send headers and then nothing)
* ``Drop(after_tokens)``: send some tokens, then cut the connection
* ``Status(code, retry_after)``: answer 500, 503, 429 (with Retry-After), 401, ...

Every request is recorded (``server.requests``), so a test can check the
prompt that was sent and that a provider behind an open breaker got nothing.
``stop()`` ends hanging handlers, closes open connections and joins every
thread, so nothing leaks past a test.

    with FakeLLM() as server:
        server.push(Status(503), Succeed(["Hello", " world"]))
        ...  # point a provider at server.base_url
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Succeed:
    tokens: tuple[str, ...] | list[str] = ("Hello", ",", " world", ".")
    delay_s: float = 0.0  # between tokens (a slow stream)
    send_done: bool = True  # end with "data: [DONE]"


@dataclass(frozen=True)
class Hang:
    after_headers: bool = False  # send 200 + SSE headers first, then nothing


@dataclass(frozen=True)
class Drop:
    after_tokens: int = 1  # tokens sent before the connection is cut


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


Behaviour = Succeed | Hang | Drop | Status


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON body (None when absent or invalid)
    at: float

    @property
    def messages(self) -> list[dict[str, str]]:
        if isinstance(self.body, dict):
            return list(self.body.get("messages", []))
        return []


def chunk_payload(text: str, finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [
            {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        ],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close(), so no thread outlives stop()
    block_on_close = True

    def __init__(self, owner: FakeLLM) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer is expected here; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle + delayed-ACK stalls between writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._untrack(self.connection)

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/") in {"/v1/models", "/models"}:
            self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        if self.path.rstrip("/") not in {"/v1/chat/completions", "/chat/completions"}:
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        behaviour = self.server.owner._next_behaviour()
        if isinstance(behaviour, Status):
            self._status(behaviour)
        elif isinstance(behaviour, Hang):
            self._hang(behaviour)
        elif isinstance(behaviour, Drop):
            self._drop(behaviour)
        else:
            self._succeed(behaviour)

    # ------------------------------------------------------------------ behaviours

    def _record(self, body: Any) -> None:
        self.server.owner._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
        )

    def _json(self, code: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _status(self, b: Status) -> None:
        extra = {"Retry-After": b.retry_after} if b.retry_after is not None else {}
        body = b.body or {"error": {"message": f"fake error {b.code}", "type": "fake"}}
        self._json(b.code, body, extra)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _succeed(self, b: Succeed) -> None:
        stop = self.server.owner._stopping
        self._start_stream()
        self._chunk(chunk_payload(""))  # the role-only first chunk real servers send
        for token in b.tokens:
            if b.delay_s and stop.wait(b.delay_s):
                self.close_connection = True
                return
            self._chunk(chunk_payload(token))
        self._chunk(chunk_payload("", finish="stop"))
        if b.send_done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _hang(self, b: Hang) -> None:
        if b.after_headers:
            self._start_stream()
        self.server.owner._stopping.wait()
        self.close_connection = True

    def _drop(self, b: Drop) -> None:
        self._start_stream()
        for i in range(b.after_tokens):
            self._chunk(chunk_payload(f"tok{i} "))
        # Half a chunk, then an abrupt close: the body never completes.
        self.wfile.write(b'40\r\ndata: {"choi')
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FakeLLM:
    """The stand-in server (see the module docstring). Use as a context manager."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default: Behaviour = default or Succeed()
        self._queue: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLM:
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes hanging and slow handlers
        server.shutdown()
        thread.join()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections block in readline
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins every handler thread
        self._server = self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def set_default(self, behaviour: Behaviour) -> None:
        with self._lock:
            self.default = behaviour

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    # ------------------------------------------------------------------ handler side

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
        if self._stopping.is_set():  # accepted just as stop() began
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
