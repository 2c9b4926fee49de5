"""Arrow rows of an online relation -> :class:`featurestore.online.layout.Record` objects.

``ts`` = ``<view>__feature_at`` and ``ver`` = ``<view>__as_of_at`` as microseconds since the
epoch (UTC), ``exp`` = ``ts`` (whole seconds) + the view's TTL in seconds, ``key`` = the
entity key columns in registry order (as text), ``values`` = the view's features (``None``
for null). The validation gate has already refused null keys/timestamps, non-finite floats
and wrong types, so this conversion does not re-check them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.layout import Record
from loader.source import ViewSource

__all__ = ["Converted", "micros_array", "to_records"]


def micros_array(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A timestamp column as int64 microseconds since the epoch (UTC)."""
    if not pa.types.is_timestamp(column.type):
        raise TypeError(f"expected a timestamp column, got {column.type}")
    unit = column.type.unit
    if unit != "us":
        column = pc.cast(column, pa.timestamp("us", column.type.tz), safe=False)
    return pc.cast(column, pa.int64())


@dataclass
class Converted:
    """Records to write (unexpired at ``now``), and how many rows were already expired."""

    records: list[Record]
    expired: int


def to_records(batch: pa.RecordBatch, source: ViewSource, now_seconds: int) -> Converted:
    """The batch's rows as records; rows whose ``exp`` <= ``now_seconds`` are left out."""
    view = source.view
    entity = view.entity.name
    name = view.name
    ttl = view.ttl_seconds
    key_columns = [_text(batch.column(key)) for key in view.keys]
    keys: list[tuple[str, ...]] = list(zip(*key_columns, strict=True))
    ts_list: list[int] = micros_array(batch.column(source.ts_column)).to_pylist()
    ver_list: list[int] = micros_array(batch.column(source.ver_column)).to_pylist()
    features = view.feature_names()
    columns = [batch.column(feature).to_pylist() for feature in features]
    records: list[Record] = []
    append = records.append
    expired = 0
    for index, values in enumerate(zip(*columns, strict=True)):
        ts = ts_list[index]
        exp = ts // 1_000_000 + ttl
        if exp <= now_seconds:
            expired += 1
            continue
        append(
            Record(
                entity=entity,
                key=keys[index],
                view=name,
                ts=ts,
                ver=ver_list[index],
                exp=exp,
                values=dict(zip(features, values, strict=True)),
            )
        )
    return Converted(records=records, expired=expired)


def _text(column: pa.Array) -> list[str]:
    """Key parts as text (layout: non-empty strings); integer keys as decimal digits."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values: list[str] = column.to_pylist()
        return values
    return [str(value) for value in column.to_pylist()]
