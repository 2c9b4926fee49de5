"""A real dbt build of the project into a temporary DuckDB warehouse (:class:`Warehouse`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
DBT = str(Path(sys.executable).parent / "dbt")
DEMO_AS_OF = "2026-05-01 00:00:00"


@dataclass
class Warehouse:
    """A dbt target living in a temporary folder: its DuckDB file and its target/ folder."""

    workdir: Path
    raw_path: Path = REPO / "data" / "demo"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "warehouse.duckdb"

    @property
    def target_path(self) -> Path:
        return self.workdir / "target"

    @property
    def env(self) -> dict[str, str]:
        return {
            "FEATURESTORE_DUCKDB_PATH": str(self.duckdb_path),
            "FEATURESTORE_RAW_PATH": str(self.raw_path),
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.workdir / "logs"),
            "DBT_PROFILES_DIR": str(REPO),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            # the served-vector log the monitoring models read: none, unless a test writes it
            "FEATURESTORE_SERVED_LOG_DIR": str(self.workdir / "served"),
            **self.extra_env,
        }

    def dbt(
        self, *args: str, check: bool = True, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the dbt CLI in the repo against this warehouse."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        proc = subprocess.run(
            [DBT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"dbt {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def build(self, *extra: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dbt("build", "--vars", f"{{online_as_of: '{DEMO_AS_OF}'}}", *extra)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as con:
            return con.sql(sql).fetchall()

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point in-process code (get_historical_features) at this warehouse."""
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(REPO)
