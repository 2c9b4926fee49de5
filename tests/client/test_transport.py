"""The client's transport behaviour over real loopback sockets: a server that accepts and
never answers (timeouts), a port nobody listens on and one that starts listening late
(retries), a small HTTP server answering 5xx and counting requests (no retry of an answer),
and a connection the server closes before answering (retried only for a read)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from featurestore.client import (
    AsyncFeatureClient,
    ConnectionFailed,
    FeatureClient,
    RequestTimedOut,
    ServerError,
)
from featurestore.client.calls import MAX_BACKOFF_S, Call, Settings
from tests.servers import free_port

ANSWER = {
    "entity_name": "user",
    "results": [
        {
            "entity_key": "usr_1",
            "features": {
                "f": {"value": 1, "timestamp": "2026-05-01T00:00:00Z", "status": "PRESENT"}
            },
        }
    ],
}


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose listening socket accepts connections (the kernel's backlog) and never
    reads or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    body: ClassVar[bytes] = json.dumps(ANSWER).encode()
    requests: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(
    status: int, body: bytes, port: int = 0, delay_s: float = 0.0
) -> Iterator[tuple[int, list[str]]]:
    """A small HTTP server answering every POST ``status`` and ``body``, started after
    ``delay_s`` on ``port``; yields (port, the paths it was sent)."""
    handler = type("Handler", (_Handler,), {"status": status, "body": body, "requests": []})
    port = port or free_port()
    servers: list[ThreadingHTTPServer] = []

    def start() -> None:
        time.sleep(delay_s)
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        servers.append(server)
        server.serve_forever(poll_interval=0.01)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    if not delay_s:
        while not servers:
            time.sleep(0.005)
    try:
        yield port, handler.requests
    finally:
        while not servers:
            time.sleep(0.01)
        servers[0].shutdown()
        servers[0].server_close()
        thread.join(timeout=5)


def client_of(port: int, **options: Any) -> FeatureClient:
    return FeatureClient(f"http://127.0.0.1:{port}", api_key="k", **options)


def get(client: FeatureClient, **options: Any) -> Any:
    return client.get_features("user", ["usr_1"], ["f"], **options)


def test_a_server_that_never_answers_times_out_without_retry() -> None:
    with silent_server() as port, client_of(port, timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimedOut) as caught:
            get(client)
        took = time.monotonic() - started
        assert 0.3 <= took < 0.6, took  # one timeout, no second attempt
        assert caught.value.status is None and "in time" in str(caught.value)
        started = time.monotonic()  # the call's own timeout wins
        with pytest.raises(RequestTimedOut):
            get(client, timeout_s=0.1)
        assert 0.1 <= time.monotonic() - started < 0.3


def test_async_times_out_too() -> None:
    async def run() -> float:
        async with AsyncFeatureClient(f"http://127.0.0.1:{port}", api_key="k") as client:
            started = time.monotonic()
            with pytest.raises(RequestTimedOut):
                await client.get_features("user", ["usr_1"], ["f"], timeout_s=0.2)
            return time.monotonic() - started

    with silent_server() as port:
        assert 0.2 <= asyncio.run(run()) < 0.4


def test_a_refused_connection_is_retried_then_fails() -> None:
    """Nobody listens: 1 + ``retries`` attempts with pauses of 0.05, 0.1, 0.2 s."""
    port = free_port()
    with client_of(port, retries=0) as client, pytest.raises(ConnectionFailed) as caught:
        get(client)
    assert "(1 attempt)" in str(caught.value)
    assert not isinstance(caught.value, RequestTimedOut)
    with client_of(port, retries=3, backoff_s=0.05) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match=r"\(4 attempts\)"):
            get(client)
        assert 0.35 <= time.monotonic() - started < 1.0


@pytest.mark.parametrize("form", ["sync", "async"])
def test_a_server_that_comes_up_late_is_reached_by_the_retries(form: str) -> None:
    port = free_port()
    with http_server(200, json.dumps(ANSWER).encode(), port=port, delay_s=0.2) as (_, seen):
        url = f"http://127.0.0.1:{port}"
        if form == "sync":
            with FeatureClient(url, api_key="k", retries=6, backoff_s=0.05) as client:
                answer = get(client)
        else:

            async def run() -> Any:
                async with AsyncFeatureClient(url, api_key="k", retries=6, backoff_s=0.05) as c:
                    return await c.get_features("user", ["usr_1"], ["f"])

            answer = asyncio.run(run())
    assert answer.to_dicts() == [{"f": 1}]
    assert seen == ["/api/v1/features/retrieve"]  # the refused attempts never reached it


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_answer_is_raised_once_not_retried(status: int) -> None:
    body = json.dumps({"error": {"code": "INTERNAL", "message": "internal error", "field": None}})
    with http_server(status, body.encode()) as (port, seen):
        client = client_of(port, retries=5)
        with client, pytest.raises(ServerError) as caught:
            get(client)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        "INTERNAL",
        "internal error",
    )
    assert len(seen) == 1


def test_a_non_json_error_body_is_the_message() -> None:
    with http_server(502, b"<html>Bad gateway</html>") as (port, _):
        client = client_of(port)
        with client, pytest.raises(ServerError, match="Bad gateway") as caught:
            get(client)
    assert caught.value.code == "HTTP_502"


def test_a_connection_closed_before_the_answer_is_retried_for_a_read() -> None:
    """A server that closes its first connection without answering (a stale keep-alive
    connection), then answers: the retrieve (a read) is sent again and answered."""
    body = json.dumps(ANSWER).encode()
    accepted: list[int] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port = int(sock.getsockname()[1])

        def serve() -> None:
            for attempt in range(2):
                conn, _ = sock.accept()
                accepted.append(attempt)
                with conn:
                    conn.recv(65536)
                    if attempt == 0:
                        continue  # closed without an answer
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with FeatureClient(f"http://127.0.0.1:{port}", api_key="k", retries=1) as client:
            assert get(client).to_dicts() == [{"f": 1}]
        thread.join(timeout=5)
    assert accepted == [0, 1]


def test_which_failures_are_retried() -> None:
    """The retry decision (pure logic): connect errors always, broken connections only for
    a read, never a timeout; pauses double and are bounded."""
    settings = Settings("http://h", "k", 1.0, 10, 0.05, 1)
    read = Call("POST", "/p", {}, True, lambda r: r)
    write = Call("POST", "/p", {}, False, lambda r: r)
    refused = httpx.ConnectError("refused")
    broken = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    assert [settings.pause(refused, n, write) for n in range(5)] == [0.05, 0.1, 0.2, 0.4, 0.5]
    assert settings.pause(broken, 0, read) == 0.05
    assert max(settings.pause(refused, n, read) for n in range(10)) == MAX_BACKOFF_S
    with pytest.raises(ConnectionFailed):
        settings.pause(broken, 0, write)
    with pytest.raises(ConnectionFailed, match="11 attempts"):
        settings.pause(refused, 10, read)
    with pytest.raises(RequestTimedOut):
        settings.pause(httpx.ConnectTimeout("slow"), 0, read)
    with pytest.raises(RequestTimedOut):
        settings.pause(httpx.ReadTimeout("slow"), 0, read)


@pytest.mark.parametrize(
    "options",
    [{"timeout_s": 0}, {"retries": -1}, {"backoff_s": -0.1}, {"max_connections": 0}],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        FeatureClient("http://127.0.0.1:1", **options)
