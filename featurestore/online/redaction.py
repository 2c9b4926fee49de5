"""Secrets kept out of messages: store URLs and error texts as they may appear in logs,
load records and exceptions (the one implementation every store and :func:`open_store`
use)."""

from __future__ import annotations

__all__ = ["redact", "redact_url"]

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` as it may appear in a message: the password of its user info replaced by
    ``***``, its query and fragment dropped (an option's value may be a secret), the rest
    (scheme, user, host, port, path) kept.

    Read as text, not parsed, so that it never raises and never shows part of a password,
    even of a malformed URL (a password with an unescaped ``?``, ``#`` or ``@``): everything
    up to the last ``@`` is user info."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if colon else f"{user}@"
    for mark in ("?", "#"):
        location = location.partition(mark)[0]
    return f"{scheme}{sep}{userinfo}{location}"


def redact(message: str, secret: str | None) -> str:
    """``message`` with every occurrence of ``secret`` replaced by ``***``."""
    return message.replace(secret, MASK) if secret else message
