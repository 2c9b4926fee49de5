"""Shared fixtures: the demo warehouse built once per session (and its manifest in the
sidecar suites' variant), the real Redis and moto servers, and an initialized store of each
kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from tests.servers import (
    MotoServer,
    RedisClusterServers,
    RedisServer,
    moto_server,
    redis_cluster,
    redis_server,
)
from tests.sidecar.harness import variant_manifest
from tests.stores import store_url
from tests.warehouse import Warehouse


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """The checked-in demo data built by `dbt build` (shared by the session: do not write)."""
    warehouse = Warehouse(tmp_path_factory.mktemp("demo-warehouse"))
    warehouse.build()
    yield warehouse


@pytest.fixture(scope="session")
def demo_variant_manifest(
    demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The demo warehouse's manifest in the sidecar suites' variant
    (:func:`tests.sidecar.harness.variant_manifest`), served by the sidecar and client suites."""
    out = tmp_path_factory.mktemp("variant-manifest") / "manifest.json"
    return variant_manifest(demo_warehouse.target_path / "manifest.json", out)


@pytest.fixture(scope="session")
def demo_variant_registry(demo_variant_manifest: Path) -> Registry:
    """The registry of :func:`demo_variant_manifest`."""
    return load_registry(demo_variant_manifest)


# --- online stores: the same contract suite runs against SQLite, Redis (one node and a
# cluster) and DynamoDB ---


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A local Redis Cluster (3 masters, 1 replica each) for the session: tests use their
    own namespace and must not kill its nodes (fault tests start their own)."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


@pytest.fixture(scope="session")
def moto(monkeypatch_session: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(key, value)
        yield patch


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """An initialized, empty store of each kind."""
    online = open_store(store_url(request.param, request, tmp_path))
    online.initialize()
    try:
        yield online
    finally:
        online.close()
