"""The multi-entity retrieve (contract C, the features form) end to end: the real server
(``python -m sidecar``) over HTTP against a real redis-server filled by the real loader from
the demo warehouse built by real dbt.

References: the warehouse's latest rows read with plain SQL (``warehouse_latest`` and
``expected_answer`` of the harness), and the single-entity answers of the same server for
the same keys. The one-round-trip claim is checked at the store (tests/online:
``test_a_read_of_several_entities_is_one_round_trip``, one socket write) and here by the
sidecar's own count of store reads: one per request, whatever the number of entities.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from tests.servers import RedisServer, redis_server
from tests.sidecar.harness import (
    NOW,
    Latest,
    SidecarServer,
    expected_answer,
    load_demo,
    metric,
    running_sidecar,
    same_answer,
    sidecar_env,
    variant_manifest,
    warehouse_latest,
)
from tests.warehouse import Warehouse

RETRIEVE = "/api/v1/features/retrieve"
USERS_ONLY_KEY = "multi-users-only-5d1e07"
#: features of three entities, in the order asked (the answer's order)
FEATURES = [
    "user_7d_transaction_count",
    "merchant_chargeback_rate_30d",
    "device_seen_before",
    "avg_order_value_90d",
    "merchant_1h_transaction_count",
]
VIEWS = {
    ("user",): ["user_transaction_features"],
    ("merchant",): ["merchant_chargeback_features", "merchant_transaction_features"],
    ("user", "device"): ["user_device_features"],
}
Reference = dict[str, dict[tuple[str, ...], Latest]]


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi-manifest") / "manifest.json"
    return variant_manifest(demo_warehouse.target_path / "manifest.json", out)


@pytest.fixture(scope="module")
def registry(manifest: Path) -> Registry:
    return load_registry(manifest)


@pytest.fixture(scope="module")
def reference(demo_warehouse: Warehouse, registry: Registry) -> Reference:
    """view -> key -> the warehouse's latest row (what the sidecar must serve at NOW)."""
    views = {registry.feature(name).view for name in FEATURES}
    return {view: warehouse_latest(demo_warehouse, registry.views[view]) for view in views}


@pytest.fixture(scope="module")
def auth_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("multi-auth") / "keys.yml"
    digest = hashlib.sha256(USERS_ONLY_KEY.encode()).hexdigest()
    path.write_text(
        f"api_keys:\n  - name: users-only\n    sha256: {digest}\n"
        "    entities: [user, user_device]\n"
    )
    return path


