"""The loader reading Snowflake (loader/snowflake_warehouse.py), without a Snowflake account.

fakesnow's in-process ``patch()`` replaces the connector's cursor with its own, which has no
``fetch_arrow_batches`` (nor ``fetch_arrow_all``), so it cannot exercise the reader. Its
server mode can: ``fakesnow.server()`` answers the Snowflake REST protocol, and the real
``snowflake.connector`` logs in over HTTP, runs the reader's SQL (fakesnow translates it to
DuckDB) and decodes the Arrow result itself, so ``fetch_arrow_batches`` is the connector's
own. The only test seam is the server's address (host, port, http), added to the
connector's ``connect`` arguments; everything the loader sends (account, user, password,
role, warehouse, database, schema) comes from the ``SNOWFLAKE_*`` variables.

The data: the demo warehouse's online tables (built by real dbt on DuckDB), read with plain
DuckDB SQL and inserted into fakesnow as Snowflake tables with unquoted (upper-case) columns,
under the database and schemas a ``dbt parse --target snowflake`` writes into its manifest.
A load through ``load_project`` (which picks the Snowflake reader from the dbt target) must
leave a SQLite store byte-for-byte equal to a load of the same views from DuckDB.

What fakesnow cannot show (README, "Loading the online store"): results come back in one
inline chunk, never in several downloaded chunks, so memory staying flat across chunks
rests on the connector's documented behaviour (the re-chunking is tested with small
batches); it accepts any credentials, so a refused login is shown with the connector's own
error class and errno raised at ``connect``; role grants are not checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from featurestore.online.store import OnlineStore, ViewRead
from featurestore.online.urls import open_store
from featurestore.project import Project
from featurestore.registry import Registry, load_registry
from featurestore.snowflake_connection import SnowflakeConnectionError
from loader import (
    DuckDBWarehouse,
    SnowflakeSettings,
    SnowflakeWarehouse,
    ViewSource,
    WarehouseError,
    load,
    load_project,
    open_warehouse,
    plan_views,
)
from loader.snowflake_warehouse import AUTH_ENV, REQUIRED_ENV, conform, rebatch, relation_name
from tests.snowflake_server import FakeSnowflake, fake_snowflake_server
from tests.warehouse import REPO, Warehouse

fakesnow = pytest.importorskip("fakesnow")
import snowflake.connector  # noqa: E402  (after the skip: fakesnow brings the connector)

pytestmark = pytest.mark.filterwarnings(
    # fakesnow reads results through DuckDB 2.0's DB-API arrow path, which warns (in the
    # server's threads too, where an error would become an HTTP 500)
    "ignore:Arrow output on a DB-API result:UserWarning"
)

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
VIEWS = (
    "merchant_chargeback_features",
    "merchant_transaction_features",
    "user_device_features",
    "user_transaction_features",
)
PASSWORD = "pw-Sekret-4711"
SF_ENV = {
    "FEATURESTORE_TARGET": "snowflake",
    "SNOWFLAKE_ACCOUNT": "fs_test_account",
    "SNOWFLAKE_USER": "loader_user",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "LOADER",
    "SNOWFLAKE_WAREHOUSE": "LOAD_WH",
    "SNOWFLAKE_DATABASE": "FS_DB",
    "SNOWFLAKE_SCHEMA": "ANALYTICS",
}
#: how the tests' own statements connect (the server's address is added)
SF_CONNECT = SnowflakeSettings.from_env(SF_ENV).connect_args()

# --- fixtures: a Snowflake manifest, a fakesnow server holding the demo online tables -------


def target_env(target_path: Path) -> dict[str, str]:
    """The Snowflake target's variables, dbt's folders under ``target_path``."""
    return {
        **SF_ENV,
        "DBT_TARGET_PATH": str(target_path),
        "DBT_LOG_PATH": str(target_path.parent / "logs"),
        "DBT_PROFILES_DIR": str(REPO),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


@dataclasses.dataclass
class SnowflakeTarget:
    """``dbt parse --target snowflake`` of the project into its own target folder."""

    target_path: Path
    registry: Registry

    def env(self) -> dict[str, str]:
        return target_env(self.target_path)

    def sources(self, names: tuple[str, ...] = VIEWS) -> list[ViewSource]:
        return plan_views(self.registry, list(names))


@pytest.fixture(scope="module")
def sf_target(tmp_path_factory: pytest.TempPathFactory) -> SnowflakeTarget:
    target_path = tmp_path_factory.mktemp("sf-target") / "target"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--target", "snowflake"],
        cwd=REPO,
        env={**os.environ, **target_env(target_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = target_path / "manifest.json"
    return SnowflakeTarget(target_path, load_registry(manifest))


def literal(value: object) -> str:
    """A Snowflake SQL literal (the demo values: text, numbers, booleans, timestamps)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat(sep=' ', timespec='microseconds')}'::timestamp_ntz"
    return "'" + str(value).replace("'", "''") + "'"


