"""The sidecar end to end: the real server (``python -m sidecar``: uvicorn, uvloop, httptools)
over HTTP, against the embedded store (SQLite file), a real redis-server, a real local Redis
Cluster (six redis-server processes) and moto's DynamoDB server, each filled by the real
loader from the demo warehouse built by real dbt.

The reference is the warehouse itself: the latest row per entity of ``online_<view>``, read
with plain SQL, turned into the expected answer by hand (``sidecar_harness.expected_answer``:
PRESENT while feature_at + TTL > now, else the registered default or MISSING, with the
reason). The registry served is the demo manifest with two changes made here, so that every
status and value type is exercised: ``avg_order_value_90d`` has no default (so its null
values are MISSING) and an extra online view of the user entity, ``user_profile_features``
(string, float, boolean and timestamp features; TTL 1 day), whose records are written with
``store.write`` because the demo warehouse has no such model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore.online.layout import Record, entity_token
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from tests.sidecar.harness import (
    API_KEY,
    EPOCH,
    NOW,
    PROFILE,
    PROFILE_FEATURES,
    Latest,
    SidecarServer,
    expected_answer,
    iso_z,
    load_demo,
    load_sample,
    metric,
    running_sidecar,
    same_answer,
    sidecar_env,
    warehouse_latest,
)
from tests.warehouse import REPO, Warehouse

KINDS = ["sqlite", "redis", "redis-cluster", "dynamodb"]
ENTITY_VIEWS = {
    "user": "user_transaction_features",
    "merchant": "merchant_chargeback_features",
    "user_device": "user_device_features",
}
USERS_ONLY_KEY = "users-only-key-8c2e51"
ONE_FEATURE_KEY = "one-feature-key-93ab07"
DYNAMO_SAMPLE = "user_id like '%3'"
FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # later than any row of a history


# --- the registry variant and the profile records -----------------------------------------


def micros(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def profile_records(users: list[str]) -> dict[str, tuple[Record, Latest]]:
    """Records of the extra view (and the same as a reference row), some values null, one
    already past its 1-day TTL when written (so the store skips it)."""
    rng = random.Random(11)
    naive_now = NOW.replace(tzinfo=None)
    out: dict[str, tuple[Record, Latest]] = {}
    for index, user in enumerate(users):
        age = dt.timedelta(seconds=rng.randrange(1, 80_000), microseconds=rng.randrange(10**6))
        if index == 0:
            age = dt.timedelta(days=1, seconds=5)  # expired at write time
        feature_at = naive_now - age
        values: dict[str, Any] = {
            "user_segment": rng.choice(["gold", "silver", "new", None]),
            "user_risk_score": rng.choice([rng.random(), 0.0, -1.5e-7, None]),
            "user_is_vip": rng.choice([True, False, None]),
            "user_last_login_at": rng.choice([feature_at - dt.timedelta(minutes=3), None]),
        }
        ts = micros(feature_at)
        record = Record("user", (user,), PROFILE, ts, ts + 7, ts // 10**6 + 86_400, values)
        out[user] = (record, Latest(feature_at, values))
    return out


def expected_profile(latest: Latest | None, feature: str, now: dt.datetime) -> dict[str, Any]:
    answer = expected_answer(latest, feature, PROFILE_FEATURES[feature][1], 86_400, now)
    if answer["status"] == "PRESENT" and isinstance(answer["value"], dt.datetime):
        answer["value"] = iso_z(answer["value"])
    return answer


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest(demo_variant_manifest: Path) -> Path:
    """The demo warehouse's (built, not only parsed) variant manifest."""
    return demo_variant_manifest


@pytest.fixture(scope="module")
def registry(demo_variant_registry: Registry) -> Registry:
    return demo_variant_registry


Reference = dict[str, dict[tuple[str, ...], Latest]]
Profile = dict[str, tuple[Record, Latest]]


