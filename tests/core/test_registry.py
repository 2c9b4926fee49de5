"""The feature registry (featurestore/registry.py) read from dbt's manifest.

The real manifest of the demo project is checked against the yml it was parsed from (read here
with PyYAML), then broken metadata is checked to fail with a RegistryError naming the model and
the field: on deep copies of the real manifest, and end to end through `dbt parse` and the
`featurestore registry` command on an edited copy of the project.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from featurestore.registry import (
    DataTest,
    Registry,
    RegistryError,
    Relation,
    ValueType,
    load_registry,
    registry_from_manifest,
    value_type_of,
)
from tests.warehouse import REPO, Warehouse

FEATURES_YML = REPO / "models" / "features" / "_features__models.yml"
FEATURESTORE = Path(sys.executable).parent / "featurestore"

# Independent of the implementation: the grammar <n><unit> and the contract types used here.
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_VALUE_TYPE = {"varchar": "string", "bigint": "int", "double": "float", "boolean": "bool"}


def _seconds(text: str) -> int:
    return int(text[:-1]) * _UNIT[text[-1]]


@pytest.fixture(scope="module")
def declared() -> dict[str, Any]:
    """The feature views as declared in models/features/_features__models.yml."""
    doc = yaml.safe_load(FEATURES_YML.read_text())
    return {model["name"]: model for model in doc["models"]}


@pytest.fixture(scope="module")
def declared_entities() -> dict[str, Any]:
    project = yaml.safe_load((REPO / "dbt_project.yml").read_text())
    entities: dict[str, Any] = project["models"]["featurestore"]["features"]["+meta"][
        "featurestore_entities"
    ]
    return entities


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


# -- the real registry ------------------------------------------------------------------------


def test_views_and_features_are_those_declared(
    registry: Registry, declared: dict[str, Any]
) -> None:
    assert len(declared) >= 3  # the demo's views (more once views are declared)
    assert set(registry.views) == set(declared)
    expected_features = {
        column["name"]: view
        for view, model in declared.items()
        for column in model["columns"]
        if (column.get("meta") or {}).get("featurestore", {}).get("feature")
    }
    assert len(expected_features) >= 4
    assert {name: f.view for name, f in registry.features.items()} == expected_features
    for view_name, view in registry.views.items():
        expected = [name for name, v in expected_features.items() if v == view_name]
        assert list(view.feature_names()) == expected  # yml column order


def test_entities_are_those_of_dbt_project_yml(
    registry: Registry, declared_entities: dict[str, Any]
) -> None:
    assert set(registry.entities) == set(declared_entities)
    for name, spec in declared_entities.items():
        entity = registry.entities[name]
        assert entity.name == name
        assert entity.keys == tuple(spec["keys"])
        assert entity.description == spec["description"]


def test_view_metadata_matches_the_yml(registry: Registry, declared: dict[str, Any]) -> None:
    for name, model in declared.items():
        meta = model["config"]["meta"]["featurestore"]
        columns = {c["name"]: c for c in model["columns"]}
        view = registry.view(name)
        assert view.entity.name == meta["entity"]
        assert view.keys == tuple(meta["keys"]) == view.entity.keys
        assert view.key_types == {k: _VALUE_TYPE[columns[k]["data_type"]] for k in meta["keys"]}
        assert view.timestamp == meta["timestamp"]
        assert view.available_at == meta.get("available_at")
        assert view.owner == meta["owner"]
        assert view.ttl == meta["ttl"]
        assert view.ttl_seconds == _seconds(meta["ttl"])
        assert view.freshness_sla == meta["freshness_sla"]
        assert view.freshness_sla_seconds == _seconds(meta["freshness_sla"])
        assert view.online is meta["online"]
        assert view.description == " ".join(model["description"].split())
        assert view.relation.replace('"', "").endswith(f"main_features.{name}")


def test_feature_metadata_matches_the_yml(registry: Registry, declared: dict[str, Any]) -> None:
    checked = 0
    for name, model in declared.items():
        for column in model["columns"]:
            meta = (column.get("meta") or {}).get("featurestore", {})
            if not meta.get("feature"):
                assert column["name"] not in registry.features
                continue
            feature = registry.feature(column["name"])
            assert feature.view == name
            assert feature.data_type == column["data_type"]
            assert feature.value_type == _VALUE_TYPE[column["data_type"]]
            assert feature.description == " ".join(column["description"].split())
            assert feature.default == meta["default"]
            assert (
                type(feature.default)
                is {"int": int, "float": float, "bool": bool}[feature.value_type]
            )
            value_range = meta.get("range") or {}
            assert feature.range_min == value_range.get("min")
            assert feature.range_max == value_range.get("max")
            checked += 1
    assert checked == len(registry.features) >= 4


def test_relations_exist_in_the_demo_warehouse(
    registry: Registry, demo_warehouse: Warehouse
) -> None:
    for view in registry.views.values():
        relation = view.relation.split(".", 1)[1]  # drop the database (the file's name)
        columns = [
            row[0]
            for row in demo_warehouse.query(
                f"select column_name from (describe select * from {relation})"
            )
        ]
        assert {*view.keys, view.timestamp, *view.feature_names()} <= set(columns)
        assert demo_warehouse.query(f"select count(*) from {relation}")[0][0] > 0


def test_lookups(registry: Registry) -> None:
    assert registry.view_of("device_seen_before").name == "user_device_features"
    assert registry.group_by_view(
        ["avg_order_value_90d", "device_seen_before", "user_7d_transaction_count"]
    ) == {
        "user_transaction_features": ["avg_order_value_90d", "user_7d_transaction_count"],
        "user_device_features": ["device_seen_before"],
    }
    with pytest.raises(RegistryError, match=r"unknown feature 'user_7d_txn_count'.*did you mean"):
        registry.feature("user_7d_txn_count")
    with pytest.raises(RegistryError, match="unknown feature view 'nope'"):
        registry.view("nope")


def test_to_dict_is_json_and_complete(registry: Registry, declared: dict[str, Any]) -> None:
    data = json.loads(json.dumps(registry.to_dict()))
    assert set(data) == {"entities", "feature_views", "features", "feature_services"}
    assert set(data["feature_views"]) == set(declared)
    for name, model in declared.items():
        meta = model["config"]["meta"]["featurestore"]
        view = data["feature_views"][name]
        assert view["ttl_seconds"] == _seconds(meta["ttl"])
        assert view["owner"] == meta["owner"]
        assert view["entity"] == meta["entity"]
    assert data["features"]["device_seen_before"]["default"] is False
    assert data["features"]["user_7d_transaction_count"]["type"] == "int"


def test_value_type_of() -> None:
    assert value_type_of("BIGINT") == "int"
    assert value_type_of(" double precision ") == "float"
    assert value_type_of("varchar(64)") == "string"
    assert value_type_of("timestamp") == "timestamp"
    assert value_type_of("blob") is None
    assert value_type_of("struct(a int)") is None


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"manifest\.json not found: run `dbt parse`"):
        load_registry(tmp_path / "manifest.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RegistryError, match="is not valid JSON"):
        load_registry(tmp_path / "broken.json")


# -- invalid metadata on a copy of the real manifest ------------------------------------------


def _node(manifest: dict[str, Any], model: str) -> dict[str, Any]:
    nodes = [
        n
        for n in manifest["nodes"].values()
        if n.get("resource_type") == "model" and n["name"] == model
    ]
    assert len(nodes) == 1, model
    return nodes[0]


def _view_meta(manifest: dict[str, Any], model: str) -> dict[str, Any]:
    meta: dict[str, Any] = _node(manifest, model)["config"]["meta"]["featurestore"]
    return meta


def _column_meta(manifest: dict[str, Any], model: str, column: str) -> dict[str, Any]:
    meta: dict[str, Any] = _node(manifest, model)["columns"][column]["meta"]["featurestore"]
    return meta


Mutation = Callable[[dict[str, Any]], None]


def _set_view(model: str, field: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _view_meta(manifest, model)[field] = value

    return mutate


def _drop_view_field(model: str, field: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        del _view_meta(manifest, model)[field]

    return mutate


def _set_default(model: str, column: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _column_meta(manifest, model, column)["default"] = value

    return mutate


def _drop_default(model: str, column: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        del _column_meta(manifest, model, column)["default"]

    return mutate


def _drop_column(model: str, column: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        del _node(manifest, model)["columns"][column]

    return mutate


def _set_data_type(model: str, column: str, data_type: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _node(manifest, model)["columns"][column]["data_type"] = data_type

    return mutate


def _set_column_meta(model: str, column: str, field: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _column_meta(manifest, model, column)[field] = value

    return mutate


def _replace_column_meta(model: str, column: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _node(manifest, model)["columns"][column]["meta"]["featurestore"] = value

    return mutate


def _set_description(model: str, column: str, value: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _node(manifest, model)["columns"][column]["description"] = value

    return mutate


def _duplicate_feature(manifest: dict[str, Any]) -> None:
    merchant = _node(manifest, "merchant_chargeback_features")
    column = copy.deepcopy(
        _node(manifest, "user_transaction_features")["columns"]["user_7d_transaction_count"]
    )
    column["meta"]["featurestore"].pop("aggregation", None)  # MCF is hand-written
    merchant["columns"]["user_7d_transaction_count"] = column


def _no_features(manifest: dict[str, Any]) -> None:
    for spec in _node(manifest, "user_transaction_features")["columns"].values():
        if ((spec.get("meta") or {}).get("featurestore") or {}).get("feature"):
            spec["meta"]["featurestore"]["feature"] = False


UTF, MCF, UDF = "user_transaction_features", "merchant_chargeback_features", "user_device_features"

# (id, mutation, model named, field named, extra text expected)
INVALID: list[tuple[str, Mutation, str, str, str]] = [
    ("duplicate-feature", _duplicate_feature, UTF, "user_7d_transaction_count", MCF),
    ("missing-key-column", _drop_column(UTF, "user_id"), UTF, "keys", "'user_id'"),
    ("keys-subset-of-entity", _set_view(UDF, "keys", ["user_id"]), UDF, "keys", "user_device"),
    ("keys-reordered", _set_view(UDF, "keys", ["device_id", "user_id"]), UDF, "keys", "differ"),
    ("keys-not-a-list", _set_view(UTF, "keys", "user_id"), UTF, "keys", "list"),
    ("keys-empty", _set_view(UTF, "keys", []), UTF, "keys", "list"),
    ("unknown-entity", _set_view(MCF, "entity", "shop"), MCF, "entity", "'shop'"),
    ("no-entity", _drop_view_field(MCF, "entity"), MCF, "entity", "None"),
    ("default-str-for-bigint", _set_default(UTF, "user_7d_transaction_count", "0"), UTF,
     "default", "'0'"),
    ("default-1-for-boolean", _set_default(UDF, "device_seen_before", 1), UDF, "default", "1"),
    ("default-true-for-double", _set_default(MCF, "merchant_chargeback_rate_30d", True), MCF,
     "default", "True"),
    ("default-float-for-bigint", _set_default(UTF, "user_7d_transaction_count", 0.5), UTF,
     "default", "0.5"),
    ("missing-default", _drop_default(UDF, "device_seen_before"), UDF, "default", "required"),
    ("ttl-7-days", _set_view(UTF, "ttl", "7 days"), UTF, "ttl", "'7 days'"),
    ("ttl-0d", _set_view(UTF, "ttl", "0d"), UTF, "ttl", "'0d'"),
    ("ttl-minus-1h", _set_view(MCF, "ttl", "-1h"), MCF, "ttl", "'-1h'"),
    ("ttl-int", _set_view(MCF, "ttl", 7), MCF, "ttl", "7"),
    ("ttl-none", _set_view(UDF, "ttl", None), UDF, "ttl", "None"),
    ("ttl-missing", _drop_view_field(UDF, "ttl"), UDF, "ttl", "None"),
    ("sla-words", _set_view(UTF, "freshness_sla", "26 hours"), UTF, "freshness_sla", "26 hours"),
    ("sla-empty", _set_view(MCF, "freshness_sla", ""), MCF, "freshness_sla", "''"),
    ("sla-fraction", _set_view(UDF, "freshness_sla", "1.5d"), UDF, "freshness_sla", "1.5d"),
    ("online-string", _set_view(UTF, "online", "yes"), UTF, "online", "'yes'"),
    ("online-int", _set_view(MCF, "online", 1), MCF, "online", "1"),
    ("online-string-true", _set_view(UDF, "online", "true"), UDF, "online", "'true'"),
    ("timestamp-column-missing", _drop_column(UTF, "feature_at"), UTF, "timestamp",
     "'feature_at'"),
    ("timestamp-names-unknown", _set_view(MCF, "timestamp", "event_at"), MCF, "timestamp",
     "'event_at'"),
    ("timestamp-not-named", _set_view(MCF, "timestamp", None), MCF, "timestamp", "column"),
    ("timestamp-is-varchar", _set_data_type(UDF, "feature_at", "varchar"), UDF, "timestamp",
     "not a timestamp"),
    ("timestamp-is-a-key", _set_view(UTF, "timestamp", "user_id"), UTF, "timestamp",
     "not a timestamp"),
    ("available-at-not-timestamp", _set_data_type(MCF, "available_at", "bigint"), MCF,
     "available_at", "not a timestamp"),
    ("feature-data-type-unsupported", _set_data_type(UTF, "avg_order_value_90d", "blob"), UTF,
     "data_type", "'blob'"),
    ("feature-data-type-missing", _set_data_type(MCF, "merchant_chargeback_rate_30d", None), MCF,
     "data_type", "None"),
    ("key-data-type-unsupported", _set_data_type(MCF, "merchant_id", "uuid[]"), MCF,
     "data_type", "'uuid[]'"),
    ("no-feature-columns", _no_features, UTF, "feature", "no column"),
    ("owner-empty", _set_view(UDF, "owner", " "), UDF, "owner", "non-empty"),
    ("description-missing", _set_description(UTF, "avg_order_value_90d", " "), UTF,
     "description", "avg_order_value_90d"),
    ("range-not-a-mapping", _set_column_meta(UTF, "avg_order_value_90d", "range", [0, 1]), UTF,
     "range", "[0, 1]"),
    ("range-min-not-a-number", _set_column_meta(MCF, "merchant_chargeback_rate_30d", "range",
     {"min": "zero"}), MCF, "range", "'zero'"),
    ("accepted-values-not-a-list", _set_column_meta(UDF, "device_seen_before",
     "accepted_values", "true"), UDF, "accepted_values", "'true'"),
    ("column-meta-not-a-mapping", _replace_column_meta(UDF, "device_seen_before", True), UDF,
     "device_seen_before", "mapping"),
    ("skew-threshold-above-1", _set_column_meta(UTF, "avg_order_value_90d", "skew_threshold",
     1.5), UTF, "skew_threshold", "1.5"),
    ("skew-threshold-negative", _set_column_meta(MCF, "merchant_chargeback_rate_30d",
     "skew_threshold", -0.01), MCF, "skew_threshold", "-0.01"),
    ("skew-threshold-percent-text", _set_column_meta(UDF, "device_seen_before",
     "skew_threshold", "1%"), UDF, "skew_threshold", "'1%'"),
    ("skew-threshold-bool", _set_column_meta(UTF, "user_7d_transaction_count",
     "skew_threshold", True), UTF, "skew_threshold", "True"),
]  # fmt: skip


@pytest.fixture
def broken(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    copied = copy.deepcopy(manifest)
    yield copied
    assert registry_from_manifest(manifest).views  # the shared manifest was not touched


@pytest.mark.parametrize(
    ("mutate", "model", "field", "detail"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_metadata_is_refused(
    broken: dict[str, Any], mutate: Mutation, model: str, field: str, detail: str
) -> None:
    mutate(broken)
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(broken)
    message = str(info.value)
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, message  # one mistake, one problem (no cascade)
    assert f"model {model}" in problems[0]
    assert field in problems[0]
    assert detail in problems[0]


def test_several_problems_are_reported_together(broken: dict[str, Any]) -> None:
    _set_view(MCF, "ttl", "7 days")(broken)
    _set_view(UDF, "entity", "device")(broken)
    _set_default(UTF, "user_7d_transaction_count", "zero")(broken)
    _set_view(UTF, "online", "no")(broken)
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(broken)
    problems = [line for line in str(info.value).splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, info.value
    joined = "\n".join(problems)
    assert f"model {MCF}: meta.featurestore.ttl" in joined
    assert f"model {UDF}: meta.featurestore.entity 'device'" in joined
    assert f"model {UTF}: column user_7d_transaction_count: meta.featurestore.default" in joined
    assert f"model {UTF}: meta.featurestore.online" in joined


def test_accepted_variants(broken: dict[str, Any]) -> None:
    """What the rules allow: case and spaces in durations, no available_at, online omitted
    (false), a null default, an int default for a double, a key declared by two entities."""
    _set_view(UTF, "ttl", " 14W ")(broken)  # at least a declared view's longest window + hop
    _set_view(UTF, "freshness_sla", "90M")(broken)
    _drop_view_field(MCF, "available_at")(broken)
    _drop_view_field(MCF, "online")(broken)
    _set_default(UTF, "avg_order_value_90d", None)(broken)
    _set_default(MCF, "merchant_chargeback_rate_30d", 0)(broken)
    registry = registry_from_manifest(broken)
    user = registry.view(UTF)
    assert (user.ttl, user.ttl_seconds) == ("14w", 14 * 7 * 86400)
    assert (user.freshness_sla, user.freshness_sla_seconds) == ("90m", 90 * 60)
    merchant = registry.view(MCF)
    assert merchant.available_at is None
    assert merchant.online is False
    assert registry.feature("avg_order_value_90d").default is None
    rate_default = registry.feature("merchant_chargeback_rate_30d").default
    assert rate_default == 0.0 and type(rate_default) is float


def test_skew_threshold(broken: dict[str, Any]) -> None:
    """meta.featurestore.skew_threshold: 0 when not declared, an int or float from 0 to 1
    (both ends included) as a float, in to_dict."""
    assert {f.skew_threshold for f in registry_from_manifest(broken).features.values()} == {0.0}
    _set_column_meta(UTF, "avg_order_value_90d", "skew_threshold", 0.05)(broken)
    _set_column_meta(MCF, "merchant_chargeback_rate_30d", "skew_threshold", 1)(broken)
    _set_column_meta(UDF, "device_seen_before", "skew_threshold", 0)(broken)
    registry = registry_from_manifest(broken)
    assert registry.feature("avg_order_value_90d").skew_threshold == 0.05
    threshold = registry.feature("merchant_chargeback_rate_30d").skew_threshold
    assert threshold == 1.0 and type(threshold) is float
    assert registry.feature("device_seen_before").skew_threshold == 0.0
    features = registry.to_dict()["features"]
    assert features["avg_order_value_90d"]["skew_threshold"] == 0.05
    assert features["user_7d_transaction_count"]["skew_threshold"] == 0.0


def test_models_without_featurestore_meta_are_not_views(broken: dict[str, Any]) -> None:
    views = set(registry_from_manifest(broken).views)
    del _node(broken, UDF)["config"]["meta"]["featurestore"]
    broken["exposures"] = {}  # the demo's feature service uses the view's feature
    registry = registry_from_manifest(broken)
    assert set(registry.views) == views - {UDF}
    assert "device_seen_before" not in registry.features
    assert set(registry.entities) >= {"user", "merchant", "user_device"}


# -- end to end: an edited copy of the project, `dbt parse`, `featurestore registry` -----------


def _copy_project(root: Path) -> Path:
    root.mkdir(parents=True)
    for folder in ("models", "macros", "snapshots", "seeds", "tests/dbt/data_tests"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, root / folder)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy2(REPO / name, root / name)
    return root


def _edit_features_yml(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = root / "models" / "features" / "_features__models.yml"
    doc = yaml.safe_load(path.read_text())
    edit({model["name"]: model for model in doc["models"]})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _break_three_views(models: dict[str, Any]) -> None:
    models[MCF]["config"]["meta"]["featurestore"]["entity"] = "shop"
    models[UTF]["config"]["meta"]["featurestore"]["ttl"] = "7 days"
    for column in models[UDF]["columns"]:
        if column["name"] == "device_seen_before":
            column["meta"]["featurestore"]["default"] = 1


def test_cli_refuses_an_invalid_project_end_to_end(tmp_path: Path) -> None:
    """Three mistakes in the yml (one `dbt parse`, to keep the suite fast): each reported on its
    own line naming its model and field, exit code 1, no traceback."""
    project = _copy_project(tmp_path / "project")
    _edit_features_yml(project, _break_three_views)
    warehouse = Warehouse(tmp_path / "warehouse")
    warehouse.workdir.mkdir()
    # dbt itself accepts the yml: the registry rules are the feature store's.
    warehouse.dbt(
        "parse", "--project-dir", str(project), extra_env={"DBT_PROFILES_DIR": str(project)}
    )
    manifest = warehouse.target_path / "manifest.json"
    assert manifest.is_file()
    proc = subprocess.run(
        [str(FEATURESTORE), "registry", "--project-dir", str(project)],
        cwd=REPO,
        env={**os.environ, **warehouse.env, "DBT_PROFILES_DIR": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: invalid feature registry:")
    expected = [
        (MCF, "meta.featurestore.entity", "'shop'"),
        (UTF, "meta.featurestore.ttl", "'7 days'"),
        (UDF, "column device_seen_before: meta.featurestore.default", "1 is not a bool"),
    ]
    problems = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == len(expected), proc.stderr
    for model, field, detail in expected:
        lines = [line for line in problems if f"model {model}:" in line]
        assert len(lines) == 1, proc.stderr
        assert field in lines[0] and detail in lines[0]
    # The same manifest through the library: the same problems.
    with pytest.raises(RegistryError) as info:
        load_registry(manifest)
    assert str(info.value) in proc.stderr


def test_cli_registry_without_a_manifest(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "project")
    proc = subprocess.run(
        [str(FEATURESTORE), "registry", "--project-dir", str(project)],
        cwd=REPO,
        env={**os.environ, "DBT_TARGET_PATH": str(tmp_path / "no-target")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'no-target' / 'manifest.json'} not found: run `dbt parse` "
        "(or `dbt build`) in the project first"
    ]


# -- where models are built, and the data tests of a view's columns ---------------------------


def test_relations_are_where_each_model_is_built(
    registry: Registry, manifest: dict[str, Any], demo_warehouse: Warehouse
) -> None:
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert set(registry.relations) == {node["name"] for node in models}
    for node in models:
        relation = registry.relations[node["name"]]
        assert relation == Relation(node["database"], node["schema"], node["alias"])
    tables = set(
        demo_warehouse.query("select table_schema, table_name from information_schema.tables")
    )
    for view in registry.views:
        for model in (view, f"online_{view}"):
            relation = registry.relations[model]
            assert (relation.schema, relation.alias) in tables, model
    assert registry.relations[f"online_{UTF}"].schema == "main_online"


def _yml_column_tests(model: dict[str, Any]) -> set[tuple[str, str, str | None, str]]:
    """(column, test name, namespace, arguments as JSON) of a model's column data tests."""
    found = set()
    for column in model["columns"]:
        for test in column.get("data_tests") or []:
            full, spec = (test, {}) if isinstance(test, str) else next(iter(test.items()))
            namespace, _, name = full.rpartition(".")
            arguments = json.dumps((spec or {}).get("arguments", {}), sort_keys=True)
            found.add((column["name"], name, namespace or None, arguments))
    return found


