"""Repairing a store after a bad load: ``load --full-refresh`` writes in replace mode, so the
view's records become the warehouse's latest whatever their ``(ts, ver)`` order (a record
from year 9999 no longer wins), a row already expired removes its record, the watermark is
set back to what the warehouse holds, and other views of the same key are untouched. On
every store (SQLite file, real redis-server, moto's DynamoDB server), then once through the
real command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.exit_codes import ExitCode
from featurestore.online.layout import Record, redis_key
from featurestore.online.redis_store import RedisStore
from featurestore.online.store import OnlineStore, StoredRecord, ViewRead
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from loader import load, plan_views
from tests.loader.tables import (
    ENTITY,
    EPOCH,
    FEATURE,
    NOW,
    TTL_S,
    VIEW,
    KeyRow,
    key_of,
    key_rows,
    write_rows,
)
from tests.warehouse import REPO, Warehouse

FAR_TS = (dt.datetime(9999, 12, 31) - EPOCH) // dt.timedelta(microseconds=1)
OTHER = "merchant_profile_features"  # a second view of the merchant entity, written directly
OTHER_READ = ViewRead(OTHER, {"merchant_segment": "string"})
FEATURESTORE = str(Path(sys.executable).parent / "featurestore")


def bad_record(key: str, view: str = VIEW) -> Record:
    """What a load of rows from a bad clock leaves: year 9999, never expiring."""
    values: dict[str, object] = (
        {FEATURE: 0.999} if view == VIEW else {"merchant_segment": "from-9999"}
    )
    return Record(ENTITY, (key,), view, FAR_TS, FAR_TS, FAR_TS // 1_000_000 + TTL_S, values)


def read(store: OnlineStore, registry: Registry, keys: list[str]) -> dict[str, object]:
    view = registry.view(VIEW)
    views = [ViewRead(VIEW, {f.name: f.value_type for f in view.features}), OTHER_READ]
    got = store.read(ENTITY, [(k,) for k in keys], views, now=NOW)
    return {key: row for key, row in zip(keys, got, strict=True)}


def record_of(row: KeyRow) -> StoredRecord:
    return StoredRecord(ts=row.ts, ver=row.ver, exp=row.exp, values=row.values)


def far(record: Record) -> StoredRecord:
    return StoredRecord(ts=record.ts, ver=record.ver, exp=record.exp, values=record.values)


def make_bad_store(store: OnlineStore, rows: list[KeyRow]) -> None:
    """A store after a bad load: 9999 records over some keys (one whose warehouse row has
    expired by now, one the warehouse does not hold), the watermark in 9999, and a second
    view of one key that is not the loader's to touch."""
    keys = [rows[1].key, rows[2].key, rows[5].key, "mer_gone"]
    written = store.write([bad_record(k) for k in keys] + [bad_record(rows[1].key, OTHER)])
    assert written.written == 5
    store.set_watermark(VIEW, FAR_TS)


@pytest.mark.slow
def test_full_refresh_replaces_a_view_after_a_bad_load(
    store: OnlineStore, registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(8)
    expired = KeyRow(key_of(5), dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 2), 0.625)
    rows[5] = expired  # ts + 30 days < NOW
    write_rows(path, rows)
    sources = plan_views(registry, [VIEW])
    first = load(store, path, sources, now=NOW)
    assert first.views[0].rows_expired == 1
    make_bad_store(store, rows)
    keys = [row.key for row in rows] + ["mer_gone"]

    # the failure the repair is for: newer wins keeps 9999, an incremental load reads nothing
    stuck = load(store, path, sources, now=NOW)
    assert (stuck.exit_code, stuck.views[0].rows_read) == (ExitCode.OK, 0)
    assert read(store, registry, ["mer_0001"])["mer_0001"][VIEW] == far(bad_record("mer_0001"))

    repair = load(store, path, sources, now=NOW, full_refresh=True, batch_rows=3)
    (result,) = repair.views
    assert (result.outcome, result.rows_read, result.rows_expired) == ("success", 8, 1)
    assert (result.rows_written, result.rows_skipped) == (7, 0)
    live = [row for row in rows if row is not expired]
    assert result.watermark_after == max(row.ver for row in rows)
    assert store.get_watermark(VIEW) == max(row.ver for row in rows)
    got = read(store, registry, keys)
    assert {key: got[key][VIEW] for key in keys} == {
        **{row.key: record_of(row) for row in live},
        "mer_0005": None,  # expired in the warehouse: its 9999 record is removed
        "mer_gone": far(bad_record("mer_gone")),  # not in the warehouse: left as it is
    }
    assert got["mer_0001"][OTHER] == far(bad_record("mer_0001", OTHER))  # untouched
    assert {key: got[key][OTHER] for key in keys if key != "mer_0001"} == dict.fromkeys(
        (k for k in keys if k != "mer_0001"), None
    )
    (last, *_) = store.list_loads()
    assert (last.outcome, last.extra["full_refresh"], last.watermark_after) == (
        "success",
        True,
        max(row.ver for row in rows),
    )
    if isinstance(store, RedisStore):
        client, ns = store.client, store.namespace
        # a repaired hash expires with its record again; the hash of the removed record is
        # gone; the one holding the other view lives as long as that view
        shift = int(dt.datetime.now(dt.UTC).timestamp()) - int(NOW.timestamp())
        when = client.pexpiretime(redis_key(ENTITY, ("mer_0002",), ns)) / 1000
        assert abs(when - (rows[2].exp + shift)) <= 5
        assert client.exists(redis_key(ENTITY, ("mer_0005",), ns)) == 0
        when = client.pexpiretime(redis_key(ENTITY, ("mer_0001",), ns)) / 1000
        assert abs(when - (bad_record("mer_0001").exp + shift)) <= 5

    # the watermark is back: a later row is loaded incrementally again
    later = [*rows, KeyRow("mer_0100", dt.datetime(2026, 4, 30), dt.datetime(2026, 4, 30), 0.25)]
    write_rows(path, later)
    nxt = load(store, path, sources, now=NOW)
    assert (nxt.views[0].rows_read, nxt.views[0].rows_written) == (1, 1)
    assert read(store, registry, ["mer_0100"])["mer_0100"][VIEW] == record_of(later[-1])

    # a second full refresh changes nothing (idempotent, e.g. after a crash)
    before = read(store, registry, [*keys, "mer_0100"])
    assert load(store, path, sources, now=NOW, full_refresh=True).exit_code == ExitCode.OK
    assert read(store, registry, [*keys, "mer_0100"]) == before


