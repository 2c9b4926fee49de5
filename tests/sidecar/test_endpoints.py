"""The route table (sidecar/endpoints.py) is the one source of the routes, the metric labels,
the OpenAPI paths and the endpoints that may be opened."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from featurestore.registry import Registry
from sidecar.auth import OPENABLE_ENDPOINTS, ApiKey
from sidecar.endpoints import ENDPOINTS, RETRIEVE, route_path
from sidecar.metrics import ROUTE_LABELS
from sidecar.openapi import build_openapi
from sidecar.plans import plan_entities
from sidecar.routes import HANDLERS, ROUTES, RetrieveEndpoint
from sidecar.settings import Settings


def test_every_endpoint_is_routed_to_its_handler_in_table_order() -> None:
    assert set(HANDLERS) == {endpoint.name for endpoint in ENDPOINTS}
    routed = [(route.path, route.methods, route.endpoint) for route in ROUTES]
    assert all(isinstance(route, Route) for route in ROUTES)
    assert [(path, endpoint) for path, _, endpoint in routed] == [
        (e.path, HANDLERS[e.name]) for e in ENDPOINTS
    ]
    for (_, methods, _), endpoint in zip(routed, ENDPOINTS, strict=True):
        assert methods is not None and endpoint.method in methods
    assert isinstance(HANDLERS[RETRIEVE.name], RetrieveEndpoint)
    assert len({e.path for e in ENDPOINTS}) == len({e.name for e in ENDPOINTS}) == len(ENDPOINTS)


def test_metric_labels_are_the_table_paths() -> None:
    assert {endpoint.path: endpoint.path for endpoint in ENDPOINTS} == ROUTE_LABELS


@pytest.mark.parametrize(
    "opened", [frozenset(), frozenset({"health", "ready"}), OPENABLE_ENDPOINTS]
)
def test_openapi_paths_and_security_come_from_the_table(
    small_registry: Registry, opened: frozenset[str]
) -> None:
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),), open_endpoints=opened
    )
    paths = build_openapi(plan_entities(small_registry), settings)["paths"]
    assert list(paths) == [endpoint.path for endpoint in ENDPOINTS]
    for endpoint in ENDPOINTS:
        (method, operation), *others = paths[endpoint.path].items()
        assert not others and method == endpoint.method.lower()
        assert operation["operationId"] == endpoint.operation_id
        assert operation["summary"] == endpoint.summary
        is_open = endpoint.name in opened
        assert operation["security"] == ([] if is_open else [{"ApiKey": []}])
        assert ("401" in operation["responses"]) is not is_open
        assert "200" in operation["responses"]


def test_openable_endpoints_are_the_table_s() -> None:
    assert {"health", "ready", "metrics", "openapi"} == OPENABLE_ENDPOINTS
    assert {e.name for e in ENDPOINTS if e.openable} == OPENABLE_ENDPOINTS


def test_route_path_drops_the_root_path_only_as_a_prefix() -> None:
    assert route_path({"path": "/fs/health", "root_path": "/fs"}) == "/health"
    assert route_path({"path": "/health", "root_path": "/fs"}) == "/health"
    assert route_path({"path": "/health"}) == "/health"
