"""The gRPC messages (``proto/featurestore/v1/serving.proto``) and the REST documents: a
request message as the JSON document the REST endpoint validates, and the REST response
body as a response message.

gRPC requests go through the REST path unchanged (:meth:`sidecar.request_body.
RequestParser.validate`, then :meth:`sidecar.retrieval.Retriever.retrieve`), so both
protocols answer alike by construction: the request message becomes the document a REST
client would have sent (:func:`features_document`), and the JSON body the retriever
renders is decoded (orjson) and typed into the response message's bytes
(:func:`features_response`).
The response is written in the protobuf wire format directly (see
:func:`features_response`). A value's kind follows its feature's registry type
(:data:`VALUE_KINDS`), not the JSON type, so a float feature whose value happens to be
whole is still a ``double_value``, and timestamps (ISO 8601 UTC in JSON) become
``google.protobuf.Timestamp``.

The decoding costs time the REST path does not spend (measured in bench/README.md, "gRPC
and REST"): the price of one retrieval path, whose cache holds JSON fragments.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

import orjson

from featurestore.data_types import ValueType
from featurestore.grpc_api import serving_pb2 as pb
from featurestore.registry import Registry
from featurestore.timestamps import iso_micros, micros
from sidecar.plans import FeaturePlan

__all__ = [
    "REASONS",
    "STATUSES",
    "VALUE_KINDS",
    "features_document",
    "features_response",
    "key_document",
    "service_document",
    "service_response",
    "timestamp_fields",
    "value_document",
    "value_kinds",
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


# --- the response, written in the protobuf wire format -----------------------------------------
# (https://protobuf.dev/programming-guides/encoding/: a field is its tag, (number << 3) | wire
# type, then a varint, 8 bytes, or a varint length and that many bytes.) Written directly
# rather than built as message objects: measured on 100-key responses of 10 features, the
# nested-dict constructor of RetrieveFeaturesResponse took about 1.4 times as long
# (bench/README.md, "gRPC and REST"). tests/sidecar/test_grpc_messages.py checks every
# value kind, status and reason against the messages built by the protobuf library.

_DOUBLE: Final = struct.Struct("<d").pack
#: the ``Value`` field of each kind: its tag
_KIND_TAGS: Final[Mapping[str, bytes]] = {
    "int64_value": b"\x08",
    "double_value": b"\x11",
    "bool_value": b"\x18",
    "string_value": b"\x22",
    "timestamp_value": b"\x2a",
}
#: FeatureValue's status (field 3) and reason (field 4, absent when unspecified)
_STATUS_FIELDS: Final[Mapping[str, bytes]] = {
    name: b"\x18" + bytes((number,)) for name, number in STATUSES.items()
}
_REASON_FIELDS: Final[Mapping[str | None, bytes]] = {
    name: b"\x20" + bytes((number,)) if number else b"" for name, number in REASONS.items()
}


def _varint(number: int) -> bytes:
    """A varint; a negative int64 as its 64-bit two's complement (10 bytes)."""
    if number < 0:
        number += 1 << 64
    if number < 0x80:
        return bytes((number,))
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _varint(len(data)) + data


def _timestamp(text: str) -> bytes:
    """A ``google.protobuf.Timestamp`` message (fields at zero left out, as proto3 does)."""
    fields = timestamp_fields(text)
    out = b""
    if fields["seconds"]:
        out += b"\x08" + _varint(fields["seconds"])
    if fields["nanos"]:
        out += b"\x10" + _varint(fields["nanos"])
    return out


def _value(kind: str, value: Any) -> bytes:
    """A non-null ``Value`` message of ``kind``."""
    tag = _KIND_TAGS[kind]
    if kind == "double_value":
        return tag + _DOUBLE(value)
    if kind == "int64_value":
        return tag + _varint(value)
    if kind == "bool_value":
        return tag + (b"\x01" if value else b"\x00")
    if kind == "string_value":
        return _field(tag, value.encode())
    return _field(tag, _timestamp(value))


def _results(
    out: list[bytes],
    results: Iterable[tuple[bytes, Mapping[str, Any]]],
    kinds: Mapping[str, str],
) -> None:
    """Append the ``results`` (field 2) of a response: per result its key's field 1 (the
    bytes given) and its ``features`` map (field 2) from the REST answers."""
    # per (timestamp, status, reason): FeatureValue's fields 2-4, shared by a record's
    # features; per feature: the map entry's key field and the value's tag
    tails: dict[tuple[str | None, str, str | None], bytes] = {}
    heads: dict[str, bytes] = {}
    varint = _varint
    for key_field, answers in results:
        parts = [key_field]
        for name, answer in answers.items():
            value = answer["value"]
            stamp = answer["timestamp"]
            status = answer["status"]
            reason = answer.get("reason")
            tail = tails.get((stamp, status, reason))
            if tail is None:
                tail = tails[(stamp, status, reason)] = (
                    (b"" if stamp is None else _field(b"\x12", _timestamp(stamp)))
                    + _STATUS_FIELDS[status]
                    + _REASON_FIELDS[reason]
                )
            if value is None:
                answer_bytes = tail
            else:
                kind = kinds.get(name)
                typed = _value(_json_kind(value) if kind is None else kind, value)
                answer_bytes = b"\x0a" + varint(len(typed)) + typed + tail
            head = heads.get(name)
            if head is None:
                head = heads[name] = _field(b"\x0a", name.encode()) + b"\x12"
            entry = head + varint(len(answer_bytes)) + answer_bytes
            parts.append(b"\x12" + varint(len(entry)) + entry)
        result_bytes = b"".join(parts)
        out.append(b"\x12" + varint(len(result_bytes)) + result_bytes)


