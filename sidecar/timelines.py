"""Record timelines at serve time: tiled views merged, scheduled values picked, at the
request's time ``T`` (the sidecar clock's wall time: the system clock, or the one ``--now``
/ ``FEATURESTORE_NOW`` pins).

A stored record may carry a timeline (:mod:`featurestore.online.layout`, "Timelines"). When
the store's answer is turned into answers (:meth:`sidecar.retrieval.Retriever`), such a
record becomes a *timeline entry* instead of a fixed :data:`~sidecar.fragments.CachedRecord`:

* a **tiled** (declared, windowed) view's record becomes a :class:`TiledEntry`: its tile
  set (the JSON of :func:`featurestore.online.layout.encode_tile_set`, read here in one pass
  rather than with ``decode_tile_set``: see :meth:`TimelinePlan.tiled_entry`) decoded and
  checked once (every hop's partials are as many as the view's features of that hop, of
  the shape of each feature's aggregation; tile starts whole multiples of the hop, each
  once) into per-feature prefix sums. At ``T`` each feature's value is what
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
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final, cast

import orjson

from featurestore.online.layout import decode_steps
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

        Reads the layout's tile-set JSON (:func:`featurestore.online.layout.encode_tile_set`)
        in one pass, checking each partial for its feature's aggregation, and keeps per
        feature the prefix sums of its partials in tile order (see :class:`TiledEntry`)."""
        if timeline is None:
            return InvalidRecord("a tiled view's record without a tile set")
        try:
            parsed = orjson.loads(timeline)
        except orjson.JSONDecodeError as exc:
            return InvalidRecord(f"tile set is not JSON: {exc}"[:200])
        if type(parsed) is not dict:
            return InvalidRecord("tile set is not a JSON object")
        functions = self.hop_functions
        hops: _Hops = {}
        try:
            for hop_text, tiles in parsed.items():
                hop = int(hop_text)
                hop_functions = functions.get(hop)
                if hop_functions is None:  # a hop no feature uses (the registry changed)
                    continue
                if type(tiles) is not dict:
                    return InvalidRecord(f"tile set hop {hop_text!r}: not an object")
                starts = list(map(int, tiles))
                rows = list(tiles.values())
                if starts != sorted(starts):
                    order = sorted(range(len(starts)), key=starts.__getitem__)
                    starts, rows = [starts[i] for i in order], [rows[i] for i in order]
                if len(set(starts)) != len(starts):
                    return InvalidRecord(f"tile set hop {hop}: a tile start twice")
                width = len(hop_functions)
                # (checked with C-level map/set first; the loop only names the culprit)
                if not set(map(hop.__rmod__, starts)) <= {0}:
                    start = next(start for start in starts if start % hop)
                    return InvalidRecord(f"tile {hop}/{start}: not a multiple of the hop")
                if not (set(map(type, rows)) <= {list} and set(map(len, rows)) <= {width}):
                    start, row = next(
                        (start, row)
                        for start, row in zip(starts, rows, strict=True)
                        if type(row) is not list or len(row) != width
                    )
                    count = len(row) if type(row) is list else "no list of"
                    return InvalidRecord(
                        f"tile {hop}/{start}: {count} partials, the view has {width} "
                        f"features of hop {hop} s"
                    )
                columns = list(zip(*rows, strict=True)) if rows else [()] * width
                prefixes: list[_Prefix] = []
                for slot, (function, column) in enumerate(zip(hop_functions, columns, strict=True)):
                    prefix = _prefix(function, column)
                    if type(prefix) is str:
                        return InvalidRecord(f"tile set hop {hop} partial {slot}: {prefix}")
                    prefixes.append(prefix)  # type: ignore[arg-type]  # not a str: checked
                hops[hop] = (tuple(map(_US.__mul__, starts)), tuple(prefixes))
        except _UNREADABLE as exc:
            return InvalidRecord(f"tile set: {exc}"[:200])
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


#: one feature's partials, ready to merge: ``(prefix sums,)`` for ``count`` (``prefix[k]``:
#: the sum of the first ``k`` tiles' partials), ``(prefix sums, partials)`` for ``sum`` and
#: ``(prefix of the counts, prefix of the sums, (count, sum) pairs)`` for ``avg``; the
#: partials/pairs are kept only when the decimal prefix is empty (merged with ``merge``)
_Prefix = tuple[tuple[Any, ...], ...]
#: a decimal prefix sum this large could round in Decimal's 28 digits: merge the slice instead
_EXACT_BELOW: Final = Decimal(10) ** 24
#: hop seconds -> (tile starts in microseconds ascending, per slot its _Prefix)
_Hops = dict[int, tuple[tuple[int, ...], tuple[_Prefix, ...]]]
_NONE_TYPE: Final = type(None)


