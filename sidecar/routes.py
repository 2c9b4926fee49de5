"""The HTTP endpoints: module-level functions, one per entry of the route table
(:data:`sidecar.endpoints.ENDPOINTS`), and :data:`ROUTES` built from that table. State
lives in ``request.app.state.sidecar``, a :class:`sidecar.state.Sidecar`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from featurestore.timestamps import micros
from sidecar.auth import API_KEY_HEADER
from sidecar.endpoints import ENDPOINTS, HEALTH, METRICS, OPENAPI, READY, REGISTRY, RETRIEVE
from sidecar.errors import ApiError, error_response
from sidecar.logs import CURRENT, REQUEST_ID_HEADER, RequestContext
from sidecar.multi_request import MultiRequest
from sidecar.state import Sidecar

__all__ = ["HANDLERS", "ROUTES", "RetrieveEndpoint", "http_error", "server_error"]

log = logging.getLogger("sidecar")

_JSON: Final = "application/json"


def _sidecar(request: Request) -> Sidecar:
    sidecar: Sidecar = request.app.state.sidecar
    return sidecar


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "INVALID_HEADER", "Content-Length is not a number", "body")
        if int(declared) > limit:
            raise ApiError(413, "BODY_TOO_LARGE", f"the body is over {limit} bytes", "body")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "CLIENT_DISCONNECTED", "the client went away", "body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "BODY_TOO_LARGE", f"the body is over {limit} bytes", "body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_RESPONSE_HEADERS: Final = [(b"content-type", b"application/json")]
_DEGRADED: Final = (b"x-featurestore-degraded", b"1")


async def _send(send: Send, payload: bytes, degraded: bool, context: RequestContext) -> None:
    """A 200 answer: the JSON body, its request id, and the degraded header if degraded."""
    headers = [
        *_RESPONSE_HEADERS,
        (b"content-length", str(len(payload)).encode()),
        (REQUEST_ID_HEADER, context.header),
    ]
    if degraded:
        context.degraded = True
        headers.append(_DEGRADED)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RetrieveEndpoint:
    """``POST /api/v1/features/retrieve``: a plain ASGI app, called by
    :class:`sidecar.app.SidecarApp` directly (the hot path skips Starlette's middleware,
    router, Request and Response objects). It records its own request metrics and answers
    an unexpected exception with a JSON 500 (logged), as the middleware would. Like
    :func:`sidecar.logs.serve_logged` for the other routes, it serves the request under a
    :class:`~sidecar.logs.RequestContext`, answers its ``X-Request-ID`` and writes the access
    log line when sampled."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        sidecar: Sidecar = scope["app"].state.sidecar
        status = 500
        try:
            status = await self._respond(sidecar, scope, receive, send)
        except Exception:
            log.exception("retrieve request failed")
            context = CURRENT.get()
            headers = None if context is None else {"x-request-id": context.id}
            # (fails if the response had started, or the client is gone: nothing to add)
            with contextlib.suppress(Exception):
                await error_response(500, "INTERNAL", "internal error", None, headers)(
                    scope, receive, send
                )
        finally:
            seconds = time.perf_counter() - started
            sidecar.metrics.request(RETRIEVE.path, "POST", status, seconds)
            access = sidecar.access_log
            if access.sample and access.wanted():
                access.write(CURRENT.get(), "POST", RETRIEVE.path, status, seconds)

    async def _respond(self, sidecar: Sidecar, scope: Scope, receive: Receive, send: Send) -> int:
        presented: bytes | None = None
        keys = 0
        declared: bytes | None = None
        request_id: bytes | None = None
        key_header = API_KEY_HEADER
        # one pass for the key, the body's length and the request id
        for name, value in scope["headers"]:
            if name == key_header:
                presented = value
                keys += 1
            elif name == b"content-length":
                declared = value
            elif name == REQUEST_ID_HEADER:
                request_id = value
        context = RequestContext(request_id)
        CURRENT.set(context)
        try:
            principal = sidecar.auth.require(presented, keys)
            context.key = principal.name
            body = await _read_body(receive, declared, sidecar.settings.max_body_bytes)
            parsed = sidecar.requests.parse(body, principal)
        except ApiError as exc:
            await exc.response({"x-request-id": context.id})(scope, receive, send)
            return exc.status
        served_log = sidecar.served_log
        if isinstance(parsed, MultiRequest):  # the multi-entity form (not in the served log)
            payload, degraded = await sidecar.multi.retrieve(parsed)
            await _send(send, payload, degraded, context)
            return 200
        if served_log is None:
            payload, degraded = await sidecar.retriever.retrieve(parsed)
        else:
            at = sidecar.clock.now()
            payload, degraded = await sidecar.retriever.retrieve(parsed, at)
        await _send(send, payload, degraded, context)
        if served_log is not None:  # after the response: never on its path
            entity = parsed.selection.entity
            served_log.offer(at, entity.name, entity.key_columns, parsed.keys, payload)
        return 200


