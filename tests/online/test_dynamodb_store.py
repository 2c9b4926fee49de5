"""The DynamoDB store against moto's server mode over HTTP (the session ``moto`` fixture).

What the shared contract suite (test_online_store_contract.py) cannot see: DynamoDB's real
limits enforced in code (25 write items / 100 read keys per request, counted on the wire by
botocore event hooks on the store's own clients; 400 KB items), unprocessed-key retries (a
botocore ``after-call`` hook turns part of a real BatchGetItem response into UnprocessedKeys),
throttling retries (a ``before-send`` hook answers one attempt with DynamoDB's error body),
exact float round trips through Decimal, the table and TTL set-up, error mapping for a
missing table, an unreachable endpoint and refused or missing credentials, and newer-wins
under concurrent writers. Expected values are computed here by hand from the rules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from featurestore.online.dynamodb_store import (
    MAX_ITEM_BYTES,
    DynamoDBStore,
    ItemTooLarge,
    encode_record,
    item_size,
)
from featurestore.online.layout import (
    TILE_SET_MAGIC,
    OnlineLayoutError,
    Record,
    encode_tile_set,
)
from featurestore.online.store import (
    LoadRecord,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    ViewRead,
    WriteResult,
)
from featurestore.online.urls import open_store
from tests.servers import MotoServer, free_port

EPOCH = dt.datetime(1970, 1, 1)
NOW = dt.datetime(2026, 5, 1, 6, 0, 0)
NOW_S = int((NOW - EPOCH).total_seconds())
NOW_US = NOW_S * 1_000_000
DAY = 86_400
SECRET = "sEcReT-sentinel-0123456789"

STATS = ViewRead("stats", {"n": "int", "x": "float", "ok": "bool", "s": "string", "t": "timestamp"})


def rec(
    key: str, ts: int, ver: int | None = None, exp: int | None = None, **values: object
) -> Record:
    full: dict[str, object] = dict.fromkeys(STATS.features)
    full.update(values)
    return Record(
        entity="user",
        key=(key,),
        view="stats",
        ts=ts,
        ver=ts if ver is None else ver,
        exp=NOW_S + 30 * DAY if exp is None else exp,
        values=full,
    )


def new_table() -> str:
    return f"fs_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ddb(moto: MotoServer) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore("us-east-1", moto.endpoint, new_table(), max_workers=8)
    store.initialize()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def raw(moto: MotoServer) -> Any:
    """An independent boto3 client on the same server, to look at the table directly."""
    client = boto3.client("dynamodb", endpoint_url=moto.endpoint, region_name="us-east-1")
    yield client
    client.close()


Hook = Callable[..., Any]


def hook(store: DynamoDBStore, event: str, handler: Hook) -> None:
    for client in store.clients:
        client.meta.events.register(event, handler)


class Wire:
    """Items per request as sent (``before-send``: once per HTTP attempt), by operation."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any, **kwargs: Any) -> None:
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        body = json.loads(request.body)
        if operation == "BatchGetItem":
            count = sum(len(spec["Keys"]) for spec in body["RequestItems"].values())
        elif operation == "BatchWriteItem":
            count = sum(len(writes) for writes in body["RequestItems"].values())
        elif operation == "TransactWriteItems":
            count = len(body["TransactItems"])
        else:
            count = 1 if operation in {"PutItem", "GetItem"} else 0
        with self.lock:
            self.sent.append((operation, count))

    def counts(self, operation: str) -> list[int]:
        return [count for op, count in self.sent if op == operation]


# --- table set-up ----------------------------------------------------------------------------


