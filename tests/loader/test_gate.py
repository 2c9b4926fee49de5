"""The validation gate's refusals of rows that would break the store or could never be served:
rows from the future (a bad upstream clock), duplicate entity keys, key parts longer than the
sidecar accepts. Real DuckDB tables with crafted rows (tests/loader/tables.py), the real
loader and a real SQLite store; the 256-character keys are then served by the real sidecar
over HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pytest

from featurestore.exit_codes import ExitCode
from featurestore.online.layout import MAX_KEY_PART_CHARS
from featurestore.online.store import OnlineStore, StoredRecord, ViewRead
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from loader import load, plan_views
from loader.validation import FUTURE_TOLERANCE
from sidecar.settings import Settings
from tests.loader.tables import (
    CUTOFF_US,
    ENTITY,
    FEATURE,
    KEY,
    NOW,
    VIEW,
    KeyRow,
    key_of,
    key_rows,
    rate_of,
    write_rows,
)
from tests.warehouse import Warehouse

FAR = dt.datetime(9999, 12, 31)
NAIVE_NOW = NOW.replace(tzinfo=None)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> OnlineStore:
    store = open_store(f"sqlite:///{tmp_path / 'online.db'}")
    store.initialize()
    return store


def stored(store: OnlineStore, registry: Registry, keys: list[str]) -> dict[str, object]:
    view = registry.view(VIEW)
    read = ViewRead(VIEW, {f.name: f.value_type for f in view.features})
    got = store.read(ENTITY, [(k,) for k in keys], [read], now=NOW)
    return {key: row[VIEW] for key, row in zip(keys, got, strict=True)}


def record_of(row: KeyRow) -> StoredRecord:
    return StoredRecord(ts=row.ts, ver=row.ver, exp=row.exp, values=row.values)


def test_rows_from_the_future_are_refused_and_nothing_moves(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    path = tmp_path / "merchants.duckdb"
    first = key_rows(20)
    write_rows(path, first)
    sources = plan_views(registry, [VIEW])
    assert load(sqlite_store, path, sources, now=NOW).exit_code == ExitCode.OK
    watermark = sqlite_store.get_watermark(VIEW)
    assert watermark == max(row.ver for row in first)

    # a day later, new values; three rows from a bad clock (one with both times in 9999)
    second = key_rows(20, day=21, shift=100)
    second[3] = dataclasses.replace(second[3], as_of_at=FAR)
    second[11] = dataclasses.replace(second[11], as_of_at=FAR)
    second[17] = dataclasses.replace(second[17], feature_at=FAR, as_of_at=FAR)
    write_rows(path, second)
    report = load(sqlite_store, path, sources, now=NOW, validation_chunk_rows=8, batch_rows=4)
    assert report.exit_code == ExitCode.REJECTED
    (result,) = report.views
    assert (result.outcome, result.rows_read, result.rows_written) == ("rejected", 20, 0)
    assert result.rows_rejected == 3
    limit = NAIVE_NOW + FUTURE_TOLERANCE
    # rows 3 and 11 are current rows (feature time <= the cutoff): the clock refuses them;
    # row 17's feature time is after the cutoff: a scheduled row far beyond the horizon
    by_check = {
        (f.check.source.split(" (")[0], f.check.kwargs["column"]): f for f in result.failures
    }
    clock = f"clock: not later than the load's now + {FUTURE_TOLERANCE.total_seconds():g} s"
    horizon = "layout: a scheduled row is at most the cutoff + freshness_sla"
    expected = {
        (clock, f"{VIEW}__as_of_at"): [3, 11],
        (horizon, f"{VIEW}__as_of_at"): [17],
        (horizon, f"{VIEW}__feature_at"): [17],
    }
    assert set(by_check) == set(expected)
    for (origin, column), positions in expected.items():
        failure = by_check[origin, column]
        assert failure.check.expectation == "expect_column_values_to_be_between"
        if origin == clock:
            assert failure.check.kwargs["max_value"] == limit
            assert failure.to_dict()["kwargs"]["max_value"] == limit.isoformat()
        assert failure.unexpected_count == len(positions)
        assert [s[KEY] for s in failure.samples] == [key_of(i) for i in positions]
        assert all(s[column].startswith("9999-12-31") for s in failure.samples)
    # nothing written, the watermark and every record as the first load left them
    assert sqlite_store.get_watermark(VIEW) == watermark
    want = {row.key: record_of(row) for row in first}
    assert stored(sqlite_store, registry, list(want)) == want
    latest = sqlite_store.list_loads()[0]
    assert (latest.outcome, latest.watermark_after) == ("rejected", None)


@pytest.mark.parametrize(
    ("ahead", "passes"),
    [
        (dt.timedelta(0), True),
        (dt.timedelta(minutes=4, seconds=59), True),
        (FUTURE_TOLERANCE, True),  # the tolerance itself is allowed
        (FUTURE_TOLERANCE + dt.timedelta(microseconds=1), False),
        (dt.timedelta(days=1), False),
    ],
)
def test_the_tolerance_of_clock_skew(
    ahead: dt.timedelta,
    passes: bool,
    registry: Registry,
    sqlite_store: OnlineStore,
    tmp_path: Path,
) -> None:
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(4)
    rows[2] = dataclasses.replace(rows[2], feature_at=NAIVE_NOW, as_of_at=NAIVE_NOW + ahead)
    write_rows(path, rows)
    report = load(sqlite_store, path, plan_views(registry, [VIEW]), now=NOW)
    (result,) = report.views
    if passes:
        assert (result.outcome, result.rows_written) == ("success", 4)
        # the change time of a current row is its as-of time, the cutoff at most
        assert sqlite_store.get_watermark(VIEW) == min(rows[2].ver, CUTOFF_US)
        assert stored(sqlite_store, registry, [key_of(2)]) == {key_of(2): record_of(rows[2])}
    else:
        assert (result.outcome, result.rows_rejected, result.rows_written) == ("rejected", 1, 0)
        (failure,) = result.failures
        assert failure.check.kwargs["column"] == f"{VIEW}__as_of_at"
        assert sqlite_store.get_watermark(VIEW) is None


def test_the_tolerance_follows_the_load_s_clock(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    """The same rows pass or fail with the load's now (and a tolerance given to load())."""
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(3)  # as-of times 2026-04-20 00:00:30 .. 00:02:30
    write_rows(path, rows, cutoff=rows[-1].as_of_at)
    sources = plan_views(registry, [VIEW])
    early = dt.datetime(2026, 4, 19, 23, 58, tzinfo=dt.UTC)  # row 2 is 4.5 min ahead of it
    assert load(sqlite_store, path, sources, now=early).views[0].outcome == "success"
    strict = load(
        sqlite_store, path, sources, now=early, full_refresh=True, future_tolerance=dt.timedelta(0)
    )
    # the cutoff, ts and as-of
    assert [f.unexpected_count for f in strict.views[0].failures] == [3, 3, 3]