def test_data_tests_are_those_of_the_yml_columns(
    registry: Registry, declared: dict[str, Any]
) -> None:
    total = 0
    for name, model in declared.items():
        view = registry.view(name)
        got = set()
        for test in view.data_tests:
            assert (test.severity, test.where) == ("error", None)
            assert "model" not in test.kwargs and test.kwargs["column_name"] == test.column
            arguments = {k: v for k, v in test.kwargs.items() if k != "column_name"}
            got.add((test.column, test.name, test.namespace, json.dumps(arguments, sort_keys=True)))
        assert got == _yml_column_tests(model), name
        assert len(view.data_tests) == len(got)  # each once
        ordered = [(t.column, t.name) for t in view.data_tests]
        assert ordered == sorted(ordered)
        total += len(got)
    assert total >= 10  # keys, timestamps and features of the demo carry tests


def _add_test(manifest: dict[str, Any], model: str, test_id: str, **node: Any) -> None:
    manifest["nodes"][f"test.featurestore.{test_id}"] = {
        "resource_type": "test",
        "name": test_id,
        "attached_node": _node(manifest, model)["unique_id"],
        **node,
    }


def test_data_tests_read_from_the_manifest(broken: dict[str, Any]) -> None:
    """What counts: enabled generic tests with a column, attached to the view's node;
    severity lower-cased, ``where`` kept, ``model`` dropped from the arguments."""
    for node in list(broken["nodes"].values()):
        if node["resource_type"] == "test":
            del broken["nodes"][node["unique_id"]]
    column = "device_seen_before"
    _add_test(
        broken, UDF, "warn_where",
        column_name=column,
        test_metadata={"name": "accepted_values", "namespace": None,
                       "kwargs": {"values": [True], "model": "{{ ref('x') }}"}},
        config={"severity": "WARN", "where": "device_id is not null"},
    )  # fmt: skip
    _add_test(
        broken, UDF, "ranged",
        column_name=column,
        test_metadata={"name": "accepted_range", "namespace": "featurestore",
                       "kwargs": {"min_value": 0}},
        config={},
    )  # fmt: skip
    _add_test(
        broken, UDF, "a_disabled",
        column_name=column,
        test_metadata={"name": "not_null", "kwargs": {}},
        config={"enabled": False},
    )  # fmt: skip
    _add_test(
        broken, UDF, "model_level",
        column_name=None,
        test_metadata={"name": "unique_combination_of_columns", "kwargs": {}},
    )  # fmt: skip
    _add_test(broken, UDF, "singular", column_name=column)  # no test_metadata
    _add_test(
        broken, MCF, "elsewhere",
        column_name="merchant_chargeback_rate_30d",
        test_metadata={"name": "not_null", "kwargs": {}},
    )  # fmt: skip
    registry = registry_from_manifest(broken)
    assert registry.view(UDF).data_tests == (
        DataTest("accepted_range", "featurestore", column, {"min_value": 0}),
        DataTest(
            "accepted_values", None, column, {"values": [True]}, "warn", "device_id is not null"
        ),
    )
    assert registry.view(MCF).data_tests == (
        DataTest("not_null", None, "merchant_chargeback_rate_30d", {}),
    )
    assert registry.view(UTF).data_tests == ()


