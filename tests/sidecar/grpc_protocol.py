"""The retrieve API over both protocols for the sidecar suites: :class:`Rest` (httpx) and
:class:`Grpc` (the generated stub over a real channel) answer a REST request body with
the same :class:`Answer`, the gRPC response turned back into the REST document by hand
(the reverse of the server's conversion, written independently of it), so that one test
can run against either protocol and compare the two."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from featurestore.grpc_api import serving_pb2 as pb
from featurestore.grpc_api import serving_pb2_grpc as pb_grpc
from tests.sidecar.harness import API_KEY

PROTOCOLS = ["rest", "grpc"]
#: gRPC code expected for each REST status of bad input
GRPC_CODE_OF = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
}


@dataclass
class Answer:
    """One retrieve call: the REST response document (None on error), whether it was
    degraded, and on error REST's status (or the gRPC code) and the error's code and field."""

    document: dict[str, Any] | None
    degraded: bool = False
    status: int | grpc.StatusCode = 200
    code: str | None = None
    field: str | None = None
    message: str | None = None


class Rest:
    name = "rest"

    def __init__(self, url: str) -> None:
        self.url = url

    def retrieve(self, body: Any, key: str | None = API_KEY) -> Answer:
        headers = {"X-API-Key": key} if key else {}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            response = client.post("/api/v1/features/retrieve", json=body)
        if response.status_code != 200:
            error = response.json()["error"]
            return Answer(
                None, False, response.status_code, error["code"], error["field"], error["message"]
            )
        degraded = response.headers.get("x-featurestore-degraded") == "1"
        return Answer(response.json(), degraded)


def key_message(key: Any) -> pb.EntityKey:
    """A JSON ``entity_keys`` item as an EntityKey (None: neither field set)."""
    if key is None:
        return pb.EntityKey()
    if isinstance(key, str):
        return pb.EntityKey(token=key)
    parts = {
        name: pb.KeyPart(int64_value=value)
        if isinstance(value, int)
        else pb.KeyPart(string_value=value)
        for name, value in key.items()
    }
    return pb.EntityKey(columns=pb.KeyColumns(columns=parts))


def request_message(body: dict[str, Any]) -> pb.RetrieveFeaturesRequest:
    return pb.RetrieveFeaturesRequest(
        entity_name=body["entity_name"],
        entity_keys=[key_message(key) for key in body["entity_keys"]],
        features=body["features"],
    )


def key_json(key: pb.EntityKey) -> Any:
    if key.HasField("token"):
        return key.token
    return {
        name: part.int64_value if part.HasField("int64_value") else part.string_value
        for name, part in key.columns.columns.items()
    }


def stamp_json(stamp: Any) -> str:
    """A Timestamp as the REST API spells it: seconds, a 6-digit fraction if any, 'Z'."""
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(
        seconds=stamp.seconds, microseconds=stamp.nanos // 1000
    )
    text = f"{moment:%Y-%m-%dT%H:%M:%S}"
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def value_json(value: pb.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "timestamp_value":
        return stamp_json(value.timestamp_value)
    return getattr(value, kind)


def answer_json(answer: pb.FeatureValue) -> dict[str, Any]:
    out = {
        "value": value_json(answer.value),
        "timestamp": stamp_json(answer.timestamp) if answer.HasField("timestamp") else None,
        "status": pb.Status.Name(answer.status).removeprefix("STATUS_"),
    }
    if answer.reason != pb.REASON_UNSPECIFIED:
        out["reason"] = pb.Reason.Name(answer.reason).removeprefix("REASON_")
    return out


def response_json(response: pb.RetrieveFeaturesResponse, features: list[str]) -> dict[str, Any]:
    """The REST document of a response (features in request order, as REST lists them)."""
    order = list(dict.fromkeys(features))
    return {
        "entity_name": response.entity_name,
        "results": [
            {
                "entity_key": key_json(result.entity_key),
                "features": {
                    name: answer_json(result.features[name])
                    for name in order
                    if name in result.features
                },
            }
            for result in response.results
        ],
    }


class Grpc:
    name = "grpc"

    def __init__(self, port: int) -> None:
        self.port = port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.FeatureServingStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(
        self, request: Any, key: str | None = API_KEY, metadata: list[tuple[str, str]] | None = None
    ) -> tuple[pb.RetrieveFeaturesResponse, Any]:
        """The response and the call (codes and metadata); raises grpc.RpcError."""
        sent = metadata if metadata is not None else ([("x-api-key", key)] if key else [])
        response, call = self.stub.RetrieveFeatures.with_call(request, metadata=sent, timeout=30)
        return response, call

    def retrieve(self, body: Any, key: str | None = API_KEY) -> Answer:
        try:
            response, call = self.call(request_message(body), key)
        except grpc.RpcError as error:
            trailing = dict(error.trailing_metadata() or ())
            return Answer(
                None,
                False,
                error.code(),
                trailing.get("x-featurestore-error-code"),
                trailing.get("x-featurestore-error-field"),
                error.details(),
            )
        trailing = dict(call.trailing_metadata() or ())
        degraded = trailing.get("x-featurestore-degraded") == "1"
        assert degraded == response.degraded, (trailing, response.degraded)
        return Answer(response_json(response, body["features"]), degraded)


# --- the multi-entity form (RetrieveFeatureService) ---------------------------------------------


def columns_message(columns: dict[str, Any]) -> pb.KeyColumns:
    return pb.KeyColumns(
        columns={
            name: pb.KeyPart(int64_value=value)
            if isinstance(value, int)
            else pb.KeyPart(string_value=value)
            for name, value in columns.items()
        }
    )


def value_message(value: Any) -> pb.Value:
    if value is None:
        return pb.Value()
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        return pb.Value(int64_value=value)
    if isinstance(value, float):
        return pb.Value(double_value=value)
    return pb.Value(string_value=value)


def service_request_message(body: dict[str, Any]) -> pb.RetrieveFeatureServiceRequest:
    request = pb.RetrieveFeatureServiceRequest(
        features=body.get("features", []),
        entities=[columns_message(row) for row in body["entities"]],
        request_data=[
            pb.RequestRow(fields={k: value_message(v) for k, v in row.items()})
            for row in body.get("request_data", [])
        ],
    )
    if "feature_service" in body:
        request.feature_service = body["feature_service"]
    return request


def service_response_json(response: pb.RetrieveFeatureServiceResponse) -> dict[str, Any]:
    return {
        "feature_service": response.feature_service
        if response.HasField("feature_service")
        else None,
        "results": [
            {
                "entities": {
                    name: part.int64_value if part.HasField("int64_value") else part.string_value
                    for name, part in result.entities.columns.items()
                },
                "features": {name: answer_json(answer) for name, answer in result.features.items()},
            }
            for result in response.results
        ],
    }


def retrieve_service(client: Grpc, body: dict[str, Any], key: str | None = API_KEY) -> Answer:
    """``RetrieveFeatureService`` of a REST multi-entity body, answered as a REST document."""
    metadata = [("x-api-key", key)] if key else []
    try:
        response, call = client.stub.RetrieveFeatureService.with_call(
            service_request_message(body), metadata=metadata, timeout=30
        )
    except grpc.RpcError as error:
        trailing = dict(error.trailing_metadata() or ())
        return Answer(
            None,
            False,
            error.code(),
            trailing.get("x-featurestore-error-code"),
            trailing.get("x-featurestore-error-field"),
            error.details(),
        )
    degraded = dict(call.trailing_metadata() or ()).get("x-featurestore-degraded") == "1"
    assert degraded == response.degraded
    return Answer(service_response_json(response), degraded)
