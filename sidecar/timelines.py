"""Record timelines at serve time: tiled views merged, scheduled values picked, at the
request's time ``T`` (the sidecar clock's wall time: the system clock, or the one ``--now``
/ ``FEATURESTORE_NOW`` pins).

A stored record may carry a timeline (:mod:`featurestore.online.layout`, "Timelines"). When
the store's answer is turned into answers (:meth:`sidecar.retrieval.Retriever`), such a
record becomes a *timeline entry* instead of a fixed :data:`~sidecar.fragments.CachedRecord`:

* a **tiled** (declared, windowed) view's record becomes a :class:`TiledEntry`: its tile
  set (per hop its tile numbers and per column the prefix sums of the partials, packed or
  JSON: :func:`featurestore.online.layout.read_tile_set`) checked once (its shape; every
  hop's partials one per feature of that hop, of the kind of its aggregation) and kept as
  stored: a packed set's bytes are read in place (int64 words), not decoded. At ``T`` each
  feature's value is what :func:`featurestore.windows.merge` gives for the partials of the
  tiles of its hop whose start is in ``[window_start(T), T]``
  (:func:`featurestore.windows.window_start`: ``floor_hop(T) - window``, inclusive; found by
  bisection among the ascending tile numbers, the same set as
  :func:`featurestore.windows.tiles_in_window`): one difference of two prefix sums, as the
  feature's registry type (a ``float`` feature's value is a JSON float even when the sum is
  a whole 0). Over an empty window ``count``/``sum`` are 0 and ``avg`` null (answered like
  a null value: the default with reason ``NULL``). The answer's ``timestamp`` is ``T``
  itself (the window's end), ``status`` ``PRESENT`` for a value. The record is served
  while its ``exp`` (the instant its last tile leaves its last window) is later than
  ``T``. Where each feature's tiles are among the words depends on the set's header only
  (hops, tile counts, kinds, scales), so it is computed once per header and view
  (:meth:`TimelinePlan.places`) and shared by the records of that shape.
* a **hand-written** view's record with scheduled steps becomes a :class:`ScheduledEntry`:
  each step and the record itself (the last step) rendered once. At ``T`` the latest whose
  ``ts <= T`` is served (the first if ``T`` is earlier than all), with its own ``ts`` as
  ``timestamp`` and its own expiry ``ts // 10**6 + ttl`` (the rule of the record's ``exp``).
  A record without a timeline stays a plain ``CachedRecord`` (the fast path is unchanged).

A timeline that cannot be decoded (a packed tile set that is cut short, of the wrong length
or CRC-32, with tiles out of order; not JSON; a partial of the wrong shape, a step of the
wrong length or out of order, a value not valid for its type) makes the record an
:class:`~featurestore.online.store.InvalidRecord`: the ``INVALID_RECORD`` answer, never
cached, counted and logged like any bad record.

Garbage collection: an entry is one tracked object holding only bytes (a packed tile set;
a JSON one as a tuple of ints), tuples of ints and untracked answers (which the collector
stops tracking), not lists: a cache of 100,000 tiled entries adds 100,000 objects to a full
collection's walk, not millions.

Cache: the cache holds the entry (the stored tiles or rendered steps), for the view's
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
import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from featurestore.online.layout import TileHop, decode_steps, read_tile_set
from featurestore.online.store import NO_BATCH, EncodedRecord, InvalidRecord
from featurestore.online.stream_tiles import StreamPartials, read_partials
from featurestore.registry import FeatureView
from featurestore.windows import AggregationFunction, merge
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
    #: the index of its (first) column among the columns of its hop
    column: int = 0


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
        columns: dict[int, int] = {}
        features = []
        for feature in view.features:
            aggregation = feature.aggregation
            if aggregation is None:  # pragma: no cover - the registry refuses it
                raise ValueError(f"{view.name}.{feature.name}: a tiled feature, no aggregation")
            hop = aggregation.hop_seconds
            slot = widths.get(hop, 0)
            widths[hop] = slot + 1
            column = columns.get(hop, 0)
            columns[hop] = column + (2 if aggregation.function == "avg" else 1)
            features.append(
                WindowedFeature(
                    aggregation.function,
                    hop,
                    aggregation.window_seconds,
                    slot,
                    feature.value_type == "float",
                    column,
                )
            )
        return cls(view.name, view.ttl_seconds, renderer, tuple(features), tuple(widths.items()))

    # --- from the store's answer ----------------------------------------------------------

    def tiled_entry(
        self,
        exp: int,
        timeline: bytes | None,
        ver: int = 0,
        stream: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> TiledEntry | InvalidRecord:
        """The entry of a tiled view's record (``exp`` epoch seconds), or why it is invalid.

        Reads the layout's tile set (either form, checked:
        :func:`featurestore.online.layout.read_tile_set`) and checks that each hop the view
        uses has one feature per partial of the kind of its aggregation (``avg``: a (count,
        sum) pair of columns; ``count``/``sum``: one). The entry keeps the set's words as
        they are (a packed set's bytes) and per feature where its tiles are: derived from
        the set's header alone, so remembered per header (:meth:`places`).

        A streamed view's record also brings its stream partials (``stream``: the stored
        pairs, :mod:`featurestore.online.stream_tiles`): those of ingestion buckets after
        the batch cutoff ``ver`` (all of them for a record with no batch tiles, ``ver`` =
        :data:`~featurestore.online.store.NO_BATCH`) are added to the batch tiles at every
        ``T``; the entry then lives until the last of either leaves its last window."""
        if timeline is None and stream is None:
            return InvalidRecord("a tiled view's record without a tile set")
        words: bytes | tuple[int, ...] = ()
        places: tuple[_Place | None, ...] = (None,) * len(self.windowed)
        if timeline is not None:
            try:
                stored = read_tile_set(timeline)
            except _UNREADABLE as exc:
                return InvalidRecord(f"tile set: {exc}"[:200])
            found = self._places.get(stored.header)
            if found is None:
                found = self.places(stored.hops)
                if len(self._places) >= _PLACES_MAX:
                    self._places.clear()
                self._places[stored.header] = found
            if type(found) is InvalidRecord:
                return found
            words, places = stored.words, found  # type: ignore[assignment]
        else:
            exp = 0  # no batch tiles: the entry lives as long as its stream partials
        if not stream:
            return TiledEntry(self, exp, words, places)
        try:
            partials = read_partials(stream, None if ver == NO_BATCH else ver)
        except _UNREADABLE as exc:
            return InvalidRecord(f"stream partials: {exc}"[:200])
        streamed, stream_exp = self.stream_places(partials)
        return TiledEntry(self, max(exp, stream_exp), words, places, streamed)

    def stream_places(
        self, partials: StreamPartials
    ) -> tuple[tuple[_StreamPlace | None, ...] | None, int]:
        """Per feature its stream tiles (tile numbers ascending, per column the prefix sums
        at one scale), or None if there are none; and when the last stream tile leaves the
        last window of its hop (epoch seconds, 0 for none)."""
        longest: dict[int, int] = {}
        for feature in self.windowed:
            hop = feature.hop_seconds
            longest[hop] = max(longest.get(hop, 0), feature.window_seconds)
        exp = 0
        for hop, by_start in partials.items():
            if by_start and hop in longest:
                exp = max(exp, max(by_start) + hop + longest[hop])
        if not exp:
            return None, 0
        out: list[_StreamPlace | None] = []
        for feature in self.windowed:
            found = partials.get(feature.hop_seconds)
            if not found:
                out.append(None)
                continue
            tiles = found
            starts = sorted(tiles)
            columns = [feature.column]
            if feature.function == "avg":
                columns.append(feature.column + 1)
            prefixes: list[tuple[tuple[int, ...], int]] = []
            for column in columns:
                scale = max((tiles[s][column][1] for s in starts if column in tiles[s]), default=0)
                units = [
                    tiles[s][column][0] * 10 ** (scale - tiles[s][column][1])
                    if column in tiles[s]
                    else 0
                    for s in starts
                ]
                prefixes.append((tuple(itertools.accumulate(units, initial=0)), 10**scale))
            out.append(
                (
                    tuple(start // feature.hop_seconds for start in starts),
                    prefixes[0],
                    prefixes[1] if len(prefixes) > 1 else ((0,) * (len(starts) + 1), 1),
                )
            )
        return tuple(out), exp

    def places(self, hops: dict[int, TileHop]) -> tuple[_Place | None, ...] | InvalidRecord:
        """Per feature (view order) where its tiles are in a tile set of these hops (None:
        its hop has no tiles), or why the set does not fit the view."""
        for hop, wanted in self.hop_kinds:
            found = hops.get(hop)
            if found is not None and found.tiles and found.kinds != wanted:
                return InvalidRecord(
                    f"tile set hop {hop}: partial kinds {list(found.kinds)}, the view's "
                    f"features of hop {hop} s need {list(wanted)}"
                )
        places: list[_Place | None] = []
        for feature in self.windowed:
            found = hops.get(feature.hop_seconds)
            if found is None or not found.tiles:
                places.append(None)  # no tiles of its hop: an empty window
                continue
            n1 = found.tiles + 1
            column = found.columns + feature.column * n1 - found.numbers
            avg = feature.function == "avg"
            places.append(
                (
                    feature.hop_seconds,
                    feature.window_seconds // feature.hop_seconds,
                    _FUNCTIONS[feature.function],
                    feature.as_float,
                    found.numbers,
                    found.numbers + found.tiles,
                    column,
                    10 ** found.scales[feature.column],
                    column + n1 if avg else 0,
                    10 ** found.scales[feature.column + 1] if avg else 1,
                )
            )
        return tuple(places)

    @functools.cached_property
    def _places(self) -> dict[Hashable, tuple[_Place | None, ...] | InvalidRecord]:
        """:meth:`places` per tile set header (at most _PLACES_MAX, cleared when full)."""
        return {}

    @functools.cached_property
    def hop_kinds(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """Per hop seconds the kind of each of its partials (view order): 2 for ``avg``'s
        (count, sum) pair, else 1."""
        kinds: dict[int, list[int]] = {}
        for feature in self.windowed:
            kinds.setdefault(feature.hop_seconds, []).append(2 if feature.function == "avg" else 1)
        return tuple((hop, tuple(k)) for hop, k in kinds.items())

    @functools.cached_property
    def empty_values(self) -> tuple[int | float | None, ...]:
        """Each feature's value over an empty window (view order)."""
        values = [merge(feature.function, ()) for feature in self.windowed]
        return tuple(
            float(value) if feature.as_float and type(value) is int else value
            for feature, value in zip(self.windowed, values, strict=True)
        )

    @functools.cached_property
    def hop_us(self) -> tuple[int, ...]:
        """The hops of the view's features, in microseconds, ascending."""
        return tuple(sorted(hop * _US for hop, _ in self.hop_widths))

    @functools.cached_property
    def nested_hops(self) -> bool:
        """Whether each hop divides the next longer one (1 minute, 1 hour, 1 day): the
        shortest hop's tile at ``T`` then lies inside every other hop's."""
        hops = self.hop_us
        return all(longer % shorter == 0 for shorter, longer in itertools.pairwise(hops))

    @functools.cached_property
    def last_unchanged(self) -> list[tuple[int, int]]:
        """The interval :meth:`unchanged` gave last, in a list of one (the entries merged
        for one request share it)."""
        return [(0, 0)]

    def unchanged(self, now_us: int) -> tuple[int, int]:
        """The interval ``[begin, end)`` (microseconds) around ``now_us`` in which no tile
        enters or leaves any window of the view: ``[max floor_hop(T), min floor_hop(T) +
        hop)`` over its hops."""
        hops = self.hop_us
        if self.nested_hops:
            floor = now_us - now_us % hops[0]
            return floor, floor + hops[0]
        begin, end = 0, 1 << 62
        for hop in hops:
            floor = now_us - now_us % hop
            begin = max(begin, floor)
            end = min(end, floor + hop)
        return begin, end

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


