"""Slow and malformed clients against the real sidecar process (``python -m sidecar``, the
bounded httptools protocol of :mod:`sidecar.server`), over raw sockets: incomplete headers
and bodies are cut at their timeouts with a JSON 408, malformed framing gets a JSON 400,
connections beyond the limit a JSON 503, and well-behaved clients are served meanwhile."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from featurestore.online.urls import open_store
from sidecar.settings import Settings, SettingsError
from tests.sidecar.harness import (
    API_KEY,
    SidecarServer,
    running_sidecar,
    sidecar_env,
)
from tests.warehouse import REPO

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 6
MAX_BODY_BYTES = 4096
#: the slack a 2-core host shared by several test processes needs on top of a timeout
SLACK = 1.0

RETRIEVE = b"POST /api/v1/features/retrieve HTTP/1.1\r\nHost: sidecar\r\n"
BODY = b'{"entity_name":"user","entity_keys":["u1"],"features":["user_7d_transaction_count"]}'


def limits_env(manifest: Path, workdir: Path) -> dict[str, str]:
    url = f"sqlite:///{workdir / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
    return sidecar_env(
        url,
        manifest,
        extra={
            "FEATURESTORE_HEADER_TIMEOUT": f"{HEADER_TIMEOUT * 1000:g}ms",
            "FEATURESTORE_BODY_TIMEOUT": f"{BODY_TIMEOUT * 1000:g}ms",
            "FEATURESTORE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "FEATURESTORE_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        },
    )


@pytest.fixture(scope="module")
def server(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarServer]:
    """One sidecar for the module, with small limits (the constants above)."""
    workdir = tmp_path_factory.mktemp("slow-clients")
    with running_sidecar(workdir, limits_env(manifest, workdir)) as running:
        yield running


# --- raw HTTP ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the server sent before it closed the connection, and when it closed it."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed_after_s: float  # since the start the caller passed

    def error_code(self) -> str:
        assert self.headers["content-type"] == "application/json", self.headers
        document = json.loads(self.body)
        assert set(document["error"]) == {"code", "message", "field"}, document
        code: str = document["error"]["code"]
        return code


def connect(server: SidecarServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_to_close(sock: socket.socket, since: float, limit_s: float = 30) -> Answer:
    """Everything until the server closes the connection (fails after ``limit_s``)."""
    sock.settimeout(limit_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    closed = time.monotonic() - since
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if data else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body, closed)


class Responses:
    """Responses with a Content-Length read one at a time from a connection left open (what
    one ``recv`` returns beyond a response is kept for the next)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        self.sock.settimeout(30)
        chunk = self.sock.recv(65536)
        assert chunk, f"closed after {self.buffer!r}"
        self.buffer += chunk

    def next(self) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            n.strip().lower(): v.strip() for n, _, v in (li.partition(":") for li in lines[1:])
        }
        size = int(headers["content-length"])
        while len(self.buffer) < size:
            self._more()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return Answer(int(lines[0].split(" ")[1]), headers, body, 0.0)


def read_one(sock: socket.socket) -> Answer:
    """One response on a connection that carries no other."""
    return Responses(sock).next()


def retrieve_request(body: bytes = BODY, key: bool = True) -> bytes:
    key_line = b"X-API-Key: " + API_KEY.encode() + b"\r\n" if key else b""
    return (
        RETRIEVE
        + key_line
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def served(server: SidecarServer) -> int:
    """The status of one well-behaved retrieve request on a new connection."""
    with server.client(timeout=5) as client:
        return client.post("/api/v1/features/retrieve", content=BODY).status_code


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /api/v1/featu", RETRIEVE + b"X-API-Key: " + API_KEY.encode() + b"\r\n"],
    ids=["nothing", "part-of-the-request-line", "headers-without-their-end"],
)
def test_incomplete_headers_get_408_at_the_header_timeout(
    server: SidecarServer, sent: bytes
) -> None:
    started = time.monotonic()
    with connect(server) as slow:
        slow.sendall(sent)
        assert served(server) == 200  # others are served while it waits
        answer = read_to_close(slow, started)
    assert answer.status == 408
    assert answer.error_code() == "REQUEST_TIMEOUT"
    assert answer.headers["connection"] == "close"
    assert HEADER_TIMEOUT - 0.05 <= answer.closed_after_s <= HEADER_TIMEOUT + SLACK


def test_slowloris_is_cut_at_the_header_timeout_in_total(server: SidecarServer) -> None:
    """One header byte every 100 ms: each byte arrives well within the timeout, the whole
    never does; the connection is cut at the timeout counted from its opening."""
    started = time.monotonic()
    sent = 0
    with connect(server) as slow:
        slow.sendall(RETRIEVE + b"X-Slow: ")
        while not select.select([slow], [], [], 0.1)[0]:
            slow.sendall(b"a")
            sent += 1
            assert time.monotonic() - started < HEADER_TIMEOUT + SLACK, "never cut"
        answer = read_to_close(slow, started)
    assert answer.status == 408 and answer.error_code() == "REQUEST_TIMEOUT"
    assert sent >= 3  # it was still sending when cut
    assert answer.closed_after_s <= HEADER_TIMEOUT + SLACK


