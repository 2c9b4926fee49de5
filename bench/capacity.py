"""Capacity plan (issue 14): what 1 billion users x 100 features, 500,000 reads/s and 200,000
updates/s need, computed from measurements; the tables of ``bench/CAPACITY.md``.

Two steps:

``measure``
    Starts a real ``redis-server`` (``tests/servers.py``) as a one-node Redis Cluster (every
    slot on it: the keyspace carries the cluster's per-key overhead, as in production) and,
    for each case (10, 100 and 500 features in one view; 100 and 500 split over several views
    of one entity; a tiled view holding only its tile set) and each hash encoding setting
    (``hash-max-listpack-entries`` 128, the default, and 1024), writes ``--entities`` users
    through ``RedisStore.write`` with :class:`~featurestore.online.layout.Record`s as the
    loader does (keys ``usr_000012345``; a mix of int, float, bool, string and timestamp
    values, 5% null; ``_ts/_ver/_exp`` per view, key expiry), then measures per key
    ``MEMORY USAGE key SAMPLES 0`` (median, p99), ``INFO memory used_memory`` growth per
    entity (with the keyspace: dict entries, expiry entries, the cluster's slot links), and
    the Redis main thread's CPU time (``/proc/<pid>/schedstat``) per record write and per
    HMGET of 10 features (single-key reads, and 100-key reads). The 100-feature case runs
    once more on a standalone server (the cluster's per-key overhead by difference).
    DynamoDB: each record's item as ``DynamoDBStore`` writes it (``encode_record``), sized by
    DynamoDB's rules (``item_size``), with read and write units per request; ``--moto``
    writes a sample through ``DynamoDBStore`` into moto's server and checks that the items
    stored there have the sizes computed. Results: ``bench/.work/capacity/measurements.json``.

``plan``
    Reads the measurements and the throughput figures (sidecar CPU per request, stream
    worker CPU per event) from the latest bench results in ``bench/.work`` when present, else
    the figures published in ``bench/README.md`` (:data:`PUBLISHED`, section named), computes
    the plan (:class:`Assumptions`), prints it and rewrites ``bench/CAPACITY.md`` between
    :data:`BEGIN` and :data:`END`.

    .venv/bin/python bench/capacity.py measure          # 5,000 entities per case, ~3 min
    .venv/bin/python bench/capacity.py plan             # rewrites bench/CAPACITY.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/servers.py: redis-server and moto on free ports

import redis  # noqa: E402

from featurestore.online.dynamodb_store import encode_record, item_size  # noqa: E402
from featurestore.online.layout import Record, TileSet, encode_tile_set, redis_key  # noqa: E402
from featurestore.online.redis_store import RedisStore  # noqa: E402
from featurestore.online.store import ViewRead  # noqa: E402
from featurestore.registry import ValueType  # noqa: E402
from tests.servers import free_cluster_port, moto_server, redis_server  # noqa: E402

WORK: Final = REPO / "bench" / ".work" / "capacity"
DOC: Final = REPO / "bench" / "CAPACITY.md"
BEGIN: Final = "<!-- capacity:begin -->"
END: Final = "<!-- capacity:end -->"
#: hash-max-listpack-entries settings measured: the default and a raised one
CONFIGS: Final = {"default (128)": 128, "listpack 1024": 1024}
ENTITY: Final = "user"
READ_FEATURES: Final = 10  # features per feature vector (the design's figure)
DAY_S: Final = 86_400

# --- the feature schema: realistic names and a mix of types ---------------------------------

_DOMAINS = ("txn", "login", "session", "click", "order", "payment", "device", "refund",
            "cart", "search", "review", "support", "email", "push", "promo", "card")  # fmt: skip
#: metric -> value type (the name tells the type, as in the project's feature views)
_METRICS: Final[tuple[tuple[str, ValueType], ...]] = (
    ("count", "int"),
    ("amount_sum", "float"),
    ("amount_avg", "float"),
    ("max_amount", "float"),
    ("distinct_merchants", "int"),
    ("decline_ratio", "float"),
    ("is_flagged", "bool"),
    ("last_country", "string"),
    ("days_since_last", "int"),
    ("last_at", "timestamp"),
)
_WINDOWS = ("1h", "24h", "7d", "30d", "90d")
_STRINGS = ("US", "GB", "DE", "FR", "IN", "BR", "android", "ios", "web", "premium",
            "standard", "unknown")  # fmt: skip
_VIEW_NAMES = ("user_profile_features", "user_transaction_features", "user_session_features",
               "user_payment_features", "user_risk_signals", "user_device_features",
               "user_engagement_features", "user_order_features", "user_support_features",
               "user_marketing_features")  # fmt: skip


def feature_schema(count: int) -> list[tuple[str, ValueType]]:
    """``count`` distinct feature names (``user_<domain>_<metric>_<window>``) and types, the
    same for a given count."""
    out: list[tuple[str, ValueType]] = []
    for i in range(count):
        domain = _DOMAINS[i % len(_DOMAINS)]
        metric, kind = _METRICS[(i // len(_DOMAINS)) % len(_METRICS)]
        window = _WINDOWS[(i // (len(_DOMAINS) * len(_METRICS))) % len(_WINDOWS)]
        out.append((f"user_{domain}_{metric}_{window}", kind))
    return out


def feature_value(kind: ValueType, name: str, rng: random.Random, now: dt.datetime) -> object:
    """A plausible value (5% null): counts small integers, amounts with cents, averages and
    ratios full doubles, flags, short category strings, timestamps to the microsecond."""
    if rng.random() < 0.05:
        return None
    if kind == "int":
        return int(rng.expovariate(1 / 40))
    if kind == "float":
        if "ratio" in name or "avg" in name:
            return rng.random() * (1 if "ratio" in name else 200)
        return round(rng.lognormvariate(4, 1.2), 2)
    if kind == "bool":
        return rng.random() < 0.1
    if kind == "string":
        return rng.choice(_STRINGS)
    return now - dt.timedelta(seconds=rng.random() * 90 * DAY_S)


@dataclass(frozen=True)
class Case:
    """One shape of an entity's online data."""

    name: str
    features: int
    views: int = 1
    tiled: bool = False

    def layout(self) -> list[tuple[str, list[tuple[str, ValueType]]]]:
        """(view name, its features) of this case."""
        if self.tiled:
            kinds: list[tuple[str, ValueType]] = [
                ("user_txn_count_10m", "int"),
                ("user_txn_amount_sum_1h", "float"),
                ("user_txn_count_7d", "int"),
                ("user_txn_amount_avg_7d", "float"),
            ]
            return [("user_txn_windows", kinds)]
        schema = feature_schema(self.features)
        if self.views == 1:
            return [("user_features", schema)]
        size = self.features // self.views
        return [(_VIEW_NAMES[v], schema[v * size : (v + 1) * size]) for v in range(self.views)]


