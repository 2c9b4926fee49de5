"""The feature registry: typed definitions read from dbt's ``target/manifest.json``.

This module owns the registry contract. Feature views are dbt models carrying a
``meta.featurestore`` block (see ``models/features/_features__models.yml``); entities are
declared once under ``meta.featurestore_entities`` in ``dbt_project.yml``. The loader, the
sidecar and the training-data SDK all read features through :func:`load_registry`; the
loader also reads from it where each model is built (:attr:`Registry.relations`) and the
data tests of a view's columns (:attr:`FeatureView.data_tests`), so nothing else parses the
manifest.

Rules checked on load (each failure names the model and the field):

* every view names a declared entity, and its ``keys`` equal the entity's keys;
* key, ``timestamp`` and ``available_at`` columns exist and have a ``data_type``;
* ``owner`` is a non-empty string, ``online`` a boolean, ``ttl`` and ``freshness_sla``
  durations (:mod:`featurestore.durations`);
* every feature column has a ``data_type`` of a supported type, a description, and a
  ``default`` key whose value matches the type (``null`` means no default); an optional
  ``range`` is a mapping with numeric ``min``/``max``, ``accepted_values`` a list, an
  optional ``skew_threshold`` a number from 0 to 1 (the highest mismatch rate the skew
  report accepts; README "Training-serving skew");
* feature names are unique across the project (the online API addresses them by bare name);
* a declared (windowed) view's ``meta.featurestore.windowed`` and its features'
  ``meta.featurestore.aggregation`` follow the rules of :mod:`featurestore.windowed_declaration`
  (every feature of a windowed view has an aggregation, no feature of a hand-written view has
  one).
* feature services (dbt exposures of type ``ml``) follow the rules of
  :mod:`featurestore.feature_services`; they are read once every view is valid.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard

from featurestore import windowed_declaration
from featurestore.data_types import ValueType, value_type_of
from featurestore.durations import DurationError, parse_duration
from featurestore.feature_services import (
    FeatureService,
    RequestFeature,
    RequestField,
    read_feature_services,
)
from featurestore.suggestions import did_you_mean
from featurestore.windows import Aggregation, WindowedSource

__all__ = [
    "DEFAULT_MANIFEST",
    "DataTest",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "Registry",
    "RegistryError",
    "Relation",
    "RequestFeature",
    "RequestField",
    "ValueType",
    "load_registry",
    "value_type_of",
]

DEFAULT_MANIFEST = Path("target/manifest.json")


class RegistryError(ValueError):
    """The dbt manifest holds invalid feature metadata (the message names model and field)."""


@dataclass(frozen=True)
class Entity:
    """A kind of thing features describe, identified by one or more key columns."""

    name: str
    keys: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Relation:
    """Where dbt builds a model: the node's ``database``, ``schema`` and ``alias`` in the
    manifest (the alias defaults to the model's name)."""

    #: ``None`` when the manifest has none (the connection's default database)
    database: str | None
    schema: str
    alias: str


@dataclass(frozen=True)
class DataTest:
    """A generic dbt data test on one column of a model (``data_tests:`` in its yml).

    ``name`` and ``namespace`` are the test macro's (``accepted_range`` and
    ``featurestore`` for ``featurestore.accepted_range``; built-in tests have no
    namespace), ``kwargs`` its arguments without ``model``. Disabled tests are left out.
    """

    name: str
    namespace: str | None
    column: str
    kwargs: Mapping[str, Any]
    #: the configured severity, lower case (``error`` unless the yml says ``warn``)
    severity: str = "error"
    #: the test's ``where`` filter (``None``: every row)
    where: str | None = None


@dataclass(frozen=True)
class Feature:
    """One feature: a column of a feature view."""

    name: str
    view: str
    data_type: str
    value_type: ValueType
    description: str
    default: object | None
    range_min: float | None = None
    range_max: float | None = None
    accepted_values: tuple[object, ...] | None = None
    #: the declared windowed aggregation (None: a hand-written feature)
    aggregation: Aggregation | None = None
    #: the highest mismatch rate (0..1) of the skew report that passes
    #: (``meta.featurestore.skew_threshold``, default 0: any mismatch fails)
    skew_threshold: float = 0.0


@dataclass(frozen=True)
class FeatureView:
    """A dbt model with one row per entity key and feature timestamp."""

    name: str
    relation: str
    entity: Entity
    keys: tuple[str, ...]
    key_types: Mapping[str, ValueType]
    timestamp: str
    available_at: str | None
    owner: str
    ttl: str
    ttl_seconds: int
    freshness_sla: str
    freshness_sla_seconds: int
    online: bool
    description: str
    features: tuple[Feature, ...]
    #: the generic data tests declared on the view's columns, by column then test name
    data_tests: tuple[DataTest, ...] = ()
    #: a declared (windowed) view's event model (``meta.featurestore.windowed``); None: a
    #: hand-written view. Every feature of a windowed view has an ``aggregation``.
    windowed: WindowedSource | None = None

    @property
    def tiled(self) -> bool:
        """Whether the online store holds tiles of this view (a declared view)."""
        return self.windowed is not None

    @property
    def streamed(self) -> bool:
        """Whether the stream worker keeps the view's tiles fresh (``windowed.streamed``)."""
        return self.windowed is not None and self.windowed.streamed

    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True)
