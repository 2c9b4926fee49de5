"""Stream partials (featurestore/online/stream_tiles.py) on every store that keeps them: the
additions, replays and duplicates that change nothing, several partitions on one entity,
pruning, the dedup horizon, key expiry; and the pure functions of the contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore.online.layout import Record
from featurestore.online.redis_store import RedisStore
from featurestore.online.store import OnlineStore, StoreError
from featurestore.online.stream_tiles import (
    BUCKET_SECONDS,
    StreamApplied,
    StreamEvent,
    StreamWrite,
    ingestion_bucket,
    parse_partial_field,
    partial_field,
    read_partials,
    redis_stream_keys,
    units_of,
)
from featurestore.online.urls import open_store
from tests.stores import store_url

US = 1_000_000
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
HOP = 60
LONGEST = 600


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    online = open_store(store_url(request.param, request, tmp_path))
    online.initialize()
    try:
        yield online
    finally:
        online.close()


def _event(
    event_id: str, offset: int | None, ingested_s: int, start: int, units: int = 1
) -> StreamEvent:
    bucket = ingestion_bucket(ingested_s * US)
    return StreamEvent(
        event_id,
        ingested_s * US,
        offset,
        ((partial_field(bucket, HOP, start, 0, 0), units),),
    )


def _write(
    *events: StreamEvent, key: str = "u1", partition: str = "p0", prune: bool = False
) -> StreamWrite:
    return StreamWrite(
        entity="user",
        key=(key,),
        view="v",
        partition=partition,
        events=tuple(events),
        expires_at=NOW_S + 3600,
        prune=((HOP, LONGEST),) if prune else (),
    )


def _totals(store: OnlineStore, key: str = "u1", cutoff_us: int | None = None) -> dict[int, int]:
    [pairs] = store.read_stream("user", [(key,)], "v")
    partials = read_partials(pairs, cutoff_us)
    return {start: cols[0][0] for start, cols in partials.get(HOP, {}).items()}


T = NOW_S - 300  # a tile start (multiple of the hop)
T -= T % HOP


def test_additions_add_up(store: OnlineStore) -> None:
    applied = store.apply_stream(
        [
            _write(
                _event("a", 1, T + 5, T), _event("b", 2, T + 6, T), _event("c", 3, T + 70, T + 60)
            )
        ],
        now=NOW,
    )
    assert applied == StreamApplied(applied=3)
    assert _totals(store) == {T: 2, T + 60: 1}


def test_a_replay_and_a_duplicate_change_nothing(store: OnlineStore) -> None:
    batch = [_write(_event("a", 10, T + 5, T), _event("b", 11, T + 6, T))]
    store.apply_stream(batch, now=NOW)
    assert store.apply_stream(batch, now=NOW) == StreamApplied(replayed=2)
    # the same id sent again, at a later offset: a duplicate
    assert store.apply_stream([_write(_event("a", 12, T + 9, T))], now=NOW) == StreamApplied(
        duplicates=1
    )
    # a partly replayed batch: the new event counts once
    assert store.apply_stream(
        [_write(_event("b", 11, T + 6, T), _event("c", 13, T + 7, T))], now=NOW
    ) == StreamApplied(applied=1, replayed=1)
    assert _totals(store) == {T: 3}


def test_without_offsets_event_ids_alone_make_replays_no_ops(store: OnlineStore) -> None:
    batch = [_write(_event("a", None, T + 5, T), _event("b", None, T + 6, T))]
    store.apply_stream(batch, now=NOW)
    assert store.apply_stream(batch, now=NOW) == StreamApplied(duplicates=2)
    assert _totals(store) == {T: 2}


def test_partitions_of_one_entity_fence_apart(store: OnlineStore) -> None:
    store.apply_stream([_write(_event("a", 100, T + 5, T), partition="p0")], now=NOW)
    # a lower offset of another partition is not a replay
    store.apply_stream([_write(_event("b", 3, T + 6, T), partition="p1")], now=NOW)
    assert store.apply_stream([_write(_event("c", 50, T + 7, T), partition="p0")], now=NOW) == (
        StreamApplied(replayed=1)
    )
    assert _totals(store) == {T: 2}


def test_a_batch_record_hides_the_buckets_it_owns_and_pruning_removes_them(
    store: OnlineStore,
) -> None:
    early = T - 2 * BUCKET_SECONDS  # ingested two buckets before T: owned by a batch at C
    store.apply_stream(
        [_write(_event("a", 1, early, early - early % HOP), _event("b", 2, T + 5, T))], now=NOW
    )
    cutoff = ingestion_bucket(early * US) * US
    assert _totals(store, cutoff_us=None) == {early - early % HOP: 1, T: 1}
    assert _totals(store, cutoff_us=cutoff) == {T: 1}
    store.write(
        [Record("user", ("u1",), "v", ts=early * US, ver=cutoff, exp=NOW_S + 3600, values={})],
        now=NOW,
    )
    store.apply_stream([_write(_event("c", 3, T + 6, T), prune=True)], now=NOW)
    [pairs] = store.read_stream("user", [("u1",)], "v")
    assert read_partials(pairs, None) == read_partials(pairs, cutoff)  # the owned one is gone
    assert _totals(store) == {T: 2}


def test_pruning_removes_tiles_that_left_every_window(store: OnlineStore) -> None:
    old = NOW_S - HOP - LONGEST  # its tile left the longest window of the hop at NOW
    old -= old % HOP
    live = old + HOP
    store.apply_stream(
        [_write(_event("a", 1, old + 1, old), _event("b", 2, live + 1, live))], now=NOW
    )
    store.apply_stream([_write(_event("c", 3, T + 1, T), prune=True)], now=NOW)
    assert _totals(store) == {live: 1, T: 1}


def test_ids_older_than_the_horizon_are_forgotten_by_pruning_writes(store: OnlineStore) -> None:
    store.apply_stream([_write(_event("a", None, T, T))], now=NOW, dedup_horizon_s=60)
    # 61 s of ingestion later a pruning write forgets it: a duplicate that late counts (the
    # batch heals it); one within the horizon is still caught
    store.apply_stream(
        [_write(_event("b", None, T + 61, T), prune=True)], now=NOW, dedup_horizon_s=60
    )
    assert store.apply_stream(
        [_write(_event("a", None, T + 62, T))], now=NOW, dedup_horizon_s=60
    ) == StreamApplied(applied=1)
    assert store.apply_stream(
        [_write(_event("b", None, T + 62, T))], now=NOW, dedup_horizon_s=60
    ) == StreamApplied(duplicates=1)


def test_many_writes_in_one_call_apply_each(store: OnlineStore) -> None:
    writes = [_write(_event(f"e{n}", n, T + n, T), key=f"u{n % 150}") for n in range(300)]
    assert store.apply_stream(writes, now=NOW) == StreamApplied(applied=300)
    assert store.apply_stream(writes, now=NOW) == StreamApplied(replayed=300)
    assert _totals(store, key="u7") == {T: 2}


def test_redis_keys_share_the_record_slot_and_expire_on_the_replayed_clock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = open_store(store_url("redis", request, tmp_path))
    assert isinstance(store, RedisStore)
    partials, dedup = redis_stream_keys("v", ("u1",), store.namespace)
    assert partials == f"{store.namespace}:sp:v:{{u1}}"
    assert dedup == f"{store.namespace}:sd:v:{{u1}}"
    assert redis_stream_keys("v", ("u1", "d:2"), "fs") == (
        "fs:sp:v:{u1}:d%3A2",
        "fs:sd:v:{u1}:d%3A2",
    )
    store.apply_stream([_write(_event("a", 1, T + 5, T))], now=NOW, dedup_horizon_s=600)
    wall = dt.datetime.now(dt.UTC).timestamp()
    shift = round(wall - NOW_S)  # (the store's own reading may be a second earlier)
    assert store.client.pexpiretime(partials) // 1000 - (NOW_S + 3600 + shift) in (-1, 0)
    assert store.client.pexpiretime(dedup) // 1000 - (NOW_S + 600 + shift) in (-1, 0)
    # a later write never moves an expiry earlier
    store.apply_stream(
        [StreamWrite("user", ("u1",), "v", "p0", (_event("b", 2, T + 6, T),), NOW_S + 60)],
        now=NOW,
    )
    assert store.client.pexpiretime(partials) // 1000 - (NOW_S + 3600 + shift) in (-1, 0)
    store.close()


def test_dynamodb_refuses_stream_writes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = open_store(store_url("dynamodb", request, tmp_path))
    with pytest.raises(StoreError, match="does not keep stream partials"):
        store.apply_stream([_write(_event("a", 1, T, T))])
    assert store.stream_partials is False


# -- the contract's pure functions -------------------------------------------------------------


def test_ingestion_buckets_are_right_closed() -> None:
    edge = 1_777_593_600  # a whole hour
    assert edge % BUCKET_SECONDS == 0
    assert ingestion_bucket(edge * US) == edge
    assert ingestion_bucket(edge * US + 1) == edge + BUCKET_SECONDS
    assert ingestion_bucket(edge * US - 1) == edge


def test_partial_fields_round_trip_and_malformed_ones_are_refused() -> None:
    name = partial_field(7200, 60, 600, 1, 2)
    assert name == "7200:60:600:1:2"
    assert parse_partial_field(name.encode()) == (7200, 60, 600, 1, 2)
    assert parse_partial_field("o:kafka:3") is None
    for bad in ("7200:60:600:1", "7201:60:600:1:2", "7200:60:601:1:2", "x:60:600:1:2"):
        with pytest.raises(ValueError):
            parse_partial_field(bad)


def test_read_partials_sums_scales_and_keeps_only_later_buckets() -> None:
    pairs = [
        (b"3600:60:0:1:2", b"150"),  # 1.50
        (b"7200:60:0:1:3", b"2005"),  # 2.005, another bucket, another scale
        (b"7200:60:0:0:0", b"2"),
        (b"o:p0", b"00000000000000000007"),
    ]
    assert read_partials(pairs, None) == {60: {0: {1: (3505, 3), 0: (2, 0)}}}
    assert read_partials(pairs, 3600 * US) == {60: {0: {1: (2005, 3), 0: (2, 0)}}}
    assert read_partials(pairs, 7200 * US) == {}


def test_units_of_is_exact() -> None:
    from decimal import Decimal

    assert units_of(Decimal("12.34"), 2) == 1234
    assert units_of(5, 2) == 500
    with pytest.raises(ValueError, match="more than 2 decimals"):
        units_of(Decimal("1.234"), 2)
    with pytest.raises(ValueError):
        units_of(1.5, 2)


# -- reads of a streamed view ------------------------------------------------------------------


def test_a_streamed_read_returns_the_partials_with_the_record_or_alone(store: OnlineStore) -> None:
    from featurestore.online.store import NO_BATCH, NO_EXPIRY, ViewRead

    store.apply_stream(
        [_write(_event("a", 1, T + 5, T)), _write(_event("b", 1, T + 5, T), key="u2")], now=NOW
    )
    store.write(
        [Record("user", ("u1",), "v", ts=T * US, ver=T * US, exp=NOW_S + 3600, values={},
                timeline=b"{}")],
        now=NOW,
    )  # fmt: skip
    streamed = ViewRead("v", {}, streamed=True)
    batch, alone, nothing = store.read("user", [("u1",), ("u2",), ("u3",)], [streamed], now=NOW)
    with_record = batch["v"]
    assert with_record is not None and not isinstance(with_record, Exception)
    assert (with_record.ts, with_record.ver, with_record.timeline) == (T * US, T * US, b"{}")
    assert with_record.stream is not None
    assert read_partials(with_record.stream, None) == {HOP: {T: {0: (1, 0)}}}
    only = alone["v"]
    assert only is not None and not isinstance(only, Exception)
    assert (only.ts, only.ver, only.exp, only.timeline) == (0, NO_BATCH, NO_EXPIRY, None)
    assert only.stream is not None and read_partials(only.stream, None) == {HOP: {T: {0: (1, 0)}}}
    assert nothing["v"] is None
    # a read that does not ask for the stream sees the batch record only
    plain = store.read("user", [("u1",), ("u2",)], [ViewRead("v", {})], now=NOW)
    assert plain[0]["v"] is not None and plain[0]["v"].stream is None  # type: ignore[union-attr]
    assert plain[1]["v"] is None


def test_a_streamed_async_read_matches_the_blocking_one(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import asyncio

    from featurestore.online.store import ViewRead

    store = open_store(store_url("redis", request, tmp_path))
    store.apply_stream([_write(_event("a", 1, T + 5, T), _event("c", 2, T + 65, T + 60))], now=NOW)
    views = [ViewRead("v", {}, streamed=True)]
    [blocking] = store.read("user", [("u1",)], views, now=NOW)

    async def read() -> list[Any]:
        try:
            return await store.read_encoded_async("user", [("u1",)], views, now=NOW)
        finally:
            store.close()

    [encoded] = asyncio.run(read())
    assert blocking["v"] is not None and encoded["v"] is not None
    assert dict(blocking["v"].stream or ()) == dict(encoded["v"].stream or ())  # type: ignore[union-attr]
    assert len(dict(encoded["v"].stream or ())) == 3  # type: ignore[union-attr]  # 2 partials, 1 offset


def test_keys_with_separators_are_written_where_they_are_read(store: OnlineStore) -> None:
    for key in (("u{1}",), ("u:1",), ("a%b#c",)):
        write = _write(_event(f"id-{key[0]}", 1, T + 5, T))
        store.apply_stream([StreamWrite("user", key, "v", "p0", write.events, write.expires_at)],
                           now=NOW)  # fmt: skip
        assert _totals(store, key=key[0]) == {T: 1}, key
