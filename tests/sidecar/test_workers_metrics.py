"""``featurestore serve --workers 2`` (the real CLI: ``python -m sidecar``) and its
``/metrics`` in prometheus_client's multiprocess mode, over the demo's SQLite store: every
worker's requests counted once in the totals whichever worker answers the scrape, the gauges
one sample each (the live workers' cache entries summed, the age the answering worker's),
a previous run's files not counted, a killed worker's gauges dropped once uvicorn has
replaced it, and the CLI's own directory made and removed.

Which worker answered what is read from the per-process files of the directory
(``counter_<pid>.db``), the ground truth the aggregate is computed from; every request
opens a connection of its own, so the kernel spreads them over both workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC
from featurestore.registry import FeatureView, Registry, load_registry
from tests.sidecar.harness import (
    API_KEY,
    SidecarServer,
    running_sidecar,
    sidecar_env,
    sqlite_demo_store,
    warehouse_latest,
)
from tests.warehouse import Warehouse

pytestmark = pytest.mark.xdist_group("serve-workers")

RETRIEVE = "/api/v1/features/retrieve"
VIEW = "merchant_chargeback_features"  # a batch view of the demo (entity merchant)
FEATURE = "merchant_chargeback_rate_30d"
PREFIX = "featurestore_sidecar"
GAUGES = (
    f"{PREFIX}_cache_entries",
    f"{PREFIX}_degraded",
    f"{PREFIX}_circuit_state",
    AS_OF_METRIC,
    AGE_METRIC,
    SLA_METRIC,
)


@dataclass
class Served:
    server: SidecarServer
    metrics_dir: Path
    view: FeatureView
    keys: list[str]
    #: the requests of the run before this server's, counted into the same directory
    earlier_requests: int


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


@pytest.fixture(scope="module")
def served(
    demo_warehouse: Warehouse, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Two workers on the real clock (the age gauge moves), cache TTL of an hour (entries
    stay for the whole module), an operator's ``PROMETHEUS_MULTIPROC_DIR`` that a first
    server run already wrote to."""
    folder = tmp_path_factory.mktemp("serve-workers")
    view = registry.views[VIEW]
    keys = sorted(key for (key,) in warehouse_latest(demo_warehouse, view))
    metrics_dir = folder / "prometheus"
    env = sidecar_env(
        sqlite_demo_store(demo_warehouse, folder),
        demo_warehouse.target_path / "manifest.json",
        now=None,
        extra={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "FEATURESTORE_CACHE_TTL": "1h"},
    )
    earlier = 5
    with running_sidecar(folder / "first", env, ["--workers", "2"]) as first:
        for key in keys[:earlier]:
            assert ask(first, key).status_code == 200
    assert sum(per_worker(metrics_dir, "responses_total", RETRIEVE).values()) == earlier
    with running_sidecar(folder / "second", env, ["--workers", "2"]) as server:
        yield Served(server, metrics_dir, view, keys, earlier)


def ask(server: SidecarServer, key: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"entity_name": "merchant", "entity_keys": [key], "features": [FEATURE]}
    if client is not None:
        return client.post(RETRIEVE, json=body)
    with server.client() as fresh:  # a connection of its own
        return fresh.post(RETRIEVE, json=body)


