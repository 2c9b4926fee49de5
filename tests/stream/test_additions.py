"""What the worker adds to the tiles (stream/additions.py), checked against the brute-force
rule (tests/window_reference.py): events streamed in ingestion order (late, skewed,
duplicated, at tile and window edges), their partials kept as the store keeps them, and a
batch tile set at an hour-aligned cutoff C beside them: the batch tiles plus the stream
partials of buckets after C, merged at any T after the last event, equal the rule at T."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal

import pytest

from featurestore.online.stream_tiles import BUCKET_SECONDS, read_partials
from featurestore.registry import Registry
from featurestore.windows import Partial, window_start
from stream.additions import ViewPlan
from stream.events import ParsedEvent
from tests.window_reference import (
    MERCHANT_VIEW,
    USER_VIEW,
    Entity,
    View,
    events,
    from_us,
    to_us,
)

US = 1_000_000
BASE = dt.datetime(2026, 4, 1)


def _rows(rng: random.Random, n: int) -> list[dict[str, object]]:
    """Transactions of 3 users and 2 merchants over ~10 days, with the data's mess."""
    rows: list[dict[str, object]] = []
    for i in range(n):
        event = BASE + dt.timedelta(seconds=rng.randrange(10 * 86400))
        kind = rng.random()
        if kind < 0.15:  # late: ingested minutes to days after
            ingested = event + dt.timedelta(seconds=rng.choice([61, 3600, 86400, 8 * 86400]))
        elif kind < 0.2:  # producer clock ahead: event time after ingestion
            ingested = event - dt.timedelta(seconds=rng.randrange(1, 120))
        elif kind < 0.3:  # exactly at a tile edge
            event = event.replace(second=0, minute=0 if rng.random() < 0.5 else event.minute)
            ingested = event
        else:
            ingested = event + dt.timedelta(seconds=rng.randrange(0, 5))
        amount = None if rng.random() < 0.1 else Decimal(rng.randrange(1, 100000)) / 100
        row = {
            "transaction_id": f"t{i}",
            "user_id": f"u{rng.randrange(3)}",
            "merchant_id": None if rng.random() < 0.05 else f"m{rng.randrange(2)}",
            "amount": amount,
            "transacted_at": event,
            "ingested_at": ingested,
        }
        rows.append(row)
        if rng.random() < 0.1:  # a redelivery, later
            rows.append(
                {**row, "ingested_at": ingested + dt.timedelta(seconds=rng.randrange(1, 900))}
            )
    return rows


def _parsed(row: dict[str, object]) -> ParsedEvent:
    assert isinstance(row["transacted_at"], dt.datetime)
    assert isinstance(row["ingested_at"], dt.datetime)
    return ParsedEvent(
        dict(row),
        str(row["transaction_id"]),
        to_us(row["transacted_at"]),
        to_us(row["ingested_at"]),
    )


def _stream(
    plan: ViewPlan, rows: list[dict[str, object]]
) -> dict[tuple[str, ...], list[tuple[bytes, bytes]]]:
    """The stored partials per key after streaming ``rows`` in ingestion order (first copy
    of an id wins, as the store's dedup does)."""
    ordered = sorted(
        rows, key=lambda r: (r["ingested_at"], r["transacted_at"], str(r["transaction_id"]))
    )
    seen: set[tuple[tuple[str, ...], str]] = set()
    units: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in ordered:
        event = _parsed(row)
        additions = plan.additions(event)
        if additions is None or (additions.key, event.event_id) in seen:
            continue
        seen.add((additions.key, event.event_id))
        for field, value in additions.fields:
            units[additions.key][field] += value
    return {
        key: [(f.encode(), str(v).encode()) for f, v in fields.items()]
        for key, fields in units.items()
    }


