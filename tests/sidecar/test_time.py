"""The sidecar while time moves: every record-expiry and cache-TTL edge, on the store path and
the cache path, for one view and for several views in one request, on every store.

The real app (``create_app``) is served by uvicorn on a loopback port from a thread of the
test, over a real store (a SQLite file, a real redis-server, moto's DynamoDB server), with
a :class:`~featurestore.clock.ManualClock` that the test advances; requests go over HTTP.
The registry is the demo project's from a real ``dbt parse`` (``parsed_registry``) plus a
hand-written view (:func:`~tests.sidecar.harness.with_spend_view`): the user entity has two
hand-written views, ``user_spend_features``, TTL 90 d, and ``user_profile_features``, TTL 1 d
(the demo's ``user_transaction_features`` is declared: its tiles' expiry is tested in
test_windowed_serving.py); records are written by hand with a chosen ``exp``.

The edges, from the layout (featurestore/online/layout.py, store.py): a record is served
while ``exp > now`` (whole seconds; ``now`` floored), so it is ``PRESENT`` at ``exp`` minus
one microsecond and answered with its feature's registered default (``DEFAULT``, or
``MISSING`` without one; reason ``NOT_FOUND``, no timestamp) at ``exp`` and after, whether
it comes from the store or from the cache, where it was put while fresh. A cache entry is
served before its TTL (monotonic seconds from when it was put) and never at or after it: a
value updated in the store is not seen a moment before the TTL and is seen at it (a store
re-read).

Record expiries are set an hour or more after the clock's start, so that Redis' own key
expiry (relative to the real clock, see redis_store.py) never removes a record during a test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from featurestore.clock import ManualClock, PinnedClock
from featurestore.online.layout import Record
from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from sidecar.auth import unscoped_key
from sidecar.settings import Settings
from tests.sidecar.harness import (
    API_KEY,
    EPOCH,
    PROFILE,
    SPEND,
    InProcessSidecar,
    iso_z,
    metric,
    same_answer,
    serving_in_process,
    with_spend_view,
)
from tests.stores import store_url

KINDS = ["sqlite", "redis", "dynamodb"]
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
T0_S = int(T0.timestamp())
USERS = SPEND
MICROSECOND = dt.timedelta(microseconds=1)
#: binary-exact steps of the monotonic clock, so that "just before the TTL" is exact
EPSILON = 2.0**-10
DAY = 86_400.0


def at(seconds: int) -> dt.datetime:
    """The epoch second ``seconds`` as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# --- records and the answers they must give ------------------------------------------------


def user_record(user: str, exp: int, count: int, avg: float | None, *, age: int = 600) -> Record:
    """A user_spend_features record expiring at ``exp`` (epoch seconds), its feature
    time ``age`` seconds after ``exp`` minus the view's 90-day TTL (as the loader writes)."""
    ts = (exp - 90 * 86_400 + age) * 10**6
    values = {"user_spend_7d_count": count, "user_spend_avg_90d": avg}
    return Record("user", (user,), USERS, ts, ts + 7, exp, values)


def profile_record(user: str, exp: int, segment: str, vip: bool) -> Record:
    """A user_profile_features record expiring at ``exp``; its risk score and last login
    are null."""
    ts = (exp - 86_400 + 60) * 10**6
    values = {
        "user_segment": segment,
        "user_risk_score": None,
        "user_is_vip": vip,
        "user_last_login_at": None,
    }
    return Record("user", (user,), PROFILE, ts, ts + 3, exp, values)


def answer(registry: Registry, record: Record | None, feature: str) -> dict[str, Any]:
    """What one feature must be answered with: ``record``'s value if it is given (a
    record the test expects to be live), else the expired / not found answer."""
    default = registry.features[feature].default
    if record is not None:
        timestamp = iso_z(EPOCH + dt.timedelta(microseconds=record.ts))
        value = record.values[feature]
        if value is not None:
            return {"value": value, "timestamp": timestamp, "status": "PRESENT"}
        reason = "NULL"
    else:
        timestamp, reason = None, "NOT_FOUND"
    status = "MISSING" if default is None else "DEFAULT"
    return {"value": default, "timestamp": timestamp, "status": status, "reason": reason}


