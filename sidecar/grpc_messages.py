"""The gRPC messages (``proto/featurestore/v1/serving.proto``) and the REST documents: a
request message as the JSON document the REST endpoint validates, and the REST response
body as a response message.

gRPC requests go through the REST path unchanged (:meth:`sidecar.request_body.
RequestParser.validate`, then :meth:`sidecar.retrieval.Retriever.retrieve`), so both
protocols answer alike by construction: the request message becomes the document a REST
client would have sent (:func:`features_document`), and the JSON body the retriever
renders is decoded (orjson) and typed into the response (:func:`features_response`).
A value's kind follows its feature's registry type (:data:`VALUE_KINDS`), not the JSON
type, so a float feature whose value happens to be whole is still a ``double_value``, and
timestamps (ISO 8601 UTC in JSON) become ``google.protobuf.Timestamp``.

The decoding costs time the REST path does not spend (measured in bench/README.md, "gRPC
and REST"): the price of one retrieval path, whose cache holds JSON fragments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from featurestore.data_types import ValueType
from featurestore.grpc_api import serving_pb2 as pb
from featurestore.timestamps import micros
from sidecar.plans import FeaturePlan

__all__ = [
    "REASONS",
    "STATUSES",
    "VALUE_KINDS",
    "features_document",
    "features_response",
    "key_document",
    "timestamp_fields",
]

#: registry value type -> the field of ``Value`` that carries it
VALUE_KINDS: Final[Mapping[ValueType, str]] = {
    "int": "int64_value",
    "float": "double_value",
    "bool": "bool_value",
    "string": "string_value",
    "timestamp": "timestamp_value",
}
#: the REST answer's ``status`` and ``reason`` -> the enum values
STATUSES: Final[Mapping[str, int]] = {
    name: pb.Status.Value(f"STATUS_{name}") for name in ("PRESENT", "DEFAULT", "MISSING")
}
REASONS: Final[Mapping[str | None, int]] = {
    None: pb.REASON_UNSPECIFIED,
    **{
        name: pb.Reason.Value(f"REASON_{name}")
        for name in ("NULL", "NOT_FOUND", "STORE_UNAVAILABLE", "INVALID_RECORD")
    },
}


def key_document(key: pb.EntityKey) -> object:
    """An ``entity_keys`` item as REST receives it: the token (a string), the key columns
    (an object of strings and integers), or None when neither is set (refused by the key
    parser as it refuses a JSON null)."""
    kind = key.WhichOneof("key")
    if kind == "token":
        return key.token
    if kind == "columns":
        return columns_document(key.columns)
    return None


def columns_document(columns: pb.KeyColumns) -> dict[str, object]:
    """Key columns as a JSON object: each part its string or integer (None if unset)."""
    document: dict[str, object] = {}
    for name, part in columns.columns.items():
        kind = part.WhichOneof("kind")
        document[name] = (
            part.string_value
            if kind == "string_value"
            else part.int64_value
            if kind == "int64_value"
            else None
        )
    return document


def features_document(request: pb.RetrieveFeaturesRequest) -> dict[str, object]:
    """The REST body of the same request (for :meth:`~sidecar.request_body.RequestParser.
    validate`). Fields proto3 cannot leave out (empty strings and lists) are sent as they
    are and refused as REST refuses them."""
    return {
        "entity_name": request.entity_name,
        "entity_keys": [key_document(key) for key in request.entity_keys],
        "features": list(request.features),
    }


def timestamp_fields(text: str) -> dict[str, int]:
    """An ISO 8601 UTC timestamp as ``google.protobuf.Timestamp`` fields."""
    seconds, us = divmod(micros(dt.datetime.fromisoformat(text)), 1_000_000)
    return {"seconds": seconds, "nanos": us * 1000}


def features_response(
    body: bytes,
    keys: Sequence[pb.EntityKey],
    features: Iterable[FeaturePlan],
    degraded: bool,
) -> pb.RetrieveFeaturesResponse:
    """The response message of a REST response ``body`` (the retriever's JSON) to the
    request whose ``entity_keys`` were ``keys`` (echoed as sent) and whose selection's
    features are ``features`` (their value types)."""
    document = orjson.loads(body)
    kinds = {plan.name: VALUE_KINDS[plan.value_type] for plan in features}
    stamps: dict[str, dict[str, int]] = {}  # a record's features share their timestamp
    statuses = STATUSES
    reasons = REASONS
    results = []
    for key, result in zip(keys, document["results"], strict=True):
        answers: dict[str, Any] = {}
        for name, answer in result["features"].items():
            value = answer["value"]
            stamp = answer["timestamp"]
            typed: dict[str, Any] = {}
            if value is not None:
                kind = kinds[name]
                if kind == "timestamp_value":
                    value = timestamp_fields(value)
                elif kind == "double_value":
                    value = float(value)
                typed[kind] = value
            fields: dict[str, Any] = {
                "value": typed,
                "status": statuses[answer["status"]],
                "reason": reasons[answer.get("reason")],
            }
            if stamp is not None:
                seconds = stamps.get(stamp)
                if seconds is None:
                    seconds = stamps[stamp] = timestamp_fields(stamp)
                fields["timestamp"] = seconds
            answers[name] = fields
        results.append({"entity_key": key, "features": answers})
    return pb.RetrieveFeaturesResponse(
        entity_name=document["entity_name"], results=results, degraded=degraded
    )
