"""A bounded soak of mixed traffic on a local Redis Cluster: reads at a fixed rate through
the sidecar, a nightly-style load every few minutes and a stream worker applying a steady
event rate, all at once; p99 over time, memory of the sidecar and the worker, errors.

    .venv/bin/python bench/soak.py                     # 10 minutes, 500 reads/s, ~11 min
    .venv/bin/python bench/soak.py --minutes 0.4 --rate 50 --load-every 10 \\
        --users 2000 --transactions 10000              # smoke, ~1 min

Preparation (under ``--workdir``, default bench/.work/soak; everything but dbt's
``target/`` is made again on each run, so a folder can be reused):

1. ``featurestore generate`` of ``--users`` users and ``--transactions`` transactions over
   the 120 days before today (so the data is current for the real clock), then
   ``dbt run --select +path:models/online`` into ``<workdir>/warehouse.duckdb``: the online
   models the loader reads, cut off at the current hour (``online_as_of``'s default).
2. A local cluster (``tests/servers.py``: 3 masters with 1 replica each, the README's
   settings) and a first ``featurestore load`` into it.

Then, for ``--minutes``, with the real clock everywhere:

- **reads**: ``featurestore serve`` (one worker, every setting at its default), driven by an
  open-loop client in a process of its own (asyncio, keep-alive HTTP/1.1, ``--connections``
  connections): request *i* is due at ``t0 + i / --rate`` whatever happened before, and its
  latency is counted from that due time, so a stall of the server (or a wait for a free
  connection) shows in the latencies instead of slowing the load down (no coordinated
  omission). Keys uniform over the users the load wrote; ``--multi-share`` of requests ask
  for ``--multi-keys`` keys, the rest for one; every request asks for the user's features.
  An error is a non-200 answer, a transport error or no answer within 5 s; a *degraded*
  answer is a 200 marked ``X-Featurestore-Degraded`` (part of it served without the store);
- **loads**: ``featurestore load --full-refresh`` every ``--load-every`` seconds (the first
  at 0 s; the next one waits for the previous to finish). Full refresh because the warehouse
  is not rebuilt during the soak: an incremental load would find nothing to write, a full
  one writes every record again (the heaviest nightly load this warehouse can give);
- **stream**: ``featurestore stream`` following a JSON-lines file (``file://`` source) to
  which a thread appends ``--events-per-s`` transactions of loaded users, stamped with the
  current time (1% sent twice, as redeliveries).

Every ``--sample-every`` seconds: the resident memory (RSS) of the sidecar and of the worker
(each process with its children), the worker's ``/metrics`` (events in, applied,
duplicates, dead letters, store errors), the sidecar's degraded answers and store errors by
kind, each master's ``used_memory``, the CPU seconds of this script with every descendant
and of the whole host (the difference: other people's jobs), the load average; the client
reports each interval's latencies, errors and degraded answers. Printed: a table per minute
and the verdicts (p99 of the last third of the run against the first third, and of the
intervals during which a load ran against the others; RSS growth of the sidecar and the
worker from minute 2, or for runs under 4 minutes from a quarter of the run, to the end;
errors). Results:
``<workdir>/results.json``. Exit code 1 on any read error, more degraded answers than
``--max-degraded``, a failed load, a dead letter or store error of the worker, a process that
died, or a worker that had not applied every event 30 s after the last was written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from bench.measure import (  # noqa: E402
    BIN,
    dbt_env,
    machine_facts,
    prometheus_samples,
    read_http_response,
)
from tests.servers import free_port, redis_cluster  # noqa: E402

FEATURESTORE = str(BIN / "featurestore")
API_KEY = "bench-soak-key-5c81e0f2"
ENTITY = "user"
USER_TILES = "online_user_transaction_features"
RETRIEVE = "/api/v1/features/retrieve"
REQUEST_TIMEOUT_S = 5.0
MIB = 1024 * 1024


# --- preparation ---------------------------------------------------------------------------


def child_env(work: Path) -> dict[str, str]:
    """The environment of every command: this checkout's packages, the workdir's warehouse,
    dbt target and raw data, nothing inherited that names another store or project."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "FEATURESTORE_"))}
    return {
        **inherited,
        **dbt_env(work, FEATURESTORE_RAW_PATH=str(work / "raw")),
        "PYTHONPATH": str(REPO),
        "FEATURESTORE_API_KEYS": API_KEY,
    }