def scrape(server: SidecarServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] of one ``/metrics`` answer (its own connection)."""
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    found = [
        v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def per_worker(metrics_dir: Path, sample: str, route: str) -> dict[int, float]:
    """pid -> that process's ``featurestore_sidecar_<sample>`` for ``route``, from its own
    counter or histogram file (``<kind>_<pid>.db``)."""
    out: dict[int, float] = {}
    for path in metrics_dir.glob("*_*.db"):
        kind, _, pid = path.stem.rpartition("_")
        if kind not in ("counter", "histogram"):
            continue
        for family in MultiProcessCollector.merge([str(path)], accumulate=True):  # type: ignore[no-untyped-call]
            for s in family.samples:
                if s.name == f"{PREFIX}_{sample}" and s.labels.get("route") == route:
                    out[int(pid)] = out.get(int(pid), 0.0) + s.value
    return out


def workers_of(served: Served) -> set[int]:
    """The pids of the worker processes that wrote metrics (not the CLI's own process)."""
    pids = {int(p.stem.rpartition("_")[2]) for p in served.metrics_dir.glob("counter_*.db")}
    return pids - {served.server.proc.pid}


def ask_twice(served: Served, keys: list[str]) -> int:
    """Units of one new connection asking one key twice (the cache admits a key on its
    second miss, so the worker that answered caches it), 4 at a time, 12 keys of ``keys``
    after another until both workers have answered some of these (24 keys at least).
    Returns the keys used."""
    server = served.server
    first = per_worker(served.metrics_dir, "responses_total", RETRIEVE)

    def unit(key: str) -> None:
        with server.client() as client:
            for _ in range(2):
                assert ask(server, key, client).status_code == 200

    used = 0
    with ThreadPoolExecutor(4) as pool:
        while used < len(keys):
            list(pool.map(unit, keys[used : used + 12]))
            used = min(used + 12, len(keys))
            now = per_worker(served.metrics_dir, "responses_total", RETRIEVE)
            if len([p for p in now if now[p] > first.get(p, 0)]) >= 2 and used >= 24:
                break
    return used


def test_totals_equal_the_requests_sent_across_both_workers(served: Served) -> None:
    """Requests on connections of their own, spread over both workers by the kernel: the
    totals of ``/metrics`` equal what was sent (not the earlier run's), whichever worker
    answers the scrape; the gauges are one sample each."""
    server = served.server
    keys = served.keys[served.earlier_requests : len(served.keys) // 2]
    used = ask_twice(served, keys)
    sent = 2 * used
    answered = per_worker(served.metrics_dir, "responses_total", RETRIEVE)
    assert len(answered) == 2 and min(answered.values()) > 0, answered  # both workers
    assert sum(answered.values()) == sent  # nothing of the earlier run's files left
    assert set(answered) == workers_of(served)

    samples = scrape(server)
    route = {"route": RETRIEVE}
    assert value(samples, f"{PREFIX}_responses_total", status="200", **route) == sent
    count = value(samples, f"{PREFIX}_request_duration_seconds_count", method="POST", **route)
    assert count == sent
    buckets = [
        (float(labels["le"]), v)
        for labels, v in samples[f"{PREFIX}_request_duration_seconds_bucket"]
        if labels["route"] == RETRIEVE and labels["method"] == "POST"
    ]
    assert max(buckets)[1] == sent  # le="+Inf"
    assert [v for _, v in sorted(buckets)] == sorted(v for _, v in buckets)  # cumulative
    assert value(samples, f"{PREFIX}_request_duration_seconds_sum", method="POST", **route) > 0
    # every lookup missed (each key asked twice, admitted on the second miss)
    assert value(samples, f"{PREFIX}_cache_lookups_total", result="miss") == sent
    assert value(samples, f"{PREFIX}_cache_lookups_total", result="hit") == 0
    values = sum(v for _, v in samples[f"{PREFIX}_feature_values_total"])
    assert values == sent  # one feature per request
    # gauges: one sample per label set, no pid label, each worker's own cache summed
    for name in GAUGES:
        labelled = [tuple(sorted(labels.items())) for labels, _ in samples[name]]
        assert labelled and len(labelled) == len(set(labelled)), name
        assert all("pid" not in labels for labels, _ in samples[name]), name
    assert value(samples, f"{PREFIX}_cache_entries") == used
    assert value(samples, f"{PREFIX}_degraded") == 0
    assert value(samples, f"{PREFIX}_circuit_state") == 0
    assert value(samples, SLA_METRIC, view=served.view.name) == served.view.freshness_sla_seconds


def test_the_age_gauge_is_the_answering_workers_at_the_scrape(served: Served) -> None:
    """On the real clock: every scrape's age equals now - as-of at that scrape, whichever
    worker answers (the other worker's value, from its own last scrape, is older)."""
    view = served.view.name
    answered: dict[int, float] = {}
    scrapes = 0
    while scrapes < 8 or (len(answered) < 2 and scrapes < 40):
        started = time.time()
        samples = scrape(served.server)
        ended = time.time()
        scrapes += 1
        as_of = value(samples, AS_OF_METRIC, view=view)
        age = value(samples, AGE_METRIC, view=view)
        assert started - as_of - 0.05 <= age <= ended - as_of + 0.05, (scrapes, age)
        answered = per_worker(served.metrics_dir, "responses_total", "/metrics")
        time.sleep(0.25)
    assert len(answered) == 2, answered  # both workers answered scrapes


def test_a_killed_workers_gauges_go_with_it(served: Served) -> None:
    """SIGKILL (no shutdown): uvicorn starts a replacement, which drops the dead worker's
    live gauges; its counters stay in the totals."""
    ask_twice(served, served.keys[len(served.keys) // 2 :])
    before = scrape(served.server)
    total = value(before, f"{PREFIX}_responses_total", route=RETRIEVE, status="200")
    old = workers_of(served)
    cached = {pid: live_gauge(served.metrics_dir, pid) for pid in old}
    victim = max(cached, key=lambda pid: cached[pid])
    assert cached[victim] > 0
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not workers_of(served) - old:
        assert time.monotonic() < deadline, "uvicorn started no replacement worker"
        time.sleep(0.1)
    (survivor,) = old - {victim}
    after: dict[str, list[tuple[dict[str, str], float]]] = {}
    for _ in range(3):  # whichever worker answers, the new one once up
        after = scrape(served.server)
        assert value(after, f"{PREFIX}_cache_entries") == cached[survivor]
    assert not list(served.metrics_dir.glob(f"gauge_live*_{victim}.db"))
    assert value(after, f"{PREFIX}_responses_total", route=RETRIEVE, status="200") == total
    assert value(after, f"{PREFIX}_degraded") == 0


def live_gauge(metrics_dir: Path, pid: int) -> float:
    """A process's own ``cache_entries`` (its ``gauge_livesum_<pid>.db``)."""
    path = metrics_dir / f"gauge_livesum_{pid}.db"
    for family in MultiProcessCollector.merge([str(path)], accumulate=True):  # type: ignore[no-untyped-call]
        for s in family.samples:
            if s.name == f"{PREFIX}_cache_entries":
                return float(s.value)
    return 0.0


def test_without_a_directory_the_cli_makes_one_and_removes_it(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = sidecar_env(
        sqlite_demo_store(demo_warehouse, tmp_path),
        demo_warehouse.target_path / "manifest.json",
        extra={"TMPDIR": str(temp)},
    )
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    with running_sidecar(tmp_path / "log", env, ["--workers", "2"]) as server:
        (made,) = temp.glob("featurestore-metrics-*")
        for n in range(20):
            assert ask(server, f"mer_{n:05d}").status_code == 200
        assert sum(per_worker(made, "responses_total", RETRIEVE).values()) == 20
        samples = scrape(server)
        assert value(samples, f"{PREFIX}_responses_total", route=RETRIEVE, status="200") == 20
        with server.client(API_KEY) as client:
            assert client.get("/health").status_code == 200
    assert server.proc.returncode == 0
    assert not made.exists()
    assert not list(temp.glob("featurestore-metrics-*"))
