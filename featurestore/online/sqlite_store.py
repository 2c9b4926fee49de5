"""The embedded online store: one SQLite file in WAL mode (no server; for local use and the
quickstart). Newer-wins is a conditional upsert on the ``(ts, ver)`` row value; a replace-mode
write (``write(..., replace=True)``) is the same upsert without the condition, and a delete
of the rows of records already expired, all of a batch in one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from featurestore.online.layout import Record, decode_value, encode_python_value, entity_token
from featurestore.online.store import (
    LoadRecord,
    OnlineStore,
    StoredRecord,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    ViewRead,
    WriteResult,
)

__all__ = ["SQLiteStore"]

_SCHEMA = """
create table if not exists online_records (
    entity text not null,
    entity_key text not null,
    view text not null,
    ts integer not null,
    ver integer not null,
    exp integer not null,
    payload text not null,
    primary key (entity, entity_key, view)
) without rowid;
create table if not exists loader_watermarks (
    view text primary key,
    watermark integer not null
);
create table if not exists loader_loads (
    load_id text not null,
    view text not null,
    started_at text not null,
    record text not null,
    primary key (load_id, view)
);
"""

_UPSERT = """
insert into online_records (entity, entity_key, view, ts, ver, exp, payload)
values (?, ?, ?, ?, ?, ?, ?)
on conflict (entity, entity_key, view) do update set
    ts = excluded.ts, ver = excluded.ver, exp = excluded.exp, payload = excluded.payload
where (excluded.ts, excluded.ver) > (online_records.ts, online_records.ver)
"""
#: replace mode: the upsert whatever the stored (ts, ver)
_REPLACE = """
insert into online_records (entity, entity_key, view, ts, ver, exp, payload)
values (?, ?, ?, ?, ?, ?, ?)
on conflict (entity, entity_key, view) do update set
    ts = excluded.ts, ver = excluded.ver, exp = excluded.exp, payload = excluded.payload
"""
_DELETE = "delete from online_records where entity = ? and entity_key = ? and view = ?"


class SQLiteStore(OnlineStore):
    """Records in ``online_records`` of a SQLite file (WAL journal, synchronous=NORMAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.description = f"sqlite:///{self.path}"
        self._local = threading.local()

    # one connection per thread (sqlite3 connections are not shared across threads)
    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            if not self.path.parent.is_dir():
                raise StoreUnavailable(
                    f"{self.description}: folder {self.path.parent} does not exist"
                )
            try:
                con = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                con.execute("pragma journal_mode=wal")
                con.execute("pragma synchronous=normal")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.description}: {exc}") from None
            self._local.con = con
        return con

    def initialize(self) -> None:
        self._connection().executescript(_SCHEMA)

    def check(self) -> None:
        con = self._connection()
        found = {
            row[0] for row in con.execute("select name from sqlite_master where type = 'table'")
        }
        if "online_records" not in found:
            raise StoreNotInitialized(
                f"{self.description}: no online_records table (run `featurestore init-store`)"
            )

    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        now_s = _now_seconds(now)
        rows = []
        removed = []
        for record in records:
            if record.exp <= now_s:
                if replace:
                    removed.append((record.entity, entity_token(record.key), record.view))
                continue
            payload = {
                name: encode_python_value(value)
                for name, value in record.values.items()
                if value is not None
            }
            rows.append(
                (
                    record.entity,
                    entity_token(record.key),
                    record.view,
                    record.ts,
                    record.ver,
                    record.exp,
                    json.dumps(payload, separators=(",", ":")),
                )
            )
        if not rows and not removed:
            return WriteResult()
        con = self._connection()
        try:
            con.execute("begin immediate")
            before = con.total_changes
            con.executemany(_REPLACE if replace else _UPSERT, rows)
            written = con.total_changes - before
            con.executemany(_DELETE, removed)
            con.execute("commit")
        except sqlite3.Error as exc:
            con.execute("rollback") if con.in_transaction else None
            raise self._write_error(exc) from None
        return WriteResult(written=written, skipped_older=len(rows) - written)

    def _write_error(self, exc: sqlite3.Error) -> StoreError:
        """A failed write (records or bookkeeping) as the store error it stands for."""
        if "no such table" in str(exc):
            return StoreNotInitialized(f"{self.description}: {exc} (run `featurestore init-store`)")
        if "readonly" in str(exc):
            return StoreUnavailable(
                f"{self.description}: READONLY: the store cannot be written ({exc})"
            )
        return StoreUnavailable(f"{self.description}: {exc}")

    def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[dict[str, StoredRecord | None]]:
        """:meth:`OnlineStore.read`: one query; ``deadline_s`` is accepted and not needed
        (a local file, no retries)."""
        now_s = _now_seconds(now)
        tokens = [entity_token(key) for key in keys]
        results: list[dict[str, StoredRecord | None]] = [
            {view.view: None for view in views} for _ in keys
        ]
        if not tokens or not views:
            return results
        wanted = {view.view: view for view in views}
        unique = sorted(set(tokens))
        query = (
            "select entity_key, view, ts, ver, exp, payload from online_records "
            f"where entity = ? and view in ({','.join('?' * len(wanted))}) "
            f"and entity_key in (select value from json_each(?)) and exp > ?"
        )
        try:
            rows = (
                self._connection()
                .execute(query, (entity, *wanted, json.dumps(unique), now_s))
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        found: dict[tuple[str, str], StoredRecord] = {}
        for token, view_name, ts, ver, exp, payload in rows:
            spec = wanted[view_name]
            encoded = json.loads(payload)
            values = {
                feature: decode_value(encoded.get(feature), value_type)
                for feature, value_type in spec.features.items()
            }
            found[(token, view_name)] = StoredRecord(ts=ts, ver=ver, exp=exp, values=values)
        for index, token in enumerate(tokens):
            for view_name in wanted:
                results[index][view_name] = found.get((token, view_name))
        return results

    def get_watermark(self, view: str) -> int | None:
        row = (
            self._connection()
            .execute("select watermark from loader_watermarks where view = ?", (view,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    def set_watermark(self, view: str, watermark: int) -> None:
        try:
            self._connection().execute(
                "insert into loader_watermarks (view, watermark) values (?, ?) "
                "on conflict (view) do update set watermark = excluded.watermark",
                (view, watermark),
            )
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None

    def record_load(self, load: LoadRecord) -> None:
        try:
            self._connection().execute(
                "insert or replace into loader_loads (load_id, view, started_at, record) "
                "values (?, ?, ?, ?)",
                (load.load_id, load.view, load.started_at, json.dumps(dataclasses.asdict(load))),
            )
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None

    def list_loads(self, limit: int = 50) -> list[LoadRecord]:
        rows = (
            self._connection()
            .execute(
                "select record from loader_loads order by started_at desc, view limit ?", (limit,)
            )
            .fetchall()
        )
        return [LoadRecord(**json.loads(row[0])) for row in rows]

    def close(self) -> None:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _now_seconds(now: dt.datetime | None) -> int:
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())
