"""Benchmark of the stream worker: events per second per process into a local Redis, with
Kafka (librdkafka's mock cluster), Redis Streams and a file as sources, and the worker's
memory.

    .venv/bin/python bench/stream_throughput.py      # 200,000 users, 300,000 events, 3 runs
    .venv/bin/python bench/stream_throughput.py --users 2000 --transactions 5000 --runs 1

1. ``featurestore generate`` writes the synthetic transactions (the demo's mess: late,
   skewed, duplicated events) into ``<workdir>/raw``; they become JSON messages of the event
   contract, in ingestion order.
2. ``dbt parse`` into ``<workdir>/target`` (the registry: the streamed views
   ``user_transaction_features`` and ``merchant_transaction_features``).
3. A local ``redis-server`` (the store, and the Redis Streams source), the Kafka mock cluster
   (3 brokers, topic of 4 partitions, messages keyed by user) in a process of its own. The
   mock cluster keeps only the newest ~20,000 messages of a partition, so the Kafka backlog is
   the first ``--kafka-backlog`` (60,000) events.
4. Per run and source: the whole stream is produced first (a backlog), then ONE worker
   process (``featurestore stream``, default settings) consumes it into a fresh Redis
   namespace; with ``--processes 1,2``, also two worker processes started together in one
   consumer group (Kafka: the 4 partitions split by the group; Redis Streams: the group
   hands entries to either consumer; the file source has one reader and runs with 1),
   each count on a backlog of its own, the order alternating from run to run.
   Throughput = events / (time from the first event consumed to the moment the
   last is applied: the store's outcome counters stop changing), read from the worker's
   ``/metrics`` every 50 ms; the worker's CPU time (user + system, all
   threads, /proc) per event; its peak RSS; Redis' ``used_memory`` per streamed key.
5. A check: the store's partials of 200 random users equal the brute-force rule's
   (tests/window_reference.py), and every event was applied or deduplicated once.

Sources interleave within a run. Results: a table (and with several process counts, the
ratio of each count's events/s to the first's, per run), ``<workdir>/results.json``.
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

import redis  # noqa: E402

from bench.measure import parse_project, prometheus_samples  # noqa: E402
from featurestore.online.urls import open_store  # noqa: E402
from featurestore.registry import load_registry  # noqa: E402
from featurestore.timestamps import iso_micros  # noqa: E402
from tests.servers import kafka_mock, redis_server  # noqa: E402
from tests.stream.replay import (  # noqa: E402
    FEATURESTORE,
    as_json,
    demo_rows,
    expected_partials,
    last_ingested_us,
    stored_partials,
)
from tests.window_reference import USER_VIEW  # noqa: E402

SOURCES = ("kafka", "redis-streams", "file")


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return prometheus_samples(text)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _port_in(log: Path, proc: subprocess.Popen[bytes]) -> int:
    """The metrics port a worker announces on its log."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"metrics on port (\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited: {proc.returncode}\n{log.read_text()[-2000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"the worker announced no metrics port:\n{log.read_text()[-2000:]}")


def run_worker(
    source: str,
    online: str,
    land: Path,
    manifest: Path,
    now: str,
    total: int,
    processes: int = 1,
) -> dict[str, Any]:
    """``processes`` workers (one consumer group) over a backlog of ``total`` messages,
    started together: their throughput (all processes), CPU (summed) and memory (the
    largest peak)."""
    procs, ports = [], []
    for n in range(processes):
        command = [
            FEATURESTORE, "stream", "--source", source, "--online", online,
            "--land", str(land / f"worker-{n}"), "--manifest", str(manifest), "--now", now,
            "--metrics-port", "0", "--log-format", "text",
        ]  # fmt: skip
        log = land.parent / f"{land.name}-worker-{n}.log"
        with log.open("wb") as sink:
            procs.append(
                subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=sink)
            )
        ports.append((log, procs[-1]))
    ports_of = [_port_in(log, proc) for log, proc in ports]

    def summed() -> dict[str, float]:
        out: dict[str, float] = {}
        for port in ports_of:
            for name, value in _metrics(port).items():
                out[name] = out.get(name, 0.0) + value
        return out

    first = last = None
    consumed = 0.0
    done, stable = -1.0, 0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and stable < 4:
        values = summed()
        consumed = values.get("featurestore_stream_events_in_total", 0.0)
        now_t = time.monotonic()
        if consumed > 0 and first is None:
            first = now_t
        # the last batch is applied on the writer thread after it is consumed: the end is
        # when every event is consumed and the store's outcomes stop changing
        outcomes = sum(
            v for k, v in values.items() if k.startswith("featurestore_stream_view_events_total")
        )
        if consumed >= total:
            if outcomes != done:
                done, stable, last = outcomes, 0, now_t
            else:
                stable += 1
        time.sleep(0.05)
    cpu = sum(_cpu_seconds(proc.pid) for proc in procs)
    rss = max(_peak_rss_mib(proc.pid) for proc in procs)
    per_process = [
        _metrics(port).get("featurestore_stream_events_in_total", 0.0) for port in ports_of
    ]
    values = summed()
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=120)
    if first is None or last is None:
        raise RuntimeError(f"the workers consumed {consumed} of {total} events")
    seconds = max(last - first, 1e-3)
    applied = {
        k: v for k, v in values.items() if k.startswith("featurestore_stream_view_events_total")
    }
    return {
        "processes": processes,
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / total * 1e6,
        "peak_rss_mib": rss,
        "consumed_per_process": per_process,
        "view_events": applied,
        "dead_letters": values.get("featurestore_stream_dead_letters_total", 0.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--kafka-backlog", type=int, default=60_000)
    parser.add_argument(
        "--processes",
        default="1",
        help="worker processes per consumer group, e.g. 1,2: each count run on the same "
        "backlog in turn within a run (the order alternating); the file source runs with 1",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/featurestore-bench-stream"))
    args = parser.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s]
    counts = [int(n) for n in args.processes.split(",") if n]
    scaling = counts != [1]
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(
        [FEATURESTORE, "generate", "--users", str(args.users), "--transactions",
         str(args.transactions), "--out", str(work / "raw")],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows = demo_rows(work / "raw")
    messages = [as_json(row) for row in rows]
    now = iso_micros(last_ingested_us(rows))
    manifest = parse_project(work)
    registry = load_registry(manifest)
    print(f"{len(messages):,} messages ({args.users:,} users); load average {os.getloadavg()}")
    #: the runs of each label: the source, with the process count when several are compared
    jobs = [
        (source, count)
        for source in sources
        for count in counts
        if count == 1 or source != "file"  # one file, one reader
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    with redis_server(work / "redis") as server, kafka_mock() as kafka:
        client = redis.Redis(port=server.port)
        for run in range(args.runs):
            for source, count in jobs if run % 2 == 0 else _alternate(jobs):
                label = f"{source}, {count} process{'es' if count > 1 else ''}"
                label = label if scaling else source
                tag = f"r{run}{uuid.uuid4().hex[:6]}"
                online = f"{server.url}?namespace={tag}"
                land = work / f"land-{tag}"
                total = len(messages)
                if source == "kafka":
                    # the mock cluster keeps ~20,000 messages per partition (older ones are
                    # deleted): the backlog is the first --kafka-backlog events
                    total = min(total, args.kafka_backlog)
                    kafka.produce(tag, [((r["user_id"] or "").encode(), m)
                                        for r, m in zip(rows[:total], messages[:total],
                                                        strict=True)])  # fmt: skip
                    url = f"kafka://{kafka.bootstrap}/{tag}?group=bench"
                elif source == "redis-streams":
                    pipe = client.pipeline(transaction=False)
                    for n, message in enumerate(messages):
                        pipe.xadd(tag, {"event": message})
                        if n % 10_000 == 9_999:
                            pipe.execute()
                    pipe.execute()
                    url = f"redis-streams://127.0.0.1:{server.port}/{tag}?group=bench"
                else:
                    path = work / f"{tag}.jsonl"
                    path.write_bytes(b"\n".join(messages) + b"\n")
                    url = f"file://{path}"
                memory_before = int(client.info("memory")["used_memory"])
                # the worker's clock at the end of what it streams (key expiry, pruning)
                clock = (
                    now if total == len(messages) else iso_micros(last_ingested_us(rows[:total]))
                )
                land.mkdir()
                report = run_worker(url, online, land, manifest, clock, total, count)
                keys = sum(1 for _ in client.scan_iter(f"{tag}:sp:*", count=10_000))
                report["redis_bytes_per_streamed_key"] = (
                    int(client.info("memory")["used_memory"]) - memory_before
                ) / max(keys, 1)
                report["streamed_keys"] = keys
                if run == 0 or count > 1:
                    report["check"] = check(online, registry, rows[:total])
                results.setdefault(label, []).append(report)
                print(f"run {run + 1} {label}: {report['events_per_s']:,.0f} events/s, "
                      f"{report['cpu_us_per_event']:.1f} us CPU/event, "
                      f"RSS {report['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
                shutil.rmtree(land, ignore_errors=True)
                client.delete(tag)
    print()
    print(
        "| source | runs | events/s median (min-max) | CPU us/event | peak RSS MiB "
        "| Redis bytes per streamed key |"
    )
    print("|---|---|---|---|---|---|")
    for source, reports in results.items():
        rates = [r["events_per_s"] for r in reports]
        print(
            f"| {source} | {len(reports)} | {statistics.median(rates):,.0f} "
            f"({min(rates):,.0f}-{max(rates):,.0f}) | "
            f"{statistics.median(r['cpu_us_per_event'] for r in reports):.1f} | "
            f"{max(r['peak_rss_mib'] for r in reports):.0f} | "
            f"{statistics.median(r['redis_bytes_per_streamed_key'] for r in reports):.0f} |"
        )
    if scaling:
        print()
        print(f"| source | processes | events/s over {counts[0]} process(es), per run: median "
              "(min-max) | events consumed per process (median run) |")  # fmt: skip
        print("|---|---|---|---|")
        for source in sources:
            base = results.get(f"{source}, {counts[0]} process" + ("es" if counts[0] > 1 else ""))
            for count in counts[1:]:
                reports = results.get(f"{source}, {count} processes")
                if not base or not reports:
                    continue
                ratios = [
                    r["events_per_s"] / b["events_per_s"]
                    for r, b in zip(reports, base, strict=False)
                ]
                middle = sorted(reports, key=lambda r: r["events_per_s"])[len(reports) // 2]
                shares = ", ".join(f"{n:,.0f}" for n in middle["consumed_per_process"])
                print(f"| {source} | {count} | {statistics.median(ratios):.2f} "
                      f"({min(ratios):.2f}-{max(ratios):.2f}) | {shares} |")  # fmt: skip
    print(f"\nload average at the end {os.getloadavg()}")
    (work / "results.json").write_text(json.dumps(
        {"users": args.users, "events": len(messages), "results": results}, indent=2))  # fmt: skip
    failed = [
        label
        for label, reports in results.items()
        if any("check" in r and not r["check"]["ok"] for r in reports)
    ]
    if failed:
        print(f"CHECK FAILED for {failed}")
        return 1
    return 0


def _alternate(jobs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The jobs with each source's process counts in reverse order (odd runs)."""
    out: list[tuple[str, int]] = []
    for source in dict.fromkeys(source for source, _ in jobs):
        out += [job for job in jobs if job[0] == source][::-1]
    return out


def check(online: str, registry: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The partials of 200 random users against the brute-force rule."""
    now_us = last_ingested_us(rows)
    view = registry.view(USER_VIEW.name)
    expected = expected_partials(USER_VIEW, view, rows, now_us)
    keys = random.Random(1).sample(sorted(expected), min(200, len(expected)))
    with open_store(online) as store:
        got = stored_partials(store, view, keys, now_us)
    wrong = [k for k in keys if got.get(k) != expected[k]]
    return {"ok": not wrong, "keys": len(keys), "wrong": [list(k) for k in wrong[:5]]}


if __name__ == "__main__":
    sys.exit(main())
