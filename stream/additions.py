"""What one event adds to the tiles of one streamed view (:mod:`featurestore.windows`, the
same rule as the batch macro; the stored form is :mod:`featurestore.online.stream_tiles`).

For an event with ``t_e = min(event_time, ingested_at)``, each feature's column gets, in the
tile ``floor_hop(t_e)`` and the ingestion bucket of ``ingested_at``: ``count`` 1 (of events,
or of non-null values of its column), ``sum`` the column's value in units of its scale; not
written when the event can never count for that feature (ingested at or after the instant it
leaves the feature's window: :func:`featurestore.windows.leaves_at`), nor when it adds 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from featurestore.online.stream_tiles import (
    StreamColumn,
    ingestion_bucket,
    partial_field,
    stream_columns,
    tile_expiry_s,
    units_of,
)
from featurestore.registry import FeatureView
from featurestore.windows import effective_time, leaves_at, tile_start
from stream.events import ParsedEvent

__all__ = ["Additions", "ViewPlan"]

_US: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Additions:
    """One event's additions to one entity key of a view."""

    key: tuple[str, ...]
    #: (partial field, units) pairs
    fields: tuple[tuple[str, int], ...]
    #: when the last tile it adds to leaves its last window (epoch seconds)
    expires_at: int


@dataclass(frozen=True)
class ViewPlan:
    """A streamed view as the worker applies events to it."""

    view: str
    entity: str
    keys: tuple[str, ...]
    columns: tuple[StreamColumn, ...]
    #: (hop, longest window of the hop) per hop, for pruning writes
    hops: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, view: FeatureView) -> ViewPlan:
        columns = stream_columns(view)
        hops = tuple(dict.fromkeys((c.hop_seconds, c.longest_window_seconds) for c in columns))
        return cls(view.name, view.entity.name, view.keys, columns, hops)

    def key_of(self, event: ParsedEvent) -> tuple[str, ...] | None:
        """The event's entity key for this view (None: a key column is null)."""
        parts = []
        for column in self.keys:
            value = event.values.get(column)
            if value is None:
                return None
            parts.append(value if isinstance(value, str) else str(value))
        return tuple(parts)

    def additions(self, event: ParsedEvent) -> Additions | None:
        """What the event adds to this view (None: no key, or nothing it can ever count)."""
        key = self.key_of(event)
        if key is None:
            return None
        ingested = event.ingested_us
        t_e = effective_time(event.event_us, ingested)
        bucket = ingestion_bucket(ingested)
        fields: list[tuple[str, int]] = []
        expires = 0
        for column in self.columns:
            hop = column.hop_seconds
            if ingested >= leaves_at(t_e, hop, column.window_seconds):
                continue
            if column.holds == "count":
                counts = column.source is None or event.values.get(column.source) is not None
                units = 1 if counts else 0
            else:
                value = event.values.get(column.source or "")
                units = 0 if value is None else units_of(value, column.scale)
            if units == 0:
                continue
            start = tile_start(t_e, hop) // _US
            fields.append((partial_field(bucket, hop, start, column.column, column.scale), units))
            expires = max(expires, tile_expiry_s(start, column))
        if not fields:
            return None
        return Additions(key, tuple(fields), expires)

    def counts_ever(self, event: ParsedEvent) -> bool:
        """Whether the event can count for some feature of the view at all (ingested before
        it leaves some window)."""
        t_e = effective_time(event.event_us, event.ingested_us)
        return any(
            event.ingested_us < leaves_at(t_e, c.hop_seconds, c.window_seconds)
            for c in self.columns
        )
