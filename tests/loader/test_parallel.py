"""Loads run by several processes (``load(..., processes=N)``, ``featurestore load
--processes N``) against a real DuckDB file, a real redis-server and SQLite files: the store
they leave equals a one-process load's, key for key and field for field; the parts are
disjoint and cover the view; a part that fails or is rejected fails the view without moving
its watermark, and a re-run converges."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from featurestore.exit_codes import ExitCode
from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from loader import load, plan_views
from loader.errors import LoaderError, WarehouseError
from loader.warehouse import Partition
from tests.loader.tables import FEATURE, NOW, VIEW, key_of, key_rows, write_rows
from tests.servers import RedisServer
from tests.warehouse import REPO, Warehouse

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
ROWS = 3000


class Stores:
    """Fresh stores of one kind (Redis databases of one server, or SQLite files) and how to
    read everything one holds back, load log aside (its ids and times differ)."""

    def __init__(self, kind: str, tmp_path: Path, server: RedisServer | None) -> None:
        self.kind, self.tmp_path, self.server = kind, tmp_path, server
        self.made = 0

    def url(self) -> str:
        self.made += 1
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp_path / f'store{self.made}.db'}"
        assert self.server is not None
        client = redis_py.Redis(port=self.server.port, db=self.made)
        client.flushdb()
        client.close()
        return f"redis://127.0.0.1:{self.server.port}/{self.made}?namespace=par"

    def contents(self, url: str) -> dict[str, Any]:
        """Every record (Redis: every hash and whether its key expires) and watermark."""
        if self.kind == "sqlite":
            with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
                records = con.execute(
                    "select entity, entity_key, view, ts, ver, exp, payload, timeline "
                    "from online_records order by entity, entity_key, view"
                ).fetchall()
                marks = con.execute("select * from loader_watermarks order by view").fetchall()
            return {"records": records, "watermarks": marks}
        assert self.server is not None
        db = int(url.split("?")[0].rsplit("/", 1)[1])
        client = redis_py.Redis(port=self.server.port, db=db)
        keys = sorted(k for k in client.scan_iter(count=5000) if not k.endswith(b":_meta:loads"))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
            pipe.pexpiretime(key)
        replies = pipe.execute()
        client.close()
        # a key's expiry (ms) is shifted by the wall clock's distance to the pinned now
        # (redis_store.py, "Key expiry and now"): loads a few seconds apart differ by that,
        # so only whether it expires is compared (the true expiry is the hash's _exp field)
        return {key: (replies[2 * n], replies[2 * n + 1] > 0) for n, key in enumerate(keys)}


@pytest.fixture(params=["redis", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    server = request.getfixturevalue("redis") if request.param == "redis" else None
    return Stores(request.param, tmp_path, server)


def opened(url: str) -> OnlineStore:
    store = open_store(url)
    store.initialize()
    return store


def run_load(
    registry: Registry, url: str, path: Path, processes: int, **options: Any
) -> tuple[Any, int | None, list[Any]]:
    """One load of the view; (its report, the watermark after, the load log)."""
    with opened(url) as store:
        report = load(
            store,
            path,
            plan_views(registry, [VIEW]),
            now=NOW,
            processes=processes,
            store_factory=functools.partial(open_store, url),
            **options,
        )
        return report, store.get_watermark(VIEW), store.list_loads()


def test_two_processes_leave_the_store_one_process_leaves(
    registry: Registry, stores: Stores, tmp_path: Path
) -> None:
    first, second = tmp_path / "v1.duckdb", tmp_path / "v2.duckdb"
    write_rows(first, key_rows(ROWS))
    # later: every row changed, and more merchants
    write_rows(second, key_rows(ROWS + ROWS // 3, day=25, shift=3))
    one, two = stores.url(), stores.url()
    for path, total in ((first, ROWS), (second, ROWS + ROWS // 3)):
        ones, mark_one, _ = run_load(registry, one, path, 1)
        twos, mark_two, log = run_load(registry, two, path, 2)
        (single,), (split,) = ones.views, twos.views
        assert (split.outcome, twos.exit_code) == ("success", ExitCode.OK), split.message
        # every row read once (the parts cover the view, disjoint: nothing written twice,
        # which newer-wins would have counted as skipped)
        assert (split.rows_read, split.rows_written, split.rows_skipped) == (total, total, 0)
        assert (split.rows_read, split.rows_written) == (single.rows_read, single.rows_written)
        assert mark_two == mark_one is not None
        assert (log[0].outcome, log[0].rows_written, log[0].watermark_after) == (
            "success",
            total,
            mark_one,
        )
        assert stores.contents(two) == stores.contents(one)
    # nothing new: an incremental load by two processes reads nothing
    again, mark, _ = run_load(registry, two, second, 2)
    assert (again.views[0].rows_read, mark) == (0, mark_one)


def test_the_parts_are_disjoint_and_cover_the_relation(tmp_path: Path, registry: Registry) -> None:
    from loader import DuckDBWarehouse

    path = tmp_path / "v1.duckdb"
    write_rows(path, key_rows(ROWS))
    (source,) = plan_views(registry, [VIEW])
    seen: list[list[str]] = []
    with DuckDBWarehouse(path) as warehouse:
        for index in range(3):
            batches = warehouse.batches(source, None, 500, Partition(index, 3))
            seen.append([key for b in batches for key in b.column("merchant_id").to_pylist()])
    keys = [key for part in seen for key in part]
    assert sorted(keys) == sorted(key_of(i) for i in range(ROWS))  # each key once
    assert all(len(part) > ROWS // 5 for part in seen)  # a hash spreads them
    for part in seen:
        assert part == sorted(part)  # still ordered by key within a part (the grouper's rule)
    with pytest.raises(WarehouseError, match="invalid partition 3 of 3"):
        Partition(3, 3)


@pytest.mark.parametrize("kind", ["redis"])
def test_a_failing_process_fails_the_load_and_a_rerun_converges(
    kind: str, registry: Registry, redis: RedisServer, tmp_path: Path
) -> None:
    stores = Stores(kind, tmp_path, redis)
    path = tmp_path / "v1.duckdb"
    write_rows(path, key_rows(ROWS))
    url, reference = stores.url(), stores.url()
    db = int(url.split("?")[0].rsplit("/", 1)[1])
    client = redis_py.Redis(port=redis.port, db=db)
    # one merchant's key is not a hash: the part holding it fails (WRONGTYPE), the other
    # part writes its records
    broken = f"par:merchant:{{{key_of(7)}}}"
    client.set(broken, "not a hash")
    report, watermark, log = run_load(registry, url, path, 2)
    (result,) = report.views
    assert (result.outcome, report.exit_code) == ("failed", ExitCode.ERROR)
    assert "WRONGTYPE" in result.message
    assert watermark is None  # not advanced
    assert [(r.outcome, r.watermark_after) for r in log] == [("failed", None)]
    # records written before the failure stay (the broken key and the load log aside)
    assert 0 < client.dbsize() - 2 < ROWS
    # repaired, run again: the store converges to one clean one-process load
    client.delete(broken)
    rerun, watermark, log = run_load(registry, url, path, 2)
    assert rerun.exit_code == ExitCode.OK and watermark is not None
    assert rerun.views[0].rows_written + rerun.views[0].rows_skipped == ROWS
    assert rerun.views[0].rows_skipped > 0
    run_load(registry, reference, path, 1)
    assert stores.contents(url) == stores.contents(reference)
    client.close()


def test_a_part_rejected_by_the_gate_rejects_the_view_and_nothing_is_written(
    registry: Registry, stores: Stores, tmp_path: Path
) -> None:
    path = tmp_path / "bad.duckdb"
    rows = key_rows(ROWS)
    bad = {11, 2222}  # rates out of [0, 1]: two rows, whatever part they fall in
    rows = [
        row if i not in bad else type(row)(row.key, row.feature_at, row.as_of_at, 1.5)
        for i, row in enumerate(rows)
    ]
    write_rows(path, rows)
    url = stores.url()
    report, watermark, log = run_load(registry, url, path, 2)
    (result,) = report.views
    assert (result.outcome, report.exit_code) == ("rejected", ExitCode.REJECTED)
    assert (result.rows_read, result.rows_written, result.rows_rejected) == (ROWS, 0, 2)
    (failure,) = result.failures  # one expectation, the parts' counts and samples merged
    assert failure.unexpected_count == 2
    assert {sample[FEATURE] for sample in failure.samples} == {1.5}
    assert watermark is None and [r.outcome for r in log] == ["rejected"]
    contents = stores.contents(url)
    if stores.kind == "sqlite":
        assert contents["records"] == []
    else:
        assert list(contents) == []  # no record, no watermark


def test_bad_process_counts_are_refused(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    write_rows(path, key_rows(10))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sources = plan_views(registry, [VIEW])
    factory: Callable[[], OnlineStore] = functools.partial(open_store, url)
    with opened(url) as store:
        for count in (0, -1, 65):
            with pytest.raises(LoaderError, match=f"processes must be from 1 to 64, got {count}"):
                load(store, path, sources, now=NOW, processes=count, store_factory=factory)
        with pytest.raises(LoaderError, match="needs a store_factory"):
            load(store, path, sources, now=NOW, processes=2)
        assert store.list_loads() == []


@pytest.mark.slow
def test_the_command_loads_with_processes(
    demo_warehouse: Warehouse, registry: Registry, redis: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "v1.duckdb"
    write_rows(path, key_rows(ROWS))
    stores = Stores("redis", tmp_path, redis)
    url, reference = stores.url(), stores.url()
    env = {
        **os.environ,
        **demo_warehouse.env,
        "FEATURESTORE_DUCKDB_PATH": str(path),
        "PYTHONPATH": str(REPO),
    }
    base = [FEATURESTORE, "load", "--online", url, "--views", VIEW, "--now", "2026-05-01"]
    refused = subprocess.run(
        [*base, "--processes", "0"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert refused.returncode == ExitCode.USAGE and "--processes" in refused.stderr
    done = subprocess.run(
        [*base, "--processes", "2"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert f"{ROWS} read" in done.stdout or f"{ROWS:,}" in done.stdout or str(ROWS) in done.stdout
    run_load(registry, reference, path, 1)
    assert stores.contents(url) == stores.contents(reference)
