"""The Redis store on a real local Redis Cluster (six redis-server processes: three masters,
one replica each, made by ``redis-cli --cluster create``): routing, a resharding under reads
and writes, and failovers (a master killed with SIGKILL) under writes and under reads.

The reference is what the test wrote: every key's last acknowledged write. Reads go through
the sidecar's path (:meth:`RedisStore.read_encoded_async`) and the blocking one."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from featurestore.online.hot_keys import replica_keys
from featurestore.online.layout import Record, redis_key
from featurestore.online.redis_cluster import key_slot, parse_seeds
from featurestore.online.redis_cluster_store import RedisClusterStore
from featurestore.online.store import UNREACHABLE, EncodedRecord, StoreUnavailable, ViewRead
from featurestore.online.urls import UnsupportedStoreURL, open_store
from tests.servers import RedisClusterServers, redis_cluster

pytestmark = pytest.mark.xdist_group("redis-cluster-faults")

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
VIEW = ViewRead("counts", {"n": "int"})
USERS = [f"usr_{i:05d}" for i in range(1500)]


def record(user: str, round_: int) -> Record:
    ts = (NOW_S - 3600) * 1_000_000 + round_
    return Record("user", (user,), "counts", ts, round_, NOW_S + 86_400, {"n": round_})


def open_cluster(cluster: RedisClusterServers, **options: Any) -> RedisClusterStore:
    store = open_store(f"{cluster.url}?namespace=t{uuid.uuid4().hex[:8]}")
    assert isinstance(store, RedisClusterStore)
    for name, value in options.items():
        setattr(store.router, name, value)
    store.initialize()
    return store


def read_async(store: RedisClusterStore, users: list[str], budget: float = 2.0) -> list[Any]:
    async def run() -> list[Any]:
        deadline = asyncio.get_running_loop().time() + budget
        rows = await store.read_encoded_async(
            "user", [(u,) for u in users], [VIEW], now=NOW, deadline=deadline
        )
        return [row["counts"] for row in rows]

    return asyncio.run(run())


def slot_of(user: str, namespace: str) -> int:
    return key_slot(redis_key("user", (user,), namespace))


def slots_of(users: list[str], namespace: str) -> set[int]:
    return {slot_of(u, namespace) for u in users}


def slot_count(ranges: str) -> int:
    """Slots in a CLUSTER NODES slot list ("0-5460 7000 ...")."""
    total = 0
    for part in ranges.split():
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def value(found: Any) -> int | None:
    """The stored round of a record read on the asyncio path (None: absent)."""
    if found is None:
        return None
    assert type(found) is EncodedRecord, found
    return int(found.values[0])


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A cluster of the test's own (it kills or reshards nodes)."""
    with redis_cluster(tmp_path) as servers:
        yield servers


# --- URLs -------------------------------------------------------------------------------------


def test_cluster_urls() -> None:
    store = open_store("redis+cluster://u:secret@10.0.0.1:7000,10.0.0.2,[::1]:7002/?namespace=x")
    assert isinstance(store, RedisClusterStore)
    assert store.seeds == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    assert store.namespace == "x" and "secret" not in store.description
    assert parse_seeds("h:1,h:2") == [("h", 1), ("h", 2)]
    for bad, says in [
        ("redis+cluster://h:1/3", "only database 0"),
        ("redis+cluster://h:99999", "1 to 65535"),
        ("redis+cluster://h:1,,h:2", "empty host"),
        ("redis+cluster://h:1?namspace=x", "unknown option namspace"),
        ("redis+cluster:///", r"expected redis\+cluster://host:port"),
    ]:
        with pytest.raises(UnsupportedStoreURL, match=says):
            open_store(bad)


def test_no_reachable_node_is_store_unavailable() -> None:
    store = open_store("redis+cluster://127.0.0.1:1")
    with pytest.raises(StoreUnavailable, match="CLUSTER SLOTS"):
        store.check()


# --- routing ----------------------------------------------------------------------------------


def test_keys_spread_over_every_master_and_a_read_is_one_write_per_node(
    cluster: RedisClusterServers,
) -> None:
    store = open_cluster(cluster)
    try:
        store.write([record(u, 1) for u in USERS], now=NOW)
        owners = {port for port in cluster.slot_owners(slots_of(USERS, store.namespace)).values()}
        assert owners == set(cluster.masters()) and len(owners) == 3
        users = USERS[:100]
        assert [value(found) for found in read_async(store, users)] == [1] * 100
        router = store._async_router()
        writes = {address: client._connection.writes for address, client in router._clients.items()}  # type: ignore[union-attr]
        # one read: each master got one write holding all of its keys
        assert sorted(writes.values()) == [1, 1, 1], writes
        rows = store.read("user", [(u,) for u in users], [VIEW], now=NOW)
        assert [row["counts"].values["n"] for row in rows] == [1] * 100  # type: ignore[union-attr]
    finally:
        store.close()


