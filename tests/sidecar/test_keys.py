"""Entity keys (sidecar/keys.py), parsed from retrieve requests against the online layout's
own tokens."""

from __future__ import annotations

import json
import random

import pytest

from featurestore.online.layout import entity_token
from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.errors import ApiError
from sidecar.keys import key_parser
from sidecar.plans import plan_entities
from sidecar.request_body import RequestParser
from sidecar.selection import Selector
from sidecar.settings import Settings


def parser(registry: Registry, settings: Settings) -> RequestParser:
    plans = plan_entities(registry)
    return RequestParser(plans, Selector(registry, plans, settings.max_values), settings)


def test_entity_keys_parse_like_the_layout_tokens(
    small_registry: Registry, unscoped_key: ApiKey
) -> None:
    settings = Settings(online_url="sqlite:///x.db", api_keys=(unscoped_key,))
    catalog = parser(small_registry, settings)
    key = unscoped_key
    rng = random.Random(3)
    alphabet = "ab:%{}#\u00e9_"

    def body(entity: str, keys: list[object], feature: str) -> bytes:
        return json.dumps(
            {"entity_name": entity, "entity_keys": keys, "features": [feature]}
        ).encode()

    for _ in range(300):
        parts = tuple(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(2)
        )
        token = entity_token(parts)  # the layout's own escaping
        objects = {"user_id": parts[0], "device_id": parts[1]}
        request = catalog.parse(body("user_device", [token, objects], "f_pair"), key)
        assert request.keys == [parts, parts]
        single = catalog.parse(body("user", [parts[0]], "f_user"), key)
        assert single.keys == [(parts[0],)]  # a one-column key is the value itself
    cases: list[tuple[list[object], str]] = [
        (["a:b:c"], "entity_keys[0]"),
        (["ab"], "entity_keys[0]"),
        ([":b"], "entity_keys[0].user_id"),
        ([{"user_id": "a"}], "entity_keys[0]"),
        ([{"user_id": "a", "device_id": "b", "x": "c"}], "entity_keys[0]"),
        ([{"user_id": "a", "device_id": 7}], "entity_keys[0].device_id"),
        (["a:" + "b" * 257], "entity_keys[0].device_id"),
        ([["a", "b"]], "entity_keys[0]"),
    ]
    for bad, field in cases:
        with pytest.raises(ApiError) as info:
            catalog.parse(body("user_device", bad, "f_pair"), key)
        assert (info.value.status, info.value.field) == (422, field), bad


def test_one_parser_per_entity_checks_types_and_lengths(small_registry: Registry) -> None:
    plans = plan_entities(small_registry)
    single = key_parser(plans["user"], max_part_chars=3)
    assert single("abc", 0) == ("abc",)
    pair = key_parser(plans["user_device"], max_part_chars=5)  # as sent: escapes count
    assert pair({"user_id": "a", "device_id": "b"}, 4) == ("a", "b")
    assert pair("a%3Ab:c", 0) == ("a:b", "c")
    for parse, raw, field, message in [
        (single, "abcd", "entity_keys[2]", "entity_keys[2] is longer than 3 characters"),
        (single, "", "entity_keys[2]", "entity_keys[2] must not be empty"),
        (single, 7, "entity_keys[2]", "entity_keys[2] must be a string or an object of "
         "['user_id'], got a number"),
        (pair, "a:b:c", "entity_keys[2]", "entity_keys[2] must name 2 key values as "
         "'user_id:device_id' (':' inside a value escaped as %3A), or be an object with "
         "['user_id', 'device_id']"),
        (pair, {"user_id": "a"}, "entity_keys[2]", "entity_keys[2] lacks ['device_id'] "
         "(entity 'user_device' keys: ['user_id', 'device_id'])"),
        (pair, {"user_id": None, "device_id": "b"}, "entity_keys[2].user_id",
         "entity_keys[2].user_id must be a string, got null"),
    ]:  # fmt: skip
        with pytest.raises(ApiError) as info:
            parse(raw, 2)
        assert (info.value.status, info.value.code, info.value.field) == (
            422,
            "INVALID_KEY",
            field,
        ), raw
        assert info.value.message == message
