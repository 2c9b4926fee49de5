"""Feature views built in code for the loader's timeline tests (a hand-written view with a
freshness SLA, a tiled view of two hops), their online tables written to DuckDB, and the
brute-force tile computation the tiled tests compare with."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from featurestore.registry import Entity, Feature, FeatureView
from featurestore.windows import Aggregation, AggregationFunction, WindowedSource, effective_time
from loader.views import ViewSource

EPOCH = dt.datetime(1970, 1, 1)
US = 1_000_000
SCHEMA = "crafted_online"
USER = Entity("user", ("user_id",))


def us(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def at(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def _feature(name: str, view: str, data_type: str, value_type: str, **extra: object) -> Feature:
    return Feature(name, view, data_type, value_type, "", None, **extra)  # type: ignore[arg-type]


def scheduled_view(sla_seconds: int = 26 * 3600, ttl_seconds: int = 90 * 86400) -> FeatureView:
    """A hand-written view: a count and an average per user, freshness SLA ``sla_seconds``."""
    name = "crafted_rows"
    return FeatureView(
        name=name,
        relation=f"{SCHEMA}.{name}",
        entity=USER,
        keys=("user_id",),
        key_types={"user_id": "string"},
        timestamp="feature_at",
        available_at="available_at",
        owner="tests",
        ttl=f"{ttl_seconds}s",
        ttl_seconds=ttl_seconds,
        freshness_sla=f"{sla_seconds}s",
        freshness_sla_seconds=sla_seconds,
        online=True,
        description="",
        features=(
            _feature("n_events", name, "bigint", "int"),
            _feature("mean_amount", name, "double", "float"),
        ),
    )


@dataclass(frozen=True)
class Declared:
    feature: str
    function: AggregationFunction
    column: str | None
    window_seconds: int
    hop_seconds: int


#: the tiled view's features: two hops (60 s and 3600 s), every aggregation
DECLARED: tuple[Declared, ...] = (
    Declared("n_10m", "count", None, 600, 60),
    Declared("amount_1h", "sum", "amount", 3600, 60),
    Declared("n_7d", "count", None, 7 * 86400, 3600),
    Declared("mean_7d", "avg", "price", 7 * 86400, 3600),
)


def tiled_view(mean_range: tuple[float | None, float | None] = (None, None)) -> FeatureView:
    """A declared view of :data:`DECLARED` (``mean_7d`` with the registry range given)."""
    name = "crafted_tiles"
    features = []
    for d in DECLARED:
        aggregation = Aggregation(
            d.feature,
            d.function,
            d.column,
            f"{d.window_seconds}s",
            d.window_seconds,
            f"{d.hop_seconds}s",
            d.hop_seconds,
        )
        data_type, value_type = ("bigint", "int") if d.function != "avg" else ("double", "float")
        extra: dict[str, object] = {"aggregation": aggregation}
        if d.feature == "mean_7d":
            extra.update(range_min=mean_range[0], range_max=mean_range[1])
        features.append(_feature(d.feature, name, data_type, value_type, **extra))
    return FeatureView(
        name=name,
        relation=f"{SCHEMA}.{name}",
        entity=USER,
        keys=("user_id",),
        key_types={"user_id": "string"},
        timestamp="feature_at",
        available_at=None,
        owner="tests",
        ttl="8d",
        ttl_seconds=8 * 86400,
        freshness_sla="26h",
        freshness_sla_seconds=26 * 3600,
        online=True,
        description="",
        features=tuple(features),
        windowed=WindowedSource(
            events="events",
            events_relation="events",
            event_time="event_at",
            ingested_at="ingested_at",
            event_id="event_id",
            keys=("user_id",),
            column_types=(("amount", "int"), ("price", "decimal")),
        ),
    )


def source_of(view: FeatureView) -> ViewSource:
    return ViewSource(view, SCHEMA, view.name)


@dataclass(frozen=True)
class Row:
    """One row of the hand-written view's online table (times in microseconds, UTC)."""

    user_id: str
    feature_at: int
    as_of_at: int  # <view>__as_of_at
    n_events: int | None
    mean_amount: float | None


