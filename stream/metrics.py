"""The stream worker's Prometheus metrics and its ``/health`` and ``/metrics`` endpoints
(README "Streaming", "Operating the worker").

Served by a small threaded HTTP server (``--metrics-port``, default 9108; 0 picks a free
port, printed in the start-up log): ``GET /metrics`` in the Prometheus text format, ``GET
/health`` a JSON object, status 200 while the worker runs and its store and source answer,
503 otherwise (``status``: ``ok``, ``store_unavailable``, ``source_unavailable`` or
``stopping``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Health", "WorkerMetrics", "serve_endpoints"]


class WorkerMetrics:
    """Every metric of one worker, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "featurestore_stream_events_in", "Messages consumed from the source", registry=r
        )
        self.view_events = Counter(
            "featurestore_stream_view_events",
            "Events per view by what the store did: applied, duplicate (id seen within the "
            "dedup horizon), replayed (offset already applied)",
            ["view", "outcome"],
            registry=r,
        )
        self.late = Counter(
            "featurestore_stream_late_events",
            "Events behind their partition's watermark, by what happened: applied (default "
            "policy), rejected (--late-policy reject: left to the batch), too_old (can never "
            "count: left to the batch)",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "featurestore_stream_dead_letters", "Messages that do not fit the contract", registry=r
        )
        self.landed = Counter(
            "featurestore_stream_landed_rows", "Rows landed as Parquet", ["kind"], registry=r
        )
        self.commits = Counter("featurestore_stream_commits", "Commits to the source", registry=r)
        self.store_errors = Counter(
            "featurestore_stream_store_errors",
            "Store writes that failed (retried with backoff)",
            registry=r,
        )
        self.lag = Gauge(
            "featurestore_stream_consumer_lag",
            "Messages (file: bytes) not yet consumed, per partition",
            ["partition"],
            registry=r,
        )
        self.watermark_delay = Gauge(
            "featurestore_stream_watermark_delay_seconds",
            "The worker's clock minus its lowest active watermark",
            registry=r,
        )
        self.watermark = Gauge(
            "featurestore_stream_watermark_seconds",
            "The lowest active watermark (epoch seconds)",
            registry=r,
        )
        self.write_seconds = Histogram(
            "featurestore_stream_store_write_seconds",
            "Time of one store apply (all writes of one batch)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_events = Histogram(
            "featurestore_stream_batch_events",
            "Messages per poll batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )


@dataclass
class Health:
    """What ``/health`` reports; the worker updates it."""

    status: str = "starting"
    source: str = ""
    store: str = ""
    views: list[str] = field(default_factory=list)
    last_poll: float = 0.0
    last_apply: float = 0.0
    detail: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, status: str, detail: str = "") -> None:
        with self.lock:
            self.status = status
            self.detail = detail

    def document(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            return {
                "status": self.status,
                "detail": self.detail,
                "source": self.source,
                "store": self.store,
                "views": self.views,
                "seconds_since_poll": round(now - self.last_poll, 3) if self.last_poll else None,
                "seconds_since_apply": round(now - self.last_apply, 3) if self.last_apply else None,
            }


def serve_endpoints(
    metrics: WorkerMetrics, health: Health, host: str, port: int
) -> ThreadingHTTPServer:
    """Start the ``/metrics`` and ``/health`` server on a daemon thread; returns it (its
    ``server_port`` is the port bound)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                body = generate_latest(metrics.registry)
                self._send(200, CONTENT_TYPE_LATEST, body)
            elif self.path.split("?")[0] == "/health":
                document = health.document()
                code = 200 if document["status"] in ("ok", "starting") else 503
                self._send(code, "application/json", json.dumps(document).encode())
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="stream-metrics", daemon=True).start()
    return server
