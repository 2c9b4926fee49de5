"""The stream worker end to end (``featurestore stream`` as a process) on the demo's
transactions, against real components: a file and SQLite, a file and a local Redis Cluster,
Kafka's mock cluster and Redis, Redis Streams and Redis. After the stream, the store holds
exactly the partials the brute-force rule gives (tests/window_reference.py), every landed
event is landed once, and dead letters and late events are where they belong; also after
``kill -9`` at random moments, a dying worker in a group of three, and a store outage."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis as redis_client

from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from featurestore.timestamps import iso_micros
from tests.servers import KafkaMock, RedisClusterServers, RedisServer, kafka_mock, tcp_proxy
from tests.stream.replay import (
    as_json,
    demo_rows,
    expected_partials,
    last_ingested_us,
    run_stream,
    stored_partials,
    stream_command,
    write_jsonl,
)
from tests.warehouse import REPO
from tests.window_reference import MERCHANT_VIEW, USER_VIEW, to_us

pytestmark = pytest.mark.slow

#: the demo's transactions ingested up to a busy moment (the merchants' 1-hour windows hold
#: events then; at the data's very end they are empty)
ROWS = demo_rows()[: int(len(demo_rows()) * 0.9)]
MALFORMED = [
    b'{"transaction_id": "x"}',
    b"not json",
    as_json({**ROWS[0], "transaction_id": "bad-1", "amount": "abc"}),
]
VIEWS = [USER_VIEW, MERCHANT_VIEW]


def _now(rows: list[dict[str, Any]]) -> str:
    return iso_micros(last_ingested_us(rows))


def _check_store(store: OnlineStore, registry: Registry, rows: list[dict[str, Any]]) -> None:
    """The store's partials equal the reference's for every key of both views."""
    now_us = last_ingested_us(rows)
    for view in VIEWS:
        expected = expected_partials(view, registry.view(view.name), rows, now_us)
        keys = sorted(expected)
        got = stored_partials(store, registry.view(view.name), keys, now_us)
        assert len(keys) >= 3
        wrong = [k for k in keys if got.get(k) != expected[k]]
        assert not wrong, (view.name, len(wrong), wrong[:3])


def _landed(land: Path, folder: str) -> list[dict[str, Any]]:
    files = sorted((land / folder).glob("*.parquet"))
    if not files:
        return []
    with duckdb.connect() as con:
        table = con.sql(f"select * from read_parquet({[str(f) for f in files]!r})").arrow()
    return table.read_all().to_pylist() if hasattr(table, "read_all") else table.to_pylist()


def _valid_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the contract accepts (the demo has rows with a null user: refused? no: a
    null merchant is a null key of one view; a row needs an id, both times and one key)."""
    return [
        r
        for r in rows
        if r["transaction_id"] is not None
        and r["transacted_at"] is not None
        and r["ingested_at"] is not None
        and (r["user_id"] is not None or r["merchant_id"] is not None)
    ]


def _identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["transaction_id"], row["ingested_at"], row["transacted_at"], row["user_id"])


# -- file + SQLite -----------------------------------------------------------------------------