# --- the server and its clock ---------------------------------------------------------------


@dataclass
class Served:
    """The in-process sidecar over a fresh store of one kind, its clock, and a second
    connection to the same store for writing records."""

    kind: str
    clock: ManualClock
    server: InProcessSidecar
    writer: OnlineStore
    registry: Registry

    def write(self, *records: Record) -> None:
        result = self.writer.write(records, now=self.clock.now())
        assert result.written == len(records), result

    def retrieve(self, keys: Sequence[str], features: Sequence[str]) -> list[dict[str, Any]]:
        """Each key's features, in request order (the request must succeed, not degraded)."""
        body = {"entity_name": "user", "entity_keys": list(keys), "features": list(features)}
        with self.server.client() as client:
            response = client.post("/api/v1/features/retrieve", json=body)
        assert response.status_code == 200, response.text
        assert "x-featurestore-degraded" not in response.headers
        results = response.json()["results"]
        assert [result["entity_key"] for result in results] == list(keys)
        return [result["features"] for result in results]

    def check(
        self,
        keys: Sequence[str],
        features: Sequence[str],
        live: Mapping[tuple[str, str], Record],
    ) -> None:
        """Every feature of every key answered from ``live[(key, view)]`` if there, else as
        expired/not found."""
        for key, got in zip(keys, self.retrieve(keys, features), strict=True):
            assert list(got) == list(features)
            for feature in features:
                view = self.registry.features[feature].view
                want = answer(self.registry, live.get((key, view)), feature)
                assert same_answer(got[feature], want), (self.kind, self.clock, key, got, want)

    def cached(self, key: str, view: str) -> bool:
        return (view, (key,)) in self.server.sidecar.cache

    def counters(self) -> tuple[float, float]:
        """(cache hits, successful store reads) so far, from ``/metrics``."""
        with self.server.client() as client:
            text = client.get("/metrics").text
        hits = metric(text, "featurestore_sidecar_cache_lookups_total", {"result": "hit"})
        reads = metric(text, "featurestore_sidecar_store_reads_total", {"outcome": "ok"})
        return hits, reads


Start = Callable[..., Served]


@pytest.fixture(scope="module")
def registry(parsed_registry: Registry) -> Registry:
    return with_spend_view(parsed_registry)


@pytest.fixture(params=KINDS)
def start(request: pytest.FixtureRequest, tmp_path: Path, registry: Registry) -> Iterator[Start]:
    """``start(**settings)``: the sidecar (settings as given, over a fresh store of each
    kind) with a manual clock at :data:`T0`."""
    kind: str = request.param
    url = store_url(kind, request, tmp_path)
    with ExitStack() as stack:

        def start_(**settings: Any) -> Served:
            writer = stack.enter_context(open_store(url))
            writer.initialize()
            clock = ManualClock(T0)
            config = Settings(
                online_url=url,
                api_keys=(unscoped_key("test", API_KEY),),
                store_timeout_s=5.0,  # generous: 2 shared cores; the deadline is not tested here
                gc_full_interval_s=0,
                **settings,
            )
            server = stack.enter_context(
                serving_in_process(config, registry, open_store(url), clock)
            )
            return Served(kind, clock, server, writer, registry)

        yield start_


USER_FEATURES = ["user_spend_7d_count", "user_spend_avg_90d"]
PROFILE_FEATURES = ["user_segment", "user_risk_score", "user_is_vip", "user_last_login_at"]


# --- record expiry ----------------------------------------------------------------------------


