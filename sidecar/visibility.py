"""What a caller may see of the registry: :func:`visibility` turns an API key's scope (or
no key at all) into the entities, feature views and features the documents describing
the registry may name (``GET /api/v1/registry``, ``GET /openapi.json``).

- an unscoped key sees everything;
- a scoped key sees the features it may read (:meth:`~sidecar.auth.ApiKey.allows_feature`),
  their views, and the entities it may read that have such a feature or that its
  ``entities`` scope names (a key scoped to features alone sees only those features'
  entities, not every entity);
- no key (an open ``/openapi.json``) sees no entity, view or feature name at all;
- feature services: those the key may call (:meth:`~sidecar.auth.ApiKey.allows_service`).

The retrieve endpoint's own checks (403 outside the scope) are :mod:`sidecar.selection`'s;
this module only decides what is *described*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from featurestore.registry import Registry
from sidecar.auth import ApiKey

__all__ = ["NOTHING", "Visibility", "visibility"]


@dataclass(frozen=True)
class Visibility:
    """The names a caller may see (each a subset of the registry's)."""

    entities: frozenset[str]
    views: frozenset[str]
    features: frozenset[str]
    #: the feature services the caller may call (:meth:`~sidecar.auth.ApiKey.allows_service`)
    feature_services: frozenset[str] = frozenset()


#: what a caller without a key sees
NOTHING: Final = Visibility(frozenset(), frozenset(), frozenset())


def visibility(registry: Registry, key: ApiKey | None) -> Visibility:
    """What ``key`` may see of ``registry`` (None: a caller without a key, who sees no
    name). Depends only on the key's scope (:attr:`~sidecar.auth.ApiKey.scope`)."""
    if key is None:
        return NOTHING
    named = key.entities if key.entities is not None else frozenset()
    entities = {name for name in registry.entities if not key.scoped or name in named}
    views: set[str] = set()
    features: set[str] = set()
    for view in registry.views.values():
        entity = view.entity.name
        readable = {f.name for f in view.features if key.allows_feature(entity, f.name)}
        if readable:
            features |= readable
            views.add(view.name)
            entities.add(entity)
    services = {
        name
        for name, service in registry.feature_services.items()
        if key.allows_service(
            name,
            [(registry.views[registry.features[f].view].entity.name, f) for f in service.features],
        )
    }
    return Visibility(
        frozenset(entities), frozenset(views), frozenset(features), frozenset(services)
    )