def test_file_into_sqlite_twice_in_two_halves(
    tmp_path: Path, project_manifest: Path, project_registry: Registry
) -> None:
    events, land = tmp_path / "events.jsonl", tmp_path / "raw"
    online = f"sqlite:///{tmp_path / 'online.db'}"
    half = len(ROWS) // 2
    write_jsonl(events, ROWS[:half], extra=MALFORMED)
    source = f"file://{events}"
    first = stream_command(
        source, online, land, project_manifest, _now(ROWS[:half]), "--stop-when-idle", "1s"
    )
    run_stream(first)  # its clock at the half's end: what has left every window is pruned
    with open_store(online) as store:
        _check_store(store, project_registry, ROWS[:half])
    write_jsonl(events, ROWS[half:])
    proc = run_stream(
        stream_command(source, online, land, project_manifest, _now(ROWS), "--stop-when-idle", "1s")
    )
    assert "assigned (committed offset" in proc.stderr
    with open_store(online) as store:
        _check_store(store, project_registry, ROWS)
        # the worker kept its partition's watermark for freshness (featurestore/freshness.py):
        # the second run's highest event time minus the 30 s out-of-orderness
        highest = max(to_us(row["transacted_at"]) for row in _valid_rows(ROWS[half:]))
        for view in VIEWS:
            assert store.stream_watermarks(view.name) == {"file": highest - 30_000_000}
    # every valid event landed once, in the raw layout; the malformed ones as dead letters
    landed = _landed(land, "transactions")
    assert Counter(map(_identity, landed)) == Counter(map(_identity, _valid_rows(ROWS)))
    dead = _landed(land, "transactions_dead_letters")
    assert sorted(d["payload"].encode() for d in dead) == sorted(MALFORMED)
    assert {d["reason"].split(":")[0] for d in dead} == {"missing field(s)", "not JSON", "amount"}
    # late events are applied under the default policy; none is too old for every window
    # (the 90-day average keeps them all): the late sink is empty
    assert _landed(land, "transactions_late") == []
    assert json.loads((land / "_checkpoints" / "file.json").read_text())["position"] == (
        events.stat().st_size
    )


