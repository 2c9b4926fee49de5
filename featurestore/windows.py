"""Windowed aggregation features: the one rule, and its arithmetic.

This module owns the semantics of a *declared* (windowed) feature view. The dbt macro
``featurestore.windowed_features`` (``macros/windowed_features.sql``) computes the same rule
in SQL for the history and the tiles; the sidecar merges tiles with :func:`merge`; the
stream worker adds single events to tiles with :func:`add_event`. Tests check all of them
against a brute-force evaluation of :func:`counts_at` over the raw events.

Events
    Rows of the declared event model (a dbt model, e.g. ``int_transactions_deduplicated``)
    with an event time, an ingestion time (when the warehouse or the stream received it) and
    an event id. Copies sharing an event id are one event: the copy ingested first (ties: the
    earliest event time, then the smallest values of the view's keys and aggregated
    columns, nulls last) is kept, the others are duplicates and never count. Events with a null
    key, event id, event time or ingestion time are left out.

Effective time
    ``t_e = min(event_time, ingested_at)``. An event whose event time is later than its
    ingestion time (a producer clock ahead of ours) is placed at its ingestion time: it can
    then never count at a time it was not yet known, and never "from the future".

Tiles
    A feature has a window ``W`` and a hop ``H`` (the tile size; ``W`` a whole multiple of
    ``H``, ``H`` >= 1 s; default by window: 1 minute up to 1 hour, 1 hour up to 10 days, 1 day
    above, :func:`default_hop`). Tile ``k`` of hop ``H`` holds the events with
    ``k*H <= t_e < (k+1)*H`` (times since the Unix epoch, UTC).

The rule: which events the window holds at time ``T``
    An event counts at ``T`` if and only if

    * it is known at ``T``: ``ingested_at <= T`` (so ``t_e <= T`` too), and
    * its tile is inside the window: ``floor_H(T) - W <= t_e``, i.e. the window's start is
      ``floor_H(T) - W`` (inclusive, aligned to the hop) and its end is ``T`` (inclusive).

    The window thus spans between ``W`` and ``W + H``: every event younger than ``W`` counts,
    none older than ``W + H`` does. An event enters at its ingestion time (late events
    included: from the moment they are known, never before) and leaves at
    ``floor_H(t_e) + H + W`` (:func:`leaves_at`); an event ingested at or after that instant
    never counts. Aggregations over the events that count: ``count`` (of events, or of the
    non-null values of a column), ``sum`` and ``avg`` of the non-null values of an integer or
    decimal column (exact: decimal sums are never rounded before the final division). The
    value over an empty window: ``count`` and ``sum`` 0, ``avg`` null.

History
    The view's history has one row per entity and *change instant*: every ingestion time of
    one of its events and every instant an event leaves a window (``available_at`` is not
    needed: a row at ``feature_at`` uses only events ingested by ``feature_at``), so
    ``as_of_join`` at ``T`` returns exactly the value of the rule at ``T``.

Online
    The store holds, per entity, the *tile set* of the view: the partial aggregates of each
    live tile (one that is still inside some window of its hop) over the events ingested up
    to the load's cutoff ``C`` (see :mod:`featurestore.online.layout`). The sidecar answers at
    ``T`` by merging the tiles inside each feature's window at ``T`` (:func:`merge`): the value
    decays with no new load. Ownership: a batch load at cutoff ``C`` owns the events ingested
    at or before ``C``; the stream owns the events ingested after the cutoff of the batch
    tiles it adds to, so no event is counted twice or lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "AGGREGATIONS",
    "HOP_DEFAULTS",
    "Aggregation",
    "AggregationFunction",
    "Partial",
    "WindowedSource",
    "add_event",
    "counts_at",
    "default_hop",
    "effective_time",
    "leaves_at",
    "live_tile",
    "merge",
    "tile_expires_at",
    "tile_start",
    "window_start",
]

AggregationFunction = Literal["count", "sum", "avg"]
#: the aggregations a declared feature may use
AGGREGATIONS: Final[tuple[AggregationFunction, ...]] = ("count", "sum", "avg")
#: (longest window in seconds, default hop in seconds): the first that fits wins
HOP_DEFAULTS: Final[tuple[tuple[int, int], ...]] = ((3600, 60), (10 * 86400, 3600))
_DAY: Final = 86400
_US: Final = 1_000_000

#: one feature's partial aggregate of one tile: ``count`` -> int; ``sum`` -> int (integer
#: column) or Decimal (decimal column); ``avg`` -> (count of non-null values, their sum)
Partial = int | Decimal | tuple[int, int | Decimal]


@dataclass(frozen=True)
class Aggregation:
    """One declared feature: ``function`` over ``column`` (None: count events) in a window of
    ``window_seconds`` with tiles of ``hop_seconds`` (``window``/``hop`` as declared)."""

    feature: str
    function: AggregationFunction
    column: str | None
    window: str
    window_seconds: int
    hop: str
    hop_seconds: int


@dataclass(frozen=True)
class WindowedSource:
    """A declared view's event model and its columns (``meta.featurestore.windowed``)."""

    #: the dbt model of the events
    events: str
    #: its relation as the warehouse names it
    events_relation: str
    event_time: str
    ingested_at: str
    event_id: str
    #: the view's entity keys, columns of the event model with the same names
    keys: tuple[str, ...]
    #: the aggregated columns' registry types (column -> "int" | "decimal")
    column_types: tuple[tuple[str, str], ...] = ()
    #: every column the event model's yml declares with a data_type, in its order (name,
    #: data_type): the contract of a streamed event (README "Streaming")
    event_columns: tuple[tuple[str, str], ...] = ()
    #: whether the stream worker updates the view (``windowed.streamed: true``)
    streamed: bool = False


