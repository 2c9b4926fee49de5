"""``featurestore catalog --out DIR``: write the feature catalog (README "Catalog"), the
page ``DIR/index.html`` and the document ``DIR/catalog.json``, from the registry and,
with ``--online``, every online view's freshness read from that store at build time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from featurestore.clock import parse_now
from featurestore.commands import clean_errors, now_option, project_dir_option
from featurestore.online.store import StoreError
from featurestore.project import DbtError
from featurestore.registry import RegistryError

__all__ = ["catalog"]


class CatalogError(ValueError):
    """A bad option value (exit 1)."""


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write index.html and catalog.json into (created if missing).",
)
@click.option(
    "--online",
    "online_url",
    default=None,
    envvar="FEATURESTORE_ONLINE_URL",
    show_envvar=True,
    help="Online store URL to read each online view's current freshness from (its load log "
    "and stream watermarks); without it the page says freshness was not checked.",
)
@now_option("The build time the freshness is measured at, ISO 8601 UTC (default: the clock).")
@project_dir_option
@clean_errors(StoreError, RegistryError, DbtError, CatalogError)
def catalog(
    out_dir: Path, online_url: str | None, now_text: str | None, project_dir: Path | None
) -> None:
    """Write the feature catalog page: search features by name, owner and entity; per
    feature its type, description, TTL, freshness, default, services and lineage."""
    from featurestore.catalog import build_catalog, write_catalog
    from featurestore.freshness import freshness
    from featurestore.online.urls import open_store
    from featurestore.project import Project
    from featurestore.registry import load_registry

    try:
        now = parse_now(now_text) or dt.datetime.now(dt.UTC)
    except ValueError as exc:
        raise CatalogError(f"invalid --now: {exc}") from None
    registry = load_registry(Project.at(project_dir).manifest_path)
    if online_url is None:
        document = build_catalog(registry, now)
    else:
        with open_store(online_url) as store:
            store.check()
            document = build_catalog(
                registry, now, freshness(registry, store, now), store.description
            )
    for path in write_catalog(document, out_dir):
        click.echo(f"wrote {path}")
