"""The online-store contract (featurestore/online/store.py and layout.py), one suite run
against every store through the ``store`` fixture (SQLite, Redis, DynamoDB).

Expected results come from :class:`Reference`, a plain dict applying the rules by hand:
a record is dropped if ``exp <= now`` at write time, replaces the stored record of its
(entity, key, view) only if its ``(ts, ver)`` pair is greater (in replace mode: always, and
an expired one removes it), and is served while ``exp > now``, with its timeline (the one
of the record that won, None if it had none). Values are compared exactly, with their type
(``True`` is not ``1``, and ``-0.0`` is not ``0.0``). All clocks are fixed ``now`` datetimes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest

from featurestore.online.layout import Record, TileSet, encode_steps, encode_tile_set
from featurestore.online.store import (
    LoadRecord,
    OnlineStore,
    ReadGroup,
    RecordRefused,
    StoredRecord,
    ViewRead,
    WriteResult,
)
from featurestore.registry import ValueType

EPOCH = dt.datetime(1970, 1, 1)
NOW = dt.datetime(2026, 5, 1, 6, 0, 0)  # naive = UTC
DAY = 86_400
MICROS = 1_000_000


def seconds(moment: dt.datetime) -> int:
    """Epoch seconds, by hand (naive = UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return (moment - EPOCH).days * DAY + (moment - EPOCH).seconds


def at(epoch_seconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=epoch_seconds)


NOW_S = seconds(NOW)
NOW_US = NOW_S * MICROS

PROFILE = ViewRead(
    "user_profile",
    {"age": "int", "score": "float", "active": "bool", "name": "string", "signup_at": "timestamp"},
)
ACTIVITY = ViewRead("user_activity", {"txn_count_7d": "int", "txn_avg_7d": "float"})
DEVICE = ViewRead("user_device_stats", {"sessions": "int", "last_seen_at": "timestamp"})
VIEWS: dict[str, list[ViewRead]] = {"user": [PROFILE, ACTIVITY], "user_device": [DEVICE]}
#: a tiled view: its records hold no feature values, only a timeline (the tile set)
TILED = ViewRead("user_windows", {"txn_count_10m": "int", "amount_avg_1h": "float"})
ENTITY_OF = {view.view: entity for entity, views in VIEWS.items() for view in views}
ENTITY_OF[TILED.view] = "user"
FEATURES = {view.view: view for views in [*VIEWS.values(), [TILED]] for view in views}


# --- the reference -------------------------------------------------------------------------

Slot = tuple[str, tuple[str, ...], str]  # entity, key, view
Expected = tuple[int, int, int, dict[str, object], bytes | None] | None


def canon(value: object) -> object:
    """A value with its type, compared exactly (floats by their bits)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # what was written; reads give naive UTC
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return ("timestamp", value)
    raise TypeError(f"unexpected value {value!r}")


def as_read(value: object, value_type: ValueType) -> object:
    """What a value written from Python reads back as, by hand."""
    if value is None:
        return None
    if value_type == "float" and not isinstance(value, float):
        value = float(value)  # type: ignore[arg-type]
    return canon(value)


@dataclass
class Reference:
    records: dict[Slot, Record] = field(default_factory=dict)

    def write(
        self, records: Iterable[Record], now: dt.datetime, replace: bool = False
    ) -> WriteResult:
        now_s = seconds(now)
        written = skipped = 0
        for record in records:
            slot = (record.entity, record.key, record.view)
            if record.exp <= now_s:
                if replace:
                    self.records.pop(slot, None)
                continue
            old = self.records.get(slot)
            if (
                replace
                or old is None
                or record.ts > old.ts
                or (record.ts == old.ts and record.ver > old.ver)
            ):
                self.records[slot] = record
                written += 1
            else:
                skipped += 1
        return WriteResult(written=written, skipped_older=skipped)

    def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        now: dt.datetime,
    ) -> list[dict[str, Expected]]:
        now_s = seconds(now)
        rows = []
        for key in keys:
            row: dict[str, Expected] = {}
            for view in views:
                record = self.records.get((entity, key, view.view))
                if record is None or record.exp <= now_s:
                    row[view.view] = None
                else:
                    values = {
                        name: as_read(record.values.get(name), value_type)
                        for name, value_type in view.features.items()
                    }
                    row[view.view] = (record.ts, record.ver, record.exp, values, record.timeline)
            rows.append(row)
        return rows


def observed(rows: list[dict[str, StoredRecord | None]]) -> list[dict[str, Expected]]:
    out = []
    for row in rows:
        converted: dict[str, Expected] = {}
        for view, stored in row.items():
            if stored is None:
                converted[view] = None
            else:
                values = {name: canon(value) for name, value in stored.values.items()}
                converted[view] = (stored.ts, stored.ver, stored.exp, values, stored.timeline)
        out.append(converted)
    return out


def read(
    store: OnlineStore,
    entity: str,
    keys: Sequence[tuple[str, ...]],
    now: dt.datetime,
    views: Sequence[ViewRead] | None = None,
) -> list[dict[str, Expected]]:
    return observed(store.read(entity, keys, views or VIEWS[entity], now=now))


def record(
    key: tuple[str, ...] | str,
    view: str,
    ts: int,
    ver: int | None = None,
    exp: int | None = None,
    timeline: bytes | None = None,
    **values: object,
) -> Record:
    """A record; ``ts``/``ver`` in micros, ``exp`` in seconds (default ts + 30 days)."""
    key = (key,) if isinstance(key, str) else key
    full = dict.fromkeys(FEATURES[view].features)
    full.update(values)
    return Record(
        entity=ENTITY_OF[view],
        key=key,
        view=view,
        ts=ts,
        ver=ts if ver is None else ver,
        exp=ts // MICROS + 30 * DAY if exp is None else exp,
        values=full,
        timeline=timeline,
    )


def write_both(
    store: OnlineStore,
    reference: Reference,
    records: Sequence[Record],
    now: dt.datetime,
    replace: bool = False,
) -> tuple[WriteResult, WriteResult]:
    return (
        store.write(records, now=now, replace=replace),
        reference.write(records, now, replace),
    )


# --- newer wins --------------------------------------------------------------------------


def test_newer_wins_on_the_ts_ver_pair(store: OnlineStore) -> None:
    ts = NOW_US - 3_600 * MICROS + 1  # realistic magnitudes, differing in the last micro
    reference = Reference()
    steps: list[tuple[Record, WriteResult]] = [
        (record("u1", "user_activity", ts, ts + 10, txn_count_7d=1), WriteResult(1, 0)),
        # an older feature timestamp loses even with a later version
        (record("u1", "user_activity", ts - 1, ts + 99, txn_count_7d=2), WriteResult(0, 1)),
        # same timestamp, earlier version: loses
        (record("u1", "user_activity", ts, ts + 9, txn_count_7d=3), WriteResult(0, 1)),
        # equal pair, other values: a no-op
        (record("u1", "user_activity", ts, ts + 10, txn_count_7d=4), WriteResult(0, 1)),
        # same timestamp, later version (a late event corrected it): wins
        (record("u1", "user_activity", ts, ts + 11, txn_count_7d=5), WriteResult(1, 0)),
        # newer timestamp wins even with an earlier version than stored
        (record("u1", "user_activity", ts + 1, ts + 1, txn_count_7d=6), WriteResult(1, 0)),
        (record("u1", "user_activity", ts + 1, ts + 1, txn_count_7d=7), WriteResult(0, 1)),
    ]
    for step, (rec, expected) in enumerate(steps):
        got, ref = write_both(store, reference, [rec], NOW)
        assert got == ref == expected, step
        assert read(store, "user", [("u1",)], NOW) == reference.read(
            "user", [("u1",)], VIEWS["user"], NOW
        ), step
    final = store.read("user", [("u1",)], [ACTIVITY], now=NOW)[0]["user_activity"]
    assert final is not None
    assert (final.ts, final.ver, final.values["txn_count_7d"]) == (ts + 1, ts + 1, 6)


def test_newer_wins_per_view_and_per_key(store: OnlineStore) -> None:
    """A newer record of one view leaves the other views of the same entity alone."""
    reference = Reference()
    first = [
        record("u1", "user_profile", NOW_US - 10, age=30, name="a"),
        record("u1", "user_activity", NOW_US - 5, txn_count_7d=3, txn_avg_7d=1.5),
        record("u2", "user_activity", NOW_US - 5, txn_count_7d=9),
    ]
    second = [
        record("u1", "user_activity", NOW_US - 1, txn_count_7d=4),  # newer: wins
        record("u1", "user_profile", NOW_US - 20, age=99),  # older: skipped
        record("u2", "user_activity", NOW_US - 6, txn_count_7d=1),  # older: skipped
    ]
    assert write_both(store, reference, first, NOW) == (WriteResult(3, 0),) * 2
    assert write_both(store, reference, second, NOW) == (WriteResult(1, 2),) * 2
    keys = [("u1",), ("u2",)]
    assert read(store, "user", keys, NOW) == reference.read("user", keys, VIEWS["user"], NOW)


def test_writing_the_same_batch_twice_changes_nothing(store: OnlineStore) -> None:
    rng = random.Random(7)
    batch = random_records(rng, 40)
    assert len(batch) >= 8
    reference = Reference()
    first, expected = write_both(store, reference, batch, NOW)
    assert first == expected
    before = read_everything(store, NOW)
    assert before == read_reference(reference, NOW)
    second = store.write(batch, now=NOW)
    assert second == WriteResult(written=0, skipped_older=first.written + first.skipped_older)
    assert read_everything(store, NOW) == before


# --- random interleavings of batch and streaming writes ----------------------------------

USER_KEYS = [("u1",), ("u2",), ("u:3{x}#%",)]
DEVICE_KEYS = [("u1", "d1"), ("u1", "d:2"), ("u2", "d1"), ("u1:d1", "x")]
TS_CHOICES = [NOW_US - 3 * DAY * MICROS, NOW_US - DAY * MICROS, NOW_US - 1, NOW_US + 3_600]
TTL_CHOICES = [DAY, 2 * DAY, 30 * DAY]  # some expire before, some during the test's reads


def random_value(rng: random.Random, value_type: ValueType) -> object:
    if rng.random() < 0.2:
        return None
    if value_type == "int":
        return rng.choice([0, -1, 7, 2**62 + 1, rng.randint(-1000, 1000)])
    if value_type == "float":
        return rng.choice([0.1, -0.0, 1e-300, 2.5, rng.uniform(-1e6, 1e6)])
    if value_type == "bool":
        return rng.random() < 0.5
    if value_type == "string":
        return rng.choice(["", "plain", "a:b{c}#d%e", "ünïcødé ✓", str(rng.random())])
    return at(NOW_S - rng.randint(0, 10**8)) + dt.timedelta(microseconds=rng.randint(0, 999_999))


def random_record(seed: object, rng: random.Random) -> Record:
    view = rng.choice([PROFILE, ACTIVITY, DEVICE])
    entity = ENTITY_OF[view.view]
    key = rng.choice(DEVICE_KEYS if entity == "user_device" else USER_KEYS)
    ts = rng.choice(TS_CHOICES)
    ver = ts + rng.choice([0, 1, 5 * MICROS])
    exp = ts // MICROS + rng.choice(TTL_CHOICES)
    # the values are a function of (slot, ts, ver): a replayed pair carries the same values,
    # so the final state does not depend on the order of writes inside one batch
    values_rng = random.Random(f"{seed}|{entity}|{key}|{view.view}|{ts}|{ver}")
    values = {name: random_value(values_rng, t) for name, t in view.features.items()}
    return Record(entity, key, view.view, ts, ver, exp, values, random_timeline(values_rng))


def random_timeline(rng: random.Random) -> bytes | None:
    """None, or a timeline of the layout's (a tile set, steps) or any other bytes."""
    choice = rng.randrange(4)
    if choice == 0:
        return None
    if choice == 1:
        tiles: TileSet = {
            3_600: {NOW_S - 3_600 * i: (rng.randint(0, 9), Decimal("1.25")) for i in range(3)}
        }
        return encode_tile_set(tiles)
    if choice == 2:
        return encode_steps([(NOW_US - MICROS, ["1", None]), (NOW_US, [str(rng.random()), "x"])])
    return rng.choice([b"", b"{}", "ünï ✓".encode(), b"[" * 1000])


def random_records(rng: random.Random, count: int) -> list[Record]:
    """Random records, at most one per (entity, key, view)."""
    records: dict[Slot, Record] = {}
    for _ in range(count):
        rec = random_record(rng.random(), rng)
        records.setdefault((rec.entity, rec.key, rec.view), rec)
    return list(records.values())


def read_everything(store: OnlineStore, now: dt.datetime) -> list[list[dict[str, Expected]]]:
    return [read(store, "user", USER_KEYS, now), read(store, "user_device", DEVICE_KEYS, now)]


def read_reference(reference: Reference, now: dt.datetime) -> list[list[dict[str, Expected]]]:
    return [
        reference.read("user", USER_KEYS, VIEWS["user"], now),
        reference.read("user_device", DEVICE_KEYS, VIEWS["user_device"], now),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_interleavings_end_in_the_reference_state(store: OnlineStore, seed: int) -> None:
    rng = random.Random(seed)
    seed_values = rng.random()
    pool = [random_record(seed_values, rng) for _ in range(120)]
    operations: list[tuple[str, list[Record], dt.datetime]] = []
    index = 0
    while index < len(pool):
        # batch loads (the nightly job) and single streamed records, at varying clocks
        size = rng.randint(5, 25) if rng.random() < 0.3 else 1
        now = NOW + dt.timedelta(seconds=rng.choice([0, 600, DAY + 7]))
        operations.append(("batch" if size > 1 else "stream", pool[index : index + size], now))
        index += size
    # replays of earlier batches (a re-run of the loader)
    batches = [op for op in operations if op[0] == "batch"]
    operations += [("replay", op[1], op[2]) for op in rng.sample(batches, min(3, len(batches)))]
    rng.shuffle(operations)
    reference = Reference()
    for step, (kind, records, now) in enumerate(operations):
        got, expected = write_both(store, reference, records, now)
        if kind == "stream" or len({(r.entity, r.key, r.view) for r in records}) == len(records):
            assert got == expected, (step, kind)
        else:  # duplicate slots in one batch: only the totals are order-independent
            assert got.written + got.skipped_older == expected.written + expected.skipped_older
        if step == len(operations) // 2:
            assert read_everything(store, now) == read_reference(reference, now)
    # the reference itself: each slot holds the greatest (ts, ver) among records that were
    # unexpired when written, by a second independent computation
    best: dict[Slot, tuple[int, int]] = {}
    for _, records, now in operations:
        for rec in records:
            if rec.exp > seconds(now):
                slot = (rec.entity, rec.key, rec.view)
                best[slot] = max(best.get(slot, (-1, -1)), (rec.ts, rec.ver))
    assert {s: (r.ts, r.ver) for s, r in reference.records.items()} == best
    assert len(best) >= 6  # the pool touched many slots
    for read_at in (NOW, NOW + dt.timedelta(days=1, hours=12), NOW + dt.timedelta(days=40)):
        assert read_everything(store, read_at) == read_reference(reference, read_at), read_at


@pytest.mark.parametrize("seed", [4, 5])
def test_random_loads_and_repairs_end_in_the_reference_state(store: OnlineStore, seed: int) -> None:
    """Newer-wins batches interleaved with replace-mode repairs (the loader's full refresh),
    records with and without timelines, some already expired when written: after every
    operation the store reads as the reference (values and timelines)."""
    rng = random.Random(seed)
    reference = Reference()
    modes = []
    kinds: set[bool] = set()  # records without a timeline (True) and with one (False)
    for step in range(14):
        records = random_records(rng, rng.randint(3, 15))  # one record per slot
        replace_mode = rng.random() < 0.35
        modes.append(replace_mode)
        kinds.update(r.timeline is None for r in records)
        now = NOW + dt.timedelta(seconds=rng.choice([0, 600, DAY + 7]))
        got, expected = write_both(store, reference, records, now, replace=replace_mode)
        assert got == expected, (step, replace_mode)
        assert read_everything(store, now) == read_reference(reference, now), step
    assert any(modes) and not all(modes) and kinds == {True, False}


# --- expiry ------------------------------------------------------------------------------


def test_expired_records_are_never_written(store: OnlineStore) -> None:
    reference = Reference()
    records = [
        record("u1", "user_activity", NOW_US - 40 * DAY * MICROS, exp=NOW_S - 1, txn_count_7d=1),
        record("u2", "user_activity", NOW_US - 30 * DAY * MICROS, exp=NOW_S, txn_count_7d=2),
    ]
    assert write_both(store, reference, records, NOW) == (WriteResult(0, 0),) * 2
    # not even readable by a reader whose clock is earlier
    earlier = NOW - dt.timedelta(days=60)
    assert (
        read(store, "user", [("u1",), ("u2",)], earlier)
        == [{"user_profile": None, "user_activity": None}] * 2
    )


def test_an_expired_newer_record_does_not_replace_a_live_one(store: OnlineStore) -> None:
    live = record("u1", "user_activity", NOW_US - 10 * DAY * MICROS, txn_count_7d=1)
    dead = record("u1", "user_activity", NOW_US - DAY * MICROS, exp=NOW_S, txn_count_7d=2)
    reference = Reference()
    assert write_both(store, reference, [live], NOW) == (WriteResult(1, 0),) * 2
    assert write_both(store, reference, [dead], NOW) == (WriteResult(0, 0),) * 2
    assert read(store, "user", [("u1",)], NOW) == reference.read(
        "user", [("u1",)], VIEWS["user"], NOW
    )
    got = store.read("user", [("u1",)], [ACTIVITY], now=NOW)[0]["user_activity"]
    assert got is not None and got.values["txn_count_7d"] == 1


def test_records_are_not_read_once_their_exp_has_passed(store: OnlineStore) -> None:
    exp = NOW_S + DAY
    reference = Reference()
    records = [
        record("u1", "user_activity", NOW_US - MICROS, exp=exp, txn_count_7d=5),
        record("u1", "user_profile", NOW_US - MICROS, exp=exp + 10 * DAY, age=41),
    ]
    assert write_both(store, reference, records, NOW) == (WriteResult(2, 0),) * 2
    for read_at, activity_alive in [
        (NOW, True),
        (at(exp - 1), True),
        (at(exp), False),  # exp == now is expired
        (at(exp) + dt.timedelta(microseconds=1), False),
        (at(exp + DAY), False),
    ]:
        rows = read(store, "user", [("u1",)], read_at)
        assert rows == reference.read("user", [("u1",)], VIEWS["user"], read_at), read_at
        assert (rows[0]["user_activity"] is not None) is activity_alive, read_at
        assert rows[0]["user_profile"] is not None, read_at  # the other view lives on
    assert read(store, "user", [("u1",)], at(exp + 10 * DAY)) == [
        {"user_profile": None, "user_activity": None}
    ]


# --- values ------------------------------------------------------------------------------

INTS = [0, 1, -1, 42, 2**53 + 1, 10**18 + 7, 2**63 - 1, -(2**63)]
FLOATS = [
    0.0,
    -0.0,
    0.1,
    0.30000000000000004,
    1 / 3,
    -2.5,
    1e-300,
    5e-324,
    123456789.123456789,
    1e22,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]
STRINGS = [
    "",
    "plain",
    ":",
    "{",
    "}",
    "#",
    "%",
    "%3A",
    "a:b{c}#d%e",
    "héllo wörld ✓ 𝄞 日本語",
    "line\nbreak\ttab",
    "a\x00b",
    "  spaced  ",
    "1",
    "null",
]
TIMESTAMPS = [
    dt.datetime(2026, 5, 1, 12, 34, 56, 789012),
    EPOCH,
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2026, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),  # = 12:00 UTC
    dt.datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=dt.UTC),
]
BOOLS = [True, False]


