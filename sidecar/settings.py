"""Sidecar configuration: one frozen :class:`Settings`, read from the environment.

``featurestore serve`` turns its options into these variables before uvicorn starts the
workers (each worker builds its app from the environment, see :func:`sidecar.app.app_from_env`):

==================================  =========================================================
``FEATURESTORE_ONLINE_URL``         the online store (``sqlite:///``, ``redis://``,
                                    ``dynamodb://``; :func:`featurestore.online.urls.open_store`)
``FEATURESTORE_MANIFEST``           dbt's ``manifest.json`` (default ``$DBT_TARGET_PATH`` or
                                    ``target`` + ``/manifest.json``), read once at startup
``FEATURESTORE_NOW``                pin the clock (ISO 8601, naive = UTC) for TTL checks and
                                    store reads: demos and tests of past data (the wall
                                    time only: cache TTLs still run in real time; see
                                    :mod:`featurestore.clock`)
``FEATURESTORE_API_KEYS``           comma-separated API keys (unscoped), hashed at startup
``FEATURESTORE_API_KEY_SHA256``     comma-separated hex SHA-256 digests of API keys (unscoped)
``FEATURESTORE_AUTH_CONFIG``        a YAML/JSON file of hashed, optionally scoped keys and open
                                    endpoints (see :mod:`sidecar.auth`)
``FEATURESTORE_OPEN_ENDPOINTS``     endpoints served without a key: any of ``health``,
                                    ``ready``, ``metrics``, ``openapi``, or ``none``
                                    (default ``health,ready``)
``FEATURESTORE_STORE_TIMEOUT_MS``   per-request time budget of the store read (default 10)
``FEATURESTORE_STORE_THREADS``      store calls in flight at most (default 8)
``FEATURESTORE_CACHE_SIZE``         cached records at most, 0 disables the cache (default
                                    100000)
``FEATURESTORE_CACHE_TTL``          cache time-to-live: a default and per-view overrides,
                                    e.g. ``5s`` or ``2s,merchant_chargeback_features=30s``
                                    (durations: :mod:`featurestore.durations`); ``0`` = never
                                    cached (default ``5s``; a streamed view's default is at
                                    most 100 ms, its own entry overrides it)
``FEATURESTORE_MAX_KEYS``           entity keys per request at most (default 1000)
``FEATURESTORE_MAX_BODY_BYTES``     request body size limit (default 1048576), checked
                                    while the body is read
``FEATURESTORE_HEADER_TIMEOUT``     time a client has to send a request's line and headers,
                                    from the connection's opening (first request) or the
                                    request's first byte, in total (default ``5s``; a
                                    duration, :mod:`featurestore.durations`); then 408
``FEATURESTORE_BODY_TIMEOUT``       time a client has to send a request's body once its
                                    headers are in (default ``10s``); then 408
``FEATURESTORE_MAX_CONNECTIONS``    open connections per worker process at most (default
                                    1024); one more is answered 503 and closed
                                    (:mod:`sidecar.server`)
``FEATURESTORE_BREAKER_FAILURES``   consecutive store failures that open the circuit
                                    (default 5)
``FEATURESTORE_BREAKER_COOLDOWN_MS`` the longest the circuit stays open before one trial
                                    read (default 1000; the first cool-down is 100 ms, each
                                    failed trial doubles it up to this)
``FEATURESTORE_GC_THRESHOLDS``      the serving worker's garbage collector thresholds,
                                    three integers (default ``700,10,1000000``: young
                                    collections as usual, no automatic full collection;
                                    see :func:`sidecar.app.tune_gc`)
``FEATURESTORE_GC_FULL_INTERVAL``   a full collection this often instead (default ``10m``;
                                    ``0`` = never)
``FEATURESTORE_SERVED_LOG_DIR``     the served-vector log's folder (off when unset;
                                    :mod:`sidecar.served_log`)
``FEATURESTORE_SERVED_LOG_RATE``    the share of entity keys logged, 0..1 (default 0: off)
``FEATURESTORE_SERVED_LOG_BUFFER``  requests waiting for the log's writer at most (default
                                    10000; beyond, a request's vectors are dropped, counted)
``FEATURESTORE_SERVED_LOG_ROTATE_BYTES`` a log file is completed at this size (default 64 MiB)
``FEATURESTORE_SERVED_LOG_ROTATE_AFTER`` or this long after it was opened (default ``60s``)
``FEATURESTORE_GRPC_PORT``          serve gRPC on this port too (unset: REST only;
                                    :mod:`sidecar.grpc_service`)
``FEATURESTORE_GRPC_HOST``          the address gRPC binds (default ``127.0.0.1``; the CLI
                                    sets it to ``--host``)
``FEATURESTORE_GRPC_REUSE_PORT``    ``1``: bind the gRPC port with ``SO_REUSEPORT`` (set by
                                    the CLI with ``--workers`` over 1: every worker binds it)
``FEATURESTORE_ACCESS_LOG_SAMPLE``  the share of requests written to the JSON access log,
                                    0..1 (default 0: off; :mod:`sidecar.logs`)
``FEATURESTORE_FRESHNESS_INTERVAL`` how often the freshness gauges are read from the store's
                                    load log and stream watermarks (default ``15s``)
==================================  =========================================================

Raw API keys never leave this module: they are hashed into :class:`~sidecar.auth.ApiKey`
objects as soon as they are read, and ``featurestore serve`` hands only the digests to its
workers.

:class:`Settings` checks each value when it is built; :func:`check_settings` checks the
names it holds against the registry, once per process, when the app is built
(:func:`sidecar.app.create_app`; ``featurestore serve`` builds it before it starts serving, so
a bad configuration fails with one message).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from featurestore.clock import parse_now
from featurestore.durations import DurationError, parse_seconds
from featurestore.online.layout import MAX_KEY_PART_CHARS
from featurestore.registry import Registry
from sidecar.auth import (
    OPENABLE_ENDPOINTS,
    ApiKey,
    AuthConfigError,
    load_auth_config,
    parse_open_endpoints,
    unscoped_key,
    unscoped_key_from_digest,
)

#: the longest default cache TTL of a streamed view (s): values fresh within a second
STREAMED_CACHE_TTL_S: Final = 0.1

__all__ = [
    "DEFAULT_OPEN_ENDPOINTS",
    "Settings",
    "SettingsError",
    "check_settings",
    "parse_cache_ttl",
    "parse_gc_thresholds",
]

DEFAULT_OPEN_ENDPOINTS: Final = frozenset({"health", "ready"})


class SettingsError(ValueError):
    """The sidecar's configuration is invalid (the message names the variable)."""