@pytest.fixture(scope="module")
def server(
    redis: RedisServer,
    demo_warehouse: Warehouse,
    manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    url = f"{redis.url}?namespace=mu{uuid.uuid4().hex[:8]}"
    with open_store(url) as store:
        store.initialize()
        load_demo(store, demo_warehouse)
    env = sidecar_env(url, manifest, extra={"FEATURESTORE_AUTH_CONFIG": str(auth_config)})
    with running_sidecar(tmp_path_factory.mktemp("multi-log"), env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: SidecarServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def rows_of(reference: Reference) -> list[dict[str, str]]:
    """``entities`` items over keys the warehouse has (and a few it has not), pairing users,
    their devices and merchants; one item repeated."""
    pairs = sorted(reference["user_device_features"])[:12]
    merchants = sorted(reference["merchant_chargeback_features"])[:5]
    rows = [
        {"user_id": user, "merchant_id": merchants[i % len(merchants)][0], "device_id": device}
        for i, (user, device) in enumerate(pairs)
    ]
    rows += [
        {"user_id": "usr_unknown", "merchant_id": merchants[0][0], "device_id": "dev_unknown"},
        {"user_id": pairs[0][0], "merchant_id": "mer_unknown", "device_id": pairs[1][1]},
    ]
    return [*rows, rows[2]]


def key_of(row: dict[str, str], columns: tuple[str, ...]) -> tuple[str, ...]:
    names = {"user": "user_id", "merchant": "merchant_id", "device": "device_id"}
    return tuple(row[names[c]] for c in columns)


def test_answers_equal_the_warehouse_and_the_single_entity_answers(
    client: httpx.Client, registry: Registry, reference: Reference
) -> None:
    rows = rows_of(reference)
    response = client.post(RETRIEVE, json={"features": FEATURES, "entities": rows})
    assert response.status_code == 200, response.text
    assert "x-featurestore-degraded" not in response.headers
    body = response.json()
    assert body["feature_service"] is None
    assert [result["entities"] for result in body["results"]] == rows
    statuses = set()
    for row, result in zip(rows, body["results"], strict=True):
        assert list(result["features"]) == FEATURES
        for name in FEATURES:
            feature = registry.feature(name)
            view = registry.views[feature.view]
            columns = next(c for c, vs in VIEWS.items() if view.name in vs)
            latest = reference[view.name].get(key_of(row, columns))
            want = expected_answer(latest, name, feature.default, view.ttl_seconds, NOW)
            got = result["features"][name]
            assert same_answer(got, want), (row, name, got, want)
            statuses.add((got["status"], got.get("reason")))
    assert {("PRESENT", None), ("DEFAULT", "NOT_FOUND")} <= statuses
    # the single-entity form of the same server, entity by entity, gives the same answers
    by_entity = {
        "user": (["user_7d_transaction_count", "avg_order_value_90d"], ["user_id"]),
        "merchant": (
            ["merchant_chargeback_rate_30d", "merchant_1h_transaction_count"],
            ["merchant_id"],
        ),
        "user_device": (["device_seen_before"], ["user_id", "device_id"]),
    }
    for entity, (features, columns) in by_entity.items():
        keys = [{c: row[c] for c in columns} for row in rows]
        single = client.post(
            RETRIEVE, json={"entity_name": entity, "entity_keys": keys, "features": features}
        ).json()["results"]
        for one, many in zip(single, body["results"], strict=True):
            assert one["features"] == {f: many["features"][f] for f in features}


def test_a_request_of_three_entities_is_one_store_read(
    client: httpx.Client, reference: Reference
) -> None:
    """Cold keys (no cache entry): the request's reads of three entities are one store read
    (one round trip; the breaker counts one), counted by the sidecar's own metrics."""
    users = sorted(reference["user_device_features"])[-6:]
    merchants = sorted(reference["merchant_chargeback_features"])[-6:]
    rows = [
        {"user_id": u, "device_id": d, "merchant_id": m[0]}
        for (u, d), m in zip(users, merchants, strict=True)
    ]

    def reads() -> float:
        text = client.get("/metrics").text
        return metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "ok"})

    before = reads()
    response = client.post(RETRIEVE, json={"features": FEATURES, "entities": rows})
    assert response.status_code == 200
    assert reads() - before == 1
    # the same through the single-entity form: one read per entity (three)
    before = reads()
    for entity, features, columns in [
        ("user", ["avg_order_value_90d"], ["user_id"]),
        ("merchant", ["merchant_chargeback_rate_30d"], ["merchant_id"]),
        ("user_device", ["device_seen_before"], ["user_id", "device_id"]),
    ]:
        keys = [{c: f"{row[c]}-x" for c in columns} for row in rows]  # cold keys again
        client.post(
            RETRIEVE, json={"entity_name": entity, "entity_keys": keys, "features": features}
        )
    assert reads() - before == 3


