"""The expectations of a view's online rows (:func:`derive_checks`), as the validation gate
(:mod:`loader.validation`) runs them: most through great_expectations, the whole-view
uniqueness and the Arrow checks (:mod:`loader.arrow_checks`) by the validator itself."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from featurestore.online.layout import MAX_KEY_PART_CHARS
from featurestore.online.stream_tiles import BUCKET_SECONDS
from featurestore.registry import ValueType
from loader.arrow_checks import (
    changed_after_cutoff,
    current_later_than,
    mean_outside,
    misaligned,
    not_exact_number,
    not_timestamp,
    not_whole,
    null_on_hop,
    nulls,
    scheduled_beyond,
    sum_iff_count,
)
from loader.views import HOP_COLUMN, TILE_START_COLUMN, ViewSource

__all__ = ["FUTURE_TOLERANCE", "TYPE_LISTS", "Check", "derive_checks"]

#: how much later than the load's ``now`` a feature timestamp or an as-of time may be (clock
#: skew between the warehouse's writers and the loader); anything later is refused
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)
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
            offending=nulls(column),
            column=column,
        )
        checks.add(
            "expect_column_values_to_be_in_type_list",
            "registry: timestamp type",
            arrow=True,
            offending=not_timestamp(column),
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
        offending=changed_after_cutoff(source),
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
            offending=current_later_than(source, column, not_after),
            column=column,
            max_value=not_after,
            row_condition=f"{source.ts_column} <= {source.cutoff_column}",
        )
        checks.add(
            "expect_column_values_to_be_between",
            f"layout: a scheduled row is at most the cutoff + freshness_sla ({view.freshness_sla})"
            " ahead",
            arrow=True,
            offending=scheduled_beyond(source, column, sla),
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
    >= 0; an ``avg``'s ``<f>__sum`` present when its count is > 0 and 0 or absent when it is
    0 (a tile of events without a value: the macro's ``(0, 0)``); a ``sum``'s or an
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
        offending=misaligned,
        column=TILE_START_COLUMN,
    )
    if view.windowed is not None and view.windowed.streamed:
        checks.add(
            "expect_column_values_to_be_whole_buckets",
            f"tiles: a streamed view's cutoff is a whole {BUCKET_SECONDS} s ingestion bucket "
            "(the stream owns the events after it)",
            arrow=True,
            offending=not_whole(source.cutoff_column, BUCKET_SECONDS),
            column=source.cutoff_column,
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
                offending=null_on_hop(count, hop),
                column=count,
                row_condition=f"{HOP_COLUMN} = {hop}",
            )
        if function in ("sum", "avg"):
            checks.add(
                "expect_column_values_to_be_of_type",
                "tiles: a sum is an integer or a decimal",
                arrow=True,
                offending=not_exact_number(total),
                column=total,
            )
        if function == "avg":
            checks.add(
                "expect_column_values_to_be_present_iff_count_positive",
                "tiles: an avg's sum present when its count is > 0, 0 or absent when it is 0",
                arrow=True,
                offending=sum_iff_count(count, total, hop),
                column=total,
                count_column=count,
            )
            for origin, (low, high) in ranges.get(feature.name, []):
                checks.add(
                    "expect_tile_mean_to_be_between",
                    f"{origin} (the tile's mean)",
                    arrow=True,
                    offending=mean_outside(count, total, hop, low, high),
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