@dataclass(frozen=True)
class Settings:
    online_url: str
    manifest_path: Path = Path("target/manifest.json")
    api_keys: tuple[ApiKey, ...] = ()
    open_endpoints: frozenset[str] = DEFAULT_OPEN_ENDPOINTS
    #: a pinned clock (aware, UTC) or None for the real one
    now: dt.datetime | None = None
    store_timeout_s: float = 0.010
    store_threads: int = 8
    ready_timeout_s: float = 1.0
    max_keys: int = 1000
    max_features: int = 1000
    #: keys x features per request at most
    max_values: int = 100_000
    #: characters of one entity key value at most
    max_key_part_chars: int = MAX_KEY_PART_CHARS
    max_body_bytes: int = 1 << 20
    cache_size: int = 100_000
    cache_ttl_s: float = 5.0
    cache_ttl_by_view: Mapping[str, float] = field(default_factory=dict)
    breaker_failures: int = 5
    breaker_cooldown_s: float = 1.0
    gc_thresholds: tuple[int, int, int] = (700, 10, 1_000_000)
    gc_full_interval_s: float = 600.0
    #: how often the freshness gauges are read from the store (sidecar/freshness.py)
    freshness_interval_s: float = 15.0
    #: the served-vector log (sidecar/served_log.py): its folder (None: off), the share of
    #: entity keys logged, requests buffered at most, and when a file is rotated
    served_log_dir: Path | None = None
    served_log_rate: float = 0.0
    served_log_buffer: int = 10_000
    served_log_rotate_bytes: int = 64 << 20
    served_log_rotate_s: float = 60.0
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    max_connections: int = 1024
    #: gRPC beside REST (sidecar/grpc_service.py): its port (None: off), address, and
    #: whether several worker processes share the port (SO_REUSEPORT)
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"
    grpc_reuse_port: bool = False
    #: the share of requests written to the access log (sidecar/logs.py), 0 = off
    access_log_sample: float = 0.0

    def __post_init__(self) -> None:
        if not self.online_url:
            raise SettingsError("no online store: set FEATURESTORE_ONLINE_URL (or --online)")
        positive = {
            "store_timeout_s": self.store_timeout_s,
            "store_threads": self.store_threads,
            "ready_timeout_s": self.ready_timeout_s,
            "max_keys": self.max_keys,
            "max_features": self.max_features,
            "max_values": self.max_values,
            "max_key_part_chars": self.max_key_part_chars,
            "max_body_bytes": self.max_body_bytes,
            "breaker_failures": self.breaker_failures,
            "breaker_cooldown_s": self.breaker_cooldown_s,
            "header_timeout_s (FEATURESTORE_HEADER_TIMEOUT)": self.header_timeout_s,
            "body_timeout_s (FEATURESTORE_BODY_TIMEOUT)": self.body_timeout_s,
            "max_connections (FEATURESTORE_MAX_CONNECTIONS)": self.max_connections,
            "freshness_interval_s (FEATURESTORE_FRESHNESS_INTERVAL)": self.freshness_interval_s,
        }
        if not 0.0 <= self.served_log_rate <= 1.0:
            raise SettingsError(
                f"FEATURESTORE_SERVED_LOG_RATE must be between 0 and 1, got {self.served_log_rate}"
            )
        if not 0.0 <= self.access_log_sample <= 1.0:
            raise SettingsError(
                "FEATURESTORE_ACCESS_LOG_SAMPLE must be between 0 and 1, got "
                f"{self.access_log_sample}"
            )
        if self.served_log_rate > 0 and self.served_log_dir is None:
            raise SettingsError(
                "FEATURESTORE_SERVED_LOG_RATE is set but FEATURESTORE_SERVED_LOG_DIR is not: "
                "say where the served vectors go"
            )
        positive["served_log_buffer (FEATURESTORE_SERVED_LOG_BUFFER)"] = self.served_log_buffer
        positive["served_log_rotate_bytes (FEATURESTORE_SERVED_LOG_ROTATE_BYTES)"] = (
            self.served_log_rotate_bytes
        )
        positive["served_log_rotate_s (FEATURESTORE_SERVED_LOG_ROTATE_AFTER)"] = (
            self.served_log_rotate_s
        )
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value!r}")
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise SettingsError(
                f"FEATURESTORE_GRPC_PORT must be a port number (0-65535), got {self.grpc_port}"
            )
        if self.cache_size < 0 or self.cache_ttl_s < 0:
            raise SettingsError("cache size and TTL must not be negative")
        unknown = self.open_endpoints - OPENABLE_ENDPOINTS
        if unknown:
            raise SettingsError(f"endpoints that cannot be opened: {sorted(unknown)}")
        if not self.api_keys:
            raise SettingsError(
                "no API key configured: set FEATURESTORE_API_KEYS, FEATURESTORE_API_KEY_SHA256 "
                "or FEATURESTORE_AUTH_CONFIG (the retrieve and registry endpoints always need "
                "a key)"
            )
        digests = [key.digest for key in self.api_keys]
        if len(set(digests)) != len(digests):
            raise SettingsError("the same API key is configured twice")

    def cache_ttl(self, view: str, *, streamed: bool = False) -> float:
        """The view's cache TTL in seconds: its own from ``FEATURESTORE_CACHE_TTL``, else the
        default, at most :data:`STREAMED_CACHE_TTL_S` for a streamed view (the stream keeps
        it fresh within a second: a cached value must not be older)."""
        own = self.cache_ttl_by_view.get(view)
        if own is not None:
            return own
        return min(self.cache_ttl_s, STREAMED_CACHE_TTL_S) if streamed else self.cache_ttl_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (see the module docstring)."""
        env = os.environ if environ is None else environ

        def number(name: str, default: float, *, integer: bool = False) -> float:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return int(text) if integer else float(text)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise SettingsError(f"{name} must be {kind}, got {text!r}") from None

        keys: list[ApiKey] = []
        open_endpoints = DEFAULT_OPEN_ENDPOINTS
        try:
            for index, raw in enumerate(_split(env.get("FEATURESTORE_API_KEYS", ""))):
                keys.append(unscoped_key(f"env-key-{index + 1}", raw))
            for index, digest in enumerate(_split(env.get("FEATURESTORE_API_KEY_SHA256", ""))):
                keys.append(unscoped_key_from_digest(f"env-sha256-{index + 1}", digest))
            config_path = env.get("FEATURESTORE_AUTH_CONFIG", "").strip()
            if config_path:
                config = load_auth_config(Path(config_path))
                keys.extend(config.keys)
                if config.open_endpoints is not None:
                    open_endpoints = config.open_endpoints
            if env.get("FEATURESTORE_OPEN_ENDPOINTS", "").strip():
                open_endpoints = parse_open_endpoints(env["FEATURESTORE_OPEN_ENDPOINTS"])
        except AuthConfigError as exc:
            raise SettingsError(str(exc)) from None

        default_ttl, per_view = parse_cache_ttl(env.get("FEATURESTORE_CACHE_TTL", "5s"))
        try:
            now = parse_now(env.get("FEATURESTORE_NOW"))
        except ValueError as exc:
            raise SettingsError(f"FEATURESTORE_NOW: {exc}") from None
        return cls(
            online_url=env.get("FEATURESTORE_ONLINE_URL", "").strip(),
            manifest_path=_manifest_path(env),
            api_keys=tuple(keys),
            open_endpoints=open_endpoints,
            now=now,
            store_timeout_s=number("FEATURESTORE_STORE_TIMEOUT_MS", 10) / 1000,
            store_threads=int(number("FEATURESTORE_STORE_THREADS", 8, integer=True)),
            max_keys=int(number("FEATURESTORE_MAX_KEYS", 1000, integer=True)),
            max_body_bytes=int(number("FEATURESTORE_MAX_BODY_BYTES", 1 << 20, integer=True)),
            cache_size=int(number("FEATURESTORE_CACHE_SIZE", 100_000, integer=True)),
            cache_ttl_s=default_ttl,
            cache_ttl_by_view=per_view,
            breaker_failures=int(number("FEATURESTORE_BREAKER_FAILURES", 5, integer=True)),
            breaker_cooldown_s=number("FEATURESTORE_BREAKER_COOLDOWN_MS", 1000) / 1000,
            gc_thresholds=parse_gc_thresholds(env.get("FEATURESTORE_GC_THRESHOLDS", "")),
            gc_full_interval_s=_seconds(
                env.get("FEATURESTORE_GC_FULL_INTERVAL", "10m"), "FEATURESTORE_GC_FULL_INTERVAL"
            ),
            freshness_interval_s=_seconds(
                env.get("FEATURESTORE_FRESHNESS_INTERVAL", "15s"), "FEATURESTORE_FRESHNESS_INTERVAL"
            ),
            header_timeout_s=_seconds(
                env.get("FEATURESTORE_HEADER_TIMEOUT", "5s"), "FEATURESTORE_HEADER_TIMEOUT"
            ),
            body_timeout_s=_seconds(
                env.get("FEATURESTORE_BODY_TIMEOUT", "10s"), "FEATURESTORE_BODY_TIMEOUT"
            ),
            max_connections=int(number("FEATURESTORE_MAX_CONNECTIONS", 1024, integer=True)),
            grpc_port=int(number("FEATURESTORE_GRPC_PORT", -1, integer=True))
            if env.get("FEATURESTORE_GRPC_PORT", "").strip()
            else None,
            grpc_host=env.get("FEATURESTORE_GRPC_HOST", "").strip() or "127.0.0.1",
            grpc_reuse_port=env.get("FEATURESTORE_GRPC_REUSE_PORT", "").strip() == "1",
            access_log_sample=number("FEATURESTORE_ACCESS_LOG_SAMPLE", 0.0),
            served_log_dir=Path(env["FEATURESTORE_SERVED_LOG_DIR"].strip())
            if env.get("FEATURESTORE_SERVED_LOG_DIR", "").strip()
            else None,
            served_log_rate=number("FEATURESTORE_SERVED_LOG_RATE", 0.0),
            served_log_buffer=int(number("FEATURESTORE_SERVED_LOG_BUFFER", 10_000, integer=True)),
            served_log_rotate_bytes=int(
                number("FEATURESTORE_SERVED_LOG_ROTATE_BYTES", 64 << 20, integer=True)
            ),
            served_log_rotate_s=_seconds(
                env.get("FEATURESTORE_SERVED_LOG_ROTATE_AFTER", "60s"),
                "FEATURESTORE_SERVED_LOG_ROTATE_AFTER",
            ),
        )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _manifest_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("FEATURESTORE_MANIFEST", "").strip()
    if explicit:
        return Path(explicit)
    target = env.get("DBT_TARGET_PATH", "").strip()
    return Path(target or "target") / "manifest.json"


def _seconds(text: str, where: str) -> float:
    """A duration setting in seconds (:func:`featurestore.durations.parse_seconds`)."""
    try:
        return parse_seconds(text)
    except DurationError as exc:
        raise SettingsError(f"{where}: {exc}") from None


def parse_cache_ttl(text: str) -> tuple[float, dict[str, float]]:
    """``FEATURESTORE_CACHE_TTL``: ``<default>[,<view>=<ttl>...]`` (a part without ``=`` is
    the default; the default default is 5 s)."""
    default = 5.0
    per_view: dict[str, float] = {}
    for part in _split(text):
        if "=" in part:
            view, _, value = part.partition("=")
            per_view[view.strip()] = _seconds(value, f"FEATURESTORE_CACHE_TTL {view}")
        else:
            default = _seconds(part, "FEATURESTORE_CACHE_TTL")
    return default, per_view


def parse_gc_thresholds(text: str) -> tuple[int, int, int]:
    """``FEATURESTORE_GC_THRESHOLDS``: three non-negative integers (empty: the default)."""
    if not text.strip():
        return Settings.gc_thresholds
    parts = _split(text)
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise SettingsError(
            f"FEATURESTORE_GC_THRESHOLDS: {text!r} is not three non-negative integers such as "
            "700,10,1000000"
        )
    first, second, third = (int(part) for part in parts)
    return first, second, third


def check_settings(settings: Settings, registry: Registry) -> None:
    """Names in the configuration must exist in the registry (typos fail at startup): the
    views of ``FEATURESTORE_CACHE_TTL`` must be online views, the API keys' scopes name
    known entities, features and feature services; with a gRPC port, the gRPC modules
    must import (grpcio, protobuf and the modules ``./run setup`` generates). Raises
    SettingsError."""
    if settings.grpc_port is not None:
        try:
            for module in ("grpc", "featurestore.grpc_api.serving_pb2"):
                importlib.import_module(module)
        except ImportError as exc:
            raise SettingsError(
                f"FEATURESTORE_GRPC_PORT (--grpc-port) needs grpcio, protobuf and the "
                f"generated modules of featurestore/grpc_api ({exc}): install "
                "featurestore[serve], and generate the modules from proto/ with ./run setup"
            ) from None
    online = {name for name, view in registry.views.items() if view.online}
    for view in settings.cache_ttl_by_view:
        if view not in online:
            raise SettingsError(
                f"FEATURESTORE_CACHE_TTL names {view!r}, which is not an online feature view "
                f"(online views: {', '.join(sorted(online)) or 'none'})"
            )
    for key in settings.api_keys:
        for entity in sorted(key.entities or ()):
            if entity not in registry.entities:
                raise SettingsError(f"API key {key.name}: unknown entity {entity!r} in scope")
        for feature in sorted(key.features or ()):
            if feature not in registry.features:
                raise SettingsError(f"API key {key.name}: unknown feature {feature!r} in scope")
        for service in sorted(key.feature_services or ()):
            if service not in registry.feature_services:
                declared = ", ".join(registry.feature_services) or "none"
                raise SettingsError(
                    f"API key {key.name}: unknown feature service {service!r} in scope "
                    f"(declared: {declared})"
                )
