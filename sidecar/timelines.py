"""Record timelines at serve time: tiled views merged, scheduled values picked, at the
request's time ``T`` (the sidecar clock's wall time: the system clock, or the one ``--now``
/ ``FEATURESTORE_NOW`` pins).

A stored record may carry a timeline (:mod:`featurestore.online.layout`, "Timelines"). When
the store's answer is turned into answers (:meth:`sidecar.retrieval.Retriever`), such a
record becomes a *timeline entry* instead of a fixed :data:`~sidecar.fragments.CachedRecord`:

* a **tiled** (declared, windowed) view's record becomes a :class:`TiledEntry`: its tile
  set (prefix sums per hop and column, :func:`featurestore.online.layout.read_tile_columns`)
  read and checked once (its shape; every hop's partials one per feature of that hop, of the
  kind of its aggregation). At ``T`` each feature's value is what
  :func:`featurestore.windows.merge` gives for the partials of the tiles of its hop whose
  start is in ``[window_start(T), T]`` (:func:`featurestore.windows.window_start`:
  ``floor_hop(T) - window``, inclusive; found by bisection in the sorted starts, the same
  set as :func:`featurestore.windows.tiles_in_window`): one difference of two prefix sums,
  as the feature's registry type (a ``float``
  feature's value is a JSON float even when the sum is a whole 0). Over an empty window
  ``count``/``sum`` are 0 and ``avg`` null (answered like a null value: the default with
  reason ``NULL``). The answer's ``timestamp`` is ``T`` itself (the window's end),
  ``status`` ``PRESENT`` for a value. The record is served while its ``exp`` (the instant
  its last tile leaves its last window) is later than ``T``.
* a **hand-written** view's record with scheduled steps becomes a :class:`ScheduledEntry`:
  each step and the record itself (the last step) rendered once. At ``T`` the latest whose
  ``ts <= T`` is served (the first if ``T`` is earlier than all), with its own ``ts`` as
  ``timestamp`` and its own expiry ``ts // 10**6 + ttl`` (the rule of the record's ``exp``).
  A record without a timeline stays a plain ``CachedRecord`` (the fast path is unchanged).

A timeline that cannot be decoded (not JSON, a partial of the wrong shape, a step of the
wrong length or out of order, a value not valid for its type) makes the record an
:class:`~featurestore.online.store.InvalidRecord`: the ``INVALID_RECORD`` answer, never
cached, counted and logged like any bad record.

Garbage collection: an entry is one tracked object holding only tuples of ints, decimals,
bytes and untracked answers (which the collector stops tracking), not lists: a cache of
100,000 tiled entries adds 100,000 objects to a full collection's walk, not millions.

Cache: the cache holds the entry (the decoded tiles or rendered steps), for the view's
cache TTL like any record, and every request picks or merges at its own ``T`` (:meth:`at`):
a cached timeline is never older than the cache TTL, and a value served at ``T`` is the
value at ``T``. A :class:`TiledEntry` remembers its last merged values with the interval in
which they hold, ``[max floor_hop(T), min floor_hop(T) + hop)`` over its hops (no tile can
enter or leave a window inside it): a request in it costs only the rendering of the answer
with its own timestamp.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import orjson

from featurestore.online.layout import decode_steps, read_tile_columns
from featurestore.online.store import EncodedRecord, InvalidRecord
from featurestore.registry import FeatureView
from featurestore.windows import AggregationFunction, merge, window_start
from sidecar.fragments import CachedRecord, ViewRenderer

__all__ = ["ScheduledEntry", "TiledEntry", "TimelinePlan", "WindowedFeature", "is_entry"]

_US: Final = 1_000_000
#: what decoding a stored timeline may raise (Decimal's InvalidOperation is no ValueError)
_UNREADABLE: Final = (ValueError, ArithmeticError, TypeError)


@dataclass(frozen=True, slots=True)
class WindowedFeature:
    """One feature of a tiled view as the merge needs it."""

    function: AggregationFunction
    hop_seconds: int
    window_seconds: int
    #: its partial's position among the partials of its hop (view order)
    slot: int
    #: whether its registry type is ``float`` (a sum over no decimal is 0.0 then, not 0)
    as_float: bool = False


@dataclass(frozen=True)
class TimelinePlan:
    """What one online view's timelines need, built once at startup (:meth:`of`)."""

    view: str
    ttl_seconds: int
    renderer: ViewRenderer
    #: per feature (view order) its windowed definition; empty for a hand-written view
    windowed: tuple[WindowedFeature, ...] = ()
    #: hop seconds -> how many partials each of its tiles holds
    hop_widths: tuple[tuple[int, int], ...] = ()

    @property
    def tiled(self) -> bool:
        return bool(self.windowed)

    @classmethod
    def of(cls, view: FeatureView, renderer: ViewRenderer) -> TimelinePlan:
        if not view.tiled:
            return cls(view.name, view.ttl_seconds, renderer)
        widths: dict[int, int] = {}
        features = []
        for feature in view.features:
            aggregation = feature.aggregation
            if aggregation is None:  # pragma: no cover - the registry refuses it
                raise ValueError(f"{view.name}.{feature.name}: a tiled feature, no aggregation")
            hop = aggregation.hop_seconds
            slot = widths.get(hop, 0)
            widths[hop] = slot + 1
            features.append(
                WindowedFeature(
                    aggregation.function,
                    hop,
                    aggregation.window_seconds,
                    slot,
                    feature.value_type == "float",
                )
            )
        return cls(view.name, view.ttl_seconds, renderer, tuple(features), tuple(widths.items()))

    # --- from the store's answer ----------------------------------------------------------

    def tiled_entry(self, exp: int, timeline: bytes | None) -> TiledEntry | InvalidRecord:
        """The entry of a tiled view's record (``exp`` epoch seconds), or why it is invalid.

        Reads the layout's tile set (prefix sums per hop and column,
        :func:`featurestore.online.layout.read_tile_columns`, which checks its shape) and
        checks that each hop the view uses has one feature per partial of the kind of its
        aggregation (``avg``: a (count, sum) pair of columns; ``count``/``sum``: one)."""
        if timeline is None:
            return InvalidRecord("a tiled view's record without a tile set")
        try:
            stored = read_tile_columns(timeline)
        except _UNREADABLE as exc:
            return InvalidRecord(f"tile set: {exc}"[:200])
        functions = self.hop_functions
        hops: _Hops = {}
        for hop, columns in stored.items():
            hop_functions = functions.get(hop)
            if hop_functions is None or not columns.starts:
                continue  # a hop no feature uses (the registry changed), or no tiles
            wanted = [2 if function == "avg" else 1 for function in hop_functions]
            if columns.kinds != wanted:
                return InvalidRecord(
                    f"tile set hop {hop}: partial kinds {columns.kinds}, the view's features "
                    f"of hop {hop} s need {wanted}"
                )
            offsets = tuple(accumulate(wanted[:-1], initial=0))
            hops[hop] = (
                tuple(columns.starts),
                tuple(
                    tuple(
                        (tuple(columns.prefixes[c]), columns.scales[c])
                        for c in range(offset, offset + kind)
                    )
                    for offset, kind in zip(offsets, wanted, strict=True)
                ),
            )
        return TiledEntry(self, exp, hops)

    @functools.cached_property
    def hop_functions(self) -> dict[int, list[AggregationFunction]]:
        """Hop seconds -> the aggregation of each of its partials (view order)."""
        functions: dict[int, list[AggregationFunction]] = {}
        for feature in self.windowed:
            functions.setdefault(feature.hop_seconds, []).append(feature.function)
        return functions

    def scheduled_entry(
        self, record: CachedRecord, ts: int, timeline: bytes
    ) -> ScheduledEntry | InvalidRecord:
        """The entry of a hand-written view's record (already rendered: ``record``, its
        feature timestamp ``ts`` in microseconds) and its scheduled steps, or why they are
        invalid."""
        try:
            steps = decode_steps(timeline)
        except _UNREADABLE as exc:
            return InvalidRecord(f"scheduled steps: {exc}"[:200])
        width = len(self.renderer.features)
        starts: list[int] = []
        records: list[CachedRecord] = []
        for step_ts, values in steps:
            if len(values) != width:
                return InvalidRecord(
                    f"scheduled step at {step_ts} us: {len(values)} values, the view has {width}"
                )
            if (starts and step_ts < starts[-1]) or step_ts > ts:
                return InvalidRecord(f"scheduled step at {step_ts} us: out of order")
            rendered = self.renderer.from_encoded(
                EncodedRecord(
                    step_ts,
                    step_ts,
                    step_ts // _US + self.ttl_seconds,
                    tuple(None if v is None else v.encode() for v in values),
                )
            )
            if isinstance(rendered, InvalidRecord):
                return InvalidRecord(f"scheduled step at {step_ts} us: {rendered.reason}")
            starts.append(step_ts)
            records.append(rendered)
        starts.append(ts)
        records.append(record)
        return ScheduledEntry(starts, records)


