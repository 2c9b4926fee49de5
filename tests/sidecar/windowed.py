"""Test support for windowed (tiled) views in the sidecar suites: a tiled view of the user
entity declared in code (the registry parser of declarations is tested elsewhere), events
with the edge cases of the rule, their tile sets written the way the layout says, and the
brute-force reference: the rule (:func:`featurestore.windows.counts_at`) evaluated event by
event, with no tiles at all."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from featurestore.online.layout import Record, encode_tile_set
from featurestore.registry import Feature, Registry
from featurestore.timestamps import micros
from featurestore.windows import Aggregation, WindowedSource, counts_at

US = 1_000_000
MINUTE, HOUR, DAY = 60, 3600, 86_400
TILED = "user_window_features"
#: name -> (function, column, window, window s, hop, hop s, value type, default)
TILED_FEATURES: dict[str, tuple[str, str | None, str, int, str, int, str, object]] = {
    "w_user_10m_count": ("count", None, "10m", 10 * MINUTE, "1m", MINUTE, "int", 0),
    "w_user_7d_count": ("count", None, "7d", 7 * DAY, "1h", HOUR, "int", 0),
    "w_user_7d_amount": ("sum", "amount", "7d", 7 * DAY, "1h", HOUR, "float", 0.0),
    "w_user_90d_avg_amount": ("avg", "amount", "90d", 90 * DAY, "1d", DAY, "float", None),
}


def tiled_registry(base: Registry) -> Registry:
    """``base`` plus :data:`TILED`: a tiled view of the user entity (TTL 91 d) holding
    :data:`TILED_FEATURES` (windows 10m/1m, 7d/1h, 7d/1h, 90d/1d)."""
    template = base.views["user_transaction_features"]
    features = tuple(
        Feature(
            name=name,
            view=TILED,
            data_type="bigint" if value_type == "int" else "double",
            value_type=value_type,  # type: ignore[arg-type]
            description=f"{function} over {window}",
            default=default,
            aggregation=Aggregation(
                name,
                function,
                column,
                window,
                window_s,
                hop,
                hop_s,  # type: ignore[arg-type]
            ),
        )
        for name, (function, column, window, window_s, hop, hop_s, value_type, default) in (
            TILED_FEATURES.items()
        )
    )
    view = dataclasses.replace(
        template,
        name=TILED,
        relation='"warehouse"."main_features"."user_window_features"',
        available_at=None,
        ttl="91d",
        ttl_seconds=91 * DAY,
        features=features,
        data_tests=(),
        windowed=WindowedSource(
            events="int_transactions_deduplicated",
            events_relation='"warehouse"."main_intermediate"."int_transactions_deduplicated"',
            event_time="transacted_at",
            ingested_at="ingested_at",
            event_id="transaction_id",
            keys=("user_id",),
            column_types=(("amount", "decimal"),),
        ),
    )
    views = {**base.views, TILED: view}
    all_features = {**base.features, **{f.name: f for f in features}}
    return dataclasses.replace(base, views=views, features=all_features)


@dataclass(frozen=True)
class Event:
    """One deduplicated event: times in microseconds (UTC), ``amount`` None for a null."""

    user: str
    event_us: int
    ingested_us: int
    amount: Decimal | None


def edge_events(user: str, cutoff_us: int, rng: random.Random, count: int = 50) -> list[Event]:
    """About ``count`` events of one user before ``cutoff_us`` with the rule's edge cases:
    events exactly at tile starts of every hop, several at one instant (ties), late ones
    (ingested hours or days after the event), ones whose event time is after their
    ingestion time (clock skew), null amounts, and old ones partly outside 90 days."""
    events: list[Event] = []
    for _ in range(count):
        kind = rng.random()
        age = rng.choice([rng.randrange(0, 15 * MINUTE * US), rng.randrange(0, 8 * DAY * US),
                          rng.randrange(0, 95 * DAY * US)])  # fmt: skip
        event_us = cutoff_us - age
        if kind < 0.25:  # exactly at a tile start of one of the hops
            hop = rng.choice([MINUTE, HOUR, DAY]) * US
            event_us -= event_us % hop
        ingested_us = event_us + rng.randrange(0, 2 * US)
        if kind > 0.85:  # late: known hours or days after it happened
            ingested_us = event_us + rng.choice([3 * HOUR, 2 * DAY, 9 * MINUTE]) * US
        elif kind > 0.75:  # producer clock ahead: event time after the ingestion time
            ingested_us = event_us - rng.randrange(1, 10 * MINUTE) * US
        ingested_us = min(ingested_us, cutoff_us)
        amount = None if rng.random() < 0.1 else Decimal(rng.randrange(1, 50_000)) / 100
        events.append(Event(user, event_us, ingested_us, amount))
        if rng.random() < 0.1:  # a tie: another event at the same instant
            events.append(Event(user, event_us, ingested_us, Decimal("19.99")))
    return events


def tile_set(events: Iterable[Event]) -> dict[int, dict[int, tuple[object, ...]]]:
    """The tile set of ``events`` (layout.TileSet): per hop and tile start (seconds), one
    partial per feature of that hop in view order, by direct arithmetic on each event."""
    tiles: dict[int, dict[int, list[object]]] = {}
    hops: dict[int, list[str]] = {}
    for name, spec in TILED_FEATURES.items():
        hops.setdefault(spec[5], []).append(name)
    for event in events:
        t_e = min(event.event_us, event.ingested_us)
        for hop, names in hops.items():
            start = t_e // US // hop * hop
            partials = tiles.setdefault(hop, {}).setdefault(start, [None] * len(names))
            for slot, name in enumerate(names):
                function, column = TILED_FEATURES[name][:2]
                value = event.amount if column else 1
                old = partials[slot]
                if function == "count":
                    partials[slot] = (old or 0) + (value is not None)
                elif function == "sum":
                    partials[slot] = (old or 0) + (value or 0)
                else:
                    n, total = old if isinstance(old, tuple) else (0, Decimal(0))
                    if value is not None:
                        n, total = n + 1, total + value
                    partials[slot] = (n, total)
    return {hop: {s: tuple(p) for s, p in starts.items()} for hop, starts in tiles.items()}


def tiled_record(user: str, events: Sequence[Event], cutoff_us: int) -> Record:
    """The record a load at ``cutoff_us`` writes for ``user``: no values, the tile set as
    timeline, ``ts`` the latest ingestion, ``ver`` the cutoff, ``exp`` when its last tile
    leaves its last window (seconds)."""
    mine = [e for e in events if e.user == user and e.ingested_us <= cutoff_us]
    tiles = tile_set(mine)
    longest: dict[int, int] = {}
    for spec in TILED_FEATURES.values():
        longest[spec[5]] = max(longest.get(spec[5], 0), spec[3])
    exp = max(start + hop + longest[hop] for hop, starts in tiles.items() for start in starts)
    ts = max(e.ingested_us for e in mine)
    return Record("user", (user,), TILED, ts, cutoff_us, exp, {}, encode_tile_set(tiles))


def reference_value(feature: str, events: Iterable[Event], now_us: int) -> Any:
    """The rule, event by event: the feature's value at ``now_us`` over ``events``."""
    function, column, _, window_s, _, hop_s = TILED_FEATURES[feature][:6]
    counted = [e for e in events if counts_at(now_us, e.event_us, e.ingested_us, hop_s, window_s)]
    values = [e.amount if column else 1 for e in counted]
    present = [v for v in values if v is not None]
    if function == "count":
        return len(present)
    total = sum(present, Decimal(0))
    if function == "sum":
        return float(total)
    return float(total) / len(present) if present else None


