"""The point-in-time join against a brute-force reference (tests/reference.py).

1. get_historical_features (featurestore/historical.py) on a real warehouse: the demo project
   is built into a warehouse of this module, then the rows of the three feature views are
   replaced by generated ones: crafted edge cases (exact feature and availability times, TTL
   edges to the microsecond, ties, late availability, unknown entities, null keys and
   timestamps, partial composite keys) and a seeded random history full of ties and repeated
   timestamps. Every returned value must equal the reference exactly (floats too: they pass
   through unchanged); the crafted cases also carry expectations written by hand, which the
   reference must meet as well. Spine columns, order, dtypes, time zones and pyarrow input.
2. The refusals of get_historical_features, with their messages.
3. The fraud_training_set model built from the demo data equals the reference, row by row.
4. The dbt unit tests of fraud_training_set (models/training/_training__unit_tests.yml) pass.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from featurestore.historical import HistoricalFeaturesError, get_historical_features
from featurestore.registry import Registry, load_registry
from tests.reference import ViewIndex, ViewSpec, naive_lookup, point_in_time
from tests.warehouse import REPO, Warehouse

pytestmark = pytest.mark.slow

USER = "user_transaction_features"
MERCHANT = "merchant_chargeback_features"
DEVICE = "user_device_features"
VIEWS = (USER, MERCHANT, DEVICE)
COUNT = "user_7d_transaction_count"
AVG = "avg_order_value_90d"
RATE = "merchant_chargeback_rate_30d"
SEEN = "device_seen_before"
FEATURES = [COUNT, AVG, RATE, SEEN]
TS = "event_timestamp"
SERVICE = "fraud_model_v1"
UNIT_TESTS_YML = REPO / "models" / "training" / "_training__unit_tests.yml"

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)
US = dt.timedelta(microseconds=1)
S = dt.timedelta(seconds=1)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
MAX_REPORTED = 15

_TS_TYPE = pa.timestamp("us")
SCHEMAS = {
    # a declared (windowed) view: no availability column (last_ingested_at is bookkeeping)
    USER: pa.schema(
        [
            ("user_id", pa.string()),
            ("feature_at", _TS_TYPE),
            ("last_ingested_at", _TS_TYPE),
            (COUNT, pa.int64()),
            (AVG, pa.float64()),
        ]
    ),
    MERCHANT: pa.schema(
        [
            ("merchant_id", pa.string()),
            ("feature_at", _TS_TYPE),
            ("available_at", _TS_TYPE),
            (RATE, pa.float64()),
        ]
    ),
    DEVICE: pa.schema(
        [
            ("user_id", pa.string()),
            ("device_id", pa.string()),
            ("feature_at", _TS_TYPE),
            ("available_at", _TS_TYPE),
            ("last_ingested_at", _TS_TYPE),
            (SEEN, pa.bool_()),
        ]
    ),
}


# --- helpers ------------------------------------------------------------------------------


def _norm(value: object) -> object:
    """One spelling of null (None/NaN/NaT/pd.NA) and plain Python scalars."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same(expected: object, got: object) -> bool:
    expected, got = _norm(expected), _norm(got)
    if expected is None or got is None:
        return expected is None and got is None
    return type(expected) is type(got) and expected == got


def _report(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n".join(problems[:MAX_REPORTED])
        pytest.fail(f"{len(problems)} {what}; first {min(len(problems), MAX_REPORTED)}:\n{shown}")


def _specs(registry: Registry, features: Sequence[str]) -> list[ViewSpec]:
    """One ViewSpec per view, views and features in first-requested order; ties are broken by
    all the view's features in declared order, whatever is requested."""
    chosen: dict[str, list[str]] = {}
    for name in features:
        chosen.setdefault(registry.feature(name).view, []).append(name)
    specs = []
    for view_name, names in chosen.items():
        view = registry.view(view_name)
        specs.append(
            ViewSpec(
                name=view.name,
                keys=view.keys,
                features=tuple(names),
                ttl_seconds=view.ttl_seconds,
                timestamp=view.timestamp,
                available_at=view.available_at,
                tie_breakers=view.feature_names(),
            )
        )
    return specs


def _output_columns(specs: Sequence[ViewSpec], features: Sequence[str], stamps: bool) -> list[str]:
    columns = list(features)
    if stamps:
        for spec in specs:
            columns += [f"{spec.name}__feature_at", f"{spec.name}__as_of_at"]
    return columns


def _compare(
    result: pd.DataFrame, expected: list[dict[str, Any]], columns: Sequence[str], label: str
) -> None:
    """Every value of `columns` in `result` equals the reference, row by row."""
    assert len(result) == len(expected), f"{label}: {len(result)} rows, expected {len(expected)}"
    cases = result["case"].tolist()
    problems = []
    for column in columns:
        for i, got in enumerate(result[column].tolist()):
            want = expected[i][column]
            if not _same(want, got):
                problems.append(f"row {i} ({cases[i]}) {column}: got {got!r}, reference {want!r}")
    _report(problems, f"{label}: values differing from the reference")


def _spine_frame(
    rows: Sequence[dict[str, Any]], index: Sequence[int] | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "case": pd.Series([r["case"] for r in rows], dtype="string"),
            # three spellings of a string key column: inferred, StringDtype, object
            "user_id": pd.Series([r["user_id"] for r in rows]),
            "merchant_id": pd.Series([r["merchant_id"] for r in rows], dtype="string"),
            "device_id": pd.Series([r["device_id"] for r in rows], dtype=object),
            TS: pd.Series([r[TS] for r in rows], dtype="datetime64[us]"),
            "label": pd.Series([r["label"] for r in rows], dtype="int64"),
        }
    )
    if index is not None:
        frame.index = pd.Index(index)
    return frame


