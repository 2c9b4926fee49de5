"""A minimal asyncio Redis client for the sidecar's read path: pipelined commands on a
small pool of connections, each call one packed write and its replies parsed by hiredis.

Why not ``redis.asyncio``: the sidecar's reads are one pipeline of HMGETs per request, and
``redis.asyncio`` spends Python time per command and per reply. Measured on the 2-core
bench machine (median of 300 calls, 10 features + 3 meta fields per HMGET, local Redis):

======================================  =========  ==========
client                                  1 key      100 keys
======================================  =========  ==========
redis.asyncio Pipeline                  130 us     2,248 us
redis.asyncio Connection, packed write  103 us     1,072 us
this module                             76 us      614 us
======================================  =========  ==========

What it does, and nothing more: connect (TCP, or TLS for ``rediss``), ``AUTH`` and
``SELECT`` on connect, send a batch of commands as one write, read exactly that many
replies. Error replies come back in place as :class:`hiredis.ReplyError` instances.

Deadlines: a call may carry a deadline (event loop time). Past it, the call fails with
TimeoutError unless Redis has been answering: replies already parsed, or bytes waiting in
the socket that a busy event loop has not read yet (the lateness is then the caller's own
queueing, not the store's), in which case it gets up to the same budget again.

Cancellation: a call abandoned before its replies arrived (a timeout) closes its
connection, since the late replies would otherwise answer the next call on it; the pool
opens a new connection on demand. A pool is bound to the event loop that
first uses it; used from another loop it drops its connections and starts over.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl as ssl_module
from collections.abc import Sequence
from typing import Any, cast

import hiredis

__all__ = ["AsyncRedisPool", "RedisAuthError", "RedisConnectionLost"]


class RedisConnectionLost(ConnectionError):
    """The connection closed (or the reply stream broke) before every reply arrived."""


class RedisAuthError(ConnectionError):
    """AUTH or SELECT on connect was refused."""


class _Connection(asyncio.Protocol):
    """One connection: at most one call in flight (the pool guarantees it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._replies: list[Any] = []
        self._expected = 0
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        replies = self._replies
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        except hiredis.ProtocolError as exc:  # not a Redis server, or a corrupt stream
            self._fail(RedisConnectionLost(f"invalid reply from Redis: {exc}"))
            self.close()
            return
        waiter = self._waiter
        if waiter is not None and len(replies) >= self._expected and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionLost("Redis closed the connection" + (f": {exc}" if exc else "")))

    # --- calls ----------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def call(self, payload: bytes, count: int, deadline: float | None = None) -> list[Any]:
        """Write ``payload`` (``count`` packed commands) and return their ``count`` replies.

        ``deadline`` (event loop time): raise TimeoutError if by then no reply has reached
        this process (see :meth:`_deadline_passed`)."""
        if self.closed or self._transport is None:
            raise RedisConnectionLost("the connection is closed")
        replies: list[Any] = []
        self._replies = replies
        self._expected = count
        self._waiter = waiter = self.loop.create_future()
        self._transport.write(payload)
        timer = None
        if deadline is not None:
            grace = max((deadline - self.loop.time()) / 8, 0.0005)
            timer = self.loop.call_at(deadline, self._deadline_passed, waiter, grace, 8)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if len(replies) != count:  # pragma: no cover - more replies than commands
            raise RedisConnectionLost(f"expected {count} replies, got {len(replies)}")
        return replies

    def _deadline_passed(self, waiter: asyncio.Future[None], grace: float, left: int) -> None:
        """The deadline passed with replies missing. If Redis has been answering (replies
        parsed, or bytes waiting in the socket that a busy event loop has not read yet) the
        lateness is this process's, not the store's: check again ``grace`` later, at most
        ``left`` more times (twice the budget in all). Otherwise give up: TimeoutError."""
        if waiter.done():
            return
        if left > 0 and (self._replies or self._readable()):
            self.loop.call_later(grace, self._deadline_passed, waiter, grace, left - 1)
            return
        waiter.set_exception(TimeoutError("Redis did not answer within the time budget"))

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


