"""featurestore.client against the real sidecar (``python -m sidecar``) over HTTP, on a real
redis-server loaded from the demo warehouse by the real loader.

The references: the raw HTTP answer of the same request (httpx, by hand), and the
warehouse's latest rows read with plain SQL turned into the expected answer by hand
(:func:`tests.sidecar.harness.expected_answer`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pandas as pd
import pytest

from featurestore.client import (
    AsyncFeatureClient,
    AuthenticationError,
    FeatureClient,
    FeatureStoreError,
    InvalidRequestError,
    OnlineFeatures,
    PermissionDeniedError,
)
from featurestore.registry import Registry
from tests.client.conftest import USERS_ONLY_KEY
from tests.sidecar.harness import (
    API_KEY,
    NOW,
    Latest,
    SidecarServer,
    expected_answer,
    iso_z,
    metric,
    warehouse_latest,
)
from tests.warehouse import Warehouse

ENTITY_VIEWS = {
    "user": "user_transaction_features",
    "merchant": "merchant_chargeback_features",
    "user_device": "user_device_features",
}
#: registry value type -> the pandas dtype of its column
DTYPES = {"int": "Int64", "float": "Float64", "bool": "boolean", "string": "string"}

Reference = dict[str, dict[tuple[str, ...], Latest]]


@pytest.fixture(scope="module")
def reference(demo_warehouse: Warehouse, demo_variant_registry: Registry) -> Reference:
    return {
        view: warehouse_latest(demo_warehouse, demo_variant_registry.views[view])
        for view in ENTITY_VIEWS.values()
    }


def raw_retrieve(server: SidecarServer, body: Any, key: str | None = API_KEY) -> httpx.Response:
    with server.client(key) as http:
        return http.post("/api/v1/features/retrieve", json=body)


def as_sent(answer: OnlineFeatures) -> list[dict[str, Any]]:
    """The client's rows back in the wire form, to compare with a raw answer."""
    out = []
    for row in answer.rows:
        features = {}
        for name, got in row.features.items():
            wire: dict[str, Any] = {
                "value": got.value,
                "timestamp": None if got.timestamp is None else iso_z(_naive(got.timestamp)),
                "status": got.status,
            }
            if got.reason is not None:
                wire["reason"] = got.reason
            features[name] = wire
        key_field = "entity_key" if answer.entity is not None else "entities"
        out.append({key_field: row.key, "features": features})
    return out


def _naive(moment: dt.datetime) -> dt.datetime:
    assert moment.tzinfo is not None and moment.utcoffset() == dt.timedelta(0)
    return moment.replace(tzinfo=None)


def sample_keys(
    rows: Mapping[tuple[str, ...], Latest], columns: Sequence[str], count: int, seed: int
) -> list[Any]:
    """``count`` known keys, three unknown ones and two repeats, shuffled; a composite key
    as an object."""
    rng = random.Random(seed)
    keys = rng.sample(sorted(rows), count)
    keys += [tuple(f"nope_{i}_{c}" for c in columns) for i in range(3)]
    keys += [keys[0], keys[1]]
    rng.shuffle(keys)
    return [k[0] if len(k) == 1 else dict(zip(columns, k, strict=True)) for k in keys]


# --- values --------------------------------------------------------------------------------------


