"""Fixtures of the client's suites: the real sidecar (``python -m sidecar``) over a real
redis-server filled by the real loader from the demo warehouse built by real dbt, with the
sidecar suites' registry variant (:func:`tests.sidecar.harness.variant_manifest`:
``avg_order_value_90d`` without a default, so its nulls are MISSING; the profile view of
every value type, its records written as the serving suite writes them) and a scoped key;
the same process serves gRPC (``--grpc-port``: :func:`grpc_url`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore.online.layout import Record
from featurestore.registry import Registry
from tests.servers import RedisServer, free_port
from tests.sidecar.harness import (
    SidecarServer,
    redis_demo_store,
    running_sidecar,
    sidecar_env,
    warehouse_latest,
)
from tests.sidecar.test_serving import profile_records
from tests.warehouse import Warehouse

#: a key that may read the user entity only
USERS_ONLY_KEY = "client-users-only-5b1e"


@pytest.fixture(scope="session")
def client_profile(
    demo_warehouse: Warehouse, demo_variant_registry: Registry
) -> dict[str, tuple[Record, Any]]:
    """user -> the profile view's record (every value type, nulls, one expired): the serving
    suite's (:func:`tests.sidecar.test_serving.profile_records`), for 20 users and one
    that only has a profile."""
    latest = warehouse_latest(
        demo_warehouse, demo_variant_registry.views["user_transaction_features"]
    )
    users = [key[0] for key in sorted(latest)[:20]]
    return profile_records([*users, "usr_profile_only"])


@pytest.fixture(scope="session")
def redis_loaded(
    redis: RedisServer, demo_warehouse: Warehouse, client_profile: dict[str, tuple[Record, Any]]
) -> str:
    """A namespace of the session's redis-server holding the demo's loaded values and the
    profile records; its URL."""
    records = [record for record, _ in client_profile.values()]
    return redis_demo_store(redis.url, "cl", demo_warehouse, records)


@pytest.fixture(scope="session")
def grpc_port() -> int:
    """The port :func:`sidecar` serves gRPC on."""
    return free_port()


@pytest.fixture(scope="session")
def grpc_url(sidecar: SidecarServer, grpc_port: int) -> str:
    """The gRPC URL of :func:`sidecar` (``grpc://127.0.0.1:PORT``)."""
    return f"grpc://127.0.0.1:{grpc_port}"


@pytest.fixture(scope="session")
def sidecar(
    redis_loaded: str,
    demo_variant_manifest: Path,
    grpc_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SidecarServer]:
    """The real sidecar over :func:`redis_loaded` (key :data:`tests.sidecar.harness.API_KEY`
    unscoped, :data:`USERS_ONLY_KEY` scoped to the user entity), serving REST and, on
    :func:`grpc_port`, gRPC."""
    workdir = tmp_path_factory.mktemp("client-sidecar")
    auth = workdir / "keys.yml"
    digest = hashlib.sha256(USERS_ONLY_KEY.encode()).hexdigest()
    auth.write_text(
        f"api_keys:\n  - name: users-only\n    sha256: {digest}\n    entities: [user]\n"
    )
    env = sidecar_env(
        redis_loaded, demo_variant_manifest, extra={"FEATURESTORE_AUTH_CONFIG": str(auth)}
    )
    with running_sidecar(workdir, env, ["--grpc-port", str(grpc_port)]) as server:
        yield server
