"""Fresh, empty online stores for one test: a SQLite file, a Redis namespace, a DynamoDB table."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.servers import MotoServer, RedisClusterServers, RedisServer


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of the given kind for one test."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        namespace = f"t{uuid.uuid4().hex[:10]}"
        return f"{server.url}?namespace={namespace}"
    if kind == "redis-cluster":
        cluster: RedisClusterServers = request.getfixturevalue("cluster")
        return f"{cluster.url}?namespace=t{uuid.uuid4().hex[:10]}"
    server_d: MotoServer = request.getfixturevalue("moto")
    return server_d.url(table=f"fs_{uuid.uuid4().hex[:10]}")
