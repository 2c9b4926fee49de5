"""The offline commands: ``featurestore generate`` (the synthetic demo data),
``registry`` (the feature registry) and ``training-set`` (a point-in-time training set).

Exit codes: 0 success; 1 a clear error (bad input, failed dbt run, invalid registry); 2 a
command-line usage error; 3 ``registry check`` refused a change (README: "Exit codes").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from featurestore.commands import clean_errors, project_dir_option
from featurestore.exit_codes import ExitCode
from featurestore.historical import HistoricalFeaturesError
from featurestore.previous_registry import AgainstError
from featurestore.project import DbtError
from featurestore.registry import Registry, RegistryError
from featurestore.training_files import TrainingFileError
from featurestore.windows import Aggregation

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["generate", "offline_errors", "registry", "training_set"]

#: the errors the offline commands turn into one line and exit code 1
offline_errors = clean_errors(HistoricalFeaturesError, DbtError, RegistryError, TrainingFileError)


@click.command()
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
def generate(out_dir: Path, **options: Any) -> None:
    """Write the deterministic synthetic fraud / e-commerce dataset as Parquet.

    Point dbt at it with FEATURESTORE_RAW_PATH=OUT (no model changes needed).
    """
    from demo.synthetic import generate as run

    summary = run(out_dir, **options)
    for table, rows in summary.rows.items():
        click.echo(f"{table:<14}{rows:>12,} rows")
    click.echo(f"written to {out_dir}")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_dir_option
@click.pass_context
@offline_errors
def registry(ctx: click.Context, as_json: bool, project_dir: Path | None) -> None:
    """Print the feature registry (read from target/manifest.json; run `dbt parse` first).

    `featurestore registry check --against PATH_OR_GIT_REF` checks it against a previous
    one instead."""
    if ctx.invoked_subcommand is not None:
        return
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
        "aggregation",
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
            _aggregation_cell(feature.aggregation),
        )
    console = Console(width=200)
    console.print(table)
    if reg.feature_services:
        console.print(_services_table(reg))


def _services_table(reg: Registry) -> Table:
    """The feature services of ``featurestore registry``: one row per feature (stored, then
    request-time) of each service."""
    from rich.table import Table

    table = Table(title="Feature services")
    for column in ("service", "owner", "feature", "type", "entity", "computed from"):
        table.add_column(column)
    for service in reg.feature_services.values():
        for name in service.features:
            feature = reg.feature(name)
            entity = reg.views[feature.view].entity.name
            table.add_row(service.name, service.owner, name, feature.value_type, entity, "stored")
        for request_feature in service.request_features:
            expression = request_feature.expression
            table.add_row(
                service.name,
                service.owner,
                request_feature.name,
                expression.value_type,
                "request",
                expression.text,
            )
        for request_field in service.request_fields:
            table.add_row(
                service.name,
                service.owner,
                f"request.{request_field.name}",
                request_field.value_type,
                "request",
                "request field",
            )
    return table


@registry.command("check")
@click.option(
    "--against",
    required=True,
    metavar="PATH_OR_GIT_REF",
    help="The previous registry: a manifest.json, a dbt project folder (its "
    "target/manifest.json), or a git ref of this repository (its project is parsed).",
)
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    metavar="NAME",
    help="Accept the refused changes of this entity, view or feature (a deliberate "
    "removal); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@project_dir_option
@clean_errors(AgainstError, DbtError, RegistryError)
def registry_check(
    against: str, allowed: tuple[str, ...], as_json: bool, project_dir: Path | None
) -> None:
    """Refuse schema changes that break readers of the features: a feature removed or its
    type or aggregation changed, a view removed, moved to another entity, keys changed or
    taken offline, an entity's keys changed (README: "Schema compatibility"). New features
    and views pass; --allow NAME accepts a deliberate change. Exit 0 compatible (or every
    refused change allowed), 3 refused, 2 a bad --against, 1 an error."""
    from featurestore.compatibility import incompatibilities
    from featurestore.previous_registry import previous_registry
    from featurestore.project import Project
    from featurestore.registry import load_registry

    project = Project.at(project_dir)
    new = load_registry(project.manifest_path)
    old, where = previous_registry(against, project)
    changes = incompatibilities(old, new)
    found = [i for i in changes if i.name not in allowed]
    accepted = [i for i in changes if i.name in allowed]
    unmatched = sorted(set(allowed) - {i.name for i in changes})
    added = {
        "entities": sorted(set(new.entities) - set(old.entities)),
        "views": sorted(set(new.views) - set(old.views)),
        "features": sorted(set(new.features) - set(old.features)),
    }
    if as_json:
        report = {
            "against": where,
            "compatible": not found,
            "incompatibilities": [
                {"kind": i.kind, "subject": i.subject, "name": i.name, "message": i.message}
                for i in found
            ],
            "allowed": [
                {"kind": i.kind, "subject": i.subject, "name": i.name, "message": i.message}
                for i in accepted
            ],
            "added": added,
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for problem in found:
            click.echo(f"refused: {problem}")
        for problem in accepted:
            click.echo(f"allowed: {problem}")
        for kind, names in added.items():
            if names:
                click.echo(f"new {kind}: {', '.join(names)}")
        verdict = f"{len(found)} incompatible change(s)" if found else "compatible"
        click.echo(
            f"registry against {where}: {verdict} ({len(old.entities)} entities, "
            f"{len(old.views)} views, {len(old.features)} features checked)"
        )
    for name in unmatched:
        click.echo(f"warning: --allow {name} matched no refused change", err=True)
    if found:
        raise click.exceptions.Exit(ExitCode.REJECTED)


@click.command("training-set")
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
    default=None,
    help="Comma-separated feature names, e.g. user_7d_transaction_count,avg_order_value_90d",
)
@click.option(
    "--feature-service",
    default=None,
    metavar="NAME",
    help="A feature service instead of --features: its stored and request-time features (the "
    "labels carry its request fields as columns).",
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
@offline_errors
def training_set(
    labels_path: Path,
    feature_list: str | None,
    feature_service: str | None,
    out_path: Path,
    timestamp_column: str,
    include_feature_timestamps: bool,
    project_dir: Path | None,
) -> None:
    """Join a label file to features (--features or --feature-service) as of each row's
    timestamp; write Parquet or CSV."""
    from featurestore.historical import get_historical_features
    from featurestore.training_files import file_kind, read_spine, write_frame

    if (feature_list is None) == (feature_service is None):
        raise click.UsageError("name the features: either --features or --feature-service")
    features = (
        [name.strip() for name in feature_list.split(",") if name.strip()]
        if feature_list is not None
        else None
    )
    started = time.perf_counter()
    file_kind(out_path)  # refuse an unsupported output type before the join, not after
    spine = read_spine(labels_path, timestamp_column)
    result = get_historical_features(
        spine,
        features,
        feature_service=feature_service,
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


def _aggregation_cell(aggregation: Aggregation | None) -> str:
    """A declared feature's aggregation in the registry table: ``avg(amount) 90d/1d``
    (function, column, window/hop); ``-`` for a hand-written feature."""
    if aggregation is None:
        return "-"
    column = f"({aggregation.column})" if aggregation.column is not None else ""
    return f"{aggregation.function}{column} {aggregation.window}/{aggregation.hop}"
