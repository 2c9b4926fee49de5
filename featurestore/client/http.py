"""The clients of the sidecar: :class:`FeatureClient` (blocking) and
:class:`AsyncFeatureClient` (asyncio), over httpx with a pool of keep-alive connections, or,
for a ``grpc://host:port`` URL, over the sidecar's gRPC service
(:mod:`featurestore.client.grpc_transport`: the same methods, results and errors).

Both build their requests and read their answers with the same code (:class:`Call`, the
request bodies, :meth:`Settings.answer`, :meth:`~featurestore.client.results.
OnlineFeatures.from_json`); only the transport call and the wait between attempts differ.
A REST call:

* sends ``X-API-Key`` (``api_key``, else ``$FEATURESTORE_API_KEY``);
* waits at most ``timeout_s`` seconds (the client's, or the call's own) for each phase of
  the exchange (connecting, sending, each read of the answer, a free pooled connection), as
  httpx's timeouts do; a timeout is not retried (the time is spent) and raises
  :class:`~featurestore.client.errors.RequestTimedOut`;
* is retried, at most ``retries`` more times with a short doubling pause
  (``backoff_s``, 2x, ... at most :data:`MAX_BACKOFF_S`), only when no answer came because
  the connection failed: it could not be made (refused, unresolvable), or, for a call that
  only reads (every call here), it broke before the answer came (a keep-alive connection
  the server had closed). An answer, even a 5xx, is never retried. When the retries are
  spent: :class:`~featurestore.client.errors.ConnectionFailed`;
* raises the server's 4xx/5xx as a :class:`~featurestore.client.errors.FeatureStoreError`
  subclass with its status, code, message and field (:func:`~featurestore.client.errors.
  error_for`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

import httpx

from featurestore.client.calls import (
    API_KEY_ENV,
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    GRPC_SCHEME,
    MAX_BACKOFF_S,
    RETRIEVE_PATH,
    Call,
    Key,
    Settings,
    feature_service_body,
    features_body,
    multi_entity_body,
    registry_call,
    retrieve_call,
)
from featurestore.client.results import OnlineFeatures

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_TIMEOUT_S",
    "GRPC_SCHEME",
    "MAX_BACKOFF_S",
    "RETRIEVE_PATH",
    "AsyncFeatureClient",
    "FeatureClient",
    "feature_service_body",
    "features_body",
    "multi_entity_body",
]

T = TypeVar("T")


def _request(call: Call[Any]) -> dict[str, Any]:
    return {"method": call.method, "url": call.path, "json": call.body}


# --- the transports: REST here, gRPC in featurestore.client.grpc_transport --------------------


class _Transport(Protocol):
    def send(self, call: Call[T], timeout_s: float | None) -> T: ...

    def close(self) -> None: ...


class _AsyncTransport(Protocol):
    async def send(self, call: Call[T], timeout_s: float | None) -> T: ...

    async def aclose(self) -> None: ...


class _Http:
    """The blocking REST transport: an httpx pool."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = httpx.Client(**settings.pool_options())

    def send(self, call: Call[T], timeout_s: float | None) -> T:
        settings = self._settings
        timeout = settings.timeout(timeout_s)
        attempt = 0
        while True:
            try:
                response = self._http.request(**_request(call), timeout=timeout)
            except httpx.TransportError as exc:
                time.sleep(settings.pause(exc, attempt, call))
                attempt += 1
                continue
            return settings.answer(call, response)

    def close(self) -> None:
        self._http.close()


class _AsyncHttp:
    """The asyncio REST transport: an httpx pool."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(**settings.pool_options())

    async def send(self, call: Call[T], timeout_s: float | None) -> T:
        settings = self._settings
        timeout = settings.timeout(timeout_s)
        attempt = 0
        while True:
            try:
                response = await self._http.request(**_request(call), timeout=timeout)
            except httpx.TransportError as exc:
                await asyncio.sleep(settings.pause(exc, attempt, call))
                attempt += 1
                continue
            return settings.answer(call, response)

    async def aclose(self) -> None:
        await self._http.aclose()


def _grpc_address(url: str) -> str | None:
    """The ``host:port`` of a ``grpc://`` URL (None: REST), without importing grpc."""
    if not url.startswith(GRPC_SCHEME):
        return None
    address = url[len(GRPC_SCHEME) :].rstrip("/")
    if not address or "/" in address:
        raise ValueError(f"a gRPC URL is grpc://host:port, got {url!r}")
    return address


