"""featurestore/online/urls.py: store URLs, their options, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.online.redis_store import RedisStore
from featurestore.online.sqlite_store import SQLiteStore
from featurestore.online.urls import UnsupportedStoreURL, open_store


def test_known_options_are_taken(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made\n")
    store = open_store(f"rediss://user@cache.example:6380/2?namespace=ns&ssl_ca_certs={ca}")
    assert isinstance(store, RedisStore)
    assert store.description == "rediss://user@cache.example:6380/2?namespace=ns"
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'online.db'}"), SQLiteStore)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0?namspace=x", "unknown option namspace for redis://"),
        ("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "unknown option ssl_ca_certs"),
        ("rediss://h:1/0?ssl_ca_certs=/no/such/ca.pem", "is not a readable file"),
        ("sqlite:///x.db?namespace=x", "for sqlite:// (it takes no options)"),
        ("dynamodb://us-east-1?tabel=t", "(it takes endpoint_url, table)"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
        ("memcached://x", "unsupported online store URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(UnsupportedStoreURL) as info:
        open_store(url)
    assert problem in str(info.value)


def test_a_refused_url_does_not_echo_its_password() -> None:
    with pytest.raises(UnsupportedStoreURL) as info:
        open_store("redis://app:s3cret-pw@127.0.0.1:6379/0?nmespace=x")
    assert "s3cret-pw" not in str(info.value) and ":***@" in str(info.value)
