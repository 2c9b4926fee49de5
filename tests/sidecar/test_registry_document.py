"""The registry document (sidecar/registry_document.py) and the per-scope documents
(sidecar/documents.py): limited to what the key may see, built once per scope."""

from __future__ import annotations

import orjson

from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.documents import Documents
from sidecar.plans import plan_entities
from sidecar.registry_document import describe
from sidecar.settings import Settings
from sidecar.visibility import NOTHING, visibility


def test_a_scoped_key_sees_only_its_scope(small_registry: Registry, unscoped_key: ApiKey) -> None:
    scoped = ApiKey("s", b"1" * 32, entities=frozenset({"user_device"}))
    same_scope = ApiKey("t", b"2" * 32, entities=frozenset({"user_device"}))
    one_feature = ApiKey("f", b"3" * 32, features=frozenset({"f_user"}))
    settings = Settings(
        online_url="sqlite:///x.db",
        api_keys=(unscoped_key, scoped, same_scope, one_feature),
        cache_ttl_by_view={"user_view": 2.0},
    )
    plans = plan_entities(small_registry)
    everything = describe(small_registry, plans, settings, visibility(small_registry, unscoped_key))
    assert set(everything["entities"]) == {"user", "user_device"}
    assert set(everything["features"]) == {"f_user", "f_pair"}
    assert everything["feature_views"]["user_view"]["cache_ttl_seconds"] == 2.0
    assert everything["entities"]["user_device"]["key_types"] == ["string", "string"]
    assert everything["limits"]["max_keys"] == settings.max_keys
    limited = describe(small_registry, plans, settings, visibility(small_registry, scoped))
    assert set(limited["entities"]) == {"user_device"}
    assert set(limited["feature_views"]) == {"pair_view"}
    assert set(limited["features"]) == {"f_pair"}
    # a key scoped to features alone sees only those features' entities
    feature_only = describe(
        small_registry, plans, settings, visibility(small_registry, one_feature)
    )
    assert set(feature_only["entities"]) == {"user"}
    assert set(feature_only["feature_views"]) == {"user_view"}
    nothing = describe(small_registry, plans, settings, NOTHING)
    assert nothing["entities"] == nothing["features"] == nothing["feature_views"] == {}

    documents = Documents(small_registry, plans, settings)
    assert orjson.loads(documents.registry(unscoped_key)) == everything
    first = documents.registry(scoped)
    assert orjson.loads(first) == limited
    assert documents.registry(scoped) is first  # built once per scope
    assert documents.registry(same_scope) is first  # shared by keys of the same scope
    assert documents.openapi(scoped) is documents.openapi(same_scope)
    anonymous = documents.openapi(None).decode()
    for name in ("user", "f_user", "f_pair", "user_view", "pair_view"):
        assert f'"{name}"' not in anonymous, name
