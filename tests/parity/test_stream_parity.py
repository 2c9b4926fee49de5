"""Training-serving parity with the stream worker, through each source.

A batch load at ``C0`` (a whole hour) fills the store; then the demo's transactions, in
ingestion order with the data's own disorder (late, skewed, duplicated events), are replayed
through a source into the real worker (``featurestore stream``) up to ``X`` (not a whole
hour). For random entities of the streamed views and times ``T >= X`` (random, tile edges,
leave instants), three independent answers must agree:

* the sidecar's value at ``T`` (batch tiles at ``C0`` plus the stream's partials after it);
* ``get_historical_features`` at ``T`` on a warehouse holding the events ingested up to X;
* the brute-force rule over those raw events (tests/parity/test_parity.py).

Sources: a file into SQLite, Redis Streams into Redis, Kafka (mock cluster) into Redis.
Under ``--late-policy reject`` the sidecar equals the rule over the events minus the rejected
ones; then a batch built from the worker's landing (what the stream saw, late sink included)
and loaded at the next hour heals the difference: equal to the rule over all events again.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis as redis_client

from featurestore.clock import ManualClock
from featurestore.historical import get_historical_features
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView, Registry, load_registry
from sidecar.auth import unscoped_key
from sidecar.settings import Settings
from tests.feature_reference import dedupe_transactions, read_rows
from tests.parity.test_parity import _cut, _same, _times, windowed_value
from tests.servers import KafkaMock, RedisServer, kafka_mock
from tests.sidecar.harness import API_KEY, serving_in_process
from tests.stores import store_url
from tests.stream.replay import FEATURESTORE, as_json, demo_rows, run_stream, stream_command
from tests.warehouse import REPO, Warehouse

#: one xdist worker runs the module (``--dist loadgroup``): its warehouses are built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("stream-parity")]

C0 = dt.datetime(2026, 4, 20, 0, 0, 0)
X = dt.datetime(2026, 4, 21, 6, 30, 0)
C1 = dt.datetime(2026, 4, 21, 7, 0, 0)
STREAMED = ("user_transaction_features", "merchant_transaction_features")
KEYS_PER_VIEW = 20
EPOCH = dt.datetime(1970, 1, 1)
US = 1_000_000


def _us(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _build(root: Path, name: str, raw: Path, as_of: dt.datetime) -> Warehouse:
    warehouse = Warehouse(root / name, raw_path=raw)
    warehouse.workdir.mkdir(parents=True)
    warehouse.dbt("build", "--vars", f"{{online_as_of: '{as_of:%Y-%m-%d %H:%M:%S}'}}")
    return warehouse


@dataclass
class Setting:
    root: Path
    batch: Warehouse  # events ingested up to C0, online models at C0
    at_x: Warehouse  # events ingested up to X: what training sees
    raw_x: Path
    registry: Registry
    rows: list[dict[str, Any]]  # the stream: every raw transaction ingested up to X
    events: list[dict[str, Any]]  # deduplicated, for the brute force
    views: list[FeatureView]
    keys: dict[str, list[tuple[str, ...]]]
    times: list[int]
    #: (view, key, time, feature) -> get_historical_features' value
    offline: dict[tuple[str, tuple[str, ...], int, str], object]


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    root = tmp_path_factory.mktemp("stream-parity")
    raw_c0, raw_x = root / "raw-c0", root / "raw-x"
    _cut(REPO / "data" / "demo", raw_c0, C0)
    _cut(REPO / "data" / "demo", raw_x, X)
    batch = _build(root, "warehouse-c0", raw_c0, C0)
    at_x = _build(root, "warehouse-x", raw_x, X)
    registry = load_registry(at_x.target_path / "manifest.json")
    views = [registry.view(name) for name in STREAMED]
    events = [tx.__dict__ for tx in dedupe_transactions(read_rows(raw_x, "transactions")).values()]
    rng = random.Random(11)
    keys: dict[str, list[tuple[str, ...]]] = {}
    for view in views:
        known = [
            tuple(str(v) for v in row)
            for row in at_x.query(f"select distinct {', '.join(view.keys)} from {view.relation}")
        ]
        keys[view.name] = [*rng.sample(sorted(known), KEYS_PER_VIEW), ("nobody",)]

    @dataclass
    class _Cut:
        cutoff: dt.datetime

    times = _times(_Cut(X), views, events)  # type: ignore[arg-type]
    offline: dict[tuple[str, tuple[str, ...], int, str], object] = {}
    with pytest.MonkeyPatch.context() as patch:
        at_x.use(patch)
        for view in views:
            pairs = [(key, t) for t in times for key in keys[view.name]]
            spine = pd.DataFrame(
                {
                    **{k: [key[i] for key, _ in pairs] for i, k in enumerate(view.keys)},
                    "event_timestamp": [EPOCH + dt.timedelta(microseconds=t) for _, t in pairs],
                }
            )
            training = get_historical_features(spine, list(view.feature_names()))
            for row, (key, t) in enumerate(pairs):
                for feature in view.feature_names():
                    value = training[feature].iloc[row]
                    offline[(view.name, key, t, feature)] = None if pd.isna(value) else value
    rows = [r for r in demo_rows() if r["ingested_at"] <= X]
    yield Setting(root, batch, at_x, raw_x, registry, rows, events, views, keys, times, offline)


def _load(warehouse: Warehouse, url: str, at: dt.datetime) -> None:
    proc = subprocess.run(
        [FEATURESTORE, "load", "--online", url, "--now", _iso(at)],
        cwd=REPO,
        env={**os.environ, **warehouse.env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _check(
    setting: Setting,
    url: str,
    events: list[dict[str, Any]],
    times: list[int],
    *,
    offline: bool,
) -> int:
    """The sidecar at each time equals the brute force over ``events`` (and, if
    ``offline``, ``get_historical_features``); returns how many values were compared."""
    registry = setting.registry
    clock = ManualClock(X.replace(tzinfo=dt.UTC))
    settings = Settings(
        online_url=url, api_keys=(unscoped_key("t", API_KEY),), store_timeout_s=5.0,
        gc_full_interval_s=0,
    )  # fmt: skip
    checked = 0
    with ExitStack() as stack:
        server = stack.enter_context(serving_in_process(settings, registry, open_store(url), clock))
        client = stack.enter_context(server.client())
        for t in times:
            clock.set((EPOCH + dt.timedelta(microseconds=t)).replace(tzinfo=dt.UTC))
            for view in setting.views:
                keys = setting.keys[view.name]
                features = list(view.feature_names())
                response = client.post(
                    "/api/v1/features/retrieve",
                    json={"entity_name": view.entity.name, "entity_keys": [k[0] for k in keys],
                          "features": features},
                )  # fmt: skip
                assert response.status_code == 200, response.text
                for key, result in zip(keys, response.json()["results"], strict=True):
                    for feature in features:
                        brute = windowed_value(view, feature, key, t, events)
                        default = registry.features[feature].default
                        served = result["features"][feature].get("value")
                        what = (view.name, key, feature, EPOCH + dt.timedelta(microseconds=t))
                        assert _same(served, default if brute is None else brute), (
                            *what, "served", served, brute,
                        )  # fmt: skip
                        if offline:
                            value = setting.offline[(view.name, key, t, feature)]
                            assert _same(value, brute), (*what, "training", value, brute)
                        checked += 1
    return checked


# -- the sources ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaMock]:
    with kafka_mock() as cluster:
        yield cluster


def _source(kind: str, setting: Setting, tmp: Path, redis: RedisServer | None,
            kafka: KafkaMock | None) -> str:  # fmt: skip
    """A source holding the stream, as ``featurestore stream --source`` takes it."""
    tag = f"tx{uuid.uuid4().hex[:8]}"
    if kind == "file":
        path = tmp / "events.jsonl"
        path.write_bytes(b"".join(as_json(r) + b"\n" for r in setting.rows))
        return f"file://{path}"
    if kind == "redis-streams":
        assert redis is not None
        client = redis_client.Redis(port=redis.port)
        pipe = client.pipeline(transaction=False)
        for row in setting.rows:
            pipe.xadd(tag, {"event": as_json(row)})
        pipe.execute()
        return f"redis-streams://127.0.0.1:{redis.port}/{tag}?group=parity"
    assert kafka is not None
    kafka.produce(tag, [((r["user_id"] or "").encode(), as_json(r)) for r in setting.rows])
    return f"kafka://{kafka.bootstrap}/{tag}?group=parity"


CASES = [("file", "sqlite"), ("redis-streams", "redis"), ("kafka", "redis")]


@pytest.mark.parametrize(("source_kind", "store_kind"), CASES, ids=[c[0] for c in CASES])
def test_served_after_the_stream_equals_training_and_the_rule(
    source_kind: str,
    store_kind: str,
    setting: Setting,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = store_url(store_kind, request, tmp_path)
    with open_store(url) as store:
        store.initialize()
    _load(setting.batch, url, C0)
    redis = request.getfixturevalue("redis") if source_kind == "redis-streams" else None
    kafka = request.getfixturevalue("kafka") if source_kind == "kafka" else None
    source = _source(source_kind, setting, tmp_path, redis, kafka)
    # (a Kafka consumer group takes seconds to join and settle: a longer idle time)
    idle = "12s" if source_kind == "kafka" else "3s"
    manifest = setting.at_x.target_path / "manifest.json"
    run_stream(
        stream_command(source, url, tmp_path / "land", manifest, _iso(X), "--stop-when-idle", idle)
    )
    checked = _check(setting, url, setting.events, setting.times, offline=True)
    assert checked > 2 * len(setting.times) * KEYS_PER_VIEW


def test_reject_policy_skews_until_the_batch_heals_it(
    setting: Setting, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = store_url("sqlite", request, tmp_path)
    with open_store(url) as store:
        store.initialize()
    _load(setting.batch, url, C0)
    land = tmp_path / "land"
    source = _source("file", setting, tmp_path, None, None)
    manifest = setting.at_x.target_path / "manifest.json"
    run_stream(
        stream_command(
            source,
            url,
            land,
            manifest,
            _iso(X),
            "--late-policy",
            "reject",
            "--stop-when-idle",
            "3s",
        )
    )
    late = pd.read_parquet(land / "transactions_late")
    late = late[(late["reason"] == "late: rejected") & (late["ingested_at"] > C0)]
    # the batch at C0 counts every event ingested by then, rejected or not: the skew is
    # the rejected events the stream owns
    rejected = set(late["transaction_id"])
    assert rejected
    kept = [tx.__dict__ for tx in dedupe_transactions(
        [r for r in setting.rows if r["transaction_id"] not in rejected]).values()]  # fmt: skip
    # skewed: what the stream applied, not what training counts
    _check(setting, url, kept, setting.times, offline=False)
    # the batch over the worker's landing (what the stream saw, the late sink's events too)
    raw = tmp_path / "raw-healed"
    shutil.copytree(setting.raw_x, raw, ignore=shutil.ignore_patterns("transactions"))
    shutil.copytree(land / "transactions", raw / "transactions")
    healed = _build(tmp_path, "warehouse-healed", raw, C1)
    _load(healed, url, C1)
    after = [t for t in setting.times if t >= _us(C1)]
    assert len(after) > 5
    _check(setting, url, setting.events, after, offline=True)


def test_a_load_while_the_stream_writes_the_same_views(
    setting: Setting, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The nightly load of C0 runs while events keep coming and the worker streams them into
    the same views (Redis): neither clobbers the other, the served values are exact."""
    import threading

    redis = request.getfixturevalue("redis")
    url = store_url("redis", request, tmp_path)
    with open_store(url) as store:
        store.initialize()
    stream = f"tx{uuid.uuid4().hex[:8]}"
    client = redis_client.Redis(port=redis.port)
    client.xgroup_create(stream, "parity", id="0", mkstream=True)
    rows = setting.rows

    def produce() -> None:  # the events arrive over ~20 s, in chunks
        for begin in range(0, len(rows), len(rows) // 50 + 1):
            pipe = client.pipeline(transaction=False)
            for row in rows[begin : begin + len(rows) // 50 + 1]:
                pipe.xadd(stream, {"event": as_json(row)})
            pipe.execute()
            time.sleep(0.4)

    producer = threading.Thread(target=produce)
    producer.start()
    source = f"redis-streams://127.0.0.1:{redis.port}/{stream}?group=parity"
    manifest = setting.at_x.target_path / "manifest.json"
    worker = subprocess.Popen(
        stream_command(source, url, tmp_path / "land", manifest, _iso(X), "--stop-when-idle", "3s"),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _load(setting.batch, url, C0)  # while events come and the worker writes
        overlapped = producer.is_alive() or worker.poll() is None
        producer.join()
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    finally:
        producer.join()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert overlapped, "the stream was over before the load ended: no overlap"
    _check(setting, url, setting.events, setting.times, offline=True)
