"""The clients of the sidecar: :class:`FeatureClient` (blocking) and
:class:`AsyncFeatureClient` (asyncio), over httpx with a pool of keep-alive connections, or,
for a ``grpc://host:port`` URL, over the sidecar's gRPC service
(:mod:`featurestore.client.grpc_transport`: the same methods, results and errors).

Both build their requests and read their answers with the same code (:class:`_Call`, the
request bodies, :meth:`_Settings.answer`, :meth:`~featurestore.client.results.
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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import TracebackType
from typing import Any, Final, Generic, Literal, Protocol, Self, TypeVar

import httpx

from featurestore.client.errors import (
    AuthenticationError,
    ConnectionFailed,
    FeatureStoreError,
    RequestTimedOut,
    error_for,
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

#: the environment variable the API key is read from when none is given
API_KEY_ENV: Final = "FEATURESTORE_API_KEY"
DEFAULT_TIMEOUT_S: Final = 2.0
DEFAULT_RETRIES: Final = 2
DEFAULT_BACKOFF_S: Final = 0.05
#: the longest pause between two attempts
MAX_BACKOFF_S: Final = 0.5
RETRIEVE_PATH: Final = "/api/v1/features/retrieve"
REGISTRY_PATH: Final = "/api/v1/registry"
_DEGRADED_HEADER: Final = "x-featurestore-degraded"
#: the URL scheme of the sidecar's gRPC service
GRPC_SCHEME: Final = "grpc://"

T = TypeVar("T")

Key = str | Mapping[str, Any]


# --- request bodies (the design document's form, and contract C's) ---------------------------


def features_body(entity: str, keys: Sequence[Key], features: Sequence[str]) -> dict[str, Any]:
    """The single-entity retrieve body: ``entity``'s ``features`` for ``keys`` (strings, or
    key objects ``{"user_id": ..., "device_id": ...}`` for a composite entity)."""
    _not_text(keys, "keys")
    _not_text(features, "features")
    return {
        "entity_name": entity,
        "entity_keys": [k if isinstance(k, str) else dict(k) for k in keys],
        "features": list(features),
    }


def multi_entity_body(
    entities: Sequence[Mapping[str, Any]], features: Sequence[str]
) -> dict[str, Any]:
    """The multi-entity retrieve body of a feature list: any online ``features`` of any
    entities, for each ``entities`` row (an object naming every key column those features'
    entities need, a column shared by two entities once)."""
    _not_text(entities, "entities")
    _not_text(features, "features")
    return {"features": list(features), "entities": [dict(e) for e in entities]}


def feature_service_body(
    name: str,
    entities: Sequence[Mapping[str, Any]],
    request_data: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The multi-entity retrieve body of feature service ``name``: one ``entities`` object
    per row naming every key column the service's features need, and optionally one
    ``request_data`` object per row (the service's request fields)."""
    _not_text(entities, "entities")
    body: dict[str, Any] = {"feature_service": name, "entities": [dict(e) for e in entities]}
    if request_data is not None:
        _not_text(request_data, "request_data")
        if len(request_data) != len(entities):
            raise ValueError(
                f"request_data has {len(request_data)} items for {len(entities)} entities: "
                "one object per entities item"
            )
        body["request_data"] = [dict(r) for r in request_data]
    return body


def _not_text(value: object, name: str) -> None:
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a list, not a single {type(value).__name__}")


