"""The online loader (loader/, `featurestore load|loads|init-store`) end to end: the demo
warehouse built by real dbt, into real stores (SQLite file, redis-server, moto's DynamoDB
server when its store exists), checked against a plain-Python reference: every online row
read back from the store equals the warehouse row (timestamps converted by datetime
arithmetic, not the loader's code), the newer-wins rule replayed with Python dicts over
each load's rows, the validation gate's offending rows found by plain loops."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import importlib.util
import json
import math
import os
import pty
import select
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from featurestore.online.layout import decode_tile_set
from featurestore.online.store import OnlineStore, StoredRecord, StoreUnavailable, ViewRead
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView, Registry
from tests.servers import free_port
from tests.stores import store_url
from tests.warehouse import REPO, Warehouse

if importlib.util.find_spec("loader") is None:  # an install from before loader/ existed
    sys.path.insert(0, str(REPO))
from featurestore.exit_codes import ExitCode
from loader import (
    LoadReport,
    WarehouseError,
    load,
    load_project,
    plan_views,
)

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1)
VIEWS = (
    "merchant_chargeback_features",
    "merchant_transaction_features",
    "user_device_features",
    "user_transaction_features",
)
#: the declared views: their online relations hold tiles
TILED = ("merchant_transaction_features", "user_transaction_features")
KINDS = ["sqlite", "redis"]
if importlib.util.find_spec("featurestore.online.dynamodb_store") is not None:
    KINDS.append("dynamodb")


# --- helpers -------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed `featurestore` script (the repo first on the path: `loader` is a
    top-level package of the repo)."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [FEATURESTORE, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stderr line must be one JSON object."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def micros(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Row:
    """One online row as the reference sees it."""

    key: tuple[str, ...]
    ts: int
    ver: int
    exp: int
    values: dict[str, object]
    #: the entity's change time (the watermark's unit) and its rows in the warehouse
    changed: int = 0
    read: int = 1
    #: the earlier rows (its scheduled steps): (ts, values as the layout's text)
    steps: tuple[tuple[int, tuple[str | None, ...]], ...] = ()

    def stored(self) -> StoredRecord:
        timeline = None
        if self.steps:  # the layout's JSON of steps: [[ts, [text or null, ...]], ...]
            timeline = orjson.dumps([[ts, list(values)] for ts, values in self.steps])
        return StoredRecord(
            ts=self.ts, ver=self.ver, exp=self.exp, values=self.values, timeline=timeline
        )


def value_text(value: object) -> str | None:
    """A value as the layout's text, written out here: bools 1/0, ints as digits, floats as
    repr, strings as they are."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def warehouse_rows(path: Path, view: FeatureView, where: str = "") -> dict[tuple[str, ...], Row]:
    """The online relation's rows, read with plain SQL and converted in Python: per key its
    last row by feature time (the record), its change time and how many rows it has."""
    features = list(view.feature_names())
    columns = [
        *view.keys, f"{view.name}__feature_at", f"{view.name}__as_of_at",
        f"{view.name}__changed_at", "as_of_at", *features,
    ]  # fmt: skip
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql(
            f"select {', '.join(columns)} from main_online.online_{view.name} {where}"
        ).fetchall()
    out: dict[tuple[str, ...], Row] = {}
    nk = len(view.keys)
    for row in sorted(rows, key=lambda r: (tuple(str(p) for p in r[:nk]), r[nk])):
        key = tuple(str(part) for part in row[:nk])
        ts, ver, changed = micros(row[nk]), micros(row[nk + 1]), micros(row[nk + 2])
        cutoff = micros(row[nk + 3])
        if ts > cutoff:  # a scheduled row: versioned by the load's cutoff
            ver = cutoff
        values = dict(zip(features, row[nk + 4 :], strict=True))
        earlier = out.get(key)
        assert earlier is None or earlier.ts < ts, f"duplicate row {key} in online_{view.name}"
        exp = ts // 1_000_000 + view.ttl_seconds
        steps: tuple[tuple[int, tuple[str | None, ...]], ...] = ()
        if earlier is not None:
            texts = tuple(value_text(v) for v in earlier.values.values())
            steps = (*earlier.steps, (earlier.ts, texts))
        read = earlier.read + 1 if earlier else 1
        out[key] = Row(key, ts, ver, exp, values, changed, read, steps)
    return out


@dataclasses.dataclass(frozen=True)
class TiledRow:
    """One entity of a declared view as the reference sees it: its tile rows."""

    key: tuple[str, ...]
    ts: int
    ver: int
    exp: int
    #: hop seconds -> tile start seconds -> the partials of the hop's features in view order
    #: (an avg: (count, sum), a missing sum read as 0)
    tiles: dict[int, dict[int, tuple[object, ...]]]
    changed: int = 0
    read: int = 1

    def matches(self, got: StoredRecord | None) -> bool:
        if got is None or got.timeline is None:
            return False
        # a tile set holds no values: the read gives every feature as None
        return (
            (got.ts, got.ver, got.exp) == (self.ts, self.ver, self.exp)
            and set(got.values.values()) <= {None}
            and decode_tile_set(got.timeline) == self.tiles
        )