def test_values_round_trip_exactly_with_their_types(store: OnlineStore) -> None:
    count = max(len(INTS), len(FLOATS), len(STRINGS), len(TIMESTAMPS))
    records = []
    for i in range(count):
        values = {
            "age": INTS[i % len(INTS)],
            "score": FLOATS[i % len(FLOATS)],
            "active": BOOLS[i % 2],
            "name": STRINGS[i % len(STRINGS)],
            "signup_at": TIMESTAMPS[i % len(TIMESTAMPS)],
        }
        records.append(replace(record(f"t{i}", "user_profile", NOW_US - i), values=values))
    reference = Reference()
    assert write_both(store, reference, records, NOW) == (WriteResult(count, 0),) * 2
    keys = [(f"t{i}",) for i in range(count)]
    got = store.read("user", keys, [PROFILE], now=NOW)
    assert observed(got) == reference.read("user", keys, [PROFILE], NOW)
    for i, row in enumerate(got):  # and by hand, independently of canon()
        stored = row["user_profile"]
        assert stored is not None
        assert type(stored.values["age"]) is int and stored.values["age"] == INTS[i % len(INTS)]
        score = stored.values["score"]
        assert type(score) is float and repr(score) == repr(FLOATS[i % len(FLOATS)])
        assert stored.values["active"] is BOOLS[i % 2]
        assert stored.values["name"] == STRINGS[i % len(STRINGS)]
        signup = stored.values["signup_at"]
        assert isinstance(signup, dt.datetime) and signup.tzinfo is None
    by_hand = got[4 % count]["user_profile"]
    assert by_hand is not None and by_hand.values["signup_at"] == dt.datetime(2026, 5, 1, 12)


