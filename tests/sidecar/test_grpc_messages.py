"""The gRPC response written in the wire format by hand (:func:`sidecar.grpc_messages.
features_response`) against the reference: the same response built from message objects
by the protobuf library, on every value kind and edge value, every status and reason,
nulls, missing timestamps, both key forms, the degraded flag."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from featurestore.grpc_api import serving_pb2 as pb
from sidecar.grpc_messages import (
    VALUE_KINDS,
    features_document,
    features_response,
    service_document,
    service_response,
)
from sidecar.plans import FeaturePlan

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def plan(name: str, value_type: Any) -> FeaturePlan:
    return FeaturePlan(name, "v", 0, "user", value_type, None)


def reference_timestamp(text: str) -> dict[str, int]:
    moment = dt.datetime.fromisoformat(text)
    delta = moment - EPOCH
    total_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds = total_us // 1_000_000
    return {"seconds": seconds, "nanos": (total_us - seconds * 1_000_000) * 1000}


def reference(
    document: dict[str, Any], keys: list[pb.EntityKey], types: dict[str, str], degraded: bool
) -> pb.RetrieveFeaturesResponse:
    """The response built by the protobuf library from message objects."""
    kinds = {"int": "int64_value", "float": "double_value", "bool": "bool_value",
             "string": "string_value", "timestamp": "timestamp_value"}  # fmt: skip
    response = pb.RetrieveFeaturesResponse(entity_name=document["entity_name"], degraded=degraded)
    for key, result in zip(keys, document["results"], strict=True):
        out = response.results.add()
        out.entity_key.CopyFrom(key)
        for name, answer in result["features"].items():
            value = out.features[name]
            if answer["value"] is not None:
                kind = kinds[types[name]]
                if kind == "timestamp_value":
                    value.value.timestamp_value.FromDatetime(
                        dt.datetime.fromisoformat(answer["value"])
                    )
                elif kind == "double_value":
                    value.value.double_value = float(answer["value"])
                else:
                    setattr(value.value, kind, answer["value"])
            if answer["timestamp"] is not None:
                value.timestamp.CopyFrom(
                    pb.FeatureValue().timestamp.__class__(
                        **reference_timestamp(answer["timestamp"])
                    )
                )
            value.status = pb.Status.Value("STATUS_" + answer["status"])
            if "reason" in answer:
                value.reason = pb.Reason.Value("REASON_" + answer["reason"])
    return response


TYPES: dict[str, Any] = {"n": "int", "x": "float", "b": "bool", "s": "string", "t": "timestamp"}
STAMPS = [
    "2026-05-01T00:00:00Z", "2026-04-30T17:40:19.123456Z", "1969-12-31T23:59:59.5Z",
    "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z",
]  # fmt: skip
VALUES: dict[str, list[Any]] = {
    "n": [0, 1, -1, 127, 128, 300, 2**63 - 1, -(2**63), 1_000_000],
    "x": [0.0, -0.0, 1.0, 1, -1.5e-7, 37.045, 1e308, 5e-324],
    "b": [True, False],
    "s": ["", "gold", "ü€𝄞", "x" * 300],
    "t": STAMPS,
}
ANSWERS = [("PRESENT", None), ("DEFAULT", "NULL"), ("DEFAULT", "NOT_FOUND"),
           ("MISSING", "NULL"), ("MISSING", "NOT_FOUND"), ("DEFAULT", "STORE_UNAVAILABLE"),
           ("MISSING", "STORE_UNAVAILABLE"), ("MISSING", "INVALID_RECORD"),
           ("DEFAULT", "INVALID_RECORD")]  # fmt: skip


def cases() -> list[tuple[str, dict[str, Any]]]:
    """One result per (value, status) combination, the features' values and timestamps
    varying from result to result."""
    results = []
    for index in range(max(len(v) for v in VALUES.values()) * len(ANSWERS)):
        status, reason = ANSWERS[index % len(ANSWERS)]
        features = {}
        for name, values in VALUES.items():
            value = values[index % len(values)]
            if status == "MISSING" or (index + len(name)) % 7 == 0:
                value = None
            stamp = None if index % 3 == 0 else STAMPS[index % len(STAMPS)]
            answer: dict[str, Any] = {"value": value, "timestamp": stamp, "status": status}
            if reason is not None:
                answer["reason"] = reason
            features[name] = answer
        results.append((f"usr_{index}", {"entity_key": f"usr_{index}", "features": features}))
    return results


@pytest.mark.parametrize("degraded", [False, True])
def test_written_response_equals_the_library_built_one(degraded: bool) -> None:
    results = cases()
    keys = [
        pb.EntityKey(token=key) if n % 2 else pb.EntityKey(
            columns=pb.KeyColumns(columns={"user_id": pb.KeyPart(string_value=key),
                                           "n": pb.KeyPart(int64_value=-n)})
        )
        for n, (key, _) in enumerate(results)
    ]  # fmt: skip
    document = {"entity_name": "user_device", "results": [result for _, result in results]}
    body = orjson.dumps(document)
    plans = [plan(name, value_type) for name, value_type in TYPES.items()]
    written = features_response(body, keys, plans, degraded)
    parsed = pb.RetrieveFeaturesResponse.FromString(written)
    want = reference(document, keys, TYPES, degraded)
    assert parsed == want
    # and the answers one by one (a clearer failure than the whole message)
    for got, expected in zip(parsed.results, want.results, strict=True):
        for name in TYPES:
            assert got.features[name] == expected.features[name], name
    assert len(written) == want.ByteSize()  # nothing more than the library writes


def test_a_whole_float_is_a_double_and_a_null_is_no_value() -> None:
    features = {
        "x": {"value": 2, "timestamp": None, "status": "PRESENT"},
        "n": {"value": None, "timestamp": None, "status": "MISSING", "reason": "NULL"},
    }
    body = orjson.dumps(
        {"entity_name": "user", "results": [{"entity_key": "u", "features": features}]}
    )
    plans = [plan("x", "float"), plan("n", "int")]
    parsed = pb.RetrieveFeaturesResponse.FromString(
        features_response(body, [pb.EntityKey(token="u")], plans, False)
    )
    answers = parsed.results[0].features
    assert answers["x"].value.WhichOneof("kind") == "double_value"
    assert answers["x"].value.double_value == 2.0
    assert not answers["x"].HasField("timestamp")
    assert answers["n"].value.WhichOneof("kind") is None
    assert answers["n"].reason == pb.REASON_NULL


def test_request_document() -> None:
    """A message as the REST body: tokens, key columns (strings and integers), an unset key
    as null, empty fields as they are (refused later as REST refuses them)."""
    request = pb.RetrieveFeaturesRequest(
        entity_name="user_device",
        entity_keys=[
            pb.EntityKey(token="u:d"),
            pb.EntityKey(columns=pb.KeyColumns(columns={
                "user_id": pb.KeyPart(string_value="u"), "device_id": pb.KeyPart(int64_value=7),
                "x": pb.KeyPart()})),
            pb.EntityKey(),
        ],
        features=["a", "a", ""],
    )  # fmt: skip
    assert features_document(request) == {
        "entity_name": "user_device",
        "entity_keys": ["u:d", {"user_id": "u", "device_id": 7, "x": None}, None],
        "features": ["a", "a", ""],
    }
    assert features_document(pb.RetrieveFeaturesRequest()) == {
        "entity_name": "", "entity_keys": [], "features": [],
    }  # fmt: skip


def test_written_service_response_equals_the_library_built_one() -> None:
    """The multi-entity response: key columns of strings and integers echoed, the service
    named or not, typed values of features of several entities, degraded."""
    results = cases()
    rows = [{"user_id": key, "merchant_id": f"m{n}", "n": n - 5} for n, (key, _) in
            enumerate(results)]  # fmt: skip
    for service in ("fraud_model_v1", None):
        document = {
            "feature_service": service,
            "results": [
                {"entities": row, "features": result["features"]}
                for row, (_, result) in zip(rows, results, strict=True)
            ],
        }
        kinds = {name: VALUE_KINDS[value_type] for name, value_type in TYPES.items()}
        written = service_response(orjson.dumps(document), kinds, service is None)
        parsed = pb.RetrieveFeatureServiceResponse.FromString(written)
        single = reference(
            {"entity_name": "x", "results": document["results"]},
            [pb.EntityKey() for _ in rows], TYPES, service is None,
        )  # fmt: skip
        want = pb.RetrieveFeatureServiceResponse(degraded=service is None)
        if service is not None:
            want.feature_service = service
        for row, result in zip(rows, single.results, strict=True):
            out = want.results.add()
            for name, value in row.items():
                part = out.entities.columns[name]
                if isinstance(value, int):
                    part.int64_value = value
                else:
                    part.string_value = value
            for name, answer in result.features.items():
                out.features[name].CopyFrom(answer)
        assert parsed == want
        assert parsed.HasField("feature_service") == (service is not None)


def test_service_document() -> None:
    """A RetrieveFeatureServiceRequest as the REST multi-entity body."""
    stamp = pb.Value()
    stamp.timestamp_value.FromDatetime(dt.datetime(2026, 5, 1, 12, 0, 0, 250))
    request = pb.RetrieveFeatureServiceRequest(
        feature_service="fraud_model_v1",
        entities=[pb.KeyColumns(columns={"user_id": pb.KeyPart(string_value="u"),
                                         "n": pb.KeyPart(int64_value=3)})],
        request_data=[pb.RequestRow(fields={
            "amount": pb.Value(double_value=120.5), "count": pb.Value(int64_value=-2),
            "flag": pb.Value(bool_value=False), "note": pb.Value(string_value=""),
            "at": stamp, "none": pb.Value()})],
    )  # fmt: skip
    assert service_document(request) == {
        "feature_service": "fraud_model_v1",
        "entities": [{"user_id": "u", "n": 3}],
        "request_data": [{"amount": 120.5, "count": -2, "flag": False, "note": "",
                          "at": "2026-05-01T12:00:00.000250Z", "none": None}],
    }  # fmt: skip
    features_form = pb.RetrieveFeatureServiceRequest(features=["a"], entities=[pb.KeyColumns()])
    assert service_document(features_form) == {"features": ["a"], "entities": [{}]}
    # neither a service nor features: REST is sent an empty list, and refuses it
    assert service_document(pb.RetrieveFeatureServiceRequest()) == {
        "features": [], "entities": [],
    }  # fmt: skip
