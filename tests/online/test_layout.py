"""Unit tests of the online layout (featurestore/online/layout.py): entity tokens and keys,
value encoding, timestamps. Pure logic: random inputs with fixed seeds, expectations derived
by hand (calendar.timegm for epochs, Redis Cluster's hash-tag rule for slots)."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import random
import struct
from decimal import Decimal

import pytest
from redis.crc import key_slot

from featurestore.online.layout import (
    OnlineLayoutError,
    Record,
    decode_value,
    dynamodb_pk,
    encode_python_value,
    encode_value,
    entity_token,
    exp_field,
    micros,
    parse_entity_token,
    redis_key,
    ts_field,
    ver_field,
)
from featurestore.registry import ValueType

SEPARATORS = "%:{}#"
ALPHABET = SEPARATORS * 4 + "abcXYZ019_-. 3A7B7D2325é✓𝄞\n\t"


def random_part(rng: random.Random) -> str:
    size = rng.randint(1, 8)
    part = "".join(rng.choice(ALPHABET) for _ in range(size))
    if rng.random() < 0.2:  # things that look like escapes
        part += rng.choice(["%3A", "%25", "%7B", "%7D", "%23", "%253A", "%%"])
    return part


def random_key(rng: random.Random) -> tuple[str, ...]:
    return tuple(random_part(rng) for _ in range(rng.randint(1, 4)))


# --- entity tokens -------------------------------------------------------------------------


def test_plain_keys_are_unchanged() -> None:
    assert entity_token(("usr_00000001",)) == "usr_00000001"
    assert entity_token(("usr_1", "dev_3f9a")) == "usr_1:dev_3f9a"
    assert entity_token(("a:b", "{c}", "#%")) == "a%3Ab:%7Bc%7D:%23%25"


def test_tokens_round_trip_and_are_injective() -> None:
    rng = random.Random(20260501)
    seen: dict[str, tuple[str, ...]] = {}
    for _ in range(5000):
        key = random_key(rng)
        token = entity_token(key)
        assert parse_entity_token(token) == key, (key, token)
        # separators survive only as the part separator, never raw inside a part
        assert not set("{}#") & set(token)
        assert token.count(":") == len(key) - 1
        assert seen.setdefault(token, key) == key, f"{key} and {seen[token]} share {token}"
    assert len(seen) > 4000


def test_escaping_is_exhaustive_over_short_strings() -> None:
    """Every string of up to 3 characters over the separators and escape-like letters."""
    letters = SEPARATORS + "23A"
    words = [""]
    for _ in range(3):
        words += [w + c for w in words if len(w) < 3 for c in letters]
    words = sorted({w for w in words if w})
    tokens = {entity_token((w,)): w for w in words}
    assert len(tokens) == len(words)
    for token, word in tokens.items():
        assert parse_entity_token(token) == (word,)


@pytest.mark.parametrize("key", [(), ("",), ("a", ""), ("a", 1), (None,)])
def test_invalid_keys_are_refused(key: tuple[object, ...]) -> None:
    with pytest.raises(OnlineLayoutError):
        entity_token(key)  # type: ignore[arg-type]
    with pytest.raises(OnlineLayoutError):
        redis_key("user", key)  # type: ignore[arg-type]


# --- keys --------------------------------------------------------------------------------


def hash_tag(key: str) -> str:
    """Redis Cluster's rule, by hand: the text between the first '{' and the next '}', if
    non-empty; else the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def test_redis_keys() -> None:
    assert redis_key("user", ("usr_00000001",)) == "fs:user:{usr_00000001}"
    assert redis_key("user_device", ("usr_1", "dev_3f9a")) == "fs:user_device:{usr_1}:dev_3f9a"
    assert redis_key("user", ("u",), namespace="t1") == "t1:user:{u}"
    assert redis_key("m", ("a{b}", "c:d")) == "fs:m:{a%7Bb%7D}:c%3Ad"


def test_the_hash_tag_is_the_first_key_part() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        key = random_key(rng)
        first = entity_token(key[:1])
        user_key = redis_key("user", key[:1])
        device_key = redis_key("user_device", key, namespace="ns")
        assert hash_tag(user_key) == hash_tag(device_key) == first
        assert key_slot(user_key.encode()) == key_slot(device_key.encode())
        assert key_slot(device_key.encode()) == key_slot(first.encode())
        # the key says which entity and key it is
        prefix = "ns:user_device:{"
        assert device_key.startswith(prefix)
        tag_end = device_key.index("}", len(prefix))
        rest = device_key[tag_end + 1 :]
        token = device_key[len(prefix) : tag_end] + rest
        assert parse_entity_token(token) == key


def test_field_names_and_dynamodb_keys() -> None:
    assert (ts_field("v"), ver_field("v"), exp_field("v")) == ("_ts:v", "_ver:v", "_exp:v")
    assert dynamodb_pk("user_device", ("a:b", "c")) == "user_device#a%3Ab:c"
    assert dynamodb_pk("user", ("#",)) == "user#%23"


def test_record_ordering_is_on_the_pair() -> None:
    record = Record("user", ("u",), "v", ts=10, ver=20, exp=0, values={})
    assert record.newer_than(9, 99)
    assert record.newer_than(10, 19)
    assert not record.newer_than(10, 20)
    assert not record.newer_than(10, 21)
    assert not record.newer_than(11, 0)


