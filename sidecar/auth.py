"""API-key authentication (``X-API-Key``) with optional scopes.

Keys are configured as SHA-256 digests only: ``FEATURESTORE_API_KEY_SHA256`` (hex digests,
unscoped), ``FEATURESTORE_API_KEYS`` (raw keys, hashed as soon as they are read and then
dropped; ``featurestore serve`` passes only the digests to its workers) or a file named by
``FEATURESTORE_AUTH_CONFIG`` (YAML or JSON)::

    api_keys:
      - name: fraud-scoring               # what logs and metrics show, never the key
        sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        entities: [user, user_device]     # optional: only these entities
        features: [user_7d_transaction_count, device_seen_before]   # optional
        feature_services: [fraud_model_v1]   # optional: these services, whole
    open_endpoints: [health, ready, metrics]   # optional, default [health, ready]

Make a digest with ``printf %s "$KEY" | sha256sum``. Keys must be high-entropy random
tokens (at least 128 bits, e.g. ``python -c "import secrets; print(secrets.token_urlsafe())"``)
made of printable ASCII: an unsalted SHA-256 is fine for such tokens, not for passwords.

A request's key is hashed and compared with *every* configured digest by
:func:`hmac.compare_digest` (constant time, no early exit). No key, an unknown key or two
``X-API-Key`` headers (which one counts would depend on the proxies in between) are
answered 401; a key whose scope does not cover the requested entity or a requested feature
is answered 403. A scope of ``entities`` allows every feature of those entities, a scope of
``features`` only those features; with both, a feature must pass both. A scope of
``feature_services`` lets the key call those feature services (the multi-entity form,
:mod:`sidecar.multi_request`), every stored feature of each included, whatever its entity
and feature scopes; a key with ``feature_services`` alone reads nothing else. Any key may
also call a service whose stored features its entity and feature scopes all allow (the
request-time features add nothing it could not compute itself); an unscoped key, every
service. The registry and
OpenAPI documents show a scoped key only what it may read (:mod:`sidecar.visibility`).
``health``, ``ready``, ``metrics`` and ``openapi`` can be opened (served without a key,
:data:`~sidecar.endpoints.OPENABLE_ENDPOINTS`); the retrieve and registry endpoints never.
An open endpoint still checks a key that is sent (401 if unknown); without one it answers
an anonymous caller, who learns nothing that names a store, a user, an entity or a
feature (``/ready``: ready or not; ``/openapi.json``: the document without names).

:class:`Authenticator` is the one place a request's ``X-API-Key`` headers are read and
judged: :meth:`Authenticator.principal` for the endpoints served through Starlette,
:meth:`Authenticator.require` for the retrieve endpoint, which scans the raw ASGI headers
itself (for :data:`API_KEY_HEADER` and ``Content-Length`` in one pass).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.datastructures import Headers

from sidecar.endpoints import OPENABLE_ENDPOINTS
from sidecar.errors import ApiError
from sidecar.logs import CURRENT

__all__ = [
    "API_KEY_HEADER",
    "OPENABLE_ENDPOINTS",
    "ApiKey",
    "AuthConfig",
    "AuthConfigError",
    "Authenticator",
    "Scope",
    "hash_key",
    "load_auth_config",
    "parse_open_endpoints",
    "unscoped_key",
    "unscoped_key_from_digest",
]

#: the header that carries the key, as ASGI spells header names (lower-case bytes)
API_KEY_HEADER: Final = b"x-api-key"
#: an API key's scope: its entities, features and feature services (None: not limited)
Scope = tuple[frozenset[str] | None, frozenset[str] | None, frozenset[str] | None]
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


class AuthConfigError(ValueError):
    """The key configuration is invalid (the message never contains a key)."""


@dataclass(frozen=True)
class ApiKey:
    """A configured key: its name, the SHA-256 digest of the key, and its scope."""

    name: str
    digest: bytes
    entities: frozenset[str] | None = None
    features: frozenset[str] | None = None
    #: feature services the key may call (None: as its entity and feature scopes allow)
    feature_services: frozenset[str] | None = None

    @property
    def scoped(self) -> bool:
        return (
            self.entities is not None
            or self.features is not None
            or self.feature_services is not None
        )

    @property
    def scope(self) -> Scope:
        """What decides what the key may read and see: its ``entities``, ``features`` and
        ``feature_services`` (keys with the same scope share the documents built for it)."""
        return self.entities, self.features, self.feature_services

    def allows_service(self, name: str, features: Iterable[tuple[str, str]]) -> bool:
        """Whether the key may call feature service ``name`` whose stored features are
        ``features`` ((entity, feature) pairs): named in its ``feature_services``, or every
        one of those features allowed (see the module docstring)."""
        if self.feature_services is not None and name in self.feature_services:
            return True
        return all(self.allows_feature(entity, feature) for entity, feature in features)

    def allows_entity(self, entity: str) -> bool:
        return self.entities is None or entity in self.entities

    def allows_feature(self, entity: str, feature: str) -> bool:
        return (self.entities is None or entity in self.entities) and (
            self.features is None or feature in self.features
        )

    def __repr__(self) -> str:  # the digest is not a secret, but keep logs short
        return f"ApiKey({self.name!r})"


def hash_key(raw: str) -> bytes:
    """The SHA-256 digest of a key (its ASCII bytes)."""
    return hashlib.sha256(raw.encode("latin-1")).digest()


def unscoped_key(name: str, raw: str) -> ApiKey:
    if not _PRINTABLE.match(raw):
        raise AuthConfigError(f"API key {name}: keys must be printable ASCII without spaces")
    return ApiKey(name=name, digest=hash_key(raw))


def unscoped_key_from_digest(name: str, hex_digest: str) -> ApiKey:
    if not _HEX_DIGEST.match(hex_digest):
        raise AuthConfigError(f"API key {name}: sha256 must be 64 hexadecimal digits")
    return ApiKey(name=name, digest=bytes.fromhex(hex_digest))


@dataclass(frozen=True)
class AuthConfig:
    keys: tuple[ApiKey, ...]
    open_endpoints: frozenset[str] | None


def parse_open_endpoints(value: str | Iterable[object]) -> frozenset[str]:
    items: list[object] = list(value.split(",") if isinstance(value, str) else value)
    names = {str(item).strip().lower() for item in items if str(item).strip()}
    if names == {"none"}:
        return frozenset()
    unknown = names - OPENABLE_ENDPOINTS
    if unknown:
        raise AuthConfigError(
            f"open endpoints {sorted(unknown)} are not allowed (choose from "
            f"{sorted(OPENABLE_ENDPOINTS)}; retrieve and registry always need a key)"
        )
    return frozenset(names)


def load_auth_config(path: Path) -> AuthConfig:
    """Read a key file (YAML or JSON, see the module docstring)."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthConfigError(f"cannot read auth config {path}: {exc.strerror}") from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise AuthConfigError(f"auth config {path} is not valid YAML/JSON") from None
    if not isinstance(document, Mapping):
        raise AuthConfigError(f"auth config {path}: expected a mapping with api_keys")
    unknown = set(document) - {"api_keys", "open_endpoints"}
    if unknown:
        raise AuthConfigError(f"auth config {path}: unknown fields {sorted(unknown)}")
    entries = document.get("api_keys") or []
    if not isinstance(entries, list):
        raise AuthConfigError(f"auth config {path}: api_keys must be a list")
    keys = [_read_key(path, index, entry) for index, entry in enumerate(entries)]
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise AuthConfigError(f"auth config {path}: key names must be unique")
    opened = document.get("open_endpoints")
    if opened is not None and not isinstance(opened, list):
        raise AuthConfigError(f"auth config {path}: open_endpoints must be a list")
    return AuthConfig(
        keys=tuple(keys),
        open_endpoints=None if opened is None else parse_open_endpoints(opened),
    )


