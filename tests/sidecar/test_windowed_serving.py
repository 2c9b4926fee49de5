"""Windowed and scheduled values over HTTP, on every store (SQLite and DynamoDB: the threaded
read path; Redis: the async encoded path): the real app under uvicorn in a thread of the
test with a clock the test holds, records written through ``store.write`` with a timeline
(``Record(..., timeline=encode_tile_set(...))`` / ``encode_steps``), answers compared with
the brute-force rule over the generated events (tests/sidecar/windowed.py).

* a tiled view's values at tile edges, window edges and random instants, mixed in one
  request with a plain view's features, with and without the cache;
* a count decaying between two requests at two pinned times (``--now``) with no new write;
* a hand-written view's scheduled value switching at the step's ``ts``, from the cache too,
  and each step's own expiry;
* timelines that cannot be decoded: ``INVALID_RECORD``, counted, never cached;
* the cache TTL: new tiles in the store are not seen before it and are seen at it.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from featurestore.clock import Clock, ManualClock, PinnedClock
from featurestore.online.layout import Record, encode_steps, encode_tile_set
from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from sidecar.auth import unscoped_key
from sidecar.settings import Settings
from tests.sidecar.harness import API_KEY, PROFILE, InProcessSidecar, metric, serving_in_process
from tests.sidecar.windowed import (
    DAY,
    TILED,
    TILED_FEATURES,
    US,
    Event,
    at_us,
    edge_events,
    expected,
    iso,
    not_found,
    probe_times,
    tiled_record,
    tiled_registry,
)
from tests.stores import store_url

KINDS = ["sqlite", "redis", "dynamodb"]
CUTOFF = 1_777_593_600 * US  # 2026-05-01T00:00:00Z: the load's cutoff
USERS = PROFILE  # a hand-written view of the user entity (TTL 1 d)
WINDOWED = list(TILED_FEATURES)
EPSILON = 2.0**-10


@pytest.fixture(scope="module")
def registry(parsed_registry: Registry) -> Registry:
    return tiled_registry(parsed_registry)


@dataclass
class Served:
    kind: str
    clock: Clock
    server: InProcessSidecar
    writer: OnlineStore

    def write(self, *records: Record) -> None:
        result = self.writer.write(records, now=at_us(CUTOFF))
        assert result.written == len(records), result

    def post(self, keys: list[str], features: list[str]) -> list[dict[str, Any]]:
        body = {"entity_name": "user", "entity_keys": keys, "features": features}
        with self.server.client() as client:
            response = client.post("/api/v1/features/retrieve", json=body)
        assert response.status_code == 200, response.text
        assert "x-featurestore-degraded" not in response.headers
        return [result["features"] for result in response.json()["results"]]

    def metrics(self) -> str:
        with self.server.client() as client:
            return client.get("/metrics").text

    def counters(self) -> tuple[float, float]:
        text = self.metrics()
        hits = metric(text, "featurestore_sidecar_cache_lookups_total", {"result": "hit"})
        reads = metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "ok"})
        return hits, reads

    def cached(self, key: str, view: str) -> bool:
        return (view, (key,)) in self.server.sidecar.cache


Start = Callable[..., Served]


@pytest.fixture(params=KINDS)
def start(request: pytest.FixtureRequest, tmp_path: Path, registry: Registry) -> Iterator[Start]:
    """``start(clock=None, **settings)``: the sidecar over a store of each kind (the same
    store for every call of one test), by default with a manual clock at the cutoff."""
    url = store_url(request.param, request, tmp_path)
    with ExitStack() as stack:
        writer = stack.enter_context(open_store(url))
        writer.initialize()

        def start_(clock: Clock | None = None, **settings: Any) -> Served:
            clock = clock or ManualClock(at_us(CUTOFF))
            config = Settings(
                online_url=url,
                api_keys=(unscoped_key("test", API_KEY),),
                store_timeout_s=5.0,  # generous: 2 shared cores
                gc_full_interval_s=0,
                **settings,
            )
            server = stack.enter_context(
                serving_in_process(config, registry, open_store(url), clock)
            )
            return Served(request.param, clock, server, writer)

        yield start_


def plain_record(
    user: str, segment: str, risk: float, ts_us: int, steps: bytes | None = None
) -> Record:
    """A user_profile_features record (hand-written, TTL 1 d) at ``ts_us``."""
    values = {"user_segment": segment, "user_risk_score": risk, "user_is_vip": None,
              "user_last_login_at": None}  # fmt: skip
    exp = ts_us // US + DAY
    return Record("user", (user,), USERS, ts_us, ts_us, exp, values, steps)


def plain_answer(segment: str, ts_us: int) -> dict[str, Any]:
    return {"value": segment, "timestamp": iso(ts_us), "status": "PRESENT"}


PLAIN_GONE = {"value": "unknown", "timestamp": None, "status": "DEFAULT", "reason": "NOT_FOUND"}


def set_clock(served: Served, now_us: int) -> None:
    clock = served.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_us(now_us))


@pytest.mark.parametrize("cache_ttl_s", [0.0, 10 * DAY])
def test_tiled_values_follow_the_rule_at_every_edge(start: Start, cache_ttl_s: float) -> None:
    """Four users with the rule's edge cases, a user with no tiles and a plain view in the
    same request: at every probe instant (tile starts, one microsecond before, leave
    instants, random ones up to 91 days on), each windowed feature is the rule's value with
    the request's time as timestamp; the plain feature keeps its record's timestamp; a user
    without a record gets the defaults (NOT_FOUND). With a cache TTL of 10 days every
    answer after the first two comes from the cached tiles, merged at the request's time."""
    served = start(cache_ttl_s=cache_ttl_s)
    rng = random.Random(11)
    users = ["u1", "u2", "u3", "u4"]
    events: dict[str, list[Event]] = {u: edge_events(u, CUTOFF, rng, 40) for u in users}
    plain_ts = CUTOFF - 3600 * US
    records = {u: tiled_record(u, events[u], CUTOFF) for u in users}
    served.write(*records.values())
    served.write(plain_record("u1", "gold", 12.5, plain_ts))
    every = [e for u in users for e in events[u]]
    keys = [*users, "nobody"]
    features = [*WINDOWED, "user_segment"]
    times = probe_times(every, CUTOFF, rng, 40)
    decayed = 0
    for now_us in times:
        set_clock(served, now_us)
        for user, got in zip(keys, served.post(keys, features), strict=True):
            record = records.get(user)
            for feature in WINDOWED:
                if record is None or record.exp <= now_us // US:  # none, or expired
                    want = not_found(feature)
                else:
                    want = expected(feature, events[user], now_us)
                assert got[feature] == want, (served.kind, user, feature, iso(now_us))
                assert type(got[feature]["value"]) is type(want["value"])
            if user == "u1" and now_us < plain_ts + DAY * US:  # its TTL
                assert got["user_segment"] == plain_answer("gold", plain_ts)
            elif user == "u1":
                assert got["user_segment"] == PLAIN_GONE
            if user == "u2":
                decayed += (
                    got["w_user_7d_count"]["value"]
                    < expected("w_user_7d_count", events["u2"], CUTOFF)["value"]
                )
        # a subset of one view's features, the other order (per-feature fragments)
        sub = served.post(["u3"], ["w_user_90d_avg_amount", "w_user_10m_count"])[0]
        if records["u3"].exp > now_us // US:
            assert sub == {f: expected(f, events["u3"], now_us) for f in sub}
    assert decayed > 0
    hits, _ = served.counters()
    assert (hits > 0) == (cache_ttl_s > 0)


