"""The stand-in server itself: it is a real socket server and stops cleanly."""

from __future__ import annotations

import socket
import threading

import httpx

from tests.support.fake_llm import FakeLLM, Hang, Status, Succeed, closed_port


def test_serves_sse_and_records_requests() -> None:
    with FakeLLM() as server:
        server.push(Succeed(["a", "b"]), Status(503))
        with httpx.Client(verify=False) as client:
            ok = client.post(f"{server.base_url}/chat/completions", json={"stream": True})
            failed = client.post(f"{server.base_url}/chat/completions", json={"x": 1})
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "text/event-stream"
        assert ok.text.rstrip().endswith("data: [DONE]")
        assert failed.status_code == 503
        assert [r.body for r in server.chat_requests] == [{"stream": True}, {"x": 1}]


def test_stop_ends_hanging_handlers_and_joins_every_thread() -> None:
    before = set(threading.enumerate())
    server = FakeLLM(default=Hang(after_headers=True)).start()
    sockets = []
    for _ in range(3):  # three clients left hanging, one idle keep-alive connection
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        sockets.append(sock)
    sockets.append(socket.create_connection(("127.0.0.1", server.port)))
    server.stop()
    for sock in sockets:
        sock.close()
    assert set(threading.enumerate()) <= before


def test_closed_port_refuses_connections() -> None:
    port = closed_port()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