def test_relation_defaults(broken: dict[str, Any]) -> None:
    """No alias: the model's name; no database: ``None``; two models of one name: the later."""
    node = _node(broken, f"online_{UTF}")
    node["alias"], node["database"] = None, ""
    broken["nodes"]["model.other.dup"] = {**_node(broken, MCF), "unique_id": "model.other.dup",
                                          "schema": "other", "config": {}}  # fmt: skip
    registry = registry_from_manifest(broken)
    assert registry.relations[f"online_{UTF}"] == Relation(None, "main_online", f"online_{UTF}")
    assert registry.relations[MCF].schema == "other"
    assert ".main_features." in registry.view(MCF).relation.replace('"', "")  # its own node


# -- defaults: every pair of declared type and default type -----------------------------------

#: one data_type spelling per registry type
DATA_TYPES = {"int": "bigint", "float": "double", "bool": "boolean", "string": "varchar",
              "timestamp": "timestamp"}  # fmt: skip

#: default values of every JSON/YAML kind, named
DEFAULTS: dict[str, object] = {
    "int-0": 0,
    "int-negative": -3,
    "int-big": 2**62,
    "float": 0.5,
    "float-whole": 2.0,
    "float-nan": float("nan"),
    "float-inf": float("inf"),
    "bool-true": True,
    "bool-false": False,
    "str-digits": "0",
    "str-word": "zero",
    "str-empty": "",
    "str-iso-z": "2026-05-01T00:00:00Z",
    "str-iso-offset": "2026-05-01T02:00:00+02:00",
    "str-iso-naive": "2026-05-01 00:00:00",
    "list": [0],
    "mapping": {"value": 0},
}


