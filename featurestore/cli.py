"""The `featurestore` command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Warehouse-native feature store: build, inspect and export features."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder to write (one sub-folder of Parquet files per raw table).")
@click.option("--users", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--merchants", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--transactions", type=click.IntRange(min=0), default=20000, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=120, show_default=True,
              help="Length of the event-time range in days.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2026-01-01",
              show_default=True, help="First day of the event-time range (UTC).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--rows-per-file", type=click.IntRange(min=1000), default=1_000_000,
              show_default=True, help="Transactions per Parquet file (bounds memory).")
def generate(out_dir: Path, users: int, merchants: int, transactions: int, days: int,
             start: dt.datetime, seed: int, rows_per_file: int) -> None:
    """Write the deterministic synthetic fraud / e-commerce dataset as Parquet."""
    from featurestore.synthetic import generate as run

    summary = run(out_dir, users=users, merchants=merchants, transactions=transactions,
                  days=days, start=start, seed=seed, rows_per_file=rows_per_file)
    for table, rows in summary.rows.items():
        click.echo(f"{table:<14}{rows:>12,} rows")
    click.echo(f"written to {out_dir}")
