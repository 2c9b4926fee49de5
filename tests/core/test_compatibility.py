"""The schema-compatibility rule (featurestore/compatibility.py) on crafted manifests: copies
of the demo project's manifest with one change each, read by the real registry loader."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from featurestore.compatibility import incompatibilities
from featurestore.registry import Registry, registry_from_manifest
from tests.warehouse import Warehouse

Manifest = dict[str, Any]
Change = Callable[[Manifest], None]


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> Manifest:
    loaded: Manifest = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def base(manifest: Manifest) -> Registry:
    return registry_from_manifest(manifest)


def changed(manifest: Manifest, *changes: Change) -> Registry:
    copied = copy.deepcopy(manifest)
    copied.pop("exposures", None)  # the demo's feature service would refuse removed features
    for change in changes:
        change(copied)
    return registry_from_manifest(copied)


def models(manifest: Manifest) -> list[dict[str, Any]]:
    return [n for n in manifest["nodes"].values() if n.get("resource_type") == "model"]


def node(manifest: Manifest, name: str) -> dict[str, Any]:
    (found,) = [n for n in models(manifest) if n["name"] == name]
    return found


def view_meta(manifest: Manifest, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = node(manifest, name)["config"]["meta"]["featurestore"]
    return meta


def found(old: Registry, new: Registry) -> list[tuple[str, str]]:
    return [(i.kind, i.name) for i in incompatibilities(old, new)]


# --- the changes ------------------------------------------------------------------------------


def drop_column(view: str, column: str) -> Change:
    def change(manifest: Manifest) -> None:
        del node(manifest, view)["columns"][column]

    return change


def set_data_type(view: str, column: str, data_type: str, default: object = None) -> Change:
    def change(manifest: Manifest) -> None:
        spec = node(manifest, view)["columns"][column]
        spec["data_type"] = data_type
        spec["meta"]["featurestore"]["default"] = default
        spec.pop("data_tests", None)

    return change


def set_view(view: str, field: str, value: object) -> Change:
    def change(manifest: Manifest) -> None:
        view_meta(manifest, view)[field] = value

    return change


def drop_view(view: str) -> Change:
    def change(manifest: Manifest) -> None:
        (key,) = [k for k, n in manifest["nodes"].items() if n.get("name") == view]
        del manifest["nodes"][key]

    return change


def set_aggregation(view: str, column: str, **fields: object) -> Change:
    def change(manifest: Manifest) -> None:
        meta = node(manifest, view)["columns"][column]["meta"]["featurestore"]
        meta["aggregation"] = {**meta["aggregation"], **fields}

    return change


def set_entity_keys(entity: str, keys: list[str]) -> Change:
    """The entity's keys as every model's config declares them (dbt_project.yml)."""

    def change(manifest: Manifest) -> None:
        for model in models(manifest):
            entities = model["config"].get("meta", {}).get("featurestore_entities", {})
            if entity in entities:
                entities[entity]["keys"] = keys
        for model in models(manifest):
            meta = model["config"].get("meta", {}).get("featurestore")
            if meta is not None and meta.get("entity") == entity:
                meta["keys"] = keys

    return change


def add_feature(view: str, source: str, name: str) -> Change:
    """A copy of ``source``'s column under a new name."""

    def change(manifest: Manifest) -> None:
        columns = node(manifest, view)["columns"]
        columns[name] = {**copy.deepcopy(columns[source]), "name": name}

    return change


# --- refused ----------------------------------------------------------------------------------


def test_the_same_registry_is_compatible(base: Registry, manifest: Manifest) -> None:
    assert found(base, changed(manifest)) == []


def test_a_removed_feature_is_named(base: Registry, manifest: Manifest) -> None:
    new = changed(manifest, drop_column("user_transaction_features", "avg_order_value_90d"))
    assert found(base, new) == [("feature_removed", "avg_order_value_90d")]
    (problem,) = incompatibilities(base, new)
    assert str(problem) == (
        "feature avg_order_value_90d: removed (was in view user_transaction_features) "
        "[feature_removed]"
    )


def test_a_type_change_is_named(base: Registry, manifest: Manifest) -> None:
    new = changed(manifest, set_data_type("user_device_features", "device_seen_before", "varchar"))
    assert found(base, new) == [("feature_type_changed", "device_seen_before")]
    (problem,) = incompatibilities(base, new)
    assert "from bool (boolean) to string (varchar)" in problem.message


