"""Sidecar parts without a server: the circuit breaker (fake clock), API-key hashing and
scopes, settings parsing, and entity-key parsing against the online layout's own tokens."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore.online.layout import entity_token
from featurestore.registry import registry_from_manifest
from sidecar.auth import ApiKey, AuthConfigError, Authenticator, load_auth_config
from sidecar.breaker import CircuitBreaker
from sidecar.catalog import Catalog
from sidecar.errors import ApiError
from sidecar.settings import (
    Settings,
    SettingsError,
    parse_cache_ttl,
    parse_gc_thresholds,
    parse_now,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# --- circuit breaker ---------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_failures_only() -> None:
    clock = FakeClock()
    changes: list[str] = []
    breaker = CircuitBreaker(3, 1.0, clock=clock, on_change=changes.append)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.allow()
    breaker.success()  # not consecutive: the count starts again
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and changes == ["open"]
    assert not breaker.allow()


def test_breaker_half_opens_after_the_cooldown_with_a_single_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 2.0, clock=clock)
    breaker.allow()
    breaker.failure()
    clock.now += 1.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.state == "half_open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # others still refused while it runs
    breaker.failure()  # the trial failed: open for another cool-down
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))


def test_breaker_cooldown_doubles_on_failed_trials_and_resets_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.5, min_cooldown_s=0.125, clock=clock)  # binary-exact
    breaker.allow()
    breaker.failure()
    waits = []
    for _ in range(6):  # every trial fails: the cool-down doubles up to 1.5 s
        start = clock.now
        while not breaker.allow():
            clock.now += 0.125
        waits.append(clock.now - start)
        breaker.failure()
    assert waits == [0.125, 0.25, 0.5, 1.0, 1.5, 1.5]
    clock.now += 1.5
    assert breaker.allow()
    breaker.success()
    breaker.allow()
    breaker.failure()  # a new outage starts again at the shortest cool-down
    clock.now += 0.125
    assert breaker.allow()


def test_breaker_ignores_late_failures_while_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 1.0, clock=clock)
    for _ in range(2):
        breaker.allow()
    breaker.failure()
    breaker.failure()
    opened_at = clock.now
    clock.now += 0.5
    breaker.failure()  # a read started before the circuit opened
    clock.now = opened_at + 1.0  # the cool-down counts from the opening, not the late failure
    assert breaker.allow()


# --- auth --------------------------------------------------------------------------------


def test_keys_match_by_sha256_and_scopes_apply() -> None:
    keys = [
        ApiKey("full", hashlib.sha256(b"alpha-key").digest()),
        ApiKey("users", hashlib.sha256(b"beta-key").digest(), entities=frozenset({"user"})),
        ApiKey(
            "one-feature",
            hashlib.sha256(b"gamma-key").digest(),
            features=frozenset({"user_7d_transaction_count"}),
        ),
    ]
    auth = Authenticator(keys)
    assert auth.authenticate("alpha-key") is keys[0]
    assert auth.authenticate("beta-key") is keys[1]
    assert auth.authenticate("alpha-keyx") is None
    assert auth.authenticate("") is None and auth.authenticate(None) is None
    assert keys[1].allows_entity("user") and not keys[1].allows_entity("merchant")
    assert keys[1].allows_feature("user", "avg_order_value_90d")
    assert not keys[1].allows_feature("merchant", "merchant_chargeback_rate_30d")
    assert keys[2].allows_feature("user", "user_7d_transaction_count")
    assert not keys[2].allows_feature("user", "avg_order_value_90d")


def test_auth_config_holds_hashes_only(tmp_path: Path) -> None:
    good = tmp_path / "keys.yml"
    digest = hashlib.sha256(b"some-key").hexdigest()
    good.write_text(
        f"api_keys:\n  - name: a\n    sha256: {digest}\n    entities: [user]\n"
        "open_endpoints: [health, metrics]\n"
    )
    config = load_auth_config(good)
    assert config.keys[0].digest == bytes.fromhex(digest)
    assert config.keys[0].entities == frozenset({"user"})
    assert config.open_endpoints == frozenset({"health", "metrics"})
    for text, problem in [
        ("api_keys:\n  - name: a\n    key: plain-text\n", "never the key"),
        ("api_keys:\n  - name: a\n    sha256: abc\n", "64 hexadecimal"),
        (f"api_keys:\n  - name: a\n    sha256: {digest}\nopen_endpoints: [registry]\n", "not"),
        (f"api_keys:\n  - {{name: a, sha256: {digest}, entities: user}}\n", "list of names"),
    ]:
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(AuthConfigError, match=problem) as info:
            load_auth_config(bad)
        assert "plain-text" not in str(info.value)


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "FEATURESTORE_ONLINE_URL": "sqlite:///x.db",
            "FEATURESTORE_API_KEYS": "k-one,k-two",
            "FEATURESTORE_NOW": "2026-05-01T00:00:00Z",
            "FEATURESTORE_STORE_TIMEOUT_MS": "20",
            "FEATURESTORE_CACHE_TTL": "2s,merchant_chargeback_features=500ms",
            "FEATURESTORE_OPEN_ENDPOINTS": "health,metrics",
            "DBT_TARGET_PATH": "/tmp/t",
        }
    )
    assert [k.digest for k in settings.api_keys] == [
        hashlib.sha256(b"k-one").digest(),
        hashlib.sha256(b"k-two").digest(),
    ]
    assert "k-one" not in repr(settings)
    assert settings.now is not None and settings.now.isoformat() == "2026-05-01T00:00:00+00:00"
    assert settings.store_timeout_s == 0.02
    assert settings.cache_ttl("merchant_chargeback_features") == 0.5
    assert settings.cache_ttl("user_transaction_features") == 2.0
    assert settings.open_endpoints == frozenset({"health", "metrics"})
    assert settings.manifest_path == Path("/tmp/t/manifest.json")
    with pytest.raises(SettingsError, match="no API key"):
        Settings.from_env({"FEATURESTORE_ONLINE_URL": "sqlite:///x.db"})
    with pytest.raises(SettingsError, match="not allowed"):
        Settings.from_env(
            {
                "FEATURESTORE_ONLINE_URL": "sqlite:///x.db",
                "FEATURESTORE_API_KEYS": "k",
                "FEATURESTORE_OPEN_ENDPOINTS": "retrieve",
            }
        )
    assert parse_cache_ttl("0") == (0.0, {})
    assert parse_now("2026-05-01T02:00:00+02:00") == parse_now("2026-05-01 00:00:00")
    with pytest.raises(SettingsError):
        parse_cache_ttl("5 parsecs")
    assert settings.gc_thresholds == (700, 10, 1_000_000)
    assert settings.gc_full_interval_s == 600.0
    assert parse_gc_thresholds(" 700, 10,10 ") == (700, 10, 10)
    for bad in ("700,10", "a,b,c", "-1,10,10", "1,2,3,4"):
        with pytest.raises(SettingsError, match="FEATURESTORE_GC_THRESHOLDS"):
            parse_gc_thresholds(bad)


# --- entity keys -------------------------------------------------------------------------


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


def test_entity_keys_parse_like_the_layout_tokens() -> None:
    registry = registry_from_manifest(json.loads(json.dumps(_manifest())))
    settings = Settings(online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),))
    catalog = Catalog(registry, settings)
    key = ApiKey("k", b"0" * 32)
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


# --- cache admission ---------------------------------------------------------------------


def test_doorkeeper_admits_on_the_second_offer_and_starts_over_when_full() -> None:
    from sidecar.retrieval import Doorkeeper

    door = Doorkeeper(1000)
    items = [("view", (f"k{i}",)) for i in range(1000)]
    early = sum(door.admit(item) for item in items)  # first offers: only false positives
    assert early <= 1000 // 8
    assert all(door.admit(item) for item in items)  # second offers: all admitted
    for i in range(2000):  # 2,000 other items: past capacity, so cleared at least once
        door.admit(("other", (str(i),)))
    assert sum(door.admit(item) for item in items) <= 1000 // 4  # forgotten, but for ~1/8


# --- feature selections ------------------------------------------------------------------


def test_feature_selections_are_memoized_per_key_and_still_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sidecar.catalog as catalog_module

    registry = registry_from_manifest(json.loads(json.dumps(_manifest())))
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),), max_values=4
    )
    catalog = Catalog(registry, settings)
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
    monkeypatch.setattr(catalog_module, "SELECTION_MEMO_SIZE", 3)
    for n in range(1, 6):
        request = catalog.parse(body(["a"], ["f_user"] * n), unscoped)
        assert [f.name for f in request.features] == ["f_user"]
        assert len(catalog._selections) <= 3
    catalog._selections.clear()
    many = ["f_user"] * (catalog_module.SELECTION_MEMO_FEATURES + 1)
    catalog.parse(body(["a"], many), unscoped)
    assert catalog._selections == {}


def _in_process_app(tmp_path: Path, raw_key: str) -> Any:
    from featurestore.online.sqlite_store import SQLiteStore
    from sidecar.app import create_app

    registry = registry_from_manifest(json.loads(json.dumps(_manifest())))
    settings = Settings(
        online_url="sqlite:///unused.db",
        api_keys=(ApiKey("k", hashlib.sha256(raw_key.encode()).digest()),),
        gc_full_interval_s=0,
    )
    store = SQLiteStore(tmp_path / "online.db")
    store.initialize()
    return create_app(settings, registry=registry, store=store)


def _post_and_scrape(
    app: Any, raw_key: str, path: str, root_path: str = ""
) -> tuple[httpx.Response, str]:
    """One retrieve request through the ASGI app in-process, then its /metrics text."""
    body = {"entity_name": "user", "entity_keys": ["u1"], "features": ["f_user"]}

    async def call() -> tuple[httpx.Response, str]:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(path, json=body, headers={"X-API-Key": raw_key})
            await client.get(f"{root_path}/health")
            metrics = await client.get(f"{root_path}/metrics", headers={"X-API-Key": raw_key})
        return response, metrics.text

    return asyncio.run(call())


def test_a_bug_in_retrieve_is_a_json_500_and_counted(tmp_path: Path) -> None:
    """The retrieve endpoint answers before Starlette's error middleware: it must turn an
    unexpected exception into the same JSON 500 (in-process ASGI call; the store is real)."""
    app = _in_process_app(tmp_path, "unit-test-key-1")

    async def broken(request: object) -> tuple[bytes, bool]:
        raise RuntimeError("a bug")

    app.state.sidecar.retriever.retrieve = broken
    response, text = _post_and_scrape(app, "unit-test-key-1", "/api/v1/features/retrieve")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL", "message": "internal error", "field": None}
    }
    assert 'route="/api/v1/features/retrieve",status="500"} 1.0' in text


def test_retrieve_under_a_root_path_is_answered_and_counted_once(tmp_path: Path) -> None:
    app = _in_process_app(tmp_path, "unit-test-key-2")
    response, text = _post_and_scrape(
        app, "unit-test-key-2", "/fs/api/v1/features/retrieve", root_path="/fs"
    )
    assert response.status_code == 200, response.text
    answer = response.json()["results"][0]["features"]["f_user"]
    assert (answer["status"], answer["reason"]) == ("MISSING", "NOT_FOUND")
    assert 'route="/api/v1/features/retrieve",status="200"} 1.0' in text
    assert 'route="/health",status="200"} 1.0' in text  # labelled by route, prefix or not
    assert 'featurestore_sidecar_responses_total{route="other"' not in text  # not twice
