"""Open an online store from a URL (:func:`open_store`): the grammar of store URLs is
documented in the README's "Store URLs" section; this module implements it.

Any query option a scheme does not take is refused (:class:`UnsupportedStoreURL`, exit code
2), so that a misspelt one (say ``namspace``) is not silently ignored. Secrets never appear
in :attr:`OnlineStore.description` (used in logs and load records) nor in a message
(:mod:`featurestore.online.redaction`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from featurestore.exit_codes import ExitCode
from featurestore.online.redaction import redact_url
from featurestore.online.store import OnlineStore, StoreError

__all__ = ["UnsupportedStoreURL", "open_store"]


class UnsupportedStoreURL(StoreError):
    """The URL names no supported store or is malformed."""

    exit_code = ExitCode.USAGE


#: the query options each scheme takes
OPTIONS: Final = {
    "sqlite": frozenset[str](),
    "redis": frozenset({"namespace"}),
    "rediss": frozenset({"namespace", "ssl_ca_certs"}),
    "redis+cluster": frozenset({"namespace", "hot_keys"}),
    "rediss+cluster": frozenset({"namespace", "ssl_ca_certs", "hot_keys"}),
    "dynamodb": frozenset({"endpoint_url", "table"}),
}


def open_store(url: str, *, read_only: bool = False) -> OnlineStore:
    """The store ``url`` names, not yet connected. ``read_only``: opened for serving, never
    writing (the sidecar's): the embedded store is then a
    :class:`~featurestore.online.sqlite_store.ReadOnlySQLiteStore` (SQLite ``mode=ro``, every
    write refused); Redis and DynamoDB have no such mode and are opened as usual (the
    sidecar only reads them)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = OPTIONS.get(scheme)
    if allowed is not None:
        unknown = sorted(set(query) - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) or "no options"
            raise UnsupportedStoreURL(
                f"{redact_url(url)!r}: unknown option {', '.join(unknown)} for {scheme}:// "
                f"(it takes {takes})"
            )
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise UnsupportedStoreURL(
                f"{url!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        from featurestore.online.sqlite_store import ReadOnlySQLiteStore, SQLiteStore

        return (ReadOnlySQLiteStore if read_only else SQLiteStore)(Path(path.split("?")[0]))
    if scheme in {"redis", "rediss", "redis+cluster", "rediss+cluster"}:
        from featurestore.online.redis_store import RedisStore

        ca_file = query.get("ssl_ca_certs")
        if ca_file is not None and not Path(ca_file).is_file():
            raise UnsupportedStoreURL(
                f"{redact_url(url)!r}: ssl_ca_certs {ca_file!r} is not a readable file"
            )

        # user and password percent-decoded (RFC 3986 3.2.1), as redis-py's from_url does
        username = unquote(parts.username) if parts.username else None
        password = (
            unquote(parts.password)
            if parts.password
            else os.environ.get("FEATURESTORE_REDIS_PASSWORD") or None
        )
        if scheme.endswith("+cluster"):
            return _cluster_store(url, parts, query, username, password, ca_file)
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise UnsupportedStoreURL(f"redis URL database must be a number, got {db!r}")
        return RedisStore(
            host=parts.hostname or "127.0.0.1",
            port=_port(url, parts) or 6379,
            db=int(db),
            username=username,
            password=password,
            ssl=scheme == "rediss",
            namespace=query.get("namespace", "fs"),
            ssl_ca_certs=ca_file,
        )
    if scheme == "dynamodb":
        from featurestore.online.dynamodb_store import DynamoDBStore

        region = parts.hostname
        if not region:
            raise UnsupportedStoreURL(f"{url!r}: expected dynamodb://<region>[?endpoint_url=...]")
        return DynamoDBStore(
            region=region,
            endpoint_url=query.get("endpoint_url"),
            table=query.get("table", "featurestore_online"),
        )
    raise UnsupportedStoreURL(
        f"unsupported online store URL {url!r} (use sqlite:///..., redis://..., "
        "redis+cluster://..., dynamodb://...)"
    )


def _cluster_store(
    url: str,
    parts: SplitResult,
    query: dict[str, str],
    username: str | None,
    password: str | None,
    ca_file: str | None,
) -> OnlineStore:
    """``redis+cluster://[user[:password]@]host:port[,host:port...][?namespace=...]``: the
    seed nodes (any of the cluster's; the slot map is read from the first that answers)."""
    from featurestore.online.redis_cluster import parse_seeds
    from featurestore.online.redis_cluster_store import RedisClusterStore

    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise UnsupportedStoreURL(
            f"{redact_url(url)!r}: expected {parts.scheme}://host:port[,host:port...]"
        )
    try:
        seeds = parse_seeds(hosts)
    except ValueError as exc:
        raise UnsupportedStoreURL(f"{redact_url(url)!r}: {exc}") from None
    if parts.path.strip("/") not in {"", "0"}:
        raise UnsupportedStoreURL(
            f"{redact_url(url)!r}: a Redis Cluster has only database 0, got "
            f"{parts.path.strip('/')!r}"
        )
    hot_keys = None
    if "hot_keys" in query:
        from featurestore.online.hot_keys import load_hot_keys

        try:
            hot_keys = load_hot_keys(Path(query["hot_keys"]))
        except ValueError as exc:
            raise UnsupportedStoreURL(f"{redact_url(url)!r}: {exc}") from None
    return RedisClusterStore(
        seeds,
        hot_keys=hot_keys,
        username=username,
        password=password,
        ssl=parts.scheme.lower().startswith("rediss"),
        namespace=query.get("namespace", "fs"),
        ssl_ca_certs=ca_file,
    )


def _port(url: str, parts: SplitResult) -> int | None:
    """The URL's port (None if it names none), or UnsupportedStoreURL for one that is not a
    number from 1 to 65535."""
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        spelled = parts.netloc.rpartition(":")[2]
        raise UnsupportedStoreURL(
            f"{redact_url(url)!r}: the port must be a number from 1 to 65535, got {spelled!r}"
        )
    return port