def tiled_warehouse_rows(path: Path, view: FeatureView) -> dict[tuple[str, ...], TiledRow]:
    """The tile relation's rows, read with plain SQL and grouped in Python: per entity the
    greatest feature time (ts), the cutoff (ver), the instant its last tile leaves the longest
    window of its hop (exp, whole seconds) and its tiles."""
    hops: dict[int, list[tuple[str, str]]] = {}  # hop -> (feature, function) in view order
    longest: dict[int, int] = {}
    for feature in view.features:
        aggregation = feature.aggregation
        assert aggregation is not None
        hops.setdefault(aggregation.hop_seconds, []).append((feature.name, aggregation.function))
        longest[aggregation.hop_seconds] = max(
            longest.get(aggregation.hop_seconds, 0), aggregation.window_seconds
        )
    partials = [
        f"{name}__{part}"
        for name, function in (pair for pairs in hops.values() for pair in pairs)
        for part in ({"count": ["count"], "sum": ["sum"], "avg": ["count", "sum"]}[function])
    ]
    partials = list(dict.fromkeys(partials))
    columns = [
        *view.keys, f"{view.name}__feature_at", "as_of_at", f"{view.name}__changed_at",
        "tile_hop_seconds", "tile_start", *partials,
    ]  # fmt: skip
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql(
            f"select {', '.join(columns)} from main_online.online_{view.name}"
        ).fetchall()
    nk = len(view.keys)
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        named = dict(zip(columns, row, strict=True))
        grouped.setdefault(tuple(str(p) for p in row[:nk]), []).append(named)
    out: dict[tuple[str, ...], TiledRow] = {}
    for key, mine in grouped.items():
        tiles: dict[int, dict[int, tuple[object, ...]]] = {}
        exp = 0
        for r in mine:
            hop = r["tile_hop_seconds"]
            start = (r["tile_start"] - EPOCH) // dt.timedelta(seconds=1)
            values: list[object] = []
            for name, function in hops[hop]:
                if function == "avg":
                    total = r[f"{name}__sum"]
                    values.append((r[f"{name}__count"], 0 if total is None else total))
                else:
                    values.append(r[f"{name}__{function}"])
            assert start not in tiles.setdefault(hop, {}), f"tile twice: {key} {hop} {start}"
            tiles[hop][start] = tuple(values)
            exp = max(exp, start + hop + longest[hop])
        out[key] = TiledRow(
            key,
            max(micros(r[f"{view.name}__feature_at"]) for r in mine),
            micros(mine[0]["as_of_at"]),
            exp,
            tiles,
            micros(mine[0][f"{view.name}__changed_at"]),
            len(mine),
        )
    return out


def expected_rows(path: Path, view: FeatureView) -> dict[tuple[str, ...], Any]:
    """The reference records of a view: tiles (declared) or rows (hand-written)."""
    return tiled_warehouse_rows(path, view) if view.tiled else warehouse_rows(path, view)


def rows_in(rows: dict[tuple[str, ...], Any]) -> int:
    """How many warehouse rows the records hold."""
    return sum(row.read for row in rows.values())


def view_read(view: FeatureView) -> ViewRead:
    return ViewRead(view.name, {f.name: f.value_type for f in view.features})


def read_all(
    store: OnlineStore, view: FeatureView, keys: list[tuple[str, ...]]
) -> dict[tuple[str, ...], StoredRecord | None]:
    got: dict[tuple[str, ...], StoredRecord | None] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for key, result in zip(
            chunk, store.read(view.entity.name, chunk, [view_read(view)], now=NOW), strict=True
        ):
            got[key] = result[view.name]
    return got


def assert_store_holds(
    store: OnlineStore, view: FeatureView, expected: dict[tuple[str, ...], Any]
) -> None:
    keys = sorted(expected)
    got = read_all(store, view, keys)
    if view.tiled:
        mismatched = [key for key in keys if not expected[key].matches(got[key])]
    else:
        mismatched = [key for key in keys if got[key] != expected[key].stored()]
    assert not mismatched, (
        f"{view.name}: {len(mismatched)} of {len(keys)} records differ, e.g. "
        f"{mismatched[0]}: {got[mismatched[0]]} != {expected[mismatched[0]]}"
    )


def replay(state: dict[tuple[str, ...], Row], rows: dict[tuple[str, ...], Row]) -> tuple[int, int]:
    """Newer-wins by hand: apply rows to state; (written, skipped as older-or-equal)."""
    written = skipped = 0
    for key, row in rows.items():
        old = state.get(key)
        if old is None or (row.ts, row.ver) > (old.ts, old.ver):
            state[key] = row
            written += 1
        else:
            skipped += 1
    return written, skipped


def copy_warehouse(source: Warehouse, workdir: Path) -> Warehouse:
    """A writable copy of a built warehouse sharing its (read-only) target/manifest."""
    copy = Warehouse(workdir, extra_env={"DBT_TARGET_PATH": str(source.target_path)})
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.duckdb_path, copy.duckdb_path)
    return copy


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[OnlineStore]:
    store = open_store(f"sqlite:///{tmp_path / 'online.db'}")
    store.initialize()
    yield store
    store.close()