def test_one_view_a_record_read_from_the_store_is_present_until_its_exp(start: Start) -> None:
    """Each key read once (so from the store): PRESENT at exp - 1 us, not at exp or after."""
    served = start(cache_ttl_s=DAY)  # a cached record would outlive its exp
    exp = T0_S + 3600
    records = {
        user: user_record(user, exp, count, avg)
        for user, count, avg in [("u1", 3, 12.5), ("u2", 7, None), ("u3", 1, 0.25)]
    }
    served.write(*records.values())
    served.clock.set(at(exp) - MICROSECOND)
    assert not served.cached("u1", USERS)
    served.check(["u1"], USER_FEATURES, {("u1", USERS): records["u1"]})
    served.clock.advance(1e-6)
    assert served.clock.now() == at(exp)
    assert not served.cached("u2", USERS)
    got = served.retrieve(["u2"], USER_FEATURES)[0]
    assert got == {  # the registered default, or none: the literal answers
        "user_spend_7d_count": {
            "value": 0,
            "timestamp": None,
            "status": "DEFAULT",
            "reason": "NOT_FOUND",
        },
        "user_spend_avg_90d": {
            "value": None,
            "timestamp": None,
            "status": "MISSING",
            "reason": "NOT_FOUND",
        },
    }
    served.check(["u1", "u2"], USER_FEATURES, {})  # u1 again: from the store or the cache
    served.clock.advance(1)
    assert not served.cached("u3", USERS)
    served.check(["u3", "u1"], USER_FEATURES, {})


def test_one_view_a_record_cached_while_fresh_is_not_served_after_its_exp(start: Start) -> None:
    """Cached at T0 (cache TTL 1 d, exp in 1 h): PRESENT from the cache at exp - 1 us,
    the default from the same cache entry at exp and after; repeated keys and a feature
    subset too."""
    served = start(cache_ttl_s=DAY)
    exp = T0_S + 3600
    records = {"u1": user_record("u1", exp, 5, 9.75), "u2": user_record("u2", exp, 0, None)}
    served.write(*records.values())
    live = {(user, USERS): record for user, record in records.items()}
    for _ in range(2):  # the second miss of a pair admits it (the doorkeeper)
        served.check(["u1", "u2"], USER_FEATURES, live)
    assert served.cached("u1", USERS) and served.cached("u2", USERS)
    hits, reads = served.counters()

    served.clock.set(at(exp) - MICROSECOND)
    served.check(["u1", "u2"], USER_FEATURES, live)
    served.check(["u2", "u1", "u2"], ["user_spend_avg_90d"], live)
    assert served.counters() == (hits + 4, reads)  # all from the cache

    served.clock.advance(1e-6)
    served.check(["u1", "u2"], USER_FEATURES, {})
    served.check(["u1", "u1"], USER_FEATURES, {})
    served.check(["u2", "u1"], ["user_spend_7d_count"], {})
    assert served.counters() == (hits + 9, reads)  # still from the cache: entries live
    assert served.cached("u1", USERS) and served.cached("u2", USERS)

    served.clock.advance(3600)
    served.check(["u1", "u2"], USER_FEATURES, {})
    assert served.counters() == (hits + 11, reads)


