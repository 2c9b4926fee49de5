"""API keys (sidecar/auth.py): hashing, scopes, the key file, and the X-API-Key header rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from sidecar.auth import (
    API_KEY_HEADER,
    OPENABLE_ENDPOINTS,
    ApiKey,
    AuthConfigError,
    Authenticator,
    load_auth_config,
)
from sidecar.errors import ApiError


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


def test_the_header_needs_exactly_one_known_key() -> None:
    key = ApiKey("full", hashlib.sha256(b"alpha-key").digest())
    auth = Authenticator([key])
    assert auth.require("alpha-key") is key
    assert auth.require(b"alpha-key") is key  # the raw ASGI header value hashes the same
    for presented, count, message in [
        (None, 0, "an X-API-Key header is required"),
        ("", 1, "an X-API-Key header is required"),
        ("alpha-keyx", 1, "unknown API key"),
        ("alpha-key", 2, "more than one X-API-Key header"),  # even if one of them is known
    ]:
        with pytest.raises(ApiError) as info:
            auth.require(presented, count)
        assert (info.value.status, info.value.code, info.value.field) == (
            401,
            "UNAUTHENTICATED",
            "X-API-Key",
        ), presented
        assert info.value.message == message


def test_principal_reads_the_headers_and_skips_open_endpoints() -> None:
    key = ApiKey("full", hashlib.sha256(b"alpha-key").digest())
    auth = Authenticator([key], open_endpoints=frozenset({"health"}))
    header = API_KEY_HEADER.decode()

    def headers(*values: str) -> Headers:
        return Headers(raw=[(API_KEY_HEADER, value.encode()) for value in values])

    assert auth.principal(headers("alpha-key"), "registry") is key
    assert auth.principal(Headers({header: "alpha-key"}), "ready") is key
    assert auth.principal(headers(), "health") is None  # open: no key needed
    with pytest.raises(ApiError) as info:
        auth.principal(headers(), "ready")
    assert info.value.status == 401
    with pytest.raises(ApiError) as info:
        auth.principal(headers("alpha-key", "alpha-key"), "registry")
    assert info.value.message == "more than one X-API-Key header"
    assert "retrieve" not in OPENABLE_ENDPOINTS and "registry" not in OPENABLE_ENDPOINTS
