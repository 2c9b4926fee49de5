"""Connection set-up of the sidecar's asyncio Redis client (featurestore/online/redis_async.py)
when the network stalls during it: a real password-protected redis-server (and one whose
database is not 0) behind :class:`tests.servers.TcpProxy`, frozen while the client sends AUTH
and SELECT, then healed in each of the ways a network heals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py
import trustme
import uvloop

from featurestore.online.redis_async import AsyncRedisClient, RedisConnectTimeout
from tests.servers import Healing, RedisServer, TcpProxy, redis_server, tcp_proxy

PASSWORD = "stall-pw-5e1d"
CONNECT_TIMEOUT = 0.5
GET = b"*2\r\n$3\r\nGET\r\n$9\r\nstall:key\r\n"


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with a password; ``stall:key`` holds ``db<n>`` in databases 0 and 3."""
    with redis_server(tmp_path_factory.mktemp("redis-pw"), password=PASSWORD) as server:
        for db in (0, 3):
            with redis_py.Redis(port=server.port, password=PASSWORD, db=db) as client:
                client.set("stall:key", f"db{db}")
        yield server


@pytest.fixture
def proxy(protected_redis: RedisServer) -> Iterator[TcpProxy]:
    with tcp_proxy(protected_redis.port) as proxy:
        yield proxy


async def attempt(client: AsyncRedisClient, budget: float) -> tuple[object, float]:
    """One GET with a deadline ``budget`` s away: (its replies or the exception, seconds)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        result: object = await client.execute_packed(GET, 1, started + budget)
    except (TimeoutError, ConnectionError) as exc:
        result = exc
    return result, loop.time() - started


@pytest.mark.parametrize("healing", ["resume", "drop", "blackhole"])
@pytest.mark.parametrize(
    ("password", "db"), [(PASSWORD, 0), (PASSWORD, 3)], ids=["auth", "auth+select"]
)
def test_a_stalled_setup_is_abandoned_and_the_next_call_connects_again(
    proxy: TcpProxy, healing: Healing, password: str, db: int
) -> None:
    """Frozen from the start: every call fails within its own deadline while attempts are
    abandoned every connect timeout (new TCP connects); healed, the calls get the right
    database's value within about one connect timeout, however the network healed."""
    client = AsyncRedisClient(
        "127.0.0.1", proxy.port, db=db, password=password, connect_timeout=CONNECT_TIMEOUT
    )

    async def main() -> tuple[list[tuple[object, float]], float, object]:
        proxy.freeze()
        stalled = []
        frozen_until = time.monotonic() + 2.5 * CONNECT_TIMEOUT
        while time.monotonic() < frozen_until:
            stalled.append(await attempt(client, 0.05))
            await asyncio.sleep(0.02)
        await asyncio.to_thread(proxy.heal, healing)
        healed = time.monotonic()
        while True:
            result, _ = await attempt(client, 0.05)
            if isinstance(result, list):
                return stalled, time.monotonic() - healed, result
            assert time.monotonic() - healed < 10, "never recovered"
            await asyncio.sleep(0.01)

    stalled, recovery, replies = uvloop.run(main())
    assert replies == [f"db{db}".encode()]  # AUTH and SELECT done on the new connection
    assert all(isinstance(result, TimeoutError | ConnectionError) for result, _ in stalled)
    # no call waited beyond its own deadline for the stalled set-up (plus a loaded host)
    assert max(took for _, took in stalled) < 0.05 + 0.1, stalled
    # 2.5 connect timeouts frozen: the first attempts were abandoned and replaced
    assert client.connects >= 3
    # an attempt caught by the freeze is abandoned at most one connect timeout after it
    # began (plus the host's scheduling slack): the one after it finds the network healed
    assert recovery < CONNECT_TIMEOUT + 0.3, recovery
    client.close()


def test_a_caller_without_a_deadline_waits_one_connect_timeout(proxy: TcpProxy) -> None:
    client = AsyncRedisClient(
        "127.0.0.1", proxy.port, password=PASSWORD, connect_timeout=CONNECT_TIMEOUT
    )

    async def main() -> float:
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(RedisConnectTimeout, match=r"set-up took longer than 0\.5 s"):
            await client.execute([("PING",)])
        return time.monotonic() - started

    took = uvloop.run(main())
    assert CONNECT_TIMEOUT - 0.05 < took < CONNECT_TIMEOUT + 0.3, took
    proxy.heal("blackhole")
    assert uvloop.run(client.execute([("GET", "stall:key")])) == [b"db0"]
    client.close()


def test_a_stalled_tls_handshake_is_abandoned(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "s.pem", tmp_path / "s.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    with (
        redis_server(tmp_path / "data", tls=(cert_file, key_file)) as server,
        tcp_proxy(server.port) as proxy,
    ):
        client = AsyncRedisClient(
            "127.0.0.1",
            proxy.port,
            ssl=True,
            ssl_ca_certs=str(ca_file),
            connect_timeout=CONNECT_TIMEOUT,
        )

        async def main() -> tuple[float, list[object]]:
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(RedisConnectTimeout):
                await client.execute([("PING",)])
            took = time.monotonic() - started
            await asyncio.to_thread(proxy.heal, "blackhole")
            return took, await client.execute([("PING",)])

        took, replies = uvloop.run(main())
        assert replies == [b"PONG"]
        assert took < CONNECT_TIMEOUT + 0.3, took
        client.close()
