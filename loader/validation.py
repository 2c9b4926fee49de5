"""The validation gate: great_expectations checks of a view's rows before any is written.

Expectations are derived from the registry and the view's yml (see :func:`derive_checks`)
and run with great_expectations' pandas datasource in an ephemeral (in-memory) context on
the Arrow rows the loader already holds, converted to pandas chunk by chunk (GE's SQL
datasource does not work on DuckDB). Arrow -> pandas: integers and booleans as pandas'
nullable dtypes, strings as ``StringDtype``, timestamps as ``datetime64`` (time-zone-aware
ones as naive UTC). pandas reads a float NaN as null, so NaN is shown to GE as +inf and the
layout's "finite" expectation catches it; sample rows are taken from the Arrow rows, so they
show the real value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.registry import ValueType
from loader.views import ViewSource

__all__ = [
    "MAX_SAMPLES",
    "Check",
    "ExpectationFailure",
    "ViewValidator",
    "derive_checks",
    "preload_validation",
]

#: sample offending rows kept per failed expectation
MAX_SAMPLES: Final = 5
_FLOAT_MAX: Final = sys.float_info.max

#: pandas dtypes (names great_expectations resolves) accepted for each registry type
TYPE_LISTS: Final[dict[ValueType, list[str]]] = {
    "int": [
        "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
        "UInt8Dtype", "UInt16Dtype", "UInt32Dtype",
    ],
    "float": ["float16", "float32", "float64"],
    "bool": ["BooleanDtype"],
    "string": ["StringDtype"],
    "timestamp": ["datetime64[s]", "datetime64[ms]", "datetime64[us]", "datetime64[ns]"],
}  # fmt: skip


@dataclass(frozen=True)
class Check:
    """One expectation: its great_expectations type, arguments and where it comes from."""

    expectation: str
    kwargs: Mapping[str, Any]
    source: str

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args}) [{self.source}]"


def derive_checks(source: ViewSource) -> list[Check]:
    """The expectations of a view's online rows:

    * registry: every key, the feature timestamp and the as-of time are not null and have
      their registry types; each feature has its registry type; declared ``range``
      (``min``/``max``, inclusive) and ``accepted_values``;
    * layout: string key parts are non-empty, float features are finite, and the as-of
      time is >= the feature timestamp (``ver >= ts``);
    * the view's yml: the ``not_null``, ``accepted_values`` and
      ``featurestore.accepted_range`` data tests of its feature columns (severity error).
    """
    view = source.view
    checks: list[Check] = []

    def add(expectation: str, origin: str, **kwargs: Any) -> None:
        check = Check(expectation, kwargs, origin)
        if all((c.expectation, c.kwargs) != (check.expectation, check.kwargs) for c in checks):
            checks.append(check)

    for key in view.keys:
        add("expect_column_values_to_not_be_null", "registry: key", column=key)
        key_type = view.key_types.get(key, "string")
        add(
            "expect_column_values_to_be_in_type_list",
            "registry: key type",
            column=key,
            type_list=TYPE_LISTS[key_type],
        )
        if key_type == "string":
            add(
                "expect_column_value_lengths_to_be_between",
                "layout: non-empty key",
                column=key,
                min_value=1,
            )
    for column in (source.ts_column, source.ver_column):
        add("expect_column_values_to_not_be_null", "registry: timestamp", column=column)
        add(
            "expect_column_values_to_be_in_type_list",
            "registry: timestamp type",
            column=column,
            type_list=TYPE_LISTS["timestamp"],
        )
    add(
        "expect_column_pair_values_a_to_be_greater_than_b",
        "layout: as-of time >= feature timestamp",
        column_A=source.ver_column,
        column_B=source.ts_column,
        or_equal=True,
        ignore_row_if="either_value_is_missing",  # nulls fail their not-null checks
    )
    for feature in view.features:
        add(
            "expect_column_values_to_be_in_type_list",
            f"registry: {feature.data_type}",
            column=feature.name,
            type_list=TYPE_LISTS[feature.value_type],
        )
        if feature.value_type == "float":
            add(
                "expect_column_values_to_be_between",
                "layout: finite float",
                column=feature.name,
                min_value=-_FLOAT_MAX,
                max_value=_FLOAT_MAX,
            )
        if feature.range_min is not None or feature.range_max is not None:
            bounds = {}
            if feature.range_min is not None:
                bounds["min_value"] = feature.range_min
            if feature.range_max is not None:
                bounds["max_value"] = feature.range_max
            add("expect_column_values_to_be_between", "registry: range", column=feature.name,
                **bounds)  # fmt: skip
        if feature.accepted_values is not None:
            add(
                "expect_column_values_to_be_in_set",
                "registry: accepted_values",
                column=feature.name,
                value_set=list(feature.accepted_values),
            )
    for test in source.data_tests:
        origin = f"yml: {test.name} test"
        if test.name == "not_null":
            add("expect_column_values_to_not_be_null", origin, column=test.column)
        elif test.name == "accepted_values":
            add(
                "expect_column_values_to_be_in_set",
                origin,
                column=test.column,
                value_set=list(test.kwargs.get("values") or []),
            )
        elif test.name == "accepted_range":
            bounds = {
                name: test.kwargs[name]
                for name in ("min_value", "max_value")
                if test.kwargs.get(name) is not None
            }
            if bounds:
                add("expect_column_values_to_be_between", origin, column=test.column, **bounds)
    return checks


@dataclass
class ExpectationFailure:
    """A failed expectation over all of a view's rows: how many rows broke it, up to
    :data:`MAX_SAMPLES` of them, and GE's observed value for table-level checks."""

    check: Check
    unexpected_count: int = 0
    observed: object = None
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.check.expectation,
            "kwargs": {k: jsonable(v) for k, v in self.check.kwargs.items()},
            "source": self.check.source,
            "unexpected_count": self.unexpected_count,
            "observed": jsonable(self.observed),
            "sample_rows": self.samples,
        }

    def describe(self) -> str:
        text = f"{self.check.describe()}: {self.unexpected_count} row(s)"
        if self.observed is not None:
            text += f", observed {self.observed!r}"
        return text


