"""Crash safety of the loader: a real `featurestore load` process is killed with SIGKILL in
the middle of writing, against a real redis-server and a SQLite file. At that moment every
record in the store must be whole (all of one version of the row, never a mix), the
watermark must not have moved and no load may be recorded; after a rerun the store's full
contents (every key and field, watermarks) must equal those of clean loads of the same data
into a fresh store.

The data: an online table of the hand-written view ``merchant_chargeback_features``
(generated in DuckDB) in two versions. v1 holds N merchants; v2 changes every v1 row (ten days
later, new values) and adds N/4 merchants interleaved with them. v1 is loaded cleanly,
then the load of v2 is killed and rerun: incrementally (newer wins), and as a full refresh
(replace mode, the repair of a view), where a killed full refresh run again must equal one
clean full refresh.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis as redis_py

from featurestore.online.store import OnlineStore, ViewRead
from featurestore.online.urls import open_store
from featurestore.registry import load_registry
from tests.servers import RedisServer
from tests.warehouse import REPO, Warehouse

if importlib.util.find_spec("loader") is None:  # an install from before loader/ existed
    sys.path.insert(0, str(REPO))
from loader import load, plan_views

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
VIEW = "merchant_chargeback_features"  # hand-written: one row per merchant here
ENTITY = "merchant"
N = 48_000  # v1 merchants; v2 adds N / 4 (merchants i with i % 5 == 4)
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
V2_FROM = dt.datetime(2026, 4, 10)  # every v2 feature time is after this, every v1 one before


def write_table(path: Path, version: int) -> None:
    """The online relation: v1 = merchants i < 1.25 N with i % 5 != 4, v2 = all of them
    (feature times 2026-04-05 + i s in v1, 2026-04-15 + i s in v2: within the 30-day TTL)."""
    total = N * 5 // 4
    day = "0" if version == 1 else "10"
    where = "where i % 5 != 4" if version == 1 else ""
    shift = 0 if version == 1 else 1000
    with duckdb.connect(str(path)) as con:
        con.sql("create schema if not exists main_online")
        con.sql(
            f"""
            create or replace table main_online.online_{VIEW} as
            select 'mer_' || lpad(cast(i as varchar), 7, '0') as merchant_id,
                   timestamp '2026-05-01' as as_of_at,
                   case when i % 11 = 0 then null
                        else cast((i * 3 + {shift}) % 97 as double) / 128 end
                       as merchant_chargeback_rate_30d,
                   timestamp '2026-04-05' + to_days({day}) + to_seconds(i) as {VIEW}__feature_at,
                   timestamp '2026-04-05' + to_days({day}) + to_seconds(i + 60) as {VIEW}__as_of_at,
                   timestamp '2026-04-05' + to_days({day}) + to_seconds(i + 60)
                       as {VIEW}__changed_at
            from range({total}) as r(i) {where} order by i
            """
        )


def expected_values(merchant: str, version: int) -> dict[str, object]:
    """A merchant's values in a version, computed in Python."""
    i = int(merchant[4:])
    shift = 0 if version == 1 else 1000
    return {"merchant_chargeback_rate_30d": None if i % 11 == 0 else ((i * 3 + shift) % 97) / 128}


def run_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FEATURESTORE, "load", "--views", VIEW, "--batch-rows", "500",
         "--now", "2026-05-01T00:00:00Z", *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def kill_mid_load(proc: subprocess.Popen[str], progress: Callable[[], int], total: int) -> int:
    """SIGKILL the load once between 10% and 80% of `total` v2 records are written."""
    deadline = time.monotonic() + 300
    seen = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the load ended before it was killed ({seen}/{total}):\n{err[-3000:]}")
        seen = progress()
        if total // 10 <= seen <= total * 8 // 10:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return seen
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the load did not progress")


