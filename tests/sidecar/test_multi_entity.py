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

import copy
import hashlib
import json
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
    SidecarServer,
    expected_answer,
    load_demo,
    metric,
    redis_demo_store,
    running_sidecar,
    same_answer,
    sidecar_env,
    warehouse_latest,
)
from tests.sidecar.test_serving import Reference, manifest, registry
from tests.warehouse import Warehouse

__all__ = ["manifest", "registry"]  # the serving suite's fixtures, used here

RETRIEVE = "/api/v1/features/retrieve"
USERS_ONLY_KEY = "multi-users-only-5d1e07"
SERVICES_ONLY_KEY = "multi-fraud-only-0b77c2"
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


@pytest.fixture(scope="module")
def reference(demo_warehouse: Warehouse, registry: Registry) -> Reference:
    """view -> key -> the warehouse's latest row (what the sidecar must serve at NOW)."""
    views = {registry.feature(name).view for name in FEATURES}
    return {view: warehouse_latest(demo_warehouse, registry.views[view]) for view in views}


@pytest.fixture(scope="module")
def auth_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("multi-auth") / "keys.yml"
    digest = hashlib.sha256(USERS_ONLY_KEY.encode()).hexdigest()
    services_only = hashlib.sha256(SERVICES_ONLY_KEY.encode()).hexdigest()
    path.write_text(
        f"api_keys:\n  - name: users-only\n    sha256: {digest}\n"
        "    entities: [user, user_device]\n"
        f"  - name: fraud-only\n    sha256: {services_only}\n"
        "    feature_services: [fraud_model_v1]\n"
    )
    return path


@pytest.fixture(scope="module")
def store_url(redis: RedisServer, demo_warehouse: Warehouse) -> str:
    """A namespace of the session's redis-server holding the demo warehouse's load."""
    return redis_demo_store(redis.url, "mu", demo_warehouse)


