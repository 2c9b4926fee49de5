"""What one event adds to the tiles of one streamed view (:mod:`featurestore.windows`, the
same rule as the batch macro; the stored form is :mod:`featurestore.online.stream_tiles`).

For an event with ``t_e = min(event_time, ingested_at)``, each feature's column gets, in the
tile ``floor_hop(t_e)`` and the ingestion bucket of ``ingested_at``: ``count`` 1 (of events,
or of non-null values of its column), ``sum`` the column's value in units of its scale; not
written when the event can never count for that feature (ingested at or after the instant it
leaves the feature's window: :func:`featurestore.windows.leaves_at`), nor when it adds 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple

from featurestore.online.stream_tiles import (
    StreamColumn,
    ingestion_bucket,
    stream_columns,
    units_of,
)
from featurestore.registry import FeatureView
from stream.events import EXACT, ParsedEvent

__all__ = ["Additions", "ViewPlan"]

_US: Final = 1_000_000


class Additions(NamedTuple):
    """One event's additions to one entity key of a view."""

    key: tuple[str, ...]
    #: (partial field, units) pairs
    fields: tuple[tuple[str, int], ...]
    #: when the last tile it adds to leaves its last window (epoch seconds)
    expires_at: int


#: one stored column as the hot loop reads it: ((hop + window) in microseconds, what it
#: holds is a count, its source column or None, its scale, the field's end
#: ":<column>:<scale>")
_Column = tuple[int, bool, str | None, int, str]
#: one hop as the hot loop reads it: (hop in microseconds, the field's middle ":<hop>:", hop
#: + longest window of the hop in seconds, its columns)
_Hop = tuple[int, str, int, tuple[_Column, ...]]


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

    @functools.cached_property
    def _hops(self) -> tuple[_Hop, ...]:
        by_hop: dict[int, list[StreamColumn]] = {}
        for column in self.columns:
            by_hop.setdefault(column.hop_seconds, []).append(column)
        return tuple(
            (
                hop * _US,
                f":{hop}:",
                hop + columns[0].longest_window_seconds,
                tuple(
                    (
                        (hop + c.window_seconds) * _US,
                        c.holds == "count",
                        c.source,
                        c.scale,
                        f":{c.column}:{c.scale}",
                    )
                    for c in columns
                ),
            )
            for hop, columns in by_hop.items()
        )

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
        return self.evaluate(event)[0]

    def counts_ever(self, event: ParsedEvent) -> bool:
        """Whether the event can count for some feature of the view at all (ingested before
        it leaves some window)."""
        return self.evaluate(event)[1]

    def evaluate(self, event: ParsedEvent) -> tuple[Additions | None, bool]:
        """(:meth:`additions`, :meth:`counts_ever`) in one pass: the worker's hot loop (per
        hop the tile start once, per column its addition)."""
        ingested = event.ingested_us
        event_us = event.event_us
        t_e = event_us if event_us < ingested else ingested
        values = event.values
        counts = False
        fields: list[tuple[str, int]] = []
        expires = 0
        bucket = ""
        for hop_us, middle, life, columns in self._hops:
            start_us = t_e - t_e % hop_us
            prefix = ""
            for span_us, is_count, source, scale, end in columns:
                if ingested >= start_us + span_us:  # it left this window: never counts here
                    continue
                counts = True
                if is_count:
                    if source is not None and values.get(source) is None:
                        continue
                    units = 1
                else:
                    value = values.get(source or "")
                    if value is None:
                        continue
                    if type(value) is Decimal:
                        # the contract quantized it to exactly the column's scale: exact
                        units = int(value.scaleb(scale, context=EXACT))
                    else:
                        units = units_of(value, scale)
                    if units == 0:
                        continue
                if not prefix:
                    if not bucket:
                        bucket = str(ingestion_bucket(ingested))
                    start = start_us // _US
                    prefix = f"{bucket}{middle}{start}"
                    if start + life > expires:
                        expires = start + life
                fields.append((prefix + end, units))
        if not fields:
            return None, counts
        key = self.key_of(event)
        if key is None:
            return None, counts
        return Additions(key, tuple(fields), expires), counts