def test_a_newer_null_hides_the_older_value(store: OnlineStore) -> None:
    reference = Reference()
    old = record(
        "u1", "user_profile", NOW_US - 100, age=30, score=0.5, active=True, name="x", signup_at=NOW
    )
    new = record("u1", "user_profile", NOW_US - 50, age=31, score=None, active=None, name=None)
    late_old = record("u1", "user_profile", NOW_US - 75, age=1, score=9.9, name="stale")
    for batch, expected in [([old], (1, 0)), ([new], (1, 0)), ([late_old], (0, 1))]:
        assert write_both(store, reference, batch, NOW) == (WriteResult(*expected),) * 2
    stored = store.read("user", [("u1",)], [PROFILE], now=NOW)[0]["user_profile"]
    assert stored is not None
    assert stored.values == {
        "age": 31,
        "score": None,
        "active": None,
        "name": None,
        "signup_at": None,
    }
    assert observed([{"user_profile": stored}]) == reference.read("user", [("u1",)], [PROFILE], NOW)


def test_a_subset_of_features_and_an_unwritten_feature(store: OnlineStore) -> None:
    store.write([record("u1", "user_profile", NOW_US, age=5, name="n")], now=NOW)
    subset = ViewRead("user_profile", {"name": "string"})
    stored = store.read("user", [("u1",)], [subset], now=NOW)[0]["user_profile"]
    assert stored is not None and stored.values == {"name": "n"}
    unknown = ViewRead("user_profile", {"age": "int", "never_written": "float"})
    stored = store.read("user", [("u1",)], [unknown], now=NOW)[0]["user_profile"]
    assert stored is not None and stored.values == {"age": 5, "never_written": None}


