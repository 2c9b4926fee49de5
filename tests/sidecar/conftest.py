"""Fixtures of the sidecar's suites: a small registry (entities ``user``, one key column, and
``user_device``, two), an API key, and the demo project's registry from a real ``dbt parse``
(with the test variant of :func:`tests.sidecar.harness.variant_manifest`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurestore.registry import Registry, load_registry, registry_from_manifest
from sidecar.auth import ApiKey
from tests.sidecar.harness import variant_manifest
from tests.warehouse import Warehouse


def _manifest() -> dict[str, object]:
    """A minimal manifest: entities user (one key) and user_device (two keys)."""

    def column(name: str, data_type: str, feature: bool = False) -> dict[str, object]:
        spec: dict[str, object] = {"name": name, "data_type": data_type, "description": name}
        if feature:
            spec["meta"] = {"featurestore": {"feature": True, "default": None}}
        return spec

    def model(name: str, entity: str, keys: list[str], feature: str) -> dict[str, object]:
        columns = {k: column(k, "varchar") for k in keys}
        columns["feature_at"] = column("feature_at", "timestamp")
        columns[feature] = column(feature, "bigint", feature=True)
        return {
            "resource_type": "model",
            "name": name,
            "original_file_path": f"models/{name}.sql",
            "columns": columns,
            "config": {
                "meta": {
                    "featurestore_entities": {
                        "user": {"keys": ["user_id"]},
                        "user_device": {"keys": ["user_id", "device_id"]},
                    },
                    "featurestore": {
                        "entity": entity,
                        "keys": keys,
                        "timestamp": "feature_at",
                        "owner": "team@example.com",
                        "ttl": "1d",
                        "freshness_sla": "1d",
                        "online": True,
                    },
                },
            },
        }

    return {
        "nodes": {
            "model.a": model("user_view", "user", ["user_id"], "f_user"),
            "model.b": model("pair_view", "user_device", ["user_id", "device_id"], "f_pair"),
        }
    }


@pytest.fixture
def small_registry() -> Registry:
    """The registry of :func:`_manifest`: views ``user_view`` (feature ``f_user``) and
    ``pair_view`` (feature ``f_pair``), both online."""
    return registry_from_manifest(json.loads(json.dumps(_manifest())))


@pytest.fixture
def unscoped_key() -> ApiKey:
    return ApiKey("k", b"0" * 32)


@pytest.fixture(scope="session")
def parsed_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project's manifest from ``dbt parse`` (no build: records are written by
    hand), with ``user_profile_features`` as a second view of the user entity and
    ``avg_order_value_90d`` without a default (:func:`~tests.sidecar.harness.variant_manifest`)."""
    workdir = tmp_path_factory.mktemp("dbt-parse")
    Warehouse(workdir).dbt("parse")
    manifest = workdir / "target" / "manifest.json"
    return variant_manifest(manifest, Path(workdir / "variant_manifest.json"))


@pytest.fixture(scope="session")
def parsed_registry(parsed_manifest: Path) -> Registry:
    """The registry of :func:`parsed_manifest`."""
    return load_registry(parsed_manifest)


@pytest.fixture(scope="session")
def manifest(parsed_manifest: Path) -> Path:
    """The sidecar suites' manifest, :func:`parsed_manifest` (a module may override it)."""
    return parsed_manifest


@pytest.fixture(scope="session")
def registry(parsed_registry: Registry) -> Registry:
    """The registry of :func:`manifest` (a module may override it)."""
    return parsed_registry
