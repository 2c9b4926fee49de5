"""The gRPC transport of the clients: ``FeatureClient("grpc://host:port")`` (and
:class:`~featurestore.client.AsyncFeatureClient`) call the sidecar's ``featurestore.v1.
FeatureServing`` service (``proto/featurestore/v1/serving.proto``, served by ``featurestore
serve --grpc-port PORT``) instead of ``POST /api/v1/features/retrieve``, with the same methods,
results and errors as over REST.

Imported only when a gRPC client is created (``import featurestore.client`` loads no grpc);
it needs ``grpcio`` and ``protobuf`` (``pip install featurestore[serve]``, or ``pip install
grpcio protobuf``) and the generated modules of ``featurestore/grpc_api/`` (``./run setup``).

The request is the REST body the clients build (:mod:`featurestore.client.calls`) turned into
its message (:func:`request_message`); the response is turned back into the JSON document
REST answers (:func:`response_document`), which :meth:`~featurestore.client.results.
OnlineFeatures.from_json` reads as it reads REST's: a value's kind maps to the JSON type REST
gives (``int64_value`` int, ``double_value`` float, ``bool_value`` bool, ``string_value``
str, ``timestamp_value`` the ISO 8601 UTC string REST writes), features in the order the
server answered them (read from the wire: a protobuf map keeps no order), each key as sent.

A call:

* sends the API key as call metadata ``x-api-key``;
* has ``timeout_s`` (the client's, or the call's own) as its gRPC deadline: the whole call,
  connecting included (REST's is per phase); past it :class:`~featurestore.client.errors.
  RequestTimedOut`, not retried;
* is retried, at most ``retries`` more times with the REST client's doubling pause, when the
  server is ``UNAVAILABLE`` (the connection cannot be made, or broke: every call here only
  reads), then :class:`~featurestore.client.errors.ConnectionFailed`;
* raises the server's error as the REST client raises the same error answered over REST: the
  status code and the trailing metadata ``x-featurestore-error-code`` and ``-field`` give
  the class, ``status`` (the HTTP status REST answers: :func:`error_of`), ``code``, ``field``
  and ``message`` (the status details).

One channel (one HTTP/2 connection, calls multiplexed) per client; ``max_connections`` does
not apply. ``registry()`` is REST only (the gRPC service has no registry RPC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Final, TypeVar

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.message import DecodeError, Message
except ImportError as exc:
    raise ImportError(
        f"a gRPC client (grpc:// URL) needs grpcio and protobuf, which are not installed "
        f"({exc}): pip install 'featurestore[serve]' (or: pip install grpcio protobuf)"
    ) from exc
try:
    from featurestore.grpc_api import serving_pb2 as pb
except ImportError as exc:
    raise ImportError(
        "a gRPC client needs the generated modules of featurestore/grpc_api/ "
        f"({exc}): generate them with ./run setup (grpcio-tools)"
    ) from exc

from featurestore.client.errors import (
    AuthenticationError,
    ConnectionFailed,
    FeatureStoreError,
    InvalidRequestError,
    PermissionDeniedError,
    RequestTimedOut,
    ServerError,
)
from featurestore.timestamps import iso_micros

if TYPE_CHECKING:
    from featurestore.client.calls import Call, Settings

__all__ = [
    "AsyncGrpcTransport",
    "GrpcTransport",
    "error_of",
    "request_message",
    "response_document",
]

T = TypeVar("T")

SERVICE: Final = "/featurestore.v1.FeatureServing/"
API_KEY_METADATA: Final = "x-api-key"
ERROR_CODE_METADATA: Final = "x-featurestore-error-code"
ERROR_FIELD_METADATA: Final = "x-featurestore-error-field"

#: gRPC status -> the HTTP status REST answers the same error with (INVALID_ARGUMENT: 422,
#: or 400 for the codes of :data:`_BAD_REQUEST_CODES`); any other status: 500
_HTTP_STATUS: Final[Mapping[str, int]] = {
    "INVALID_ARGUMENT": 422,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 413,
    "NOT_FOUND": 404,
    "UNIMPLEMENTED": 501,
}
#: the server's codes of a message it cannot read (REST: 400, a body that is not JSON)
_BAD_REQUEST_CODES: Final = frozenset({"INVALID_MESSAGE", "INVALID_JSON"})
#: a message over the server's size limit is refused by gRPC itself (no trailing metadata):
#: the code and field REST's 413 carries
_TOO_LARGE: Final = ("BODY_TOO_LARGE", "body")


# --- messages --------------------------------------------------------------------------------


def request_message(body: Mapping[str, Any]) -> tuple[str, Message]:
    """The RPC and request message of a REST retrieve ``body`` (as :mod:`featurestore.client.
    http` builds it): ``RetrieveFeatures`` for the single-entity form (``entity_name``), else
    ``RetrieveFeatureService``. A key part that is neither a string nor an integer is sent
    unset, and refused by the server as REST refuses a null."""
    if "entity_name" in body:
        return "RetrieveFeatures", pb.RetrieveFeaturesRequest(
            entity_name=body["entity_name"],
            entity_keys=[
                pb.EntityKey(token=key) if isinstance(key, str) else _entity_key(key)
                for key in body["entity_keys"]
            ],
            features=body["features"],
        )
    request = pb.RetrieveFeatureServiceRequest(
        features=body.get("features", []),
        entities=[_columns(row) for row in body["entities"]],
        request_data=[
            pb.RequestRow(fields={name: _value(name, v) for name, v in row.items()})
            for row in body.get("request_data", [])
        ],
    )
    if "feature_service" in body:
        request.feature_service = body["feature_service"]
    return "RetrieveFeatureService", request


def _entity_key(key: object) -> pb.EntityKey:
    if isinstance(key, Mapping):
        return pb.EntityKey(columns=_columns(key))
    return pb.EntityKey()  # (neither form: refused as a null key)


def _columns(row: Mapping[str, Any]) -> pb.KeyColumns:
    columns = {}
    for name, value in row.items():
        if isinstance(value, str):
            columns[name] = pb.KeyPart(string_value=value)
        elif isinstance(value, int) and not isinstance(value, bool):
            columns[name] = pb.KeyPart(int64_value=value)
        else:
            columns[name] = pb.KeyPart()
    return pb.KeyColumns(columns=columns)


def _value(name: str, value: object) -> pb.Value:
    if value is None:
        return pb.Value()
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        return pb.Value(int64_value=value)
    if isinstance(value, float):
        return pb.Value(double_value=value)
    if isinstance(value, str):
        return pb.Value(string_value=value)
    raise TypeError(
        f"request_data field {name!r}: {type(value).__name__} is not a JSON value "
        "(None, bool, int, float or str)"
    )


def response_document(
    body: Mapping[str, Any], response: Message, data: bytes
) -> tuple[dict[str, Any], bool]:
    """The REST document of the ``response`` (its serialized form: ``data``) to the request
    ``body``, and its degraded flag. Each result's key is the request's (the server echoes
    it as sent; checked), its features in the order of ``data``."""
    orders = _feature_orders(data)
    single = isinstance(response, pb.RetrieveFeaturesResponse)
    sent: Sequence[Any] = body["entity_keys"] if single else body["entities"]
    results = list(response.results)  # type: ignore[attr-defined]
    if len(results) != len(sent) or len(orders) != len(sent):
        raise _bad_response(f"{len(results)} results for {len(sent)} keys")
    rows = []
    for key, result, order in zip(sent, results, orders, strict=True):
        echoed = _key_json(result.entity_key) if single else _columns_json(result.entities)
        if echoed != key:
            raise _bad_response(f"the key {echoed!r} answered for {key!r}")
        features = {name: _answer(result.features[name]) for name in order}
        rows.append({"entity_key" if single else "entities": key, "features": features})
    document: dict[str, Any]
    if single:
        document = {"entity_name": response.entity_name, "results": rows}  # type: ignore[attr-defined]
    else:
        named = response.HasField("feature_service")
        service = response.feature_service if named else None  # type: ignore[attr-defined]
        document = {"feature_service": service, "results": rows}
    return document, bool(response.degraded)  # type: ignore[attr-defined]


def _bad_response(problem: str) -> FeatureStoreError:
    return FeatureStoreError(f"unexpected gRPC response: {problem}", code="BAD_RESPONSE")


def _key_json(key: pb.EntityKey) -> object:
    return key.token if key.HasField("token") else _columns_json(key.columns)


def _columns_json(columns: pb.KeyColumns) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, part in columns.columns.items():
        kind = part.WhichOneof("kind")
        out[name] = None if kind is None else getattr(part, kind)
    return out


def _stamp(stamp: Any) -> str:
    """A Timestamp as REST writes it (:func:`featurestore.timestamps.iso_micros`)."""
    return iso_micros(stamp.seconds * 1_000_000 + stamp.nanos // 1000)


def _answer(answer: pb.FeatureValue) -> dict[str, Any]:
    kind = answer.value.WhichOneof("kind")
    value: object
    if kind is None:
        value = None
    elif kind == "timestamp_value":
        value = _stamp(answer.value.timestamp_value)
    else:
        value = getattr(answer.value, kind)
    out = {
        "value": value,
        "timestamp": _stamp(answer.timestamp) if answer.HasField("timestamp") else None,
        "status": pb.Status.Name(answer.status).removeprefix("STATUS_"),
    }
    if answer.reason != pb.REASON_UNSPECIFIED:
        out["reason"] = pb.Reason.Name(answer.reason).removeprefix("REASON_")
    return out


@cache
def _order_type() -> Callable[[bytes], Any]:
    """The parser of a message wire-compatible with both responses that reads the features
    map of each result as the repeated entries it is on the wire, in order (keys only)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="featurestore/client/feature_order.proto",
        package="featurestore.client.order",
        syntax="proto3",
    )
    fields = descriptor_pb2.FieldDescriptorProto
    for name, field, number, type_name in (
        ("Entry", "key", 1, None),
        ("Result", "features", 2, ".featurestore.client.order.Entry"),
        ("Response", "results", 2, ".featurestore.client.order.Result"),
    ):
        message = file.message_type.add(name=name)
        if type_name is None:
            message.field.add(
                name=field, number=number, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL
            )
        else:
            message.field.add(
                name=field,
                number=number,
                type=fields.TYPE_MESSAGE,
                label=fields.LABEL_REPEATED,
                type_name=type_name,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)  # type: ignore[no-untyped-call]
    response = pool.FindMessageTypeByName(  # type: ignore[no-untyped-call]
        "featurestore.client.order.Response"
    )
    parser: Callable[[bytes], Any] = message_factory.GetMessageClass(response).FromString
    return parser