# --- values ------------------------------------------------------------------------------


def random_float(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def random_datetime(rng: random.Random) -> dt.datetime:
    micro = rng.randint(-(10**16), 10**16)  # about 1653 to 2286
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micro)


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value_type", ["int", "float", "bool", "string", "timestamp"])
def test_encode_decode_round_trip(value_type: ValueType) -> None:
    rng = random.Random(value_type)
    values: list[object]
    if value_type == "int":
        values = [0, 1, -1, 2**63 - 1, -(2**63), 10**30]
        values += [rng.randint(-(2**70), 2**70) for _ in range(500)]
    elif value_type == "float":
        values = [0.0, -0.0, 0.1, 1e-300, 5e-324, 123456789.123456789, 1.7976931348623157e308]
        values += [random_float(rng) for _ in range(2000)]
    elif value_type == "bool":
        values = [True, False]
    elif value_type == "string":
        values = ["", "%3A", "a\x00b", "ünï ✓ 𝄞"]
        for _ in range(500):
            codes = [rng.choice([rng.randint(32, 126), rng.randint(160, 0x10FFFF)])
                     for _ in range(rng.randint(0, 12))]  # fmt: skip
            values.append("".join(chr(c) for c in codes if not 0xD800 <= c <= 0xDFFF))
    else:
        values = [dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999)]
        values += [random_datetime(rng) for _ in range(500)]
    for value in values:
        text = encode_value(value, value_type)
        assert isinstance(text, str)
        assert encode_python_value(value) == text
        for encoded in (text, text.encode()):
            back = decode_value(encoded, value_type)
            assert same(back, value), (value_type, value, text, back)


def test_encoded_texts() -> None:
    assert encode_value(True, "bool") == "1" and encode_value(False, "bool") == "0"
    assert encode_python_value(True) == "1"  # a bool is not taken for an int
    assert encode_value(-12, "int") == "-12"
    assert encode_value(3, "float") == "3.0"  # an int is a valid float value
    assert encode_value(0.1, "float") == "0.1" and encode_value(-0.0, "float") == "-0.0"
    assert encode_value("a:b", "string") == "a:b"
    assert encode_value(dt.datetime(1970, 1, 1, 0, 0, 1, 5), "timestamp") == "1000005"
    value_types: list[ValueType] = ["int", "float", "bool", "string", "timestamp"]
    for value_type in value_types:
        assert encode_value(None, value_type) is None
        assert decode_value(None, value_type) is None
    assert encode_python_value(None) is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(OnlineLayoutError, match="not finite"):
        encode_value(value, "float")
    with pytest.raises(OnlineLayoutError, match="not finite"):
        encode_python_value(value)


@pytest.mark.parametrize(
    ("value", "value_type"),
    [
        ("1", "int"),
        (True, "int"),
        (1.0, "int"),
        (1, "bool"),
        ("true", "bool"),
        (True, "float"),
        ("0.5", "float"),
        (Decimal("0.5"), "float"),
        (1.5, "string"),
        (b"bytes", "string"),
        ("2026-05-01", "timestamp"),
        (dt.date(2026, 5, 1), "timestamp"),
        (1_777_000_000, "timestamp"),
    ],
)
def test_wrong_types_are_refused(value: object, value_type: ValueType) -> None:
    with pytest.raises(OnlineLayoutError):
        encode_value(value, value_type)


@pytest.mark.parametrize("value", [Decimal("1.5"), b"x", [1], {"a": 1}, dt.date(2026, 5, 1)])
def test_unsupported_python_values_are_refused(value: object) -> None:
    with pytest.raises(OnlineLayoutError):
        encode_python_value(value)


# --- timestamps --------------------------------------------------------------------------


def micros_by_hand(value: dt.datetime) -> int:
    return calendar.timegm(value.utctimetuple()) * 1_000_000 + value.microsecond


def test_micros_of_naive_and_aware_datetimes() -> None:
    rng = random.Random(11)
    zones = [dt.UTC] + [
        dt.timezone(dt.timedelta(minutes=m)) for m in (-720, -570, -1, 1, 60, 330, 765, 840)
    ]
    for _ in range(2000):
        naive = random_datetime(rng)
        assert micros(naive) == micros_by_hand(naive)
        zone = rng.choice(zones)
        aware = naive.replace(tzinfo=zone)  # the same wall time in another zone
        offset = zone.utcoffset(None)
        assert micros(aware) == micros(naive) - offset // dt.timedelta(microseconds=1)
        assert micros(aware) == micros_by_hand(aware)
        # the same instant seen from another zone has the same micros
        assert micros(aware.astimezone(rng.choice(zones))) == micros(aware)
    assert micros(dt.datetime(1970, 1, 1)) == 0
    assert micros(dt.datetime(1969, 12, 31, 23, 59, 59, 999999)) == -1
    assert micros(dt.datetime(2026, 5, 1, tzinfo=dt.UTC)) == 1_777_593_600 * 1_000_000
    # a timestamp reads back as naive UTC
    paris_summer = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    back = decode_value(encode_python_value(paris_summer), "timestamp")
    assert back == dt.datetime(2026, 7, 1, 10, 0)
