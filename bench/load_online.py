"""Benchmark of the online loader: 1,000,000 entities x 10 features into a local Redis.

    .venv/bin/python bench/load_online.py                        # full size
    .venv/bin/python bench/load_online.py --entities 2000 --small-entities 500 --runs 1  # smoke

What is measured, each run in a fresh child process (wall time of the measured step, peak
RSS of the whole process, ``VmHWM``):

  loader   :func:`loader.load` of the bench view from a DuckDB file into Redis: the real
           path (Arrow batches, great_expectations gate, temp Parquet spill, records,
           newer-wins Lua script per record, watermark and load record). The store is empty
           at the start of each run (FLUSHALL), so every row is written.
  loader   also with ``--processes`` counts (default 1,2: ``load(processes=N)``), run side
           by side in each run.
  ceiling  a bare pipelined HSET of PRE-ENCODED data: every record (built by the loader's
           grouper from the same table) encoded as the layout does (the same keys, the 10
           features plus ``_ts/_ver/_exp``) and packed with ``hiredis.pack_command`` into
           pipelines of 2,000 commands (RedisStore's batch size) before the clock starts;
           timed: only sending them on a plain socket and reading the replies. No read, no
           validation, no script, no expiry. Into an emptied server.
  phases   the loader's phases one after the other in one process, each timed alone:
           warehouse read, validation gate, record building, store write (one thread), and
           the server's microseconds per write-script call (INFO commandstats).

Reported: median (min-max) over ``--runs`` of wall seconds, rows/s and peak RSS; the ratio
of the loader's median rate to the ceiling's (target >= 0.80) and the loader's peak RSS
(target < 1 GiB). Then the loader into SQLite (a temp file, ``--runs`` runs) and DynamoDB
(moto's server mode, started here; ``--dynamodb-runs``, default 1, as moto is slow) for
``--small-entities`` entities.

The view is the bench-only ``bench_user_features`` (``models/bench/``: 10 features, 4 int,
4 float, 2 bool, TTL 30 days). Its registry entry comes from a real ``dbt parse`` with
``--vars "{featurestore_bench: true}"``; the view is ``online: false`` (it exists for the
point-in-time benchmark), so the bench marks it online in memory and drives the loader's
library API with it. Its online table (the shape of an ``online_<view>`` model: key,
``as_of_at``, the features, ``<view>__feature_at`` and ``<view>__as_of_at``) is generated
directly in a DuckDB file (deterministic hash-based values, ~2% nulls per feature) rather
than built by dbt: the benchmark is about the loader, and no bench-only online model is
needed. ``FEATURESTORE_NOW`` is 2026-05-01 and feature times fall in April 2026, so nothing
has expired. Results go to ``<workdir>/load_online-results.json``; Redis and moto run on
free loopback ports and are stopped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),  # tests/servers.py: redis-server, moto
]
from measure import (  # noqa: E402
    BIN,
    REPO,
    child_report,
    dbt_env,
    fresh_dir,
    machine_facts,
    markdown_table,
    run_child,
    run_command,
    summary,
)

from tests.servers import moto_server, redis_server  # noqa: E402

VIEW = "bench_user_features"
FEATURES = [f"bench_feature_{i:02d}" for i in range(1, 11)]
NOW = "2026-05-01T00:00:00+00:00"
TABLE_SCHEMA, TABLE = "main_online", f"online_{VIEW}"
TARGET_RATIO = 0.80
#: commands per pipeline of the ceiling: RedisStore's default batch_size
STORE_BATCH = 2000
TARGET_RSS_MIB = 1024.0


# --------------------------------------------------------------------------- data


def generate_table(path: Path, entities: int) -> None:
    """The synthetic online table of the bench view: one row per user."""
    import duckdb

    if path.exists():
        path.unlink()
    ints = [
        f"case when hash(i, {k}, 'n') % 50 = 0 then null else cast(hash(i, {k}) % 21 as bigint) "
        f"end as {FEATURES[k]}"
        for k in range(4)
    ]
    floats = [
        f"case when hash(i, {k}, 'n') % 50 = 0 then null "
        f"else round(exp((hash(i, {k}) % 100000) / 20000.0), 2) end as {FEATURES[k]}"
        for k in range(4, 8)
    ]
    bools = [
        f"case when hash(i, {k}, 'n') % 50 = 0 then null else hash(i, {k}) % 10 < 3 end "
        f"as {FEATURES[k]}"
        for k in range(8, 10)
    ]
    with duckdb.connect(str(path)) as con:
        con.sql(f"create schema {TABLE_SCHEMA}")
        con.sql(
            f"""
            create table {TABLE_SCHEMA}.{TABLE} as
            with base as (
                select i, timestamp '2026-04-01'
                          + to_seconds(cast(hash(i, 't') % (29 * 86400) as bigint)) as ts
                from range({entities}) as r(i)
            )
            select 'usr_' || lpad(cast(i as varchar), 9, '0') as user_id,
                   timestamp '2026-05-01' as as_of_at,
                   {", ".join(ints + floats + bools)},
                   ts as {VIEW}__feature_at,
                   ts + to_seconds(cast(hash(i, 'a') % 3600 as bigint)) as {VIEW}__as_of_at,
                   ts + to_seconds(cast(hash(i, 'a') % 3600 as bigint)) as {VIEW}__changed_at
            from base order by i
            """
        )


def bench_view(workdir: Path) -> Any:
    """The bench view's registry entry from a real ``dbt parse``, marked online."""
    from featurestore.registry import load_registry

    manifest = workdir / "target" / "manifest.json"
    if not manifest.is_file():
        env = dbt_env(workdir, FEATURESTORE_BENCH_DATA=str(workdir / "unused"))
        run_command([str(BIN / "dbt"), "parse", "--vars", "{featurestore_bench: true}"], env=env)
    view = load_registry(manifest).view(VIEW)
    return dataclasses.replace(view, online=True)


