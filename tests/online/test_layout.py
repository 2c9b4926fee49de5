"""Unit tests of the online layout (featurestore/online/layout.py): entity tokens and keys,
value encoding, timestamps, tile sets (packed and JSON, corrupt ones refused). Pure logic:
random inputs with fixed seeds, expectations derived by hand (calendar.timegm for epochs,
Redis Cluster's hash-tag rule for slots, the tile set format spelled word by word)."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import random
import struct
import zlib
from decimal import Decimal

import pytest
from redis.crc import key_slot

from featurestore.online.layout import (
    TILE_SET_FORMAT,
    TILE_SET_MAGIC,
    OnlineLayoutError,
    Record,
    TileSet,
    decode_tile_set,
    decode_value,
    dynamodb_pk,
    encode_python_value,
    encode_tile_set,
    encode_value,
    entity_token,
    exp_field,
    micros,
    parse_entity_token,
    read_tile_columns,
    read_tile_set,
    redis_key,
    tile_words,
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


# --- tile sets: the packed form, the JSON form --------------------------------------------

T0 = 1_777_593_600  # 2026-05-01T00:00:00Z: a tile start of every hop below


def tile_sets() -> list[TileSet]:
    """Tile sets of every shape the encoder takes: counts, integer sums, decimal sums of
    mixed scales, (count, sum) pairs with a null sum, hops without tiles, tiles given out of
    order, negative sums, an empty set."""
    return [
        {60: {T0 - 60: (1,), T0: (3,)}},
        {
            60: {T0: (2, 7), T0 - 120: (1, -4)},
            3600: {T0: ((2, Decimal("5.25")),), T0 - 7200: ((1, None),), T0 - 3600: ((0, None),)},
            86400: {T0 - 86400 * k: ((k, Decimal(k) / 8),) for k in range(90)},
        },
        {3600: {T0: (Decimal("0.1"), Decimal("12")), T0 + 3600: (Decimal("-3.125"), None)}},
        {60: {}, 86400: {}},
        {},
    ]


def normalized(tiles: TileSet) -> TileSet:
    """What decoding gives back: null sums as zero (of the column's scale), pairs as tuples."""
    return decode_tile_set(encode_tile_set(tiles))


@pytest.mark.parametrize("index", range(5))
def test_tile_sets_round_trip_packed(index: int) -> None:
    """A tile set is packed (magic byte, never UTF-8 text) and decodes to the same partials,
    exactly (decimals with their scale), tiles in start order, empty hops kept."""
    tiles = tile_sets()[index]
    packed = encode_tile_set(tiles)
    assert packed[0] == TILE_SET_MAGIC and packed[1] == TILE_SET_FORMAT
    with pytest.raises(UnicodeDecodeError):
        packed.decode()
    decoded = decode_tile_set(packed)
    assert sorted(decoded) == sorted(tiles)
    for hop, by_start in tiles.items():
        assert list(decoded[hop]) == sorted(by_start)
        for start, partials in by_start.items():
            for got, want in zip(decoded[hop][start], partials, strict=True):
                if isinstance(want, tuple):
                    assert got == (want[0], want[1] or 0)
                else:
                    assert got == (want or 0) and type(got) in (int, Decimal)
    assert encode_tile_set(decoded) == packed  # decoding loses nothing the encoder keeps
    # the JSON form of the same set reads back the same (stores written before the packed form)
    assert decode_tile_set(encode_tile_set(tiles, packed=False)) == decoded
    assert read_tile_columns(packed) == read_tile_columns(encode_tile_set(tiles, packed=False))


def test_decimal_scales_are_per_column() -> None:
    """A column's scale is its largest number of decimals; sums are exact in its units."""
    tiles: TileSet = {3600: {T0: ((1, Decimal("0.5")),), T0 + 3600: ((2, Decimal("1.125")),)}}
    columns = read_tile_columns(encode_tile_set(tiles))[3600]
    assert columns.kinds == [2] and columns.scales == [0, 3]
    assert columns.prefixes == [[0, 1, 3], [0, 500, 1625]]
    assert columns.starts == [T0, T0 + 3600]


def test_sums_beyond_64_bits_fall_back_to_json() -> None:
    """A prefix sum that fits in a signed 64-bit word is packed; one beyond it (a decimal(38,
    s) total) makes the whole set JSON, read back exactly."""
    edge = 2**63 - 1
    fits: TileSet = {60: {T0: (edge - 5,), T0 + 60: (5,)}}
    assert encode_tile_set(fits)[0] == TILE_SET_MAGIC
    assert decode_tile_set(encode_tile_set(fits)) == fits
    beyond: TileSet = {60: {T0: (edge - 5,), T0 + 60: (6,)}}
    stored = encode_tile_set(beyond)
    assert stored.startswith(b'{"60":')
    assert decode_tile_set(stored) == beyond
    big = Decimal("12345678901234567890123456.78")
    decimals: TileSet = {86400: {T0: ((1, big),), T0 - 86400: ((2, Decimal("0.01")),)}}
    stored = encode_tile_set(decimals)
    assert stored[:1] == b"{"
    assert decode_tile_set(stored) == decimals
    words = read_tile_set(stored)
    assert words.words[words.hops[86400].columns + 3 + 2] == 1234567890123456789012345679


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ({60: {T0 + 30: (1,)}}, "multiples of the hop"),
        ({0: {0: (1,)}}, "positive integer"),
        ({60: {T0: (1,), T0 + 60: (1, 2)}}, "different numbers of partials"),
        ({60: {T0: ((1, 2),), T0 + 60: (3,)}}, "pairs mixed with numbers"),
        ({60: {T0: (Decimal("1E-40"),)}}, "40 decimals"),
        ({60: {T0: (Decimal("NaN"),)}}, "finite"),
        ({60: {T0: (1.5,)}}, "not a tile partial sum"),
    ],
)
def test_tiles_the_layout_cannot_hold_are_refused(tiles: TileSet, message: str) -> None:
    with pytest.raises(OnlineLayoutError, match=message):
        encode_tile_set(tiles)


