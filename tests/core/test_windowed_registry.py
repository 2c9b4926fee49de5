"""Declared (windowed) feature views read by the registry (featurestore/registry.py,
featurestore/windowed_declaration.py) from synthetic manifests built here node by node.

A valid declaration is parsed into exactly the typed definitions written out in the test;
every broken declaration fails with one problem naming the model and the field; the hop's
defaults follow the README's table (written here, not taken from the code); hand-written
views beside a declared one read as before; the demo project's manifest (`dbt parse`) reads,
each view declared or hand-written as its yml says; and the README's redeclared user view, in
an edited copy of the project, goes through `dbt parse` and `featurestore registry --json`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurestore.data_types import NotAggregatable, aggregated_kind_of
from featurestore.registry import RegistryError, load_registry, registry_from_manifest
from featurestore.windows import Aggregation, WindowedSource
from tests.warehouse import REPO, Warehouse

ENTITIES = {
    "user": {"keys": ["user_id"], "description": "A customer."},
    "merchant": {"keys": ["merchant_id"], "description": "A shop."},
}
EVENTS = "stg_events"
VIEW = "user_activity"
HAND = "merchant_scores"
DAY, HOUR, MINUTE = 86400, 3600, 60


def _column(data_type: str | None, **featurestore: Any) -> dict[str, Any]:
    column: dict[str, Any] = {"description": "A column."}
    if data_type is not None:
        column["data_type"] = data_type
    if featurestore:
        column["meta"] = {"featurestore": featurestore}
    return column


def _model(
    name: str, columns: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    node_meta: dict[str, Any] = {"featurestore_entities": ENTITIES}
    if meta is not None:
        node_meta["featurestore"] = meta
    return {
        "unique_id": f"model.shop.{name}",
        "resource_type": "model",
        "name": name,
        "original_file_path": f"models/{name}.sql",
        "relation_name": f'"wh"."main"."{name}"',
        "database": "wh",
        "schema": "main",
        "alias": name,
        "description": f"The {name} model.",
        "config": {"meta": node_meta},
        "columns": {column: {"name": column, **spec} for column, spec in columns.items()},
    }


def _events_node() -> dict[str, Any]:
    return _model(
        EVENTS,
        {
            "event_id": _column("varchar"),
            "user_id": _column("varchar"),
            "merchant_id": _column("varchar"),
            "amount": _column("decimal(18, 2)"),
            "quantity": _column("integer"),
            "price": _column("double"),
            "note": _column("varchar"),
            "loose": _column(None),
            "occurred_at": _column("timestamp"),
            "received_at": _column("timestamp"),
        },
    )


def _view_meta(**overrides: Any) -> dict[str, Any]:
    meta = {
        "entity": "user",
        "keys": ["user_id"],
        "timestamp": "feature_at",
        "owner": "risk@shop.example",
        "ttl": "91d",
        "freshness_sla": "26h",
        "online": True,
        "windowed": {
            "events": EVENTS,
            "event_time": "occurred_at",
            "ingested_at": "received_at",
            "event_id": "event_id",
        },
    }
    meta.update(overrides)
    return meta


def _feature(data_type: str, aggregation: object, default: object = 0) -> dict[str, Any]:
    return _column(data_type, feature=True, default=default, aggregation=aggregation)


def _view_node() -> dict[str, Any]:
    return _model(
        VIEW,
        {
            "user_id": _column("varchar"),
            "feature_at": _column("timestamp"),
            "last_ingested_at": _column("timestamp"),
            "events_10m": _feature("bigint", {"function": "count", "window": "10m"}),
            "notes_1h": _feature(
                "bigint", {"function": "count", "column": "note", "window": "1h", "hop": "5m"}
            ),
            "quantity_7d": _feature(
                "bigint", {"function": "sum", "column": "quantity", "window": "7d"}
            ),
            "spent_1d": _feature(
                "double", {"function": "sum", "column": "amount", "window": "1d", "hop": "1h"}, 0.0
            ),
            "avg_amount_90d": _feature(
                "double", {"function": "avg", "column": "amount", "window": "90d"}, None
            ),
            "avg_quantity_30d": _feature(
                "double", {"function": "avg", "column": "quantity", "window": "30d", "hop": "6h"}
            ),
        },
        _view_meta(),
    )


def _hand_written_node() -> dict[str, Any]:
    return _model(
        HAND,
        {
            "merchant_id": _column("varchar"),
            "feature_at": _column("timestamp"),
            "available_at": _column("timestamp"),
            "risk": _column("double", feature=True, default=0.0),
        },
        {
            "entity": "merchant",
            "keys": ["merchant_id"],
            "timestamp": "feature_at",
            "available_at": "available_at",
            "owner": "payments@shop.example",
            "ttl": "30d",
            "freshness_sla": "26h",
            "online": True,
        },
    )


def _manifest(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {node["unique_id"]: node for node in nodes}}


def _base() -> dict[str, Any]:
    return _manifest(_events_node(), _view_node(), _hand_written_node())


def _node(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    node: dict[str, Any] = manifest["nodes"][f"model.shop.{name}"]
    return node


# -- a valid declaration ----------------------------------------------------------------------


def test_a_declared_view_is_read_into_typed_definitions() -> None:
    registry = registry_from_manifest(_base())
    view = registry.view(VIEW)
    assert view.windowed == WindowedSource(
        events=EVENTS,
        events_relation=f'"wh"."main"."{EVENTS}"',
        event_time="occurred_at",
        ingested_at="received_at",
        event_id="event_id",
        keys=("user_id",),
        column_types=(("quantity", "int"), ("amount", "decimal")),
        event_columns=(
            ("event_id", "varchar"),
            ("user_id", "varchar"),
            ("merchant_id", "varchar"),
            ("amount", "decimal(18, 2)"),
            ("quantity", "integer"),
            ("price", "double"),
            ("note", "varchar"),
            ("occurred_at", "timestamp"),
            ("received_at", "timestamp"),
        ),
    )
    assert view.tiled is True
    assert view.available_at is None
    expected = {
        "events_10m": Aggregation("events_10m", "count", None, "10m", 600, "1m", 60),
        "notes_1h": Aggregation("notes_1h", "count", "note", "1h", HOUR, "5m", 300),
        "quantity_7d": Aggregation("quantity_7d", "sum", "quantity", "7d", 7 * DAY, "1h", HOUR),
        "spent_1d": Aggregation("spent_1d", "sum", "amount", "1d", DAY, "1h", HOUR),
        "avg_amount_90d": Aggregation(
            "avg_amount_90d", "avg", "amount", "90d", 90 * DAY, "1d", DAY
        ),
        "avg_quantity_30d": Aggregation(
            "avg_quantity_30d", "avg", "quantity", "30d", 30 * DAY, "6h", 6 * HOUR
        ),
    }
    assert view.feature_names() == tuple(expected)
    for feature in view.features:
        assert feature.aggregation == expected[feature.name]
        assert registry.feature(feature.name).aggregation == expected[feature.name]
    assert registry.feature("spent_1d").value_type == "float"
    assert registry.feature("avg_amount_90d").default is None


def test_a_hand_written_view_beside_it_reads_as_before() -> None:
    registry = registry_from_manifest(_base())
    view = registry.view(HAND)
    assert view.windowed is None
    assert view.tiled is False
    assert view.available_at == "available_at"
    assert registry.feature("risk").aggregation is None
    alone = registry_from_manifest(_manifest(_hand_written_node()))
    assert alone.view(HAND) == view


def test_to_dict_describes_aggregations_and_event_models() -> None:
    data = json.loads(json.dumps(registry_from_manifest(_base()).to_dict()))
    declared, hand = data["feature_views"][VIEW], data["feature_views"][HAND]
    assert declared["tiled"] is True and hand["tiled"] is False
    assert hand["windowed"] is None
    assert declared["windowed"] == {
        "events": EVENTS,
        "events_relation": f'"wh"."main"."{EVENTS}"',
        "event_time": "occurred_at",
        "ingested_at": "received_at",
        "event_id": "event_id",
        "keys": ["user_id"],
        "column_types": {"quantity": "int", "amount": "decimal"},
        "event_columns": {
            "event_id": "varchar",
            "user_id": "varchar",
            "merchant_id": "varchar",
            "amount": "decimal(18, 2)",
            "quantity": "integer",
            "price": "double",
            "note": "varchar",
            "occurred_at": "timestamp",
            "received_at": "timestamp",
        },
        "streamed": False,
    }
    assert data["features"]["quantity_7d"]["aggregation"] == {
        "function": "sum",
        "column": "quantity",
        "window": "7d",
        "window_seconds": 7 * DAY,
        "hop": "1h",
        "hop_seconds": HOUR,
    }
    assert data["features"]["events_10m"]["aggregation"]["column"] is None
    assert data["features"]["risk"]["aggregation"] is None


# The README's table, written out: windows up to 1 hour -> 1 minute, up to 10 days -> 1 hour,
# above -> 1 day.
HOP_DEFAULTS = [
    ("1m", "1m", 60),
    ("10m", "1m", 60),
    ("1h", "1m", 60),
    ("2h", "1h", HOUR),
    ("7d", "1h", HOUR),
    ("10d", "1h", HOUR),
    ("11d", "1d", DAY),
    ("90d", "1d", DAY),
    ("2w", "1d", DAY),
]


@pytest.mark.parametrize(("window", "hop", "hop_seconds"), HOP_DEFAULTS)
def test_the_default_hop(window: str, hop: str, hop_seconds: int) -> None:
    manifest = _base()
    _node(manifest, VIEW)["columns"]["events_10m"]["meta"]["featurestore"]["aggregation"] = {
        "function": "count",
        "window": window,
    }
    aggregation = registry_from_manifest(manifest).feature("events_10m").aggregation
    assert aggregation is not None
    assert (aggregation.hop, aggregation.hop_seconds) == (hop, hop_seconds)
    assert aggregation.window_seconds % aggregation.hop_seconds == 0


def test_accepted_spellings() -> None:
    """Case and spaces in durations, Snowflake's number(38, 2) as a decimal, number(38, 0)
    and decimal(10) as integers, an explicit hop equal to the window."""
    manifest = _base()
    events = _node(manifest, EVENTS)["columns"]
    events["amount"]["data_type"] = "NUMBER(38,2)"
    events["quantity"]["data_type"] = "number(38, 0)"
    events["price"]["data_type"] = "decimal(10)"
    columns = _node(manifest, VIEW)["columns"]
    columns["spent_1d"]["meta"]["featurestore"]["aggregation"]["hop"] = " 1D "
    columns["avg_quantity_30d"]["meta"]["featurestore"]["aggregation"]["column"] = "price"
    registry = registry_from_manifest(manifest)
    view = registry.view(VIEW)
    assert view.windowed is not None
    assert dict(view.windowed.column_types) == {
        "quantity": "int",
        "amount": "decimal",
        "price": "int",
    }
    spent = registry.feature("spent_1d").aggregation
    assert spent is not None and (spent.hop, spent.hop_seconds) == ("1d", DAY)


def test_streamed_is_read_and_defaults_to_false() -> None:
    manifest = _base()
    view = registry_from_manifest(manifest).view(VIEW)
    assert view.windowed is not None and view.windowed.streamed is False
    _windowed("streamed", True)(manifest)
    view = registry_from_manifest(manifest).view(VIEW)
    assert view.windowed is not None and view.windowed.streamed is True


# -- broken declarations ----------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]
#: a mutation's value meaning "delete the field"
_DROP = object()


def _windowed(field: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        windowed = _node(manifest, VIEW)["config"]["meta"]["featurestore"]["windowed"]
        if value is _DROP:
            del windowed[field]
        else:
            windowed[field] = value

    return mutate


def _view(field: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        _node(manifest, VIEW)["config"]["meta"]["featurestore"][field] = value

    return mutate


def _aggregation(feature: str, field: str, value: object) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        meta = _node(manifest, VIEW)["columns"][feature]["meta"]["featurestore"]
        if field == "":
            meta["aggregation"] = value
        elif value is _DROP:
            del meta["aggregation"][field]
        else:
            meta["aggregation"][field] = value

    return mutate


def _feature_type(feature: str, data_type: str, default: object = _DROP) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        column = _node(manifest, VIEW)["columns"][feature]
        column["data_type"] = data_type
        if default is not _DROP:
            column["meta"]["featurestore"]["default"] = default

    return mutate


def _event_type(column: str, data_type: str | None) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        spec = _node(manifest, EVENTS)["columns"][column]
        if data_type is None:
            del spec["data_type"]
        else:
            spec["data_type"] = data_type

    return mutate


def _drop_event_column(column: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        del _node(manifest, EVENTS)["columns"][column]

    return mutate


def _no_event_columns(manifest: dict[str, Any]) -> None:
    _node(manifest, EVENTS)["columns"] = {}


def _no_aggregation(manifest: dict[str, Any]) -> None:
    del _node(manifest, VIEW)["columns"]["notes_1h"]["meta"]["featurestore"]["aggregation"]


def _aggregation_on_hand_written(manifest: dict[str, Any]) -> None:
    meta = _node(manifest, HAND)["columns"]["risk"]["meta"]["featurestore"]
    meta["aggregation"] = {"function": "count", "window": "1h"}


def _available_at(manifest: dict[str, Any]) -> None:
    node = _node(manifest, VIEW)
    node["config"]["meta"]["featurestore"]["available_at"] = "available_at"
    node["columns"]["available_at"] = _column("timestamp")


def _merchant_key(manifest: dict[str, Any]) -> None:
    """A view of the merchant entity reading an event model without merchant_id."""
    _drop_event_column("merchant_id")(manifest)
    node = _node(manifest, VIEW)
    meta = node["config"]["meta"]["featurestore"]
    meta["entity"], meta["keys"] = "merchant", ["merchant_id"]
    node["columns"]["merchant_id"] = node["columns"].pop("user_id")


def _both(first: Mutation, second: Mutation) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        first(manifest)
        second(manifest)

    return mutate


# (id, mutation, model named, field named, detail expected)
INVALID: list[tuple[str, Mutation, str, str, str]] = [
    ("windowed-not-a-mapping", _view("windowed", EVENTS), VIEW, "windowed", "mapping"),
    ("windowed-unknown-field", _windowed("eventtime", "occurred_at"), VIEW, "windowed",
     "did you mean 'event_time'"),
    ("events-missing", _windowed("events", _DROP), VIEW, "windowed.events", "dbt model"),
    ("events-unknown", _windowed("events", "stg_event"), VIEW, "windowed.events",
     "did you mean 'stg_events'"),
    ("events-without-columns", _no_event_columns, VIEW, "windowed.events",
     f"event model {EVENTS} declares no columns"),
    ("event-time-missing", _windowed("event_time", None), VIEW, "windowed.event_time", "None"),
    ("event-time-undeclared", _windowed("event_time", "happened_at"), VIEW,
     "windowed.event_time", "declare every column"),
    ("event-time-not-timestamp", _event_type("occurred_at", "varchar"), VIEW,
     "windowed.event_time", "not a timestamp"),
    ("event-time-no-data-type", _event_type("occurred_at", None), VIEW, "windowed.event_time",
     "no data_type"),
    ("ingested-at-undeclared", _drop_event_column("received_at"), VIEW, "windowed.ingested_at",
     f"event model {EVENTS} does not declare"),
    ("ingested-at-not-timestamp", _event_type("received_at", "bigint"), VIEW,
     "windowed.ingested_at", "not a timestamp"),
    ("event-id-undeclared", _windowed("event_id", "id"), VIEW, "windowed.event_id", "'id'"),
    ("event-id-no-data-type", _event_type("event_id", None), VIEW, "windowed.event_id",
     "no data_type"),
    ("key-undeclared", _merchant_key, VIEW, "keys", "'merchant_id'"),
    ("key-type-differs", _event_type("user_id", "bigint"), VIEW, "keys", "'bigint'"),
    ("function-unknown", _aggregation("events_10m", "function", "median"), VIEW,
     "aggregation.function", "count, sum, avg"),
    ("function-max", _aggregation("events_10m", "function", "max"), VIEW,
     "aggregation.function", "max is not offered yet"),
    ("function-last", _aggregation("events_10m", "function", "last"), VIEW,
     "aggregation.function", "not offered yet"),
    ("function-missing", _aggregation("events_10m", "function", _DROP), VIEW,
     "aggregation.function", "None"),
    ("aggregation-unknown-field", _aggregation("events_10m", "windows", "1h"), VIEW,
     "aggregation", "did you mean 'window'"),
    ("aggregation-not-a-mapping", _aggregation("events_10m", "", "count"), VIEW,
     "column events_10m: meta.featurestore.aggregation", "mapping"),
    ("sum-without-column", _aggregation("quantity_7d", "column", _DROP), VIEW,
     "aggregation.column", "sum reads a column"),
    ("avg-without-column", _aggregation("avg_amount_90d", "column", _DROP), VIEW,
     "aggregation.column", "avg reads a column"),
    ("column-undeclared", _aggregation("quantity_7d", "column", "qty"), VIEW,
     "aggregation.column", "'qty'"),
    ("count-column-undeclared", _aggregation("notes_1h", "column", "notes"), VIEW,
     "aggregation.column", "did you mean 'note'"),
    ("column-no-data-type", _aggregation("quantity_7d", "column", "loose"), VIEW,
     "aggregation.column", "no data_type"),
    ("sum-of-double", _aggregation("spent_1d", "column", "price"), VIEW, "aggregation.column",
     "would not be exact"),
    ("avg-of-double", _aggregation("avg_amount_90d", "column", "price"), VIEW,
     "aggregation.column", "last bits"),
    ("sum-of-varchar", _aggregation("quantity_7d", "column", "note"), VIEW,
     "aggregation.column", "not an integer or decimal"),
    ("sum-of-bare-decimal", _both(_event_type("price", "decimal"),
     _aggregation("spent_1d", "column", "price")), VIEW, "aggregation.column",
     "precision and scale"),
    ("window-missing", _aggregation("events_10m", "window", _DROP), VIEW, "aggregation.window",
     "None"),
    ("window-not-a-duration", _aggregation("events_10m", "window", "10 minutes"), VIEW,
     "aggregation.window", "'10 minutes'"),
    ("window-zero", _aggregation("events_10m", "window", "0m"), VIEW, "aggregation.window",
     "'0m'"),
    ("hop-not-a-duration", _aggregation("spent_1d", "hop", "hourly"), VIEW, "aggregation.hop",
     "'hourly'"),
    ("hop-under-a-second", _aggregation("events_10m", "hop", "500ms"), VIEW, "aggregation.hop",
     "finer than one second"),
    ("hop-fraction-of-a-second", _aggregation("events_10m", "hop", "0.5s"), VIEW,
     "aggregation.hop", "finer than one second"),
    ("hop-longer-than-window", _aggregation("spent_1d", "hop", "2d"), VIEW, "aggregation.hop",
     "longer than the window"),
    ("window-not-whole-hops", _aggregation("spent_1d", "hop", "7h"), VIEW,
     "aggregation.window", "not a whole number of hops of 7h"),
    ("window-not-whole-default-hops", _aggregation("events_10m", "window", "90m"), VIEW,
     "aggregation.window", "the default hop"),
    ("count-as-double", _feature_type("events_10m", "double"), VIEW, "data_type",
     "yields an integer"),
    ("sum-of-int-as-double", _feature_type("quantity_7d", "double"), VIEW, "data_type",
     "sum of an integer column, which yields an integer"),
    ("sum-of-decimal-as-bigint", _feature_type("spent_1d", "bigint", 0), VIEW, "data_type",
     "sum of a decimal column, which yields a floating-point"),
    ("avg-as-bigint", _feature_type("avg_quantity_30d", "bigint"), VIEW, "data_type",
     "avg of an integer column"),
    ("feature-without-aggregation", _no_aggregation, VIEW, "notes_1h",
     "aggregation is missing"),
    ("aggregation-on-hand-written", _aggregation_on_hand_written, HAND, "risk",
     "hand-written"),
    ("windowed-with-available-at", _available_at, VIEW, "available_at", "not needed"),
    ("streamed-not-a-boolean", _windowed("streamed", "yes"), VIEW, "windowed.streamed",
     "must be true or false, got 'yes'"),
    ("ttl-shorter-than-window-and-hop", _view("ttl", "90d"), VIEW, "ttl",
     "avg_amount_90d: 90d + 1d = 91d"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "model", "field", "detail"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_declarations_are_refused(
    mutate: Mutation, model: str, field: str, detail: str
) -> None:
    manifest = _base()
    registry_from_manifest(manifest)  # valid before the mutation
    mutate(manifest)
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(manifest)
    message = str(info.value)
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, message  # one mistake, one problem (no cascade)
    assert f"model {model}" in problems[0]
    assert field in problems[0]
    assert detail in problems[0]


def test_problems_of_several_declarations_are_reported_together() -> None:
    manifest = _base()
    _windowed("events", "nope")(manifest)  # the event model unknown: its columns unchecked
    _aggregation("events_10m", "function", "median")(manifest)
    _aggregation("spent_1d", "hop", "7h")(manifest)
    _aggregation_on_hand_written(manifest)
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(manifest)
    problems = [line for line in str(info.value).splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, info.value
    joined = "\n".join(problems)
    assert f"model {VIEW}: meta.featurestore.windowed.events names 'nope'" in joined
    assert f"model {VIEW}: column events_10m: meta.featurestore.aggregation.function" in joined
    assert f"model {VIEW}: column spent_1d: meta.featurestore.aggregation.window" in joined
    assert f"model {HAND}: column risk: meta.featurestore.aggregation" in joined


# -- column types -----------------------------------------------------------------------------

AGGREGATED_KINDS = [
    ("bigint", "int"), ("INTEGER", "int"), ("int8", "int"), ("hugeint", "int"),
    ("decimal(18, 2)", "decimal"), ("NUMERIC(38,2)", "decimal"), ("number(38, 2)", "decimal"),
    ("number(38,0)", "int"), ("decimal(10)", "int"),
]  # fmt: skip
NOT_AGGREGATED = [
    ("double", "last bits"), ("float", "last bits"), ("decimal", "precision and scale"),
    ("number", "precision and scale"), ("varchar", "not an integer or decimal"),
    ("timestamp", "not an integer or decimal"), ("decimal(18,2,1)", "not an integer"),
]  # fmt: skip


@pytest.mark.parametrize(("data_type", "kind"), AGGREGATED_KINDS)
def test_aggregated_kind_of(data_type: str, kind: str) -> None:
    assert aggregated_kind_of(data_type) == kind


@pytest.mark.parametrize(("data_type", "reason"), NOT_AGGREGATED)
def test_types_a_sum_cannot_read(data_type: str, reason: str) -> None:
    with pytest.raises(NotAggregatable, match=reason) as info:
        aggregated_kind_of(data_type)
    assert repr(data_type) in str(info.value)


# -- the demo's redeclared user view (README "Windowed features: declared once") ---------------


def test_the_demo_user_view_as_the_readme_declares_it() -> None:
    events = _model(
        "int_transactions_deduplicated",
        {
            "transaction_id": _column("varchar"),
            "user_id": _column("varchar"),
            "merchant_id": _column("varchar"),
            "amount": _column("decimal(18, 2)"),
            "transacted_at": _column("timestamp"),
            "ingested_at": _column("timestamp"),
        },
    )
    view = _model(
        "user_transaction_features",
        {
            "user_id": _column("varchar"),
            "feature_at": _column("timestamp"),
            "last_ingested_at": _column("timestamp"),
            "user_7d_transaction_count": _feature(
                "bigint", {"function": "count", "window": "7d"}, 0
            ),
            "avg_order_value_90d": _feature(
                "double", {"function": "avg", "column": "amount", "window": "90d", "hop": "1d"}, 0.0
            ),
        },
        {
            "entity": "user",
            "keys": ["user_id"],
            "timestamp": "feature_at",
            "owner": "risk-ml@shop.example",
            "ttl": "91d",
            "freshness_sla": "26h",
            "online": True,
            "windowed": {
                "events": "int_transactions_deduplicated",
                "event_time": "transacted_at",
                "ingested_at": "ingested_at",
                "event_id": "transaction_id",
            },
        },
    )
    registry = registry_from_manifest(_manifest(events, view))
    user = registry.view("user_transaction_features")
    assert user.windowed == WindowedSource(
        events="int_transactions_deduplicated",
        events_relation='"wh"."main"."int_transactions_deduplicated"',
        event_time="transacted_at",
        ingested_at="ingested_at",
        event_id="transaction_id",
        keys=("user_id",),
        column_types=(("amount", "decimal"),),
        event_columns=(
            ("transaction_id", "varchar"),
            ("user_id", "varchar"),
            ("merchant_id", "varchar"),
            ("amount", "decimal(18, 2)"),
            ("transacted_at", "timestamp"),
            ("ingested_at", "timestamp"),
        ),
    )
    assert registry.feature("user_7d_transaction_count").aggregation == Aggregation(
        "user_7d_transaction_count", "count", None, "7d", 7 * DAY, "1h", HOUR
    )
    assert registry.feature("avg_order_value_90d").aggregation == Aggregation(
        "avg_order_value_90d", "avg", "amount", "90d", 90 * DAY, "1d", DAY
    )
    shorter = copy.deepcopy(view)
    shorter["config"]["meta"]["featurestore"]["ttl"] = "90d"  # the hand-written view's ttl
    with pytest.raises(RegistryError, match="ttl 90d is shorter than the longest window"):
        registry_from_manifest(_manifest(events, shorter))


# -- the demo project's manifest ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project's manifest from `dbt parse` (no build)."""
    warehouse = Warehouse(tmp_path_factory.mktemp("dbt-parse"))
    warehouse.dbt("parse")
    return warehouse.target_path / "manifest.json"