def view_source(workdir: Path) -> Any:
    from loader import ViewSource

    return ViewSource(bench_view(workdir), schema=TABLE_SCHEMA, table=TABLE)


# --------------------------------------------------------------------------- servers


_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


# --------------------------------------------------------------------------- children


def child_loader(args: argparse.Namespace) -> None:
    """Load the table into the store URL with the loader's library API; report the rate."""
    from featurestore.clock import parse_now
    from featurestore.online.urls import open_store
    from loader import load
    from loader.validation import preload_validation

    source = view_source(Path(args.workdir))
    preload_validation()
    with open_store(args.url) as store:
        store.initialize()
        started = time.perf_counter()
        report = load(
            store,
            args.duckdb,
            [source],
            batch_rows=args.batch_rows,
            now=parse_now(NOW),
            processes=int(args.processes),
            store_factory=functools.partial(open_store, args.url),
        )
        seconds = time.perf_counter() - started
    result = report.views[0]
    if result.outcome != "success" or result.rows_written != result.rows_read:
        raise SystemExit(f"load did not write every row: {result.summary()}")
    child_report(
        rows=result.rows_read,
        written=result.rows_written,
        seconds=seconds,
        rows_per_second=result.rows_read / seconds,
    )


def _records(args: argparse.Namespace, source: Any) -> list[list[Any]]:
    """The bench table's records, built by the loader's own grouper, per Arrow batch."""
    from loader import DuckDBWarehouse
    from loader.records import RecordGrouper

    grouper = RecordGrouper(source, int(dt.datetime.fromisoformat(NOW).timestamp()))
    out = []
    with DuckDBWarehouse(args.duckdb) as warehouse:
        for batch in warehouse.batches(source, None, args.batch_rows):
            out.append(grouper.feed(batch).records)
    out[-1] += grouper.finish().records
    return out


