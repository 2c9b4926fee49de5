"""``featurestore load --metrics-file PATH``: every online view's freshness gauges
(:mod:`featurestore.freshness`: the names, the rule) written after the load in Prometheus'
text format, atomically, for node_exporter's textfile collector (a batch job has no port to
scrape). The sidecar serves the same gauges on ``/metrics``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC, freshness
from featurestore.online.store import OnlineStore
from featurestore.project import Project
from featurestore.registry import load_registry
from featurestore.timestamps import micros
from loader.errors import LoaderError

__all__ = ["write_freshness_metrics"]


def write_freshness_metrics(
    path: Path, store: OnlineStore, project_dir: Path | None, now: dt.datetime | None
) -> None:
    """Write the gauges of every online view of the project's registry to ``path``."""
    registry = load_registry(Project.at(project_dir).manifest_path)
    moment = now or dt.datetime.now(dt.UTC)
    metrics = CollectorRegistry()
    as_of = Gauge(
        AS_OF_METRIC, "When the view's served data is current as of.", ["view"], registry=metrics
    )
    age = Gauge(
        AGE_METRIC, "The age of the view's served data at the write.", ["view"], registry=metrics
    )
    sla = Gauge(SLA_METRIC, "The view's declared freshness SLA.", ["view"], registry=metrics)
    for item in freshness(registry, store, moment):
        sla.labels(item.view).set(item.sla_seconds)
        if item.data_as_of is not None and item.age_seconds is not None:
            as_of.labels(item.view).set(micros(item.data_as_of) / 1e6)
            age.labels(item.view).set(item.age_seconds)
    try:
        write_to_textfile(str(path), metrics)
    except OSError as exc:
        raise LoaderError(f"cannot write the metrics file {path}: {exc}") from None