def test_initialize_creates_an_on_demand_table_with_ttl_on_exp(moto: MotoServer, raw: Any) -> None:
    table = new_table()
    store = open_store(moto.url(table=table))
    assert isinstance(store, DynamoDBStore)
    with pytest.raises(StoreNotInitialized):
        store.check()
    first = store.ensure_table()
    assert (first.created, first.ttl_enabled_now) == (True, True)
    described = raw.describe_table(TableName=table)["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]) == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    # idempotent: nothing created or switched the second time, and the store is usable
    second = store.ensure_table()
    assert (second.created, second.ttl_enabled_now) == (False, False)
    store.initialize()
    store.check()
    assert store.write([rec("u1", NOW_US, n=1)], now=NOW) == WriteResult(1, 0)
    store.close()


def test_a_foreign_table_of_the_same_name_is_refused(moto: MotoServer, raw: Any) -> None:
    table = new_table()
    raw.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with DynamoDBStore("us-east-1", moto.endpoint, table) as store:
        for action in (store.check, store.initialize):
            with pytest.raises(StoreError, match="not a featurestore online table"):
                action()


# --- errors ---------------------------------------------------------------------------------


def test_a_missing_table_raises_store_not_initialized(moto: MotoServer) -> None:
    table = new_table()
    with DynamoDBStore("us-east-1", moto.endpoint, table) as store:
        actions: list[Callable[[], object]] = [
            store.check,
            lambda: store.write([rec("u1", NOW_US, n=1)], now=NOW),
            lambda: store.read("user", [("u1",)], [STATS], now=NOW),
            lambda: store.get_watermark("stats"),
            store.list_loads,
        ]
        for action in actions:
            with pytest.raises(StoreNotInitialized) as caught:
                action()
            assert table in str(caught.value) and "init-store" in str(caught.value)


def test_an_unreachable_endpoint_raises_store_unavailable_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with DynamoDBStore("us-east-1", endpoint, new_table(), write_max_attempts=2) as store:
        actions: list[Callable[[], object]] = [
            store.check,
            lambda: store.read("user", [("u1",)], [STATS], now=NOW),
            lambda: store.write([rec("u1", NOW_US, n=1)], now=NOW),
            store.initialize,
        ]
        for action in actions:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                action()
            assert time.monotonic() - started < 5
            message = str(caught.value)
            assert "cannot reach" in message and endpoint in message
            assert SECRET not in message


def _start_moto_with_auth() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("moto (with authentication) did not start")


def test_refused_and_missing_credentials_raise_store_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc, endpoint = _start_moto_with_auth()  # moto checking credentials against its IAM
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        with DynamoDBStore("us-east-1", endpoint, new_table()) as store:
            probes: list[Callable[[], object]] = [store.check, lambda: store.get_watermark("v")]
            for action in probes:
                with pytest.raises(StoreUnavailable) as caught:
                    action()
                assert "credentials were refused" in str(caught.value)
                assert SECRET not in str(caught.value)
        # no credentials anywhere: no environment, no files, no instance metadata
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with (
            DynamoDBStore("us-east-1", endpoint, new_table()) as store,
            pytest.raises(StoreUnavailable, match="no usable AWS credentials"),
        ):
            store.check()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- request limits, counted on the wire -----------------------------------------------------


def test_reads_and_writes_stay_within_dynamodb_request_limits(ddb: DynamoDBStore) -> None:
    wire = Wire()
    hook(ddb, "before-send.dynamodb.*", wire)
    live = [rec(f"u{i}", NOW_US - i, n=i) for i in range(130)]
    expired = [rec(f"e{i}", NOW_US - DAY * 1_000_000, exp=NOW_S - i, n=i) for i in range(7)]
    assert ddb.write(live + expired, now=NOW) == WriteResult(130, 0)
    # one conditional PutItem per unexpired record, nothing batched beyond the limit
    assert wire.counts("PutItem") == [1] * 130
    assert all(count <= 25 for op, count in wire.sent if op != "BatchGetItem")
    wire.sent.clear()
    # 130 keys (+ duplicates and unknown keys) x 2 views = 272 unique (pk, sk) pairs
    keys = [(f"u{i}",) for i in range(130)] + [("u5",), ("u7",), ("nobody",), ("u5",)]
    other = ViewRead("other", {"n": "int"})
    rows = ddb.read("user", keys, [STATS, other], now=NOW)
    unique_pairs = len(set(keys)) * 2
    assert unique_pairs == 262
    sizes = wire.counts("BatchGetItem")
    assert max(sizes) <= 100 and sum(sizes) == unique_pairs
    assert len(sizes) == math.ceil(unique_pairs / 100)
    for key, row in zip(keys, rows, strict=True):
        stats = row["stats"]
        if key == ("nobody",):
            assert row == {"stats": None, "other": None}
        else:
            assert stats is not None and stats.values["n"] == int(key[0][1:])
            assert row["other"] is None


def test_oversized_requests_are_refused_before_sending(ddb: DynamoDBStore) -> None:
    """The guard on the store's clients enforces DynamoDB's limits even where moto is looser."""
    wire = Wire()
    hook(ddb, "before-send.dynamodb.*", wire)
    client = ddb.clients[0]

    def keys(count: int) -> list[dict[str, Any]]:
        return [{"pk": {"S": f"user#k{i}"}, "sk": {"S": "stats"}} for i in range(count)]

    def puts(count: int) -> list[dict[str, Any]]:
        return [{"PutRequest": {"Item": key}} for key in keys(count)]

    def transact(count: int) -> list[dict[str, Any]]:
        return [{"Put": {"TableName": ddb.table, "Item": key}} for key in keys(count)]

    with pytest.raises(StoreError, match="101 items: DynamoDB allows 100"):
        client.batch_get_item(RequestItems={ddb.table: {"Keys": keys(101)}})
    with pytest.raises(StoreError, match="26 items: DynamoDB allows 25"):
        client.batch_write_item(RequestItems={ddb.table: puts(26)})
    with pytest.raises(StoreError, match="26 items: DynamoDB allows 25"):
        client.transact_write_items(TransactItems=transact(26))
    assert wire.sent == []
    # at the limits they go through
    client.batch_get_item(RequestItems={ddb.table: {"Keys": keys(100)}})
    client.batch_write_item(RequestItems={ddb.table: puts(25)})
    assert wire.sent == [("BatchGetItem", 100), ("BatchWriteItem", 25)]


# --- unprocessed keys --------------------------------------------------------------------------


class Unprocessed:
    """Turns part of real BatchGetItem responses into UnprocessedKeys (the first ``times``
    responses; ``fraction`` of the requested keys, their returned items removed)."""

    def __init__(self, table: str, times: int, fraction: float) -> None:
        self.table, self.times, self.fraction = table, times, fraction
        self.calls = 0
        self.lock = threading.Lock()

    def before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["requested"] = json.loads(params["body"])["RequestItems"][self.table]["Keys"]

    def after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.calls += 1
            if self.calls > self.times:
                return
        requested = context["requested"]
        held = requested[: max(1, int(len(requested) * self.fraction))]
        held_ids = {(k["pk"]["S"], k["sk"]["S"]) for k in held}
        items = parsed["Responses"][self.table]
        parsed["Responses"][self.table] = [
            item for item in items if (item["pk"]["S"], item["sk"]["S"]) not in held_ids
        ]
        parsed["UnprocessedKeys"] = {self.table: {"Keys": held}}

    def install(self, store: DynamoDBStore) -> None:
        hook(store, "before-call.dynamodb.BatchGetItem", self.before)
        hook(store, "after-call.dynamodb.BatchGetItem", self.after)


def test_unprocessed_keys_are_retried_until_answered(ddb: DynamoDBStore) -> None:
    records = [rec(f"u{i}", NOW_US - i, n=i, s=f"v{i}") for i in range(150)]
    ddb.write(records, now=NOW)
    keys = [(f"u{i}",) for i in range(160)]  # 10 unknown
    plain = ddb.read("user", keys, [STATS], now=NOW)
    unprocessed = Unprocessed(ddb.table, times=4, fraction=0.5)
    unprocessed.install(ddb)
    wire = Wire()
    hook(ddb, "before-send.dynamodb.BatchGetItem", wire)
    retried = ddb.read("user", keys, [STATS], now=NOW, deadline_s=10)
    assert retried == plain
    assert [row["stats"] is not None for row in retried] == [i < 150 for i in range(160)]
    for i, row in enumerate(retried[:150]):
        stats = row["stats"]
        assert stats is not None and (stats.values["n"], stats.values["s"]) == (i, f"v{i}")
    # two chunks (100 + 60) plus one retry per response that held keys back
    assert unprocessed.calls == len(wire.counts("BatchGetItem")) == 2 + 4
    assert sum(wire.counts("BatchGetItem")) > 160


def test_unprocessed_keys_past_the_deadline_raise(ddb: DynamoDBStore) -> None:
    ddb.write([rec("u1", NOW_US, n=1)], now=NOW)
    Unprocessed(ddb.table, times=10**9, fraction=1.0).install(ddb)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"unprocessed after retrying .* 0.3 s"):
        ddb.read("user", [("u1",), ("u2",)], [STATS], now=NOW, deadline_s=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3


# --- throttling ----------------------------------------------------------------------------


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Refuse:
    """Answers the first ``times`` PutItem attempts with a DynamoDB error (never sent)."""

    def __init__(self, code: str, times: int) -> None:
        self.code, self.times, self.attempts = code, times, 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        self.attempts += 1
        if self.attempts > self.times:
            return None
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": "slow down"}
        ).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "t"}
        return AWSResponse(request.url, 400, headers, _Body(body))