def packed(words: list[int], hops: int, *, crc: int | None = None, version: int = 1) -> bytes:
    """A packed tile set spelled by hand (layout "Timelines"): the preamble word, then
    ``words`` (word 1, the header's length, first) as int64 little-endian."""
    body = struct.pack(f"<{len(words)}q", *words)
    crc = zlib.crc32(body) if crc is None else crc
    return struct.pack("<BBHI", TILE_SET_MAGIC, version, hops, crc) + body


#: a valid set by hand: a header of 13 words (hop 60: 2 tiles, 1 feature, 1 column, kind
#: 1, scale 0; hop 3600: 1 tile, 1 feature, 2 columns, kind 2, scales 0 and 2), then hop
#: 60's tile numbers (100, 102) and count column, hop 3600's tile number (7), its counts
#: and its sums (3.50 in units of 0.01)
GOOD = [13, 60, 2, 1, 1, 1, 0, 3600, 1, 1, 2, 2, 0, 2, 100, 102, 0, 1, 4, 7, 0, 2, 0, 350]


def test_a_hand_spelled_packed_set_reads_as_the_docstring_says() -> None:
    """The format in the module docstring, word for word."""
    assert decode_tile_set(packed(GOOD, 2)) == {
        60: {6000: (1,), 6120: (3,)},
        3600: {25200: ((2, Decimal("3.50")),)},
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (packed(GOOD, 2)[:-8], "words and 2 hops stored"),  # a word short
        (packed(GOOD, 2)[:-3], "not whole 8-byte words"),  # truncated mid-word
        (packed(GOOD, 2)[:12], "not whole 8-byte words"),
        (packed(GOOD, 2)[:8], "not whole 8-byte words"),
        (packed([*GOOD, 0], 2), "words and 2 hops stored"),  # a word too many
        (packed(GOOD, 3), "2 hops"),  # hop count of the preamble
        (packed(GOOD, 2, version=2), "format 2"),
        (packed(GOOD, 2, crc=12345), "CRC-32 mismatch"),
        (packed([30, *GOOD[1:]], 2), "a header of 30 words"),  # header beyond the set
        (packed([12, *GOOD[1:]], 2), "cut short"),  # header length off by one
        (packed([13, 0, *GOOD[2:]], 2), "hops must ascend from 1"),  # hop 0
        (packed([13, 3600, *GOOD[2:7], 60, *GOOD[8:]], 2), "hops must ascend"),
        (packed([13, 60, -2, *GOOD[3:]], 2), "counts be >= 0"),
        (packed([*GOOD[:5], 3, *GOOD[6:]], 2), "kinds must be 1 or 2"),
        (packed([*GOOD[:4], 3, *GOOD[5:]], 2), "add up to the columns"),
        (packed([*GOOD[:6], -1, *GOOD[7:]], 2), "scales must be 0 to 38"),
        (packed([*GOOD[:6], 39, *GOOD[7:]], 2), "scales must be 0 to 38"),
        (packed([*GOOD[:14], 102, 100, *GOOD[16:]], 2), "tile numbers must ascend"),
        (packed([*GOOD[:14], 100, 100, *GOOD[16:]], 2), "tile numbers must ascend"),
        (packed([*GOOD[:16], 5, 6, 9, *GOOD[19:]], 2), "a prefix column not starting at 0"),
        (packed([*GOOD[:22], 9, 350], 2), "a prefix column not starting at 0"),
        (b"\xf6" + packed(GOOD, 2)[1:], "not JSON"),  # another first byte: read as JSON
    ],
)
def test_a_corrupt_packed_set_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(OnlineLayoutError, match=message):
        read_tile_set(data)


