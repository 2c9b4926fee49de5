"""Redis-specific behaviour of featurestore/online/redis_store.py against a real redis-server:
round trips, the key layout on the server, key expiry, the write script's NOSCRIPT recovery,
and the errors for an unreachable server and wrong credentials."""

from __future__ import annotations

import datetime as dt
import math
import random
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
from redis.connection import Connection
from redis.crc import key_slot

from featurestore.online import redis_store
from featurestore.online.layout import OnlineLayoutError, Record, encode_python_value
from featurestore.online.redis_store import MAX_LOADS, RedisStore, _encode
from featurestore.online.store import (
    LoadRecord,
    ReadGroup,
    RecordRefused,
    StoreUnavailable,
    ViewRead,
    WriteResult,
)
from featurestore.online.urls import open_store
from tests.servers import RedisServer, free_port, redis_server

EPOCH = dt.datetime(1970, 1, 1)
NOW = dt.datetime(2026, 5, 1)
NOW_S = int((NOW - EPOCH).total_seconds())
NOW_US = NOW_S * 1_000_000
DAY = 86_400

PROFILE = ViewRead("user_profile", {"age": "int", "name": "string"})
ACTIVITY = ViewRead("user_activity", {"txn_count_7d": "int", "txn_avg_7d": "float"})
DEVICE = ViewRead("user_device_stats", {"sessions": "int"})


@pytest.fixture
def store(redis: RedisServer) -> Iterator[RedisStore]:
    online = RedisStore(port=redis.port, namespace=f"t{uuid.uuid4().hex[:10]}")
    online.initialize()
    try:
        yield online
    finally:
        online.close()


@pytest.fixture
def admin(redis: RedisServer) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis(port=redis.port)
    try:
        yield client
    finally:
        client.close()


def rec(
    entity: str, key: tuple[str, ...], view: str, ts: int, exp: int, **values: object
) -> Record:
    return Record(entity, key, view, ts, ts, exp, values)


