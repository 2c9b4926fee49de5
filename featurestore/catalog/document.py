"""The catalog document: every entity, feature view, feature and feature service of the
registry with what a data scientist looks for (type, description, owner, TTL, freshness SLA
and the freshness measured at build time, default, online or not, the feature services
using it, lineage from the raw sources; a service's request-time features listed beside
the stored ones), as one JSON-ready mapping. ``featurestore catalog`` writes it as
``catalog.json`` and embeds it in the page (:mod:`featurestore.catalog.page`).
The layout is the README's "Catalog" section (``catalog_version`` 1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from featurestore.freshness import ViewFreshness
from featurestore.lineage import LineageNode
from featurestore.registry import Feature, FeatureView, Registry
from featurestore.timestamps import iso_micros, micros

__all__ = ["CATALOG_VERSION", "build_catalog"]

#: the document's layout version (a change that breaks a reader bumps it)
CATALOG_VERSION: Final = 1


def build_catalog(
    registry: Registry,
    now: dt.datetime,
    freshness: Sequence[ViewFreshness] | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """The catalog of ``registry`` built at ``now`` (UTC; naive is UTC).

    ``freshness`` is every online view's freshness at ``now``
    (:func:`featurestore.freshness.freshness`), read from the store described by ``store``
    (its redacted description); ``None`` when no store was read: the document then says
    freshness was not checked, rather than showing views as never loaded.
    """
    measured = {item.view: item for item in freshness or ()}
    services = _services_by_feature(registry)
    return {
        "catalog_version": CATALOG_VERSION,
        "generated_at": _iso(now),
        "freshness_checked": freshness is not None,
        "store": store,
        "entities": [
            {"name": e.name, "keys": list(e.keys), "description": e.description}
            for e in sorted(registry.entities.values(), key=lambda e: e.name)
        ],
        "views": [
            _view(view, registry.lineage.get(view.name, ()), measured.get(view.name))
            for view in sorted(registry.views.values(), key=lambda v: v.name)
        ],
        "features": sorted(
            [
                *(
                    _feature(feature, registry.views[feature.view], services.get(feature.name, []))
                    for feature in registry.features.values()
                ),
                *_request_features(registry),
            ],
            key=lambda f: (f["name"], f["id"]),
        ),
        "services": _services(registry),
    }


def _view(
    view: FeatureView, lineage: Sequence[LineageNode], freshness: ViewFreshness | None
) -> dict[str, Any]:
    return {
        "name": view.name,
        "entity": view.entity.name,
        "keys": list(view.keys),
        "owner": view.owner,
        "description": view.description,
        "relation": view.relation,
        "ttl": view.ttl,
        "ttl_seconds": view.ttl_seconds,
        "freshness_sla": view.freshness_sla,
        "freshness_sla_seconds": view.freshness_sla_seconds,
        "online": view.online,
        "streamed": view.streamed,
        "windowed": view.windowed is not None,
        "freshness": None if freshness is None else freshness.to_dict(),
        "features": list(view.feature_names()),
        "lineage": [
            {
                "id": node.unique_id,
                "kind": node.kind,
                "name": node.name,
                "relation": node.relation,
                "description": node.description,
                "parents": list(node.parents),
                "depth": node.depth,
            }
            for node in lineage
        ],
    }


def _feature(feature: Feature, view: FeatureView, services: list[str]) -> dict[str, Any]:
    aggregation = feature.aggregation
    return {
        "id": feature.name,
        "kind": "stored",
        "name": feature.name,
        "view": view.name,
        "entity": view.entity.name,
        "entities": [view.entity.name],
        "owner": view.owner,
        "type": feature.value_type,
        "data_type": feature.data_type,
        "description": feature.description,
        "default": feature.default,
        "online": view.online,
        "ttl": view.ttl,
        "freshness_sla": view.freshness_sla,
        "aggregation": None
        if aggregation is None
        else (
            f"{aggregation.function}({aggregation.column or '*'}) over {aggregation.window}, "
            f"hop {aggregation.hop}"
        ),
        "services": services,
    }


def _request_features(registry: Registry) -> list[dict[str, Any]]:
    """Every service's request-time features, in the stored features' layout: no view, TTL,
    SLA or default (a null value is answered ``MISSING``), always computed, the owner the
    service's, the entities those of the stored features the expression reads."""
    out = []
    for service in registry.feature_services.values():
        for feature in service.request_features:
            expression = feature.expression
            entities = list(
                dict.fromkeys(registry.view_of(name).entity.name for name in expression.features)
            )
            out.append(
                {
                    "id": f"{service.name}.{feature.name}",
                    "kind": "request",
                    "name": feature.name,
                    "view": None,
                    "entity": None,
                    "entities": entities,
                    "owner": service.owner,
                    "type": expression.value_type,
                    "data_type": None,
                    "description": feature.description,
                    "default": None,
                    "online": True,
                    "ttl": None,
                    "freshness_sla": None,
                    "aggregation": None,
                    "services": [service.name],
                    "expression": expression.text,
                    "reads": list(expression.features),
                    "request_fields": list(expression.request_fields),
                }
            )
    return out


def _services_by_feature(registry: Registry) -> dict[str, list[str]]:
    """The feature services using each stored feature (in service order), by feature name;
    a request-time feature is listed under its service, not here."""
    out: dict[str, list[str]] = {}
    for service in registry.feature_services.values():
        for name in service.features:
            out.setdefault(name, []).append(service.name)
    return out


def _services(registry: Registry) -> list[dict[str, Any]]:
    """Every feature service of the registry, in the registry's order."""
    return [
        {
            "name": service.name,
            "owner": service.owner,
            "description": service.description,
            "features": list(service.features),
            "entities": list(service.entities),
            "request_fields": [
                {"name": f.name, "type": f.value_type} for f in service.request_fields
            ],
            "request_features": [
                {
                    "name": f.name,
                    "expression": f.expression.text,
                    "type": f.expression.value_type,
                    "description": f.description,
                }
                for f in service.request_features
            ],
        }
        for service in registry.feature_services.values()
    ]


def _iso(moment: dt.datetime) -> str:
    """ISO 8601 UTC with ``Z`` (naive is UTC)."""
    return iso_micros(micros(moment))