class ViewValidator:
    """Runs a view's expectations over its rows, chunk by chunk, and keeps the failures."""

    def __init__(self, source: ViewSource) -> None:
        self.source = source
        self.checks = derive_checks(source)
        self.rows_checked = 0
        self.rows_rejected = 0
        self._failures: dict[int, ExpectationFailure] = {}
        self._definition: Any = None
        self._ids: dict[str, int] = {}

    @property
    def failures(self) -> list[ExpectationFailure]:
        return [self._failures[index] for index in sorted(self._failures)]

    @property
    def passed(self) -> bool:
        return not self._failures

    def _prepare(self) -> Any:
        if self._definition is not None:
            return self._definition
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        context = gx.get_context(mode="ephemeral", project_config=config)
        name = self.source.name
        asset = context.data_sources.add_pandas(f"online_{name}").add_dataframe_asset("rows")
        batch = asset.add_batch_definition_whole_dataframe("chunk")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_online_rows"))
        for index, check in enumerate(self.checks):
            expectation = getattr(gxe, _camel(check.expectation))(**dict(check.kwargs))
            added = suite.add_expectation(expectation)
            self._ids[str(added.id)] = index
        self._definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{name}_gate", data=batch, suite=suite)
        )
        return self._definition

    def validate(self, table: pa.Table) -> None:
        """Check one chunk of rows (a table of the online relation's columns)."""
        rows = table.num_rows
        if rows == 0:
            return
        definition = self._prepare()
        frame = ge_frame(table)
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")
        offending: set[int] = set()
        whole_chunk = False
        for outcome in result.results:
            if outcome.success:
                continue
            index = self._ids[str(outcome.expectation_config.id)]
            failure = self._failures.setdefault(index, ExpectationFailure(self.checks[index]))
            info = outcome.exception_info or {}
            details = outcome.result or {}
            positions = details.get("unexpected_index_list")
            if info.get("raised_exception"):
                failure.unexpected_count += rows
                failure.observed = str(info.get("exception_message"))
                positions, whole_chunk = list(range(rows)), True
            elif positions is None:  # a table-level check (column type)
                failure.unexpected_count += rows
                failure.observed = details.get("observed_value")
                positions, whole_chunk = list(range(rows)), True
            else:
                failure.unexpected_count += int(details.get("unexpected_count", len(positions)))
                offending.update(int(position) for position in positions)
            room = MAX_SAMPLES - len(failure.samples)
            for position in list(positions)[: max(room, 0)]:
                failure.samples.append(sample_row(table, int(position)))
        self.rows_checked += rows
        self.rows_rejected += rows if whole_chunk else len(offending)


def preload_validation() -> None:
    """Import great_expectations now (it takes seconds)."""
    import great_expectations  # noqa: F401


def ge_frame(table: pa.Table) -> Any:
    """The pandas frame great_expectations validates (see the module docstring)."""
    import pandas as pd

    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_floating(kind):
            nan = pc.fill_null(pc.is_nan(column), False)
            if pc.any(nan).as_py():
                column = pc.if_else(nan, pa.scalar(math.inf, kind), column)
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            column = column.cast(pa.timestamp(kind.unit))
        columns.append(column)
    mapping: dict[pa.DataType, Any] = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    converted = pa.Table.from_arrays(columns, names=table.column_names)
    return converted.to_pandas(types_mapper=mapping.get)


def sample_row(table: pa.Table, position: int) -> dict[str, Any]:
    row = table.slice(position, 1).to_pylist()[0]
    return {name: jsonable(value) for name, value in row.items()}


def jsonable(value: object) -> Any:
    """A JSON-ready form of a value in a report: ISO 8601 for dates and times, text for
    NaN/infinities and for anything JSON has no type for (decimals, bytes, ...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        unwrapped = item()
        if unwrapped is not value and not hasattr(unwrapped, "item"):
            return jsonable(unwrapped)
    return str(value)


def _camel(snake: str) -> str:
    return re.sub(r"(?:^|_)([a-z])", lambda m: m.group(1).upper(), snake)
