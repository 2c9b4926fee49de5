"""The event contract of a streamed event model: what one message must hold (README
"Streaming", "Events").

A message is one JSON object whose fields are the columns the event model's yml declares
with a ``data_type`` (the staging model's contract; :attr:`WindowedSource.event_columns`):

* every declared column is present (``null`` where the value is missing); other fields are
  ignored;
* ``varchar``/``string``/``text``: a JSON string; integers (``bigint`` ...): a JSON integer
  in the 64-bit range; ``double``/``float``: a JSON number; ``boolean``: ``true``/``false``;
* ``decimal(p, s)`` / ``numeric`` / ``number``: a JSON number with at most 15 significant
  digits (a JSON number is read as a double) or a string of the decimal (any size), with at
  most ``s`` decimals and ``p - s`` integer digits (what the warehouse column holds: a value
  that does not fit is refused, not rounded, so neither path counts it);
* ``timestamp``: an ISO 8601 string (``2026-05-01T12:00:00Z``, ``2026-05-01 12:00:00.123456``,
  an offset such as ``+02:00``; no offset means UTC), at most microseconds;
* the event id, event time and ingestion time are not null; an entity key, when not null, is
  a non-empty string of at most 256 characters (the online layout's limit).

A message that breaks a rule is refused with :class:`EventRefused` and one line saying which
field and why (the worker dead-letters it). A null key leaves the event out of that key's
views (the batch leaves such rows out too); an event with no key of any streamed view is
refused ("no entity key").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import orjson

from featurestore.data_types import value_type_of
from featurestore.online.layout import MAX_KEY_PART_CHARS
from featurestore.windows import WindowedSource

__all__ = ["EventContract", "EventRefused", "ParsedEvent"]

_INT64: Final = (-(2**63), 2**63 - 1)
_FIXED: Final = re.compile(r"^(?:decimal|numeric|number)\((\d+)(?:,(\d+))?\)$")
_DIGITS_OF_A_DOUBLE: Final = 15
#: a decimal context wide enough for decimal(38, s) and its scaled units (the default's 28
#: digits would round or refuse them)
EXACT: Final = Context(prec=100)


class EventRefused(ValueError):
    """A message that does not fit the event contract (the message says which field)."""


class ParsedEvent(NamedTuple):
    """One event that fits the contract: its columns' values (Python types: str, int,
    float, bool, Decimal, naive UTC datetime, None), and its id, times and keys read out."""

    values: dict[str, object]
    event_id: str
    event_us: int
    ingested_us: int


Parser = Callable[[str, object], object]


def _string(name: str, value: object) -> object:
    if type(value) is str:
        return value
    if not isinstance(value, str):
        raise EventRefused(f"{name}: expected a string, got {_what(value)}")
    return value


def _integer(name: str, value: object) -> object:
    if type(value) is not int:
        raise EventRefused(f"{name}: expected an integer, got {_what(value)}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise EventRefused(f"{name}: {value} is outside the 64-bit integer range")
    return value


def _double(name: str, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventRefused(f"{name}: expected a number, got {_what(value)}")
    return float(value)


def _boolean(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise EventRefused(f"{name}: expected true or false, got {_what(value)}")
    return value


def _timestamp(name: str, value: object) -> object:
    if not isinstance(value, str):
        raise EventRefused(f"{name}: expected an ISO 8601 timestamp string, got {_what(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise EventRefused(f"{name}: {value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _decimal(precision: int, scale: int) -> Parser:
    def parse(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise EventRefused(f"{name}: expected a decimal number, got {_what(value)}")
        if isinstance(value, float):
            text = repr(value)
            digits = Decimal(text).as_tuple().digits
            if len(digits) > _DIGITS_OF_A_DOUBLE:
                raise EventRefused(
                    f"{name}: {text} has more significant digits than a JSON number carries "
                    "exactly (send the decimal as a string)"
                )
        else:
            text = str(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise EventRefused(f"{name}: {text[:40]!r} is not a decimal number") from None
        if not number.is_finite():
            raise EventRefused(f"{name}: {text[:40]!r} is not a finite number")
        exponent = number.as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if decimals > scale and number != round(number, scale):
            raise EventRefused(f"{name}: {text[:40]} has more than {scale} decimals")
        number = number.quantize(Decimal(1).scaleb(-scale), context=EXACT)
        if abs(number) >= Decimal(10) ** (precision - scale):
            raise EventRefused(
                f"{name}: {text[:40]} does not fit decimal({precision}, {scale}) "
                f"(more than {precision - scale} integer digits)"
            )
        return number

    return parse


def _parser_of(data_type: str) -> Parser:
    text = "".join(data_type.lower().split())
    fixed = _FIXED.match(text)
    if fixed is not None:
        return _decimal(int(fixed.group(1)), int(fixed.group(2) or 0))
    kind = value_type_of(data_type)
    if kind == "string":
        return _string
    if kind == "int":
        return _integer
    if kind == "float":
        return _double
    if kind == "bool":
        return _boolean
    if kind == "timestamp":
        return _timestamp
    raise ValueError(f"data_type {data_type!r} cannot be streamed (no JSON form is defined)")


def _what(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r:.20})"
    return f"a JSON {type(value).__name__}"


class EventContract:
    """The contract of one event model (see the module docstring): :meth:`parse` reads a
    message into a :class:`ParsedEvent` or raises :class:`EventRefused`."""

    def __init__(self, source: WindowedSource, keys: Sequence[Sequence[str]]) -> None:
        """``keys``: the key columns of each streamed view over the event model."""
        self.source = source
        self.columns: tuple[tuple[str, str], ...] = source.event_columns
        self._parsers: dict[str, Parser] = {
            name: _parser_of(data_type) for name, data_type in self.columns
        }
        self._parser_items = tuple(self._parsers.items())
        for required in (source.event_id, source.event_time, source.ingested_at):
            if required not in self._parsers:
                raise ValueError(f"event model {source.events} does not declare {required!r}")
        self._key_columns = tuple(dict.fromkeys(key for group in keys for key in group))

    def parse(self, message: bytes | str) -> ParsedEvent:
        try:
            data: Any = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise EventRefused(f"not JSON: {exc}"[:160]) from None
        if not isinstance(data, dict):
            raise EventRefused(f"not a JSON object: {_what(data)}")
        return self.parse_object(data)

    def parse_object(self, data: Mapping[str, object]) -> ParsedEvent:
        values: dict[str, object] = {}
        try:
            for name, parser in self._parser_items:
                value = data[name]
                values[name] = None if value is None else parser(name, value)
        except KeyError:
            missing = [name for name in self._parsers if name not in data]
            raise EventRefused(f"missing field(s): {', '.join(missing)}") from None
        source = self.source
        event_id, event_time, ingested_at = (
            values[source.event_id],
            values[source.event_time],
            values[source.ingested_at],
        )
        if event_id is None or event_time is None or ingested_at is None:
            for required in (source.event_id, source.event_time, source.ingested_at):
                if values[required] is None:
                    raise EventRefused(f"{required}: must not be null")
        present = False
        for key in self._key_columns:
            part = values[key]
            if part is None:
                continue
            present = True
            if type(part) is str and 0 < len(part) <= MAX_KEY_PART_CHARS:
                continue
            if type(part) is int:
                continue  # an integer key column (its decimal text is the key part)
            raise EventRefused(
                f"{key}: an entity key must be a non-empty string of at most "
                f"{MAX_KEY_PART_CHARS} characters"
            )
        if self._key_columns and not present:
            raise EventRefused(f"no entity key: {', '.join(self._key_columns)} are all null")
        if not isinstance(event_time, dt.datetime) or not isinstance(ingested_at, dt.datetime):
            raise EventRefused(  # pragma: no cover - the registry declares both as timestamps
                f"{source.event_time} and {source.ingested_at} must be timestamps"
            )
        return ParsedEvent(values, str(event_id), _micros(event_time), _micros(ingested_at))


_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()


def _micros(value: dt.datetime) -> int:
    """Microseconds since the epoch of a naive UTC datetime (:func:`micros`, faster)."""
    days = value.toordinal() - _EPOCH_ORDINAL
    return (
        ((days * 24 + value.hour) * 60 + value.minute) * 60 + value.second
    ) * 1_000_000 + value.microsecond
