"""One record per entity from ordered Arrow rows (loader/records.py), checked against an
independent computation: hand-written views (the last row + the earlier rows as steps) and
tiled views (the tile set, merged at many times, equals a brute-force count of the events)."""

from __future__ import annotations

import random
from decimal import Decimal

import pyarrow as pa
import pytest

from featurestore.online.layout import Record, decode_steps, decode_tile_set
from featurestore.windows import counts_at, merge, tile_expires_at, window_start
from loader.records import RecordGrouper
from tests.loader.crafted_views import (
    DECLARED,
    US,
    Event,
    Row,
    at,
    brute_tiles,
    scheduled_view,
    source_of,
    tiled_view,
)

C = 1_777_593_600 * US  # 2026-05-01 00:00 UTC
H = 3600 * US


def random_rows(rng: random.Random, users: int) -> list[Row]:
    rows = []
    for u in range(users):
        user = f"usr_{u:03d}"
        current = C - rng.randrange(1, 40 * 86400) * US
        rows.append(Row(user, current, current, rng.randrange(50), rng.choice([None, 1.5])))
        for _ in range(rng.randrange(4)):  # scheduled rows, some on the same second
            ts = C + rng.randrange(1, 27) * H // 27 * 26
            if any(r.user_id == user and r.feature_at == ts for r in rows):
                continue
            rows.append(Row(user, ts, ts, rng.choice([None, rng.randrange(9)]), rng.random()))
    rows.sort(key=lambda r: (r.user_id, r.feature_at))
    return rows


def batches_of(view_rows: list[Row], name: str, sizes: list[int]) -> list[pa.RecordBatch]:
    stamp = pa.timestamp("us")
    table = pa.table(
        {
            "user_id": pa.array([r.user_id for r in view_rows], pa.string()),
            f"{name}__feature_at": pa.array([at(r.feature_at) for r in view_rows], stamp),
            f"{name}__as_of_at": pa.array([at(r.as_of_at) for r in view_rows], stamp),
            f"{name}__changed_at": pa.array([at(C)] * len(view_rows), stamp),
            "as_of_at": pa.array([at(C)] * len(view_rows), stamp),
            "n_events": pa.array([r.n_events for r in view_rows], pa.int64()),
            "mean_amount": pa.array([r.mean_amount for r in view_rows], pa.float64()),
        }
    )
    out, start = [], 0
    for size in sizes:
        out.extend(table.slice(start, size).to_batches())
        start += size
    assert start >= table.num_rows
    return out


def cut(rng: random.Random, total: int) -> list[int]:
    """Random batch sizes (1 included) covering ``total`` rows."""
    sizes = []
    while sum(sizes) < total:
        sizes.append(rng.choice([1, 1, 2, 3, 5, 8]))
    return sizes


def group(grouper: RecordGrouper, batches: list[pa.RecordBatch]) -> list[Record]:
    records = []
    for batch in batches:
        records += grouper.feed(batch).records
    return records + grouper.finish().records


def text(value: object) -> str | None:
    """The layout's text of a value, written out here: ints as digits, floats as repr."""
    return None if value is None else repr(value)


