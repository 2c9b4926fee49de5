"""`dbt source freshness` on the raw sources (models/staging/_raw__sources.yml): each source
an online view reads (through any models) and that has a `loaded_at_field` errors after the
tightest `freshness_sla` of those views and warns after half of it, as the registry says;
run for real on the stale demo data and on freshly ingested files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.registry import Registry, load_registry
from tests.warehouse import Warehouse

_PERIOD_S = {"minute": 60, "hour": 3600, "day": 86_400}


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


def upstream_sources(manifest: dict[str, Any], node_id: str) -> set[str]:
    """Every source a node reads, through any models (a walk of depends_on)."""
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        current = stack.pop()
        for parent in manifest["nodes"].get(current, {}).get("depends_on", {}).get("nodes", []):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return {node for node in seen if node.startswith("source.")}


def seconds(threshold: dict[str, Any] | None) -> int | None:
    if not threshold or threshold.get("count") is None:
        return None
    return int(threshold["count"]) * _PERIOD_S[threshold["period"]]


def test_thresholds_follow_the_views_slas(manifest: dict[str, Any], registry: Registry) -> None:
    tightest: dict[str, int] = {}
    for view in registry.views.values():
        if not view.online:
            continue
        (node_id,) = [
            key for key, n in manifest["nodes"].items()
            if n["resource_type"] == "model" and n["name"] == view.name
        ]  # fmt: skip
        for source in upstream_sources(manifest, node_id):
            sla = view.freshness_sla_seconds
            tightest[source] = min(sla, tightest.get(source, sla))
    checked = {s for s in tightest if manifest["sources"][s].get("loaded_at_field")}
    assert checked == {
        "source.featurestore.raw.transactions",
        "source.featurestore.raw.chargebacks",
    }
    for source_id in checked:
        freshness = manifest["sources"][source_id]["freshness"]
        assert seconds(freshness["error_after"]) == tightest[source_id], source_id
        assert seconds(freshness["warn_after"]) == tightest[source_id] // 2, source_id
    # a source without loaded_at_field (dimensions) has no freshness to check
    for source_id, source in manifest["sources"].items():
        if not source.get("loaded_at_field"):
            assert seconds((source.get("freshness") or {}).get("error_after")) is None, source_id


def run_freshness(warehouse: Warehouse) -> tuple[int, dict[str, str]]:
    proc = warehouse.dbt("source", "freshness", check=False)
    results = json.loads((warehouse.target_path / "sources.json").read_text())["results"]
    return proc.returncode, {r["unique_id"].rsplit(".", 1)[1]: r["status"] for r in results}


def test_the_demo_data_is_stale(tmp_path: Path) -> None:
    code, statuses = run_freshness(Warehouse(tmp_path))
    assert code == 1
    assert statuses == {"transactions": "error", "chargebacks": "error"}


def test_fresh_files_pass_and_older_ones_warn(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ingested = {
        "transactions": now - dt.timedelta(hours=1),
        "chargebacks": now - dt.timedelta(hours=20),
    }
    for table, at in ingested.items():
        (raw / table).mkdir(parents=True)
        times = pa.array([at - dt.timedelta(days=3), at], type=pa.timestamp("us"))
        pq.write_table(pa.table({"ingested_at": times}), raw / table / "part-0.parquet")
    code, statuses = run_freshness(Warehouse(tmp_path / "wh", raw_path=raw))
    assert code == 0
    assert statuses == {"transactions": "pass", "chargebacks": "warn"}