ROW = {"user_id": "usr_00000001", "merchant_id": "mer_000001", "device_id": "dev_1"}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"features": FEATURES, "entities": [ROW, {**ROW, "device_id": None}]}, 422, "INVALID_KEY",
         "entities[1].device_id"),
        ({"features": FEATURES, "entities": [ROW, {"user_id": "u", "device_id": "d"}]}, 422,
         "INVALID_KEY", "entities[1].merchant_id"),
        ({"features": ["avg_order_value_90d"], "entities": [ROW]}, 422, "INVALID_KEY",
         "entities[0].device_id"),
        ({"features": FEATURES, "entities": [ROW, ROW, ROW, "usr_1"]}, 422, "INVALID_KEY",
         "entities[3]"),
        ({"features": FEATURES, "entities": [{**ROW, "merchant_id": ""}]}, 422, "INVALID_KEY",
         "entities[0].merchant_id"),
        ({"features": FEATURES, "entities": []}, 422, "EMPTY_LIST", "entities"),
        ({"features": FEATURES, "entities": ROW}, 422, "INVALID_TYPE", "entities"),
        ({"features": [], "entities": [ROW]}, 422, "EMPTY_LIST", "features"),
        ({"features": [*FEATURES, "avg_order_valu_90d"], "entities": [ROW]}, 422,
         "UNKNOWN_FEATURE", "features[5]"),
        ({"features": ["user_7d_transaction_count", 3], "entities": [ROW]}, 422,
         "INVALID_TYPE", "features[1]"),
        ({"entities": [ROW]}, 422, "MISSING_FIELD", "features"),
        ({"features": FEATURES, "entities": [ROW], "extra": 1}, 422, "UNKNOWN_FIELD", "extra"),
        ({"features": FEATURES, "entities": [ROW] * 1001}, 422, "TOO_MANY_KEYS", "entities"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field(
    client: httpx.Client, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = client.post(RETRIEVE, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    if code == "INVALID_KEY":  # the message names the item and the column
        assert field in error["message"] or field.split(".")[0] in error["message"], error


def test_a_missing_message_names_the_entity_needing_it(client: httpx.Client) -> None:
    response = client.post(
        RETRIEVE, json={"features": FEATURES, "entities": [{"user_id": "u", "merchant_id": "m"}]}
    )
    message = response.json()["error"]["message"]
    assert "device_id" in message and "user_device" in message


def test_a_scoped_key_reads_only_its_entities(server: SidecarServer) -> None:
    with server.client(USERS_ONLY_KEY) as http:
        allowed = http.post(
            RETRIEVE,
            json={"features": ["avg_order_value_90d", "device_seen_before"], "entities": [
                {"user_id": "usr_1", "device_id": "d"}]},
        )  # fmt: skip
        assert allowed.status_code == 200, allowed.text
        denied = http.post(RETRIEVE, json={"features": FEATURES, "entities": [ROW]})
        assert denied.status_code == 403
        assert denied.json()["error"]["field"] == "features[1]"  # the first merchant feature
        # scope before existence: an unknown name is refused as outside the scope
        unknown = http.post(RETRIEVE, json={"features": ["no_such"], "entities": [ROW]})
        assert unknown.status_code == 403
    with server.client(None) as anonymous:
        assert (
            anonymous.post(RETRIEVE, json={"features": FEATURES, "entities": [ROW]}).status_code
            == 401
        )


def test_a_dead_store_is_answered_degraded_never_5xx(
    demo_warehouse: Warehouse, manifest: Path, registry: Registry, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis") as own:
        url = f"{own.url}?namespace=dead"
        with open_store(url) as store:
            store.initialize()
            load_demo(store, demo_warehouse, ["merchant_chargeback_features"])
        env = sidecar_env(url, manifest, extra={"FEATURESTORE_STORE_TIMEOUT_MS": "200"})
        with running_sidecar(tmp_path / "log", env) as running, running.client() as http:
            up = http.post(RETRIEVE, json={"features": FEATURES, "entities": [ROW]})
            assert up.status_code == 200 and "x-featurestore-degraded" not in up.headers
            own.kill()
            for _ in range(3):
                down = http.post(
                    RETRIEVE, json={"features": FEATURES, "entities": [{**ROW, "user_id": "u2"}]}
                )
                assert down.status_code == 200
                assert down.headers["x-featurestore-degraded"] == "1"
                answers = down.json()["results"][0]["features"]
                # the user and device were never cached: unavailable; the default when there is one
                for name in ("user_7d_transaction_count", "device_seen_before"):
                    assert answers[name]["reason"] == "STORE_UNAVAILABLE", answers[name]
                    default = registry.feature(name).default
                    assert answers[name]["status"] == ("MISSING" if default is None else "DEFAULT")
                    assert answers[name]["value"] == default
