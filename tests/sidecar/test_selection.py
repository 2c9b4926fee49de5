"""Feature selections (sidecar/selection.py): memoized per API key, entity and feature list,
and still checked."""

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


def test_feature_selections_are_memoized_per_key_and_still_checked(
    monkeypatch: pytest.MonkeyPatch, small_registry: Registry
) -> None:
    import sidecar.selection as selection_module

    registry = small_registry
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),), max_values=4
    )
    plans = plan_entities(registry)
    selector = Selector(registry, plans, settings.max_values)
    catalog = RequestParser(plans, selector, settings)
    unscoped = ApiKey("k", b"0" * 32)
    scoped = ApiKey("s", b"1" * 32, entities=frozenset({"user_device"}))

    def body(keys: list[object], features: list[object], entity: str = "user") -> bytes:
        return json.dumps(
            {"entity_name": entity, "entity_keys": keys, "features": features}
        ).encode()

    first = catalog.parse(body(["a"], ["f_user"]), unscoped)
    second = catalog.parse(body(["b", "c"], ["f_user"]), unscoped)
    assert second.selection is first.selection  # computed once
    assert (second.keys, [f.name for f in second.features]) == ([("b",), ("c",)], ["f_user"])
    assert first.selection.whole and first.selection.views == ("user_view",)
    # a request of the same shape with another key is checked against that key's scope
    with pytest.raises(ApiError) as info:
        catalog.parse(body(["a"], ["f_user"]), scoped)
    assert (info.value.status, info.value.code) == (403, "FORBIDDEN")
    # the per-request limits still apply to a remembered selection
    with pytest.raises(ApiError) as info:
        catalog.parse(body(["a", "b", "c", "d", "e"], ["f_user"]), unscoped)
    assert (info.value.code, info.value.field) == ("TOO_MANY_VALUES", "entity_keys")
    # unhashable or wrong items are refused, not looked up
    for bad in ([{"x": 1}], [["f_user"]], [1], [""]):
        with pytest.raises(ApiError) as info:
            catalog.parse(body(["a"], bad), unscoped)
        assert (info.value.status, info.value.field) == (422, "features[0]"), bad
    # repeats are dropped; the memo is bounded and skips long feature lists
    monkeypatch.setattr(selection_module, "SELECTION_MEMO_SIZE", 3)
    for n in range(1, 6):
        request = catalog.parse(body(["a"], ["f_user"] * n), unscoped)
        assert [f.name for f in request.features] == ["f_user"]
        assert len(selector._memo) <= 3
    selector._memo.clear()
    many = ["f_user"] * (selection_module.SELECTION_MEMO_FEATURES + 1)
    catalog.parse(body(["a"], many), unscoped)
    assert selector._memo == {}
