"""The tiled part of ``bench/serve.py``: tile sets of a declared (windowed) view of the
bench's user entity in Redis, and the checks of its served values.

The view is the demo project's declared ``user_transaction_features`` as the registry reads
it from the bench's manifest (``featurestore/windowed_declaration.py``): count 10m/1m,
count 7d/1h, avg of a decimal amount 90d/1d; :func:`check_declaration` checks that the
manifest still declares it so (else the tile sets written here would not be the view's).
Each entity has 50 events (:func:`events_of`, a pure function of its id): 5 in the last 10
minutes, 15 in the last 7 days, 30 in the last 90 days, so a tile set holds up to 5
one-minute, 20 one-hour and 50 one-day tiles. The sidecar is the plain ``python -m sidecar``
over the manifest (no view added in code).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from decimal import Decimal
from typing import Any

import httpx

from featurestore.online.layout import Record, TileSet, encode_tile_set
from featurestore.online.redis_store import RedisStore
from featurestore.registry import Registry
from featurestore.timestamps import micros
from featurestore.windows import (
    add_event,
    counts_at,
    live_tile,
    tile_expires_at,
    tile_start,
)

TILED_VIEW = "user_transaction_features"
ENTITY = "user"
US = 1_000_000
DAY = 86_400
#: name -> (function, column, window, window s, hop, hop s): what the manifest declares
TILED_FEATURES: dict[str, tuple[Any, str | None, str, int, str, int]] = {
    "user_10m_transaction_count": ("count", None, "10m", 600, "1m", 60),
    "user_7d_transaction_count": ("count", None, "7d", 7 * DAY, "1h", 3600),
    "avg_order_value_90d": ("avg", "amount", "90d", 90 * DAY, "1d", DAY),
}


def check_declaration(registry: Registry) -> None:
    """Exit unless the manifest declares :data:`TILED_VIEW` with :data:`TILED_FEATURES`."""
    view = registry.views.get(TILED_VIEW)
    if view is None or not view.tiled or not view.online:
        raise SystemExit(f"the manifest has no online declared view {TILED_VIEW}")
    declared = {
        f.name: (a.function, a.column, a.window_seconds, a.hop_seconds)
        for f in view.features
        if (a := f.aggregation) is not None
    }
    wanted = {name: (s[0], s[1], s[3], s[5]) for name, s in TILED_FEATURES.items()}
    if declared != wanted:
        raise SystemExit(f"{TILED_VIEW} declares {declared}, the bench writes {wanted}")


def events_of(entity_id: int, now_us: int) -> list[tuple[int, Decimal]]:
    """The entity's 50 events before ``now_us``: (time in microseconds, amount)."""
    rng = random.Random(entity_id)
    spans = [600] * 5 + [7 * DAY] * 15 + [90 * DAY] * 30
    return [
        (now_us - rng.randrange(span * US), Decimal(rng.randrange(100, 100_000)) / 100)
        for span in spans
    ]


def tiles_of(events: list[tuple[int, Decimal]], now_us: int) -> tuple[TileSet, int]:
    """The tile set a load at ``now_us`` writes (live tiles only) and its ``exp`` (s)."""
    longest: dict[int, int] = {}
    hops: dict[int, list[str]] = {}
    for name, spec in TILED_FEATURES.items():
        hops.setdefault(spec[5], []).append(name)
        longest[spec[5]] = max(longest.get(spec[5], 0), spec[3])
    tiles: dict[int, dict[int, list[Any]]] = {}
    for t_us, amount in events:
        for hop, names in hops.items():
            start = tile_start(t_us, hop)
            if not live_tile(start, now_us, hop, longest[hop]):
                continue
            partials = tiles.setdefault(hop, {}).setdefault(start // US, [None] * len(names))
            for slot, name in enumerate(names):
                function, column = TILED_FEATURES[name][:2]
                partials[slot] = add_event(function, partials[slot], amount if column else 1)
    exp = max(
        tile_expires_at(start * US, hop, longest[hop]) // US
        for hop, starts in tiles.items()
        for start in starts
    )
    return {h: {s: tuple(p) for s, p in starts.items()} for h, starts in tiles.items()}, exp


def fill_tiled(store: RedisStore, entities: int, now: dt.datetime) -> float:
    """Write every entity's tile set; returns the seconds it took."""
    now_us = micros(now)
    started = time.perf_counter()
    chunk = 20_000
    for first in range(0, entities, chunk):
        records = []
        for i in range(first, min(first + chunk, entities)):
            events = events_of(i, now_us)
            tiles, exp = tiles_of(events, now_us)
            ts = max(t for t, _ in events)
            key = (f"usr_{i:08d}",)
            records.append(
                Record(ENTITY, key, TILED_VIEW, ts, now_us, exp, {}, encode_tile_set(tiles))
            )
        result = store.write(records, now=now)
        if result.written != len(records):
            raise SystemExit(f"wrote {result.written} of {len(records)} tiled records")
    return time.perf_counter() - started


def reference(entity_id: int, feature: str, now_us: int) -> int | float | None:
    """The rule over the entity's events, event by event (no tiles)."""
    function, _, _, window_s, _, hop_s = TILED_FEATURES[feature][:6]
    counted = [
        amount
        for t_us, amount in events_of(entity_id, now_us)
        if counts_at(now_us, t_us, t_us, hop_s, window_s)
    ]
    if function == "count":
        return len(counted)
    total = sum(counted, Decimal(0))
    return float(total) / len(counted) if counted else None


def check_tiled(
    client: httpx.Client,
    plain: list[str],
    entities: int,
    now: dt.datetime,
    rng: random.Random,
) -> tuple[int, int]:
    """Single-key and 100-key mixed requests (the plain view's first feature and every
    tiled one): each tiled value against :func:`reference`, its timestamp the pinned now.
    Returns (values checked, mismatches)."""
    now_us = micros(now)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    features = [plain[0], *TILED_FEATURES]
    batches = [[rng.randrange(entities)] for _ in range(20)]
    batches += [[rng.randrange(entities) for _ in range(100)] for _ in range(2)]
    checked = bad = 0
    for ids in batches:
        keys = [f"usr_{i:08d}" for i in ids]
        body = {"entity_name": ENTITY, "entity_keys": keys, "features": features}
        response = client.post("/api/v1/features/retrieve", json=body)
        if response.status_code != 200 or response.headers.get("X-Featurestore-Degraded"):
            print(f"MISMATCH (tiled): HTTP {response.status_code} {response.text[:300]}")
            bad += 1
            continue
        for entity_id, result in zip(ids, response.json()["results"], strict=True):
            for feature in TILED_FEATURES:
                got = result["features"][feature]
                want = reference(entity_id, feature, now_us)
                ok = got["timestamp"] == stamp and (
                    got["value"] == want and got["status"] == "PRESENT"
                    if want is not None
                    else got["status"] == "DEFAULT"
                )
                checked += 1
                if not ok:
                    bad += 1
                    if bad <= 5:
                        print(f"MISMATCH (tiled): usr_{entity_id:08d} {feature}: {got} != {want}")
    return checked, bad


__all__ = [
    "TILED_FEATURES",
    "TILED_VIEW",
    "check_declaration",
    "check_tiled",
    "events_of",
    "fill_tiled",
    "reference",
    "tiles_of",
]
