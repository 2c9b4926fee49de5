"""The sidecar's JSON logs through the real server (``python -m sidecar`` over HTTP, its
stderr read back): every line a JSON object, the request id kept from a sane
``X-Request-ID`` or generated, answered in the response, present in the access log line and
in every line logged while the request was served (a store that is down: the read's
warnings), never leaking from one concurrent request into another; the access log off by
default, sampled when asked, naming the API key and never the key itself."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore.online.sqlite_store import SQLiteStore
from sidecar.logs import MAX_REQUEST_ID_CHARS, RequestContext
from tests.servers import free_port
from tests.sidecar.harness import API_KEY, SidecarServer, running_sidecar, sidecar_env

RETRIEVE = "/api/v1/features/retrieve"
BODY = {"entity_name": "user", "entity_keys": ["usr_0001"], "features": ["avg_order_value_90d"]}
#: the name ``FEATURESTORE_API_KEYS``' first key gets (sidecar/settings.py)
KEY_NAME = "env-key-1"
GENERATED = re.compile(r"[0-9a-f]{32}")


def lines_of(server: SidecarServer) -> list[dict[str, Any]]:
    """Every line of the server's output, each parsed as JSON (fails on one that is not)."""
    out = []
    for line in server.output().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return out


def access_lines(server: SidecarServer) -> list[dict[str, Any]]:
    return [line for line in lines_of(server) if line["logger"] == "sidecar.access"]


def with_id(server: SidecarServer, request_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The access lines of ``request_id``, once ``count`` are written (the line follows the
    response: the client may read the response first)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in access_lines(server) if line.get("request_id") == request_id]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("logs") / "online.db"
    SQLiteStore(path).initialize()
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, manifest: Path
) -> Iterator[SidecarServer]:
    """A sidecar writing every request to its access log."""
    env = sidecar_env(sqlite_url, manifest)
    with running_sidecar(tmp_path_factory.mktemp("logged"), env, ["--access-log"]) as server:
        yield server


def test_every_line_is_json_with_level_logger_message_and_timestamp(
    logged: SidecarServer,
) -> None:
    with logged.client() as client:
        assert client.post(RETRIEVE, json=BODY).status_code == 200
    lines = lines_of(logged)
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's too
    assert any(line["message"].startswith("sidecar ready") for line in lines)
    for line in lines:
        assert {"level", "logger", "message", "timestamp"} <= line.keys(), line
        assert "color_message" not in line


def test_a_sane_request_id_is_kept_answered_and_logged_with_the_request(
    logged: SidecarServer,
) -> None:
    request_id = "req-7f3a.b_c:d+e/f=" + "x" * (MAX_REQUEST_ID_CHARS - 19)
    assert len(request_id) == MAX_REQUEST_ID_CHARS
    with logged.client() as client:
        response = client.post(RETRIEVE, json=BODY, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    [line] = with_id(logged, request_id)
    assert line["event"] == "request"
    assert (line["method"], line["path"], line["status"]) == ("POST", RETRIEVE, 200)
    assert line["message"] == f"POST {RETRIEVE} 200"
    # milliseconds: a retrieve takes over 10 us, and (give or take the scheduler) no longer
    # than the client waited
    assert 0.01 < line["duration_ms"] < response.elapsed.total_seconds() * 1000 + 100
    assert line["degraded"] is False and "x-featurestore-degraded" not in response.headers
    assert line["api_key"] == KEY_NAME
    assert API_KEY not in logged.output()


@pytest.mark.parametrize(
    "presented",
    ["x" * (MAX_REQUEST_ID_CHARS + 1), "has space", 'quote"d', "new\tline", "é-accent", ""],
    ids=["too-long", "space", "quote", "tab", "non-ascii", "empty"],
)
def test_an_insane_request_id_is_replaced_by_a_generated_one(
    logged: SidecarServer, presented: str
) -> None:
    with logged.client() as client:
        response = client.post(
            RETRIEVE, json=BODY, headers={"X-Request-ID": presented.encode("utf-8")}
        )
    assert response.status_code == 200
    answered = response.headers["x-request-id"]
    assert GENERATED.fullmatch(answered) and answered != presented
    [line] = with_id(logged, answered)
    assert line["status"] == 200
    assert presented not in {line.get("request_id") for line in lines_of(logged)} - {None}


def test_without_a_header_each_request_gets_its_own_id(logged: SidecarServer) -> None:
    with logged.client() as client:
        ids = [client.post(RETRIEVE, json=BODY).headers["x-request-id"] for _ in range(5)]
    assert len(set(ids)) == 5 and all(GENERATED.fullmatch(i) for i in ids)


@pytest.mark.parametrize(
    ("method", "path", "key", "status", "key_name"),
    [
        ("GET", "/health", None, 200, None),
        ("GET", "/api/v1/registry", API_KEY, 200, KEY_NAME),
        ("GET", "/api/v1/registry", "wrong-key", 401, None),
        ("GET", "/nowhere", None, 404, None),
        ("POST", RETRIEVE, None, 401, None),
        ("POST", RETRIEVE, "wrong-key", 401, None),
        ("GET", RETRIEVE, API_KEY, 405, None),
    ],
)
def test_every_route_and_error_answers_and_logs_its_request_id(
    logged: SidecarServer,
    method: str,
    path: str,
    key: str | None,
    status: int,
    key_name: str | None,
) -> None:
    request_id = f"route-{method}-{status}-{uuid.uuid4().hex[:8]}"
    headers = {"X-Request-ID": request_id, **({"X-API-Key": key} if key else {})}
    with httpx.Client(base_url=logged.url, timeout=10) as client:
        response = client.request(
            method, path, headers=headers, json=BODY if method == "POST" else None
        )
    assert response.status_code == status
    assert response.headers["x-request-id"] == request_id
    [line] = with_id(logged, request_id)
    assert (line["method"], line["path"], line["status"]) == (method, path, status)
    assert line["api_key"] == key_name
    assert "wrong-key" not in logged.output()


def test_concurrent_requests_keep_their_own_ids(logged: SidecarServer) -> None:
    ids = [f"concurrent-{n:03d}" for n in range(40)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=logged.url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(RETRIEVE, json=BODY, headers={"X-Request-ID": request_id})
                    for request_id in ids
                )
            )

    responses = asyncio.run(send_all())
    assert [r.headers["x-request-id"] for r in responses] == ids
    for request_id in ids:
        assert len(with_id(logged, request_id)) == 1, request_id