# --- keys --------------------------------------------------------------------------------


def test_composite_keys_are_distinct_records(store: OnlineStore) -> None:
    keys = [("u1", "d1"), ("u1", "d2"), ("u2", "d1"), ("a:b", "c"), ("a", "b:c"), ("%3A", "x")]
    keys.append((":", "x"))
    records = [
        record(key, "user_device_stats", NOW_US - i, sessions=i, last_seen_at=at(NOW_S - i))
        for i, key in enumerate(keys)
    ]
    reference = Reference()
    assert write_both(store, reference, records, NOW) == (WriteResult(len(keys), 0),) * 2
    rows = read(store, "user_device", keys, NOW)
    assert rows == reference.read("user_device", keys, [DEVICE], NOW)
    sessions = [row["user_device_stats"][3]["sessions"] for row in rows]  # type: ignore[index]
    assert sessions == [("int", i) for i in range(len(keys))]
    # a user key of the same parts is another entity: nothing there
    assert read(store, "user", [("u1",)], NOW) == [{"user_profile": None, "user_activity": None}]


def test_unknown_keys_and_duplicate_keys(store: OnlineStore) -> None:
    reference = Reference()
    records = [
        record("u1", "user_activity", NOW_US, txn_count_7d=1),
        record("u2", "user_activity", NOW_US, txn_count_7d=2),
    ]
    write_both(store, reference, records, NOW)
    keys = [("u2",), ("nobody",), ("u1",), ("u2",), ("nobody",), ("u2",)]
    rows = read(store, "user", keys, NOW)
    assert rows == reference.read("user", keys, VIEWS["user"], NOW)
    assert rows[0] == rows[3] == rows[5] and rows[0]["user_activity"] is not None
    assert rows[1] == rows[4] == {"user_profile": None, "user_activity": None}
    assert store.read("user", [], VIEWS["user"], now=NOW) == []
    assert store.read("user", [("u1",), ("u2",)], [], now=NOW) == [{}, {}]