class Target:
    """One store under test and how to read all of it back."""

    def __init__(self, kind: str, url: str, server: RedisServer | None, path: Path | None):
        self.kind, self.url, self.server, self.path = kind, url, server, path

    def open(self) -> OnlineStore:
        store = open_store(self.url)
        store.initialize()
        return store

    def v2_records(self) -> int:
        """How many v2 records are in the store (cheap enough to poll)."""
        if self.path is not None:
            with sqlite3.connect(self.path) as con:
                cutoff = int((V2_FROM - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
                row = con.execute(
                    "select count(*) from online_records where ts >= ?", (cutoff,)
                ).fetchone()
            return int(row[0])
        assert self.server is not None
        db = int(self.url.split("?")[0].rsplit("/", 1)[1])
        client = redis_py.Redis(port=self.server.port, db=db)
        size = int(client.dbsize())
        client.close()
        # N v1 hashes and 2 bookkeeping keys; each new key is a v2 merchant (1 in 5 of them)
        return max(size - N - 2, 0) * 5

    def contents(self) -> dict[str, Any]:
        """Everything the store holds but the load log (whose ids and times differ)."""
        if self.path is not None:
            with sqlite3.connect(self.path) as con:
                records = con.execute(
                    "select entity, entity_key, view, ts, ver, exp, payload "
                    "from online_records order by entity, entity_key, view"
                ).fetchall()
                marks = con.execute("select * from loader_watermarks order by view").fetchall()
            return {"records": records, "watermarks": marks}
        assert self.server is not None
        db = int(self.url.split("?")[0].rsplit("/", 1)[1])
        client = redis_py.Redis(port=self.server.port, db=db)
        keys = sorted(k for k in client.scan_iter(count=5000) if not k.endswith(b":_meta:loads"))
        pipe = client.pipeline(transaction=False)
        for key in keys:  # merchant hashes and the watermark hash
            pipe.hgetall(key)
            pipe.pexpiretime(key)
        replies = pipe.execute()
        client.close()
        hashes = {key: replies[2 * n] for n, key in enumerate(keys)}
        expiry = {key: replies[2 * n + 1] for n, key in enumerate(keys)}
        return {"hashes": hashes, "expiry": expiry}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["incremental", "full-refresh"])
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_kill_9_mid_load_then_rerun_equals_one_clean_load(
    kind: str,
    mode: str,
    demo_warehouse: Warehouse,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    v1, v2 = tmp_path / "v1" / "warehouse.duckdb", tmp_path / "v2" / "warehouse.duckdb"
    for version, path in ((1, v1), (2, v2)):
        path.parent.mkdir()
        write_table(path, version)
    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    sources = plan_views(registry, [VIEW])

    def target(name: str) -> Target:
        if kind == "sqlite":
            path = tmp_path / f"{name}.db"
            return Target(kind, f"sqlite:///{path}", None, path)
        server: RedisServer = request.getfixturevalue("redis")
        db = {"crashed": 1, "clean": 2}[name]
        client = redis_py.Redis(port=server.port, db=db)
        client.flushdb()
        client.close()
        return Target(kind, f"redis://127.0.0.1:{server.port}/{db}?namespace=crash", server, None)

    crashed, clean = target("crashed"), target("clean")
    # v1, loaded cleanly
    store = crashed.open()
    first = load(store, v1, sources, now=NOW)
    assert first.exit_code == 0 and first.views[0].rows_written == N
    watermark_v1 = store.get_watermark(VIEW)
    store.close()

    # v2: killed in the middle of writing
    env = {
        **demo_warehouse.env,
        "FEATURESTORE_DUCKDB_PATH": str(v2),
        "FEATURESTORE_ONLINE_URL": crashed.url,
    }
    total_v2 = N * 5 // 4
    full_refresh = mode == "full-refresh"
    args = ["--full-refresh"] if full_refresh else []
    started = time.monotonic()
    seen = kill_mid_load(run_cli(env, *args), crashed.v2_records, total_v2)
    store = crashed.open()
    try:
        assert store.get_watermark(VIEW) == watermark_v1  # not advanced
        assert [(r.view, r.rows_written) for r in store.list_loads()] == [(VIEW, N)]
        merchants = [(f"mer_{i:07d}",) for i in range(total_v2)]
        view = registry.view(VIEW)
        read = ViewRead(VIEW, {f.name: f.value_type for f in view.features})
        versions = {1: 0, 2: 0, 0: 0}
        for start in range(0, total_v2, 2000):
            chunk = merchants[start : start + 2000]
            read_back = store.read(ENTITY, chunk, [read], now=NOW)
            for (merchant,), got in zip(chunk, read_back, strict=True):
                record = got[VIEW]
                i = int(merchant[4:])
                if record is None:
                    assert i % 5 == 4, f"{merchant} lost its v1 record"
                    versions[0] += 1
                    continue
                version = 2 if record.ts >= int(V2_FROM.timestamp()) * 1_000_000 else 1
                assert version == 2 or i % 5 != 4
                # whole: the values belong to the same version as the timestamps
                assert record.values == expected_values(merchant, version), (merchant, record)
                base = dt.datetime(2026, 4, 5 if version == 1 else 15) + dt.timedelta(seconds=i)
                assert record.ts == int(base.replace(tzinfo=dt.UTC).timestamp()) * 1_000_000
                assert record.ver == record.ts + 60_000_000
                versions[version] += 1
        assert versions[2] >= seen > 0 and versions[1] > 0, versions  # killed mid-way
    finally:
        store.close()

    # rerun: converges, skipping what the killed run had written (replace mode: rewriting it)
    rerun = run_cli(env, *args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    (end,) = [json.loads(line) for line in err.splitlines() if '"view.end"' in line]
    assert end["rows_read"] == total_v2
    assert end["rows_written"] + end["rows_skipped"] == total_v2
    if full_refresh:
        assert end["rows_written"] == total_v2
    else:
        assert end["rows_skipped"] >= versions[2] > 0 and end["rows_written"] > 0

    # the reference: clean loads of v1 then v2 into a fresh store
    store = clean.open()
    assert load(store, v1, sources, now=NOW).exit_code == 0
    second = load(store, v2, sources, now=NOW, full_refresh=full_refresh)
    assert second.views[0].rows_written == total_v2
    store.close()
    elapsed = time.monotonic() - started

    got, want = crashed.contents(), clean.contents()
    if kind == "sqlite":
        assert len(want["records"]) == total_v2
        assert got == want
    else:
        assert len(want["hashes"]) == total_v2 + 1  # + the watermark hash
        assert got["hashes"] == want["hashes"]
        # key expiry follows the wall clock (see redis_store): equal up to the time between
        # the writes
        for key, when in want["expiry"].items():
            if b":_meta:" in key:
                continue
            assert when > 0 and abs(got["expiry"][key] - when) <= (elapsed + 2) * 1000, key
