"""``featurestore skew``: the training-serving skew report (README "Training-serving skew").

Exit codes: 0 every feature at or below its threshold (or nothing compared); 3 a feature's
mismatch rate above its threshold; 1 an error (no warehouse, no log folder, a failed dbt
run); 2 usage (README: "Exit codes").
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from featurestore.commands import clean_errors, project_dir_option
from featurestore.exit_codes import ExitCode
from featurestore.project import DbtError
from featurestore.skew import DEFAULT_LOG_DIR, LOG_DIR_ENV, FeatureSkew, SkewError

__all__ = ["skew"]


@click.command("skew")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--build/--no-build",
    default=True,
    show_default=True,
    help="Build the monitoring models over the log first (dbt build --select source:served+); "
    "--no-build reads the report as last built.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar=LOG_DIR_ENV,
    show_envvar=True,
    help=f"The served-vector log folder (default {DEFAULT_LOG_DIR} in the project; DuckDB "
    "target only: on Snowflake the log is a table loaded from a stage).",
)
@project_dir_option
@clean_errors(SkewError, DbtError)
def skew(as_json: bool, build: bool, log_dir: Path | None, project_dir: Path | None) -> None:
    """Compare what the sidecar served (its served-vector log) with the warehouse's
    point-in-time values, per online feature; exit 3 when a feature's mismatch rate is above
    its threshold (meta.featurestore.skew_threshold, default 0)."""
    from featurestore.project import Project
    from featurestore.skew import skew_report

    report = skew_report(Project.at(project_dir), build=build, log_dir=log_dir)
    above = [row.feature for row in report if row.above_threshold]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "features": [row.to_dict() for row in report],
                    "above_threshold": above,
                    "rows_compared": sum(row.rows_compared for row in report),
                },
                indent=2,
            )
        )
    else:
        _print_table(report)
        compared = sum(row.rows_compared for row in report)
        verdict = f"{len(above)} above threshold: {', '.join(above)}" if above else "ok"
        click.echo(f"{compared:,} logged values compared, {len(report)} features: {verdict}")
    if above:
        raise click.exceptions.Exit(ExitCode.REJECTED)


def _print_table(report: list[FeatureSkew]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Training-serving skew")
    for column in (
        "feature",
        "view",
        "compared",
        "exact",
        "mismatch",
        "value diff",
        "served, not offline",
        "offline, defaulted",
        "mean |diff|",
        "store down",
        "threshold",
        "",
    ):
        table.add_column(column)
    for row in report:
        table.add_row(
            row.feature,
            row.feature_view,
            f"{row.rows_compared:,}",
            _rate(row.exact_match_rate),
            _rate(row.mismatch_rate),
            str(row.value_mismatches),
            str(row.served_but_missing_offline),
            str(row.offline_but_defaulted_online),
            "-" if row.mean_abs_diff is None else f"{row.mean_abs_diff:.6g}",
            str(row.store_unavailable),
            _rate(row.threshold),
            "ABOVE" if row.above_threshold else "ok",
        )
    Console(width=200).print(table)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.4%}"
