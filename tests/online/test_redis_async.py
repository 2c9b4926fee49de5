"""The asyncio Redis client of the sidecar's read path (featurestore/online/redis_async.py) and
RedisStore.read_encoded_async, against real redis-server processes started by the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

import hiredis
import orjson
import pytest
import uvloop

from featurestore.online.layout import Record, encode_tile_set, json_encoder
from featurestore.online.redis_async import AsyncRedisClient, RedisAuthError, RedisConnectionLost
from featurestore.online.redis_store import RedisStore
from featurestore.online.store import StoreUnavailable, ViewRead
from tests.servers import RedisServer, free_port, redis_server

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def run(coro_factory: object) -> object:
    """Run on uvloop, as the sidecar does (uvloop transports are not asyncio.Transport)."""
    return uvloop.run(coro_factory())  # type: ignore[operator]


def test_pipelines_replies_in_order_with_errors_in_place(redis: RedisServer) -> None:
    client = AsyncRedisClient("127.0.0.1", redis.port, db=3)

    async def main() -> list[object]:
        await client.execute([("DEL", "async:k"), ("SET", "async:k", "v1")])
        return await client.execute(
            [("GET", "async:k"), ("HGET", "async:k", "f"), ("ECHO", "é"), ("GET", "async:none")]
        )

    replies = run(main)
    assert isinstance(replies, list)
    assert run(lambda: client.execute([])) == []  # nothing to send: no wait for a reply
    assert replies[0] == b"v1"
    assert isinstance(replies[1], hiredis.ReplyError)  # WRONGTYPE, in its place
    assert replies[2] == "é".encode()
    assert replies[3] is None
    client.close()


def test_concurrent_calls_share_one_connection_and_one_write(redis: RedisServer) -> None:
    client = AsyncRedisClient("127.0.0.1", redis.port)

    async def main() -> tuple[list[list[object]], int]:
        calls = [client.execute([("ECHO", str(i)), ("PING",)]) for i in range(50)]
        results = await asyncio.gather(*calls)  # the first calls also share one connect
        assert client._connection is not None
        return results, client._connection.writes

    results, writes = run(main)  # type: ignore[misc]
    assert results == [[str(i).encode(), b"PONG"] for i in range(50)]
    assert client.connects == 1
    assert writes == 1  # all 50 calls were made in one loop iteration
    client.close()


def test_abandoned_calls_replies_are_dropped_not_handed_to_the_next_call(
    redis: RedisServer,
) -> None:
    """A call cancelled before its replies arrived leaves them to be read and dropped: the
    connection stays open and every later call gets exactly its own replies."""
    client = AsyncRedisClient("127.0.0.1", redis.port)

    async def main() -> tuple[object, object]:
        slow = asyncio.ensure_future(client.execute([("BLPOP", "async:never", "0.3")]))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        fast = await asyncio.wait_for(client.execute([("ECHO", "next")]), 2)
        await asyncio.sleep(0.4)  # the BLPOP reply would have arrived by now
        again = await client.execute([("ECHO", "again")])
        return fast, again

    assert run(main) == ([b"next"], [b"again"])
    assert client.connects == 1
    client.close()


@pytest.mark.parametrize("seed", range(3))
def test_random_concurrent_calls_with_cancellations_get_their_own_replies(
    redis: RedisServer, seed: int
) -> None:
    """Against a reference: each call not cancelled gets exactly the replies of its own
    commands (ECHO of unique tokens), whatever the interleaving and cancellations."""
    import random

    rng = random.Random(seed)
    client = AsyncRedisClient("127.0.0.1", redis.port)
    plans = [[f"{seed}-{i}-{j}" for j in range(rng.randint(1, 5))] for i in range(300)]

    async def one(tokens: list[str]) -> list[object]:
        await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))
        return await client.execute([("ECHO", token) for token in tokens])

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(one(tokens)) for tokens in plans]
        await asyncio.sleep(0.001)
        for task in rng.sample(tasks, 60):
            task.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main)
    assert isinstance(results, list)
    cancelled = 0
    for tokens, result in zip(plans, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            cancelled += 1
            continue
        assert result == [token.encode() for token in tokens]
    assert 0 < cancelled <= 60
    assert client.connects == 1
    client.close()


def test_password_and_wrong_password(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", password="s3cret-pw") as server:
        good = AsyncRedisClient("127.0.0.1", server.port, password="s3cret-pw")
        bad = AsyncRedisClient("127.0.0.1", server.port, password="wrong")
        none = AsyncRedisClient("127.0.0.1", server.port)

        async def main() -> list[object]:
            ok = await good.execute([("PING",)])
            with pytest.raises(RedisAuthError):
                await bad.execute([("PING",)])
            (refused,) = await none.execute([("GET", "x")])
            return [ok, refused]

        ok, refused = run(main)  # type: ignore[misc]
        assert ok == [b"PONG"]
        assert isinstance(refused, hiredis.ReplyError) and "NOAUTH" in str(refused)


def test_unreachable_then_restarted_server(tmp_path: Path) -> None:
    port = free_port()
    client = AsyncRedisClient("127.0.0.1", port, connect_timeout=1.0)

    async def first() -> None:
        with pytest.raises(OSError):
            await client.execute([("PING",)])

    run(first)
    server = RedisServer(port=port, workdir=tmp_path / "redis")
    server.start()
    try:

        async def works() -> list[object]:
            return await client.execute([("PING",)])

        assert run(works) == [b"PONG"]  # a new event loop, too: the client starts over
        server.kill()

        async def lost() -> None:
            with pytest.raises((RedisConnectionLost, OSError)):
                await client.execute([("PING",)])

        run(lost)
    finally:
        server.stop()


def test_read_encoded_async_matches_the_blocking_read(redis: RedisServer) -> None:
    store = RedisStore(port=redis.port, namespace="asyncread")
    store.initialize()
    view = ViewRead("v", {"n": "int", "x": "float", "b": "bool", "s": "string", "t": "timestamp"})
    at = dt.datetime(2026, 4, 30, 12, 0, 0, 250_000)
    records = [
        Record("user", ("u1",), "v", 1_000_000, 1_000_000, 1_900_000_000,
               {"n": 7, "x": 0.1, "b": True, "s": "é \"q\"", "t": at}),
        Record("user", ("u:2",), "v", 2_000_000, 2_000_000, 1_900_000_000,
               {"n": None, "x": -1e300, "b": False, "s": "", "t": None}),
    ]  # fmt: skip
    store.write(records, now=NOW)
    keys = [("u1",), ("u:2",), ("missing",), ("u1",)]
    blocking = store.read("user", keys, [view], now=NOW)

    async def main() -> object:
        return await store.read_encoded_async("user", keys, [view], now=NOW)

    encoded = run(main)
    assert isinstance(encoded, list)
    assert encoded[2]["v"] is None and blocking[2]["v"] is None
    for got, want in zip(encoded, blocking, strict=True):
        if want["v"] is None:
            continue
        record = got["v"]
        assert (record.ts, record.ver, record.exp) == (want["v"].ts, want["v"].ver, want["v"].exp)
        for (name, value_type), raw in zip(view.features.items(), record.values, strict=True):
            value = want["v"].values[name]
            if value is None:
                assert raw is None
                continue
            text = json_encoder(value_type)(raw)
            expected = (
                f'"{value.isoformat()}Z"'.encode()
                if isinstance(value, dt.datetime)
                else orjson.dumps(value)
            )
            assert text == expected, (name, raw, text)
    store.close()


def test_read_encoded_async_returns_timelines_in_the_same_round_trip(redis: RedisServer) -> None:
    """The timeline comes back with the record from the one HMGET per key (a record without
    one: None), as the stored bytes; a tiled view's record with no values has one too."""
    store = RedisStore(port=redis.port, namespace="asynctl")
    store.initialize()
    plain = ViewRead("v", {"n": "int"})
    tiled = ViewRead("w", {"c": "int", "a": "float"})
    tiles = encode_tile_set({60: {1_777_593_540: (2, None)}})
    records = [
        Record("user", ("u1",), "v", 1_000_000, 1_000_000, 1_900_000_000, {"n": 1}, b"steps"),
        Record("user", ("u1",), "w", 2_000_000, 3_000_000, 1_900_000_000, {}, tiles),
        Record("user", ("u2",), "v", 1_000_000, 1_000_000, 1_900_000_000, {"n": 2}),
    ]
    store.write(records, now=NOW)
    keys = [("u1",), ("u2",), ("u3",)]
    sent: list[tuple[bytes, int]] = []
    execute = store._async_client().execute_packed

    async def counting(payload: bytes, count: int, deadline: float | None) -> list[object]:
        sent.append((payload, count))
        return await execute(payload, count, deadline)

    store._async_client().execute_packed = counting  # type: ignore[method-assign]

    async def main() -> object:
        return await store.read_encoded_async("user", keys, [plain, tiled], now=NOW)

    rows = run(main)
    assert isinstance(rows, list)
    assert len(sent) == 1 and sent[0][1] == 3  # one write: one HMGET per key
    assert sent[0][0].count(b"HMGET") == 3
    assert [row["v"].timeline if row["v"] else "none" for row in rows] == [b"steps", None, "none"]
    assert rows[0]["w"] is not None and rows[0]["w"].timeline == tiles
    assert rows[0]["w"].values == (None, None) and rows[0]["w"].ver == 3_000_000
    assert rows[1]["w"] is None and rows[2]["w"] is None
    store.close()


