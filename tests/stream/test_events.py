"""The event contract (stream/events.py): what a message must hold, and the one-line reason
of each refusal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest

from featurestore.windows import WindowedSource
from stream.events import EventContract, EventRefused

SOURCE = WindowedSource(
    events="int_transactions_deduplicated",
    events_relation="x",
    event_time="transacted_at",
    ingested_at="ingested_at",
    event_id="transaction_id",
    keys=("user_id",),
    column_types=(("amount", "decimal"),),
    event_columns=(
        ("transaction_id", "varchar"),
        ("user_id", "varchar"),
        ("merchant_id", "varchar"),
        ("amount", "decimal(18, 2)"),
        ("quantity", "bigint"),
        ("score", "double"),
        ("is_test", "boolean"),
        ("transacted_at", "timestamp"),
        ("ingested_at", "timestamp"),
    ),
    streamed=True,
)
CONTRACT = EventContract(SOURCE, [("user_id",), ("merchant_id",)])


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": "12.34",
        "quantity": 3,
        "score": 0.5,
        "is_test": False,
        "transacted_at": "2026-05-01T10:00:00Z",
        "ingested_at": "2026-05-01 10:00:01.5",
    }
    for name, value in changes.items():
        if value is _DROP:
            del event[name]
        else:
            event[name] = value
    return event


_DROP = object()


def test_a_valid_event_is_read_with_its_types() -> None:
    parsed = CONTRACT.parse(orjson.dumps(_event()))
    assert parsed.event_id == "t1"
    assert parsed.values["amount"] == Decimal("12.34")
    assert parsed.values["quantity"] == 3 and parsed.values["is_test"] is False
    assert parsed.values["transacted_at"] == dt.datetime(2026, 5, 1, 10, 0, 0)
    assert parsed.ingested_us - parsed.event_us == 1_500_000


def test_offsets_and_numbers_are_read_exactly() -> None:
    parsed = CONTRACT.parse_object(
        _event(transacted_at="2026-05-01T12:00:00+02:00", amount=7, score=1)
    )
    assert parsed.values["transacted_at"] == dt.datetime(2026, 5, 1, 10, 0, 0)
    assert parsed.values["amount"] == Decimal("7.00")
    assert parsed.values["score"] == 1.0
    assert CONTRACT.parse_object(_event(amount=12.1)).values["amount"] == Decimal("12.10")
    big = "1234567890123456.78"  # 18 digits: exact as a string
    assert CONTRACT.parse_object(_event(amount=big)).values["amount"] == Decimal(big)


def test_a_decimal_38_is_read_exactly() -> None:
    wide = EventContract(
        WindowedSource(
            events="e",
            events_relation="e",
            event_time="at",
            ingested_at="in",
            event_id="id",
            keys=("k",),
            event_columns=(
                ("id", "varchar"),
                ("k", "varchar"),
                ("v", "decimal(38, 4)"),
                ("at", "timestamp"),
                ("in", "timestamp"),
            ),
        ),
        [("k",)],
    )
    text = "1234567890123456789012345678901234.5678"  # 38 digits
    event = {
        "id": "1",
        "k": "a",
        "v": text,
        "at": "2026-01-01T00:00:00",
        "in": "2026-01-01T00:00:00",
    }
    assert wide.parse_object(event).values["v"] == Decimal(text)
    from featurestore.online.stream_tiles import units_of

    assert units_of(Decimal(text), 4) == 12345678901234567890123456789012345678


def test_a_null_key_of_one_view_is_allowed() -> None:
    parsed = CONTRACT.parse_object(_event(merchant_id=None))
    assert parsed.values["merchant_id"] is None


REFUSED = [
    ("missing", _event(amount=_DROP), "missing field(s): amount"),
    ("mistyped string", _event(user_id=5), "user_id: expected a string, got a number"),
    ("mistyped int", _event(quantity="3"), "quantity: expected an integer"),
    ("bool as int", _event(quantity=True), "quantity: expected an integer"),
    ("int range", _event(quantity=2**63), "outside the 64-bit integer range"),
    ("double", _event(score="x"), "score: expected a number"),
    ("boolean", _event(is_test=0), "is_test: expected true or false"),
    ("bad time", _event(transacted_at="yesterday"), "transacted_at: 'yesterday' is not an ISO"),
    ("time type", _event(ingested_at=1_777_000_000), "ingested_at: expected an ISO 8601"),
    ("null id", _event(transaction_id=None), "transaction_id: must not be null"),
    ("null time", _event(ingested_at=None), "ingested_at: must not be null"),
    ("decimals", _event(amount="1.234"), "amount: 1.234 has more than 2 decimals"),
    ("too big", _event(amount="12345678901234567"), "does not fit decimal(18, 2)"),
    ("inexact", _event(amount=1234567890123456.7), "send the decimal as a string"),
    ("not a number", _event(amount="abc"), "amount: 'abc' is not a decimal"),
    ("infinite", _event(amount="Infinity"), "not a finite number"),
    ("no key", _event(user_id=None, merchant_id=None), "no entity key: user_id, merchant_id"),
    ("empty key", _event(user_id=""), "user_id: an entity key must be a non-empty string"),
    ("long key", _event(user_id="u" * 257), "at most 256 characters"),
]


@pytest.mark.parametrize(("event", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_events_that_do_not_fit_are_refused_with_the_field(
    event: dict[str, Any], reason: str
) -> None:
    with pytest.raises(EventRefused) as info:
        CONTRACT.parse(orjson.dumps(event))
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("message", "reason"),
    [(b"not json", "not JSON"), (b"[1, 2]", "not a JSON object"), (b"", "not JSON")],
)
def test_messages_that_are_not_json_objects_are_refused(message: bytes, reason: str) -> None:
    with pytest.raises(EventRefused, match=reason):
        CONTRACT.parse(message)


def test_a_contract_needs_its_id_and_times_declared() -> None:
    partial = WindowedSource(
        events="e", events_relation="e", event_time="at", ingested_at="in", event_id="id",
        keys=("k",), event_columns=(("k", "varchar"), ("at", "timestamp")),
    )  # fmt: skip
    with pytest.raises(ValueError, match="does not declare 'id'"):
        EventContract(partial, [("k",)])


def test_the_fast_microseconds_equal_the_layouts() -> None:
    import random

    from featurestore.timestamps import micros
    from stream.events import _micros

    rng = random.Random(3)
    for _ in range(2000):
        moment = dt.datetime(1900, 1, 1) + dt.timedelta(microseconds=rng.randrange(2**62 // 1000))
        assert _micros(moment) == micros(moment)