def _json_kind(value: object) -> str:
    """The kind of a value whose feature has no registry type (never expected)."""
    if isinstance(value, bool):
        return "bool_value"
    if isinstance(value, int):
        return "int64_value"
    if isinstance(value, float):
        return "double_value"
    return "string_value"


def features_response(
    body: bytes,
    keys: Sequence[pb.EntityKey],
    features: Iterable[FeaturePlan],
    degraded: bool,
) -> bytes:
    """The serialized ``RetrieveFeaturesResponse`` of a REST response ``body`` (the
    retriever's JSON) to the request whose ``entity_keys`` were ``keys`` (echoed as sent)
    and whose selection's features are ``features`` (their value types). A null value
    leaves ``FeatureValue.value`` unset; an answer without a timestamp leaves
    ``timestamp`` unset."""
    document = orjson.loads(body)
    kinds = {plan.name: VALUE_KINDS[plan.value_type] for plan in features}
    out = [_field(b"\x0a", document["entity_name"].encode())]
    _results(
        out,
        (
            (_field(b"\x0a", key.SerializeToString()), result["features"])
            for key, result in zip(keys, document["results"], strict=True)
        ),
        kinds,
    )
    if degraded:
        out.append(b"\x18\x01")
    return b"".join(out)


# --- the multi-entity form (RetrieveFeatureService, contract C) ----------------------------------


def value_document(value: pb.Value) -> object:
    """A typed value as JSON: its number, boolean or string, a timestamp as ISO 8601 UTC,
    None when no kind is set."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "timestamp_value":
        stamp = value.timestamp_value
        return iso_micros(stamp.seconds * 1_000_000 + stamp.nanos // 1000)
    typed: object = getattr(value, kind)
    return typed


def service_document(request: pb.RetrieveFeatureServiceRequest) -> dict[str, object]:
    """The REST body of the same multi-entity request: ``feature_service`` when set,
    ``features`` when given (or when no service is named), ``entities``, and
    ``request_data`` when it has rows."""
    document: dict[str, object] = {}
    if request.HasField("feature_service"):
        document["feature_service"] = request.feature_service
    if request.features or not request.HasField("feature_service"):
        document["features"] = list(request.features)
    document["entities"] = [columns_document(row) for row in request.entities]
    if request.request_data:
        document["request_data"] = [
            {name: value_document(value) for name, value in row.fields.items()}
            for row in request.request_data
        ]
    return document


def _key_columns(columns: Mapping[str, object]) -> bytes:
    """A ``KeyColumns`` message of a JSON object of strings and integers (as sent)."""
    entries = []
    for name, value in columns.items():
        part = (
            _field(b"\x0a", value.encode())
            if isinstance(value, str)
            else b"\x10" + _varint(int(cast(int, value)))
        )
        entry = _field(b"\x0a", name.encode()) + _field(b"\x12", part)
        entries.append(_field(b"\x0a", entry))
    return b"".join(entries)


def service_response(body: bytes, kinds: Mapping[str, str], degraded: bool) -> bytes:
    """The serialized ``RetrieveFeatureServiceResponse`` of a REST multi-entity response
    ``body``; ``kinds``: each feature's ``Value`` kind (:func:`value_kinds`)."""
    document = orjson.loads(body)
    out = []
    if document.get("feature_service") is not None:
        out.append(_field(b"\x0a", document["feature_service"].encode()))
    _results(
        out,
        (
            (_field(b"\x0a", _key_columns(result["entities"])), result["features"])
            for result in document["results"]
        ),
        kinds,
    )
    if degraded:
        out.append(b"\x18\x01")
    return b"".join(out)


def value_kinds(registry: Registry) -> dict[str, str]:
    """Every feature's ``Value`` kind by name: the registry's features, and the
    request-time features of its feature services (their expression's type)."""
    kinds = {name: VALUE_KINDS[feature.value_type] for name, feature in registry.features.items()}
    for service in registry.feature_services.values():
        for feature in service.request_features:
            kinds[feature.name] = VALUE_KINDS[feature.expression.value_type]
    return kinds
