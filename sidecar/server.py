"""The HTTP/1.1 protocol the sidecar is served with: uvicorn's httptools protocol
(:class:`SidecarProtocol`), bounded against slow and malformed clients.

uvicorn bounds the idle time between two requests of a connection (``timeout_keep_alive``)
but not the time a request takes to arrive, so a client that sends part of its headers, a
body shorter than its ``Content-Length`` or a chunked body without its last chunk held its
connection forever. This protocol adds, per worker process (:class:`ConnectionLimits`,
from :class:`sidecar.settings.Settings`):

* **the header timeout** (``FEATURESTORE_HEADER_TIMEOUT``, default 5 s): the request line
  and headers must be complete within it, counted from the connection's opening for its
  first request and from the first byte of each later one; in total, not per byte (a
  client sending one byte every 100 ms is cut at the timeout);
* **the body timeout** (``FEATURESTORE_BODY_TIMEOUT``, default 10 s): the body must be
  complete within it, counted from the moment the request is handed to the app (its
  headers complete, the previous request of a pipelined connection answered). A request
  answered before its body arrived (a 401, a 413) is still bounded: its connection is
  closed when the rest of the body has not come by then.

  On either timeout the client gets ``408`` with the sidecar's JSON error body
  (``REQUEST_TIMEOUT``, :mod:`sidecar.errors`) if nothing of a response was sent on the
  connection since the last complete one, and the connection is closed;
* **the header size** (:data:`MAX_HEADER_BYTES`, 64 KiB): a request line and headers
  larger than that get ``431`` (``HEADERS_TOO_LARGE``) and a close (httptools, like
  llhttp, sets no limit of its own). Counted a read at a time: the part of a read that
  follows a pipelined request ending in it is not, so the bound is 64 KiB plus one read
  (uvloop reads up to 256 KiB);
* **the open connections** (``FEATURESTORE_MAX_CONNECTIONS``, default 1024): a connection
  beyond it is accepted, answered at once with ``503`` (``TOO_MANY_CONNECTIONS``,
  ``Retry-After: 1``) and closed after a lingering close (the server stops writing, reads
  and drops what the client sends, and closes when the client does or after
  :data:`LINGER_S`), so that the client reads the answer instead of a connection reset.
  It does not count towards the limit. uvicorn's own ``limit_concurrency`` is not used: it
  answers in plain text, only once a request's headers are complete, and counts requests
  in flight and open connections together.

Malformed framing (an invalid request line or header, a bad chunk size: whatever
httptools refuses) is answered ``400`` ``INVALID_HTTP`` in JSON, with the parser's
message, instead of uvicorn's plain text. What stays uvicorn's: a request the app never
sees is not counted in the sidecar's metrics; an exception escaping the app is answered
with uvicorn's plain-text 500 (the sidecar's own handlers answer JSON 500s first).

Cost: one timer handle per connection at a time, armed lazily: a request moves a deadline
(a float) and the handle, when it fires, re-arms itself for the current one, so a
keep-alive connection's requests create and cancel no timers.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from sidecar.errors import error_response

__all__ = ["LINGER_S", "MAX_HEADER_BYTES", "ConnectionLimits", "SidecarProtocol"]

#: request line and headers, in bytes, at most
MAX_HEADER_BYTES: Final = 64 * 1024
#: seconds a refused connection (over the connection limit) is kept to read the client out
LINGER_S: Final = 1.0

_IDLE: Final = 0
_HEADERS: Final = 1
_BODY: Final = 2


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one worker process allows its clients: seconds to send a request's headers and
    its body, connections open at once."""

    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    max_connections: int = 1024


#: the base class, called directly on the per-request path: ``super()`` builds an object per
#: call on Python 3.11 (measured in-process, a trivial app: uvicorn's protocol 14.4 us a
#: request, this one 15.5 us with direct calls, 16.5 us with ``super()``)
_BASE = HttpToolsProtocol


class SidecarProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module docstring. Pass the class
    as uvicorn's ``http``; its :attr:`limits` are the process's
    (:meth:`use_limits`, called by :func:`sidecar.app.serving_worker`)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    @classmethod
    def use_limits(cls, limits: ConnectionLimits) -> None:
        """The limits of every connection this process accepts from now on."""
        cls.limits = limits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._bounds = self.limits
        #: what the deadline bounds: _IDLE (nothing), _HEADERS or _BODY
        self._phase = _IDLE
        #: loop time by which the current phase must be over
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        #: messages parsed to their end
        self._messages = 0
        self._refused = False

    # --- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._bounds.max_connections:
            self._refuse_connection()
            return
        self._start(_HEADERS, self._bounds.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering: read and drop
            return
        messages = self._messages
        _BASE.data_received(self, data)
        # data that ended inside headers, with no message ending before: all of it is theirs
        # (after a message that ended in it, an unknown part is: it is not counted)
        if self._phase == _HEADERS and self._messages == messages:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._fail(
                    431,
                    "HEADERS_TOO_LARGE",
                    f"the request line and headers are over {MAX_HEADER_BYTES} bytes",
                    "headers",
                )

    # --- the parser's callbacks: the phases of a request --------------------------------------

    def on_message_begin(self) -> None:
        _BASE.on_message_begin(self)
        if self._phase == _IDLE:  # a later request: from its first byte (the first's: open)
            self._start(_HEADERS, self._bounds.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._phase = _IDLE  # the body's deadline starts when the app gets the request
        _BASE.on_headers_complete(self)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        _BASE._start_asgi_task(self, cycle, app)
        if cycle.more_body:
            self._start(_BODY, self._bounds.body_timeout_s)

    def on_message_complete(self) -> None:
        _BASE.on_message_complete(self)
        self._phase = _IDLE
        self._messages += 1

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse, in JSON with the parser's message
        (this is called while its exception is handled)."""
        error = sys.exc_info()[1]
        if isinstance(error, httptools.HttpParserError) and str(error):
            msg = f"invalid HTTP request: {error}"
        self._fail(400, "INVALID_HTTP", msg, None)

    # --- deadlines ----------------------------------------------------------------------------

    def _start(self, phase: int, timeout_s: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + timeout_s
        if phase == _HEADERS:
            self._header_bytes = 0
        timer = self._timer
        if timer is None:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
        elif timer.when() > self._deadline:  # armed for a later phase (a body): fire sooner
            timer.cancel()
            self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:  # a later phase moved it
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        if self._phase == _HEADERS:
            what = f"the request headers did not arrive within {self._bounds.header_timeout_s:g} s"
            field = "headers"
        else:
            what = f"the request body did not arrive within {self._bounds.body_timeout_s:g} s"
            field = "body"
        self._fail(408, "REQUEST_TIMEOUT", what, field)

    # --- answers the app never sees -----------------------------------------------------------

    def _fail(self, status: int, code: str, message: str, field: str | None) -> None:
        """Answer ``status`` with a JSON error unless the client already has (part of) an
        answer to the request at fault, stop any request in flight, close the connection."""
        if self.transport.is_closing():
            return
        self.logger.warning("%s: %s", status, message)
        cycle = self.cycle
        answered = cycle is not None and (
            (cycle.response_started and not cycle.response_complete)  # half written
            or (cycle.response_complete and self._phase == _BODY)  # its body is at fault
        )
        if not answered:
            self._write_error(status, code, message, field)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() answers http.disconnect
            cycle.message_event.set()
        self._phase = _IDLE
        self.transport.close()

    def _refuse_connection(self) -> None:
        self._refused = True
        self.connections.discard(self)
        limit = self._bounds.max_connections
        self.logger.warning("connection refused: %d connections open, the limit", limit)
        self._write_error(
            503,
            "TOO_MANY_CONNECTIONS",
            f"the server has {limit} connections open, its limit: retry later",
            None,
            extra=(b"retry-after: 1\r\n",),
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _write_error(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None,
        extra: tuple[bytes, ...] = (),
    ) -> None:
        body = bytes(error_response(status, code, message, field).body)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(extra)
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
