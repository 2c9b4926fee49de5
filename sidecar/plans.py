"""Per-entity plans: what the sidecar computes once from the registry for serving.

At startup every online feature view gets its :class:`~featurestore.online.store.ViewRead`
(all of its features, so one cached record serves any subset of them later), every feature
its constant answers (default or missing, for each reason) and every view its
:class:`~sidecar.fragments.ViewRenderer`. A request then costs dictionary lookups.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from featurestore.online.store import InvalidRecord, StoredRecord, ViewRead
from featurestore.registry import Registry, ValueType
from sidecar.fragments import (
    REASON_KINDS,
    CachedRecord,
    FeatureAnswer,
    Fragment,
    ViewRenderer,
    constant_record,
    json_value,
)
from sidecar.timelines import TimelinePlan

__all__ = ["ABSENT", "EntityPlan", "FeaturePlan", "plan_entities"]


def _fragment(name: str, answer: dict[str, Any]) -> Fragment:
    """``"name":{...}``: one member of a result's ``features`` object."""
    return orjson.dumps({name: answer})[1:-1]


@dataclass(frozen=True, slots=True)
class FeaturePlan:
    name: str
    view: str
    #: position among the features of its view
    index: int
    entity: str
    value_type: ValueType
    #: the registered default as JSON (None: no default)
    default: object | None

    def fallback(self, reason: str, timestamp: str | None) -> tuple[Fragment, int]:
        """The answer when there is no value: the default (DEFAULT) or nothing (MISSING),
        as a JSON fragment, and its kind."""
        kind = REASON_KINDS[reason]
        if self.default is not None:
            answer = {"value": self.default, "timestamp": timestamp, "status": "DEFAULT"}
        else:
            answer = {"value": None, "timestamp": timestamp, "status": "MISSING"}
            kind += 1
        answer["reason"] = reason
        return _fragment(self.name, answer), kind


#: what the cache holds for a (key, view) the store had no unexpired record of: None, an
#: object the garbage collector does not track (so neither are the cache entries holding it)
ABSENT: Final = None


@dataclass(frozen=True)
class EntityPlan:
    name: str
    key_columns: tuple[str, ...]
    key_types: tuple[ValueType, ...]
    #: online features of the entity
    features: Mapping[str, FeaturePlan]
    #: online view -> what to read (every feature of the view)
    view_reads: Mapping[str, ViewRead]
    #: online view -> its features
    view_features: Mapping[str, tuple[FeaturePlan, ...]]
    #: online view -> answers when the store has no record / is unavailable / holds a
    #: record that cannot be decoded (reason ``INVALID_RECORD``)
    not_found: Mapping[str, CachedRecord]
    unavailable: Mapping[str, CachedRecord]
    invalid: Mapping[str, CachedRecord]
    #: online view -> its renderer (stored record -> answers)
    renderers: Mapping[str, ViewRenderer] = field(repr=False)
    #: ``{"entity_name":"<name>","results":[``
    response_head: bytes = b""
    #: online view -> what its records' timelines need (:mod:`sidecar.timelines`)
    timelines: Mapping[str, TimelinePlan] = field(default_factory=dict, repr=False)

    def record(self, view: str, stored: StoredRecord) -> CachedRecord | InvalidRecord:
        """Answers for every feature of ``view`` from a stored record (decoded values), or
        :class:`InvalidRecord` if it cannot be served."""
        values = stored.values
        return self.renderers[view].from_values(
            stored.ts, stored.exp, [values.get(f.name) for f in self.view_features[view]]
        )


def plan_entities(registry: Registry) -> dict[str, EntityPlan]:
    """Every entity of the registry -> its plan (in the registry's order)."""
    return {
        entity.name: _plan_entity(registry, entity.name) for entity in registry.entities.values()
    }


def _plan_entity(registry: Registry, name: str) -> EntityPlan:
    entity = registry.entities[name]
    views = [v for v in registry.views.values() if v.entity.name == name and v.online]
    key_types: list[ValueType] = ["string"] * len(entity.keys)
    for view in registry.views.values():
        if view.entity.name == name:
            key_types = [view.key_types.get(k, "string") for k in entity.keys]
            break
    features: dict[str, FeaturePlan] = {}
    view_reads: dict[str, ViewRead] = {}
    view_features: dict[str, tuple[FeaturePlan, ...]] = {}
    renderers: dict[str, ViewRenderer] = {}
    timelines: dict[str, TimelinePlan] = {}
    for view in views:
        plans = []
        for index, feature in enumerate(view.features):
            default = feature.default
            if isinstance(default, dt.datetime):  # pragma: no cover - defaults are JSON
                default = json_value(default, "timestamp")
            plan = FeaturePlan(feature.name, view.name, index, name, feature.value_type, default)
            features[feature.name] = plan
            plans.append(plan)
        view_features[view.name] = tuple(plans)
        view_reads[view.name] = ViewRead(
            view.name, {f.name: f.value_type for f in view.features}, streamed=view.streamed
        )
        renderers[view.name] = ViewRenderer(
            [
                FeatureAnswer(
                    plan.name,
                    plan.value_type,
                    functools.partial(_null_fragment, plan),
                    plan.fallback("NULL", None)[1],
                )
                for plan in plans
            ]
        )
        timelines[view.name] = TimelinePlan.of(view, renderers[view.name])

    def constant(reason: str, plans: tuple[FeaturePlan, ...]) -> CachedRecord:
        return constant_record([plan.fallback(reason, None) for plan in plans])

    return EntityPlan(
        name=name,
        key_columns=tuple(entity.keys),
        key_types=tuple(key_types),
        features=features,
        view_reads=view_reads,
        view_features=view_features,
        not_found={v: constant("NOT_FOUND", fs) for v, fs in view_features.items()},
        unavailable={v: constant("STORE_UNAVAILABLE", fs) for v, fs in view_features.items()},
        invalid={v: constant("INVALID_RECORD", fs) for v, fs in view_features.items()},
        renderers=renderers,
        response_head=b'{"entity_name":' + orjson.dumps(name) + b',"results":[',
        timelines=timelines,
    )


def _null_fragment(plan: FeaturePlan, timestamp: str) -> Fragment:
    return plan.fallback("NULL", timestamp)[0]
