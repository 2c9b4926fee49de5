"""A minimal asyncio Redis client for the sidecar's read path: one connection multiplexed
by every concurrent call, the commands of the calls made in one event loop iteration
written together, the replies parsed by hiredis and handed out in order.

Why not ``redis.asyncio``: the sidecar's reads are one pipeline of HMGETs per request, and
``redis.asyncio`` spends Python time per command and per reply. Measured on the 2-core
bench machine (median of 300 sequential calls, 10 features + 3 meta fields per HMGET,
local Redis):

======================================  =========  ==========
client                                  1 key      100 keys
======================================  =========  ==========
redis.asyncio Pipeline                  130 us     2,248 us
redis.asyncio Connection, packed write  103 us     1,072 us
this module (then a pool, one call      76 us      614 us
per connection)
======================================  =========  ==========

Why one multiplexed connection rather than a pool of connections with one call each: under
concurrency, the calls of one event loop iteration cost one ``send`` and usually one
``recv`` together instead of one each (loopback TCP costs ~15-20 us of system time per
send here), and Redis reads them in one go. Measured with ``bench/serve.py`` (1 worker,
concurrency 8, single-key requests, random keys), a pool of 8: 160 us CPU per request,
p99 2.88 ms; this client: 133 us, p99 1.92 ms (bench/README.md). Redis answers commands in
the order received on a connection, so one connection holds the same order a pool would.

What it does, and nothing more: connect (TCP, or TLS for ``rediss``), ``AUTH`` and
``SELECT`` on connect, queue each call's packed commands, write the queue once per event
loop iteration (``call_soon``), and give each call exactly its replies. Error replies come
back in place as :class:`hiredis.ReplyError` instances.

Connecting: one attempt at a time, shared by every call that needs the connection; the
whole set-up (TCP connect, TLS handshake, AUTH, SELECT) must finish within the connect
timeout, or the attempt is abandoned, its connection aborted, and the calls waiting on it
fail with :class:`RedisConnectTimeout`; the next call starts a new attempt. A call never
waits for an attempt beyond its own deadline (the attempt goes on for the others).

Deadlines: a call may carry a deadline (event loop time). Past it, the call fails with
TimeoutError unless Redis has been answering since the call was queued (replies parsed for
it or for calls ahead of it, or bytes waiting in the socket that a busy event loop has not
read yet: the lateness is then the caller's own queueing, not the store's), in which case
it gets up to the same budget again. A call that times out with no reply at all since it
was queued (a silent server) closes the connection: every call queued on it fails with
:class:`RedisConnectionLost`, and the next call connects again.

Cancellation: a call abandoned for any other reason (its task cancelled) stays in the queue
with its future cancelled; its replies are read and dropped when they arrive, so the calls
after it get theirs. The connection is bound to the event loop that opened it; used from
another loop, the client drops it and connects again.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl as ssl_module
from collections.abc import Sequence
from typing import Any, cast

import hiredis

__all__ = ["AsyncRedisClient", "RedisAuthError", "RedisConnectTimeout", "RedisConnectionLost"]


class RedisConnectionLost(ConnectionError):
    """The connection closed (or the reply stream broke) before every reply arrived."""


class RedisConnectTimeout(ConnectionError):
    """Connection set-up (TCP connect, TLS handshake, AUTH, SELECT) did not finish within
    the connect timeout; the attempt was abandoned and its connection aborted."""


class RedisAuthError(ConnectionError):
    """AUTH or SELECT on connect was refused."""


class _Call:
    """One call in flight on a connection."""

    __slots__ = ("count", "future", "progress", "replies")

    def __init__(self, count: int, future: asyncio.Future[None], progress: int) -> None:
        self.count = count
        self.replies: list[Any] = []
        self.future = future
        #: replies the connection had received when the call was queued
        self.progress = progress


class _Connection(asyncio.Protocol):
    """One connection shared by concurrent calls (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._calls: collections.deque[_Call] = collections.deque()
        self._out: list[bytes] = []
        #: replies received so far; writes made (tests)
        self.progress = 0
        self.writes = 0
        self.closed = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        calls = self._calls
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self.progress += 1
                call = calls[0]  # IndexError: a reply nobody asked for
                call.replies.append(reply)
                if len(call.replies) == call.count:
                    calls.popleft()
                    if not call.future.done():  # else abandoned: its replies are dropped
                        call.future.set_result(None)
        except (hiredis.ProtocolError, IndexError) as exc:  # not Redis, or a corrupt stream
            what = "a reply to no command" if isinstance(exc, IndexError) else str(exc)
            self._fail(RedisConnectionLost(f"invalid reply from Redis: {what}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionLost("Redis closed the connection" + (f": {exc}" if exc else "")))

    # --- calls ----------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        calls, self._calls = self._calls, collections.deque()
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)

    async def call(self, payload: bytes, count: int, deadline: float | None = None) -> list[Any]:
        """Queue ``payload`` (``count`` packed commands) and return their ``count`` replies.

        ``deadline`` (event loop time): raise TimeoutError if by then Redis has not been
        answering (see :meth:`_deadline_passed`); with no reply at all since the call was
        queued, the connection is closed too."""
        if self.closed or self._transport is None:
            raise RedisConnectionLost("the connection is closed")
        if count == 0:
            return []
        call = _Call(count, self.loop.create_future(), self.progress)
        self._calls.append(call)
        if not self._out:  # the first call of this loop iteration: write them all after it
            self.loop.call_soon(self._flush)
        self._out.append(payload)
        timer = None
        if deadline is not None:
            grace = max((deadline - self.loop.time()) / 8, 0.0005)
            timer = self.loop.call_at(deadline, self._deadline_passed, call, grace, 8)
        try:
            await call.future
        except TimeoutError:
            if self.progress == call.progress:  # nothing came back since: a silent server
                self.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return call.replies

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self.closed:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.writes += 1

    def _deadline_passed(self, call: _Call, grace: float, left: int) -> None:
        """The deadline passed with replies missing. If Redis has been answering since the
        call was queued (replies parsed, or bytes waiting in the socket that a busy event
        loop has not read yet), the lateness is this process's, not the store's: check
        again ``grace`` later, at most ``left`` more times (twice the budget in all).
        Otherwise give up: TimeoutError."""
        if call.future.done():
            return
        if left > 0 and (self.progress > call.progress or self._readable()):
            self.loop.call_later(grace, self._deadline_passed, call, grace, left - 1)
            return
        call.future.set_exception(TimeoutError("Redis did not answer within the time budget"))

    def _readable(self) -> bool:
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class AsyncRedisClient:
    """A connection to one Redis server, opened on first use and again after a loss;
    :meth:`execute` runs a pipeline of commands on it, concurrently with other calls."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        # the server's certificate and host name are checked (against ssl_ca_certs, a PEM
        # bundle, or the system's CAs)
        self._ssl: ssl_module.SSLContext | None = (
            ssl_module.create_default_context(cafile=ssl_ca_certs) if ssl else None
        )
        setup: list[tuple[str, ...]] = []
        if password is not None:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            setup.append(("SELECT", str(db)))
        self._setup = setup
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        #: connections opened so far (tests)
        self.connects = 0

    async def execute(self, commands: Sequence[tuple[str | bytes, ...]]) -> list[Any]:
        """The replies of ``commands`` (in order), sent in one write.

        Raises :class:`RedisConnectionLost` / ``OSError`` (unreachable, closed),
        :class:`RedisConnectTimeout` (set-up stalled) and :class:`RedisAuthError`."""
        pack: Any = hiredis.pack_command
        return await self.execute_packed(b"".join(map(pack, commands)), len(commands))

    async def execute_packed(
        self, payload: bytes, count: int, deadline: float | None = None
    ) -> list[Any]:
        """:meth:`execute` of ``count`` commands already packed (RESP) into ``payload``.

        ``deadline`` (event loop time) bounds connecting and the first replies
        (TimeoutError); replies already arriving at the deadline may finish (see
        ``_Connection._deadline_passed``)."""
        connection = self._connection
        if (
            connection is None
            or connection.closed
            or connection.loop is not asyncio.get_running_loop()
        ):
            if deadline is None:
                connection = await self._connect()
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await self._connect()
        return await connection.call(payload, count, deadline)

    def close(self) -> None:
        """Close the connection (calls in flight fail with RedisConnectionLost)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- connecting -------------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        """The open connection, opened by one task that every waiting call shares (a caller
        that gives up does not cancel it; it ends by itself within the connect timeout)."""
        loop = asyncio.get_running_loop()
        if self._connection is not None and self._connection.loop is not loop:
            self._connection.close()  # from another event loop (tests): start over
            self._connection = None
        task = self._connecting
        if task is None or task.get_loop() is not loop:
            task = self._connecting = loop.create_task(self._open(loop))
            task.add_done_callback(self._opened)
        return await asyncio.shield(task)

    def _opened(self, task: asyncio.Task[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A new connection, set up within the connect timeout: TCP connect, the TLS
        handshake, then AUTH and SELECT, all of it. An attempt that has not finished by then
        (a stalled network: bytes sent, no answer) is abandoned, its connection aborted, and
        raises TimeoutError; the next call starts a new attempt."""
        connection = _Connection(loop)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    ssl_handshake_timeout=self._connect_timeout if self._ssl else None,
                )
                self.connects += 1
                if self._setup:
                    pack: Any = hiredis.pack_command
                    replies = await connection.call(
                        b"".join(pack(c) for c in self._setup), len(self._setup)
                    )
                    for command, reply in zip(self._setup, replies, strict=True):
                        if isinstance(reply, hiredis.ReplyError):
                            raise RedisAuthError(f"{command[0]} refused: {reply}")
        except TimeoutError:
            connection.close()
            raise RedisConnectTimeout(
                f"connection set-up took longer than {self._connect_timeout:g} s"
            ) from None
        except BaseException:
            connection.close()
            raise
        return connection
