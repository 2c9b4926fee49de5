"""Sidecar settings (sidecar/settings.py): the environment, and the check against the
registry."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from featurestore.clock import parse_now
from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.settings import (
    Settings,
    SettingsError,
    check_settings,
    parse_cache_ttl,
    parse_gc_thresholds,
)


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
    # a streamed view: at most 100 ms unless named (values fresh within a second)
    assert settings.cache_ttl("user_transaction_features", streamed=True) == 0.1
    assert settings.cache_ttl("merchant_chargeback_features", streamed=True) == 0.5
    short = Settings.from_env(
        {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k",
         "FEATURESTORE_CACHE_TTL": "50ms"}
    )  # fmt: skip
    assert short.cache_ttl("user_transaction_features", streamed=True) == 0.05
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


def test_bad_values_name_their_variable() -> None:
    base = {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k"}
    for name, value in [
        ("FEATURESTORE_NOW", "yesterday"),
        ("FEATURESTORE_CACHE_TTL", "5 parsecs"),
        ("FEATURESTORE_GC_FULL_INTERVAL", "often"),
        ("FEATURESTORE_STORE_TIMEOUT_MS", "fast"),
    ]:
        with pytest.raises(SettingsError) as info:
            Settings.from_env({**base, name: value})
        message = str(info.value)
        assert message.startswith(f"{name}") and repr(value) in message, message
        assert "\n" not in message
    assert (
        Settings.from_env({**base, "FEATURESTORE_GC_FULL_INTERVAL": "90s"}).gc_full_interval_s
        == 90.0
    )
    assert parse_cache_ttl("2s,v=500ms,1m") == (60.0, {"v": 0.5})


def test_grpc_settings() -> None:
    """gRPC is off unless FEATURESTORE_GRPC_PORT is set; a port out of range or not a number
    is refused naming the variable."""
    base = {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k"}
    off = Settings.from_env(base)
    assert (off.grpc_port, off.grpc_host, off.grpc_reuse_port) == (None, "127.0.0.1", False)
    on = Settings.from_env(
        {**base, "FEATURESTORE_GRPC_PORT": "50051", "FEATURESTORE_GRPC_HOST": "0.0.0.0",
         "FEATURESTORE_GRPC_REUSE_PORT": "1"}
    )  # fmt: skip
    assert (on.grpc_port, on.grpc_host, on.grpc_reuse_port) == (50051, "0.0.0.0", True)
    assert Settings.from_env({**base, "FEATURESTORE_GRPC_PORT": "0"}).grpc_port == 0
    for value in ("70000", "-1", "grpc"):
        with pytest.raises(SettingsError, match="FEATURESTORE_GRPC_PORT"):
            Settings.from_env({**base, "FEATURESTORE_GRPC_PORT": value})


def test_durations_need_a_unit() -> None:
    """The one duration grammar (README: Durations): a bare number other than 0 is refused,
    with the variable named, since it could mean seconds or milliseconds."""
    base = {"FEATURESTORE_ONLINE_URL": "sqlite:///x.db", "FEATURESTORE_API_KEYS": "k"}
    for name, value in [
        ("FEATURESTORE_CACHE_TTL", "5"),
        ("FEATURESTORE_CACHE_TTL", "2s,v=1.5"),
        ("FEATURESTORE_GC_FULL_INTERVAL", "600"),
    ]:
        with pytest.raises(SettingsError, match="is not a duration") as info:
            Settings.from_env({**base, name: value})
        assert str(info.value).startswith(name), info.value
    assert Settings.from_env({**base, "FEATURESTORE_CACHE_TTL": "0"}).cache_ttl_s == 0.0
    assert parse_cache_ttl("1.5s,v=1h") == (1.5, {"v": 3600.0})


def test_names_in_the_settings_must_exist_in_the_registry(small_registry: Registry) -> None:
    key = ApiKey("k", b"0" * 32)
    check_settings(Settings(online_url="sqlite:///x.db", api_keys=(key,)), small_registry)
    for settings, message in [
        (
            Settings(online_url="x", api_keys=(key,), cache_ttl_by_view={"no_view": 1.0}),
            "FEATURESTORE_CACHE_TTL names 'no_view', which is not an online feature view "
            "(online views: pair_view, user_view)",
        ),
        (
            Settings(
                online_url="x", api_keys=(ApiKey("s", b"1" * 32, entities=frozenset({"usr"})),)
            ),
            "API key s: unknown entity 'usr' in scope",
        ),
        (
            Settings(online_url="x", api_keys=(ApiKey("s", b"1" * 32, features=frozenset({"f"})),)),
            "API key s: unknown feature 'f' in scope",
        ),
    ]:
        with pytest.raises(SettingsError) as info:
            check_settings(settings, small_registry)
        assert str(info.value) == message


def test_a_grpc_port_without_the_generated_modules_is_a_clear_error(
    small_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--grpc-port on an install where the gRPC modules were never generated (no ./run
    setup) stops at startup with what to do, not an ImportError traceback."""
    settings = Settings(
        online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),), grpc_port=50051
    )
    check_settings(settings, small_registry)  # generated here: accepted
    monkeypatch.setitem(sys.modules, "featurestore.grpc_api.serving_pb2", None)
    with pytest.raises(SettingsError, match=r"generated modules .*\./run setup"):
        check_settings(settings, small_registry)
