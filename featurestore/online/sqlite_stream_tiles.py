"""Stream partials in the embedded SQLite store (:mod:`featurestore.online.stream_tiles`,
"SQLite"): the tables and the SQL of one apply, run by
:class:`~featurestore.online.sqlite_store.SQLiteStore` in one transaction per call.

Per write and event, in order: an offset at or below the stored one of its partition is a
replay, an id already in ``stream_events`` a duplicate, else the id is inserted and each
partial added (an upsert ``units = units + excluded.units``). Then the partition's offset is
raised; a pruning write also deletes the ids older than the dedup horizon, the partials the
batch owns (bucket end <= the record's ``ver``) and the tiles that left every
window. SQLite has no key expiry: pruning is how rows go (the worker asks for it regularly),
and readers skip tiles outside the window anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from featurestore.online.layout import entity_token
from featurestore.online.stream_tiles import StreamApplied, StreamWrite, parse_partial_field

__all__ = ["STREAM_SCHEMA", "apply_writes", "read_partials_rows"]

STREAM_SCHEMA: Final = """
create table if not exists stream_partials (
    entity text not null,
    entity_key text not null,
    view text not null,
    field text not null,
    units integer not null,
    primary key (entity, entity_key, view, field)
) without rowid;
create table if not exists stream_offsets (
    entity text not null,
    entity_key text not null,
    view text not null,
    partition text not null,
    offset integer not null,
    primary key (entity, entity_key, view, partition)
) without rowid;
create table if not exists stream_events (
    entity text not null,
    entity_key text not null,
    view text not null,
    event_id text not null,
    ingested_s integer not null,
    primary key (entity, entity_key, view, event_id)
) without rowid;
create index if not exists stream_events_by_time
    on stream_events (entity, entity_key, view, ingested_s);
create table if not exists stream_watermarks (
    view text not null,
    partition text not null,
    watermark integer not null,
    primary key (view, partition)
) without rowid;
"""

_ADD = """
insert into stream_partials (entity, entity_key, view, field, units) values (?, ?, ?, ?, ?)
on conflict (entity, entity_key, view, field) do update set units = units + excluded.units
"""
_OFFSET = (
    "select offset from stream_offsets where entity = ? and entity_key = ? and view = ? "
    "and partition = ?"
)
_SET_OFFSET = """
insert into stream_offsets (entity, entity_key, view, partition, offset) values (?, ?, ?, ?, ?)
on conflict (entity, entity_key, view, partition) do update set offset = excluded.offset
"""
_REMEMBER = (
    "insert or ignore into stream_events (entity, entity_key, view, event_id, ingested_s) "
    "values (?, ?, ?, ?, ?)"
)
_FORGET = (
    "delete from stream_events where entity = ? and entity_key = ? and view = ? and ingested_s < ?"
)
_FIELDS = "select field from stream_partials where entity = ? and entity_key = ? and view = ?"
_DROP = "delete from stream_partials where entity = ? and entity_key = ? and view = ? and field = ?"
_VER = "select ver from online_records where entity = ? and entity_key = ? and view = ?"
_US: Final = 1_000_000


def apply_writes(
    con: sqlite3.Connection,
    writes: Sequence[StreamWrite],
    *,
    now_s: int,
    dedup_horizon_s: int,
) -> StreamApplied:
    """Apply the writes on ``con`` (inside the caller's transaction)."""
    total = StreamApplied()
    for write in writes:
        token = entity_token(write.key)
        where = (write.entity, token, write.view)
        fencing = all(event.offset is not None for event in write.events)
        stored: int | None = None
        if fencing:
            row = con.execute(_OFFSET, (*where, write.partition)).fetchone()
            stored = None if row is None else int(row[0])
        top = stored
        applied = duplicates = replayed = 0
        for event in write.events:
            offset = event.offset
            if fencing and offset is not None and stored is not None and offset <= stored:
                replayed += 1
            else:
                before = con.total_changes
                con.execute(_REMEMBER, (*where, event.event_id, event.ingested_us // _US))
                if con.total_changes == before:
                    duplicates += 1
                else:
                    con.executemany(
                        _ADD, [(*where, name, units) for name, units in event.additions]
                    )
                    applied += 1
            if fencing and offset is not None and (top is None or offset > top):
                top = offset
        if fencing and top is not None and top != stored:
            con.execute(_SET_OFFSET, (*where, write.partition, top))
        if write.prune:
            newest = max((event.ingested_us for event in write.events), default=now_s * _US)
            con.execute(_FORGET, (*where, newest // _US - dedup_horizon_s))
            _prune(con, where, write, now_s)
        total += StreamApplied(applied, duplicates, replayed)
    return total


def _prune(
    con: sqlite3.Connection, where: tuple[str, str, str], write: StreamWrite, now_s: int
) -> None:
    first_live = {hop: now_s - hop - longest + 1 for hop, longest in write.prune}
    row = con.execute(_VER, where).fetchone()
    cutoff = row[0] if row is not None and type(row[0]) is int else None
    dead = []
    for (name,) in con.execute(_FIELDS, where).fetchall():
        try:
            parsed = parse_partial_field(name)
        except ValueError:
            continue
        if parsed is None:
            continue
        bucket, hop, start = parsed[0], parsed[1], parsed[2]
        first = first_live.get(hop)
        if (cutoff is not None and bucket * _US <= cutoff) or (first is not None and start < first):
            dead.append((*where, name))
    con.executemany(_DROP, dead)


def read_partials_rows(
    con: sqlite3.Connection, entity: str, keys: Sequence[tuple[str, ...]], view: str
) -> list[list[tuple[bytes, bytes]]]:
    """Per key, the view's stored partials and offsets as (field, value) bytes pairs (the
    shape Redis returns); empty when the tables do not exist yet (no stream wrote)."""
    tokens = [entity_token(key) for key in keys]
    found: dict[str, list[tuple[bytes, bytes]]] = {token: [] for token in tokens}
    try:
        for start in range(0, len(tokens), 500):
            chunk = tokens[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = con.execute(
                "select entity_key, field, units from stream_partials where entity = ? and "
                f"view = ? and entity_key in ({marks})",
                (entity, view, *chunk),
            ).fetchall()
            for token, name, units in rows:
                found[token].append((str(name).encode(), str(units).encode()))
            rows = con.execute(
                "select entity_key, partition, offset from stream_offsets where entity = ? "
                f"and view = ? and entity_key in ({marks})",
                (entity, view, *chunk),
            ).fetchall()
            for token, partition, offset in rows:
                found[token].append((f"o:{partition}".encode(), str(offset).encode()))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return [[] for _ in tokens]
        raise
    return [found[token] for token in tokens]
