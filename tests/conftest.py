"""Shared fixtures: a real dbt build of the project into a temporary DuckDB warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from servers import MotoServer, RedisServer, moto_server, redis_server

from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store

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


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """The checked-in demo data built by `dbt build` (shared by the session: do not write)."""
    warehouse = Warehouse(tmp_path_factory.mktemp("demo-warehouse"))
    warehouse.build()
    yield warehouse


# --- online stores: the same contract suite runs against SQLite, Redis and DynamoDB ---


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def moto(monkeypatch_session: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(key, value)
        yield patch


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of the given kind for one test."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        namespace = f"t{uuid.uuid4().hex[:10]}"
        return f"{server.url}?namespace={namespace}"
    server_d: MotoServer = request.getfixturevalue("moto")
    return server_d.url(table=f"fs_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """An initialized, empty store of each kind."""
    online = open_store(store_url(request.param, request, tmp_path))
    online.initialize()
    try:
        yield online
    finally:
        online.close()