def test_many_views_of_one_entity_in_one_read(store: OnlineStore) -> None:
    reference = Reference()
    records = [
        record("u1", "user_profile", NOW_US - 7, age=20, active=False, signup_at=at(NOW_S - DAY)),
        record("u1", "user_activity", NOW_US - 3, txn_count_7d=0, txn_avg_7d=0.1),
        record("u2", "user_profile", NOW_US - 9, name="only profile"),
        record("u3", "user_activity", NOW_US - 1, txn_count_7d=12),
    ]
    assert write_both(store, reference, records, NOW) == (WriteResult(4, 0),) * 2
    keys = [("u1",), ("u2",), ("u3",), ("u4",)]
    rows = read(store, "user", keys, NOW)
    assert rows == reference.read("user", keys, VIEWS["user"], NOW)
    present = [{view: value is not None for view, value in row.items()} for row in rows]
    assert present == [
        {"user_profile": True, "user_activity": True},
        {"user_profile": True, "user_activity": False},
        {"user_profile": False, "user_activity": True},
        {"user_profile": False, "user_activity": False},
    ]
    # the views in the other order give the same records
    swapped = read(store, "user", keys, NOW, views=[ACTIVITY, PROFILE])
    assert swapped == rows


# --- loader bookkeeping ------------------------------------------------------------------