class Registry:
    """All entities, feature views and features of a dbt project."""

    entities: Mapping[str, Entity]
    views: Mapping[str, FeatureView]
    features: Mapping[str, Feature] = field(default_factory=dict)
    #: where every model of the project is built, by model name (feature views, the
    #: ``online_<view>`` models the loader reads, any other model)
    relations: Mapping[str, Relation] = field(default_factory=dict)
    #: per event model of a declared view, the dbt source tables upstream of it
    #: (``(source name, table name)``): where the stream worker lands its events
    event_sources: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    #: the feature services (dbt ``ml`` exposures) by name, in manifest order
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)

    def feature(self, name: str) -> Feature:
        try:
            return self.features[name]
        except KeyError:
            raise RegistryError(
                f"unknown feature {name!r}{did_you_mean(name, self.features)}"
            ) from None

    def feature_service(self, name: str) -> FeatureService:
        try:
            return self.feature_services[name]
        except KeyError:
            known = did_you_mean(name, self.feature_services)
            if not known:
                known = f" (declared: {', '.join(self.feature_services) or 'none'})"
            raise RegistryError(f"unknown feature service {name!r}{known}") from None

    def view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            raise RegistryError(f"unknown feature view {name!r}") from None

    def view_of(self, feature: str) -> FeatureView:
        return self.views[self.feature(feature).view]

    def group_by_view(self, features: Iterable[str]) -> dict[str, list[str]]:
        """Feature names grouped by view, views and features in first-seen order."""
        grouped: dict[str, list[str]] = {}
        for name in features:
            grouped.setdefault(self.feature(name).view, []).append(name)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what ``featurestore registry --json`` prints)."""
        return {
            "entities": {
                e.name: {"keys": list(e.keys), "description": e.description}
                for e in self.entities.values()
            },
            "feature_views": {
                v.name: {
                    "relation": v.relation,
                    "entity": v.entity.name,
                    "keys": list(v.keys),
                    "timestamp": v.timestamp,
                    "available_at": v.available_at,
                    "owner": v.owner,
                    "ttl": v.ttl,
                    "ttl_seconds": v.ttl_seconds,
                    "freshness_sla": v.freshness_sla,
                    "freshness_sla_seconds": v.freshness_sla_seconds,
                    "online": v.online,
                    "features": list(v.feature_names()),
                    "tiled": v.tiled,
                    "windowed": _windowed_dict(v.windowed),
                }
                for v in self.views.values()
            },
            "features": {
                f.name: {
                    "view": f.view,
                    "entity": self.views[f.view].entity.name,
                    "type": f.value_type,
                    "data_type": f.data_type,
                    "default": f.default,
                    "description": f.description,
                    "aggregation": _aggregation_dict(f.aggregation),
                    "skew_threshold": f.skew_threshold,
                }
                for f in self.features.values()
            },
            "feature_services": {
                s.name: _service_dict(s, self) for s in self.feature_services.values()
            },
        }


def _service_dict(service: FeatureService, registry: Registry) -> dict[str, Any]:
    """A feature service for :meth:`Registry.to_dict`."""
    return {
        "owner": service.owner,
        "description": service.description,
        "entities": list(service.entities),
        "features": list(service.features),
        "request_fields": {f.name: f.value_type for f in service.request_fields},
        "request_features": {
            f.name: {
                "expression": f.expression.text,
                "type": f.expression.value_type,
                "features": list(f.expression.features),
                "request_fields": list(f.expression.request_fields),
                "description": f.description,
            }
            for f in service.request_features
        },
        "keys": list(dict.fromkeys(k for e in service.entities for k in registry.entities[e].keys)),
    }


def _windowed_dict(source: WindowedSource | None) -> dict[str, Any] | None:
    """A declared view's event model for :meth:`Registry.to_dict` (None: hand-written)."""
    if source is None:
        return None
    return {
        "events": source.events,
        "events_relation": source.events_relation,
        "event_time": source.event_time,
        "ingested_at": source.ingested_at,
        "event_id": source.event_id,
        "keys": list(source.keys),
        "column_types": dict(source.column_types),
        "event_columns": dict(source.event_columns),
        "streamed": source.streamed,
    }


