"""The `featurestore` command line (cli/main.py), run as a subprocess against the demo
warehouse: `registry` (table and JSON), `training-set` (Parquet and CSV, equal to
get_historical_features on the same spine, and its errors), `generate`."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from featurestore.historical import get_historical_features
from featurestore.registry import load_registry
from tests.warehouse import REPO, Warehouse

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
FEATURES = [
    "user_7d_transaction_count",
    "avg_order_value_90d",
    "merchant_chargeback_rate_30d",
    "device_seen_before",
]
_VALUE_TYPE = {"varchar": "string", "bigint": "int", "double": "float", "boolean": "bool"}


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEATURESTORE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit code 1, nothing on stdout, one line on stderr holding `expected`, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def warehouse(demo_warehouse: Warehouse) -> Warehouse:
    """The session's demo warehouse. The CLI only reads it; training-set runs add their
    compiled SQL to the cache under its target/featurestore/, as any caller of
    get_historical_features does."""
    return demo_warehouse


@pytest.fixture(scope="module")
def declared() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "models" / "features" / "_features__models.yml").read_text())
    return {model["name"]: model for model in doc["models"]}


# -- registry ---------------------------------------------------------------------------------


def _table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]
    return columns, rows


def _aggregation_cell(declared: dict[str, Any] | None) -> str:
    """The table's aggregation cell, from the yml: the README's default hops written out."""
    if declared is None:
        return "-"
    window = declared["window"]
    seconds = int(window[:-1]) * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[window[-1]]
    hop = declared.get("hop") or ("1m" if seconds <= 3600 else "1h" if seconds <= 864000 else "1d")
    column = f"({declared['column']})" if declared.get("column") else ""
    return f"{declared['function']}{column} {window}/{hop}"


def test_registry_table_lists_every_feature(warehouse: Warehouse, declared: dict[str, Any]) -> None:
    proc = run_cli("registry", env=warehouse.env)
    assert proc.returncode == 0, proc.stderr
    features_table = proc.stdout.split("Feature services")[0]  # its second table follows
    columns, rows = _table_rows(features_table)
    assert columns[:9] == [
        "feature", "type", "entity", "keys", "view", "owner", "ttl", "sla", "online",
    ]  # fmt: skip
    got = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    expected = {}
    for view, model in declared.items():
        meta = model["config"]["meta"]["featurestore"]
        for column in model["columns"]:
            column_meta = (column.get("meta") or {}).get("featurestore") or {}
            if column_meta.get("feature"):
                expected[column["name"]] = {
                    "feature": column["name"],
                    "type": _VALUE_TYPE[column["data_type"]],
                    "entity": meta["entity"],
                    "keys": ",".join(meta["keys"]),
                    "view": view,
                    "owner": meta["owner"],
                    "ttl": meta["ttl"],
                    "sla": meta["freshness_sla"],
                    "online": "yes" if meta["online"] else "no",
                    "default": json.dumps(column_meta["default"]),
                    "aggregation": _aggregation_cell(column_meta.get("aggregation")),
                }
    assert len(rows) == len(expected) >= 4
    assert got == expected


def test_registry_json_matches_the_library(warehouse: Warehouse) -> None:
    proc = run_cli("registry", "--json", env=warehouse.env)
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout) == load_registry(warehouse.target_path / "manifest.json").to_dict()
    )
    assert proc.stderr == ""


def test_registry_outside_a_dbt_project(tmp_path: Path, warehouse: Warehouse) -> None:
    proc = run_cli("registry", "--project-dir", str(tmp_path), env=warehouse.env)
    assert_clean_error(proc, "is not a dbt project")


# -- training-set -----------------------------------------------------------------------------


def _warehouse_spine(warehouse: Warehouse, limit: int) -> pd.DataFrame:
    """Labelled transactions of the demo warehouse, spread over the whole period."""
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as con:
        table = con.sql(
            "select transaction_id, user_id, merchant_id, device_id, amount, transacted_at, "
            "is_fraud from main_training.fraud_training_spine "
            f"order by hash(transaction_id) limit {limit}"
        ).to_arrow_table()
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _expected(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, spine: pd.DataFrame, ts: str
) -> pd.DataFrame:
    warehouse.use(monkeypatch)
    return get_historical_features(spine, FEATURES, timestamp_column=ts)


def test_training_set_parquet_in_parquet_out(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.parquet"
    spine = _warehouse_spine(warehouse, 300)
    spine.to_parquet(labels, index=False)
    out = tmp_path / "out" / "training.parquet"
    proc = run_cli(
        "training-set",
        "--labels", str(labels),
        "--features", " , ".join(FEATURES),
        "--out", str(out),
        "--timestamp-column", "transacted_at",
        env=warehouse.env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 300 rows x {len(spine.columns) + 4} columns to {out}" in proc.stdout
    result = pq.read_table(out).to_pandas()
    expected = _expected(warehouse, monkeypatch, pq.read_table(labels).to_pandas(), "transacted_at")
    pd.testing.assert_frame_equal(result, expected)
    # Not vacuous: every feature has values, and some rows have none.
    for name in FEATURES:
        assert result[name].notna().sum() > 10, name
    assert result[FEATURES].isna().any(axis=None)


def _cell(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def test_training_set_csv_in_csv_out(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = _warehouse_spine(warehouse, 60)
    keys = ["transaction_id", "user_id", "merchant_id", "device_id"]
    # Demo keys a day after their transaction, then hand-written rows.
    rows: list[list[Any]] = [
        [*(str(r[k]) for k in keys), r["transacted_at"].to_pydatetime() + dt.timedelta(days=1)]
        for _, r in real.iterrows()
    ]
    known = rows[0][1:4]
    rows += [
        ["hand_unknown", "usr_unknown", "mer_unknown", "dev_unknown", dt.datetime(2026, 3, 1)],
        ["hand_before_data", *known, dt.datetime(2025, 1, 1)],
        ["hand_late", *known, dt.datetime(2027, 6, 1, 12, 0, 0, 500000)],
    ]
    lines = ["transaction_id,user_id,merchant_id,device_id,event_timestamp"]
    for i, (*row_keys, at) in enumerate(rows):
        if i % 2:  # the same instant, written at +02:00
            text = (at + dt.timedelta(hours=2)).isoformat(timespec="microseconds") + "+02:00"
        else:
            text = at.isoformat(timespec="microseconds") + "Z"
        lines.append(",".join([*row_keys, text]))
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "training.csv"
    proc = run_cli(
        "training-set", "--labels", str(labels), "--features", ",".join(FEATURES),
        "--out", str(out), env=warehouse.env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {len(rows)} rows x 9 columns" in proc.stdout

    # The same spine built by hand: text keys, UTC timestamps.
    spine = pd.DataFrame(
        {k: [r[i] for r in rows] for i, k in enumerate(keys)}
        | {"event_timestamp": pd.to_datetime([r[4] for r in rows]).tz_localize("UTC")}
    )
    expected = _expected(warehouse, monkeypatch, spine, "event_timestamp")
    result = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(result.columns) == list(expected.columns)
    assert len(result) == len(expected)
    for column in keys:
        assert result[column].tolist() == expected[column].tolist()
    written_at = pd.to_datetime(result["event_timestamp"], format="ISO8601")
    assert written_at.tolist() == expected["event_timestamp"].tolist()  # same instants, UTC
    for name in FEATURES:
        for got, want in zip(result[name], expected[name], strict=True):
            if pd.isna(want):
                assert got == ""
            elif isinstance(want, float):
                assert float(got) == want and not math.isnan(float(got))
            else:
                assert got == _cell(want)
    assert expected.iloc[-3][FEATURES].isna().all()  # unknown keys
    assert expected.iloc[-2][FEATURES].isna().all()  # before any data
    assert expected[FEATURES].notna().any(axis=None)


@pytest.fixture(scope="module")
def small_parquet_spine(warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spine") / "labels.parquet"
    _warehouse_spine(warehouse, 5).to_parquet(path, index=False)
    return path


def test_training_set_unknown_feature(
    warehouse: Warehouse, small_parquet_spine: Path, tmp_path: Path
) -> None:
    proc = run_cli(
        "training-set", "--labels", str(small_parquet_spine),
        "--features", "user_7d_transaction_count,user_7d_txn_count",
        "--out", str(tmp_path / "out.parquet"), "--timestamp-column", "transacted_at",
        env=warehouse.env,
    )  # fmt: skip
    assert_clean_error(proc, "unknown feature 'user_7d_txn_count'", "did you mean")
    assert not (tmp_path / "out.parquet").exists()


def test_training_set_missing_labels_file(warehouse: Warehouse, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    proc = run_cli(
        "training-set", "--labels", str(missing), "--features", FEATURES[0],
        "--out", str(tmp_path / "out.csv"), env=warehouse.env,
    )  # fmt: skip
    assert_clean_error(proc, str(missing), "no such file")


@pytest.mark.parametrize("side", ["labels", "out"])
def test_training_set_unsupported_extension(
    warehouse: Warehouse, small_parquet_spine: Path, tmp_path: Path, side: str
) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text("[]")
    args = {"labels": str(small_parquet_spine), "out": str(tmp_path / "out.parquet")}
    args[side] = str(labels if side == "labels" else tmp_path / "out.json")
    proc = run_cli(
        "training-set", "--labels", args["labels"], "--features", FEATURES[0],
        "--out", args["out"], "--timestamp-column", "transacted_at", env=warehouse.env,
    )  # fmt: skip
    assert_clean_error(proc, "unsupported file type '.json'")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["2026-03-01T00:00:00Z", "2026-03-01T00:00:00"], "mixes timestamps with and without"),
        (["2026-03-01T00:00:00", "not-a-time"], "'not-a-time' is not one"),
    ],
    ids=["mixed-z-and-naive", "not-a-timestamp"],
)
def test_training_set_bad_csv_timestamps(
    warehouse: Warehouse, tmp_path: Path, values: list[str], message: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("user_id,event_timestamp\n" + "".join(f"usr_1,{v}\n" for v in values))
    proc = run_cli(
        "training-set", "--labels", str(labels), "--features", FEATURES[0],
        "--out", str(tmp_path / "out.csv"), env=warehouse.env,
    )  # fmt: skip
    assert_clean_error(proc, str(labels), "'event_timestamp'", message)
    assert not (tmp_path / "out.csv").exists()


def test_training_set_usage_error_exits_2(tmp_path: Path) -> None:
    proc = run_cli("training-set", "--labels", str(tmp_path / "x.csv"))
    assert proc.returncode == 2
    assert "Missing option '--out'" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- generate ---------------------------------------------------------------------------------


def test_generate_writes_the_six_raw_tables(tmp_path: Path) -> None:
    sources = yaml.safe_load((REPO / "models" / "staging" / "_raw__sources.yml").read_text())
    tables = {t["name"] for t in sources["sources"][0]["tables"]}
    assert len(tables) == 6
    out = tmp_path / "raw"
    proc = run_cli("generate", "--out", str(out), "--users", "50", "--transactions", "500")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == tables
    assert all(p.is_dir() for p in out.iterdir())
    rows = {}
    for table in tables:
        parts = sorted((out / table).glob("*.parquet"))
        assert parts, table
        rows[table] = sum(pq.read_metadata(p).num_rows for p in parts)
        assert f"{table:<14}{rows[table]:>12,} rows" in proc.stdout
    assert rows["users"] == 50
    assert rows["transactions"] >= 500  # plus redelivered duplicates
    assert rows["fraud_labels"] > 0
    assert proc.stdout.strip().endswith(f"written to {out}")


# -- training-set --feature-service --------------------------------------------------------------


def test_training_set_of_a_feature_service(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The labels carry the service's request field (amount); the file equals the library's
    answer for the same spine."""
    labels = tmp_path / "labels.parquet"
    _warehouse_spine(warehouse, 200).to_parquet(labels, index=False)
    out = tmp_path / "training.parquet"
    proc = run_cli(
        "training-set", "--labels", str(labels), "--feature-service", "fraud_model_v1",
        "--out", str(out), "--timestamp-column", "transacted_at", env=warehouse.env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = pq.read_table(out).to_pandas()
    warehouse.use(monkeypatch)
    expected = get_historical_features(
        pq.read_table(labels).to_pandas(),
        feature_service="fraud_model_v1",
        timestamp_column="transacted_at",
    )
    pd.testing.assert_frame_equal(result, expected)
    assert result["amount_over_avg_90d"].notna().sum() > 50
    service = load_registry(warehouse.target_path / "manifest.json").feature_service(
        "fraud_model_v1"
    )
    assert list(result.columns)[-len(service.feature_names()) :] == list(service.feature_names())


def test_training_set_of_a_feature_service_without_its_request_field(
    warehouse: Warehouse, small_parquet_spine: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.parquet"
    pq.write_table(pq.read_table(small_parquet_spine).drop_columns(["amount"]), labels)
    proc = run_cli(
        "training-set", "--labels", str(labels), "--feature-service", "fraud_model_v1",
        "--out", str(tmp_path / "out.parquet"), "--timestamp-column", "transacted_at",
        env=warehouse.env,
    )  # fmt: skip
    assert_clean_error(proc, "entity_df lacks column 'amount', a request field of feature service")
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("given", ["both", "neither"])
def test_training_set_needs_features_or_a_service(
    warehouse: Warehouse, small_parquet_spine: Path, tmp_path: Path, given: str
) -> None:
    names = (
        ["--features", FEATURES[0], "--feature-service", "fraud_model_v1"]
        if given == "both"
        else []
    )
    proc = run_cli(
        "training-set", "--labels", str(small_parquet_spine), *names,
        "--out", str(tmp_path / "out.parquet"), env=warehouse.env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "either --features or --feature-service" in proc.stderr
    assert "Traceback" not in proc.stderr