def _counts(report: LoadReport) -> dict[str, tuple[str, int, int, int, int, int]]:
    return {
        r.view: (
            r.outcome,
            r.rows_read,
            r.rows_written,
            r.rows_skipped,
            r.rows_expired,
            r.rows_rejected,
        )
        for r in report.views
    }


# --- every row lands; incremental; full refresh; load records ------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_load_incremental_and_full_refresh(
    kind: str,
    demo_warehouse: Warehouse,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    demo_warehouse.use(monkeypatch)
    # moto answers one conditional PutItem per record slowly: DynamoDB gets the smallest view
    names = VIEWS if kind != "dynamodb" else ("merchant_chargeback_features",)
    chosen = list(names)
    expected = {
        name: expected_rows(demo_warehouse.duckdb_path, registry.view(name)) for name in names
    }
    assert all(len(rows) > 5 for rows in expected.values())
    store = open_store(store_url(kind, request, tmp_path))
    store.initialize()
    try:
        first = load_project(store, views=chosen, now=NOW)
        assert first.exit_code == 0
        assert _counts(first) == {
            name: ("success", rows_in(rows), len(rows), 0, 0, 0) for name, rows in expected.items()
        }
        for name, rows in expected.items():
            view = registry.view(name)
            assert_store_holds(store, view, rows)
            assert store.get_watermark(name) == max(row.changed for row in rows.values())
            # keys the warehouse does not have are not in the store
            ghost = [tuple(f"zz_{part}" for part in next(iter(rows)))]
            assert read_all(store, view, ghost) == {ghost[0]: None}

        second = load_project(store, views=chosen, now=NOW)
        assert _counts(second) == {name: ("success", 0, 0, 0, 0, 0) for name in names}
        for result in second.views:
            assert result.watermark_after == result.watermark_before is not None

        # a full refresh writes in replace mode: every record again, none skipped
        full = load_project(store, views=chosen, now=NOW, full_refresh=True)
        assert _counts(full) == {
            name: ("success", rows_in(rows), len(rows), 0, 0, 0) for name, rows in expected.items()
        }
        for name, rows in expected.items():
            assert_store_holds(store, registry.view(name), rows)
            assert store.get_watermark(name) == max(row.changed for row in rows.values())

        records = store.list_loads(limit=20)
        assert len(records) == 3 * len(names)
        by_load: dict[str, dict[str, Any]] = {}
        for record in records:
            by_load.setdefault(record.load_id, {})[record.view] = record
        assert set(by_load) == {first.load_id, second.load_id, full.load_id}
        newest = records[: len(names)]
        assert [r.load_id for r in newest] == [full.load_id] * len(names)  # newest first
        for name, rows in expected.items():
            top = max(row.changed for row in rows.values())
            one, two, three = (by_load[r.load_id][name] for r in (first, second, full))
            assert (one.watermark_before, one.watermark_after) == (None, top)
            assert (two.watermark_before, two.watermark_after) == (top, top)
            assert (three.rows_read, three.rows_written, three.rows_skipped) == (
                rows_in(rows), len(rows), 0,
            )  # fmt: skip
            assert {one.outcome, two.outcome, three.outcome} == {"success"}
            assert one.store == store.description
            assert one.started_at <= one.finished_at <= two.started_at
    finally:
        store.close()


