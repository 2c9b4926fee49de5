"""Stream partials: how the stream worker's tiles are laid out in every online store.

This module owns the contract between the stream worker (which writes them), the stores
(which apply and return them) and the sidecar (which merges them with the batch tile set).
The rule they implement is :mod:`featurestore.windows`; the batch tile set is
:mod:`featurestore.online.layout` ("Timelines").

Ownership (README "Streaming")
    A batch load at cutoff ``C`` owns every event ingested at or before ``C`` (its tile set,
    the record's ``ver`` = ``C``); the stream owns the events ingested after it. The stream
    therefore keeps its partials apart by *ingestion bucket*: bucket ``b`` (an integer, the
    bucket's end in epoch seconds, a multiple of :data:`BUCKET_SECONDS`) holds the events with
    ``b - BUCKET_SECONDS < ingested_at <= b`` (:func:`ingestion_bucket`). A reader adds a
    stream partial to the batch tiles only if its bucket ends after the batch cutoff
    (``b * 10**6 > C``), so an event is counted by exactly one of them, provided ``C`` is a
    whole bucket (the tile model of a streamed view floors its cutoff to the hour, and the
    loader's gate refuses another cutoff). Before any batch load (no record), every stream
    partial counts.

Partials
    One integer per (bucket, hop, tile start, column): ``units`` of ``10**-scale`` (exact
    decimals as integers, as in the batch tile set). Columns are numbered per hop as in the
    tile set: the hop's features in view order, one column for ``count`` (its count) and
    ``sum`` (its sum), two for ``avg`` (count, then sum) (:func:`stream_columns`). An event
    adds to the tile ``floor_hop(t_e)`` of each feature it can ever count for (its ingestion
    time before its leave instant, :func:`featurestore.windows.leaves_at`); a zero addition is
    not written. Field name: ``<bucket>:<hop>:<tile start>:<column>:<scale>`` (all decimal
    integers, seconds; :func:`partial_field`, :func:`parse_partial_field`).

Idempotence (at-least-once delivery, an exactly-once effect)
    * **Event ids.** Each (entity, view) remembers the ids of the events applied to it, with
      their ingestion time, for at least the *dedup horizon* (default
      :data:`DEFAULT_DEDUP_HORIZON_S`, counted back from the newest ingestion time applied;
      pruning writes forget older ids); an event whose id is remembered is a duplicate and
      changes nothing. This makes a replay (a redelivery after a crash, a
      reclaimed Redis Streams entry) and a duplicate send no-ops, on every source.
    * **Offsets.** For sources whose partitions have one reader at a time in order (Kafka, the
      file), each (entity, view) also remembers per partition the highest offset applied
      (``o:<partition>``); an event at or below it is a replay and changes nothing, however old
      (beyond the dedup horizon too). Several partitions may write one entity (a merchant's
      transactions come from every user partition): each has its own offset, and partials add
      up in any order.
    * Both checks and the additions of one (entity, view) and one call are one atomic step
      (a Lua script in Redis, one transaction in SQLite).

Redis (keys in the slot of the entity: the same hash tag as its record hash)
    * ``<ns>:sp:<view>:{<first key part>}[:<other parts>]``: a hash of the partials
      (``<bucket>:<hop>:<start>:<column>:<scale>`` -> integer, HINCRBY) and the offsets
      (``o:<partition>`` -> integer).
    * ``<ns>:sd:<view>:{<first key part>}[:<other parts>]``: a sorted set of the remembered
      event ids, scored by ingestion time (seconds).
    Both expire (PEXPIREAT, shifted as records are when the writer replays another time) when
    the last tile written leaves its last window, resp. one dedup horizon after the later of
    the newest ingestion and the writer's clock; a pruning write (``prune``) also removes the
    ids older than the horizon, the partials the batch owns (bucket end <= the record's
    ``ver``) and the tiles that left every window of their hop.

SQLite (tables beside ``online_records``)
    ``stream_partials(entity, entity_key, view, field, units)``,
    ``stream_offsets(entity, entity_key, view, partition, offset)``,
    ``stream_events(entity, entity_key, view, event_id, ingested_s)``, with the same fields and
    rules; one transaction per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Final, NamedTuple

from featurestore.data_types import aggregated_kind_of
from featurestore.online.layout import DEFAULT_NAMESPACE, OnlineLayoutError, redis_key
from featurestore.registry import FeatureView
from featurestore.windows import AggregationFunction, tile_expires_at

__all__ = [
    "BUCKET_SECONDS",
    "DEFAULT_DEDUP_HORIZON_S",
    "StreamApplied",
    "StreamColumn",
    "StreamEvent",
    "StreamPartials",
    "StreamWrite",
    "decimal_scale",
    "ingestion_bucket",
    "parse_partial_field",
    "partial_field",
    "read_partials",
    "redis_stream_keys",
    "stream_columns",
    "tile_expiry_s",
    "units_of",
]

#: the size of an ingestion bucket (s): a streamed view's batch cutoff is a multiple of it
BUCKET_SECONDS: Final = 3600
#: how long an applied event id is remembered (s), counted back from the newest ingestion:
#: 3 days covers redeliveries and duplicate sends (the demo's come up to 2 days later); a
#: duplicate later than that is counted by the stream until the next batch load heals it
DEFAULT_DEDUP_HORIZON_S: Final = 3 * 86400
_US: Final = 1_000_000
#: wide enough for decimal(38, s) values and their scaled units
_EXACT: Final = Context(prec=100)
_BUCKET_US: Final = BUCKET_SECONDS * _US


def ingestion_bucket(ingested_us: int) -> int:
    """The bucket (its end, epoch seconds) of an event ingested at ``ingested_us``: the
    smallest multiple of :data:`BUCKET_SECONDS` at or after it (``b - H < ingested <= b``)."""
    return -(-ingested_us // _BUCKET_US) * BUCKET_SECONDS


def decimal_scale(data_type: str) -> int:
    """The scale of an aggregated column's type (``decimal(18, 2)``: 2; an integer: 0)."""
    if aggregated_kind_of(data_type) == "int":
        return 0
    inside = data_type[data_type.index("(") + 1 : data_type.rindex(")")]
    return int(inside.split(",")[1])


