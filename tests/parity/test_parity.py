"""Training-serving parity on every online view and every store, between loads.

The demo's raw events are cut at two cutoffs (only what was ingested by then: the warehouse
as it was at that time). The project is built at the first cutoff, loaded into a store of
each kind (the real loader), and served by the real app under uvicorn with a clock the test
moves; then built again at the second cutoff (incrementally, on the same warehouse) and
loaded again (incrementally). After each load, for random entities (some unknown) and times
``T`` from the cutoff to the cutoff plus the views' freshness SLA (random instants, tile
edges and one microsecond before them, and the instants an event leaves its window and one
microsecond before), three independent answers must agree for every online feature:

* the sidecar's value at ``T`` (no new load in between: windowed values decay by merging
  tiles, hand-written values follow the scheduled rows);
* ``get_historical_features`` at ``T`` on the warehouse of that cutoff (``as_of_join``);
* a brute-force Python evaluation over the raw events of that cutoff: the rule of
  :mod:`featurestore.windows` (:func:`~featurestore.windows.counts_at`) for windowed
  features, the documented definitions (tests/feature_reference.py) for hand-written ones.

A missing value is compared as the feature's default (what the sidecar serves instead).

Request-time features of feature services (last test): the value the warehouse computes for a
training set equals the compiled Python evaluator of the same declaration on the same row's
joined values and request fields, nulls and division by zero included.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurestore.clock import ManualClock
from featurestore.expressions import compile_python
from featurestore.historical import get_historical_features
from featurestore.online.layout import entity_token
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView, Registry, load_registry
from featurestore.windows import counts_at, leaves_at, tile_start
from sidecar.auth import unscoped_key
from sidecar.settings import Settings
from tests.feature_reference import Reference, build_reference, dedupe_transactions, read_rows
from tests.sidecar.harness import API_KEY, serving_in_process
from tests.stores import store_url
from tests.warehouse import REPO, Warehouse

#: one xdist worker runs the module (``--dist loadgroup``): its warehouses are built once
pytestmark = pytest.mark.xdist_group("parity")

KINDS = ["sqlite", "redis", "dynamodb"]
#: whole hours: a streamed view's tile cutoff is floored to the hour (the stream owns the rest,
#: tests/parity/test_stream_parity.py)
CUTOFFS = [dt.datetime(2026, 4, 20, 0, 0, 0), dt.datetime(2026, 4, 21, 7, 0, 0)]
#: raw tables with an ingestion time (cut at the cutoff); the others are copied whole
INGESTED = ("transactions", "chargebacks")
ENTITIES_PER_VIEW = 25
TIMES_PER_LOAD = 14
US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1)
FEATURESTORE = str(Path(sys.executable).parent / "featurestore")


def _us(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def _at(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


# --- the warehouse at each cutoff ------------------------------------------------------------


def _cut(raw: Path, out: Path, cutoff: dt.datetime) -> None:
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        (out / folder.name).mkdir(parents=True)
        for part in sorted(folder.glob("*.parquet")):
            table = pq.read_table(part)
            if folder.name in INGESTED:
                limit = pa.scalar(cutoff, type=table.schema.field("ingested_at").type)
                table = table.filter(pc.less_equal(table["ingested_at"], limit))
            pq.write_table(table, out / folder.name / part.name)


@dataclass
class Cut:
    """The warehouse built at one cutoff (its own copy) and the raw events it saw."""

    cutoff: dt.datetime
    warehouse: Warehouse
    raw: Path
    registry: Registry
    reference: Reference


@pytest.fixture(scope="module")
def cuts(tmp_path_factory: pytest.TempPathFactory) -> list[Cut]:
    root = tmp_path_factory.mktemp("parity")
    live = Warehouse(root / "warehouse")
    live.workdir.mkdir()
    out: list[Cut] = []
    for n, cutoff in enumerate(CUTOFFS):
        raw = root / f"raw-{n}"
        _cut(REPO / "data" / "demo", raw, cutoff)
        live.raw_path = raw
        as_of = cutoff.strftime("%Y-%m-%d %H:%M:%S")
        live.dbt("build", "--vars", f"{{online_as_of: '{as_of}'}}")  # incremental after the first
        copy = Warehouse(root / f"warehouse-{n}", raw_path=raw)
        shutil.copytree(live.workdir, copy.workdir)
        out.append(
            Cut(
                cutoff=cutoff,
                warehouse=copy,
                raw=raw,
                registry=load_registry(copy.target_path / "manifest.json"),
                reference=build_reference(raw),
            )
        )
    return out


# --- the brute-force reference ---------------------------------------------------------------


def windowed_value(
    view: FeatureView, feature: str, key: tuple[str, ...], at_us: int, events: list[dict[str, Any]]
) -> object:
    """The rule of featurestore.windows evaluated over every event of the entity."""
    spec = view.windowed
    aggregation = next(f.aggregation for f in view.features if f.name == feature)
    assert spec is not None and aggregation is not None
    hop, window = aggregation.hop_seconds, aggregation.window_seconds
    mine = _by_key(events, spec.keys).get(key, [])
    # the history's row at T is its latest change instant <= T (an event entering at its
    # ingestion time, if before it leaves, or leaving a window of any feature of the view);
    # none, or one older than the TTL: null
    changes = []
    for event in mine:
        t_e = min(_us(event[spec.event_time]), _us(event[spec.ingested_at]))
        for other in view.features:
            assert other.aggregation is not None
            leave = leaves_at(t_e, other.aggregation.hop_seconds, other.aggregation.window_seconds)
            if _us(event[spec.ingested_at]) < leave:
                changes += [_us(event[spec.ingested_at]), leave]
    changes = [c for c in changes if c <= at_us]
    if not changes or max(changes) < at_us - view.ttl_seconds * US:
        return None
    count, total = 0, Decimal(0)
    for event in mine:
        if not counts_at(
            at_us, _us(event[spec.event_time]), _us(event[spec.ingested_at]), hop, window
        ):
            continue
        value = event[aggregation.column] if aggregation.column else True
        if value is None:
            continue
        count += 1
        if aggregation.function != "count":
            total += value
    if aggregation.function == "count":
        return count
    if aggregation.function == "sum":
        return float(total) if isinstance(total, Decimal) else total
    return float(total) / count if count else None


_GROUPED: dict[tuple[int, tuple[str, ...]], dict[tuple[str, ...], list[dict[str, Any]]]] = {}


def _by_key(
    events: list[dict[str, Any]], keys: tuple[str, ...]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The events grouped by entity key (computed once per event list)."""
    found = _GROUPED.get((id(events), keys))
    if found is None:
        found = defaultdict(list)
        for event in events:
            if all(event[k] is not None for k in keys):
                found[tuple(str(event[k]) for k in keys)].append(event)
        _GROUPED[(id(events), keys)] = found
    return found