# --- a changed warehouse: only newer rows are read; newer-wins decides --------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_warehouse_change_is_picked_up(
    kind: str,
    demo_warehouse: Warehouse,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    copy = copy_warehouse(demo_warehouse, tmp_path / "wh")
    copy.use(monkeypatch)
    view = registry.view("merchant_chargeback_features")  # hand-written: rows
    rate = "merchant_chargeback_rate_30d"
    store = open_store(store_url(kind, request, tmp_path))
    store.initialize()
    try:
        state: dict[tuple[str, ...], Row] = {}
        rows = warehouse_rows(copy.duckdb_path, view)
        replay(state, rows)
        assert load_project(store, views=[view.name], now=NOW).exit_code == 0
        watermark = store.get_watermark(view.name)
        assert watermark == max(row.changed for row in rows.values())

        # merchants with one row (no scheduled row), changed at the cutoff (`as_of_at`): later
        # than the watermark, the greatest change time read
        a, b, c, e = sorted(key for key, row in rows.items() if row.read == 1)[:4]
        table = "main_online.online_merchant_chargeback_features"
        ts, ver = f"{view.name}__feature_at", f"{view.name}__as_of_at"
        changed_at = f"{view.name}__changed_at"
        after = "as_of_at"
        with duckdb.connect(str(copy.duckdb_path)) as con:
            # a: a newer value (later feature time and as-of time)
            con.execute(
                f"update {table} set {ts} = {ts} + interval 1 minute, {ver} = {after}, "
                f"{changed_at} = {after}, "
                f"{rate} = coalesce({rate}, 0) / 2 + 0.01 where merchant_id = ?",
                [a[0]],
            )
            # b: a correction at the same feature time, known later
            con.execute(
                f"update {table} set {ver} = {after}, {changed_at} = {after}, "
                f"{rate} = 0.625 where merchant_id = ?",
                [b[0]],
            )
            # c: known later but with an older feature time: newer-wins keeps the stored one
            con.execute(
                f"update {table} set {ts} = {ts} - interval 1 second, {ver} = {after}, "
                f"{changed_at} = {after}, {rate} = 0.999 where merchant_id = ?",
                [c[0]],
            )
            # e: changed without a later change time: invisible to an incremental load
            con.execute(f"update {table} set {rate} = 0.777 where merchant_id = ?", [e[0]])
            # d: a new merchant
            con.execute(
                f"insert into {table} by name select 'mer_new_1' as merchant_id, as_of_at, "
                f"0.42 as {rate}, {ts}, "
                f"{after} as {ver}, {after} as {changed_at} from {table} where merchant_id = ?",
                [a[0]],
            )
        changed = warehouse_rows(copy.duckdb_path, view)
        newer = {key: row for key, row in changed.items() if row.changed > watermark}
        assert set(newer) == {a, b, c, ("mer_new_1",)}
        written, skipped = replay(state, newer)
        assert (written, skipped) == (3, 1)

        # a load a day later
        later = NOW + dt.timedelta(days=1)
        report = load_project(store, views=[view.name], now=later)
        assert _counts(report) == {view.name: ("success", 4, written, skipped, 0, 0)}
        assert_store_holds(store, view, state)
        assert store.get_watermark(view.name) == max(row.changed for row in changed.values())
        got = read_all(store, view, [c, e])
        assert got[c] is not None and got[c].values[rate] != 0.999
        assert got[e] is not None and got[e].values[rate] != 0.777

        # a full refresh replaces every record with the warehouse's, whatever the order
        # (c's older feature time and e's unchanged pair too); rows expired by then go
        cutoff = int(later.timestamp())
        live = {key: row for key, row in changed.items() if row.exp > cutoff}
        report = load_project(store, views=[view.name], now=later, full_refresh=True)
        expired = rows_in(changed) - rows_in(live)
        counts = ("success", rows_in(changed), len(live), 0, expired, 0)
        assert _counts(report) == {view.name: counts}  # expired records remove stored ones
        assert_store_holds(store, view, live)
        got = read_all(store, view, [c, e])
        assert got[c] is not None and got[c].values[rate] == 0.999
        assert got[e] is not None and got[e].values[rate] == 0.777
    finally:
        store.close()


# --- --views, TTL expiry at --now, view selection errors ------------------------------------


