"""get_historical_features and `featurestore training-set` on the snowflake target, without a
Snowflake account (featurestore/historical.py, featurestore/historical_snowflake.py).

What runs for real: the target chosen from ``$FEATURESTORE_TARGET``, the ``SNOWFLAKE_*``
settings, dbt compiling the ``as_of_join`` call for the snowflake target (and its cache), the
connector logging in to fakesnow's server mode over HTTP, the spine's temporary table, its
Parquet file ``PUT`` into a temporary stage and ``COPY``-ed in, the join run, the connector's
``fetch_arrow_all`` and the conversion to the DuckDB path's dtypes. The only seam besides
the server's address (tests/snowflake_server.py) is **which body of the macro** the
snowflake target compiles: fakesnow cannot run ``ASOF JOIN ... MATCH_CONDITION``, so the
full-path tests run in an overlay project (this repository's folders, symlinked) whose
``dispatch`` search order puts a one-macro test package first: its ``snowflake__as_of_join``
returns the macro file's own portable ``default__as_of_join`` (same semantics, a ranked left
join; the Python passes ``spine_columns`` for it). Nothing else differs.

The statement the snowflake target really runs (``snowflake__as_of_join``) is compiled from
this repository itself and parsed with sqlglot's Snowflake dialect: one ``ASOF JOIN ...
MATCH_CONDITION`` per view with the documented shape (tests/dbt/test_snowflake.py's checker),
reading the uploaded temporary table and the feature views' relations of the Snowflake
manifest.

Expectations are never written by hand: each Snowflake result is compared with
get_historical_features on the DuckDB demo warehouse for the same spine (that path is checked
against the brute-force reference in tests/core/test_historical.py).

fakesnow limits (README, "Training sets on Snowflake"): it encodes null timestamps in Arrow
results as the epoch (its struct has no validity), so a null ``<view>__feature_at`` fetched
from it reads 1970-01-01; the tests accept exactly that where DuckDB has a null and check the
nulls with SQL instead. It accepts any credentials and checks no grants.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
import yaml
from click.testing import CliRunner
from sqlglot import exp

from featurestore.historical import (
    _ROW,
    _TS,
    SPINE_RELATION,
    HistoricalFeaturesError,
    compiled_join,
    get_historical_features,
)
from featurestore.historical_snowflake import join_statement, run_join, spine_columns_ddl
from featurestore.project import Project
from featurestore.registry import Registry, load_registry
from featurestore.snowflake_connection import REQUIRED_ENV, SnowflakeSettings
from tests.core.test_historical import ERRORS
from tests.dbt.test_snowflake import Compiled, check_asof_join, expected_view
from tests.snowflake_server import FakeSnowflake, fake_snowflake_server
from tests.warehouse import DBT, REPO, Warehouse

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("historical-snowflake"),  # its module fixtures built once
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning"),
]

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
PASSWORD = "pw-Training-0815"
SF_ENV = {
    "FEATURESTORE_TARGET": "snowflake",
    "SNOWFLAKE_ACCOUNT": "fs_training_account",
    "SNOWFLAKE_USER": "trainer",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "TRAINER",
    "SNOWFLAKE_WAREHOUSE": "TRAIN_WH",
    "SNOWFLAKE_DATABASE": "FS_DB",
    "SNOWFLAKE_SCHEMA": "ANALYTICS",
    "SNOWFLAKE_AUTHENTICATOR": "",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "",
}
CONNECT = SnowflakeSettings.from_env(SF_ENV).connect_args()
FEATURE_VIEWS = (
    "user_transaction_features",
    "merchant_chargeback_features",
    "user_device_features",
)
FEATURES = [
    "user_7d_transaction_count",
    "avg_order_value_90d",
    "merchant_chargeback_rate_30d",
    "device_seen_before",
]
TS = "event_timestamp"
EPOCH = pd.Timestamp("1970-01-01")

SHIM_PACKAGE = "fs_fakesnow_as_of"
SHIM_MACRO = """\
{#- Test-only (tests/core/test_historical_snowflake.py): fakesnow cannot run ASOF JOIN ...
    MATCH_CONDITION, so in this overlay the snowflake target's as_of_join is the macro
    file's own portable form. -#}
{% macro snowflake__as_of_join(spine, spine_timestamp, feature_views, include_timestamps,
                               spine_columns) %}
    {{ return(featurestore.default__as_of_join(spine, spine_timestamp, feature_views,
                                               include_timestamps, spine_columns)) }}
{% endmacro %}
"""


# --- fixtures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnowflakeProject:
    """A dbt project parsed for the snowflake target into its own target folder."""

    root: Path
    target_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **SF_ENV,
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.target_path.parent / "logs"),
            "DBT_PROFILES_DIR": str(REPO),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }

    @property
    def registry(self) -> Registry:
        return load_registry(self.target_path / "manifest.json")

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("FEATURESTORE_DUCKDB_PATH", raising=False)


def make_overlay(root: Path) -> Path:
    """This repository's dbt folders (symlinked) plus the shim package first in dispatch."""
    project = yaml.safe_load((REPO / "dbt_project.yml").read_text())
    root.mkdir(parents=True)
    for name in ("models", "macros", "seeds", "snapshots", "tests"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    package = root / "dbt_packages" / SHIM_PACKAGE
    (package / "macros").mkdir(parents=True)
    (package / "dbt_project.yml").write_text(
        yaml.safe_dump({"name": SHIM_PACKAGE, "version": "0.0.1", "config-version": 2})
    )
    (package / "macros" / "snowflake__as_of_join.sql").write_text(SHIM_MACRO)
    project["dispatch"] = [
        {"macro_namespace": "featurestore", "search_order": [SHIM_PACKAGE, "featurestore"]}
    ]
    (root / "dbt_project.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def sf_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SnowflakeProject]:
    """``dbt parse --target snowflake`` of the overlay and of this repository, side by side."""
    base = tmp_path_factory.mktemp("sf-training")
    projects = {
        "overlay": SnowflakeProject(make_overlay(base / "overlay"), base / "overlay-target"),
        "repo": SnowflakeProject(REPO, base / "repo-target"),
    }
    running = {
        name: subprocess.Popen(
            [DBT, "parse", "--target", "snowflake", "--project-dir", str(project.root)],
            cwd=REPO,
            env={**os.environ, **project.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, project in projects.items()
    }
    for name, proc in running.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"dbt parse of the {name} failed:\n{out[-4000:]}"
    return projects


@pytest.fixture(scope="module")
def overlay(sf_projects: dict[str, SnowflakeProject]) -> SnowflakeProject:
    return sf_projects["overlay"]


@pytest.fixture(scope="module")
def fake_snowflake(demo_warehouse: Warehouse, overlay: SnowflakeProject) -> Iterator[FakeSnowflake]:
    """The demo warehouse's feature views copied into fakesnow where the Snowflake manifest
    says they are (unquoted, upper-case columns, as dbt-snowflake creates them)."""
    relations = overlay.registry.relations
    duck = load_registry(demo_warehouse.target_path / "manifest.json").relations
    tables = {}
    for view in FEATURE_VIEWS:
        target = relations[view]
        assert target.database == SF_ENV["SNOWFLAKE_DATABASE"], target
        tables[f"{duck[view].schema}.{duck[view].alias}"] = (
            target.database,
            target.schema,
            target.alias,
        )
    with fake_snowflake_server() as server:
        copied = server.copy_from_duckdb(CONNECT, demo_warehouse.duckdb_path, tables)
        assert min(copied.values()) > 100, copied
        # the session schema the spine's temporary table goes to
        server.execute(CONNECT, "create schema if not exists FS_DB.ANALYTICS")
        yield server


@pytest.fixture
def on_snowflake(
    fake_snowflake: FakeSnowflake, overlay: SnowflakeProject, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """The snowflake target in the environment, ``connect`` routed to fakesnow; returns the
    arguments of every connect call."""
    overlay.use(monkeypatch)
    return fake_snowflake.route(monkeypatch)


@pytest.fixture(scope="module")
def labels(demo_warehouse: Warehouse) -> pd.DataFrame:
    """A spine: 400 demo transactions (some keys unknown to a view, all timestamps inside
    the data), each with a label column, plus edge rows: null keys, a null timestamp, a
    time before every feature row, a duplicate."""
    rows = demo_warehouse.query(
        "select transaction_id, user_id, merchant_id, device_id, transacted_at, is_fraud "
        "from main_training.fraud_training_set order by transaction_id limit 400"
    )
    frame = pd.DataFrame(
        rows,
        columns=["transaction_id", "user_id", "merchant_id", "device_id", TS, "is_fraud"],
    )
    edges = pd.DataFrame(
        {
            "transaction_id": ["edge_null_user", "edge_null_ts", "edge_early", "edge_unknown"],
            "user_id": [None, frame.user_id[0], frame.user_id[1], "usr_does_not_exist"],
            "merchant_id": [frame.merchant_id[0], None, frame.merchant_id[1], "mer_nope"],
            "device_id": [frame.device_id[0], frame.device_id[1], frame.device_id[1], None],
            TS: [frame[TS][0], None, dt.datetime(2000, 1, 1), frame[TS][2]],
            "is_fraud": [False, True, False, None],
        }
    )
    spine = pd.concat([frame, edges, frame.iloc[[3]]], ignore_index=True)
    spine[TS] = pd.to_datetime(spine[TS]).astype("datetime64[us]")
    return spine


def on_duckdb(
    demo_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, spine: Any, **kwargs: Any
) -> pd.DataFrame:
    """The DuckDB path's answer for the same request: the expectation."""
    with monkeypatch.context() as patch:
        demo_warehouse.use(patch)
        patch.setenv("FEATURESTORE_TARGET", "duckdb")
        return get_historical_features(spine, FEATURES, **kwargs)


def assert_same_result(snowflake: pd.DataFrame, duck: pd.DataFrame) -> None:
    """Equal frames, dtypes included; in timestamp columns a null DuckDB value may read as
    the epoch from fakesnow (its Arrow encoding drops timestamp nulls)."""
    assert list(snowflake.columns) == list(duck.columns)
    snowflake = snowflake.copy()
    for column in duck.columns:
        if column.endswith(("__feature_at", "__as_of_at")):
            epoch_for_null = duck[column].isna() & (snowflake[column] == EPOCH)
            snowflake.loc[epoch_for_null, column] = pd.NaT
    pd.testing.assert_frame_equal(snowflake, duck, check_exact=True)


# --- the whole path: target, compile, upload, join, fetch, dtypes ---------------------------


def test_snowflake_training_set_equals_duckdb(
    on_snowflake: list[dict[str, Any]],
    overlay: SnowflakeProject,
    labels: pd.DataFrame,
    demo_warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the connector's own debug logs too
    snowflake = get_historical_features(
        labels, FEATURES, project_dir=overlay.root, include_feature_timestamps=True
    )
    duck = on_duckdb(demo_warehouse, monkeypatch, labels, include_feature_timestamps=True)
    assert_same_result(snowflake, duck)
    # not vacuous: values and nulls in every feature
    for feature in FEATURES:
        assert duck[feature].notna().sum() > 100 and duck[feature].isna().any(), feature
    assert str(snowflake["user_7d_transaction_count"].dtype) == "Int64"
    assert str(snowflake["device_seen_before"].dtype) == "boolean"
    assert snowflake["avg_order_value_90d"].dtype == "float64"
    assert snowflake["transaction_id"].tolist() == labels["transaction_id"].tolist()
    # one login, from the SNOWFLAKE_* variables, the session in UTC
    (call,) = on_snowflake
    assert {key: call[key] for key in ("account", "user", "password", "role", "database")} == {
        "account": "fs_training_account",
        "user": "trainer",
        "password": PASSWORD,
        "role": "TRAINER",
        "database": "FS_DB",
    }
    assert call["session_parameters"]["TIMEZONE"] == "UTC"
    assert PASSWORD not in caplog.text


def test_time_zones_empty_spine_and_arrow_input(
    on_snowflake: list[dict[str, Any]],
    overlay: SnowflakeProject,
    labels: pd.DataFrame,
    demo_warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DuckDB path's time-zone rules: an aware column is converted to UTC for the join
    and kept as given in the result; a pyarrow Table is accepted; an empty spine gives an
    empty result with the same columns and dtypes."""
    aware = labels.copy()
    aware[TS] = aware[TS].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    snowflake = get_historical_features(aware, FEATURES, project_dir=overlay.root)
    assert isinstance(snowflake[TS].dtype, pd.DatetimeTZDtype)
    assert_same_result(snowflake, on_duckdb(demo_warehouse, monkeypatch, aware))
    # the instants, not the wall times, were joined: equal to the naive-UTC spine's features
    naive = get_historical_features(labels, FEATURES, project_dir=overlay.root)
    pd.testing.assert_frame_equal(snowflake[FEATURES], naive[FEATURES], check_exact=True)

    table = pa.Table.from_pandas(labels.iloc[:50], preserve_index=False)
    assert_same_result(
        get_historical_features(table, FEATURES, project_dir=overlay.root),
        on_duckdb(demo_warehouse, monkeypatch, table),
    )

    empty = labels.iloc[:0]
    result = get_historical_features(
        empty, FEATURES, project_dir=overlay.root, include_feature_timestamps=True
    )
    expected = on_duckdb(demo_warehouse, monkeypatch, empty, include_feature_timestamps=True)
    assert len(result) == 0
    pd.testing.assert_frame_equal(result, expected)


def test_training_set_command(
    on_snowflake: list[dict[str, Any]],
    overlay: SnowflakeProject,
    labels: pd.DataFrame,
    demo_warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`featurestore training-set` (in-process, so that connect reaches fakesnow): Parquet
    out equal to the DuckDB target's file."""
    from cli.offline import training_set

    spine_path = tmp_path / "labels.parquet"
    labels.to_parquet(spine_path, index=False)
    args = ["--labels", str(spine_path), "--features", ",".join(FEATURES)]
    out = CliRunner().invoke(
        training_set,
        [*args, "--out", str(tmp_path / "sf.parquet"), "--project-dir", str(overlay.root)],
    )
    assert out.exit_code == 0, out.output
    with monkeypatch.context() as patch:
        demo_warehouse.use(patch)
        patch.setenv("FEATURESTORE_TARGET", "duckdb")
        duck = CliRunner().invoke(training_set, [*args, "--out", str(tmp_path / "duck.parquet")])
    assert duck.exit_code == 0, duck.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "sf.parquet"), pd.read_parquet(tmp_path / "duck.parquet")
    )


# --- the upload itself: types, time zones, nulls, microseconds ------------------------------


def test_spine_upload_round_trips(
    fake_snowflake: FakeSnowflake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys of every registry type, nulls everywhere, timestamps to the microsecond (before
    1970 too) go into the temporary table unchanged; read back with SQL in the same session
    (null timestamps checked in SQL: fakesnow's Arrow encoding cannot carry them)."""
    fake_snowflake.route(monkeypatch)
    us = dt.timedelta(microseconds=1)
    times = [
        dt.datetime(2026, 3, 1, 12, 0, 0) + us,
        None,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2026, 3, 29, 1, 30),  # a wall time that does not exist in Europe/Berlin
    ]
    spine = pa.table(
        {
            "s_key": pa.array(["a", None, "c'quote", "ü"]),
            "i_key": pa.array([1, None, -(2**62), 0], pa.int64()),
            "f_key": pa.array([0.1, None, -1.5e300, 2.0]),
            "b_key": pa.array([True, None, False, None]),
            "n_key": pa.array([None, None, None, None], pa.null()),
            _TS: pa.array(times, pa.timestamp("us")),
            _ROW: pa.array(range(4), pa.int64()),
        }
    )
    types = {"s_key": "string", "i_key": "int", "f_key": "float", "b_key": "bool",
             "n_key": "string", _TS: "timestamp", _ROW: "int"}  # fmt: skip
    # the "join": the uploaded table itself, plus its timestamps as integer microseconds
    read_back = (
        f"select *, datediff(microsecond, '1970-01-01'::timestamp_ntz, {_TS}) as ts_us, "
        f"{_TS} is null as ts_missing from {SPINE_RELATION}"
    )
    outputs = {name: kind for name, kind in types.items() if name != _ROW}
    outputs |= {"ts_us": "int", "ts_missing": "bool"}
    got = run_join(
        SnowflakeSettings.from_env(SF_ENV),
        read_back,
        spine,
        types,
        relation=SPINE_RELATION,
        row_column=_ROW,
        outputs=outputs,
    )
    assert got.column_names == [_ROW, *outputs]
    for name in ("s_key", "i_key", "f_key", "b_key", "n_key"):
        assert got.column(name).type == spine.column(name).type or name == "n_key", name
        assert got.column(name).to_pylist() == spine.column(name).to_pylist(), name
    assert got.column("n_key").type == pa.string()
    epoch = dt.datetime(1970, 1, 1)
    assert got.column("ts_us").to_pylist() == [
        None if t is None else (t - epoch) // us for t in times
    ]
    assert got.column("ts_missing").to_pylist() == [t is None for t in times]
    present = [i for i, t in enumerate(times) if t is not None]
    assert [got.column(_TS)[i].as_py() for i in present] == [times[i] for i in present]
    assert got.column(_TS).type == pa.timestamp("us")

    # an empty spine: the table exists, empty, with its columns
    empty = run_join(
        SnowflakeSettings.from_env(SF_ENV),
        read_back,
        spine.slice(0, 0),
        types,
        relation=SPINE_RELATION,
        row_column=_ROW,
        outputs=outputs,
    )
    assert empty.num_rows == 0 and empty.schema == got.schema


# --- the real statement: compiled for Snowflake, parsed with sqlglot ------------------------


def test_snowflake_statement_compiles_to_asof_match_condition(
    sf_projects: dict[str, SnowflakeProject], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement get_historical_features sends on the snowflake target (this repository's
    snowflake__as_of_join): an ASOF JOIN ... MATCH_CONDITION per view reading the uploaded
    temporary table, with the keys, TTLs and output columns of the Snowflake manifest."""
    repo = sf_projects["repo"]
    repo.use(monkeypatch)
    registry = repo.registry
    manifest = json.loads((repo.target_path / "manifest.json").read_text())
    views = [
        (registry.view(name), chosen) for name, chosen in registry.group_by_view(FEATURES).items()
    ]
    compiled = compiled_join(Project.at(REPO), views, include_timestamps=True)
    assert compiled.target_type == "snowflake"
    outputs = {name: registry.feature(name).value_type for name in FEATURES}
    for view, _ in views:
        outputs |= {f"{view.name}__feature_at": "timestamp", f"{view.name}__as_of_at": "timestamp"}
    statement = join_statement(compiled.sql, _ROW, outputs)

    expected = []
    for view, chosen in views:
        spec = expected_view(Compiled(manifest, ""), view.name)
        expected.append(type(spec)(spec.join_keys, spec.ttl_seconds, tuple(chosen), spec.name))
    check_asof_join(statement, _TS, expected, include_timestamps=True)

    tree = sqlglot.parse_one(statement, read="snowflake")
    outer = tree.find(exp.Select)
    assert outer is tree and [e.alias for e in tree.expressions] == [_ROW, *outputs]
    assert tree.args["order"].sql("snowflake").lower() == f"order by {_ROW}"
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    tables = {
        ".".join(part for part in (t.catalog, t.db, t.name) if part)
        for t in tree.find_all(exp.Table)
        if t.name not in ctes
    }
    relations = {
        ".".join((r.database or "", r.schema, r.alias))
        for name, r in registry.relations.items()
        if name in FEATURE_VIEWS
    }
    assert tables == {SPINE_RELATION} | relations, tables
    assert all(r.startswith("FS_DB.ANALYTICS_features.") for r in relations), relations

    # the temporary table's DDL is Snowflake SQL too
    columns = spine_columns_ddl({"user_id": "string", _TS: "timestamp", _ROW: "int"})
    ddl = f"create temporary table {SPINE_RELATION} ({columns})"
    created = sqlglot.parse_one(ddl, read="snowflake")
    assert isinstance(created, exp.Create)


# --- refusals and errors: the DuckDB path's messages, one line, exit code 1 -----------------


@pytest.mark.parametrize(
    ("spine", "features", "kwargs", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_refusals_match_the_duckdb_path(
    overlay: SnowflakeProject,
    monkeypatch: pytest.MonkeyPatch,
    spine: Any,
    features: Any,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    """Bad spines and unknown features get the DuckDB path's messages on the snowflake
    target, before any connection (connect would fail: no server)."""
    overlay.use(monkeypatch)
    with pytest.raises(HistoricalFeaturesError, match=message):
        get_historical_features(spine(), features, project_dir=overlay.root, **kwargs)


def test_missing_variables_are_named(overlay: SnowflakeProject, tmp_path: Path) -> None:
    """Every missing variable named at once, before dbt runs; the CLI prints one line and
    exits 1."""
    spine_path = tmp_path / "labels.csv"
    spine_path.write_text("user_id,event_timestamp\nusr_1,2026-03-01T00:00:00Z\n")
    env = {**os.environ, **overlay.env, "PYTHONPATH": str(REPO)}
    for name in REQUIRED_ENV:
        env.pop(name)
    proc = subprocess.run(
        [FEATURESTORE, "training-set", "--labels", str(spine_path), "--out",
         str(tmp_path / "out.parquet"), "--features", "user_7d_transaction_count",
         "--project-dir", str(overlay.root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the snowflake target reads"), lines
    for name in REQUIRED_ENV:
        assert name in lines[0], name
    assert PASSWORD not in proc.stdout + proc.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_unreachable_account(
    overlay: SnowflakeProject, monkeypatch: pytest.MonkeyPatch, labels: pd.DataFrame
) -> None:
    import snowflake.connector

    overlay.use(monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    real_connect = snowflake.connector.connect

    def closed_port(**kwargs: Any) -> Any:
        return real_connect(**kwargs, host="127.0.0.1", port=port, protocol="http", login_timeout=2)

    monkeypatch.setattr(snowflake.connector, "connect", closed_port)
    with pytest.raises(HistoricalFeaturesError) as raised:
        get_historical_features(labels.iloc[:3], FEATURES, project_dir=overlay.root)
    message = str(raised.value)
    assert message.startswith(
        "cannot reach Snowflake account 'fs_training_account' as user 'trainer': 250001"
    ), message
    assert "\n" not in message and PASSWORD not in message


def test_missing_feature_table(
    on_snowflake: list[dict[str, Any]],
    fake_snowflake: FakeSnowflake,
    overlay: SnowflakeProject,
    labels: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database without the feature views (dbt build not run there): the join's error,
    naming the cause. (A refused upload cannot be provoked in fakesnow, which creates any
    missing schema at login and checks no grants.)"""
    fake_snowflake.execute(
        CONNECT,
        "create database if not exists FS_EMPTY",
        "create schema if not exists FS_EMPTY.ANALYTICS",
    )
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "FS_EMPTY")  # dbt compiles the relations there
    with pytest.raises(HistoricalFeaturesError) as missing:
        get_historical_features(labels.iloc[:3], FEATURES, project_dir=overlay.root)
    message = str(missing.value)
    assert message.startswith("the warehouse could not run the join: "), message
    assert "USER_TRANSACTION_FEATURES" in message.upper(), message
    assert "run `dbt build` with the snowflake target" in message


# --- feature services: request-time features computed by Snowflake -------------------------

SERVICE = "fraud_model_v1"
RATIO = "amount_over_avg_90d"


@pytest.fixture(scope="module")
def service_labels(demo_warehouse: Warehouse, labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with each transaction's amount (the request field; decimals as the
    warehouse holds them), null for the edge rows, plus a zero and a negative amount."""
    amounts = dict(
        demo_warehouse.query(
            "select transaction_id, amount from main_training.fraud_training_spine "
            "where transaction_id in (select transaction_id from main_training.fraud_training_set "
            "order by transaction_id limit 400)"
        )
    )
    spine = labels.copy()
    spine["amount"] = [amounts.get(t) for t in spine["transaction_id"]]
    extra = spine.iloc[[5, 6]].copy()
    extra["transaction_id"] = ["edge_zero_amount", "edge_negative_amount"]
    extra["amount"] = [Decimal("0.00"), Decimal("-7.25")]
    return pd.concat([spine, extra], ignore_index=True)


def test_feature_service_on_snowflake_equals_duckdb(
    on_snowflake: list[dict[str, Any]],
    overlay: SnowflakeProject,
    service_labels: pd.DataFrame,
    demo_warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request-time feature computed by the snowflake target's SQL (to_sql's snowflake
    dialect, run by fakesnow) equals the DuckDB target's, nulls included."""
    snowflake = get_historical_features(
        service_labels, feature_service=SERVICE, project_dir=overlay.root
    )
    with monkeypatch.context() as patch:
        demo_warehouse.use(patch)
        patch.setenv("FEATURESTORE_TARGET", "duckdb")
        duck = get_historical_features(service_labels, feature_service=SERVICE)
    assert_same_result(snowflake, duck)
    assert duck[RATIO].notna().sum() > 100 and duck[RATIO].isna().sum() >= 4
    by_id = duck.set_index("transaction_id")[RATIO]
    assert by_id["edge_zero_amount"] == 0.0 and by_id["edge_negative_amount"] < 0


def test_feature_service_statement_parses_as_snowflake_sql(
    sf_projects: dict[str, SnowflakeProject], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement of a feature service on the snowflake target (this repository's
    snowflake__as_of_join, the spine carrying the request column, the request-time feature
    from to_sql's snowflake dialect) is Snowflake SQL: the ASOF JOINs of the plain request,
    then the division of the upper-case request and feature columns, under its name."""
    from featurestore.historical_request_features import request_column, with_request_features

    repo = sf_projects["repo"]
    repo.use(monkeypatch)
    registry = repo.registry
    service = registry.feature_service(SERVICE)
    manifest = json.loads((repo.target_path / "manifest.json").read_text())
    views = [
        (registry.view(name), chosen)
        for name, chosen in registry.group_by_view(service.features).items()
    ]
    requests = [request_column(f.name) for f in service.request_fields]
    compiled = compiled_join(Project.at(REPO), views, False, requests)
    assert compiled.target_type == "snowflake"
    sql = with_request_features(compiled.sql, service, dialect="snowflake")
    outputs = {name: registry.feature(name).value_type for name in service.features}
    outputs |= {f.name: f.expression.value_type for f in service.request_features}
    statement = join_statement(sql, _ROW, outputs)

    expected = []
    for view, chosen in views:
        spec = expected_view(Compiled(manifest, ""), view.name)
        expected.append(type(spec)(spec.join_keys, spec.ttl_seconds, tuple(chosen), spec.name))
    check_asof_join(statement, _TS, expected, include_timestamps=False)

    tree = sqlglot.parse_one(statement, read="snowflake")
    assert [e.alias for e in tree.expressions] == [_ROW, *outputs]
    wrapper = tree.args["from_"].this.this  # the select adding the request-time features
    assert isinstance(wrapper, exp.Select)
    (ratio,) = [e for e in wrapper.expressions if e.alias == RATIO]
    divisions = list(ratio.find_all(exp.Div))  # to_sql repeats it in a finiteness check
    assert divisions
    for division in divisions:
        columns = {(c.table, c.name) for c in division.find_all(exp.Column)}
        assert columns == {
            ("__fs_joined", "__FS_REQUEST__AMOUNT"),
            ("__fs_joined", "AVG_ORDER_VALUE_90D"),
        }
        assert len(list(division.find_all(exp.Nullif))) == 1  # null, not an error, for 0

    # the spine's temporary table declares the request column with its type
    ddl_columns = spine_columns_ddl(
        {"user_id": "string", requests[0]: "float", _TS: "timestamp", _ROW: "int"}
    )
    created = sqlglot.parse_one(
        f"create temporary table {SPINE_RELATION} ({ddl_columns})", read="snowflake"
    )
    kinds = {c.name: c.args["kind"].this for c in created.find_all(exp.ColumnDef)}
    assert kinds[requests[0]] in (exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE), kinds
