"""The sidecar when things go wrong: a Redis that hangs (SIGSTOP) or dies (SIGKILL) while
requests flow, and comes back; graceful shutdown with a request in flight; several workers;
bad configuration at startup. Real processes throughout: redis-server, ``python -m sidecar``."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from tests.servers import RedisServer, redis_server
from tests.sidecar.harness import (
    API_KEY,
    NOW,
    Latest,
    expected_answer,
    load_demo,
    metric,
    running_sidecar,
    same_answer,
    sidecar_env,
    start_sidecar,
    warehouse_latest,
)
from tests.warehouse import REPO, Warehouse

USER_VIEW = "user_transaction_features"
MERCHANT_VIEW = "merchant_chargeback_features"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (it gets killed)."""
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def demo_registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


def ask(client: httpx.Client, entity: str, keys: list[str], registry: Registry) -> httpx.Response:
    view = registry.views[USER_VIEW if entity == "user" else MERCHANT_VIEW]
    body = {"entity_name": entity, "entity_keys": keys, "features": list(view.feature_names())}
    return client.post("/api/v1/features/retrieve", json=body)


def check_values(
    response: httpx.Response,
    keys: list[str],
    rows: dict[tuple[str, ...], Latest],
    registry: Registry,
    view: str,
) -> None:
    """Every answer equals the warehouse's latest value (all PRESENT for these keys)."""
    assert response.status_code == 200
    assert "x-featurestore-degraded" not in response.headers
    ttl = registry.views[view].ttl_seconds
    for key, result in zip(keys, response.json()["results"], strict=True):
        for feature, got in result["features"].items():
            want = expected_answer(
                rows[(key,)], feature, registry.features[feature].default, ttl, NOW
            )
            assert same_answer(got, want), (key, feature, got, want)
            assert got["status"] == "PRESENT"


def present_keys(rows: dict[tuple[str, ...], Latest], count: int) -> list[str]:
    """The most recent keys without a null value (all PRESENT at NOW)."""
    full = [key for key, row in rows.items() if None not in row.values.values()]
    full.sort(key=lambda key: rows[key].feature_at)
    return [key[0] for key in full[-count:]]


def all_unavailable(response: httpx.Response) -> bool:
    return response.headers.get("x-featurestore-degraded") == "1" and all(
        answer["status"] == "DEFAULT" and answer["reason"] == "STORE_UNAVAILABLE"
        for result in response.json()["results"]
        for answer in result["features"].values()
    )


def test_redis_hang_and_crash_are_answered_and_recovered(
    own_redis: RedisServer,
    demo_warehouse: Warehouse,
    demo_registry: Registry,
    tmp_path: Path,
) -> None:
    registry = demo_registry
    store = open_store(own_redis.url)
    load_demo(store, demo_warehouse, views=[USER_VIEW, MERCHANT_VIEW])
    users_rows = warehouse_latest(demo_warehouse, registry.views[USER_VIEW])
    merchant_rows = warehouse_latest(demo_warehouse, registry.views[MERCHANT_VIEW])
    users = present_keys(users_rows, 20)
    merchants = present_keys(merchant_rows, 10)
    manifest = demo_warehouse.target_path / "manifest.json"
    env = sidecar_env(
        own_redis.url,
        manifest,
        extra={
            "FEATURESTORE_STORE_TIMEOUT_MS": "200",
            "FEATURESTORE_STORE_THREADS": "4",
            "FEATURESTORE_BREAKER_FAILURES": "3",
            "FEATURESTORE_BREAKER_COOLDOWN_MS": "300",
            # users are never cached (every request needs the store), merchants are
            "FEATURESTORE_CACHE_TTL": f"0,{MERCHANT_VIEW}=120s",
        },
    )
    with running_sidecar(tmp_path / "sidecar", env) as server, server.client() as client:
        check_values(ask(client, "user", users, registry), users, users_rows, registry, USER_VIEW)
        for _ in range(2):  # merchants enter the cache on their second miss
            check_values(
                ask(client, "merchant", merchants, registry), merchants, merchant_rows,
                registry, MERCHANT_VIEW,
            )  # fmt: skip

        # --- 1. Redis hangs: answers within the budget, the event loop stays free --------
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            latencies = []
            health = []
            for _ in range(12):
                started = time.perf_counter()
                response = ask(client, "user", users, registry)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200 and all_unavailable(response)
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                health.append(time.perf_counter() - started)
            cached = ask(client, "merchant", merchants, registry)  # the cache still answers
            check_values(cached, merchants, merchant_rows, registry, MERCHANT_VIEW)
            not_ready = client.get("/ready")
            text = client.get("/metrics").text
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        # Redis' socket timeout is 5 s: no request waited for it
        assert max(latencies) < 1.5, latencies
        assert statistics.median(latencies) < 0.15, latencies  # the circuit opened
        assert max(health) < 0.5, health
        assert not_ready.status_code == 503
        assert metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "timeout"}) >= 3
        assert (
            metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "circuit_open"}) > 0
        )
        assert metric(text, "featurestore_sidecar_degraded_responses_total") >= 12
        wait_until_present(client, users, registry)

        # --- 2. Redis dies while requests flow -----------------------------------------
        log: list[tuple[float, str, httpx.Response | BaseException]] = []
        stop = threading.Event()

        def flow() -> None:
            with server.client() as flow_client:
                while not stop.is_set():
                    for entity, keys in (("user", users), ("merchant", merchants)):
                        started = time.monotonic()
                        try:
                            log.append((started, entity, ask(flow_client, entity, keys, registry)))
                        except BaseException as exc:  # a transport error is a failure too
                            log.append((started, entity, exc))

        thread = threading.Thread(target=flow)
        thread.start()
        try:
            time.sleep(0.3)
            own_redis.kill()
            killed_at = time.monotonic()
            time.sleep(1.2)
            during = client.get("/metrics").text
            ready_during = client.get("/ready").status_code
        finally:
            stop.set()
            thread.join(timeout=30)
        after_kill = [(entity, r) for started, entity, r in log if started > killed_at]
        assert len(after_kill) >= 10
        for _, _, outcome in log:
            assert isinstance(outcome, httpx.Response), outcome
            assert outcome.status_code == 200
        for entity, outcome in after_kill:
            assert isinstance(outcome, httpx.Response)
            if entity == "user":
                assert all_unavailable(outcome), outcome.text[:500]
            else:  # still cached: real values, not degraded
                check_values(outcome, merchants, merchant_rows, registry, MERCHANT_VIEW)
        assert ready_during == 503
        assert metric(during, "featurestore_sidecar_degraded") == 1
        assert metric(during, "featurestore_sidecar_circuit_state") in (1, 2)

        # --- 3. Redis comes back (same port, reloaded): PRESENT again, same sidecar ------
        own_redis.start()
        with open_store(own_redis.url) as fresh:
            load_demo(fresh, demo_warehouse, views=[USER_VIEW, MERCHANT_VIEW])
        response = wait_until_present(client, users, registry)
        check_values(response, users, users_rows, registry, USER_VIEW)
        assert client.get("/ready").status_code == 200
        text = client.get("/metrics").text
        assert metric(text, "featurestore_sidecar_circuit_state") == 0
        assert metric(text, "featurestore_sidecar_degraded") == 0
        assert metric(text, "featurestore_sidecar_responses_total", {"status": "500"}) == 0
    store.close()


