"""Benchmark of streaming freshness: from an event's production to the sidecar serving a
value that includes it, under a steady load.

    .venv/bin/python bench/stream_freshness.py                  # 10,000 events/s, 30 s
    .venv/bin/python bench/stream_freshness.py --rate 500 --duration 5   # smoke

On the real clock (no ``--now``): a local ``redis-server``, the Kafka mock cluster in a
process of its own, ``--workers`` stream workers (one consumer group; default 1;
``featurestore stream``, default settings) and ONE
sidecar (``python -m sidecar --workers 1``, default settings: a streamed view's cache TTL is
100 ms). A background producer process sends ``--rate`` events per second (random users of
``--users``, keyed by user, event and ingestion time = now) for ``--duration`` seconds.
Meanwhile a prober sends, every ``--probe-interval``, one event for a user never seen before
and polls the sidecar (``POST /api/v1/features/retrieve``, every 2 ms) until that user's
``user_10m_transaction_count`` is 1: the latency is from just before the produce call to the
answer that shows it (production, Kafka, the worker's poll and write, Redis, the sidecar's
read and cache). Reported: p50, p90, p99 and max over the probes, the producer's achieved
rate, the worker's consumer lag at the end, the load average. ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.measure import parse_project  # noqa: E402
from tests.servers import free_port, kafka_mock, redis_server  # noqa: E402
from tests.stream.replay import FEATURESTORE  # noqa: E402

API_KEY = "bench-freshness-key-7c1d"


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _port_of(proc: subprocess.Popen[str], pattern: str) -> int:
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"process exited: {proc.wait()}")
        found = re.search(pattern, line)
        if found:
            return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=1, help="stream worker processes")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/featurestore-bench-fresh"))
    args = parser.parse_args(argv)
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = parse_project(work)
    topic = f"fresh{uuid.uuid4().hex[:6]}"
    load_before = os.getloadavg()
    with redis_server(work / "redis") as server, kafka_mock() as kafka:
        online = f"{server.url}?namespace=fresh"
        workers = [
            subprocess.Popen(
                [
                    FEATURESTORE,
                    "stream",
                    "--source",
                    f"kafka://{kafka.bootstrap}/{topic}?group=fresh",
                    "--online",
                    online,
                    "--land",
                    str(work / f"land-{n}"),
                    "--manifest",
                    str(manifest),
                    "--metrics-port",
                    "0",
                    "--log-format",
                    "text",
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(args.workers)
        ]
        metrics_ports = [_port_of(worker, r"metrics on port (\d+)") for worker in workers]
        port = free_port()
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--online", online, "--port", str(port),
             "--workers", "1"],
            cwd=REPO, env={**os.environ, "FEATURESTORE_MANIFEST": str(manifest),
                           "FEATURESTORE_API_KEYS": API_KEY},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=5)
        for _ in range(300):
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        probe_producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
        # warm up: the group joins, the topic exists (auto-created by the first produce)
        warm = f"probe_warm_{uuid.uuid4().hex[:6]}"
        _probe(probe_producer, client, topic, warm, timeout_s=60)
        background = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "stream_producer.py"), kafka.bootstrap, topic,
             str(args.rate),
             str(args.duration), str(args.users)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        latencies: list[float] = []
        missed = 0
        started = time.monotonic()
        while time.monotonic() - started < args.duration:
            tick = time.monotonic()
            latency = _probe(probe_producer, client, topic, f"probe_{uuid.uuid4().hex[:10]}", 10)
            if latency is None:
                missed += 1
            else:
                latencies.append(latency)
            time.sleep(max(0.0, args.probe_interval - (time.monotonic() - tick)))
        out, _ = background.communicate(timeout=120)
        produced = json.loads(out.strip().splitlines()[-1])
        time.sleep(1)
        lag = sum(_lag(port) for port in metrics_ports)
        sidecar.terminate()
        for worker in workers:
            worker.terminate()
        sidecar.wait(timeout=30)
        for worker in workers:
            worker.wait(timeout=60)
    load_after = os.getloadavg()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    result: dict[str, Any] = {
        "workers": args.workers,
        "rate_asked": args.rate,
        "rate_achieved": produced["sent"] / produced["seconds"],
        "probes": len(latencies),
        "missed": missed,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
        "mean_ms": statistics.mean(latencies) * 1000,
        "consumer_lag_end": lag,
        "load_before": load_before,
        "load_after": load_after,
    }
    (work / "results.json").write_text(json.dumps(result, indent=2))
    print("| workers | background events/s (asked / achieved) | probes | p50 ms | p90 ms | p99 ms "
          "| max ms | missed | lag at the end | load avg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.workers} | {args.rate:,.0f} / {result['rate_achieved']:,.0f} | "
        f"{len(latencies)} | "
        f"{result['p50_ms']:.0f} | {result['p90_ms']:.0f} | {result['p99_ms']:.0f} | "
        f"{result['max_ms']:.0f} | {missed} | {lag} | {load_before[0]:.1f} -> {load_after[0]:.1f} |"
    )
    return 0 if latencies and not missed else 1


def _probe(
    producer: Producer, client: httpx.Client, topic: str, user: str, timeout_s: float
) -> float | None:
    """Produce one event for a new user; seconds until the sidecar serves a count of 1."""
    now = _iso_now()
    event = {"transaction_id": f"t_{user}", "user_id": user, "merchant_id": "mer_000001",
             "device_id": None, "amount": "1.00", "currency": "USD",
             "transacted_at": now, "ingested_at": now}  # fmt: skip
    body = {
        "entity_name": "user",
        "entity_keys": [user],
        "features": ["user_10m_transaction_count"],
    }
    started = time.monotonic()
    producer.produce(topic, key=user.encode(), value=json.dumps(event).encode())
    producer.poll(0)
    while time.monotonic() - started < timeout_s:
        answer = client.post("/api/v1/features/retrieve", json=body).json()
        if answer["results"][0]["features"]["user_10m_transaction_count"]["value"] == 1:
            return time.monotonic() - started
        time.sleep(0.002)
    return None


def _lag(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("featurestore_stream_consumer_lag{")
    )


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
