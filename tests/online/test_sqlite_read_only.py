"""The embedded store opened read-only (``open_store(url, read_only=True)``, what the
sidecar does; featurestore/online/sqlite_store.py): it reads what was written, never writes
(the connection is SQLite ``mode=ro`` and every write method refuses with a clear error),
sees each write a loader commits meanwhile, and serves from a folder nobody can write
(tests/read_only.py) when the file is in rollback-journal mode, or while a writer keeps
the WAL's ``-shm``; a WAL file alone there is refused with a message that says why."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import pytest

from featurestore.online.layout import Record
from featurestore.online.sqlite_store import ReadOnlySQLiteStore, SQLiteStore
from featurestore.online.store import LoadRecord, StoreError, StoreUnavailable, ViewRead
from featurestore.online.urls import open_store
from tests.read_only import read_only_folder

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
VIEW = ViewRead("v", {"count": "int", "label": "string"})


def record(key: str, ts: int, count: int) -> Record:
    return Record("user", (key,), "v", ts, ts, NOW_S + 3600, {"count": count, "label": key})


def fill(path: Path, records: list[Record]) -> None:
    """Write ``records`` as the loader does, then close (a WAL file with no -shm left)."""
    store = SQLiteStore(path)
    store.initialize()
    assert store.write(records, now=NOW).written == len(records)
    store.set_watermark("v", 7)
    store.close()


def values(store: SQLiteStore, keys: list[str]) -> list[dict[str, object] | None]:
    rows = store.read("user", [(k,) for k in keys], [VIEW], now=NOW)
    out = []
    for row in rows:
        found = row["v"]
        out.append(None if found is None else found.values)
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_only_store_reads_and_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    fill(path, [record("a", 10, 1), record("b", 10, 2)])
    before = digest(path)
    store = open_store(f"sqlite:///{path}", read_only=True)
    assert isinstance(store, ReadOnlySQLiteStore)
    store.check()
    assert values(store, ["a", "b", "c"]) == [
        {"count": 1, "label": "a"},
        {"count": 2, "label": "b"},
        None,
    ]
    assert store.get_watermark("v") == 7
    load = LoadRecord("l1", "v", store.description, "success", "t0", "t1", 7, 8)
    for attempt in (
        store.initialize,
        lambda: store.write([record("a", 20, 9)], now=NOW),
        lambda: store.set_watermark("v", 8),
        lambda: store.record_load(load),
    ):
        with pytest.raises(StoreError, match=r"is opened read-only \(for serving\): cannot"):
            attempt()
    # the connection itself cannot write (SQLite mode=ro), whatever a method tried
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._connection().execute("delete from online_records")
    store.close()
    assert digest(path) == before
    assert values(SQLiteStore(path), ["a"]) == [{"count": 1, "label": "a"}]


def test_a_missing_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    store = open_store(f"sqlite:///{path}", read_only=True)
    assert isinstance(store, ReadOnlySQLiteStore)
    with pytest.raises(StoreUnavailable, match="no such file"):
        store.check()
    assert not path.exists()
    fill(path, [record("a", 10, 1)])  # created later: the next call opens it
    assert values(store, ["a"]) == [{"count": 1, "label": "a"}]


def test_a_reader_sees_each_load_committed_while_it_serves(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    fill(path, [record("a", 10, 1)])
    reader = ReadOnlySQLiteStore(path)
    writer = SQLiteStore(path)
    assert values(reader, ["a"]) == [{"count": 1, "label": "a"}]
    writer.write([record("a", 20, 5), record("b", 20, 6)], now=NOW)
    assert values(reader, ["a", "b"]) == [{"count": 5, "label": "a"}, {"count": 6, "label": "b"}]
    writer.close()
    reader.close()


def test_a_read_only_folder_serves_a_rollback_journal_file(tmp_path: Path) -> None:
    source = tmp_path / "store"
    source.mkdir()
    path = source / "online.db"
    fill(path, [record("a", 10, 1), record("b", 10, 2)])
    assert sorted(p.name for p in source.iterdir()) == ["online.db"]  # WAL, checkpointed

    with read_only_folder(source) as folder:
        store = ReadOnlySQLiteStore(folder.path / "online.db")
        with pytest.raises(StoreUnavailable) as info:
            store.check()
        message = str(info.value)
        assert "needs its -shm file" in message and "journal_mode=delete" in message
        assert "\n" not in message
    # the documented way: rollback-journal mode before the folder is made read-only
    with sqlite3.connect(path) as con:
        assert con.execute("pragma journal_mode=delete").fetchone() == ("delete",)
    with read_only_folder(source) as folder:
        store = ReadOnlySQLiteStore(folder.path / "online.db")
        store.check()
        assert values(store, ["a", "b"]) == [
            {"count": 1, "label": "a"},
            {"count": 2, "label": "b"},
        ]
        store.close()
        assert sorted(p.name for p in folder.path.iterdir()) == ["online.db"]


def test_a_read_only_mount_serves_while_a_loader_writes_behind_it(tmp_path: Path) -> None:
    source = tmp_path / "store"
    source.mkdir()
    path = source / "online.db"
    fill(path, [record("a", 10, 1)])
    writer = SQLiteStore(path)
    writer.write([record("a", 20, 2)], now=NOW)  # the writer's connection keeps the -shm
    try:
        with read_only_folder(source) as folder:
            if not folder.source_writable:
                pytest.skip(f"the folder is read-only by {folder.how}: no writer behind it")
            store = ReadOnlySQLiteStore(folder.path / "online.db")
            assert values(store, ["a"]) == [{"count": 2, "label": "a"}]
            writer.write([record("a", 30, 3)], now=NOW)
            assert values(store, ["a"]) == [{"count": 3, "label": "a"}]
            store.close()
    finally:
        writer.close()


def test_close_closes_every_thread_s_connection(tmp_path: Path) -> None:
    """A load writes from several threads; once closed, the file is checkpointed and alone
    (what a read-only folder needs), whatever the threads' connections' lifetimes."""
    import threading

    path = tmp_path / "online.db"
    store = SQLiteStore(path)
    store.initialize()
    alive = threading.Event()
    threads = [
        threading.Thread(target=lambda n=n: store.write([record(f"k{n}", 10, n)], now=NOW))
        for n in range(3)
    ]
    keeper = threading.Thread(target=lambda: (store.check(), alive.wait(10)))
    keeper.start()  # a thread still alive, holding its connection
    for thread in threads:
        thread.start()
        thread.join()
    assert any(p.name.endswith("-wal") for p in tmp_path.iterdir())
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["online.db"]
    alive.set()
    keeper.join()
    assert values(ReadOnlySQLiteStore(path), ["k0", "k1", "k2"]) == [
        {"count": n, "label": f"k{n}"} for n in range(3)
    ]