@pytest.mark.parametrize(
    ("code", "times"),
    [
        ("ThrottlingException", 1),
        ("ProvisionedThroughputExceededException", 1),
        ("RequestLimitExceeded", 1),
        ("TransactionConflictException", 3),  # retried by the store (botocore does not)
    ],
)
def test_throttled_writes_are_retried(ddb: DynamoDBStore, code: str, times: int) -> None:
    refuse = Refuse(code, times)
    hook(ddb, "before-send.dynamodb.PutItem", refuse)
    assert ddb.write([rec("u1", NOW_US, n=7)], now=NOW) == WriteResult(1, 0)
    assert refuse.attempts == times + 1
    stored = ddb.read("user", [("u1",)], [STATS], now=NOW)[0]["stats"]
    assert stored is not None and stored.values["n"] == 7


def test_throttling_that_outlasts_the_retries_raises_store_unavailable(moto: MotoServer) -> None:
    with DynamoDBStore("us-east-1", moto.endpoint, new_table(), write_max_attempts=2) as store:
        store.initialize()
        refuse = Refuse("ProvisionedThroughputExceededException", 10**9)
        hook(store, "before-send.dynamodb.PutItem", refuse)
        with pytest.raises(StoreUnavailable, match="still throttled"):
            store.write([rec("u1", NOW_US, n=7)], now=NOW)
        assert refuse.attempts == 2