# --- resharding -------------------------------------------------------------------------------


def test_a_resharding_under_reads_and_writes_fails_no_read_and_loses_no_write(
    own_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    log = tmp_path / "reshard.log"
    store = open_cluster(own_cluster)
    reader = open_cluster(own_cluster)
    reader.namespace = store.namespace
    own_cluster.wait_replicas_in_sync()
    nodes = own_cluster.cluster_nodes()
    masters = [r for r in nodes if "master" in r["flags"] and "fail" not in r["flags"]]
    source, target = masters[0], masters[1]
    done = threading.Event()
    written: list[int] = []  # rounds whose writes returned
    errors: list[BaseException] = []

    def write() -> None:
        try:
            round_ = 0
            while not done.is_set() or round_ < 3:
                round_ += 1
                store.write([record(u, round_) for u in USERS], now=NOW)
                written.append(round_)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    bad: list[Any] = []
    try:
        resharding = own_cluster.cli_async(
            "--cluster", "reshard", f"127.0.0.1:{source['port']}",
            "--cluster-from", source["id"], "--cluster-to", target["id"],
            "--cluster-slots", "2000", "--cluster-yes", "--cluster-pipeline", "10",
            log=log,
        )  # fmt: skip
        while resharding.poll() is None:
            floor = written[-1] if written else 0
            for found in read_async(reader, USERS[reads % 10 * 150 : reads % 10 * 150 + 150]):
                if found is UNREACHABLE or (floor and (value(found) or 0) < floor):
                    bad.append(found)  # unreachable, or an acknowledged write missing
            reads += 1
        assert resharding.returncode == 0, log.read_text()[-2000:]
    finally:
        done.set()
        thread.join(timeout=120)
    assert not errors, errors
    assert not bad, bad[:5]
    assert reads >= 3
    now_serves = next(r for r in own_cluster.cluster_nodes() if r["id"] == target["id"])
    assert slot_count(now_serves["slots"]) == slot_count(target["slots"]) + 2000
    last = written[-1]
    assert [value(found) for found in read_async(reader, USERS)] == [last] * len(USERS)
    store.close()
    reader.close()


# --- failover ---------------------------------------------------------------------------------


def test_a_master_killed_during_writes_loses_no_acknowledged_write(
    own_cluster: RedisClusterServers,
) -> None:
    """The blocking pipeline rides out the failover: every write call returns, and what
    every call wrote is there afterwards (each was acknowledged by a replica)."""
    store = open_cluster(own_cluster)
    victim = own_cluster.owner_of(key_slot(redis_key("user", (USERS[0],), store.namespace)))
    durations: list[float] = []
    round_ = 0
    killed_at = None
    while round_ < 12:
        round_ += 1
        began = time.monotonic()
        store.write([record(u, round_) for u in USERS], now=NOW)
        durations.append(time.monotonic() - began)
        if round_ == 3:
            own_cluster.wait_replicas_in_sync()
            victim = own_cluster.owner_of(key_slot(redis_key("user", (USERS[0],), store.namespace)))
            own_cluster.node(victim).kill()
            killed_at = round_
    assert killed_at == 3
    own_cluster.wait_failed_over(victim)
    assert [value(found) for found in read_async(store, USERS)] == [12] * len(USERS)
    # the round that met the failover waited for the promotion (at least the node timeout)
    assert max(durations) >= own_cluster.node_timeout_ms / 1000
    store.close()


def test_a_master_killed_during_reads_degrades_only_its_keys_until_the_promotion(
    own_cluster: RedisClusterServers,
) -> None:
    store = open_cluster(own_cluster)
    store.write([record(u, 1) for u in USERS], now=NOW)
    own_cluster.wait_replicas_in_sync()
    victim = own_cluster.owner_of(key_slot(redis_key("user", (USERS[0],), store.namespace)))
    owners = own_cluster.slot_owners(slots_of(USERS, store.namespace))
    on_victim = {u for u in USERS if owners[slot_of(u, store.namespace)] == victim}
    users = USERS[:300]
    assert [value(f) for f in read_async(store, users)] == [1] * len(users)
    own_cluster.node(victim).kill()
    killed = time.monotonic()
    unreachable_seen: list[float] = []
    recovered = None
    while time.monotonic() - killed < 30:
        rows = read_async(store, users, budget=0.5)
        for user, found in zip(users, rows, strict=True):
            if found is UNREACHABLE:
                assert user in on_victim, user  # never a key of another node
                unreachable_seen.append(time.monotonic() - killed)
            else:
                assert value(found) == 1
        if unreachable_seen and all(found is not UNREACHABLE for found in rows):
            recovered = time.monotonic() - killed
            break
        time.sleep(0.02)
    assert unreachable_seen, "the killed master's keys were never unreachable"
    assert recovered is not None, "the promoted replica was never read"
    # the same store object, no restart: the promoted replica serves the slots
    assert [value(f) for f in read_async(store, USERS)] == [1] * len(USERS)
    store.close()


# --- hot keys -----------------------------------------------------------------------------------


def test_replica_keys_land_in_distinct_slot_ranges_and_never_collide_with_keys() -> None:
    for user in ["usr_00001", "a", "x" * 40]:
        primary = redis_key("user", (user, "dev:1"), "fs")
        copies = replica_keys(primary, 3)
        assert replica_keys(primary, 3) == copies  # deterministic
        assert len(set(copies)) == 3 and all("#" in c and c.endswith(":dev%3A1") for c in copies)
        ranges = {key_slot(k) * 4 // 16384 for k in (primary, *copies)}
        assert len(ranges) == 4  # one quarter of the slots each: distinct masters here


def test_hot_key_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "hot.yml"
    for text, says in [
        ("replicas: 0\nkeys: {}", "from 1 to 15"),
        ("replicas: 2\nkeys: {user: usr_1}", "must be a list"),
        ("replicas: 2\nkeys: {user: ['']}", "is not a key"),
        ("replicas: 2\nspare: 1", "'replicas' and 'keys' only"),
        (": :", "is not YAML"),
    ]:
        path.write_text(text)
        with pytest.raises(UnsupportedStoreURL, match=says):
            open_store(f"redis+cluster://127.0.0.1:1?hot_keys={path}")
    with pytest.raises(UnsupportedStoreURL, match="cannot be read"):
        open_store(f"redis+cluster://127.0.0.1:1?hot_keys={tmp_path / 'absent.yml'}")


def commandstats(cluster: RedisClusterServers, command: str) -> dict[int, int]:
    """Calls of ``command`` per master so far (INFO commandstats)."""
    out = {}
    for port in cluster.masters():
        client = redis_py.Redis(port=port)
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
        out[port] = int(stats.get("calls", 0))
        client.close()
    return out


def test_hot_keys_are_written_to_every_replica_and_read_from_all_of_them(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    hot = ["usr_00000", "usr_00001"]
    path = tmp_path / "hot.yml"
    path.write_text("replicas: 2\nkeys:\n  user: [usr_00000, usr_00001]\n")
    namespace = f"t{uuid.uuid4().hex[:8]}"
    # written before the keys were declared hot: the replicas do not exist yet
    plain = open_store(f"{cluster.url}?namespace={namespace}")
    plain.initialize()
    plain.write([record(u, 1) for u in USERS[:50]], now=NOW)
    plain.close()
    store = open_store(f"{cluster.url}?namespace={namespace}&hot_keys={path}")
    assert isinstance(store, RedisClusterStore)
    admin = store.client
    try:
        # a replica not written yet: read from the key itself (never a wrong NOT_FOUND)
        for _ in range(6):
            assert [value(f) for f in read_async(store, hot)] == [1, 1]
        assert store.write([record(u, 2) for u in USERS[:50]], now=NOW).written == 50
        assert store.write([record(u, 1) for u in hot], now=NOW).skipped_older == 2
        for user in hot:
            primary = redis_key("user", (user,), namespace)
            copies = replica_keys(primary, 2)
            stored = admin.hgetall(primary)
            assert stored[b"n"] == b"2"
            assert all(admin.hgetall(copy) == stored for copy in copies)  # newer wins on each
            owners = {own_cluster_owner(cluster, k) for k in (primary, *copies)}
            assert len(owners) == 3  # the key and its replicas on three masters
        before = commandstats(cluster, "hmget")
        for _ in range(60):
            assert [value(f) for f in read_async(store, hot[:1])] == [2]
        after = commandstats(cluster, "hmget")
        spread = sorted(after[port] - before[port] for port in after)
        assert sum(spread) == 60 and spread[0] >= 5, spread  # every master took some reads
    finally:
        store.close()


def own_cluster_owner(cluster: RedisClusterServers, key: str) -> int:
    return cluster.owner_of(key_slot(key))
