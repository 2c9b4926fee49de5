"""One bad record through the real sidecar over HTTP (``python -m sidecar`` on each store:
SQLite file, redis-server, moto server): records written with ``store.write`` (the
hand-written user_profile_features; the declared user_transaction_features as tile sets),
one profile record corrupted in the store, then requests of many keys. The corrupt key's
view answers ``INVALID_RECORD``
(its default or nothing), every other key and view is PRESENT with what was written, the
response is 200 and not degraded, the breaker stays closed, the record is counted per view
and logged once within the interval, never cached: a repair shows on the next request."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from featurestore.online.layout import TILE_SET_MAGIC, Record, decode_tile_set, encode_tile_set
from featurestore.online.store import InvalidRecord, OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView, Registry, ValueType
from sidecar.invalid_records import InvalidRecordLog
from tests.online.corruption import Corruption, corrupt
from tests.sidecar.harness import (
    NOW,
    SidecarServer,
    iso_z,
    metric,
    running_sidecar,
    sidecar_env,
)

TXN = "user_transaction_features"
PROFILE = "user_profile_features"
KEYS = [f"usr_bad{n:02d}" for n in range(12)]
BAD = KEYS[5]
LOG_LINE = "a stored record cannot be decoded"
#: per store kind: a numeric feature's value replaced by text that is not a number
NOT_A_NUMBER = Corruption("user_risk_score", "many", {"S": "many"})


def value(value_type: ValueType, n: int) -> object:
    """The written value of feature number ``n`` (a pure function of it)."""
    if value_type == "int":
        return 100 + n
    if value_type == "float":
        return n + 0.25
    if value_type == "bool":
        return n % 2 == 0
    if value_type == "string":
        return f"text {n}"
    return dt.datetime(2026, 4, 1) + dt.timedelta(minutes=n)


def as_json(value_type: ValueType, written: object) -> object:
    return iso_z(written) if isinstance(written, dt.datetime) else written


FEATURE_AT = dt.datetime(2026, 4, 30, 12, 0, 0)  # naive UTC, within every view's TTL


def record(view: FeatureView, key: str, n: int, feature_at: dt.datetime = FEATURE_AT) -> Record:
    """A hand-written view's record of feature values (a pure function of ``n``)."""
    ts = int(feature_at.replace(tzinfo=dt.UTC).timestamp()) * 1_000_000
    exp = int(NOW.timestamp()) + 86_400
    values = {f.name: value(f.value_type, n + i) for i, f in enumerate(view.features)}
    return Record("user", (key,), view.name, ts, ts, exp, values)


def amounts(n: int) -> list[Decimal]:
    """Key number ``n``'s transactions: ``1 + n % 3`` of them, 12 h before NOW."""
    return [Decimal(n) + Decimal("0.25") * i for i in range(1 + n % 3)]


def tiled_record(key: str, n: int) -> Record:
    """The declared user_transaction_features record of key ``n`` (a load at NOW): its
    transactions in one tile of each hop (60 s, 1 h, 1 d), 12 h before NOW."""
    start = int(FEATURE_AT.replace(tzinfo=dt.UTC).timestamp())  # a minute and hour start
    day = start - start % 86400
    spent = amounts(n)
    tiles = {
        60: {start: (len(spent),)},
        3600: {start: (len(spent),)},
        86400: {day: ((len(spent), sum(spent, Decimal(0))),)},
    }
    ts = start * 1_000_000
    exp = day + 86400 + 90 * 86400
    now_us = int(NOW.timestamp()) * 1_000_000
    return Record("user", (key,), TXN, ts, now_us, exp, {}, encode_tile_set(tiles))  # type: ignore[arg-type]


def tiled_answers(n: int) -> dict[str, Any]:
    """The rule at NOW, by hand: the transactions are 12 h old (out of 10 minutes, in 7 and
    90 days); the answers' timestamp is the request's time."""
    spent = amounts(n)
    values = {
        "user_10m_transaction_count": 0,
        "user_7d_transaction_count": len(spent),
        "avg_order_value_90d": float(sum(spent)) / len(spent),
    }
    stamp = iso_z(NOW.replace(tzinfo=None))
    return {
        name: {"value": v, "timestamp": stamp, "status": "PRESENT"} for name, v in values.items()
    }


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
def served(
    request: pytest.FixtureRequest, manifest: Path, registry: Registry, tmp_path: Path
) -> Iterator[tuple[SidecarServer, OnlineStore]]:
    """Both user views written for every key, ``BAD``'s profile record corrupted, and the
    sidecar over that store."""
    kind: str = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'online.db'}"
    elif kind == "redis":
        url = f"{request.getfixturevalue('redis').url}?namespace=iv{uuid.uuid4().hex[:8]}"
    else:
        url = request.getfixturevalue("moto").url(table=f"iv_{uuid.uuid4().hex[:8]}")
    store = open_store(url)
    store.initialize()
    records = [record(registry.views[PROFILE], key, n) for n, key in enumerate(KEYS)]
    records += [tiled_record(key, n) for n, key in enumerate(KEYS)]
    assert store.write(records, now=NOW).written == len(records)
    corrupt(store, "user", (BAD,), PROFILE, NOT_A_NUMBER)
    with running_sidecar(tmp_path / "log", sidecar_env(url, manifest)) as server:
        yield server, store
    store.close()