def test_replace_mode_writes_whatever_the_order(store: OnlineStore) -> None:
    """The store contract of ``write(..., replace=True)``: an older record replaces a newer
    one, an equal one is written again, an expired one removes the stored record of its
    view only, and newer-wins writes still skip older records afterwards."""
    newer = Record("user", ("u1",), "va", 2_000_000, 2_000_000, 4_102_444_800, {"x": 2})
    older = Record("user", ("u1",), "va", 1_000_000, 1_000_000, 4_102_444_800, {"x": 1})
    other = Record("user", ("u1",), "vb", 5_000_000, 5_000_000, 4_102_444_800, {"y": 7})
    gone = Record("user", ("u1",), "va", 1_000_000, 1_000_000, 1, {"x": 3})  # expired
    va, vb = ViewRead("va", {"x": "int"}), ViewRead("vb", {"y": "int"})

    def stored() -> dict[str, StoredRecord | None]:
        return store.read("user", [("u1",)], [va, vb], now=NOW)[0]

    assert store.write([newer, other], now=NOW).written == 2
    assert store.write([older], now=NOW).skipped_older == 1
    assert stored()["va"] == StoredRecord(2_000_000, 2_000_000, 4_102_444_800, {"x": 2})
    result = store.write([older], now=NOW, replace=True)
    assert (result.written, result.skipped_older) == (1, 0)
    assert stored()["va"] == StoredRecord(1_000_000, 1_000_000, 4_102_444_800, {"x": 1})
    assert store.write([older], now=NOW, replace=True).written == 1  # equal: written again
    assert store.write([newer], now=NOW).written == 1  # newer wins as before
    result = store.write([gone], now=NOW, replace=True)
    assert (result.written, result.skipped_older) == (0, 0)
    assert stored() == {
        "va": None,
        "vb": StoredRecord(5_000_000, 5_000_000, 4_102_444_800, {"y": 7}),
    }
    assert store.write([gone], now=NOW).written == 0  # newer wins: never written
    assert store.write([gone], now=NOW, replace=True).written == 0  # nothing to remove


@pytest.mark.slow
def test_full_refresh_from_the_command_line(
    demo_warehouse: Warehouse, registry: Registry, tmp_path: Path
) -> None:
    """The documented repair: `featurestore load --full-refresh --views <view>`."""
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(6)
    write_rows(path, rows)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    with open_store(url) as store:
        store.initialize()
        assert load(store, path, plan_views(registry, [VIEW]), now=NOW).exit_code == 0
        make_bad_store(store, rows)
    env = {
        **os.environ,
        **demo_warehouse.env,
        "FEATURESTORE_DUCKDB_PATH": str(path),
        "PYTHONPATH": str(REPO),
    }
    command = [FEATURESTORE, "load", "--online", url, "--now", "2026-05-01T00:00:00Z"]
    stuck = subprocess.run(
        [*command, "--views", VIEW], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert stuck.returncode == 0 and f"{VIEW}: success, 0 read" in stuck.stdout
    fixed = subprocess.run(
        [*command, "--full-refresh", "--views", VIEW],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert fixed.returncode == 0, fixed.stderr
    (end,) = [json.loads(line) for line in fixed.stderr.splitlines() if '"view.end"' in line]
    assert (end["rows_read"], end["rows_written"], end["rows_skipped"]) == (6, 6, 0)
    with open_store(url) as store:
        keys = [row.key for row in rows]
        got = read(store, registry, keys)
        assert {k: got[k][VIEW] for k in keys} == {r.key: record_of(r) for r in rows}
        assert store.get_watermark(VIEW) == max(row.ver for row in rows)