def test_duplicate_keys_are_refused_across_chunks(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(30)
    for index, other in ((25, 2), (12, 7), (29, 7)):  # mer_0002 twice, mer_0007 three times
        rows[index] = dataclasses.replace(
            rows[index], key=key_of(other), feature_at=rows[other].feature_at
        )
    write_rows(path, rows)
    report = load(
        sqlite_store, path, plan_views(registry, [VIEW]), now=NOW, validation_chunk_rows=8,
        batch_rows=4,
    )  # fmt: skip
    assert report.exit_code == ExitCode.REJECTED
    (result,) = report.views
    (failure,) = result.failures
    assert failure.check.expectation == "expect_compound_columns_to_be_unique"
    assert failure.check.kwargs == {"column_list": [KEY, f"{VIEW}__feature_at"]}
    assert failure.unexpected_count == result.rows_rejected == 5
    # the samples are whole rows, each duplicated key's rows together (read in key order;
    # tied rows in any order)
    assert sorted((s[KEY], s[FEATURE]) for s in failure.samples) == sorted(
        [(key_of(2), rate_of(i)) for i in (2, 25)] + [(key_of(7), rate_of(i)) for i in (7, 12, 29)]
    )
    assert set(stored(sqlite_store, registry, [key_of(2), key_of(0)]).values()) == {None}
    assert sqlite_store.get_watermark(VIEW) is None


def test_duplicate_composite_keys_are_refused(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    """user_device: a (user, device) pair twice is refused; a user with two devices is not."""
    view = registry.view("user_device_features")
    assert view.keys == ("user_id", "device_id")
    path = tmp_path / "devices.duckdb"
    pairs = [("usr_1", "dev_a"), ("usr_1", "dev_b"), ("usr_2", "dev_a"), ("usr_1", "dev_a")]
    features = {f.name: f.value_type for f in view.features}
    assert set(features.values()) <= {"bool"}
    with duckdb.connect(str(path)) as con:
        con.sql("create schema main_online")
        columns = ", ".join(f"true as {name}" for name in features)
        values = ", ".join(f"('{user}', '{device}', {n})" for n, (user, device) in enumerate(pairs))
        con.sql(
            f"""create table main_online.online_user_device_features as
            select user_id, device_id, {columns},
                   timestamp '2026-04-20' + to_minutes(n % 3) as user_device_features__feature_at,
                   timestamp '2026-04-21' as user_device_features__as_of_at,
                   timestamp '2026-04-21' as user_device_features__changed_at,
                   timestamp '2026-04-21' as as_of_at
            from (values {values}) v(user_id, device_id, n)"""
        )
    report = load(sqlite_store, path, plan_views(registry, [view.name]), now=NOW)
    (result,) = report.views
    (failure,) = result.failures
    assert failure.check.kwargs == {
        "column_list": ["user_id", "device_id", "user_device_features__feature_at"]
    }
    assert failure.unexpected_count == result.rows_rejected == 2
    assert [(s["user_id"], s["device_id"]) for s in failure.samples] == [("usr_1", "dev_a")] * 2
    assert result.rows_written == 0


def test_the_sidecar_s_key_limit_is_the_layout_s() -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    assert defaults["max_key_part_chars"] == MAX_KEY_PART_CHARS == 256


def test_a_key_longer_than_the_sidecar_accepts_is_refused(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(6)
    rows[4] = dataclasses.replace(rows[4], key="k" * (MAX_KEY_PART_CHARS + 1))
    write_rows(path, rows)
    report = load(sqlite_store, path, plan_views(registry, [VIEW]), now=NOW)
    (result,) = report.views
    (failure,) = result.failures
    assert failure.check.expectation == "expect_column_value_lengths_to_be_between"
    assert failure.check.kwargs == {"column": KEY, "max_value": 256}
    assert failure.unexpected_count == result.rows_rejected == 1
    assert [len(s[KEY]) for s in failure.samples] == [257]
    assert result.rows_written == 0


@pytest.mark.slow
def test_keys_of_256_characters_load_and_are_served(
    demo_warehouse: Warehouse, registry: Registry, tmp_path: Path
) -> None:
    """The longest keys the gate lets through are answered by the real sidecar: plain,
    multi-byte (256 characters, 512 bytes) and full of ':' (sent as an object)."""
    from tests.sidecar.harness import running_sidecar, sidecar_env

    path = tmp_path / "merchants.duckdb"
    long_keys = ["k" * 256, "é" * 256, "a:" * 128]
    rows = key_rows(5)
    for index, key in enumerate(long_keys):
        rows[index] = dataclasses.replace(rows[index], key=key)
    write_rows(path, rows)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
        report = load(store, path, plan_views(registry, [VIEW]), now=NOW)
        assert report.views[0].outcome == "success" and report.views[0].rows_written == 5
    env = sidecar_env(url, demo_warehouse.target_path / "manifest.json")
    features = list(registry.view(VIEW).feature_names())
    asked = [long_keys[0], long_keys[1], {KEY: long_keys[2]}]
    with running_sidecar(tmp_path / "sidecar", env) as server, server.client() as client:
        response = client.post(
            "/api/v1/features/retrieve",
            json={"entity_name": ENTITY, "entity_keys": asked, "features": features},
        )
        assert response.status_code == 200, response.text
        for row, result in zip(rows, response.json()["results"], strict=False):
            got = {name: answer["value"] for name, answer in result["features"].items()}
            assert {name: answer["status"] for name, answer in result["features"].items()} == (
                dict.fromkeys(features, "PRESENT")
            )
            assert got == row.values
        too_long = client.post(
            "/api/v1/features/retrieve",
            json={"entity_name": ENTITY, "entity_keys": ["k" * 257], "features": features},
        )
        assert too_long.status_code == 422