# --- values -----------------------------------------------------------------------------------


def fits_number_by_hand(x: float) -> bool:
    """DynamoDB's number range, on the float itself: 0 (not -0) or 1e-130 <= |x| < 1e126."""
    if x == 0:
        return math.copysign(1.0, x) > 0
    return 1e-130 <= abs(x) < 1e126


def random_doubles(rng: random.Random, count: int) -> list[float]:
    found: list[float] = []
    while len(found) < count:
        if rng.random() < 0.5:  # any bit pattern: mostly far outside DynamoDB's range
            (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        else:  # within it, all digits significant
            x = rng.uniform(-1, 1) * 10.0 ** rng.randint(-125, 120)
        if math.isfinite(x):
            found.append(x)
    return found


def test_floats_round_trip_exactly_through_decimal(ddb: DynamoDBStore, raw: Any) -> None:
    rng = random.Random(11)
    edge = [0.0, -0.0, 0.1, 1 / 3, 2**53 + 0.0, 1e-130, 9.999999999999999e125, 1e126, 1e-131]
    edge += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e22, 123456.789]
    doubles = edge + random_doubles(rng, 300)
    for x in doubles:  # the premise, by brute force: repr -> Decimal -> float is exact
        assert float(Decimal(repr(x))) == x and str(float(Decimal(repr(x)))) == repr(x)
    records = [rec(f"f{i}", NOW_US, x=x) for i, x in enumerate(doubles)]
    assert ddb.write(records, now=NOW) == WriteResult(len(records), 0)
    keys = [(f"f{i}",) for i in range(len(doubles))]
    rows = ddb.read("user", keys, [STATS], now=NOW)
    in_range = 0
    for x, row in zip(doubles, rows, strict=True):
        stats = row["stats"]
        assert stats is not None
        got = stats.values["x"]
        assert type(got) is float and got.hex() == x.hex()
    for i, x in enumerate(doubles[:60]):  # the stored attribute: N when DynamoDB can hold it
        item = raw.get_item(
            TableName=ddb.table, Key={"pk": {"S": f"user#f{i}"}, "sk": {"S": "stats"}}
        )
        attribute = item["Item"]["f"]["M"]["x"]
        if fits_number_by_hand(x):
            in_range += 1
            assert Decimal(attribute["N"]) == Decimal(repr(x))
        else:
            assert attribute == {"S": repr(x)}
    assert in_range >= 20