class AsyncRedisPool:
    """Connections to one Redis server; :meth:`execute` runs a pipeline on one of them.

    At most ``size`` connections are open; a call finding all of them busy waits for one
    (callers bound the wait with their own timeout)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        connect_timeout: float = 2.0,
        size: int = 8,
    ) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self.host = host
        self.port = port
        self.size = size
        self._connect_timeout = connect_timeout
        self._ssl: ssl_module.SSLContext | None = (
            ssl_module.create_default_context() if ssl else None
        )
        setup: list[tuple[str, ...]] = []
        if password is not None:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            setup.append(("SELECT", str(db)))
        self._setup = setup
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    async def execute(self, commands: Sequence[tuple[str | bytes, ...]]) -> list[Any]:
        """The replies of ``commands`` (in order), sent as one write on one connection.

        Raises :class:`RedisConnectionLost` / ``OSError`` (unreachable, closed) and
        :class:`RedisAuthError`; a cancelled call closes its connection."""
        pack: Any = hiredis.pack_command
        return await self.execute_packed(b"".join(map(pack, commands)), len(commands))

    async def execute_packed(
        self, payload: bytes, count: int, deadline: float | None = None
    ) -> list[Any]:
        """:meth:`execute` of ``count`` commands already packed (RESP) into ``payload``.

        ``deadline`` (event loop time) bounds getting a connection and the first replies
        (TimeoutError); replies already arriving at the deadline may finish (see
        ``_Connection._deadline_passed``)."""
        connection = self._idle_connection()
        if connection is None:
            if deadline is None:
                connection = await self._acquire()
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await self._acquire()
        try:
            replies = await connection.call(payload, count, deadline)
        except BaseException:
            connection.close()
            self._release(connection)
            raise
        self._release(connection)
        return replies

    def close(self) -> None:
        """Close every idle connection (busy ones close when their call ends)."""
        while self._idle:
            self._idle.popleft().close()
        self._open = 0
        self._loop = None

    # --- the pool -------------------------------------------------------------------------

    def _idle_connection(self) -> _Connection | None:
        """An open idle connection of this event loop, without waiting (the usual case)."""
        if self._idle and self._loop is asyncio.get_running_loop():
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open -= 1
        return None

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests): start over
            self._idle.clear()
            self._waiters.clear()
            self._open = 0
            self._loop = loop
        while True:
            while self._idle:
                connection = self._idle.pop()  # the most recently used: likely still open
                if not connection.closed:
                    return connection
                self._open -= 1
            if self._open < self.size:
                self._open += 1
                try:
                    return await self._connect(loop)
                except BaseException:
                    self._open -= 1
                    self._wake(None)
                    raise
            # every connection is busy: wait for one, or for a free slot (None)
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # handed over as we left
                    passed = waiter.result()
                    if passed is None:
                        self._wake(None)
                    else:
                        self._release(passed)
                raise
            if handed is not None:
                return handed

    def _release(self, connection: _Connection) -> None:
        if connection.loop is not self._loop:  # from before a change of event loop
            connection.close()
            return
        if connection.closed:
            self._open -= 1
            self._wake(None)
        elif not self._wake(connection):
            self._idle.append(connection)

    def _wake(self, connection: _Connection | None) -> bool:
        """Hand a connection (or, with None, a free slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        connection = _Connection(loop)
        await asyncio.wait_for(
            loop.create_connection(
                lambda: connection,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            ),
            self._connect_timeout,
        )
        if self._setup:
            pack: Any = hiredis.pack_command
            try:
                replies = await connection.call(
                    b"".join(pack(c) for c in self._setup), len(self._setup)
                )
            except BaseException:
                connection.close()
                raise
            for command, reply in zip(self._setup, replies, strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    connection.close()
                    raise RedisAuthError(f"{command[0]} refused: {reply}")
        return connection
