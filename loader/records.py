"""Arrow rows of an online relation -> :class:`featurestore.online.layout.Record` objects,
ONE record per entity (:class:`RecordGrouper`).

The rows arrive ordered by the entity keys (then the feature timestamp, or the hop and
tile start), so one entity's rows are consecutive; the grouper carries the open entity over
from one batch to the next, so an entity split by a batch boundary is still one record.
The record's ``key`` = the entity key columns in registry order (as text):

* **hand-written** view (rows: the entity's current row, then its scheduled rows): the
  record is the entity's **last** row, ``ts`` = ``<view>__feature_at`` and ``ver`` =
  ``<view>__as_of_at`` as microseconds since the epoch (UTC), or the load's cutoff
  ``as_of_at`` when that row is a scheduled one (``ts`` after the cutoff), ``exp`` = ``ts`` (whole
  seconds) + the view's TTL, ``values`` = the view's features (``None`` for null); its
  timeline is :func:`~featurestore.online.layout.encode_steps` of the earlier rows in order
  (values encoded with :func:`~featurestore.online.layout.encode_python_value`), absent when
  the entity has one row;
* **tiled** view (rows: one per hop and tile): ``ts`` = the greatest ``<view>__feature_at``,
  ``ver`` = the cutoff (``as_of_at``), ``values`` = ``{}``, ``exp`` = the instant (whole
  seconds) the entity's last tile leaves the longest window of its hop
  (:func:`featurestore.windows.tile_expires_at`) and the timeline the tile set
  (:func:`~featurestore.online.layout.encode_tile_set`): per hop and tile start (seconds) the
  partials of the hop's features in view order (:data:`featurestore.windows.Partial`).

The validation gate has already refused null keys/timestamps, non-finite floats, wrong types
and bad tiles, so this conversion does not re-check them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.layout import Record, encode_python_value, encode_steps, encode_tile_set
from featurestore.windows import Partial, tile_expires_at
from loader.views import HOP_COLUMN, TILE_START_COLUMN, ViewSource, partial_columns

__all__ = ["Converted", "RecordGrouper", "micros_array", "to_records"]

_US = 1_000_000


def micros_array(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A timestamp column as int64 microseconds since the epoch (UTC)."""
    if not pa.types.is_timestamp(column.type):
        raise TypeError(f"expected a timestamp column, got {column.type}")
    unit = column.type.unit
    if unit != "us":
        column = pc.cast(column, pa.timestamp("us", column.type.tz), safe=False)
    return pc.cast(column, pa.int64())


@dataclass
class Converted:
    """Records to write (unexpired at ``now``, unless kept), how many rows they hold, and
    how many rows belonged to records already expired (kept or not)."""

    records: list[Record] = field(default_factory=list)
    expired: int = 0
    rows: int = 0

    def add(self, other: Converted) -> None:
        """Append ``other``'s records and counts."""
        self.records += other.records
        self.expired += other.expired
        self.rows += other.rows


#: one row as grouped: (ts us, ver us, values or tile columns)
_Row = tuple[int, int, tuple[object, ...]]


