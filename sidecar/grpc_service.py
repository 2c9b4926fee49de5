"""The gRPC service ``featurestore.v1.FeatureServing`` (``proto/featurestore/v1/
serving.proto``), served beside REST by the same process: :func:`start_grpc_server` is
called from the app's lifespan (:func:`sidecar.app.create_app`) when
``FEATURESTORE_GRPC_PORT`` is set (``featurestore serve --grpc-port PORT``), a
``grpc.aio`` server on the event loop uvicorn runs (uvloop).

Every call goes through what a REST request goes through, on the same
:class:`~sidecar.state.Sidecar`: the API key (call metadata ``x-api-key``, exactly one;
:meth:`~sidecar.auth.Authenticator.require`), the request's validation against the key's
scope and the registry (:meth:`~sidecar.request_body.RequestParser.validate`), the
retriever (one cache, one circuit breaker, one store connection, the same time budget and
degraded answers), the served-vector log, and the request metrics: route label the RPC's
full name (``/featurestore.v1.FeatureServing/RetrieveFeatures``), method ``GRPC``, status
the HTTP status REST gives the same answer (200, 401, 403, 422...), so the error-rate
alerts count both protocols.

A REST error becomes the gRPC status of :data:`GRPC_CODES` with REST's message as details
and trailing metadata ``x-featurestore-error-code`` (REST's ``code``) and
``x-featurestore-error-field`` (REST's ``field``, when there is one); bad input is never
``INTERNAL``. A message larger than ``FEATURESTORE_MAX_BODY_BYTES`` is refused by gRPC
itself (``RESOURCE_EXHAUSTED``, before the service sees it: not in the request metrics).
A degraded answer (some feature ``REASON_STORE_UNAVAILABLE``) sets the response's
``degraded`` field and the trailing metadata ``x-featurestore-degraded: 1``.

With ``--workers N`` every worker process binds the port with ``SO_REUSEPORT`` (the kernel
spreads connections over them; ``FEATURESTORE_GRPC_REUSE_PORT``, set by the CLI); with one
worker the option is off, so a second server on the same port fails to start instead of
sharing it silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from featurestore.grpc_api import serving_pb2 as pb
from sidecar.auth import ApiKey
from sidecar.errors import ApiError
from sidecar.grpc_messages import (
    features_document,
    features_response,
    service_document,
    service_response,
    value_kinds,
)
from sidecar.multi_request import MultiRequest
from sidecar.request_body import RetrieveRequest
from sidecar.state import Sidecar

__all__ = [
    "API_KEY_METADATA",
    "DEGRADED_METADATA",
    "ERROR_CODE_METADATA",
    "ERROR_FIELD_METADATA",
    "GRPC_CODES",
    "SERVICE_NAME",
    "FeatureServing",
    "grpc_route",
    "start_grpc_server",
]

log = logging.getLogger("sidecar")

#: the service's full name, as the generated descriptor spells it
SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["FeatureServing"].full_name
API_KEY_METADATA: Final = "x-api-key"
DEGRADED_METADATA: Final = ("x-featurestore-degraded", "1")
ERROR_CODE_METADATA: Final = "x-featurestore-error-code"
ERROR_FIELD_METADATA: Final = "x-featurestore-error-field"
#: the ``method`` label of gRPC calls in the request metrics
GRPC_METHOD_LABEL: Final = "GRPC"

#: REST status -> gRPC status code (400 and 422 are both bad input)
GRPC_CODES: Final[dict[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
}

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message | bytes)
Context = grpc.aio.ServicerContext[Message, Message]


def grpc_route(method: str) -> str:
    """The ``route`` label (and gRPC path) of an RPC:
    ``/featurestore.v1.FeatureServing/<method>``."""
    return f"/{SERVICE_NAME}/{method}"


class FeatureServing:
    """The RPCs, answered from one :class:`~sidecar.state.Sidecar` (REST's)."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        #: every feature's Value kind (the multi-entity answers name features of any entity)
        self.kinds = value_kinds(sidecar.registry)

    async def retrieve_features(
        self, request: pb.RetrieveFeaturesRequest, context: Context
    ) -> bytes:
        """``RetrieveFeatures``: the design document's single-entity request (the response
        serialized already: :func:`~sidecar.grpc_messages.features_response`)."""
        sidecar = self.sidecar
        principal = self._principal(context)
        parsed = sidecar.requests.validate(features_document(request), principal)
        if not isinstance(parsed, RetrieveRequest):  # (a body with entity_name never is)
            raise AssertionError("a single-entity body parsed as a multi-entity one")
        served_log = sidecar.served_log
        at = sidecar.clock.now() if served_log is not None else None
        payload, degraded = await sidecar.retriever.retrieve(parsed, at)
        response = features_response(
            payload, request.entity_keys, parsed.selection.features, degraded
        )
        if degraded:
            context.set_trailing_metadata((DEGRADED_METADATA,))
        if served_log is not None and at is not None:
            entity = parsed.selection.entity
            served_log.offer(at, entity.name, entity.key_columns, parsed.keys, payload)
        return response

    async def retrieve_feature_service(
        self, request: pb.RetrieveFeatureServiceRequest, context: Context
    ) -> bytes:
        """``RetrieveFeatureService``: the multi-entity request (contract C), validated and
        answered as REST's multi-entity form (:mod:`sidecar.multi_request`,
        :mod:`sidecar.multi_retrieval`)."""
        sidecar = self.sidecar
        principal = self._principal(context)
        parsed = sidecar.requests.validate(service_document(request), principal)
        if not isinstance(parsed, MultiRequest):  # (a body without entity_name never is)
            raise AssertionError("a multi-entity body parsed as a single-entity one")
        payload, degraded = await sidecar.multi.retrieve(parsed)
        if degraded:
            context.set_trailing_metadata((DEGRADED_METADATA,))
        return service_response(payload, self.kinds, degraded)

    def _principal(self, context: Context) -> ApiKey:
        presented = [
            value for name, value in context.invocation_metadata() or () if name == API_KEY_METADATA
        ]
        return self.sidecar.auth.require(presented[0] if presented else None, len(presented))

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        """The service's method handlers (the generated ``serving_pb2_grpc`` is not needed).
        Requests arrive as bytes and are decoded in :meth:`_call`, so that a message that
        cannot be decoded is answered ``INVALID_ARGUMENT`` (gRPC's own deserializer hook
        would answer ``INTERNAL``)."""
        rpcs = [
            (
                "RetrieveFeatures",
                pb.RetrieveFeaturesRequest,
                self._call("RetrieveFeatures", pb.RetrieveFeaturesRequest, self.retrieve_features),
            ),
            (
                "RetrieveFeatureService",
                pb.RetrieveFeatureServiceRequest,
                self._call(
                    "RetrieveFeatureService",
                    pb.RetrieveFeatureServiceRequest,
                    self.retrieve_feature_service,
                ),
            ),
        ]
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    call, response_serializer=_serialize_message
                )
                for name, _, call in rpcs
            },
        )

    def _call(
        self,
        name: str,
        request_type: type[Request],
        method: Callable[[Request, Context], Awaitable[Response]],
    ) -> Callable[[bytes, Context], Awaitable[Response]]:
        """``method`` with its request decoded, timed into the request metrics, its
        ApiError answered with the gRPC status of :data:`GRPC_CODES`, any other exception
        (a bug) logged and answered ``INTERNAL``."""
        metrics = self.sidecar.metrics
        route = grpc_route(name)

        async def call(data: bytes, context: Context) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                try:
                    request = request_type.FromString(data)
                except DecodeError as exc:
                    raise ApiError(
                        400, "INVALID_MESSAGE", f"the request message cannot be decoded: {exc}"
                    ) from None
                response = await method(request, context)
                status = 200
                return response
            except ApiError as exc:
                status = exc.status
                trailing = [(ERROR_CODE_METADATA, exc.code)]
                if exc.field is not None:
                    trailing.append((ERROR_FIELD_METADATA, exc.field))
                code = GRPC_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
                await context.abort(code, exc.message, trailing_metadata=tuple(trailing))
                raise  # (abort raises)
            except grpc.aio.AbortError:  # a method's own abort: answered as it says
                raise
            except Exception:
                log.exception("gRPC %s failed", route)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                raise
            finally:
                metrics.request(route, GRPC_METHOD_LABEL, status, time.perf_counter() - started)

        return call


def _serialize_message(message: Message | bytes) -> bytes:
    """A response message's bytes (a response written as bytes already, as is)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


async def start_grpc_server(
    sidecar: Sidecar, host: str, port: int, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A started ``grpc.aio`` server of :class:`FeatureServing` on ``host:port`` (port 0: a
    free one) in the running event loop, and the port it bound; raises RuntimeError if the
    port cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", sidecar.settings.max_body_bytes),
        ]
    )
    server.add_generic_rpc_handlers((FeatureServing(sidecar).handler(),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:  # (older grpcio returned 0 instead of raising)
        raise RuntimeError(f"gRPC: cannot bind {address}")
    await server.start()
    return server, bound