def retrieve(server: SidecarServer, keys: list[str], features: list[str]) -> Any:
    body = {"entity_name": "user", "entity_keys": keys, "features": features}
    with server.client() as client:
        return client.post("/api/v1/features/retrieve", json=body)


def check(registry: Registry, response: Any, keys: list[str], features: list[str]) -> None:
    """200, not degraded; the bad key's profile features INVALID_RECORD (default or
    nothing), every other answer PRESENT with the written value (profile) or the rule's
    (transactions)."""
    assert response.status_code == 200, response.text
    assert "x-featurestore-degraded" not in response.headers
    results = response.json()["results"]
    assert [result["entity_key"] for result in results] == keys
    for key, result in zip(keys, results, strict=True):
        assert list(result["features"]) == features
        for name, got in result["features"].items():
            feature = registry.features[name]
            view = registry.views[feature.view]
            if feature.view == TXN:
                want = tiled_answers(KEYS.index(key))[name]
                assert got == want and type(got["value"]) is type(want["value"]), (key, name)
                continue
            if key == BAD and feature.view == PROFILE:
                status = "MISSING" if feature.default is None else "DEFAULT"
                want = {"value": feature.default, "timestamp": None, "status": status}
                assert got == {**want, "reason": "INVALID_RECORD"}, (key, name, got)
                continue
            n = KEYS.index(key) + list(view.feature_names()).index(name)
            want = {
                "value": as_json(feature.value_type, value(feature.value_type, n)),
                "timestamp": iso_z(FEATURE_AT),
                "status": "PRESENT",
            }
            assert got == want and type(got["value"]) is type(want["value"]), (key, name)


def test_one_bad_record_is_answered_alone_and_is_not_a_store_failure(
    served: tuple[SidecarServer, OnlineStore], registry: Registry
) -> None:
    server, store = served
    profile = list(registry.views[PROFILE].feature_names())
    both = list(registry.views[TXN].feature_names()) + profile
    requests = [
        (KEYS, both),  # many keys, two views
        (KEYS, profile),  # many keys, one view (the batch rendering path)
        ([BAD], profile),  # the bad key alone
        ([BAD, KEYS[0], BAD], both),  # repeated
        (KEYS, both),  # again: read again (never cached), logged once
    ]
    for keys, features in requests:
        check(registry, retrieve(server, keys, features), keys, features)
    with server.client() as client:
        text = client.get("/metrics").text
    reads = len(requests)
    assert metric(text, "featurestore_sidecar_invalid_records_total", {"view": PROFILE}) == reads
    assert metric(text, "featurestore_sidecar_invalid_records_total", {"view": TXN}) == 0
    assert metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "ok"}) >= reads
    for kind in ("error", "unavailable", "timeout", "circuit_open", "saturated"):
        assert metric(text, "featurestore_sidecar_store_errors_total", {"kind": kind}) == 0
    assert metric(text, "featurestore_sidecar_circuit_state") == 0
    assert metric(text, "featurestore_sidecar_degraded_responses_total") == 0
    invalid_answers = sum(
        metric(text, "featurestore_sidecar_feature_values_total", labels)
        for labels in ({"status": s, "reason": "INVALID_RECORD"} for s in ("DEFAULT", "MISSING"))
    )
    assert invalid_answers == len(profile) * sum(keys.count(BAD) for keys, _ in requests)
    lines = [line for line in server.output().splitlines() if LOG_LINE in line]
    assert len(lines) == 1, lines
    assert f"key {BAD}" in lines[0] and f"view {PROFILE}" in lines[0] and "many" in lines[0]

    # repaired by a newer write: served at once (the invalid answer was never cached)
    later = FEATURE_AT + dt.timedelta(hours=1)
    assert store.write([record(registry.views[PROFILE], BAD, 5, later)], now=NOW).written == 1
    response = retrieve(server, [BAD], profile)
    assert response.status_code == 200
    answers = response.json()["results"][0]["features"]
    assert {got["status"] for got in answers.values()} == {"PRESENT"}
    assert {got["timestamp"] for got in answers.values()} == {iso_z(later)}


# --- tile sets: the packed form corrupted, the JSON form still served ----------------------

#: per key index: how its tile set is stored (the others: packed, as written)
JSON_FORM, CUT_SHORT, BIT_FLIPPED = 3, 5, 7