def test_several_views_each_record_expires_at_its_own_exp(start: Start) -> None:
    """Two views of the user entity in one request, each record with its own exp (users
    at T0 + 1 h, profiles at T0 + 2 h), some keys with a record in one view only: on the
    cache path (keys cached at T0) and the store path (other keys, each read once), every
    (key, view) answered PRESENT before its exp and as expired from it on."""
    served = start(cache_ttl_s=DAY)
    exp_users, exp_profiles = T0_S + 3600, T0_S + 7200
    records: dict[tuple[str, str], Record] = {}
    cached_keys = ["c_both", "c_users", "c_profile"]
    moments = [  # (clock, what is live then)
        (at(exp_users) - MICROSECOND, {USERS, PROFILE}),
        (at(exp_users), {PROFILE}),
        (at(exp_profiles) - MICROSECOND, {PROFILE}),
        (at(exp_profiles), set()),
        (at(exp_profiles + 3600), set()),
    ]
    fresh_keys = [[f"s{n}_both", f"s{n}_users", f"s{n}_profile"] for n in range(len(moments))]
    for n, (both, users_only, profile_only) in enumerate([cached_keys, *fresh_keys]):
        for user in (both, users_only):
            records[user, USERS] = user_record(user, exp_users, n, n + 0.5)
        for user in (both, profile_only):
            records[user, PROFILE] = profile_record(user, exp_profiles, f"seg{n}", n % 2 == 0)
    served.write(*records.values())
    everything = [*PROFILE_FEATURES[:2], *USER_FEATURES, *PROFILE_FEATURES[2:]]
    mixed = ["user_is_vip", "user_spend_avg_90d", "user_segment"]

    def live_at(keys: Sequence[str], views: set[str]) -> dict[tuple[str, str], Record]:
        return {
            pair: record for pair, record in records.items() if pair[0] in keys and pair[1] in views
        }

    for _ in range(2):
        served.check(cached_keys, everything, live_at(cached_keys, {USERS, PROFILE}))
    assert all(served.cached(key, view) for key in cached_keys for view in (USERS, PROFILE))
    for (moment, views), keys in zip(moments, fresh_keys, strict=True):
        served.clock.set(moment)
        hits, reads = served.counters()
        served.check(cached_keys, everything, live_at(cached_keys, views))
        served.check([cached_keys[0], *cached_keys], mixed, live_at(cached_keys, views))
        assert served.counters() == (hits + 12, reads), moment  # the cache answered
        assert not any(served.cached(key, view) for key in keys for view in (USERS, PROFILE))
        served.check(keys, everything, live_at(keys, views))
        assert served.counters()[1] == reads + 1  # one store read for the new keys


# --- the cache's TTL --------------------------------------------------------------------------


def test_one_view_the_cache_ttl_edge(start: Start) -> None:
    """Cache TTL 5 s: a value updated in the store, and a record written for a key cached
    as absent, are not seen at 5 s - epsilon and are seen at 5 s (one store re-read)."""
    served = start(cache_ttl_s=5.0)
    exp = T0_S + 86_400
    old = user_record("u1", exp, 1, 1.5)
    served.write(old)
    for _ in range(2):
        served.check(["u1", "absent"], USER_FEATURES, {("u1", USERS): old})
    assert served.cached("u1", USERS) and served.cached("absent", USERS)
    new = user_record("u1", exp + 1, 2, 2.5, age=601)
    appeared = user_record("absent", exp, 4, None)
    served.write(new, appeared)

    served.clock.advance(5.0 - EPSILON)
    hits, reads = served.counters()
    served.check(["u1", "absent"], USER_FEATURES, {("u1", USERS): old})
    assert served.counters() == (hits + 2, reads)

    served.clock.advance(EPSILON)
    served.check(["u1", "absent"], USER_FEATURES, {("u1", USERS): new, ("absent", USERS): appeared})
    assert served.counters() == (hits + 2, reads + 1)  # both missed: one store read


def test_one_view_a_pair_is_admitted_on_a_second_miss_within_twice_its_cache_ttl(
    start: Start,
) -> None:
    """Cache TTL 5 s (sidecar/admission.py): misses 10.5 s apart do not admit a pair, one
    1 s after the last does; once its entry has expired, a miss 6 s after the admitting one
    (1 s after the expiry) admits it again."""
    served = start(cache_ttl_s=5.0)
    record = user_record("u1", T0_S + 86_400, 1, 1.5)
    served.write(record)
    live = {("u1", USERS): record}
    served.check(["u1"], USER_FEATURES, live)
    served.clock.advance(10.5)
    served.check(["u1"], USER_FEATURES, live)
    assert not served.cached("u1", USERS)  # read too seldom to be read again within its TTL
    served.clock.advance(1.0)
    served.check(["u1"], USER_FEATURES, live)
    assert served.cached("u1", USERS)
    served.clock.advance(6.0)  # its entry expired 1 s ago
    hits, reads = served.counters()
    served.check(["u1"], USER_FEATURES, live)
    assert served.counters() == (hits, reads + 1)  # a miss...
    assert served.cached("u1", USERS)  # ...that admits it again