def test_check_async_reports_a_frozen_server_by_timeout(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        store = RedisStore(port=server.port)

        async def probe() -> None:
            async with asyncio.timeout(2):
                await store.check_async()

        run(lambda: probe())
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:

            async def frozen() -> None:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await store.check_async()

            run(frozen)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        store.close()


def test_read_encoded_async_on_a_dead_server_is_store_unavailable(tmp_path: Path) -> None:
    store = RedisStore(port=free_port(), connect_timeout=0.5)

    async def main() -> None:
        with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
            await store.read_encoded_async("user", [("u1",)], [ViewRead("v", {"n": "int"})])

    run(main)


def test_deadline_fails_a_silent_server_but_not_a_busy_caller(tmp_path: Path) -> None:
    """Past the deadline with no reply: TimeoutError. A reply that reached the socket in time
    while the event loop was busy (blocked here by a sleep) is still taken. A connection
    silent for the connect timeout with replies owed is closed."""
    with redis_server(tmp_path / "redis") as server:
        client = AsyncRedisClient("127.0.0.1", server.port, connect_timeout=0.3)

        async def busy_caller() -> list[object]:
            await client.execute([("PING",)])  # connected
            loop = asyncio.get_running_loop()
            call = asyncio.ensure_future(
                client.execute_packed(b"*1\r\n$4\r\nPING\r\n", 1, loop.time() + 0.02)
            )
            await asyncio.sleep(0)  # the call is queued,
            await asyncio.sleep(0)  # then written at the end of that loop iteration
            import time

            time.sleep(0.1)  # the loop is busy well past the deadline; Redis answered
            return await call

        assert run(busy_caller) == [b"PONG"]
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:

            async def silent() -> None:
                loop = asyncio.get_running_loop()
                started = loop.time()
                other = asyncio.ensure_future(client.execute([("PING",)]))  # no deadline
                with pytest.raises(TimeoutError):
                    await client.execute_packed(b"*1\r\n$4\r\nPING\r\n", 1, started + 0.05)
                assert loop.time() - started < 1.0
                assert not other.done()  # a timeout alone leaves the connection open
                # silent for the connect timeout: the connection is closed, failing what
                # was queued on it
                with pytest.raises(RedisConnectionLost):
                    await asyncio.wait_for(other, 1)
                assert 0.3 - 0.02 < loop.time() - started < 1.0

            run(silent)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        client.close()


def test_a_timeout_after_an_idle_spell_leaves_the_connection_open(tmp_path: Path) -> None:
    """Silence is counted from the oldest reply owed, not from the last byte ever received: a
    connection idle for longer than the connect timeout, then one call timing out while Redis
    is briefly stopped, keeps the connection, and the call queued beside it gets its reply."""
    with redis_server(tmp_path / "redis") as server:
        client = AsyncRedisClient("127.0.0.1", server.port, connect_timeout=0.3)
        assert server.proc is not None
        pid = server.proc.pid

        async def idle_then_timeout() -> object:
            await client.execute([("PING",)])  # connected, then idle past the connect timeout
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            os.kill(pid, signal.SIGSTOP)
            try:
                other = asyncio.ensure_future(client.execute([("PING",)]))  # no deadline
                with pytest.raises(TimeoutError):
                    await client.execute_packed(b"*1\r\n$4\r\nPING\r\n", 1, loop.time() + 0.05)
                await asyncio.sleep(0.1)  # Redis back well within the connect timeout
            finally:
                os.kill(pid, signal.SIGCONT)
            return await asyncio.wait_for(other, 2)

        assert run(idle_then_timeout) == [b"PONG"]
        assert client.connects == 1
        client.close()