@pytest.mark.parametrize("kind", ["sqlite", "redis", "dynamodb"])
def test_corrupt_packed_tile_sets_are_invalid_records_and_json_ones_are_served(
    request: pytest.FixtureRequest, manifest: Path, registry: Registry, tmp_path: Path, kind: str
) -> None:
    """Tile sets of the declared view: packed (as the loader writes them), one in the JSON
    form of stores written before (served as ever), one cut short by a word and one with a
    flipped bit in its tiles (both stored behind the store's back): the two corrupt ones
    answer ``INVALID_RECORD`` for that view alone (its defaults, never a traceback or a
    value), counted per read and never cached; everything else as written."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'online.db'}"
    elif kind == "redis":
        url = f"{request.getfixturevalue('redis').url}?namespace=tp{uuid.uuid4().hex[:8]}"
    else:
        url = request.getfixturevalue("moto").url(table=f"tp_{uuid.uuid4().hex[:8]}")
    store = open_store(url)
    store.initialize()
    tiled = [tiled_record(key, n) for n, key in enumerate(KEYS)]
    packed = tiled[CUT_SHORT].timeline
    assert packed is not None and packed[0] == TILE_SET_MAGIC
    old = encode_tile_set(decode_tile_set(tiled[JSON_FORM].timeline or b""), packed=False)
    tiled[JSON_FORM] = dataclasses.replace(tiled[JSON_FORM], timeline=old)
    records = [record(registry.views[PROFILE], key, n) for n, key in enumerate(KEYS)]
    assert store.write(records + tiled, now=NOW).written == 2 * len(KEYS)
    flipped = bytearray(tiled[BIT_FLIPPED].timeline or b"")
    flipped[-3] ^= 0x10  # a prefix sum's bit: caught by the CRC
    for n, bad in ((CUT_SHORT, packed[:-8]), (BIT_FLIPPED, bytes(flipped))):
        corrupt(store, "user", (KEYS[n],), TXN, Corruption("tl", bad, {"B": bad}))
    txn = list(registry.views[TXN].feature_names())
    features = txn + list(registry.views[PROFILE].feature_names())
    invalid = {KEYS[CUT_SHORT], KEYS[BIT_FLIPPED]}
    try:
        with running_sidecar(tmp_path / "log", sidecar_env(url, manifest)) as server:
            for keys in (KEYS, KEYS, [KEYS[CUT_SHORT]], [KEYS[JSON_FORM]]):
                response = retrieve(server, keys, features)
                assert response.status_code == 200, response.text
                assert "x-featurestore-degraded" not in response.headers
                for key, result in zip(keys, response.json()["results"], strict=True):
                    got = {name: result["features"][name] for name in txn}
                    if key not in invalid:
                        assert got == tiled_answers(KEYS.index(key)), key
                        continue
                    for name, answer in got.items():
                        default = registry.features[name].default
                        status = "MISSING" if default is None else "DEFAULT"
                        assert answer == {
                            "value": default,
                            "timestamp": None,
                            "status": status,
                            "reason": "INVALID_RECORD",
                        }, (key, name)
                    profile = result["features"]["user_segment"]
                    assert profile["status"] == "PRESENT", key
            with server.client() as client:
                text = client.get("/metrics").text
            bad_reads = 2 + 2 + 1  # never cached: every read of a corrupt key counts
            assert (
                metric(text, "featurestore_sidecar_invalid_records_total", {"view": TXN})
                == bad_reads
            )
            assert (
                metric(text, "featurestore_sidecar_invalid_records_total", {"view": PROFILE}) == 0
            )
            lines = [line for line in server.output().splitlines() if LOG_LINE in line]
            assert {line.split("key ")[1].split(",")[0] for line in lines} == invalid
            assert any("CRC-32 mismatch" in line for line in lines)
    finally:
        store.close()


# --- the log's rate limit and memory bound (pure logic: a manual clock) ---------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_pair_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test-invalid-records")
    log = InvalidRecordLog(logger, interval_s=60, max_pairs=100, clock=clock)
    bad = InvalidRecord("x = 'y'")
    with caplog.at_level(logging.WARNING, logger.name):
        for _ in range(5):
            log.report("user", "v", ("k1",), bad)
            log.report("user", "w", ("k1",), bad)  # another view: its own pair
        clock.now += 59.9
        log.report("user", "v", ("k1",), bad)
        assert len(caplog.records) == 2
        clock.now += 0.1  # the interval has passed
        log.report("user", "v", ("k1",), bad)
        assert len(caplog.records) == 3
        assert "key k1, view v: x = 'y'" in caplog.records[-1].getMessage()


def test_the_log_remembers_a_bounded_number_of_pairs(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test-invalid-records-bound")
    log = InvalidRecordLog(logger, interval_s=60, max_pairs=10, clock=clock)
    bad = InvalidRecord("bad")
    with caplog.at_level(logging.WARNING, logger.name):
        for n in range(25):  # 25 distinct pairs within one interval
            log.report("user", "v", (f"k{n}",), bad)
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 11  # 10 one by one, then one count
        assert messages[-1].startswith("1 more records")
        assert len(log._logged) == 10
        clock.now += 30
        for n in range(25, 30):
            log.report("user", "v", (f"k{n}",), bad)  # counted, not logged (within 60 s)
        assert len(caplog.records) == 11
        clock.now += 31  # the first ten are forgotten: new pairs are logged again
        log.report("user", "v", ("k99",), bad)
        assert "key k99" in caplog.records[-1].getMessage()
        assert len(log._logged) <= 10
        clock.now += 60
        log.report("user", "v", ("k0",), bad)
        assert "key k0" in caplog.records[-1].getMessage()