def test_a_storage_type_of_the_same_served_type_passes(base: Registry, manifest: Manifest) -> None:
    feature = base.features["merchant_chargeback_rate_30d"]
    assert feature.value_type == "float"
    other = "float" if feature.data_type != "float" else "double"
    new = changed(
        manifest,
        set_data_type("merchant_chargeback_features", "merchant_chargeback_rate_30d", other, 0.0),
    )
    assert found(base, new) == []


def test_a_removed_view_names_it_and_each_of_its_features(
    base: Registry, manifest: Manifest
) -> None:
    new = changed(manifest, drop_view("user_device_features"))
    features = sorted(base.views["user_device_features"].feature_names())
    assert found(base, new) == [("view_removed", "user_device_features")] + [
        ("feature_removed", f) for f in features
    ]


def test_a_view_taken_offline_is_named_and_put_online_passes(
    base: Registry, manifest: Manifest
) -> None:
    offline = changed(manifest, set_view("user_device_features", "online", False))
    assert found(base, offline) == [("view_taken_offline", "user_device_features")]
    assert found(offline, base) == []


def test_changed_entity_keys_are_named(base: Registry, manifest: Manifest) -> None:
    new = changed(manifest, set_entity_keys("user_device", ["device_id", "user_id"]))
    assert found(base, new) == [
        ("entity_keys_changed", "user_device"),
        ("view_keys_changed", "user_device_features"),
    ]
    assert (
        "from (user_id, device_id) to (device_id, user_id)"
        in incompatibilities(base, new)[0].message
    )


def test_a_view_moved_to_another_entity_is_named(base: Registry, manifest: Manifest) -> None:
    new = changed(
        manifest,
        set_view("user_device_features", "entity", "user"),
        set_view("user_device_features", "keys", ["user_id"]),
    )
    assert found(base, new) == [
        ("view_entity_changed", "user_device_features"),
        ("view_keys_changed", "user_device_features"),
    ]


def test_a_changed_aggregation_is_named_and_a_respelled_window_passes(
    base: Registry, manifest: Manifest
) -> None:
    wider = changed(
        manifest,
        set_aggregation("user_transaction_features", "user_10m_transaction_count", window="20m"),
    )
    assert found(base, wider) == [("aggregation_changed", "user_10m_transaction_count")]
    (problem,) = incompatibilities(base, wider)
    assert "over 10m hop 1m to count(*) over 20m hop 1m" in problem.message
    respelled = changed(
        manifest,
        set_aggregation("user_transaction_features", "user_7d_transaction_count", window="168h"),
    )
    assert respelled.features["user_7d_transaction_count"].aggregation.window == "168h"  # type: ignore[union-attr]
    assert found(base, respelled) == []


def test_several_changes_are_each_named_in_order(base: Registry, manifest: Manifest) -> None:
    new = changed(
        manifest,
        set_view("merchant_transaction_features", "online", False),
        drop_column("user_transaction_features", "avg_order_value_90d"),
        set_data_type("user_device_features", "device_seen_before", "varchar"),
    )
    assert found(base, new) == [
        ("view_taken_offline", "merchant_transaction_features"),
        ("feature_removed", "avg_order_value_90d"),
        ("feature_type_changed", "device_seen_before"),
    ]


# --- passes -------------------------------------------------------------------------------------


def test_new_features_views_and_metadata_changes_pass(base: Registry, manifest: Manifest) -> None:
    def new_view(manifest: Manifest) -> None:
        (key,) = [
            k for k, n in manifest["nodes"].items() if n.get("name") == "user_device_features"
        ]
        copied = copy.deepcopy(manifest["nodes"][key])
        copied["name"] = "user_device_features_v2"
        copied["original_file_path"] = "models/features/user_device_features_v2.sql"
        copied["columns"]["device_seen_before_v2"] = {
            **copied["columns"].pop("device_seen_before"),
            "name": "device_seen_before_v2",
        }
        manifest["nodes"][key + "_v2"] = copied

    new = changed(
        manifest,
        new_view,
        add_feature(
            "merchant_chargeback_features",
            "merchant_chargeback_rate_30d",
            "merchant_chargeback_rate_30d_v2",
        ),
        set_view("user_device_features", "ttl", "30d"),
        set_view("user_device_features", "owner", "someone-else@shop.example"),
        set_view("merchant_chargeback_features", "freshness_sla", "2d"),
    )
    assert "user_device_features_v2" in new.views
    assert "merchant_chargeback_rate_30d_v2" in new.features
    assert found(base, new) == []
    # and the other way round, the additions are removals
    assert found(new, base) == [
        ("view_removed", "user_device_features_v2"),
        ("feature_removed", "device_seen_before_v2"),
        ("feature_removed", "merchant_chargeback_rate_30d_v2"),
    ]