def test_every_bit_flip_and_truncation_of_a_packed_set_is_refused() -> None:
    """Corruption anywhere (a flipped bit in any byte: magic, version, hop count, CRC, header
    or body; or the set cut at any length) is refused, never read as other tiles."""
    data = encode_tile_set(tile_sets()[1])
    read_tile_set(data)
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(OnlineLayoutError):
                read_tile_set(bytes(flipped))
    for length in range(len(data)):
        with pytest.raises(OnlineLayoutError):
            read_tile_set(data[:length])


def test_headers_are_remembered_per_shape_and_still_checked() -> None:
    """Two sets of one shape (the same hops, tile counts, kinds, scales) share one parsed
    header; a set of that shape is still checked on its own (length, CRC, order)."""
    first = read_tile_set(encode_tile_set({60: {T0: (1,), T0 + 60: (2,)}}))
    second = read_tile_set(encode_tile_set({60: {T0 + 600: (5,), T0 + 900: (6,)}}))
    assert first.header == second.header and first.hops is second.hops
    other = read_tile_set(encode_tile_set({60: {T0: (1,)}}))
    assert other.header != first.header
    unordered = packed([6, 60, 2, 1, 1, 1, 0, 9, 8, 0, 1, 2], 1)
    valid = packed([6, 60, 2, 1, 1, 1, 0, 8, 9, 0, 1, 2], 1)
    assert read_tile_set(valid).header == unordered[8:64]
    with pytest.raises(OnlineLayoutError, match="must ascend"):
        read_tile_set(unordered)


def test_the_json_form_keeps_its_checks() -> None:
    """Stores written before the packed form hold JSON: read with its element checks."""
    old = b'{"60":{"t":[6000,6120],"k":[1],"x":[0],"p":[[0,1,4]]}}'
    assert decode_tile_set(old) == {60: {6000: (1,), 6120: (3,)}}
    words = read_tile_set(old)
    assert tile_words(words.words)[words.hops[60].numbers :][:2] == (100, 102)
    for bad, message in [
        (b'{"60":{"t":[6030],"k":[1],"x":[0],"p":[[0,1]]}}', "multiples of the hop"),
        (b'{"60":{"t":[6000],"k":[1],"x":[39],"p":[[0,1]]}}', "scales >= 0"),
        (b'{"60":{"t":[6000],"k":[1],"x":[0],"p":[[1,1]]}}', "integers from 0"),
        (b"not json", "not JSON"),
    ]:
        with pytest.raises(OnlineLayoutError, match=message):
            read_tile_set(bad)
