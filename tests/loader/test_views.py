"""View planning (loader/views.py): which views a load reads, from which relation, with
which of their yml data tests, all from the registry of a real `dbt build`; the expected
relations and tests are read here from the manifest's nodes and the yml with plain loops."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from featurestore.exit_codes import ExitCode
from featurestore.registry import DataTest, Registry
from loader import ViewSelectionError, WarehouseError, plan_views
from loader.errors import LoaderError
from loader.views import gated_tests, online_model_name
from tests.warehouse import REPO, Warehouse

VIEWS = (
    "merchant_chargeback_features",
    "merchant_transaction_features",
    "user_device_features",
    "user_transaction_features",
)
FEATURES_YML = REPO / "models" / "features" / "_features__models.yml"
#: the yml's names of the data tests the gate also checks
GATED_YML_NAMES = {"not_null", "accepted_values", "featurestore.accepted_range"}


def test_unknown_or_offline_views_are_refused(registry: Registry) -> None:
    with pytest.raises(ViewSelectionError, match="unknown feature view 'nope'") as caught:
        plan_views(registry, ["user_device_features", "nope"])
    assert caught.value.exit_code == ExitCode.USAGE
    offline = dataclasses.replace(
        registry,
        views={
            **registry.views,
            "user_device_features": dataclasses.replace(
                registry.view("user_device_features"), online=False
            ),
        },
    )
    with pytest.raises(ViewSelectionError, match="'user_device_features' is not online"):
        plan_views(offline, ["user_device_features"])
    chosen = [source.name for source in plan_views(offline, None)]
    assert chosen == [name for name in VIEWS if name != "user_device_features"]
    sources = plan_views(registry, ["user_device_features", "user_device_features"])
    assert [(s.name, s.schema, s.table) for s in sources] == [
        ("user_device_features", "main_online", "online_user_device_features")
    ]


def test_an_empty_selection_or_no_online_view_is_refused(registry: Registry) -> None:
    with pytest.raises(ViewSelectionError, match="--views is empty") as caught:
        plan_views(registry, [])
    assert caught.value.exit_code == ExitCode.USAGE
    none_online = dataclasses.replace(
        registry,
        views={
            name: dataclasses.replace(view, online=False) for name, view in registry.views.items()
        },
    )
    with pytest.raises(LoaderError, match="no online feature view") as no_view:
        plan_views(none_online, None)
    assert not isinstance(no_view.value, ViewSelectionError)
    with pytest.raises(ViewSelectionError, match=r"online views: none\)"):
        plan_views(none_online, ["user_device_features"])


def test_each_view_reads_its_online_models_relation(
    registry: Registry, demo_warehouse: Warehouse
) -> None:
    manifest = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    models = {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }
    sources = plan_views(registry, None)
    assert [s.name for s in sources] == list(VIEWS)
    for source in sources:
        node = models[f"online_{source.name}"]
        assert (source.database, source.schema, source.table) == (
            node["database"],
            node["schema"],
            node["alias"],
        )
        assert source.schema == "main_online" and source.table == f"online_{source.name}"
        assert source.relation == f'"main_online"."online_{source.name}"'
        assert source.relation_name is None
        assert source.columns == (
            *source.view.keys,
            f"{source.name}__feature_at",
            f"{source.name}__as_of_at",
            f"{source.name}__changed_at",
            "as_of_at",
            *source.value_columns,
        )
        if source.name.endswith("_transaction_features"):  # declared: tiles
            assert source.tiled
            partials = {
                "merchant_transaction_features": ["merchant_1h_transaction_count__count"],
                "user_transaction_features": [
                    "user_10m_transaction_count__count",
                    "user_7d_transaction_count__count",
                    "avg_order_value_90d__count",
                    "avg_order_value_90d__sum",
                ],
            }[source.name]
            assert source.value_columns == ("tile_hop_seconds", "tile_start", *partials)
            order = (*source.view.keys, "tile_hop_seconds", "tile_start")
        else:
            assert not source.tiled
            assert source.value_columns == source.view.feature_names()
            order = (*source.view.keys, f"{source.name}__feature_at")
        assert source.order_columns == source.unique_columns == order


def test_a_view_without_its_online_model_is_a_warehouse_error(registry: Registry) -> None:
    model = online_model_name("user_device_features")
    assert model == "online_user_device_features"
    relations = {name: r for name, r in registry.relations.items() if name != model}
    with pytest.raises(WarehouseError, match=f"no model '{model}'") as caught:
        plan_views(dataclasses.replace(registry, relations=relations), None)
    assert f"models/online/{model}.sql" in str(caught.value)
    assert not isinstance(caught.value, ViewSelectionError)


def _yml_gated_tests() -> dict[str, set[tuple[str, str, str]]]:
    """Per view: (column, test name, arguments as JSON) of the yml's gated tests on
    feature columns."""
    doc = yaml.safe_load(FEATURES_YML.read_text())
    expected: dict[str, set[tuple[str, str, str]]] = {}
    for model in doc["models"]:
        tests = expected.setdefault(model["name"], set())
        for column in model["columns"]:
            if not (column.get("meta") or {}).get("featurestore", {}).get("feature"):
                continue
            for test in column.get("data_tests") or []:
                name, spec = (test, {}) if isinstance(test, str) else next(iter(test.items()))
                if name in GATED_YML_NAMES:
                    arguments = json.dumps((spec or {}).get("arguments", {}), sort_keys=True)
                    tests.add((column["name"], name.split(".")[-1], arguments))
    return expected


def test_the_gate_gets_the_yml_data_tests_of_feature_columns(registry: Registry) -> None:
    expected = _yml_gated_tests()
    assert sum(len(tests) for tests in expected.values()) >= 4  # the demo declares some
    for source in plan_views(registry, None):
        got = set()
        for test in source.data_tests:
            arguments = {k: v for k, v in test.kwargs.items() if k != "column_name"}
            got.add((test.column, test.name, json.dumps(arguments, sort_keys=True)))
        assert got == expected[source.name], source.name
        # sorted by column, then test name; only feature columns (keys have not_null too)
        ordered = [(t.column, t.name) for t in source.data_tests]
        assert ordered == sorted(ordered)
        assert {t.column for t in source.data_tests} <= set(source.view.feature_names())


def _test(name: str, column: str, **fields: Any) -> DataTest:
    return DataTest(name=name, namespace=fields.pop("namespace", None), column=column,
                    kwargs=fields.pop("kwargs", {}), **fields)  # fmt: skip


def test_only_error_tests_without_where_of_the_known_kinds_gate(registry: Registry) -> None:
    view = registry.view("user_transaction_features")
    feature, other = view.feature_names()[0], view.feature_names()[1]
    kept = (
        _test("not_null", feature),
        _test("accepted_range", feature, namespace="featurestore", kwargs={"min_value": 0}),
        _test("accepted_values", other, kwargs={"values": [1, 2]}),
    )
    dropped = (
        _test("not_null", view.keys[0]),  # a key column
        _test("not_null", feature, severity="warn"),
        _test("not_null", feature, where="amount > 0"),
        _test("accepted_range", feature, namespace="dbt_utils"),  # another package's
        _test("accepted_range", feature),  # no namespace: not the featurestore macro
        _test("not_null", feature, namespace="featurestore"),
        _test("unique", feature),
    )
    planned = dataclasses.replace(view, data_tests=(dropped[0], *kept[:2], *dropped[1:], kept[2]))
    assert gated_tests(planned) == kept
    swapped = dataclasses.replace(registry, views={**registry.views, view.name: planned})
    (source,) = plan_views(swapped, [view.name])
    assert source.data_tests == kept