def _value(
    view: View,
    feature: int,
    batch: dict[tuple[int, int], list[Partial | None]],
    stream: dict[int, dict[int, dict[int, tuple[int, int]]]],
    plan: ViewPlan,
    now_us: int,
) -> object:
    """The feature at now: batch tiles and stream partials inside the window, added."""
    agg = view.features[feature]
    first = window_start(now_us, agg.hop_seconds, agg.window_seconds)
    count, total = 0, Decimal(0)
    for (hop, start), partials in batch.items():
        if hop == agg.hop_seconds and first <= start <= now_us:
            partial = partials[feature]
            if agg.function == "count":
                count += partial  # type: ignore[operator]
            else:
                assert isinstance(partial, tuple)
                count, total = count + partial[0], total + partial[1]
    columns = [c for c in plan.columns if c.feature == agg.feature]
    for start, by_column in stream.get(agg.hop_seconds, {}).items():
        if first <= start * US <= now_us:
            for column in columns:
                units, scale = by_column.get(column.column, (0, 0))
                if column.holds == "count":
                    count += units
                else:
                    total += Decimal(units).scaleb(-scale)
    if agg.function == "count":
        return count
    return float(total) / count if count else None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("view", [USER_VIEW, MERCHANT_VIEW], ids=lambda v: v.name)
def test_batch_tiles_plus_later_stream_buckets_equal_the_rule(
    project_registry: Registry, view: View, seed: int
) -> None:
    rng = random.Random(seed)
    rows = _rows(rng, 400)
    plan = ViewPlan.of(project_registry.view(view.name))
    assert [f.feature for f in view.features] == list(
        dict.fromkeys(c.feature for c in plan.columns)
    )
    last = max(to_us(r["ingested_at"]) for r in rows)  # type: ignore[arg-type]
    by_key: dict[tuple[object, ...], list] = defaultdict(list)
    for event in events(view, rows):
        by_key[event.key].append(event)
    stored = _stream(plan, rows)
    hour = BUCKET_SECONDS * US
    cutoffs = [None, (last // hour - rng.randrange(1, 200)) * hour, (last // hour) * hour]
    for cutoff in cutoffs:
        for key, key_events in by_key.items():
            entity = Entity(list(key_events))
            batch = entity.tiles(view, cutoff) if cutoff is not None else {}
            stream = read_partials(stored.get(tuple(map(str, key)), []), cutoff)
            times = [last, last + 1, *(last + rng.randrange(30 * 86400 * US) for _ in range(20))]
            times += [((t // (60 * US)) + 1) * 60 * US for t in times[:5]]  # tile edges
            for now_us in times:
                for i, agg in enumerate(view.features):
                    expected = entity.value(agg, now_us)
                    got = _value(view, i, batch, stream, plan, now_us)
                    assert got == expected, (
                        key,
                        agg.feature,
                        cutoff and from_us(cutoff),
                        from_us(now_us),
                    )


def test_an_event_too_old_for_every_window_adds_nothing(project_registry: Registry) -> None:
    plan = ViewPlan.of(project_registry.view("merchant_transaction_features"))
    event = BASE
    row = {"transaction_id": "t", "user_id": "u", "merchant_id": "m", "amount": None,
           "transacted_at": event, "ingested_at": event + dt.timedelta(hours=2)}  # fmt: skip
    assert plan.additions(_parsed(row)) is None
    assert plan.counts_ever(_parsed(row)) is False
    row["ingested_at"] = event + dt.timedelta(minutes=59)
    assert plan.counts_ever(_parsed(row)) is True
    additions = plan.additions(_parsed(row))
    assert additions is not None and len(additions.fields) == 1


def test_a_null_key_leaves_the_view_out(project_registry: Registry) -> None:
    plan = ViewPlan.of(project_registry.view("merchant_transaction_features"))
    row = {"transaction_id": "t", "user_id": "u", "merchant_id": None, "amount": None,
           "transacted_at": BASE, "ingested_at": BASE}  # fmt: skip
    assert plan.additions(_parsed(row)) is None
