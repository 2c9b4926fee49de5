"""``featurestore stream``: the stream worker as a long-running service (README "Streaming").

The composition layer adds it to the ``featurestore`` group (``cli/main.py``). Exit codes as
every command's (README "Exit codes"): 2 for a bad option, source URL or view list; 4 when
the store cannot be reached at start (once running, an outage is retried, never an exit);
0 after a graceful stop (SIGTERM, SIGINT, or ``--stop-when-idle``).
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import click
from pythonjsonlogger.json import JsonFormatter

from featurestore.clock import clock_for, parse_now
from featurestore.commands import clean_errors, now_option, online_option
from featurestore.durations import DurationError, parse_duration, parse_seconds
from featurestore.exit_codes import ExitCode
from featurestore.online.store import StoreError
from featurestore.online.urls import open_store
from featurestore.registry import Registry, RegistryError, load_registry
from stream.additions import ViewPlan
from stream.events import EventContract
from stream.landing import Landing, LandingError
from stream.metrics import Health, WorkerMetrics, serve_endpoints
from stream.sources.base import SourceError
from stream.sources.urls import open_source
from stream.worker import LatePolicy, Worker, WorkerSettings

__all__ = ["stream_command"]

log = logging.getLogger("featurestore.stream")
_REPO_DEMO_DATA = Path(__file__).resolve().parents[1] / "data" / "demo"


class StreamUsageError(ValueError):
    """A bad option, view list or landing folder (exit code 2)."""

    exit_code = ExitCode.USAGE


def streamed_plans(registry: Registry, names: str | None) -> list[ViewPlan]:
    """The streamed views to update: ``names`` (comma-separated) or every streamed view;
    all must read one event model."""
    streamed = [v for v in registry.views.values() if v.windowed and v.windowed.streamed]
    if names:
        chosen = []
        for name in (n.strip() for n in names.split(",") if n.strip()):
            view = registry.view(name)
            if view.windowed is None or not view.windowed.streamed:
                raise StreamUsageError(
                    f"view {name} is not streamed (declare meta.featurestore.windowed.streamed: "
                    "true on a declared view; streamed views: "
                    f"{', '.join(v.name for v in streamed) or 'none'})"
                )
            chosen.append(view)
    else:
        chosen = streamed
    if not chosen:
        raise StreamUsageError("no view is declared streamed (meta.featurestore.windowed.streamed)")
    models = {v.windowed.events for v in chosen if v.windowed is not None}
    if len(models) > 1:
        raise StreamUsageError(
            f"the views read different event models ({', '.join(sorted(models))}): run one "
            "worker per event model (--views)"
        )
    return [ViewPlan.of(view) for view in chosen]


def _seconds(text: str, option: str) -> float:
    try:
        return parse_seconds(text)
    except DurationError as exc:
        raise StreamUsageError(f"{option}: {exc}") from None


def _configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=True)
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


@click.command("stream")
@click.option(
    "--source",
    "source_url",
    required=True,
    envvar="FEATURESTORE_STREAM_SOURCE",
    show_envvar=True,
    help="kafka://host:port/<topic>?group=<g>, redis-streams://host:port[/db]/<stream>?group=<g>"
    " or file:///path/events.jsonl (README: Streaming).",
)
@online_option
@click.option("--views", "view_list", default=None, help="Comma-separated streamed views "
              "(default: every streamed view; they must share one event model).")  # fmt: skip
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("target/manifest.json"),
    envvar="FEATURESTORE_MANIFEST",
    show_envvar=True,
    show_default=True,
    help="dbt's manifest.json (the registry).",
)
@click.option(
    "--land",
    "land_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".warehouse/raw"),
    envvar="FEATURESTORE_STREAM_LAND",
    show_envvar=True,
    show_default=True,
    help="Landing root: the raw source layout the dbt sources read ($FEATURESTORE_RAW_PATH).",
)
@click.option("--late-policy", type=click.Choice(["apply", "reject"]), default="apply",
              show_default=True, help="What to do with an event behind its partition's "
              "watermark: apply it at once (served = training value) or leave it to the "
              "batch.")  # fmt: skip
@click.option("--out-of-orderness", default="30s", show_default=True,
              help="Allowed disorder of event times before an event is late.")  # fmt: skip
@click.option("--dedup-horizon", default="3d", show_default=True,
              help="How long an applied event id is remembered (older duplicates: the "
              "batch heals them).")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Messages per poll.")  # fmt: skip
@click.option("--land-interval", default="5s", show_default=True,
              help="Land and commit at least this often.")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9108, show_default=True,
              help="/metrics and /health (0: a free port, logged).")  # fmt: skip
@click.option("--consumer", default=None, help="Consumer name (Redis Streams; default host-pid).")
@click.option("--stop-when-idle", default=None, help="Stop once no message came for this long "
              "(demos, backfills); default: run until SIGTERM.")  # fmt: skip
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json",
              show_default=True)  # fmt: skip
@now_option("Pin the clock, ISO 8601 UTC (key expiry and pruning when replaying past data).")
@clean_errors(StoreError, RegistryError, SourceError, LandingError, StreamUsageError)
def stream_command(
    source_url: str,
    online_url: str,
    view_list: str | None,
    manifest: Path,
    land_root: Path,
    late_policy: str,
    out_of_orderness: str,
    dedup_horizon: str,
    batch_size: int,
    land_interval: str,
    metrics_host: str,
    metrics_port: int,
    consumer: str | None,
    stop_when_idle: str | None,
    log_format: str,
    now_text: str | None,
) -> None:
    """Consume events and keep the streamed views' tiles fresh (a long-running service)."""
    _configure_logging(log_format)
    registry = load_registry(manifest)
    plans = streamed_plans(registry, view_list)
    source_of_views = registry.view(plans[0].view).windowed
    if source_of_views is None:  # pragma: no cover - streamed_plans keeps declared views only
        raise StreamUsageError(f"view {plans[0].view} is not a declared view")
    tables = registry.event_sources.get(source_of_views.events, ())
    if len(tables) != 1:
        raise StreamUsageError(
            f"event model {source_of_views.events} reads {len(tables)} dbt source tables "
            f"({', '.join('.'.join(t) for t in tables) or 'none'}): the worker lands events in "
            "exactly one"
        )
    try:
        horizon = parse_duration(dedup_horizon)
    except DurationError as exc:
        raise StreamUsageError(f"--dedup-horizon: {exc}") from None
    policy: LatePolicy = "reject" if late_policy == "reject" else "apply"
    settings = WorkerSettings(
        late_policy=policy,
        out_of_orderness_s=_seconds(out_of_orderness, "--out-of-orderness"),
        dedup_horizon_s=horizon,
        batch_size=batch_size,
        land_interval_s=_seconds(land_interval, "--land-interval"),
        stop_when_idle_s=_seconds(stop_when_idle, "--stop-when-idle") if stop_when_idle else None,
    )
    clock = clock_for(parse_now(now_text) if now_text else None)
    landing = Landing(
        land_root, tables[0][1], source_of_views.event_columns, protected=_REPO_DEMO_DATA
    )
    contract = EventContract(source_of_views, [plan.keys for plan in plans])
    store = open_store(online_url)
    if not store.stream_partials:
        raise StreamUsageError(
            f"{store.description}: the stream worker writes to Redis or the embedded SQLite "
            "store (DynamoDB does not keep stream partials yet)"
        )
    store.initialize()  # idempotent: the embedded store's tables, Redis' scripts
    store.check()
    source = open_source(
        source_url, checkpoint=land_root / "_checkpoints" / "file.json", consumer=consumer
    )
    metrics, health = WorkerMetrics(), Health()
    server = serve_endpoints(metrics, health, metrics_host, metrics_port)
    worker = Worker(
        source, store, plans, contract, landing,
        clock=clock, settings=settings, metrics=metrics, health=health,
    )  # fmt: skip

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The worker holds up to a landing interval of events (buffered rows, uncommitted
    # messages): with the collector's default thresholds every few thousand allocations walk
    # them all again. Its objects are acyclic (freed by reference counting): what was
    # allocated at start-up is frozen, and young collections run 100x less often
    # (bench/stream_throughput.py: about half the CPU per event of the hot loop).
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    log.info("metrics on port %d", server.server_port)
    log.info(
        "stream worker started",
        extra={
            "source": source.description,
            "store": store.description,
            "views": [plan.view for plan in plans],
            "landing": str(land_root),
            "metrics_port": server.server_port,
            "late_policy": settings.late_policy,
        },
    )
    try:
        worker.run()
    finally:
        server.shutdown()
        store.close()
    log.info("stream worker stopped")
