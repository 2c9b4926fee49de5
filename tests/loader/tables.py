"""Crafted online tables for the loader's gate and repair tests: rows given in Python, written
to ``main_online.online_<view>`` of a DuckDB file (the relation the demo registry names)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

VIEW = "user_transaction_features"
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1)
#: the crafted online table's cutoff (its ``as_of_at`` column, naive UTC)
CUTOFF = dt.datetime(2026, 5, 1)
CUTOFF_US = (CUTOFF - EPOCH) // dt.timedelta(microseconds=1)
TTL_S = 90 * 86_400  # user_transaction_features: ttl 90d


@dataclass(frozen=True)
class UserRow:
    """One row of online_user_transaction_features (times naive UTC)."""

    user_id: str
    feature_at: dt.datetime
    as_of_at: dt.datetime
    count: int
    average: float

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
        return {"user_7d_transaction_count": self.count, "avg_order_value_90d": self.average}


def user_rows(count: int, *, day: int = 20, shift: int = 0) -> list[UserRow]:
    """``count`` valid rows: user i at 2026-04-<day> + i minutes, as-of 30 s later."""
    start = dt.datetime(2026, 4, day)
    return [
        UserRow(
            f"usr_{i:04d}",
            start + dt.timedelta(minutes=i),
            start + dt.timedelta(minutes=i, seconds=30),
            (i + shift) % 7,
            (i + shift) * 1.25,
        )
        for i in range(count)
    ]


def write_users(path: Path, rows: Sequence[UserRow], cutoff: dt.datetime = CUTOFF) -> None:
    """(Re)create main_online.online_user_transaction_features holding exactly ``rows``, each
    a current row as of ``cutoff`` (its change time: its as-of time, ``cutoff`` at most)."""
    stamp = pa.timestamp("us")
    table = pa.table(
        {
            "user_id": pa.array([r.user_id for r in rows], pa.string()),
            "as_of_at": pa.array([cutoff] * len(rows), stamp),
            "user_7d_transaction_count": pa.array([r.count for r in rows], pa.int64()),
            "avg_order_value_90d": pa.array([r.average for r in rows], pa.float64()),
            f"{VIEW}__feature_at": pa.array([r.feature_at for r in rows], stamp),
            f"{VIEW}__as_of_at": pa.array([r.as_of_at for r in rows], stamp),
            # one current row per user: its change time is its as-of time (the cutoff at most)
            f"{VIEW}__changed_at": pa.array([min(r.as_of_at, cutoff) for r in rows], stamp),
        }
    )
    with duckdb.connect(str(path)) as con:
        con.sql("create schema if not exists main_online")
        con.register("crafted", table)
        con.sql(f"create or replace table main_online.online_{VIEW} as select * from crafted")