@dataclass(frozen=True, slots=True)
class StreamColumn:
    """One stored column of a feature's partials (see "Partials")."""

    feature: str
    function: AggregationFunction
    #: the event column it reads (None: a count of events)
    source: str | None
    #: what the column holds: ``count`` (1 per event, or per non-null value of ``source``) or
    #: ``sum`` (the value of ``source``, in units of ``10**-scale``)
    holds: str
    hop_seconds: int
    #: the longest window of its hop among the view's features (s): when its tiles expire
    longest_window_seconds: int
    window_seconds: int
    #: its number among the columns of its hop
    column: int
    scale: int


def stream_columns(view: FeatureView) -> tuple[StreamColumn, ...]:
    """The stored columns of a tiled view's features, in view order."""
    if view.windowed is None:
        raise OnlineLayoutError(f"view {view.name} is not a declared (windowed) view")
    event_types = dict(view.windowed.event_columns)
    longest: dict[int, int] = {}
    for feature in view.features:
        if feature.aggregation is not None:
            hop = feature.aggregation.hop_seconds
            longest[hop] = max(longest.get(hop, 0), feature.aggregation.window_seconds)
    out: list[StreamColumn] = []
    numbers: dict[int, int] = {}
    for feature in view.features:
        aggregation = feature.aggregation
        if aggregation is None:  # pragma: no cover - the registry refuses it
            raise OnlineLayoutError(f"{view.name}.{feature.name}: no aggregation")
        hop = aggregation.hop_seconds
        scale = 0
        if aggregation.function != "count" and aggregation.column is not None:
            scale = decimal_scale(event_types[aggregation.column])
        holds = {"count": ("count",), "sum": ("sum",), "avg": ("count", "sum")}
        for what in holds[aggregation.function]:
            number = numbers.get(hop, 0)
            numbers[hop] = number + 1
            out.append(
                StreamColumn(
                    feature=feature.name,
                    function=aggregation.function,
                    source=aggregation.column,
                    holds=what,
                    hop_seconds=hop,
                    longest_window_seconds=longest[hop],
                    window_seconds=aggregation.window_seconds,
                    column=number,
                    scale=scale if what == "sum" else 0,
                )
            )
    return tuple(out)


def partial_field(bucket: int, hop: int, start: int, column: int, scale: int) -> str:
    """The stored name of one partial (all seconds / integers, see "Partials")."""
    return f"{bucket}:{hop}:{start}:{column}:{scale}"