async def registry(request: Request) -> Response:
    """``GET /api/v1/registry``: what the key may read."""
    sidecar = _sidecar(request)
    try:
        principal = sidecar.auth.principal(request.headers, REGISTRY.name)
    except ApiError as exc:
        return exc.response()
    assert principal is not None  # the registry endpoint cannot be opened
    return Response(sidecar.documents.registry(principal), media_type=_JSON)


async def health(request: Request) -> Response:
    """``GET /health``: the process is alive."""
    sidecar = _sidecar(request)
    try:
        sidecar.auth.principal(request.headers, HEALTH.name)
    except ApiError as exc:
        return exc.response()
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def ready(request: Request) -> Response:
    """``GET /ready``: the registry is loaded and the store answers (200), or not (503).

    The body is ``{"status": "ready"}`` or ``{"status": "not_ready"}``, nothing more, for a
    caller without a key (``ready`` open) or with a scoped key; an unscoped key (an
    operator's) also gets the details: the registry's size, the store (its redacted
    description), why it does not answer, and the circuit breaker's state."""
    sidecar = _sidecar(request)
    try:
        principal = sidecar.auth.principal(request.headers, READY.name)
    except ApiError as exc:
        return exc.response()
    problem = await sidecar.reader.check(sidecar.settings.ready_timeout_s)
    status_code = 200 if problem is None else 503
    if principal is None or principal.scoped:
        body = _READY if problem is None else _NOT_READY
        return Response(body, status_code=status_code, media_type=_JSON)
    details = {
        "status": "ready" if problem is None else "not_ready",
        "registry": {
            "entities": len(sidecar.plans),
            "features": sum(len(p.features) for p in sidecar.plans.values()),
        },
        "store": sidecar.reader.store.description,
        "store_problem": problem,
        "circuit": sidecar.breaker.state,
    }
    return Response(orjson.dumps(details), status_code=status_code, media_type=_JSON)


_READY: Final = b'{"status":"ready"}'
_NOT_READY: Final = b'{"status":"not_ready"}'


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    sidecar = _sidecar(request)
    try:
        sidecar.auth.principal(request.headers, METRICS.name)
    except ApiError as exc:
        return exc.response()
    sidecar.metrics.cache_entries.set(len(sidecar.cache))
    sidecar.metrics.circuit(sidecar.breaker.state)
    sidecar.metrics.data_ages(micros(sidecar.clock.now()) / 1e6)
    payload, content_type = sidecar.metrics.render()
    return Response(payload, media_type=content_type)


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the document of the caller's scope (without a key, when
    ``openapi`` is open: one that names no entity or feature)."""
    sidecar = _sidecar(request)
    try:
        principal = sidecar.auth.principal(request.headers, OPENAPI.name)
    except ApiError as exc:
        return exc.response()
    return Response(sidecar.documents.openapi(principal), media_type=_JSON)


#: the handler of each endpoint of the route table, by name
HANDLERS: Final[dict[str, Callable[[Request], Awaitable[Response]] | RetrieveEndpoint]] = {
    # POST is answered by SidecarApp before routing; the route gives other methods a 405
    RETRIEVE.name: RetrieveEndpoint(),
    REGISTRY.name: registry,
    HEALTH.name: health,
    READY.name: ready,
    METRICS.name: metrics,
    OPENAPI.name: openapi,
}
ROUTES: Final = [
    Route(endpoint.path, HANDLERS[endpoint.name], methods=[endpoint.method])
    for endpoint in ENDPOINTS
]

_HTTP_CODES: Final = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (404, 405) as JSON."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: 500 as JSON (logged by the app); never expected, tests assert none occurs."""
    return error_response(500, "INTERNAL", "internal error", None)