def _check_spine_unchanged(result: pd.DataFrame, spine: pd.DataFrame) -> None:
    columns = list(spine.columns)
    assert list(result.columns[: len(columns)]) == columns
    pd.testing.assert_frame_equal(result[columns], spine.reset_index(drop=True))
    assert isinstance(result.index, pd.RangeIndex)


# --- crafted cases --------------------------------------------------------------------------


def crafted_view_rows(ttl: dict[str, dt.timedelta]) -> dict[str, list[dict[str, Any]]]:
    def user(key: str, at: dt.datetime, avail: dt.datetime | None, n: int | None, avg: float | None
             ) -> dict[str, Any]:  # fmt: skip
        return {"user_id": key, "feature_at": at, "last_ingested_at": avail, COUNT: n, AVG: avg}

    def merchant(key: str, at: dt.datetime, avail: dt.datetime | None, rate: float | None
                 ) -> dict[str, Any]:  # fmt: skip
        return {"merchant_id": key, "feature_at": at, "available_at": avail, RATE: rate}

    def device(key: str, dev: str, at: dt.datetime, avail: dt.datetime | None, seen: bool | None
               ) -> dict[str, Any]:  # fmt: skip
        return {"user_id": key, "device_id": dev, "feature_at": at, "available_at": avail,
                "last_ingested_at": avail, SEEN: seen}  # fmt: skip

    return {
        USER: [
            # values change at T0 and T0 + 1h
            user("u_exact", T0, T0, 1, 10.0),
            user("u_exact", T0 + H, T0 + H, 2, 20.0),
            # (declared view: the third field is last_ingested_at, bookkeeping; the T0 value
            # holds from T0)
            user("u_avail", T0 - D, T0 - D, 4, 40.0),
            user("u_avail", T0, T0 + 2 * H, 5, 50.0),
            # availability before the feature time: the feature time rules
            user("u_early", T0, T0 - D, 6, 60.0),
            # a null availability counts as the feature time
            user("u_nullav", T0, None, 7, 70.0),
            user("u_ttl", T0, T0, 8, 80.0),
            # an old value ingested late (as-of T0 + 1h) outranks a newer one known at T0
            user("u_late", T0 - 10 * D, T0 + H, 9, 90.0),
            user("u_late", T0, T0, 10, 100.0),
            # ... and when older than the TTL it is null, with no fallback to the newer row
            user("u_late_ttl", T0 - ttl[USER], T0 + H, 11, 110.0),
            user("u_late_ttl", T0, T0, 12, 120.0),
            # tie on (key, as-of T0), different feature_at: the greater feature_at wins
            user("u_tie_fa", T0 - 2 * H, T0, 50, 500.0),
            user("u_tie_fa", T0 - H, T0, 3, 1.0),
            # tie with identical feature_at: greatest values in the listed order, nulls last
            user("u_tie_val", T0, T0, 2, 5.0),
            user("u_tie_val", T0, T0, 7, 1.0),
            user("u_tie_val", T0, T0, 7, 3.0),
            user("u_tie_val", T0, T0, None, 900.0),
            user("u_tie_null", T0, T0, 4, None),
            user("u_tie_null", T0, T0, 4, 2.5),
            # a null availability ties with an availability equal to the other's as-of key
            user("u_tie_mix", T0, None, 1, 1.0),
            user("u_tie_mix", T0 - H, T0, 2, 2.0),
            # exact duplicates
            user("u_dup", T0, T0, 3, 3.5),
            user("u_dup", T0, T0, 3, 3.5),
        ],
        MERCHANT: [
            merchant("m_exact", T0, T0, 0.25),
            merchant("m_exact", T0 + H, T0 + H, 0.5),
            merchant("m_avail", T0, T0 + S, 0.75),
            merchant("m_ttl", T0, T0, 0.5),
            merchant("m_tie", T0, T0, 0.1),
            merchant("m_tie", T0, T0, None),
            merchant("m_tie", T0, T0, 0.3),
            # the matched row's value is null: null, not the older value
            merchant("m_null", T0 - H, T0 - H, 0.9),
            merchant("m_null", T0, T0, None),
        ],
        DEVICE: [
            device("u_exact", "d1", T0 - D, T0 - D, True),
            device("u_exact", "d2", T0, T0 + H, True),
            device("u_other", "d3", T0 - D, T0 - D, True),
            device("u_ttl", "d1", T0 - ttl[DEVICE], T0 - ttl[DEVICE], True),
            device("u_tie_val", "d9", T0, T0, False),
            device("u_tie_val", "d9", T0, T0, None),
            device("u_tie_val", "d9", T0, T0, True),
            device("u_avail", "d0", T0, None, False),
        ],
    }