class RecordGrouper:
    """Turns consecutive batches of one view's ordered rows into one record per entity:
    :meth:`feed` returns the records of the entities complete so far (the last entity of a
    batch stays open: its next rows may start the next batch), :meth:`finish` the last one.

    Records whose ``exp`` <= ``now_seconds`` are counted (their rows) in ``expired`` and left
    out, unless ``keep_expired`` (a replace-mode write, where an expired record removes the
    stored one)."""

    def __init__(self, source: ViewSource, now_seconds: int, *, keep_expired: bool = False):
        self.source = source
        self.now_seconds = now_seconds
        self.keep_expired = keep_expired
        view = source.view
        self._entity, self._name = view.entity.name, view.name
        self._features = view.feature_names()
        self._ttl = view.ttl_seconds
        self._open_key: tuple[str, ...] | None = None
        self._open_rows: list[_Row] = []
        if source.tiled:
            hops: dict[int, list[int]] = {}
            longest: dict[int, int] = {}
            for index, feature in enumerate(view.features):
                aggregation = feature.aggregation
                assert aggregation is not None  # a tiled view's features all declare one
                hop = aggregation.hop_seconds
                hops.setdefault(hop, []).append(index)
                longest[hop] = max(longest.get(hop, 0), aggregation.window_seconds)
            #: hop -> the positions (in view order) of its features
            self._hop_features = hops
            self._longest = longest
            self._functions = [f.aggregation.function for f in view.features if f.aggregation]

    def feed(self, batch: pa.RecordBatch) -> Converted:
        """The records of the entities that end before the last row of ``batch``."""
        out = Converted()
        if batch.num_rows == 0:
            return out
        view, source = self.source.view, self.source
        keys = list(zip(*(_text(batch.column(key)) for key in view.keys), strict=True))
        ts = micros_array(batch.column(source.ts_column)).to_pylist()
        if source.tiled:
            ver = micros_array(batch.column(source.cutoff_column)).to_pylist()
            values = self._tile_values(batch)
        else:
            # a scheduled last row (ts after the cutoff) is versioned by the cutoff: see
            # _handwritten
            as_of = micros_array(batch.column(source.ver_column)).to_pylist()
            cutoff = micros_array(batch.column(source.cutoff_column)).to_pylist()
            ver = [c if t > c else v for t, v, c in zip(ts, as_of, cutoff, strict=True)]
            if self._features:
                values = list(
                    zip(*(batch.column(f).to_pylist() for f in self._features), strict=True)
                )
            else:
                values = [()] * batch.num_rows
        open_key, open_rows = self._open_key, self._open_rows
        close = self._close
        for key, ts_, ver_, row in zip(keys, ts, ver, values, strict=True):
            if key != open_key:
                if open_key is not None:
                    close(open_key, open_rows, out)
                open_key, open_rows = key, [(ts_, ver_, row)]
            else:
                open_rows.append((ts_, ver_, row))
        self._open_key, self._open_rows = open_key, open_rows
        return out

    def finish(self) -> Converted:
        """The record of the entity still open (the last rows read), if any."""
        out = Converted()
        if self._open_key is not None:
            self._close(self._open_key, self._open_rows, out)
        self._open_key, self._open_rows = None, []
        return out

    def _close(self, key: tuple[str, ...], rows: list[_Row], out: Converted) -> None:
        record = self._tiled(key, rows) if self.source.tiled else self._handwritten(key, rows)
        if record.exp <= self.now_seconds:
            out.expired += len(rows)
            if not self.keep_expired:
                return
        out.records.append(record)
        out.rows += len(rows)

    def _handwritten(self, key: tuple[str, ...], rows: list[_Row]) -> Record:
        """The last row, versioned by its as-of time, or by the cutoff if it is scheduled.

        A scheduled row's as-of time is its own ``ts`` in every load that schedules it, so
        ``(ts, ver)`` would be equal in a later load that corrected it (a late event ingested
        between the loads) and newer-wins would keep the stale record and steps. Versioned by
        the cutoff, a later load wins (a larger cutoff), a re-run of the same load is an equal
        pair (a no-op), and an older load loses; once the row is current its as-of time is at
        least its ``ts``, greater than any earlier cutoff that scheduled it."""
        ts, ver, values = rows[-1]
        timeline = None
        if len(rows) > 1:
            timeline = encode_steps(
                [(step[0], [encode_python_value(v) for v in step[2]]) for step in rows[:-1]]
            )
        return Record(
            self._entity,
            key,
            self._name,
            ts,
            ver,
            ts // _US + self._ttl,
            dict(zip(self._features, values, strict=True)),
            timeline,
        )

    def _tiled(self, key: tuple[str, ...], rows: list[_Row]) -> Record:
        tiles: dict[int, dict[int, tuple[object, ...]]] = {}
        exp_us = 0
        for _, _, (hop, start_us, partials) in rows:
            assert isinstance(hop, int) and isinstance(start_us, int)
            assert isinstance(partials, tuple)
            positions = self._hop_features.get(hop, [])
            tiles.setdefault(hop, {})[start_us // _US] = tuple(partials[i] for i in positions)
            exp_us = max(exp_us, tile_expires_at(start_us, hop, self._longest.get(hop, 0)))
        return Record(
            self._entity,
            key,
            self._name,
            max(row[0] for row in rows),
            max(row[1] for row in rows),
            exp_us // _US,
            {},
            encode_tile_set(tiles),
        )

    def _tile_values(self, batch: pa.RecordBatch) -> list[tuple[object, ...]]:
        """Per row: (hop seconds, tile start us, the partial of every feature in view order,
        None for a feature of another hop)."""
        hops = batch.column(HOP_COLUMN).to_pylist()
        starts = micros_array(batch.column(TILE_START_COLUMN)).to_pylist()
        per_feature: list[list[Partial | None]] = []
        for feature, function in zip(self.source.view.features, self._functions, strict=True):
            columns = [batch.column(c).to_pylist() for c in partial_columns(feature)]
            if function == "avg":
                per_feature.append([_avg(c, s) for c, s in zip(*columns, strict=True)])
            else:
                per_feature.append(columns[0])
        partials = list(zip(*per_feature, strict=True)) if per_feature else [()] * len(hops)
        return list(zip(hops, starts, partials, strict=True))


def _avg(count: int | None, total: int | Decimal | None) -> Partial | None:
    if count is None:
        return None
    return (count, total if total is not None else 0)


def to_records(
    batch: pa.RecordBatch, source: ViewSource, now_seconds: int, *, keep_expired: bool = False
) -> Converted:
    """The records of one complete batch (every entity's rows in it): see
    :class:`RecordGrouper`."""
    grouper = RecordGrouper(source, now_seconds, keep_expired=keep_expired)
    out = grouper.feed(batch)
    out.add(grouper.finish())
    return out


def _text(column: pa.Array) -> list[str]:
    """Key parts as text (layout: non-empty strings); integer keys as decimal digits."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values: list[str] = column.to_pylist()
        return values
    return [str(value) for value in column.to_pylist()]
