"""Prometheus metrics of the sidecar (``GET /metrics``), one registry per app.

==========================================================  ===================================
``featurestore_sidecar_request_duration_seconds``           histogram by ``route``, ``method``
``featurestore_sidecar_responses_total``                    counter by ``route``, ``status``
``featurestore_sidecar_feature_values_total``               counter by ``status`` (PRESENT,
                                                            DEFAULT, MISSING) and ``reason``
``featurestore_sidecar_cache_lookups_total``                counter by ``result`` (hit, miss)
``featurestore_sidecar_cache_entries``                      gauge
``featurestore_sidecar_store_reads_total``                  counter by ``outcome`` (ok, timeout,
                                                            unavailable, error, circuit_open,
                                                            saturated)
``featurestore_sidecar_store_errors_total``                 counter by ``kind`` (the non-ok
                                                            outcomes above)
``featurestore_sidecar_store_read_duration_seconds``        histogram (reads that answered)
``featurestore_sidecar_degraded_responses_total``           counter
``featurestore_sidecar_invalid_records_total``              counter by ``view``: stored records
                                                            that cannot be decoded (answered
                                                            ``INVALID_RECORD``)
``featurestore_sidecar_degraded``                           gauge: 1 while the circuit is not
                                                            closed
``featurestore_sidecar_circuit_state``                      gauge: 0 closed, 1 open,
                                                            2 half-open
==========================================================  ===================================

Routes are labelled by their path (:data:`sidecar.endpoints.ENDPOINTS`, without the
``root_path`` prefix); any other path is ``other``, so label cardinality stays bounded.

With several workers (``featurestore serve --workers N``) ``PROMETHEUS_MULTIPROC_DIR`` is
set (by the CLI, or by the operator: the CLI then empties it of a previous run's files) and
``/metrics``, whichever worker answers it, aggregates every worker's values
(prometheus_client's multiprocess mode): counters and histograms are summed over all
workers, including ones that exited (a restarted worker's requests still count). Gauges
are one sample each, without a ``pid`` label: the cache entries summed over the live
workers (each has its own cache), the circuit gauges the worst live worker's (each has its
own breaker), a view's data-as-of time the latest any worker read, its age the one the
answering worker computed at this scrape. A worker's live gauges are removed when it shuts
down, and those of workers that died without shutting down (killed; uvicorn starts a
replacement) when a worker starts.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC
from sidecar.endpoints import ENDPOINTS, route_path

__all__ = [
    "ROUTE_LABELS",
    "Metrics",
    "MetricsMiddleware",
    "forget_dead_processes",
    "reset_multiprocess_dir",
]

#: path -> route label (the paths of the route table)
ROUTE_LABELS: Final = {endpoint.path: endpoint.path for endpoint in ENDPOINTS}
STORE_OUTCOMES: Final = ("ok", "timeout", "unavailable", "error", "circuit_open", "saturated")
CIRCUIT_VALUES: Final = {"closed": 0, "open": 1, "half_open": 2}
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip


#: the files of gauges whose samples belong to live processes only: ``gauge_live<mode>_<pid>.db``
_LIVE_GAUGE_FILE: Final = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def reset_multiprocess_dir(directory: Path) -> int:
    """Make ``directory`` ready for a new server's workers: created if missing, emptied of
    the metric files (``*.db``) of an earlier run, which would otherwise add that run's
    counts to this one's (prometheus_client: "wiped between runs"). Returns the files
    removed."""
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def forget_dead_processes(directory: Path) -> list[int]:
    """Remove the live-gauge files of processes that no longer run (a worker killed without
    shutting down) from a multiprocess directory; returns their pids."""
    from prometheus_client import multiprocess

    dead = set()
    for path in directory.glob("gauge_live*_*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if found is not None and not _running(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return sorted(dead)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Metrics:
    def __init__(self) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.multiprocess = bool(directory)
        if directory:
            forget_dead_processes(Path(directory))
        registry = self.registry = CollectorRegistry(auto_describe=True)
        prefix = "featurestore_sidecar"
        self.request_seconds = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.responses = Counter(
            f"{prefix}_responses", "Responses by route and status code.", ["route", "status"],
            registry=registry,
        )  # fmt: skip
        self.feature_values = Counter(
            f"{prefix}_feature_values",
            "Feature values served, by status and reason.",
            ["status", "reason"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            f"{prefix}_cache_lookups",
            "Cache lookups of (entity key, feature view) records.",
            ["result"],
            registry=registry,
        )
        self.cache_hits = self.cache_lookups.labels("hit")
        self.cache_misses = self.cache_lookups.labels("miss")
        self.cache_entries = Gauge(
            f"{prefix}_cache_entries",
            "Records in the local cache (summed over the live workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.store_reads = Counter(
            f"{prefix}_store_reads",
            "Store reads by outcome (ok, or why no answer was used).",
            ["outcome"],
            registry=registry,
        )
        self.store_errors = Counter(
            f"{prefix}_store_errors",
            "Store reads that gave no answer, by kind.",
            ["kind"],
            registry=registry,
        )
        self.store_read_seconds = Histogram(
            f"{prefix}_store_read_duration_seconds",
            "Duration of store reads that answered within the budget.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.degraded_responses = Counter(
            f"{prefix}_degraded_responses",
            "Retrieve responses answered (partly) without the store.",
            registry=registry,
        )
        self.invalid_records = Counter(
            f"{prefix}_invalid_records",
            "Stored records that cannot be decoded (answered INVALID_RECORD), by view.",
            ["view"],
            registry=registry,
        )
        self._invalid_records: dict[str, Counter] = {}
        self.degraded = Gauge(
            f"{prefix}_degraded",
            "1 while the store circuit is open or half-open (in any live worker).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.circuit_state = Gauge(
            f"{prefix}_circuit_state",
            "Store circuit breaker: 0 closed, 1 open, 2 half-open (the worst live worker's).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # freshness (featurestore/freshness.py): refreshed by sidecar/freshness.py, the age
        # recomputed at each scrape from the as-of time
        self.data_as_of = Gauge(
            AS_OF_METRIC,
            "When the view's served data is current as of (batch cutoff or stream watermark).",
            ["view"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.data_age = Gauge(
            AGE_METRIC,
            "Age of the view's served data at the scrape.",
            ["view"],
            registry=registry,
            # set by the worker answering the scrape, just before it renders: the others'
            # values are from their earlier scrapes
            multiprocess_mode="mostrecent",
        )
        self.freshness_sla = Gauge(
            SLA_METRIC,
            "The view's declared freshness SLA.",
            ["view"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._as_of: dict[str, float] = {}
        # the served-vector log (sidecar/served_log.py)
        self.served_log_rows = Counter(
            f"{prefix}_served_log_rows", "Served vectors written to the log.", registry=registry
        )
        self.served_log_dropped = Counter(
            f"{prefix}_served_log_dropped",
            "Requests whose sampled vectors were dropped: the log's queue was full.",
            registry=registry,
        )
        self.served_log_errors = Counter(
            f"{prefix}_served_log_errors",
            "Log writes that failed (rows lost, responses unaffected).",
            registry=registry,
        )
        self._store_outcomes = {name: self.store_reads.labels(name) for name in STORE_OUTCOMES}
        self._store_errors = {
            name: self.store_errors.labels(name) for name in STORE_OUTCOMES if name != "ok"
        }
        for child in self._store_errors.values():  # export zeros from the start
            child.inc(0)
        self.cache_hits.inc(0)
        self.cache_misses.inc(0)
        self.degraded.set(0)
        self.circuit_state.set(0)
        self._latency = {
            (route, method): self.request_seconds.labels(route, method)
            for route in {*ROUTE_LABELS.values(), "other"}
            for method in ("GET", "POST", "HEAD")
        }
        self._responses: dict[tuple[str, int], Counter] = {}
        self._feature_values: dict[tuple[str, str], Counter] = {}

    # --- recording ----------------------------------------------------------------------

    def store_read(self, outcome: str, seconds: float | None = None) -> None:
        self._store_outcomes[outcome].inc()
        if outcome == "ok":
            if seconds is not None:
                self.store_read_seconds.observe(seconds)
        else:
            self._store_errors[outcome].inc()

    def invalid_record(self, view: str) -> None:
        child = self._invalid_records.get(view)
        if child is None:
            child = self._invalid_records[view] = self.invalid_records.labels(view)
        child.inc()

    def circuit(self, state: str) -> None:
        self.circuit_state.set(CIRCUIT_VALUES[state])
        self.degraded.set(0 if state == "closed" else 1)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        latency = self._latency.get((route, method))
        if latency is None:
            latency = self._latency[(route, method)] = self.request_seconds.labels(route, method)
        latency.observe(seconds)
        counter = self._responses.get((route, status))
        if counter is None:
            counter = self._responses[(route, status)] = self.responses.labels(route, str(status))
        counter.inc()

    def feature_statuses(self, counts: Iterable[tuple[tuple[str, str], int]]) -> None:
        children = self._feature_values
        for labels, count in counts:
            if count:
                child = children.get(labels)
                if child is None:
                    child = children[labels] = self.feature_values.labels(*labels)
                child.inc(count)

    def view_freshness(self, view: str, sla_s: int, as_of_s: float | None) -> None:
        """A view's SLA and the time its data is current as of (None: unknown)."""
        self.freshness_sla.labels(view).set(sla_s)
        if as_of_s is not None:
            self._as_of[view] = as_of_s
            self.data_as_of.labels(view).set(as_of_s)

    def data_ages(self, now_s: float) -> None:
        """Set each known view's age at ``now_s`` (before a scrape)."""
        for view, as_of_s in self._as_of.items():
            self.data_age.labels(view).set(max(0.0, now_s - as_of_s))

    def close(self) -> None:
        """This process's live gauges removed (multiprocess mode), at shutdown."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess and directory:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    # --- exposition ---------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request and counting responses by status
    (``POST /api/v1/features/retrieve`` never reaches it: :class:`sidecar.app.SidecarApp`
    answers it first and :class:`sidecar.routes.RetrieveEndpoint` records itself)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = ROUTE_LABELS.get(route_path(scope), "other")
            method = scope["method"] if scope["method"] in ("GET", "POST", "HEAD") else "OTHER"
            self.metrics.request(route, method, status, time.perf_counter() - started)
