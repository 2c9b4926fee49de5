"""Which warehouse the dbt target names (loader/targets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.project import Project
from loader import DuckDBWarehouse, WarehouseError, open_warehouse, resolve_duckdb_path
from loader.snowflake_warehouse import AUTH_ENV, REQUIRED_ENV
from tests.warehouse import REPO


def test_warehouse_path_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATURESTORE_TARGET", raising=False)
    monkeypatch.setenv("FEATURESTORE_DUCKDB_PATH", "elsewhere/wh.duckdb")
    assert resolve_duckdb_path(Project.at(REPO)) == REPO / "elsewhere" / "wh.duckdb"
    monkeypatch.setenv("FEATURESTORE_DUCKDB_PATH", "/abs/wh.duckdb")
    assert resolve_duckdb_path(Project.at(REPO)) == Path("/abs/wh.duckdb")


def test_a_duckdb_path_in_the_environment_skips_the_dbt_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURESTORE_TARGET", "duckdb")
    monkeypatch.setenv("FEATURESTORE_DUCKDB_PATH", "elsewhere/wh.duckdb")
    chosen = open_warehouse(Project(root=REPO, profiles_dir=Path("/nonexistent")))
    assert isinstance(chosen, DuckDBWarehouse)
    assert chosen.path == REPO / "elsewhere" / "wh.duckdb"


def test_a_snowflake_target_names_every_missing_variable_before_dbt_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (*REQUIRED_ENV, *AUTH_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "acct")
    monkeypatch.setenv("FEATURESTORE_TARGET", "snowflake")
    project = Project(root=REPO, profiles_dir=Path("/nonexistent"))  # dbt would fail on it
    with pytest.raises(WarehouseError) as caught:
        open_warehouse(project)
    message = str(caught.value)
    assert all(name in message for name in REQUIRED_ENV if name != "SNOWFLAKE_ACCOUNT")
    assert "SNOWFLAKE_ACCOUNT" not in message and "SNOWFLAKE_PASSWORD" in message
