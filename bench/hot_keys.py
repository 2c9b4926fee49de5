"""Hot keys on a local Redis Cluster: how much of the read load the busiest master takes under a
Zipf-distributed key popularity, without and with the hottest keys declared hot (virtual
shards, featurestore/online/hot_keys.py), and whether every value read is exact.

    .venv/bin/python bench/hot_keys.py                      # 20,000 users, 30,000 reads x 3
    .venv/bin/python bench/hot_keys.py --users 500 --reads 600 --rounds 1   # smoke

A cluster of 3 masters (1 replica each) is started on free ports under ``--workdir``
(default bench/.work/hot_keys). ``--users`` users are written (10 int features each, one view)
through the real cluster store. Each read is one single-key read through the sidecar's read
path (:meth:`RedisClusterStore.read_encoded_async`, ``--concurrency`` reads in flight on one
event loop), its key drawn from a Zipf law (rank r has weight 1 / r^s, ``--zipf`` s, fixed
seed). Variants, alternating in each round over the same draw:

  none        no hot keys
  top-K       the K most popular keys declared hot with ``--replicas`` replicas (K per
              ``--hot``, e.g. 10 and 100)

Per variant: the share of HMGET commands taken by the busiest master (INFO commandstats
deltas; an even spread over 3 masters is 0.33), the three masters' shares, reads per second,
and the values checked: every read must return the value written for its key. Medians over
``--rounds``. Results: ``<workdir>/results.json``; the table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import redis as redis_py  # noqa: E402

from featurestore.online.layout import Record  # noqa: E402
from featurestore.online.redis_cluster_store import RedisClusterStore  # noqa: E402
from featurestore.online.store import EncodedRecord, ViewRead  # noqa: E402
from featurestore.online.urls import open_store  # noqa: E402
from tests.servers import RedisClusterServers, redis_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOW_S = int(time.time())
FEATURES = {f"f{i}": "int" for i in range(10)}
VIEW = ViewRead("bench_hot", FEATURES)


def user(i: int) -> str:
    return f"usr_{i:08d}"


def records(users: int) -> list[Record]:
    ts = (NOW_S - 3600) * 1_000_000
    return [
        Record("user", (user(i),), "bench_hot", ts, ts, NOW_S + 86_400,
               {name: i * 10 + n for n, name in enumerate(FEATURES)})
        for i in range(users)
    ]  # fmt: skip


def zipf_draw(users: int, reads: int, s: float, seed: int) -> list[int]:
    weights = [1.0 / (rank**s) for rank in range(1, users + 1)]
    return random.Random(seed).choices(range(users), weights=weights, k=reads)


def hmget_calls(cluster: RedisClusterServers) -> dict[int, int]:
    out = {}
    for port in cluster.masters():
        client = redis_py.Redis(port=port)
        out[port] = int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))
        client.close()
    return out


async def read_all(store: RedisClusterStore, draw: list[int], concurrency: int) -> int:
    """Reads every drawn key; returns how many values were not the one written."""
    wrong = 0
    queue = iter(draw)

    async def worker() -> None:
        nonlocal wrong
        loop = asyncio.get_running_loop()
        for i in queue:
            rows = await store.read_encoded_async(
                "user", [(user(i),)], [VIEW], deadline=loop.time() + 2.0
            )
            found = rows[0]["bench_hot"]
            if type(found) is not EncodedRecord or int(found.values[3]) != i * 10 + 3:
                wrong += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return wrong


def measure(
    cluster: RedisClusterServers, url: str, draw: list[int], concurrency: int
) -> dict[str, Any]:
    store = open_store(url)
    assert isinstance(store, RedisClusterStore)
    before = hmget_calls(cluster)
    began = time.perf_counter()
    wrong = asyncio.run(read_all(store, draw, concurrency))
    seconds = time.perf_counter() - began
    after = hmget_calls(cluster)
    store.close()
    calls = {port: after[port] - before[port] for port in after}
    total = sum(calls.values())
    shares = sorted((c / total for c in calls.values()), reverse=True)
    return {"busiest": shares[0], "shares": shares, "reads_per_s": len(draw) / seconds,
            "wrong": wrong, "hmget": total}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--hot", default="10,100", help="comma-separated K values")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work" / "hot_keys")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    hot_counts = [int(k) for k in args.hot.split(",") if k]
    results: dict[str, list[dict[str, Any]]] = {}
    with redis_cluster(args.workdir / "cluster") as cluster:
        base = f"{cluster.url}?namespace=bench"
        variants = {"none": base}
        ranked = list(range(args.users))  # rank r is user r (the draw's weights are by index)
        for k in hot_counts:
            path = args.workdir / f"hot-{k}.yml"
            keys = ", ".join(user(i) for i in ranked[:k])
            path.write_text(f"replicas: {args.replicas}\nkeys:\n  user: [{keys}]\n")
            variants[f"top-{k}"] = f"{base}&hot_keys={path}"
        # the writer knows every hot key (the largest list), so every replica is written
        writer = open_store(variants[f"top-{max(hot_counts)}"] if hot_counts else base)
        writer.initialize()
        writer.write(records(args.users), now=None)
        writer.close()
        for round_ in range(args.rounds):
            draw = zipf_draw(args.users, args.reads, args.zipf, seed=round_)
            for name, url in variants.items():
                results.setdefault(name, []).append(measure(cluster, url, draw, args.concurrency))
    print("| variant | busiest master's share of HMGETs, median (min-max) | the three masters' "
          "shares (median round) | reads/s, median | wrong values |")  # fmt: skip
    print("|---|---|---|---|---|")
    failed = False
    for name, runs in results.items():
        busiest = [r["busiest"] for r in runs]
        median_run = sorted(runs, key=lambda r: r["busiest"])[len(runs) // 2]
        wrong = sum(r["wrong"] for r in runs)
        failed = failed or wrong > 0
        label = name if name == "none" else f"{name} hot, {args.replicas} replicas"
        print(
            f"| {label} | {statistics.median(busiest):.3f} ({min(busiest):.3f}-{max(busiest):.3f})"
            f" | {' / '.join(f'{s:.3f}' for s in median_run['shares'])}"
            f" | {statistics.median(r['reads_per_s'] for r in runs):,.0f} | {wrong} |"
        )
    (args.workdir / "results.json").write_text(json.dumps({"args": vars(args) | {
        "workdir": str(args.workdir)}, "results": results}, indent=2))  # fmt: skip
    print(f"\nusers {args.users}, reads {args.reads} x {args.rounds} rounds, zipf s={args.zipf}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