def test_several_views_each_view_has_its_own_cache_ttl(start: Start) -> None:
    """Users cached 5 s, profiles 20 s, both read in one request: at 5 s the users' new
    values are read (the profiles' cached ones still served), at 20 s the profiles' too."""
    served = start(cache_ttl_s=60.0, cache_ttl_by_view={USERS: 5.0, PROFILE: 20.0})
    exp = T0_S + 86_400
    keys = ["u1", "u2"]
    old = {(user, USERS): user_record(user, exp, 1, 0.5) for user in keys}
    old |= {(user, PROFILE): profile_record(user, exp, "old", False) for user in keys}
    served.write(*old.values())
    features = [*USER_FEATURES, *PROFILE_FEATURES]
    for _ in range(2):
        served.check(keys, features, old)
    new = {(user, USERS): user_record(user, exp + 1, 2, 1.5, age=601) for user in keys}
    new |= {(user, PROFILE): profile_record(user, exp + 1, "new", True) for user in keys}
    served.write(*new.values())

    served.clock.advance(5.0 - EPSILON)
    served.check(keys, features, old)
    served.clock.advance(EPSILON)
    _, reads = served.counters()
    users_new = {pair: (new if pair[1] == USERS else old)[pair] for pair in old}
    served.check(keys, features, users_new)
    assert served.counters()[1] == reads + 1
    served.clock.advance(15.0 - EPSILON)
    served.check(keys, features, users_new)
    served.clock.advance(EPSILON)
    served.check(keys, features, new)


# --- the circuit breaker's cool-down, and the clock production uses ---------------------------


def test_the_circuit_breaker_cools_down_on_the_sidecar_clock(start: Start) -> None:
    """An open circuit (the store counted as failing) answers without a store read until
    its first cool-down (100 ms on the sidecar's clock) has passed; then a trial read
    closes it."""
    served = start(breaker_failures=2)
    record = user_record("u1", T0_S + 3600, 6, 3.5)
    served.write(record)
    breaker = served.server.sidecar.breaker
    breaker.failure()
    breaker.failure()
    assert breaker.state == "open"
    served.clock.advance(0.1 - EPSILON)
    body = {"entity_name": "user", "entity_keys": ["u1"], "features": USER_FEATURES}
    with served.server.client() as client:
        response = client.post("/api/v1/features/retrieve", json=body)
    assert response.headers["x-featurestore-degraded"] == "1"
    reasons = {got["reason"] for got in response.json()["results"][0]["features"].values()}
    assert reasons == {"STORE_UNAVAILABLE"}
    assert breaker.state == "open"
    served.clock.advance(EPSILON)
    assert breaker.state == "half_open"
    served.check(["u1"], USER_FEATURES, {("u1", USERS): record})
    assert breaker.state == "closed"


def test_without_a_clock_the_app_reads_the_pinned_one(
    tmp_path: Path, parsed_registry: Registry
) -> None:
    """``FEATURESTORE_NOW`` (settings.now) gives a pinned wall time; durations still run on
    the real monotonic clock. Without it, the system clock."""
    from featurestore.clock import SYSTEM_CLOCK
    from sidecar.state import Sidecar

    url = f"sqlite:///{tmp_path / 'online.db'}"
    keys = (unscoped_key("test", API_KEY),)
    pinned = Sidecar(
        Settings(online_url=url, api_keys=keys, now=T0), parsed_registry, open_store(url)
    )
    try:
        assert isinstance(pinned.clock, PinnedClock) and pinned.clock.now() == T0
        assert pinned.retriever.now() == T0
    finally:
        pinned.close()
    real = Sidecar(Settings(online_url=url, api_keys=keys), parsed_registry, open_store(url))
    try:
        assert real.clock is SYSTEM_CLOCK
    finally:
        real.close()
