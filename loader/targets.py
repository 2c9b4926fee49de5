"""Which warehouse the dbt profile's current target names: :func:`open_warehouse` (a
``duckdb`` or ``snowflake`` target) and :func:`resolve_duckdb_path` (the DuckDB file)."""

from __future__ import annotations

import os
from pathlib import Path

from featurestore.project import DbtError, Project, configured_target, current_target, duckdb_path
from featurestore.snowflake_connection import SnowflakeConnectionError, SnowflakeSettings
from loader.duckdb_warehouse import DuckDBWarehouse
from loader.errors import WarehouseError
from loader.snowflake_warehouse import SnowflakeWarehouse
from loader.warehouse import Warehouse

__all__ = ["open_warehouse", "resolve_duckdb_path"]


def resolve_duckdb_path(project: Project) -> Path:
    """The warehouse file: ``$FEATURESTORE_DUCKDB_PATH`` (relative to the project) or the
    path the dbt profile's current target resolves to (a dbt compile, a few seconds)."""
    configured = os.environ.get("FEATURESTORE_DUCKDB_PATH")
    if configured and os.environ.get("FEATURESTORE_TARGET", "duckdb") == "duckdb":
        path = Path(configured)
        return path if path.is_absolute() else project.root / path
    try:
        return duckdb_path(project)
    except DbtError as exc:
        raise WarehouseError(f"cannot locate the DuckDB warehouse: {exc}") from None


def open_warehouse(project: Project) -> Warehouse:
    """The warehouse of the dbt profile's current target, not yet connected: a
    :class:`~loader.duckdb_warehouse.DuckDBWarehouse` for a ``duckdb`` target, a
    :class:`~loader.snowflake_warehouse.SnowflakeWarehouse` for a ``snowflake`` one.

    The target is chosen as everywhere in the project: ``project.target`` or the profile's
    default (``$FEATURESTORE_TARGET``, default ``duckdb``), its type read by a dbt compile. A
    ``duckdb`` target with ``$FEATURESTORE_DUCKDB_PATH`` set skips the compile; a
    ``snowflake`` one has its ``SNOWFLAKE_*`` variables checked first, so that a missing one
    is named (with all the others missing) before dbt fails on the first.
    """
    named = configured_target(project)
    if named == "duckdb" and os.environ.get("FEATURESTORE_DUCKDB_PATH"):
        return DuckDBWarehouse(resolve_duckdb_path(project))
    try:
        if named == "snowflake":
            SnowflakeSettings.from_env()
        try:
            target = current_target(project)
        except DbtError as exc:
            raise WarehouseError(f"cannot read the dbt target {named!r}: {exc}") from None
        if target.type == "duckdb":
            path = Path(target.path)
            return DuckDBWarehouse(path if path.is_absolute() else project.root / path)
        if target.type == "snowflake":
            return SnowflakeWarehouse(SnowflakeSettings.from_env())
    except SnowflakeConnectionError as exc:
        raise WarehouseError(str(exc)) from None
    raise WarehouseError(
        f"the dbt target {named!r} is of type {target.type!r}: the loader reads duckdb and "
        "snowflake targets"
    )
