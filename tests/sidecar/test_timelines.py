"""Timeline entries (sidecar/timelines.py) as pure logic: a tiled record's answers at many
instants against the brute-force rule over the events (tests/sidecar/windowed.py), the
scheduled steps picked at their edges, and every malformed timeline refused with a reason.
The same paths over HTTP and real stores: test_windowed_serving.py."""

from __future__ import annotations

import random
import struct
import zlib
from decimal import Decimal
from typing import Any

import orjson
import pytest

from featurestore.online.layout import (
    TILE_SET_MAGIC,
    decode_tile_set,
    encode_steps,
    encode_tile_set,
)
from featurestore.online.store import NO_BATCH, NO_EXPIRY, InvalidRecord
from featurestore.online.stream_tiles import ingestion_bucket, partial_field
from featurestore.registry import Registry
from sidecar.fragments import FULL
from sidecar.plans import plan_entities
from sidecar.timelines import ScheduledEntry, TiledEntry, TimelinePlan
from tests.sidecar.windowed import (
    DAY,
    HOUR,
    MINUTE,
    TILED,
    TILED_FEATURES,
    US,
    edge_events,
    expected,
    probe_times,
    tiled_record,
    tiled_registry,
)

CUTOFF = 1_777_593_600 * US  # 2026-05-01T00:00:00Z


@pytest.fixture(scope="module")
def plan(parsed_registry: Registry) -> TimelinePlan:
    return plan_entities(tiled_registry(parsed_registry))["user"].timelines[TILED]


def answers(record: tuple[Any, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(b"{" + record[FULL] + b"}")
    return parsed


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "json"])
@pytest.mark.parametrize("seed", range(6))
def test_a_tiled_entry_answers_the_rule_at_every_edge(
    plan: TimelinePlan, seed: int, packed: bool
) -> None:
    """At tile starts, one microsecond before, the instants events leave each window, and
    random instants up to 91 days after the cutoff, visited in random order and then in
    ascending order (the entry's memo must hold only where no tile enters or leaves), every
    feature equals the rule; from the packed tile set and from its JSON form (stores
    written before the packed form) alike."""
    rng = random.Random(seed)
    events = edge_events("u1", CUTOFF, rng)
    record = tiled_record("u1", events, CUTOFF)
    assert record.timeline is not None and record.timeline[0] == TILE_SET_MAGIC
    timeline = record.timeline
    if not packed:
        timeline = encode_tile_set(decode_tile_set(timeline), packed=False)
        assert timeline[:1] == b"{"
    entry = plan.tiled_entry(record.exp, timeline)
    assert isinstance(entry, TiledEntry), entry
    times = probe_times(events, CUTOFF, rng, 200)
    shuffled = rng.sample(times, len(times))
    decayed = False
    for now_us in shuffled + times:  # random order, then ascending (edge - 1 us, edge)
        stamp = b"stamp"
        got = answers(entry.at(now_us, stamp))
        for feature in TILED_FEATURES:
            want = expected(feature, events, now_us)
            want["timestamp"] = "stamp"
            assert got[feature] == want, (seed, now_us, feature)
            assert type(got[feature]["value"]) is type(want["value"])
        decayed |= (
            got["w_user_7d_count"]["value"] < expected("w_user_7d_count", events, CUTOFF)["value"]
        )
    assert decayed  # the probes did see values leave their windows