def test_the_demo_manifest_reads_as_its_yml_declares(demo_manifest: Path) -> None:
    registry = load_registry(demo_manifest)
    doc = yaml.safe_load((REPO / "models" / "features" / "_features__models.yml").read_text())
    declared = {model["name"]: model for model in doc["models"]}
    assert set(registry.views) == set(declared)
    for name, model in declared.items():
        meta = model["config"]["meta"]["featurestore"]
        view = registry.view(name)
        windowed = meta.get("windowed")
        assert view.tiled is (windowed is not None)
        if windowed is not None:
            assert view.windowed is not None
            assert view.windowed.events == windowed["events"]
            assert view.windowed.event_time == windowed["event_time"]
            assert view.windowed.keys == tuple(meta["keys"])
        for column in model["columns"]:
            featurestore = (column.get("meta") or {}).get("featurestore") or {}
            if not featurestore.get("feature"):
                continue
            aggregation = registry.feature(column["name"]).aggregation
            declared_aggregation = featurestore.get("aggregation")
            assert (aggregation is None) is (declared_aggregation is None)
            if aggregation is not None:
                assert aggregation.function == declared_aggregation["function"]
                assert aggregation.window == declared_aggregation["window"]
                assert aggregation.column == declared_aggregation.get("column")


# -- end to end: the user view redeclared in a copy of the project, `dbt parse`, the CLI ------

