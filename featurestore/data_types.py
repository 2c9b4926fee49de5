"""The warehouse data types the registry understands: a dbt contract ``data_type`` as a
registry value type (:func:`value_type_of`), and the kind of number an aggregated event
column holds (:func:`aggregated_kind_of`). Names are the DuckDB and Snowflake spellings,
case and spaces ignored."""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "VALUE_TYPE_NAMES",
    "AggregatedKind",
    "NotAggregatable",
    "ValueType",
    "aggregated_kind_of",
    "value_type_named",
    "value_type_of",
]

ValueType = Literal["int", "float", "bool", "string", "timestamp"]
#: the number an aggregated (summed or averaged) column holds: exact on every path
AggregatedKind = Literal["int", "decimal"]

_TYPE_NAMES: Final[dict[str, ValueType]] = {
    "bigint": "int", "int": "int", "integer": "int", "int64": "int", "smallint": "int",
    "tinyint": "int", "hugeint": "int", "number": "int",
    "double": "float", "float": "float", "float8": "float", "float64": "float", "real": "float",
    "double precision": "float",
    "boolean": "bool", "bool": "bool",
    "varchar": "string", "string": "string", "text": "string",
    "timestamp": "timestamp", "timestamp_ntz": "timestamp", "datetime": "timestamp",
}  # fmt: skip

#: integer types a sum or avg may read (the same list as macros/windowed_declaration.sql)
_INTEGER_NAMES: Final = frozenset(
    {"tinyint", "smallint", "int", "integer", "bigint", "hugeint", "int2", "int4", "int8"}
)
_FIXED_POINT: Final = re.compile(r"^(decimal|numeric|number)\((\d+)(?:,(\d+))?\)$")
_FIXED_POINT_NAMES: Final = ("decimal", "numeric", "number")


#: how a yml declaration may name a registry value type (a feature service's request fields):
#: the type itself, or the first spellings of contract A (README "Feature services")
VALUE_TYPE_NAMES: Final[dict[str, ValueType]] = {
    "int": "int", "float": "float", "bool": "bool", "string": "string", "timestamp": "timestamp",
    "integer": "int", "number": "float", "boolean": "bool",
}  # fmt: skip


def value_type_named(name: object) -> ValueType | None:
    """The registry value type a declaration names (:data:`VALUE_TYPE_NAMES`; ``None``: none)."""
    return VALUE_TYPE_NAMES.get(name) if isinstance(name, str) else None


class NotAggregatable(ValueError):
    """A column type a sum or avg cannot read exactly (the message says why)."""


def value_type_of(data_type: str) -> ValueType | None:
    """The registry value type of a dbt contract ``data_type`` (``None`` if unsupported)."""
    base = data_type.strip().lower().split("(")[0].strip()
    return _TYPE_NAMES.get(base)


def aggregated_kind_of(data_type: str) -> AggregatedKind:
    """``"int"`` for an integer type (also ``decimal(p, 0)``, ``numeric(p, 0)``, Snowflake's
    ``number(p, 0)``), ``"decimal"`` for a fixed-point type with a scale (``decimal(18, 2)``,
    ``numeric(38, 2)``, ``number(38, 2)``); else :class:`NotAggregatable` saying why a sum or
    avg cannot read the column (a double would not be exact on both paths; a bare ``decimal`` has
    different defaults in DuckDB and Snowflake)."""
    text = "".join(data_type.lower().split())
    if text in _INTEGER_NAMES:
        return "int"
    fixed = _FIXED_POINT.match(text)
    if fixed is not None:
        return "decimal" if fixed.group(3) is not None and int(fixed.group(3)) > 0 else "int"
    if text in _FIXED_POINT_NAMES:
        raise NotAggregatable(
            f"{data_type!r} needs its precision and scale, e.g. decimal(18, 2) (the defaults "
            "differ between DuckDB and Snowflake)"
        )
    if value_type_of(data_type) == "float":
        raise NotAggregatable(
            f"{data_type!r} is a floating-point type: its sum would not be exact, and the "
            "warehouse and the online tiles would differ in the last bits (declare the column "
            "as an integer or a decimal, e.g. decimal(18, 2))"
        )
    raise NotAggregatable(f"{data_type!r} is not an integer or decimal type")
