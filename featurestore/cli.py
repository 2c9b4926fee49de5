"""The `featurestore` command line.

Exit codes: 0 success; 1 a clear error (bad input, failed dbt run, invalid registry);
2 command-line usage error (click).

The online commands (``init-store``, ``load``, ``loads``; behaviour in :mod:`loader`) use
these codes, for schedulers (``loader.errors``):

* 0 success (``load``: every chosen view loaded or had nothing new);
* 1 an error: missing manifest, warehouse or online relation, invalid registry or
  ``--now``, a view that failed for a reason other than validation;
* 2 usage: bad options or store URL, an unknown view or a view that is not online;
* 3 ``load`` only: the validation gate rejected at least one view (nothing of it written,
  the other views loaded);
* 4 the online store is unreachable or refused the credentials (worth retrying);
* 5 the online store has no table/schema yet (run ``featurestore init-store``).

When several apply to one ``load``: 4 or 5, then 1, then 3.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DEMO_AS_OF = "2026-05-01 00:00:00"
DEMO_FEATURES = (
    "user_7d_transaction_count",
    "avg_order_value_90d",
    "merchant_chargeback_rate_30d",
    "device_seen_before",
)

online_option = click.option(
    "--online",
    "online_url",
    required=True,
    envvar="FEATURESTORE_ONLINE_URL",
    show_envvar=True,
    help="Online store URL: sqlite:///path.db, redis://host:port/db, dynamodb://region?...",
)

project_dir_option = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The dbt project (default: the current directory).",
)


def clean_errors(command: F) -> F:
    """Turn the package's own errors into a one-line message and exit code 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from featurestore.historical import HistoricalFeaturesError
        from featurestore.project import DbtError
        from featurestore.registry import RegistryError
        from featurestore.training_files import TrainingFileError

        try:
            return command(*args, **kwargs)
        except (HistoricalFeaturesError, DbtError, RegistryError, TrainingFileError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group()
def main() -> None:
    """Warehouse-native feature store: build, inspect and export features."""


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to write (one sub-folder of Parquet files per raw table).",
)
@click.option("--users", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--merchants", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--transactions", type=click.IntRange(min=0), default=20000, show_default=True)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    help="Length of the event-time range in days.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2026-01-01",
    show_default=True,
    help="First day of the event-time range (UTC).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--rows-per-file",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    help="Transactions per Parquet file (bounds memory).",
)
def generate(
    out_dir: Path,
    users: int,
    merchants: int,
    transactions: int,
    days: int,
    start: dt.datetime,
    seed: int,
    rows_per_file: int,
) -> None:
    """Write the deterministic synthetic fraud / e-commerce dataset as Parquet.

    Point dbt at it with FEATURESTORE_RAW_PATH=OUT (no model changes needed).
    """
    from featurestore.synthetic import generate as run

    summary = run(
        out_dir,
        users=users,
        merchants=merchants,
        transactions=transactions,
        days=days,
        start=start,
        seed=seed,
        rows_per_file=rows_per_file,
    )
    for table, rows in summary.rows.items():
        click.echo(f"{table:<14}{rows:>12,} rows")
    click.echo(f"written to {out_dir}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_dir_option
@clean_errors
def registry(as_json: bool, project_dir: Path | None) -> None:
    """Print the feature registry (read from target/manifest.json; run `dbt parse` first)."""
    from rich.console import Console
    from rich.table import Table

    from featurestore.project import Project
    from featurestore.registry import load_registry

    project = Project.at(project_dir)
    reg = load_registry(project.manifest_path)
    if as_json:
        click.echo(json.dumps(reg.to_dict(), indent=2, sort_keys=False))
        return
    table = Table(title="Feature registry")
    for column in (
        "feature",
        "type",
        "entity",
        "keys",
        "view",
        "owner",
        "ttl",
        "sla",
        "online",
        "default",
    ):
        table.add_column(column)
    for feature in reg.features.values():
        view = reg.views[feature.view]
        table.add_row(
            feature.name,
            feature.value_type,
            view.entity.name,
            ",".join(view.keys),
            view.name,
            view.owner,
            view.ttl,
            view.freshness_sla,
            "yes" if view.online else "no",
            json.dumps(feature.default),
        )
    Console(width=200).print(table)


@main.command("training-set")
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Spine: Parquet or CSV with entity keys and a timestamp.",
)
@click.option(
    "--features",
    "feature_list",
    required=True,
    help="Comma-separated feature names, e.g. user_7d_transaction_count,avg_order_value_90d",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file, .parquet or .csv.",
)
@click.option("--timestamp-column", default="event_timestamp", show_default=True)
@click.option(
    "--include-feature-timestamps",
    is_flag=True,
    help="Also write <view>__feature_at and <view>__as_of_at columns.",
)
@project_dir_option
@clean_errors
def training_set(
    labels_path: Path,
    feature_list: str,
    out_path: Path,
    timestamp_column: str,
    include_feature_timestamps: bool,
    project_dir: Path | None,
) -> None:
    """Join a label file to features as of each row's timestamp; write Parquet or CSV."""
    from featurestore.historical import get_historical_features
    from featurestore.training_files import file_kind, read_spine, write_frame

    features = [name.strip() for name in feature_list.split(",") if name.strip()]
    started = time.perf_counter()
    file_kind(out_path)  # refuse an unsupported output type before the join, not after
    spine = read_spine(labels_path, timestamp_column)
    result = get_historical_features(
        spine,
        features,
        timestamp_column=timestamp_column,
        project_dir=project_dir,
        include_feature_timestamps=include_feature_timestamps,
    )
    write_frame(result, out_path)
    seconds = time.perf_counter() - started
    click.echo(
        f"wrote {len(result):,} rows x {len(result.columns)} columns to {out_path} "
        f"in {seconds:.2f} s"
    )