def test_watermarks_round_trip(store: OnlineStore) -> None:
    assert store.get_watermark("user_profile") is None
    store.set_watermark("user_profile", NOW_US)
    store.set_watermark("user_activity", 1)
    assert store.get_watermark("user_profile") == NOW_US
    store.set_watermark("user_profile", NOW_US + 2**40)
    assert store.get_watermark("user_profile") == NOW_US + 2**40
    assert store.get_watermark("user_activity") == 1
    assert store.get_watermark("user_device_stats") is None


def load_record(i: int, **changes: object) -> LoadRecord:
    started = NOW + dt.timedelta(hours=i)
    fields: dict[str, object] = {
        "load_id": f"load-{i}",
        "view": ["user_profile", "user_activity"][i % 2],
        "store": "store-description",
        "outcome": ["success", "failed", "rejected"][i % 3],
        "started_at": started.isoformat() + "Z",
        "finished_at": (started + dt.timedelta(seconds=90)).isoformat() + "Z",
        "watermark_before": None if i == 0 else NOW_US + i,
        "watermark_after": NOW_US + i + 1,
        "rows_read": 10 * i,
        "rows_written": 7 * i,
        "rows_skipped": 2 * i,
        "rows_rejected": i,
        "message": f'load {i}: ✓ "quoted" {{braces}}',
        "extra": {"seconds": 1.5 * i, "views": ["a", "b"], "nested": {"n": i}},
    }
    fields.update(changes)
    return LoadRecord(**fields)  # type: ignore[arg-type]


def test_the_load_log_round_trips_newest_first(store: OnlineStore) -> None:
    assert store.list_loads() == []
    loads = [load_record(i) for i in range(5)]
    for load in loads:  # recorded in time order
        store.record_load(load)
    assert store.list_loads() == loads[::-1]
    assert store.list_loads(limit=2) == [loads[4], loads[3]]
    assert store.list_loads(limit=1)[0].extra == {
        "seconds": 6.0,
        "views": ["a", "b"],
        "nested": {"n": 4},
    }


def check_mapping_shape(rows: Sequence[Mapping[str, object]], views: Sequence[ViewRead]) -> None:
    for row in rows:
        assert list(row) == [view.view for view in views]


def test_reads_answer_every_requested_view(store: OnlineStore) -> None:
    store.write([record(("u1", "d1"), "user_device_stats", NOW_US, sessions=3)], now=NOW)
    rows = store.read("user_device", [("u1", "d1"), ("zz", "d1")], [DEVICE], now=NOW)
    check_mapping_shape(rows, [DEVICE])
    stored = rows[0]["user_device_stats"]
    assert stored == StoredRecord(
        ts=NOW_US, ver=NOW_US, exp=NOW_S + 30 * DAY, values={"sessions": 3, "last_seen_at": None}
    )
    assert rows[1]["user_device_stats"] is None


# --- the read deadline -----------------------------------------------------------------------


def test_every_store_declares_the_interface_s_read() -> None:
    """Each implementation's ``read`` takes exactly the interface's arguments (the sidecar
    passes ``deadline_s`` to every store without looking)."""
    import inspect

    from featurestore.online.dynamodb_store import DynamoDBStore
    from featurestore.online.redis_store import RedisStore
    from featurestore.online.sqlite_store import SQLiteStore

    declared = inspect.signature(OnlineStore.read).parameters
    assert "deadline_s" in declared
    for implementation in (RedisStore, DynamoDBStore, SQLiteStore):
        parameters = inspect.signature(implementation.read).parameters
        assert list(parameters) == list(declared), implementation
        assert all(
            parameters[name].kind == declared[name].kind
            and parameters[name].default == declared[name].default
            for name in declared
        ), implementation


def test_a_read_within_its_deadline_reads_the_same(store: OnlineStore) -> None:
    reference = Reference()
    records = [
        record("u1", "user_activity", NOW_US - 5, txn_count_7d=3, txn_avg_7d=1.5),
        record("u2", "user_profile", NOW_US - 9, age=41, name="b"),
    ]
    write_both(store, reference, records, NOW)
    keys = [("u1",), ("u2",), ("u3",)]
    expected = reference.read("user", keys, VIEWS["user"], NOW)
    assert read(store, "user", keys, NOW) == expected
    got = store.read("user", keys, VIEWS["user"], now=NOW, deadline_s=5.0)
    assert observed(got) == expected


# --- timelines (layout version 2) ------------------------------------------------------------