#: one feature's columns: per column (its prefix sums, ``prefix[k]`` the sum of the first
#: ``k`` tiles' partials in units of ``10**-scale``; its scale): one column for ``count``
#: and ``sum``, (counts, sums) for ``avg``
_Columns = tuple[tuple[tuple[int, ...], int], ...]
#: hop seconds -> (tile starts in seconds ascending, per slot its _Columns)
_Hops = dict[int, tuple[tuple[int, ...], tuple[_Columns, ...]]]


class TiledEntry:
    """A tiled view's record for one key: per feature the prefix sums of its partials in
    tile order, so that its value at any ``T`` is one difference of two prefix sums at the
    window's first and last tile (found by bisection): the arithmetic of
    :func:`featurestore.windows.merge` (integers exact; decimals exact: a total that could
    round in 28 digits is merged from the window's partials with ``merge`` itself)."""

    __slots__ = ("_hops", "_memo", "exp", "plan")

    def __init__(
        self,
        plan: TimelinePlan,
        exp: int,
        hops: _Hops,
    ) -> None:
        self.plan = plan
        self.exp = exp
        #: hop seconds -> (tile starts in seconds ascending, per slot its _Columns)
        self._hops = hops
        #: (first instant, end instant, value JSON per feature) of the last merge
        self._memo: tuple[int, int, tuple[bytes | None, ...]] | None = None

    def values_at(self, now_us: int) -> list[int | float | None]:
        """Each feature's value (view order) at ``now_us`` (microseconds, UTC).

        Sums are exact integers of ``10**-scale`` units; a decimal one becomes a float by one
        correctly rounded division (Python's int / int), as ``float(Decimal)`` and the SQL
        ``cast(sum as double)`` round it; an avg is that float divided by the count."""
        out: list[int | float | None] = []
        hops = self._hops
        now_s = now_us // _US
        value: int | float | None
        for feature in self.plan.windowed:
            function = feature.function
            found = hops.get(feature.hop_seconds)
            if found is None or not found[0]:
                value = merge(function, ())
            else:
                starts, slots = found
                first = window_start(now_us, feature.hop_seconds, feature.window_seconds) // _US
                lo = bisect.bisect_left(starts, first)
                hi = bisect.bisect_right(starts, now_s)
                columns = slots[feature.slot]
                prefix, scale = columns[0]
                if function == "count":
                    value = prefix[hi] - prefix[lo]
                elif function == "sum":
                    units = prefix[hi] - prefix[lo]
                    value = units if scale == 0 else units / 10**scale
                else:
                    count = prefix[hi] - prefix[lo]
                    sums, scale = columns[1]
                    units = sums[hi] - sums[lo]
                    value = (units / 10**scale) / count if count else None
            if feature.as_float and type(value) is int:
                value = float(value)
            out.append(value)
        return out

    def at(self, now_us: int, stamp: bytes) -> CachedRecord:
        """The answers at ``now_us`` (``stamp``: it as ISO 8601, the answers' timestamp)."""
        memo = self._memo
        if memo is None or not memo[0] <= now_us < memo[1]:
            values = tuple([None if v is None else orjson.dumps(v) for v in self.values_at(now_us)])
            begin, end = 0, 1 << 62
            for hop, _ in self.plan.hop_widths:
                floor = now_us - now_us % (hop * _US)
                begin = max(begin, floor)
                end = min(end, floor + hop * _US)
            memo = self._memo = (begin, end, values)
        return self.plan.renderer.from_json(self.exp, stamp, memo[2])


class ScheduledEntry:
    """A hand-written view's record for one key with its scheduled steps (see the module
    docstring): ``starts`` ascending, ``records`` the rendered answers of each."""

    __slots__ = ("records", "starts")

    def __init__(self, starts: Sequence[int], records: Sequence[CachedRecord]) -> None:
        self.starts = tuple(starts)
        self.records = tuple(records)

    def at(self, now_us: int, stamp: bytes) -> CachedRecord:
        """The answers of the latest step whose ``ts <= now_us`` (the first if none is);
        ``stamp`` is not used (each step answers with its own ``ts``)."""
        index = bisect.bisect_right(self.starts, now_us) - 1
        return self.records[index if index > 0 else 0]


def is_entry(value: object) -> bool:
    """Whether a slot holds a timeline entry (resolved per request) rather than answers."""
    return type(value) is TiledEntry or type(value) is ScheduledEntry
