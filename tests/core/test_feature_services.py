"""Feature services in the registry (featurestore/feature_services.py, read through
featurestore/registry.py): dbt exposures of type ``ml`` with a ``meta.featurestore`` block.

Most tests build a small manifest here (two entities, three views, written as dbt writes
them), so that every rule is checked on its own; the demo's ``fraud_model_v1`` is checked
against the yml it was parsed from (read with PyYAML) and through ``featurestore registry``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurestore.expressions import parse_expression
from featurestore.registry import (
    FeatureService,
    Registry,
    RegistryError,
    RequestField,
    load_registry,
    registry_from_manifest,
)
from tests.warehouse import REPO, Warehouse

SERVICES_YML = REPO / "models" / "services" / "_services__exposures.yml"
FEATURESTORE = Path(sys.executable).parent / "featurestore"

# -- a small manifest, as dbt writes one --------------------------------------------------------

ENTITIES = {
    "customer": {"keys": ["customer_id"], "description": "A customer."},
    "shop": {"keys": ["shop_id"], "description": "A shop."},
    "customer_card": {"keys": ["customer_id", "card_id"], "description": "A card of a customer."},
}
# view -> (entity, {feature: data_type})
VIEWS: dict[str, tuple[str, dict[str, str]]] = {
    "customer_orders": ("customer", {"order_count_7d": "bigint", "avg_basket_30d": "double"}),
    "shop_refunds": ("shop", {"refund_rate_30d": "double", "shop_category": "varchar"}),
    "customer_cards": ("customer_card", {"card_seen_before": "boolean"}),
}
_DEFAULTS = {"bigint": 0, "double": 0.0, "varchar": None, "boolean": False}


def _model(view: str) -> dict[str, Any]:
    entity, features = VIEWS[view]
    keys = ENTITIES[entity]["keys"]
    columns: dict[str, Any] = {key: {"name": key, "data_type": "varchar"} for key in keys}
    columns["feature_at"] = {"name": "feature_at", "data_type": "timestamp"}
    for name, data_type in features.items():
        columns[name] = {
            "name": name,
            "data_type": data_type,
            "description": f"The {name}.",
            "meta": {"featurestore": {"feature": True, "default": _DEFAULTS[data_type]}},
        }
    return {
        "resource_type": "model",
        "name": view,
        "unique_id": f"model.shop.{view}",
        "original_file_path": f"models/features/{view}.sql",
        "schema": "features",
        "relation_name": f'"wh"."features"."{view}"',
        "description": f"The {view} view.",
        "columns": columns,
        "config": {
            "meta": {
                "featurestore_entities": ENTITIES,
                "featurestore": {
                    "entity": entity,
                    "keys": keys,
                    "timestamp": "feature_at",
                    "owner": "team@shop.example",
                    "ttl": "30d",
                    "freshness_sla": "1d",
                    "online": True,
                },
            }
        },
    }


def _exposure(name: str, featurestore: Any, **fields: Any) -> dict[str, Any]:
    """An ``ml`` exposure depending on every view (``fields`` override any top-level field)."""
    exposure: dict[str, Any] = {
        "resource_type": "exposure",
        "name": name,
        "unique_id": f"exposure.shop.{name}",
        "package_name": "shop",
        "original_file_path": "models/services/_services__exposures.yml",
        "type": "ml",
        "owner": {"name": "Risk", "email": "risk@shop.example"},
        "description": f"  The {name}\n model. ",
        "depends_on": {"macros": [], "nodes": [f"model.shop.{view}" for view in VIEWS]},
        "meta": {"featurestore": featurestore},
        "config": {"enabled": True, "meta": {"featurestore": featurestore}},
    }
    exposure.update(fields)
    return exposure


def _service(**overrides: Any) -> dict[str, Any]:
    """A valid ``meta.featurestore`` of a service across the three entities."""
    service: dict[str, Any] = {
        "features": ["order_count_7d", "avg_basket_30d", "refund_rate_30d", "card_seen_before"],
        "request_fields": {"amount": "float", "channel": "string"},
        "request_features": [
            {
                "name": "amount_over_basket",
                "expression": "request.amount / avg_basket_30d",
                "description": "Amount over the average basket.",
            },
            {
                "name": "busy_or_refunding",
                "expression": "order_count_7d > 3 or refund_rate_30d >= 0.5",
                "description": "A busy customer, or a refunding shop.",
            },
        ],
    }
    service.update(overrides)
    return service


def _manifest(*exposures: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": {f"model.shop.{view}": _model(view) for view in VIEWS},
        "exposures": {e["unique_id"]: e for e in exposures},
    }


def _problems(manifest: dict[str, Any]) -> list[str]:
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(manifest)
    return [line[4:] for line in str(info.value).splitlines() if line.startswith("  - ")]


# -- what is read ------------------------------------------------------------------------------


def test_a_service_is_read_with_its_features_request_fields_and_request_features() -> None:
    registry = registry_from_manifest(_manifest(_exposure("scorer_v1", _service())))
    assert list(registry.feature_services) == ["scorer_v1"]
    service = registry.feature_service("scorer_v1")
    assert service.name == "scorer_v1"
    assert service.owner == "risk@shop.example"
    assert service.description == "The scorer_v1 model."
    assert service.features == tuple(_service()["features"])
    assert service.request_fields == (
        RequestField("amount", "float"),
        RequestField("channel", "string"),
    )
    assert service.entities == ("customer", "shop", "customer_card")  # first use
    assert service.feature_names() == (*service.features, "amount_over_basket", "busy_or_refunding")
    feature_types = {name: f.value_type for name, f in registry.features.items()}
    for feature, declared in zip(
        service.request_features, _service()["request_features"], strict=True
    ):
        assert feature.name == declared["name"]
        assert feature.description == declared["description"]
        # the registry's parse is the expression module's parse of the same text and types
        assert feature.expression == parse_expression(
            declared["expression"],
            feature_types=feature_types,
            request_types=service.request_types(),
        )
    ratio, flag = service.request_features
    assert (ratio.expression.features, ratio.expression.request_fields) == (
        ("avg_basket_30d",),
        ("amount",),
    )
    assert ratio.expression.value_type == "float"
    assert flag.expression.value_type == "bool"
    assert flag.expression.features == ("order_count_7d", "refund_rate_30d")


def test_a_service_without_request_fields_or_request_features() -> None:
    minimal = {"features": ["refund_rate_30d", "shop_category"]}
    registry = registry_from_manifest(_manifest(_exposure("shop_scorer", minimal)))
    service = registry.feature_service("shop_scorer")
    assert (service.request_fields, service.request_features) == ((), ())
    assert service.entities == ("shop",)
    assert service.feature_names() == ("refund_rate_30d", "shop_category")


def test_other_exposures_are_not_services() -> None:
    manifest = _manifest(
        _exposure("scorer_v1", _service()),
        _exposure("dashboard", _service(), type="dashboard"),  # not ml
        _exposure("notebook_model", None, meta={}, config={"meta": {}}),  # ml, no featurestore
    )
    assert list(registry_from_manifest(manifest).feature_services) == ["scorer_v1"]
    del manifest["exposures"]
    assert registry_from_manifest(manifest).feature_services == {}


def test_meta_is_read_from_config_when_only_there() -> None:
    exposure = _exposure("scorer_v1", _service())
    del exposure["meta"]
    registry = registry_from_manifest(_manifest(exposure))
    assert registry.feature_service("scorer_v1").features == tuple(_service()["features"])


def test_owner_falls_back_to_the_name() -> None:
    exposure = _exposure("scorer_v1", _service(), owner={"name": "Risk ML"})
    assert registry_from_manifest(_manifest(exposure)).feature_service("scorer_v1").owner == (
        "Risk ML"
    )


def test_depends_on_may_name_more_than_the_views() -> None:
    exposure = _exposure("shop_scorer", {"features": ["refund_rate_30d"]})
    exposure["depends_on"]["nodes"] = ["model.shop.shop_refunds", "model.shop.customer_orders"]
    assert registry_from_manifest(_manifest(exposure)).feature_service("shop_scorer")


def test_unknown_service_suggests_a_close_name() -> None:
    registry = registry_from_manifest(_manifest(_exposure("scorer_v1", _service())))
    with pytest.raises(RegistryError) as close:
        registry.feature_service("scorer_v2")
    assert str(close.value) == "unknown feature service 'scorer_v2' (did you mean 'scorer_v1'?)"
    with pytest.raises(RegistryError) as far:
        registry.feature_service("fraud")
    assert str(far.value) == "unknown feature service 'fraud' (declared: scorer_v1)"
    empty = registry_from_manifest(_manifest())
    with pytest.raises(RegistryError, match=r"\(declared: none\)"):
        empty.feature_service("scorer_v1")


def test_to_dict_lists_the_services() -> None:
    registry = registry_from_manifest(_manifest(_exposure("scorer_v1", _service())))
    data = json.loads(json.dumps(registry.to_dict()))
    service = data["feature_services"]["scorer_v1"]
    declared = _service()
    assert service["owner"] == "risk@shop.example"
    assert service["description"] == "The scorer_v1 model."
    assert service["features"] == declared["features"]
    assert service["entities"] == ["customer", "shop", "customer_card"]
    assert service["keys"] == ["customer_id", "shop_id", "card_id"]
    assert service["request_fields"] == declared["request_fields"]
    assert list(service["request_features"]) == ["amount_over_basket", "busy_or_refunding"]
    ratio = service["request_features"]["amount_over_basket"]
    assert ratio == {
        "expression": declared["request_features"][0]["expression"],
        "type": "float",
        "features": ["avg_basket_30d"],
        "request_fields": ["amount"],
        "description": declared["request_features"][0]["description"],
    }


# -- what is refused ---------------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _meta_edit(**overrides: Any) -> Edit:
    def edit(exposure: dict[str, Any]) -> None:
        exposure["meta"]["featurestore"] = exposure["config"]["meta"]["featurestore"] = _service(
            **overrides
        )

    return edit


def _request_feature(**fields: Any) -> Edit:
    """The first request feature with ``fields`` changed (a value of None drops the field)."""
    feature = {**_service()["request_features"][0], **fields}
    feature = {k: v for k, v in feature.items() if v is not None}
    return _meta_edit(request_features=[feature, _service()["request_features"][1]])


def _set(field: str, value: Any) -> Edit:
    def edit(exposure: dict[str, Any]) -> None:
        exposure[field] = value

    return edit


def _depends_on(*views: str) -> Edit:
    def edit(exposure: dict[str, Any]) -> None:
        exposure["depends_on"]["nodes"] = [f"model.shop.{view}" for view in views]

    return edit


def _extra_meta_field(exposure: dict[str, Any]) -> None:
    exposure["meta"]["featurestore"]["entities"] = ["customer"]


def _meta_not_a_mapping(exposure: dict[str, Any]) -> None:
    exposure["meta"]["featurestore"] = ["order_count_7d"]


FEATURES = _service()["features"]
AMOUNT = {"amount": "float", "channel": "string"}
NOT_IN_SERVICE = "which the service does not list in meta.featurestore.features"
INVALID: list[tuple[str, Edit, str]] = [
    ("no-features", _meta_edit(features=None), "features must be a non-empty list"),
    ("empty-features", _meta_edit(features=[]), "a non-empty list of feature names, got []"),
    (
        "features-not-a-list",
        _meta_edit(features="order_count_7d"),
        "must be a non-empty list of feature names, got 'order_count_7d'",
    ),
    (
        "unknown-feature",
        _meta_edit(features=[*FEATURES, "refund_rate_31d"]),
        "features: unknown feature 'refund_rate_31d' (did you mean 'refund_rate_30d'?)",
    ),
    (
        "feature-twice",
        _meta_edit(features=[*FEATURES, "order_count_7d"]),
        "features: 'order_count_7d' is listed twice",
    ),
    (
        "feature-not-a-string",
        _meta_edit(features=[*FEATURES, 7]),
        "features: 7 is not a feature name",
    ),
    (
        "request-fields-not-a-mapping",
        _meta_edit(request_fields=["amount"]),
        "request_fields must map field names to value types, got ['amount']",
    ),
    (
        "request-field-bad-name",
        _meta_edit(request_fields={**AMOUNT, "9lives": "int"}),
        "request_fields: '9lives' is not a valid name",
    ),
    (
        "request-field-dotted-name",
        _meta_edit(request_fields={**AMOUNT, "a.b": "int"}),
        "request_fields: 'a.b' is not a valid name",
    ),
    (
        "request-field-type-number",
        _meta_edit(request_fields={**AMOUNT, "amount": "number"}),
        "request_fields: amount: type 'number' is not a registry value type "
        "(int, float, bool, string, timestamp)",
    ),
    (
        "request-field-type-missing",
        _meta_edit(request_fields={**AMOUNT, "amount": None}),
        "request_fields: amount: type None is not a registry value type",
    ),
    (
        "request-field-is-a-stored-feature",
        _meta_edit(request_fields={**AMOUNT, "refund_rate_30d": "float"}),
        "request field 'refund_rate_30d' has the name of a stored feature of the service",
    ),
    (
        "request-features-not-a-list",
        _meta_edit(request_features={"name": "x"}),
        "request_features must be a list of {name, expression, description}",
    ),
    (
        "request-feature-not-a-mapping",
        _meta_edit(request_features=["amount_over_basket"]),
        "request_features[0] must be a mapping {name, expression, description}",
    ),
    (
        "request-feature-unknown-field",
        _request_feature(type="float"),
        "request_features[0]: unknown field(s) type (allowed: name, expression, description)",
    ),
    (
        "request-feature-no-name",
        _request_feature(name=None),
        "request_features[0]: name None is not a valid name",
    ),
    (
        "request-feature-bad-name",
        _request_feature(name="amount over basket"),
        "request_features[0]: name 'amount over basket' is not a valid name",
    ),
    (
        "request-feature-named-as-a-stored-feature",
        _request_feature(name="avg_basket_30d"),
        "request feature avg_basket_30d: the name is taken by the stored feature of view "
        "customer_orders",
    ),
    (
        "request-feature-named-as-another-view-s-feature",
        _request_feature(name="shop_category"),
        "request feature shop_category: the name is taken by the stored feature of view "
        "shop_refunds",
    ),
    (
        "request-feature-named-as-a-request-field",
        _request_feature(name="channel"),
        "request feature channel: the name is taken by a request field of the service",
    ),
    (
        "request-feature-twice",
        _request_feature(name="busy_or_refunding"),
        "request feature busy_or_refunding: the name is declared twice in the service",
    ),
    (
        "request-feature-no-description",
        _request_feature(description=" "),
        "request feature amount_over_basket: a request feature needs a description",
    ),
    (
        "request-feature-no-expression",
        _request_feature(expression=None),
        "request feature amount_over_basket: expression must be a non-empty string, got None",
    ),
    (
        "expression-unknown-request-field",
        _request_feature(expression="request.amt / avg_basket_30d"),
        "request feature amount_over_basket: expression 'request.amt / avg_basket_30d': ",
    ),
    (
        "expression-unknown-feature",
        _request_feature(expression="request.amount / avg_basket_31d"),
        "request feature amount_over_basket: expression 'request.amount / avg_basket_31d': ",
    ),
    (
        "expression-type-error",
        _request_feature(expression="request.channel + 1"),
        "request feature amount_over_basket: expression 'request.channel + 1': ",
    ),
    (
        "expression-unsupported-function",
        _request_feature(expression="ln(request.amount)"),
        "request feature amount_over_basket: expression 'ln(request.amount)': ",
    ),
    (
        "expression-uses-another-view-s-feature",
        _request_feature(expression="shop_category = 'books'"),
        "request feature amount_over_basket: expression \"shop_category = 'books'\" uses "
        f"feature(s) shop_category, {NOT_IN_SERVICE}",
    ),
    (
        "expression-uses-an-unlisted-feature",
        _meta_edit(features=["order_count_7d", "refund_rate_30d", "card_seen_before"]),
        "request feature amount_over_basket: expression 'request.amount / avg_basket_30d' uses "
        f"feature(s) avg_basket_30d, {NOT_IN_SERVICE}",
    ),
    (
        "depends-on-lacks-a-view",
        _depends_on("customer_orders", "customer_cards"),
        "depends_on lacks the feature view(s) of its features: ref('shop_refunds')",
    ),
    (
        "depends-on-empty",
        _set("depends_on", {"nodes": []}),
        "depends_on lacks the feature view(s) of its features: ref('customer_orders'), "
        "ref('shop_refunds'), ref('customer_cards')",
    ),
    (
        "unknown-meta-field",
        _extra_meta_field,
        "unknown field(s) entities in meta.featurestore (allowed: features, request_fields, "
        "request_features)",
    ),
    (
        "meta-not-a-mapping",
        _meta_not_a_mapping,
        "meta.featurestore must be a mapping, got ['order_count_7d']",
    ),
    ("no-owner", _set("owner", {}), "the exposure's owner needs an email or a name"),
    (
        "blank-owner",
        _set("owner", {"name": " ", "email": ""}),
        "the exposure's owner needs an email or a name",
    ),
]


@pytest.mark.parametrize(
    ("edit", "detail"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_services_are_refused(edit: Edit, detail: str) -> None:
    exposure = _exposure("scorer_v1", _service())
    edit(exposure)
    problems = _problems(_manifest(exposure, _exposure("other", {"features": ["order_count_7d"]})))
    assert len(problems) == 1, problems  # one mistake, one problem (the other service is fine)
    assert problems[0].startswith("feature service scorer_v1: "), problems
    assert detail in problems[0], problems


def test_an_expression_error_keeps_the_expression_module_s_message() -> None:
    from featurestore.expressions import ExpressionError

    text = "request.amount / avg_basket_31d"
    with pytest.raises(ExpressionError) as expected:
        parse_expression(
            text,
            feature_types={"avg_basket_30d": "float"},
            request_types={"amount": "float"},
        )
    ratio = {"name": "ratio", "expression": text, "description": "A ratio."}
    problems = _problems(_manifest(_exposure("scorer_v1", _service(request_features=[ratio]))))
    assert problems == [
        f"feature service scorer_v1: request feature ratio: expression {text!r}: {expected.value}"
    ]


def test_duplicate_service_names_are_refused() -> None:
    first = _exposure("scorer_v1", _service())
    second = _exposure("scorer_v1", {"features": ["order_count_7d"]})
    second["unique_id"] = "exposure.other_package.scorer_v1"
    second["package_name"] = "other_package"
    third = {**second, "unique_id": "exposure.third_package.scorer_v1"}
    problems = _problems(_manifest(first, second, third))  # reported once
    assert problems == [
        "feature service scorer_v1: the name is declared by more than one ml exposure "
        "(feature service names must be unique)"
    ]


def test_several_problems_are_reported_together() -> None:
    first = _exposure("scorer_v1", _service(features=["order_count_7d", "nope"]))
    second = _exposure("scorer_v2", _service(request_fields={"amount": "decimal"}), owner={})
    problems = _problems(_manifest(first, second))
    assert len(problems) == 3, problems
    # scorer_v1's expressions are not read (they would only repeat the mistake)
    assert "feature service scorer_v1: features: unknown feature 'nope'" in problems[0]
    assert problems[1] == "feature service scorer_v2: the exposure's owner needs an email or a name"
    assert "feature service scorer_v2: request_fields: amount: type 'decimal'" in problems[2]


def test_services_are_not_read_while_a_view_is_invalid() -> None:
    """A broken view is reported alone, not also as the unknown features of its services."""
    manifest = _manifest(_exposure("scorer_v1", _service()))
    del manifest["nodes"]["model.shop.customer_orders"]["config"]["meta"]["featurestore"]["owner"]
    assert _problems(manifest) == [
        "model customer_orders: meta.featurestore.owner must be a non-empty string"
    ]


# -- the demo's fraud_model_v1 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


@pytest.fixture(scope="module")
def declared_services() -> dict[str, Any]:
    doc = yaml.safe_load(SERVICES_YML.read_text())
    return {exposure["name"]: exposure for exposure in doc["exposures"]}


def test_the_demo_services_are_those_of_the_yml(
    demo_registry: Registry, declared_services: dict[str, Any]
) -> None:
    ml = {name: e for name, e in declared_services.items() if e["type"] == "ml"}
    assert "fraud_model_v1" in ml
    assert set(demo_registry.feature_services) == set(ml)
    for name, exposure in ml.items():
        meta = exposure["meta"]["featurestore"]
        service: FeatureService = demo_registry.feature_service(name)
        assert service.owner == exposure["owner"]["email"]
        assert service.features == tuple(meta["features"])
        assert service.request_types() == meta["request_fields"]
        assert [(f.name, f.expression.text) for f in service.request_features] == [
            (f["name"], f["expression"]) for f in meta["request_features"]
        ]
        views = {demo_registry.feature(f).view for f in service.features}
        assert {ref.split("'")[1] for ref in exposure["depends_on"]} >= views


def test_fraud_model_v1_spans_three_entities(demo_registry: Registry) -> None:
    service = demo_registry.feature_service("fraud_model_v1")
    assert service.entities == ("user", "merchant", "user_device")
    ratio = {f.name: f for f in service.request_features}["amount_over_avg_90d"]
    assert ratio.expression.features == ("avg_order_value_90d",)
    assert ratio.expression.request_fields == ("amount",)


def test_cli_registry_json_lists_the_services(demo_warehouse: Warehouse) -> None:
    env = {**os.environ, **demo_warehouse.env, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(FEATURESTORE), "registry", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)["feature_services"]
    expected = load_registry(demo_warehouse.target_path / "manifest.json").to_dict()
    assert listed == expected["feature_services"]
    assert listed["fraud_model_v1"]["request_fields"] == {"amount": "float"}
    table = subprocess.run(
        [str(FEATURESTORE), "registry"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "fraud_model_v1" in table.stdout
    assert "amount_over_avg_90d" in table.stdout