EVENT_COLUMNS = {
    "transaction_id": "varchar", "user_id": "varchar", "merchant_id": "varchar",
    "device_id": "varchar", "amount": "decimal(18, 2)", "currency": "varchar",
    "transacted_at": "timestamp", "ingested_at": "timestamp",
}  # fmt: skip
USER_AGGREGATIONS = {
    "user_7d_transaction_count": {"function": "count", "window": "7d"},
    "avg_order_value_90d": {"function": "avg", "column": "amount", "window": "90d", "hop": "1d"},
}


def _edit_yml(path: Path, model: str, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    edit(next(m for m in doc["models"] if m["name"] == model))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _declare_events(model: dict[str, Any]) -> None:
    model["columns"] = [{"name": name, "data_type": t} for name, t in EVENT_COLUMNS.items()]


def _redeclare_user_view(model: dict[str, Any]) -> None:
    meta = model["config"]["meta"]["featurestore"]
    meta.pop("available_at", None)
    meta["ttl"] = "91d"
    meta["windowed"] = {
        "events": "int_transactions_deduplicated",
        "event_time": "transacted_at",
        "ingested_at": "ingested_at",
        "event_id": "transaction_id",
    }
    model["columns"] = [c for c in model["columns"] if c["name"] != "available_at"]
    for column in model["columns"]:
        featurestore = (column.get("meta") or {}).get("featurestore") or {}
        if featurestore.get("feature"):
            featurestore["aggregation"] = USER_AGGREGATIONS.get(
                column["name"], featurestore.get("aggregation")
            )


def test_a_redeclared_demo_view_through_dbt_parse_and_the_cli(tmp_path: Path) -> None:
    """The README's declaration of user_transaction_features in a copy of the project: `dbt
    parse` keeps it in the manifest as the registry reads it, `featurestore registry --json`
    prints it; the same manifest with `amount` declared double is refused."""
    project = tmp_path / "project"
    project.mkdir()
    for folder in ("models", "macros", "snapshots", "seeds", "tests/dbt/data_tests"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, project / folder)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy2(REPO / name, project / name)
    models = project / "models"
    _edit_yml(models / "intermediate" / "_intermediate__models.yml",
              "int_transactions_deduplicated", _declare_events)  # fmt: skip
    _edit_yml(models / "features" / "_features__models.yml",
              "user_transaction_features", _redeclare_user_view)  # fmt: skip
    warehouse = Warehouse(tmp_path / "warehouse")
    warehouse.workdir.mkdir()
    env = {"DBT_PROFILES_DIR": str(project)}
    warehouse.dbt("parse", "--project-dir", str(project), extra_env=env)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "featurestore"), "registry", "--json",
         "--project-dir", str(project)],
        cwd=REPO, env={**os.environ, **warehouse.env, **env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    user = printed["feature_views"]["user_transaction_features"]
    assert user["tiled"] is True
    assert user["available_at"] is None
    assert user["windowed"]["events"] == "int_transactions_deduplicated"
    assert (
        user["windowed"]["events_relation"]
        .replace('"', "")
        .endswith("int_transactions_deduplicated")
    )
    assert user["windowed"]["column_types"] == {"amount": "decimal"}
    features = printed["features"]
    assert features["user_7d_transaction_count"]["aggregation"] == {
        "function": "count", "column": None, "window": "7d", "window_seconds": 7 * DAY,
        "hop": "1h", "hop_seconds": HOUR,
    }  # fmt: skip
    assert features["avg_order_value_90d"]["aggregation"] == {
        "function": "avg", "column": "amount", "window": "90d", "window_seconds": 90 * DAY,
        "hop": "1d", "hop_seconds": DAY,
    }  # fmt: skip
    assert printed["feature_views"]["merchant_chargeback_features"]["windowed"] is None

    manifest = json.loads((warehouse.target_path / "manifest.json").read_text())
    events = next(
        n for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["name"] == "int_transactions_deduplicated"
    )  # fmt: skip
    events["columns"]["amount"]["data_type"] = "double"
    with pytest.raises(RegistryError) as info:
        registry_from_manifest(manifest)
    problems = [line for line in str(info.value).splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, info.value
    assert "model user_transaction_features: column avg_order_value_90d:" in problems[0]
    assert "aggregation.column" in problems[0] and "would not be exact" in problems[0]
