"""Freshness SLAs end to end on a real redis-server (and SQLite for the errors): `featurestore
load` keeps each view's data_as_of (its relation's cutoff) in the load log and writes the
gauges with --metrics-file; `featurestore freshness` reads them, with the stream's
watermarks for streamed views, and exits 6 when a view is older than its SLA."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from featurestore.exit_codes import ExitCode
from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC
from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from featurestore.timestamps import micros
from tests.loader.test_load import run_cli
from tests.servers import RedisServer
from tests.warehouse import DEMO_AS_OF, Warehouse

AS_OF = dt.datetime.fromisoformat(DEMO_AS_OF)


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


@pytest.fixture
def store_url(redis: RedisServer) -> Iterator[str]:
    """A real redis-server (SQLite's side: the load log in tests/sidecar/
    test_freshness_gauges.py, the watermarks in tests/stream/test_worker.py)."""
    yield f"{redis.url}?namespace=fr{uuid.uuid4().hex[:8]}"


def iso(moment: dt.datetime) -> str:
    return moment.isoformat() + "Z"


def gauges(text: str) -> dict[str, dict[str, float]]:
    """metric -> view -> value, of a Prometheus text exposition."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "view" in sample.labels:
                out.setdefault(sample.name, {})[sample.labels["view"]] = sample.value
    return out


def test_load_freshness_and_the_metrics_file(
    demo_warehouse: Warehouse, registry: Registry, store_url: str, tmp_path: Path
) -> None:
    env = demo_warehouse.env
    online = sorted(name for name, view in registry.views.items() if view.online)
    assert run_cli("init-store", "--online", store_url, env=env).returncode == 0
    metrics = tmp_path / "loader.prom"
    now = AS_OF + dt.timedelta(hours=6)
    proc = run_cli(
        "load", "--online", store_url, "--now", iso(now), "--metrics-file", str(metrics), env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the load log keeps each view's data_as_of: the online models' cutoff
    loads = json.loads(run_cli("loads", "--online", store_url, "--json", env=env).stdout)
    assert {r["view"]: r["extra"]["data_as_of"] for r in loads} == dict.fromkeys(online, iso(AS_OF))
    # the gauges, as node_exporter's textfile collector reads them
    values = gauges(metrics.read_text())
    assert values[AS_OF_METRIC] == dict.fromkeys(online, micros(AS_OF) / 1e6)
    assert values[AGE_METRIC] == dict.fromkeys(online, 6 * 3600.0)
    assert values[SLA_METRIC] == {v: registry.views[v].freshness_sla_seconds for v in online}
    # the load's outcome (ops/prometheus/loader.rules.yml), as the load log tells it
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.read_text())
        for sample in family.samples
    }
    for record in loads:
        view = record["view"]
        for outcome in ("success", "rejected", "failed"):
            key = ("featurestore_loader_view_outcome", (("outcome", outcome), ("view", view)))
            assert samples[key] == (1 if outcome == record["outcome"] else 0)
        for kind in ("read", "written", "skipped", "rejected"):
            key = ("featurestore_loader_view_rows", (("kind", kind), ("view", view)))
            assert samples[key] == record[f"rows_{kind}"]
    assert {r["outcome"] for r in loads} == {"success"}
    assert samples[("featurestore_loader_last_run_exit_code", ())] == 0
    ran_at = samples[("featurestore_loader_last_run_timestamp_seconds", ())]
    assert abs(ran_at - time.time()) < 600  # the wall clock, not --now

    # within every SLA, then past each one by a second
    fresh = run_cli("freshness", "--online", store_url, "--now", iso(now), "--json", env=env)
    assert fresh.returncode == 0, fresh.stderr
    report = json.loads(fresh.stdout)
    assert [item["view"] for item in report] == online
    assert {item["source"] for item in report} == {"batch"}
    assert {item["age_seconds"] for item in report} == {6 * 3600.0}
    longest = max(registry.views[v].freshness_sla_seconds for v in online)
    late = AS_OF + dt.timedelta(seconds=longest + 1)
    stale = run_cli("freshness", "--online", store_url, "--now", iso(late), env=env)
    assert stale.returncode == ExitCode.STALE, stale.stdout + stale.stderr
    assert [line.split(":")[0] for line in stale.stdout.splitlines()] == online
    assert all(
        ": BREACHED: data as of 2026-05-01T00:00:00Z (batch)" in line
        for line in stale.stdout.splitlines()
    )

    # the stream worker's watermarks make a streamed view fresh again, not the others
    streamed = sorted(v for v in online if registry.views[v].streamed)
    assert streamed
    with open_store(store_url) as store:
        for view in streamed:
            store.record_stream_watermarks(view, {"0": micros(late) - 30_000_000, "1": 0})
    proc = run_cli("freshness", "--online", store_url, "--now", iso(late), "--json", env=env)
    assert proc.returncode == ExitCode.STALE
    by_view = {item["view"]: item for item in json.loads(proc.stdout)}
    for view in online:
        item = by_view[view]
        if view in streamed:
            assert (item["source"], item["age_seconds"], item["breached"]) == (
                "stream",
                30.0,
                False,
            )
        else:
            assert (item["source"], item["breached"]) == ("batch", True)
    only = run_cli(
        "freshness",
        "--online",
        store_url,
        "--now",
        iso(late),
        "--views",
        ",".join(streamed),
        env=env,
    )
    assert only.returncode == 0, only.stdout + only.stderr


def test_freshness_errors_are_clean(demo_warehouse: Warehouse, tmp_path: Path) -> None:
    env = demo_warehouse.env
    url = f"sqlite:///{tmp_path / 'online.db'}"
    assert run_cli("init-store", "--online", url, env=env).returncode == 0
    never = run_cli("freshness", "--online", url, env=env)
    assert never.returncode == ExitCode.STALE
    assert all("BREACHED" in line and "never loaded" in line for line in never.stdout.splitlines())
    for args, code, text in [
        (["--views", "no_such_view"], 1, "unknown feature view 'no_such_view'"),
        (["--now", "yesterday"], 1, "invalid time"),
    ]:
        proc = run_cli("freshness", "--online", url, *args, env=env)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert proc.stderr.startswith("Error: ") and text in proc.stderr
        assert "Traceback" not in proc.stderr
    missing = run_cli("freshness", "--online", f"sqlite:///{tmp_path / 'none.db'}", env=env)
    assert missing.returncode in (ExitCode.STORE_NOT_INITIALIZED, ExitCode.STORE_UNAVAILABLE)
    assert "Traceback" not in missing.stderr
