"""Row checks the validation gate runs with Arrow instead of great_expectations: each
returns the positions (0-based, in the chunk) of a chunk's offending rows. Nulls pass unless
the check is about them (the not-null checks report them); a column of another type passes
(its type check reports it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loader.views import HOP_COLUMN, TILE_START_COLUMN, ViewSource

__all__ = [
    "changed_after_cutoff",
    "current_later_than",
    "mean_outside",
    "misaligned",
    "not_exact_number",
    "not_timestamp",
    "null_on_hop",
    "nulls",
    "scheduled_beyond",
    "sum_iff_count",
]


def _positions(mask: pa.Array | pa.ChunkedArray) -> list[int]:
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return []
    return [int(i) for i in pc.indices_nonzero(mask).to_pylist()]


def _naive(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if column.type.tz is not None:  # as ge_frame shows it: naive UTC
        column = column.cast(pa.timestamp(column.type.unit))
    return column


def _timestamps(table: pa.Table, *columns: str) -> list[pa.ChunkedArray] | None:
    """The columns as naive timestamps in microseconds, None if one is no timestamp (the
    type check reports it)."""
    out = []
    for name in columns:
        column = table[name]
        if not pa.types.is_timestamp(column.type):
            return None
        out.append(_naive(column).cast(pa.timestamp("us"), safe=False))
    return out


def nulls(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        return _positions(pc.is_null(table[column]))

    return offending


def not_timestamp(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        kind = table[column].type
        if pa.types.is_timestamp(kind) or pa.types.is_null(kind):
            return []
        return list(range(table.num_rows))

    return offending


def changed_after_cutoff(source: ViewSource) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        found = _timestamps(table, source.changed_column, source.cutoff_column)
        if found is None:
            return []
        changed, cutoff = found
        return _positions(pc.greater(changed, cutoff))

    return offending


def current_later_than(
    source: ViewSource, column: str, limit: dt.datetime
) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        found = _timestamps(table, column, source.ts_column, source.cutoff_column)
        if found is None:
            return []
        value, ts, cutoff = found
        current = pc.less_equal(ts, cutoff)
        later = pc.greater(value, pa.scalar(limit, pa.timestamp("us")))
        return _positions(pc.and_(current, later))

    return offending


def scheduled_beyond(
    source: ViewSource, column: str, horizon: dt.timedelta
) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        found = _timestamps(table, column, source.ts_column, source.cutoff_column)
        if found is None:
            return []
        value, ts, cutoff = found
        scheduled = pc.greater(ts, cutoff)
        end = pc.add(cutoff, pa.scalar(horizon, pa.duration("us")))
        return _positions(pc.and_(scheduled, pc.greater(value, end)))

    return offending


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(_naive(column).cast(pa.timestamp("us"), safe=False), pa.int64())


def misaligned(table: pa.Table) -> list[int]:
    start, hop = table[TILE_START_COLUMN], table[HOP_COLUMN]
    if not pa.types.is_timestamp(start.type) or not pa.types.is_integer(hop.type):
        return []
    hop_us = pc.multiply(pc.cast(hop, pa.int64()), 1_000_000)
    positive = pc.greater(hop_us, 0)  # other hops: refused by the hop's set check
    safe = pc.if_else(positive, hop_us, 1)
    starts = _micros(start)
    quotient = pc.divide(starts, safe)  # integer division: zero remainder iff aligned
    remainder = pc.subtract(starts, pc.multiply(quotient, safe))
    return _positions(pc.and_(positive, pc.not_equal(remainder, 0)))


def not_whole(column: str, seconds: int) -> Callable[[pa.Table], list[int]]:
    """The rows whose timestamp ``column`` is not a whole multiple of ``seconds`` since the
    epoch (a streamed view's cutoff must be a whole ingestion bucket)."""

    def offending(table: pa.Table) -> list[int]:
        values = table[column]
        if not pa.types.is_timestamp(values.type):
            return []
        micros = _micros(values)
        unit = seconds * 1_000_000
        remainder = pc.subtract(micros, pc.multiply(pc.divide(micros, unit), unit))
        return _positions(pc.fill_null(pc.not_equal(remainder, 0), False))

    return offending


def _on_hop(table: pa.Table, hop: int) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(table[HOP_COLUMN], hop), False)


def null_on_hop(column: str, hop: int) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        return _positions(pc.and_(_on_hop(table, hop), pc.is_null(table[column])))

    return offending


def not_exact_number(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        kind = table[column].type
        if pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
            return []
        return list(range(table.num_rows))

    return offending


def sum_iff_count(count: str, total: str, hop: int) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        kind = table[total].type
        if not pa.types.is_integer(table[count].type):
            return []
        if not (
            pa.types.is_decimal(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
        ):
            return []  # the type check reports it
        positive = pc.fill_null(pc.greater(table[count], 0), False)
        present = pc.is_valid(table[total])
        # a tile of events without a value holds (0, 0): a zero sum is "no sum" there. The zero
        # is a scalar of the column's own type (an int64 0 cast to decimal(18, 2) needs a
        # precision of 21 and fails)
        zero = pa.scalar(Decimal(0) if pa.types.is_decimal(kind) else 0, kind)
        nonzero = pc.fill_null(pc.not_equal(table[total], zero), False)
        wrong = pc.or_(pc.and_(positive, pc.invert(present)), pc.and_(pc.invert(positive), nonzero))
        return _positions(pc.and_(_on_hop(table, hop), wrong))

    return offending


def mean_outside(
    count: str, total: str, hop: int, low: Any, high: Any
) -> Callable[[pa.Table], list[int]]:
    """Rows of the hop whose tile mean ``sum / count`` is outside [low, high], compared as
    ``sum`` against ``bound * count`` exactly (Python decimals) on the rows with a count."""

    def offending(table: pa.Table) -> list[int]:
        if not pa.types.is_integer(table[count].type):
            return []
        on_hop = _on_hop(table, hop).to_pylist()
        counts, totals = table[count].to_pylist(), table[total].to_pylist()
        out = []
        for position, (here, n, s) in enumerate(zip(on_hop, counts, totals, strict=True)):
            if not here or not n or s is None or isinstance(s, float):
                continue
            value = Decimal(s)
            if (low is not None and value < Decimal(str(low)) * n) or (
                high is not None and value > Decimal(str(high)) * n
            ):
                out.append(position)
        return out

    return offending
