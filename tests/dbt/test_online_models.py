"""The online models of hand-written views (``macros/latest_feature_values.sql``) on the
demo warehouse, against a brute-force Python reading of the contract over each feature
view's history: every entity's current row (as_of_join at the cutoff: availability, ties,
TTL), its scheduled rows (cutoff < feature_at <= cutoff + freshness_sla, available by the
cutoff, ties reduced), and its change time."""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

import pytest

from featurestore.registry import FeatureView, Registry, load_registry
from tests.warehouse import DEMO_AS_OF, Warehouse

#: the demo's cutoff (nothing is ingested after it) and an earlier one (rows become
#: available after it: the scheduled rows' availability filter matters)
CUTOFFS = (DEMO_AS_OF, "2026-04-20 06:30:00")
#: the demo's hand-written online views (the declared ones, user_ and
#: merchant_transaction_features, hold tiles: tests/dbt/test_feature_views.py)
HAND_WRITTEN = ("merchant_chargeback_features", "user_device_features")


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    return load_registry(demo_warehouse.target_path / "manifest.json")


@pytest.fixture(scope="module", params=CUTOFFS)
def built(
    request: pytest.FixtureRequest,
    demo_warehouse: Warehouse,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Warehouse, dt.datetime]:
    """The demo warehouse with its online models built as of the cutoff."""
    cutoff = str(request.param)
    if cutoff == DEMO_AS_OF:
        return demo_warehouse, dt.datetime.fromisoformat(cutoff)
    workdir = tmp_path_factory.mktemp("online-earlier")
    copy = Warehouse(workdir, extra_env={"DBT_TARGET_PATH": str(workdir / "target")})
    shutil.copyfile(demo_warehouse.duckdb_path, copy.duckdb_path)
    copy.dbt("run", "--select", "models/online", "--vars", f"{{online_as_of: '{cutoff}'}}")
    return copy, dt.datetime.fromisoformat(cutoff)


def _rank(row: dict[str, Any], view: FeatureView) -> tuple[Any, ...]:
    """The tie order: greatest feature time, then greatest values in declared order, nulls
    last (a larger tuple wins)."""
    values = []
    for name in view.feature_names():
        value = row[name]
        values.append((value is not None, value if value is not None else 0))
    return (row["feature_at"], *values)


def brute_force(
    rows: list[dict[str, Any]], view: FeatureView, cutoff: dt.datetime
) -> dict[tuple[Any, ...], Any]:
    """(keys, feature_at) -> (values, as-of key, change time) of what the online model must
    hold, computed from the history rows."""
    sla = dt.timedelta(seconds=view.freshness_sla_seconds)
    ttl = dt.timedelta(seconds=view.ttl_seconds)
    by_entity: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row["feature_at"] is None or any(row[k] is None for k in view.keys):
            continue
        by_entity.setdefault(tuple(row[k] for k in view.keys), []).append(row)
    out: dict[tuple[Any, ...], Any] = {}
    for key, mine in by_entity.items():
        for row in mine:
            available = row["available_at"] or row["feature_at"]
            row["asof"] = max(row["feature_at"], available)
            row["available"] = available
        known = [r for r in mine if r["asof"] <= cutoff]
        picked: list[tuple[dict[str, Any], dt.datetime]] = []
        if known:
            latest = max(r["asof"] for r in known)
            current = max((r for r in known if r["asof"] == latest), key=lambda r: _rank(r, view))
            if current["feature_at"] >= cutoff - ttl:
                picked.append((current, current["asof"]))
        scheduled: dict[dt.datetime, dict[str, Any]] = {}
        for r in mine:
            if cutoff < r["feature_at"] <= cutoff + sla and r["available"] <= cutoff:
                other = scheduled.get(r["feature_at"])
                if other is None or _rank(r, view) > _rank(other, view):
                    scheduled[r["feature_at"]] = r
        for r in scheduled.values():
            picked.append((r, max(r["available"], r["feature_at"] - sla)))
        if not picked:
            continue
        changed = max(contribution for _, contribution in picked)
        for r, _ in picked:
            values = tuple(r[name] for name in view.feature_names())
            asof = r["asof"] if r["feature_at"] <= cutoff else r["feature_at"]
            out[(*key, r["feature_at"])] = (values, asof, changed)
    return out


def test_the_hand_written_online_views_are_the_ones_checked_here(registry: Registry) -> None:
    """Every online view that is not declared (tiled) has its online model checked below."""
    online = {view.name: view.tiled for view in registry.views.values() if view.online}
    assert sorted(name for name, tiled in online.items() if not tiled) == sorted(HAND_WRITTEN)
    assert {name for name, tiled in online.items() if tiled} == {
        "merchant_transaction_features",
        "user_transaction_features",
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_online_rows_are_the_current_and_scheduled_rows_of_the_history(
    name: str, built: tuple[Warehouse, dt.datetime], registry: Registry
) -> None:
    warehouse, cutoff = built
    view = registry.view(name)
    features = list(view.feature_names())
    available = view.available_at or "cast(null as timestamp)"
    history_columns = [*view.keys, f"{view.timestamp} as feature_at",
                       f"{available} as available_at", *features]  # fmt: skip
    history = warehouse.query(f"select {', '.join(history_columns)} from {view.relation}")
    names = [*view.keys, "feature_at", "available_at", *features]
    want = brute_force([dict(zip(names, row, strict=True)) for row in history], view, cutoff)
    online = warehouse.query(
        f"select {', '.join(view.keys)}, {name}__feature_at, {', '.join(features)}, "
        f"{name}__as_of_at, {name}__changed_at, as_of_at from main_online.online_{name}"
    )
    got = {}
    nk = len(view.keys)
    for row in online:
        assert row[-1] == cutoff
        key = (*row[:nk], row[nk])
        assert key not in got, f"two rows at {key}"
        got[key] = (tuple(row[nk + 1 : nk + 1 + len(features)]), row[-3], row[-2])
    assert set(got) == set(want)
    assert got == want
    # the demo has scheduled rows where a view's values change by themselves
    if name != "user_device_features":
        assert any(key[-1] > cutoff for key in got)