def test_kill_9_at_random_moments_leaves_the_store_exact(
    tmp_path: Path, project_manifest: Path, project_registry: Registry, redis: RedisServer
) -> None:
    events, land = tmp_path / "events.jsonl", tmp_path / "raw"
    online = f"{redis.url}?namespace=k{uuid.uuid4().hex[:8]}"
    write_jsonl(events, ROWS, extra=MALFORMED)
    command = stream_command(
        f"file://{events}", online, land, project_manifest, _now(ROWS), "--batch-size", "300",
        "--stop-when-idle", "1s",
    )  # fmt: skip
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(1.0, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 3
    run_stream(command)  # the last run drains it
    with open_store(online) as store:
        _check_store(store, project_registry, ROWS)
    landed = _landed(land, "transactions")
    assert Counter(map(_identity, landed)) == Counter(map(_identity, _valid_rows(ROWS)))
    assert len(_landed(land, "transactions_dead_letters")) == len(MALFORMED)


def test_file_into_a_redis_cluster(
    tmp_path: Path, project_manifest: Path, project_registry: Registry, cluster: RedisClusterServers
) -> None:
    """The worker writes a cluster like one node: every (view, key)'s partials, dedup set and
    record in its entity's slot, the script calls grouped by slot; the partials equal the
    rule's, and the freshness watermarks are kept."""
    events, land = tmp_path / "events.jsonl", tmp_path / "raw"
    online = f"{cluster.url}?namespace=c{uuid.uuid4().hex[:8]}"
    write_jsonl(events, ROWS)
    run_stream(
        stream_command(
            f"file://{events}", online, land, project_manifest, _now(ROWS), "--stop-when-idle", "1s"
        )
    )
    with open_store(online) as store:
        _check_store(store, project_registry, ROWS)
        for view in VIEWS:
            assert set(store.stream_watermarks(view.name)) == {"file"}


# -- Kafka + Redis -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaMock]:
    with kafka_mock() as cluster:
        yield cluster


def test_kafka_group_of_three_with_one_killed(
    tmp_path: Path,
    project_manifest: Path,
    project_registry: Registry,
    redis: RedisServer,
    kafka: KafkaMock,
) -> None:
    topic = f"tx{uuid.uuid4().hex[:8]}"
    messages = [((r["user_id"] or "").encode(), as_json(r)) for r in ROWS]
    kafka.produce(topic, [*messages, *[(None, m) for m in MALFORMED]])
    online = f"{redis.url}?namespace=g{uuid.uuid4().hex[:8]}"
    land = tmp_path / "raw"
    command = stream_command(
        f"kafka://{kafka.bootstrap}/{topic}?group=fs", online, land, project_manifest,
        _now(ROWS), "--batch-size", "200", "--stop-when-idle", "20s",
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    time.sleep(6)
    workers[0].send_signal(signal.SIGKILL)
    for worker in workers[1:]:
        _, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr[-3000:]
    workers[0].wait()
    with open_store(online) as store:
        _check_store(store, project_registry, ROWS)
    landed = _landed(land, "transactions")
    assert Counter(map(_identity, landed)) == Counter(map(_identity, _valid_rows(ROWS)))
    assert len(_landed(land, "transactions_dead_letters")) == len(MALFORMED)


# -- Redis Streams + Redis -------------------------------------------------------------------


def test_redis_streams_with_a_dead_consumer_and_a_store_outage(
    tmp_path: Path, project_manifest: Path, project_registry: Registry, redis: RedisServer
) -> None:
    stream = f"tx{uuid.uuid4().hex[:8]}"
    client = redis_client.Redis(port=redis.port)

    def append(rows: list[dict[str, Any]]) -> None:
        pipe = client.pipeline(transaction=False)
        for row in rows:
            pipe.xadd(stream, {"event": as_json(row)})
        pipe.execute()

    split = len(ROWS) * 6 // 10
    append(ROWS[:split])
    namespace = f"s{uuid.uuid4().hex[:8]}"
    land = tmp_path / "raw"
    with tcp_proxy(redis.port) as proxy:
        online = f"redis://127.0.0.1:{proxy.port}/0?namespace={namespace}"
        source = f"redis-streams://127.0.0.1:{redis.port}/{stream}?group=fs&claim_idle=1s"
        # the replay runs months of ingestion in seconds: the dead consumer's entries are
        # claimed when the survivor is months ahead in ingestion time, so the dedup horizon
        # must span the data (in real time claim_idle, seconds, is far below the 3 days)
        base = stream_command(source, online, land, project_manifest, _now(ROWS),
                              "--batch-size", "200", "--dedup-horizon", "365d")  # fmt: skip
        dying = subprocess.Popen([*base, "--consumer", "dying"], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(2.5)
        dying.send_signal(signal.SIGKILL)
        dying.wait()
        # idle for 8 s before stopping: on a busy host the test may append the rest late,
        # and a survivor that stopped before then never sees the outage
        survivor = subprocess.Popen(
            [*base, "--consumer", "survivor", "--stop-when-idle", "8s"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2)
        proxy.freeze()  # the store stops answering while events keep coming
        append(ROWS[split:])
        time.sleep(12)  # longer than a write's timeout and its retry: the worker backs off
        proxy.heal("drop")
        _, stderr = survivor.communicate(timeout=180)
        assert survivor.returncode == 0, stderr[-3000:]
        assert "store unavailable, retrying" in stderr
    with open_store(f"{redis.url}?namespace={namespace}") as store:
        _check_store(store, project_registry, ROWS)
    info = client.xinfo_groups(stream)[0]
    assert info["pending"] == 0 and info["lag"] == 0
    landed = _landed(land, "transactions")  # at least once: exact copies may repeat
    assert set(map(_identity, landed)) == set(map(_identity, _valid_rows(ROWS)))


# -- late events under the strict policy -------------------------------------------------------


def _late_by_watermark(rows: list[dict[str, Any]], disorder_us: int) -> set[tuple[Any, ...]]:
    """The rows behind the watermark (highest event time seen - disorder) when they come:
    the brute force of stream/watermarks.py for one partition."""
    late, highest = set(), None
    for row in _valid_rows(rows):
        at = to_us(row["transacted_at"])
        if highest is not None and at < highest - disorder_us:
            late.add(_identity(row))
        highest = at if highest is None else max(highest, at)
    return late


def test_reject_policy_leaves_late_events_to_the_batch(
    tmp_path: Path, project_manifest: Path, project_registry: Registry
) -> None:
    events, land = tmp_path / "events.jsonl", tmp_path / "raw"
    online = f"sqlite:///{tmp_path / 'online.db'}"
    write_jsonl(events, ROWS)
    run_stream(
        stream_command(
            f"file://{events}",
            online,
            land,
            project_manifest,
            _now(ROWS),
            "--late-policy",
            "reject",
            "--stop-when-idle",
            "1s",
        )
    )
    late_rows = _landed(land, "transactions_late")
    rejected = {_identity(r) for r in late_rows if r["reason"] == "late: rejected"}
    assert rejected and rejected <= _late_by_watermark(ROWS, 30_000_000)
    # what the stream applied is the rule over the events it did not reject
    kept = [r for r in ROWS if _identity(r) not in rejected]
    with open_store(online) as store:
        now_us = last_ingested_us(ROWS)
        for view in VIEWS:
            expected = expected_partials(view, project_registry.view(view.name), kept, now_us)
            got = stored_partials(store, project_registry.view(view.name), sorted(expected), now_us)
            assert got == expected
    # and the late sink plus the landing hold every event: the batch sees them all
    landed = _landed(land, "transactions")
    assert Counter(map(_identity, landed)) == Counter(map(_identity, _valid_rows(ROWS)))


def test_views_not_streamed_and_dynamodb_are_refused(
    tmp_path: Path, project_manifest: Path, request: pytest.FixtureRequest
) -> None:
    from tests.stores import store_url

    events = tmp_path / "e.jsonl"
    events.write_text("")
    base = stream_command(f"file://{events}", f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "raw",
                          project_manifest, _now(ROWS))  # fmt: skip
    proc = subprocess.run([*base, "--views", "merchant_chargeback_features"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "view merchant_chargeback_features is not streamed" in proc.stderr
    dynamo = store_url("dynamodb", request, tmp_path)
    base[base.index("--online") + 1] = dynamo
    proc = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "DynamoDB does not keep stream partials" in proc.stderr
    base[base.index("--online") + 1] = f"sqlite:///{tmp_path / 'o.db'}"
    base[base.index("--land") + 1] = str(REPO / "data" / "demo")
    proc = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "checked-in demo data" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(REPO / "data" / "demo" / "transactions") == ["part-00000.parquet"]


# -- operating it ------------------------------------------------------------------------------


def test_health_metrics_and_a_graceful_stop(
    tmp_path: Path, project_manifest: Path, project_registry: Registry
) -> None:
    import re
    import urllib.request

    events, land = tmp_path / "events.jsonl", tmp_path / "raw"
    online = f"sqlite:///{tmp_path / 'online.db'}"
    rows = ROWS[:3000]
    write_jsonl(events, rows, extra=MALFORMED[:1])
    proc = subprocess.Popen(
        stream_command(
            f"file://{events}", online, land, project_manifest, _now(rows), "--land-interval", "60s"
        ),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            found = re.search(r"metrics on port (\d+)", line)
            port = int(found.group(1)) if found else None
        assert port is not None, lines
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        metrics = ""
        while time.monotonic() < deadline:
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
            if (
                f"featurestore_stream_events_in_total {len(rows) + 1}.0" in metrics
                and 'featurestore_stream_consumer_lag{partition="file"} 0.0' in metrics
            ):
                break
            time.sleep(0.2)
        assert f"featurestore_stream_events_in_total {len(rows) + 1}.0" in metrics
        assert "featurestore_stream_dead_letters_total 1.0" in metrics
        assert (
            'featurestore_stream_view_events_total{outcome="applied",view="user_transaction_features"}'
            in metrics
        )
        assert 'featurestore_stream_consumer_lag{partition="file"} 0.0' in metrics
        health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=5).read())
        assert health["status"] == "ok"
        assert sorted(health["views"]) == [
            "merchant_transaction_features",
            "user_transaction_features",
        ]
        # nothing landed or committed yet (60 s interval): SIGTERM lands and commits it all
        assert not list((land / "transactions").glob("*.parquet"))
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed assertion above: do not leave the worker running
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "stopping after the current batch" in rest
    assert json.loads((land / "_checkpoints" / "file.json").read_text())["position"] == (
        events.stat().st_size
    )
    assert len(_landed(land, "transactions")) == len(_valid_rows(rows))
    with open_store(online) as store:
        _check_store(store, project_registry, rows)
