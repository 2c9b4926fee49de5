"""``featurestore load --metrics-file PATH``: after the load, its outcome and every online
view's freshness gauges in Prometheus' text format, written atomically, for node_exporter's
textfile collector (a batch job has no port to scrape). The sidecar serves the same
freshness gauges on ``/metrics``; ``ops/prometheus/loader.rules.yml`` alerts on the others.

==================================================  ===========================================
``featurestore_view_data_as_of_timestamp_seconds``  the freshness gauges, label ``view``
``featurestore_view_data_age_seconds``              (:mod:`featurestore.freshness`: the names,
``featurestore_view_freshness_sla_seconds``         the rule)
``featurestore_loader_last_run_timestamp_seconds``  when this load finished (UTC epoch seconds,
                                                    the wall clock even under ``--now``)
``featurestore_loader_last_run_exit_code``          its exit code (README "Exit codes")
``featurestore_loader_view_outcome``                by ``view`` and ``outcome`` (success,
                                                    rejected, failed): 1 for the view's outcome
                                                    in this load, 0 for the others
``featurestore_loader_view_rows``                   by ``view`` and ``kind`` (read, written,
                                                    skipped, expired, rejected): this load's
``featurestore_loader_view_duration_seconds``       by ``view``: this load's time for it
==================================================  ===========================================

The file describes the last load only: a view left out of it (``--views``) has no outcome
series, and a load that stops before it is written (the store cannot be reached, exit code
4/5) leaves the previous file: ``LoaderNotRun`` alerts on the run timestamp's age.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC, ViewFreshness, freshness
from featurestore.online.store import OnlineStore
from featurestore.project import Project
from featurestore.registry import load_registry
from featurestore.timestamps import micros
from loader.errors import LoaderError
from loader.run import LoadReport

__all__ = ["OUTCOMES", "ROW_KINDS", "load_metrics", "write_load_metrics"]

OUTCOMES: Final = ("success", "rejected", "failed")
ROW_KINDS: Final = ("read", "written", "skipped", "expired", "rejected")


def load_metrics(
    report: LoadReport, views: Iterable[ViewFreshness], finished: dt.datetime
) -> CollectorRegistry:
    """The gauges of one load (``finished``: aware or naive UTC) and of the views' freshness."""
    metrics = CollectorRegistry()
    as_of = Gauge(
        AS_OF_METRIC, "When the view's served data is current as of.", ["view"], registry=metrics
    )
    age = Gauge(
        AGE_METRIC, "The age of the view's served data at the write.", ["view"], registry=metrics
    )
    sla = Gauge(SLA_METRIC, "The view's declared freshness SLA.", ["view"], registry=metrics)
    for item in views:
        sla.labels(item.view).set(item.sla_seconds)
        if item.data_as_of is not None and item.age_seconds is not None:
            as_of.labels(item.view).set(micros(item.data_as_of) / 1e6)
            age.labels(item.view).set(item.age_seconds)
    prefix = "featurestore_loader"
    Gauge(
        f"{prefix}_last_run_timestamp_seconds",
        "When the last load finished (UTC epoch seconds).",
        registry=metrics,
    ).set(micros(finished) / 1e6)
    Gauge(f"{prefix}_last_run_exit_code", "The last load's exit code.", registry=metrics).set(
        report.exit_code
    )
    outcome = Gauge(
        f"{prefix}_view_outcome",
        "1 for the view's outcome in the last load, 0 for the other outcomes.",
        ["view", "outcome"],
        registry=metrics,
    )
    rows = Gauge(
        f"{prefix}_view_rows", "The view's rows in the last load, by kind.", ["view", "kind"],
        registry=metrics,
    )  # fmt: skip
    seconds = Gauge(
        f"{prefix}_view_duration_seconds", "The view's time in the last load.", ["view"],
        registry=metrics,
    )  # fmt: skip
    for result in report.views:
        for name in OUTCOMES:
            outcome.labels(result.view, name).set(1 if result.outcome == name else 0)
        counts = (
            result.rows_read,
            result.rows_written,
            result.rows_skipped,
            result.rows_expired,
            result.rows_rejected,
        )
        for kind, count in zip(ROW_KINDS, counts, strict=True):
            rows.labels(result.view, kind).set(count)
        seconds.labels(result.view).set(result.seconds)
    return metrics


def write_load_metrics(
    path: Path,
    report: LoadReport,
    store: OnlineStore,
    project_dir: Path | None,
    now: dt.datetime | None,
) -> None:
    """Write :func:`load_metrics` of ``report`` and every online view of the project's
    registry (their freshness read from ``store`` at ``now``, default the time) to ``path``;
    the run's timestamp is the wall clock's (a backfill's ``--now`` is in the past)."""
    registry = load_registry(Project.at(project_dir).manifest_path)
    finished = dt.datetime.now(dt.UTC)  # the wall clock, even when --now pins the load's
    metrics = load_metrics(report, freshness(registry, store, now or finished), finished)
    try:
        write_to_textfile(str(path), metrics)
    except OSError as exc:
        raise LoaderError(f"cannot write the metrics file {path}: {exc}") from None
