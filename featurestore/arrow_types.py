"""The Arrow type of each registry value type (what the DuckDB path returns), and a column
fetched from another warehouse conformed to it (:func:`conform_column`).

Integers of any width and ``NUMBER(p, 0)`` decimals become int64 for ``int``, floats and
decimals float64 for ``float``, any timestamp ``timestamp[us]`` in UTC without a time zone
for ``timestamp`` (an aware one keeps its instant; sub-microsecond digits are dropped),
large strings strings for ``string``, a column of nulls the wanted type. A column of another
kind is returned unchanged, so that the caller's check names it with its registry type.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from featurestore.data_types import ValueType

__all__ = ["ARROW_TYPES", "conform_column"]

#: the Arrow type of each registry value type
ARROW_TYPES: Final[dict[ValueType, pa.DataType]] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
}


def conform_column(column: pa.ChunkedArray, kind: ValueType | None) -> pa.ChunkedArray:
    """``column`` in the Arrow type of ``kind`` (``None``: unchanged); raises
    ``pa.ArrowInvalid`` when a value does not fit (an integer out of the int64 range)."""
    if kind is None:
        return column
    have, want = column.type, ARROW_TYPES[kind]
    if have == want:
        return column
    if pa.types.is_null(have):
        return column.cast(want)
    if kind == "timestamp" and pa.types.is_timestamp(have):
        if have.tz is not None:  # the instant stays, the zone goes: UTC wall time
            column = column.cast(pa.timestamp(have.unit))
        return column.cast(want, safe=False)  # ns -> us drops sub-microsecond digits
    if kind == "int" and (
        pa.types.is_integer(have) or (pa.types.is_decimal(have) and have.scale == 0)
    ):
        return column.cast(want)  # safe: an out-of-range value raises
    if kind == "float" and (pa.types.is_floating(have) or pa.types.is_decimal(have)):
        return column.cast(want)
    if kind == "string" and pa.types.is_large_string(have):
        return column.cast(want)
    return column
