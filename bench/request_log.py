"""What the request ids and the access log cost per retrieve request, in-process.

    .venv/bin/python bench/request_log.py --manifest target/manifest.json
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python bench/request_log.py ...  # before

The real app (:func:`sidecar.app.create_app`) on an initialized, empty SQLite store (every
value answered ``MISSING``/``DEFAULT`` after a store read), called as an ASGI app without
HTTP (uvicorn's share is the same with or without logs), one single-key request for up to
10 features of the first single-key online entity at a time. Scenarios, interleaved within
each round so that a change of the machine's load hits all alike, ``--requests`` requests
each:

* ``no id``: no ``X-Request-ID`` header (an id is generated), access log off (the default);
* ``id``: a sane ``X-Request-ID`` header kept, access log off;
* ``access log``: the access log on for every request (``FEATURESTORE_ACCESS_LOG_SAMPLE=1``),
  its lines (and any other log line) sent to ``/dev/null``.

Printed: per scenario, the median over ``--rounds`` of microseconds per request (and the
range). Run on a code base without request ids (an older checkout on ``PYTHONPATH``), the
last two print ``n/a`` and the first is the baseline. On a busy host the requests' spread
hides a few microseconds, so the parts the logs add are also timed alone (``timeit``, the
best of 5 repeats of 100,000 calls, as timeit advises): the request context with a kept and
with a generated id, and one access log line written (to ``/dev/null``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featurestore.online.sqlite_store import SQLiteStore
from featurestore.registry import load_registry
from sidecar.app import create_app
from sidecar.settings import Settings

API_KEY = "bench-key-request-log"


def body_for(manifest: Path) -> bytes:
    """A single-key retrieve body for the first single-key online entity."""
    registry = load_registry(manifest)
    for entity in sorted(registry.entities.values(), key=lambda e: e.name):
        if len(entity.keys) != 1:
            continue
        features = [
            feature.name
            for view in registry.views.values()
            if view.online and view.entity.name == entity.name
            for feature in view.features
        ][:10]
        if features:
            return json.dumps(
                {"entity_name": entity.name, "entity_keys": ["k_0001"], "features": features}
            ).encode()
    raise SystemExit(f"{manifest}: no online entity with a single key column")


async def run(app: Any, body: bytes, headers: list[tuple[bytes, bytes]], count: int) -> float:
    """Microseconds per request over ``count`` requests (every response checked: 200)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/features/retrieve",
        "raw_path": b"/api/v1/features/retrieve",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-api-key", API_KEY.encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(sent: dict[str, Any]) -> None:
        if sent["type"] == "http.response.start":
            statuses.append(sent["status"])

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(scope), receive, send)
    elapsed = time.perf_counter() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return elapsed / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("target/manifest.json"))
    parser.add_argument("--requests", type=int, default=5000, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    body = body_for(args.manifest)
    registry = load_registry(args.manifest)
    workdir = Path(tempfile.mkdtemp(prefix="bench-request-log-"))
    store = SQLiteStore(workdir / "online.db")
    store.initialize()
    base = Settings(
        online_url=f"sqlite:///{workdir / 'online.db'}",
        manifest_path=args.manifest,
        api_keys=Settings.from_env(
            {"FEATURESTORE_ONLINE_URL": "sqlite://", "FEATURESTORE_API_KEYS": API_KEY}
        ).api_keys,
    )
    has_logs = any(f.name == "access_log_sample" for f in dataclasses.fields(Settings))
    apps = {"no id": create_app(base, registry=registry, store=store)}
    headers = {"no id": [], "id": [(b"x-request-id", b"bench-3f9a0c1d-42")], "access log": []}
    if has_logs:
        from sidecar.logs import configure_logging

        configure_logging()
        apps["id"] = apps["no id"]
        logged = dataclasses.replace(base, access_log_sample=1.0)
        apps["access log"] = create_app(logged, registry=registry, store=store)
    results: dict[str, list[float]] = {name: [] for name in headers}

    async def rounds() -> None:
        for name, app in apps.items():  # warm-up
            await run(app, body, headers[name], 500)
        for _ in range(args.rounds):
            for name, app in apps.items():
                results[name].append(await run(app, body, headers[name], args.requests))

    stderr = sys.stderr
    with open(os.devnull, "w") as sink:  # the log lines' destination while measuring
        sys.stderr = sink
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        try:
            asyncio.run(rounds())
        finally:
            sys.stderr = stderr
    for app in apps.values():
        if app is not apps["no id"]:
            app.state.sidecar.close()
    apps["no id"].state.sidecar.close()
    print(f"{args.rounds} rounds x {args.requests} single-key requests, in-process, us/request")
    for name, values in results.items():
        figure = f"{statistics.median(values):7.1f}" if values else "    n/a"
        spread = f"  ({min(values):.1f}-{max(values):.1f})" if values else ""
        print(f"  {name:<11} {figure}{spread}")
    if has_logs:
        print("the parts alone, us/call (best of 5 x 100,000)")
        for name, seconds in parts().items():
            print(f"  {name:<24} {seconds * 1e6:6.2f}")
    return 0


def parts() -> dict[str, float]:
    """Seconds per call of what the logs add to a request."""
    from sidecar.logs import AccessLog, RequestContext

    context = RequestContext(b"bench-3f9a0c1d-42")
    access = AccessLog(1.0)
    calls = {
        "context, id kept": lambda: RequestContext(b"bench-3f9a0c1d-42"),
        "context, id generated": lambda: RequestContext(None),
        "access log line": lambda: access.write(context, "POST", "/x", 200, 0.0004),
    }
    stderr = sys.stderr
    with open(os.devnull, "w") as sink:
        sys.stderr = sink
        try:
            return {
                name: min(timeit.repeat(call, number=100_000, repeat=5)) / 100_000
                for name, call in calls.items()
            }
        finally:
            sys.stderr = stderr


if __name__ == "__main__":
    sys.exit(main())