def child_ceiling(args: argparse.Namespace) -> None:
    """A bare pipelined HSET of pre-encoded data: every record of the table encoded as the
    layout encodes it (the same keys, the 10 features plus ``_ts/_ver/_exp``) and packed
    with ``hiredis.pack_command`` into pipelines of the store's batch size (2,000 commands)
    BEFORE the clock starts; timed: only sending them on a plain socket and reading the
    replies (hiredis.Reader)."""
    import socket

    import hiredis

    from featurestore.online.layout import encode_python_value, redis_key

    source = view_source(Path(args.workdir))
    meta = (f"_ts:{VIEW}", f"_ver:{VIEW}", f"_exp:{VIEW}")
    commands = []
    for records in _records(args, source):
        for record in records:
            command = ["HSET", redis_key("user", record.key, "fs")]
            command += (meta[0], str(record.ts), meta[1], str(record.ver), meta[2], str(record.exp))
            for name, value in record.values.items():
                encoded = encode_python_value(value)
                if encoded is not None:
                    command += (name, encoded)
            commands.append(hiredis.pack_command(tuple(command)))  # type: ignore[arg-type]
    payloads = [
        (b"".join(commands[i : i + STORE_BATCH]), len(commands[i : i + STORE_BATCH]))
        for i in range(0, len(commands), STORE_BATCH)
    ]
    host, port = args.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        for payload, count in payloads:
            sock.sendall(payload)
            reader, got = hiredis.Reader(), 0
            while got < count:
                reader.feed(sock.recv(1 << 20))
                while reader.gets() is not False:
                    got += 1
        seconds = time.perf_counter() - started
    child_report(rows=len(commands), seconds=seconds, rows_per_second=len(commands) / seconds)