# --- what both clients share ------------------------------------------------------------------


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One API call: what to send and how to read a 2xx answer (REST: ``parse``; gRPC, which
    answers retrieve calls only: ``from_document`` of the REST document and degraded flag)."""

    method: str
    path: str
    body: dict[str, Any] | None
    #: it only reads: safe to send again if the connection broke before the answer
    idempotent: bool
    parse: Callable[[httpx.Response], T]
    from_document: Callable[[Any, bool], T] | None = None


def _retrieve(body: dict[str, Any]) -> _Call[OnlineFeatures]:
    def parse(response: httpx.Response) -> OnlineFeatures:
        degraded = response.headers.get(_DEGRADED_HEADER) == "1"
        return OnlineFeatures.from_json(response.json(), degraded=degraded)

    def from_document(document: Any, degraded: bool) -> OnlineFeatures:
        return OnlineFeatures.from_json(document, degraded=degraded)

    return _Call("POST", RETRIEVE_PATH, body, True, parse, from_document)


def _registry() -> _Call[dict[str, Any]]:
    def parse(response: httpx.Response) -> dict[str, Any]:
        document: dict[str, Any] = response.json()
        return document

    return _Call("GET", REGISTRY_PATH, None, True, parse)


def _version() -> str:
    try:
        return metadata.version("featurestore")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Settings:
    """The configuration both clients share, and their retry decisions."""

    #: appended to a 401's message when the client has no key
    no_key_hint: Final = f" (no API key given: pass api_key= or set ${API_KEY_ENV})"

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        max_connections: int,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must not be negative")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.has_key = bool(key)
        self.headers = {"User-Agent": f"featurestore-client/{_version()}"}
        if key:
            self.headers["X-API-Key"] = key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )

    def timeout(self, timeout_s: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s if timeout_s is None else timeout_s)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (0 first): ``backoff_s`` doubling."""
        return float(min(self.backoff_s * 2**attempt, MAX_BACKOFF_S))

    def pause(self, exc: httpx.TransportError, attempt: int, call: _Call[Any]) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after ``exc``, or raises the
        error to give the caller when the call is not to be retried."""
        if isinstance(exc, httpx.TimeoutException):
            raise RequestTimedOut(f"no answer from {self.url}{call.path} in time: {exc!r}")
        retryable = isinstance(exc, httpx.ConnectError) or (
            call.idempotent
            and isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError)
        )
        if not retryable or attempt >= self.retries:
            tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
            raise ConnectionFailed(f"{call.method} {self.url}{call.path} failed ({tries}): {exc!r}")
        return self.backoff(attempt)

    def answer(self, call: _Call[T], response: httpx.Response) -> T:
        """The parsed answer, or the server's error raised."""
        if response.status_code >= 400:
            error = error_for(response.status_code, response.content)
            if isinstance(error, AuthenticationError) and not self.has_key:
                error.message += self.no_key_hint
            raise error
        try:
            return call.parse(response)
        except ValueError as exc:  # not JSON
            raise FeatureStoreError(
                f"unexpected answer to {call.method} {call.path}: {exc}",
                status=response.status_code,
                code="BAD_RESPONSE",
            ) from None

    def pool_options(self) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "headers": self.headers,
            "timeout": self.timeout(None),
            "limits": self.limits,
        }


def _request(call: _Call[Any]) -> dict[str, Any]:
    return {"method": call.method, "url": call.path, "json": call.body}


# --- the transports: REST here, gRPC in featurestore.client.grpc_transport --------------------


class _Transport(Protocol):
    def send(self, call: _Call[T], timeout_s: float | None) -> T: ...

    def close(self) -> None: ...


class _AsyncTransport(Protocol):
    async def send(self, call: _Call[T], timeout_s: float | None) -> T: ...

    async def aclose(self) -> None: ...


class _Http:
    """The blocking REST transport: an httpx pool."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._http = httpx.Client(**settings.pool_options())

    def send(self, call: _Call[T], timeout_s: float | None) -> T:
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

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(**settings.pool_options())

    async def send(self, call: _Call[T], timeout_s: float | None) -> T:
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
        self._settings = _Settings(url, api_key, timeout_s, retries, backoff_s, max_connections)
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
        return self._transport.send(_retrieve(features_body(entity, keys, features)), timeout_s)

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
        return self._transport.send(_retrieve(body), timeout_s)

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
        return self._transport.send(_retrieve(body), timeout_s)

    def registry(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /api/v1/registry``: the entities, views and features the key may read.
        REST only: a gRPC client raises :class:`~featurestore.client.errors.
        FeatureStoreError` (code ``REST_ONLY``)."""
        return self._transport.send(_registry(), timeout_s)

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
        return await self._transport.send(_retrieve(body), timeout_s)

    async def get_multi_entity_features(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        """See :meth:`FeatureClient.get_multi_entity_features`."""
        body = multi_entity_body(entities, features)
        return await self._transport.send(_retrieve(body), timeout_s)

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
        return await self._transport.send(_retrieve(body), timeout_s)

    async def registry(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """See :meth:`FeatureClient.registry`."""
        return await self._transport.send(_registry(), timeout_s)

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