def test_values_equal_the_raw_answer_and_the_warehouse(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    """Every entity (a composite one addressed by key objects), known, unknown and repeated
    keys: the client's rows are the raw HTTP answer's, and the warehouse's expected answer
    (value with its JSON type, timestamp, status, reason)."""
    seen: set[tuple[str, str | None]] = set()
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        for entity, view_name in ENTITY_VIEWS.items():
            view = demo_variant_registry.views[view_name]
            features = list(view.feature_names())
            keys = sample_keys(reference[view_name], view.keys, 40, seed=len(entity))
            answer = client.get_features(entity, keys, features)
            raw = raw_retrieve(sidecar, {"entity_name": entity, "entity_keys": keys,
                                         "features": features})  # fmt: skip
            assert raw.status_code == 200, raw.text
            assert answer.entity == entity and answer.feature_service is None
            assert answer.features == tuple(features)
            assert answer.keys == keys
            assert not answer.degraded
            assert as_sent(answer) == raw.json()["results"]
            for row in answer.rows:
                key = (row.key,) if isinstance(row.key, str) else tuple(row.key.values())
                for name in features:
                    feature = demo_variant_registry.features[name]
                    want = expected_answer(
                        reference[view_name].get(key), name, feature.default,
                        view.ttl_seconds, NOW,
                    )  # fmt: skip
                    got = row.features[name]
                    assert got.value == want["value"] and type(got.value) is type(want["value"])
                    assert got.status == want["status"]
                    assert got.reason == want.get("reason")
                    assert (got.timestamp and iso_z(_naive(got.timestamp))) == want["timestamp"]
                    seen.add((got.status, got.reason))
    assert {("PRESENT", None), ("DEFAULT", "NOT_FOUND"), ("MISSING", "NOT_FOUND")} <= seen


def test_null_values_are_missing_with_reason_null(
    sidecar: SidecarServer, reference: Reference
) -> None:
    """avg_order_value_90d has no default in this registry: a user whose value is null is
    MISSING (NULL), with the record's timestamp; another feature of the same key PRESENT."""
    rows = reference["user_transaction_features"]
    nulls = sorted(k[0] for k, row in rows.items() if row.values["avg_order_value_90d"] is None)
    assert nulls, "the demo data has a user whose avg_order_value_90d is null"
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        answer = client.get_features(
            "user", nulls[:3], ["avg_order_value_90d", "user_7d_transaction_count"]
        )
    for row in answer.rows:
        null = row.features["avg_order_value_90d"]
        assert (null.value, null.status, null.reason) == (None, "MISSING", "NULL")
        assert null.timestamp is not None
        assert row.features["user_7d_transaction_count"].status == "PRESENT"
    assert answer.statuses() == [
        {"avg_order_value_90d": "MISSING", "user_7d_transaction_count": "PRESENT"}
    ] * len(answer.rows)


def test_multi_entity_features_equal_the_raw_and_the_single_entity_answers(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    """Contract C's features form: features of user, merchant and user_device per row of
    key columns (known and unknown values, a repeated row): the raw HTTP answer, and per
    feature the single-entity answer of its entity's key; one row per entities object."""
    rng = random.Random(21)
    pairs = rng.sample(sorted(reference["user_device_features"]), 12)
    merchants = sorted(reference["merchant_chargeback_features"])
    rows = [
        {"user_id": user, "merchant_id": rng.choice(merchants)[0], "device_id": device}
        for user, device in pairs
    ]
    rows += [{"user_id": "usr_nope", "merchant_id": "mer_nope", "device_id": "dev_nope"}, rows[0]]
    features = [
        "merchant_chargeback_rate_30d",
        "user_7d_transaction_count",
        "device_seen_before",
        "avg_order_value_90d",
    ]
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        answer = client.get_multi_entity_features(rows, features)
        raw = raw_retrieve(sidecar, {"features": features, "entities": rows})
        assert raw.status_code == 200, raw.text
        assert answer.entity is None and answer.feature_service is None
        assert answer.features == tuple(features) and answer.keys == rows
        assert as_sent(answer) == raw.json()["results"]
        singles = {
            "user": client.get_features("user", [r["user_id"] for r in rows], features[1:2]
                                        + features[3:]),
            "merchant": client.get_features("merchant", [r["merchant_id"] for r in rows],
                                            features[:1]),
            "user_device": client.get_features("user_device", [
                {"user_id": r["user_id"], "device_id": r["device_id"]} for r in rows
            ], features[2:3]),
        }  # fmt: skip
    for position, row in enumerate(answer.rows):
        for name, got in row.features.items():
            entity = demo_variant_registry.views[
                demo_variant_registry.features[name].view
            ].entity.name
            assert got == singles[entity].rows[position].features[name], (position, name)
    frame = answer.to_pandas()
    assert list(frame.index.names) == ["user_id", "merchant_id", "device_id"]
    assert list(frame.index) == [tuple(r.values()) for r in rows]
    assert list(frame.columns) == features


SERVICE = "fraud_model_v1"


def test_feature_service_answers(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    """Contract C's service form: the raw HTTP answer; the stored features equal the
    features form's answer; the request-time feature equal to an independent division
    (amount / the served 90-day average: null when either is null or the average is 0,
    then MISSING with reason NULL; no timestamp); the sync and async forms agree."""
    service = demo_variant_registry.feature_service(SERVICE)
    stored = list(service.features)
    assert [f.name for f in service.request_features] == ["amount_over_avg_90d"]
    rng = random.Random(33)
    pairs = rng.sample(sorted(reference["user_device_features"]), 10)
    merchants = sorted(reference["merchant_chargeback_features"])
    rows = [
        {"user_id": user, "merchant_id": rng.choice(merchants)[0], "device_id": device}
        for user, device in pairs
    ]
    zero_or_null = [  # users whose 90-day average is null (no default here: MISSING)
        k[0]
        for k, row in reference["user_transaction_features"].items()
        if row.values["avg_order_value_90d"] in (None, 0)
    ]
    rows += [{"user_id": u, "merchant_id": "mer_nope", "device_id": "dev_nope"}
             for u in zero_or_null[:2]]  # fmt: skip
    rows.append({"user_id": "usr_nope", "merchant_id": "mer_nope", "device_id": "dev_nope"})
    amounts: list[Any] = [120.5, 0.0, None, 3, 1e-9]
    request_data = [{"amount": amounts[i % len(amounts)]} for i in range(len(rows))]
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        answer = client.get_feature_service(SERVICE, rows, request_data)
        plain = client.get_multi_entity_features(rows, stored)
    raw = raw_retrieve(
        sidecar, {"feature_service": SERVICE, "entities": rows, "request_data": request_data}
    )
    assert raw.status_code == 200, raw.text
    assert as_sent(answer) == raw.json()["results"]
    assert answer.feature_service == SERVICE and answer.entity is None
    assert answer.features == (*stored, "amount_over_avg_90d")
    assert answer.keys == rows
    seen = set()
    for row, stored_row, data in zip(answer.rows, plain.rows, request_data, strict=True):
        assert {n: row.features[n] for n in stored} == dict(stored_row.features)
        amount, average = data["amount"], row.features["avg_order_value_90d"].value
        got = row.features["amount_over_avg_90d"]
        assert got.timestamp is None
        if amount is None or average is None or average == 0:
            assert (got.value, got.status, got.reason) == (None, "MISSING", "NULL")
        else:
            assert (got.value, got.status, got.reason) == (amount / average, "PRESENT", None)
        seen.add(got.status)
    assert seen == {"PRESENT", "MISSING"}
    frame = answer.to_pandas()
    assert list(frame.columns) == [*stored, "amount_over_avg_90d"]
    assert list(frame.index.names) == ["user_id", "merchant_id", "device_id"]
    assert str(frame["amount_over_avg_90d"].dtype) == "Float64"

    async def run() -> OnlineFeatures:
        async with AsyncFeatureClient(sidecar.url, api_key=API_KEY) as client:
            return await client.get_feature_service(SERVICE, rows, request_data)

    assert asyncio.run(run()) == answer


def test_feature_service_errors(sidecar: SidecarServer) -> None:
    """An unknown service (did-you-mean), a wrongly typed request field, a key without the
    service in its scope: the server's errors, raised."""
    row = {"user_id": "usr_1", "merchant_id": "mer_1", "device_id": "dev_1"}
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        with pytest.raises(InvalidRequestError) as unknown:
            client.get_feature_service("fraud_model_v2", [row])
        with pytest.raises(InvalidRequestError) as typed:
            client.get_feature_service(SERVICE, [row], [{"amount": "12"}])
    assert (unknown.value.code, unknown.value.field) == ("UNKNOWN_FEATURE_SERVICE",
                                                         "feature_service")  # fmt: skip
    assert SERVICE in unknown.value.message  # the suggestion
    assert typed.value.status == 422 and typed.value.field == "request_data[0].amount"
    client = FeatureClient(sidecar.url, api_key=USERS_ONLY_KEY)
    with client, pytest.raises(PermissionDeniedError) as denied:
        client.get_feature_service(SERVICE, [row])
    assert denied.value.status == 403


# --- DataFrames ----------------------------------------------------------------------------------


def test_dataframe_rows_columns_and_dtypes(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    """One row per key in request order (repeats and unknown keys kept), one column per
    feature in request order, the nullable dtype of each feature's registry type, values
    and statuses equal to the plain rows."""
    view = demo_variant_registry.views["user_transaction_features"]
    features = list(reversed(view.feature_names()))
    keys = sample_keys(reference[view.name], view.keys, 25, seed=3)
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        answer = client.get_features("user", keys, features)
    frame = answer.to_pandas()
    assert frame.shape == (len(keys), len(features))
    assert list(frame.index) == keys and frame.index.name == "entity_key"
    assert list(frame.columns) == features
    for name in features:
        assert str(frame[name].dtype) == DTYPES[demo_variant_registry.features[name].value_type], (
            name
        )
    for position, row in enumerate(answer.to_dicts()):
        for name, value in row.items():
            cell = frame.iloc[position][name]
            assert (cell is pd.NA) if value is None else (cell == value), (position, name)
    statuses = answer.statuses_to_pandas()
    assert statuses.shape == frame.shape and list(statuses.index) == keys
    assert statuses.to_dict("records") == answer.statuses()
    wide = answer.to_pandas(include_statuses=True)
    assert list(wide.columns) == [
        f"{name}{suffix}" for name in features for suffix in ("", "__status", "__reason",
                                                              "__timestamp")
    ]  # fmt: skip
    for position, row in enumerate(answer.rows):
        for name, got in row.features.items():
            assert wide.iloc[position][f"{name}__status"] == got.status
            reason = wide.iloc[position][f"{name}__reason"]
            assert (reason is pd.NA) if got.reason is None else reason == got.reason
            stamp = wide.iloc[position][f"{name}__timestamp"]
            assert (stamp is pd.NaT) if got.timestamp is None else stamp == got.timestamp
    assert str(wide[f"{features[0]}__timestamp"].dtype) == "datetime64[us, UTC]"


def test_dataframe_of_composite_keys_has_one_index_level_per_key_column(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    view = demo_variant_registry.views["user_device_features"]
    keys = sample_keys(reference[view.name], view.keys, 10, seed=9)
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        frame = client.get_features("user_device", keys, list(view.feature_names())).to_pandas()
    assert list(frame.index.names) == list(view.keys)
    assert list(frame.index) == [tuple(k.values()) for k in keys]


# --- errors --------------------------------------------------------------------------------------

UNKNOWN_FEATURE = {"entity_name": "user", "entity_keys": ["usr_1"], "features": ["nope_feature"]}
MERCHANT = {
    "entity_name": "merchant",
    "entity_keys": ["mer_000001"],
    "features": ["merchant_chargeback_rate_30d"],
}
TOO_LARGE = {"entity_name": "user", "entity_keys": ["x" * 1000] * 1100, "features": ["f"]}


@pytest.mark.parametrize(
    ("body", "key", "error", "status"),
    [
        (UNKNOWN_FEATURE, API_KEY, InvalidRequestError, 422),
        ({**UNKNOWN_FEATURE, "entity_name": "nope"}, API_KEY, InvalidRequestError, 422),
        ({**UNKNOWN_FEATURE, "entity_keys": []}, API_KEY, InvalidRequestError, 422),
        (TOO_LARGE, API_KEY, InvalidRequestError, 413),
        (MERCHANT, "wrong-key", AuthenticationError, 401),
        (MERCHANT, USERS_ONLY_KEY, PermissionDeniedError, 403),
    ],
)
def test_errors_carry_the_servers_answer(
    sidecar: SidecarServer,
    body: dict[str, Any],
    key: str,
    error: type[FeatureStoreError],
    status: int,
) -> None:
    """Each 4xx is raised as its class, with the server's status, code, message and field
    (those of the raw answer to the same request), and shows them."""
    raw = raw_retrieve(sidecar, body, key)
    assert raw.status_code == status
    detail = raw.json()["error"]
    with FeatureClient(sidecar.url, api_key=key) as client, pytest.raises(error) as caught:
        client.get_features(body["entity_name"], body["entity_keys"], body["features"])
    exc = caught.value
    assert (exc.status, exc.code, exc.message, exc.field) == (
        status, detail["code"], detail["message"], detail["field"],
    )  # fmt: skip
    assert detail["message"] in str(exc) and detail["code"] in str(exc)


def test_the_key_comes_from_the_environment(
    sidecar: SidecarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = ("merchant", ["mer_000001"], ["merchant_chargeback_rate_30d"])
    monkeypatch.setenv("FEATURESTORE_API_KEY", USERS_ONLY_KEY)
    with FeatureClient(sidecar.url) as client, pytest.raises(PermissionDeniedError):
        client.get_features(*body)  # the environment's (scoped) key was sent
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:  # an explicit key wins
        assert client.get_features(*body).rows[0].features
    monkeypatch.delenv("FEATURESTORE_API_KEY")
    with FeatureClient(sidecar.url) as client, pytest.raises(AuthenticationError) as caught:
        client.get_features(*body)
    assert caught.value.status == 401 and "FEATURESTORE_API_KEY" in str(caught.value)


def test_a_4xx_is_not_retried(sidecar: SidecarServer) -> None:
    """One 422 answer counted by the server for one call, with retries allowed."""

    def answered_422() -> float:
        with sidecar.client() as http:
            text = http.get("/metrics").text
        return metric(
            text,
            "featurestore_sidecar_responses_total",
            {"route": "/api/v1/features/retrieve", "status": "422"},
        )

    before = answered_422()
    client = FeatureClient(sidecar.url, api_key=API_KEY, retries=5)
    with client, pytest.raises(InvalidRequestError):
        client.get_features("user", ["usr_1"], ["nope_feature"])
    assert answered_422() == before + 1


# --- the registry, the async form ---------------------------------------------------------------


def test_registry_is_the_servers_document(sidecar: SidecarServer) -> None:
    for key in (API_KEY, USERS_ONLY_KEY):
        with sidecar.client(key) as http:
            raw = http.get("/api/v1/registry").json()
        with FeatureClient(sidecar.url, api_key=key) as client:
            assert client.registry() == raw
    assert set(raw["entities"]) == {"user"}  # the scoped key's own


def test_async_answers_equal_sync(
    sidecar: SidecarServer, demo_variant_registry: Registry, reference: Reference
) -> None:
    """The same calls, concurrently on one AsyncFeatureClient: the same results and errors."""
    calls = []
    for seed, (entity, view_name) in enumerate(ENTITY_VIEWS.items()):
        view = demo_variant_registry.views[view_name]
        keys = sample_keys(reference[view_name], view.keys, 20, seed=seed)
        calls.append((entity, keys, list(view.feature_names())))
    with FeatureClient(sidecar.url, api_key=API_KEY) as client:
        sync_answers = [client.get_features(*call) for call in calls]
        sync_registry = client.registry()

    async def run() -> tuple[list[OnlineFeatures], dict[str, Any], BaseException]:
        async with AsyncFeatureClient(sidecar.url, api_key=API_KEY) as client:
            answers = await asyncio.gather(*(client.get_features(*call) for call in calls * 3))
            document = await client.registry()
            try:
                await client.get_features("user", ["usr_1"], ["nope_feature"])
            except FeatureStoreError as exc:
                return list(answers), document, exc
        raise AssertionError("no error")

    async_answers, async_registry, error = asyncio.run(run())
    assert async_answers == sync_answers * 3
    assert async_registry == sync_registry
    assert isinstance(error, InvalidRequestError) and error.code == "UNKNOWN_FEATURE"
    assert json.dumps(as_sent(async_answers[0]), default=str)  # plain data