NULLS = dict.fromkeys(FEATURES)


def crafted_cases(
    ttl: dict[str, dt.timedelta],
) -> list[tuple[str, str | None, str | None, str | None, dt.datetime | None, dict[str, Any]]]:
    """(case, user_id, merchant_id, device_id, timestamp, expectations written by hand)."""
    ut, mt, dv = USER, MERCHANT, DEVICE
    return [
        ("at a feature time", "u_exact", "m_exact", "d1", T0,
         {COUNT: 1, AVG: 10.0, RATE: 0.25, SEEN: True, f"{ut}__feature_at": T0}),
        ("between rows", "u_exact", "m_exact", "d1", T0 + H / 2, {COUNT: 1, RATE: 0.25}),
        ("at the second row", "u_exact", "m_exact", "d2", T0 + H,
         {COUNT: 2, AVG: 20.0, RATE: 0.5, SEEN: True, f"{dv}__as_of_at": T0 + H,
          f"{dv}__feature_at": T0}),
        ("1us before the second row", "u_exact", "m_exact", "d2", T0 + H - US,
         {COUNT: 1, RATE: 0.25, SEEN: None}),
        ("before the first value", "u_exact", "m_exact", "d1", T0 - US,
         {COUNT: None, AVG: None, RATE: None, SEEN: True, f"{ut}__feature_at": None}),
        # (user_transaction_features is a declared view: no availability, a row holds from its
        # feature_at; availability is exercised by the merchant and device views)
        ("value not yet available", "u_avail", "m_avail", "d0", T0 + H,
         {COUNT: 5, AVG: 50.0, RATE: 0.75, SEEN: False, f"{ut}__feature_at": T0}),
        ("1us before availability", "u_avail", "m_avail", "d0", T0 + 2 * H - US, {COUNT: 5}),
        ("at availability", "u_avail", "m_avail", "d0", T0 + 2 * H,
         {COUNT: 5, AVG: 50.0, f"{ut}__feature_at": T0, f"{ut}__as_of_at": T0}),
        ("merchant at its feature time, before availability", "u_avail", "m_avail", "d0", T0,
         {RATE: None, COUNT: 5, SEEN: False}),
        ("merchant 1us before availability", "u_avail", "m_avail", "d0", T0 + S - US,
         {RATE: None}),
        ("merchant at availability", "u_avail", "m_avail", "d0", T0 + S,
         {RATE: 0.75, f"{mt}__as_of_at": T0 + S}),
        ("available before its feature time: before", "u_early", None, None, T0 - H,
         {COUNT: None, RATE: None, SEEN: None}),
        ("available before its feature time: at", "u_early", None, None, T0,
         {COUNT: 6, f"{ut}__as_of_at": T0}),
        ("null availability: before", "u_nullav", None, None, T0 - US, {COUNT: None}),
        ("null availability: at", "u_nullav", None, None, T0,
         {COUNT: 7, f"{ut}__as_of_at": T0}),
        ("user ttl: age == ttl", "u_ttl", "m_ttl", "d1", T0 + ttl[ut],
         {COUNT: 8, AVG: 80.0, RATE: None}),
        ("user ttl: 1us past", "u_ttl", "m_ttl", "d1", T0 + ttl[ut] + US,
         {COUNT: None, AVG: None, f"{ut}__feature_at": None, f"{ut}__as_of_at": None}),
        ("user ttl: 1s past", "u_ttl", "m_ttl", "d1", T0 + ttl[ut] + S, {COUNT: None}),
        ("merchant ttl: age == ttl", "u_ttl", "m_ttl", "d1", T0 + ttl[mt],
         {RATE: 0.5, COUNT: 8}),
        ("merchant ttl: 1us past", "u_ttl", "m_ttl", "d1", T0 + ttl[mt] + US,
         {RATE: None, f"{mt}__feature_at": None}),
        ("merchant ttl: 1s past", "u_ttl", "m_ttl", "d1", T0 + ttl[mt] + S, {RATE: None}),
        ("device ttl: age == ttl", "u_ttl", "m_ttl", "d1", T0, {SEEN: True}),
        ("device ttl: 1us past", "u_ttl", "m_ttl", "d1", T0 + US, {SEEN: None}),
        # (a declared view: the newer row wins, whatever the older row's last_ingested_at)
        ("late old value outranks a newer one", "u_late", None, None, T0 + 2 * H,
         {COUNT: 10, f"{ut}__feature_at": T0, f"{ut}__as_of_at": T0}),
        ("newer value before the late one arrives", "u_late", None, None, T0 + H / 2,
         {COUNT: 10}),
        ("late value older than the ttl", "u_late_ttl", None, None, T0 + 2 * H,
         {COUNT: 12, AVG: 120.0}),
        ("tie: greater feature_at wins", "u_tie_fa", "m_tie", "d9", T0,
         {COUNT: 3, AVG: 1.0, f"{ut}__feature_at": T0 - H, RATE: 0.3, SEEN: None}),
        ("tie: the winner at its ttl edge", "u_tie_fa", None, None, T0 - H + ttl[ut],
         {COUNT: 3}),
        ("tie: 1us past the winner's ttl", "u_tie_fa", None, None, T0 - H + ttl[ut] + US,
         {COUNT: None}),
        ("tie: identical feature_at", "u_tie_val", "m_tie", "d9", T0 + H,
         {COUNT: 7, AVG: 3.0, RATE: 0.3, SEEN: True}),
        ("tie: nulls last", "u_tie_null", "m_null", None, T0,
         {COUNT: 4, AVG: 2.5, RATE: None, f"{mt}__feature_at": T0}),
        ("older merchant value", "u_tie_null", "m_null", None, T0 - US, {RATE: 0.9}),
        ("tie: null availability vs availability", "u_tie_mix", None, None, T0,
         {COUNT: 1, AVG: 1.0}),
        ("identical duplicate rows", "u_dup", None, None, T0, {COUNT: 3, AVG: 3.5}),
        ("unknown entities", "u_nobody", "m_nobody", "d_nobody", T0, NULLS),
        ("composite: another user's device", "u_exact", "m_exact", "d3", T0, {SEEN: None}),
        ("composite: the user with another device", "u_other", None, "d1", T0, {SEEN: None}),
        ("composite: both parts", "u_other", None, "d3", T0, {SEEN: True}),
        ("null timestamp", "u_exact", "m_exact", "d1", None, NULLS),
        ("null user", None, "m_exact", "d1", T0, {COUNT: None, SEEN: None, RATE: 0.25}),
        ("null merchant", "u_exact", None, "d1", T0, {RATE: None, COUNT: 1, SEEN: True}),
        ("null device", "u_exact", "m_exact", None, T0, {SEEN: None, COUNT: 1}),
    ]  # fmt: skip


