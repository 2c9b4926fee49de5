"""The sidecar's logs: JSON lines on stderr, a request id in every line, an access log.

Every line is one JSON object, as the loader writes them (python-json-logger)::

    {"level": "INFO", "logger": "sidecar.access", "message": "POST /api/v1/features/retrieve 200",
     "timestamp": "2026-05-01 00:00:00.123456+00:00", "request_id": "3f9a...", "event": "request",
     "method": "POST", "path": "/api/v1/features/retrieve", "status": 200,
     "duration_ms": 0.412, "degraded": false, "api_key": "fraud-service"}

Request ids: a request's ``X-Request-ID`` header is kept when it is sane (1 to
:data:`MAX_REQUEST_ID_CHARS` characters among letters, digits and ``. _ : - + / =``); any
other value, or none, is replaced by a fresh random id (32 hex digits). The id is sent back
in the response's ``X-Request-ID`` header and is the ``request_id`` of every line logged
while the request is served (a :class:`contextvars.ContextVar`: each request runs in its own
asyncio task), the store's warnings included. Lines logged outside a request have none.

The access log (``"logger": "sidecar.access"``, event ``request``; written by
:class:`AccessLog`): one line per sampled request with its method, path, status, duration
in milliseconds (from the app receiving the request to the end of its response), whether it
was degraded (answered partly without the store) and the NAME of the API key (never the
key; null without one). ``FEATURESTORE_ACCESS_LOG_SAMPLE``
(``featurestore serve --access-log`` / ``--access-log-sample``) is the share of requests
written, 0 to 1; default 0 (off): the Prometheus metrics already count every request by
route, status and latency, and even written directly a line adds about a tenth to a
small request's handling (README "Operating", measured there).
"""

from __future__ import annotations

import datetime as dt
import logging
import logging.config
import os
import random
import re
import sys
import time
from contextvars import ContextVar
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ACCESS_LOGGER",
    "CURRENT",
    "MAX_REQUEST_ID_CHARS",
    "REQUEST_ID_HEADER",
    "AccessLog",
    "RequestContext",
    "RequestIdFilter",
    "configure_logging",
    "json_formatter",
    "log_config",
    "serve_logged",
]

REQUEST_ID_HEADER: Final = b"x-request-id"
MAX_REQUEST_ID_CHARS: Final = 128
ACCESS_LOGGER: Final = "sidecar.access"
_SANE: Final = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_REQUEST_ID_CHARS)


class RequestContext:
    """What the logs know of the request being served: its id (``header``: the same as
    bytes, for the response header), the name of its API key once authenticated, whether
    its answer was degraded."""

    __slots__ = ("degraded", "header", "id", "key")

    def __init__(self, presented: bytes | None) -> None:
        if presented is None or _SANE.fullmatch(presented) is None:
            presented = os.urandom(16).hex().encode()
        self.header: bytes = presented
        self.id: str = presented.decode("ascii")
        self.key: str | None = None
        self.degraded = False


#: the request being served in this task (None outside a request)
CURRENT: Final[ContextVar[RequestContext | None]] = ContextVar(
    "featurestore_sidecar_request", default=None
)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = CURRENT.get()
        if context is not None:
            record.request_id = context.id
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: level, logger, message, timestamp (UTC, as
    ``2026-05-01 00:00:00.123456+00:00``) and every ``extra`` field (the loader's layout,
    loader/output.py); uvicorn's ``color_message`` left out."""
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_default=str,
        # uvicorn's copy of its message with terminal colours
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def log_config(level: str = "info") -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of a sidecar process, uvicorn's loggers
    included (``uvicorn.run(log_config=...)`` applies it in every worker): one JSON
    handler on stderr at the root; ``sidecar``, ``featurestore`` and uvicorn's loggers at
    ``level``, everything else at WARNING."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": json_formatter}},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            name: {"level": upper, "handlers": [], "propagate": True}
            for name in ("sidecar", "featurestore", "uvicorn", "uvicorn.error")
        }
        # uvicorn's own access log is off: ours (AccessLog) has the request id and the key
        | {"uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False}},
    }


def configure_logging(level: str = "info") -> None:
    """JSON logs for this process (:func:`log_config`), unless its root logger has a handler
    already (uvicorn applied :func:`log_config`, or an embedding program chose its own)."""
    if not logging.getLogger().handlers:
        logging.config.dictConfig(log_config(level))


class AccessLog:
    """Writes a sampled share of requests (``sample``, 0 to 1) to stderr as JSON lines, in
    the layout of :func:`json_formatter` (logger ``sidecar.access``, level INFO).

    The line is built with orjson and written to ``sys.stderr`` directly, not through
    :mod:`logging`: measured in-process, a line through the logging machinery and
    python-json-logger cost about 70 us, more than a cached single-key request's whole
    handling (about 80 us); built directly, a few microseconds (bench/request_log.py)."""

    __slots__ = ("sample",)

    def __init__(self, sample: float) -> None:
        self.sample = sample

    def wanted(self) -> bool:
        """Whether this request is one of the sample (call only when ``sample`` is set)."""
        return self.sample >= 1.0 or random.random() < self.sample

    def write(
        self, context: RequestContext | None, method: str, path: str, status: int, seconds: float
    ) -> None:
        line = orjson.dumps(
            {
                "level": "INFO",
                "logger": ACCESS_LOGGER,
                "message": f"{method} {path} {status}",
                "timestamp": str(dt.datetime.now(dt.UTC)),  # as python-json-logger writes it
                "request_id": None if context is None else context.id,
                "event": "request",
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "degraded": context is not None and context.degraded,
                "api_key": None if context is None else context.key,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        sys.stderr.write(line.decode())


#: the longest path written to the access log (a client's 404 may send any)
_MAX_PATH_CHARS: Final = 512


async def serve_logged(
    app: ASGIApp, access: AccessLog, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve an HTTP request with ``app`` under a :class:`RequestContext` (its id from the
    request's ``X-Request-ID`` when sane), the id added to the response's headers, and an
    access log line when sampled. (The retrieve endpoint does the same inline:
    :class:`sidecar.routes.RetrieveEndpoint`.)"""
    started = time.perf_counter()
    presented = None
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            presented = value
            break
    context = RequestContext(presented)
    CURRENT.set(context)
    status = 500

    async def send_with_id(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, context.header)]
        await send(message)

    try:
        await app(scope, receive, send_with_id)
    finally:
        if access.sample and access.wanted():
            path = scope["path"][:_MAX_PATH_CHARS]
            access.write(context, scope["method"], path, status, time.perf_counter() - started)
