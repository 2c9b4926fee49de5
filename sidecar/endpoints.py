"""The route table: every endpoint of the sidecar, its path and method, written once.

Routing (:data:`sidecar.routes.ROUTES`), the ``route`` label of the request metrics
(:data:`sidecar.metrics.ROUTE_LABELS`), the paths of the OpenAPI document
(:func:`sidecar.openapi.build_openapi`) and the endpoints that may be served without a key
(:data:`OPENABLE_ENDPOINTS`, ``FEATURESTORE_OPEN_ENDPOINTS``) all come from
:data:`ENDPOINTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from starlette.types import Scope

__all__ = [
    "ENDPOINTS",
    "HEALTH",
    "METRICS",
    "OPENABLE_ENDPOINTS",
    "OPENAPI",
    "READY",
    "REGISTRY",
    "RETRIEVE",
    "Endpoint",
    "route_path",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route of the sidecar."""

    #: what ``FEATURESTORE_OPEN_ENDPOINTS`` and the auth config's ``open_endpoints`` call it
    name: str
    #: the path as routed (without the ``root_path`` the app may be mounted under)
    path: str
    method: str
    #: whether it may be served without a key (retrieve and registry never are)
    openable: bool
    #: the OpenAPI operation
    operation_id: str
    summary: str


RETRIEVE: Final = Endpoint(
    "retrieve", "/api/v1/features/retrieve", "POST", False, "retrieveFeatures",
    "Feature values of one entity for many keys, in key order.",
)  # fmt: skip
REGISTRY: Final = Endpoint(
    "registry", "/api/v1/registry", "GET", False, "getRegistry",
    "Entities, feature views and features the key may read.",
)  # fmt: skip
HEALTH: Final = Endpoint(
    "health", "/health", "GET", True, "health", "Liveness: the process answers."
)
READY: Final = Endpoint(
    "ready", "/ready", "GET", True, "ready", "Readiness: registry loaded and store reachable."
)
METRICS: Final = Endpoint("metrics", "/metrics", "GET", True, "metrics", "Prometheus metrics.")
OPENAPI: Final = Endpoint("openapi", "/openapi.json", "GET", True, "openapi", "This document.")

#: every endpoint, in the order routing tries them and the OpenAPI document lists them
ENDPOINTS: Final = (RETRIEVE, REGISTRY, HEALTH, READY, METRICS, OPENAPI)
OPENABLE_ENDPOINTS: Final = frozenset(e.name for e in ENDPOINTS if e.openable)


def route_path(scope: Scope) -> str:
    """The request's path without the prefix the app is mounted under (``root_path``, e.g.
    ``uvicorn --root-path``), as the routes are written."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        return path[len(root) :]
    return path