def _aggregation_dict(aggregation: Aggregation | None) -> dict[str, Any] | None:
    """A declared feature's aggregation for :meth:`Registry.to_dict` (None: hand-written)."""
    if aggregation is None:
        return None
    return {
        "function": aggregation.function,
        "column": aggregation.column,
        "window": aggregation.window,
        "window_seconds": aggregation.window_seconds,
        "hop": aggregation.hop,
        "hop_seconds": aggregation.hop_seconds,
    }


def load_registry(manifest_path: Path | str = DEFAULT_MANIFEST) -> Registry:
    """Read the registry from a dbt manifest (run ``dbt parse`` or ``dbt build`` first)."""
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(
            f"{path} not found: run `dbt parse` (or `dbt build`) in the project first"
        ) from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}") from None
    return registry_from_manifest(manifest)


def registry_from_manifest(manifest: Mapping[str, Any]) -> Registry:
    """Build and validate a :class:`Registry` from a parsed manifest."""
    models = [
        node for node in manifest.get("nodes", {}).values() if node.get("resource_type") == "model"
    ]
    models.sort(key=lambda node: str(node.get("original_file_path", node.get("name"))))
    problems: list[str] = []
    entities = _read_entities(models, problems)
    by_name = {str(node.get("name")): node for node in models}
    tests = _read_data_tests(manifest)
    views: dict[str, FeatureView] = {}
    features: dict[str, Feature] = {}
    for node in models:
        meta = node.get("config", {}).get("meta", {}).get("featurestore")
        if meta is None:
            continue
        view = _read_view(node, meta, entities, by_name, problems)
        if view is None:
            continue
        view = replace(view, data_tests=tests.get(node.get("unique_id"), ()))
        views[view.name] = view
        for feature in view.features:
            if feature.name in features:
                problems.append(
                    f"model {view.name}: feature {feature.name!r} is already defined by model "
                    f"{features[feature.name].view} (feature names must be unique)"
                )
            else:
                features[feature.name] = feature
    services = (
        read_feature_services(
            manifest, features, {v.name: v.entity.name for v in views.values()}, problems
        )
        if not problems
        else {}
    )
    if problems:
        raise RegistryError("invalid feature registry:\n  - " + "\n  - ".join(problems))
    event_models = {v.windowed.events for v in views.values() if v.windowed is not None}
    return Registry(
        entities=entities,
        views=views,
        features=features,
        relations=_read_relations(manifest),
        event_sources={
            name: _upstream_sources(manifest, by_name[name])
            for name in sorted(event_models)
            if name in by_name
        },
        feature_services=services,
    )