def crafted_spine_rows(ttl: dict[str, dt.timedelta]) -> list[dict[str, Any]]:
    """The crafted cases, some of them twice, in a shuffled (fixed) order."""
    cases = crafted_cases(ttl)
    cases += [c for c in cases if c[0] in {"at a feature time", "at availability", "null user"}]
    random.Random(3).shuffle(cases)
    return [
        {"case": c, "user_id": u, "merchant_id": m, "device_id": d, TS: t, "label": i,
         "expect": expect}
        for i, (c, u, m, d, t, expect) in enumerate(cases)
    ]  # fmt: skip


# --- randomized case ------------------------------------------------------------------------


def random_view_rows(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Few keys, times on a coarse grid, availability often on the grid too: many ties."""
    grid = [T0 + k * 6 * H for k in range(-40, 40)]
    dense_users = [f"r_u{i}" for i in range(12)]
    sparse_users = [f"r_su{i}" for i in range(60)]
    merchants = [f"r_m{i}" for i in range(6)] + [f"r_sm{i}" for i in range(30)]
    devices = [f"r_d{i}" for i in range(5)]

    def when() -> dt.datetime:
        at = rng.choice(grid)
        return at + US if rng.random() < 0.05 else at

    def available(at: dt.datetime) -> dt.datetime | None:
        r = rng.random()
        if r < 0.2:
            return None
        if r < 0.4:
            return at
        if r < 0.85:
            return at + rng.choice([6 * H, 12 * H, D, US, S])
        return at - rng.choice([H, D])

    def user_key() -> str:
        return rng.choice(dense_users) if rng.random() < 0.85 else rng.choice(sparse_users)

    users = []
    for _ in range(2500):
        at = when()
        users.append(
            {"user_id": user_key(), "feature_at": at, "last_ingested_at": available(at),
             COUNT: rng.choice([0, 1, 1, 2, 3, None]),
             AVG: rng.choice([None, 0.5, 1.25, 2.0, 0.1 + 0.2, 0.3, math.pi, 1e-300])}
        )  # fmt: skip
    merchant_rows = []
    for _ in range(1500):
        at = when()
        merchant_rows.append(
            {"merchant_id": rng.choice(merchants[:6] if rng.random() < 0.8 else merchants[6:]),
             "feature_at": at, "available_at": available(at),
             RATE: rng.choice([None, 0.0, 0.25, 1 / 3, 1.0])}
        )  # fmt: skip
    device_rows = []
    for _ in range(600):
        at = when()
        avail = available(at)
        device_rows.append(
            {"user_id": user_key(), "device_id": rng.choice(devices), "feature_at": at,
             "available_at": avail, "last_ingested_at": avail,
             SEEN: rng.choice([True, True, False, None])}
        )  # fmt: skip
    return {USER: users, MERCHANT: merchant_rows, DEVICE: device_rows}


def _asof(row: dict[str, Any]) -> dt.datetime:
    return max(row["feature_at"], row.get("available_at") or row["feature_at"])  # type: ignore[no-any-return]


def random_spine_rows(
    rng: random.Random, views: dict[str, list[dict[str, Any]]], ttl: dict[str, dt.timedelta]
) -> list[dict[str, Any]]:
    """Spine rows at grid times, exactly at (or 1us around) as-of keys and TTL edges."""
    users = sorted({r["user_id"] for r in views[USER]} | {r["user_id"] for r in views[DEVICE]})
    merchants = sorted({r["merchant_id"] for r in views[MERCHANT]})
    devices = sorted({r["device_id"] for r in views[DEVICE]})
    grid = [T0 + k * 3 * H for k in range(-90, 90)]
    rows: list[dict[str, Any]] = []

    def add(user: str | None, merchant: str | None, device: str | None, at: dt.datetime | None
            ) -> None:  # fmt: skip
        rows.append({"case": f"random {len(rows)}", "user_id": user, "merchant_id": merchant,
                     "device_id": device, TS: at, "label": len(rows)})  # fmt: skip

    def pick(values: list[str], unknown: str) -> str | None:
        r = rng.random()
        return None if r < 0.02 else unknown if r < 0.05 else rng.choice(values)

    for _ in range(1400):
        add(pick(users, "r_nobody"), pick(merchants, "r_m_nobody"), pick(devices, "r_d_nobody"),
            rng.choice(grid) if rng.random() > 0.02 else None)  # fmt: skip
    for _ in range(700):  # at an as-of key, or 1us around it
        view = rng.choice(VIEWS)
        row = rng.choice(views[view])
        at = _asof(row) + rng.choice([-US, dt.timedelta(0), dt.timedelta(0), US])
        add(row["user_id"] if view != MERCHANT else rng.choice(users),
            row["merchant_id"] if view == MERCHANT else rng.choice(merchants),
            row["device_id"] if view == DEVICE else rng.choice(devices), at)  # fmt: skip
    view_keys = {USER: ("user_id",), MERCHANT: ("merchant_id",), DEVICE: ("user_id", "device_id")}
    latest: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for view in VIEWS:  # each entity's row with the greatest as-of key (ties: any)
        for r in views[view]:
            slot = (view, tuple(r[k] for k in view_keys[view]))
            if slot not in latest or _asof(r) > _asof(latest[slot]):
                latest[slot] = r
    for _ in range(700):  # TTL edges of an entity's latest row
        view = rng.choice(VIEWS)
        keys = view_keys[view]
        chosen = rng.choice(views[view])
        key = tuple(chosen[k] for k in keys)
        at = latest[view, key]["feature_at"] + ttl[view] + rng.choice([-US, dt.timedelta(0), US, S])
        values = dict(zip(keys, key, strict=True))
        add(values.get("user_id", rng.choice(users)),
            values.get("merchant_id", rng.choice(merchants)),
            values.get("device_id", rng.choice(devices)), at)  # fmt: skip
    rows += [
        dict(rows[i], label=len(rows) + n) for n, i in enumerate(rng.sample(range(len(rows)), 200))
    ]
    rng.shuffle(rows)
    return rows


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Scenario:
    views: dict[str, list[dict[str, Any]]]  # the rows as read back from the warehouse
    crafted: list[dict[str, Any]]
    randomized: list[dict[str, Any]]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The demo project run into a warehouse of this module (its views get replaced): the
    feature views, the training set and what they depend on (the session's demo_warehouse
    runs the full `dbt build`, data and unit tests included)."""
    built = Warehouse(tmp_path_factory.mktemp("historical-warehouse"))
    built.dbt("run", "--select", "+fraud_training_set")
    return built


@pytest.fixture(scope="module")
def registry(warehouse: Warehouse) -> Registry:
    return load_registry(warehouse.target_path / "manifest.json")


@pytest.fixture(scope="module")
def ttl(registry: Registry) -> dict[str, dt.timedelta]:
    return {view: dt.timedelta(seconds=registry.view(view).ttl_seconds) for view in VIEWS}


@pytest.fixture(scope="module")
def scenario(warehouse: Warehouse, registry: Registry, ttl: dict[str, dt.timedelta]) -> Scenario:
    crafted_rows = crafted_view_rows(ttl)
    rng = random.Random(20260301)
    random_rows = random_view_rows(rng)
    generated = {view: crafted_rows[view] + random_rows[view] for view in VIEWS}
    stored: dict[str, list[dict[str, Any]]] = {}
    with duckdb.connect(str(warehouse.duckdb_path)) as con:
        for view in VIEWS:
            relation = registry.view(view).relation
            before = con.sql(f"describe {relation}").fetchall()
            con.register("__generated_rows", pa.Table.from_pylist(generated[view], SCHEMAS[view]))
            con.execute(f"delete from {relation}")
            con.execute(f"insert into {relation} by name select * from __generated_rows")
            con.unregister("__generated_rows")
            assert con.sql(f"describe {relation}").fetchall() == before
            stored[view] = con.sql(f"select * from {relation}").to_arrow_table().to_pylist()
            assert len(stored[view]) == len(generated[view])
    return Scenario(
        views=stored,
        crafted=crafted_spine_rows(ttl),
        randomized=random_spine_rows(rng, random_rows, ttl),
    )


def _reference(
    scenario: Scenario,
    registry: Registry,
    spine: Sequence[dict[str, Any]],
    features: Sequence[str] = FEATURES,
    stamps: bool = True,
) -> list[dict[str, Any]]:
    specs = _specs(registry, features)
    return point_in_time(spine, TS, [(s, scenario.views[s.name]) for s in specs], stamps)


Call = Callable[..., pd.DataFrame]


@pytest.fixture
def historical(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> Call:
    warehouse.use(monkeypatch)

    def call(entity_df: Any, features: Sequence[str] = FEATURES, **kwargs: Any) -> pd.DataFrame:
        kwargs.setdefault("include_feature_timestamps", True)
        return get_historical_features(entity_df, list(features), **kwargs)

    return call


# --- get_historical_features vs the reference -----------------------------------------------


def test_crafted_edge_cases(scenario: Scenario, registry: Registry, historical: Call) -> None:
    spine_rows = scenario.crafted
    spine = _spine_frame(spine_rows, index=[1000 - i for i in range(len(spine_rows))])
    expected = _reference(scenario, registry, spine_rows)

    # the reference meets the expectations written by hand ...
    problems = []
    for i, row in enumerate(spine_rows):
        for column, want in row["expect"].items():
            if not _same(want, expected[i][column]):
                problems.append(f"{row['case']}: {column} = {expected[i][column]!r}, not {want!r}")
    _report(problems, "hand-written expectations the reference does not meet")

    result = historical(spine)
    specs = _specs(registry, FEATURES)
    columns = _output_columns(specs, FEATURES, stamps=True)
    assert set(result.columns) == set(spine.columns) | set(columns)
    assert [c for c in result.columns if c in FEATURES] == FEATURES
    _check_spine_unchanged(result, spine)
    assert result["case"].tolist() == [r["case"] for r in spine_rows]  # order, duplicates
    # ... and so does get_historical_features, everywhere
    _compare(result, expected, columns, "crafted spine")
    assert str(result[COUNT].dtype) == "Int64"
    assert str(result[SEEN].dtype) == "boolean"


def test_randomized_history(scenario: Scenario, registry: Registry, historical: Call) -> None:
    spine_rows = scenario.randomized
    specs = _specs(registry, FEATURES)
    expected = _reference(scenario, registry, spine_rows)

    # the indexed reference equals the literal scan over every view row (a sample)
    for spine_row, want in zip(spine_rows[:300], expected[:300], strict=True):
        for spec in specs:
            literal = naive_lookup(spec, scenario.views[spec.name], spine_row, TS)
            assert all(_same(literal[c], want[c]) for c in literal), (spine_row, spec.name)

    # the data does exercise ties, exact as-of hits and TTL edges
    stats = {"tie": 0, "exact as-of": 0, "age == ttl": 0, "expired": 0, "served": 0}
    for spec in specs:
        index = ViewIndex(spec, scenario.views[spec.name])
        groups = Counter(
            (tuple(r[k] for k in spec.keys), _asof(r))
            for r in scenario.views[spec.name]
        )  # fmt: skip
        for row in spine_rows:
            key = tuple(row[k] for k in spec.keys)
            if row[TS] is None or None in key or (found := index.match(key, row[TS])) is None:
                continue
            asof, winner = found
            stats["tie"] += groups[key, asof] > 1
            stats["exact as-of"] += asof == row[TS]
            age = row[TS] - winner["feature_at"]
            ttl = dt.timedelta(seconds=spec.ttl_seconds or 0)
            stats["age == ttl"] += age == ttl
            stats["expired"] += age > ttl
            stats["served"] += age <= ttl
    assert min(stats.values()) >= 30, stats

    result = historical(_spine_frame(spine_rows))
    assert result["case"].tolist() == [r["case"] for r in spine_rows]
    _compare(result, expected, _output_columns(specs, FEATURES, stamps=True), "random spine")


def test_feature_order_and_no_timestamps(
    scenario: Scenario, registry: Registry, historical: Call
) -> None:
    """Features listed in another order (the tie order does not follow it), no audit columns."""
    features = [SEEN, AVG, RATE, COUNT]
    spine = _spine_frame(scenario.crafted)
    result = historical(spine, features, include_feature_timestamps=False)
    assert list(result.columns) == [*spine.columns, *features]
    expected = _reference(scenario, registry, scenario.crafted, features, stamps=False)
    _compare(result, expected, features, "reordered features")
    tie = [i for i, r in enumerate(scenario.crafted) if r["case"] == "tie: identical feature_at"]
    # (u_tie_val rows: counts 2, 7, 7, null with averages 5.0, 1.0, 3.0, 900.0; declared
    # order count, avg: greatest count first (nulls last), then greatest average)
    assert [(_norm(result[AVG][i]), _norm(result[COUNT][i])) for i in tie] == [(3.0, 7)]


def test_time_zone_aware_spine(scenario: Scenario, registry: Registry, historical: Call) -> None:
    expected = _reference(scenario, registry, scenario.crafted)
    columns = _output_columns(_specs(registry, FEATURES), FEATURES, stamps=True)
    plus_two = dt.timezone(dt.timedelta(hours=2))

    spine = _spine_frame(scenario.crafted)
    spine[TS] = spine[TS].dt.tz_localize("UTC").dt.tz_convert(plus_two)
    first = spine[TS].dropna().iloc[0]
    assert first.utcoffset() == dt.timedelta(hours=2) and first.hour != first.tz_convert("UTC").hour
    result = historical(spine)
    assert isinstance(result[TS].dtype, pd.DatetimeTZDtype)
    _check_spine_unchanged(result, spine)
    _compare(result, expected, columns, "+02:00 spine")

    # an object column of aware datetimes with different offsets
    zones = [plus_two, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=5.5))]
    mixed = _spine_frame(scenario.crafted)
    mixed[TS] = pd.Series(
        [
            None if r[TS] is None else r[TS].replace(tzinfo=dt.UTC).astimezone(zones[i % 3])
            for i, r in enumerate(scenario.crafted)
        ],
        dtype=object,
    )
    result = historical(mixed)
    assert result[TS].dtype == object
    _check_spine_unchanged(result, mixed)
    _compare(result, expected, columns, "mixed-offset spine")