@pytest.mark.parametrize("seed", range(6))
def test_hand_written_rows_become_one_record_per_entity_across_batches(seed: int) -> None:
    rng = random.Random(seed)
    view = scheduled_view()
    rows = random_rows(rng, 25)
    grouper = RecordGrouper(source_of(view), C // US)
    records = group(grouper, batches_of(rows, view.name, cut(rng, len(rows))))
    by_user: dict[str, list[Row]] = {}
    for row in rows:
        by_user.setdefault(row.user_id, []).append(row)
    assert [r.key for r in records] == [(user,) for user in sorted(by_user)]  # one each
    for record in records:
        mine = by_user[record.key[0]]
        last = mine[-1]
        # a scheduled last row (after the cutoff C) is versioned by the load's cutoff
        version = C if last.feature_at > C else last.as_of_at
        assert (record.ts, record.ver) == (last.feature_at, version)
        assert record.exp == last.feature_at // US + view.ttl_seconds
        assert record.values == {"n_events": last.n_events, "mean_amount": last.mean_amount}
        if len(mine) == 1:
            assert record.timeline is None
        else:
            assert record.timeline is not None
            assert decode_steps(record.timeline) == [
                (r.feature_at, [text(r.n_events), text(r.mean_amount)]) for r in mine[:-1]
            ]


def test_an_entity_expired_at_now_is_counted_by_its_rows() -> None:
    view = scheduled_view(ttl_seconds=86400)
    rows = [
        Row("usr_a", C - 2 * 86400 * US, C - 2 * 86400 * US, 1, None),  # expired, alone
        Row("usr_b", C - 2 * 86400 * US, C - 2 * 86400 * US, 2, None),  # expired current row
        Row("usr_b", C + H, C + H, 3, None),  # ... but a live scheduled one: kept
    ]
    grouper = RecordGrouper(source_of(view), C // US)
    out = grouper.feed(batches_of(rows, view.name, [3])[0])
    out.add(grouper.finish())
    assert (out.expired, out.rows) == (1, 2)
    assert [r.key for r in out.records] == [("usr_b",)]
    kept = RecordGrouper(source_of(view), C // US, keep_expired=True)
    assert len(group(kept, batches_of(rows, view.name, [1, 1, 1]))) == 2


def random_events(rng: random.Random, users: int) -> list[Event]:
    events = []
    for _ in range(users * 12):
        user = f"usr_{rng.randrange(users):03d}"
        # around the cutoff, on tile edges and window edges often; some late, some skewed
        base = C - rng.choice([0, 60, 3600, 600, 7 * 86400, 7 * 86400 + 3600]) * US
        event_at = base + rng.choice([0, -1, 1, -rng.randrange(3600 * US)])
        lag = rng.choice([0, 0, 1, 90 * US, 5 * H, -30 * US])  # late or ahead of its clock
        price = rng.choice([None, Decimal("19.99"), Decimal("0.01"), Decimal("120.50")])
        events.append(Event(user, event_at, event_at + lag, rng.choice([None, 3, 40]), price))
    return events


def tile_batches(view_name: str, tiles: dict[tuple[str, int, int], dict[str, object]]) -> pa.Table:
    keys = sorted(tiles)
    stamp = pa.timestamp("us")
    columns: dict[str, pa.Array] = {
        "user_id": pa.array([k[0] for k in keys], pa.string()),
        f"{view_name}__feature_at": pa.array([at(C)] * len(keys), stamp),
        f"{view_name}__as_of_at": pa.array([at(C)] * len(keys), stamp),
        f"{view_name}__changed_at": pa.array([at(C)] * len(keys), stamp),
        "as_of_at": pa.array([at(C)] * len(keys), stamp),
        "tile_hop_seconds": pa.array([k[1] for k in keys], pa.int64()),
        "tile_start": pa.array([at(k[2]) for k in keys], stamp),
    }
    for d in DECLARED:
        suffixes = {"count": ["__count"], "sum": ["__sum"], "avg": ["__count", "__sum"]}
        for suffix in suffixes[d.function]:
            name = f"{d.feature}{suffix}"
            kind = pa.decimal128(18, 2) if d.function == "avg" and suffix == "__sum" else pa.int64()
            values = [tiles[k].get(name) if k[1] == d.hop_seconds else None for k in keys]
            columns[name] = pa.array(values, kind)
    return pa.table(columns)


@pytest.mark.parametrize("seed", range(4))
def test_tile_rows_become_one_tile_set_per_entity_that_merges_to_the_rule(seed: int) -> None:
    rng = random.Random(100 + seed)
    view = tiled_view()
    events = random_events(rng, 6)
    tiles = brute_tiles(events, C)
    table = tile_batches(view.name, tiles)
    grouper = RecordGrouper(source_of(view), C // US)
    batches: list[pa.RecordBatch] = []
    start = 0
    for size in cut(rng, table.num_rows):
        batches += table.slice(start, size).to_batches()
        start += size
    records = group(grouper, batches)
    users = sorted({k[0] for k in tiles})
    assert [r.key for r in records] == [(u,) for u in users]
    longest = {d.hop_seconds: 0 for d in DECLARED}
    for d in DECLARED:
        longest[d.hop_seconds] = max(longest[d.hop_seconds], d.window_seconds)
    for record in records:
        (user,) = record.key
        assert (record.ts, record.ver, record.values) == (C, C, {})
        mine = {k: v for k, v in tiles.items() if k[0] == user}
        assert (
            record.exp
            == max(tile_expires_at(start, hop, longest[hop]) for _, hop, start in mine) // US
        )
        assert record.timeline is not None
        tile_set = decode_tile_set(record.timeline)
        # at many times after the load, the merged tiles equal the brute-force count of the
        # events ingested by the cutoff (what the sidecar will serve)
        for now in [C, C + 1, C + 59 * US, C + 60 * US, C + H - 1, C + H, C + 9 * H,
                    C + 6 * 86400 * US, C + 7 * 86400 * US, C + 7 * 86400 * US + H]:  # fmt: skip
            for position, d in enumerate(DECLARED):
                hop_features = [x for x in DECLARED if x.hop_seconds == d.hop_seconds]
                index = hop_features.index(d)
                first = window_start(now, d.hop_seconds, d.window_seconds)
                partials = [
                    p[index]
                    for start_s, p in tile_set.get(d.hop_seconds, {}).items()
                    if first <= start_s * US <= now
                ]
                got = merge(d.function, partials)  # type: ignore[arg-type]
                counted = [
                    e
                    for e in events
                    if e.user_id == user
                    and e.ingested_at <= C
                    and counts_at(now, e.event_at, e.ingested_at, d.hop_seconds, d.window_seconds)
                ]
                assert got == brute_value(d.function, d.column, counted), (user, now, position)


def brute_value(function: str, column: str | None, events: list[Event]) -> object:
    if function == "count":
        return len(events)
    values = [getattr(e, column or "") for e in events if getattr(e, column or "") is not None]
    if function == "sum":
        return sum(values)
    if not values:
        return None
    return float(sum(values, Decimal(0))) / len(values)