TILE_SET = encode_tile_set({60: {NOW_S - 120: (3,), NOW_S - 60: (1,)}, 3_600: {NOW_S: ((2, 5),)}})
STEPS = encode_steps([(NOW_US - 2 * MICROS, ["4", None]), (NOW_US - MICROS, ["5", "0.5"])])
TIMELINES = [
    TILE_SET,
    STEPS,
    b"",  # empty, not absent
    "ünïcødé ✓ 𝄞".encode(),
    b'{"not": "a tile set"}',  # the store never looks inside
    b"x" * 150_000,  # large (within every store's limits)
]


def timeline_of(store: OnlineStore, key: str, view: ViewRead, now: dt.datetime) -> object:
    """The stored timeline of one record, "no record" if there is none."""
    stored = store.read("user", [(key,)], [view], now=now)[0][view.view]
    return "no record" if stored is None else stored.timeline


def test_timelines_round_trip_as_they_are(store: OnlineStore) -> None:
    reference = Reference()
    records = [
        record(f"t{i}", "user_activity", NOW_US - i, timeline=timeline, txn_count_7d=i)
        for i, timeline in enumerate(TIMELINES)
    ]
    records.append(record("plain", "user_activity", NOW_US, txn_count_7d=1))  # no timeline
    assert write_both(store, reference, records, NOW) == (WriteResult(len(records), 0),) * 2
    keys = [(f"t{i}",) for i in range(len(TIMELINES))] + [("plain",)]
    rows = store.read("user", keys, [ACTIVITY], now=NOW)
    assert observed(rows) == reference.read("user", keys, [ACTIVITY], NOW)
    got = [row["user_activity"].timeline for row in rows]  # type: ignore[union-attr]
    assert got == [*TIMELINES, None]  # by hand too
    assert all(type(timeline) is bytes for timeline in got[:-1])


def test_newer_wins_keeps_or_replaces_the_timeline(store: OnlineStore) -> None:
    ts = NOW_US - 3_600 * MICROS
    reference = Reference()
    steps: list[tuple[Record, WriteResult, object]] = [
        (record("u1", "user_activity", ts, timeline=b"first"), WriteResult(1, 0), b"first"),
        # older, or an equal pair, with another timeline (or none): the stored one stays
        (
            record("u1", "user_activity", ts - 1, ts + 9, timeline=b"old"),
            WriteResult(0, 1),
            b"first",
        ),
        (record("u1", "user_activity", ts, timeline=b"equal"), WriteResult(0, 1), b"first"),
        (record("u1", "user_activity", ts, txn_count_7d=9), WriteResult(0, 1), b"first"),
        # newer without a timeline: removes the stored one
        (record("u1", "user_activity", ts, ts + 1, txn_count_7d=2), WriteResult(1, 0), None),
        # newer with one: sets it again
        (record("u1", "user_activity", ts + 1, timeline=b"again"), WriteResult(1, 0), b"again"),
        (record("u1", "user_activity", ts + 2, timeline=TILE_SET), WriteResult(1, 0), TILE_SET),
    ]
    for step, (rec, expected, timeline) in enumerate(steps):
        assert write_both(store, reference, [rec], NOW) == (expected, expected), step
        assert timeline_of(store, "u1", ACTIVITY, NOW) == timeline, step
        assert read(store, "user", [("u1",)], NOW) == reference.read(
            "user", [("u1",)], VIEWS["user"], NOW
        ), step


def test_replace_and_remove_clear_the_timeline_of_their_view_only(store: OnlineStore) -> None:
    ts = NOW_US - 3_600 * MICROS
    reference = Reference()
    first = [
        record("u1", "user_activity", ts, timeline=b"activity", txn_count_7d=1),
        record("u1", "user_profile", ts, timeline=b"profile", age=3),
        record("u2", "user_activity", ts, timeline=b"u2", txn_count_7d=2),
    ]
    assert write_both(store, reference, first, NOW) == (WriteResult(3, 0),) * 2
    # replace mode: an older record without a timeline replaces the record and clears it;
    # an expired one removes the record and its timeline
    repair = [
        record("u1", "user_activity", ts - 10, txn_count_7d=7),
        record("u2", "user_activity", ts - 10, exp=NOW_S - 1, timeline=b"dead"),
    ]
    assert write_both(store, reference, repair, NOW, replace=True) == (WriteResult(1, 0),) * 2
    assert timeline_of(store, "u1", ACTIVITY, NOW) is None
    assert timeline_of(store, "u2", ACTIVITY, NOW) == "no record"
    assert timeline_of(store, "u1", PROFILE, NOW) == b"profile"  # the other view's stays
    keys = [("u1",), ("u2",)]
    assert read(store, "user", keys, NOW) == reference.read("user", keys, VIEWS["user"], NOW)
    # a record written again after its removal has only its own timeline
    again = [record("u2", "user_activity", ts - 20, txn_count_7d=3)]
    assert write_both(store, reference, again, NOW) == (WriteResult(1, 0),) * 2
    assert timeline_of(store, "u2", ACTIVITY, NOW) is None
    # replace mode with a timeline sets it whatever the stored pair
    older = [record("u2", "user_activity", ts - 30, timeline=b"repaired")]
    assert write_both(store, reference, older, NOW, replace=True) == (WriteResult(1, 0),) * 2
    assert timeline_of(store, "u2", ACTIVITY, NOW) == b"repaired"
    assert read(store, "user", keys, NOW) == reference.read("user", keys, VIEWS["user"], NOW)