def test_pyarrow_table_spine(scenario: Scenario, registry: Registry, historical: Call) -> None:
    spine = _spine_frame(scenario.crafted)
    table = pa.Table.from_pandas(spine, preserve_index=False)
    result = historical(table)
    _check_spine_unchanged(result, table.to_pandas())
    columns = _output_columns(_specs(registry, FEATURES), FEATURES, stamps=True)
    _compare(result, _reference(scenario, registry, scenario.crafted), columns, "pyarrow spine")


def test_empty_spine(scenario: Scenario, registry: Registry, historical: Call) -> None:
    spine = _spine_frame(scenario.crafted).iloc[:0]
    result = historical(spine)
    columns = _output_columns(_specs(registry, FEATURES), FEATURES, stamps=True)
    assert len(result) == 0
    assert list(result.columns[: len(spine.columns)]) == list(spine.columns)
    assert set(result.columns) == set(spine.columns) | set(columns)
    assert (result.dtypes[list(spine.columns)] == spine.dtypes).all()


# --- refusals -------------------------------------------------------------------------------


def _spine(**columns: Any) -> pd.DataFrame:
    base: dict[str, Any] = {
        "user_id": ["u1", "u2"],
        "merchant_id": ["m1", "m2"],
        "device_id": ["d1", "d2"],
        TS: pd.Series([T0, T0 + H], dtype="datetime64[us]"),
    }
    base.update(columns)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


