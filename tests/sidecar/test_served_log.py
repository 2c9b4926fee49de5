"""The served-vector log (sidecar/served_log.py, contract featurestore/served_log.py):
sampled by entity key, written by a real sidecar to rotated JSON-lines files whose rows
equal what the responses said, bounded, and never failing a response."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from featurestore.registry import Registry, load_registry
from featurestore.served_log import FIELDS, FILE_GLOB, TEMP_SUFFIX, sampled, threshold
from sidecar.metrics import Metrics
from sidecar.served_log import ServedLog
from sidecar.settings import Settings, SettingsError
from tests.sidecar.harness import (
    NOW_TEXT,
    running_sidecar,
    sidecar_env,
    sqlite_demo_store,
)
from tests.warehouse import Warehouse

#: one worker runs the whole module: its module fixtures are built once
pytestmark = pytest.mark.xdist_group("served-log")


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> Path:
    return demo_warehouse.target_path / "manifest.json"


@pytest.fixture(scope="module")
def registry(manifest: Path) -> Registry:
    return load_registry(manifest)


@pytest.fixture(scope="module")
def store_url(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_demo_store(demo_warehouse, tmp_path_factory.mktemp("served-log"))


@pytest.fixture(scope="module")
def users(demo_warehouse: Warehouse, registry: Registry) -> list[str]:
    relation = registry.views["user_transaction_features"].relation
    return [
        str(r[0])
        for r in demo_warehouse.query(f"select distinct user_id from {relation} order by 1")
    ]


@pytest.fixture(scope="module")
def pairs(demo_warehouse: Warehouse, registry: Registry) -> list[tuple[str, str]]:
    relation = registry.views["user_device_features"].relation
    rows = demo_warehouse.query(f"select user_id, device_id from {relation} order by all limit 5")
    return [(str(u), str(d)) for u, d in rows]


def start(
    store_url: str, manifest: Path, workdir: Path, **settings: str
) -> Any:  # a context manager of SidecarServer
    env = sidecar_env(
        store_url, manifest, extra={f"FEATURESTORE_{k.upper()}": v for k, v in settings.items()}
    )
    return running_sidecar(workdir, env)


def read_log(directory: Path) -> list[dict[str, Any]]:
    assert not list(directory.glob("*" + TEMP_SUFFIX)), "a file left incomplete"
    rows = []
    for path in sorted(directory.glob(FILE_GLOB)):
        rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


def expected_rows(
    request: dict[str, Any], answer: dict[str, Any], columns: list[str], rate: float
) -> list[tuple[Any, ...]]:
    """The rows the contract says for one request, from its response (an independent
    computation of the sampling hash))."""
    out = []
    entity = request["entity_name"]
    for raw, result in zip(request["entity_keys"], answer["results"], strict=True):
        parts = [raw[c] for c in columns] if isinstance(raw, dict) else raw.split(":")
        token = ":".join(parts)
        mixed = (zlib.crc32("\x1f".join(parts).encode()) ^ zlib.crc32(entity.encode())) * 0x9E3779B1
        if mixed % 2**32 >= int(rate * 2**32):
            continue
        for feature, value in result["features"].items():
            out.append(
                (entity, token, json.dumps(dict(zip(columns, parts, strict=True))), feature,
                 json.dumps(value["value"]), value["status"], value.get("reason"))
            )  # fmt: skip
    return out


def as_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["entity"], r["entity_key"], json.dumps(r["keys"]), r["feature"], json.dumps(r["value"]),
         r["status"], r["reason"])
        for r in rows
    ]  # fmt: skip


# --- sampling (pure) ----------------------------------------------------------------------------


def test_sampling_is_by_entity_key_and_at_the_rate() -> None:
    keys = [(f"usr_{i:08d}",) for i in range(100_000)]
    for rate in (0.0, 0.01, 0.1, 0.5, 1.0):
        bound = threshold(rate)
        share = sum(sampled("user", key, bound) for key in keys) / len(keys)
        assert abs(share - rate) < 0.005, (rate, share)
    bound = threshold(0.5)
    assert [sampled("user", k, bound) for k in keys[:1000]] == [
        sampled("user", k, bound) for k in keys[:1000]
    ]
    # the entity is part of the hash: the same token of two entities is sampled independently
    other = sum(sampled("merchant", k, bound) != sampled("user", k, bound) for k in keys[:10_000])
    assert 4000 < other < 6000
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            threshold(bad)


def test_settings_refuse_a_bad_log_configuration(tmp_path: Path) -> None:
    base = {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k"}
    with pytest.raises(SettingsError, match="FEATURESTORE_SERVED_LOG_DIR is not"):
        Settings.from_env({**base, "FEATURESTORE_SERVED_LOG_RATE": "0.1"})
    with pytest.raises(SettingsError, match="between 0 and 1"):
        Settings.from_env(
            {
                **base,
                "FEATURESTORE_SERVED_LOG_RATE": "2",
                "FEATURESTORE_SERVED_LOG_DIR": str(tmp_path),
            }
        )
    with pytest.raises(SettingsError, match="FEATURESTORE_SERVED_LOG_BUFFER"):
        Settings.from_env({**base, "FEATURESTORE_SERVED_LOG_BUFFER": "0"})
    on = Settings.from_env(
        {
            **base,
            "FEATURESTORE_SERVED_LOG_RATE": "0.01",
            "FEATURESTORE_SERVED_LOG_DIR": str(tmp_path),
        }
    )
    assert (on.served_log_dir, on.served_log_rate) == (tmp_path, 0.01)
    assert Settings.from_env(base).served_log_dir is None  # off by default


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    """The queue's bound, with the writer held (a test subclass: pure queue logic)."""
    release = threading.Event()

    class Held(ServedLog):
        def _drain(self) -> None:
            release.wait()
            super()._drain()

    metrics = Metrics()
    served = Held(tmp_path, 1.0, metrics, max_queued=3)
    body = json.dumps(
        {
            "entity_name": "user",
            "results": [{"entity_key": "u1", "features": {"f": {"value": 1, "status": "PRESENT"}}}],
        },
        separators=(",", ":"),
    ).encode()
    at = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    for _ in range(10):
        served.offer(at, "user", ("user_id",), [("u1",)], body)
    assert metrics.served_log_dropped._value.get() >= 6  # at most 3 queued, one in hand
    release.set()
    served.close()
    kept = read_log(tmp_path)
    assert len(kept) + metrics.served_log_dropped._value.get() == 10
    assert metrics.served_log_rows._value.get() == len(kept)