def hand_written_value(
    reference: Reference, view: FeatureView, feature: str, key: tuple[str, ...], at: dt.datetime
) -> object:
    """The documented definition at ``at`` (as-of the latest row knowable then, within TTL)."""
    ttl = dt.timedelta(seconds=view.ttl_seconds)
    if view.name == "merchant_chargeback_features":
        history = reference.merchants.get(key[0])
        if history is None:
            return None
        picked = _as_of(sorted(history.row_instants()), history.available_at, at, ttl)
        return None if picked is None else history.value(picked)
    if view.name == "user_device_features":
        row = reference.devices.get((key[0], key[1]))
        if row is None:
            return None
        known = max(row.feature_at, row.available_at)
        return True if known <= at and row.feature_at >= at - ttl else None
    raise AssertionError(f"no reference for hand-written view {view.name}")


def _as_of(
    instants: Sequence[dt.datetime], available_at: Any, at: dt.datetime, ttl: dt.timedelta
) -> dt.datetime | None:
    best = None
    for instant in instants:
        if instant > at:
            break
        if max(instant, available_at(instant)) <= at:
            best = instant
    if best is None or best < at - ttl:
        return None
    return best


# --- times worth asking about ----------------------------------------------------------------


def _times(cut: Cut, views: Sequence[FeatureView], events: list[dict[str, Any]]) -> list[int]:
    """Random instants in [cutoff, cutoff + SLA), tile edges (and 1 us before), leave
    instants of events (and 1 us before) inside that span."""
    rng = random.Random(cut.cutoff.toordinal())
    start = _us(cut.cutoff)
    end = start + min(view.freshness_sla_seconds for view in views) * US
    times = {start, end - 1}
    times.update(rng.randrange(start, end) for _ in range(TIMES_PER_LOAD))
    hops = sorted(
        {f.aggregation.hop_seconds for v in views for f in v.features if f.aggregation is not None}
    )
    for hop in hops:
        edge = tile_start(rng.randrange(start, end), hop) + hop * US
        if edge < end:
            times.update({edge, edge - 1})
    leaving = []
    for view in views:
        for feature in view.features:
            if feature.aggregation is None:
                continue
            for event in events:
                t_e = min(_us(event["transacted_at"]), _us(event["ingested_at"]))
                leave = leaves_at(
                    t_e, feature.aggregation.hop_seconds, feature.aggregation.window_seconds
                )
                if start <= leave - 1 and leave < end:
                    leaving.append(leave)
    for leave in rng.sample(sorted(set(leaving)), min(6, len(set(leaving)))):
        times.update({leave, leave - 1})
    return sorted(times)


