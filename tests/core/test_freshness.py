"""The freshness rule (featurestore/freshness.py) on crafted load logs and watermarks, with
the demo project's registry (its online views, SLAs and streamed views)."""

from __future__ import annotations

import datetime as dt

import pytest

from featurestore.freshness import ViewFreshness, batch_as_of, view_freshness
from featurestore.online.store import LoadRecord
from featurestore.registry import Registry, load_registry
from featurestore.timestamps import micros
from tests.warehouse import Warehouse

T0 = dt.datetime(2026, 5, 1)


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


def load(
    view: str, outcome: str = "success", as_of: dt.datetime | None = T0, **extra: object
) -> LoadRecord:
    return LoadRecord(
        load_id="l",
        view=view,
        store="s",
        outcome=outcome,
        started_at="",
        finished_at="",
        watermark_before=None,
        watermark_after=micros(T0 - dt.timedelta(hours=5)),
        extra={**({} if as_of is None else {"data_as_of": as_of.isoformat() + "Z"}), **extra},
    )


def by_view(report: list[ViewFreshness]) -> dict[str, ViewFreshness]:
    return {item.view: item for item in report}


def test_the_newest_successful_load_counts(registry: Registry) -> None:
    newest_first = [
        load("merchant_chargeback_features", "failed", T0 + dt.timedelta(hours=9)),
        load("merchant_chargeback_features", "rejected", T0 + dt.timedelta(hours=8)),
        load("merchant_chargeback_features", as_of=T0 + dt.timedelta(hours=1)),
        load("merchant_chargeback_features", as_of=T0),
        load("user_device_features", as_of=None),  # written before data_as_of was kept
    ]
    batch = batch_as_of(newest_first)
    assert batch == {
        "merchant_chargeback_features": T0 + dt.timedelta(hours=1),
        "user_device_features": T0 - dt.timedelta(hours=5),  # its watermark_after
    }


def test_age_and_breach_at_the_sla_edge(registry: Registry) -> None:
    view = "merchant_chargeback_features"
    sla = registry.views[view].freshness_sla_seconds
    batch = {view: T0}
    at_edge = by_view(view_freshness(registry, T0 + dt.timedelta(seconds=sla), batch, {}))[view]
    assert at_edge.age_seconds == sla and not at_edge.breached and at_edge.source == "batch"
    over = T0 + dt.timedelta(seconds=sla, microseconds=1)
    assert by_view(view_freshness(registry, over, batch, {}))[view].breached
    # an aware now is the same instant
    aware = (T0 + dt.timedelta(seconds=sla)).replace(tzinfo=dt.UTC)
    assert by_view(view_freshness(registry, aware, batch, {}))[view].age_seconds == sla
    # as of after now (a clock behind the warehouse's): age 0
    early = by_view(view_freshness(registry, T0 - dt.timedelta(hours=1), batch, {}))[view]
    assert early.age_seconds == 0.0 and not early.breached


def test_never_loaded_breaches_and_only_online_views_count(registry: Registry) -> None:
    report = by_view(view_freshness(registry, T0, {}, {}))
    online = {name for name, view in registry.views.items() if view.online}
    assert set(report) == online
    for item in report.values():
        assert item.data_as_of is None and item.age_seconds is None and item.breached
        assert item.source == "none"
        assert item.sla_seconds == registry.views[item.view].freshness_sla_seconds


def test_a_streamed_view_is_as_fresh_as_the_later_side(registry: Registry) -> None:
    streamed = sorted(n for n, v in registry.views.items() if v.online and v.streamed)
    batch_only = sorted(n for n, v in registry.views.items() if v.online and not v.streamed)
    assert streamed and batch_only
    now = T0 + dt.timedelta(days=3)
    later = micros(now - dt.timedelta(seconds=40))
    earlier = micros(T0 - dt.timedelta(days=1))
    marks = {name: {"p0": earlier, "p1": later} for name in [*streamed, *batch_only]}
    report = by_view(view_freshness(registry, now, dict.fromkeys(streamed + batch_only, T0), marks))
    for name in streamed:
        assert report[name].source == "stream"
        assert report[name].age_seconds == 40.0 and not report[name].breached
        assert report[name].batch_as_of == T0
    for name in batch_only:  # watermarks of a batch-only view mean nothing
        assert report[name].source == "batch" and report[name].stream_as_of is None
    # a stream behind the batch: the batch counts
    behind = {name: {"p0": earlier} for name in streamed}
    for item in view_freshness(registry, now, dict.fromkeys(streamed, T0), behind, streamed):
        assert item.source == "batch" and item.data_as_of == T0


def test_to_dict_is_the_json_of_featurestore_freshness(registry: Registry) -> None:
    view = "merchant_chargeback_features"
    (item,) = view_freshness(registry, T0 + dt.timedelta(hours=2), {view: T0}, {}, [view])
    assert item.to_dict() == {
        "view": view,
        "sla_seconds": registry.views[view].freshness_sla_seconds,
        "data_as_of": "2026-05-01T00:00:00Z",
        "source": "batch",
        "batch_as_of": "2026-05-01T00:00:00Z",
        "stream_as_of": None,
        "age_seconds": 7200.0,
        "breached": False,
    }