def test_oversized_headers_get_431(server: SidecarServer) -> None:
    started = time.monotonic()
    with connect(server) as big:
        big.sendall(RETRIEVE + b"X-Big: " + b"a" * 100_000)
        answer = read_to_close(big, started)
    assert answer.status == 431 and answer.error_code() == "HEADERS_TOO_LARGE"
    assert answer.closed_after_s < HEADER_TIMEOUT  # at once, not at the timeout


def test_a_keep_alive_connection_outlives_the_header_timeout(server: SidecarServer) -> None:
    """The timeout bounds each request, not the connection: requests on one connection
    spread over 3 header timeouts are all served, none cut."""
    with connect(server) as sock:
        started = time.monotonic()
        statuses = []
        while time.monotonic() - started < 3 * HEADER_TIMEOUT:
            sock.sendall(retrieve_request())
            statuses.append(read_one(sock).status)
            time.sleep(HEADER_TIMEOUT / 3)
    assert len(statuses) >= 6 and set(statuses) == {200}


def test_slow_headers_after_a_request_with_a_body_are_cut_at_the_header_timeout(
    server: SidecarServer,
) -> None:
    """A request with a body (its deadline the later body timeout) then, on the same
    connection, one whose headers never end: cut at the header timeout from its first byte,
    not at the body deadline left armed by the request before it."""
    request = retrieve_request()
    head, _, body = request.partition(b"\r\n\r\n")
    with connect(server) as sock:
        sock.sendall(head + b"\r\n\r\n")  # the app gets the request before its body, which
        time.sleep(HEADER_TIMEOUT + 0.1)  # comes after the first header deadline: the timer
        # is then armed for the body's (BODY_TIMEOUT after the request began)
        sock.sendall(body)
        assert read_one(sock).status == 200
        started = time.monotonic()
        sock.sendall(RETRIEVE + b"X-API-Key: " + API_KEY.encode() + b"\r\n")
        answer = read_to_close(sock, started)
    assert answer.status == 408 and answer.error_code() == "REQUEST_TIMEOUT"
    # the body's deadline would cut it at about BODY_TIMEOUT - HEADER_TIMEOUT - 0.1 = 0.9 s
    assert answer.closed_after_s < HEADER_TIMEOUT + 0.3, answer.closed_after_s


def test_pipelined_requests_are_answered_in_order(server: SidecarServer) -> None:
    """Three requests in one write (the second without a key): three answers in order, on
    a connection that stays open, the body deadline of each starting when it is handled."""
    with connect(server) as sock:
        responses = Responses(sock)
        sock.sendall(retrieve_request() + retrieve_request(key=False) + retrieve_request())
        statuses = [responses.next().status for _ in range(3)]
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(retrieve_request())
        statuses.append(responses.next().status)
    assert statuses == [200, 401, 200, 200]


def test_many_pipelined_requests_are_not_taken_for_large_headers(server: SidecarServer) -> None:
    """400 requests of 1 KiB headers each in one write (the server reads them in chunks
    that end inside some request's headers): each is counted on its own, none is refused
    with 431."""
    request = RETRIEVE + b"X-Pad: " + b"p" * 1000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    with connect(server) as sock:
        responses = Responses(sock)
        sock.sendall(request * 400)
        statuses = [responses.next().status for _ in range(400)]
    assert statuses == [401] * 400


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        retrieve_request()[:-10],  # 10 bytes short of its Content-Length
        RETRIEVE
        + b"X-API-Key: "
        + API_KEY.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(BODY), BODY),  # no last chunk
    ],
    ids=["shorter-than-content-length", "unterminated-chunked"],
)
def test_incomplete_bodies_get_408_at_the_body_timeout(server: SidecarServer, sent: bytes) -> None:
    with connect(server) as slow:
        started = time.monotonic()
        slow.sendall(sent)
        assert served(server) == 200
        answer = read_to_close(slow, started)
    assert answer.status == 408
    assert answer.error_code() == "REQUEST_TIMEOUT"
    assert json.loads(answer.body)["error"]["field"] == "body"
    # the body's timeout, not the headers' (which are complete)
    assert BODY_TIMEOUT - 0.05 <= answer.closed_after_s <= BODY_TIMEOUT + SLACK


def test_a_request_answered_before_its_body_is_still_closed_at_the_body_timeout(
    server: SidecarServer,
) -> None:
    """Without a key the answer (401) comes before the body; a client that then trickles the
    rest of the body is not kept: the connection closes at the body timeout, with no second
    answer."""
    with connect(server) as slow:
        started = time.monotonic()
        slow.sendall(retrieve_request(key=False)[:-40])
        assert read_one(slow).status == 401
        while not select.select([slow], [], [], 0.1)[0]:
            slow.sendall(b" ")
            assert time.monotonic() - started < BODY_TIMEOUT + SLACK, "never closed"
        answer = read_to_close(slow, started)
    assert answer.status == 0 and answer.body == b""  # closed, nothing more said
    assert BODY_TIMEOUT - 0.05 <= answer.closed_after_s <= BODY_TIMEOUT + SLACK