def iso(now_us: int) -> str:
    """The API's spelling of an instant (by hand)."""
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=now_us)
    text = f"{moment:%Y-%m-%dT%H:%M:%S}"
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def expected(feature: str, events: Iterable[Event], now_us: int) -> dict[str, Any]:
    """The answer of one windowed feature at ``now_us``: the reference value with the
    request's time as timestamp, or the default with reason NULL over an empty window."""
    value = reference_value(feature, events, now_us)
    if value is not None:
        return {"value": value, "timestamp": iso(now_us), "status": "PRESENT"}
    default = TILED_FEATURES[feature][7]
    status = "MISSING" if default is None else "DEFAULT"
    return {"value": default, "timestamp": iso(now_us), "status": status, "reason": "NULL"}


def not_found(feature: str) -> dict[str, Any]:
    """The answer of a windowed feature for a key with no live record (none written, or
    every tile has left every window: the record's ``exp`` has passed)."""
    default = TILED_FEATURES[feature][7]
    status = "MISSING" if default is None else "DEFAULT"
    return {"value": default, "timestamp": None, "status": status, "reason": "NOT_FOUND"}


def probe_times(events: Sequence[Event], cutoff_us: int, rng: random.Random, n: int) -> list[int]:
    """``n`` instants at or after the cutoff, ascending, at the rule's edges: tile starts of
    every hop (``floor_hop(T) = T``) and one microsecond before, the instants events leave
    each window and one microsecond before, plus random ones."""
    edges = {cutoff_us, cutoff_us + 1}
    for spec in TILED_FEATURES.values():
        window, hop = spec[3] * US, spec[5] * US
        for e in events:
            t_e = min(e.event_us, e.ingested_us)
            leave = t_e - t_e % hop + hop + window
            edges.update({leave, leave - 1})
        boundary = cutoff_us - cutoff_us % hop + hop
        edges.update({boundary, boundary - 1, boundary + hop, boundary + hop - 1})
    candidates = sorted(t for t in edges if t >= cutoff_us)
    picked = set(rng.sample(candidates, min(n, len(candidates))))
    picked.update(rng.randrange(cutoff_us, cutoff_us + 91 * DAY * US) for _ in range(n // 4))
    return sorted(picked)


def at_us(now_us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=now_us)


__all__ = [
    "TILED",
    "TILED_FEATURES",
    "Event",
    "at_us",
    "edge_events",
    "expected",
    "iso",
    "micros",
    "not_found",
    "probe_times",
    "reference_value",
    "tile_set",
    "tiled_record",
    "tiled_registry",
]