def default_hop(window_seconds: int) -> int:
    """The documented default hop of a window: 1 minute up to 1 hour, 1 hour up to 10 days,
    1 day above."""
    for longest, hop in HOP_DEFAULTS:
        if window_seconds <= longest:
            return hop
    return _DAY


def effective_time(event_us: int, ingested_us: int) -> int:
    """``t_e`` in microseconds: the earlier of the event and ingestion times."""
    return event_us if event_us < ingested_us else ingested_us


def tile_start(t_us: int, hop_seconds: int) -> int:
    """The start (microseconds) of the tile of hop ``hop_seconds`` holding instant ``t_us``."""
    hop = hop_seconds * _US
    return (t_us // hop) * hop


def window_start(now_us: int, hop_seconds: int, window_seconds: int) -> int:
    """The window's first instant at ``now_us`` (inclusive): ``floor_H(now) - W``."""
    return tile_start(now_us, hop_seconds) - window_seconds * _US


def leaves_at(t_e_us: int, hop_seconds: int, window_seconds: int) -> int:
    """The first instant (microseconds) at which an event of effective time ``t_e_us`` no
    longer counts: ``floor_H(t_e) + H + W``."""
    return tile_start(t_e_us, hop_seconds) + (hop_seconds + window_seconds) * _US


def counts_at(
    now_us: int, event_us: int, ingested_us: int, hop_seconds: int, window_seconds: int
) -> bool:
    """Whether an event counts in the window at ``now_us`` (the rule, in the docstring)."""
    if ingested_us > now_us:
        return False
    return effective_time(event_us, ingested_us) >= window_start(
        now_us, hop_seconds, window_seconds
    )


def tile_expires_at(start_us: int, hop_seconds: int, longest_window_seconds: int) -> int:
    """The instant (microseconds) a tile leaves the longest window of its hop: it is not
    needed after it."""
    return start_us + (hop_seconds + longest_window_seconds) * _US


def live_tile(start_us: int, now_us: int, hop_seconds: int, longest_window_seconds: int) -> bool:
    """Whether a tile is still inside some window of its hop at ``now_us``."""
    return tile_expires_at(start_us, hop_seconds, longest_window_seconds) > now_us


def add_event(function: AggregationFunction, partial: Partial | None, value: object) -> Partial:
    """A tile's partial with one more event (``value``: the column's value, None for a null
    or for a count of events with no column)."""
    if function == "count":
        return (partial if isinstance(partial, int) else 0) + (1 if value is not None else 0)
    if function == "sum":
        base = partial if isinstance(partial, int | Decimal) else 0
        return base + _number(value) if value is not None else base
    count, total = partial if isinstance(partial, tuple) else (0, 0)
    if value is None:
        return (count, total)
    return (count + 1, total + _number(value))


def _number(value: object) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"sum/avg need integers or decimals, got {value!r}")
    return value


def merge(
    function: AggregationFunction,
    partials: Iterable[Partial],
) -> int | float | None:
    """The feature's value from the partials of the tiles inside its window: ``count`` an
    int, ``sum`` an int (integer column) or float (decimal column, the exact sum rounded
    once), ``avg`` a float (exact sum / count, rounded once) or None for no value."""
    if function == "count":
        return sum(p for p in partials if isinstance(p, int))
    if function == "sum":
        total: int | Decimal = 0
        for p in partials:
            if isinstance(p, int | Decimal):
                total += p
        return float(total) if isinstance(total, Decimal) else total
    count, whole = 0, Decimal(0)
    for p in partials:
        if isinstance(p, tuple):
            count += p[0]
            whole += p[1]
    if count == 0:
        return None
    return float(whole) / count


def tiles_in_window(
    starts: Sequence[int], now_us: int, hop_seconds: int, window_seconds: int
) -> list[int]:
    """The tile starts (microseconds) among ``starts`` whose tile is inside the window at
    ``now_us``: ``floor_H(now) - W <= start <= now``."""
    first = window_start(now_us, hop_seconds, window_seconds)
    return [start for start in starts if first <= start <= now_us]
