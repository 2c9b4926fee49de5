"""The registry document (sidecar/registry_document.py): limited to the key's scope, built
once per scope."""

from __future__ import annotations

import orjson

from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.plans import plan_entities
from sidecar.registry_document import RegistryDocuments, describe
from sidecar.settings import Settings


def test_a_scoped_key_sees_only_its_scope(small_registry: Registry, unscoped_key: ApiKey) -> None:
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(unscoped_key,), cache_ttl_by_view={"user_view": 2.0}
    )
    plans = plan_entities(small_registry)
    everything = describe(small_registry, plans, settings, None)
    assert set(everything["entities"]) == {"user", "user_device"}
    assert set(everything["features"]) == {"f_user", "f_pair"}
    assert everything["feature_views"]["user_view"]["cache_ttl_seconds"] == 2.0
    assert everything["entities"]["user_device"]["key_types"] == ["string", "string"]
    assert everything["limits"]["max_keys"] == settings.max_keys
    scoped = ApiKey("s", b"1" * 32, entities=frozenset({"user_device"}))
    limited = describe(small_registry, plans, settings, scoped)
    assert set(limited["entities"]) == {"user_device"}
    assert set(limited["feature_views"]) == {"pair_view"}
    assert set(limited["features"]) == {"f_pair"}

    documents = RegistryDocuments(small_registry, plans, settings)
    assert orjson.loads(documents.json(unscoped_key)) == everything
    first = documents.json(scoped)
    assert orjson.loads(first) == limited
    assert documents.json(scoped) is first  # built once per scoped key
