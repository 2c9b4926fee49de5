"""The loader on online tables with timelines: a tiled view (rows per entity, hop and tile)
and a hand-written view with scheduled rows, generated in DuckDB, loaded by the real
``loader.load`` (gate, grouping, store writes) into a fresh SQLite store or a redis-server.

    .venv/bin/python bench/load_timelines.py --entities 100000 --store sqlite

Prints rows/s and records/s per variant (one run each, in this process)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402

from featurestore.online.urls import open_store  # noqa: E402
from loader import load  # noqa: E402
from tests.loader.crafted_views import (  # noqa: E402
    SCHEMA,
    scheduled_view,
    source_of,
    tiled_view,
)

CUTOFF = "timestamp '2026-05-01 00:00:00'"
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def make_tiles(path: Path, entities: int, tiles: int) -> int:
    """``tiles`` tiles of hop 60 s and ``tiles`` of hop 3600 s per entity."""
    name = tiled_view().name
    with duckdb.connect(str(path)) as con:
        con.sql(f"create schema if not exists {SCHEMA}")
        con.sql(
            f"""create or replace table {SCHEMA}.{name} as
            select 'usr_' || lpad(cast(i as varchar), 9, '0') as user_id,
                   {CUTOFF} - interval 1 second as {name}__feature_at,
                   {CUTOFF} as {name}__as_of_at,
                   {CUTOFF} - interval 1 second as {name}__changed_at,
                   {CUTOFF} as as_of_at,
                   hop as tile_hop_seconds,
                   {CUTOFF} - to_seconds(hop * (t + 1)) as tile_start,
                   case when hop = 60 then 1 + (i + t) % 5 end as n_10m__count,
                   case when hop = 60 then (i * t) % 100 end as amount_1h__sum,
                   case when hop = 3600 then 1 + (i + t) % 9 end as n_7d__count,
                   case when hop = 3600 then 1 + (i + t) % 9 end as mean_7d__count,
                   case when hop = 3600 then cast((1 + (i + t) % 9) * 12.5 as decimal(18, 2))
                   end as mean_7d__sum
            from range({entities}) r(i), range({tiles}) s(t), (values (60), (3600)) h(hop)"""
        )
    return entities * tiles * 2


def make_steps(path: Path, entities: int, steps: int) -> int:
    """A current row and ``steps - 1`` scheduled rows per entity."""
    name = scheduled_view().name
    with duckdb.connect(str(path)) as con:
        con.sql(f"create schema if not exists {SCHEMA}")
        con.sql(
            f"""create or replace table {SCHEMA}.{name} as
            select 'usr_' || lpad(cast(i as varchar), 9, '0') as user_id,
                   {CUTOFF} as as_of_at,
                   cast((i + s) % 50 as bigint) as n_events,
                   cast(i % 1000 as double) / 8 as mean_amount,
                   {CUTOFF} + to_seconds(3600 * s - 60) as {name}__feature_at,
                   {CUTOFF} + to_seconds(3600 * s - 60) as {name}__as_of_at,
                   {CUTOFF} - interval 1 minute as {name}__changed_at
            from range({entities}) r(i), range({steps}) q(s)"""
        )
    return entities * steps


def run(url: str, path: Path, kind: str, rows: int) -> None:
    view = tiled_view() if kind == "tiles" else scheduled_view()
    with open_store(url) as store:
        store.initialize()
        started = time.perf_counter()
        report = load(store, path, [source_of(view)], now=NOW)
        seconds = time.perf_counter() - started
    (result,) = report.views
    assert result.outcome == "success", result.message
    assert result.rows_read == rows
    print(
        f"{kind:6} {url.split(':')[0]:7} rows {rows:>9,} records {result.rows_written:>8,} "
        f"{seconds:7.2f} s  {rows / seconds:>9,.0f} rows/s  "
        f"{result.rows_written / seconds:>8,.0f} records/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--tiles", type=int, default=5, help="tiles per hop and entity")
    parser.add_argument("--steps", type=int, default=3, help="rows per entity (hand-written)")
    parser.add_argument("--redis-url", help="a redis:// URL (default: SQLite only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        tiles = make_tiles(path, args.entities, args.tiles)
        steps = make_steps(path, args.entities, args.steps)
        urls = [f"sqlite:///{tmp}/online.db"] + ([args.redis_url] if args.redis_url else [])
        for url in urls:
            run(url, path, "tiles", tiles)
            run(url.replace("online.db", "online2.db"), path, "steps", steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
