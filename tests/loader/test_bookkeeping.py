"""A load whose bookkeeping cannot be written fails, loudly: against a real read-only Redis
replica (a redis-server made the replica of another with REPLICAOF) the `featurestore load`
command exits 4 with a one-line ERROR naming the store and the cause, whether it had rows
to write or only its watermark and load record; the primary's data is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from featurestore.exit_codes import ExitCode
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from loader import load, plan_views
from tests.loader.tables import NOW, VIEW, key_rows, write_rows
from tests.servers import redis_server
from tests.warehouse import REPO, Warehouse

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")


def wait_for_sync(replica: redis_py.Redis, key: str) -> None:
    deadline = time.monotonic() + 30
    while replica.info("replication").get("master_link_status") != "up" or not replica.exists(key):
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)


def run_load(env: dict[str, str], url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEATURESTORE, "load", "--online", url, "--views", VIEW, "--now", "2026-05-01", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow
def test_a_read_only_replica_fails_the_load(
    demo_warehouse: Warehouse, registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "merchants.duckdb"
    rows = key_rows(10)
    write_rows(path, rows)
    env = {
        **os.environ,
        **demo_warehouse.env,
        "FEATURESTORE_DUCKDB_PATH": str(path),
        "PYTHONPATH": str(REPO),
    }
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica") as replica_server,
    ):
        with open_store(primary.url) as store:
            first = load(store, path, plan_views(registry, [VIEW]), now=NOW)
            assert first.exit_code == ExitCode.OK
            watermark = store.get_watermark(VIEW)
        replica = redis_py.Redis(port=replica_server.port)
        replica.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        wait_for_sync(replica, "fs:_meta:watermarks")
        assert replica.config_get("replica-read-only") == {"replica-read-only": "yes"}
        url = replica_server.url

        # nothing new to write: only the load record is written, and refused
        nothing = run_load(env, url)
        # rows to write (a full refresh): the first write is refused
        rows_to_write = run_load(env, url, "--full-refresh")
        for proc in (nothing, rows_to_write):
            assert proc.returncode == ExitCode.STORE_UNAVAILABLE, (proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr
            logged = lines(proc.stderr)
            (end,) = [line for line in logged if line["event"] == "view.end"]
            assert (end["level"], end["outcome"]) == ("ERROR", "failed")
            (error,) = [line for line in logged if line["event"] == "load.error"]
            assert error["exit_code"] == ExitCode.STORE_UNAVAILABLE
            message = error["message"]
            assert "\n" not in message
            assert f"redis://127.0.0.1:{replica_server.port}/0" in message
            assert "READONLY: the store is a read-only replica" in message
            total = next(line for line in logged if line["event"] == "load.total")
            assert (total["level"], total["exit_code"]) == ("ERROR", 4)
        assert "load record could not be kept" in lines(nothing.stderr)[-1]["message"]

        # the primary (and so the replica) holds what the first load left
        with open_store(primary.url) as store:
            assert store.get_watermark(VIEW) == watermark
            assert [r.outcome for r in store.list_loads()] == ["success"]
        replica.close()