def test_a_count_decays_between_two_pinned_times(start: Start) -> None:
    """Two sidecars on the same store, pinned (``--now``) 1 h and 25 h after the load: no
    write in between, and the 10-minute and 7-day counts have decayed."""
    events = [Event("u1", CUTOFF - k * 600 * US, CUTOFF - k * 600 * US, None) for k in range(6)] + [
        Event("u1", CUTOFF - 6 * DAY * US - 5, CUTOFF - 6 * DAY * US, None)
    ]
    first = start(clock=PinnedClock(at_us(CUTOFF + 5 * 60 * US)), cache_ttl_s=5.0)
    first.write(tiled_record("u1", events, CUTOFF))
    later_us = CUTOFF + 25 * 3600 * US
    later = start(clock=PinnedClock(at_us(later_us)), cache_ttl_s=5.0)
    early = first.post(["u1"], WINDOWED)[0]
    late = later.post(["u1"], WINDOWED)[0]
    assert early["w_user_10m_count"]["value"] == 1  # the event at the cutoff itself
    assert early["w_user_7d_count"]["value"] == 7
    assert late["w_user_10m_count"]["value"] == 0
    assert late["w_user_7d_count"]["value"] == 6  # the 6-day-old event left the window
    assert late["w_user_7d_count"]["timestamp"] == iso(later_us)
    for feature in WINDOWED:
        assert early[feature] == expected(feature, events, CUTOFF + 5 * 60 * US)
        assert late[feature] == expected(feature, events, later_us)