@pytest.fixture(scope="module")
def server(
    store_url: str,
    manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    url = store_url
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


# --- feature services ----------------------------------------------------------------------

SERVICE = "fraud_model_v1"
EDGE = "edge_model_v1"
#: the extra service of this module's manifest: request fields of every JSON type, and
#: expressions dividing by a stored rate that is often 0
EDGE_META = {
    "features": ["merchant_chargeback_rate_30d", "user_7d_transaction_count",
                 "avg_order_value_90d"],
    "request_fields": {"amount": "float", "n": "int", "flag": "bool"},
    "request_features": [
        {"name": "amount_over_rate", "expression": "request.amount / merchant_chargeback_rate_30d",
         "description": "division by a rate that may be 0"},
        {"name": "count_plus_n", "expression":
            "case when request.flag then user_7d_transaction_count + request.n "
            "else coalesce(request.n, -1) end", "description": "case, coalesce, ints"},
        {"name": "amount_over_avg", "expression": "request.amount / avg_order_value_90d",
         "description": "as fraud_model_v1's"},
    ],
}  # fmt: skip


def edge_value(name: str, stored: dict[str, Any], request: dict[str, Any]) -> Any:
    """The edge service's request-time features computed by hand (SQL nulls, x/0 null)."""
    amount, n, flag = request.get("amount"), request.get("n"), request.get("flag")
    if name == "count_plus_n":
        count = stored["user_7d_transaction_count"]
        if flag is True:
            return None if count is None or n is None else count + n
        return -1 if n is None else n
    divisor = stored["merchant_chargeback_rate_30d" if name == "amount_over_rate" else
                    "avg_order_value_90d"]  # fmt: skip
    if amount is None or divisor is None or divisor == 0:
        return None
    return amount / divisor


@pytest.fixture(scope="module")
def service_manifest(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's manifest plus :data:`EDGE`, a copy of fraud_model_v1's exposure."""
    document = json.loads(manifest.read_text())
    exposures = document["exposures"]
    (fraud_id,) = [k for k, e in exposures.items() if e["name"] == SERVICE]
    edge = copy.deepcopy(exposures[fraud_id])
    edge["name"] = EDGE
    edge["unique_id"] = fraud_id.replace(SERVICE, EDGE)
    edge["meta"] = {"featurestore": EDGE_META}
    edge.get("config", {}).pop("meta", None)
    exposures[edge["unique_id"]] = edge
    out = tmp_path_factory.mktemp("multi-services") / "manifest.json"
    out.write_text(json.dumps(document))
    assert set(load_registry(out).feature_services) == {SERVICE, EDGE}
    return out


@pytest.fixture(scope="module")
def service_server(
    store_url: str,
    service_manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    """A second server on the same (loaded) Redis, serving :func:`service_manifest`."""
    env = sidecar_env(
        store_url, service_manifest, extra={"FEATURESTORE_AUTH_CONFIG": str(auth_config)}
    )
    with running_sidecar(tmp_path_factory.mktemp("multi-service-log"), env) as running:
        yield running


def service_data(count: int) -> list[dict[str, Any]]:
    """Request data per item: a number, null, 0, left out, an integer, negative."""
    cycle: list[dict[str, Any]] = [
        {"amount": 120.5}, {"amount": None}, {"amount": 0}, {}, {"amount": 7}, {"amount": -3.25},
    ]  # fmt: skip
    return [cycle[i % len(cycle)] for i in range(count)]


def test_a_feature_service_answers_its_stored_then_request_time_features(
    service_server: SidecarServer, service_manifest: Path, reference: Reference
) -> None:
    service = load_registry(service_manifest).feature_service(SERVICE)
    rows = rows_of(reference)
    data = service_data(len(rows))
    with service_server.client() as http:
        response = http.post(
            RETRIEVE, json={"feature_service": SERVICE, "entities": rows, "request_data": data}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        # the stored features: the features form's answers for the same rows
        stored = http.post(RETRIEVE, json={"features": list(service.features), "entities": rows})
    assert body["feature_service"] == SERVICE
    assert [r["entities"] for r in body["results"]] == rows
    seen = set()
    for result, plain, request in zip(body["results"], stored.json()["results"], data, strict=True):
        assert list(result["features"]) == list(service.feature_names())
        assert {f: result["features"][f] for f in service.features} == plain["features"]
        values = {f: answer["value"] for f, answer in plain["features"].items()}
        want = edge_value("amount_over_avg", values, request)
        got = result["features"]["amount_over_avg_90d"]
        if want is None:
            assert got == {"value": None, "timestamp": None, "status": "MISSING", "reason": "NULL"}
        else:
            assert got == {"value": pytest.approx(want, rel=1e-12), "timestamp": None,
                           "status": "PRESENT"}  # fmt: skip
        seen.add((want is None, request.get("amount"), values["avg_order_value_90d"] is None))
    # null amount, amount 0, a missing field and a null (unknown user) average all occurred
    assert {(True, None, False), (False, 0, False)} <= seen, seen
    assert any(null and amount is not None and no_avg for null, amount, no_avg in seen), seen


def test_request_time_features_divide_by_zero_and_take_every_type(
    service_server: SidecarServer, reference: Reference
) -> None:
    merchants = reference["merchant_chargeback_features"]
    zero = [k[0] for k, row in merchants.items() if row.values["merchant_chargeback_rate_30d"] == 0]
    other = [k[0] for k, row in merchants.items() if row.values["merchant_chargeback_rate_30d"]]
    assert zero and other  # the demo data has both
    users = [k[0] for k in sorted(reference["user_transaction_features"])[:3]] + ["usr_unknown"]
    rows, data = [], []
    requests = [
        {"amount": 10.0, "n": 2, "flag": True}, {"amount": 10, "n": None, "flag": True},
        {"amount": 0.5, "n": 5, "flag": False}, {"flag": None}, {"amount": None, "n": -7},
    ]  # fmt: skip
    for i, request in enumerate(requests * 2):
        merchant = (zero if i % 2 else other)[i % 3 % max(1, len(zero if i % 2 else other))]
        rows.append({"user_id": users[i % len(users)], "merchant_id": merchant})
        data.append(request)
    with service_server.client() as http:
        response = http.post(
            RETRIEVE, json={"feature_service": EDGE, "entities": rows, "request_data": data}
        )
    assert response.status_code == 200, response.text
    outcomes = set()
    for result, request in zip(response.json()["results"], data, strict=True):
        answers = result["features"]
        values = {f: answers[f]["value"] for f in EDGE_META["features"]}
        for name in ("amount_over_rate", "count_plus_n", "amount_over_avg"):
            want = edge_value(name, values, request)
            got = answers[name]
            assert got["status"] == ("MISSING" if want is None else "PRESENT"), (name, got, want)
            assert got["value"] == (None if want is None else pytest.approx(want, rel=1e-12))
            if name == "count_plus_n" and want is not None:
                assert type(got["value"]) is int
            outcomes.add((name, want is None))
        if values["merchant_chargeback_rate_30d"] == 0 and request.get("amount") is not None:
            assert answers["amount_over_rate"]["value"] is None  # x / 0 is null
            outcomes.add(("division by zero", True))
    assert ("division by zero", True) in outcomes and ("amount_over_rate", False) in outcomes


SERVICE_ROW = {"user_id": "usr_1", "merchant_id": "mer_1", "device_id": "dev_1"}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"feature_service": "fraud_model_v2", "entities": [SERVICE_ROW]},
         "UNKNOWN_FEATURE_SERVICE", "feature_service"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW] * 2,
          "request_data": [{"amount": 1}, {"amount": "12"}]}, "INVALID_TYPE",
         "request_data[1].amount"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW],
          "request_data": [{"amount": True}]}, "INVALID_TYPE", "request_data[0].amount"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW],
          "request_data": [{"amout": 1}]}, "UNKNOWN_FIELD", "request_data[0].amout"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW] * 2,
          "request_data": [{"amount": 1}]}, "INVALID_LENGTH", "request_data"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW], "request_data": [3]},
         "INVALID_TYPE", "request_data[0]"),
        ({"feature_service": SERVICE, "features": FEATURES, "entities": [SERVICE_ROW]},
         "INVALID_BODY", "features"),
        ({"feature_service": SERVICE, "entities": [{"user_id": "u", "merchant_id": "m"}]},
         "INVALID_KEY", "entities[0].device_id"),
        ({"feature_service": SERVICE, "entities": [{**SERVICE_ROW, "shop_id": "s"}]},
         "INVALID_KEY", "entities[0].shop_id"),
        ({"features": FEATURES, "entities": [SERVICE_ROW], "request_data": [{}]},
         "UNKNOWN_FIELD", "request_data"),
        ({"feature_service": 7, "entities": [SERVICE_ROW]}, "INVALID_TYPE", "feature_service"),
        ({"feature_service": SERVICE, "entities": [SERVICE_ROW], "request_data": None},
         "INVALID_TYPE", "request_data"),
    ],
)  # fmt: skip
def test_bad_service_requests_name_the_field(
    client: httpx.Client, body: dict[str, Any], code: str, field: str
) -> None:
    response = client.post(RETRIEVE, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    if code == "UNKNOWN_FEATURE_SERVICE":
        assert "did you mean 'fraud_model_v1'" in error["message"]


def test_service_scopes(service_server: SidecarServer) -> None:
    body = {"feature_service": SERVICE, "entities": [SERVICE_ROW]}
    with service_server.client(SERVICES_ONLY_KEY) as fraud_only:
        assert fraud_only.post(RETRIEVE, json=body).status_code == 200
        # its service only: not the features directly, not another service
        direct = fraud_only.post(RETRIEVE, json={"features": FEATURES[:1], "entities": [ROW]})
        assert direct.status_code == 403
        other = fraud_only.post(RETRIEVE, json={**body, "feature_service": EDGE})
        assert (other.status_code, other.json()["error"]["field"]) == (403, "feature_service")
        unknown = fraud_only.post(RETRIEVE, json={**body, "feature_service": "nope"})
        assert unknown.status_code == 403  # scope before existence
        document = fraud_only.get("/api/v1/registry").json()
        assert list(document["feature_services"]) == [SERVICE]
        assert document["features"] == {}
        assert document["feature_services"][SERVICE]["keys"] == [
            "user_id", "merchant_id", "device_id"
        ]  # fmt: skip
    with service_server.client(USERS_ONLY_KEY) as users_only:  # a merchant feature: refused
        denied = users_only.post(RETRIEVE, json=body)
        assert (denied.status_code, denied.json()["error"]["field"]) == (403, "feature_service")
        assert users_only.get("/api/v1/registry").json()["feature_services"] == {}
    with service_server.client() as unscoped:
        assert set(unscoped.get("/api/v1/registry").json()["feature_services"]) == {SERVICE, EDGE}


def test_request_time_values_equal_the_warehouses_training_values(
    client: httpx.Client, demo_warehouse: Warehouse, reference: Reference
) -> None:
    """Parity: the same declaration evaluated by the sidecar (compile_python over the served
    values) and by the warehouse (get_historical_features(feature_service=...): to_sql over
    the as-of joined values), for one spine row per entities item at the serving time.
    Compared where both sides joined the same average (the stored values' own online/offline
    agreement is the skew check's business); those rows must be most of them and include a
    null amount, an amount of 0 and a null average."""
    import pandas as pd

    from featurestore.historical import get_historical_features
    from tests.warehouse import REPO

    rows = rows_of(reference)[:-1]
    data = service_data(len(rows))
    response = client.post(
        RETRIEVE, json={"feature_service": SERVICE, "entities": rows, "request_data": data}
    )
    assert response.status_code == 200
    served = response.json()["results"]
    spine = pd.DataFrame(
        [
            {**row, "event_timestamp": NOW.replace(tzinfo=None), "amount": request.get("amount")}
            for row, request in zip(rows, data, strict=True)
        ]
    )
    spine["amount"] = spine["amount"].astype("float64")
    with pytest.MonkeyPatch.context() as patch:
        demo_warehouse.use(patch)
        training = get_historical_features(spine, feature_service=SERVICE, project_dir=REPO)
    compared = []
    for result, (_, row) in zip(served, training.iterrows(), strict=True):
        average = result["features"]["avg_order_value_90d"]["value"]
        offline = row["avg_order_value_90d"]
        offline = None if pd.isna(offline) else float(offline)
        if (average is None) != (offline is None) or (
            average is not None and offline is not None and abs(average - offline) > 1e-9
        ):
            continue  # the stored value differs online and offline: not this comparison's
        online_value = result["features"]["amount_over_avg_90d"]["value"]
        warehouse_value = row["amount_over_avg_90d"]
        warehouse_value = None if pd.isna(warehouse_value) else float(warehouse_value)
        if online_value is None:
            assert warehouse_value is None, (result, row.to_dict())
        else:
            assert warehouse_value == pytest.approx(online_value, rel=1e-12), (result, row)
        amount = row["amount"]
        compared.append((None if pd.isna(amount) else amount, average is None))
    assert len(compared) >= len(rows) * 3 // 4, (len(compared), len(rows))
    amounts = {amount for amount, _ in compared}
    assert None in amounts and 0 in amounts and any(no_avg for _, no_avg in compared), compared