@pytest.fixture(scope="module")
def reference(demo_warehouse: Warehouse, registry: Registry) -> Reference:
    """view -> key -> the warehouse's latest row."""
    return {
        view: warehouse_latest(demo_warehouse, registry.views[view])
        for view in ENTITY_VIEWS.values()
    }


@pytest.fixture(scope="module")
def profile(reference: Reference) -> Profile:
    """user -> the extra view's record (and the same as a reference row)."""
    users = [key[0] for key in sorted(reference["user_transaction_features"])[:40]]
    return profile_records([*users, "usr_profile_only"])


@pytest.fixture(scope="module")
def auth_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sidecar-auth") / "keys.yml"
    users_only = hashlib.sha256(USERS_ONLY_KEY.encode()).hexdigest()
    one_feature = hashlib.sha256(ONE_FEATURE_KEY.encode()).hexdigest()
    path.write_text(
        f"api_keys:\n  - name: users-only\n    sha256: {users_only}\n    entities: [user]\n"
        f"  - name: one-feature\n    sha256: {one_feature}\n"
        "    features: [user_7d_transaction_count]\n"
    )
    return path


def fill(
    store_url: str,
    kind: str,
    demo_warehouse: Warehouse,
    registry: Registry,
    reference: Reference,
    profile: Profile,
    workdir: Path,
) -> set[tuple[str, ...]] | None:
    """Load the demo warehouse (DynamoDB: a sample) and write the extra view's records;
    returns the loaded keys when only a sample was loaded."""
    store = open_store(store_url)
    store.initialize()
    sample: set[tuple[str, ...]] | None = None
    try:
        if kind == "dynamodb":  # moto takes ~5 ms a record: a tenth of the users and pairs
            load_sample(
                store,
                demo_warehouse,
                registry,
                workdir,
                {
                    "user_transaction_features": DYNAMO_SAMPLE,
                    "merchant_chargeback_features": "true",
                    "user_device_features": DYNAMO_SAMPLE,
                },
            )
            sample = {
                key
                for view in ("user_transaction_features", "user_device_features")
                for key in reference[view]
                if key[0].endswith("3")
            } | set(reference["merchant_chargeback_features"])
        else:
            load_demo(store, demo_warehouse)
        store.write([record for record, _ in profile.values()], now=NOW)
    finally:
        store.close()
    return sample


Loaded = tuple[str, str, set[tuple[str, ...]] | None]


