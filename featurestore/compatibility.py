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
* ``entity_keys_changed``: an entity's key columns or their order changed.

Everything else passes: new entities, views and features (a changed feature is added
under a new name, e.g. ``..._v2``, and the old one removed later, in its own change);
descriptions, owners, TTLs, SLAs, defaults, tests; a view put online; a hand-written feature
moved to another view of the same entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from featurestore.registry import Feature, Registry

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
]


@dataclass(frozen=True)
class Incompatibility:
    """One refused change: its kind, the entity, view or feature, and what changed."""

    kind: IncompatibilityKind
    #: ``entity``, ``view`` or ``feature``
    subject: Literal["entity", "view", "feature"]
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject} {self.name}: {self.message} [{self.kind}]"


def incompatibilities(old: Registry, new: Registry) -> list[Incompatibility]:
    """Every change from ``old`` to ``new`` that the rule refuses (empty: compatible), in a
    stable order: entities, views, features, each by name."""
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
