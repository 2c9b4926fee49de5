"""What a key, or no key, can see: the real sidecar over HTTP in front of a real
redis-server that has a user name and a password.

The expected documents are computed here from the registry itself (which features each
scope may read, their views and entities), not with :mod:`sidecar.visibility`; the text
of every document is also searched for the names and descriptions it must not show.
``/ready``, ``/health`` and ``/metrics`` answered without a key (or with a scoped one) must
name no store, host, user or password, nor the store's error text, with Redis up and down.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from featurestore.registry import Registry
from tests.servers import RedisServer, redis_server
from tests.sidecar.harness import (
    API_KEY,
    SidecarServer,
    running_sidecar,
    sidecar_env,
)

ADMIN_PASSWORD = "admin-pw-0c41d2"
USER = "fsreader7"
PASSWORD = "reader-pw-9b3e55"
FEATURE_KEY = "feature-key-51f0ac"  # two features, of two entities
ENTITY_KEY = "entity-key-7d2b90"  # one entity
BOTH_KEY = "both-key-e8a613"  # an entity and features (of it and of another entity)
#: name -> (entities scope, features scope); API_KEY is unscoped
SCOPES: dict[str, tuple[list[str] | None, list[str] | None]] = {
    FEATURE_KEY: (None, ["user_7d_transaction_count", "merchant_chargeback_rate_30d"]),
    ENTITY_KEY: (["user_device"], None),
    BOTH_KEY: (["user"], ["user_7d_transaction_count", "merchant_chargeback_rate_30d"]),
    API_KEY: (None, None),
}


def add_reader(server: RedisServer) -> None:
    """The ACL user the sidecar connects as (lost when the server restarts)."""
    admin = redis.Redis(port=server.port, password=ADMIN_PASSWORD)
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "~*", "+@all")
    admin.close()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("visibility-redis"), ADMIN_PASSWORD) as server:
        add_reader(server)
        yield server


def auth_config(path: Path) -> Path:
    entries = []
    for index, (raw, (entities, features)) in enumerate(SCOPES.items()):
        if raw == API_KEY:
            continue
        entry: dict[str, Any] = {"name": f"k{index}", "sha256": hashlib.sha256(raw.encode())}
        entry["sha256"] = entry["sha256"].hexdigest()
        if entities is not None:
            entry["entities"] = entities
        if features is not None:
            entry["features"] = features
        entries.append(entry)
    path.write_text(json.dumps({"api_keys": entries}))
    return path


@contextmanager
def start(
    tmp_path_factory: pytest.TempPathFactory,
    server: RedisServer,
    manifest: Path,
    opened: str,
) -> Iterator[SidecarServer]:
    workdir = tmp_path_factory.mktemp("visibility-sidecar")
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0?namespace=nsq7x"
    extra = {
        "FEATURESTORE_AUTH_CONFIG": str(auth_config(workdir / "keys.json")),
        "FEATURESTORE_OPEN_ENDPOINTS": opened,
    }
    with running_sidecar(workdir, sidecar_env(url, manifest, extra=extra)) as sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def open_sidecar(
    tmp_path_factory: pytest.TempPathFactory, own_redis: RedisServer, manifest: Path
) -> Iterator[SidecarServer]:
    """Every endpoint that can be opened is."""
    with start(tmp_path_factory, own_redis, manifest, "health,ready,metrics,openapi") as sidecar:
        yield sidecar


def get(sidecar: SidecarServer, path: str, key: str | None) -> httpx.Response:
    with sidecar.client(api_key=key) as client:
        return client.get(path)


# --- the reference: what each scope may see, from the registry ----------------------------


def expected_features(registry: Registry, key: str) -> set[str]:
    entities, features = SCOPES[key]
    return {
        name
        for name, feature in registry.features.items()
        if (entities is None or registry.views[feature.view].entity.name in entities)
        and (features is None or name in features)
    }


def expected_entities(registry: Registry, key: str) -> set[str]:
    entities, features = SCOPES[key]
    if entities is None and features is None:
        return set(registry.entities)
    readable = expected_features(registry, key)
    return {registry.views[registry.features[f].view].entity.name for f in readable} | set(
        entities or ()
    )


def not_shown(text: str, registry: Registry, entities: set[str], views: set[str]) -> None:
    """No name or description of another entity or view, no other feature, in ``text``."""
    for name, entity in registry.entities.items():
        if name not in entities:
            assert f'"{name}"' not in text, name
            assert entity.description not in text, name
    for name, view in registry.views.items():
        if name not in views:
            assert f'"{name}"' not in text, name
            assert view.description not in text, name
            for feature in view.features:
                assert f'"{feature.name}"' not in text, feature.name


def request_schemas(document: dict[str, Any]) -> dict[str, list[str]]:
    """entity -> the features enum of its request schema in an OpenAPI document."""
    out = {}
    schemas = document["components"]["schemas"]

    def named(ref: dict[str, str]) -> dict[str, Any]:
        return schemas[ref["$ref"].removeprefix("#/components/schemas/")]  # type: ignore[no-any-return]

    for variant in schemas["RetrieveRequest"].get("oneOf", []):
        properties = named(variant)["properties"]
        out[properties["entity_name"]["const"]] = named(properties["features"]["items"])["enum"]
    return out


# --- the documents ------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(SCOPES), ids=["features", "entity", "both", "unscoped"])
def test_a_key_sees_exactly_its_scope_in_both_documents(
    open_sidecar: SidecarServer, registry: Registry, key: str
) -> None:
    features = expected_features(registry, key)
    entities = expected_entities(registry, key)
    views = {registry.features[f].view for f in features}
    assert features, "every scope of this test reads something"

    document = get(open_sidecar, "/api/v1/registry", key)
    assert document.status_code == 200
    body = document.json()
    assert set(body["features"]) == features
    assert set(body["feature_views"]) == views
    assert set(body["entities"]) == entities
    for view in views:
        listed = set(body["feature_views"][view]["features"])
        assert listed == features & set(registry.views[view].feature_names())
    not_shown(document.text, registry, entities, views)

    openapi = get(open_sidecar, "/openapi.json", key)
    assert openapi.status_code == 200
    online = {
        entity: sorted(
            f
            for f in features
            if registry.views[registry.features[f].view].online
            and registry.views[registry.features[f].view].entity.name == entity
        )
        for entity in entities
    }
    assert request_schemas(openapi.json()) == {e: fs for e, fs in online.items() if fs}
    example = openapi.json()["components"]["schemas"]["RetrieveRequest"]["example"]
    assert set(example["features"]) <= set(online[example["entity_name"]])
    not_shown(openapi.text, registry, entities, views)


def test_without_a_key_the_open_openapi_names_nothing(
    open_sidecar: SidecarServer, registry: Registry
) -> None:
    response = get(open_sidecar, "/openapi.json", None)
    assert response.status_code == 200
    document = response.json()
    assert request_schemas(document) == {}
    assert set(document["paths"]) == set(
        get(open_sidecar, "/openapi.json", API_KEY).json()["paths"]
    )
    not_shown(response.text, registry, set(), set())
    for view in registry.views.values():  # nor the key columns
        for column in view.keys:
            assert f'"{column}"' not in response.text, column
    # a key that is sent is checked, even on an open endpoint
    assert get(open_sidecar, "/openapi.json", "not-a-key").status_code == 401
    assert get(open_sidecar, "/api/v1/registry", None).status_code == 401  # never open


def test_openapi_needs_a_key_by_default(
    tmp_path_factory: pytest.TempPathFactory, own_redis: RedisServer, manifest: Path
) -> None:
    with start(tmp_path_factory, own_redis, manifest, "health,ready") as sidecar:
        assert get(sidecar, "/openapi.json", None).status_code == 401
        assert get(sidecar, "/metrics", None).status_code == 401
        # ready is open: a scoped key gets no more than no key
        assert get(sidecar, "/ready", None).json() == {"status": "ready"}
        assert get(sidecar, "/ready", FEATURE_KEY).json() == {"status": "ready"}
        assert "store" in get(sidecar, "/ready", API_KEY).json()


# --- ready, health, metrics -----------------------------------------------------------------


def secrets_and_names(server: RedisServer) -> list[str]:
    return [USER, PASSWORD, ADMIN_PASSWORD, "127.0.0.1", f":{server.port}", "redis:", "nsq7x"]


def test_open_endpoints_say_ready_or_not_and_nothing_more(
    open_sidecar: SidecarServer, own_redis: RedisServer
) -> None:
    def check(up: bool) -> None:
        status, word = (200, "ready") if up else (503, "not_ready")
        for key in (None, FEATURE_KEY, ENTITY_KEY):  # no key, or a scoped one
            response = get(open_sidecar, "/ready", key)
            assert (response.status_code, response.json()) == (status, {"status": word}), key
        details = get(open_sidecar, "/ready", API_KEY)
        assert details.status_code == status
        body = details.json()
        assert body["status"] == word
        assert body["store"] == f"redis://{USER}@127.0.0.1:{own_redis.port}/0?namespace=nsq7x"
        assert (body["store_problem"] is None) is up
        assert PASSWORD not in details.text
        if not up:
            assert f"127.0.0.1:{own_redis.port}" in body["store_problem"]
        for path in ("/health", "/metrics"):
            text = get(open_sidecar, path, None).text
            for word_ in secrets_and_names(own_redis):
                assert word_ not in text, (path, word_)

    check(up=True)
    own_redis.stop()
    try:
        check(up=False)
    finally:
        own_redis.start()
        add_reader(own_redis)
    deadline = time.monotonic() + 20  # the sidecar reconnects on its next check
    while get(open_sidecar, "/ready", None).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    check(up=True)
