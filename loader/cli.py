"""The loader's commands: ``featurestore init-store``, ``load``, ``loads`` and
``freshness`` (behaviour in :mod:`loader`; exit codes in the README's "Exit codes"
section).

The composition layer adds them to the ``featurestore`` group (``cli/main.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import click

from featurestore.clock import parse_now
from featurestore.commands import clean_errors, now_option, online_option, project_dir_option
from featurestore.exit_codes import ExitCode, exit_code_of
from featurestore.online.store import StoreError
from featurestore.online.urls import open_store
from featurestore.project import DbtError
from featurestore.registry import RegistryError
from featurestore.timestamps import iso_micros
from loader.errors import LoaderError
from loader.parallel import MAX_PROCESSES

__all__ = ["freshness", "init_store", "load", "loads"]

#: ``--views a,b`` (parsed by :func:`_view_names`)
views_option = click.option(
    "--views",
    "view_list",
    default=None,
    help="Comma-separated online feature views (default: every online view).",
)


def _view_names(view_list: str | None) -> list[str] | None:
    """The names ``--views`` gave (None: every online view)."""
    if view_list is None:
        return None
    return [name.strip() for name in view_list.split(",") if name.strip()]


#: store and loader errors: one line and their exit code
store_errors = clean_errors(StoreError, LoaderError)


@click.command("init-store")
@online_option
@store_errors
def init_store(online_url: str) -> None:
    """Create the online store's table/schema (idempotent)."""
    with open_store(online_url) as store:
        store.initialize()
        store.check()
        click.echo(f"initialized {store.description}")


@click.command()
@online_option
@views_option
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Read every row, replace the views' records whatever their order and reset their "
    "watermarks (the repair after a bad load; README: Repairing a view).",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows per Arrow batch read from the warehouse and per store write.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=MAX_PROCESSES),
    default=1,
    show_default=True,
    help="Load each view with this many processes, each reading, validating and writing the "
    "entities of one hash range of the key (DuckDB target only; README: Parallel loads).",
)
@now_option("The current time, ISO 8601 UTC (for TTLs; default: the clock).")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "progress"]),
    default="auto",
    show_default=True,
    help="auto: a progress bar if stderr is a terminal, JSON log lines otherwise.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FEATURESTORE_LOADER_METRICS_FILE",
    show_envvar=True,
    default=None,
    help="After the load, write its outcome per view and every online view's freshness "
    "gauges there in Prometheus' text format (for node_exporter's textfile collector; "
    "loader/metrics_file.py).",
)
@project_dir_option
def load(
    online_url: str,
    view_list: str | None,
    full_refresh: bool,
    batch_rows: int,
    processes: int,
    now_text: str | None,
    log_format: str,
    metrics_file: Path | None,
    project_dir: Path | None,
) -> None:
    """Load the warehouse's latest feature values into an online store.

    Incremental by default (rows newer than each view's watermark), validated with
    great_expectations before anything of a view is written. Exit codes: the README's
    "Exit codes" section.
    """
    from loader.output import JsonReporter, ProgressReporter, summary_lines
    from loader.run import load_project

    progress = log_format == "progress" or (log_format == "auto" and sys.stderr.isatty())
    reporter = ProgressReporter() if progress else JsonReporter()
    views = _view_names(view_list)
    try:
        try:
            now = parse_now(now_text)
        except ValueError as exc:
            raise LoaderError(f"invalid time: {exc}") from None
        with open_store(online_url) as store:
            report = load_project(
                store,
                project_dir=project_dir,
                views=views,
                full_refresh=full_refresh,
                batch_rows=batch_rows,
                now=now,
                reporter=reporter,
                processes=processes,
                store_factory=functools.partial(open_store, online_url),
            )
            if metrics_file is not None:
                from loader.metrics_file import write_load_metrics

                write_load_metrics(metrics_file, report, store, project_dir, now)
    except (StoreError, LoaderError) as exc:
        code = exit_code_of(exc)
        reporter.error(str(exc), code)
        raise click.exceptions.Exit(code) from None
    for line in summary_lines(report):
        click.echo(line)
    if report.aborted is not None:
        reporter.error(report.aborted[1], report.aborted[0])
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


@click.command()
@online_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_errors
def loads(online_url: str, limit: int, as_json: bool) -> None:
    """List the loads recorded in an online store, newest first."""
    from rich.console import Console
    from rich.table import Table

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
            _watermark(record.watermark_before),
            _watermark(record.watermark_after),
            record.message,
        )
    Console(width=250).print(table)


def _watermark(value: int | None) -> str:
    return "-" if value is None else iso_micros(value)


@click.command("freshness")
@online_option
@views_option
@now_option("The current time, ISO 8601 UTC (default: the clock).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_dir_option
@clean_errors(StoreError, LoaderError, RegistryError, DbtError)
def freshness(
    online_url: str,
    view_list: str | None,
    now_text: str | None,
    as_json: bool,
    project_dir: Path | None,
) -> None:
    """How old each online view's data is against its freshness SLA (README: Freshness
    SLAs); exit 6 when any view is older than its SLA or was never loaded (for schedulers)."""
    import datetime as dt

    from featurestore.freshness import freshness as view_freshness
    from featurestore.project import Project
    from featurestore.registry import load_registry

    try:
        now = parse_now(now_text) or dt.datetime.now(dt.UTC)
    except ValueError as exc:
        raise LoaderError(f"invalid time: {exc}") from None
    registry = load_registry(Project.at(project_dir).manifest_path)
    views = _view_names(view_list)
    if views is not None:
        for name in views:
            view = registry.view(name)
            if not view.online:
                raise LoaderError(f"feature view {name!r} is not online")
    with open_store(online_url) as store:
        store.check()
        report = view_freshness(registry, store, now, views)
    if as_json:
        click.echo(json.dumps([item.to_dict() for item in report], indent=2))
    else:
        for item in report:
            age = "never loaded" if item.age_seconds is None else f"age {item.age_seconds:,.0f} s"
            as_of = "-" if item.data_as_of is None else item.data_as_of.isoformat() + "Z"
            verdict = "BREACHED" if item.breached else "ok"
            click.echo(
                f"{item.view}: {verdict}: data as of {as_of} ({item.source}), {age}, "
                f"SLA {item.sla_seconds:,} s"
            )
    if any(item.breached for item in report):
        raise click.exceptions.Exit(ExitCode.STALE)