def run(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def prepare(work: Path, users: int, transactions: int, env: dict[str, str]) -> list[str]:
    """Generate the data and build the online models; returns the users with online tiles."""
    import duckdb

    for stale in ("raw", "land", "logs"):
        shutil.rmtree(work / stale, ignore_errors=True)
    for stale_file in ("warehouse.duckdb", "warehouse.duckdb.wal", "events.jsonl"):
        (work / stale_file).unlink(missing_ok=True)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=120)).strftime("%Y-%m-%d")
    began = time.perf_counter()
    run([FEATURESTORE, "generate", "--users", str(users), "--transactions", str(transactions),
         "--start", start, "--out", str(work / "raw")], env, "featurestore generate")  # fmt: skip
    run([str(BIN / "dbt"), "run", "-q", "--select", "+path:models/online"], env, "dbt run")
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    relation = manifest["nodes"][f"model.featurestore.{USER_TILES}"]["relation_name"]
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        keys = [r[0] for r in con.sql(f"select distinct user_id from {relation}").fetchall()]
    print(f"prepared {len(keys):,} users with online values in "
          f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    return sorted(keys)


def user_features(manifest: Path) -> list[str]:
    from featurestore.registry import load_registry

    registry = load_registry(manifest)
    return [
        feature.name
        for view in registry.views.values()
        if view.online and view.entity.name == ENTITY
        for feature in view.features
    ]


# --- processes -----------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB (0 if it is gone)."""
    total_kib = 0
    for current in process_tree(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total_kib / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid``, its live descendants and the children they
    waited for (the ``cutime``/``cstime`` of ``/proc/<pid>/stat``)."""
    ticks = 0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def host_busy_s() -> float:
    """CPU seconds the whole host has spent busy since boot (all CPUs; ``/proc/stat``:
    user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"X-API-Key": API_KEY})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def service(
    args: list[str], env: dict[str, str], log: Path, ready_url: str, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command (output to ``log``), once ``ready_url`` answers 200; stopped
    with SIGTERM at the end (its exit code is then the caller's to check)."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if http_get(ready_url, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} not ready in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def summed(metrics: dict[str, float], name: str, label: str = "") -> float:
    """The sum of a counter's samples (``name``, e.g. ``..._total``) whose labels hold
    ``label``."""
    return sum(v for k, v in metrics.items() if k.partition("{")[0] == name and label in k)


# --- the event stream and the loads ----------------------------------------------------------


class EventProducer(threading.Thread):
    """Appends ``rate`` transactions a second to ``path`` (ten writes a second), stamped
    with the current time (UTC, no offset); 1% of them written a second time."""

    def __init__(self, path: Path, rate: float, users: list[str], merchants: int) -> None:
        super().__init__(name="events", daemon=True)
        self.path, self.rate, self.users, self.merchants = path, rate, users, merchants
        self.written = 0
        self.stop = threading.Event()
        self._rng = random.Random(11)

    def event(self, n: int, now: dt.datetime) -> bytes:
        rng = self._rng
        at = now - dt.timedelta(seconds=rng.uniform(0, 3))
        return json.dumps({
            "transaction_id": f"txn_soak_{n:012d}",
            "user_id": rng.choice(self.users),
            "merchant_id": f"mer_{rng.randrange(self.merchants):06d}",
            "device_id": None if rng.random() < 0.02 else f"dev_{rng.getrandbits(64):016x}",
            "amount": f"{rng.lognormvariate(3.5, 1.0):.2f}",
            "currency": "USD",
            "transacted_at": at.isoformat(),
            "ingested_at": now.isoformat(),
        }).encode()  # fmt: skip

    def run(self) -> None:
        began, n = time.monotonic(), 0
        recent: list[bytes] = []
        with self.path.open("ab") as file:
            while not self.stop.wait(0.1):
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                lines = []
                for _ in range(int((time.monotonic() - began) * self.rate) - n):
                    line = self.event(n, now)
                    n += 1
                    lines.append(line)
                    if self._rng.random() < 0.01 and recent:
                        lines.append(self._rng.choice(recent))  # a redelivery
                    recent = [*recent[-99:], line]
                file.write(b"".join(line + b"\n" for line in lines))
                file.flush()
                self.written += len(lines)


@dataclass
class LoadRun:
    started_s: float
    seconds: float
    exit_code: int
    rows_read: int | None
    rows_written: int | None


class LoadRunner(threading.Thread):
    """``featurestore load --full-refresh`` at 0, every, 2 x every, ... seconds after
    ``began`` until ``until`` (monotonic), one at a time."""

    def __init__(
        self, online: str, env: dict[str, str], every: float, began: float, until: float
    ) -> None:
        super().__init__(name="loads", daemon=True)
        self.online, self.env, self.every, self.began, self.until = (
            online, env, every, began, until
        )  # fmt: skip
        self.runs: list[LoadRun] = []

    def run(self) -> None:
        k = 0
        while True:
            due = self.began + k * self.every
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= self.until:
                return
            self.runs.append(self.load_once(time.monotonic() - self.began))
            while self.began + k * self.every <= time.monotonic():
                k += 1

    def load_once(self, started_s: float) -> LoadRun:
        began = time.perf_counter()
        proc = subprocess.run(
            [FEATURESTORE, "load", "--online", self.online, "--full-refresh",
             "--log-format", "json"],
            cwd=REPO, env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - began
        total: dict[str, Any] = {}
        for line in proc.stderr.splitlines():
            if '"load.total"' in line:
                total = json.loads(line)
        if proc.returncode != 0:
            print(f"load failed ({proc.returncode}): {proc.stderr[-2000:]}", flush=True)
        return LoadRun(started_s, seconds, proc.returncode, total.get("rows_read"),
                       total.get("rows_written"))  # fmt: skip


# --- the open-loop client (a process of its own: ``--client CONFIG``) -----------------------


def client_main(config_json: str) -> None:
    """Requests due at fixed times; one JSON line per interval on stdout: latencies (ms,
    from the due time), requests, errors by kind, degraded answers."""
    config = json.loads(config_json)
    clock = time.perf_counter  # uvloop's loop.time() moves in whole milliseconds
    host, port = "127.0.0.1", int(config["port"])
    rate, seconds, interval = float(config["rate"]), float(config["seconds"]), config["interval"]
    keys = Path(config["keys_file"]).read_text().split()
    features = json.dumps(config["features"])
    rng = random.Random(int(config["seed"]))
    head = (f"POST {RETRIEVE} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
            f"application/json\r\nX-API-Key: {API_KEY}\r\n")  # fmt: skip
    bucket: dict[str, Any] = {"lat": [], "errors": {}, "degraded": 0}
    Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter] | None

    def request() -> bytes:
        count = config["multi_keys"] if rng.random() < config["multi_share"] else 1
        chosen = json.dumps([rng.choice(keys) for _ in range(count)])
        body = f'{{"entity_name":"{ENTITY}","entity_keys":{chosen},"features":{features}}}'
        return f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode()

    async def exchange(conn: Connection, payload: bytes) -> tuple[Connection, bytes]:
        if conn is None:
            conn = await asyncio.open_connection(host, port)
        reader, writer = conn
        writer.write(payload)
        return conn, await read_http_response(reader)

    async def one(due: float, pool: asyncio.Queue[Connection]) -> None:
        conn = await pool.get()
        payload = request()
        try:
            conn, response_head = await asyncio.wait_for(
                exchange(conn, payload), REQUEST_TIMEOUT_S - (clock() - due)
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError) as exc:  # fmt: skip
            kind = type(exc).__name__
            bucket["errors"][kind] = bucket["errors"].get(kind, 0) + 1
            if conn is not None:
                conn[1].close()
            pool.put_nowait(None)  # connect again on the next use
            return
        pool.put_nowait(conn)
        bucket["lat"].append(round((clock() - due) * 1000, 3))
        status = response_head[9:12].decode()
        if status != "200":
            bucket["errors"][f"http_{status}"] = bucket["errors"].get(f"http_{status}", 0) + 1
        elif b"x-featurestore-degraded: 1" in response_head.lower():
            bucket["degraded"] += 1

    def flush(k: int) -> None:
        nonlocal bucket
        done, bucket = bucket, {"lat": [], "errors": {}, "degraded": 0}
        print(json.dumps({"interval": k, **done}), flush=True)

    async def flusher(t0: float) -> None:
        k = 0
        while True:
            await asyncio.sleep(t0 + (k + 1) * interval - clock())
            flush(k)
            k += 1

    async def main() -> None:
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(config["connections"]):
            pool.put_nowait(await asyncio.open_connection(host, port))
        t0 = clock()
        print(json.dumps({"t0_wall": time.time()}), flush=True)
        ticker = asyncio.create_task(flusher(t0))
        tasks: set[asyncio.Task[None]] = set()
        i, total = 0, int(seconds * rate)
        while i < total:
            due = t0 + i / rate
            if due > clock():
                await asyncio.sleep(due - clock())
            while i < total and t0 + i / rate <= clock():  # catch up: due is due
                task = asyncio.create_task(one(t0 + i / rate, pool))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        if tasks:
            await asyncio.wait(tasks)
        ticker.cancel()
        flush(min(int((clock() - t0) // interval), max(0, math.ceil(seconds / interval) - 1)))
        print(json.dumps({"done": True, "requests": total}), flush=True)

    import uvloop

    uvloop.run(main())


# --- the soak ------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    load_avg: float
    sidecar_rss_mib: float
    worker_rss_mib: float
    events_written: int
    events_in: float
    events_applied: float
    events_duplicate: float
    dead_letters: float
    stream_store_errors: float
    redis_used_memory_mib: list[float]
    #: CPU seconds, cumulative: the host's busy time and this soak's processes' (this one and
    #: every descendant: cluster, sidecar, worker, client, loads)
    host_cpu_s: float
    soak_cpu_s: float
    sidecar_degraded: float
    sidecar_store_errors: dict[str, float]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def soak(args: argparse.Namespace) -> int:
    import redis

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(work)
    print(f"load average at the start {os.getloadavg()}", flush=True)
    keys = prepare(work, args.users, args.transactions, env)
    (work / "keys.txt").write_text("\n".join(keys))
    manifest = work / "target" / "manifest.json"
    features = user_features(manifest)
    duration = args.minutes * 60
    with redis_cluster(work / "cluster") as cluster:
        online = cluster.url
        run([FEATURESTORE, "load", "--online", online, "--log-format", "json"], env,
            "the first load")  # fmt: skip
        masters = [redis.Redis(port=port) for port in cluster.masters()]
        sidecar_port, metrics_port = free_port(), free_port()
        events = work / "events.jsonl"
        events.touch()
        sidecar_args = [FEATURESTORE, "serve", "--online", online, "--port", str(sidecar_port),
                        "--workers", "1", "--manifest", str(manifest)]  # fmt: skip
        if args.store_timeout_ms is not None:
            sidecar_args += ["--store-timeout-ms", str(args.store_timeout_ms)]
        worker_args = [FEATURESTORE, "stream", "--source", f"file://{events}", "--online",
                       online, "--land", str(work / "land"), "--manifest", str(manifest),
                       "--metrics-port", str(metrics_port), "--log-format", "json"]  # fmt: skip
        base = f"http://127.0.0.1:{sidecar_port}"
        worker_base = f"http://127.0.0.1:{metrics_port}"
        with (
            service(sidecar_args, env, work / "sidecar.log", f"{base}/ready", "the sidecar")
            as sidecar,
            service(worker_args, env, work / "worker.log", f"{worker_base}/health", "the worker")
            as worker,
        ):  # fmt: skip
            producer = EventProducer(events, args.events_per_s, keys, merchants=100)
            config = {"port": sidecar_port, "rate": args.rate, "seconds": duration,
                      "interval": args.sample_every, "keys_file": str(work / "keys.txt"),
                      "features": features, "multi_share": args.multi_share,
                      "multi_keys": args.multi_keys, "connections": args.connections,
                      "seed": 5}  # fmt: skip
            client = subprocess.Popen(
                [sys.executable, __file__, "--client", json.dumps(config)], cwd=REPO, env=env,
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            intervals: list[dict[str, Any]] = []
            client_t0: list[float] = []  # the client's first due time, wall clock
            reader = threading.Thread(
                target=read_lines, args=(client, intervals, client_t0), daemon=True
            )
            reader.start()
            began, began_wall = time.monotonic(), time.time()
            loads = LoadRunner(online, env, args.load_every, began, began + duration)
            producer.start()
            loads.start()
            samples: list[Sample] = []

            def sample() -> Sample:
                metrics = prometheus_samples(http_get(f"{worker_base}/metrics")[1])
                served = prometheus_samples(http_get(f"{base}/metrics")[1])
                store_errors = "featurestore_sidecar_store_errors_total"
                view_events = "featurestore_stream_view_events_total"
                return Sample(
                    t=round(time.monotonic() - began, 1),
                    load_avg=os.getloadavg()[0],
                    sidecar_rss_mib=round(tree_rss_mib(sidecar.pid), 1),
                    worker_rss_mib=round(tree_rss_mib(worker.pid), 1),
                    events_written=producer.written,
                    events_in=metrics.get("featurestore_stream_events_in_total", 0.0),
                    events_applied=summed(metrics, view_events, 'outcome="applied"'),
                    events_duplicate=summed(metrics, view_events, 'outcome="duplicate"'),
                    dead_letters=metrics.get("featurestore_stream_dead_letters_total", 0.0),
                    stream_store_errors=summed(metrics, "featurestore_stream_store_errors_total"),
                    redis_used_memory_mib=[
                        round(int(m.info("memory")["used_memory"]) / MIB, 1) for m in masters
                    ],
                    host_cpu_s=host_busy_s(),
                    soak_cpu_s=tree_cpu_s(os.getpid()),
                    sidecar_degraded=summed(
                        served, "featurestore_sidecar_degraded_responses_total"
                    ),
                    sidecar_store_errors={
                        k.partition("{")[2].rstrip("}"): v
                        for k, v in served.items()
                        if k.partition("{")[0] == store_errors
                    },
                )

            samples.append(sample())  # t = 0: the start of the CPU and event counts
            k = 1
            while time.monotonic() < began + duration:
                time.sleep(max(0.0, min(began + k * args.sample_every, began + duration)
                               - time.monotonic()))  # fmt: skip
                samples.append(sample())
                last = samples[-1]
                print(f"{last.t:6.0f} s  sidecar {last.sidecar_rss_mib:.0f} MiB  worker "
                      f"{last.worker_rss_mib:.0f} MiB  applied {last.events_applied:,.0f}  "
                      f"degraded {last.sidecar_degraded:,.0f}  load avg {last.load_avg:.2f}",
                      flush=True)  # fmt: skip
                k += 1
            producer.stop.set()
            producer.join()
            client_code = client.wait(timeout=120)
            reader.join(timeout=10)
            loads.join(timeout=600)
            caught_up = False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not caught_up:
                end = sample()
                caught_up = end.events_in >= producer.written
                time.sleep(0.5)
            sidecar_metrics = prometheus_samples(http_get(f"{base}/metrics")[1])
            sidecar_alive, worker_alive = sidecar.poll() is None, worker.poll() is None
        worker_exit, sidecar_exit = worker.returncode, sidecar.returncode
        for m in masters:
            m.close()
    offset = client_t0[0] - began_wall if client_t0 else 0.0
    results = summarize(args, intervals, offset, samples, loads.runs, duration)
    results["stream"] = {"events_written": producer.written, "final": asdict(end),
                         "caught_up": caught_up, "exit_code": worker_exit,
                         "alive_at_end": worker_alive}  # fmt: skip
    results["sidecar"] = {
        "exit_code": sidecar_exit,
        "alive_at_end": sidecar_alive,
        "store_errors_by_kind": end.sidecar_store_errors,
        "degraded_responses_total": summed(
            sidecar_metrics, "featurestore_sidecar_degraded_responses_total"
        ),
    }
    results["client_exit_code"] = client_code
    results["machine"] = machine_facts()
    failures = verdict_failures(args, results)
    results["failures"] = failures
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print_report(results)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    return 0


def read_lines(
    client: subprocess.Popen[str], intervals: list[dict[str, Any]], t0: list[float]
) -> None:
    assert client.stdout is not None
    for line in client.stdout:
        data = json.loads(line)
        if "interval" in data and intervals and intervals[-1]["interval"] == data["interval"]:
            merged = intervals[-1]  # stragglers of the last interval, answered after it
            merged["lat"] += data["lat"]
            merged["degraded"] += data["degraded"]
            for kind, n in data["errors"].items():
                merged["errors"][kind] = merged["errors"].get(kind, 0) + n
        elif "interval" in data:
            intervals.append(data)
        elif "t0_wall" in data:
            t0.append(data["t0_wall"])


def summarize(
    args: argparse.Namespace,
    intervals: list[dict[str, Any]],
    offset: float,
    samples: list[Sample],
    loads: list[LoadRun],
    duration: float,
) -> dict[str, Any]:
    """Per-minute rows and the verdicts' figures. Interval ``k`` of the client covers
    ``[offset + k * step, offset + (k + 1) * step)`` seconds of the soak."""
    step = args.sample_every
    for i in intervals:  # did a load run during (part of) the interval?
        low = offset + i["interval"] * step
        i["during_load"] = any(
            r.started_s < low + step and r.started_s + r.seconds > low for r in loads
        )
    during = [x for i in intervals if i["during_load"] for x in i["lat"]]
    outside = [x for i in intervals if not i["during_load"] for x in i["lat"]]

    def latencies(low: float, high: float) -> list[float]:
        return [x for i in intervals if low <= i["interval"] * step < high for x in i["lat"]]

    def count(low: float, high: float, what: str) -> int:
        chosen = [i for i in intervals if low <= i["interval"] * step < high]
        if what == "errors":
            return sum(sum(i["errors"].values()) for i in chosen)
        return sum(len(i["lat"]) if what == "requests" else i[what] for i in chosen)

    minutes = []
    for m in range(int(-(-duration // 60))):
        low, high = m * 60, min((m + 1) * 60, duration)
        lat = latencies(low, high)
        inside = [s for s in samples if low < s.t <= high + 1] or samples[-1:]
        last = inside[-1]
        before = next((s for s in reversed(samples) if s.t <= low + 1), samples[0])
        seconds = max(last.t - before.t, 1e-9)
        soak_cores = (last.soak_cpu_s - before.soak_cpu_s) / seconds
        host_cores = (last.host_cpu_s - before.host_cpu_s) / seconds
        minutes.append({
            "minute": m + 1,
            "requests": count(low, high, "requests") + count(low, high, "errors"),
            "p50_ms": percentile(lat, 0.50),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": max(lat, default=float("nan")),
            "errors": count(low, high, "errors"),
            "degraded": count(low, high, "degraded"),
            "sidecar_rss_mib": last.sidecar_rss_mib,
            "worker_rss_mib": last.worker_rss_mib,
            "events_applied": last.events_applied - before.events_applied,
            "soak_cpu_cores": round(soak_cores, 2),
            "other_cpu_cores": round(host_cores - soak_cores, 2),
            "redis_used_memory_mib": sum(last.redis_used_memory_mib),
            "load_avg": max(s.load_avg for s in inside),
            "loads": [round(r.seconds, 1) for r in loads if low <= r.started_s < high],
        })  # fmt: skip
    third = duration / 3
    first, last_third = latencies(0, third), latencies(2 * third, duration + step)
    baseline_t = min(60.0, duration / 4)
    base = next(s for s in samples if s.t >= baseline_t - 0.5)
    end = samples[-1]

    def growth(attr: str) -> dict[str, float]:
        a, b = getattr(base, attr), getattr(end, attr)
        return {"from_t": base.t, "to_t": end.t, "from_mib": a, "to_mib": b,
                "mib": round(b - a, 1), "pct": round((b - a) / a * 100, 1)}  # fmt: skip

    errors: dict[str, int] = {}
    for i in intervals:
        for kind, n in i["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "minutes": minutes,
        "intervals": [
            {k: v for k, v in i.items() if k != "lat"}
            | {
                "requests": len(i["lat"]),
                "p50_ms": percentile(i["lat"], 0.5),
                "p99_ms": percentile(i["lat"], 0.99),
            }
            for i in intervals
        ],
        "samples": [asdict(s) for s in samples],
        "loads": [asdict(r) for r in loads],
        "verdicts": {
            "p99_first_third_ms": percentile(first, 0.99),
            "p99_last_third_ms": percentile(last_third, 0.99),
            "p99_ratio_last_to_first": round(
                percentile(last_third, 0.99) / percentile(first, 0.99), 2
            ),
            "sidecar_rss_growth": growth("sidecar_rss_mib"),
            "worker_rss_growth": growth("worker_rss_mib"),
            "requests": sum(len(i["lat"]) for i in intervals) + sum(errors.values()),
            "read_errors": errors,
            "degraded": sum(i["degraded"] for i in intervals),
            "p99_intervals_with_a_load_ms": percentile(during, 0.99),
            "p99_intervals_without_ms": percentile(outside, 0.99),
            "degraded_in_intervals_with_a_load": sum(
                i["degraded"] for i in intervals if i["during_load"]
            ),
            "loads": len(loads),
            "failed_loads": sum(1 for r in loads if r.exit_code != 0),
            "load_seconds_median": statistics.median([r.seconds for r in loads] or [0.0]),
            "dead_letters": end.dead_letters,
            "stream_store_errors": end.stream_store_errors,
        },
    }


def verdict_failures(args: argparse.Namespace, results: dict[str, Any]) -> list[str]:
    v, stream, sidecar = results["verdicts"], results["stream"], results["sidecar"]
    checks = [
        (sum(v["read_errors"].values()) > 0, f"read errors {v['read_errors']}"),
        (v["degraded"] > args.max_degraded, f"{v['degraded']} degraded answers"),
        (v["failed_loads"] > 0, f"{v['failed_loads']} failed loads"),
        (v["loads"] == 0, "no load ran"),
        (stream["final"]["dead_letters"] > 0, "dead letters"),
        (stream["final"]["stream_store_errors"] > 0, "stream store errors"),
        (not stream["alive_at_end"] or stream["exit_code"] != 0,
         f"the worker died or exited {stream['exit_code']}"),
        (not stream["caught_up"], "the worker had not consumed every event"),
        # uvicorn stops gracefully on SIGTERM, then re-raises it (exit code -15)
        (not sidecar["alive_at_end"] or sidecar["exit_code"] not in (0, -signal.SIGTERM),
         f"the sidecar died or exited {sidecar['exit_code']}"),
        (results["client_exit_code"] != 0, "the client failed"),
    ]  # fmt: skip
    return [message for failed, message in checks if failed]


def print_report(results: dict[str, Any]) -> None:
    print()
    print("| minute | requests | p50 ms | p99 ms | max ms | errors | degraded | sidecar RSS MiB "
          "| worker RSS MiB | view updates applied | Redis used_memory MiB (3 masters) "
          "| CPU cores: soak / other processes | load avg (max) | loads (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in results["minutes"]:
        print(f"| {m['minute']} | {m['requests']:,} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
              f"| {m['max_ms']:.1f} | {m['errors']} | {m['degraded']} "
              f"| {m['sidecar_rss_mib']:.1f} | {m['worker_rss_mib']:.1f} "
              f"| {m['events_applied']:,.0f} | {m['redis_used_memory_mib']:.1f} "
              f"| {m['soak_cpu_cores']:.2f} / {m['other_cpu_cores']:.2f} "
              f"| {m['load_avg']:.2f} | {', '.join(map(str, m['loads'])) or '-'} |")  # fmt: skip
    v = results["verdicts"]
    sidecar, worker = v["sidecar_rss_growth"], v["worker_rss_growth"]
    print()
    print(
        f"p99 first third {v['p99_first_third_ms']:.2f} ms, last third "
        f"{v['p99_last_third_ms']:.2f} ms: ratio {v['p99_ratio_last_to_first']:.2f}"
    )
    for name, g in (("sidecar", sidecar), ("worker", worker)):
        print(
            f"{name} RSS {g['from_mib']:.1f} MiB at {g['from_t']:.0f} s -> {g['to_mib']:.1f} "
            f"MiB at {g['to_t']:.0f} s: {g['mib']:+.1f} MiB ({g['pct']:+.1f}%)"
        )
    stream = results["stream"]
    print(f"requests {v['requests']:,}, read errors {sum(v['read_errors'].values())} "
          f"{v['read_errors'] or ''}, degraded {v['degraded']}; loads {v['loads']} "
          f"(failed {v['failed_loads']}, median {v['load_seconds_median']:.1f} s); events "
          f"written {stream['events_written']:,}, consumed {stream['final']['events_in']:,.0f}, "
          f"view updates applied {stream['final']['events_applied']:,.0f}, duplicates "
          f"{stream['final']['events_duplicate']:,.0f}, dead letters {v['dead_letters']:.0f}, "
          f"store errors {v['stream_store_errors']:.0f}")  # fmt: skip
    print(f"p99 of the {results['args']['sample_every']:g}-s intervals during which a load ran "
          f"{v['p99_intervals_with_a_load_ms']:.2f} ms, of the others "
          f"{v['p99_intervals_without_ms']:.2f} ms; degraded answers in the former "
          f"{v['degraded_in_intervals_with_a_load']}")  # fmt: skip
    print(f"load average at the end {results['machine']['load_avg_1_5_15']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        client_main(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0, help="reads per second")
    parser.add_argument("--multi-share", type=float, default=0.2)
    parser.add_argument("--multi-keys", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--load-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--events-per-s", type=float, default=200.0)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--max-degraded", type=int, default=0)
    parser.add_argument(
        "--store-timeout-ms", type=float, default=None, help="the sidecar's (default: its own)"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work" / "soak")
    return soak(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