def test_a_scheduled_value_switches_at_its_ts_from_the_cache_too(start: Start) -> None:
    """A hand-written record at t3 with steps at t1 < t2 (cache TTL 10 d): at t1 the first
    step, at t2 - 1 us still it, at t2 the second (with no store read: the cached entry
    picks per request), at t3 the record; each answer with its own timestamp."""
    served = start(cache_ttl_s=10 * DAY)
    t1, t2, t3 = CUTOFF, CUTOFF + 3 * 3600 * US, CUTOFF + 20 * 3600 * US
    steps = encode_steps(
        [(t1, ["bronze", "10.0", None, None]), (t2, ["silver", "11.0", None, None])]
    )
    served.write(plain_record("u1", "gold", 12.0, t3, steps), plain_record("u2", "new", 1.0, t1))
    for _ in range(2):  # the second miss admits the pair to the cache
        got = served.post(["u1", "u2"], ["user_segment"])
        assert got[0]["user_segment"] == plain_answer("bronze", t1)
        assert got[1]["user_segment"] == plain_answer("new", t1)
    assert served.cached("u1", USERS)
    hits, reads = served.counters()
    cases = [(t2 - 1, "bronze", t1), (t2, "silver", t2), (t3 - 1, "silver", t2), (t3, "gold", t3)]
    for now_us, segment, ts in cases:
        set_clock(served, now_us)
        got = served.post(["u1"], ["user_segment", "user_risk_score"])[0]
        assert got["user_segment"] == plain_answer(segment, ts), iso(now_us)
    assert served.counters() == (hits + 4, reads)  # every one from the cache


