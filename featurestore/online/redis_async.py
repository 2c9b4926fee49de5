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

Deadlines: a call may carry a deadline (event loop time); the store's budget is the
deadline minus the loop's time at the call, counted from the moment the call's commands are
written to the socket, on the monotonic clock: time a call spends waiting for its write, or
a timer that fires late because the loop was busy (or the process was not scheduled), is
this process's, not the store's. The call fails with TimeoutError once Redis has been
silent for its budget: no byte since the later of the write and the last byte received
(replies to calls ahead of it are Redis working through the queue, the calls of a shared
connection being answered in order), and none waiting in the socket for the busy loop to
read (bytes that arrived in time are in time). A reply that keeps arriving fails anyway
four budgets after the write (the slack of a trickling store). So a frozen or dead store
fails one budget after the write, plus the loop's own lateness. A timeout leaves the
connection open (the calls queued on it keep their own budgets); once Redis has owed
replies and been silent for the connect timeout, the connection is closed (a frozen
server, a blackholed connection): every call queued on it fails with
:class:`RedisConnectionLost`, and the next call connects again. (Measured on the 2-core
bench host with two busy-loop processes, bench/README.md: the loop's timers fired up to
18 ms late and a call could wait a loop iteration for its write, so a budget counted from
the queueing on the loop's cached clock timed out reads that Redis answered in time; Redis,
on a CPU shared with busy loops, answered 8 queued 100-key pipelines in bursts with gaps;
and closing the connection at the first silent timeout failed every call in flight, which
opened the circuit breaker: 85% of 100-key responses degraded.)

Cancellation: a call abandoned for any other reason (its task cancelled) stays in the queue
with its future cancelled; its replies are read and dropped when they arrive, so the calls
after it get theirs. The connection is bound to the event loop that opened it; used from
another loop, the client drops it and connects again.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import select
import ssl as ssl_module
import time
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis

__all__ = ["AsyncRedisClient", "RedisAuthError", "RedisConnectTimeout", "RedisConnectionLost"]


#: a call whose reply keeps arriving fails at this many budgets after its write anyway
_MAX_BUDGETS: Final = 4
#: bytes waiting in the socket at a check: look again this much later (s), once the busy
#: loop has read them
_LOOK_S: Final = 0.0005


class RedisConnectionLost(ConnectionError):
    """The connection closed (or the reply stream broke) before every reply arrived."""


class RedisConnectTimeout(ConnectionError):
    """Connection set-up (TCP connect, TLS handshake, AUTH, SELECT) did not finish within
    the connect timeout; the attempt was abandoned and its connection aborted."""


class RedisAuthError(ConnectionError):
    """AUTH or SELECT on connect was refused."""


class _Call:
    """One call in flight on a connection (times on :func:`time.monotonic`, seconds)."""

    __slots__ = ("budget", "count", "future", "last_chance", "replies", "timer", "written")

    def __init__(self, count: int, future: asyncio.Future[None], budget: float | None) -> None:
        self.count = count
        self.replies: list[Any] = []
        self.future = future
        #: the store's time budget (None: no deadline) and when the call was written
        self.budget = budget
        self.written = 0.0
        #: past the hard limit, the one more look given to bytes waiting in the socket
        self.last_chance = False
        self.timer: asyncio.TimerHandle | None = None


class _Connection(asyncio.Protocol):
    """One connection shared by concurrent calls (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, silence_limit: float) -> None:
        self.loop = loop
        #: owed replies and no byte for this long (s): the connection is dead, closed
        self.silence_limit = silence_limit
        #: when the last byte came (monotonic s; the connection's opening before that)
        self.last_byte = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._calls: collections.deque[_Call] = collections.deque()
        self._out: list[bytes] = []
        #: bytes received so far; writes made (tests)
        self.received = 0
        self.writes = 0
        self.closed = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        calls = self._calls
        self.received += len(data)
        self.last_byte = time.monotonic()
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
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

        ``deadline`` (event loop time) gives the store its time budget, ``deadline`` minus
        the loop's time now, counted from the moment the payload is written: TimeoutError
        once Redis has been silent that long (see :meth:`_check`)."""
        if self.closed or self._transport is None:
            raise RedisConnectionLost("the connection is closed")
        if count == 0:
            return []
        budget = None if deadline is None else max(deadline - self.loop.time(), 0.0)
        call = _Call(count, self.loop.create_future(), budget)
        self._calls.append(call)
        if not self._out:  # the first call of this loop iteration: write them all after it
            self.loop.call_soon(self._flush)
        self._out.append(payload)
        try:
            await call.future
        except TimeoutError:
            self._watch()
            raise
        finally:
            if call.timer is not None:
                call.timer.cancel()
        return call.replies

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is None or self.closed:
            return
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.writes += 1
        # the budgets start now: the time a call waited for its write is this process's
        now = time.monotonic()
        for call in itertools.islice(reversed(self._calls), len(out)):
            call.written = now
            if call.budget is not None:
                call.timer = self.loop.call_later(call.budget, self._check, call)

    def _check(self, call: _Call) -> None:
        """The call's timer: TimeoutError once Redis has been silent for the call's budget,
        counted from the later of its write and the last byte received (replies to calls
        ahead of it are Redis working through the queue), unless bytes wait in the socket
        for a busy loop to read them (bytes that arrived in time are in time). The loop's
        clock is cached per iteration (uvloop: in whole milliseconds) and a busy loop fires
        timers late, so the times are read from the monotonic clock here. A reply still
        arriving gets at most ``_MAX_BUDGETS`` budgets after the write in all (then one more
        look if bytes are waiting)."""
        if call.future.done() or call.budget is None:
            return
        now = time.monotonic()
        limit = call.written + _MAX_BUDGETS * call.budget
        until = min(max(call.written, self.last_byte) + call.budget, limit)
        if now < until:  # early (a cached clock), or Redis spoke since: wait for the rest
            call.timer = self.loop.call_later(until - now, self._check, call)
            return
        if (now < limit or not call.last_chance) and self._readable():
            call.last_chance = now >= limit
            call.timer = self.loop.call_later(_LOOK_S, self._check, call)
            return
        call.future.set_exception(TimeoutError("Redis did not answer within the time budget"))

    def _watch(self) -> None:
        """After a timeout: close the connection if Redis stays silent with replies owed for
        ``silence_limit`` (a frozen server or a blackholed connection), so that the next call
        connects again; every call queued on it then fails with RedisConnectionLost."""
        if self._watchdog is not None or self.closed:
            return
        # silent since the last byte, or since the oldest reply owed was asked for (an idle
        # connection is not silent: it owes nothing)
        since = max(self.last_byte, self._calls[0].written) if self._calls else self.last_byte
        silent = time.monotonic() - since
        if silent >= self.silence_limit:
            if self._calls:
                self.close()
            return
        self._watchdog = self.loop.call_later(self.silence_limit - silent, self._watched)

    def _watched(self) -> None:
        self._watchdog = None
        self._watch()

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
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._transport is not None and not self.loop.is_closed():  # (a closed loop's
            self._transport.abort()  # sockets are closed with it)


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

        ``deadline`` (event loop time) bounds waiting for a connection, then gives the
        store its budget from the write (TimeoutError; see the module docstring)."""
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
        connection = _Connection(loop, self._connect_timeout)
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
