"""One record that cannot be decoded is that record's problem alone, on every store (real
SQLite file, redis-server, moto server): good records are written with ``store.write``, one
is corrupted directly in the store (each kind of corruption), and a read answers the
corrupt one with an :class:`InvalidRecord` and every other record (other keys, and the
other view of the same key) exactly as written. A later write repairs it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore.online.dynamodb_store import LOADS_PK, WATERMARK_PK, DynamoDBStore
from featurestore.online.layout import TILE_SET_MAGIC, Record, encode_tile_set, redis_key
from featurestore.online.redis_store import RedisStore
from featurestore.online.sqlite_store import SQLiteStore
from featurestore.online.store import (
    EncodedRecord,
    InvalidRecord,
    LoadRecord,
    OnlineStore,
    StoredRecord,
    ViewRead,
)
from featurestore.online.urls import open_store
from tests.online.corruption import Corruption, corrupt
from tests.stores import store_url

NOW = dt.datetime(2026, 5, 1, 6, 0, 0)  # naive = UTC
NOW_S = int(NOW.replace(tzinfo=dt.UTC).timestamp())
NOW_US = NOW_S * 1_000_000
PROFILE = ViewRead(
    "user_profile",
    {"age": "int", "score": "float", "active": "bool", "name": "string", "signup_at": "timestamp"},
)
ACTIVITY = ViewRead("user_activity", {"txn_count_7d": "int"})
KEYS = [(f"u{n}",) for n in range(5)]
BAD_KEY = KEYS[2]


def keys_of(prefix: str) -> list[tuple[str, ...]]:
    """Five keys; the third is the one corrupted."""
    return [(f"{prefix}{n}",) for n in range(5)]


def profile(key: tuple[str, ...], n: int, ts: int = NOW_US - 3_600_000_000) -> Record:
    values: dict[str, object] = {
        "age": 20 + n,
        "score": n / 3,
        "active": n % 2 == 0,
        "name": f"name {n}",
        "signup_at": dt.datetime(2025, 1, 1 + n, 12, 30),
    }
    return Record("user", key, PROFILE.view, ts, ts + 5, NOW_S + 86_400, values)


def activity(key: tuple[str, ...], n: int) -> Record:
    ts = NOW_US - 60_000_000
    return Record("user", key, ACTIVITY.view, ts, ts, NOW_S + 86_400, {"txn_count_7d": n})


def as_read(record: Record) -> StoredRecord:
    return StoredRecord(record.ts, record.ver, record.exp, dict(record.values))


#: every store
COMMON = {
    "exp not an integer": Corruption("exp", "soon", {"S": "soon"}),
    "ts not an integer": Corruption("ts", "12x", {"S": "12x"}),
    "ver not an integer": Corruption("ver", "v2", {"S": "v2"}),
    "int value not a number": Corruption("age", "abc", {"S": "abc"}),
    "float value not finite": Corruption("score", "nan", {"S": "nan"}),
    "bool value not 1 or 0": Corruption("active", "yes", {"S": "yes"}),
    "timestamp value not a number": Corruption("signup_at", "soon", {"S": "soon"}),
    "timestamp value out of range": Corruption(
        "signup_at", "99999999999999999999", {"N": "99999999999999999999"}
    ),
}
#: one store's own kinds (text None: applied by hand in corrupt())
OWN = {
    "sqlite": {
        "payload not JSON": Corruption("payload", '{"age": "2', None),
        "payload not an object": Corruption("payload", "[1, 2]", None),
        "value not an encoded text": Corruption("age", None, None),
        "exp stored as text": Corruption("exp", "tomorrow", None),
    },
    "redis": {"key not a hash": Corruption("key", None, None)},
    "dynamodb": {
        "int stored as a list": Corruption("age", None, {"L": [{"N": "1"}]}),
        "string stored as a number": Corruption("name", None, {"N": "5"}),
        "bool stored as a number": Corruption("active", None, {"N": "1"}),
        "int stored as a non-integral number": Corruption("age", None, {"N": "2.5"}),
        "f not a map": Corruption("f", None, {"S": "x"}),
        "ts not an integral number": Corruption("ts", None, {"N": "1.5"}),
    },
}


def kind_of(store: OnlineStore) -> str:
    if isinstance(store, SQLiteStore):
        return "sqlite"
    return "redis" if isinstance(store, RedisStore) else "dynamodb"


def corruptions(store: OnlineStore) -> dict[str, Corruption]:
    return {**COMMON, **OWN[kind_of(store)]}


def fill(store: OnlineStore, keys: list[tuple[str, ...]] = KEYS) -> list[Record]:
    profiles = [profile(key, n) for n, key in enumerate(keys)]
    store.write(profiles + [activity(key, n) for n, key in enumerate(keys)], now=NOW)
    return profiles


def check_read(
    store: OnlineStore, keys: list[tuple[str, ...]], profiles: list[Record], name: str
) -> InvalidRecord:
    """The third key's profile is an InvalidRecord; everything else reads as written (the
    other view of the same key too, unless the whole key is unreadable)."""
    rows = store.read("user", keys, [PROFILE, ACTIVITY], now=NOW)
    marker = rows[2][PROFILE.view]
    assert isinstance(marker, InvalidRecord), (name, marker)
    for n, (key, row) in enumerate(zip(keys, rows, strict=True)):
        if n != 2:
            assert row[PROFILE.view] == as_read(profiles[n]), name
        if n != 2 or name != "key not a hash":
            assert row[ACTIVITY.view] == as_read(activity(key, n)), name
    return marker


def test_each_kind_of_corruption_is_one_invalid_record(store: OnlineStore) -> None:
    for number, (name, bad) in enumerate(corruptions(store).items()):
        keys = keys_of(f"c{number}_")
        profiles = fill(store, keys)
        rows = store.read("user", keys, [PROFILE], now=NOW)
        assert [row[PROFILE.view] for row in rows] == [as_read(r) for r in profiles]
        corrupt(store, "user", keys[2], PROFILE.view, bad)
        marker = check_read(store, keys, profiles, name)
        assert marker.reason and "\n" not in marker.reason, (name, marker)
        # repaired by the next load: a newer record replaces the corrupt one
        if name == "key not a hash":
            store.client.delete(redis_key("user", keys[2], store.namespace))  # type: ignore[attr-defined]
        newer = profile(keys[2], 2, ts=NOW_US - 1_000_000)
        written = store.write([newer], now=NOW)
        assert written.written == 1, (name, written)
        got = store.read("user", [keys[2]], [PROFILE], now=NOW)[0][PROFILE.view]
        assert got == as_read(newer), name


@pytest.mark.parametrize("field", ["ts", "ver"])
def test_a_record_whose_order_cannot_be_read_is_replaced_by_any_write(
    store: OnlineStore, field: str
) -> None:
    """Newer-wins cannot compare a corrupt ``ts``/``ver``: the record counts as absent, so
    writing the very same record again (same ts, ver) repairs it."""
    profiles = fill(store)
    bad = COMMON[f"{field} not an integer"]
    corrupt(store, "user", BAD_KEY, PROFILE.view, bad)
    assert store.write([profiles[2]], now=NOW).written == 1
    assert store.read("user", [BAD_KEY], [PROFILE], now=NOW)[0][PROFILE.view] == as_read(
        profiles[2]
    )
    # and a record whose order reads fine is still protected by newer-wins
    assert store.write([profiles[2]], now=NOW).written == 0


def test_an_expired_record_is_none_whatever_else_it_holds(store: OnlineStore) -> None:
    fill(store)
    corrupt(store, "user", BAD_KEY, PROFILE.view, COMMON["int value not a number"])
    later = NOW + dt.timedelta(days=2)  # past every record's exp
    rows = store.read("user", KEYS, [PROFILE, ACTIVITY], now=later)
    assert all(value is None for row in rows for value in row.values())


@pytest.fixture
def redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    online = open_store(store_url("redis", request, tmp_path))
    online.initialize()
    yield online
    online.close()


def test_redis_asynchronous_reads_mark_records_whose_order_cannot_be_read(
    redis_store: RedisStore,
) -> None:
    """The sidecar's path (values left encoded): a corrupt ``_ts``/``_ver``/``_exp`` or a key
    that is not a hash is an InvalidRecord; a corrupt value is left for the caller to check
    (sidecar/fragments.py) and the other records are as stored."""
    cases = {name: COMMON[name] for name in ("exp not an integer", "ts not an integer")}
    cases |= {"ver not an integer": COMMON["ver not an integer"], **OWN["redis"]}

    async def read(keys: list[tuple[str, ...]]) -> list[dict[str, Any]]:
        return await redis_store.read_encoded_async("user", keys, [PROFILE, ACTIVITY], now=NOW)

    async def scenario() -> None:
        for number, (name, bad) in enumerate(cases.items()):
            keys = keys_of(f"a{number}_")
            fill(redis_store, keys)
            corrupt(redis_store, "user", keys[2], PROFILE.view, bad)
            rows = await read(keys)
            assert isinstance(rows[2][PROFILE.view], InvalidRecord), name
            for n, row in enumerate(rows):
                record = row[PROFILE.view]
                if n != 2:
                    assert isinstance(record, EncodedRecord)
                    assert record.values[0] == b"%d" % (20 + n)
        keys = keys_of("v_")
        fill(redis_store, keys)
        corrupt(redis_store, "user", keys[2], PROFILE.view, COMMON["int value not a number"])
        record = (await read(keys))[2][PROFILE.view]
        assert isinstance(record, EncodedRecord) and record.values[0] == b"abc"
        redis_store.close()  # on its event loop

    asyncio.run(scenario())


def test_sqlite_payload_reasons_name_the_problem(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "online.db")
    store.initialize()
    fill(store)
    for name, want in [
        ("payload not JSON", "not a JSON object"),
        ("payload not an object", "not a JSON object"),
        ("value not an encoded text", "age = 5 is not an encoded text"),
        ("exp stored as text", "exp = 'tomorrow'"),
    ]:
        corrupt(store, "user", BAD_KEY, PROFILE.view, OWN["sqlite"][name])
        marker = store.read("user", [BAD_KEY], [PROFILE], now=NOW)[0][PROFILE.view]
        assert isinstance(marker, InvalidRecord) and want in marker.reason, (name, marker)
        fill_payload = json.dumps({"age": "22"})
        with sqlite3.connect(store.path) as con:
            con.execute(
                "update online_records set payload = ?, exp = ? "
                "where entity_key = 'u2' and view = 'user_profile'",
                (fill_payload, NOW_S + 86_400),
            )
    store.close()


# --- timelines: opaque to the store ---------------------------------------------------------

#: a stored timeline that no reader can decode (not JSON), the same text in every store
UNDECODABLE = '{"60": [ not a tile set ✓'


def test_an_undecodable_timeline_is_returned_as_is(store: OnlineStore) -> None:
    """The store never decodes a timeline, so a corrupt one is no InvalidRecord here (the
    sidecar finds it undecodable): the record reads with the stored bytes, on the blocking
    and (Redis) the asynchronous path; a later record replaces it."""
    keys = keys_of("tl_")
    profiles = [dataclasses.replace(r, timeline=b"[]") for r in fill(store, keys)]
    store.write(profiles, now=NOW, replace=True)
    corrupt(store, "user", keys[2], PROFILE.view, Corruption("tl", UNDECODABLE, {"S": UNDECODABLE}))
    rows = store.read("user", keys, [PROFILE, ACTIVITY], now=NOW)
    for n, (key, row) in enumerate(zip(keys, rows, strict=True)):
        timeline = UNDECODABLE.encode() if n == 2 else b"[]"
        assert row[PROFILE.view] == dataclasses.replace(as_read(profiles[n]), timeline=timeline)
        assert row[ACTIVITY.view] == as_read(activity(key, n))
    if isinstance(store, RedisStore):

        async def read() -> list[dict[str, Any]]:
            rows = await store.read_encoded_async("user", keys, [PROFILE], now=NOW)
            store.close()  # on its event loop
            return rows

        encoded = asyncio.run(read())
        timelines = [row[PROFILE.view].timeline for row in encoded]
        assert timelines == [b"[]", b"[]", UNDECODABLE.encode(), b"[]", b"[]"]
    newer = dataclasses.replace(profiles[2], ts=profiles[2].ts + 1, timeline=None)
    assert store.write([newer], now=NOW).written == 1
    assert store.read("user", [keys[2]], [PROFILE], now=NOW)[0][PROFILE.view] == as_read(newer)


#: a packed tile set (binary: never UTF-8) and the same set corrupted: cut short by a word
PACKED = encode_tile_set({60: {NOW_S // 60 * 60 - 60: (2,), NOW_S // 60 * 60: (3,)}})
TRUNCATED = PACKED[:-8]


def test_a_binary_timeline_is_kept_byte_for_byte(store: OnlineStore) -> None:
    """A packed tile set is stored and read back as the bytes written (Redis field, SQLite
    BLOB, DynamoDB binary), on the blocking and (Redis) the asynchronous path; a corrupt one
    is returned as it is too (the reader, not the store, finds it invalid)."""
    keys = keys_of("bin_")
    assert PACKED[0] == TILE_SET_MAGIC
    profiles = [dataclasses.replace(r, timeline=PACKED) for r in fill(store, keys)]
    store.write(profiles, now=NOW, replace=True)
    corrupt(store, "user", keys[2], PROFILE.view, Corruption("tl", TRUNCATED, {"B": TRUNCATED}))
    expected = [TRUNCATED if n == 2 else PACKED for n in range(len(keys))]
    rows = store.read("user", keys, [PROFILE], now=NOW)
    assert [row[PROFILE.view].timeline for row in rows] == expected
    assert rows[0][PROFILE.view] == dataclasses.replace(as_read(profiles[0]), timeline=PACKED)
    if isinstance(store, RedisStore):

        async def read() -> list[dict[str, Any]]:
            rows = await store.read_encoded_async("user", keys, [PROFILE], now=NOW)
            store.close()  # on its event loop
            return rows

        encoded = asyncio.run(read())
        assert [row[PROFILE.view].timeline for row in encoded] == expected


@pytest.mark.parametrize(
    ("kind", "bad", "expected"),
    [
        ("sqlite", Corruption("tl", None, None), b"5"),  # an integer: its text
        ("dynamodb", Corruption("tl", None, {"B": b"\xff\x00raw"}), b"\xff\x00raw"),
        ("dynamodb", Corruption("tl", None, {"N": "5"}), "tl is not a string (S) or binary (B)"),
        ("dynamodb", Corruption("tl", None, {"L": []}), "tl is not a string (S) or binary (B)"),
    ],
)
def test_a_timeline_of_another_type(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, bad: Corruption, expected: object
) -> None:
    """What a store holds in the timeline's place that is not what it writes: SQLite's
    other values are their text, a DynamoDB binary (B) its bytes; a DynamoDB attribute of
    any other type is an InvalidRecord (the record's attributes are the store's layout)."""
    store = open_store(store_url(kind, request, tmp_path))
    store.initialize()
    try:
        profiles = fill(store)
        corrupt(store, "user", BAD_KEY, PROFILE.view, bad)
        rows = store.read("user", KEYS, [PROFILE, ACTIVITY], now=NOW)
        got = rows[2][PROFILE.view]
        if isinstance(expected, bytes):
            assert got == dataclasses.replace(as_read(profiles[2]), timeline=expected)
        else:
            assert isinstance(got, InvalidRecord) and expected in got.reason
        assert rows[2][ACTIVITY.view] == as_read(activity(BAD_KEY, 2))
        assert [row[PROFILE.view] for n, row in enumerate(rows) if n != 2] == [
            as_read(r) for n, r in enumerate(profiles) if n != 2
        ]
    finally:
        store.close()


# --- loader bookkeeping read back: per entry too ------------------------------------------


def corrupt_bookkeeping(store: OnlineStore, view: str) -> None:
    """A watermark that is not an integer and a load record that is not JSON."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as con:
            con.execute("update loader_watermarks set watermark = 'soon' where view = ?", (view,))
            con.execute(
                "insert into loader_loads (load_id, view, started_at, record) "
                "values ('x', ?, '9999-12-31T00:00:00Z', '{\"load_id\": ')",
                (view,),
            )
    elif isinstance(store, RedisStore):
        store.client.hset(f"{store.namespace}:_meta:watermarks", view, "soon")
        store.client.lpush(f"{store.namespace}:_meta:loads", '{"load_id": ')
    else:
        assert isinstance(store, DynamoDBStore)
        client = store.clients[0]
        client.put_item(
            TableName=store.table,
            Item={"pk": {"S": WATERMARK_PK}, "sk": {"S": view}, "watermark": {"S": "soon"}},
        )
        client.put_item(
            TableName=store.table,
            Item={
                "pk": {"S": LOADS_PK},
                "sk": {"S": f"9999-12-31T00:00:00Z#x#{view}"},
                "record": {"S": '{"load_id": '},
            },
        )