def parse_partial_field(name: str | bytes) -> tuple[int, int, int, int, int] | None:
    """``(bucket, hop, start, column, scale)`` of a partial's name; None for another field
    (an offset ``o:<partition>``). Raises ValueError for a malformed partial name."""
    text = name.decode() if isinstance(name, bytes) else name
    if text.startswith("o:"):
        return None
    parts = text.split(":")
    if len(parts) != 5:
        raise OnlineLayoutError(f"not a stream partial field: {text[:60]!r}")
    bucket, hop, start, column, scale = map(int, parts)
    if bucket % BUCKET_SECONDS or hop <= 0 or start % hop or column < 0 or scale < 0:
        raise OnlineLayoutError(f"not a stream partial field: {text[:60]!r}")
    return bucket, hop, start, column, scale


def redis_stream_keys(
    view: str, key: Sequence[str], namespace: str = DEFAULT_NAMESPACE
) -> tuple[str, str]:
    """The Redis keys of one (entity key, view): (partials hash, dedup sorted set), in the slot
    of the entity's record hash."""
    record = redis_key("x", key, namespace)  # checks the parts; the tag is the first part
    tail = record[len(namespace) + 3 :]  # "{first}[:rest]"
    return f"{namespace}:sp:{view}:{tail}", f"{namespace}:sd:{view}:{tail}"


class StreamEvent(NamedTuple):
    """One event's additions to one (entity, view)."""

    event_id: str
    ingested_us: int
    #: its offset in its partition (None: the source has no per-partition order, no fencing)
    offset: int | None
    #: (field, units) to add, see "Partials"
    additions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class StreamWrite:
    """Events of one partition for one (entity key, view), in partition order."""

    entity: str
    key: tuple[str, ...]
    view: str
    partition: str
    events: tuple[StreamEvent, ...]
    #: when the last tile written leaves its last window (epoch seconds)
    expires_at: int
    #: (hop, longest window of the hop) in seconds, per hop of the view: what a pruning write
    #: needs to find the tiles that left every window
    prune: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class StreamApplied:
    """What one apply did, in events."""

    applied: int = 0
    duplicates: int = 0
    replayed: int = 0

    def __add__(self, other: StreamApplied) -> StreamApplied:
        return StreamApplied(
            self.applied + other.applied,
            self.duplicates + other.duplicates,
            self.replayed + other.replayed,
        )


#: hop seconds -> tile start seconds -> column -> (units, scale)
StreamPartials = dict[int, dict[int, dict[int, tuple[int, int]]]]


def read_partials(
    pairs: Iterable[tuple[str | bytes, str | bytes | int]], cutoff_us: int | None
) -> StreamPartials:
    """The stream partials of one (entity, view) that a reader adds to a batch tile set of
    cutoff ``cutoff_us`` (None: no batch record, all of them): those whose bucket ends after
    it. Partials of one tile and column stored at different scales are summed at the larger
    one. Raises ValueError for a field or value that is not a partial."""
    out: StreamPartials = {}
    for name, value in pairs:
        parsed = parse_partial_field(name)
        if parsed is None:
            continue
        bucket, hop, start, column, scale = parsed
        if cutoff_us is not None and bucket * _US <= cutoff_us:
            continue
        units = value if type(value) is int else int(value)
        columns = out.setdefault(hop, {}).setdefault(start, {})
        held = columns.get(column)
        if held is None:
            columns[column] = (units, scale)
        else:
            top = max(held[1], scale)
            columns[column] = (
                held[0] * 10 ** (top - held[1]) + units * 10 ** (top - scale),
                top,
            )
    return out


def units_of(value: object, scale: int) -> int:
    """A column value (int or Decimal) as an exact integer of ``10**-scale`` units."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise OnlineLayoutError(f"not an integer or decimal: {value!r}"[:80])
    if isinstance(value, int):
        return int(value * 10**scale)
    scaled = value.scaleb(scale, context=_EXACT)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise OnlineLayoutError(f"{value!r} has more than {scale} decimals")
    return int(scaled)


def tile_expiry_s(start_s: int, column: StreamColumn) -> int:
    """When a tile of ``column``'s hop leaves its last window (epoch seconds)."""
    return tile_expires_at(start_s * _US, column.hop_seconds, column.longest_window_seconds) // _US
