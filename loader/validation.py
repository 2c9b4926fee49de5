"""The validation gate: great_expectations checks of a view's rows before any is written.

Expectations are derived from the registry and the view's yml (see :func:`derive_checks`)
and run with great_expectations' pandas datasource in an ephemeral (in-memory) context on
the Arrow rows the loader already holds, converted to pandas chunk by chunk (GE's SQL
datasource does not work on DuckDB). Arrow -> pandas: integers and booleans as pandas'
nullable dtypes, strings as ``StringDtype``, timestamps as ``datetime64`` (time-zone-aware
ones as naive UTC). pandas reads a float NaN as null, so NaN is shown to GE as +inf and the
layout's "finite" expectation catches it; sample rows are taken from the Arrow rows, so they
show the real value.

One expectation is not run by great_expectations, because it concerns the whole view while GE
sees one chunk at a time: one row per entity key (GE's ``expect_compound_columns_to_be_unique``
over the key columns). The validator keeps the key columns of every chunk (Arrow: about the
size of the keys, e.g. ~20 MB for 1,000,000 one-column keys) and finds the duplicates with an
Arrow group-by in :meth:`ViewValidator.finish`; they are reported like any other failure.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.layout import MAX_KEY_PART_CHARS
from featurestore.registry import ValueType
from loader.views import HOP_COLUMN, TILE_START_COLUMN, ViewSource

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
#: how much later than the load's ``now`` a feature timestamp or an as-of time may be (clock
#: skew between the warehouse's writers and the loader); anything later is refused
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)
#: the column holding each row's position in the view, beside the kept key columns
_ROW: Final = "__featurestore_row"
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
    #: checked over all of the view's rows by the validator itself (Arrow), not by GE
    whole_view: bool = False
    #: checked chunk by chunk by the validator itself with Arrow, not by GE (GE's pandas
    #: ``expect_column_values_to_be_between`` on a datetime column calls Python per value:
    #: ~1.2 s per 400,000 values, a fifth of a load's time)
    arrow: bool = False
    #: for an ``arrow`` check: the positions of a chunk's offending rows (default: the rows
    #: whose ``column`` is later than ``max_value``)
    offending: Callable[[pa.Table], list[int]] | None = field(default=None, compare=False)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args}) [{self.source}]"


def derive_checks(
    source: ViewSource, now: dt.datetime, tolerance: dt.timedelta = FUTURE_TOLERANCE
) -> list[Check]:
    """The expectations of a view's online rows.

    Every view:

    * registry: every key, the feature timestamp, the as-of time, the change time
      (``<view>__changed_at``) and the cutoff (``as_of_at``) are not null and have their
      registry types;
    * layout: string key parts are 1 to :data:`~featurestore.online.layout.MAX_KEY_PART_CHARS`
      characters long (what the sidecar accepts), the as-of time is >= the feature timestamp
      (``ver >= ts``), the change time is <= the cutoff, and each row is unique over the
      whole view (``whole_view``) on :attr:`ViewSource.unique_columns`: (keys, feature
      timestamp) for a hand-written view, (keys, hop, tile start) for a tiled one;
    * the clock: the cutoff is not later than ``now`` (the load's, aware or naive UTC) +
      ``tolerance``, so a bad upstream clock can neither pin records (newer wins) nor move
      the watermark into the future.

    A hand-written view (:func:`_row_checks`): a row is *scheduled* if its feature timestamp
    is later than the cutoff, else *current*. Current rows: neither the feature timestamp nor
    the as-of time is later than ``now`` + ``tolerance``; scheduled rows: neither is later
    than the cutoff + the view's ``freshness_sla`` (the schedule's horizon). Each feature has
    its registry type; float features are finite; declared ``range`` (``min``/``max``,
    inclusive) and ``accepted_values``; the ``not_null``, ``accepted_values`` and
    ``featurestore.accepted_range`` data tests of its feature columns (severity error).

    A tiled view (:func:`_tile_checks`).
    """
    if now.tzinfo is not None:  # the frame GE sees holds naive UTC (ge_frame)
        now = now.astimezone(dt.UTC).replace(tzinfo=None)
    checks = _Checks()
    view = source.view
    not_after = now + tolerance
    for key in view.keys:
        checks.add("expect_column_values_to_not_be_null", "registry: key", column=key)
        key_type = view.key_types.get(key, "string")
        checks.add(
            "expect_column_values_to_be_in_type_list",
            "registry: key type",
            column=key,
            type_list=TYPE_LISTS[key_type],
        )
        if key_type == "string":
            checks.add(
                "expect_column_value_lengths_to_be_between",
                "layout: non-empty key",
                column=key,
                min_value=1,
            )
            checks.add(
                "expect_column_value_lengths_to_be_between",
                f"layout: key of at most {MAX_KEY_PART_CHARS} characters (the sidecar's limit)",
                column=key,
                max_value=MAX_KEY_PART_CHARS,
            )
    checks.add(
        "expect_compound_columns_to_be_unique",
        "layout: one row per " + ", ".join(source.unique_columns),
        whole_view=True,
        column_list=list(source.unique_columns),
    )
    for column in (source.ts_column, source.ver_column):
        checks.add("expect_column_values_to_not_be_null", "registry: timestamp", column=column)
        checks.add(
            "expect_column_values_to_be_in_type_list",
            "registry: timestamp type",
            column=column,
            type_list=TYPE_LISTS["timestamp"],
        )
    # the bookkeeping columns: checked with Arrow (GE's pandas checks cost per expectation)
    for column in (source.changed_column, source.cutoff_column):
        checks.add(
            "expect_column_values_to_not_be_null",
            "registry: timestamp",
            arrow=True,
            offending=_nulls(column),
            column=column,
        )
        checks.add(
            "expect_column_values_to_be_in_type_list",
            "registry: timestamp type",
            arrow=True,
            offending=_not_timestamp(column),
            column=column,
            type_list=TYPE_LISTS["timestamp"],
        )
    clock = f"clock: not later than the load's now + {tolerance.total_seconds():g} s"
    checks.add(
        "expect_column_values_to_be_between",
        clock,
        arrow=True,
        column=source.cutoff_column,
        max_value=not_after,
    )
    checks.add(
        "expect_column_pair_values_a_to_be_greater_than_b",
        "layout: as-of time >= feature timestamp",
        column_A=source.ver_column,
        column_B=source.ts_column,
        or_equal=True,
        ignore_row_if="either_value_is_missing",  # nulls fail their not-null checks
    )
    checks.add(
        "expect_column_pair_values_a_to_be_greater_than_b",
        "layout: the change time is not later than the cutoff",
        arrow=True,
        offending=_changed_after_cutoff(source),
        column_A=source.cutoff_column,
        column_B=source.changed_column,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )
    if source.tiled:
        _tile_checks(source, checks, not_after, clock)
    else:
        _row_checks(source, checks, not_after, clock)
    return checks.checks


class _Checks:
    """The checks of a view, each once (by expectation and arguments)."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(
        self,
        expectation: str,
        origin: str,
        *,
        whole_view: bool = False,
        arrow: bool = False,
        offending: Callable[[pa.Table], list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        check = Check(expectation, kwargs, origin, whole_view, arrow, offending)
        if all((c.expectation, c.kwargs) != (check.expectation, check.kwargs) for c in self.checks):
            self.checks.append(check)


def _row_checks(source: ViewSource, checks: _Checks, not_after: dt.datetime, clock: str) -> None:
    """The checks of a hand-written view's rows (see :func:`derive_checks`)."""
    view = source.view
    sla = dt.timedelta(seconds=view.freshness_sla_seconds)
    for column in (source.ts_column, source.ver_column):
        checks.add(
            "expect_column_values_to_be_between",
            f"{clock} (current rows)",
            arrow=True,
            offending=_current_later_than(source, column, not_after),
            column=column,
            max_value=not_after,
            row_condition=f"{source.ts_column} <= {source.cutoff_column}",
        )
        checks.add(
            "expect_column_values_to_be_between",
            f"layout: a scheduled row is at most the cutoff + freshness_sla ({view.freshness_sla})"
            " ahead",
            arrow=True,
            offending=_scheduled_beyond(source, column, sla),
            column=column,
            max_value=f"{source.cutoff_column} + {view.freshness_sla}",
            row_condition=f"{source.ts_column} > {source.cutoff_column}",
        )
    for feature in view.features:
        checks.add(
            "expect_column_values_to_be_in_type_list",
            f"registry: {feature.data_type}",
            column=feature.name,
            type_list=TYPE_LISTS[feature.value_type],
        )
        if feature.value_type == "float":
            checks.add(
                "expect_column_values_to_be_between",
                "layout: finite float",
                column=feature.name,
                min_value=-_FLOAT_MAX,
                max_value=_FLOAT_MAX,
            )
        bounds = _bounds(feature.range_min, feature.range_max)
        if bounds:
            checks.add(
                "expect_column_values_to_be_between",
                "registry: range",
                column=feature.name,
                **bounds,
            )
        if feature.accepted_values is not None:
            checks.add(
                "expect_column_values_to_be_in_set",
                "registry: accepted_values",
                column=feature.name,
                value_set=list(feature.accepted_values),
            )
    for test in source.data_tests:
        origin = f"yml: {test.name} test"
        if test.name == "not_null":
            checks.add("expect_column_values_to_not_be_null", origin, column=test.column)
        elif test.name == "accepted_values":
            checks.add(
                "expect_column_values_to_be_in_set",
                origin,
                column=test.column,
                value_set=list(test.kwargs.get("values") or []),
            )
        elif test.name == "accepted_range":
            test_bounds = _bounds(test.kwargs.get("min_value"), test.kwargs.get("max_value"))
            if test_bounds:
                checks.add(
                    "expect_column_values_to_be_between", origin, column=test.column, **test_bounds
                )


def _tile_checks(source: ViewSource, checks: _Checks, not_after: dt.datetime, clock: str) -> None:
    """The checks of a tiled view's rows: the feature timestamp, as-of time and change time
    not later than the load's now + tolerance; the hop (``tile_hop_seconds``) not null, an
    integer and one of the view's hops; the tile start not null, a timestamp and aligned to
    its hop. Per feature, on the rows of its hop: every ``<f>__count`` a non-null integer
    >= 0; an ``avg``'s ``<f>__sum`` present if and only if its count is > 0; a ``sum``'s or an
    ``avg``'s ``<f>__sum`` an integer or a decimal. Declared ranges (registry ``range``, yml
    ``featurestore.accepted_range``) are checked where a tile's bound carries over to the
    merged value: ``avg``: the tile's mean within the range (the merged mean is a weighted
    mean of tile means, so it is too); ``count``: only the lower bound 0 (a sum of tile
    counts can exceed a bound no tile does); ``sum``: none (a tile's sum bounds nothing)."""
    view = source.view
    for column in (source.ts_column, source.ver_column, source.changed_column):
        checks.add(
            "expect_column_values_to_be_between",
            clock,
            arrow=True,
            column=column,
            max_value=not_after,
        )
    hops = sorted({f.aggregation.hop_seconds for f in view.features if f.aggregation})
    checks.add("expect_column_values_to_not_be_null", "tiles: hop", column=HOP_COLUMN)
    checks.add(
        "expect_column_values_to_be_in_type_list",
        "tiles: hop type",
        column=HOP_COLUMN,
        type_list=TYPE_LISTS["int"],
    )
    checks.add(
        "expect_column_values_to_be_in_set",
        "tiles: a hop of the view's features",
        column=HOP_COLUMN,
        value_set=hops,
    )
    checks.add("expect_column_values_to_not_be_null", "tiles: tile start", column=TILE_START_COLUMN)
    checks.add(
        "expect_column_values_to_be_in_type_list",
        "tiles: tile start type",
        column=TILE_START_COLUMN,
        type_list=TYPE_LISTS["timestamp"],
    )
    checks.add(
        "expect_column_values_to_be_aligned_to_hop",
        "tiles: tile start a whole number of hops since the epoch",
        arrow=True,
        offending=_misaligned,
        column=TILE_START_COLUMN,
    )
    ranges = _declared_ranges(source)
    for feature in view.features:
        aggregation = feature.aggregation
        if aggregation is None:
            continue
        hop, function = aggregation.hop_seconds, aggregation.function
        count, total = f"{feature.name}__count", f"{feature.name}__sum"
        if function in ("count", "avg"):
            checks.add(
                "expect_column_values_to_be_in_type_list",
                "tiles: count type",
                column=count,
                type_list=TYPE_LISTS["int"],
            )
            checks.add(
                "expect_column_values_to_be_between",
                "tiles: a count is >= 0",
                column=count,
                min_value=0,
            )
            checks.add(
                "expect_column_values_to_not_be_null",
                f"tiles: a count on every tile of its hop ({hop} s)",
                arrow=True,
                offending=_null_on_hop(count, hop),
                column=count,
                row_condition=f"{HOP_COLUMN} = {hop}",
            )
        if function in ("sum", "avg"):
            checks.add(
                "expect_column_values_to_be_of_type",
                "tiles: a sum is an integer or a decimal",
                arrow=True,
                offending=_not_exact_number(total),
                column=total,
            )
        if function == "avg":
            checks.add(
                "expect_column_values_to_be_present_iff_count_positive",
                "tiles: an avg's sum present if and only if its count is > 0",
                arrow=True,
                offending=_sum_iff_count(count, total, hop),
                column=total,
                count_column=count,
            )
            for origin, (low, high) in ranges.get(feature.name, []):
                checks.add(
                    "expect_tile_mean_to_be_between",
                    f"{origin} (the tile's mean)",
                    arrow=True,
                    offending=_mean_outside(count, total, hop, low, high),
                    column=feature.name,
                    **_bounds(low, high),
                )


def _bounds(low: object, high: object) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if low is not None:
        bounds["min_value"] = low
    if high is not None:
        bounds["max_value"] = high
    return bounds


def _declared_ranges(source: ViewSource) -> dict[str, list[tuple[str, tuple[Any, Any]]]]:
    """Feature -> its declared ranges: (origin, (min or None, max or None))."""
    out: dict[str, list[tuple[str, tuple[Any, Any]]]] = {}
    for feature in source.view.features:
        if feature.range_min is not None or feature.range_max is not None:
            out.setdefault(feature.name, []).append(
                ("registry: range", (feature.range_min, feature.range_max))
            )
    for test in source.view.data_tests:
        if (
            test.name == "accepted_range"
            and test.namespace == "featurestore"
            and test.severity == "error"
            and test.where is None
        ):
            low, high = test.kwargs.get("min_value"), test.kwargs.get("max_value")
            if low is not None or high is not None:
                out.setdefault(test.column, []).append(("yml: accepted_range test", (low, high)))
    return out


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


def _nulls(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        return _positions(pc.is_null(table[column]))

    return offending


def _not_timestamp(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        kind = table[column].type
        if pa.types.is_timestamp(kind) or pa.types.is_null(kind):
            return []
        return list(range(table.num_rows))

    return offending


def _changed_after_cutoff(source: ViewSource) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        found = _timestamps(table, source.changed_column, source.cutoff_column)
        if found is None:
            return []
        changed, cutoff = found
        return _positions(pc.greater(changed, cutoff))

    return offending


def _current_later_than(
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


def _scheduled_beyond(
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


def _misaligned(table: pa.Table) -> list[int]:
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


def _on_hop(table: pa.Table, hop: int) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(table[HOP_COLUMN], hop), False)


def _null_on_hop(column: str, hop: int) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        return _positions(pc.and_(_on_hop(table, hop), pc.is_null(table[column])))

    return offending


def _not_exact_number(column: str) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        kind = table[column].type
        if pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
            return []
        return list(range(table.num_rows))

    return offending


def _sum_iff_count(count: str, total: str, hop: int) -> Callable[[pa.Table], list[int]]:
    def offending(table: pa.Table) -> list[int]:
        if not pa.types.is_integer(table[count].type):
            return []
        positive = pc.fill_null(pc.greater(table[count], 0), False)
        present = pc.is_valid(table[total])
        return _positions(pc.and_(_on_hop(table, hop), pc.not_equal(positive, present)))

    return offending


def _mean_outside(
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
