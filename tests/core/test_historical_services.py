"""get_historical_features(feature_service=...) on the DuckDB demo warehouse
(featurestore/historical.py, featurestore/historical_request_features.py).

The warehouse is a file copy of the session's demo warehouse (no dbt build) in which one
user's ``avg_order_value_90d`` rows are set to 0 and another's to null, so that the
request-time feature ``amount_over_avg_90d = request.amount / avg_order_value_90d`` meets a
division by zero and a null divisor on real joins. Expectations are computed independently:

* the stored features equal get_historical_features with the same features listed (that
  path is checked against the brute-force reference in tests/core/test_historical.py);
* the request-time feature equals a direct Python evaluation of the division with SQL null
  semantics (null operand -> null, zero divisor -> null), written here, over the spine's
  amounts and the joined averages.

The refusals (no service and no features, both, an unknown service, a spine without the
request field or with one of the wrong type) are cases of tests/core/test_historical.py's
ERRORS, run on DuckDB and on the snowflake target.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from featurestore.historical import get_historical_features
from featurestore.registry import FeatureService, Registry, load_registry
from tests.warehouse import Warehouse

pytestmark = pytest.mark.slow

SERVICE = "fraud_model_v1"
RATIO = "amount_over_avg_90d"
AVG = "avg_order_value_90d"
TS = "transacted_at"


def ratio_reference(amount: object, average: object) -> float | None:
    """``request.amount / avg_order_value_90d`` as the README defines it (SQL semantics)."""
    if amount is None or average is None or pd.isna(amount) or pd.isna(average):
        return None
    if float(average) == 0:  # type: ignore[arg-type]
        return None
    return float(amount) / float(average)  # type: ignore[arg-type]


def _same(want: float | None, got: object) -> bool:
    if want is None:
        return got is None or pd.isna(got)
    return got is not None and not pd.isna(got) and got == want and math.isfinite(want)


@dataclass(frozen=True)
class Patched:
    """The copied warehouse and its two patched users."""

    warehouse: Warehouse
    zero_user: str  # avg_order_value_90d 0 in every row
    null_user: str  # avg_order_value_90d null in every row


@pytest.fixture(scope="module")
def patched(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Patched:
    """A copy of the demo warehouse with a zero-average and a null-average user."""
    copy = Warehouse(tmp_path_factory.mktemp("services-warehouse") / "warehouse")
    shutil.copytree(demo_warehouse.workdir, copy.workdir)
    registry = load_registry(copy.target_path / "manifest.json")
    relation = registry.view("user_transaction_features").relation
    with duckdb.connect(str(copy.duckdb_path)) as con:
        zero_user, null_user = (
            row[0]
            for row in con.sql(
                f"select user_id from {relation} group by user_id having count(*) > 20 "
                "order by user_id limit 2"
            ).fetchall()
        )
        con.execute(f"update {relation} set {AVG} = 0 where user_id = ?", [zero_user])
        con.execute(f"update {relation} set {AVG} = null where user_id = ?", [null_user])
    return Patched(copy, zero_user, null_user)


@pytest.fixture(scope="module")
def warehouse(patched: Patched) -> Warehouse:
    return patched.warehouse


@pytest.fixture(scope="module")
def registry(warehouse: Warehouse) -> Registry:
    return load_registry(warehouse.target_path / "manifest.json")


@pytest.fixture(scope="module")
def service(registry: Registry) -> FeatureService:
    return registry.feature_service(SERVICE)


def _labels(patched: Patched, limit: int) -> pa.Table:
    """Labelled demo transactions (amounts as the warehouse's decimals), spread over the
    period, with every row of the zero and null users, plus edge rows: a null amount, a zero
    amount, a negative one, an unknown user, zero over zero."""
    zero_user, null_user = patched.zero_user, patched.null_user
    with duckdb.connect(str(patched.warehouse.duckdb_path), read_only=True) as con:
        sampled = con.sql(
            "select transaction_id, user_id, merchant_id, device_id, amount, transacted_at, "
            "is_fraud from main_training.fraud_training_spine "
            f"where user_id in ('{zero_user}', '{null_user}') or hash(transaction_id) % 7 = 0 "
            f"order by hash(transaction_id) limit {limit}"
        ).to_arrow_table()
    rows = sampled.to_pylist()
    known = next(r for r in rows if r["user_id"] not in (zero_user, null_user))
    at = known[TS]
    edges = [
        {**known, "transaction_id": "edge_null_amount", "amount": None},
        {**known, "transaction_id": "edge_zero_amount", "amount": Decimal("0.00")},
        {**known, "transaction_id": "edge_negative", "amount": Decimal("-12.50")},
        {**known, "transaction_id": "edge_unknown_user", "user_id": "usr_nobody"},
        {**known, "transaction_id": "edge_zero_over_zero", "user_id": zero_user,
         "amount": Decimal("0.00"), TS: at + dt.timedelta(days=30)},
        {**known, "transaction_id": "edge_null_over_zero", "user_id": zero_user,
         "amount": None, TS: at + dt.timedelta(days=30)},
    ]  # fmt: skip
    return pa.Table.from_pylist(rows + edges, schema=sampled.schema)


@pytest.fixture(scope="module")
def labels(patched: Patched) -> pa.Table:
    return _labels(patched, 2500)


def _call(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, spine: Any, **kwargs: Any
) -> pd.DataFrame:
    warehouse.use(monkeypatch)
    kwargs.setdefault("timestamp_column", TS)
    return get_historical_features(spine, **kwargs)


def test_service_equals_its_features_and_the_ratio_reference(
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    service: FeatureService,
    labels: pa.Table,
) -> None:
    result = _call(warehouse, monkeypatch, labels, feature_service=SERVICE)
    stored = _call(warehouse, monkeypatch, labels, features=list(service.features))
    spine = labels.to_pandas()
    assert list(result.columns) == [*spine.columns, *service.features, RATIO]
    # the stored features: exactly the feature-list path's answer
    pd.testing.assert_frame_equal(result.drop(columns=[RATIO]), stored, check_exact=True)
    # the request-time feature: the division with SQL null semantics, row by row
    problems = []
    reasons = {"value": 0, "null amount": 0, "zero average": 0, "null average": 0}
    for i, (amount, average) in enumerate(zip(spine["amount"], stored[AVG], strict=True)):
        want = ratio_reference(amount, average)
        got = result[RATIO].iloc[i]
        if not _same(want, got):
            problems.append(f"{spine['transaction_id'][i]}: {amount} / {average}: {got!r}")
        if want is not None:
            reasons["value"] += 1
        elif amount is None or pd.isna(amount):
            reasons["null amount"] += 1
        elif pd.isna(average):
            reasons["null average"] += 1
        else:
            reasons["zero average"] += 1
    assert not problems, problems[:10]
    assert reasons["value"] > 1000 and min(reasons.values()) >= 3, reasons  # not vacuous
    assert result[RATIO].dtype == "float64"
    by_id = result.set_index("transaction_id")[RATIO]
    assert pd.isna(by_id["edge_zero_over_zero"]) and pd.isna(by_id["edge_null_over_zero"])
    assert by_id["edge_zero_amount"] == 0.0 and by_id["edge_negative"] < 0
    assert pd.isna(by_id["edge_unknown_user"]) and pd.isna(by_id["edge_null_amount"])


def test_columns_timestamps_and_request_field_types(
    patched: Patched,
    monkeypatch: pytest.MonkeyPatch,
    registry: Registry,
    service: FeatureService,
) -> None:
    """Audit timestamps follow the request-time features; the amount may come as decimals
    (a pyarrow spine from the warehouse), floats or integers (pandas), the spine's own
    columns are returned as given."""
    warehouse = patched.warehouse
    small = _labels(patched, 300)
    decimals = _call(
        warehouse, monkeypatch, small, feature_service=SERVICE, include_feature_timestamps=True
    )
    views = dict.fromkeys(registry.feature(f).view for f in service.features)
    stamps = [f"{v}__{s}" for v in views for s in ("feature_at", "as_of_at")]
    assert list(decimals.columns) == [*small.column_names, *service.features, RATIO, *stamps]
    assert isinstance(decimals["amount"].dropna().iloc[0], Decimal)  # the caller's column

    floats = small.to_pandas()
    floats["amount"] = floats["amount"].astype("float64")
    as_floats = _call(warehouse, monkeypatch, floats, feature_service=SERVICE)
    pd.testing.assert_series_equal(as_floats[RATIO], decimals[RATIO], check_exact=True)

    whole = small.to_pandas()
    whole["amount"] = pd.array([None if a is None else int(a) for a in whole["amount"]], "Int64")
    as_ints = _call(warehouse, monkeypatch, whole, feature_service=SERVICE)
    expected = [ratio_reference(a, m) for a, m in zip(whole["amount"], as_ints[AVG], strict=True)]
    assert all(_same(w, g) for w, g in zip(expected, as_ints[RATIO], strict=True))
    assert sum(w is not None for w in expected) > 100


def test_an_empty_spine(patched: Patched, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = _labels(patched, 10).slice(0, 0)
    result = _call(patched.warehouse, monkeypatch, empty, feature_service=SERVICE)
    assert len(result) == 0 and RATIO in result.columns
    assert result[RATIO].dtype == "float64"