@pytest.fixture(scope="module")
def fake_snowflake(
    demo_warehouse: Warehouse, sf_target: SnowflakeTarget
) -> Iterator[FakeSnowflake]:
    """The demo warehouse's online tables copied into fakesnow, where the Snowflake manifest
    says they are, with unquoted column names (stored upper-case, as dbt-snowflake does)."""
    connect_args = SnowflakeSettings.from_env(SF_ENV).connect_args()
    with fake_snowflake_server() as server:
        copied = server.copy_from_duckdb(
            connect_args,
            demo_warehouse.duckdb_path,
            {
                f"main_online.online_{source.name}": (source.database, source.schema, source.table)
                for source in sf_target.sources()
                if source.database is not None
            },
        )
        assert len(copied) == len(VIEWS)
        assert min(copied.values()) > 10  # merchant_transaction_features: 14
        yield server


@pytest.fixture
def use_fake_snowflake(
    fake_snowflake: FakeSnowflake, sf_target: SnowflakeTarget, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """The Snowflake target in the environment; ``connect`` reaches the fakesnow server.
    Returns the keyword arguments of every connect call (without the server's address)."""
    for key, value in sf_target.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FEATURESTORE_DUCKDB_PATH", raising=False)
    monkeypatch.chdir(REPO)
    return fake_snowflake.route(monkeypatch)


def sqlite_store(path: Path) -> OnlineStore:
    store = open_store(f"sqlite:///{path}")
    store.initialize()
    return store


def store_contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every record and watermark of a SQLite store, read with plain SQL."""
    with sqlite3.connect(path) as con:
        return {
            "records": con.execute(
                "select entity, entity_key, view, ts, ver, exp, payload from online_records "
                "order by entity, entity_key, view"
            ).fetchall(),
            "watermarks": con.execute(
                "select view, watermark from loader_watermarks order by view"
            ).fetchall(),
        }


# --- the whole load: Snowflake target -> SQLite, equal to the DuckDB load ------------------


def test_snowflake_load_equals_the_duckdb_load(
    use_fake_snowflake: list[dict[str, Any]],
    demo_warehouse: Warehouse,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the connector's own debug logs too
    with sqlite_store(tmp_path / "sf.db") as store:
        # batches of 97 rows: fakesnow sends one chunk, the reader cuts it into many
        report = load_project(store, project_dir=REPO, now=NOW, batch_rows=97)
    assert report.exit_code == 0, [r.message for r in report.views]
    assert [call["account"] for call in use_fake_snowflake] == [SF_ENV["SNOWFLAKE_ACCOUNT"]]
    (call,) = use_fake_snowflake
    assert {
        k: call[k] for k in ("user", "password", "role", "warehouse", "database", "schema")
    } == {
        "user": "loader_user",
        "password": PASSWORD,
        "role": "LOADER",
        "warehouse": "LOAD_WH",
        "database": "FS_DB",
        "schema": "ANALYTICS",
    }
    assert {r.relation for r in report.views} == {
        f"FS_DB.ANALYTICS_online.online_{name}" for name in VIEWS
    }

    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    with sqlite_store(tmp_path / "duck.db") as store:
        duck = load(store, demo_warehouse.duckdb_path, plan_views(registry, None), now=NOW)
    assert duck.exit_code == 0
    assert [(r.view, r.rows_read, r.rows_written) for r in report.views] == [
        (r.view, r.rows_read, r.rows_written) for r in duck.views
    ]
    assert all(r.rows_read > 10 for r in report.views)  # merchant_transaction_features: 14
    from_snowflake, from_duckdb = (
        store_contents(tmp_path / "sf.db"),
        store_contents(tmp_path / "duck.db"),
    )
    assert len(from_snowflake["records"]) == sum(r.rows_written for r in duck.views)
    assert from_snowflake == from_duckdb

    output = capfd.readouterr()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PASSWORD not in output.out + output.err + logged


def test_the_target_chooses_the_reader(
    sf_target: SnowflakeTarget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in sf_target.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FEATURESTORE_DUCKDB_PATH", raising=False)
    chosen = open_warehouse(Project.at(REPO))  # a dbt compile of the snowflake target
    assert isinstance(chosen, SnowflakeWarehouse)
    assert chosen.settings == SnowflakeSettings.from_env(SF_ENV)
    assert chosen.description == "snowflake://loader_user@fs_test_account/FS_DB"
    assert PASSWORD not in repr(chosen.settings) + chosen.description

    monkeypatch.setenv("FEATURESTORE_TARGET", "duckdb")
    monkeypatch.setenv("FEATURESTORE_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))
    duck = open_warehouse(Project.at(REPO))
    assert isinstance(duck, DuckDBWarehouse) and duck.path == tmp_path / "wh.duckdb"


def test_profiles_and_reader_read_the_same_variables() -> None:
    """The reader's variables are exactly the snowflake target's, required ones without a
    default, login ones with one."""
    profiles = yaml.safe_load((REPO / "profiles.yml").read_text())
    target = profiles["featurestore"]["outputs"]["snowflake"]
    env_var = re.compile(r"env_var\('(?P<name>\w+)'(?P<default>\s*,[^)]*)?\)")
    found = [env_var.search(value) for value in target.values() if isinstance(value, str)]
    names = {match["name"]: match["default"] is not None for match in found if match}
    assert {name for name, default in names.items() if not default} == set(REQUIRED_ENV)
    assert {name for name, default in names.items() if default} == set(AUTH_ENV)


# --- incremental: the second load reads only rows newer than the watermark -----------------


def test_incremental_load_reads_only_newer_rows(
    fake_snowflake: FakeSnowflake, sf_target: SnowflakeTarget, tmp_path: Path
) -> None:
    (source,) = sf_target.sources(("merchant_chargeback_features",))  # hand-written
    copy = dataclasses.replace(source, database="FS_INCREMENTAL")
    fake_snowflake.execute(
        SF_CONNECT,
        "create database if not exists FS_INCREMENTAL",
        f"create schema if not exists FS_INCREMENTAL.{source.schema}",
        f"create or replace table {relation_name(copy)} as select * from {relation_name(source)}",
    )
    warehouse = SnowflakeWarehouse(
        SnowflakeSettings.from_env(SF_ENV), connect_options=fake_snowflake.address
    )
    with sqlite_store(tmp_path / "online.db") as store:
        first = load(store, warehouse, [copy], now=NOW)
        (result,) = first.views
        assert result.outcome == "success" and result.rows_read > 50
        watermark = store.get_watermark(source.name)
        assert watermark == result.watermark_after

        # three merchants with one row (no scheduled row), changed at the cutoff (`as_of_at`)
        keys = [row[0] for row in fake_snowflake.execute(
            SF_CONNECT,
            f"select merchant_id from {relation_name(copy)} group by merchant_id "
            "having count(*) = 1 order by merchant_id limit 3"
        )]  # fmt: skip
        assert len(keys) == 3
        ver, ts = f"{source.name}__as_of_at", f"{source.name}__feature_at"
        changed = f"{source.name}__changed_at"
        fake_snowflake.execute(
            SF_CONNECT,
            f"update {relation_name(copy)} set {ts} = dateadd(minute, 1, {ts}), "
            f"{ver} = as_of_at, {changed} = as_of_at, merchant_chargeback_rate_30d = 0.4242 "
            f"where merchant_id in ({', '.join(literal(k) for k in keys)})",
        )
        second = load(store, warehouse, [copy], now=NOW)
        (again,) = second.views
        failures = [failure.to_dict() for failure in again.failures]
        assert (again.outcome, again.rows_read, again.rows_written) == ("success", 3, 3), failures
        assert again.watermark_before == watermark
        assert again.watermark_after == int(NOW.timestamp()) * 1_000_000  # the cutoff
        view = source.view
        read = ViewRead(view.name, {f.name: f.value_type for f in view.features})
        records = store.read(view.entity.name, [(key,) for key in keys], [read], now=NOW)
        for record in records:
            stored = record[view.name]
            assert stored is not None and stored.values["merchant_chargeback_rate_30d"] == 0.4242
            assert stored.ver == again.watermark_after

        third = load(store, warehouse, [copy], now=NOW)
        assert [(r.rows_read, r.watermark_after) for r in third.views] == [
            (0, again.watermark_after)
        ]


# --- errors: clear, exit code 1, nothing written, no secret in the output ------------------


def test_missing_variables_are_named(sf_target: SnowflakeTarget, tmp_path: Path) -> None:
    with pytest.raises(SnowflakeConnectionError) as raised:
        SnowflakeSettings.from_env({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_SCHEMA": " "})
    message = str(raised.value)
    for name in REQUIRED_ENV:
        assert (name in message) == (name != "SNOWFLAKE_ACCOUNT"), name
    assert "SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY_PATH" in message
    # another way to log in is enough
    key_pair = {**SF_ENV, "SNOWFLAKE_PASSWORD": "", "SNOWFLAKE_PRIVATE_KEY_PATH": "/k.p8"}
    assert SnowflakeSettings.from_env(key_pair).connect_args()["authenticator"] == "SNOWFLAKE_JWT"
    browser = {**SF_ENV, "SNOWFLAKE_PASSWORD": "", "SNOWFLAKE_AUTHENTICATOR": "externalbrowser"}
    args = SnowflakeSettings.from_env(browser).connect_args()
    assert args["authenticator"] == "externalbrowser" and "password" not in args

    # the CLI: one error line, exit code 1, the store untouched
    url = f"sqlite:///{tmp_path / 'online.db'}"
    sqlite_store(tmp_path / "online.db").close()
    env = {**os.environ, **sf_target.env(), "PYTHONPATH": str(REPO)}
    for name in REQUIRED_ENV:
        env.pop(name, None)
    proc = subprocess.run(
        [FEATURESTORE, "load", "--online", url, "--log-format", "progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the snowflake target"), proc.stderr
    assert "SNOWFLAKE_ACCOUNT" in lines[0] and "SNOWFLAKE_PASSWORD" not in lines[0]
    assert PASSWORD not in proc.stdout + proc.stderr
    assert store_contents(tmp_path / "online.db") == {"records": [], "watermarks": []}


def test_missing_table_writes_nothing(
    fake_snowflake: FakeSnowflake, sf_target: SnowflakeTarget, tmp_path: Path
) -> None:
    sources = sf_target.sources()
    sources[-1] = dataclasses.replace(sources[-1], table="online_not_built")
    warehouse = SnowflakeWarehouse(
        SnowflakeSettings.from_env(SF_ENV), connect_options=fake_snowflake.address
    )
    with sqlite_store(tmp_path / "online.db") as store:
        with pytest.raises(WarehouseError) as raised:
            load(store, warehouse, sources, now=NOW)
        assert store.list_loads() == []
    message = str(raised.value)
    assert message.startswith("relation FS_DB.ANALYTICS_online.online_not_built ")
    assert (
        "does not exist in Snowflake or role 'LOADER' may not read it: run `dbt build`" in message
    )
    assert PASSWORD not in message
    assert store_contents(tmp_path / "online.db") == {"records": [], "watermarks": []}

    # a column the registry needs and the table lacks
    (source,) = sf_target.sources(("merchant_chargeback_features",))
    fake_snowflake.execute(
        SF_CONNECT,
        f"create or replace table {source.database}.{source.schema}.online_lacking as "
        f"select merchant_id from {relation_name(source)}",
    )
    with warehouse, pytest.raises(WarehouseError, match="lacks column"):
        warehouse.check(dataclasses.replace(source, table="online_lacking"))


def test_unreachable_and_refused_logins(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = SnowflakeSettings.from_env(SF_ENV)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = {"host": "127.0.0.1", "port": port, "protocol": "http", "login_timeout": 2}
    with pytest.raises(WarehouseError) as unreachable:
        SnowflakeWarehouse(settings, connect_options=closed).open()
    assert str(unreachable.value).startswith(
        "cannot reach Snowflake account 'fs_test_account' as user 'loader_user': 250001"
    )

    # fakesnow accepts any password: the connector's own error for a refused login
    def refuse(**kwargs: Any) -> Any:
        raise snowflake.connector.errors.DatabaseError(
            msg=f"Incorrect username or password was specified (got {kwargs['password']}).",
            errno=390100,
            sqlstate="08004",
        )

    monkeypatch.setattr(snowflake.connector, "connect", refuse)
    with pytest.raises(WarehouseError) as refused:
        SnowflakeWarehouse(settings).open()
    message = str(refused.value)
    assert message.startswith("Snowflake refused the login to account 'fs_test_account'")
    assert "Incorrect username or password" in message and "(got ***)" in message
    for text in (str(unreachable.value), message, caplog.text):
        assert PASSWORD not in text


# --- the Arrow side: one schema, exact batch sizes -----------------------------------------


def test_chunks_are_conformed_and_rebatched(sf_target: SnowflakeTarget) -> None:
    (source,) = sf_target.sources(("merchant_chargeback_features",))
    view = source.view
    types = {f.name: f.value_type for f in view.features}
    as_connector: dict[str, pa.Array] = {key: pa.array(["m1", "m2"]) for key in view.keys}
    times = (source.ts_column, source.ver_column, source.changed_column, source.cutoff_column)
    for column in times:  # ns, with a zone
        as_connector[column] = pa.array(
            [10**15 * 1000, 2 * 10**15 * 1000], pa.timestamp("ns", "UTC")
        )
    for name, kind in types.items():
        as_connector[name] = {
            "int": pa.array([1, None], pa.decimal128(38, 0)),
            "float": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2)),
            "bool": pa.array([True, None]),
            "string": pa.array(["x", None], pa.large_string()),
            "timestamp": pa.array([1, None], pa.timestamp("ms")),
        }[kind]
    table = pa.table(dict(reversed(as_connector.items())))  # any column order
    conformed = conform(table, source)
    assert conformed.column_names == list(source.columns)
    assert conformed.column(source.ts_column).type == pa.timestamp("us")
    assert conformed.column(source.ts_column).to_pylist()[0] == dt.datetime(2001, 9, 9, 1, 46, 40)
    expected = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                "string": pa.string(), "timestamp": pa.timestamp("us")}  # fmt: skip
    for name, kind in types.items():
        assert conformed.column(name).type == expected[kind], name

    chunks = [conformed.slice(0, 1), conformed.slice(0, 0), pa.concat_tables([conformed] * 5)]
    sizes = [batch.num_rows for batch in rebatch(chunks, 4)]
    assert sizes == [4, 4, 3]
    assert [b.num_rows for b in rebatch(chunks, 100)] == [11]