def test_a_scheduled_step_expires_on_its_own(start: Start) -> None:
    """user_profile_features (TTL 1 d): a step at t1 and the record at t1 + 2 d. At
    t1 + 1 d - 1 us the step; from t1 + 1 d (its expiry) until the record's ts, nothing
    (NOT_FOUND), though the store still holds the record; then the record."""
    served = start(cache_ttl_s=0.0)
    t1, t2 = CUTOFF, CUTOFF + 2 * DAY * US
    values = {"user_segment": "gold", "user_risk_score": 0.5, "user_is_vip": True,
              "user_last_login_at": None}  # fmt: skip
    steps = encode_steps([(t1, ["silver", "0.25", "0", None])])
    served.write(Record("user", ("u1",), PROFILE, t2, t2, t2 // US + DAY, values, steps))
    for now_us, segment, status in [
        (t1 + DAY * US - 1, "silver", "PRESENT"),
        (t1 + DAY * US, "unknown", "DEFAULT"),
        (t2 - 1, "unknown", "DEFAULT"),
        (t2, "gold", "PRESENT"),
    ]:
        set_clock(served, now_us)
        got = served.post(["u1"], ["user_segment"])[0]["user_segment"]
        assert (got["value"], got["status"]) == (segment, status), iso(now_us)
        assert got.get("reason") == (None if status == "PRESENT" else "NOT_FOUND")


def test_timelines_that_cannot_be_decoded_are_invalid_records(start: Start) -> None:
    """A tile set that is not JSON, one with a partial of the wrong shape, and scheduled
    steps of the wrong length: INVALID_RECORD for that key and view, the other keys and views
    answered normally; counted, and never cached (asked twice)."""
    served = start(cache_ttl_s=10 * DAY)
    good = [Event("ok", CUTOFF - 60 * US, CUTOFF - 60 * US, None)]
    bad_json = Record("user", ("b1",), TILED, CUTOFF, CUTOFF, CUTOFF // US + DAY, {}, b"{")
    bad_shape = Record(
        "user", ("b2",), TILED, CUTOFF, CUTOFF, CUTOFF // US + DAY, {},
        encode_tile_set({60: {CUTOFF // US: ((1, 2),)}}),
    )  # fmt: skip
    bad_steps = plain_record("b1", "gold", 1.0, CUTOFF, encode_steps([(CUTOFF - 1, ["1"])]))
    served.write(tiled_record("ok", good, CUTOFF), bad_json, bad_shape, bad_steps)
    features = ["w_user_10m_count", "user_segment"]
    for _ in range(2):
        got = served.post(["b1", "b2", "ok"], features)
        assert got[0]["w_user_10m_count"]["reason"] == "INVALID_RECORD"
        assert got[0]["user_segment"]["reason"] == "INVALID_RECORD"
        assert got[1]["w_user_10m_count"]["reason"] == "INVALID_RECORD"
        assert got[1]["user_segment"]["reason"] == "NOT_FOUND"
        assert got[2]["w_user_10m_count"] == expected("w_user_10m_count", good, CUTOFF)
    assert not served.cached("b1", TILED) and not served.cached("b2", TILED)
    assert not served.cached("b1", USERS) and served.cached("ok", TILED)
    text = served.metrics()
    name = "featurestore_sidecar_invalid_records_total"
    assert metric(text, name, {"view": TILED}) == 4
    assert metric(text, name, {"view": USERS}) == 2


def test_the_cache_ttl_is_kept_for_tiles(start: Start) -> None:
    """Cache TTL 5 s: tiles replaced in the store by a newer load are not seen 5 s - epsilon
    after caching and are seen at 5 s; meanwhile the cached tiles still decay."""
    served = start(cache_ttl_s=5.0)
    old = [Event("u1", CUTOFF - 9 * 60 * US - 3 * US, CUTOFF - 9 * 60 * US, None)]
    served.write(tiled_record("u1", old, CUTOFF))
    for _ in range(2):
        assert served.post(["u1"], ["w_user_10m_count"])[0]["w_user_10m_count"]["value"] == 1
    assert served.cached("u1", TILED)
    new_cutoff = CUTOFF + 4 * US * 60
    new = [*old, Event("u1", CUTOFF + US, CUTOFF + US, None)]
    served.write(tiled_record("u1", new, new_cutoff))
    clock = served.clock
    assert isinstance(clock, ManualClock)
    clock.advance(5.0 - EPSILON)
    got = served.post(["u1"], ["w_user_10m_count"])[0]["w_user_10m_count"]
    assert got == expected("w_user_10m_count", old, micros_of(clock))
    assert got["value"] == 1
    clock.advance(EPSILON)
    got = served.post(["u1"], ["w_user_10m_count"])[0]["w_user_10m_count"]
    assert got == expected("w_user_10m_count", new, micros_of(clock))
    assert got["value"] == 2
    # the cached entry still decays: 2 minutes on, the first event's tile has left
    clock.advance(120.0)
    got = served.post(["u1"], ["w_user_10m_count"])[0]["w_user_10m_count"]
    assert got == expected("w_user_10m_count", new, micros_of(clock))
    assert got["value"] == 1


def micros_of(clock: Clock) -> int:
    return (clock.now() - at_us(0)) // dt.timedelta(microseconds=1)


def test_the_registry_document_names_each_windowed_feature(start: Start) -> None:
    served = start()
    with served.server.client() as client:
        document = client.get("/api/v1/registry").json()
        openapi = client.get("/openapi.json").text
    feature = document["features"]["w_user_7d_amount"]
    assert (feature["aggregation"], feature["column"], feature["window"], feature["hop"]) == (
        "sum",
        "amount",
        "7d",
        "1h",
    )
    assert (feature["window_seconds"], feature["hop_seconds"]) == (7 * DAY, 3600)
    assert document["feature_views"][TILED]["tiled"] is True
    plain = document["features"]["user_segment"]
    assert plain["aggregation"] is None and plain["window"] is None
    declared = document["features"]["user_7d_transaction_count"]  # the demo's declared view
    assert (declared["aggregation"], declared["window"], declared["hop"]) == ("count", "7d", "1h")
    assert document["feature_views"]["user_transaction_features"]["tiled"] is True
    assert "the request's time" in openapi