@main.command()
@project_dir_option
@clean_errors
@click.option("--offline-only", is_flag=True, help="Stop after the training set.")
def demo(project_dir: Path | None, offline_only: bool) -> None:
    """Run the whole path on the demo data: dbt build, a training set, a load into the
    embedded store, the sidecar answering the design document's sample request."""
    from featurestore.demo import run_demo, run_online_demo

    run_demo(project_dir, as_of=DEMO_AS_OF, features=DEMO_FEATURES, echo=click.echo)
    if not offline_only:
        run_online_demo(project_dir, as_of=DEMO_AS_OF, echo=click.echo)


# --- online store: init-store, load, loads (behaviour documented in loader/__init__.py) ---


def _store_exit_code(exc: Exception) -> int:
    from featurestore.online.store import StoreNotInitialized, StoreUnavailable
    from featurestore.online.urls import UnsupportedStoreURL
    from loader.errors import (
        EXIT_ERROR,
        EXIT_STORE_NOT_INITIALIZED,
        EXIT_STORE_UNAVAILABLE,
        EXIT_USAGE,
        LoaderError,
    )

    if isinstance(exc, LoaderError):
        return exc.exit_code
    if isinstance(exc, StoreNotInitialized):
        return EXIT_STORE_NOT_INITIALIZED
    if isinstance(exc, StoreUnavailable):
        return EXIT_STORE_UNAVAILABLE
    if isinstance(exc, UnsupportedStoreURL):
        return EXIT_USAGE
    return EXIT_ERROR


def store_errors(command: F) -> F:
    """Turn store and loader errors into ``Error: <message>`` and their exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from featurestore.online.store import StoreError
        from loader.errors import LoaderError

        try:
            return command(*args, **kwargs)
        except (StoreError, LoaderError) as exc:
            click.echo(f"Error: {exc}", err=True)
            raise click.exceptions.Exit(_store_exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


@main.command("init-store")
@online_option
@store_errors
def init_store(online_url: str) -> None:
    """Create the online store's table/schema (idempotent)."""
    from featurestore.online.urls import open_store

    with open_store(online_url) as store:
        store.initialize()
        store.check()
        click.echo(f"initialized {store.description}")


@main.command()
@online_option
@click.option(
    "--views",
    "view_list",
    default=None,
    help="Comma-separated online feature views (default: every online view).",
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Read every row, not only those newer than the view's watermark.",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows per Arrow batch read from the warehouse and per store write.",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    envvar="FEATURESTORE_NOW",
    show_envvar=True,
    help="The current time, ISO 8601 UTC (for TTLs; default: the clock).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "progress"]),
    default="auto",
    show_default=True,
    help="auto: a progress bar if stderr is a terminal, JSON log lines otherwise.",
)
@project_dir_option
def load(
    online_url: str,
    view_list: str | None,
    full_refresh: bool,
    batch_rows: int,
    now_text: str | None,
    log_format: str,
    project_dir: Path | None,
) -> None:
    """Load the warehouse's latest feature values into an online store.

    Incremental by default (rows newer than each view's watermark), validated with
    great_expectations before anything of a view is written. Exit codes: 0 ok, 1 error,
    2 usage (unknown or offline view), 3 a view rejected by validation, 4 store
    unavailable, 5 store not initialized.
    """
    import sys

    from featurestore.online.store import StoreError
    from featurestore.online.urls import open_store
    from loader import LoaderError, load_project, parse_now
    from loader.output import JsonReporter, ProgressReporter, summary_lines

    progress = log_format == "progress" or (log_format == "auto" and sys.stderr.isatty())
    reporter = ProgressReporter() if progress else JsonReporter()
    views = None
    if view_list is not None:
        views = [name.strip() for name in view_list.split(",") if name.strip()]
    try:
        now = parse_now(now_text)
        with open_store(online_url) as store:
            report = load_project(
                store,
                project_dir=project_dir,
                views=views,
                full_refresh=full_refresh,
                batch_rows=batch_rows,
                now=now,
                reporter=reporter,
            )
    except (StoreError, LoaderError) as exc:
        code = _store_exit_code(exc)
        reporter.error(str(exc), code)
        raise click.exceptions.Exit(code) from None
    for line in summary_lines(report):
        click.echo(line)
    if report.aborted is not None:
        reporter.error(report.aborted[1], report.aborted[0])
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


@main.command()
@online_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_errors
def loads(online_url: str, limit: int, as_json: bool) -> None:
    """List the loads recorded in an online store, newest first."""
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    from featurestore.online.urls import open_store
    from loader.run import _iso

    with open_store(online_url) as store:
        store.check()
        records = store.list_loads(limit)
        description = store.description
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in records], indent=2))
        return
    if not records:
        click.echo(f"no loads recorded in {description}")
        return
    table = Table(title=f"Loads in {description}")
    for column in (
        "started (UTC)", "finished (UTC)", "load", "view", "outcome", "read", "written",
        "skipped", "rejected", "watermark before", "watermark after", "message",
    ):  # fmt: skip
        table.add_column(column)
    for record in records:
        table.add_row(
            record.started_at,
            record.finished_at,
            record.load_id[:8],
            record.view,
            record.outcome,
            f"{record.rows_read:,}",
            f"{record.rows_written:,}",
            f"{record.rows_skipped:,}",
            f"{record.rows_rejected:,}",
            _iso(record.watermark_before) or "-",
            _iso(record.watermark_after) or "-",
            record.message,
        )
    Console(width=250).print(table)


def _register_serve() -> None:
    """`featurestore serve` lives with the sidecar (sidecar/cli.py)."""
    from sidecar.cli import serve_command

    main.add_command(serve_command)


_register_serve()