def wait_until_present(
    client: httpx.Client, users: list[str], registry: Registry, timeout: float = 15
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = ask(client, "user", users, registry)
        assert response.status_code == 200
        statuses = {
            answer["status"]
            for result in response.json()["results"]
            for answer in result["features"].values()
        }
        if statuses == {"PRESENT"} and "x-featurestore-degraded" not in response.headers:
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"values did not come back: {response.text[:500]}")
        time.sleep(0.1)


# --- graceful shutdown ----------------------------------------------------------------------


def test_shutdown_lets_the_request_in_flight_finish(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    """SIGTERM while a request's body is half sent: the server stops accepting connections
    but answers that request in full, then exits."""
    url = f"sqlite:///{tmp_path / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
    env = sidecar_env(url, demo_warehouse.target_path / "manifest.json")
    server = start_sidecar(tmp_path, env)
    try:
        body = json.dumps(
            {
                "entity_name": "user",
                "entity_keys": ["usr_00000001"],
                "features": ["user_7d_transaction_count"],
            }
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                (
                    "POST /api/v1/features/retrieve HTTP/1.1\r\nHost: x\r\n"
                    f"X-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body[:20]
            )
            time.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.proc.poll() is None  # still finishing the request
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            sock.sendall(body[20:])
            reply = b""
            while not reply.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
        payload = json.loads(reply.partition(b"\r\n\r\n")[2])
        answer = payload["results"][0]["features"]["user_7d_transaction_count"]
        assert answer == {"value": 0, "timestamp": None, "status": "DEFAULT", "reason": "NOT_FOUND"}
        # uvicorn re-raises the signal it handled once it is done: killed by SIGTERM, cleanly
        assert server.proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Finished server process" in server.output()
    finally:
        server.terminate()


# --- several workers ------------------------------------------------------------------------


def test_several_workers_share_metrics(
    demo_warehouse: Warehouse, demo_registry: Registry, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
        load_demo(store, demo_warehouse, views=[MERCHANT_VIEW])
    rows = warehouse_latest(demo_warehouse, demo_registry.views[MERCHANT_VIEW])
    merchants = present_keys(rows, 5)
    env = sidecar_env(url, demo_warehouse.target_path / "manifest.json")
    with running_sidecar(tmp_path, env, ["--workers", "2"]) as server:
        # the port answers once one worker is up: wait for the other (a busy host starts it
        # seconds later), so that the requests can land on both
        deadline = time.monotonic() + 60
        while server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        sent = 12
        for _ in range(sent):
            with server.client() as client:  # a new connection each time
                response = ask(client, "merchant", merchants, demo_registry)
                check_values(response, merchants, rows, demo_registry, MERCHANT_VIEW)
        with server.client() as client:
            text = client.get("/metrics").text
        labels = {"route": "/api/v1/features/retrieve", "status": "200"}
        assert metric(text, "featurestore_sidecar_responses_total", labels) == sent
        assert server.output().count("Application startup complete") == 2


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_changes", "message", "code"),
    [
        ([], {"FEATURESTORE_API_KEYS": ""}, "no API key configured", 1),
        (["--cache-ttl", "5s,no_such_view=1s"], {}, "'no_such_view'", 1),
        (["--manifest", "/nonexistent/manifest.json"], {}, "run `dbt parse`", 1),
        (["--online", "mysql://x"], {}, "unsupported online store URL", 2),
        (["--online", "redis://127.0.0.1:63x79/0"], {}, "port must be a number", 2),
        (["--online", "redis://u:pw@127.0.0.1:65536/0"], {}, "got '65536'", 2),
        (["--now", "yesterday"], {}, "FEATURESTORE_NOW", 1),
    ],
)
def test_bad_configuration_fails_at_startup(
    demo_warehouse: Warehouse,
    args: list[str],
    env_changes: dict[str, str],
    message: str,
    code: int,
) -> None:
    env = sidecar_env("sqlite:///unused.db", demo_warehouse.target_path / "manifest.json")
    env.update(env_changes)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--port", "1", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert API_KEY not in proc.stderr + proc.stdout and "pw@" not in proc.stderr