# --- a real sidecar ------------------------------------------------------------------------------


def test_a_sidecar_logs_exactly_what_it_served(
    store_url: str,
    manifest: Path,
    registry: Registry,
    users: list[str],
    pairs: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "served"
    requests = [
        {"entity_name": "user", "entity_keys": [users[0], users[1], users[0], "usr_unknown"],
         "features": ["user_7d_transaction_count", "avg_order_value_90d",
                      "user_10m_transaction_count"]},
        {"entity_name": "user_device",
         "entity_keys": [{"user_id": pairs[0][0], "device_id": pairs[0][1]}, ":".join(pairs[1])],
         "features": ["device_seen_before"]},
        {"entity_name": "merchant", "entity_keys": ["mch_0001", "mch_0002"],
         "features": ["merchant_chargeback_rate_30d", "merchant_1h_transaction_count"]},
    ]  # fmt: skip
    answers = []
    with (
        start(
            store_url, manifest, tmp_path / "sc", served_log_dir=str(log_dir), served_log_rate="1"
        ) as server,
        server.client() as client,
    ):
        for request in requests:
            response = client.post("/api/v1/features/retrieve", json=request)
            assert response.status_code == 200
            answers.append(response.json())
    rows = read_log(log_dir)  # the sidecar stopped: every file complete
    expected: list[tuple[Any, ...]] = []
    for request, answer in zip(requests, answers, strict=True):
        columns = list(registry.entities[request["entity_name"]].keys)
        expected.extend(expected_rows(request, answer, columns, 1.0))
    assert Counter(as_tuples(rows)) == Counter(expected)
    assert all(list(row) == list(FIELDS) for row in rows)
    assert {row["request_at"] for row in rows} == {NOW_TEXT.replace("Z", ".000000Z")}
    # one request id per request, the same on all its rows
    ids = Counter(row["request_id"] for row in rows)
    assert len(ids) == len(requests)
    assert sorted(ids.values()) == sorted(
        len(expected_rows(r, a, list(registry.entities[r["entity_name"]].keys), 1.0))
        for r, a in zip(requests, answers, strict=True)
    )


def test_sampled_by_key_and_rotated_by_size(
    store_url: str, manifest: Path, registry: Registry, users: list[str], tmp_path: Path
) -> None:
    log_dir = tmp_path / "served"
    rate = 0.3
    features = ["user_7d_transaction_count", "avg_order_value_90d"]
    requests = [
        {"entity_name": "user", "entity_keys": users[i : i + 50], "features": features}
        for i in range(0, 200, 50)
    ]
    requests.append(requests[0])  # the same keys again: sampled alike
    settings = {
        "served_log_dir": str(log_dir),
        "served_log_rate": str(rate),
        "served_log_rotate_bytes": "4000",
    }
    with (
        start(store_url, manifest, tmp_path / "sc", **settings) as server,
        server.client() as client,
    ):
        answers = [client.post("/api/v1/features/retrieve", json=r).json() for r in requests]
    rows = read_log(log_dir)
    expected = [
        row
        for request, answer in zip(requests, answers, strict=True)
        for row in expected_rows(request, answer, ["user_id"], rate)
    ]
    assert Counter(as_tuples(rows)) == Counter(expected)
    logged = {row["entity_key"] for row in rows}
    assert 0.2 * 200 < len(logged) < 0.4 * 200  # about the rate, of 200 users
    files = sorted(log_dir.glob(FILE_GLOB))
    assert len(files) > 3  # rotated at 4,000 bytes (after a request's rows)


def test_a_lost_log_folder_fails_no_response(
    store_url: str, manifest: Path, users: list[str], tmp_path: Path
) -> None:
    log_dir = tmp_path / "served"
    request = {
        "entity_name": "user",
        "entity_keys": users[:20],
        "features": ["avg_order_value_90d"],
    }
    settings = {
        "served_log_dir": str(log_dir),
        "served_log_rate": "1",
        "served_log_rotate_after": "300ms",
    }
    with start(store_url, manifest, tmp_path / "sc", **settings) as server:
        with server.client() as client:
            first = client.post("/api/v1/features/retrieve", json=request)
            shutil.rmtree(log_dir)  # writes fail from now on (the open file is unlinked)
            time.sleep(0.1)
            again = [client.post("/api/v1/features/retrieve", json=request) for _ in range(3)]
            assert [r.status_code for r in [first, *again]] == [200] * 4
            assert all(r.json() == first.json() for r in again)
            deadline = time.monotonic() + 20
            while True:
                text = client.get("/metrics").text
                if "featurestore_sidecar_served_log_errors_total 0.0" not in text:
                    break
                assert time.monotonic() < deadline, "the failed write was not counted"
                client.post("/api/v1/features/retrieve", json=request)
                time.sleep(0.2)
        assert server.terminate() in (0, -15)  # uvicorn ends on the signal it got
    assert "served vectors not logged" in server.output() or "not completed" in server.output()


def test_only_the_sampled_results_are_parsed_whatever_the_values() -> None:
    """The writer slices a response at each result's start: a value or key holding the
    marker's text (escaped in JSON) does not move the cut."""
    from sidecar.served_log import _results

    tricky = '{"entity_key": "x", "features": {}}, ]}'
    results = [
        {"entity_key": {"user_id": "u,1", "device_id": tricky}, "features": {}},
        {
            "entity_key": "u2",
            "features": {
                "f": {"value": tricky, "timestamp": None, "status": "PRESENT"},
                "g": {"value": None, "timestamp": None, "status": "DEFAULT", "reason": "NULL"},
            },
        },
        {"entity_key": "u3", "features": {"f": {"value": 1.5, "status": "PRESENT"}}},
    ]
    body = json.dumps({"entity_name": "user", "results": results}, separators=(",", ":"))
    for positions in ([0], [1], [2], [0, 2], [0, 1, 2]):
        assert _results(body.encode(), positions) == {p: results[p] for p in positions}