def test_ints_are_exact_and_nan_is_refused(ddb: DynamoDBStore, raw: Any) -> None:
    ints = [0, -1, 2**53 + 1, 2**63 - 1, -(2**63), 10**38 - 1, -(10**38 - 1), 10**40, 10**38 + 1]
    records = [rec(f"i{i}", NOW_US, n=n) for i, n in enumerate(ints)]
    assert ddb.write(records, now=NOW) == WriteResult(len(ints), 0)
    rows = ddb.read("user", [(f"i{i}",) for i in range(len(ints))], [STATS], now=NOW)
    for n, row in zip(ints, rows, strict=True):
        stats = row["stats"]
        assert stats is not None and type(stats.values["n"]) is int and stats.values["n"] == n
    stored = raw.get_item(TableName=ddb.table, Key={"pk": {"S": "user#i8"}, "sk": {"S": "stats"}})
    assert stored["Item"]["f"]["M"]["n"] == {"S": str(10**38 + 1)}  # 39 significant digits
    stored = raw.get_item(TableName=ddb.table, Key={"pk": {"S": "user#i7"}, "sk": {"S": "stats"}})
    assert stored["Item"]["f"]["M"]["n"] == {"N": "1E+40"}  # one significant digit
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(OnlineLayoutError, match=r"'x'.*not finite"):
            ddb.write([rec("ok", NOW_US, n=1), rec("bad", NOW_US, x=bad)], now=NOW)
    # nothing of a refused batch was written
    assert ddb.read("user", [("ok",), ("bad",)], [STATS], now=NOW) == [{"stats": None}] * 2


def test_the_stored_item_follows_the_layout(ddb: DynamoDBStore, raw: Any) -> None:
    seen = dt.datetime(2026, 4, 30, 23, 59, 58, 123456)
    ts, ver, exp = NOW_US - 5, NOW_US - 2, NOW_S + 7
    ddb.write([rec("a:b#c", ts, ver, exp, n=3, x=None, ok=False, s="é", t=seen)], now=NOW)
    item = raw.get_item(
        TableName=ddb.table, Key={"pk": {"S": "user#a%3Ab%23c"}, "sk": {"S": "stats"}}
    )["Item"]
    seen_us = ((seen - EPOCH).days * DAY + (seen - EPOCH).seconds) * 10**6 + seen.microsecond
    assert item == {
        "pk": {"S": "user#a%3Ab%23c"},
        "sk": {"S": "stats"},
        "ts": {"N": str(ts)},
        "ver": {"N": str(ver)},
        "exp": {"N": str(exp)},
        "f": {
            "M": {"n": {"N": "3"}, "ok": {"BOOL": False}, "s": {"S": "é"}, "t": {"N": str(seen_us)}}
        },
    }
    stored = ddb.read("user", [("a:b#c",)], [STATS], now=NOW)[0]["stats"]
    assert stored is not None
    assert stored.values == {"n": 3, "x": None, "ok": False, "s": "é", "t": seen}
    assert (stored.ts, stored.ver, stored.exp) == (ts, ver, exp)
    assert ddb.read("user", [("a:b#c",)], [STATS], now=EPOCH + dt.timedelta(seconds=exp)) == [
        {"stats": None}
    ]


# --- item size ----------------------------------------------------------------------------------


def number_size_by_hand(n: int) -> int:
    digits = str(abs(n)).strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def size_by_hand(key: str, ts: int, exp: int, features: dict[str, str | int | bool]) -> int:
    """DynamoDB's rules: name bytes + value bytes; a map 3 + per entry name + value + 1."""
    size = len("pk") + len(f"user#{key}".encode()) + len("sk") + len(b"stats")
    size += len("ts") + number_size_by_hand(ts) + len("ver") + number_size_by_hand(ts)
    size += len("exp") + number_size_by_hand(exp) + len("f") + 3
    for name, value in features.items():
        if isinstance(value, bool):
            value_size = 1
        elif isinstance(value, int):
            value_size = number_size_by_hand(value)
        else:
            value_size = len(value.encode())
        size += len(name.encode()) + value_size + 1
    return size


