"""What both clients of the sidecar share, whatever the transport (REST:
:mod:`featurestore.client.http`; gRPC: :mod:`featurestore.client.grpc_transport`): the
request bodies (the design document's form and contract C's), one API call (:class:`Call`:
what to send and how to read its answer) and the clients' configuration and retry decisions
(:class:`Settings`). Timeouts, retries and errors: :mod:`featurestore.client.http`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final, Generic, TypeVar

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
    "DEFAULT_BACKOFF_S",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "GRPC_SCHEME",
    "MAX_BACKOFF_S",
    "REGISTRY_PATH",
    "RETRIEVE_PATH",
    "Call",
    "Key",
    "Settings",
    "feature_service_body",
    "features_body",
    "multi_entity_body",
    "registry_call",
    "retrieve_call",
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
class Call(Generic[T]):
    """One API call: what to send and how to read a 2xx answer (REST: ``parse``; gRPC, which
    answers retrieve calls only: ``from_document`` of the REST document and degraded flag)."""

    method: str
    path: str
    body: dict[str, Any] | None
    #: it only reads: safe to send again if the connection broke before the answer
    idempotent: bool
    parse: Callable[[httpx.Response], T]
    from_document: Callable[[Any, bool], T] | None = None


def retrieve_call(body: dict[str, Any]) -> Call[OnlineFeatures]:
    def parse(response: httpx.Response) -> OnlineFeatures:
        degraded = response.headers.get(_DEGRADED_HEADER) == "1"
        return OnlineFeatures.from_json(response.json(), degraded=degraded)

    def from_document(document: Any, degraded: bool) -> OnlineFeatures:
        return OnlineFeatures.from_json(document, degraded=degraded)

    return Call("POST", RETRIEVE_PATH, body, True, parse, from_document)


def registry_call() -> Call[dict[str, Any]]:
    def parse(response: httpx.Response) -> dict[str, Any]:
        document: dict[str, Any] = response.json()
        return document

    return Call("GET", REGISTRY_PATH, None, True, parse)


def _version() -> str:
    try:
        return metadata.version("featurestore")
    except metadata.PackageNotFoundError:
        return "unknown"


class Settings:
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

    def pause(self, exc: httpx.TransportError, attempt: int, call: Call[Any]) -> float:
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

    def answer(self, call: Call[T], response: httpx.Response) -> T:
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
