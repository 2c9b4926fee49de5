"""Brute-force reference of the declared (windowed) feature views, straight from raw events.

Plain Python over rows (the raw Parquet rows, deduplicated as the event model does, see
tests/feature_reference.py), deciding every event with :func:`featurestore.windows.counts_at`:

* events: rows with a null key, event id, event time or ingestion time are left out; copies of
  an event id are one event, the first ingested (ties: earliest event time, then smallest keys
  and aggregated values, nulls last);
* value(feature, entity, T): the aggregation over the entity's events that count at T;
* change instants: every ingestion time of an event ingested before it leaves, and every such
  event's leave instant floor_H(t_e) + H + W, per feature;
* last_ingested_at(entity, T): the latest ingestion time of those events ingested by T;
* tiles as of a cutoff C: per hop and tile start, the partials of the events ingested by C,
  for the tiles still live at C (start + H + the longest window of H > C).

The views are declared here again, independently of the yml (USER_VIEW, MERCHANT_VIEW).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from featurestore.windows import (
    Aggregation,
    Partial,
    add_event,
    counts_at,
    effective_time,
    leaves_at,
    live_tile,
    tile_start,
)

EPOCH = dt.datetime(1970, 1, 1)
US = 1_000_000


def to_us(at: dt.datetime) -> int:
    """Microseconds since the epoch of a naive UTC datetime."""
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def _agg(feature: str, function: str, column: str | None, window: int, hop: int) -> Aggregation:
    return Aggregation(feature, function, column, f"{window}s", window, f"{hop}s", hop)  # type: ignore[arg-type]


@dataclass(frozen=True)
class View:
    """A declared view as the reference knows it."""

    name: str
    keys: tuple[str, ...]
    event_time: str
    ingested_at: str
    event_id: str
    features: tuple[Aggregation, ...]

    @property
    def value_columns(self) -> list[str]:
        out: list[str] = []
        for agg in self.features:
            if agg.column and agg.column not in out and agg.column not in self.keys:
                out.append(agg.column)
        return out

    @property
    def hops(self) -> dict[int, int]:
        """hop seconds -> the longest window of that hop."""
        out: dict[int, int] = {}
        for agg in self.features:
            out[agg.hop_seconds] = max(out.get(agg.hop_seconds, 0), agg.window_seconds)
        return out


_TX = {"event_time": "transacted_at", "ingested_at": "ingested_at", "event_id": "transaction_id"}
USER_VIEW = View(
    "user_transaction_features",
    ("user_id",),
    features=(
        _agg("user_10m_transaction_count", "count", None, 600, 60),
        _agg("user_7d_transaction_count", "count", None, 7 * 86400, 3600),
        _agg("avg_order_value_90d", "avg", "amount", 90 * 86400, 86400),
    ),
    **_TX,
)
MERCHANT_VIEW = View(
    "merchant_transaction_features",
    ("merchant_id",),
    features=(_agg("merchant_1h_transaction_count", "count", None, 3600, 60),),
    **_TX,
)


@dataclass(frozen=True)
class Event:
    key: tuple[Any, ...]
    event_id: Any
    event_us: int
    ingested_us: int
    values: Mapping[str, Any]

    @property
    def t_e(self) -> int:
        return effective_time(self.event_us, self.ingested_us)


def _nulls_last(value: object) -> tuple[int, object]:
    return (1, 0) if value is None else (0, value)


def events(view: View, rows: Iterable[Mapping[str, Any]]) -> list[Event]:
    """The view's events of `rows` (dicts of the event model's columns): nulls left out,
    one per event id (the first ingested copy)."""
    best: dict[Any, tuple[tuple[Any, ...], Event]] = {}
    needed = (*view.keys, view.event_id, view.event_time, view.ingested_at)
    for row in rows:
        if any(row[column] is None for column in needed):
            continue
        event = Event(
            key=tuple(row[k] for k in view.keys),
            event_id=row[view.event_id],
            event_us=to_us(row[view.event_time]),
            ingested_us=to_us(row[view.ingested_at]),
            values={column: row[column] for column in view.value_columns},
        )
        order = (
            event.ingested_us,
            event.event_us,
            *(_nulls_last(v) for v in event.key),
            *(_nulls_last(event.values[c]) for c in view.value_columns),
        )
        kept = best.get(event.event_id)
        if kept is None or order < kept[0]:
            best[event.event_id] = (order, event)
    return [event for _, event in best.values()]


@dataclass
class Entity:
    """One entity's events, sorted by effective time (only to narrow the brute force)."""

    events: list[Event]
    _t_e: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.events.sort(key=lambda e: (e.t_e, e.ingested_us))
        self._t_e = [e.t_e for e in self.events]

    def _counting(self, agg: Aggregation, now_us: int) -> list[Event]:
        # only events with t_e in [now - W - H, now] can count: bisect, then the rule decides
        lo = bisect.bisect_left(self._t_e, now_us - (agg.window_seconds + agg.hop_seconds) * US)
        hi = bisect.bisect_right(self._t_e, now_us)
        return [
            e
            for e in self.events[lo:hi]
            if counts_at(now_us, e.event_us, e.ingested_us, agg.hop_seconds, agg.window_seconds)
        ]

    def value(self, agg: Aggregation, now_us: int) -> int | float | None:
        """The feature's value at `now_us` (count int, sum int or float, avg float or None)."""
        counting = self._counting(agg, now_us)
        if agg.function == "count":
            if agg.column is None:
                return len(counting)
            return sum(1 for e in counting if e.values[agg.column] is not None)
        values = [e.values[agg.column or ""] for e in counting]
        present = [v for v in values if v is not None]
        total: int | Decimal = sum(
            present, Decimal(0) if any(isinstance(v, Decimal) for v in present) else 0
        )
        if agg.function == "sum":
            return float(total) if isinstance(total, Decimal) else total
        return float(total) / len(present) if present else None

    def counts_at_all(self, view: View, event: Event) -> bool:
        return any(
            event.ingested_us < leaves_at(event.t_e, a.hop_seconds, a.window_seconds)
            for a in view.features
        )

    def change_instants(self, view: View) -> set[int]:
        out: set[int] = set()
        for event in self.events:
            for agg in view.features:
                leave = leaves_at(event.t_e, agg.hop_seconds, agg.window_seconds)
                if event.ingested_us < leave:
                    out.update((event.ingested_us, leave))
        return out

    def last_ingested_at(self, view: View, now_us: int) -> int | None:
        times = [
            e.ingested_us
            for e in self.events
            if e.ingested_us <= now_us and self.counts_at_all(view, e)
        ]
        return max(times, default=None)

    def tiles(self, view: View, cutoff_us: int) -> dict[tuple[int, int], list[Partial | None]]:
        """(hop s, tile start us) -> one partial per feature (None for another hop's)."""
        out: dict[tuple[int, int], list[Partial | None]] = {}
        for hop, longest in view.hops.items():
            for event in self.events:
                start = tile_start(event.t_e, hop)
                if event.ingested_us > cutoff_us or not live_tile(start, cutoff_us, hop, longest):
                    continue
                partials = out.setdefault(
                    (hop, start),
                    [_empty(a) if a.hop_seconds == hop else None for a in view.features],
                )
                for i, agg in enumerate(view.features):
                    if agg.hop_seconds == hop:
                        value = 1 if agg.column is None else event.values[agg.column]
                        partials[i] = add_event(agg.function, partials[i], value)
        return out

    def tiles_feature_at(self, view: View, cutoff_us: int) -> int | None:
        """The latest ingestion time among the events in the entity's live tiles at C."""
        times = [
            e.ingested_us
            for e in self.events
            if e.ingested_us <= cutoff_us
            and any(
                live_tile(tile_start(e.t_e, hop), cutoff_us, hop, longest)
                for hop, longest in view.hops.items()
            )
        ]
        return max(times, default=None)


def _empty(agg: Aggregation) -> Partial:
    if agg.function == "avg":
        return (0, 0)
    return 0


def entities(view: View, rows: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], Entity]:
    """The view's entities (key tuple -> Entity) from the event model's rows."""
    grouped: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for event in events(view, rows):
        grouped[event.key].append(event)
    return {key: Entity(evs) for key, evs in grouped.items()}


def tile_columns(view: View) -> list[str]:
    """The partial columns of the online tile model, in order (f__count, f__sum)."""
    out: list[str] = []
    for agg in view.features:
        if agg.function != "sum":
            out.append(f"{agg.feature}__count")
        if agg.function != "count":
            out.append(f"{agg.feature}__sum")
    return out


def tile_row_values(view: View, partials: Sequence[Partial | None]) -> list[Any]:
    """A tile's partials spread over :func:`tile_columns` (None where another hop's)."""
    out: list[Any] = []
    for agg, partial in zip(view.features, partials, strict=True):
        if agg.function == "avg":
            out += [None, None] if partial is None else list(partial)  # type: ignore[arg-type]
        else:
            out.append(partial)
    return out