def test_avg_is_exact_over_decimal_sums(plan: TimelinePlan) -> None:
    """Amounts 0.10 + 0.20 in one tile and 0.30 in another: in floats they sum to
    0.6000000000000001; the average is the exact decimal sum over the count."""
    assert 0.1 + 0.2 + 0.3 != 0.6
    day = CUTOFF // US // DAY * DAY
    tiles = {DAY: {day - DAY: ((2, Decimal("0.30")),), day: ((1, Decimal("0.30")),)}}
    entry = plan.tiled_entry(CUTOFF // US + 91 * DAY, encode_tile_set(tiles))
    assert isinstance(entry, TiledEntry)
    got = answers(entry.at(CUTOFF, b"t"))
    assert got["w_user_90d_avg_amount"]["value"] == float(Decimal("0.60")) / 3
    assert got["w_user_90d_avg_amount"]["value"] != (0.1 + 0.2 + 0.3) / 3
    # hops without tiles: empty windows (a sum of a decimal column is a float 0.0)
    assert got["w_user_10m_count"] == {"value": 0, "timestamp": "t", "status": "PRESENT"}
    assert got["w_user_7d_amount"] == {"value": 0.0, "timestamp": "t", "status": "PRESENT"}
    assert type(got["w_user_7d_amount"]["value"]) is float


def _hop(starts: list[int], kinds: list[int], scales: list[int], prefixes: object) -> dict:
    """One hop of a stored tile set, spelled by hand (layout "Timelines": t, k, x, p)."""
    return {"t": starts, "k": kinds, "x": scales, "p": prefixes}


T0 = 1_777_593_600  # a tile start of every hop (2026-05-01T00:00:00Z)
GOOD_60 = _hop([T0], [1], [0], [[0, 1]])


def _json(value: object) -> bytes:
    return orjson.dumps(value)


@pytest.mark.parametrize(
    ("timeline", "reason"),
    [
        (None, "without a tile set"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"60": {"1777593600": [1]}}', "not an object of t, k, x, p"),  # the old format
        (b'{"60": [1]}', "not an object of t, k, x, p"),
        (_json({"60": {**GOOD_60, "extra": 1}}), "not an object of t, k, x, p"),
        (b'{"x": {}}', "'x' is not a positive integer"),
        (_json({"0": GOOD_60}), "'0' is not a positive integer"),
        # hop 3600 holds two features (count, sum): one column is a partial short
        (_json({"60": GOOD_60, "3600": _hop([T0], [1], [0], [[0, 1]])}), "partial kinds [1]"),
        # hop 86400 holds an avg: a (count, sum) pair, not one column
        (_json({"86400": _hop([T0], [1], [0], [[0, 1]])}), "partial kinds [1]"),
        (_json({"86400": _hop([T0], [2], [0, 2], [[0, 1]])}), "one prefix-sum list per column"),
        (_json({"60": _hop([T0 + 30], [1], [0], [[0, 1]])}), "multiples of the hop"),
        (_json({"60": _hop([T0, T0], [1], [0], [[0, 1, 2]])}), "must ascend"),
        (_json({"60": _hop([T0 + 60, T0], [1], [0], [[0, 1, 2]])}), "must ascend"),
        (_json({"60": _hop(T0, [1], [0], [[0, 1]])}), "lists of integers"),
        (_json({"60": _hop([T0], [1.5], [0], [[0, 1]])}), "lists of integers"),
        (_json({"60": _hop([T0], [3], [0], [[0, 1]])}), "kinds must be 1 or 2"),
        (_json({"60": _hop([T0], [1], [-1], [[0, 1]])}), "scales >= 0"),
        (_json({"60": _hop([T0], [1], [0, 0], [[0, 1]])}), "one prefix-sum list per column"),
        (_json({"60": _hop([T0], [1], [0], [[0, 1.5]])}), "one prefix-sum list per column"),
        (_json({"60": _hop([T0], [1], [0], [[0, True]])}), "one prefix-sum list per column"),
        (_json({"60": _hop([T0], [1], [0], [[0, "1"]])}), "one prefix-sum list per column"),
        (_json({"60": _hop([T0], [1], [0], [[1, 2]])}), "2 integers from 0"),  # not from 0
        (_json({"60": _hop([T0], [1], [0], [[0]])}), "2 integers from 0"),  # too short
        (_json({"60": _hop([T0], [1], [0], [0, 1])}), "one prefix-sum list per column"),
        (b'{"3600": {"t": [1777593600], "k": [1, 1], "x": [0], "p": [[0, 1], [0, NaN]]}}', "JSON"),
    ],
)
def test_a_malformed_tile_set_is_an_invalid_record(
    plan: TimelinePlan, timeline: bytes | None, reason: str
) -> None:
    entry = plan.tiled_entry(CUTOFF // US + DAY, timeline)
    assert isinstance(entry, InvalidRecord), entry
    assert reason in entry.reason


def test_a_hop_no_feature_uses_is_left_alone(plan: TimelinePlan) -> None:
    """A hop of no feature (a feature removed from the registry since the load), with
    partials of kinds no hop of the view has, is not merged; a hop with no tiles is an
    empty window whatever its kinds."""
    tiles = {"7": _hop([7, 14], [2], [0, 3], [[0, 1, 5], [0, 10, 20]]), "60": _hop([], [], [], [])}
    entry = plan.tiled_entry(CUTOFF // US + DAY, _json(tiles))
    assert isinstance(entry, TiledEntry), entry
    got = answers(entry.at(CUTOFF, b"t"))
    assert got["w_user_10m_count"] == {"value": 0, "timestamp": "t", "status": "PRESENT"}


def test_tiles_out_of_order_and_huge_decimal_sums(plan: TimelinePlan) -> None:
    """Tiles given in any order are stored ascending; a decimal total beyond a double's
    precision (28 digits) is exact in the prefix sums and rounded once, like
    ``float(Decimal)``."""
    hour = CUTOFF // US // 3600 * 3600
    big = Decimal("12345678901234567890123456.78")
    tiles = {3600: {hour: (1, big), hour - 3600: (2, Decimal("0.01"))}}  # newest first
    stored = encode_tile_set(tiles)  # type: ignore[arg-type]
    assert orjson.loads(stored)["3600"]["t"] == [hour - 3600, hour]
    entry = plan.tiled_entry(CUTOFF // US + 91 * DAY, stored)
    assert isinstance(entry, TiledEntry), entry
    got = answers(entry.at(CUTOFF, b"t"))
    assert got["w_user_7d_count"]["value"] == 3
    assert got["w_user_7d_amount"]["value"] == float(big + Decimal("0.01"))
    later = answers(entry.at(CUTOFF + (7 * DAY) * US, b"t"))  # the older tile has left
    assert later["w_user_7d_count"]["value"] == 1
    assert later["w_user_7d_amount"]["value"] == float(big)


def _packed(words: list[int], hops: int) -> bytes:
    """A packed tile set spelled by hand (layout "Timelines"), with a valid CRC-32."""
    body = struct.pack(f"<{len(words)}q", *words)
    return struct.pack("<BBHI", TILE_SET_MAGIC, 1, hops, zlib.crc32(body)) + body


#: hop 60 (one count column) with tile numbers 100 and 102 of the plan's view
_GOOD_60 = [6, 60, 2, 1, 1, 1, 0, 100, 102, 0, 1, 4]


@pytest.mark.parametrize(
    ("timeline", "reason"),
    [
        (_packed(_GOOD_60, 1)[:-8], "words and 1 hops stored"),
        (_packed(_GOOD_60, 1)[:-1], "not whole 8-byte words"),
        (_packed(_GOOD_60, 1)[:-1] + b"\x01", "CRC-32 mismatch"),
        (_packed([*_GOOD_60[:7], 102, 100, *_GOOD_60[9:]], 1), "tile numbers must ascend"),
        (_packed([*_GOOD_60[:9], 1, 1, 4], 1), "not starting at 0"),
        (_packed([*_GOOD_60[:5], 2, *_GOOD_60[6:]], 1), "add up to the columns"),
        # hop 86400 holds an avg: a (count, sum) pair, not one column
        (_packed([6, 86400, 2, 1, 1, 1, 0, 100, 102, 0, 1, 4], 1), "partial kinds [1]"),
        (b"\xf5\x01", "not whole 8-byte words"),
    ],
)
def test_a_corrupt_packed_tile_set_is_an_invalid_record(
    plan: TimelinePlan, timeline: bytes, reason: str
) -> None:
    assert plan.tiled_entry(CUTOFF // US + DAY, _packed(_GOOD_60, 1)) is not None
    entry = plan.tiled_entry(CUTOFF // US + DAY, timeline)
    assert isinstance(entry, InvalidRecord), entry
    assert reason in entry.reason


def test_records_of_one_shape_share_their_places(plan: TimelinePlan) -> None:
    """Where each feature's tiles are depends on the tile set's header only: two records of
    one shape share it (computed once), and each answers from its own tiles."""
    minute = CUTOFF // US // 60 * 60
    first = plan.tiled_entry(CUTOFF // US + DAY, encode_tile_set({60: {minute: (2,)}}))
    second = plan.tiled_entry(CUTOFF // US + DAY, encode_tile_set({60: {minute - 60: (5,)}}))
    assert isinstance(first, TiledEntry) and isinstance(second, TiledEntry)
    assert first._places is second._places
    assert answers(first.at(CUTOFF, b"t"))["w_user_10m_count"]["value"] == 2
    assert answers(second.at(CUTOFF, b"t"))["w_user_10m_count"]["value"] == 5


@pytest.fixture(scope="module")
def handwritten(parsed_registry: Registry) -> TimelinePlan:
    """A hand-written view's plan: user_profile_features (segment varchar, risk score
    double, vip boolean, last login timestamp; the user view is declared, tiled)."""
    return plan_entities(parsed_registry)["user"].timelines["user_profile_features"]


def test_scheduled_steps_switch_at_their_ts(handwritten: TimelinePlan) -> None:
    """Steps at t1 < t2 and the record at t3: at t1 - 1 us the first step (earlier than
    all), t1 .. t2 - 1 us the first, t2 .. t3 - 1 us the second, t3 on the record; each
    with its own timestamp and expiry (ts // 10**6 + TTL)."""
    t1, t2, t3 = CUTOFF + 7, CUTOFF + 3600 * US, CUTOFF + 20 * 3600 * US
    renderer = handwritten.renderer
    record = renderer.from_values(t3, t3 // US + DAY, ["gold", 0.5, True, None])
    assert not isinstance(record, InvalidRecord)
    steps = encode_steps([(t1, ["bronze", "1.25", "0", None]), (t2, ["silver", None, "1", None])])
    entry = handwritten.scheduled_entry(record, t3, steps)
    assert isinstance(entry, ScheduledEntry), entry
    ttl = handwritten.ttl_seconds
    cases = [(t1 - 1, t1, "bronze"), (t1, t1, "bronze"), (t2 - 1, t1, "bronze"),
             (t2, t2, "silver"), (t3 - 1, t2, "silver"), (t3, t3, "gold"),
             (t3 + 10 * DAY * US, t3, "gold")]  # fmt: skip
    for now_us, ts, segment in cases:
        got = entry.at(now_us, b"unused")
        assert got[0] == ts // US + ttl
        parsed = answers(got)["user_segment"]
        assert parsed["value"] == segment
        assert parsed["timestamp"].startswith("2026-05-01T")


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        (b"{}", "not a JSON list"),
        (b'[[1, ["5"]]]', "1 values, the view has 4"),
        (b'[[1, ["a", "x", null, null]]]', "user_risk_score"),
        (b'[[5, ["a", null, null, null]], [4, ["a", null, null, null]]]', "out of order"),
        (b'[[99999999999999999, ["a", null, null, null]]]', "out of order"),
        (b'[[1.5, ["a", null, null, null]]]', "not a step"),
    ],
)
def test_malformed_steps_are_an_invalid_record(
    handwritten: TimelinePlan, steps: bytes, reason: str
) -> None:
    record = handwritten.renderer.from_values(CUTOFF, CUTOFF // US + DAY, ["a", None, None, None])
    assert not isinstance(record, InvalidRecord)
    entry = handwritten.scheduled_entry(record, CUTOFF, steps)
    assert isinstance(entry, InvalidRecord), entry
    assert reason in entry.reason


# -- stream partials added to the batch tiles (featurestore/online/stream_tiles.py) ------------

#: per feature of the tiled view, its (hop, first column among the hop's, column count)
_STREAM_COLUMNS = {
    "w_user_10m_count": (MINUTE, 0, 1),
    "w_user_7d_count": (HOUR, 0, 1),
    "w_user_7d_amount": (HOUR, 1, 1),
    "w_user_90d_avg_amount": (DAY, 0, 2),
}


def stream_pairs(events: list[Any], scale: int = 2) -> list[tuple[bytes, bytes]]:
    """The stored stream partials of ``events`` (all of them, by ingestion bucket), by
    direct arithmetic on each event (stream_tiles' field layout)."""
    units: dict[str, int] = {}
    for event in events:
        t_e = min(event.event_us, event.ingested_us)
        bucket = ingestion_bucket(event.ingested_us)
        for name, (hop, column, width) in _STREAM_COLUMNS.items():
            function, source = TILED_FEATURES[name][:2]
            start = t_e // US // hop * hop
            value = event.amount if source else 1
            if value is None:
                continue
            adds = [(column, 0, 1)] if function == "count" else []
            if function == "sum":
                adds = [(column, scale, int(value * 10**scale))]
            if function == "avg":
                adds = [(column, 0, 1), (column + 1, scale, int(value * 10**scale))]
            assert width == len(adds)
            for col, sc, n in adds:
                field = partial_field(bucket, hop, start, col, sc)
                units[field] = units.get(field, 0) + n
    pairs = [(f.encode(), str(n).encode()) for f, n in units.items()]
    return [*pairs, (b"o:kafka/3", b"00000000000000000042")]


@pytest.mark.parametrize("seed", range(4))
def test_stream_partials_after_the_cutoff_add_to_the_batch_tiles(
    plan: TimelinePlan, seed: int
) -> None:
    """Batch tiles at an hour cutoff C, stream partials of every event (those of buckets up
    to C are the batch's and must not count twice): at every probe after the last ingestion
    each feature equals the rule over all events."""
    rng = random.Random(seed)
    cutoff = CUTOFF - 5 * HOUR * US  # a whole hour
    late_end = CUTOFF + 3 * HOUR * US
    events = edge_events("u1", cutoff, rng)
    # more events ingested after the cutoff (some of them late, by hours or days)
    for _ in range(30):
        ingested = rng.randrange(cutoff + 1, late_end)
        event = ingested - rng.choice([0, 0, 5 * US, 2 * HOUR * US, 3 * DAY * US])
        amount = None if rng.random() < 0.1 else Decimal(rng.randrange(1, 50_000)) / 100
        events.append(type(events[0])("u1", event, ingested, amount))
    record = tiled_record("u1", events, cutoff)
    entry = plan.tiled_entry(record.exp, record.timeline, record.ver, stream_pairs(events))
    assert isinstance(entry, TiledEntry), entry
    last = max(e.ingested_us for e in events)
    for now_us in probe_times(events, last, rng, 150):
        got = answers(entry.at(now_us, b"s"))
        for feature in TILED_FEATURES:
            want = expected(feature, events, now_us)
            want["timestamp"] = "s"
            assert got[feature] == want, (seed, now_us, feature)
    # without the stream, the entry misses the events after the cutoff
    batch_only = plan.tiled_entry(record.exp, record.timeline)
    assert isinstance(batch_only, TiledEntry)
    assert (
        answers(batch_only.at(last, b"s"))["w_user_7d_count"]
        != answers(entry.at(last, b"s"))["w_user_7d_count"]
    )


def test_a_stream_only_entity_lives_as_long_as_its_partials(plan: TimelinePlan) -> None:
    events = [
        type(edge_events("u", CUTOFF, random.Random(0), 1)[0])(
            "u2", CUTOFF - 30 * US, CUTOFF - 20 * US, Decimal("12.50")
        )
    ]
    entry = plan.tiled_entry(NO_EXPIRY, None, NO_BATCH, stream_pairs(events, scale=3))
    assert isinstance(entry, TiledEntry)
    got = answers(entry.at(CUTOFF, b"s"))
    assert got["w_user_10m_count"]["value"] == 1
    assert got["w_user_90d_avg_amount"]["value"] == 12.5
    assert got["w_user_7d_amount"]["value"] == 12.5
    t_e = CUTOFF - 30 * US
    assert entry.exp == (t_e // US // DAY * DAY) + DAY + 90 * DAY  # the 1-day tile's leave


def test_stream_partials_at_another_scale_add_exactly(plan: TimelinePlan) -> None:
    """Batch sums at scale 2 (0.10 + 0.20), a stream sum at scale 3 (0.305): exact."""
    day = CUTOFF // US // DAY * DAY
    hour = CUTOFF // US // HOUR * HOUR
    tiles = {
        HOUR: {hour - HOUR: (1, Decimal("0.30"))},
        DAY: {day - DAY: ((2, Decimal("0.30")),)},
    }
    cutoff = hour * US
    stream = [
        (partial_field(hour + HOUR, DAY, day, 0, 0).encode(), b"1"),
        (partial_field(hour + HOUR, DAY, day, 1, 3).encode(), b"305"),
        (partial_field(hour + HOUR, HOUR, hour, 1, 3).encode(), b"305"),
    ]
    entry = plan.tiled_entry(day + 91 * DAY, encode_tile_set(tiles), cutoff, stream)
    assert isinstance(entry, TiledEntry)
    got = answers(entry.at(CUTOFF + 1, b"t"))
    assert got["w_user_90d_avg_amount"]["value"] == float(Decimal("0.605")) / 3
    assert got["w_user_7d_amount"]["value"] == float(Decimal("0.605"))


@pytest.mark.parametrize(
    "pairs", [[(b"3600:60:0", b"1")], [(b"3600:60:0:0:0", b"x")], [(b"7:60:0:0:0", b"1")]]
)
def test_malformed_stream_partials_are_an_invalid_record(
    plan: TimelinePlan, pairs: list[tuple[bytes, bytes]]
) -> None:
    entry = plan.tiled_entry(NO_EXPIRY, None, NO_BATCH, pairs)
    assert isinstance(entry, InvalidRecord) and entry.reason.startswith("stream partials")
