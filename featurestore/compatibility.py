"""The schema-compatibility rule between two registries: what a change to the feature
definitions may not do to the models, services and training jobs that read them
(``featurestore registry check --against``; README "Schema compatibility").

Refused, each named:

* ``feature_removed``: a feature of the old registry is not in the new one;
* ``feature_type_changed``: a feature's served type (``int``, ``float``, ``bool``,
  ``string``, ``timestamp``) changed;
* ``aggregation_changed``: a declared feature's aggregation, column, window or hop changed
  (the same name would mean another value);
* ``feature_entity_changed``: a feature moved to a view of another entity (its keys);
* ``view_removed``: a feature view is gone;
* ``view_entity_changed``: a view's entity changed;
* ``view_keys_changed``: a view's key columns, their order or their types changed;
* ``view_taken_offline``: an online view is no longer online;
* ``entity_removed``: an entity is gone;
* ``entity_keys_changed``: an entity's key columns or their order changed;
* ``service_removed``: a feature service is gone;
* ``service_feature_removed``: a stored feature is no longer in a service;
* ``request_field_changed``: a request field of a service is gone or its type changed;
* ``request_feature_changed``: a request-time feature of a service is gone, or its
  expression (spaces aside) or type changed.

Everything else passes: new entities, views, features and services (a changed feature is
added under a new name, e.g. ``..._v2``, and the old one removed later, in its own change);
descriptions, owners, TTLs, SLAs, defaults, tests; a view put online; a hand-written feature
moved to another view of the same entity; features, request fields and request-time features
added to a service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from featurestore.registry import Feature, FeatureService, Registry

__all__ = ["Incompatibility", "IncompatibilityKind", "incompatibilities"]

IncompatibilityKind = Literal[
    "entity_removed",
    "entity_keys_changed",
    "view_removed",
    "view_entity_changed",
    "view_keys_changed",
    "view_taken_offline",
    "feature_removed",
    "feature_type_changed",
    "aggregation_changed",
    "feature_entity_changed",
    "service_removed",
    "service_feature_removed",
    "request_field_changed",
    "request_feature_changed",
]


@dataclass(frozen=True)
class Incompatibility:
    """One refused change: its kind, the entity, view, feature or feature service, and what
    changed."""

    kind: IncompatibilityKind
    #: ``entity``, ``view``, ``feature`` or ``feature service``
    subject: Literal["entity", "view", "feature", "feature service"]
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject} {self.name}: {self.message} [{self.kind}]"


def incompatibilities(old: Registry, new: Registry) -> list[Incompatibility]:
    """Every change from ``old`` to ``new`` that the rule refuses (empty: compatible), in a
    stable order: entities, views, features, feature services, each by name."""
    found: list[Incompatibility] = []
    for name in sorted(old.entities):
        before = old.entities[name]
        after = new.entities.get(name)
        if after is None:
            found.append(Incompatibility("entity_removed", "entity", name, "removed"))
        elif after.keys != before.keys:
            found.append(
                Incompatibility(
                    "entity_keys_changed",
                    "entity",
                    name,
                    f"keys changed from {_listed(before.keys)} to {_listed(after.keys)}",
                )
            )
    for name in sorted(old.views):
        was = old.views[name]
        view = new.views.get(name)
        if view is None:
            found.append(Incompatibility("view_removed", "view", name, "removed"))
            continue
        if view.entity.name != was.entity.name:
            found.append(
                Incompatibility(
                    "view_entity_changed",
                    "view",
                    name,
                    f"entity changed from {was.entity.name} to {view.entity.name}",
                )
            )
        before_keys = [(k, was.key_types.get(k)) for k in was.keys]
        after_keys = [(k, view.key_types.get(k)) for k in view.keys]
        if before_keys != after_keys:
            found.append(
                Incompatibility(
                    "view_keys_changed",
                    "view",
                    name,
                    f"keys changed from {_typed(before_keys)} to {_typed(after_keys)}",
                )
            )
        if was.online and not view.online:
            found.append(
                Incompatibility("view_taken_offline", "view", name, "taken offline (online: false)")
            )
    for name in sorted(old.features):
        was_feature = old.features[name]
        feature = new.features.get(name)
        if feature is None:
            found.append(
                Incompatibility(
                    "feature_removed", "feature", name, f"removed (was in view {was_feature.view})"
                )
            )
            continue
        if feature.value_type != was_feature.value_type:
            found.append(
                Incompatibility(
                    "feature_type_changed",
                    "feature",
                    name,
                    f"type changed from {was_feature.value_type} ({was_feature.data_type}) to "
                    f"{feature.value_type} ({feature.data_type})",
                )
            )
        if _meaning(feature) != _meaning(was_feature):
            found.append(
                Incompatibility(
                    "aggregation_changed",
                    "feature",
                    name,
                    f"aggregation changed from {_aggregation(was_feature)} to "
                    f"{_aggregation(feature)}",
                )
            )
        was_entity = old.views[was_feature.view].entity.name
        entity = new.views[feature.view].entity.name
        if feature.view != was_feature.view and entity != was_entity:
            found.append(
                Incompatibility(
                    "feature_entity_changed",
                    "feature",
                    name,
                    f"moved from view {was_feature.view} (entity {was_entity}) to view "
                    f"{feature.view} (entity {entity})",
                )
            )
    for name in sorted(old.feature_services):
        service = new.feature_services.get(name)
        if service is None:
            found.append(Incompatibility("service_removed", "feature service", name, "removed"))
        else:
            found += _service_changes(old.feature_services[name], service)
    return found


def _service_changes(was: FeatureService, service: FeatureService) -> list[Incompatibility]:
    """What a model calling the service ``was`` would miss or misread in ``service``."""
    found: list[Incompatibility] = []

    def refuse(kind: IncompatibilityKind, message: str) -> None:
        found.append(Incompatibility(kind, "feature service", was.name, message))

    dropped = [f for f in was.features if f not in service.features]
    if dropped:
        refuse("service_feature_removed", f"feature(s) {', '.join(dropped)} no longer served")
    fields = service.request_types()
    for name, value_type in was.request_types().items():
        if name not in fields:
            refuse("request_field_changed", f"request field {name} removed")
        elif fields[name] != value_type:
            refuse(
                "request_field_changed",
                f"request field {name} type changed from {value_type} to {fields[name]}",
            )
    computed = {f.name: f.expression for f in service.request_features}
    for feature in was.request_features:
        before = feature.expression
        after = computed.get(feature.name)
        if after is None:
            refuse("request_feature_changed", f"request feature {feature.name} removed")
        elif " ".join(after.text.split()) != " ".join(before.text.split()):
            refuse(
                "request_feature_changed",
                f"request feature {feature.name} expression changed from {before.text!r} to "
                f"{after.text!r}",
            )
        elif after.value_type != before.value_type:
            refuse(
                "request_feature_changed",
                f"request feature {feature.name} type changed from {before.value_type} to "
                f"{after.value_type}",
            )
    return found


def _listed(keys: tuple[str, ...]) -> str:
    return "(" + ", ".join(keys) + ")"


def _typed(keys: Sequence[tuple[str, str | None]]) -> str:
    return "(" + ", ".join(f"{k} {t}" for k, t in keys) + ")"


def _meaning(feature: Feature) -> tuple[object, ...] | None:
    """What a declared feature computes (a window spelled ``7d`` or ``168h`` is the same)."""
    a = feature.aggregation
    return None if a is None else (a.function, a.column, a.window_seconds, a.hop_seconds)


def _aggregation(feature: Feature) -> str:
    aggregation = feature.aggregation
    if aggregation is None:
        return "none (hand-written)"
    return (
        f"{aggregation.function}({aggregation.column or '*'}) over {aggregation.window} "
        f"hop {aggregation.hop}"
    )