def test_the_body_limit_is_enforced_while_reading(server: SidecarServer) -> None:
    """A chunked body (no Content-Length to refuse up front) that grows past the limit is
    refused (413) as soon as it does, before it ends and long before the body timeout."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(RETRIEVE + b"X-API-Key: " + API_KEY.encode())
        sock.sendall(b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 1000
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_one(sock)
    assert answer.status == 413 and answer.error_code() == "BODY_TOO_LARGE"
    assert time.monotonic() - started < BODY_TIMEOUT


# --- malformed framing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"GARBAGE\x01 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: sidecar\r\n\r\n",
        RETRIEVE + b"Bad Header\r\n\r\n",
        RETRIEVE + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        RETRIEVE + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ],
    ids=[
        "request-line",
        "http-version",
        "header-line",
        "chunk-size",
        "two-content-lengths",
    ],
)
def test_malformed_framing_gets_a_json_400(server: SidecarServer, sent: bytes) -> None:
    with connect(server) as bad:
        started = time.monotonic()
        bad.sendall(sent)
        answer = read_to_close(bad, started)
    assert answer.status == 400
    assert answer.error_code() == "INVALID_HTTP"
    assert json.loads(answer.body)["error"]["message"].startswith("invalid HTTP request: ")
    assert answer.closed_after_s < HEADER_TIMEOUT
    assert served(server) == 200


# --- the connection limit ------------------------------------------------------------------


def test_connections_over_the_limit_get_503_until_slow_ones_are_cut(
    server: SidecarServer,
) -> None:
    """MAX_CONNECTIONS slow clients hold every slot: one more connection is answered 503
    (JSON, Retry-After) and closed at once, a well-behaved client too, the server stays up;
    once the header timeout cuts the slow ones, the well-behaved client is served."""
    time.sleep(0.2)  # connections of earlier tests are gone
    with ExitStack() as stack:
        started = time.monotonic()
        slow = [stack.enter_context(connect(server)) for _ in range(MAX_CONNECTIONS)]
        for sock in slow:
            sock.sendall(RETRIEVE)
        time.sleep(0.05)  # all of them accepted
        over = stack.enter_context(connect(server))
        over.sendall(retrieve_request())
        answer = read_to_close(over, time.monotonic())
        assert answer.status == 503 and answer.error_code() == "TOO_MANY_CONNECTIONS"
        assert answer.headers["retry-after"] == "1"
        assert answer.closed_after_s < 1.0
        assert served(server) == 503  # while the slots are held
        for sock in slow:  # each cut at its header timeout
            assert read_to_close(sock, started).status == 408
        assert time.monotonic() - started <= HEADER_TIMEOUT + SLACK
    assert served(server) == 200
    assert server.proc.poll() is None


# --- several workers, and the settings -----------------------------------------------------


def test_every_worker_applies_the_limits(manifest: Path, tmp_path: Path) -> None:
    """With ``--workers 2`` each worker process has the configured limits (per worker): an
    incomplete request is cut at the small header timeout, not uvicorn's default."""
    with running_sidecar(tmp_path, limits_env(manifest, tmp_path), ["--workers", "2"]) as two:
        for _ in range(4):  # the kernel spreads the connections over the workers
            started = time.monotonic()
            with connect(two) as slow:
                slow.sendall(RETRIEVE)
                answer = read_to_close(slow, started)
            assert answer.status == 408 and answer.error_code() == "REQUEST_TIMEOUT"
            assert answer.closed_after_s <= HEADER_TIMEOUT + SLACK
        assert served(two) == 200


def test_the_limits_settings() -> None:
    env = {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k"}
    defaults = Settings.from_env(env)
    assert (defaults.header_timeout_s, defaults.body_timeout_s) == (5.0, 10.0)
    assert defaults.max_connections == 1024
    custom = Settings.from_env(
        {
            **env,
            "FEATURESTORE_HEADER_TIMEOUT": "750ms",
            "FEATURESTORE_BODY_TIMEOUT": "1m",
            "FEATURESTORE_MAX_CONNECTIONS": "10",
        }
    )
    assert (custom.header_timeout_s, custom.body_timeout_s, custom.max_connections) == (
        0.75,
        60.0,
        10,
    )
    for name, value in [
        ("FEATURESTORE_HEADER_TIMEOUT", "5"),
        ("FEATURESTORE_HEADER_TIMEOUT", "0"),
        ("FEATURESTORE_BODY_TIMEOUT", "-1s"),
        ("FEATURESTORE_MAX_CONNECTIONS", "0"),
        ("FEATURESTORE_MAX_CONNECTIONS", "many"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**env, name: value})


def test_a_bad_limit_fails_serve_with_one_line(manifest: Path, tmp_path: Path) -> None:
    env = limits_env(manifest, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--port", "1", "--header-timeout", "5"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "FEATURESTORE_HEADER_TIMEOUT" in proc.stderr and "Traceback" not in proc.stderr
