"""Redis over TLS (``rediss://``) against a real redis-server with a TLS port: the loader's
blocking client and the sidecar's asyncio client both check the server's certificate,
against a private CA given by ``ssl_ca_certs`` (certificates made by trustme)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import uvloop

from featurestore.online.layout import Record
from featurestore.online.redis_store import RedisStore
from featurestore.online.store import StoreUnavailable, ViewRead
from featurestore.online.urls import open_store
from tests.servers import RedisServer, redis_server

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
VIEW = ViewRead("v", {"n": "int", "x": "float"})


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[RedisServer]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = workdir / "server.pem", workdir / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with redis_server(workdir / "data", tls=(cert_file, key_file)) as server:
        yield server


def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_both_clients_read_and_write_over_tls_with_a_private_ca(
    tls_redis: RedisServer, ca: trustme.CA, tmp_path: Path
) -> None:
    url = (
        f"rediss://127.0.0.1:{tls_redis.port}/0?namespace=tls&ssl_ca_certs={ca_file(ca, tmp_path)}"
    )
    store = open_store(url)
    assert isinstance(store, RedisStore)
    store.initialize()
    records = [
        Record("user", ("u1",), "v", 1_000_000, 1_000_000, 1_900_000_000, {"n": 7, "x": 0.5}),
        Record("user", ("u2",), "v", 2_000_000, 2_000_000, 1_900_000_000, {"n": None, "x": 1.0}),
    ]
    assert store.write(records, now=NOW).written == 2
    keys = [("u1",), ("u2",), ("missing",)]
    blocking = store.read("user", keys, [VIEW], now=NOW)
    assert blocking[0]["v"] is not None and blocking[0]["v"].values == {"n": 7, "x": 0.5}
    assert blocking[2]["v"] is None

    async def main() -> object:
        await store.check_async()
        return await store.read_encoded_async("user", keys, [VIEW], now=NOW)

    encoded = uvloop.run(main())
    assert isinstance(encoded, list)
    assert [row["v"] is None for row in encoded] == [False, False, True]
    assert encoded[0]["v"].values == (b"7", b"0.5")  # type: ignore[union-attr]
    store.close()


def test_an_untrusted_certificate_is_refused_by_both_clients(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    other = ca_file(trustme.CA(), tmp_path)  # a CA that did not sign the server's certificate
    store = open_store(f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={other}")
    with pytest.raises(StoreUnavailable, match="certificate verify failed"):
        store.check()

    async def main() -> None:
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            async with asyncio.timeout(5):
                await store.read_encoded_async("user", [("u1",)], [VIEW], now=NOW)

    uvloop.run(main())
    store.close()


def test_a_certificate_for_another_host_name_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    """Signed by the trusted CA but issued to another name: both clients refuse it."""
    cert = ca.issue_cert("redis.example")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with redis_server(tmp_path / "data", tls=(cert_file, key_file)) as server:
        url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca_file(ca, tmp_path)}"
        store = open_store(url)
        with pytest.raises(StoreUnavailable, match=r"certificate verify failed.*mismatch"):
            store.check()

        async def main() -> None:
            with pytest.raises(StoreUnavailable, match=r"certificate verify failed.*mismatch"):
                await store.check_async()

        uvloop.run(main())
        store.close()
