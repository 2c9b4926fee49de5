"""API errors: every 4xx is a JSON body ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["ApiError", "checked_list", "error_response", "json_type", "type_error"]


class ApiError(Exception):
    """A client error answered with ``status`` and a JSON body naming the offending field
    (``field`` is a path into the request such as ``entity_keys[3].device_id``, ``body``
    for the body as a whole, or ``X-API-Key``)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return error_response(self.status, self.code, self.message, self.field, headers)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "field": field}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def json_type(value: object) -> str:
    """What a decoded JSON value is, for error messages (``a string``, ``null``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def type_error(field: str, expected: str, value: object) -> ApiError:
    """422 ``INVALID_TYPE``: ``field`` is not of the ``expected`` JSON type."""
    return ApiError(
        422, "INVALID_TYPE", f"{field} must be {expected}, got {json_type(value)}", field
    )


def checked_list(value: object, field: str, limit: int, code: str, counted: str) -> list[Any]:
    """``value`` if it is a list of 1 to ``limit`` items, else the 422 naming ``field``:
    ``INVALID_TYPE``, ``EMPTY_LIST``, or ``code`` (``TOO_MANY_FEATURES``) with the message
    ``"<n> <counted>: at most <limit> per request"``."""
    if not isinstance(value, list):
        raise type_error(field, "a list", value)
    if not value:
        raise ApiError(422, "EMPTY_LIST", f"{field} must not be empty", field)
    if len(value) > limit:
        raise ApiError(422, code, f"{len(value)} {counted}: at most {limit} per request", field)
    return value
