"""The embedded online store: one SQLite file in WAL mode (no server; for local use and the
quickstart). Newer-wins is a conditional upsert on the ``(ts, ver)`` row value; a replace-mode
write (``write(..., replace=True)``) is the same upsert without the condition, and a delete
of the rows of records already expired, all of a batch in one transaction. The upsert sets
the ``timeline`` column with the rest of the row (NULL for a record without one), and a
read selects it in the same query.

Layout version 1 created ``online_records`` without ``timeline``: :meth:`SQLiteStore.initialize`
(``featurestore init-store``) adds the column to such a file (idempotent), and until then
``check``, ``read`` and ``write`` raise :class:`~featurestore.online.store.StoreNotInitialized`
saying so. A record whose row would exceed SQLite's ``SQLITE_LIMIT_LENGTH`` is refused with
:class:`~featurestore.online.store.RecordRefused` before the batch's transaction starts.

:class:`ReadOnlySQLiteStore` is the same file opened for serving (``open_store(url,
read_only=True)``, what the sidecar does): the file is opened with SQLite's ``mode=ro``
(``file:<path>?mode=ro``), so the connection cannot write the database, and every write
method refuses with a one-line :class:`~featurestore.online.store.StoreError`. It is not
``immutable=1``: the loader may write while the sidecar serves, and a reader sees each
committed load.

What SQLite needs to read a file it cannot write (https://sqlite.org/wal.html, "Read-Only
Databases"; checked by ``tests/online/test_sqlite_read_only.py`` and
``tests/sidecar/test_read_only.py``):

- a WAL-mode file (what the loader leaves) needs its ``-shm`` file: readable if it exists
  (a loader has the file open), or created beside the file, so the *folder* must be
  writable by the reader while the file itself can be read-only (``chmod a-w``);
- on a read-only folder or file system (a read-only mount, an image layer) with no
  ``-shm``, a WAL-mode file cannot be opened at all: switch it to rollback-journal mode
  first (``pragma journal_mode=delete``, which also checkpoints the WAL into the file);
  such a file is read with no other file, and the next load turns it back to WAL.

A file that cannot be opened is :class:`~featurestore.online.store.StoreUnavailable`, with
this explained in the message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from featurestore.online.layout import Record, decode_value, encode_python_value, entity_token
from featurestore.online.sqlite_stream_tiles import STREAM_SCHEMA, apply_writes, read_partials_rows
from featurestore.online.store import (
    NO_BATCH,
    NO_EXPIRY,
    InvalidRecord,
    LoadRecord,
    OnlineStore,
    RecordRefused,
    StoredRecord,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    Unreachable,
    ViewRead,
    WriteResult,
    checked_timeline,
    load_record_of,
    record_where,
    watermark_of,
)
from featurestore.online.stream_tiles import DEFAULT_DEDUP_HORIZON_S, StreamApplied, StreamWrite

__all__ = ["ReadOnlySQLiteStore", "SQLiteStore"]

#: a record whose payload and timeline are longer than this is checked against the
#: connection's SQLITE_LIMIT_LENGTH (SQLite's bytes per string, blob or row: 1e9 by default,
#: lowered by :meth:`sqlite3.Connection.setlimit` only) before the batch is written
_LARGE = 100_000
#: bytes of a row besides its texts, at most: the record header (a varint per column) and
#: the three integers (https://sqlite.org/fileformat.html#record_format)
_ROW_OVERHEAD = 2 + 8 * 9 + 3 * 8

_SCHEMA = """
create table if not exists online_records (
    entity text not null,
    entity_key text not null,
    view text not null,
    ts integer not null,
    ver integer not null,
    exp integer not null,
    payload text not null,
    timeline blob,
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

#: layout version 1 created ``online_records`` without it (:meth:`SQLiteStore.initialize`
#: adds it)
_TIMELINE_COLUMN = "alter table online_records add column timeline blob"

_UPSERT = """
insert into online_records (entity, entity_key, view, ts, ver, exp, payload, timeline)
values (?, ?, ?, ?, ?, ?, ?, ?)
on conflict (entity, entity_key, view) do update set
    ts = excluded.ts, ver = excluded.ver, exp = excluded.exp, payload = excluded.payload,
    timeline = excluded.timeline
where (excluded.ts, excluded.ver) > (online_records.ts, online_records.ver)
    or typeof(online_records.ts) != 'integer' or typeof(online_records.ver) != 'integer'
"""
#: (a stored record whose ts or ver is not an integer is corrupt, read as an InvalidRecord:
#: any write replaces it)

#: replace mode: the upsert whatever the stored (ts, ver)
_REPLACE = """
insert into online_records (entity, entity_key, view, ts, ver, exp, payload, timeline)
values (?, ?, ?, ?, ?, ?, ?, ?)
on conflict (entity, entity_key, view) do update set
    ts = excluded.ts, ver = excluded.ver, exp = excluded.exp, payload = excluded.payload,
    timeline = excluded.timeline
"""
_DELETE = "delete from online_records where entity = ? and entity_key = ? and view = ?"


class SQLiteStore(OnlineStore):
    """Records in ``online_records`` of a SQLite file (WAL journal, synchronous=NORMAL)."""

    #: opened with ``mode=ro`` (:class:`ReadOnlySQLiteStore`)
    read_only: bool = False

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.description = f"sqlite:///{self.path}"
        self._local = threading.local()
        #: every thread's connection, so that :meth:`close` closes them all (a finished
        #: load then leaves the file checkpointed, with no -wal or -shm beside it)
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()

    # one connection per thread (sqlite3 connections are not shared across threads)
    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            if not self.path.parent.is_dir():
                raise StoreUnavailable(
                    f"{self.description}: folder {self.path.parent} does not exist"
                )
            con = self._open_read_only() if self.read_only else self._open()
            self._local.con = con
            with self._connections_lock:
                self._connections.append(con)
        return con

    def _open(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            con.execute("pragma journal_mode=wal")
            con.execute("pragma synchronous=normal")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        return con

    def _open_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection, probed (SQLite opens the file, and a WAL file's
        ``-shm``, on the first statement): the journal mode is left as the file has it."""
        if not self.path.is_file():
            raise StoreUnavailable(
                f"{self.description}: no such file (the store is opened read-only: create "
                "and fill it with `featurestore init-store` and `featurestore load`)"
            )
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            con = sqlite3.connect(
                uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False
            )
            con.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {self._why_unreadable(exc)}") from None
        return con

    def _why_unreadable(self, exc: sqlite3.Error) -> str:
        if _is_wal(self.path) and not Path(f"{self.path}-shm").exists():
            return (
                f"{exc}: a WAL-mode file opened read-only needs its -shm file, which cannot "
                f"be created in {self.path.parent} (read-only); make the folder writable "
                "for the sidecar, or switch the file to rollback-journal mode before "
                "making it read-only (`pragma journal_mode=delete`, see the README's "
                '"Store URLs")'
            )
        return str(exc)

    def initialize(self) -> None:
        """Create the tables, or upgrade a store of layout version 1 (no ``timeline``
        column) in place (``alter table ... add column``); idempotent."""
        con = self._connection()
        try:
            con.executescript(_SCHEMA)
            con.executescript(STREAM_SCHEMA)
            if not self._has_timeline_column(con):
                con.execute(_TIMELINE_COLUMN)
        except sqlite3.Error as exc:
            if "duplicate column" in str(exc):  # another writer upgraded it meanwhile
                return
            raise self._write_error(exc) from None

    @staticmethod
    def _has_timeline_column(con: sqlite3.Connection) -> bool:
        columns = con.execute("select name from pragma_table_info('online_records')")
        return any(name == "timeline" for (name,) in columns)

    def check(self) -> None:
        con = self._connection()
        found = {
            row[0] for row in con.execute("select name from sqlite_master where type = 'table'")
        }
        if "online_records" not in found:
            raise StoreNotInitialized(
                f"{self.description}: no online_records table (run `featurestore init-store`)"
            )
        if not self._has_timeline_column(con):
            raise StoreNotInitialized(self._version_1())

    def _version_1(self) -> str:
        return (
            f"{self.description}: the store has layout version 1 (online_records has no "
            "timeline column): run `featurestore init-store` to upgrade it"
        )

    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        now_s = _now_seconds(now)
        rows = []
        removed = []
        limit: int | None = None
        for record in records:
            timeline = checked_timeline(record, self.description)
            if record.exp <= now_s:
                if replace:
                    removed.append((record.entity, entity_token(record.key), record.view))
                continue
            payload = json.dumps(
                {
                    name: encode_python_value(value)
                    for name, value in record.values.items()
                    if value is not None
                },
                separators=(",", ":"),
            )  # ASCII (json escapes the rest): its length is its size in bytes
            size = len(payload) + (0 if timeline is None else len(timeline))
            if size > _LARGE:  # the row as SQLite encodes it: keys, header and integers too
                size += len(record.entity.encode()) + len(record.view.encode()) + _ROW_OVERHEAD
                size += len(entity_token(record.key).encode())
                limit = limit or self._connection().getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
                if size > limit:
                    raise RecordRefused(
                        f"{self.description}: {record_where(record)}: the record is {size} "
                        f"bytes as a row (payload {len(payload)}, timeline "
                        f"{len(timeline or b'')}), over SQLite's {limit} bytes per row "
                        "(SQLITE_LIMIT_LENGTH)"
                    )
            rows.append(
                (
                    record.entity,
                    entity_token(record.key),
                    record.view,
                    record.ts,
                    record.ver,
                    record.exp,
                    payload,
                    timeline,
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

    # --- stream partials (featurestore.online.sqlite_stream_tiles) -----------------------

    stream_partials = True

    def apply_stream(
        self,
        writes: Sequence[StreamWrite],
        *,
        now: dt.datetime | None = None,
        dedup_horizon_s: int = DEFAULT_DEDUP_HORIZON_S,
    ) -> StreamApplied:
        """:meth:`OnlineStore.apply_stream`: all writes in one transaction (the stream
        tables are created on first use, as ``featurestore init-store`` does)."""
        if not writes:
            return StreamApplied()
        con = self._connection()
        try:
            self._stream_tables(con)
            con.execute("begin immediate")
            applied = apply_writes(
                con, writes, now_s=_now_seconds(now), dedup_horizon_s=dedup_horizon_s
            )
            con.execute("commit")
        except sqlite3.Error as exc:
            con.execute("rollback") if con.in_transaction else None
            raise self._write_error(exc) from None
        return applied

    def read_stream(
        self, entity: str, keys: Sequence[tuple[str, ...]], view: str
    ) -> list[list[tuple[bytes, bytes]]]:
        """:meth:`OnlineStore.read_stream`: one query per 500 keys."""
        try:
            return read_partials_rows(self._connection(), entity, keys, view)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from None

    def record_stream_watermarks(self, view: str, watermarks: Mapping[str, int]) -> None:
        """:meth:`OnlineStore.record_stream_watermarks`: one upsert per partition."""
        if not watermarks:
            return
        con = self._connection()
        try:
            self._stream_tables(con)
            con.execute("begin immediate")
            con.executemany(
                "insert into stream_watermarks (view, partition, watermark) values (?, ?, ?) "
                "on conflict (view, partition) do update set watermark = excluded.watermark",
                [(view, partition, int(value)) for partition, value in watermarks.items()],
            )
            con.execute("commit")
        except sqlite3.Error as exc:
            con.execute("rollback") if con.in_transaction else None
            raise self._write_error(exc) from None

    def stream_watermarks(self, view: str) -> dict[str, int]:
        """:meth:`OnlineStore.stream_watermarks` (none before the stream tables exist)."""
        try:
            rows = (
                self._connection()
                .execute(
                    "select partition, watermark from stream_watermarks where view = ?", (view,)
                )
                .fetchall()
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        return {str(partition): int(watermark) for partition, watermark in rows}

    def _stream_tables(self, con: sqlite3.Connection) -> None:
        """Create the stream tables on this thread's first use (as ``featurestore
        init-store`` does)."""
        if not getattr(self._local, "stream_tables", False):
            con.executescript(STREAM_SCHEMA)
            self._local.stream_tables = True

    def _write_error(self, exc: sqlite3.Error) -> StoreError:
        """A failed write (records or bookkeeping) as the store error it stands for."""
        if "no column named timeline" in str(exc):
            return StoreNotInitialized(self._version_1())
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
    ) -> list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]:
        """:meth:`OnlineStore.read`: one query; ``deadline_s`` is accepted and not needed
        (a local file, no retries). A row whose ``ts``/``ver``/``exp`` is not an integer or
        whose payload is not a JSON object of encoded texts valid for their types is an
        :class:`InvalidRecord` (:func:`_decode_row`)."""
        now_s = _now_seconds(now)
        tokens = [entity_token(key) for key in keys]
        results: list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]] = [
            {view.view: None for view in views} for _ in keys
        ]
        if not tokens or not views:
            return results
        wanted = {view.view: view for view in views}
        unique = sorted(set(tokens))
        query = (
            "select entity_key, view, ts, ver, exp, payload, timeline from online_records "
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
            if "no such column: timeline" in str(exc):
                raise StoreNotInitialized(self._version_1()) from None
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        found: dict[tuple[str, str], StoredRecord | InvalidRecord] = {}
        for token, view_name, ts, ver, exp, payload, timeline in rows:
            record = _decode_row(wanted[view_name], ts, ver, exp, payload)
            if timeline is not None and type(record) is StoredRecord:
                record = dataclasses.replace(record, timeline=_bytes(timeline))
            found[(token, view_name)] = record
        for index, token in enumerate(tokens):
            for view_name in wanted:
                results[index][view_name] = found.get((token, view_name))
        for view in views:
            if view.streamed:
                self._add_stream(results, entity, keys, view)
        return results

    def _add_stream(
        self,
        results: list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]],
        entity: str,
        keys: Sequence[tuple[str, ...]],
        view: ViewRead,
    ) -> None:
        """Attach a streamed view's partials (the rules of :class:`ViewRead`)."""
        try:
            streams = read_partials_rows(self._connection(), entity, keys, view.view)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        for row, pairs in zip(results, streams, strict=True):
            found = row[view.view]
            if isinstance(found, StoredRecord):
                row[view.view] = dataclasses.replace(found, stream=tuple(pairs))
            elif found is None and pairs:
                row[view.view] = StoredRecord(
                    ts=0,
                    ver=NO_BATCH,
                    exp=NO_EXPIRY,
                    values=dict.fromkeys(view.features),
                    stream=tuple(pairs),
                )

    def get_watermark(self, view: str) -> int | None:
        row = (
            self._connection()
            .execute("select watermark from loader_watermarks where view = ?", (view,))
            .fetchone()
        )
        return None if row is None else watermark_of(row[0], view, self.description)

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
        return [load_record_of(row[0], self.description) for row in rows]

    def close(self) -> None:
        """Close the connection of every thread that opened one (call it when no thread
        uses the store any more)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()
        self._local = threading.local()


class ReadOnlySQLiteStore(SQLiteStore):
    """The store opened for serving (see the module docstring): reads as
    :class:`SQLiteStore` does, from a ``mode=ro`` connection; every write method raises
    :class:`~featurestore.online.store.StoreError` naming the store."""

    read_only = True

    def _refuse(self, what: str) -> StoreError:
        return StoreError(
            f"{self.description} is opened read-only (for serving): cannot {what}; "
            "`featurestore init-store` and `featurestore load` open it for writing"
        )

    def initialize(self) -> None:
        raise self._refuse("create its tables")

    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        raise self._refuse("write records")

    def set_watermark(self, view: str, watermark: int) -> None:
        raise self._refuse("set a watermark")

    def record_load(self, load: LoadRecord) -> None:
        raise self._refuse("record a load")

    def apply_stream(
        self,
        writes: Sequence[StreamWrite],
        *,
        now: dt.datetime | None = None,
        dedup_horizon_s: int = DEFAULT_DEDUP_HORIZON_S,
    ) -> StreamApplied:
        raise self._refuse("apply stream partials")

    def record_stream_watermarks(self, view: str, watermarks: Mapping[str, int]) -> None:
        raise self._refuse("record stream watermarks")


def _is_wal(path: Path) -> bool:
    """Whether the database file's header says WAL (bytes 18 and 19 are 2:
    https://sqlite.org/fileformat.html#the_database_header)."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02"


def _bytes(stored: object) -> bytes:
    """A stored timeline as bytes: a blob as it is; any other SQLite value (written by
    something else) as its text, left for the reader to find undecodable."""
    if isinstance(stored, bytes):
        return stored
    return str(stored).encode()


def _now_seconds(now: dt.datetime | None) -> int:
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _decode_row(
    spec: ViewRead, ts: object, ver: object, exp: object, payload: object
) -> StoredRecord | InvalidRecord:
    """One ``online_records`` row as a record, or the marker of why it cannot be one."""
    view = spec.view
    if type(ts) is not int or type(ver) is not int or type(exp) is not int:
        times = {"ts": ts, "ver": ver, "exp": exp}
        bad = [f"{name} = {value!r:.40}" for name, value in times.items() if type(value) is not int]
        return InvalidRecord(f"view {view}: not an integer: {', '.join(bad)}")
    try:
        encoded = json.loads(payload) if isinstance(payload, str | bytes) else None
    except ValueError:
        encoded = None
    if not isinstance(encoded, dict):
        return InvalidRecord(f"view {view}: the payload is not a JSON object: {payload!r:.60}")
    values: dict[str, object] = {}
    for feature, value_type in spec.features.items():
        text = encoded.get(feature)
        if text is not None and not isinstance(text, str):
            return InvalidRecord(f"view {view}: {feature} = {text!r:.40} is not an encoded text")
        try:
            values[feature] = decode_value(text, value_type)
        except ValueError as exc:
            return InvalidRecord(f"view {view}: {feature}: {exc}")
    return StoredRecord(ts=ts, ver=ver, exp=exp, values=values)