AWARE = T0.replace(tzinfo=dt.UTC)
ERRORS: list[tuple[str, Callable[[], Any], Any, dict[str, Any], str]] = [
    ("unknown feature", _spine, ["user_7d_transaction_cnt"], {},
     r"unknown feature 'user_7d_transaction_cnt' \(did you mean 'user_7d_transaction_count'\?\)"),
    ("empty feature list", _spine, [], {}, r"features is empty: name at least one feature"),
    ("duplicated feature", _spine, [SEEN, COUNT, SEEN], {},
     r"feature 'device_seen_before' is requested twice"),
    ("features as a string", _spine, SEEN, {}, r"features must be a list of feature names"),
    ("missing key column", lambda: _spine(device_id=None), [COUNT, SEEN], {},
     r"entity_df lacks key column 'device_id' of entity 'user_device' "
     r"\(needed by feature view user_device_features\)"),
    ("missing timestamp column", _spine, [COUNT], {"timestamp_column": "transacted_at"},
     r"entity_df has no timestamp column 'transacted_at' \(columns: user_id, merchant_id, "
     r"device_id, event_timestamp\); pass timestamp_column="),
    ("string timestamps", lambda: _spine(event_timestamp=["2026-03-01", "2026-03-02"]), [COUNT],
     {}, r"timestamp column 'event_timestamp' must (be a timestamp column, got dtype|hold "
     r"timestamps, found '2026-03-01')"),
    ("string timestamps in an object column",
     lambda: _spine(event_timestamp=pd.Series([T0, "2026-03-02"], dtype=object)), [COUNT], {},
     r"timestamp column 'event_timestamp' must hold timestamps, found '2026-03-02' \(str\)"),
    ("dates in an object column",
     lambda: _spine(event_timestamp=pd.Series([dt.date(2026, 3, 1), None], dtype=object)),
     [COUNT], {}, r"must hold timestamps, found datetime\.date\(2026, 3, 1\) \(date\)"),
    ("integer timestamps", lambda: _spine(event_timestamp=[1_772_366_400, 1_772_370_000]),
     [COUNT], {}, r"column 'event_timestamp' must be a timestamp column, got dtype int64"),
    ("naive and aware mixed",
     lambda: _spine(event_timestamp=pd.Series([T0, AWARE], dtype=object)), [COUNT], {},
     r"timestamp column 'event_timestamp' mixes time-zone-aware and naive timestamps"),
    ("integer user ids", lambda: _spine(user_id=[1, 2]), [COUNT], {},
     r"key column 'user_id' must hold string values \(registry type string\), got int64"),
    ("spine column named as a feature", lambda: _spine(avg_order_value_90d=[1.0, 2.0]),
     [COUNT, AVG], {}, r"entity_df already has column\(s\) avg_order_value_90d, which the "
     r"result would add"),
    ("spine column named as an audit column",
     lambda: _spine(user_transaction_features__as_of_at=[T0, T0]), [COUNT],
     {"include_feature_timestamps": True},
     r"already has column\(s\) user_transaction_features__as_of_at"),
    ("not a DataFrame", lambda: {"user_id": ["u1"], TS: [T0]}, [COUNT], {},
     r"entity_df must be a pandas DataFrame or a pyarrow Table, got dict"),
    ("a list of rows", lambda: [{"user_id": "u1", TS: T0}], [COUNT], {},
     r"entity_df must be a pandas DataFrame or a pyarrow Table, got list"),
    # feature services (tests/core/test_historical_services.py)
    ("neither features nor a feature service", _spine, None, {},
     r"name the features to join: features=\[\.\.\.\] or feature_service='\.\.\.'"),
    ("features and a feature service", _spine, [COUNT], {"feature_service": SERVICE},
     r"pass either features or feature_service, not both"),
    ("unknown feature service", _spine, None, {"feature_service": "fraud_model_v2"},
     r"unknown feature service 'fraud_model_v2' \(did you mean 'fraud_model_v1'\?\)"),
    ("feature service not a name", _spine, None, {"feature_service": [SERVICE]},
     r"feature_service must be a feature service name, got \['fraud_model_v1'\]"),
    ("spine without a request field", _spine, None, {"feature_service": SERVICE},
     r"entity_df lacks column 'amount', a request field of feature service 'fraud_model_v1' "
     r"\(the spine carries each row's request data: amount float\)"),
    ("request field of strings", lambda: _spine(amount=["1.5", "2"]), None,
     {"feature_service": SERVICE}, r"request field column 'amount' must hold numeric values "
     r"\(request field type float\), got (large_)?string"),
    ("spine column named as a request feature",
     lambda: _spine(amount=[1.0, 2.0], amount_over_avg_90d=[0.5, 0.5]), None,
     {"feature_service": SERVICE},
     r"entity_df already has column\(s\) amount_over_avg_90d, which the result would add"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spine", "features", "kwargs", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_refusals(
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    spine: Callable[[], Any],
    features: Any,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    warehouse.use(monkeypatch)
    with pytest.raises(HistoricalFeaturesError, match=message):
        get_historical_features(spine(), features, **kwargs)


# --- the training-set model vs the reference ------------------------------------------------


def test_training_set_matches_reference(demo_warehouse: Warehouse) -> None:
    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    specs = [
        ViewSpec(name=v.name, keys=v.keys, features=v.feature_names(), ttl_seconds=v.ttl_seconds,
                 timestamp=v.timestamp, available_at=v.available_at)
        for v in (registry.view(name) for name in VIEWS)
    ]  # fmt: skip
    with duckdb.connect(str(demo_warehouse.duckdb_path), read_only=True) as con:
        training = con.sql("select * from main_training.fraud_training_set").to_arrow_table()
        spine = con.sql("select * from main_training.fraud_training_spine").to_arrow_table()
        views = {
            spec.name: con.sql(f"select * from {registry.view(spec.name).relation}")
            .to_arrow_table()
            .to_pylist()
            for spec in specs
        }
    spine_rows = spine.to_pylist()
    by_id = {row["transaction_id"]: row for row in training.to_pylist()}
    assert len(spine_rows) > 0 and training.num_rows == len(spine_rows) == len(by_id)
    assert set(by_id) == {row["transaction_id"] for row in spine_rows}

    expected = point_in_time(spine_rows, "transacted_at", [(s, views[s.name]) for s in specs])
    problems = []
    served = dict.fromkeys(FEATURES, 0)
    for spine_row, want in zip(spine_rows, expected, strict=True):
        got = by_id[spine_row["transaction_id"]]
        for column, value in spine_row.items():
            if got[column] != value:
                problems.append(f"{spine_row['transaction_id']}: spine {column} {got[column]!r}")
        for column, value in want.items():
            if not _same(value, got[column]):
                problems.append(
                    f"{spine_row['transaction_id']} at {spine_row['transacted_at']}: {column} = "
                    f"{got[column]!r}, reference {value!r}"
                )
            if column in served and value is not None:
                served[column] += 1
        for spec in specs:
            for stamp in (f"{spec.name}__feature_at", f"{spec.name}__as_of_at"):
                if got[stamp] is not None and got[stamp] > got["transacted_at"]:
                    problems.append(f"{spine_row['transaction_id']}: {stamp} in the future")
    _report(problems, "training-set values differing from the reference")
    assert all(count > 0 for count in served.values()), served


# --- dbt unit tests -------------------------------------------------------------------------


def test_unit_test_meta_matches_registry(registry: Registry) -> None:
    """The view meta the unit tests pass to featurestore.feature_view is the registry's."""
    spec = yaml.safe_load(UNIT_TESTS_YML.read_text())
    expected = {
        name: {
            "keys": list(view.keys),
            "timestamp": view.timestamp,
            "available_at": view.available_at,
            "ttl": view.ttl,
            "features": list(view.feature_names()),
        }
        for name, view in ((name, registry.view(name)) for name in VIEWS)
    }
    assert spec["unit_tests"]
    for test in spec["unit_tests"]:
        assert test["overrides"]["vars"]["featurestore_unit_test_views"] == expected, test["name"]


def test_dbt_unit_tests_pass(warehouse: Warehouse) -> None:
    declared = {test["name"] for test in yaml.safe_load(UNIT_TESTS_YML.read_text())["unit_tests"]}
    # (the unit tests of the declared views' macro: tests/dbt/test_windowed_unit.py)
    warehouse.dbt("test", "--select", "test_type:unit,fraud_training_set")
    results = json.loads((warehouse.target_path / "run_results.json").read_text())["results"]
    statuses = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}
    assert statuses == dict.fromkeys(declared, "pass")
    assert len(declared) >= 2
