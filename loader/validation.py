"""The validation gate: great_expectations checks of a view's rows before any is written.

Expectations are derived from the registry and the view's yml
(:func:`loader.checks.derive_checks`) and run with great_expectations' pandas datasource in
an ephemeral (in-memory) context on the Arrow rows the loader already holds, converted to
pandas chunk by chunk (GE's SQL datasource does not work on DuckDB). Arrow -> pandas:
integers and booleans as pandas' nullable dtypes, strings as ``StringDtype``, timestamps as
``datetime64`` (time-zone-aware ones as naive UTC). pandas reads a float NaN as null, so NaN
is shown to GE as +inf and the layout's "finite" expectation catches it; sample rows are
taken from the Arrow rows, so they show the real value.

One expectation is not run by great_expectations, because it concerns the whole view while GE
sees one chunk at a time: one row per (keys, feature timestamp), or per (keys, hop, tile
start) for a tiled view (GE's ``expect_compound_columns_to_be_unique`` over
:attr:`~loader.views.ViewSource.unique_columns`). The validator keeps those columns of every
chunk (Arrow: about the size of the keys, e.g. ~28 MB for 1,000,000 one-column keys) and
finds the duplicates with an Arrow group-by in :meth:`ViewValidator.finish`; they are
reported like any other failure.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.layout import MAX_KEY_PART_CHARS
from loader.checks import FUTURE_TOLERANCE, Check, derive_checks
from loader.views import ViewSource

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_SAMPLES",
    "Check",
    "ExpectationFailure",
    "ViewValidator",
    "derive_checks",
    "preload_validation",
]

#: sample offending rows kept per failed expectation
MAX_SAMPLES: Final = 5
#: the column holding each row's position in the view, beside the kept key columns
_ROW: Final = "__featurestore_row"


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
    """Runs a view's expectations over its rows, chunk by chunk (:meth:`validate`), then
    the whole-view ones (:meth:`finish`), and keeps the failures. ``now`` and
    ``tolerance``: as for :func:`derive_checks`."""

    def __init__(
        self,
        source: ViewSource,
        now: dt.datetime,
        tolerance: dt.timedelta = FUTURE_TOLERANCE,
    ) -> None:
        self.source = source
        self.checks = derive_checks(source, now, tolerance)
        self.rows_checked = 0
        self._failures: dict[int, ExpectationFailure] = {}
        self._definition: Any = None
        self._ids: dict[str, int] = {}
        #: per chunk: which of its rows broke an expectation
        self._offending: list[np.ndarray[Any, np.dtype[np.bool_]]] = []
        #: per chunk: its key columns and each row's position in the view
        self._keys: list[pa.Table] = []

    @property
    def rows_rejected(self) -> int:
        """How many rows broke at least one expectation."""
        return sum(int(mask.sum()) for mask in self._offending)

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
            if check.whole_view or check.arrow:
                continue
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
        positions_column = pa.array(range(self.rows_checked, self.rows_checked + rows), pa.int64())
        self._keys.append(
            table.select(list(self.source.unique_columns)).append_column(_ROW, positions_column)
        )
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
        for index, check in enumerate(self.checks):
            if check.arrow:
                later = check.offending(table) if check.offending else _later_than(table, check)
                if later:
                    failure = self._failures.setdefault(index, ExpectationFailure(check))
                    failure.unexpected_count += len(later)
                    offending.update(later)
                    room = MAX_SAMPLES - len(failure.samples)
                    for position in later[: max(room, 0)]:
                        failure.samples.append(sample_row(table, position))
        mask = np.ones(rows, dtype=np.bool_) if whole_chunk else np.zeros(rows, dtype=np.bool_)
        mask[sorted(offending)] = True
        self._offending.append(mask)
        self.rows_checked += rows

    def finish(
        self, rows_at: Callable[[Sequence[int]], list[dict[str, Any]]] | None = None
    ) -> None:
        """Run the whole-view checks once every chunk is validated: one row per entity key
        (rows with a null, empty or too long key part are left to those checks). ``rows_at`` returns
        the view's rows at these positions (0-based, in the order validated) for the
        samples; without it the samples hold the key columns only. The samples are the
        rows of the first duplicated keys, each key's rows together."""
        for index, check in enumerate(self.checks):
            if check.whole_view and check.expectation == "expect_compound_columns_to_be_unique":
                self._check_unique(index, check, rows_at)
        self._keys = []

    def _check_unique(
        self,
        index: int,
        check: Check,
        rows_at: Callable[[Sequence[int]], list[dict[str, Any]]] | None,
    ) -> None:
        if not self._keys:
            return
        columns = list(check.kwargs["column_list"])
        keys = pa.concat_tables(self._keys, promote_options="permissive")
        for column in columns:  # keys refused by their own checks are left to those
            values = keys[column]
            if column not in self.source.view.keys:
                keys = keys.filter(pc.is_valid(values))
                continue
            valid = pc.is_valid(values)
            if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
                length = pc.utf8_length(values)
                fits = pc.and_(pc.greater(length, 0), pc.less_equal(length, MAX_KEY_PART_CHARS))
                valid = pc.and_(valid, fits)
            keys = keys.filter(pc.fill_null(valid, False))
        count, first = f"{_ROW}_count", f"{_ROW}_min"
        groups = keys.group_by(columns).aggregate([(_ROW, "count"), (_ROW, "min")])
        duplicated = groups.filter(pc.greater(groups[count], 1))
        if duplicated.num_rows == 0:
            return
        rows = keys.join(duplicated.select([*columns, first]), keys=columns, join_type="inner")
        rows = rows.sort_by([(first, "ascending"), (_ROW, "ascending")])
        positions = [int(p) for p in rows[_ROW].to_pylist()]
        failure = ExpectationFailure(check, unexpected_count=len(positions))
        wanted = positions[:MAX_SAMPLES]
        if rows_at is not None:
            failure.samples = rows_at(wanted)
        else:
            failure.samples = [
                sample_row(rows.drop_columns([first]), n) for n in range(len(wanted))
            ]
        mask = np.concatenate(self._offending)
        mask[positions] = True
        self._offending = [mask]
        self._failures[index] = failure


def _later_than(table: pa.Table, check: Check) -> list[int]:
    """The positions of the rows whose ``check.kwargs["column"]`` (a timestamp column) is
    later than ``check.kwargs["max_value"]`` (naive UTC), as GE's
    ``expect_column_values_to_be_between(max_value=...)`` would find them (nulls pass: the
    not-null check reports them; a column of another type is left to the type check)."""
    limit = check.kwargs.get("max_value")
    column = table[check.kwargs["column"]]
    if limit is None or not pa.types.is_timestamp(column.type):
        return []
    if column.type.tz is not None:  # as ge_frame shows it: naive UTC
        column = column.cast(pa.timestamp(column.type.unit))
    later = pc.fill_null(pc.greater(column, pa.scalar(limit, column.type)), False)
    if not pc.any(later).as_py():
        return []
    return [int(i) for i in pc.indices_nonzero(later).to_pylist()]


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
