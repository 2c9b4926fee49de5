"""What one multi-entity request costs against the single-entity requests it replaces.

    .venv/bin/python bench/multi_entity.py [--requests 400] [--rows 1,100]

The demo project's manifest (``dbt parse`` into a temporary folder), a local redis-server
(empty: every key misses, so every request reads the store; the cache cannot admit a key
read once, random keys are never read twice), one sidecar worker (``python -m sidecar``).
For ``--rows`` R, per round a random (user, merchant, device) triple per row, asked:

* **multi**: one request, ``{"features": [3 features of user, merchant, user_device],
  "entities": [R items]}``;
* **3 sequential**: the three single-entity requests one after the other (a client without
  the multi form);
* **3 concurrent**: the same three at once on three connections.

The three shapes run interleaved, one client, one request (or triple) at a time. Printed
per shape: mean, p50 and p99 latency (ms) of the whole answer, and the sidecar's CPU time
per answer (user + system from /proc, the figure a busy host changes least).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.servers import redis_server  # noqa: E402
from tests.sidecar.harness import API_KEY, running_sidecar, sidecar_env  # noqa: E402
from tests.warehouse import Warehouse  # noqa: E402

RETRIEVE = "/api/v1/features/retrieve"
SINGLE = {
    "user": (["avg_order_value_90d"], ["user_id"]),
    "merchant": (["merchant_chargeback_rate_30d"], ["merchant_id"]),
    "user_device": (["device_seen_before"], ["user_id", "device_id"]),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks of 10 ms


def rows(count: int, rng: random.Random) -> list[dict[str, str]]:
    return [
        {
            "user_id": f"usr_{rng.randrange(10**8):08d}",
            "merchant_id": f"mer_{rng.randrange(10**6):06d}",
            "device_id": f"dev_{rng.randrange(16**4):04x}",
        }
        for _ in range(count)
    ]


async def run(url: str, pid: int, count: int, requests: int) -> None:
    rng = random.Random(count)
    features = [f for names, _ in SINGLE.values() for f in names]
    timings: dict[str, list[float]] = {"multi": [], "3 sequential": [], "3 concurrent": []}
    cpu: dict[str, float] = dict.fromkeys(timings, 0.0)
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as one:
        clients = [httpx.AsyncClient(base_url=url, headers=headers, timeout=10) for _ in range(3)]

        def singles(batch: list[dict[str, str]]) -> list[dict[str, object]]:
            return [
                {"entity_name": entity, "features": names,
                 "entity_keys": [{c: row[c] for c in columns} for row in batch]}
                for entity, (names, columns) in SINGLE.items()
            ]  # fmt: skip

        async def multi(batch: list[dict[str, str]]) -> None:
            response = await one.post(RETRIEVE, json={"features": features, "entities": batch})
            assert response.status_code == 200, response.text

        async def sequential(batch: list[dict[str, str]]) -> None:
            for body in singles(batch):
                assert (await one.post(RETRIEVE, json=body)).status_code == 200

        async def concurrent(batch: list[dict[str, str]]) -> None:
            answers = await asyncio.gather(
                *(c.post(RETRIEVE, json=b) for c, b in zip(clients, singles(batch), strict=True))
            )
            assert all(a.status_code == 200 for a in answers)

        shapes = {"multi": multi, "3 sequential": sequential, "3 concurrent": concurrent}
        for shape in shapes.values():  # warm-up: connections, first requests
            for _ in range(20):
                await shape(rows(count, rng))
        for _ in range(requests):
            for name, shape in shapes.items():
                batch = rows(count, rng)
                before_cpu = cpu_seconds(pid)
                started = time.perf_counter()
                await shape(batch)
                timings[name].append(time.perf_counter() - started)
                cpu[name] += cpu_seconds(pid) - before_cpu
        for client in clients:
            await client.aclose()
    print(f"\n{count} row(s) per request, {requests} answers per shape")
    print(f"{'shape':<14} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/answer':>14}")
    for name, values in timings.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"{name:<14} {statistics.mean(values) * 1e3:8.2f} "
            f"{statistics.median(values) * 1e3:8.2f} {p99 * 1e3:8.2f} "
            f"{cpu[name] / len(values) * 1e3:14.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rows", default="1,100")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as folder:
        workdir = Path(folder)
        warehouse = Warehouse(workdir / "parse")
        warehouse.dbt("parse")
        manifest = warehouse.target_path / "manifest.json"
        with redis_server(workdir / "redis") as redis:
            env = sidecar_env(redis.url, manifest, extra={"FEATURESTORE_STORE_TIMEOUT_MS": "50"})
            with running_sidecar(workdir / "sidecar", env) as server:
                for count in (int(part) for part in args.rows.split(",")):
                    asyncio.run(run(server.url, server.proc.pid, count, args.requests))


if __name__ == "__main__":
    main()