class _Client:
    """The constructor and the calls both clients share (their transports differ)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_connections: int = 100,
    ) -> None:
        self._settings = Settings(url, api_key, timeout_s, retries, backoff_s, max_connections)
        self._grpc_address = _grpc_address(url)
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def transport(self) -> Literal["rest", "grpc"]:
        """``grpc`` for a ``grpc://`` URL, else ``rest``."""
        return "rest" if self._grpc_address is None else "grpc"


class FeatureClient(_Client):
    """A blocking client of the sidecar at ``url``: its REST API (``http://127.0.0.1:8000``)
    or its gRPC service (``grpc://127.0.0.1:50051``: needs grpcio, see
    :mod:`featurestore.client.grpc_transport`); thread safe, one connection pool
    (``max_connections``; gRPC: one channel). Use it as a context manager or call
    :meth:`close`. See the module docstring for timeouts, retries and errors."""

    _transport: _Transport

    def _open(self) -> None:
        if self._grpc_address is None:
            self._transport = _Http(self._settings)
        else:
            from featurestore.client.grpc_transport import GrpcTransport

            self._transport = GrpcTransport(self._settings, self._grpc_address)

    def get_features(
        self,
        entity: str,
        keys: Sequence[Key],
        features: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """``entity``'s ``features`` for each of ``keys`` (request order, repeats kept)."""
        return self._transport.send(retrieve_call(features_body(entity, keys, features)), timeout_s)

    def get_multi_entity_features(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """``features`` of any entities for each ``entities`` row (its key columns), in one
        request and one store round trip; each row's key is its ``entities`` object."""
        body = multi_entity_body(entities, features)
        return self._transport.send(retrieve_call(body), timeout_s)

    def get_feature_service(
        self,
        name: str,
        entities: Sequence[Mapping[str, Any]],
        request_data: Sequence[Mapping[str, Any]] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """Feature service ``name``'s features (stored, then request-time) for each
        ``entities`` row, with its ``request_data`` row."""
        body = feature_service_body(name, entities, request_data)
        return self._transport.send(retrieve_call(body), timeout_s)

    def registry(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /api/v1/registry``: the entities, views and features the key may read.
        REST only: a gRPC client raises :class:`~featurestore.client.errors.
        FeatureStoreError` (code ``REST_ONLY``)."""
        return self._transport.send(registry_call(), timeout_s)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFeatureClient(_Client):
    """The asyncio form of :class:`FeatureClient`: the same methods, awaitable; close it
    with ``await client.aclose()`` or ``async with``."""

    _transport: _AsyncTransport

    def _open(self) -> None:
        if self._grpc_address is None:
            self._transport = _AsyncHttp(self._settings)
        else:
            from featurestore.client.grpc_transport import AsyncGrpcTransport

            self._transport = AsyncGrpcTransport(self._settings, self._grpc_address)

    async def get_features(
        self,
        entity: str,
        keys: Sequence[Key],
        features: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """See :meth:`FeatureClient.get_features`."""
        body = features_body(entity, keys, features)
        return await self._transport.send(retrieve_call(body), timeout_s)

    async def get_multi_entity_features(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """See :meth:`FeatureClient.get_multi_entity_features`."""
        body = multi_entity_body(entities, features)
        return await self._transport.send(retrieve_call(body), timeout_s)

    async def get_feature_service(
        self,
        name: str,
        entities: Sequence[Mapping[str, Any]],
        request_data: Sequence[Mapping[str, Any]] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """See :meth:`FeatureClient.get_feature_service`."""
        body = feature_service_body(name, entities, request_data)
        return await self._transport.send(retrieve_call(body), timeout_s)

    async def registry(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """See :meth:`FeatureClient.registry`."""
        return await self._transport.send(registry_call(), timeout_s)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
