"""Crafted online tables for the loader's gate and repair tests: rows given in Python, written
to ``main_online.online_<view>`` of a DuckDB file (the relation the demo registry names).

The view is the demo's hand-written ``merchant_chargeback_features`` (one feature, a rate in
[0, 1]; the declared views hold tiles, see tests/loader/crafted_views.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

VIEW = "merchant_chargeback_features"
ENTITY = "merchant"
KEY = "merchant_id"
FEATURE = "merchant_chargeback_rate_30d"
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1)
#: the crafted online table's cutoff (its ``as_of_at`` column, naive UTC)
CUTOFF = dt.datetime(2026, 5, 1)
CUTOFF_US = (CUTOFF - EPOCH) // dt.timedelta(microseconds=1)
TTL_S = 30 * 86_400  # merchant_chargeback_features: ttl 30d


def key_of(i: int) -> str:
    """The key of merchant ``i``."""
    return f"mer_{i:04d}"


def rate_of(i: int) -> float:
    """The rate of row ``i`` (shifted): an exact binary fraction in [0, 1)."""
    return (i % 8) / 8


@dataclass(frozen=True)
class KeyRow:
    """One row of online_merchant_chargeback_features (times naive UTC)."""

    key: str
    feature_at: dt.datetime
    as_of_at: dt.datetime
    rate: float

    @property
    def ts(self) -> int:
        return (self.feature_at - EPOCH) // dt.timedelta(microseconds=1)

    @property
    def ver(self) -> int:
        return (self.as_of_at - EPOCH) // dt.timedelta(microseconds=1)

    @property
    def exp(self) -> int:
        return self.ts // 1_000_000 + TTL_S

    @property
    def values(self) -> dict[str, object]:
        return {FEATURE: self.rate}


def key_rows(count: int, *, day: int = 20, shift: int = 0) -> list[KeyRow]:
    """``count`` valid rows: merchant i at 2026-04-<day> + i minutes, as-of 30 s later."""
    start = dt.datetime(2026, 4, day)
    return [
        KeyRow(
            key_of(i),
            start + dt.timedelta(minutes=i),
            start + dt.timedelta(minutes=i, seconds=30),
            rate_of(i + shift),
        )
        for i in range(count)
    ]


def write_rows(path: Path, rows: Sequence[KeyRow], cutoff: dt.datetime = CUTOFF) -> None:
    """(Re)create main_online.online_merchant_chargeback_features holding exactly ``rows``,
    each a current row as of ``cutoff`` (its change time: its as-of time, ``cutoff`` at
    most)."""
    stamp = pa.timestamp("us")
    table = pa.table(
        {
            KEY: pa.array([r.key for r in rows], pa.string()),
            "as_of_at": pa.array([cutoff] * len(rows), stamp),
            FEATURE: pa.array([r.rate for r in rows], pa.float64()),
            f"{VIEW}__feature_at": pa.array([r.feature_at for r in rows], stamp),
            f"{VIEW}__as_of_at": pa.array([r.as_of_at for r in rows], stamp),
            # one current row per merchant: its change time is its as-of time (the cutoff at
            # most)
            f"{VIEW}__changed_at": pa.array([min(r.as_of_at, cutoff) for r in rows], stamp),
        }
    )
    with duckdb.connect(str(path)) as con:
        con.sql("create schema if not exists main_online")
        con.register("crafted", table)
        con.sql(f"create or replace table main_online.online_{VIEW} as select * from crafted")
