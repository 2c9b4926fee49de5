"""The store budget of :class:`sidecar.retrieval.StoreReader` means "the store is slow or
dead", not "this process was busy": against a real redis-server, an SQLite file and moto's
DynamoDB server, a read whose answer came in time is taken although the event loop was
blocked (a synchronous sleep in another task) well past the budget, and a frozen store
(SIGSTOP) is still answered within its budget plus a bounded slack."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from featurestore.online.dynamodb_store import DynamoDBStore
from featurestore.online.layout import Record
from featurestore.online.redis_store import RedisStore
from featurestore.online.sqlite_store import SQLiteStore
from featurestore.online.store import OnlineStore, ViewRead
from sidecar.breaker import CircuitBreaker
from sidecar.metrics import Metrics
from sidecar.retrieval import StoreReader
from tests.servers import MotoServer, RedisServer, redis_server

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
VIEW = ViewRead("v", {f"f{i}": "int" for i in range(10)})
KEYS = [(f"u{i:03d}",) for i in range(100)]
BUDGET = 0.010
#: a frozen store's answer may come this much after the budget (a loaded 2-core host)
SLACK = 0.1


def fill(store: OnlineStore) -> None:
    store.initialize()
    store.write(
        [
            Record("user", key, "v", 1_000_000, 1_000_000, 1_900_000_000,
                   {f"f{i}": n * 10 + i for i in range(10)})
            for n, key in enumerate(KEYS)
        ],
        now=NOW,
    )  # fmt: skip


def reader_of(store: OnlineStore, budget: float = BUDGET) -> StoreReader:
    return StoreReader(
        store, timeout_s=budget, threads=4, breaker=CircuitBreaker(100, 1.0), metrics=Metrics()
    )


async def read_while_blocked(
    reader: StoreReader, block_s: float, before_write: bool = False
) -> tuple[object, float]:
    """A 100-key read while another task blocks the loop for ``block_s`` right after the
    read started: after its request was sent (its thread started), or ``before_write``, in
    the same loop iteration as the read, before the loop gets to write the request."""

    async def blocker() -> None:
        time.sleep(block_s)  # the loop itself is busy: no timer fires, nothing is read

    started = time.monotonic()
    read = asyncio.ensure_future(reader.read("user", KEYS, [VIEW], NOW))
    if not before_write:
        await asyncio.sleep(0)  # the read starts (queued, its write scheduled / thread started)
        await asyncio.sleep(0)  # its request is written
    block = asyncio.ensure_future(blocker())
    rows = await read
    await block
    return rows, time.monotonic() - started


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


def check_rows(rows: object) -> None:
    assert isinstance(rows, list) and len(rows) == len(KEYS)
    assert all(row["v"] is not None for row in rows)


@pytest.mark.parametrize("before_write", [False, True], ids=["after-write", "before-write"])
@pytest.mark.parametrize("block_s", [0.05, 0.2])
def test_redis_a_read_answered_in_time_is_taken_though_the_loop_was_blocked(
    own_redis: RedisServer, block_s: float, before_write: bool
) -> None:
    store = RedisStore(port=own_redis.port, namespace="budget")
    fill(store)
    reader = reader_of(store)

    async def main() -> list[tuple[object, float]]:
        await reader.read("user", KEYS[:1], [VIEW], NOW)  # connected
        return [await read_while_blocked(reader, block_s, before_write) for _ in range(5)]

    for rows, took in uvloop.run(main()):
        check_rows(rows)
        assert took >= block_s  # the loop was blocked far past the budget
    assert reader.metrics.store_reads.labels("timeout")._value.get() == 0
    store.close()


def test_redis_frozen_fails_within_the_budget_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore(port=own_redis.port, namespace="budget")
    fill(store)
    reader = reader_of(store)
    budget = BUDGET + reader.per_key_s * len(KEYS)
    assert own_redis.proc is not None

    async def main() -> tuple[list[tuple[object, float]], object]:
        await reader.read("user", KEYS, [VIEW], NOW)  # connected
        os.kill(own_redis.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            frozen: list[tuple[object, float]] = []
            for _ in range(5):
                started = time.monotonic()
                frozen.append((await reader.read("user", KEYS, [VIEW], NOW), started))
                frozen[-1] = (frozen[-1][0], time.monotonic() - started)
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        await asyncio.sleep(0.1)
        return frozen, await reader.read("user", KEYS, [VIEW], NOW)

    frozen, after = uvloop.run(main())
    for rows, took in frozen:
        assert rows is None
        assert budget - 0.002 < took < budget + SLACK, (took, budget)
    check_rows(after)  # the same connection: the replies owed were read and dropped
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_threaded_a_read_finished_in_its_thread_is_taken_though_the_loop_was_late(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SQLite (a local file) and DynamoDB (moto's server): reads done on the thread pool."""
    if kind == "sqlite":
        store: OnlineStore = SQLiteStore(tmp_path / "online.db")
        budget = BUDGET
    else:
        moto: MotoServer = request.getfixturevalue("moto")
        request.getfixturevalue("monkeypatch_session")
        store = DynamoDBStore("us-east-1", endpoint_url=moto.endpoint, table="budget_table")
        budget = 0.5  # moto answers a 100-key BatchGetItem in tens of milliseconds
    fill(store)
    reader = reader_of(store, budget)

    async def main() -> list[tuple[object, float]]:
        await reader.read("user", KEYS, [VIEW], NOW)  # warm (connections, caches)
        return [await read_while_blocked(reader, 4 * budget) for _ in range(3)]

    for rows, took in uvloop.run(main()):
        check_rows(rows)
        assert took >= 4 * budget
    assert reader.metrics.store_reads.labels("timeout")._value.get() == 0
    store.close()


def test_threaded_a_frozen_store_fails_within_the_budget(
    moto: MotoServer, monkeypatch_session: pytest.MonkeyPatch
) -> None:
    store = DynamoDBStore("us-east-1", endpoint_url=moto.endpoint, table="budget_frozen")
    fill(store)
    budget = 0.3
    reader = reader_of(store, budget)
    assert moto.proc is not None

    async def main() -> list[tuple[object, float]]:
        # the store answers (its connections warm); moto, a Python server, can miss 0.3 s
        # on a loaded 2-core host, which is not what is tested here: a few tries
        for _ in range(5):
            if (warm := await reader.read("user", KEYS, [VIEW], NOW)) is not None:
                break
        check_rows(warm)
        os.kill(moto.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            frozen: list[tuple[object, float]] = []
            for _ in range(2):
                started = time.monotonic()
                rows = await reader.read("user", KEYS, [VIEW], NOW)
                frozen.append((rows, time.monotonic() - started))
        finally:
            os.kill(moto.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        return frozen

    budget += reader.per_key_s * len(KEYS)
    for rows, took in uvloop.run(main()):
        assert rows is None
        assert took < budget + SLACK, (took, budget)
    store.close()