def child_phases(args: argparse.Namespace) -> None:
    """The loader's phases one after the other in one process, each timed alone: the
    warehouse read (DuckDB -> Arrow), the validation gate (great_expectations), record
    building (the grouper), the store write (``RedisStore.write`` of the built records, one
    thread); and the server's time per write-script call (INFO commandstats)."""
    import pyarrow as pa
    import redis

    from featurestore.clock import parse_now
    from featurestore.online.urls import open_store
    from loader import DuckDBWarehouse
    from loader.records import RecordGrouper
    from loader.run import VALIDATION_CHUNK_ROWS
    from loader.validation import FUTURE_TOLERANCE, ViewValidator, preload_validation

    source = view_source(Path(args.workdir))
    preload_validation()
    now = parse_now(NOW)
    assert now is not None
    phases: dict[str, float] = {}
    started = time.perf_counter()
    with DuckDBWarehouse(args.duckdb) as warehouse:
        batches = list(warehouse.batches(source, None, args.batch_rows))
    phases["read"] = time.perf_counter() - started
    started = time.perf_counter()
    validator = ViewValidator(source, now, FUTURE_TOLERANCE)
    per_chunk = max(VALIDATION_CHUNK_ROWS // args.batch_rows, 1)
    for i in range(0, len(batches), per_chunk):
        validator.validate(pa.Table.from_batches(batches[i : i + per_chunk]))
    validator.finish(lambda positions: [])
    phases["validate"] = time.perf_counter() - started
    assert validator.passed
    started = time.perf_counter()
    grouper = RecordGrouper(source, int(now.timestamp()))
    built = [grouper.feed(batch).records for batch in batches]
    built[-1] += grouper.finish().records
    phases["build"] = time.perf_counter() - started
    client = redis.Redis.from_url(args.url)
    client.config_resetstat()
    with open_store(f"{args.url}?namespace=fs") as store:
        store.initialize()
        started = time.perf_counter()
        for records in built:
            store.write(records, now=now)
        phases["write"] = time.perf_counter() - started
    stats = client.info("commandstats")
    client.close()
    evalsha = stats.get("cmdstat_evalsha", {})
    rows = sum(len(records) for records in built)
    child_report(
        rows=rows,
        seconds=sum(phases.values()),
        rows_per_second=rows / sum(phases.values()),
        phases={name: round(value, 3) for name, value in phases.items()},
        server_us_per_script_call=evalsha.get("usec_per_call"),
    )


# --------------------------------------------------------------------------- driver


def _stats(reports: list[dict[str, Any]], key: str) -> list[float]:
    return [float(report[key]) for report in reports]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--small-entities", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each Redis and SQLite variant")
    parser.add_argument(
        "--dynamodb-runs",
        type=int,
        default=1,
        help="runs into DynamoDB (moto answers ~250 conditional puts/s: minutes per run)",
    )
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument(
        "--stores", default="redis,sqlite,dynamodb", help="comma-separated: redis,sqlite,dynamodb"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work" / "load_online")
    parser.add_argument(
        "--processes",
        default="1,2",
        help="comma-separated process counts of the Redis loader runs (load(processes=N))",
    )
    parser.add_argument("--child", choices=["loader", "ceiling", "phases"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--duckdb", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "loader":
        child_loader(args)
        return 0
    if args.child == "ceiling":
        child_ceiling(args)
        return 0
    if args.child == "phases":
        child_phases(args)
        return 0
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        parser.error("--processes: positive counts, comma-separated")

    stores = {name.strip() for name in args.stores.split(",") if name.strip()}
    workdir: Path = fresh_dir(args.workdir.resolve())
    script = str(Path(__file__).resolve())
    env = {**dbt_env(workdir), **_AWS, "FEATURESTORE_NOW": NOW}
    print(f"dbt parse (bench view registry) in {workdir} ...", flush=True)
    bench_view(workdir)
    big, small = workdir / "online_big.duckdb", workdir / "online_small.duckdb"
    started = time.perf_counter()
    generate_table(big, args.entities)
    generate_table(small, args.small_entities)
    print(f"generated {args.entities:,} + {args.small_entities:,} rows in "
          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip

    def child(kind: str, url: str, duckdb_file: Path, processes: int = 1) -> dict[str, Any]:
        result = run_child(
            [script, "--child", kind, "--url", url, "--duckdb", str(duckdb_file),
             "--workdir", str(workdir), "--batch-rows", str(args.batch_rows),
             "--processes", str(processes)],
            env,
        )  # fmt: skip
        assert result.report is not None
        report = {**result.report, "wall_seconds": round(result.wall_seconds, 3)}
        print(f"  {kind:<8} {url.split('?')[0]:<40} {report['rows']:>10,} rows "
              f"{report['seconds']:8.2f} s {report['rows_per_second']:>10,.0f} rows/s "
              f"peak {report['peak_rss_mib']:7.1f} MiB", flush=True)  # fmt: skip
        return report

    results: dict[str, Any] = {
        "machine": machine_facts(),
        "entities": args.entities,
        "small_entities": args.small_entities,
        "runs": args.runs,
        "batch_rows": args.batch_rows,
        "processes": counts,
        "redis": {"loader": [], "ceiling": [], "phases": [], **{f"loader_{n}": [] for n in counts}},
        "sqlite": [],
        "dynamodb": [],
    }
    if "redis" in stores:
        with redis_server(workdir / "redis") as server:
            url = server.url
            for run in range(args.runs):  # the variants side by side, run after run
                print(f"redis run {run + 1}/{args.runs}", flush=True)
                for n in counts:
                    flush_redis(url)
                    report = child("loader", f"{url}?namespace=fs", big, n)
                    results["redis"][f"loader_{n}"].append(report)
                flush_redis(url)
                results["redis"]["ceiling"].append(child("ceiling", url, big))
                flush_redis(url)
                phases = child("phases", url, big)
                server_us = phases["server_us_per_script_call"]
                print(f"  phases (s) {phases['phases']}, server {server_us} us per script call",
                      flush=True)  # fmt: skip
                results["redis"]["phases"].append(phases)
            flush_redis(url)
            results["redis"]["loader"] = results["redis"][f"loader_{counts[0]}"]
    if "sqlite" in stores:
        for run in range(args.runs):
            db = workdir / f"online-{run}.db"
            results["sqlite"].append(child("loader", f"sqlite:///{db}", small))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    if "dynamodb" in stores:
        with moto_server() as moto:
            for run in range(args.dynamodb_runs):
                url = moto.url(table=f"bench_{run}")
                results["dynamodb"].append(child("loader", url, small))

    rows = []
    loader_runs, ceiling_runs = results["redis"]["loader"], results["redis"]["ceiling"]
    ratio = None
    if loader_runs and ceiling_runs:
        ratio = statistics.median(_stats(loader_runs, "rows_per_second")) / statistics.median(
            _stats(ceiling_runs, "rows_per_second")
        )
    for label, entities, reports in (
        *(
            (
                f"Redis: loader, {n} process(es) (newer-wins script, validation)",
                args.entities,
                results["redis"].get(f"loader_{n}", []),
            )
            for n in counts
        ),
        ("Redis: bare pipelined HSET of pre-encoded data (ceiling)", args.entities, ceiling_runs),
        (
            "Redis: the loader's phases, one after the other",
            args.entities,
            results["redis"]["phases"],
        ),
        ("SQLite: loader", args.small_entities, results["sqlite"]),
        ("DynamoDB (moto server): loader", args.small_entities, results["dynamodb"]),
    ):
        if not reports:
            continue
        rows.append(
            [
                label,
                f"{entities:,}",
                len(reports),
                summary(_stats(reports, "seconds")),
                summary(_stats(reports, "rows_per_second"), 0),
                summary(_stats(reports, "peak_rss_mib"), 0),
            ]
        )
    print()
    print(markdown_table(
        ["variant", "entities", "runs", "seconds median (min-max)", "rows/s median (min-max)",
         "peak RSS MiB median (min-max)"],
        rows,
    ))  # fmt: skip
    checks: dict[str, Any] = {}
    if ratio is not None:
        peak = statistics.median(_stats(loader_runs, "peak_rss_mib"))
        paired = [
            round(a["rows_per_second"] / b["rows_per_second"], 3)
            for a, b in zip(loader_runs, ceiling_runs, strict=True)
        ]
        checks = {
            "ratio_to_ceiling": round(ratio, 3),
            "paired_run_ratios": paired,
            "ratio_target": TARGET_RATIO,
            "ratio_met": ratio >= TARGET_RATIO,
            "loader_peak_rss_mib": peak,
            "rss_target_mib": TARGET_RSS_MIB,
            "rss_met": peak < TARGET_RSS_MIB,
        }
        print()
        for name in ("read", "validate", "build", "write"):
            values = [report["phases"][name] for report in results["redis"]["phases"]]
            checks[f"phase_{name}_seconds"] = statistics.median(values)
        if len(counts) > 1:
            rates = {
                n: statistics.median(_stats(results["redis"][f"loader_{n}"], "rows_per_second"))
                for n in counts
            }
            checks["rows_per_second_by_processes"] = rates
            print(f"loader rows/s by processes (medians): {rates}")
        print("phases, median seconds: " + ", ".join(
            f"{name} {checks[f'phase_{name}_seconds']:.2f}"
            for name in ("read", "validate", "build", "write")))  # fmt: skip
        print(f"loader ({counts[0]} process) / ceiling rate: {ratio:.2f} "
              f"(target >= {TARGET_RATIO}; run by run "
              f"{', '.join(f'{r:.2f}' for r in paired)}); loader peak RSS {peak:.0f} MiB "
              f"(target < {TARGET_RSS_MIB:.0f})")  # fmt: skip
    results["checks"] = checks
    results["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (workdir / "load_online-results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