def _upstream_sources(
    manifest: Mapping[str, Any], node: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    """The dbt source tables a node reads, directly or through other nodes, in order."""
    nodes: Mapping[str, Any] = manifest.get("nodes", {})
    sources: Mapping[str, Any] = manifest.get("sources", {})
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    todo = list((node.get("depends_on") or {}).get("nodes") or [])
    while todo:
        unique_id = str(todo.pop(0))
        if unique_id in seen:
            continue
        seen.add(unique_id)
        if unique_id in sources:
            source = sources[unique_id]
            pair = (str(source.get("source_name")), str(source.get("name")))
            if pair not in found:
                found.append(pair)
        elif unique_id in nodes:
            todo.extend((nodes[unique_id].get("depends_on") or {}).get("nodes") or [])
    return tuple(found)


def _read_relations(manifest: Mapping[str, Any]) -> dict[str, Relation]:
    """Every model's relation by model name (a later node of the same name wins)."""
    relations: dict[str, Relation] = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "model":
            continue
        database = node.get("database")
        relations[str(node.get("name"))] = Relation(
            database=str(database) if database else None,
            schema=str(node.get("schema", "")),
            alias=str(node.get("alias") or node.get("name")),
        )
    return relations


def _read_data_tests(manifest: Mapping[str, Any]) -> dict[object, tuple[DataTest, ...]]:
    """The enabled generic column tests by the ``unique_id`` of the node they are attached
    to, each node's sorted by column, then test name (else in manifest order)."""
    attached: dict[object, list[DataTest]] = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "test":
            continue
        meta = node.get("test_metadata") or {}
        config = node.get("config") or {}
        name, column = meta.get("name"), node.get("column_name")
        if name is None or column is None or config.get("enabled") is False:
            continue
        namespace, where = meta.get("namespace"), config.get("where")
        kwargs = {k: v for k, v in (meta.get("kwargs") or {}).items() if k != "model"}
        test = DataTest(
            name=str(name),
            namespace=str(namespace) if namespace is not None else None,
            column=str(column),
            kwargs=kwargs,
            severity=str(config.get("severity", "error")).lower(),
            where=str(where) if where else None,
        )
        attached.setdefault(node.get("attached_node"), []).append(test)
    return {
        unique_id: tuple(sorted(tests, key=lambda t: (t.column, t.name)))
        for unique_id, tests in attached.items()
    }


def _read_entities(models: list[Mapping[str, Any]], problems: list[str]) -> dict[str, Entity]:
    entities: dict[str, Entity] = {}
    for node in models:
        declared = node.get("config", {}).get("meta", {}).get("featurestore_entities")
        if not declared:
            continue
        if not isinstance(declared, Mapping):
            problems.append(f"model {node['name']}: meta.featurestore_entities must be a mapping")
            continue
        for name, spec in declared.items():
            keys = spec.get("keys") if isinstance(spec, Mapping) else None
            if not _is_str_list(keys):
                problems.append(
                    f"model {node['name']}: meta.featurestore_entities.{name}.keys must be a "
                    "non-empty list of column names"
                )
                continue
            entity = Entity(str(name), tuple(keys), str(spec.get("description", "")))
            if name in entities and entities[name] != entity:
                problems.append(f"entity {name!r} is declared twice with different keys")
            entities[str(name)] = entity
    return entities


def _read_view(
    node: Mapping[str, Any],
    meta: Any,
    entities: Mapping[str, Entity],
    models: Mapping[str, Mapping[str, Any]],
    problems: list[str],
) -> FeatureView | None:
    """One view (``meta`` its ``meta.featurestore``); ``models`` every model by name (a
    windowed view's event model is one of them)."""
    name = str(node["name"])
    where = f"model {name}"
    if not isinstance(meta, Mapping):
        problems.append(f"{where}: meta.featurestore must be a mapping")
        return None
    before = len(problems)
    columns: Mapping[str, Any] = node.get("columns", {})

    def column_type(column: str, field_name: str) -> ValueType | None:
        spec = columns.get(column)
        if spec is None:
            problems.append(
                f"{where}: meta.featurestore.{field_name} names column {column!r}, "
                "which is not declared in the model's columns"
            )
            return None
        data_type = spec.get("data_type")
        value_type = value_type_of(data_type) if isinstance(data_type, str) else None
        if value_type is None:
            problems.append(
                f"{where}: column {column!r} ({field_name}) needs a supported data_type, "
                f"got {data_type!r}"
            )
        return value_type

    entity_name = meta.get("entity")
    entity = entities.get(entity_name) if isinstance(entity_name, str) else None
    if entity is None:
        known = ", ".join(sorted(entities)) or "none declared"
        problems.append(
            f"{where}: meta.featurestore.entity {entity_name!r} is not a declared entity "
            f"(declared: {known})"
        )
    keys = meta.get("keys")
    key_types: dict[str, ValueType] = {}
    if not _is_str_list(keys):
        problems.append(f"{where}: meta.featurestore.keys must be a non-empty list of columns")
        keys = []
    else:
        if entity is not None and tuple(keys) != entity.keys:
            problems.append(
                f"{where}: meta.featurestore.keys {keys} differ from entity "
                f"{entity.name!r} keys {list(entity.keys)}"
            )
        for key in keys:
            key_type = column_type(key, "keys")
            if key_type is not None:
                key_types[key] = key_type
    timestamp = meta.get("timestamp")
    if not isinstance(timestamp, str):
        problems.append(f"{where}: meta.featurestore.timestamp must name a column")
    elif column_type(timestamp, "timestamp") not in (None, "timestamp"):
        problems.append(
            f"{where}: meta.featurestore.timestamp column {timestamp!r} is not a timestamp"
        )
    declared_windowed = meta.get("windowed")
    events = (
        windowed_declaration.read_event_model(
            name, declared_windowed, keys, key_types, models, problems
        )
        if declared_windowed is not None
        else None
    )
    available_at = meta.get("available_at")
    if available_at is not None and declared_windowed is None:
        if not isinstance(available_at, str):
            problems.append(f"{where}: meta.featurestore.available_at must name a column")
        elif column_type(available_at, "available_at") not in (None, "timestamp"):
            problems.append(
                f"{where}: meta.featurestore.available_at column {available_at!r} "
                "is not a timestamp"
            )
    owner = meta.get("owner")
    if not isinstance(owner, str) or not owner.strip():
        problems.append(f"{where}: meta.featurestore.owner must be a non-empty string")
    online = meta.get("online", False)
    if not isinstance(online, bool):
        problems.append(f"{where}: meta.featurestore.online must be true or false, got {online!r}")
    durations: dict[str, int] = {}
    for field_name in ("ttl", "freshness_sla"):
        try:
            durations[field_name] = parse_duration(meta.get(field_name))
        except DurationError as exc:
            problems.append(f"{where}: meta.featurestore.{field_name}: {exc}")

    features: list[Feature] = []
    aggregations: list[Aggregation] = []
    marked = 0  # feature columns, valid or not (an invalid one is reported by _read_feature)
    for column_name, spec in columns.items():
        column_meta = (spec.get("meta") or {}).get("featurestore") or {}
        if not isinstance(column_meta, Mapping):
            problems.append(f"{where}: column {column_name}: meta.featurestore must be a mapping")
            marked += 1  # meant as a feature, most likely: do not also report "no column"
            continue
        if not column_meta.get("feature"):
            continue
        marked += 1
        feature = _read_feature(name, column_name, spec, column_meta, problems)
        if feature is None:
            continue
        aggregation = _read_feature_aggregation(
            feature, column_meta, declared_windowed is not None, events, problems
        )
        if aggregation is not None:
            aggregations.append(aggregation)
            feature = replace(feature, aggregation=aggregation)
        features.append(feature)
    if not marked:
        problems.append(f"{where}: no column is marked meta.featurestore.feature: true")
    if declared_windowed is not None:
        windowed_declaration.check_view(name, meta, durations.get("ttl"), aggregations, problems)
    if len(problems) > before or entity is None:
        return None
    return FeatureView(
        name=name,
        relation=str(node.get("relation_name") or name),
        entity=entity,
        keys=tuple(keys),
        key_types=key_types,
        timestamp=str(timestamp),
        available_at=available_at,
        owner=str(owner),
        ttl=str(meta["ttl"]).strip().lower(),
        ttl_seconds=durations["ttl"],
        freshness_sla=str(meta["freshness_sla"]).strip().lower(),
        freshness_sla_seconds=durations["freshness_sla"],
        online=bool(online),
        description=str(node.get("description", "")).strip(),
        features=tuple(features),
        windowed=(
            windowed_declaration.windowed_source(events, tuple(keys), aggregations)
            if events is not None
            else None
        ),
    )


def _read_feature_aggregation(
    feature: Feature,
    column_meta: Mapping[str, Any],
    windowed: bool,
    events: windowed_declaration.EventModel | None,
    problems: list[str],
) -> Aggregation | None:
    """A feature's declared aggregation: required in a windowed view (``windowed``; its
    event model ``events``, None when invalid), refused in a hand-written one."""
    where = f"model {feature.view}: column {feature.name}: meta.featurestore.aggregation"
    declared = column_meta.get("aggregation")
    if not windowed:
        if declared is not None:
            problems.append(
                f"{where} is declared, but the view is hand-written (no "
                "meta.featurestore.windowed): declare windowed: {events, event_time, "
                "ingested_at, event_id} on the view to compute it from events"
            )
        return None
    if declared is None:
        problems.append(
            f"{where} is missing: every feature of a windowed view is a declared aggregation "
            "(a hand-written feature belongs in a hand-written view)"
        )
        return None
    return windowed_declaration.read_aggregation(
        feature.view,
        feature.name,
        declared,
        events,
        feature.data_type,
        feature.value_type,
        problems,
    )


def _read_feature(
    view: str,
    column: str,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    problems: list[str],
) -> Feature | None:
    where = f"model {view}: column {column}"
    data_type = spec.get("data_type")
    value_type = value_type_of(data_type) if isinstance(data_type, str) else None
    if value_type is None:
        problems.append(f"{where}: data_type {data_type!r} is missing or not supported")
        return None
    description = str(spec.get("description") or "").strip()
    if not description:
        problems.append(f"{where}: a feature needs a description")
    if "default" not in meta:
        problems.append(f"{where}: meta.featurestore.default is required (null for no default)")
        return None
    default = meta["default"]
    if default is not None and not _matches(default, value_type):
        problems.append(
            f"{where}: meta.featurestore.default {default!r} is not a {value_type} "
            f"(data_type {data_type})"
        )
        return None
    value_range = meta.get("range") or {}
    if not isinstance(value_range, Mapping) or not all(
        _matches(value_range[bound], "float") for bound in ("min", "max") if bound in value_range
    ):
        problems.append(
            f"{where}: meta.featurestore.range must be a mapping with numeric min and/or max, "
            f"got {value_range!r}"
        )
        return None
    accepted = meta.get("accepted_values")
    if accepted is not None and not isinstance(accepted, list):
        problems.append(
            f"{where}: meta.featurestore.accepted_values must be a list, got {accepted!r}"
        )
        return None
    skew_threshold = meta.get("skew_threshold", 0)
    if not _matches(skew_threshold, "float") or not 0 <= skew_threshold <= 1:
        problems.append(
            f"{where}: meta.featurestore.skew_threshold must be a number from 0 to 1 (a "
            f"mismatch rate), got {skew_threshold!r}"
        )
        return None
    return Feature(
        name=column,
        view=view,
        data_type=str(data_type),
        value_type=value_type,
        description=description,
        default=float(default) if value_type == "float" and default is not None else default,
        range_min=value_range.get("min"),
        range_max=value_range.get("max"),
        accepted_values=tuple(accepted) if accepted is not None else None,
        skew_threshold=float(skew_threshold),
    )


def _matches(value: object, value_type: ValueType) -> bool:
    """Whether a yml value (a default, a range bound) is a value of ``value_type``: ``bool``
    is not an int, floats must be finite (the online layout refuses NaN and infinities),
    timestamps are ISO 8601 strings (``Z`` or an offset; naive is UTC)."""
    if value_type == "bool":
        return isinstance(value, bool)
    if value_type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if value_type == "float":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if value_type == "string":
        return isinstance(value, str)
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(item, str) and item for item in value)
    )
