"""Brute-force reference of the point-in-time join (macros/as_of_join.sql), in plain Python.

No SQL and no code shared with the implementation: the semantics documented in the macro's
header, written as loops over rows (dicts).

* The as-of key of a view row is the later of its feature timestamp and its availability
  (a null availability counts as the feature timestamp).
* Candidates for a spine row: view rows with equal keys and as-of key <= spine timestamp.
  The match is the candidate with the greatest as-of key.
* Ties on (keys, as-of key): the greatest feature timestamp wins, then the greatest feature
  values in the order listed, a null losing to any value.
* TTL: a matched value whose feature timestamp is older than spine timestamp - ttl is null
  (age == ttl is still served). No match, a null spine timestamp or a null spine key: null.
* One output per spine row, in spine order. With the audit columns
  ``<view>__feature_at`` / ``<view>__as_of_at``: the matched row's feature timestamp and
  as-of key, null whenever the values are (no match or expired).

Rows with a null feature timestamp have no as-of key and never match.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class ViewSpec:
    """What the reference needs to know about a feature view."""

    name: str
    keys: tuple[str, ...]
    features: tuple[str, ...]
    ttl_seconds: int | None
    timestamp: str = "feature_at"
    available_at: str | None = "available_at"
    # Every feature of the view in declared order: the tie order, whatever is requested.
    tie_breakers: tuple[str, ...] | None = None

    def output_columns(self, include_timestamps: bool) -> list[str]:
        columns = list(self.features)
        if include_timestamps:
            columns += [f"{self.name}__feature_at", f"{self.name}__as_of_at"]
        return columns


def as_of_key(view: ViewSpec, row: Row) -> dt.datetime | None:
    feature_at = row[view.timestamp]
    if feature_at is None:
        return None
    available_at = row[view.available_at] if view.available_at else None
    if available_at is None or available_at <= feature_at:
        return feature_at  # type: ignore[no-any-return]
    return available_at  # type: ignore[no-any-return]


def _value_rank(value: object) -> tuple[bool, object]:
    """Orders a feature value for "greatest wins, nulls last": any value beats null."""
    return (False, 0) if value is None else (True, value)


def tie_winner(view: ViewSpec, rows: Sequence[Row]) -> Row:
    """The row kept among rows sharing keys and as-of key."""
    best = rows[0]
    for row in rows[1:]:
        if _tie_order(view, row) > _tie_order(view, best):
            best = row
    return best


def _tie_order(view: ViewSpec, row: Row) -> tuple[object, ...]:
    columns = view.tie_breakers if view.tie_breakers is not None else view.features
    return (row[view.timestamp], *(_value_rank(row[f]) for f in columns))


class ViewIndex:
    """A view's rows grouped by key and sorted by as-of key, for fast look-ups.

    The look-up is the plain definition: bisect to the last as-of key <= t, then collect
    every row sharing that as-of key and apply the tie rule.
    """

    def __init__(self, view: ViewSpec, rows: Sequence[Row]) -> None:
        self.view = view
        grouped: dict[tuple[object, ...], list[tuple[dt.datetime, Row]]] = defaultdict(list)
        for row in rows:
            asof = as_of_key(view, row)
            if asof is None:
                continue
            grouped[tuple(row[k] for k in view.keys)].append((asof, row))
        self._asofs: dict[tuple[object, ...], list[dt.datetime]] = {}
        self._rows: dict[tuple[object, ...], list[Row]] = {}
        for key, items in grouped.items():
            items.sort(key=lambda item: item[0])
            self._asofs[key] = [asof for asof, _ in items]
            self._rows[key] = [row for _, row in items]

    def match(self, key: tuple[object, ...], at: dt.datetime) -> tuple[dt.datetime, Row] | None:
        """The matched row (and its as-of key) for a spine key and timestamp, before TTL."""
        asofs = self._asofs.get(key)
        if not asofs:
            return None
        end = bisect.bisect_right(asofs, at)
        if end == 0:
            return None
        best = asofs[end - 1]
        start = bisect.bisect_left(asofs, best)
        return best, tie_winner(self.view, self._rows[key][start:end])

    def lookup(
        self, spine_row: Row, spine_timestamp: str, include_timestamps: bool = True
    ) -> dict[str, Any]:
        view = self.view
        out: dict[str, Any] = dict.fromkeys(view.output_columns(include_timestamps))
        at = spine_row[spine_timestamp]
        key = tuple(spine_row[k] for k in view.keys)
        if at is None or any(part is None for part in key):
            return out
        found = self.match(key, at)
        if found is None:
            return out
        asof, row = found
        feature_at = row[view.timestamp]
        if view.ttl_seconds is not None and feature_at < at - dt.timedelta(
            seconds=view.ttl_seconds
        ):
            return out
        for feature in view.features:
            out[feature] = row[feature]
        if include_timestamps:
            out[f"{view.name}__feature_at"] = feature_at
            out[f"{view.name}__as_of_at"] = asof
        return out


def naive_lookup(
    view: ViewSpec, view_rows: Sequence[Row], spine_row: Row, spine_timestamp: str
) -> dict[str, Any]:
    """The same answer as ViewIndex.lookup by scanning every view row (for small inputs)."""
    out: dict[str, Any] = dict.fromkeys(view.output_columns(True))
    at = spine_row[spine_timestamp]
    key = [spine_row[k] for k in view.keys]
    if at is None or None in key:
        return out
    candidates = []
    for row in view_rows:
        asof = as_of_key(view, row)
        if asof is not None and [row[k] for k in view.keys] == key and asof <= at:
            candidates.append((asof, row))
    if not candidates:
        return out
    best = max(asof for asof, _ in candidates)
    winner = tie_winner(view, [row for asof, row in candidates if asof == best])
    if view.ttl_seconds is not None and winner[view.timestamp] < at - dt.timedelta(
        seconds=view.ttl_seconds
    ):
        return out
    for feature in view.features:
        out[feature] = winner[feature]
    out[f"{view.name}__feature_at"] = winner[view.timestamp]
    out[f"{view.name}__as_of_at"] = best
    return out


def point_in_time(
    spine: Sequence[Row],
    spine_timestamp: str,
    views: Sequence[tuple[ViewSpec, Sequence[Row]]],
    include_timestamps: bool = True,
) -> list[dict[str, Any]]:
    """The expected feature columns of every spine row, in spine order."""
    indexes = [ViewIndex(view, rows) for view, rows in views]
    result = []
    for spine_row in spine:
        out: dict[str, Any] = {}
        for index in indexes:
            out.update(index.lookup(spine_row, spine_timestamp, include_timestamps))
        result.append(out)
    return result