def _read_key(path: Path, index: int, entry: Any) -> ApiKey:
    where = f"auth config {path}: api_keys[{index}]"
    if not isinstance(entry, Mapping):
        raise AuthConfigError(f"{where} must be a mapping")
    if "key" in entry:
        raise AuthConfigError(f"{where}: store the key's sha256, never the key itself")
    unknown = set(entry) - {"name", "sha256", "entities", "features", "feature_services"}
    if unknown:
        raise AuthConfigError(f"{where}: unknown fields {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AuthConfigError(f"{where}: name must be a non-empty string")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest):
        raise AuthConfigError(f"{where} ({name}): sha256 must be 64 hexadecimal digits")
    scopes: dict[str, frozenset[str] | None] = {}
    for scope in ("entities", "features", "feature_services"):
        value = entry.get(scope)
        if value is None:
            scopes[scope] = None
        elif isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            scopes[scope] = frozenset(value)
        else:
            raise AuthConfigError(f"{where} ({name}): {scope} must be a list of names")
    entities = scopes["entities"]
    if scopes["feature_services"] is not None and entities is None and scopes["features"] is None:
        entities = frozenset()  # feature services alone: no entity to read otherwise
    return ApiKey(
        name=name.strip(),
        digest=bytes.fromhex(digest),
        entities=entities,
        features=scopes["features"],
        feature_services=scopes["feature_services"],
    )


class Authenticator:
    """Finds the configured key matching a presented ``X-API-Key`` value, and answers a
    request without a valid one (401, :class:`~sidecar.errors.ApiError`)."""

    def __init__(
        self, keys: Iterable[ApiKey], open_endpoints: frozenset[str] = frozenset()
    ) -> None:
        self._keys = tuple(keys)
        self._open = open_endpoints

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        return self._keys

    def authenticate(self, presented: str | bytes | None) -> ApiKey | None:
        """The matching key or None. Every digest is compared (no early exit), each with
        :func:`hmac.compare_digest`, so the time taken does not depend on which digest (or
        how much of one) matched. ``bytes`` are the header's raw value (ASGI), ``str`` the
        same decoded as Latin-1 (Starlette)."""
        if not presented:
            return None
        digest = (
            hashlib.sha256(presented).digest()
            if isinstance(presented, bytes)
            else hash_key(presented)
        )
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def require(self, presented: str | bytes | None, count: int = 1) -> ApiKey:
        """The key of a request that sent ``count`` X-API-Key headers, one of them
        ``presented``; raises ApiError 401 without exactly one header of a known key (with
        two, which one counts would depend on the proxies in between)."""
        if count > 1:
            raise ApiError(401, "UNAUTHENTICATED", "more than one X-API-Key header", "X-API-Key")
        if not presented:
            raise ApiError(401, "UNAUTHENTICATED", "an X-API-Key header is required", "X-API-Key")
        key = self.authenticate(presented)
        if key is None:
            raise ApiError(401, "UNAUTHENTICATED", "unknown API key", "X-API-Key")
        return key

    def principal(self, headers: Headers, endpoint: str) -> ApiKey | None:
        """The caller's key for a request to ``endpoint`` (an :class:`~sidecar.endpoints.
        Endpoint` name); None when that endpoint is open and the request sends no
        ``X-API-Key`` (an anonymous caller). A key that is sent is checked whether the
        endpoint is open or not: raises ApiError 401 (:meth:`require`), so that a wrong
        key is never silently taken for no key."""
        presented = headers.getlist("x-api-key")
        if not presented and endpoint in self._open:
            return None
        key = self.require(presented[0] if presented else None, len(presented))
        context = CURRENT.get()
        if context is not None:  # the access log names the key
            context.key = key.name
        return key
