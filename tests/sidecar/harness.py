"""Test support for the sidecar suites (tests/sidecar/test_*.py): the real server started as
``python -m sidecar`` (uvicorn, uvloop, httptools) on a free port, or the same app under
uvicorn in a thread of the test (:func:`serving_in_process`: the test holds its clock),
stores filled by the real loader, and the warehouse's latest values read with plain SQL as
the reference."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from featurestore.clock import Clock
from featurestore.online.layout import Record
from featurestore.online.store import OnlineStore
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView, Registry
from tests.servers import free_port
from tests.warehouse import REPO, Warehouse

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_TEXT = "2026-05-01T00:00:00Z"
API_KEY = "test-key-4f1c9a7e2b8d"
EPOCH = dt.datetime(1970, 1, 1)


# --- the server ------------------------------------------------------------------------------


@dataclass
class SidecarServer:
    """A ``python -m sidecar`` process; ``log`` holds its stderr/stdout."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str | None = API_KEY, timeout: float = 10.0) -> httpx.Client:
        headers = {"X-API-Key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def sidecar_env(
    online_url: str,
    manifest: Path,
    *,
    now: str | None = NOW_TEXT,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FEATURESTORE_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "FEATURESTORE_ONLINE_URL": online_url,
            "FEATURESTORE_MANIFEST": str(manifest),
            "FEATURESTORE_API_KEYS": API_KEY,
            "FEATURESTORE_STORE_TIMEOUT_MS": "2000",  # generous: 2 shared cores under xdist
        }
    )
    if now is not None:
        env["FEATURESTORE_NOW"] = now
    env.update(extra or {})
    return env


def start_sidecar(
    workdir: Path, env: Mapping[str, str], args: Sequence[str] = (), port: int | None = None
) -> SidecarServer:
    """Start the server and wait until /health answers (raises with its output if it dies)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"sidecar-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--port", str(port), *args],
            cwd=REPO,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = SidecarServer(port=port, proc=proc, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=0.5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.terminate()
    raise RuntimeError(f"sidecar did not answer /health within 60 s:\n{server.output()}")


@contextmanager
def running_sidecar(
    workdir: Path, env: Mapping[str, str], args: Sequence[str] = ()
) -> Iterator[SidecarServer]:
    server = start_sidecar(workdir, env, args)
    try:
        yield server
    finally:
        server.terminate()


@dataclass
class InProcessSidecar:
    """The real app (:func:`sidecar.app.create_app`) served by uvicorn on a free loopback
    port from a thread of the test process, so that the test holds its clock and its state
    (``sidecar``: the cache, the breaker)."""

    port: int
    server: Any  # uvicorn.Server
    thread: threading.Thread
    app: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sidecar(self) -> Any:  # sidecar.state.Sidecar
        return self.app.state.sidecar

    def client(self, api_key: str | None = API_KEY, timeout: float = 10.0) -> httpx.Client:
        headers = {"X-API-Key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@contextmanager
def serving_in_process(
    settings: Any, registry: Registry, store: OnlineStore, clock: Clock
) -> Iterator[InProcessSidecar]:
    """``create_app(settings, registry=, store=, clock=)`` under uvicorn (uvloop, httptools
    as in production) in a background thread, until the block ends (the app then closes
    ``store``)."""
    import uvicorn

    from sidecar.app import create_app

    app = create_app(settings, registry=registry, store=store, clock=clock)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sidecar-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the in-process sidecar did not start on port {port}")
        time.sleep(0.01)
    try:
        yield InProcessSidecar(port=port, server=server, thread=thread, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- the registry served: the demo's, plus a second view of the user entity ------------------

PROFILE = "user_profile_features"
PROFILE_FEATURES = {  # name -> (data_type, default)
    "user_segment": ("varchar", "unknown"),
    "user_risk_score": ("double", None),
    "user_is_vip": ("boolean", False),
    "user_last_login_at": ("timestamp", None),
}


def variant_manifest(demo: Path, out: Path) -> Path:
    """The demo manifest, avg_order_value_90d (declared, tiled) without a default, plus
    user_profile_features: a hand-written view of the user entity (``available_at``, no
    declaration)."""
    manifest = json.loads(demo.read_text())
    nodes = manifest["nodes"]
    base = nodes["model.featurestore.user_transaction_features"]
    column = base["columns"]["avg_order_value_90d"]
    for meta in (column["meta"], column["config"]["meta"]):
        meta["featurestore"]["default"] = None
    extra = copy.deepcopy(base)
    extra.update(
        name=PROFILE,
        unique_id=f"model.featurestore.{PROFILE}",
        alias=PROFILE,
        original_file_path=f"models/features/{PROFILE}.sql",
        relation_name=f'"warehouse"."main_features"."{PROFILE}"',
        description="User profile features (test-only view).",
    )
    # a hand-written view: no declaration, an available_at column (the user view is declared)
    profile_meta = extra["config"]["meta"]["featurestore"]
    profile_meta.pop("windowed", None)
    profile_meta.update(ttl="1d", owner="profiles@shop.example", available_at="available_at")
    if "meta" in extra and "featurestore" in extra["meta"]:
        extra["meta"]["featurestore"] = copy.deepcopy(profile_meta)
    hand_written = nodes["model.featurestore.merchant_chargeback_features"]
    columns = {name: base["columns"][name] for name in ("user_id", "feature_at")}
    columns["available_at"] = copy.deepcopy(hand_written["columns"]["available_at"])
    for name, (data_type, default) in PROFILE_FEATURES.items():
        meta = {"featurestore": {"feature": True, "default": default}}
        columns[name] = {
            "name": name,
            "description": f"{name} (test-only feature)",
            "data_type": data_type,
            "meta": meta,
            "config": {"meta": meta},
        }
    extra["columns"] = columns
    nodes[extra["unique_id"]] = extra
    out.write_text(json.dumps(manifest))
    return out


# --- filling stores with the real loader -----------------------------------------------------


def load_demo(store: OnlineStore, warehouse: Warehouse, views: Sequence[str] | None = None) -> None:
    """``featurestore load`` of the demo warehouse into ``store`` (the loader library)."""
    from loader import load_project

    with pytest.MonkeyPatch.context() as patch:
        warehouse.use(patch)
        report = load_project(store, project_dir=REPO, views=views, now=NOW)
    assert report.exit_code == 0, [(v.view, v.outcome, v.message) for v in report.views]


def sqlite_demo_store(warehouse: Warehouse, folder: Path) -> str:
    """A SQLite store in ``folder`` holding the demo warehouse's loaded values; its URL."""
    return _demo_store(f"sqlite:///{folder / 'online.db'}", warehouse)