def _is_iso(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _default_fits(value: object, value_type: str) -> bool:
    """The reference rule, by exact Python type (so that bool is never an int)."""
    kind = type(value)
    if value_type == "int":
        return kind is int
    if value_type == "float":
        return kind is int or (kind is float and math.isfinite(value))  # type: ignore[arg-type]
    if value_type == "bool":
        return kind is bool
    if value_type == "string":
        return kind is str
    return kind is str and _is_iso(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value_type", sorted(DATA_TYPES))
@pytest.mark.parametrize("default_name", sorted(DEFAULTS))
def test_every_pair_of_declared_type_and_default_type(
    broken: dict[str, Any], value_type: str, default_name: str
) -> None:
    value = DEFAULTS[default_name]
    column = "merchant_chargeback_rate_30d"  # a hand-written feature: any type may be declared
    _set_data_type(MCF, column, DATA_TYPES[value_type])(broken)
    _set_default(MCF, column, value)(broken)
    if _default_fits(value, value_type):
        feature = registry_from_manifest(broken).feature(column)
        assert feature.value_type == value_type
        assert feature.default == value
        assert type(feature.default) is (float if value_type == "float" else type(value))
    else:
        with pytest.raises(RegistryError) as info:
            registry_from_manifest(broken)
        assert f"model {MCF}: column {column}: meta.featurestore.default" in str(info.value)
        assert f"is not a {value_type}" in str(info.value)


def test_the_default_matrix_covers_every_registry_type() -> None:
    assert set(DATA_TYPES) == set(get_args(ValueType))
    assert {value_type_of(spelling) for spelling in DATA_TYPES.values()} == set(DATA_TYPES)
    kinds = {type(value) for value in DEFAULTS.values()}
    assert kinds == {int, float, bool, str, list, dict}