@pytest.mark.slow
def test_views_selects_and_expired_rows_are_not_sent(
    demo_warehouse: Warehouse,
    registry: Registry,
    sqlite_store: OnlineStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo_warehouse.use(monkeypatch)
    merchant = registry.view("merchant_chargeback_features")
    device = registry.view("user_device_features")
    later = dt.datetime(2026, 5, 20, tzinfo=dt.UTC)  # some 30-day merchant values expired
    cutoff = int(later.timestamp())
    report = load_project(sqlite_store, views=[merchant.name, device.name], now=later)
    assert report.exit_code == 0
    counts = _counts(report)
    assert set(counts) == {merchant.name, device.name}
    for view in (merchant, device):
        rows = warehouse_rows(demo_warehouse.duckdb_path, view)
        live = {key: row for key, row in rows.items() if row.exp > cutoff}
        expired = rows_in(rows) - rows_in(live)
        assert counts[view.name] == ("success", rows_in(rows), len(live), 0, expired, 0)
        got = read_all(sqlite_store, view, sorted(rows))
        assert {key for key, record in got.items() if record is not None} == set(live)
    assert 0 < counts[merchant.name][4] < counts[merchant.name][1]  # some, not all, expired
    assert sqlite_store.get_watermark("user_transaction_features") is None
    assert {r.view for r in sqlite_store.list_loads()} == {merchant.name, device.name}


# --- the validation gate ---------------------------------------------------------------------


@pytest.mark.slow
def test_gate_rejects_an_out_of_range_view_and_loads_the_others(
    demo_warehouse: Warehouse, registry: Registry, tmp_path: Path
) -> None:
    copy = copy_warehouse(demo_warehouse, tmp_path / "wh")
    table = "main_online.online_merchant_chargeback_features"
    with duckdb.connect(str(copy.duckdb_path)) as con:
        broken = [
            row[0]
            for row in con.sql(
                f"select merchant_id from {table} group by merchant_id having count(*) = 1 "
                "order by merchant_id"  # merchants with no scheduled row: one row each
            ).fetchall()
        ][3:5]
        con.execute(
            f"update {table} set merchant_chargeback_rate_30d = 1.5 where merchant_id in (?, ?)",
            broken,
        )
    merchant = registry.view("merchant_chargeback_features")
    rows = warehouse_rows(copy.duckdb_path, merchant)
    rate = "merchant_chargeback_rate_30d"
    bad = {
        key
        for key, row in rows.items()
        if isinstance(value := row.values[rate], float) and not 0 <= value <= 1
    }
    assert bad == {(m,) for m in broken}

    url = f"sqlite:///{tmp_path / 'online.db'}"
    assert run_cli("init-store", "--online", url, env=copy.env).returncode == 0
    proc = run_cli("load", "--online", url, "--now", "2026-05-01T00:00:00Z", env=copy.env)
    assert proc.returncode == ExitCode.REJECTED, proc.stderr
    logs = json_lines(proc.stderr)
    assert [line["event"] for line in logs].count("view.end") == len(VIEWS)
    ends = {line["view"]: line for line in logs if line["event"] == "view.end"}
    assert {view: line["outcome"] for view, line in ends.items()} == {
        "merchant_chargeback_features": "rejected",
        "merchant_transaction_features": "success",
        "user_device_features": "success",
        "user_transaction_features": "success",
    }
    rejected = ends["merchant_chargeback_features"]
    assert rejected["level"] == "ERROR"
    assert rejected["rows_written"] == 0 and rejected["rows_rejected"] == 2
    assert "merchant_chargeback_features" in rejected["message"]
    (failure,) = rejected["failures"]
    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["kwargs"] == {
        "column": "merchant_chargeback_rate_30d", "min_value": 0, "max_value": 1,
    }  # fmt: skip
    assert failure["unexpected_count"] == 2
    assert sorted(s["merchant_id"] for s in failure["sample_rows"]) == sorted(broken)
    assert {s["merchant_chargeback_rate_30d"] for s in failure["sample_rows"]} == {1.5}
    total = next(line for line in logs if line["event"] == "load.total")
    assert total["exit_code"] == ExitCode.REJECTED and total["level"] == "ERROR"
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 5 and summary[-1].startswith("total: 4 view(s)")
    assert summary[0].startswith("merchant_chargeback_features: rejected, ")

    with open_store(url) as store:
        assert read_all(store, merchant, sorted(rows)) == dict.fromkeys(sorted(rows))
        assert store.get_watermark(merchant.name) is None
        for name in VIEWS[1:]:
            other = registry.view(name)
            assert_store_holds(store, other, expected_rows(copy.duckdb_path, other))
        (record,) = [r for r in store.list_loads() if r.view == merchant.name]
        assert record.outcome == "rejected" and record.rows_rejected == 2
        assert record.rows_written == 0 and record.watermark_after is None
        assert record.extra["failures"][0]["unexpected_count"] == 2

    # `loads` lists the same records (JSON and table)
    listed = run_cli("loads", "--online", url, "--json", env=copy.env)
    assert listed.returncode == 0, listed.stderr
    assert {(r["view"], r["outcome"]) for r in json.loads(listed.stdout)} == {
        ("merchant_chargeback_features", "rejected"),
        ("merchant_transaction_features", "success"),
        ("user_device_features", "success"),
        ("user_transaction_features", "success"),
    }
    table_out = run_cli("loads", "--online", url, env=copy.env)
    assert table_out.returncode == 0 and "rejected" in table_out.stdout


#: the gate cases' hand-written view of the user entity (test-only, like the sidecar suites'
#: variant view of that name): user_transaction_features' count and average as hand-written
#: features (the declared view itself holds tiles, whose gate is tests/loader/test_timelines.py)
GATE_VIEW = "user_profile_features"
GATE_FEATURES = ("user_7d_transaction_count", "avg_order_value_90d")


def _gate_registry(registry: Registry) -> Registry:
    """The demo registry plus GATE_VIEW: hand-written (no windowed declaration, no
    aggregations), the features and data tests of GATE_FEATURES as the yml declares them on
    user_transaction_features, and accepted_values declared on user_7d_transaction_count."""
    base = registry.view("user_transaction_features")
    features = tuple(
        dataclasses.replace(
            f,
            view=GATE_VIEW,
            aggregation=None,
            accepted_values=tuple(range(0, 60)) if f.name == "user_7d_transaction_count" else None,
        )
        for f in base.features
        if f.name in GATE_FEATURES
    )
    view = dataclasses.replace(
        base,
        name=GATE_VIEW,
        relation=f"main_features.{GATE_VIEW}",
        windowed=None,
        available_at="available_at",
        features=features,
        data_tests=tuple(t for t in base.data_tests if t.column in GATE_FEATURES),
    )
    assert not view.tiled
    assert {(t.column, t.name) for t in view.data_tests} >= {
        ("user_7d_transaction_count", "not_null"),
        ("avg_order_value_90d", "accepted_range"),
    }
    model = f"online_{GATE_VIEW}"
    relation = dataclasses.replace(
        registry.relations["online_user_transaction_features"], alias=model
    )
    return dataclasses.replace(
        registry,
        views={**registry.views, GATE_VIEW: view},
        relations={**registry.relations, model: relation},
    )


# Each case breaks one rule on some rows of a 40-row online table: SQL expressions replacing
# columns on the broken rows, then the one expectation that must fail: its type and (part of)
# its arguments.
_MAX = sys.float_info.max
GATE_CASES: dict[str, tuple[dict[str, str], str, dict[str, object]]] = {
    "null key": (
        {"user_id": "null"},
        "expect_column_values_to_not_be_null", {"column": "user_id"},
    ),
    "empty key": (
        {"user_id": "''"},
        "expect_column_value_lengths_to_be_between", {"column": "user_id", "min_value": 1},
    ),
    "null feature time": (
        {"ts": "null"},
        "expect_column_values_to_not_be_null",
        {"column": f"{GATE_VIEW}__feature_at"},
    ),
    "as-of before feature time": (
        {"ver": "ts - interval 1 second"},
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": f"{GATE_VIEW}__as_of_at", "or_equal": True},
    ),
    "NaN": (
        {"avg": "'nan'::double"},
        "expect_column_values_to_be_between",
        {"column": "avg_order_value_90d", "min_value": -_MAX, "max_value": _MAX},
    ),
    "infinity": (
        {"avg": "'inf'::double"},
        "expect_column_values_to_be_between",
        {"column": "avg_order_value_90d", "min_value": -_MAX, "max_value": _MAX},
    ),
    "below the declared range": (
        {"avg": "-5.0"},
        "expect_column_values_to_be_between", {"column": "avg_order_value_90d", "min_value": 0},
    ),
    "not an accepted value": (
        {"cnt": "75"},
        "expect_column_values_to_be_in_set", {"column": "user_7d_transaction_count"},
    ),
    "null where the yml says not_null": (
        {"cnt": "null"},
        "expect_column_values_to_not_be_null", {"column": "user_7d_transaction_count"},
    ),
    "a string where the registry says bigint": (
        {"cnt": "'many'"},
        "expect_column_values_to_be_in_type_list", {"column": "user_7d_transaction_count"},
    ),
}  # fmt: skip


def _gate_table(path: Path, broken: dict[str, str], bad_rows: set[int]) -> None:
    """main_online.online_user_profile_features (40 users, rows in bad_rows broken) and
    a valid online_merchant_chargeback_features (5 merchants)."""
    exprs = {
        "user_id": "'usr_' || lpad(cast(i as varchar), 4, '0')",
        "cnt": "cast(i % 7 as bigint)",
        "avg": "cast(i * 1.25 as double)",
        "ts": "timestamp '2026-04-20' + to_seconds(i * 60)",
        "ver": "ts + interval 30 second",
    }
    bad = ", ".join(str(i) for i in sorted(bad_rows))

    def pick(name: str) -> str:
        if name not in broken:
            return exprs[name]
        usual = exprs[name]
        if broken[name].startswith("'") and name == "cnt":  # a text value: a varchar column
            usual = f"cast({usual} as varchar)"
        return f"case when i in ({bad}) then {broken[name]} else {usual} end"

    view = GATE_VIEW
    with duckdb.connect(str(path)) as con:
        con.sql("create schema main_online")
        con.sql(
            f"""create table main_online.online_{view} as
            with base as (select i, {exprs["ts"]} as ts from range(40) r(i))
            select {pick("user_id")} as user_id, timestamp '2026-05-01' as as_of_at,
                   {pick("cnt")} as user_7d_transaction_count,
                   {pick("avg")} as avg_order_value_90d,
                   {pick("ts")} as {view}__feature_at, {pick("ver")} as {view}__as_of_at,
                   least({pick("ver")}, timestamp '2026-05-01') as {view}__changed_at
            from base order by i"""
        )
        con.sql(
            """create table main_online.online_merchant_chargeback_features as
            select 'mer_' || i as merchant_id, timestamp '2026-05-01' as as_of_at,
                   cast(i / 10 as double) as merchant_chargeback_rate_30d,
                   timestamp '2026-04-25' as merchant_chargeback_features__feature_at,
                   timestamp '2026-04-26' as merchant_chargeback_features__as_of_at,
                   timestamp '2026-04-26' as merchant_chargeback_features__changed_at
            from range(5) r(i)"""
        )


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(GATE_CASES))
def test_gate_names_the_failed_expectation_and_its_rows(
    case: str,
    registry: Registry,
    sqlite_store: OnlineStore,
    tmp_path: Path,
) -> None:
    broken, expectation, arguments = GATE_CASES[case]
    bad_rows = {3, 17, 18, 31, 33, 35, 37}  # more than the 5 samples kept, over 3 chunks
    path = tmp_path / "gate.duckdb"
    _gate_table(path, broken, bad_rows)
    gate_registry = _gate_registry(registry)
    names = [GATE_VIEW, "merchant_chargeback_features"]
    sources = plan_views(gate_registry, names)
    report = load(sqlite_store, path, sources, now=NOW, validation_chunk_rows=16, batch_rows=8)
    assert report.exit_code == ExitCode.REJECTED
    users, merchants = report.views
    assert (users.outcome, users.rows_read, users.rows_written) == ("rejected", 40, 0)
    if expectation == "expect_column_values_to_be_in_type_list":
        # a column-level check: every row of the view is refused, GE reports the dtype; the
        # column's value checks (range, accepted values) cannot hold on text either
        (failure,) = [f for f in users.failures if f.check.expectation == expectation]
        assert {f.check.kwargs["column"] for f in users.failures} == {arguments["column"]}
        assert users.rows_rejected == failure.unexpected_count == 40
        assert failure.observed == "str"
        offending = list(range(40))
    else:
        (failure,) = users.failures
        assert users.rows_rejected == failure.unexpected_count == len(bad_rows)
        offending = sorted(bad_rows)
    assert failure.check.expectation == expectation
    assert {k: failure.check.kwargs.get(k) for k in arguments} == arguments
    # the samples are the first 5 offending rows (identified by an unbroken column)
    if "user_id" in broken:
        start = dt.datetime(2026, 4, 20)
        numbers = [
            (dt.datetime.fromisoformat(s[f"{GATE_VIEW}__feature_at"]) - start)
            // dt.timedelta(minutes=1)
            for s in failure.samples
        ]
    else:
        numbers = [int(s["user_id"][4:]) for s in failure.samples]
    assert numbers == offending[:5]
    if case == "NaN":
        assert {s["avg_order_value_90d"] for s in failure.samples} == {"nan"}
    # nothing of the rejected view is written, all of the other view is
    keys = [(f"usr_{i:04d}",) for i in range(40)]
    view = gate_registry.view(GATE_VIEW)
    assert set(read_all(sqlite_store, view, keys).values()) == {None}
    assert sqlite_store.get_watermark(view.name) is None
    assert (merchants.outcome, merchants.rows_written) == ("success", 5)
    assert sqlite_store.get_watermark(merchants.view) is not None
    outcomes = {r.view: r.outcome for r in sqlite_store.list_loads()}
    assert outcomes == {view.name: "rejected", merchants.view: "success"}


