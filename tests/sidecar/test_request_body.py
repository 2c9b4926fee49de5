"""Retrieve request bodies (sidecar/request_body.py): the checks before the feature list and
the keys, in order, each naming its field."""

from __future__ import annotations

import json

import pytest

from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.errors import ApiError
from sidecar.plans import plan_entities
from sidecar.request_body import RequestParser
from sidecar.selection import Selector
from sidecar.settings import Settings


@pytest.fixture
def parser(small_registry: Registry, unscoped_key: ApiKey) -> RequestParser:
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(unscoped_key,), max_keys=2, max_features=2
    )
    plans = plan_entities(small_registry)
    return RequestParser(plans, Selector(small_registry, plans, settings.max_values), settings)


def test_a_valid_body_resolves_to_its_selection_and_keys(
    parser: RequestParser, unscoped_key: ApiKey
) -> None:
    body = {"entity_name": "user", "entity_keys": ["a", "a"], "features": ["f_user"]}
    request = parser.parse(json.dumps(body).encode(), unscoped_key)
    assert request.raw_keys == ["a", "a"] and request.keys == [("a",), ("a",)]
    assert [f.name for f in request.features] == ["f_user"]
    assert request.selection.entity.name == "user"


GOOD = {"entity_name": "user", "entity_keys": ["a"], "features": ["f_user"]}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{", 400, "INVALID_JSON", "body"),
        (b"[]", 422, "INVALID_BODY", "body"),
        ({**GOOD, "extra": 1}, 422, "UNKNOWN_FIELD", "extra"),
        ({"entity_name": "user", "features": ["f_user"]}, 422, "MISSING_FIELD", "entity_keys"),
        ({**GOOD, "entity_name": ""}, 422, "INVALID_TYPE", "entity_name"),
        ({**GOOD, "entity_keys": "a"}, 422, "INVALID_TYPE", "entity_keys"),
        ({**GOOD, "entity_keys": []}, 422, "EMPTY_LIST", "entity_keys"),
        ({**GOOD, "entity_keys": ["a", "b", "c"]}, 422, "TOO_MANY_KEYS", "entity_keys"),
        ({**GOOD, "features": {}}, 422, "INVALID_TYPE", "features"),
        ({**GOOD, "features": []}, 422, "EMPTY_LIST", "features"),
        ({**GOOD, "features": ["f_user"] * 3}, 422, "TOO_MANY_FEATURES", "features"),
        ({**GOOD, "entity_name": "usr"}, 422, "UNKNOWN_ENTITY", "entity_name"),
        ({**GOOD, "features": ["f_usr"]}, 422, "UNKNOWN_FEATURE", "features[0]"),
        ({**GOOD, "features": ["f_pair"]}, 422, "WRONG_ENTITY", "features[0]"),
        ({**GOOD, "entity_keys": [7]}, 422, "INVALID_KEY", "entity_keys[0]"),
    ],
)
def test_each_problem_is_answered_with_its_field(
    parser: RequestParser,
    unscoped_key: ApiKey,
    body: bytes | dict[str, object],
    status: int,
    code: str,
    field: str,
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ApiError) as info:
        parser.parse(raw, unscoped_key)
    assert (info.value.status, info.value.code, info.value.field) == (status, code, field)


def test_suggestions_name_only_what_the_key_may_read(
    parser: RequestParser, unscoped_key: ApiKey
) -> None:
    body = {**GOOD, "features": ["f_usr"]}
    with pytest.raises(ApiError) as info:
        parser.parse(json.dumps(body).encode(), unscoped_key)
    assert info.value.message == "unknown feature 'f_usr' (did you mean 'f_user'?)"
    body = {**GOOD, "entity_name": "user_devic"}
    with pytest.raises(ApiError) as info:
        parser.parse(json.dumps(body).encode(), unscoped_key)
    assert info.value.message == "unknown entity 'user_devic' (did you mean 'user_device'?)"
    scoped = ApiKey("s", b"1" * 32, entities=frozenset({"user_devic"}))
    body = {**body, "features": ["x"]}
    with pytest.raises(ApiError) as info:  # user_device is outside the scope: no hint
        parser.parse(json.dumps(body).encode(), scoped)
    assert info.value.message == "unknown entity 'user_devic'"
    with pytest.raises(ApiError) as info:  # out of scope: 403 before the entity is looked up
        parser.parse(json.dumps({**GOOD, "entity_name": "usr"}).encode(), scoped)
    assert info.value.status == 403