#: what a feature of a tiled view is: count, sum, avg (a :data:`_Place` holds it)
_FUNCTIONS: Final = {"count": 0, "sum": 1, "avg": 2}
#: per view, the tile set headers whose places are remembered
_PLACES_MAX: Final = 4096

#: how one feature is merged from a tile set's words: (hop s, window in tiles, function
#: (_FUNCTIONS), whether a float, index of its hop's first tile number, index after its
#: last, its first column's base (the prefix sum of the first ``k`` tiles is
#: ``words[base + first + k]``), ``10**scale`` of that column, the same of its second
#: column (``avg``: the sums) or 0, 1)
_Place = tuple[int, int, int, bool, int, int, int, int, int, int]


#: one feature's stream tiles: (tile numbers ascending, (prefix sums of its first column,
#: ``10**scale``), (the same of its second column: ``avg``'s sums; zeros for the others))
_StreamPlace = tuple[tuple[int, ...], tuple[tuple[int, ...], int], tuple[tuple[int, ...], int]]


def _added(units: int, unit: int, more: int, more_unit: int) -> tuple[int, int]:
    """``units / unit + more / more_unit`` as exact integer units of the finer scale
    (``unit`` and ``more_unit`` are powers of ten)."""
    if unit == more_unit:
        return units + more, unit
    if unit > more_unit:
        return units + more * (unit // more_unit), unit
    return units * (more_unit // unit) + more, more_unit


class TiledEntry:
    """A tiled view's record for one key: its tile set's words (the stored bytes of a packed
    set, read in place) and per feature where its tile numbers and prefix sums are, so that
    its value at any ``T`` is one difference of two prefix sums at the window's first and
    last tile (found by bisection among the tile numbers): the arithmetic of
    :func:`featurestore.windows.merge` (integers and decimals exact until the one final
    division)."""

    __slots__ = ("_memo", "_places", "_stream", "_words", "exp", "plan")

    def __init__(
        self,
        plan: TimelinePlan,
        exp: int,
        words: bytes | tuple[int, ...],
        places: tuple[_Place | None, ...],
        stream: tuple[_StreamPlace | None, ...] | None = None,
    ) -> None:
        self.plan = plan
        self.exp = exp
        #: per feature its stream tiles (:meth:`TimelinePlan.stream_places`), None: none
        self._stream = stream
        #: the tile set's words (:attr:`featurestore.online.layout.TileWords.words`)
        self._words = words
        #: per feature (view order) where its tiles are, None if its hop has none
        self._places = places
        #: (first instant, end instant, value JSON per feature) of the last merge
        self._memo: tuple[int, int, tuple[bytes | None, ...]] | None = None

    def values_at(self, now_us: int) -> list[int | float | None]:
        """Each feature's value (view order) at ``now_us`` (microseconds, UTC).

        The window of a feature of hop ``H`` and window ``W`` at ``T`` holds the tiles
        numbered ``floor(T / H) - W / H`` to ``floor(T / H)`` (tile number: start / ``H``;
        :func:`featurestore.windows.window_start`). Sums are exact integers of
        ``10**-scale`` units; a decimal one becomes a float by one correctly rounded
        division (Python's int / int), as ``float(Decimal)`` and the SQL ``cast(sum as
        double)`` round it; an avg is that float divided by the count."""
        if self._stream is not None:
            return self._values_with_stream(now_us)
        stored = self._words
        words = memoryview(stored).cast("q") if type(stored) is bytes else stored
        now_s = now_us // _US
        out: list[int | float | None] = list(self.plan.empty_values)
        left, right = bisect.bisect_left, bisect.bisect_right
        for i, place in enumerate(self._places):
            if place is None:
                continue
            hop, window, function, as_float, first, last, base, unit, base2, unit2 = place
            tile = now_s // hop
            lo = left(words, tile - window, first, last)
            hi = right(words, tile, lo, last)
            units = words[base + hi] - words[base + lo]
            if function == 0:  # count
                out[i] = float(units) if as_float else units
            elif function == 1:  # sum
                out[i] = units / unit if unit != 1 or as_float else units
            elif units:  # avg of a non-empty window (else: the empty value, None)
                out[i] = (words[base2 + hi] - words[base2 + lo]) / unit2 / units
        return out

    def _values_with_stream(self, now_us: int) -> list[int | float | None]:
        """:meth:`values_at` of an entry with stream partials: per feature the batch tiles'
        units and the stream tiles' units in the window, added exactly (sums at the larger
        of the two scales) before the one final division."""
        stored = self._words
        words = memoryview(stored).cast("q") if type(stored) is bytes else stored
        now_s = now_us // _US
        out: list[int | float | None] = list(self.plan.empty_values)
        left, right = bisect.bisect_left, bisect.bisect_right
        streams = self._stream or ()
        for i, (feature, place, stream) in enumerate(
            zip(self.plan.windowed, self._places, streams, strict=True)
        ):
            tile = now_s // feature.hop_seconds
            first_tile = tile - feature.window_seconds // feature.hop_seconds
            units, unit, units2, unit2 = 0, 1, 0, 1
            if place is not None:
                _, _, _, _, first, last, base, unit, base2, unit2 = place
                lo = left(words, first_tile, first, last)
                hi = right(words, tile, lo, last)
                units = words[base + hi] - words[base + lo]
                if base2:
                    units2 = words[base2 + hi] - words[base2 + lo]
            if stream is not None:
                numbers, (prefix, s_unit), (prefix2, s_unit2) = stream
                lo = left(numbers, first_tile)
                hi = right(numbers, tile, lo)
                units, unit = _added(units, unit, prefix[hi] - prefix[lo], s_unit)
                units2, unit2 = _added(units2, unit2, prefix2[hi] - prefix2[lo], s_unit2)
            function = feature.function
            if function == "count":
                out[i] = float(units) if feature.as_float else units
            elif function == "sum":
                out[i] = units / unit if unit != 1 or feature.as_float else units
            elif units:  # avg of a non-empty window (units: the count, units2 the sum)
                out[i] = units2 / unit2 / units
        return out

    def at(self, now_us: int, stamp: bytes) -> CachedRecord:
        """The answers at ``now_us`` (``stamp``: it as ISO 8601, the answers' timestamp)."""
        memo = self._memo
        if memo is None or not memo[0] <= now_us < memo[1]:
            # every value's JSON in one dumps (numbers and null hold no comma)
            values: tuple[bytes | None, ...] = tuple(
                orjson.dumps(self.values_at(now_us))[1:-1].split(b",")
            )
            if b"null" in values:  # an avg over an empty window
                values = tuple([None if v == b"null" else v for v in values])
            last = self.plan.last_unchanged
            begin, end = last[0]
            if not begin <= now_us < end:
                begin, end = last[0] = self.plan.unchanged(now_us)
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