def _prefix(function: AggregationFunction, column: Sequence[object]) -> _Prefix | str:
    """The prefix sums of one feature's partials (None: no events, counted as 0), or why a
    partial is not one of ``function``."""
    if function == "count":
        counts = _integers(column)
        if counts is None:
            return _refused("a count must be an integer", column, int)
        return (tuple(accumulate(counts, initial=0)),)
    if function == "sum":
        sums = _numbers(column)
        if isinstance(sums, str):
            return f"a sum must be a number, got {sums}"
        prefix = _sums(sums)
        return (prefix, () if prefix else tuple(sums))
    lists = cast(Sequence[list[object]], column)
    if set(map(type, column)) <= {list} and set(map(len, lists)) <= {2}:  # no None
        counts_read, totals_read = zip(*lists, strict=True) if lists else ((), ())
        counts = _integers(counts_read)
        totals = _numbers(totals_read)
        if counts is not None and not isinstance(totals, str):
            return _avg_prefix(counts, totals)
    pairs = []
    for partial in column:
        if partial is None:
            pairs.append((0, 0))
        elif type(partial) is list and len(partial) == 2:
            pairs.append((partial[0], partial[1]))
        else:
            return f"an avg must be [count, sum], got {partial!r}"[:80]
    counts = _integers([count for count, _ in pairs])
    totals = _numbers([total for _, total in pairs])
    if counts is None or isinstance(totals, str):
        return f"an avg must be [count, sum], got {column!r}"[:80]
    return _avg_prefix(counts, totals)


def _avg_prefix(counts: list[int], totals: list[int | Decimal]) -> _Prefix:
    """An avg's prefixes; the (count, sum) pairs only if the sums are merged instead."""
    sums = _sums(totals)
    pairs = () if sums else tuple(zip(counts, totals, strict=True))
    return (tuple(accumulate(counts, initial=0)), sums, pairs)


def _refused(what: str, column: Sequence[object], wanted: type) -> str:
    culprit = next((p for p in column if p is not None and type(p) is not wanted), None)
    return f"{what}, got {culprit!r}"[:80]


def _integers(column: Sequence[object]) -> list[int] | None:
    """The partials as ints (None as 0), or None if one is no integer."""
    types = set(map(type, column))
    if types <= {int}:
        return list(column)  # type: ignore[arg-type]  # ints: checked
    if types <= {int, _NONE_TYPE}:
        return [0 if p is None else p for p in column]  # type: ignore[misc]
    return None


def _numbers(column: Sequence[object]) -> list[int | Decimal] | str:
    """The partials as ints or exact decimals (decimal strings; None as 0), or the text of
    the first that is neither (a non-finite decimal included)."""
    types = set(map(type, column))
    if types <= {int}:
        return list(column)  # type: ignore[arg-type]  # ints: checked
    if types == {str}:  # decimal strings (the usual decimal column): converted in C
        try:
            numbers = list(map(Decimal, column))  # type: ignore[arg-type]  # strs: checked
        except ArithmeticError:
            numbers = []
        if numbers and all(map(Decimal.is_finite, numbers)):
            return numbers  # type: ignore[return-value]  # Decimals
    out: list[int | Decimal] = []
    for partial in column:
        if partial is None:
            out.append(0)
        elif type(partial) is int:
            out.append(partial)
        elif type(partial) is str:
            try:
                number = Decimal(partial)
            except ArithmeticError:
                return repr(partial)[:40]
            if not number.is_finite():
                return repr(partial)[:40]
            out.append(number)
        else:
            return repr(partial)[:40]
    return out


def _sums(values: list[int | Decimal]) -> tuple[Any, ...]:
    """Prefix sums, or an empty list when a decimal total could be rounded (the merge then
    adds the window's partials with :func:`featurestore.windows.merge` instead)."""
    prefix = tuple(accumulate(values, initial=0))
    total = prefix[-1]
    if isinstance(total, Decimal) and abs(total) >= _EXACT_BELOW:
        return ()
    return prefix


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
        #: hop seconds -> (tile starts in microseconds ascending, per slot its _Prefix)
        self._hops = hops
        #: (first instant, end instant, value JSON per feature) of the last merge
        self._memo: tuple[int, int, tuple[bytes | None, ...]] | None = None

    def values_at(self, now_us: int) -> list[int | float | None]:
        """Each feature's value (view order) at ``now_us`` (microseconds, UTC)."""
        out: list[int | float | None] = []
        hops = self._hops
        for feature in self.plan.windowed:
            function = feature.function
            found = hops.get(feature.hop_seconds)
            if found is None or not found[0]:
                value = merge(function, ())
            else:
                starts, prefixes = found
                first = window_start(now_us, feature.hop_seconds, feature.window_seconds)
                lo = bisect.bisect_left(starts, first)
                hi = bisect.bisect_right(starts, now_us)
                prefix = prefixes[feature.slot]
                if function == "count":
                    value = prefix[0][hi] - prefix[0][lo]
                elif not prefix[-2]:  # a decimal total too large for prefix sums
                    value = merge(function, [p for p in prefix[-1][lo:hi] if p is not None])
                elif function == "sum":
                    total = prefix[0][hi] - prefix[0][lo]
                    value = float(total) if isinstance(total, Decimal) else total
                else:
                    count = prefix[0][hi] - prefix[0][lo]
                    whole = prefix[1][hi] - prefix[1][lo]
                    value = float(whole) / count if count else None
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
