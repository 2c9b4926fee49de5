"""The tiled part of ``bench/serve.py``: a tiled (windowed) view of the bench's user entity,
its tiles in Redis, the checks of its served values, and the sidecar process that serves it.

The view ``bench_user_windows`` is declared here in code (:func:`with_tiled_view`), next
to the bench's plain view: ``bench_count_10m`` (count, 10m window, 1m hop),
``bench_count_7d`` (count, 7d/1h) and ``bench_avg_amount_90d`` (avg of a decimal amount,
90d/1d). Each entity has 50 events (:func:`events_of`, a pure function of its id): 5 in the
last 10 minutes, 15 in the last 7 days, 30 in the last 90 days, so a tile set holds up to 5
one-minute, 20 one-hour and 50 one-day tiles, ~1.5 KB of JSON. The sidecar process
(``bench/serve.py --tiled-sidecar PORT MANIFEST``) is what ``featurestore serve --workers 1``
runs (``create_app`` + ``serving_worker`` under uvicorn with uvloop and the bounded
httptools protocol), with the registry of the manifest plus this view.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from featurestore.online.layout import Record, TileSet, encode_tile_set
from featurestore.online.redis_store import RedisStore
from featurestore.registry import Feature, Registry, registry_from_manifest
from featurestore.timestamps import micros
from featurestore.windows import (
    Aggregation,
    WindowedSource,
    add_event,
    counts_at,
    live_tile,
    tile_expires_at,
    tile_start,
)

TILED_VIEW = "bench_user_windows"
ENTITY = "user"
US = 1_000_000
DAY = 86_400
#: name -> (function, column, window, window s, hop, hop s, value type, default)
TILED_FEATURES: dict[str, tuple[Any, str | None, str, int, str, int, Any, object]] = {
    "bench_count_10m": ("count", None, "10m", 600, "1m", 60, "int", 0),
    "bench_count_7d": ("count", None, "7d", 7 * DAY, "1h", 3600, "int", 0),
    "bench_avg_amount_90d": ("avg", "amount", "90d", 90 * DAY, "1d", DAY, "float", 0.0),
}


def with_tiled_view(registry: Registry, template_view: str) -> Registry:
    """``registry`` plus :data:`TILED_VIEW` (of the entity of ``template_view``)."""
    template = registry.views[template_view]
    features = tuple(
        Feature(
            name=name,
            view=TILED_VIEW,
            data_type="bigint" if value_type == "int" else "double",
            value_type=value_type,
            description=f"{function} over {window}",
            default=default,
            aggregation=Aggregation(name, function, column, window, window_s, hop, hop_s),
        )
        for name, (function, column, window, window_s, hop, hop_s, value_type, default) in (
            TILED_FEATURES.items()
        )
    )
    view = dataclasses.replace(
        template,
        name=TILED_VIEW,
        available_at=None,
        ttl="91d",
        ttl_seconds=91 * DAY,
        online=True,
        features=features,
        data_tests=(),
        windowed=WindowedSource(
            events="bench_events",
            events_relation="bench_events",
            event_time="event_at",
            ingested_at="ingested_at",
            event_id="event_id",
            keys=tuple(template.keys),
            column_types=(("amount", "decimal"),),
        ),
    )
    return dataclasses.replace(
        registry,
        views={**registry.views, TILED_VIEW: view},
        features={**registry.features, **{f.name: f for f in features}},
    )


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


def serve_tiled(port: int, manifest: Path, template_view: str) -> None:
    """``featurestore serve --workers 1`` with the tiled view added to the registry (the
    settings from the environment, as the sidecar reads them)."""
    import uvicorn

    from sidecar.app import configure_logging, create_app, serving_worker
    from sidecar.server import SidecarProtocol
    from sidecar.settings import Settings

    registry = with_tiled_view(
        registry_from_manifest(json.loads(manifest.read_text())), template_view
    )
    configure_logging()
    app = create_app(Settings.from_env(), registry=registry)
    uvicorn.run(
        lambda: serving_worker(app),
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop="uvloop",
        http=SidecarProtocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


__all__ = [
    "TILED_FEATURES",
    "TILED_VIEW",
    "check_tiled",
    "events_of",
    "fill_tiled",
    "reference",
    "serve_tiled",
    "tiles_of",
    "with_tiled_view",
]