def redis_demo_store(
    redis_url: str, prefix: str, warehouse: Warehouse, records: Sequence[Record] = ()
) -> str:
    """A new namespace (``prefix`` and 8 hex digits) of the redis-server at ``redis_url``
    holding the demo warehouse's loaded values, then ``records`` (written at :data:`NOW`);
    its URL."""
    return _demo_store(f"{redis_url}?namespace={prefix}{uuid.uuid4().hex[:8]}", warehouse, records)


def _demo_store(url: str, warehouse: Warehouse, records: Sequence[Record] = ()) -> str:
    with open_store(url) as store:
        store.initialize()
        load_demo(store, warehouse)
        if records:
            store.write(records, now=NOW)
    return url


def load_sample(
    store: OnlineStore,
    warehouse: Warehouse,
    registry: Registry,
    workdir: Path,
    where: Mapping[str, str],
) -> None:
    """The real loader over a sample of the online tables (DynamoDB on moto takes ~5 ms a
    record): ``where[view]`` filters ``online_<view>`` into a small DuckDB copy."""
    from loader import ViewSource, load

    sample = workdir / "sample.duckdb"
    with duckdb.connect(str(sample)) as con:
        con.sql(f"attach '{warehouse.duckdb_path}' as demo (read_only)")
        con.sql("create schema online_sample")
        for view, condition in where.items():
            con.sql(
                f"create table online_sample.online_{view} as "
                f"select * from demo.main_online.online_{view} where {condition}"
            )
        con.sql("detach demo")
    sources = [
        ViewSource(registry.views[view], "online_sample", f"online_{view}") for view in where
    ]
    report = load(store, sample, sources, now=NOW)
    assert report.exit_code == 0, [(v.view, v.outcome, v.message) for v in report.views]


# --- the reference: the warehouse's latest values --------------------------------------------


@dataclass(frozen=True)
class Latest:
    """One row of ``online_<view>``: its feature timestamp and values."""

    feature_at: dt.datetime  # naive UTC
    values: dict[str, Any]


def warehouse_latest(
    warehouse: Warehouse, view: FeatureView, where: str = "", now: dt.datetime = NOW
) -> dict[tuple[str, ...], Latest]:
    """key -> what the sidecar serves at ``now`` from a load of the demo warehouse at its
    cutoff (``DEMO_AS_OF``), computed independently of the loader and the sidecar:

    * a hand-written view: the rows of its online model (read with plain SQL; ``where``
      filters them), the current one and the scheduled ones; the step valid at ``now`` is
      the latest whose ``feature_at`` <= ``now`` (the first if ``now`` is earlier);
    * a declared (tiled) view: :func:`declared_latest`, the rule over the raw events."""
    if view.tiled:
        return declared_latest(warehouse, view, now)
    features = list(view.feature_names())
    columns = [*view.keys, f"{view.name}__feature_at", *features]
    rows = warehouse.query(
        f"select {', '.join(columns)} from main_online.online_{view.name} {where} "
        f"order by {f'{view.name}__feature_at'}"
    )
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
    latest: dict[tuple[str, ...], Latest] = {}
    count = len(view.keys)
    for row in rows:  # ascending by feature_at: the last one at or before now wins
        key = tuple(str(part) for part in row[:count])
        feature_at = row[count]
        assert isinstance(feature_at, dt.datetime)
        step = Latest(feature_at, dict(zip(features, row[count + 1 :], strict=True)))
        if key not in latest or feature_at <= naive_now:
            assert key not in latest or feature_at > latest[key].feature_at  # one row per ts
            latest[key] = step
    return latest