def _feature_orders(data: bytes) -> list[list[str]]:
    """Per result of a serialized response: its feature names in wire order."""
    ordered = _order_type()(data)
    return [list(dict.fromkeys(e.key for e in r.features)) for r in ordered.results]


# --- errors ---------------------------------------------------------------------------------------


def error_of(
    code: grpc.StatusCode, details: str | None, trailing: Iterable[Any]
) -> FeatureStoreError:
    """The error the REST client raises for the same answer: the HTTP status REST gives it
    (:data:`_HTTP_STATUS`), the server's code and field from the trailing metadata (else
    ``GRPC_<STATUS>``), the details as the message."""
    metadata = {str(k): v for k, v in trailing or ()}
    name = code.name
    server_code = metadata.get(ERROR_CODE_METADATA)
    field = metadata.get(ERROR_FIELD_METADATA)
    if name == "RESOURCE_EXHAUSTED" and server_code is None:
        server_code, field = _TOO_LARGE
    status = _HTTP_STATUS.get(name, 500)
    if server_code in _BAD_REQUEST_CODES:
        status = 400
    kind: type[FeatureStoreError]
    if status == 401:
        kind = AuthenticationError
    elif status == 403:
        kind = PermissionDeniedError
    elif status >= 500:
        kind = ServerError
    else:
        kind = InvalidRequestError
    message = details or f"gRPC status {name}"
    return kind(
        message,
        status=status,
        code=str(server_code) if server_code else f"GRPC_{name}",
        field=str(field) if field else None,
    )