CASES: Final = (
    Case("10 features, 1 view", 10),
    Case("100 features, 1 view", 100),
    Case("100 features, 5 views of 20", 100, 5),
    Case("500 features, 1 view", 500),
    Case("500 features, 10 views of 50", 500, 10),
    Case("tiled view (4 features, 10 + 24 tiles)", 4, tiled=True),
)
#: the case the plan sizes (the design's 100 features per user)
PLAN_CASE: Final = "100 features, 1 view"
PLAN_SPLIT_CASE: Final = "100 features, 5 views of 20"


def tile_set(rng: random.Random, now_s: int) -> TileSet:
    """A tiled view's tile set: 10 active minutes (hop 60 s: a count and an amount sum) and
    24 active hours of the last week (hop 3600 s: a count and an average's (count, sum))."""
    minutes = sorted(rng.sample(range(1, 60), 10))
    hours = sorted(rng.sample(range(1, 168), 24))
    tiles: TileSet = {60: {}, 3600: {}}
    for m in minutes:
        n = rng.randint(1, 5)
        tiles[60][(now_s // 60 - m) * 60] = (n, Decimal(rng.randint(100, 50_000)) / 100)
    for h in hours:
        n = rng.randint(1, 9)
        tiles[3600][(now_s // 3600 - h) * 3600] = (n, (n, Decimal(rng.randint(100, 90_000)) / 100))
    return tiles


def entity_records(case: Case, index: int, now: dt.datetime) -> list[Record]:
    """The records of user ``index`` in ``case`` (deterministic per user)."""
    rng = random.Random(index * 7919 + case.features)
    key = (f"usr_{index:09d}",)
    now_s = int(now.timestamp())
    out = []
    for view, features in case.layout():
        ts = int((now.timestamp() - rng.random() * DAY_S) * 1_000_000)
        ver = ts + rng.randint(0, 3_600_000_000)
        exp = now_s + 30 * DAY_S + rng.randint(0, DAY_S)
        if case.tiled:
            values: dict[str, object] = {}
            timeline: bytes | None = encode_tile_set(tile_set(rng, now_s))
        else:
            values = {name: feature_value(kind, name, rng, now) for name, kind in features}
            timeline = None
        out.append(Record(ENTITY, key, view, ts, ver, exp, values, timeline))
    return out


# --- measuring ---------------------------------------------------------------------------------


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """median, p99, mean and max of ``values``."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "median": statistics.median(ordered),
        "p99": p99,
        "mean": statistics.fmean(ordered),
        "max": ordered[-1],
    }


def main_thread_cpu_ns(pid: int) -> int:
    """CPU time of a process's main thread in ns (``/proc/<pid>/schedstat``): Redis runs
    every command on it."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def read_spec(case: Case) -> list[ViewRead]:
    """What a feature vector reads: 10 features of the first view (spread over it)."""
    view, features = case.layout()[0]
    step = max(1, len(features) // READ_FEATURES)
    chosen = features[::step][:READ_FEATURES]
    return [ViewRead(view, dict(chosen))]


def measure_redis_case(
    client: redis.Redis, store: RedisStore, pid: int, case: Case, entities: int, listpack: int
) -> dict[str, Any]:
    """Write ``entities`` users of ``case`` into an empty server and measure them."""
    client.flushall()
    client.config_set("hash-max-listpack-entries", listpack)
    store.initialize()  # the write script loaded before the baseline
    now = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    before = int(client.info("memory")["used_memory"])
    cpu_before = main_thread_cpu_ns(pid)
    records = 0
    for start in range(0, entities, 500):
        batch = [
            r
            for i in range(start, min(entities, start + 500))
            for r in entity_records(case, i, now)
        ]
        result = store.write(batch)
        assert result.written == len(batch), result
        records += len(batch)
    write_cpu_ns = main_thread_cpu_ns(pid) - cpu_before
    after = int(client.info("memory")["used_memory"])
    keys = [redis_key(ENTITY, (f"usr_{i:09d}",)) for i in range(entities)]
    sample = keys if len(keys) <= 2000 else random.Random(1).sample(keys, 2000)
    pipe = client.pipeline(transaction=False)
    for key in sample:
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
    usage = [int(x) for x in pipe.execute()]
    payload = []
    for key in sample[:200]:
        pairs = client.hgetall(key)
        payload.append(len(key) + sum(len(f) + len(v) for f, v in pairs.items()))
    encoding = client.object("encoding", keys[0])
    fields = client.hlen(keys[0])
    # reads: 10 features of one view per entity, single-key and 100-key, as the sidecar does
    views = read_spec(case)
    rng = random.Random(2)
    singles = max(200, min(10_000, 4 * entities))
    cpu_before = main_thread_cpu_ns(pid)
    for _ in range(singles):
        store.read(ENTITY, [(f"usr_{rng.randrange(entities):09d}",)], views)
    single_ns = main_thread_cpu_ns(pid) - cpu_before
    batches = max(20, singles // 100)
    width = min(100, entities)
    cpu_before = main_thread_cpu_ns(pid)
    for _ in range(batches):
        rows = store.read(
            ENTITY, [(f"usr_{k:09d}",) for k in rng.sample(range(entities), width)], views
        )
        assert all(row[views[0].view] is not None for row in rows)
    batch_ns = main_thread_cpu_ns(pid) - cpu_before
    return {
        "case": case.name,
        "features": case.features,
        "views": case.views,
        "tiled": case.tiled,
        "listpack_entries": listpack,
        "entities": entities,
        "records": records,
        "encoding": encoding.decode() if isinstance(encoding, bytes) else str(encoding),
        "fields_per_key": fields,
        "memory_usage": quantiles(usage),
        "used_memory_per_entity": (after - before) / entities,
        "payload_bytes_per_entity": statistics.fmean(payload),
        "redis_cpu_us": {
            "write_per_record": write_cpu_ns / records / 1000,
            "write_per_entity": write_cpu_ns / entities / 1000,
            "hmget_single_key_request": single_ns / singles / 1000,
            "hmget_in_100_key_request": batch_ns / (batches * width) / 1000,
        },
    }


def dynamodb_case(case: Case, entities: int) -> dict[str, Any]:
    """The DynamoDB items of ``case`` as ``DynamoDBStore`` writes them, sized by DynamoDB's
    rules: storage (+100 bytes of per-item overhead, as DynamoDB bills), read units of one
    feature vector (the item of the view holding its features), write units per record."""
    now = dt.datetime.now(dt.UTC)
    view_read = read_spec(case)[0].view
    sizes: list[int] = []
    per_entity: list[int] = []
    read_items: list[int] = []
    for i in range(entities):
        records = entity_records(case, i, now)
        items = [item_size(encode_record(r)) for r in records]
        sizes += items
        per_entity.append(sum(items))
        read_items += [size for size, r in zip(items, records, strict=True) if r.view == view_read]
    return {
        "case": case.name,
        "items_per_entity": len(sizes) // entities,
        "item_bytes": quantiles(sizes),
        "entity_bytes": quantiles(per_entity),
        "read_item_bytes": quantiles(read_items),
        # per feature vector: the one item of the view holding its features
        "rcu_strong_per_read": statistics.fmean(math.ceil(s / 4096) for s in read_items),
        "rcu_eventual_per_read": statistics.fmean(math.ceil(s / 4096) / 2 for s in read_items),
        # per record write (PutItem): 1 WCU per KB of the whole item
        "wcu_per_record_write": statistics.fmean(math.ceil(s / 1024) for s in sizes),
        "wcu_per_read_view_write": statistics.fmean(math.ceil(s / 1024) for s in read_items),
        "wcu_per_entity_write": len(sizes)
        / entities
        * statistics.fmean(math.ceil(s / 1024) for s in sizes),
        "storage_bytes_per_entity": statistics.fmean(per_entity) + 100 * len(sizes) / entities,
    }


def moto_check(entities: int) -> dict[str, Any]:
    """Write a sample of every case through ``DynamoDBStore`` into moto's server and compare
    the size of each stored item (read back with GetItem) with the computed one."""
    import boto3

    from featurestore.online.urls import open_store

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        os.environ.setdefault(name, value)
    checked = equal = 0
    now = dt.datetime.now(dt.UTC)
    with moto_server() as server:
        client = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1")
        for number, case in enumerate(CASES):
            table = f"capacity_{number}"  # a table per case: cases share keys and views
            store = open_store(server.url(table))
            store.initialize()
            records = [r for i in range(entities) for r in entity_records(case, i, now)]
            written = store.write(records).written
            for record in records:
                item = encode_record(record)
                stored = client.get_item(
                    TableName=table, Key={"pk": item["pk"], "sk": item["sk"]}, ConsistentRead=True
                )["Item"]
                checked += 1
                equal += item_size(stored) == item_size(item)
            store.close()
            assert written == len(records), (case.name, written, len(records))
    return {"items": checked, "sizes_equal": equal}


def cluster_node(client: redis.Redis) -> None:
    """Give a cluster-enabled server every slot and wait until the cluster is ok."""
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    for _ in range(100):
        if b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"):
            return
        time.sleep(0.05)
    raise RuntimeError("the one-node cluster did not become ok")


def measure(entities: int, workdir: Path, out: Path, moto: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "entities": entities,
        "load_average_start": os.getloadavg(),
        "read_features": READ_FEATURES,
        "redis": [],
    }
    for mode in ("cluster", "standalone"):
        folder = workdir / f"redis-{mode}"
        extra = (
            ("--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"))
            if mode == "cluster"
            else ()
        )
        port = free_cluster_port() if mode == "cluster" else None  # bus port: + 10000
        with redis_server(folder, extra_args=extra, port=port) as server:
            assert server.proc is not None
            client = redis.Redis(port=server.port)
            if mode == "cluster":
                cluster_node(client)
            results["redis_version"] = client.info("server")["redis_version"]
            store = RedisStore(port=server.port)
            # a first pass warms the server (allocator, script cache, client buffers)
            measure_redis_case(client, store, server.proc.pid, CASES[1], min(entities, 200), 128)
            for case in CASES:
                if mode == "standalone" and case.name != PLAN_CASE:
                    continue
                for config, listpack in CONFIGS.items():
                    started = time.perf_counter()
                    row = measure_redis_case(
                        client, store, server.proc.pid, case, entities, listpack
                    )
                    row |= {"config": config, "mode": mode}
                    results["redis"].append(row)
                    print(
                        f"{mode} | {case.name} | {config}: {row['encoding']}, "
                        f"{row['used_memory_per_entity']:,.0f} B/entity, MEMORY USAGE median "
                        f"{row['memory_usage']['median']:,.0f} "
                        f"({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
            store.close()
            client.close()
    results["dynamodb"] = [dynamodb_case(case, entities) for case in CASES]
    results["moto"] = moto_check(min(entities, 20)) if moto else None
    results["load_average_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"measurements: {out}")
    return results


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """A throughput figure and where it came from."""

    value: float
    source: str


#: figures published in bench/README.md, used when no bench results JSON is in bench/.work
PUBLISHED: Final = {
    "sidecar_cpu_us_single": Throughput(
        122,
        "bench/README.md, 'Online serving', run K: (a) 1 key x 10 features, random keys, "
        "server CPU us/request",
    ),
    "sidecar_cpu_us_batch100": Throughput(
        962,
        "bench/README.md, 'Online serving', run K: (c) 100 keys x 10 features, random "
        "keys, server CPU us/request",
    ),
    "stream_cpu_us_per_event": Throughput(
        63.8, "bench/README.md, 'Streaming (issue 12)', run S3: kafka source, CPU us/event"
    ),
    "stream_events_per_process": Throughput(
        13_824,
        "bench/README.md, 'Streaming (issue 12)', run S3: kafka source, events/s per "
        "process (median)",
    ),
    "stream_redis_us_per_event": Throughput(
        23,
        "bench/README.md, 'Streaming (issue 12)', 'Where the time goes': ~23 us of Redis "
        "script time per event",
    ),
    "stream_redis_bytes_per_key": Throughput(
        614,
        "bench/README.md, 'Streaming (issue 12)', run S3: kafka source, Redis bytes per "
        "streamed key",
    ),
}


@dataclass(frozen=True)
class Assumptions:
    """The plan's inputs that are choices, not measurements (decimal units: 1 GB = 1e9 B)."""

    users: int = 1_000_000_000
    features: int = 100
    #: feature vectors per second (one entity's 10 features each: the design's figure)
    reads_per_s: int = 500_000
    #: streamed feature updates (events) per second at peak
    updates_per_s: int = 200_000
    #: share of the feature vectors asked for in 100-key requests (the rest single-key)
    batch_share: float = 0.2
    keys_per_batch: int = 100
    #: CPU utilisation targeted on sidecar and stream worker cores (headroom for peaks)
    target_utilisation: float = 0.6
    #: memory per Redis node usable for the dataset, and how full it may get (headroom for
    #: fork copy-on-write during replication syncs, fragmentation, growth)
    node_memory_gb: float = 64
    node_fill: float = 0.75
    #: share of a primary's main thread the plan lets commands use
    redis_thread_utilisation: float = 0.5
    #: Kafka partitions: at least this many per worker process, rounded up to a power of 2
    partitions_per_process: int = 2
    #: share of users with live stream partials (a streamed view's open tiles)
    streamed_user_share: float = 0.2
    #: public us-east-1 DynamoDB prices (Standard table class, as published on
    #: aws.amazon.com/dynamodb/pricing in 2025; check before use)
    price_per_million_rru: float = 0.125
    price_per_million_wru: float = 0.625
    price_rcu_hour: float = 0.00013
    price_wcu_hour: float = 0.00065
    price_gb_month: float = 0.25
    hours_per_month: float = 730
    #: the design's estimate (feature-store-design.txt, "Back-of-the-Envelope Capacity
    #: Estimation"): 100 bytes per feature, replication factor 3
    design_bytes_per_feature: int = 100
    design_replication: int = 3


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def latest_throughput(serve: Path, stream: Path) -> tuple[dict[str, Throughput], list[str]]:
    """The throughput figures: from bench results JSON when present, else :data:`PUBLISHED`."""
    figures = dict(PUBLISHED)
    notes = []
    if serve.is_file():
        summary = json.loads(serve.read_text()).get("summary", {})
        for key, scenario in (
            ("sidecar_cpu_us_single", "(a) 1 key x 10 features, random keys"),
            ("sidecar_cpu_us_batch100", "(c) 100 keys x 10 features, random keys"),
        ):
            if scenario in summary:
                figures[key] = Throughput(
                    summary[scenario]["cpu_us"], f"{shown(serve)}: {scenario}"
                )
        notes.append(f"sidecar figures from {shown(serve)}")
    else:
        notes.append(f"no {shown(serve)}: sidecar figures as published (see sources)")
    if stream.is_file():
        runs = json.loads(stream.read_text()).get("results", {}).get("kafka", [])
        if runs:
            where = f"{shown(stream)}: kafka source, median of {len(runs)} runs"
            figures["stream_cpu_us_per_event"] = Throughput(
                statistics.median(r["cpu_us_per_event"] for r in runs), where
            )
            figures["stream_events_per_process"] = Throughput(
                statistics.median(r["events_per_s"] for r in runs), where
            )
            figures["stream_redis_bytes_per_key"] = Throughput(
                statistics.median(r["redis_bytes_per_streamed_key"] for r in runs), where
            )
        notes.append(f"stream figures from {shown(stream)}")
    else:
        notes.append(f"no {shown(stream)}: stream figures as published (see sources)")
    return figures, notes


def row_of(data: dict[str, Any], case: str, config: str, mode: str = "cluster") -> dict[str, Any]:
    for row in data["redis"]:
        if row["case"] == case and row["config"] == config and row["mode"] == mode:
            return dict(row)
    raise KeyError(f"no measurement of {case!r} / {config!r} / {mode}")


def dynamodb_row(data: dict[str, Any], case: str) -> dict[str, Any]:
    return dict(next(row for row in data["dynamodb"] if row["case"] == case))


@dataclass
class Plan:
    """Every figure of the plan (what the tables show and the smoke test recomputes)."""

    assumptions: Assumptions
    figures: dict[str, Throughput]
    notes: list[str]
    recommended_config: str
    sidecar: list[dict[str, Any]] = field(default_factory=list)
    stream: dict[str, Any] = field(default_factory=dict)
    redis: list[dict[str, Any]] = field(default_factory=list)
    redis_ops: dict[str, Any] = field(default_factory=dict)
    dynamodb: list[dict[str, Any]] = field(default_factory=list)
    design: dict[str, Any] = field(default_factory=dict)


def power_of_two_at_least(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def sidecar_cores(
    a: Assumptions, batch_share: float, figures: dict[str, Throughput]
) -> dict[str, Any]:
    single_rps = a.reads_per_s * (1 - batch_share)
    batch_rps = a.reads_per_s * batch_share / a.keys_per_batch
    busy = (
        single_rps * figures["sidecar_cpu_us_single"].value
        + batch_rps * figures["sidecar_cpu_us_batch100"].value
    ) / 1e6
    return {
        "batch_share": batch_share,
        "single_rps": single_rps,
        "batch_rps": batch_rps,
        "busy_cores": busy,
        "cores": math.ceil(busy / a.target_utilisation),
    }


#: the cases the cluster is sized for: the design's 100 features (one view, or five), and its
#: maximum of 500 per user
CLUSTER_CASES: Final = (PLAN_CASE, PLAN_SPLIT_CASE, "500 features, 1 view")


def cluster_row(
    a: Assumptions, row: dict[str, Any], stream_bytes: float, stream_cores: float
) -> dict[str, Any]:
    """A Redis Cluster for ``a.users`` users shaped as the measured ``row``: memory (primaries
    sized by memory), and the main-thread time the reads and stream scripts leave on each."""
    primary = a.users * row["used_memory_per_entity"] + stream_bytes
    primaries = math.ceil(primary / (a.node_memory_gb * 1e9 * a.node_fill))
    cpu = row["redis_cpu_us"]
    read_us = (1 - a.batch_share) * cpu["hmget_single_key_request"] + a.batch_share * cpu[
        "hmget_in_100_key_request"
    ]
    read_cores = a.reads_per_s * read_us / 1e6
    return {
        "case": row["case"],
        "config": row["config"],
        "encoding": row["encoding"],
        "bytes_per_entity": row["used_memory_per_entity"],
        "primary_tb": primary / 1e12,
        "tb_1_replica": 2 * primary / 1e12,
        "tb_2_replicas": 3 * primary / 1e12,
        "primaries": primaries,
        "nodes_1_replica": 2 * primaries,
        "nodes_2_replicas": 3 * primaries,
        "ram_tb_1_replica": 2 * primaries * a.node_memory_gb / 1000,
        "ram_tb_2_replicas": 3 * primaries * a.node_memory_gb / 1000,
        "write_us": cpu["write_per_record"],
        "read_us": read_us,
        "read_cores": read_cores,
        "write_cores": stream_cores,
        "reads_per_primary": a.reads_per_s / primaries,
        "writes_per_primary": a.updates_per_s / primaries,
        "thread_share_per_primary": (read_cores + stream_cores) / primaries,
        "primaries_for_cpu": math.ceil((read_cores + stream_cores) / a.redis_thread_utilisation),
    }


def recommend(rows: Sequence[dict[str, Any]], a: Assumptions) -> str:
    """The ``hash-max-listpack-entries`` setting the plan recommends: the one needing the
    fewest primaries at the design's maximum (500 features per user) among those whose
    every cluster leaves each primary's main thread under ``redis_thread_utilisation``
    (memory sets the node count; a listpack trades read CPU for memory); the default when
    none saves 10%."""
    fine = [
        config
        for config in CONFIGS
        if all(
            r["thread_share_per_primary"] <= a.redis_thread_utilisation
            for r in rows
            if r["config"] == config
        )
    ] or ["default (128)"]
    widest = {r["config"]: r["primaries"] for r in rows if r["case"] == CLUSTER_CASES[-1]}
    best = min(fine, key=lambda config: widest[config])
    if widest[best] > 0.9 * widest["default (128)"]:
        return "default (128)"
    return best


def make_plan(data: dict[str, Any], figures: dict[str, Throughput], notes: list[str],
              a: Assumptions) -> Plan:  # fmt: skip
    plan = Plan(a, figures, notes, "default (128)")
    plan.sidecar = [sidecar_cores(a, share, figures) for share in (0.0, a.batch_share, 1.0)]

    per_process = 1e6 / figures["stream_cpu_us_per_event"].value  # one process ~ one core
    processes = math.ceil(a.updates_per_s / (per_process * a.target_utilisation))
    plan.stream = {
        "events_per_core": per_process,
        "busy_cores": a.updates_per_s / per_process,
        "processes": processes,
        "partitions": power_of_two_at_least(processes * a.partitions_per_process),
        "measured_events_per_process": figures["stream_events_per_process"].value,
        "processes_at_measured_rate": math.ceil(
            a.updates_per_s / figures["stream_events_per_process"].value
        ),
        "redis_cores": a.updates_per_s * figures["stream_redis_us_per_event"].value / 1e6,
    }

    stream_bytes = a.users * a.streamed_user_share * figures["stream_redis_bytes_per_key"].value
    plan.redis = [
        cluster_row(a, row_of(data, case, config), stream_bytes, plan.stream["redis_cores"])
        for case in CLUSTER_CASES
        for config in CONFIGS
    ]
    plan.recommended_config = recommend(plan.redis, a)
    chosen = next(
        r for r in plan.redis if r["case"] == PLAN_CASE and r["config"] == plan.recommended_config
    )
    plan.redis_ops = {
        key: chosen[key]
        for key in ("read_us", "read_cores", "write_cores", "primaries", "reads_per_primary",
                    "writes_per_primary", "thread_share_per_primary", "primaries_for_cpu")
    }  # fmt: skip

    seconds_per_month = a.hours_per_month * 3600
    for case in (PLAN_CASE, PLAN_SPLIT_CASE):
        d = dynamodb_row(data, case)
        rcu = a.reads_per_s * d["rcu_eventual_per_read"]
        rcu_strong = a.reads_per_s * d["rcu_strong_per_read"]
        wcu = a.updates_per_s * d["wcu_per_read_view_write"]
        storage_gb = a.users * d["storage_bytes_per_entity"] / 1e9
        refresh_wru = a.users * d["wcu_per_entity_write"]
        plan.dynamodb.append(
            {
                "case": case,
                "item_bytes": d["read_item_bytes"]["median"],
                "storage_gb": storage_gb,
                "storage_month": storage_gb * a.price_gb_month,
                "rcu_per_s": rcu,
                "rcu_strong_per_s": rcu_strong,
                "wcu_per_s": wcu,
                "reads_on_demand_month": rcu * seconds_per_month * a.price_per_million_rru / 1e6,
                "reads_provisioned_month": rcu / a.target_utilisation * a.price_rcu_hour
                * a.hours_per_month,
                "writes_on_demand_month": wcu * seconds_per_month * a.price_per_million_wru / 1e6,
                "writes_provisioned_month": wcu / a.target_utilisation * a.price_wcu_hour
                * a.hours_per_month,
                "daily_refresh_wru": refresh_wru,
                "daily_refresh_month": refresh_wru * 30 * a.price_per_million_wru / 1e6,
                "batch_get_requests_per_s": a.reads_per_s * a.batch_share / a.keys_per_batch
                + a.reads_per_s * (1 - a.batch_share),
            }
        )  # fmt: skip

    design_entity = a.features * a.design_bytes_per_feature
    design_primary = a.users * design_entity
    recommended = plan.recommended_config
    measured = row_of(data, PLAN_CASE, recommended)
    ten = row_of(data, "10 features, 1 view", recommended)
    per_feature = (measured["used_memory_per_entity"] - ten["used_memory_per_entity"]) / 90
    fixed = ten["used_memory_per_entity"] - 10 * per_feature
    standalone = row_of(data, PLAN_CASE, recommended, "standalone")
    plan.design = {
        "design_bytes_per_entity": design_entity,
        "design_tb": design_primary / 1e12,
        "design_tb_replicated": design_primary * a.design_replication / 1e12,
        "measured_bytes_per_entity": measured["used_memory_per_entity"],
        "measured_tb": chosen["primary_tb"],
        "measured_tb_rf3": chosen["tb_2_replicas"],
        "bytes_per_feature": per_feature,
        "fixed_bytes_per_entity": fixed,
        "payload_bytes_per_entity": measured["payload_bytes_per_entity"],
        "cluster_bytes_per_key": measured["used_memory_per_entity"]
        - standalone["used_memory_per_entity"],
        "stream_tb": stream_bytes / 1e12,
    }
    return plan


# --- rendering ---------------------------------------------------------------------------------


def n0(x: float) -> str:
    return f"{x:,.0f}"


def n1(x: float) -> str:
    return f"{x:,.1f}"


def n2(x: float) -> str:
    return f"{x:,.2f}"


def usd(x: float) -> str:
    return f"${x:,.0f}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render(plan: Plan, data: dict[str, Any]) -> str:
    a, f = plan.assumptions, plan.figures
    lines: list[str] = [
        "<!-- generated by `bench/capacity.py plan`; edit the script, not this block -->",
        "",
        f"Measured {data['measured_at']} on Redis {data['redis_version']}, "
        f"{data['entities']:,} users per case (load average "
        f"{data['load_average_start'][0]:.1f} -> {data['load_average_end'][0]:.1f}). "
        + "; ".join(plan.notes)
        + ".",
        "",
        "### Inputs: throughput figures",
        "",
    ]
    lines += table(
        ["figure", "value", "source"],
        [
            ["sidecar CPU per single-key request (10 features)",
             f"{n0(f['sidecar_cpu_us_single'].value)} us", f["sidecar_cpu_us_single"].source],
            ["sidecar CPU per 100-key request (10 features)",
             f"{n0(f['sidecar_cpu_us_batch100'].value)} us", f["sidecar_cpu_us_batch100"].source],
            ["stream worker CPU per event", f"{n1(f['stream_cpu_us_per_event'].value)} us",
             f["stream_cpu_us_per_event"].source],
            ["stream worker events/s per process (shared host)",
             n0(f["stream_events_per_process"].value), f["stream_events_per_process"].source],
            ["Redis script time per streamed event",
             f"{n0(f['stream_redis_us_per_event'].value)} us",
             f["stream_redis_us_per_event"].source],
            ["Redis bytes per streamed key (partials + dedup set)",
             n0(f["stream_redis_bytes_per_key"].value), f["stream_redis_bytes_per_key"].source],
        ],
    )  # fmt: skip
    lines += ["", "### Redis memory per user (measured)", ""]
    lines += table(
        ["case", "hash-max-listpack-entries", "encoding", "fields", "MEMORY USAGE median (p99)",
         "used_memory / user", "raw bytes / user", "Redis CPU us / record write",
         "Redis CPU us / 10-feature HMGET (1-key, 100-key requests)"],
        [
            [r["case"], r["config"], r["encoding"], n0(r["fields_per_key"]),
             f"{n0(r['memory_usage']['median'])} ({n0(r['memory_usage']['p99'])})",
             n0(r["used_memory_per_entity"]), n0(r["payload_bytes_per_entity"]),
             n1(r["redis_cpu_us"]["write_per_record"]),
             f"{n1(r['redis_cpu_us']['hmget_single_key_request'])}, "
             f"{n1(r['redis_cpu_us']['hmget_in_100_key_request'])}"]
            for r in data["redis"] if r["mode"] == "cluster"
        ],
    )  # fmt: skip
    standalone = [r for r in data["redis"] if r["mode"] == "standalone"]
    if standalone:
        lines += ["", "The same on a standalone (non-cluster) server: " + "; ".join(
            f"{r['case']}, {r['config']}: {n0(r['used_memory_per_entity'])} bytes/user"
            for r in standalone
        ) + f" (the cluster's per-key cost: {n0(plan.design['cluster_bytes_per_key'])} "
            "bytes)."]  # fmt: skip
    lines += ["", "### DynamoDB items (sized by DynamoDB's rules from `encode_record`)", ""]
    lines += table(
        ["case", "items / user", "item bytes median (max)", "bytes / user", "storage / user "
         "(+100 B/item)", "RCU / vector, strong (eventual)", "WCU / write of that view",
         "WCU / write of every view"],
        [
            [d["case"], n0(d["items_per_entity"]),
             f"{n0(d['item_bytes']['median'])} ({n0(d['item_bytes']['max'])})",
             n0(d["entity_bytes"]["median"]), n0(d["storage_bytes_per_entity"]),
             f"{n2(d['rcu_strong_per_read'])} ({n2(d['rcu_eventual_per_read'])})",
             n2(d["wcu_per_read_view_write"]), n2(d["wcu_per_entity_write"])]
            for d in data["dynamodb"]
        ],
    )  # fmt: skip
    moto = data.get("moto")
    lines += [
        "",
        "A vector reads the one item of the view holding its 10 features (BatchGetItem reads "
        "whole items: a projection does not lower the units; each item is rounded up to 4 KB "
        "on its own, so a 100-key BatchGetItem costs 100 x the per-item figure). "
        + (
            f"Checked through moto's server: {moto['sizes_equal']} of {moto['items']} items "
            "written by `DynamoDBStore` and read back have the size computed."
            if moto
            else "(Not checked through moto in this run.)"
        ),
        "",
        "### Sidecar cores for 500,000 feature vectors/s",
        "",
    ]
    lines += table(
        ["share of vectors in 100-key requests", "single-key req/s", "100-key req/s",
         "busy cores", f"cores at {a.target_utilisation:.0%} utilisation"],
        [
            [f"{s['batch_share']:.0%}" + (" (plan)" if s["batch_share"] == a.batch_share else ""),
             n0(s["single_rps"]), n0(s["batch_rps"]), n1(s["busy_cores"]), n0(s["cores"])]
            for s in plan.sidecar
        ],
    )  # fmt: skip
    st = plan.stream
    lines += ["", "### Stream workers for 200,000 updates/s", ""]
    lines += table(
        ["figure", "value"],
        [
            ["events per core-second (1e6 / CPU us per event)", n0(st["events_per_core"])],
            ["busy cores", n1(st["busy_cores"])],
            [f"worker processes at {a.target_utilisation:.0%} utilisation (one core each)",
             n0(st["processes"])],
            ["processes at the measured events/s of one process (no headroom)",
             n0(st["processes_at_measured_rate"])],
            [f"Kafka partitions (>= {a.partitions_per_process} per process, power of 2)",
             n0(st["partitions"])],
            ["Redis main-thread time of the stream scripts (cores, cluster-wide)",
             n1(st["redis_cores"])],
        ],
    )  # fmt: skip
    lines += ["", f"### Redis Cluster for {a.users:,} users", ""]
    lines += table(
        ["case", "hash-max-listpack-entries", "encoding", "bytes / user", "primary TB",
         "TB, 1 replica", "TB, 2 replicas", f"primaries ({a.node_memory_gb:g} GB at "
         f"{a.node_fill:.0%})", "nodes, 1 replica", "nodes, 2 replicas",
         "main thread per primary (reads + stream scripts)"],
        [
            [r["case"], r["config"] + (" (plan)" if r["case"] == PLAN_CASE
                                       and r["config"] == plan.recommended_config else ""),
             r["encoding"], n0(r["bytes_per_entity"]), n2(r["primary_tb"]),
             n2(r["tb_1_replica"]), n2(r["tb_2_replicas"]), n0(r["primaries"]),
             f"{n0(r['nodes_1_replica'])} ({n1(r['ram_tb_1_replica'])})",
             f"{n0(r['nodes_2_replicas'])} ({n1(r['ram_tb_2_replicas'])})",
             f"{r['thread_share_per_primary']:.1%}"]
            for r in plan.redis
        ],
    )  # fmt: skip
    widest = {r["config"]: r for r in plan.redis if r["case"] == CLUSTER_CASES[-1]}
    default, raised = widest["default (128)"], widest["listpack 1024"]
    lines += [
        "",
        f"Recommended: `hash-max-listpack-entries {CONFIGS[plan.recommended_config]}` "
        f"(rule: the setting needing the fewest primaries at 500 features per user whose "
        f"clusters all keep each primary's main thread under "
        f"{a.redis_thread_utilisation:.0%}, the default unless that saves 10%). At 500 "
        f"features 1024 keeps the hash a listpack: {n0(raised['bytes_per_entity'])} against "
        f"{n0(default['bytes_per_entity'])} bytes per user ({raised['primaries']} against "
        f"{default['primaries']} primaries), for {n1(raised['read_us'])} against "
        f"{n1(default['read_us'])} us of Redis time per 10-feature HMGET (a listpack is "
        f"scanned, a hashtable hashed) and {n0(raised['write_us'])} against "
        f"{n0(default['write_us'])} us per write of the whole record. "
        "At 100 features (103 fields at most, under 128) both settings give a listpack: "
        "the same memory.",
    ]
    ops = plan.redis_ops
    lines += [
        "",
        f"Totals include the stream partials of {a.streamed_user_share:.0%} of users "
        f"({n2(plan.design['stream_tb'])} TB at "
        f"{n0(f['stream_redis_bytes_per_key'].value)} bytes per streamed key). Ops check "
        f"(plan row): {n0(ops['reads_per_primary'])} HMGETs/s and "
        f"{n0(ops['writes_per_primary'])} stream events/s per primary over "
        f"{n0(ops['primaries'])} primaries: {n1(ops['read_cores'])} cores of reads "
        f"({n1(ops['read_us'])} us per HMGET, the request mix above) + "
        f"{n1(ops['write_cores'])} of stream scripts cluster-wide = "
        f"{ops['thread_share_per_primary']:.1%} of each primary's main thread; CPU alone "
        f"would need {n0(ops['primaries_for_cpu'])} primaries at "
        f"{a.redis_thread_utilisation:.0%}. Memory sets the node count, not operations.",
        "",
        "### DynamoDB alternative: cost drivers (us-east-1 list prices, per month)",
        "",
    ]
    lines += table(
        ["case", "item read (bytes)", "storage GB (cost)", "RCU/s eventual (strong)",
         "WCU/s", "reads on demand", "reads provisioned", "writes on demand",
         "writes provisioned", "daily full refresh (WRU/day, cost)"],
        [
            [d["case"], n0(d["item_bytes"]), f"{n0(d['storage_gb'])} ({usd(d['storage_month'])})",
             f"{n0(d['rcu_per_s'])} ({n0(d['rcu_strong_per_s'])})", n0(d["wcu_per_s"]),
             usd(d["reads_on_demand_month"]), usd(d["reads_provisioned_month"]),
             usd(d["writes_on_demand_month"]), usd(d["writes_provisioned_month"]),
             f"{d['daily_refresh_wru'] / 1e9:,.1f} bn ({usd(d['daily_refresh_month'])})"]
            for d in plan.dynamodb
        ],
    )  # fmt: skip
    lines += [
        "",
        f"Prices: ${a.price_per_million_rru} per million read request units, "
        f"${a.price_per_million_wru} per million write request units (on demand); "
        f"${a.price_rcu_hour} per RCU-hour, ${a.price_wcu_hour} per WCU-hour (provisioned, "
        f"sized at {a.target_utilisation:.0%} utilisation); ${a.price_gb_month} per GB-month; "
        f"{a.hours_per_month:g} hours a month. A streamed update is a PutItem of the view's "
        "whole record (the stream worker keeps partials in Redis only), and a rejected "
        "conditional PutItem costs its units too.",
        "",
        "### Against the design's estimate",
        "",
    ]
    d = plan.design
    lines += table(
        ["", "bytes / user", "primary TB", "TB with 2 replicas (RF 3)"],
        [
            ["design (100 features x 100 bytes)", n0(d["design_bytes_per_entity"]),
             n2(d["design_tb"]), n2(d["design_tb_replicated"])],
            [f"measured ({PLAN_CASE}, {plan.recommended_config}, + stream partials)",
             n0(d["measured_bytes_per_entity"]), n2(d["measured_tb"]), n2(d["measured_tb_rf3"])],
        ],
    )  # fmt: skip
    lines += [
        "",
        f"Measured: {n1(d['bytes_per_feature'])} bytes per feature and "
        f"{n0(d['fixed_bytes_per_entity'])} bytes per user (key, keyspace and expiry entries, "
        f"the cluster's slot links, `_ts/_ver/_exp`), fitted from the 10- and 100-feature "
        f"cases; the raw field names and values of a 100-feature user are "
        f"{n0(d['payload_bytes_per_entity'])} bytes. The design counts 100 bytes per feature "
        f"(a key per feature, 56 bytes, plus value and index overhead): "
        f"{d['design_bytes_per_entity'] / d['measured_bytes_per_entity']:.1f}x the measured "
        "figure.",
        "",
        "### Headline",
        "",
    ]
    chosen = next(
        r for r in plan.redis if r["case"] == PLAN_CASE and r["config"] == plan.recommended_config
    )
    plan_sidecar = next(s for s in plan.sidecar if s["batch_share"] == a.batch_share)
    dyn = plan.dynamodb[0]
    on_demand = dyn["reads_on_demand_month"] + dyn["writes_on_demand_month"]
    provisioned = dyn["reads_provisioned_month"] + dyn["writes_provisioned_month"]
    lines += [
        f"- Sidecar: **{plan_sidecar['cores']} cores** ({a.batch_share:.0%} of vectors in "
        f"100-key requests, {a.target_utilisation:.0%} utilisation).",
        f"- Stream: **{st['processes']} worker processes**, **{st['partitions']} Kafka "
        "partitions**.",
        f"- Redis Cluster (`hash-max-listpack-entries` {CONFIGS[plan.recommended_config]}): "
        f"**{n2(chosen['primary_tb'])} TB** of primaries, **{n2(chosen['tb_1_replica'])} TB** "
        f"with 1 replica ({chosen['nodes_1_replica']} nodes of {a.node_memory_gb:g} GB, "
        f"{n1(chosen['ram_tb_1_replica'])} TB of RAM), **{n2(chosen['tb_2_replicas'])} TB** "
        f"with 2 ({chosen['nodes_2_replicas']} nodes, {n1(chosen['ram_tb_2_replicas'])} TB of "
        "RAM); the design: "
        f"{n0(d['design_tb'])} TB / {n0(d['design_tb_replicated'])} TB.",
        f"- DynamoDB ({PLAN_CASE}): {n0(dyn['rcu_per_s'])} RCU/s, {n0(dyn['wcu_per_s'])} WCU/s, "
        f"{n0(dyn['storage_gb'])} GB: {usd(on_demand)} a month on demand, "
        f"{usd(provisioned)} provisioned (throughput; storage "
        f"{usd(dyn['storage_month'])}).",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def rewrite_doc(doc: Path, body: str) -> None:
    """Replace what lies between :data:`BEGIN` and :data:`END` in ``doc`` with ``body``."""
    text = doc.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{doc}: markers {BEGIN} ... {END} not found")
    doc.write_text(text[: start + len(BEGIN)] + "\n" + body + text[end:])


def plan_command(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.measurements).read_text())
    figures, notes = latest_throughput(args.serve_results, args.stream_results)
    plan = make_plan(data, figures, notes, Assumptions())
    body = render(plan, data)
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(plan), indent=1, default=str))
    if not args.no_write:
        rewrite_doc(args.doc, body)
        print(f"rewrote {args.doc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    m = sub.add_parser("measure", help="measure memory, item sizes and Redis CPU")
    m.add_argument("--entities", type=int, default=5000, help="users written per case")
    m.add_argument("--out", type=Path, default=WORK / "measurements.json")
    m.add_argument("--workdir", type=Path, default=None, help="scratch (default: a temp dir)")
    m.add_argument("--no-moto", action="store_true", help="skip the moto item-size check")
    p = sub.add_parser("plan", help="compute the plan and rewrite bench/CAPACITY.md")
    p.add_argument("--measurements", type=Path, default=WORK / "measurements.json")
    p.add_argument("--serve-results", type=Path, default=REPO / "bench/.work/serve/results.json")
    p.add_argument("--stream-results", type=Path, default=REPO / "bench/.work/stream/results.json")
    p.add_argument("--doc", type=Path, default=DOC, help="the document to rewrite")
    p.add_argument("--json", type=Path, default=None, help="also write the plan's figures")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.step == "measure":
        with tempfile.TemporaryDirectory(prefix="capacity-") as scratch:
            workdir = args.workdir or Path(scratch)
            measure(args.entities, workdir, args.out, not args.no_moto)
        return 0
    return plan_command(args)


if __name__ == "__main__":
    sys.exit(main())