@functools.cache
def _declared_entities(raw_path: Path, view: str) -> dict[tuple[Any, ...], Any]:
    from tests.feature_reference import build_reference

    return build_reference(raw_path).declared[view][1]


def declared_latest(
    warehouse: Warehouse, view: FeatureView, now: dt.datetime = NOW
) -> dict[tuple[str, ...], Latest]:
    """key -> a declared view's answer at ``now`` (``feature_at`` = ``now``: a windowed
    value's timestamp is the request's time) after a load at the demo cutoff ``C``: the rule
    (tests/window_reference.py) over the raw events ingested by ``C``, for the entities whose
    record is live at ``now`` (some event ingested by ``C`` is in a tile that has not left the
    longest window of its hop at both ``C`` and ``now``)."""
    from featurestore.windows import leaves_at
    from tests.warehouse import DEMO_AS_OF
    from tests.window_reference import Entity, to_us

    cutoff_us = to_us(dt.datetime.fromisoformat(DEMO_AS_OF))
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
    now_us = to_us(naive_now)
    longest: dict[int, int] = {}
    for feature in view.features:
        agg = feature.aggregation
        assert agg is not None
        longest[agg.hop_seconds] = max(longest.get(agg.hop_seconds, 0), agg.window_seconds)
    out: dict[tuple[str, ...], Latest] = {}
    for key, entity in _declared_entities(warehouse.raw_path, view.name).items():
        known = [e for e in entity.events if e.ingested_us <= cutoff_us]
        exp_us = max(
            (leaves_at(e.t_e, hop, window) for e in known for hop, window in longest.items()),
            default=0,
        )
        if exp_us <= max(cutoff_us, now_us):  # no tile live at the cutoff, or all gone by now
            continue
        loaded = Entity(known)
        values = {}
        for feature in view.features:
            assert feature.aggregation is not None
            values[feature.name] = loaded.value(feature.aggregation, now_us)
        out[tuple(str(part) for part in key)] = Latest(naive_now, values)
    return out


def iso_z(moment: dt.datetime) -> str:
    """The API's timestamp spelling, by hand: seconds, a 6-digit fraction if any, 'Z'."""
    text = f"{moment:%Y-%m-%dT%H:%M:%S}"
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def expected_answer(
    latest: Latest | None,
    feature: str,
    default: object,
    ttl_seconds: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """What the API must answer for one feature of one key, from the warehouse row."""
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
    if latest is not None and latest.feature_at + dt.timedelta(seconds=ttl_seconds) > naive_now:
        value = latest.values[feature]
        timestamp = iso_z(latest.feature_at)
        if value is not None:
            return {"value": value, "timestamp": timestamp, "status": "PRESENT"}
        reason = "NULL"
    else:
        timestamp = None
        reason = "NOT_FOUND"
    if default is None:
        return {"value": None, "timestamp": timestamp, "status": "MISSING", "reason": reason}
    return {"value": default, "timestamp": timestamp, "status": "DEFAULT", "reason": reason}


def same_answer(got: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Equal, with the value's JSON type too (1 is not 1.0, True is not 1)."""
    return dict(got) == dict(want) and type(got["value"]) is type(want["value"])


def metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    wanted = labels or {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        found = {k: v.strip('"') for k, v in found.items()}
        if all(found.get(k) == v for k, v in wanted.items()):
            return float(value)
    return 0.0


# --- a second hand-written view of the user entity, for the in-process suites ----------------

SPEND = "user_spend_features"
#: name -> (data_type, value type, default)
SPEND_FEATURES: dict[str, tuple[str, str, object]] = {
    "user_spend_7d_count": ("bigint", "int", 0),
    "user_spend_avg_90d": ("double", "float", None),
}


def with_spend_view(base: Registry) -> Registry:
    """``base`` plus :data:`SPEND`: a hand-written view of the user entity (TTL 90 d, no
    declaration) holding :data:`SPEND_FEATURES`, a copy of user_profile_features' settings
    (the demo's user_transaction_features is declared: its records hold tiles)."""
    import dataclasses

    from featurestore.registry import Feature

    template = base.views[PROFILE]
    features = tuple(
        Feature(
            name=name,
            view=SPEND,
            data_type=data_type,
            value_type=value_type,  # type: ignore[arg-type]
            description=name,
            default=default,
        )
        for name, (data_type, value_type, default) in SPEND_FEATURES.items()
    )
    view = dataclasses.replace(
        template,
        name=SPEND,
        relation=f'"warehouse"."main_features"."{SPEND}"',
        ttl="90d",
        ttl_seconds=90 * 86_400,
        features=features,
        data_tests=(),
    )
    assert view.windowed is None and view.available_at is not None
    views = {**base.views, SPEND: view}
    return dataclasses.replace(
        base, views=views, features={**base.features, **{f.name: f for f in features}}
    )
