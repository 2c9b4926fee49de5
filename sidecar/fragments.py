"""Answers as JSON fragments: what the sidecar caches and joins into response bodies.

A retrieve response is assembled from bytes, not serialized from Python objects: each
feature's answer is the fragment ``"<feature>":{"value":...,"timestamp":...,"status":...
[,"reason":...]}``, each (view, key) record is the comma-joined fragments of all of its
view's features (``record[FULL]``, :data:`CachedRecord`), and a result joins the records
of its views.
The fragments of a record are built once, when it is read from the store, by the view's
:class:`ViewRenderer`:

* from a record whose values are still in the online layout's text encoding (Redis): each
  text goes to JSON through :func:`featurestore.online.layout.json_encoder` (numbers are
  parsed and re-serialized, so a stored text never reaches a response unchecked); with
  every value present (the usual case) the whole record is then one join of its values
  with text segments precomputed per feature timestamp, with a null value it is built
  feature by feature;
* from decoded values (SQLite, DynamoDB): feature by feature with :mod:`orjson`.

A record that cannot be rendered (a text not valid for its feature's type: not a number, a
bool other than ``1``/``0``, a non-finite float, a timestamp out of range, an integer beyond
64 bits, bytes that are not UTF-8; or a feature timestamp out of range) is not an error:
the renderer returns an :class:`~featurestore.online.store.InvalidRecord` for it alone,
naming the feature, and renders the others normally.

Per-feature fragments (``record[PARTS]``) are only needed when a request asks for
some of a view's features; for records rendered in bulk they are built on demand
(:meth:`ViewRenderer.parts`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import orjson

from featurestore.online.layout import json_encoder
from featurestore.online.store import EncodedRecord, InvalidRecord
from featurestore.registry import ValueType
from featurestore.timestamps import iso_micros

__all__ = [
    "COUNTS",
    "EXP",
    "FULL",
    "KINDS",
    "KIND_LABELS",
    "PRESENT",
    "REASON_KINDS",
    "CachedRecord",
    "FeatureAnswer",
    "Fragment",
    "ViewRenderer",
    "constant_record",
    "json_value",
]

#: answer kinds: index -> (status, reason), counted per response for the metrics
KIND_LABELS: Final = (
    ("PRESENT", ""),
    ("DEFAULT", "NULL"),
    ("MISSING", "NULL"),
    ("DEFAULT", "NOT_FOUND"),
    ("MISSING", "NOT_FOUND"),
    ("DEFAULT", "STORE_UNAVAILABLE"),
    ("MISSING", "STORE_UNAVAILABLE"),
    ("DEFAULT", "INVALID_RECORD"),
    ("MISSING", "INVALID_RECORD"),
)
PRESENT: Final = 0
#: reason -> the kind of its DEFAULT answer (its MISSING answer is the next kind)
REASON_KINDS: Final = {"NULL": 1, "NOT_FOUND": 3, "STORE_UNAVAILABLE": 5, "INVALID_RECORD": 7}
#: what converting a stored text that is not valid for its type raises (ValueError: see
#: :func:`featurestore.online.layout.json_encoder`; OverflowError: a feature timestamp out
#: of the datetime range; orjson's JSONEncodeError: an integer beyond 64 bits, decoded)
_INVALID: Final = (ValueError, OverflowError, orjson.JSONEncodeError)
_BOOL_TEXTS: Final = frozenset({b"1", b"0"})

Fragment = bytes

_TRUE: Final = b"true"
_FALSE: Final = b"false"
_INT_TYPES: Final = frozenset({int})
_NUMBER_TYPES: Final = frozenset({int, float})
#: feature timestamps (microseconds) -> ISO 8601 bytes: a batch load writes many records of
#: one timestamp; bounded (cleared when full), shared by every request of the process
_STAMPS: dict[int, bytes] = {}
_STAMPS_MAX: Final = 65_536
#: feature timestamps whose record segments a renderer keeps (~1 KB each for 10 features)
_SEGMENTS_MAX: Final = 4096
#: where the timestamp goes in a NULL fallback template
_PLACEHOLDER: Final = "@@featurestore-timestamp@@"


def json_value(value: object, value_type: ValueType) -> object:
    """A decoded value as JSON-ready (timestamps as ISO 8601 UTC strings)."""
    if value_type == "timestamp" and isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    return value


def _json_numbers(joined: bytes, allowed: frozenset[type], count: int) -> bool:
    """Whether ``joined`` is ``count`` comma-separated JSON numbers of the allowed parsed
    types (a text holding a comma, a bracket or anything but one number fails)."""
    try:
        parsed = orjson.loads(b"[" + joined + b"]")
    except orjson.JSONDecodeError:
        return False
    return len(parsed) == count and set(map(type, parsed)) <= allowed


def stamp_of(ts: int) -> bytes:
    stamp = _STAMPS.get(ts)
    if stamp is None:
        if len(_STAMPS) >= _STAMPS_MAX:
            _STAMPS.clear()
        stamp = _STAMPS[ts] = iso_micros(ts).encode()
    return stamp


#: The answers of every feature of one view for one key: a plain tuple (see the indexes
#: below) of ints, bytes and tuples of them only. Once the garbage collector has seen one it
#: stops tracking it (CPython untracks exact tuples of untracked items; a NamedTuple or any
#: other object would stay tracked), so a cache of 100,000 records costs its passes nothing.
CachedRecord = tuple[
    int,  # EXP: when the record stops being served (epoch seconds)
    bytes,  # FULL: every feature's fragment, comma-joined in view order
    tuple[int, ...],  # COUNTS: how many answers of each kind (index of KIND_LABELS)
    tuple[int, ...],  # KINDS: per feature (view order), its kind
    tuple[Fragment, ...] | None,  # PARTS: per feature, its fragment; None if rendered in
    #                                      bulk (see ViewRenderer.parts)
    tuple[bytes | None, ...],  # VALUES: per feature, the JSON of its value (None: null)
    bytes,  # STAMP: the record's feature timestamp, ISO 8601
]
EXP: Final = 0
FULL: Final = 1
COUNTS: Final = 2
KINDS: Final = 3
PARTS: Final = 4
VALUES: Final = 5
STAMP: Final = 6


def constant_record(answers: Sequence[tuple[Fragment, int]]) -> CachedRecord:
    """A record of fixed answers (no record found, store unavailable); never expires."""
    parts = tuple(fragment for fragment, _ in answers)
    kinds = tuple(kind for _, kind in answers)
    return (1 << 62, b",".join(parts), _counts(kinds), kinds, parts, (), b"")


def _counts(kinds: Sequence[int]) -> tuple[int, ...]:
    counts = [0] * len(KIND_LABELS)
    for kind in kinds:
        counts[kind] += 1
    return tuple(counts)


class FeatureAnswer(NamedTuple):
    """How one feature of a view is answered."""

    name: str
    value_type: ValueType
    #: the answer when the record holds null for it: fragment and kind, as a function of
    #: the record's timestamp (``fragment(timestamp)``)
    null_fragment: Callable[[str], Fragment]
    null_kind: int


class ViewRenderer:
    """Renders one view's records into :class:`CachedRecord` (built once per view)."""

    def __init__(self, features: Sequence[FeatureAnswer]) -> None:
        self.features = tuple(features)
        n = len(self.features)
        self._prefixes = [orjson.dumps(f.name) + b':{"value":' for f in self.features]
        self._nulls: list[tuple[bytes, bytes, int]] = []
        for feature in self.features:
            head, tail = feature.null_fragment(_PLACEHOLDER).split(_PLACEHOLDER.encode())
            self._nulls.append((head, tail, feature.null_kind))
        #: feature timestamp -> the record's text around its values (see _segments)
        self._segment_cache: dict[bytes, tuple[bytes, ...]] = {}
        self._all_kinds = (PRESENT,) * n
        self._all_counts = _counts(self._all_kinds)
        self._encoders = [json_encoder(f.value_type) for f in self.features]
        types = [f.value_type for f in self.features]
        self._ints = [i for i, t in enumerate(types) if t == "int"]
        self._floats = [i for i, t in enumerate(types) if t == "float"]
        self._bools = [i for i, t in enumerate(types) if t == "bool"]
        self._others = [i for i, t in enumerate(types) if t not in ("int", "float", "bool")]

    def from_encoded(self, record: EncodedRecord) -> CachedRecord | InvalidRecord:
        """From the layout's encoded texts (see the module docstring); an
        :class:`InvalidRecord` if one of them is not valid for its type."""
        raw = record.values
        try:  # (free unless it raises)
            stamp = stamp_of(record.ts)
            if None in raw:
                return self._one_by_one(record.exp, stamp, [
                    None if text is None else encode(text)
                    for encode, text in zip(self._encoders, raw, strict=True)
                ])  # fmt: skip
            # every value present (the usual case): the record's segments around its values
            values = [
                encode(text)  # type: ignore[arg-type]  # no None: checked above
                for encode, text in zip(self._encoders, raw, strict=True)
            ]
        except _INVALID:
            return self._invalid(record.ts, raw, self._encoders)
        pieces: list[bytes] = [b""] * (2 * len(values) + 1)
        pieces[0::2] = self._segments(stamp)
        pieces[1::2] = values
        return (
            record.exp,
            b"".join(pieces)[:-1],  # without the NUL that separates records in a batch
            self._all_counts,
            self._all_kinds,
            None,
            tuple(values),
            stamp,
        )

    def from_encoded_many(
        self, records: Sequence[EncodedRecord]
    ) -> list[CachedRecord | InvalidRecord]:
        """:meth:`from_encoded` of many records (the same result), cheaper per record: the
        texts of all complete records are converted column by column. Numbers are checked in
        one ``orjson.loads`` per type (each text must be one JSON number, ints integral: the
        layout writes ints as decimal digits and floats as Python's ``repr``) and then used
        as they are; a column group that fails the check is converted text by text (which
        re-serializes odd but readable numbers such as ``007``), and if a text cannot be
        converted at all (an invalid record in the batch) every record is rendered on its
        own by :meth:`from_encoded` instead, so that only the invalid ones are
        :class:`InvalidRecord`."""
        if len(records) == 1:  # (a single-key request) the batch set-up would cost more
            return [self.from_encoded(records[0])]
        try:
            return self._from_encoded_batch(records)
        except _INVALID:
            return [self.from_encoded(record) for record in records]

    def _from_encoded_batch(
        self, records: Sequence[EncodedRecord]
    ) -> list[CachedRecord | InvalidRecord]:
        """:meth:`from_encoded_many` column by column; raises (see ``_INVALID``) if a text
        cannot be converted."""
        complete = [r for r in records if None not in r.values]
        out: dict[int, CachedRecord] = {}
        if complete:
            n = len(self.features)
            flat: list[Any] = [text for r in complete for text in r.values]
            for indices, allowed in ((self._ints, _INT_TYPES), (self._floats, _NUMBER_TYPES)):
                if not indices:
                    continue
                joined = b",".join([b",".join(flat[i::n]) for i in indices])
                if not _json_numbers(joined, allowed, len(complete) * len(indices)):
                    for i in indices:
                        flat[i::n] = list(map(self._encoders[i], flat[i::n]))
            for i in self._bools:
                column = flat[i::n]
                if not _BOOL_TEXTS.issuperset(column):
                    raise ValueError("a boolean other than 1 or 0")
                flat[i::n] = [_TRUE if text == b"1" else _FALSE for text in column]
            for i in self._others:
                flat[i::n] = list(map(self._encoders[i], flat[i::n]))
            # every record in one join, records separated by NUL (JSON text never holds a
            # raw NUL: the segments do not, and orjson escapes it), then split: per record
            # segment 0, value 0, segment 1, ..., value n-1, segment n (see _segments)
            m = len(complete)
            stamps = [stamp_of(r.ts) for r in complete]
            width = 2 * n + 1
            pieces: list[bytes] = [b""] * (width * m)
            for i in range(n):
                pieces[2 * i + 1 :: width] = flat[i::n]
            if stamps.count(stamps[0]) == m:  # one timestamp (a batch load): column-wise
                for i, segment in enumerate(self._segments(stamps[0])):
                    pieces[2 * i :: width] = [segment] * m
            else:
                for k, stamp in enumerate(stamps):
                    pieces[k * width : (k + 1) * width : 2] = self._segments(stamp)
            fulls = b"".join(pieces).split(b"\x00")
            counts, kinds = self._all_counts, self._all_kinds
            for k, (record, stamp) in enumerate(zip(complete, stamps, strict=True)):
                out[id(record)] = (
                    record.exp,
                    fulls[k],
                    counts,
                    kinds,
                    None,
                    tuple(flat[k * n : (k + 1) * n]),
                    stamp,
                )
        return [out.get(id(r)) or self.from_encoded(r) for r in records]

    def _segments(self, stamp: bytes) -> tuple[bytes, ...]:
        """The text of a complete record of this feature timestamp around its ``n`` values:
        ``n + 1`` segments, the last one ending with the NUL that separates records in a
        batch. Cached per timestamp (at most 4,096: cleared when full)."""
        segments = self._segment_cache.get(stamp)
        if segments is None:
            close = b',"timestamp":"' + stamp + b'","status":"PRESENT"}'
            prefixes = self._prefixes
            segments = (
                prefixes[0],
                *(close + b"," + prefix for prefix in prefixes[1:]),
                close + b"\x00",
            )
            if len(self._segment_cache) >= _SEGMENTS_MAX:
                self._segment_cache.clear()
            self._segment_cache[stamp] = segments
        return segments

    def from_values(
        self, ts: int, exp: int, values: Sequence[object]
    ) -> CachedRecord | InvalidRecord:
        """From decoded values (in view order; None for null); an :class:`InvalidRecord` if
        one cannot be served (an integer beyond 64 bits, a timestamp out of range)."""
        dumps = orjson.dumps
        try:
            return self._one_by_one(exp, stamp_of(ts), [
                None if value is None else dumps(json_value(value, feature.value_type))
                for feature, value in zip(self.features, values, strict=True)
            ])  # fmt: skip
        except _INVALID:
            convert = [
                functools.partial(_dump_value, value_type=f.value_type) for f in self.features
            ]
            return self._invalid(ts, values, convert)

    def from_json(self, exp: int, stamp: bytes, values: tuple[bytes | None, ...]) -> CachedRecord:
        """From values already in JSON (view order; None for null) answered with the
        timestamp ``stamp`` (ISO 8601): a windowed value at the request's time. With every
        value present, one join of the values with the segments of ``stamp``."""
        if None in values:
            return self._one_by_one(exp, stamp, values)
        pieces: list[bytes] = [b""] * (2 * len(values) + 1)
        pieces[0::2] = self._segments(stamp)
        pieces[1::2] = values  # type: ignore[assignment]  # no None: checked above
        return (
            exp,
            b"".join(pieces)[:-1],  # without the NUL that separates records in a batch
            self._all_counts,
            self._all_kinds,
            None,
            values,
            stamp,
        )

    def _invalid(
        self, ts: int, values: Sequence[Any], convert: Sequence[Callable[[Any], object]]
    ) -> InvalidRecord:
        """The marker of a record that failed to render, naming the first culprit (the cold
        path: each value converted again on its own)."""
        try:
            stamp_of(ts)
        except _INVALID:
            return InvalidRecord(f"feature timestamp {ts} us is out of range")
        for feature, value, function in zip(self.features, values, convert, strict=True):
            if value is None:
                continue
            try:
                function(value)
            except _INVALID as exc:
                return InvalidRecord(f"{feature.name} ({feature.value_type}): {exc}")
        return InvalidRecord("cannot be rendered")  # pragma: no cover - one value failed

    def _one_by_one(self, exp: int, stamp: bytes, values: Sequence[bytes | None]) -> CachedRecord:
        present = b',"timestamp":"' + stamp + b'","status":"PRESENT"}'
        parts: list[Fragment] = []
        kinds: list[int] = []
        for prefix, (null_head, null_tail, null_kind), value in zip(
            self._prefixes, self._nulls, values, strict=True
        ):
            if value is None:
                parts.append(null_head + stamp + null_tail)
                kinds.append(null_kind)
            else:
                parts.append(prefix + value + present)
                kinds.append(PRESENT)
        return (
            exp, b",".join(parts), _counts(kinds), tuple(kinds), tuple(parts), tuple(values),
            stamp,
        )  # fmt: skip

    def parts(self, record: CachedRecord) -> tuple[Fragment, ...]:
        """Each feature's fragment of a record (built now if it was rendered in bulk)."""
        parts = record[PARTS]
        if parts is not None:
            return parts
        present = b',"timestamp":"' + record[STAMP] + b'","status":"PRESENT"}'
        return tuple(  # rendered in bulk: every value is present
            prefix + (value or b"null") + present
            for prefix, value in zip(self._prefixes, record[VALUES], strict=True)
        )


def _dump_value(value: object, value_type: ValueType) -> bytes:
    return orjson.dumps(json_value(value, value_type))