def test_corrupt_bookkeeping_is_read_per_entry(
    store: OnlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A watermark that is not an integer reads as none (the next load reads the whole
    view; logged); a load record that cannot be read is listed as ``unreadable`` beside the
    others, which read as written."""
    good = LoadRecord(
        load_id="l1", view="v", store=store.description, outcome="success",
        started_at="2026-05-01T00:00:00Z", finished_at="2026-05-01T00:00:01Z",
        watermark_before=None, watermark_after=NOW_US, rows_read=3,
    )  # fmt: skip
    store.record_load(good)
    store.set_watermark("v", NOW_US)
    store.set_watermark("w", 7)
    assert store.get_watermark("v") == NOW_US
    corrupt_bookkeeping(store, "v")
    with caplog.at_level(logging.WARNING, "featurestore.online"):
        assert store.get_watermark("v") is None
    assert "the watermark of view v is not an integer" in caplog.text
    assert store.get_watermark("w") == 7
    loads = {load.outcome: load for load in store.list_loads()}  # (where an unreadable
    assert sorted(loads) == ["success", "unreadable"]  # one sorts is the store's business)
    assert loads["success"] == good
    assert loads["unreadable"].message.startswith("a stored load record cannot be read: not JSON")
    store.set_watermark("v", NOW_US + 1)  # the next load's watermark replaces it
    assert store.get_watermark("v") == NOW_US + 1
