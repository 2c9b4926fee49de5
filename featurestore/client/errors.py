"""The client's errors: one class per kind of failure, each carrying what the server said.

The sidecar answers every client error with a JSON body ``{"error": {"code", "message",
"field"}}`` (``field``: the path of the offending request field, ``X-API-Key`` or ``body``);
:func:`error_for` turns such an answer into the matching :class:`FeatureStoreError`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AuthenticationError",
    "ConnectionFailed",
    "FeatureStoreError",
    "InvalidRequestError",
    "PermissionDeniedError",
    "RequestTimedOut",
    "ServerError",
    "error_for",
]


class FeatureStoreError(Exception):
    """A request the feature store did not answer with features.

    ``status`` is the HTTP status (None when no answer came), ``code`` the server's error
    code (e.g. ``UNKNOWN_FEATURE``), ``message`` its message and ``field`` the request field
    it names (None if none)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        if self.status is None:
            return f"{self.message}{where}"
        return f"{self.status} {self.code}: {self.message}{where}"


class AuthenticationError(FeatureStoreError):
    """401: no API key, or one the server does not know."""


class PermissionDeniedError(FeatureStoreError):
    """403: the API key's scope does not cover the entity, feature or feature service."""


class InvalidRequestError(FeatureStoreError):
    """A 4xx other than 401/403: the request is invalid (422: a field, named by ``field``;
    400: not JSON; 413: the body is too large; 404/405: no such endpoint)."""


class ServerError(FeatureStoreError):
    """5xx: the server failed (a store outage is not one: it is answered 200, degraded)."""


class ConnectionFailed(FeatureStoreError):
    """No answer: the connection could not be made (after the retries) or broke."""


class RequestTimedOut(ConnectionFailed):
    """No answer within the call's timeout (not retried: the time is spent)."""


def _by_status(status: int) -> type[FeatureStoreError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status >= 500:
        return ServerError
    return InvalidRequestError


def error_for(status: int, body: bytes) -> FeatureStoreError:
    """The error of an answer with ``status`` >= 400 and ``body``: the server's code,
    message and field when the body is its JSON error, else the body's text."""
    code: str | None = None
    field: str | None = None
    message = body.decode("utf-8", errors="replace").strip()[:500] or "(empty body)"
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = None
    detail = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(detail, dict):
        code = detail.get("code") if isinstance(detail.get("code"), str) else None
        field = detail.get("field") if isinstance(detail.get("field"), str) else None
        if isinstance(detail.get("message"), str):
            message = detail["message"]
    return _by_status(status)(message, status=status, code=code or f"HTTP_{status}", field=field)
