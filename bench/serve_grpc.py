"""Benchmark: gRPC against REST on one sidecar process, the same data and settings.

::

    .venv/bin/python bench/serve_grpc.py                          # 100,000 entities, 3 x 5 s
    .venv/bin/python bench/serve_grpc.py --entities 1000 --runs 1 --duration 0.5   # smoke

1. The bench view of bench/serve.py (``bench_user_features``: 10 features, 4 bigint, 4
   double, 2 boolean; ``dbt parse`` with the bench var, the copy of the manifest with the
   view online) filled into a local ``redis-server`` (``--entities`` records, values a pure
   function of the id: :func:`bench.serve.values_of`).
2. One sidecar, ``python -m sidecar --workers 1 --port P --grpc-port G`` (uvicorn, uvloop,
   httptools; gRPC on the same event loop; every other setting at its default: store budget
   10 ms, cache 100,000 records for 5 s), the clock pinned to the records' load time. Beside
   it the two ceilings, one process each: the bare Starlette endpoint of bench/serve.py
   (a fixed JSON body) and a bare ``grpc.aio`` servicer on uvloop returning a fixed,
   pre-serialized ``RetrieveFeaturesResponse`` of the same shape (1 or 100 results of 10
   features), the request not even decoded.
3. Correctness first: random single-key and 100-key gRPC responses compared value by value
   with :func:`bench.serve.values_of` (types included: int64, double, bool), and with the
   REST answer to the same request. Exits 1 on any mismatch.
4. ``--runs`` rounds, each of eight interleaved measurements of ``--duration`` seconds
   (after a ``--warmup``) at ``--concurrency``: bare REST, bare gRPC, REST and gRPC with
   single-key random-key requests for the 10 features, and the same four with 100 keys.
   Both load generators are Python asyncio processes on uvloop, so that neither protocol gets
   a faster client: REST bench/serve.py's keep-alive HTTP/1.1 client (one connection per
   coroutine), gRPC a ``grpc.aio`` client (one channel, that is one HTTP/2 connection, per
   coroutine; requests pre-serialized from a pool of 1,000 random ones, responses left
   undecoded). The generators' own cost is printed: their CPU time per request (their
   process's CPU time, all threads, over the measured loop).

Printed: per scenario and protocol, requests/s (median of the rounds, min-max), p50 and
p99 latency (medians), the server's CPU per request (the sidecar's or the bare server's
process, from /proc), the load generator's CPU per request, and gRPC over REST. ``ghz``
(the usual gRPC load tool) is not used: it is not packaged for this machine.
``<workdir>/results.json`` holds every run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.measure import load_report, print_load_report  # noqa: E402
from bench.serve import (  # noqa: E402
    API_KEY,
    BARE,
    BARE_100,
    ENTITY,
    RETRIEVE,
    VIEW,
    bench_manifest,
    cpu_seconds,
    entity_key,
    fill,
    load_averages,
    median_of,
    process,
    run_python_client,
    values_of,
)
from featurestore.online.redis_store import RedisStore  # noqa: E402
from tests.servers import free_port, redis_server  # noqa: E402

GRPC_METHOD: Final = "/featurestore.v1.FeatureServing/RetrieveFeatures"
#: the bare servicer's 100-result method
BARE_GRPC_100: Final = "/featurestore.v1.FeatureServing/RetrieveFeatures100"
#: (name, protocol, target kind, keys per request)
SCENARIOS: Final = (
    ("bare (ceiling), 1 result", "rest", "bare", 1),
    ("bare (ceiling), 1 result", "grpc", "bare", 1),
    ("1 key x 10 features, random keys", "rest", "sidecar", 1),
    ("1 key x 10 features, random keys", "grpc", "sidecar", 1),
    ("bare (ceiling), 100 results", "rest", "bare", 100),
    ("bare (ceiling), 100 results", "grpc", "bare", 100),
    ("100 keys x 10 features, random keys", "rest", "sidecar", 100),
    ("100 keys x 10 features, random keys", "grpc", "sidecar", 100),
)
REQUEST_POOL: Final = 1000


# --- the bare gRPC servicer ---------------------------------------------------------------------


def bare_grpc_body(keys: int) -> bytes:
    """A fixed ``keys``-result response of the bench view's shape (bench/serve.py's
    ``bare_body`` as a message)."""
    from featurestore.grpc_api import serving_pb2 as pb

    features = {
        f"bench_feature_{k:02d}": pb.FeatureValue(
            value=pb.Value(int64_value=1),
            timestamp={"seconds": 1_777_593_600},
            status=pb.STATUS_PRESENT,
        )
        for k in range(1, 11)
    }
    result = pb.EntityResult(entity_key=pb.EntityKey(token="usr_00000000"), features=features)
    response = pb.RetrieveFeaturesResponse(entity_name=ENTITY, results=[result] * keys)
    return response.SerializeToString()


def serve_bare_grpc(port: int) -> None:
    """The gRPC ceiling: a ``grpc.aio`` server on uvloop answering fixed bytes."""
    import grpc
    import uvloop

    bodies = {"RetrieveFeatures": bare_grpc_body(1), "RetrieveFeatures100": bare_grpc_body(100)}

    def answer(body: bytes) -> Any:
        async def handle(request: bytes, context: Any) -> bytes:
            return body

        return grpc.unary_unary_rpc_method_handler(handle)

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "featurestore.v1.FeatureServing",
                    {name: answer(body) for name, body in bodies.items()},
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print(f"bare gRPC servicer on {port}", flush=True)
        await server.wait_for_termination()

    uvloop.run(main())


def wait_grpc(port: int, seconds: float = 60) -> None:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=seconds)


# --- the gRPC load generator ---------------------------------------------------------------------


def grpc_client_process(argv: Sequence[str]) -> None:
    """``--grpc-client PORT METHOD SECONDS CONNECTIONS ENTITIES PER_REQUEST FEATURES``: one
    channel per coroutine, each calling in a loop; prints a WRK_JSON line as bench/serve.py's
    client does."""
    import grpc
    import uvloop

    from featurestore.grpc_api import serving_pb2 as pb

    port, method, seconds, connections = argv[0], argv[1], float(argv[2]), int(argv[3])
    entities, per_request, features = int(argv[4]), int(argv[5]), json.loads(argv[6])
    rng = random.Random()
    pool = [
        pb.RetrieveFeaturesRequest(
            entity_name=ENTITY,
            entity_keys=[
                pb.EntityKey(token=entity_key(rng.randrange(entities))) for _ in range(per_request)
            ],
            features=features,
        ).SerializeToString()
        for _ in range(REQUEST_POOL)
    ]
    latencies: list[float] = []
    errors = 0
    metadata = (("x-api-key", API_KEY),)

    async def connection(deadline: float, offset: int) -> None:
        nonlocal errors
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            call = channel.unary_unary(method)  # bytes in, bytes out
            n = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await call(pool[n % REQUEST_POOL], metadata=metadata, timeout=10)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)
                n += 1

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(connection(deadline, i * 97) for i in range(connections)))
        return time.perf_counter() - started

    cpu_started = time.process_time()  # every thread of the process (gRPC's too)
    elapsed = uvloop.run(main())
    cpu_s = time.process_time() - cpu_started
    latencies.sort()

    def pct(q: float) -> int:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)

    report = {
        "requests": len(latencies),
        "duration_us": round(elapsed * 1e6),
        "status_errors": errors,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": round(latencies[-1] * 1e6),
        "cpu_s": cpu_s,
    }
    print_load_report(report)


def run_grpc_client(
    port: int, method: str, seconds: float, connections: int, entities: int, keys: int,
    features_json: str,
) -> dict[str, Any]:  # fmt: skip
    args = [sys.executable, __file__, "--grpc-client", str(port), method, str(seconds)]
    args += [str(connections), str(entities), str(keys), features_json]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    report = load_report(proc.stdout)
    if report is None:
        raise SystemExit(f"gRPC client gave no report:\n{proc.stdout}\n{proc.stderr}")
    return report


# --- correctness --------------------------------------------------------------------------------


def check_grpc(
    grpc_port: int, rest: httpx.Client, view: Any, entities: int, rng: random.Random
) -> tuple[int, int]:
    """Random single-key and 100-key gRPC answers against :func:`values_of` (value and its
    kind) and against REST's answer to the same request. Returns (values checked,
    mismatches)."""
    import grpc

    from featurestore.grpc_api import serving_pb2 as pb
    from featurestore.grpc_api import serving_pb2_grpc as pb_grpc

    features = list(view.feature_names())
    kinds = {"int": "int64_value", "float": "double_value", "bool": "bool_value"}
    checked = bad = 0
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.FeatureServingStub(channel)
        singles = [[rng.randrange(entities)] for _ in range(20)]
        hundreds = [[rng.randrange(entities) for _ in range(100)] for _ in range(3)]
        for keys in [[0], *singles, *hundreds]:
            sent = [entity_key(i) for i in keys]
            request = pb.RetrieveFeaturesRequest(
                entity_name=ENTITY, entity_keys=[pb.EntityKey(token=k) for k in sent],
                features=features,
            )  # fmt: skip
            response = stub.RetrieveFeatures(request, metadata=[("x-api-key", API_KEY)])
            rest_body = rest.post(
                RETRIEVE, json={"entity_name": ENTITY, "entity_keys": sent, "features": features}
            ).json()
            for entity_id, result, rest_result in zip(
                keys, response.results, rest_body["results"], strict=True
            ):
                want = values_of(entity_id, view)
                for feature in view.features:
                    got = result.features[feature.name]
                    rest_answer = rest_result["features"][feature.name]
                    checked += 1
                    kind = got.value.WhichOneof("kind")
                    value = None if kind is None else getattr(got.value, kind)
                    expected = want[feature.name]
                    if expected is None:  # served as the registered default
                        ok = pb.Status.Name(got.status) == "STATUS_DEFAULT"
                    else:
                        ok = kind == kinds[feature.value_type] and value == expected
                    ok = ok and value == rest_answer["value"]
                    ok = ok and pb.Status.Name(got.status) == f"STATUS_{rest_answer['status']}"
                    if not ok:
                        bad += 1
                        if bad <= 5:
                            print(f"MISMATCH {entity_id} {feature.name}: {got} / {rest_answer}")
    return checked, bad


def conversion_cost(rest: httpx.Client, registry: Any, view: Any, entities: int) -> dict[str, Any]:
    """In this process, on real response bodies of the sidecar: the time gRPC's answer
    spends turning the retriever's JSON body into the message
    (:func:`sidecar.grpc_messages.features_response`) and serializing it, per 1-key and
    100-key response (median of 200 calls, microseconds)."""
    from featurestore.grpc_api import serving_pb2 as pb
    from sidecar.grpc_messages import features_response
    from sidecar.plans import plan_entities

    plan = plan_entities(registry)[ENTITY]
    features = [plan.features[name] for name in view.feature_names()]
    rng = random.Random(2)
    out: dict[str, Any] = {}
    for keys in (1, 100):
        sent = [entity_key(rng.randrange(entities)) for _ in range(keys)]
        body = rest.post(
            RETRIEVE,
            json={
                "entity_name": ENTITY,
                "entity_keys": sent,
                "features": list(view.feature_names()),
            },
        ).content
        messages = [pb.EntityKey(token=key) for key in sent]
        times = []
        for _ in range(200):
            started = time.perf_counter()
            features_response(body, messages, features, False)
            times.append(time.perf_counter() - started)
        out[f"{keys}_key_us"] = statistics.median(times) * 1e6
        out[f"{keys}_key_json_bytes"] = len(body)
        out[f"{keys}_key_proto_bytes"] = len(features_response(body, messages, features, False))
    return out


# --- the run ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each one")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--sidecar-env", action="append", default=[], metavar="NAME=VALUE",
        help="an extra setting of the sidecar (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path, default=Path("/tmp/featurestore-bench-grpc"), help="scratch"
    )
    args = parser.parse_args(argv)
    if args.entities < 100:
        parser.error("need --entities >= 100")
    workdir: Path = args.workdir
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    load_start = load_averages()
    print(f"load averages at start: {load_start}; CPUs: {os.cpu_count()}; ghz: not installed")
    manifest_path, registry, _ = bench_manifest(workdir)
    view = registry.views[VIEW]
    features = list(view.feature_names())
    features_json = json.dumps(features, separators=(",", ":"))
    results: dict[str, Any] = {
        "entities": args.entities, "runs": args.runs, "duration_s": args.duration,
        "concurrency": args.concurrency, "load_start": load_start, "rounds": [],
    }  # fmt: skip
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(workdir / "redis"))
        store = RedisStore(port=redis.port)
        stack.callback(store.close)
        store.initialize()
        fill_s = fill(store, view, args.entities, now)
        print(f"filled Redis: {args.entities:,} entities x {len(features)} in {fill_s:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update({
            "PYTHONPATH": str(REPO), "FEATURESTORE_MANIFEST": str(manifest_path),
            "FEATURESTORE_API_KEYS": API_KEY,
            "FEATURESTORE_NOW": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })  # fmt: skip
        for item in args.sidecar_env:
            name, _, value = item.partition("=")
            env[name] = value
        port, grpc_port = free_port(), free_port()
        sidecar = stack.enter_context(
            process(
                [sys.executable, "-m", "sidecar", "--online", redis.url, "--port", str(port),
                 "--grpc-port", str(grpc_port), "--workers", "1"],
                env, workdir / "sidecar.log", f"http://127.0.0.1:{port}/health", "the sidecar",
            )
        )  # fmt: skip
        bare_port, bare_grpc_port = free_port(), free_port()
        bare = stack.enter_context(
            process(
                [sys.executable, str(REPO / "bench" / "serve.py"), "--bare-server",
                 str(bare_port)],
                env, workdir / "bare.log", f"http://127.0.0.1:{bare_port}{BARE}",
                "the bare endpoint",
            )
        )  # fmt: skip
        bare_grpc_log = workdir / "bare-grpc.log"
        with bare_grpc_log.open("wb") as sink:
            bare_grpc = subprocess.Popen(
                [sys.executable, __file__, "--bare-grpc", str(bare_grpc_port)],
                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stack.callback(bare_grpc.wait, 15)
        stack.callback(bare_grpc.terminate)
        wait_grpc(bare_grpc_port)
        rest = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY})
        )
        checked, bad = check_grpc(grpc_port, rest, view, args.entities, random.Random(1))
        print(f"responses checked: {checked} values (gRPC vs the data and vs REST), {bad} bad")
        results.update({"checked": checked, "bad": bad})
        if bad:
            return 1
        cost = conversion_cost(rest, registry, view, args.entities)
        results["conversion"] = cost
        print(
            f"JSON body -> message + serialization, in-process: {cost['1_key_us']:.0f} us "
            f"(1 key, {cost['1_key_json_bytes']} B JSON, {cost['1_key_proto_bytes']} B proto), "
            f"{cost['100_key_us']:.0f} us (100 keys, {cost['100_key_json_bytes']} B JSON, "
            f"{cost['100_key_proto_bytes']} B proto)"
        )
        server_pids = {"sidecar": sidecar.pid, "bare": bare.pid, "bare-grpc": bare_grpc.pid}
        runs: dict[str, list[dict[str, Any]]] = {}
        for round_number in range(args.runs):
            for name, protocol, target, keys in SCENARIOS:
                report = measure(
                    args, protocol, target, keys, port, grpc_port, bare_port, bare_grpc_port,
                    features_json, server_pids,
                )  # fmt: skip
                runs.setdefault(f"{name} | {protocol}", []).append(report)
            print(f"round {round_number + 1} done; load averages {load_averages()}")
        results["runs"] = runs
    load_end = load_averages()
    results["load_end"] = load_end
    print_table(runs, args)
    print(f"load averages: start {load_start}, end {load_end} (1, 5, 15 min)")
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {workdir / 'results.json'}")
    return 0


def measure(
    args: Any, protocol: str, target: str, keys: int, port: int, grpc_port: int,
    bare_port: int, bare_grpc_port: int, features_json: str, server_pids: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """One measurement (after a warm-up of the same load): the generator's report, the
    server's and the generator's CPU per request."""
    server_pid = (
        server_pids["sidecar"]
        if target == "sidecar"
        else server_pids["bare" if protocol == "rest" else "bare-grpc"]
    )

    def run(seconds: float) -> dict[str, Any]:
        if protocol == "rest":
            path = RETRIEVE if target == "sidecar" else (BARE if keys == 1 else BARE_100)
            url = f"http://127.0.0.1:{port if target == 'sidecar' else bare_port}{path}"
            return run_python_client(
                url, seconds, args.concurrency, None,
                [str(args.entities), str(keys), "0", API_KEY, features_json],
            )  # fmt: skip
        method = GRPC_METHOD if (target == "sidecar" or keys == 1) else BARE_GRPC_100
        return run_grpc_client(
            grpc_port if target == "sidecar" else bare_grpc_port, method, seconds,
            args.concurrency, args.entities, keys, features_json,
        )  # fmt: skip

    if args.warmup > 0:
        run(args.warmup)
    server_before = cpu_seconds(server_pid)
    report = run(args.duration)
    requests = max(report["requests"], 1)
    report["server_cpu_us"] = (cpu_seconds(server_pid) - server_before) / requests * 1e6
    report["client_cpu_us"] = report["cpu_s"] / requests * 1e6
    report["rps"] = report["requests"] / (report["duration_us"] / 1e6)
    return report


def print_table(runs: dict[str, list[dict[str, Any]]], args: Any) -> None:
    print(
        f"\none sidecar process (1 worker), concurrency {args.concurrency}, "
        f"{args.runs} rounds x {args.duration:g} s; medians of the rounds\n"
    )
    print(
        "| scenario | protocol | req/s median (min-max) | p50 ms | p99 ms | server CPU us/req "
        "| client CPU us/req | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, reports in runs.items():
        name, protocol = label.split(" | ")
        rps = [r["rps"] for r in reports]
        print(
            f"| {name} | {protocol} | {median_of(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) "
            f"| {median_of([r['p50_us'] for r in reports]) / 1000:.2f} "
            f"| {median_of([r['p99_us'] for r in reports]) / 1000:.2f} "
            f"| {median_of([r['server_cpu_us'] for r in reports]):.0f} "
            f"| {median_of([r['client_cpu_us'] for r in reports]):.0f} "
            f"| {sum(r['status_errors'] for r in reports)} |"
        )
    print()
    for name in dict.fromkeys(name for name, *_ in SCENARIOS):
        rest = median_of([r["rps"] for r in runs[f"{name} | rest"]])
        over = median_of([r["rps"] for r in runs[f"{name} | grpc"]])
        print(f"gRPC / REST req/s, {name}: {over / rest:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-grpc":
        serve_bare_grpc(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--grpc-client":
        grpc_client_process(sys.argv[2:])
    else:
        sys.exit(main())
