"""The sidecar's freshness gauges (sidecar/freshness.py) on /metrics: every online view's
SLA, the time its data is current as of (the load log's data_as_of; a streamed view's
stream watermark when later) and its age at the scrape, refreshed from the store while it
serves."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from featurestore.freshness import AGE_METRIC, AS_OF_METRIC, SLA_METRIC
from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from featurestore.timestamps import micros
from tests.sidecar.harness import (
    NOW,
    SidecarServer,
    running_sidecar,
    sidecar_env,
    sqlite_demo_store,
)
from tests.warehouse import DEMO_AS_OF, Warehouse

AS_OF_SECONDS = micros(dt.datetime.fromisoformat(DEMO_AS_OF)) / 1e6
#: the sidecar's pinned clock: five hours after the cutoff
SERVED_AT = NOW + dt.timedelta(hours=5)
NOW_S = micros(SERVED_AT) / 1e6


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> Path:
    return demo_warehouse.target_path / "manifest.json"


@pytest.fixture(scope="module")
def registry(manifest: Path) -> Registry:
    return load_registry(manifest)


@pytest.fixture(scope="module")
def store_url(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_demo_store(demo_warehouse, tmp_path_factory.mktemp("freshness"))


@pytest.fixture(scope="module")
def served(
    store_url: str, manifest: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarServer]:
    env = sidecar_env(
        store_url,
        manifest,
        extra={
            "FEATURESTORE_FRESHNESS_INTERVAL": "0.2s",
            "FEATURESTORE_NOW": SERVED_AT.isoformat(),
        },
    )
    with running_sidecar(tmp_path_factory.mktemp("freshness-sidecar"), env) as server:
        yield server


def scrape(server: SidecarServer) -> dict[str, dict[str, float]]:
    with server.client() as client:
        text = client.get("/metrics").text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (AS_OF_METRIC, AGE_METRIC, SLA_METRIC):
                out.setdefault(sample.name, {})[sample.labels["view"]] = sample.value
    return out


def test_gauges_follow_the_load_log_and_the_stream(
    served: SidecarServer, registry: Registry, store_url: str
) -> None:
    online = {name for name, view in registry.views.items() if view.online}
    first = scrape(served)
    assert first[SLA_METRIC] == {v: registry.views[v].freshness_sla_seconds for v in online}
    assert first[AS_OF_METRIC] == dict.fromkeys(online, AS_OF_SECONDS)
    assert NOW_S - AS_OF_SECONDS == 5 * 3600
    assert first[AGE_METRIC] == dict.fromkeys(online, NOW_S - AS_OF_SECONDS)

    streamed = sorted(v for v in online if registry.views[v].streamed)
    watermark_s = AS_OF_SECONDS + 1800  # half an hour after the batch cutoff
    with open_store(store_url) as store:
        for view in streamed:
            store.record_stream_watermarks(view, {"0": int(watermark_s * 1e6)})
    deadline = time.monotonic() + 20
    while True:
        after = scrape(served)
        if all(after[AS_OF_METRIC][v] == watermark_s for v in streamed):
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.1)
    for view in online:
        expected = watermark_s if view in streamed else AS_OF_SECONDS
        assert after[AS_OF_METRIC][view] == expected
        assert after[AGE_METRIC][view] == NOW_S - expected