def test_items_over_400_kb_are_refused_naming_the_record(ddb: DynamoDBStore) -> None:
    ts, exp = NOW_US, NOW_S + 30 * DAY
    base: dict[str, str | int | bool] = {"n": 12345678901, "ok": True, "s": "ü✓"}
    filler = MAX_ITEM_BYTES - size_by_hand("big", ts, exp, {**base, "blob": ""})
    exact = _with(rec("big", ts, exp=exp), **base)
    at_limit = _with(exact, blob="x" * filler)
    assert item_size(encode_record(at_limit)) == MAX_ITEM_BYTES
    over = _with(exact, blob="x" * (filler + 1))
    with pytest.raises(ItemTooLarge, match=r"user \('big',\) view 'stats'.*409601 bytes"):
        encode_record(over)
    # in a batch: refused before anything of it is written
    wire = Wire()
    hook(ddb, "before-send.dynamodb.PutItem", wire)
    with pytest.raises(ItemTooLarge, match="'big'"):
        ddb.write([rec("small", ts, n=1), over], now=NOW)
    assert wire.sent == []
    # a large record within moto's own (smaller) limit round-trips
    large = _with(exact, blob="y" * 300_000)
    assert ddb.write([large], now=NOW) == WriteResult(1, 0)
    blob = ViewRead("stats", {"blob": "string", "n": "int"})
    stored = ddb.read("user", [("big",)], [blob], now=NOW)[0]["stats"]
    assert stored is not None and stored.values == {"blob": "y" * 300_000, "n": 12345678901}


def test_the_timeline_counts_in_the_item_size_and_round_trips(ddb: DynamoDBStore, raw: Any) -> None:
    """``tl`` (S) counts by DynamoDB's rules (2 bytes of name + its UTF-8 bytes): a record
    whose timeline takes it one byte over 400 KB is refused before anything of its batch is
    written, naming entity, key and view; as a StoreError too (the loader's clean error)."""
    ts, exp = NOW_US, NOW_S + 30 * DAY
    plain = _with(rec("big", ts, exp=exp), n=7)
    tail = "✓"  # 3 bytes of UTF-8: sizes are bytes, not characters
    filler = (
        MAX_ITEM_BYTES - size_by_hand("big", ts, exp, {"n": 7}) - len("tl") - len(tail.encode())
    )
    at_limit = dataclasses.replace(plain, timeline=("x" * filler + tail).encode())
    item = encode_record(at_limit)
    assert item["tl"] == {"S": "x" * filler + tail} and item_size(item) == MAX_ITEM_BYTES
    over = dataclasses.replace(plain, timeline=b"x" * (filler + 4))
    wire = Wire()
    hook(ddb, "before-send.dynamodb.PutItem", wire)
    for refused in (ItemTooLarge, StoreError):
        with pytest.raises(refused, match=r"user \('big',\) view 'stats'.*409601 bytes"):
            ddb.write([rec("small", ts, n=1), over], now=NOW)
    assert wire.sent == []
    # a large timeline within moto's (smaller) limit round-trips, in one BatchGetItem
    large = dataclasses.replace(plain, timeline=b"[" + b"1," * 150_000 + b"1]")
    assert ddb.write([large, rec("small", ts, n=1)], now=NOW) == WriteResult(2, 0)
    reads = Wire()
    hook(ddb, "before-send.dynamodb.BatchGetItem", reads)
    rows = ddb.read("user", [("big",), ("small",)], [STATS], now=NOW)
    assert reads.sent == [("BatchGetItem", 2)]
    assert rows[0]["stats"] is not None and rows[0]["stats"].timeline == large.timeline
    assert rows[1]["stats"] is not None and rows[1]["stats"].timeline is None
    stored = raw.get_item(
        TableName=ddb.table, Key={"pk": {"S": "user#small"}, "sk": {"S": "stats"}}
    )
    assert "tl" not in stored["Item"]  # no timeline: no attribute