def test_a_valid_table_passes_every_check(
    registry: Registry, sqlite_store: OnlineStore, tmp_path: Path
) -> None:
    """The gate's table with nothing broken loads (so the cases above fail for their break)."""
    path = tmp_path / "gate.duckdb"
    _gate_table(path, {}, {0})
    gate_registry = _gate_registry(registry)
    sources = plan_views(gate_registry, [GATE_VIEW])
    report = load(sqlite_store, path, sources, now=NOW, validation_chunk_rows=16, batch_rows=8)
    assert _counts(report) == {GATE_VIEW: ("success", 40, 40, 0, 0, 0)}
    view = gate_registry.view(GATE_VIEW)
    got = read_all(sqlite_store, view, [("usr_0039",)])[("usr_0039",)]
    assert got is not None and math.isclose(float(got.values["avg_order_value_90d"]), 39 * 1.25)


# --- errors: clear message, exit code, nothing written ---------------------------------------


def _assert_one_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    (line,) = json_lines(proc.stderr)
    assert (line["level"], line["event"], line["exit_code"]) == ("ERROR", "load.error", code)
    assert text in line["message"], line["message"]
    assert proc.stdout == ""


@contextlib.contextmanager
def password_redis(workdir: Path, password: str) -> Iterator[int]:
    """A redis-server requiring a password, on a free port."""
    workdir.mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_errors_have_exit_codes_and_write_nothing(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    env = demo_warehouse.env
    now = ("--now", "2026-05-01")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    _assert_one_error(
        run_cli("load", "--online", closed, *now, env=env),
        ExitCode.STORE_UNAVAILABLE,
        "cannot reach",
    )
    with password_redis(tmp_path / "auth", "s3cret-pw") as port:
        for credentials in ("default:wrong-password@", ""):
            proc = run_cli(
                "load", "--online", f"redis://{credentials}127.0.0.1:{port}/0", *now, env=env
            )
            _assert_one_error(proc, ExitCode.STORE_UNAVAILABLE, "authentication failed")
            assert "wrong-password" not in proc.stderr
    url = f"sqlite:///{tmp_path / 'online.db'}"
    _assert_one_error(
        run_cli("load", "--online", url, *now, env=env),
        ExitCode.STORE_NOT_INITIALIZED,
        "init-store",
    )
    assert run_cli("init-store", "--online", url, env=env).returncode == 0
    again = run_cli("init-store", "--online", url, env=env)
    assert again.returncode == 0 and again.stdout.startswith("initialized sqlite:///")
    _assert_one_error(
        run_cli("load", "--online", url, "--views", "user_device_features,nope", env=env),
        ExitCode.USAGE,
        "unknown feature view 'nope'",
    )
    _assert_one_error(
        run_cli("load", "--online", "mysql://x", env=env),
        ExitCode.USAGE,
        "unsupported online store",
    )
    _assert_one_error(
        run_cli("load", "--online", url, "--now", "yesterday", env=env), ExitCode.ERROR, "yesterday"
    )
    missing = {**env, "FEATURESTORE_DUCKDB_PATH": str(tmp_path / "none.duckdb")}
    _assert_one_error(
        run_cli("load", "--online", url, *now, env=missing), ExitCode.ERROR, "does not exist"
    )
    # a missing relation of one view: nothing is written for any view
    copy = copy_warehouse(demo_warehouse, tmp_path / "wh")
    with duckdb.connect(str(copy.duckdb_path)) as con:
        con.execute("drop table main_online.online_user_transaction_features")
    _assert_one_error(
        run_cli("load", "--online", url, *now, env=copy.env),
        ExitCode.ERROR,
        "online_user_transaction_features",
    )
    text = run_cli("load", "--online", url, *now, "--log-format", "progress", env=copy.env)
    assert text.returncode == ExitCode.ERROR
    assert text.stderr.strip().splitlines() == [
        next(line for line in text.stderr.splitlines() if line.startswith("Error: "))
    ]
    with open_store(url) as store:
        assert store.list_loads() == []
        for view in VIEWS:
            assert store.get_watermark(view) is None
    with sqlite3.connect(tmp_path / "online.db") as con:  # no record at all
        assert con.execute("select count(*) from online_records").fetchall() == [(0,)]
    not_initialized = run_cli("loads", "--online", f"sqlite:///{tmp_path / 'other.db'}", env=env)
    assert not_initialized.returncode == ExitCode.STORE_NOT_INITIALIZED
    assert not_initialized.stderr.startswith("Error: ")
    with open_store(url) as store, pytest.raises(WarehouseError, match="does not exist"):
        load(store, tmp_path / "none.duckdb", [])


def test_store_going_away_mid_load_stops_the_run(
    demo_warehouse: Warehouse, registry: Registry, tmp_path: Path
) -> None:
    """A store that fails during a view: the run stops with exit code 4, the view is
    recorded as failed where possible, its watermark is not advanced."""
    from tests.servers import redis_server

    with redis_server(tmp_path / "redis") as server:
        store = open_store(f"{server.url}?namespace=gone")
        store.initialize()
        sources = plan_views(registry, None)
        original = store.write
        calls = {"n": 0}

        def write_then_die(
            records: Any, *, now: dt.datetime | None = None, replace: bool = False
        ) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                server.kill()
            return original(records, now=now, replace=replace)

        store.write = write_then_die  # type: ignore[method-assign]
        report = load(store, demo_warehouse.duckdb_path, sources, now=NOW, batch_rows=400)
        store.close()
    assert [s.name for s in sources] == list(VIEWS)
    assert report.exit_code == ExitCode.STORE_UNAVAILABLE
    assert report.aborted is not None and "cannot reach" in report.aborted[1]
    # merchants' rates fit in one write; the second write (merchant_transaction_features'
    # tile sets) found the store gone and the run stopped there, without advancing that
    # view's watermark
    assert [r.outcome for r in report.views] == ["success", "failed"]
    assert report.views[1].watermark_after is None
    assert "cannot reach" in report.views[1].message
    with pytest.raises(StoreUnavailable):
        store.get_watermark(sources[0].name)


# --- output: a progress bar on a terminal ----------------------------------------------------


@pytest.mark.slow
def test_progress_bar_on_a_terminal(demo_warehouse: Warehouse, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'online.db'}"
    assert run_cli("init-store", "--online", url, env=demo_warehouse.env).returncode == 0
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [FEATURESTORE, "load", "--online", url, "--views", "user_device_features",
         "--now", "2026-05-01", "--batch-rows", "100"],
        cwd=REPO,
        env={**os.environ, **demo_warehouse.env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )  # fmt: skip
    os.close(follower)
    terminal = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, terminal.decode(errors="replace")
    text = terminal.decode(errors="replace")
    assert "user_device_features validate" in text and "user_device_features write" in text
    assert "rows/s" in text or "rows]" in text  # tqdm's rate display
    assert "{" not in text  # no JSON log lines on a terminal
    lines = out.strip().splitlines()
    assert lines[0].startswith("user_device_features: success, ")
    assert lines[1].startswith("total: 1 view(s)")


# --- the benchmark still runs ------------------------------------------------------------------


@pytest.mark.slow
def test_bench_load_online_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load_online.py"), "--entities", "3000",
         "--small-entities", "400", "--runs", "1", "--stores", "redis",
         "--workdir", str(tmp_path / "bench")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "bench" / "load_online-results.json").read_text())
    (loaded,) = results["redis"]["loader"]
    (ceiling,) = results["redis"]["ceiling"]
    assert loaded["rows"] == loaded["written"] == ceiling["rows"] == 3000
    assert results["checks"]["ratio_to_ceiling"] > 0
    label = "| Redis: loader, {} process(es) (newer-wins script, validation) | 3,000 | 1 |"
    assert label.format(1) in proc.stdout and label.format(2) in proc.stdout
    (split,) = results["redis"]["loader_2"]
    assert split["rows"] == split["written"] == 3000
    (phases,) = results["redis"]["phases"]
    assert set(phases["phases"]) == {"read", "validate", "build", "write"}
    assert phases["server_us_per_script_call"] > 0