def write_rows(path: Path, view: FeatureView, rows: Sequence[Row], cutoff: int) -> None:
    """(Re)create the hand-written view's online table: ``rows`` with ``as_of_at`` = cutoff
    and each user's change time computed here from the contract (current row: its as-of
    time; scheduled row: greatest(as-of time, feature time - SLA))."""
    sla = view.freshness_sla_seconds * US
    changed: dict[str, int] = {}
    for row in rows:
        contribution = row.as_of_at if row.feature_at <= cutoff else row.feature_at - sla
        changed[row.user_id] = max(changed.get(row.user_id, contribution), contribution)
    stamp = pa.timestamp("us")
    name = view.name
    table = pa.table(
        {
            "user_id": pa.array([r.user_id for r in rows], pa.string()),
            "as_of_at": pa.array([at(cutoff)] * len(rows), stamp),
            "n_events": pa.array([r.n_events for r in rows], pa.int64()),
            "mean_amount": pa.array([r.mean_amount for r in rows], pa.float64()),
            f"{name}__feature_at": pa.array([at(r.feature_at) for r in rows], stamp),
            f"{name}__as_of_at": pa.array([at(r.as_of_at) for r in rows], stamp),
            f"{name}__changed_at": pa.array([at(changed[r.user_id]) for r in rows], stamp),
        }
    )
    _write(path, name, table)


def _write(path: Path, name: str, table: pa.Table) -> None:
    with duckdb.connect(str(path)) as con:
        con.sql(f"create schema if not exists {SCHEMA}")
        con.register("crafted", table)
        # shuffled on purpose: the loader must order the rows itself
        con.sql(
            f"create or replace table {SCHEMA}.{name} as select * from crafted order by random()"
        )


@dataclass(frozen=True)
class Event:
    user_id: str
    event_at: int  # microseconds
    ingested_at: int
    amount: int | None
    price: Decimal | None


#: tile row: (user, hop, tile start us) -> column -> value
TileRows = dict[tuple[str, int, int], dict[str, object]]


def brute_tiles(events: Sequence[Event], cutoff: int) -> TileRows:
    """The partials of every (user, hop, tile) over the events ingested by ``cutoff``, by
    brute force: one pass per feature over all events (no tile is dropped here)."""
    out: TileRows = {}
    for d in DECLARED:
        hop = d.hop_seconds * US
        for e in events:
            if e.ingested_at > cutoff:
                continue
            start = effective_time(e.event_at, e.ingested_at) // hop * hop
            row = out.setdefault((e.user_id, d.hop_seconds, start), {})
            value = None if d.column is None else getattr(e, d.column)
            if d.function == "count":
                row.setdefault(f"{d.feature}__count", 0)
                row[f"{d.feature}__count"] += 1  # type: ignore[operator]
            elif d.function == "sum":
                row.setdefault(f"{d.feature}__sum", 0)
                if value is not None:
                    row[f"{d.feature}__sum"] += value  # type: ignore[operator]
            else:
                row.setdefault(f"{d.feature}__count", 0)
                row.setdefault(f"{d.feature}__sum", None)
                if value is not None:
                    row[f"{d.feature}__count"] += 1  # type: ignore[operator]
                    before = row[f"{d.feature}__sum"]
                    row[f"{d.feature}__sum"] = value + (before or 0)  # type: ignore[operator]
    return out


def write_tiles(
    path: Path,
    view: FeatureView,
    tiles: TileRows,
    cutoff: int,
    *,
    feature_at: dict[str, int],
    changed_at: dict[str, int],
) -> None:
    """(Re)create the tiled view's online table from ``tiles`` (columns of another hop
    null)."""
    name = view.name
    keys = sorted(tiles, key=lambda k: (k[0], k[1] or 0, k[2]))  # a test may null a hop
    stamp = pa.timestamp("us")
    columns: dict[str, pa.Array] = {
        "user_id": pa.array([k[0] for k in keys], pa.string()),
        f"{name}__feature_at": pa.array([at(feature_at[k[0]]) for k in keys], stamp),
        f"{name}__as_of_at": pa.array([at(cutoff)] * len(keys), stamp),
        f"{name}__changed_at": pa.array([at(changed_at[k[0]]) for k in keys], stamp),
        "as_of_at": pa.array([at(cutoff)] * len(keys), stamp),
        "tile_hop_seconds": pa.array([k[1] for k in keys], pa.int64()),
        "tile_start": pa.array([at(k[2]) for k in keys], stamp),
    }
    for d in DECLARED:
        names = {"count": ["__count"], "sum": ["__sum"], "avg": ["__count", "__sum"]}
        for suffix in names[d.function]:
            column = f"{d.feature}{suffix}"
            if column in columns:
                continue
            kind = pa.decimal128(18, 2) if d.function == "avg" and suffix == "__sum" else None
            values = [tiles[k].get(column) if k[1] == d.hop_seconds else None for k in keys]
            columns[column] = pa.array(values, kind or pa.int64())
    _write(path, name, pa.table(columns))