def test_a_binary_timeline_is_a_binary_attribute(ddb: DynamoDBStore, raw: Any) -> None:
    """A timeline that is UTF-8 text (the layout's JSON forms) is stored as a string (S), one
    that is not (a packed tile set) as binary (B); both read back as the bytes written, and
    a binary ``tl`` counts its bytes against the 400 KB limit, checked before anything of
    its batch is written."""
    ts, exp = NOW_US, NOW_S + 30 * DAY
    packed = encode_tile_set({60: {NOW_S // 60 * 60: (3,)}, 3600: {NOW_S // 3600 * 3600: (5,)}})
    assert packed[0] == TILE_SET_MAGIC
    records = {
        "json": dataclasses.replace(rec("json", ts, n=1), timeline=b'[[1, ["5"]]]'),
        "packed": dataclasses.replace(rec("packed", ts, n=2), timeline=packed),
        "raw": dataclasses.replace(rec("raw", ts, n=3), timeline=b'{"60": "\xff"}'),
    }
    assert encode_record(records["json"])["tl"] == {"S": '[[1, ["5"]]]'}
    assert encode_record(records["packed"])["tl"] == {"B": packed}
    assert ddb.write(list(records.values()), now=NOW) == WriteResult(3, 0)
    for key in records:
        stored = raw.get_item(
            TableName=ddb.table, Key={"pk": {"S": f"user#{key}"}, "sk": {"S": "stats"}}
        )
        kind = "S" if key == "json" else "B"
        assert set(stored["Item"]["tl"]) == {kind}, key
    rows = ddb.read("user", [(key,) for key in records], [STATS], now=NOW)
    assert [row["stats"].timeline for row in rows] == [r.timeline for r in records.values()]
    # the size: 2 bytes of name + the binary's own bytes (not its base64 on the wire)
    plain = _with(rec("big", ts, exp=exp), n=7)
    filler = MAX_ITEM_BYTES - size_by_hand("big", ts, exp, {"n": 7}) - len("tl") - 1
    at_limit = dataclasses.replace(plain, timeline=b"\xf5" + b"\x00" * filler)
    item = encode_record(at_limit)
    assert set(item["tl"]) == {"B"} and item_size(item) == MAX_ITEM_BYTES
    over = dataclasses.replace(plain, timeline=b"\xf5" + b"\x00" * (filler + 1))
    wire = Wire()
    hook(ddb, "before-send.dynamodb.PutItem", wire)
    with pytest.raises(StoreError, match=r"user \('big',\) view 'stats'.*409601 bytes"):
        ddb.write([rec("small", ts, n=1), over], now=NOW)
    assert wire.sent == []


def test_a_record_without_a_timeline_removes_the_stored_attribute(
    ddb: DynamoDBStore, raw: Any
) -> None:
    key = {"pk": {"S": "user#k"}, "sk": {"S": "stats"}}
    first = dataclasses.replace(rec("k", NOW_US - 10, n=1), timeline=b"[]")
    assert ddb.write([first], now=NOW) == WriteResult(1, 0)
    assert raw.get_item(TableName=ddb.table, Key=key)["Item"]["tl"] == {"S": "[]"}
    assert ddb.write([rec("k", NOW_US, n=2)], now=NOW) == WriteResult(1, 0)
    assert "tl" not in raw.get_item(TableName=ddb.table, Key=key)["Item"]


def _with(record: Record, **values: object) -> Record:
    return Record(
        record.entity,
        record.key,
        record.view,
        record.ts,
        record.ver,
        record.exp,
        {**record.values, **values},
    )


# --- concurrency -----------------------------------------------------------------------------


def test_newer_wins_under_concurrent_writers(moto: MotoServer, ddb: DynamoDBStore) -> None:
    keys = [f"c{i}" for i in range(12)]
    base = NOW_US - 10_000
    versions = [(base + dt_, base + dt_ + dv) for dt_ in (0, 1, 2) for dv in (0, 1, 2)]

    def payload(key: str, ts: int, ver: int) -> dict[str, object]:
        return {"n": ts - base, "x": float(ver - base) / 7, "s": f"{key}|{ts}|{ver}"}

    records = [_with(rec(k, ts, ver), **payload(k, ts, ver)) for k in keys for ts, ver in versions]
    results: list[WriteResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        mine = records[:]
        random.Random(seed).shuffle(mine)
        try:
            with DynamoDBStore("us-east-1", moto.endpoint, ddb.table, max_workers=4) as store:
                for start in range(0, len(mine), 18):
                    result = store.write(mine[start : start + 18], now=NOW)
                    with lock:
                        results.append(result)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = sum(results, WriteResult())
    assert total.written + total.skipped_older == 4 * len(records)
    assert total.written >= len(keys)
    best = max(versions)  # by hand: the greatest (ts, ver) pair
    rows = ddb.read("user", [(k,) for k in keys], [STATS], now=NOW)
    for key, row in zip(keys, rows, strict=True):
        stored = row["stats"]
        assert stored is not None
        assert (stored.ts, stored.ver) == best
        expected = payload(key, *best)
        assert {name: stored.values[name] for name in expected} == expected


# --- loader bookkeeping ----------------------------------------------------------------------


def load(i: int, started_at: str, view: str) -> LoadRecord:
    return LoadRecord(
        load_id=f"load-{i:03d}",
        view=view,
        store="s",
        outcome="success",
        started_at=started_at,
        finished_at=started_at,
        watermark_before=None,
        watermark_after=i,
        message="m" * i,
    )


def test_bookkeeping_items_and_load_order_across_pages(ddb: DynamoDBStore, raw: Any) -> None:
    ddb.set_watermark("stats", NOW_US)
    item = raw.get_item(
        TableName=ddb.table, Key={"pk": {"S": "_meta#watermark"}, "sk": {"S": "stats"}}
    )["Item"]
    assert item["watermark"] == {"N": str(NOW_US)} and "exp" not in item
    # 30 loads sharing one start (a multi-view run) and 5 later ones, recorded shuffled
    same = "2026-05-01T02:00:00Z"
    loads = [load(i, same, f"view_{(i * 7) % 30:02d}") for i in range(30)]
    loads += [load(30 + i, f"2026-05-0{2 + i}T02:00:00Z", "v") for i in range(5)]
    for record in random.Random(3).sample(loads, len(loads)):
        ddb.record_load(record)
    stored = raw.query(
        TableName=ddb.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "_meta#loads"}},
    )["Items"]
    assert {i["sk"]["S"] for i in stored} == {f"{r.started_at}#{r.load_id}#{r.view}" for r in loads}
    # by hand: newest start first, then by view (what the other stores return)
    expected = sorted(loads, key=lambda r: r.view)
    expected.sort(key=lambda r: r.started_at, reverse=True)
    for limit in (1, 5, 6, 7, 26, 35, 50):
        assert ddb.list_loads(limit=limit) == expected[:limit], limit
    assert ddb.list_loads(limit=0) == []


def test_a_huge_load_message_is_truncated_not_lost(ddb: DynamoDBStore) -> None:
    big = load(1, "2026-05-01T00:00:00Z", "v")
    big = dataclasses.replace(big, message="rows: " + "x" * 500_000)
    ddb.record_load(big)
    (back,) = ddb.list_loads()
    assert back.message.startswith("rows: xxx") and back.message.endswith("[truncated]")
    assert len(back.message) < 64 * 1024 and back.watermark_after == 1
    assert dataclasses.replace(back, message=big.message) == big


@pytest.mark.parametrize("text", ["soon", "NaN", "Infinity", "1e", "2.5"])
def test_a_number_attribute_that_is_no_integer_is_a_layout_error(text: str) -> None:
    """The item decoder's integer reading (pure logic: moto itself fails on such an N, real
    DynamoDB refuses to store it): a layout error, read as an InvalidRecord, never an
    arithmetic traceback."""
    from featurestore.online.dynamodb_store import _integer
    from featurestore.online.layout import OnlineLayoutError

    with pytest.raises(OnlineLayoutError, match="exp"):
        _integer({"exp": {"N": text}}, "exp")
    assert _integer({"exp": {"N": "1700000000"}}, "exp") == 1_700_000_000
