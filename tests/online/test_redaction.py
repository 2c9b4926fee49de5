"""Secrets kept out of messages: :mod:`featurestore.online.redaction`."""

from __future__ import annotations

import pytest

from featurestore.online.redaction import redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://app:s3cret@h:6379/2?namespace=x", "redis://app:***@h:6379/2"),
        ("rediss://app@h:6380/0", "rediss://app@h:6380/0"),
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0"),
        ("http://u:p%40ss@127.0.0.1:5000/x#frag", "http://u:***@127.0.0.1:5000/x"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("redis://:pw:with:colons@h:1/0", "redis://:***@h:1/0"),
        ("redis://h:notaport/0", "redis://h:notaport/0"),
        ("sqlite:///online.db", "sqlite:///online.db"),
        ("", ""),
        ("redis://:pa?ss@h:1/0", "redis://:***@h:1/0"),
        ("redis://:pa#ss@h:1/0", "redis://:***@h:1/0"),
        ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_never_raises_on_a_malformed_url() -> None:
    for url in ("redis://:s3cret@[::1/0", "redis://:s3cret@", "://:s3cret@h", ":s3cret@"):
        assert "s3cret" not in redact_url(url), url


def test_redact() -> None:
    assert redact("AUTH s3cret failed: s3cret", "s3cret") == "AUTH *** failed: ***"
    assert redact("no secret here", None) == "no secret here"
    assert redact("no secret here", "") == "no secret here"
