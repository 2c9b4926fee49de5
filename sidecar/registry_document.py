"""The ``GET /api/v1/registry`` document: entities (keys, how to address them), feature
views (owner, TTL, freshness SLA, online, cache TTL, ``tiled``: whether the store holds
tiles merged at the request's time) and features (type, default, view; for a declared
windowed feature its ``aggregation``, ``column``, ``window`` and ``hop``, each with its
seconds; null for a hand-written one) and the feature services the key may call (entities,
the key columns a request names, stored features, request fields with their types,
request-time features with their expressions), limited to what the caller's API key may
see (:func:`sidecar.visibility.visibility`), and the request limits. Built once per scope
(:class:`sidecar.documents.Documents`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featurestore.registry import Registry
from featurestore.windows import Aggregation
from sidecar.fragments import json_value
from sidecar.plans import EntityPlan
from sidecar.settings import Settings
from sidecar.visibility import Visibility

__all__ = ["describe"]


def describe(
    registry: Registry,
    plans: Mapping[str, EntityPlan],
    settings: Settings,
    visible: Visibility,
) -> dict[str, Any]:
    """The registry as JSON, limited to the entities, views and features in ``visible``."""
    entities = {}
    for declared in registry.entities.values():
        if declared.name not in visible.entities:
            continue
        plan = plans[declared.name]
        entities[declared.name] = {
            "keys": list(declared.keys),
            "key_types": list(plan.key_types),
            "description": declared.description,
            "key_format": (
                "a string: the key value"
                if len(declared.keys) == 1
                else "a string '" + ":".join(declared.keys) + "' (values percent-escape "
                "% : { } #), or an object naming every key column"
            ),
        }
    views = {}
    features = {}
    for view in registry.views.values():
        entity = view.entity.name
        shown = [f for f in view.features if f.name in visible.features]
        if view.name not in visible.views or not shown:
            continue
        views[view.name] = {
            "entity": entity,
            "keys": list(view.keys),
            "owner": view.owner,
            "ttl": view.ttl,
            "ttl_seconds": view.ttl_seconds,
            "freshness_sla": view.freshness_sla,
            "freshness_sla_seconds": view.freshness_sla_seconds,
            "online": view.online,
            "cache_ttl_seconds": settings.cache_ttl(view.name, streamed=view.streamed)
            if view.online
            else None,
            "tiled": view.tiled,
            "streamed": view.streamed,
            "description": view.description,
            "features": [f.name for f in shown],
        }
        for feature in shown:
            features[feature.name] = {
                "entity": entity,
                "view": view.name,
                "type": feature.value_type,
                "data_type": feature.data_type,
                "default": json_value(feature.default, feature.value_type),
                "description": feature.description,
                "owner": view.owner,
                "ttl_seconds": view.ttl_seconds,
                "freshness_sla_seconds": view.freshness_sla_seconds,
                "online": view.online,
                **_windowed(feature.aggregation),
            }
    services = {}
    for service in registry.feature_services.values():
        if service.name not in visible.feature_services:
            continue
        services[service.name] = {
            "owner": service.owner,
            "description": service.description,
            "entities": list(service.entities),
            "keys": list(
                dict.fromkeys(k for e in service.entities for k in registry.entities[e].keys)
            ),
            "features": list(service.features),
            "request_fields": {f.name: f.value_type for f in service.request_fields},
            "request_features": {
                f.name: {
                    "expression": f.expression.text,
                    "type": f.expression.value_type,
                    "description": f.description,
                }
                for f in service.request_features
            },
        }
    return {
        "entities": entities,
        "feature_views": views,
        "features": features,
        "feature_services": services,
        "limits": {
            "max_keys": settings.max_keys,
            "max_features": settings.max_features,
            "max_values": settings.max_values,
            "max_body_bytes": settings.max_body_bytes,
            "max_key_part_chars": settings.max_key_part_chars,
        },
    }


def _windowed(aggregation: Aggregation | None) -> dict[str, Any]:
    """A feature's declared aggregation and window (all null for a hand-written feature):
    a windowed value is served at the request's time, its ``timestamp`` that time."""
    if aggregation is None:
        return {"aggregation": None, "column": None, "window": None, "window_seconds": None,
                "hop": None, "hop_seconds": None}  # fmt: skip
    return {
        "aggregation": aggregation.function,
        "column": aggregation.column,
        "window": aggregation.window,
        "window_seconds": aggregation.window_seconds,
        "hop": aggregation.hop,
        "hop_seconds": aggregation.hop_seconds,
    }
