"""A master of a real local Redis Cluster killed (SIGKILL) in the middle of a real
``featurestore load`` process: the load either rides out the failover and finishes, or fails
cleanly (an error message, no traceback, the watermark not moved); a re-run then leaves the
store equal, key for key and field for field, to a clean load of the same data into a fresh
namespace. The data: an online table of ``merchant_chargeback_features`` of 15,000 merchants,
generated in DuckDB as the crash suite's (tests/loader/test_crash.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis as redis_py

from featurestore.online.urls import open_store
from featurestore.registry import load_registry
from loader import load, plan_views
from tests.loader.test_crash import NOW, VIEW, run_cli
from tests.servers import RedisClusterServers, redis_cluster
from tests.warehouse import Warehouse

pytestmark = pytest.mark.xdist_group("cluster-failover")

TOTAL = 15_000


def write_table(path: Path) -> None:
    """``online_merchant_chargeback_features``: TOTAL merchants, feature times in April 2026
    (within the view's TTL at NOW), every 11th rate null."""
    with duckdb.connect(str(path)) as con:
        con.sql("create schema main_online")
        con.sql(
            f"""
            create table main_online.online_{VIEW} as
            select 'mer_' || lpad(cast(i as varchar), 7, '0') as merchant_id,
                   timestamp '2026-05-01' as as_of_at,
                   case when i % 11 = 0 then null else cast(i % 97 as double) / 128 end
                       as merchant_chargeback_rate_30d,
                   timestamp '2026-04-15' + to_seconds(i) as {VIEW}__feature_at,
                   timestamp '2026-04-15' + to_seconds(i + 60) as {VIEW}__as_of_at,
                   timestamp '2026-04-15' + to_seconds(i + 60) as {VIEW}__changed_at
            from range({TOTAL}) as r(i) order by i
            """
        )


def keys_on_masters(cluster: RedisClusterServers) -> int:
    total = 0
    for port in cluster.masters():
        client = redis_py.Redis(port=port, socket_timeout=2)
        try:
            total += int(client.dbsize())
        except redis_py.RedisError:
            pass  # a master just killed: counted again once its replica is promoted
        finally:
            client.close()
    return total


def contents(cluster: RedisClusterServers, namespace: str) -> dict[str, Any]:
    """Every hash of the namespace (name without the namespace) and whether its key expires,
    but the load log (whose ids and times differ), read from every live master. (The key's
    expiry time itself is shifted by the wall clock of the write, a replayed ``--now``: the
    true expiry is the ``_exp`` field, compared with the rest of the hash.)"""
    out: dict[str, Any] = {}
    for port in cluster.masters():
        client = redis_py.Redis(port=port)
        for key in client.scan_iter(match=f"{namespace}:*", count=5000):
            if key.endswith(b":_meta:loads"):
                continue
            name = key.decode()[len(namespace) + 1 :]
            out[name] = (client.hgetall(key), client.pexpiretime(key) > 0)
        client.close()
    return out


def test_a_master_killed_mid_load_then_a_rerun_equals_a_clean_load(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    table = tmp_path / "warehouse.duckdb"
    write_table(table)
    with redis_cluster(tmp_path / "cluster") as cluster:
        crashed = f"{cluster.url}?namespace=crashed"
        env = {
            **demo_warehouse.env,
            "FEATURESTORE_DUCKDB_PATH": str(table),
            "FEATURESTORE_ONLINE_URL": crashed,
        }
        proc = run_cli(env, "--log-format", "json")
        deadline = time.monotonic() + 120
        while keys_on_masters(cluster) < TOTAL // 5:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the load did not progress"
            time.sleep(0.01)
        assert keys_on_masters(cluster) < TOTAL * 4 // 5  # killed mid-way
        cluster.wait_replicas_in_sync()
        victim = cluster.masters()[0]
        cluster.node(victim).kill()
        _, err = proc.communicate(timeout=180)
        # rode out the failover (exit 0), or failed cleanly: a message, no traceback
        assert "Traceback" not in err, err[-3000:]
        if proc.returncode != 0:
            assert "Redis Cluster" in err or "cluster" in err.lower(), err[-3000:]
        cluster.wait_failed_over(victim)
        print(f"the killed load exited {proc.returncode}: {err.strip().splitlines()[-1][:300]}")

        rerun = run_cli(env, "--log-format", "json")
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-3000:]

        registry = load_registry(demo_warehouse.target_path / "manifest.json")
        store = open_store(f"{cluster.url}?namespace=clean")
        store.initialize()
        try:
            report = load(store, table, plan_views(registry, [VIEW]), now=NOW)
        finally:
            store.close()
        assert report.exit_code == 0
        got, want = contents(cluster, "crashed"), contents(cluster, "clean")
        assert len(want) == TOTAL + 1  # every merchant and the watermark hash
        assert got == want
