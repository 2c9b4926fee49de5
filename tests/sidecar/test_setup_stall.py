"""The real sidecar (``python -m sidecar``) reading a password-protected Redis, database 2,
through :class:`tests.servers.TcpProxy`: the network stalls while the sidecar sets up its
connection (AUTH and SELECT sent, no answer), then heals with the stalled connections
blackholed (their packets lost for good, new connections pass). The sidecar answers
``STORE_UNAVAILABLE`` within its budget during the stall, and ``PRESENT`` again within
about one connect timeout of the heal, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from featurestore.online.urls import open_store
from featurestore.registry import load_registry
from tests.servers import Healing, redis_server, tcp_proxy
from tests.sidecar.harness import load_demo, running_sidecar, sidecar_env, warehouse_latest
from tests.warehouse import Warehouse

VIEW = "user_transaction_features"
PASSWORD = "sidecar-stall-pw"
#: RedisStore's connect timeout (the default: store URLs do not set it)
CONNECT_TIMEOUT = 2.0
BUDGET_MS = 100
COOLDOWN_MS = 300


def statuses(response: httpx.Response) -> set[tuple[str, str | None]]:
    return {
        (answer["status"], answer.get("reason"))
        for result in response.json()["results"]
        for answer in result["features"].values()
    }


@pytest.mark.parametrize("healing", ["blackhole", "drop"])
def test_a_stall_during_connection_setup_recovers_without_a_restart(
    demo_warehouse: Warehouse, tmp_path: Path, healing: Healing
) -> None:
    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    view = registry.views[VIEW]
    rows = warehouse_latest(demo_warehouse, view)
    full = sorted(
        (key for key, row in rows.items() if None not in row.values.values()),
        key=lambda key: rows[key].feature_at,
    )
    keys = [key[0] for key in full[-5:]]  # all PRESENT at the pinned clock
    body = {"entity_name": "user", "entity_keys": keys, "features": list(view.feature_names())}
    with redis_server(tmp_path / "redis", password=PASSWORD) as redis:
        with open_store(f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/2") as store:
            load_demo(store, demo_warehouse, views=[VIEW])
        with tcp_proxy(redis.port) as proxy:
            env = sidecar_env(
                f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/2",
                demo_warehouse.target_path / "manifest.json",
                extra={
                    "FEATURESTORE_STORE_TIMEOUT_MS": str(BUDGET_MS),
                    "FEATURESTORE_BREAKER_COOLDOWN_MS": str(COOLDOWN_MS),
                    "FEATURESTORE_CACHE_TTL": "0",  # every request reads the store
                },
            )
            with running_sidecar(tmp_path / "sidecar", env) as server, server.client() as client:
                url = "/api/v1/features/retrieve"
                assert statuses(client.post(url, json=body)) == {("PRESENT", None)}
                proxy.freeze()
                # the open connection times out (silent) and is closed; the next requests
                # connect again and their set-up stalls, for longer than a connect timeout
                latencies = []
                stall_ends = time.monotonic() + 1.5 * CONNECT_TIMEOUT
                while time.monotonic() < stall_ends:
                    started = time.monotonic()
                    response = client.post(url, json=body)
                    latencies.append(time.monotonic() - started)
                    assert response.status_code == 200
                    assert statuses(response) == {("DEFAULT", "STORE_UNAVAILABLE")}
                    assert response.headers["x-featurestore-degraded"] == "1"
                    time.sleep(0.05)
                assert proxy.connections >= 2  # a new connection's set-up was caught too
                proxy.heal(healing)
                healed = time.monotonic()
                while True:
                    response = client.post(url, json=body)
                    assert response.status_code == 200
                    if statuses(response) == {("PRESENT", None)}:
                        break
                    assert time.monotonic() - healed < 15, "never recovered"
                    time.sleep(0.02)
                recovery = time.monotonic() - healed
                assert client.get("/ready").status_code == 200
    # every answer during the stall came within the budget (plus a loaded host's slack)
    assert max(latencies) < BUDGET_MS / 1000 + 0.5, latencies
    # the stalled attempt is abandoned within a connect timeout, then the circuit's next
    # trial (at most a cool-down later) connects again
    assert recovery < CONNECT_TIMEOUT + COOLDOWN_MS / 1000 + 0.5, recovery
    print(f"recovered {recovery:.2f} s after the heal ({healing})")