class _Channel:
    """What both gRPC transports share: the target, the call options and the decisions on
    each failure."""

    def __init__(self, settings: Settings, address: str) -> None:
        self.settings = settings
        self.address = address
        key = settings.headers.get("X-API-Key")
        self.metadata = ((API_KEY_METADATA, key),) if key else ()
        backoff_ms = max(int(settings.backoff_s * 1000), 10)
        self.options = [
            ("grpc.primary_user_agent", settings.headers["User-Agent"]),
            ("grpc.max_receive_message_length", -1),  # REST's answers have no limit either
            # reconnect at the pace of the retries (gRPC's default first wait is 1 s); not
            # grpc.min_reconnect_backoff_ms, which is also the connect timeout (20 s)
            ("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", max(backoff_ms, 500)),
        ]

    def rpc(self, call: Call[Any]) -> tuple[str, Message]:
        if call.from_document is None or call.body is None:
            raise FeatureStoreError(
                f"{call.method} {call.path} is served over REST only, not gRPC: "
                "use a FeatureClient of the sidecar's http:// URL for it",
                code="REST_ONLY",
            )
        method, request = request_message(call.body)
        return SERVICE + method, request

    def timeout(self, timeout_s: float | None) -> float:
        return self.settings.timeout_s if timeout_s is None else timeout_s

    def pause(self, code: grpc.StatusCode, error: FeatureStoreError, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after a failed call, or raises
        the error to give the caller."""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise RequestTimedOut(f"no answer from grpc://{self.address} in time: {error.message}")
        if code == grpc.StatusCode.CANCELLED:
            raise ConnectionFailed(f"the call to grpc://{self.address} was cancelled")
        if code != grpc.StatusCode.UNAVAILABLE:
            if isinstance(error, AuthenticationError) and not self.settings.has_key:
                error.message += self.settings.no_key_hint
            raise error
        if attempt >= self.settings.retries:
            tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
            raise ConnectionFailed(f"grpc://{self.address} failed ({tries}): {error.message}")
        return self.settings.backoff(attempt)

    def retry_after(self, exc: grpc.RpcError, attempt: int) -> float:
        """:meth:`pause` for the failed call ``exc`` (its error: :func:`error_of`)."""
        code = exc.code()
        return self.pause(code, error_of(code, exc.details(), exc.trailing_metadata()), attempt)

    def answer(self, call: Call[T], path: str, data: bytes) -> T:
        """The parsed answer of a call whose serialized response is ``data``."""
        assert call.from_document is not None and call.body is not None  # (checked by rpc)
        kind = (
            pb.RetrieveFeaturesResponse
            if path.endswith("/RetrieveFeatures")
            else pb.RetrieveFeatureServiceResponse
        )
        try:
            document, degraded = response_document(call.body, kind.FromString(data), data)
        except DecodeError as exc:
            raise _bad_response(f"the message cannot be decoded: {exc}") from None
        return call.from_document(document, degraded)


def _raw(data: bytes) -> bytes:
    return data


class GrpcTransport:
    """The blocking transport (``grpc.insecure_channel``); thread safe."""

    def __init__(self, settings: Settings, address: str) -> None:
        self._shared = _Channel(settings, address)
        self._channel = grpc.insecure_channel(address, options=self._shared.options)

    def send(self, call: Call[T], timeout_s: float | None) -> T:
        shared = self._shared
        path, request = shared.rpc(call)
        stub = self._channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=_raw
        )
        timeout = shared.timeout(timeout_s)
        attempt = 0
        while True:
            try:
                data: bytes = stub(request, timeout=timeout, metadata=shared.metadata)
            except grpc.RpcError as exc:
                time.sleep(shared.retry_after(exc, attempt))
                attempt += 1
                continue
            return shared.answer(call, path, data)

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcTransport:
    """The asyncio transport (``grpc.aio``); its channel is opened on the first call, in the
    event loop that makes it."""

    def __init__(self, settings: Settings, address: str) -> None:
        self._shared = _Channel(settings, address)
        self._channel: grpc.aio.Channel | None = None

    async def send(self, call: Call[T], timeout_s: float | None) -> T:
        shared = self._shared
        path, request = shared.rpc(call)
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(shared.address, options=shared.options)
        stub = self._channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=_raw
        )
        timeout = shared.timeout(timeout_s)
        attempt = 0
        while True:
            try:
                data: bytes = await stub(request, timeout=timeout, metadata=shared.metadata)
            except grpc.aio.AioRpcError as exc:
                await asyncio.sleep(shared.retry_after(exc, attempt))
                attempt += 1
                continue
            return shared.answer(call, path, data)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