# --- the test ----------------------------------------------------------------------------------


@dataclass
class Sample:
    view: FeatureView
    keys: list[tuple[str, ...]]


def _samples(cut: Cut, views: Sequence[FeatureView], rng: random.Random) -> list[Sample]:
    out = []
    for view in views:
        known = [
            tuple(str(v) for v in row)
            for row in cut.warehouse.query(
                f"select distinct {', '.join(view.keys)} from {view.relation} order by all"
            )
        ]
        keys = rng.sample(known, min(ENTITIES_PER_VIEW, len(known)))
        keys.append(tuple(f"nobody_{part}" for part in view.keys))
        out.append(Sample(view, keys))
    return out


def _served_value(answer: dict[str, Any]) -> object:
    return answer.get("value")


def _load(cut: Cut, url: str) -> None:
    """The real ``featurestore load`` (incremental after the first) at the cutoff."""
    now = cut.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = subprocess.run(
        [FEATURESTORE, "load", "--online", url, "--now", now],
        cwd=REPO,
        env={**os.environ, **cut.warehouse.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@dataclass
class Expected:
    """One cut's questions and their two independent answers, computed once per module."""

    samples: list[Sample]
    times: list[int]
    #: (view, key, time us, feature) -> (get_historical_features' value, brute force's)
    answers: dict[tuple[str, tuple[str, ...], int, str], tuple[object, object]]


_EXPECTED: dict[dt.datetime, Expected] = {}


def _expected(cut: Cut, monkeypatch: pytest.MonkeyPatch) -> Expected:
    """The samples, times and answers of ``cut``: one ``get_historical_features`` call per
    view over every (key, time) pair, and the brute force of each."""
    if cut.cutoff in _EXPECTED:
        return _EXPECTED[cut.cutoff]
    views = [v for v in cut.registry.views.values() if v.online]
    event_rows = [
        tx.__dict__ for tx in dedupe_transactions(read_rows(cut.raw, "transactions")).values()
    ]
    samples = _samples(cut, views, random.Random(cut.cutoff.toordinal() + 1))
    times = _times(cut, views, event_rows)
    answers: dict[tuple[str, tuple[str, ...], int, str], tuple[object, object]] = {}
    cut.warehouse.use(monkeypatch)
    for sample in samples:
        view = sample.view
        features = list(view.feature_names())
        pairs = [(key, at_us) for at_us in times for key in sample.keys]
        spine = pd.DataFrame(
            {
                **{k: [key[i] for key, _ in pairs] for i, k in enumerate(view.keys)},
                "event_timestamp": [_at(at_us) for _, at_us in pairs],
            }
        )
        training = get_historical_features(spine, features)
        for row, (key, at_us) in enumerate(pairs):
            for feature in features:
                offline = training[feature].iloc[row]
                offline = None if pd.isna(offline) else offline
                if view.windowed is not None:
                    brute = windowed_value(view, feature, key, at_us, event_rows)
                else:
                    brute = hand_written_value(cut.reference, view, feature, key, _at(at_us))
                answers[(view.name, key, at_us, feature)] = (offline, brute)
    _EXPECTED[cut.cutoff] = expected = Expected(samples, times, answers)
    return expected


def test_training_equals_brute_force(cuts: list[Cut], monkeypatch: pytest.MonkeyPatch) -> None:
    """``get_historical_features`` at every asked time equals the brute force."""
    for cut in cuts:
        for (view, key, at_us, feature), (offline, brute) in _expected(
            cut, monkeypatch
        ).answers.items():
            assert _same(offline, brute), (
                cut.cutoff,
                view,
                key,
                feature,
                _at(at_us),
                offline,
                brute,
            )


@pytest.mark.parametrize("kind", KINDS)
def test_sidecar_equals_training_equals_brute_force(
    kind: str,
    cuts: list[Cut],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = store_url(kind, request, tmp_path)
    with ExitStack() as stack:
        writer = stack.enter_context(open_store(url))
        writer.initialize()
        checked: dict[str, int] = defaultdict(int)
        #: (cutoff, view, key, feature) -> the values served at the times after one load
        served_values: dict[tuple[object, ...], set[object]] = defaultdict(set)
        for cut in cuts:
            expected = _expected(cut, monkeypatch)
            _load(cut, url)
            registry = cut.registry
            clock = ManualClock(cut.cutoff.replace(tzinfo=dt.UTC))
            settings = Settings(
                online_url=url,
                api_keys=(unscoped_key("test", API_KEY),),
                store_timeout_s=5.0,
                gc_full_interval_s=0,
            )
            with serving_in_process(settings, registry, open_store(url), clock) as server:
                client = stack.enter_context(server.client())
                for at_us in expected.times:
                    clock.set(_at(at_us).replace(tzinfo=dt.UTC))
                    for sample in expected.samples:
                        view = sample.view
                        features = list(view.feature_names())
                        sent = [k[0] if len(k) == 1 else entity_token(k) for k in sample.keys]
                        response = client.post(
                            "/api/v1/features/retrieve",
                            json={
                                "entity_name": view.entity.name,
                                "entity_keys": sent,
                                "features": features,
                            },
                        )
                        assert response.status_code == 200, response.text
                        results = response.json()["results"]
                        for key, result in zip(sample.keys, results, strict=True):
                            for feature in features:
                                default = registry.features[feature].default
                                offline, brute = expected.answers[(view.name, key, at_us, feature)]
                                served = _served_value(result["features"][feature])
                                what = (kind, cut.cutoff, view.name, key, feature, _at(at_us))
                                assert _same(offline, brute), (*what, "training", offline, brute)
                                want = default if brute is None else brute
                                assert _same(served, want), (*what, "served", served, want)
                                checked[view.name] += 1
                                served_values[(cut.cutoff, view.name, key, feature)].add(served)
        assert set(checked) == {v.name for v in cuts[-1].registry.views.values() if v.online}
        # values did change between loads with no new write: windowed ones decayed, the
        # hand-written merchant rate followed its scheduled rows
        changed = {what[1] for what, values in served_values.items() if len(values) > 1}
        assert {
            "user_transaction_features",
            "merchant_transaction_features",
            "merchant_chargeback_features",
        } <= changed, changed


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)  # type: ignore[arg-type]
    if hasattr(a, "item"):
        a = a.item()  # type: ignore[union-attr]
    return a == b


# --- request-time features: the warehouse's SQL equals the compiled Python ------------------


def _python_value(value: object) -> object:
    """A value of a training-set cell as the sidecar holds it (JSON types, None for null)."""
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)  # a JSON number in the request body parses to this double
    return value.item() if hasattr(value, "item") else value


def test_request_time_features_warehouse_equals_compiled_python(
    cuts: list[Cut], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request-time feature of every feature service: the value get_historical_features
    computes in the warehouse (to_sql) equals compile_python of the same declaration applied
    to the same row's joined stored values and request fields (the sidecar's evaluator; its
    own side of the parity is tested with the sidecar). Rows: labelled transactions of the
    latest cut, with null and zero amounts, an unknown user (null features), and a user whose
    90-day average is 0 (a file copy of the cut's warehouse with that user's rows set to 0:
    the division by zero)."""
    cut = cuts[-1]
    copy = Warehouse(tmp_path / "warehouse", raw_path=cut.raw)
    shutil.copytree(cut.warehouse.workdir, copy.workdir)
    relation = cut.registry.view("user_transaction_features").relation
    with duckdb.connect(str(copy.duckdb_path)) as con:
        ((zero_user,),) = con.sql(
            f"select user_id from {relation} group by user_id order by count(*) desc limit 1"
        ).fetchall()
        con.execute(f"update {relation} set avg_order_value_90d = 0 where user_id = ?", [zero_user])
        labels = (
            con.sql(
                "select transaction_id, user_id, merchant_id, device_id, amount, transacted_at "
                "from main_training.fraud_training_spine "
                f"where user_id = '{zero_user}' or hash(transaction_id) % 11 = 0 "
                "order by transaction_id"
            )
            .to_arrow_table()
            .to_pylist()
        )
    known = labels[0]
    labels += [
        {**known, "transaction_id": "null_amount", "amount": None},
        {**known, "transaction_id": "zero_amount", "amount": Decimal("0.00")},
        {**known, "transaction_id": "unknown_user", "user_id": "usr_nobody"},
        {**known, "transaction_id": "zero_over_zero", "user_id": zero_user,
         "amount": Decimal("0.00")},
    ]  # fmt: skip
    spine = pd.DataFrame(labels)
    copy.use(monkeypatch)
    checked = 0
    for service in cut.registry.feature_services.values():
        if not service.request_features:
            continue
        result = get_historical_features(
            spine, feature_service=service.name, timestamp_column="transacted_at"
        )
        for feature in service.request_features:
            evaluate = compile_python(feature.expression)
            outcomes: dict[str, int] = defaultdict(int)
            for i in range(len(result)):
                stored = {f: _python_value(result[f].iloc[i]) for f in service.features}
                request = {
                    f.name: _python_value(spine[f.name].iloc[i]) for f in service.request_fields
                }
                python = evaluate(stored, request)
                warehouse = _python_value(result[feature.name].iloc[i])
                assert python == warehouse and type(python) is type(warehouse), (
                    service.name, feature.name, spine["transaction_id"].iloc[i], stored,
                    request, python, warehouse,
                )  # fmt: skip
                divisor = stored.get("avg_order_value_90d")
                outcomes[
                    "value" if python is not None
                    else "zero divisor" if divisor == 0
                    else "null input"
                ] += 1  # fmt: skip
            checked += 1
            if feature.name == "amount_over_avg_90d":  # the demo's: nulls and 0 both met
                assert outcomes["value"] > 100, outcomes
                assert outcomes["zero divisor"] >= 2 and outcomes["null input"] >= 2, outcomes
    assert checked >= 1
