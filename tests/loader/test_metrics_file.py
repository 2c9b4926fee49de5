"""The loader's metrics file (loader/metrics_file.py) says what the report says: per view its
outcome (1 for it, 0 for the others), its rows by kind and its time, the run's exit code
and time; the freshness gauges only for views with data. (The file written by a real load:
tests/loader/test_freshness.py.)"""

from __future__ import annotations

import datetime as dt

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from featurestore.exit_codes import ExitCode
from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC, ViewFreshness
from loader.metrics_file import OUTCOMES, load_metrics
from loader.run import LoadReport, ViewResult

FINISHED = dt.datetime(2026, 5, 1, 6, 30, tzinfo=dt.UTC)


def samples_of(report: LoadReport, views: list[ViewFreshness]) -> dict[tuple[str, str], float]:
    """(sample name, labels as 'k=v,...') -> value of the rendered text."""
    text = generate_latest(load_metrics(report, views, FINISHED)).decode()
    return {
        (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_view_has_its_outcome_rows_and_time() -> None:
    results = [
        ViewResult("a", "rel_a", "success", rows_read=10, rows_written=7, rows_skipped=2,
                   rows_expired=1, seconds=1.5),
        ViewResult("b", "rel_b", "rejected", rows_read=5, rows_rejected=5, seconds=0.25),
        ViewResult("c", "rel_c", "failed", message="boom"),
    ]  # fmt: skip
    report = LoadReport("load-1", "redis://x", results)
    samples = samples_of(report, [])
    for result in results:
        for outcome in OUTCOMES:
            want = 1.0 if outcome == result.outcome else 0.0
            key = ("featurestore_loader_view_outcome", f"outcome={outcome},view={result.view}")
            assert samples[key] == want
        rows = {
            "read": result.rows_read,
            "written": result.rows_written,
            "skipped": result.rows_skipped,
            "expired": result.rows_expired,
            "rejected": result.rows_rejected,
        }
        for kind, count in rows.items():
            assert (
                samples[("featurestore_loader_view_rows", f"kind={kind},view={result.view}")]
                == count
            )
        assert samples[("featurestore_loader_view_duration_seconds", f"view={result.view}")] == (
            result.seconds
        )
    assert samples[("featurestore_loader_last_run_exit_code", "")] == ExitCode.ERROR
    assert samples[("featurestore_loader_last_run_timestamp_seconds", "")] == FINISHED.timestamp()


def test_an_empty_load_exports_the_run_only_and_freshness_needs_data() -> None:
    now = dt.datetime(2026, 5, 1, 6)
    views = [
        ViewFreshness("loaded", 3600, dt.datetime(2026, 5, 1, 5), None, now),
        ViewFreshness("never", 7200, None, None, now),
    ]
    samples = samples_of(LoadReport("load-2", "sqlite://", []), views)
    assert samples[("featurestore_loader_last_run_exit_code", "")] == ExitCode.OK
    assert not any(name.startswith("featurestore_loader_view") for name, _ in samples)
    assert samples[(SLA_METRIC, "view=loaded")] == 3600
    assert samples[(SLA_METRIC, "view=never")] == 7200
    assert samples[(AGE_METRIC, "view=loaded")] == 3600
    assert (
        samples[(AS_OF_METRIC, "view=loaded")]
        == dt.datetime(2026, 5, 1, 5, tzinfo=dt.UTC).timestamp()
    )
    assert (AGE_METRIC, "view=never") not in samples and (AS_OF_METRIC, "view=never") not in samples
