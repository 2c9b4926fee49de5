"""sidecar/fragments.py: records rendered to JSON fragments equal the answers built the plain
way (Python dicts serialized by orjson), for encoded and decoded values, every type, nulls,
odd numbers and strings; texts the layout cannot read are invalid records (alone) instead of
reaching JSON."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import orjson
import pytest

from featurestore.online.layout import decode_value, encode_value
from featurestore.online.store import EncodedRecord, InvalidRecord
from featurestore.registry import ValueType
from featurestore.timestamps import iso_micros
from sidecar.fragments import (
    COUNTS,
    EXP,
    FULL,
    KIND_LABELS,
    KINDS,
    PRESENT,
    FeatureAnswer,
    ViewRenderer,
    constant_record,
    json_value,
)

TYPES: list[ValueType] = ["int", "float", "bool", "string", "timestamp"]
DEFAULTS: dict[str, Any] = {"int": 0, "float": None, "bool": False, "string": "", "timestamp": None}


def null_answer(value_type: ValueType, timestamp: str) -> dict[str, Any]:
    default = DEFAULTS[value_type]
    if default is None:
        return {"value": None, "timestamp": timestamp, "status": "MISSING", "reason": "NULL"}
    return {"value": default, "timestamp": timestamp, "status": "DEFAULT", "reason": "NULL"}


def renderer(names: list[str], types: list[ValueType]) -> ViewRenderer:
    def feature(name: str, value_type: ValueType) -> FeatureAnswer:
        kind = 1 if DEFAULTS[value_type] is not None else 2
        return FeatureAnswer(
            name,
            value_type,
            lambda ts: orjson.dumps({name: null_answer(value_type, ts)})[1:-1],
            kind,
        )

    return ViewRenderer([feature(n, t) for n, t in zip(names, types, strict=True)])


def reference(names: list[str], types: list[ValueType], ts: int, values: list[Any]) -> dict:
    """The plain way: a dict per answer."""
    stamp = iso_micros(ts)
    out = {}
    for name, value_type, value in zip(names, types, values, strict=True):
        if value is None:
            out[name] = null_answer(value_type, stamp)
        else:
            out[name] = {
                "value": json_value(value, value_type),
                "timestamp": stamp,
                "status": "PRESENT",
            }
    return out


def random_value(rng: random.Random, value_type: ValueType) -> Any:
    if rng.random() < 0.15:
        return None
    if value_type == "int":
        return rng.choice([0, -1, 7, 2**63 - 1, -(2**63), rng.randint(-(10**9), 10**9)])
    if value_type == "float":
        return rng.choice([0.0, -0.0, 0.1, 1e16, -1e300, 5e-324, 123.456, rng.uniform(-1e6, 1e6)])
    if value_type == "bool":
        return rng.random() < 0.5
    if value_type == "string":
        return rng.choice(["", "plain", 'quote " back \\ slash', "é ✓ 😀", "%b %s %%", "\n\t\x00"])
    micros = rng.randint(0, 4_000_000_000_000_000)
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)


@pytest.mark.parametrize("seed", range(30))
def test_encoded_and_decoded_records_render_like_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    types = [rng.choice(TYPES) for _ in range(rng.randint(1, 12))]
    names = [f"f_{i}_%b{'%' * (i % 3)}" for i in range(len(types))]  # % in names too
    view = renderer(names, types)
    ts = rng.randint(0, 4_000_000_000_000_000)
    values = [random_value(rng, t) for t in types]
    encoded = tuple(
        None if v is None else encode_value(v, t).encode()  # type: ignore[union-attr]
        for v, t in zip(values, types, strict=True)
    )
    want = reference(names, types, ts, values)
    for record in (
        view.from_encoded(EncodedRecord(ts, ts, 99, encoded)),
        view.from_values(ts, 99, [decode_value(e, t) for e, t in zip(encoded, types, strict=True)]),
    ):
        assert record[EXP] == 99
        got = orjson.loads(b"{" + record[FULL] + b"}")
        assert got == want
        assert list(got) == names  # view order
        parts = view.parts(record)
        assert [orjson.loads(b"{" + p + b"}") for p in parts] == [{n: want[n]} for n in names]
        kinds = [PRESENT if v is not None else (1 if DEFAULTS[t] is not None else 2)
                 for v, t in zip(values, types, strict=True)]  # fmt: skip
        assert list(record[KINDS]) == kinds
        assert list(record[COUNTS]) == [kinds.count(k) for k in range(len(KIND_LABELS))]


#: texts not valid for their type (the layout writes none of them), and why
UNREADABLE: list[tuple[ValueType, bytes]] = [
    ("int", b"12x"),
    ("int", b""),
    ("int", b"1" * 30),  # beyond 64 bits
    ("float", b"abc"),
    ("float", b"nan"),
    ("float", b"-inf"),
    ("bool", b"yes"),
    ("bool", b""),
    ("timestamp", b"soon"),
    ("timestamp", b"99999999999999999999"),  # past the year 9999
    ("string", b"\xff\xfe"),  # not UTF-8
]


@pytest.mark.parametrize(("value_type", "text"), UNREADABLE)
def test_unreadable_texts_are_invalid_records_instead_of_reaching_json(
    value_type: ValueType, text: bytes
) -> None:
    view = renderer(["ok", "f"], ["int", value_type])
    record = view.from_encoded(EncodedRecord(0, 0, 1, (b"1", text)))
    assert isinstance(record, InvalidRecord)
    assert record.reason.startswith(f"f ({value_type}): ")  # names the culprit


def test_a_feature_timestamp_out_of_range_is_an_invalid_record() -> None:
    view = renderer(["a"], ["int"])
    for ts in (10**20, -(10**20)):
        record = view.from_encoded(EncodedRecord(ts, ts, 1, (b"1",)))
        assert record == InvalidRecord(f"feature timestamp {ts} us is out of range")
        assert view.from_values(ts, 1, [1]) == record


def test_values_that_cannot_be_served_are_invalid_records() -> None:
    view = renderer(["a", "b"], ["int", "float"])
    record = view.from_values(0, 1, [10**30, 1.5])
    assert isinstance(record, InvalidRecord) and record.reason.startswith("a (int): ")
    assert not isinstance(view.from_values(0, 1, [2**63 - 1, 1.5]), InvalidRecord)


def test_odd_but_readable_numbers_are_reserialized() -> None:
    view = renderer(["a", "b", "c"], ["int", "float", "float"])
    record = view.from_encoded(EncodedRecord(0, 0, 1, (b"007", b"1_000.5", b" 2.50 ")))
    got = orjson.loads(b"{" + record[FULL] + b"}")
    assert [got[k]["value"] for k in "abc"] == [7, 1000.5, 2.5]


def test_constant_records_never_expire() -> None:
    record = constant_record([(b'"a":{"value":null}', 4), (b'"b":{"value":0}', 3)])
    assert record[EXP] > 10**18
    assert record[FULL] == b'"a":{"value":null},"b":{"value":0}'
    assert record[COUNTS] == (0, 0, 0, 1, 1, 0, 0, 0, 0)


@pytest.mark.parametrize("seed", range(20))
def test_rendering_many_records_equals_rendering_each(seed: int) -> None:
    """The batch path (numbers checked per column group) gives what the one-record path
    gives, including odd texts that force the slow path and records with nulls."""
    rng = random.Random(seed)
    types = [rng.choice(TYPES) for _ in range(rng.randint(1, 8))]
    names = [f"f{i}" for i in range(len(types))]
    view = renderer(names, types)
    records = []
    shared = rng.randint(0, 4_000_000_000_000_000) if seed % 2 else None  # one batch load
    for _ in range(rng.randint(0, 30)):
        values = [random_value(rng, t) for t in types]
        texts: list[bytes | None] = [
            None if v is None else encode_value(v, t).encode()  # type: ignore[union-attr]
            for v, t in zip(values, types, strict=True)
        ]
        if rng.random() < 0.2:  # odd but readable numbers
            texts = [
                b"00" + text if text is not None and t == "int" and text[:1] != b"-" else text
                for text, t in zip(texts, types, strict=True)
            ]
        ts = shared if shared is not None else rng.randint(0, 4_000_000_000_000_000)
        records.append(EncodedRecord(ts, ts, 7, tuple(texts)))
    many = view.from_encoded_many(records)
    assert many == [view.from_encoded(record) for record in records]


@pytest.mark.parametrize("position", [0, 1, 4])
def test_one_unreadable_record_among_many_is_invalid_alone(position: int) -> None:
    """In a batch, each unreadable record is an InvalidRecord and every other record is
    rendered exactly as it is alone (the batch path falls back record by record)."""
    view = renderer(["a", "b", "c"], ["int", "float", "bool"])
    bads = [(b"1,2", b"2.5", b"1"), (b"[1]", b"2.5", b"0"), (b"1.5", b"2.5", b"1"),
            (b"1", b"x", b"1"), (b"1", b"nan", b"0"), (b"1", b"2.5", b"2")]  # fmt: skip
    for bad in bads:
        records = [EncodedRecord(k, k, 9, (b"%d" % k, b"0.5", b"1")) for k in range(5)]
        records[position] = EncodedRecord(0, 0, 9, bad)
        many = view.from_encoded_many(records)
        assert isinstance(many[position], InvalidRecord), bad
        for k, (got, record) in enumerate(zip(many, records, strict=True)):
            if k != position:
                assert got == view.from_encoded(record)
                assert not isinstance(got, InvalidRecord)
