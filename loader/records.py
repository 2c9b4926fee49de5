"""Arrow rows of an online relation -> :class:`featurestore.online.layout.Record` objects.

``ts`` = ``<view>__feature_at`` and ``ver`` = ``<view>__as_of_at`` as microseconds since the
epoch (UTC), ``exp`` = ``ts`` (whole seconds) + the view's TTL in seconds, ``key`` = the
entity key columns in registry order (as text), ``values`` = the view's features (``None``
for null). The validation gate has already refused null keys/timestamps, non-finite floats
and wrong types, so this conversion does not re-check them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.layout import Record
from loader.views import ViewSource

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
    """Records to write (unexpired at ``now``, unless kept), and how many rows were already
    expired."""

    records: list[Record]
    expired: int


def to_records(
    batch: pa.RecordBatch, source: ViewSource, now_seconds: int, *, keep_expired: bool = False
) -> Converted:
    """The batch's rows as records; rows whose ``exp`` <= ``now_seconds`` are counted in
    ``expired`` and left out, unless ``keep_expired`` (a replace-mode write, where an
    expired record removes the stored one)."""
    view = source.view
    entity, name = view.entity.name, view.name
    ts = micros_array(batch.column(source.ts_column))
    exp = pc.add(pc.divide(ts, 1_000_000), view.ttl_seconds)  # whole seconds: ts >= 0
    live = pc.greater(exp, now_seconds)
    expired = batch.num_rows - pc.sum(live).as_py() if batch.num_rows else 0
    if expired and not keep_expired:
        batch, ts, exp = batch.filter(live), ts.filter(live), exp.filter(live)
    keys = zip(*(_text(batch.column(key)) for key in view.keys), strict=True)
    features = view.feature_names()
    if features:
        rows: Iterable[tuple[object, ...]] = zip(
            *(batch.column(feature).to_pylist() for feature in features), strict=True
        )
    else:
        rows = [()] * batch.num_rows
    records = [
        Record(entity, key, name, ts_, ver, exp_, dict(zip(features, values, strict=True)))
        for key, ts_, ver, exp_, values in zip(
            keys,
            ts.to_pylist(),
            micros_array(batch.column(source.ver_column)).to_pylist(),
            exp.to_pylist(),
            rows,
            strict=True,
        )
    ]
    return Converted(records=records, expired=expired)


def _text(column: pa.Array) -> list[str]:
    """Key parts as text (layout: non-empty strings); integer keys as decimal digits."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values: list[str] = column.to_pylist()
        return values
    return [str(value) for value in column.to_pylist()]