@pytest.fixture(scope="module")
def sqlite_loaded(
    demo_warehouse: Warehouse,
    registry: Registry,
    reference: Reference,
    profile: Profile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Loaded:
    workdir = tmp_path_factory.mktemp("sidecar-sqlite")
    url = f"sqlite:///{workdir / 'online.db'}"
    return "sqlite", url, fill(url, "sqlite", demo_warehouse, registry, reference, profile, workdir)


@pytest.fixture(scope="module")
def sqlite_sidecar(
    sqlite_loaded: Loaded,
    manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    """The SQLite-backed server: also the one the API, auth and fuzz tests use."""
    env = sidecar_env(sqlite_loaded[1], manifest, extra=serving_env(auth_config))
    with running_sidecar(tmp_path_factory.mktemp("sidecar-sqlite-log"), env) as server:
        yield server


@pytest.fixture(scope="module", params=KINDS)
def loaded(
    request: pytest.FixtureRequest,
    demo_warehouse: Warehouse,
    registry: Registry,
    reference: Reference,
    profile: Profile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Loaded:
    """(kind, store URL, the loaded keys if only a sample was loaded) per store kind."""
    kind: str = request.param
    if kind == "sqlite":
        sqlite: Loaded = request.getfixturevalue("sqlite_loaded")
        return sqlite
    workdir = tmp_path_factory.mktemp(f"sidecar-{kind}")
    if kind == "redis":
        url = f"{request.getfixturevalue('redis').url}?namespace=sc{uuid.uuid4().hex[:8]}"
    elif kind == "redis-cluster":  # 3 masters, 1 replica each
        url = f"{request.getfixturevalue('cluster').url}?namespace=sc{uuid.uuid4().hex[:8]}"
    else:
        url = request.getfixturevalue("moto").url(table=f"sc_{uuid.uuid4().hex[:8]}")
    return kind, url, fill(url, kind, demo_warehouse, registry, reference, profile, workdir)


@pytest.fixture(scope="module")
def sidecar(
    request: pytest.FixtureRequest,
    loaded: Loaded,
    manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    """The server over each kind of store."""
    kind, url, _ = loaded
    if kind == "sqlite":
        yield request.getfixturevalue("sqlite_sidecar")
        return
    env = sidecar_env(url, manifest, extra=serving_env(auth_config))
    with running_sidecar(tmp_path_factory.mktemp(f"sidecar-{kind}-log"), env) as server:
        yield server


def serving_env(auth_config: Path) -> dict[str, str]:
    """The suite's sidecar settings: its auth config, and the streamed view cached as long as
    the others (its default, 100 ms, would let entries expire between the requests of the
    cache tests on shared cores; that default is tested in test_settings.py)."""
    return {
        "FEATURESTORE_AUTH_CONFIG": str(auth_config),
        "FEATURESTORE_CACHE_TTL": "5s,user_transaction_features=5s",
    }


def retrieve(server: SidecarServer, body: Any, key: str | None = API_KEY) -> Any:
    with server.client(key) as client:
        return client.post("/api/v1/features/retrieve", json=body)


# --- values, statuses, order --------------------------------------------------------------------


def test_served_values_equal_the_warehouse(
    sidecar: SidecarServer,
    loaded: tuple[str, str, set[tuple[str, ...]] | None],
    registry: Registry,
    reference: Reference,
) -> None:
    """Every key of every entity (DynamoDB: the loaded sample and keys it lacks), shuffled,
    with repeats and unknown keys, in batches of at most 1000; every answer as expected."""
    kind, _, sample = loaded
    rng = random.Random(5)
    seen_statuses: set[tuple[str, str | None]] = set()
    with sidecar.client() as client:
        for entity, view_name in ENTITY_VIEWS.items():
            view = registry.views[view_name]
            rows = reference[view_name]
            keys = sorted(rows)
            if sample is not None:
                absent = [k for k in keys if k not in sample]
                keys = [k for k in keys if k in sample] + absent[:40]
            keys += [tuple(f"nope_{i}_{part}" for part in keys[0]) for i in range(10)]
            keys += rng.sample(keys, 25)  # repeated keys, answered at each position
            rng.shuffle(keys)
            features = list(view.feature_names())
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                sent: list[Any] = []
                for i, key in enumerate(batch):
                    if len(key) == 1:
                        sent.append(key[0])
                    elif i % 2:
                        sent.append(entity_token(key))
                    else:
                        sent.append(dict(zip(view.keys, key, strict=True)))
                response = client.post(
                    "/api/v1/features/retrieve",
                    json={"entity_name": entity, "entity_keys": sent, "features": features},
                )
                assert response.status_code == 200, response.text
                assert "x-featurestore-degraded" not in response.headers
                body = response.json()
                assert body["entity_name"] == entity
                assert [r["entity_key"] for r in body["results"]] == sent
                for key, result in zip(batch, body["results"], strict=True):
                    latest = rows.get(key)
                    if sample is not None and key not in sample:
                        latest = None
                    assert list(result["features"]) == features
                    for feature in features:
                        want = expected_answer(
                            latest, feature, registry.features[feature].default,
                            view.ttl_seconds, NOW,
                        )  # fmt: skip
                        got = result["features"][feature]
                        assert same_answer(got, want), (kind, key, feature, got, want)
                        seen_statuses.add((got["status"], got.get("reason")))
    # the demo data exercises these (MISSING/NULL: avg_order_value_90d has no default here)
    assert {("PRESENT", None), ("DEFAULT", "NOT_FOUND"), ("MISSING", "NULL")} <= seen_statuses
    assert ("DEFAULT", "NULL") in seen_statuses  # merchant_chargeback_rate_30d null, default 0.0


def test_requests_mixing_cached_and_uncached_keys(
    sidecar: SidecarServer,
    loaded: tuple[str, str, set[tuple[str, ...]] | None],
    registry: Registry,
    reference: Reference,
) -> None:
    """Keys cached by earlier requests beside keys read now, for one view and for two: the
    answers equal a request served all from the store, and none is degraded."""
    _, _, sample = loaded
    view = registry.views["user_transaction_features"]
    rows = reference["user_transaction_features"]
    users = [k for k in sorted(rows) if sample is None or k in sample][:12]
    features = list(view.feature_names())
    with sidecar.client() as client:

        def ask(keys: list[str], wanted: list[str]) -> Any:
            body = {"entity_name": "user", "entity_keys": keys, "features": wanted}
            response = client.post("/api/v1/features/retrieve", json=body)
            assert response.status_code == 200, response.text
            assert "x-featurestore-degraded" not in response.headers
            return response.json()["results"]

        first = [key[0] for key in users[:4]]
        for _ in range(2):  # cached from the second miss on
            ask(first, features)
        mixed = [key[0] for key in users] + ["usr_unknown"]
        for wanted in (features, [*features, "user_segment"]):
            for key, result in zip(mixed, ask(mixed, wanted), strict=True):
                for feature in features:
                    want = expected_answer(
                        rows.get((key,)), feature, registry.features[feature].default,
                        view.ttl_seconds, NOW,
                    )  # fmt: skip
                    assert same_answer(result["features"][feature], want), (key, feature)


def test_several_views_in_one_request_and_one_store_read(
    sidecar: SidecarServer,
    loaded: Loaded,
    registry: Registry,
    reference: Reference,
    profile: Profile,
) -> None:
    """Features of two views of the user entity in one request: one store read for the keys
    not cached; the second time the same (they are admitted to the cache on their second
    miss), none the third time (cache hits); every value typed as the registry says."""
    sample = loaded[2]
    users = list(profile)
    transactions = reference["user_transaction_features"]
    features = ["user_segment", "user_7d_transaction_count", "user_risk_score",
                "avg_order_value_90d", "user_is_vip", "user_last_login_at"]  # fmt: skip
    body = {"entity_name": "user", "entity_keys": [*users, "usr_unknown"], "features": features}
    with sidecar.client() as client:
        before = client.get("/metrics").text
        first = client.post("/api/v1/features/retrieve", json=body)
        admitted = client.post("/api/v1/features/retrieve", json=body)
        middle = client.get("/metrics").text
        second = client.post("/api/v1/features/retrieve", json=body)
        after = client.get("/metrics").text
    assert first.status_code == admitted.status_code == second.status_code == 200
    assert first.content == admitted.content == second.content
    reads = "featurestore_sidecar_store_reads_total"
    ok = {"outcome": "ok"}
    assert metric(middle, reads, ok) - metric(before, reads, ok) == 2
    assert metric(after, reads, ok) - metric(middle, reads, ok) == 0
    hits = "featurestore_sidecar_cache_lookups_total"
    assert (
        metric(after, hits, {"result": "hit"}) - metric(middle, hits, {"result": "hit"})
        == (len(users) + 1) * 2
    )
    statuses = set()
    for user, result in zip([*users, "usr_unknown"], first.json()["results"], strict=True):
        assert result["entity_key"] == user
        assert list(result["features"]) == features
        for feature in features:
            got = result["features"][feature]
            if feature in PROFILE_FEATURES:
                pair = profile.get(user)
                want = expected_profile(pair[1] if pair else None, feature, NOW)
            else:
                view = registry.views["user_transaction_features"]
                row = transactions.get((user,))
                if sample is not None and (user,) not in sample:
                    row = None  # DynamoDB: not in the loaded sample
                want = expected_answer(
                    row, feature, registry.features[feature].default, view.ttl_seconds, NOW
                )
            assert same_answer(got, want), (user, feature, got, want)
            statuses.add((got["status"], got.get("reason")))
    assert {("PRESENT", None), ("DEFAULT", "NULL"), ("MISSING", "NULL")} <= statuses
    assert ("MISSING", "NOT_FOUND") in statuses  # the record written past its TTL


def test_composite_keys_with_separators_inside_values(
    sidecar: SidecarServer, loaded: Loaded
) -> None:
    key = ("usr:odd%1", "dev{x}#2")
    feature_at = NOW.replace(tzinfo=None) - dt.timedelta(hours=2)
    ts = micros(feature_at)
    record = Record(
        "user_device", key, "user_device_features", ts, ts, ts // 10**6 + 3650 * 86_400,
        {"device_seen_before": True},
    )  # fmt: skip
    with open_store(loaded[1]) as store:
        store.write([record], now=NOW)
    other = entity_token((key[0], "dev"))
    sent = [entity_token(key), {"user_id": key[0], "device_id": key[1]}, other]
    response = retrieve(
        sidecar,
        {"entity_name": "user_device", "entity_keys": sent, "features": ["device_seen_before"]},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    want = {"value": True, "timestamp": iso_z(feature_at), "status": "PRESENT"}
    assert results[0]["features"]["device_seen_before"] == want
    assert results[1]["features"]["device_seen_before"] == want
    assert results[2]["features"]["device_seen_before"]["reason"] == "NOT_FOUND"


# --- TTL ----------------------------------------------------------------------------------------


def test_values_past_their_ttl_are_served_as_defaults(
    demo_warehouse: Warehouse,
    manifest: Path,
    registry: Registry,
    reference: Reference,
    tmp_path: Path,
) -> None:
    """The clock pinned exactly at one merchant's expiry (its last row's feature_at + 30 d):
    that merchant and everything older is DEFAULT/NOT_FOUND, anything younger PRESENT (the
    step valid then); the declared users' windows at that time (the rule at ``now``: counts
    decayed, a user whose tiles all left every window NOT_FOUND)."""
    url = f"sqlite:///{tmp_path / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
        load_demo(store, demo_warehouse, views=list(ENTITY_VIEWS.values())[:2])
    merchant_view = registry.views["merchant_chargeback_features"]
    last_rows = warehouse_latest(demo_warehouse, merchant_view, now=FAR_FUTURE)
    ttl = merchant_view.ttl_seconds
    pivot_key, pivot = sorted(last_rows.items(), key=lambda item: item[1].feature_at)[
        len(last_rows) // 2
    ]
    assert pivot.feature_at.microsecond == 0
    now = (pivot.feature_at + dt.timedelta(seconds=ttl)).replace(tzinfo=dt.UTC)
    env = sidecar_env(
        url, manifest, now=now.isoformat(), extra={"FEATURESTORE_OPEN_ENDPOINTS": "health,metrics"}
    )
    statuses: dict[str, set[str]] = {}
    with running_sidecar(tmp_path, env) as server:
        for entity in ("merchant", "user"):
            view = registry.views[ENTITY_VIEWS[entity]]
            rows = warehouse_latest(demo_warehouse, view, now=now)  # what is served at now
            keys = sorted(reference[view.name])[:1000]  # the loaded keys
            response = retrieve(
                server,
                {
                    "entity_name": entity,
                    "entity_keys": [k[0] for k in keys],
                    "features": list(view.feature_names()),
                },
            )
            assert response.status_code == 200
            for key, result in zip(keys, response.json()["results"], strict=True):
                for feature, got in result["features"].items():
                    default = registry.features[feature].default
                    want = expected_answer(rows.get(key), feature, default, view.ttl_seconds, now)
                    assert same_answer(got, want), (key, feature, got, want)
                    statuses.setdefault(entity, set()).add(got["status"])
                    if entity == "merchant" and key == pivot_key:
                        assert rows[key] == pivot  # its last row is the one valid at now
                        assert got["status"] != "PRESENT"  # exp == now: expired
        assert httpx_get(server, "/metrics", None).status_code == 200  # opened by config
    assert {"PRESENT", "DEFAULT"} <= statuses["merchant"]
    assert "PRESENT" in statuses["user"] and statuses["user"] - {"PRESENT"}


def httpx_get(server: SidecarServer, path: str, key: str | None = API_KEY) -> Any:
    with server.client(key) as client:
        return client.get(path)


# --- validation ---------------------------------------------------------------------------------

VALID = {"entity_name": "user", "entity_keys": ["usr_00000001"], "features": ["user_is_vip"]}


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


INVALID_BODIES: list[tuple[str, Any, int, str | None]] = [
    ("not an object", [1, 2], 422, "body"),
    ("unknown field", _with(entity="user"), 422, "entity"),
    ("missing features", {"entity_name": "user", "entity_keys": ["a"]}, 422, "features"),
    ("entity not a string", _with(entity_name=5), 422, "entity_name"),
    ("keys not a list", _with(entity_keys="usr_1"), 422, "entity_keys"),
    ("empty keys", _with(entity_keys=[]), 422, "entity_keys"),
    ("1001 keys", _with(entity_keys=[f"u{i}" for i in range(1001)]), 422, "entity_keys"),
    ("empty features", _with(features=[]), 422, "features"),
    ("feature not a string", _with(features=["user_is_vip", 3]), 422, "features[1]"),
    ("unknown entity", _with(entity_name="usr"), 422, "entity_name"),
    ("unknown feature", _with(features=["user_is_vip", "user_7d_txn"]), 422, "features[1]"),
    ("feature of another entity", _with(features=["merchant_chargeback_rate_30d"]), 422,
     "features[0]"),
    ("key is a number", _with(entity_keys=["a", 7]), 422, "entity_keys[1]"),
    ("key is empty", _with(entity_keys=[""]), 422, "entity_keys[0]"),
    ("key too long", _with(entity_keys=["u" * 257]), 422, "entity_keys[0]"),
    ("key null", _with(entity_keys=[None]), 422, "entity_keys[0]"),
    ("composite key with 3 parts",
     {"entity_name": "user_device", "entity_keys": ["a:b:c"],
      "features": ["device_seen_before"]}, 422, "entity_keys[0]"),
    ("composite key object lacking a column",
     {"entity_name": "user_device", "entity_keys": [{"user_id": "a"}],
      "features": ["device_seen_before"]}, 422, "entity_keys[0]"),
]  # fmt: skip


def test_invalid_requests_get_4xx_naming_the_field(sqlite_sidecar: SidecarServer) -> None:
    with sqlite_sidecar.client() as client:
        for name, body, status, field in INVALID_BODIES:
            response = client.post("/api/v1/features/retrieve", json=body)
            assert response.status_code == status, (name, response.text)
            error = response.json()["error"]
            assert error["field"] == field, (name, error)
            assert error["message"] and error["code"]
        raw = [
            (b"{not json", 400, "body"),
            (b"", 400, "body"),
            (b'{"entity_name": "user", "entity_keys": ["a"], "features": ["x"]' + b" " * 2_000_000
             + b"}", 413, "body"),
        ]  # fmt: skip
        for content, status, field in raw:
            response = client.post(
                "/api/v1/features/retrieve",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == status, response.text
            assert response.json()["error"]["field"] == field
        for method, path, status in [
            ("GET", "/api/v1/features/retrieve", 405),
            ("POST", "/nowhere", 404),
        ]:
            response = client.request(method, path)
            assert response.status_code == status
            assert response.json()["error"]["code"] in {"METHOD_NOT_ALLOWED", "NOT_FOUND"}


def test_body_over_the_limit_without_content_length(sqlite_sidecar: SidecarServer) -> None:
    """A chunked body is counted as it arrives and refused once over the limit."""
    chunk = b"[" + b"1," * 100_000
    with socket.create_connection(("127.0.0.1", sqlite_sidecar.port), timeout=10) as sock:
        head = (
            "POST /api/v1/features/retrieve HTTP/1.1\r\nHost: x\r\n"
            f"X-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for _ in range(10):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server may answer and close before the client is done
        status, body = read_response(sock)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "BODY_TOO_LARGE"


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body


# --- auth ---------------------------------------------------------------------------------------


def test_api_keys_and_scopes(sqlite_sidecar: SidecarServer) -> None:
    body = {
        "entity_name": "user",
        "entity_keys": ["usr_00000001"],
        "features": ["user_7d_transaction_count"],
    }
    merchant = {
        "entity_name": "merchant",
        "entity_keys": ["m1"],
        "features": ["merchant_chargeback_rate_30d"],
    }
    assert retrieve(sqlite_sidecar, body, key=None).status_code == 401
    assert retrieve(sqlite_sidecar, body, key="wrong-key").status_code == 401
    assert retrieve(sqlite_sidecar, body, key=API_KEY[:-1]).status_code == 401
    assert retrieve(sqlite_sidecar, body, key=API_KEY).status_code == 200
    # two keys (which one counts would depend on the proxies in between): refused
    with httpx.Client(base_url=sqlite_sidecar.url, timeout=10) as client:
        two = [("X-API-Key", "wrong-key"), ("X-API-Key", API_KEY)]
        for response in (
            client.post("/api/v1/features/retrieve", json=body, headers=two),
            client.get("/api/v1/registry", headers=two),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["message"] == "more than one X-API-Key header"
    # entity scope
    assert retrieve(sqlite_sidecar, body, key=USERS_ONLY_KEY).status_code == 200
    denied = retrieve(sqlite_sidecar, merchant, key=USERS_ONLY_KEY)
    assert denied.status_code == 403 and denied.json()["error"]["field"] == "entity_name"
    cross = {**body, "features": ["user_7d_transaction_count", "merchant_chargeback_rate_30d"]}
    assert retrieve(sqlite_sidecar, cross, key=USERS_ONLY_KEY).status_code == 403
    # an unknown entity is out of scope too: the key learns nothing beyond its scope
    assert (
        retrieve(sqlite_sidecar, {**merchant, "entity_name": "nope"}, USERS_ONLY_KEY).status_code
        == 403
    )
    # feature scope
    assert retrieve(sqlite_sidecar, body, key=ONE_FEATURE_KEY).status_code == 200
    more = {**body, "features": ["user_7d_transaction_count", "avg_order_value_90d"]}
    denied = retrieve(sqlite_sidecar, more, key=ONE_FEATURE_KEY)
    assert denied.status_code == 403 and denied.json()["error"]["field"] == "features[1]"
    # the registry shows a scoped key only its scope; it always needs a key
    assert httpx_get(sqlite_sidecar, "/api/v1/registry", None).status_code == 401
    scoped = httpx_get(sqlite_sidecar, "/api/v1/registry", ONE_FEATURE_KEY).json()
    assert list(scoped["features"]) == ["user_7d_transaction_count"]
    users = httpx_get(sqlite_sidecar, "/api/v1/registry", USERS_ONLY_KEY).json()
    assert set(users["entities"]) == {"user"}
    # health and ready are open by default, metrics and openapi are not
    assert httpx_get(sqlite_sidecar, "/health", None).status_code == 200
    assert httpx_get(sqlite_sidecar, "/ready", None).status_code == 200
    assert httpx_get(sqlite_sidecar, "/metrics", None).status_code == 401
    assert httpx_get(sqlite_sidecar, "/openapi.json", None).status_code == 401
    assert httpx_get(sqlite_sidecar, "/metrics", "wrong").status_code == 401
    # keys never appear in the server's output
    output = sqlite_sidecar.output()
    for secret in (API_KEY, USERS_ONLY_KEY, ONE_FEATURE_KEY, "wrong-key"):
        assert secret not in output


# --- the other endpoints ------------------------------------------------------------------------


def test_registry_endpoint_describes_the_registry(
    sqlite_sidecar: SidecarServer, registry: Registry
) -> None:
    body = httpx_get(sqlite_sidecar, "/api/v1/registry").json()
    assert set(body["entities"]) == set(registry.entities)
    assert body["entities"]["user_device"]["keys"] == ["user_id", "device_id"]
    assert set(body["features"]) == set(registry.features)
    for name, feature in registry.features.items():
        view = registry.views[feature.view]
        described = body["features"][name]
        assert described["type"] == feature.value_type
        assert described["default"] == feature.default
        assert described["entity"] == view.entity.name
        assert described["owner"] == view.owner
        assert described["ttl_seconds"] == view.ttl_seconds
        assert described["freshness_sla_seconds"] == view.freshness_sla_seconds
    assert body["feature_views"][PROFILE]["ttl"] == "1d"
    assert body["limits"]["max_keys"] == 1000


def test_health_ready_metrics_and_openapi(sqlite_sidecar: SidecarServer) -> None:
    route = {"route": "/api/v1/features/retrieve", "method": "POST"}
    count = "featurestore_sidecar_request_duration_seconds_count"

    def responses(text: str, status: str) -> float:
        labels = {"route": "/api/v1/features/retrieve", "status": status}
        return metric(text, "featurestore_sidecar_responses_total", labels)

    with sqlite_sidecar.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and ready["circuit"] == "closed"
        before = client.get("/metrics").text
        answer = client.post("/api/v1/features/retrieve", json=VALID).json()
        served = answer["results"][0]["features"]["user_is_vip"]["status"]
        client.post("/api/v1/features/retrieve", json={"entity_name": 1})
        client.post("/api/v1/features/retrieve", json=VALID, headers={"X-API-Key": "wrong"})
        assert client.get("/api/v1/features/retrieve").status_code == 405
        text = client.get("/metrics").text
        document = client.get("/openapi.json").json()
    # each request counted exactly once, whichever way it was answered
    assert metric(text, count, route) - metric(before, count, route) == 3
    for status, sent in (("200", 1), ("422", 1), ("401", 1), ("405", 1)):
        assert responses(text, status) - responses(before, status) == sent, status
    assert metric(text, "featurestore_sidecar_feature_values_total", {"status": served}) > 0
    assert "featurestore_sidecar_cache_lookups_total" in text
    assert "featurestore_sidecar_store_errors_total" in text
    assert metric(text, "featurestore_sidecar_degraded") == 0
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/v1/features/retrieve", "/api/v1/registry", "/health", "/ready", "/metrics",
        "/openapi.json",
    }  # fmt: skip


def test_schemathesis_finds_no_server_error(sqlite_sidecar: SidecarServer, tmp_path: Path) -> None:
    """Fuzz the OpenAPI document (positive and negative data, every schemathesis check:
    no 5xx, status codes and bodies as documented, invalid data rejected, auth enforced)."""
    st = Path(sys.executable).parent / "st"
    proc = subprocess.run(
        [
            str(st), "run", f"{sqlite_sidecar.url}/openapi.json",
            "-H", f"X-API-Key: {API_KEY}",
            "--checks", "all",
            "--max-examples", "100",
            "--seed", "20260501",
            "--workers", "1",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        # request_data's length (one object per entities item): tests/sidecar/schemathesis_hooks.py
        env={**os.environ, "PYTHONPATH": str(REPO),
             "SCHEMATHESIS_HOOKS": "tests.sidecar.schemathesis_hooks"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout, proc.stdout[-3000:]
    assert " 5xx" not in proc.stdout