def test_a_timeline_only_record_of_a_tiled_view(store: OnlineStore) -> None:
    """A tiled view's record holds no feature values (``{}`` or all None), only ``ts``,
    ``ver``, ``exp`` and its tile set; it follows the same rules."""
    reference = Reference()
    ts = NOW_US - 60 * MICROS
    empty = Record("user", ("u1",), TILED.view, ts, NOW_US, NOW_S + DAY, {}, TILE_SET)
    nulls = replace(empty, key=("u2",), values=dict.fromkeys(TILED.features))
    other = record("u1", "user_activity", ts, txn_count_7d=4, timeline=b"activity")
    assert write_both(store, reference, [empty, nulls, other], NOW) == (WriteResult(3, 0),) * 2
    keys = [("u1",), ("u2",), ("u3",)]
    views = [TILED, ACTIVITY]
    assert read(store, "user", keys, NOW, views) == reference.read("user", keys, views, NOW)
    for view in (TILED, ViewRead(TILED.view, {})):  # also when no feature is asked for
        for key in ("u1", "u2"):
            stored = store.read("user", [(key,)], [view], now=NOW)[0][TILED.view]
            assert stored == StoredRecord(
                ts=ts,
                ver=NOW_US,
                exp=NOW_S + DAY,
                values=dict.fromkeys(view.features),
                timeline=TILE_SET,
            ), (view, key)
    # the next load: a later cutoff with new tiles replaces it; a re-run is a no-op
    later = replace(empty, ver=NOW_US + MICROS, timeline=STEPS)
    assert write_both(store, reference, [later], NOW) == (WriteResult(1, 0),) * 2
    assert write_both(store, reference, [later], NOW) == (WriteResult(0, 1),) * 2
    assert timeline_of(store, "u1", TILED, NOW) == STEPS
    # it expires like any record, and a removal in replace mode takes it away
    assert timeline_of(store, "u1", TILED, at(NOW_S + DAY)) == "no record"
    gone = replace(nulls, exp=NOW_S)
    assert write_both(store, reference, [gone], NOW, replace=True) == (WriteResult(0, 0),) * 2
    assert read(store, "user", keys, NOW, views) == reference.read("user", keys, views, NOW)
    assert timeline_of(store, "u1", ACTIVITY, NOW) == b"activity"


@pytest.mark.parametrize("timeline", ["a str", bytearray(b"x"), 7])
def test_a_timeline_that_is_not_bytes_is_refused_before_anything_is_written(
    store: OnlineStore, timeline: object
) -> None:
    good = record("u1", "user_activity", NOW_US, txn_count_7d=1)
    bad = replace(record(("u:2",), "user_activity", NOW_US), timeline=timeline)
    with pytest.raises(RecordRefused, match=r"user \('u:2',\) view 'user_activity'.*bytes"):
        store.write([good, bad], now=NOW)
    assert read(store, "user", [("u1",)], NOW) == [{"user_profile": None, "user_activity": None}]
    expired = replace(bad, exp=NOW_S)  # refused too, whether it would be skipped or removed
    for replace_mode in (False, True):
        with pytest.raises(RecordRefused, match=r"user \('u:2',\) view 'user_activity'"):
            store.write([good, expired], now=NOW, replace=replace_mode)
    assert read(store, "user", [("u1",)], NOW) == [{"user_profile": None, "user_activity": None}]


# --- reads of several entities at once (the multi-entity retrieve) -------------------------


def test_a_read_of_several_groups_answers_each_as_its_own_read(store: OnlineStore) -> None:
    """``read_groups`` (and, on Redis, ``read_groups_encoded_async``) answers every group as
    the reference answers it alone: several entities, a repeated key, a group of some views
    only, an empty group, a group without views, unknown keys."""
    import asyncio

    rng = random.Random(21)
    reference = Reference()
    write_both(store, reference, random_records(rng, 60), NOW)
    groups = [
        ReadGroup("user", [*USER_KEYS, ("u1",), ("nobody",)], VIEWS["user"]),
        ReadGroup("user_device", DEVICE_KEYS, VIEWS["user_device"]),
        ReadGroup("user", [], VIEWS["user"]),
        ReadGroup("user", USER_KEYS[:2], [ACTIVITY]),
        ReadGroup("user_device", DEVICE_KEYS[:1], []),
    ]
    want = [reference.read(g.entity, g.keys, g.views, NOW) for g in groups]
    assert sum(len(rows) for rows in want) > 6 and any(
        found is not None for rows in want for row in rows for found in row.values()
    )
    got = store.read_groups(groups, now=NOW)
    assert [observed(rows) for rows in got] == want  # type: ignore[arg-type]
    if store.async_reads:  # the encoded rows: the same records (ts, ver, exp, timeline)
        encoded = asyncio.run(store.read_groups_encoded_async(groups, now=NOW))

        def times(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
            return [
                {
                    view: None if r is None else (r.ts, r.ver, r.exp, r.timeline)  # type: ignore[attr-defined]
                    for view, r in row.items()
                }
                for row in rows
            ]

        assert [times(rows) for rows in encoded] == [times(rows) for rows in got]
