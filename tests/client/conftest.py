"""Fixtures of the client's suites: the real sidecar (``python -m sidecar``) over a real
redis-server filled by the real loader from the demo warehouse built by real dbt, with the
sidecar suites' registry variant (:func:`tests.sidecar.harness.variant_manifest`:
``avg_order_value_90d`` without a default, so its nulls are MISSING) and a scoped key."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from tests.servers import RedisServer
from tests.sidecar.harness import (
    SidecarServer,
    load_demo,
    running_sidecar,
    sidecar_env,
    variant_manifest,
)
from tests.warehouse import Warehouse

#: a key that may read the user entity only
USERS_ONLY_KEY = "client-users-only-5b1e"


@pytest.fixture(scope="session")
def client_manifest(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("client-manifest") / "manifest.json"
    return variant_manifest(demo_warehouse.target_path / "manifest.json", out)


@pytest.fixture(scope="session")
def client_registry(client_manifest: Path) -> Registry:
    return load_registry(client_manifest)


@pytest.fixture(scope="session")
def redis_loaded(redis: RedisServer, demo_warehouse: Warehouse) -> str:
    """A namespace of the session's redis-server holding the demo's loaded values; its URL."""
    url = f"{redis.url}?namespace=cl{uuid.uuid4().hex[:8]}"
    with open_store(url) as store:
        store.initialize()
        load_demo(store, demo_warehouse)
    return url


@pytest.fixture(scope="session")
def sidecar(
    redis_loaded: str, client_manifest: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarServer]:
    """The real sidecar over :func:`redis_loaded` (key :data:`tests.sidecar.harness.API_KEY`
    unscoped, :data:`USERS_ONLY_KEY` scoped to the user entity)."""
    workdir = tmp_path_factory.mktemp("client-sidecar")
    auth = workdir / "keys.yml"
    digest = hashlib.sha256(USERS_ONLY_KEY.encode()).hexdigest()
    auth.write_text(
        f"api_keys:\n  - name: users-only\n    sha256: {digest}\n    entities: [user]\n"
    )
    env = sidecar_env(redis_loaded, client_manifest, extra={"FEATURESTORE_AUTH_CONFIG": str(auth)})
    with running_sidecar(workdir, env) as server:
        yield server
