"""The dbt unit tests of macros/windowed_features.sql, and its compile errors.

* The declarations the unit tests pass in the var featurestore_unit_test_windowed (dbt unit
  tests have no `graph`) are exactly the views' yml declarations.
* The unit tests (models/features/_features__unit_tests.yml: window and tile edges, late
  events, an event ingested after it would have left, event time after ingestion,
  duplicates, no events, an incremental run) pass.
* Bad declarations fail to compile with a message naming the model and the field: compiled
  in a copy of the project with one yml edit each.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.warehouse import DBT, REPO, Warehouse

FEATURES_YML = REPO / "models" / "features" / "_features__models.yml"
UNIT_TESTS_YML = REPO / "models" / "features" / "_features__unit_tests.yml"
INTERMEDIATE_YML = REPO / "models" / "intermediate" / "_intermediate__models.yml"
DECLARED = ("user_transaction_features", "merchant_transaction_features")


def _declaration(model: dict[str, Any], event_types: dict[str, str]) -> dict[str, Any]:
    meta = model["config"]["meta"]["featurestore"]
    aggregations = {
        column["name"]: column["meta"]["featurestore"]["aggregation"]
        for column in model["columns"]
        if "aggregation" in column.get("meta", {}).get("featurestore", {})
    }
    out: dict[str, Any] = {
        "keys": meta["keys"],
        "windowed": meta["windowed"],
        "aggregations": aggregations,
    }
    columns = {a["column"] for a in aggregations.values() if a["function"] != "count"}
    if columns:
        out["event_column_types"] = {c: event_types[c] for c in sorted(columns)}
    return out


def test_unit_test_declarations_are_the_yml_ones() -> None:
    models = {m["name"]: m for m in yaml.safe_load(FEATURES_YML.read_text())["models"]}
    (events,) = (
        m
        for m in yaml.safe_load(INTERMEDIATE_YML.read_text())["models"]
        if m["name"] == "int_transactions_deduplicated"
    )
    event_types = {c["name"]: c["data_type"] for c in events["columns"]}
    expected = {name: _declaration(models[name], event_types) for name in DECLARED}
    # the tile tests of a cutoff used as given declare the views not streamed
    batch_only = copy.deepcopy(expected)
    for declaration in batch_only.values():
        declaration["windowed"] = {**declaration["windowed"], "streamed": False}
    tests = yaml.safe_load(UNIT_TESTS_YML.read_text())["unit_tests"]
    assert len(tests) >= 5
    seen = set()
    for test in tests:
        declared = test["overrides"]["vars"]["featurestore_unit_test_windowed"]
        if declared == batch_only:
            assert test["name"].endswith("_tiles"), test["name"]
            seen.add("batch_only")
        else:
            assert declared == expected, test["name"]
            seen.add("streamed")
    assert seen == {"batch_only", "streamed"}


def test_windowed_unit_tests_pass(demo_warehouse: Warehouse) -> None:
    declared = {test["name"] for test in yaml.safe_load(UNIT_TESTS_YML.read_text())["unit_tests"]}
    models = [*DECLARED, *(f"online_{name}" for name in DECLARED)]
    selector = [f"test_type:unit,{model}" for model in models]
    demo_warehouse.dbt("test", "--select", *selector)
    results = json.loads((demo_warehouse.target_path / "run_results.json").read_text())["results"]
    statuses = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}
    assert statuses == dict.fromkeys(declared, "pass")


# --- compile errors of bad declarations ------------------------------------------------------


def _edit_user_view(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / "models" / "features" / "_features__models.yml"
        spec = yaml.safe_load(path.read_text())
        (view,) = (m for m in spec["models"] if m["name"] == "user_transaction_features")
        edit(view)
        path.write_text(yaml.safe_dump(spec, sort_keys=False))

    return apply


def _column(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in view["columns"] if c["name"] == name)


def _drop_event_time(view: dict[str, Any]) -> None:
    del view["config"]["meta"]["featurestore"]["windowed"]["event_time"]


def _unknown_function(view: dict[str, Any]) -> None:
    _column(view, "user_7d_transaction_count")["meta"]["featurestore"]["aggregation"][
        "function"
    ] = "median"


def _odd_window(view: dict[str, Any]) -> None:
    aggregation = _column(view, "user_10m_transaction_count")["meta"]["featurestore"]
    aggregation["aggregation"] = {"function": "count", "window": "10m", "hop": "7m"}


def _sum_of_text(view: dict[str, Any]) -> None:
    aggregation = _column(view, "avg_order_value_90d")["meta"]["featurestore"]["aggregation"]
    aggregation["column"] = "currency"


def _no_depends_on(project: Path) -> None:
    path = project / "models" / "features" / "user_transaction_features.sql"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith("-- depends_on")))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _edit_user_view(_drop_event_time),
            "model user_transaction_features: meta.featurestore.windowed.event_time is missing",
        ),
        (
            _edit_user_view(_unknown_function),
            "model user_transaction_features, column user_7d_transaction_count: "
            "meta.featurestore.aggregation.function = 'median' is not one of count, sum, avg",
        ),
        (
            _edit_user_view(_odd_window),
            "model user_transaction_features, column user_10m_transaction_count: "
            "meta.featurestore.aggregation: window 10m is not a whole number of hops of 420 s",
        ),
        (
            _edit_user_view(_sum_of_text),
            "meta.featurestore.aggregation.column (currency of int_transactions_deduplicated) "
            "has data_type varchar: sum and avg need an integer or decimal column",
        ),
        (
            _no_depends_on,
            "model user_transaction_features: windowed_features reads "
            "int_transactions_deduplicated",
        ),
    ],
    ids=["missing-field", "unknown-function", "window-not-hops", "sum-of-text", "no-depends-on"],
)
def test_bad_declarations_fail_with_the_model_and_field(
    tmp_path: Path, edit: Callable[[Path], None], message: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / name, project / name)
    for folder in ("models", "macros", "seeds", "snapshots"):
        shutil.copytree(REPO / folder, project / folder)
    (project / "tests" / "dbt" / "data_tests").mkdir(parents=True)
    edit(project)
    warehouse = Warehouse(tmp_path / "wh")
    env = {**warehouse.env, "DBT_PROFILES_DIR": str(project)}
    proc = subprocess.run(
        [DBT, "compile", "--select", "user_transaction_features"],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert message in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
