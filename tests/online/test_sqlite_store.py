"""The embedded store's own rules (featurestore/online/sqlite_store.py) beside the contract
suite: a store created by layout version 1 (no ``timeline`` column) is refused with a clear
"run featurestore init-store" until ``featurestore init-store`` (run as a subprocess)
upgrades it in place, keeping its records; the upgrade is idempotent; SQLite's length limit
is enforced per record before anything of a batch is written."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.exit_codes import ExitCode
from featurestore.online.layout import Record
from featurestore.online.sqlite_store import ReadOnlySQLiteStore, SQLiteStore
from featurestore.online.store import RecordRefused, StoredRecord, StoreNotInitialized, ViewRead
from tests.warehouse import REPO

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
NOW_US = NOW_S * 1_000_000
VIEW = ViewRead("v", {"count": "int"})
FEATURESTORE = str(Path(sys.executable).parent / "featurestore")

#: what layout version 1 created (the schema of the release before timelines), verbatim
VERSION_1 = """
create table online_records (
    entity text not null,
    entity_key text not null,
    view text not null,
    ts integer not null,
    ver integer not null,
    exp integer not null,
    payload text not null,
    primary key (entity, entity_key, view)
) without rowid;
create table loader_watermarks (view text primary key, watermark integer not null);
create table loader_loads (
    load_id text not null,
    view text not null,
    started_at text not null,
    record text not null,
    primary key (load_id, view)
);
insert into online_records values ('user', 'old', 'v', 5, 6, 1900000000, '{"count":"41"}');
insert into loader_watermarks values ('v', 6);
"""


def version_1_store(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(VERSION_1)
    con.close()


def init_store(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEATURESTORE, "init-store", "--online", f"sqlite:///{path}"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def columns(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [row[1] for row in con.execute("pragma table_info(online_records)")]
    finally:
        con.close()


def test_a_version_1_store_is_refused_clearly_until_init_store_upgrades_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "online.db"
    version_1_store(path)
    store = SQLiteStore(path)
    new = Record("user", ("new",), "v", NOW_US, NOW_US, NOW_S + 60, {"count": 1}, b"[]")
    plain = Record("user", ("new",), "v", NOW_US, NOW_US, NOW_S + 60, {"count": 1})
    message = r"layout version 1 .*timeline.*run `featurestore init-store`"
    for attempt in (
        store.check,
        lambda: store.write([new], now=NOW),
        lambda: store.write([plain], now=NOW),  # with no timeline too: the column is missing
        lambda: store.write([plain], now=NOW, replace=True),
        lambda: store.read("user", [("old",)], [VIEW], now=NOW),
    ):
        with pytest.raises(StoreNotInitialized, match=message) as caught:
            attempt()
        assert caught.value.exit_code == ExitCode.STORE_NOT_INITIALIZED
        assert str(path) in str(caught.value)
    reader = ReadOnlySQLiteStore(path)  # the sidecar's view of the same file
    with pytest.raises(StoreNotInitialized, match=message):
        reader.read("user", [("old",)], [VIEW], now=NOW)
    with pytest.raises(StoreNotInitialized, match=message):
        reader.check()
    reader.close()
    assert store.get_watermark("v") == 6  # bookkeeping is untouched by the layout change
    store.close()
    assert columns(path) == ["entity", "entity_key", "view", "ts", "ver", "exp", "payload"]

    upgraded = init_store(path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "initialized sqlite:///" in upgraded.stdout
    assert columns(path)[-1] == "timeline"
    store = SQLiteStore(path)
    store.check()
    old = StoredRecord(ts=5, ver=6, exp=1900000000, values={"count": 41}, timeline=None)
    assert store.read("user", [("old",)], [VIEW], now=NOW) == [{"v": old}]
    assert store.write([new], now=NOW).written == 1
    rows = store.read("user", [("new",), ("old",)], [VIEW], now=NOW)
    assert rows[0]["v"] == StoredRecord(NOW_US, NOW_US, NOW_S + 60, {"count": 1}, b"[]")
    assert rows[1]["v"] == old
    store.close()

    again = init_store(path)  # idempotent: nothing changes
    assert again.returncode == 0, again.stderr
    assert columns(path).count("timeline") == 1
    store = SQLiteStore(path)
    assert store.read("user", [("new",), ("old",)], [VIEW], now=NOW) == rows
    assert store.get_watermark("v") == 6
    store.close()


def test_initialize_on_a_new_file_and_twice(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    store = SQLiteStore(path)
    store.initialize()
    store.initialize()
    store.check()
    assert columns(path) == [
        "entity", "entity_key", "view", "ts", "ver", "exp", "payload", "timeline"
    ]  # fmt: skip
    store.close()


def test_a_record_over_sqlite_s_length_limit_is_refused_naming_it(tmp_path: Path) -> None:
    """SQLite refuses a row over SQLITE_LIMIT_LENGTH (here lowered on the connection, as
    an application may; 1e9 bytes by default) with "string or blob too big": the store
    refuses the record first, naming it, and writes nothing of the batch."""
    store = SQLiteStore(tmp_path / "online.db")
    store.initialize()
    limit = 200_000
    store._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    small = Record("user", ("a",), "v", NOW_US, NOW_US, NOW_S + 60, {"count": 1}, b"[]")
    # the row's other columns count too: a timeline a little under the limit is too big
    fits = Record("user", ("b",), "v", NOW_US, NOW_US, NOW_S + 60, {}, b"x" * (limit - 200))
    big = Record("user", ("c:1",), "v", NOW_US, NOW_US, NOW_S + 60, {}, b"x" * (limit - 10))
    with pytest.raises(RecordRefused, match=r"user \('c:1',\) view 'v'.*SQLITE_LIMIT_LENGTH"):
        store.write([small, big], now=NOW)
    assert store.read("user", [("a",)], [VIEW], now=NOW) == [{"v": None}]
    # without the check, SQLite itself refuses that row: the limit is real
    with pytest.raises(sqlite3.DataError, match="too big"):
        store._connection().execute(
            "insert into online_records values (?, ?, ?, ?, ?, ?, ?, ?)",
            ("user", "c%3A1", "v", NOW_US, NOW_US, NOW_S + 60, "{}", big.timeline),
        )
    assert store.write([small, fits], now=NOW).written == 2
    stored = store.read("user", [("b",)], [ViewRead("v", {})], now=NOW)[0]["v"]
    assert stored is not None and stored.timeline == fits.timeline
    store.close()
