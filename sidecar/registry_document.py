"""The ``GET /api/v1/registry`` document: entities (keys, how to address them), feature
views (owner, TTL, freshness SLA, online, cache TTL) and features (type, default, view),
limited to what the caller's API key may read, and the request limits.

The JSON is built once per scope: at startup for unscoped keys, on a scoped key's first
request for that key (:class:`RegistryDocuments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.fragments import json_value
from sidecar.plans import EntityPlan
from sidecar.settings import Settings

__all__ = ["RegistryDocuments", "describe"]


def describe(
    registry: Registry,
    plans: Mapping[str, EntityPlan],
    settings: Settings,
    principal: ApiKey | None,
) -> dict[str, Any]:
    """The registry as JSON, limited to what ``principal`` may read (None: everything)."""

    def entity_ok(name: str) -> bool:
        return principal is None or principal.allows_entity(name)

    def feature_ok(entity: str, name: str) -> bool:
        return principal is None or principal.allows_feature(entity, name)

    entities = {}
    for declared in registry.entities.values():
        if not entity_ok(declared.name):
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
        visible = [f for f in view.features if feature_ok(entity, f.name)]
        if not entity_ok(entity) or not visible:
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
            "cache_ttl_seconds": settings.cache_ttl(view.name) if view.online else None,
            "description": view.description,
            "features": [f.name for f in visible],
        }
        for feature in visible:
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
            }
    return {
        "entities": entities,
        "feature_views": views,
        "features": features,
        "limits": {
            "max_keys": settings.max_keys,
            "max_features": settings.max_features,
            "max_values": settings.max_values,
            "max_body_bytes": settings.max_body_bytes,
            "max_key_part_chars": settings.max_key_part_chars,
        },
    }


class RegistryDocuments:
    """The registry document's JSON per API key scope, each built once."""

    def __init__(
        self, registry: Registry, plans: Mapping[str, EntityPlan], settings: Settings
    ) -> None:
        self._registry = registry
        self._plans = plans
        self._settings = settings
        self._unscoped = orjson.dumps(describe(registry, plans, settings, None))
        self._scoped: dict[bytes, bytes] = {}  # scoped key digest -> document

    def json(self, principal: ApiKey) -> bytes:
        """The document for ``principal`` as JSON bytes."""
        if not principal.scoped:
            return self._unscoped
        cached = self._scoped.get(principal.digest)
        if cached is None:
            cached = self._scoped[principal.digest] = orjson.dumps(
                describe(self._registry, self._plans, self._settings, principal)
            )
        return cached