class SendSpy:
    """Counts packed writes to Redis sockets (one per round trip) made by every
    redis-py connection while installed; the real method still runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        original: Callable[..., Any] = Connection.send_packed_command

        def counting(connection: Connection, *args: Any, **kwargs: Any) -> Any:
            self.sends += 1
            return original(connection, *args, **kwargs)

        monkeypatch.setattr(Connection, "send_packed_command", counting)


def command_calls(client: redis_py.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# --- round trips ---------------------------------------------------------------------------


def test_a_read_of_many_keys_and_views_is_one_round_trip(
    store: RedisStore, admin: redis_py.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = NOW_S + DAY
    records = [rec("user", (f"u{i}",), "user_profile", NOW_US, exp, age=i) for i in range(50)]
    records += [
        rec("user", (f"u{i}",), "user_activity", NOW_US, exp, txn_count_7d=i) for i in range(25)
    ]
    assert store.write(records, now=NOW) == WriteResult(75, 0)
    keys = [(f"u{i}",) for i in range(60)] + [("u3",), ("u3",)]
    hmget_before = command_calls(admin, "hmget")
    spy = SendSpy(monkeypatch)
    rows = store.read("user", keys, [PROFILE, ACTIVITY], now=NOW)
    sends = spy.sends
    monkeypatch.undo()
    assert sends == 1
    # the server saw one HMGET per distinct key, nothing else from the store
    assert command_calls(admin, "hmget") - hmget_before == 60
    for i, row in enumerate(rows[:60]):
        profile, activity = row["user_profile"], row["user_activity"]
        assert (profile is not None) is (i < 50) and (activity is not None) is (i < 25)
        if profile is not None:
            assert profile.values == {"age": i, "name": None}
    assert rows[60] == rows[61] == rows[3]


def test_a_read_of_several_entities_is_one_round_trip(
    store: RedisStore, admin: redis_py.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multi-entity read (read_groups, blocking and asyncio): every group's HMGETs in
    one write, one HMGET per distinct key of each group, each group answered as alone."""
    import asyncio

    exp = NOW_S + DAY
    records = [rec("user", (f"u{i}",), "user_profile", NOW_US, exp, age=i) for i in range(5)]
    records += [
        rec("user", (f"u{i}",), "user_activity", NOW_US, exp, txn_count_7d=i) for i in range(3)
    ]
    records += [
        rec("user_device", (f"u{i}", "d"), "user_device_stats", NOW_US, exp, sessions=i)
        for i in range(4)
    ]
    store.write(records, now=NOW)
    groups = [
        ReadGroup("user", [("u0",), ("u4",), ("u9",), ("u0",)], [PROFILE, ACTIVITY]),
        ReadGroup("user_device", [("u1", "d"), ("u7", "d")], [DEVICE]),
        ReadGroup("user", [("u2",)], [ACTIVITY]),
    ]
    alone = [store.read(g.entity, g.keys, g.views, now=NOW) for g in groups]
    hmget_before = command_calls(admin, "hmget")
    spy = SendSpy(monkeypatch)
    together = store.read_groups(groups, now=NOW)
    sends = spy.sends
    monkeypatch.undo()
    assert sends == 1
    assert command_calls(admin, "hmget") - hmget_before == 3 + 2 + 1  # distinct keys
    assert together == alone
    assert together[0][0]["user_profile"].values == {"age": 0, "name": None}  # type: ignore[union-attr]

    async def read_async() -> tuple[list[Any], int]:
        client = store._async_client()
        await client.execute([("PING",)])  # connected first: count the read's writes alone
        assert client._connection is not None
        before = client._connection.writes
        rows = await store.read_groups_encoded_async(groups, now=NOW)
        return rows, client._connection.writes - before

    hmget_before = command_calls(admin, "hmget")
    encoded, writes = asyncio.run(read_async())
    assert writes == 1
    assert command_calls(admin, "hmget") - hmget_before == 6
    assert [
        [{v: r and (r.ts, r.exp) for v, r in row.items()} for row in rows] for rows in encoded
    ] == [[{v: r and (r.ts, r.exp) for v, r in row.items()} for row in rows] for rows in alone]


