"""The documents describing the registry to a caller, per scope, as JSON bytes: the registry
document (:func:`sidecar.registry_document.describe`) and the OpenAPI document
(:func:`sidecar.openapi.build_openapi`), each limited to what the caller may see
(:func:`sidecar.visibility.visibility`).

Each is built once per scope, not per key nor per request: at startup for the scope of
every configured key and for callers without a key (OpenAPI only: the registry endpoint
always needs a key); keys with the same scope share them.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from featurestore.registry import Registry
from sidecar.auth import ApiKey, Scope
from sidecar.openapi import build_openapi
from sidecar.plans import EntityPlan
from sidecar.registry_document import describe
from sidecar.settings import Settings
from sidecar.visibility import NOTHING, visibility

__all__ = ["Documents"]


class Documents:
    """The registry and OpenAPI documents of each scope, built once."""

    def __init__(
        self, registry: Registry, plans: Mapping[str, EntityPlan], settings: Settings
    ) -> None:
        self._registry = registry
        self._plans = plans
        self._settings = settings
        self._by_scope: dict[Scope, tuple[bytes, bytes]] = {}
        self._anonymous_openapi = orjson.dumps(
            build_openapi(plans, settings, NOTHING, registry.feature_services)
        )
        for key in settings.api_keys:
            self._documents(key)

    def _documents(self, key: ApiKey) -> tuple[bytes, bytes]:
        """(registry document, OpenAPI document) of ``key``'s scope (built on first use for
        a key that was not configured at startup)."""
        found = self._by_scope.get(key.scope)
        if found is None:
            visible = visibility(self._registry, key)
            found = self._by_scope[key.scope] = (
                orjson.dumps(describe(self._registry, self._plans, self._settings, visible)),
                orjson.dumps(
                    build_openapi(
                        self._plans, self._settings, visible, self._registry.feature_services
                    )
                ),
            )
        return found

    def registry(self, key: ApiKey) -> bytes:
        """``GET /api/v1/registry`` for ``key``."""
        return self._documents(key)[0]

    def openapi(self, key: ApiKey | None) -> bytes:
        """``GET /openapi.json`` for ``key`` (None: a caller without a key, who sees no
        entity or feature name)."""
        return self._anonymous_openapi if key is None else self._documents(key)[1]
