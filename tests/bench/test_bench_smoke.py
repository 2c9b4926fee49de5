"""The benchmarks under bench/ still run: both scripts at a tiny size exit 0, print their
results table and stand by their own checks (results.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.slow
def test_pit_join_runs_and_agrees_with_the_reference(tmp_path: Path) -> None:
    spine, sample = 400, 300
    out = run_bench(
        "pit_join.py", "--users", "300", "--rows", "1500", "--spine", str(spine),
        "--runs", "1", "--sample", str(sample), "--workdir", str(tmp_path),
    )  # fmt: skip
    assert "| variant | runs | wall s median (min-max) |" in out
    for variant in ("(a) as_of_join SQL", "(b) get_historical_features, warm", "(c) LEFT JOIN"):
        assert f"| {variant}" in out
    results = json.loads((tmp_path / "results.json").read_text())
    for variant, reports in results["runs"].items():
        assert len(reports) == 1, variant
        assert reports[0]["rows"] == spine, variant  # every spine row comes back once
        assert reports[0]["seconds"] > 0 and reports[0]["peak_rss_mib"] > 0
    assert results["cold"]["rows"] == spine
    assert results["warm_calls_hit_compile_cache"] is True
    verify = results["verify"]
    assert verify["rows"] == sample
    assert set(verify["mismatches"]) == {"a", "b", "c", "d"}
    assert not any(verify["mismatches"].values()), verify
    assert verify["cases"]["matched"] > 0 and verify["cases"]["expired"] > 0


@pytest.mark.slow
def test_dbt_build_runs_and_incremental_equals_full_refresh(tmp_path: Path) -> None:
    out = run_bench(
        "dbt_build.py", "--users", "200", "--transactions", "1500", "--merchants", "20",
        "--runs", "1", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert "| dbt build | runs | wall s: median (min-max) | all runs (s) |" in out
    results = json.loads((tmp_path / "dbt_build-results.json").read_text())
    kinds = [run["kind"] for run in results["runs"]]
    assert kinds == ["before", "incremental", "full"]
    assert all(run["seconds"] > 0 and run["nodes"] for run in results["runs"])
    counts = results["rows_before_and_full"]
    assert counts["transactions"][0] < counts["transactions"][1]  # the last day is new data
    assert results["feature_view_differences"] == {
        "user_transaction_features": 0,
        "merchant_chargeback_features": 0,
        "user_device_features": 0,
    }


@pytest.mark.slow
def test_stream_throughput_runs_and_its_stores_equal_the_rule(tmp_path: Path) -> None:
    out = run_bench(
        "stream_throughput.py", "--users", "300", "--transactions", "1500", "--runs", "1",
        "--processes", "1,2", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert "| source | runs | events/s median (min-max) |" in out
    assert "| source | processes | events/s over 1 process(es)" in out
    results = json.loads((tmp_path / "results.json").read_text())
    labels = ["kafka, 1 process", "kafka, 2 processes", "redis-streams, 1 process"]
    labels += ["redis-streams, 2 processes", "file, 1 process"]  # one reader of a file
    assert sorted(results["results"]) == sorted(labels)
    for label in labels:
        (report,) = results["results"][label]
        # two workers of one group: every event applied once, the store equal to the rule
        assert report["check"]["ok"], (label, report["check"])
        assert report["events_per_s"] > 0 and report["cpu_us_per_event"] > 0
        assert len(report["consumed_per_process"]) == report["processes"]
        assert sum(report["consumed_per_process"]) >= report["events"]
        applied = sum(v for k, v in report["view_events"].items() if "applied" in k)
        assert applied > 0


@pytest.mark.slow
def test_stream_freshness_runs(tmp_path: Path) -> None:
    out = run_bench(
        "stream_freshness.py", "--rate", "200", "--duration", "3", "--users", "1000",
        "--workdir", str(tmp_path),
    )  # fmt: skip
    assert "| workers | background events/s (asked / achieved) | probes |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["probes"] > 5 and results["missed"] == 0
    assert 0 < results["p50_ms"] <= results["p99_ms"] < 10_000


@pytest.mark.slow
def test_served_log_runs_three_sidecars_side_by_side(tmp_path: Path) -> None:
    out = run_bench(
        "served_log.py", "--entities", "1000", "--runs", "1", "--duration", "0.5", "--only", "a",
        "--workdir", str(tmp_path / "work"),
    )  # fmt: skip
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert results["bad"] == 0 and results["checked"] > 0
    names = set(results["runs_by_scenario"])
    for label in ("log off", "log 1%", "log 100%"):
        assert any(name.endswith(f"[{label}]") for name in names), names
    full = [
        r for name, reports in results["runs_by_scenario"].items()
        if name.endswith("[log 100%]") for r in reports
    ]  # fmt: skip
    # at 100% every request's 10 features are logged (its measured requests, at least)
    folder = tmp_path / "work-logs" / "log_100pct"
    rows = sum(len(path.read_text().splitlines()) for path in folder.glob("served-*.jsonl"))
    assert rows >= 10 * sum(r["requests"] for r in full) > 0
    assert not list(folder.glob("*.tmp"))
    assert "| log 100% |" in out