def test_the_access_log_is_off_by_default_and_the_id_still_answered(
    tmp_path: Path, sqlite_url: str, manifest: Path
) -> None:
    with running_sidecar(tmp_path, sidecar_env(sqlite_url, manifest)) as server:
        with server.client() as client:
            for _ in range(3):
                response = client.post(RETRIEVE, json=BODY, headers={"X-Request-ID": "quiet-1"})
                assert response.headers["x-request-id"] == "quiet-1"
            assert client.get("/health").status_code == 200
        time.sleep(0.5)  # a line would follow its response
        assert access_lines(server) == []
        assert lines_of(server)  # the other lines are there


def test_the_access_log_is_sampled(tmp_path: Path, sqlite_url: str, manifest: Path) -> None:
    env = sidecar_env(sqlite_url, manifest, extra={"FEATURESTORE_ACCESS_LOG_SAMPLE": "0.25"})
    sent = 400
    with running_sidecar(tmp_path, env) as server:
        with server.client() as client:
            for _ in range(sent):
                assert client.get("/health").status_code == 200
        time.sleep(0.5)  # the last line follows its response
        written = len(access_lines(server))
    # binomial(400, 0.25): mean 100, standard deviation 8.7; outside 55..145 is over 5 sigma
    assert 55 <= written <= 145, written


def test_a_degraded_request_logs_its_store_warnings_with_its_id(
    tmp_path: Path, manifest: Path
) -> None:
    """The store is down (nothing listens on its port): each read fails, is logged as a
    warning while the request is served, and the answer is degraded."""
    env = sidecar_env(f"redis://127.0.0.1:{free_port()}/0", manifest)
    with running_sidecar(tmp_path, env, ["--access-log"]) as server:
        with server.client() as client:
            response = client.post(RETRIEVE, json=BODY, headers={"X-Request-ID": "down-1"})
        assert response.status_code == 200
        assert response.headers["x-featurestore-degraded"] == "1"
        assert response.headers["x-request-id"] == "down-1"
        with_id(server, "down-1")
        mine = [line for line in lines_of(server) if line.get("request_id") == "down-1"]
        warnings = [line for line in mine if line["level"] == "WARNING"]
        assert any(line["message"].startswith("store read failed") for line in warnings), mine
        [access] = [line for line in mine if line["logger"] == "sidecar.access"]
        assert access["degraded"] is True and access["api_key"] == KEY_NAME
        # the startup warning was logged outside any request: no id
        startup = [
            line for line in lines_of(server) if "not reachable at startup" in line["message"]
        ]
        assert startup and all("request_id" not in line for line in startup)


@pytest.mark.parametrize("sample", ["-0.1", "1.5", "half"])
def test_a_bad_sample_is_refused_with_one_line(
    tmp_path: Path, sqlite_url: str, manifest: Path, sample: str
) -> None:
    import subprocess
    import sys

    from tests.warehouse import REPO

    env = sidecar_env(sqlite_url, manifest, extra={"FEATURESTORE_ACCESS_LOG_SAMPLE": sample})
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "access-log-sample" in proc.stderr.lower() or "ACCESS_LOG_SAMPLE" in proc.stderr


def test_every_worker_logs_json_with_request_ids(
    tmp_path: Path, sqlite_url: str, manifest: Path
) -> None:
    """With ``--workers 2`` each worker process is configured by uvicorn from the same
    log_config: its lines are JSON and carry the request ids."""
    env = sidecar_env(sqlite_url, manifest)
    with running_sidecar(tmp_path, env, ["--workers", "2", "--access-log"]) as server:
        ids = [f"worker-{n}" for n in range(12)]
        for request_id in ids:  # a connection each: the kernel spreads them over the workers
            with server.client() as client:
                response = client.post(RETRIEVE, json=BODY, headers={"X-Request-ID": request_id})
                assert response.headers["x-request-id"] == request_id
        for request_id in ids:
            assert len(with_id(server, request_id)) == 1, request_id
        lines = lines_of(server)  # every line JSON, the workers' startup lines included
    workers = {line["message"] for line in lines if line["message"].startswith("Started server")}
    assert len(workers) == 2, workers  # "Started server process [pid]", one per worker
    assert any(line["message"].startswith("Started parent process") for line in lines)


# --- the id rule, alone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("presented", "kept"),
    [
        (b"a", True),
        (b"0123abcXYZ._:-+/=", True),
        (b"x" * MAX_REQUEST_ID_CHARS, True),
        (b"x" * (MAX_REQUEST_ID_CHARS + 1), False),
        (b"", False),
        (b"a b", False),
        (b"a\nb", False),
        (b"a;b", False),
        (b"caf\xc3\xa9", False),
        (None, False),
    ],
)
def test_request_context_keeps_only_sane_ids(presented: bytes | None, kept: bool) -> None:
    context = RequestContext(presented)
    assert (context.header == presented) is kept
    assert context.id == context.header.decode("ascii")
    if not kept:
        assert GENERATED.fullmatch(context.id)
