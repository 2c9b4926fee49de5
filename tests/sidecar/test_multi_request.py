"""Multi-entity request bodies (sidecar/multi_request.py), pure logic on the small registry
(``user``: ``user_id``; ``user_device``: ``user_id``, ``device_id``): how a body is split
into each entity's distinct keys, and the limits, each naming its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurestore.registry import Registry
from sidecar.auth import ApiKey, load_auth_config
from sidecar.errors import ApiError
from sidecar.multi_request import MultiRequest
from sidecar.plans import plan_entities
from sidecar.request_body import RequestParser
from sidecar.selection import Selector
from sidecar.settings import Settings, SettingsError, check_settings


def parser_of(registry: Registry, key: ApiKey, **limits: int) -> RequestParser:
    settings = Settings(online_url="sqlite:///x.db", api_keys=(key,), **limits)  # type: ignore[arg-type]
    plans = plan_entities(registry)
    return RequestParser(plans, Selector(registry, plans, settings.max_values), settings)


def parse(parser: RequestParser, body: object, key: ApiKey) -> MultiRequest:
    request = parser.parse(json.dumps(body).encode(), key)
    assert isinstance(request, MultiRequest)
    return request


def test_items_split_into_each_entitys_distinct_keys(
    small_registry: Registry, unscoped_key: ApiKey
) -> None:
    parser = parser_of(small_registry, unscoped_key)
    items = [
        {"device_id": "d1", "user_id": "a"},
        {"user_id": "b", "device_id": "d1"},
        {"user_id": "a", "device_id": "d2"},
        {"user_id": "a", "device_id": "d1"},
    ]
    request = parse(
        parser, {"features": ["f_pair", "f_user", "f_pair"], "entities": items}, unscoped_key
    )
    # entities in order of first use; the answer's features without the repeat
    assert [s.entity.name for s in request.shape.selections] == ["user_device", "user"]
    assert request.shape.wanted == ((0, 0, 0), (1, 0, 0))
    # by brute force: per entity, the distinct key tuples in order of first use
    for selection, keys, rows in zip(
        request.shape.selections, request.keys, request.rows, strict=True
    ):
        tuples = [tuple(item[c] for c in selection.entity.key_columns) for item in items]
        assert keys == list(dict.fromkeys(tuples))
        assert [keys[r] for r in rows] == tuples
    assert request.raw == items


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"features": ["f_user"], "entities": [{"user_id": "a"}] * 3}, "TOO_MANY_KEYS", "entities"),
        ({"features": ["f_user", "f_pair", "f_user"], "entities": [{"user_id": "a"}]},
         "TOO_MANY_FEATURES", "features"),
        ({"features": ["f_user", "f_pair"], "entities": [{"user_id": "a", "device_id": "d"}] * 2},
         "TOO_MANY_VALUES", "entities"),
        ({"features": ["f_user"], "entities": [{"user_id": "a", "device_id": "d"}]},
         "INVALID_KEY", "entities[0].device_id"),
        ({"features": ["f_pair"], "entities": [{"device_id": "d"}]}, "INVALID_KEY",
         "entities[0].user_id"),
        ({"features": ["f_pair"], "entities": [{"user_id": 1, "device_id": "d"}]},
         "INVALID_KEY", "entities[0].user_id"),
        ({"features": ["f_user"], "entities": [None]}, "INVALID_KEY", "entities[0]"),
        ({"features": "f_user", "entities": [{"user_id": "a"}]}, "INVALID_TYPE", "features"),
        ({"features": ["f_usr"], "entities": [{"user_id": "a"}]}, "UNKNOWN_FEATURE",
         "features[0]"),
    ],
)  # fmt: skip
def test_limits_and_keys_name_their_field(
    small_registry: Registry, unscoped_key: ApiKey, body: object, code: str, field: str
) -> None:
    parser = parser_of(small_registry, unscoped_key, max_keys=2, max_features=2, max_values=3)
    with pytest.raises(ApiError) as caught:
        parser.parse(json.dumps(body).encode(), unscoped_key)
    assert (caught.value.status, caught.value.code, caught.value.field) == (422, code, field)


def test_a_scoped_key_is_refused_outside_its_scope_before_existence(
    small_registry: Registry,
) -> None:
    key = ApiKey("scoped", b"1" * 32, entities=frozenset({"user"}))
    parser = parser_of(small_registry, key)
    assert parse(parser, {"features": ["f_user"], "entities": [{"user_id": "a"}]}, key)
    for names, field in [(["f_user", "f_pair"], "features[1]"), (["nope"], "features[0]")]:
        with pytest.raises(ApiError) as caught:
            parser.parse(
                json.dumps({"features": names, "entities": [{"user_id": "a"}]}).encode(), key
            )
        assert (caught.value.status, caught.value.field) == (403, field)


def test_the_single_entity_form_is_unchanged(
    small_registry: Registry, unscoped_key: ApiKey
) -> None:
    parser = parser_of(small_registry, unscoped_key)
    with pytest.raises(ApiError) as caught:  # entity_name present: the single form's checks
        parser.parse(
            json.dumps({"entity_name": "user", "entities": [], "features": ["f_user"]}).encode(),
            unscoped_key,
        )
    assert (caught.value.code, caught.value.field) == ("UNKNOWN_FIELD", "entities")


def test_feature_services_in_a_key_file(tmp_path: Path, small_registry: Registry) -> None:
    """``feature_services`` in the key file: read; alone it reads no entity or feature
    otherwise; an unknown service name is refused at start-up (check_settings)."""
    path = tmp_path / "keys.yml"
    path.write_text(
        f"api_keys:\n  - name: svc\n    sha256: {'a' * 64}\n    feature_services: [fraud]\n"
    )
    (key,) = load_auth_config(path).keys
    assert key.feature_services == frozenset({"fraud"}) and key.scoped
    assert not key.allows_feature("user", "f_user") and not key.allows_entity("user")
    assert key.allows_service("fraud", [("user", "f_user")])
    assert not key.allows_service("other", [("user", "f_user")])
    assert key.allows_service("empty", [])  # a service of no stored feature: nothing to refuse
    settings = Settings(online_url="sqlite:///x.db", api_keys=(key,))
    with pytest.raises(SettingsError, match="unknown feature service 'fraud'"):
        check_settings(settings, small_registry)