def test_writes_go_in_pipelines_of_batch_size(
    redis: RedisServer, admin: redis_py.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(port=redis.port, namespace=f"t{uuid.uuid4().hex[:10]}", batch_size=100)
    store.initialize()
    records = [
        rec("user", (f"u{i}",), "user_profile", NOW_US + i, NOW_S + DAY, age=i) for i in range(250)
    ]
    evalsha_before = command_calls(admin, "evalsha")
    hset_before = command_calls(admin, "hset")
    spy = SendSpy(monkeypatch)
    result = store.write(records, now=NOW)
    sends = spy.sends
    monkeypatch.undo()
    assert result == WriteResult(250, 0)
    assert sends == 3  # 100 + 100 + 50, one round trip each
    assert command_calls(admin, "evalsha") - evalsha_before == 250
    assert command_calls(admin, "hset") - hset_before == 250  # one HSET per record, in Lua
    store.close()


# --- layout on the server --------------------------------------------------------------------


def test_the_keys_of_one_user_share_one_cluster_slot(
    store: RedisStore, admin: redis_py.Redis
) -> None:
    exp = NOW_S + DAY
    user = "usr:{7}#%"  # separators in the id are escaped, the hash tag still covers all of it
    store.write(
        [
            rec("user", (user,), "user_profile", NOW_US, exp, age=1),
            rec("user_device", (user, "d1"), "user_device_stats", NOW_US, exp, sessions=1),
            rec("user_device", (user, "d:2"), "user_device_stats", NOW_US, exp, sessions=2),
            rec("user", ("other",), "user_profile", NOW_US, exp, age=2),
        ],
        now=NOW,
    )
    keys = sorted(k.decode() for k in admin.scan_iter(match=f"{store.namespace}:*"))
    ns = store.namespace
    escaped = "usr%3A%7B7%7D%23%25"
    assert keys == sorted(
        [
            f"{ns}:user:{{{escaped}}}",
            f"{ns}:user_device:{{{escaped}}}:d1",
            f"{ns}:user_device:{{{escaped}}}:d%3A2",
            f"{ns}:user:{{other}}",
        ]
    )
    user_keys = [k for k in keys if escaped in k]
    slots = {key_slot(k.encode()) for k in user_keys}
    assert slots == {key_slot(escaped.encode())}
    # the layout's fields: features (nulls absent) and _ts/_ver/_exp per view
    fields = admin.hgetall(f"{ns}:user:{{{escaped}}}")
    assert fields == {
        b"age": b"1",
        b"_ts:user_profile": str(NOW_US).encode(),
        b"_ver:user_profile": str(NOW_US).encode(),
        b"_exp:user_profile": str(exp).encode(),
    }


def test_null_features_are_deleted_from_the_hash(store: RedisStore, admin: redis_py.Redis) -> None:
    exp = NOW_S + DAY
    store.write([rec("user", ("u1",), "user_profile", NOW_US, exp, age=1, name="a")], now=NOW)
    store.write(
        [rec("user", ("u1",), "user_profile", NOW_US + 1, exp, age=None, name="b")], now=NOW
    )
    fields = admin.hgetall(f"{store.namespace}:user:{{u1}}")
    assert b"age" not in fields and fields[b"name"] == b"b"


def test_the_timeline_field_is_set_deleted_and_removed_with_its_view(
    store: RedisStore, admin: redis_py.Redis
) -> None:
    """``_tl:<view>`` holds the timeline's bytes as given; a newer record without one
    deletes it, a skipped older one leaves it, a removal (replace mode, expired) deletes it
    with the view's other fields; the other view's fields are never touched."""
    exp = NOW_S + DAY
    key = f"{store.namespace}:user:{{u1}}"
    tiled = Record("user", ("u1",), "user_windows", NOW_US, NOW_US + 5, exp, {}, b'{"60":{}}')
    first = Record("user", ("u1",), "user_profile", NOW_US, NOW_US, exp, {"age": 1}, b"\x00\xff")
    assert store.write([tiled, first], now=NOW) == WriteResult(2, 0)
    assert admin.hgetall(key) == {
        b"age": b"1",
        b"_ts:user_profile": str(NOW_US).encode(),
        b"_ver:user_profile": str(NOW_US).encode(),
        b"_exp:user_profile": str(exp).encode(),
        b"_tl:user_profile": b"\x00\xff",  # any bytes: the store never looks inside
        b"_ts:user_windows": str(NOW_US).encode(),
        b"_ver:user_windows": str(NOW_US + 5).encode(),
        b"_exp:user_windows": str(exp).encode(),
        b"_tl:user_windows": b'{"60":{}}',
    }
    older = Record("user", ("u1",), "user_profile", NOW_US - 1, NOW_US, exp, {"age": 2})
    assert store.write([older], now=NOW) == WriteResult(0, 1)
    assert admin.hget(key, "_tl:user_profile") == b"\x00\xff"
    newer = Record("user", ("u1",), "user_profile", NOW_US + 1, NOW_US + 1, exp, {"age": 3})
    assert store.write([newer], now=NOW) == WriteResult(1, 0)
    assert admin.hget(key, "_tl:user_profile") is None and admin.hget(key, "age") == b"3"
    removal = Record("user", ("u1",), "user_windows", NOW_US, NOW_US, NOW_S, {})
    assert store.write([removal], now=NOW, replace=True) == WriteResult(0, 0)
    assert sorted(admin.hgetall(key)) == [
        b"_exp:user_profile", b"_ts:user_profile", b"_ver:user_profile", b"age"
    ]  # fmt: skip
    assert admin.pexpiretime(key) > 0  # the key lives on for the view left


def test_a_timeline_over_redis_value_limit_is_refused_before_anything_is_sent(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refuses a string over ``proto-max-bulk-len`` (512 MB): the store refuses such
    a timeline itself, naming the record (the limit lowered here, not the server's)."""
    monkeypatch.setattr(redis_store, "MAX_VALUE_BYTES", 1000)
    fine = Record("user", ("a",), "user_profile", NOW_US, NOW_US, NOW_S + DAY, {}, b"x" * 1000)
    big = Record("user", ("b:1",), "user_profile", NOW_US, NOW_US, NOW_S + DAY, {}, b"x" * 1001)
    with pytest.raises(RecordRefused, match=r"user \('b:1',\) view 'user_profile'.*1001 bytes"):
        store.write([fine, big], now=NOW)
    assert store.read("user", [("a",)], [PROFILE], now=NOW) == [{"user_profile": None}]
    assert store.write([fine], now=NOW) == WriteResult(1, 0)


def test_write_pipelines_are_also_cut_by_bytes(
    store: RedisStore, admin: redis_py.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large timelines: a pipeline is cut once its arguments reach MAX_PIPELINE_BYTES
    (lowered here), far below the server's query buffer limit; each call is whole."""
    monkeypatch.setattr(redis_store, "MAX_PIPELINE_BYTES", 10_000)
    records = [
        Record("user", (f"u{i}",), "user_profile", NOW_US, NOW_US, NOW_S + DAY, {"age": i},
               b"t" * 4_000)
        for i in range(7)
    ]  # fmt: skip
    evalsha_before = command_calls(admin, "evalsha")
    spy = SendSpy(monkeypatch)
    assert store.write(records, now=NOW) == WriteResult(7, 0)
    sends = spy.sends
    monkeypatch.undo()
    assert sends == 4  # 2 + 2 + 2 + 1 records (each call is a little over 4,000 bytes)
    assert command_calls(admin, "evalsha") - evalsha_before == 7
    rows = store.read("user", [(f"u{i}",) for i in range(7)], [PROFILE], now=NOW)
    assert [row["user_profile"].timeline for row in rows] == [b"t" * 4_000] * 7  # type: ignore[union-attr]


def test_the_key_expires_at_the_latest_exp_of_its_views(
    store: RedisStore, admin: redis_py.Redis
) -> None:
    """Without ``now`` the key's expiry is exactly the latest _exp (PEXPIRETIME, ms)."""
    base = int(time.time()) + 10 * DAY
    key = f"{store.namespace}:user:{{u1}}"
    steps = [
        # (view, ts, exp, expected key expiry in seconds)
        ("user_profile", NOW_US, base + 100, base + 100),
        ("user_activity", NOW_US, base + 500, base + 500),  # later: extends
        ("user_profile", NOW_US + 1, base + 200, base + 500),  # never shortens another view
        # the view holding the latest expiry moves it earlier (a shorter TTL): the key now
        # lives until the latest _exp of all its views
        ("user_activity", NOW_US + 1, base + 150, base + 200),
        ("user_activity", NOW_US + 2, base + 900, base + 900),
    ]
    for view, ts, exp, expected in steps:
        assert store.write([rec("user", ("u1",), view, ts, exp)]) == WriteResult(1, 0)
        assert admin.pexpiretime(key) == expected * 1000, (view, ts, exp)
        assert 0 < admin.pttl(key) <= (expected - time.time() + 1) * 1000
    # a skipped write does not touch the expiry
    assert store.write([rec("user", ("u1",), "user_profile", NOW_US, base + 5000)]) == WriteResult(
        0, 1
    )
    assert admin.pexpiretime(key) == (base + 900) * 1000


def test_with_a_replayed_clock_the_key_lives_exp_minus_now(
    store: RedisStore, admin: redis_py.Redis
) -> None:
    """A write with ``now`` in the past (demo data) would otherwise expire on arrival: the key
    lives ``max(_exp) - now`` seconds from the write; _exp keeps the true value."""
    key = f"{store.namespace}:user:{{u1}}"
    exp = NOW_S + 3_600
    store.write([rec("user", ("u1",), "user_profile", NOW_US, exp, age=1)], now=NOW)
    pttl = admin.pttl(key)
    assert 3_600_000 - 10_000 <= pttl <= 3_600_000 + 1_000
    assert admin.hget(key, "_exp:user_profile") == str(exp).encode()
    stored = store.read("user", [("u1",)], [PROFILE], now=NOW)[0]["user_profile"]
    assert stored is not None and stored.exp == exp
    assert store.read("user", [("u1",)], [PROFILE], now=NOW + dt.timedelta(hours=1)) == [
        {"user_profile": None}
    ]


# --- the write script --------------------------------------------------------------------------


def test_the_script_is_loaded_again_after_script_flush(
    store: RedisStore, admin: redis_py.Redis
) -> None:
    exp = NOW_S + DAY
    first = [rec("user", (f"u{i}",), "user_profile", NOW_US, exp, age=i) for i in range(10)]
    assert store.write(first, now=NOW) == WriteResult(10, 0)
    admin.script_flush()
    assert admin.script_exists(store._script.sha) == [False]
    newer = [rec("user", (f"u{i}",), "user_profile", NOW_US + 1, exp, age=-i) for i in range(10)]
    mixed = newer[:5] + first[5:]  # 5 newer, 5 equal pairs
    assert store.write(mixed, now=NOW) == WriteResult(5, 5)
    assert admin.script_exists(store._script.sha) == [True]
    rows = store.read("user", [(f"u{i}",) for i in range(10)], [PROFILE], now=NOW)
    ages = [row["user_profile"].values["age"] for row in rows]  # type: ignore[union-attr]
    assert ages == [0, -1, -2, -3, -4, 5, 6, 7, 8, 9]


def test_a_dropped_connection_is_reopened(store: RedisStore, admin: redis_py.Redis) -> None:
    exp = NOW_S + DAY
    assert store.write([rec("user", ("u1",), "user_profile", NOW_US, exp, age=1)], now=NOW)
    admin.client_kill_filter(_type="normal", skipme=True)
    assert store.write(
        [rec("user", ("u1",), "user_profile", NOW_US + 1, exp, age=2)], now=NOW
    ) == WriteResult(1, 0)
    admin.client_kill_filter(_type="normal", skipme=True)
    stored = store.read("user", [("u1",)], [PROFILE], now=NOW)[0]["user_profile"]
    assert stored is not None and stored.values["age"] == 2


# --- loader bookkeeping keys -----------------------------------------------------------------


def load(i: int) -> LoadRecord:
    return LoadRecord(
        load_id=f"l{i}",
        view="user_profile",
        store="s",
        outcome="success",
        started_at=f"2026-05-01T00:00:{i % 60:02d}Z",
        finished_at="2026-05-01T00:01:00Z",
        watermark_before=None,
        watermark_after=i,
    )


def test_bookkeeping_lives_at_the_documented_keys(store: RedisStore, admin: redis_py.Redis) -> None:
    ns = store.namespace
    store.set_watermark("user_profile", 123)
    assert admin.hgetall(f"{ns}:_meta:watermarks") == {b"user_profile": b"123"}
    for i in range(MAX_LOADS + 3):
        store.record_load(load(i))
    assert admin.llen(f"{ns}:_meta:loads") == MAX_LOADS
    loads = store.list_loads(limit=MAX_LOADS + 10)
    assert [x.load_id for x in loads] == [f"l{i}" for i in range(MAX_LOADS + 2, 2, -1)]
    assert store.list_loads(limit=0) == []


# --- errors ------------------------------------------------------------------------------------


def test_an_unreachable_port_is_store_unavailable() -> None:
    port = free_port()
    online = RedisStore(port=port, password="hunter2-secret")
    started = time.monotonic()
    for call in (
        online.check,
        online.initialize,
        lambda: online.write([rec("user", ("u",), "v", NOW_US, NOW_S + DAY, a=1)], now=NOW),
        lambda: online.read("user", [("u",)], [PROFILE], now=NOW),
        lambda: online.get_watermark("v"),
    ):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert f"127.0.0.1:{port}" in str(info.value)
        assert "hunter2-secret" not in str(info.value)
    assert time.monotonic() - started < 10
    assert "hunter2-secret" not in online.description


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        online = RedisStore(port=port, timeout=0.3, connect_timeout=0.3, retries=0)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            online.check()
        assert time.monotonic() - started < 5


def test_a_killed_server_is_store_unavailable(tmp_path: Path) -> None:
    with redis_server(tmp_path / "doomed") as server:
        online = RedisStore(port=server.port, namespace="k")
        online.initialize()
        server.kill()
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port}"):
            online.write([rec("user", ("u",), "user_profile", NOW_US, NOW_S + DAY, age=1)], now=NOW)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis-auth"), password="right-pw-81x") as server:
        yield server


@pytest.mark.parametrize("password", ["wrong-pw-zz9", None])
def test_wrong_or_missing_credentials(secured: RedisServer, password: str | None) -> None:
    online = RedisStore(port=secured.port, password=password)
    for call in (online.check, lambda: online.read("user", [("u",)], [PROFILE], now=NOW)):
        with pytest.raises(StoreUnavailable, match="authentication failed") as info:
            call()
        message = str(info.value)
        assert "wrong-pw-zz9" not in message and "right-pw-81x" not in message
        assert f"127.0.0.1:{secured.port}" in message


def test_the_right_password_works_and_never_shows(
    secured: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = open_store(f"redis://:right-pw-81x@127.0.0.1:{secured.port}/0?namespace=auth")
    online.initialize()
    assert online.write([rec("user", ("u",), "user_profile", NOW_US, NOW_S + DAY, age=3)], now=NOW)
    assert "right-pw-81x" not in online.description
    assert online.description == f"redis://127.0.0.1:{secured.port}/0?namespace=auth"
    monkeypatch.setenv("FEATURESTORE_REDIS_PASSWORD", "right-pw-81x")
    from_env = open_store(f"redis://127.0.0.1:{secured.port}/0?namespace=auth")
    stored = from_env.read("user", [("u",)], [PROFILE], now=NOW)[0]["user_profile"]
    assert stored is not None and stored.values["age"] == 3
    assert "right-pw-81x" not in from_env.description
    online.close()
    from_env.close()


# --- the write path's encoder ----------------------------------------------------------------


class MyFloat(float):
    pass


def test_the_fast_encoder_agrees_with_the_layout() -> None:
    """redis_store._encode skips the layout's type checks for exact built-in types: it must
    give the same text, and refuse what the layout refuses."""
    rng = random.Random(3)
    values: list[object] = [None, True, False, 0, -1, 2**70, "", "a:b", 0.1, -0.0, 5e-324]
    values += [MyFloat(0.25), dt.datetime(2026, 5, 1, 1, 2, 3, 4)]
    values += [rng.randint(-(2**64), 2**64) for _ in range(200)]
    values += [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(2000)
    ]
    for value in values:
        try:
            expected: object = encode_python_value(value)
        except OnlineLayoutError as exc:
            expected = type(exc)
        try:
            got: object = _encode(value)
        except OnlineLayoutError as exc:
            got = type(exc)
        assert got == expected, value
    for bad in (math.nan, -math.inf, Decimal("1"), b"x", [1]):
        with pytest.raises(OnlineLayoutError):
            _encode(bad)
