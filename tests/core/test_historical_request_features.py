"""The pieces of a feature service's training set that need no dbt project
(featurestore/historical_request_features.py, the request columns of featurestore/historical.py):

* :func:`with_request_features` run by a real in-memory DuckDB over a stand-in for the
  compiled join (a table of joined feature values and request columns), for a service with
  a numeric and a boolean request-time feature; each value must equal the compiled Python
  evaluator of the same declaration on the same row (nulls, zero divisors, three-valued
  ``or``);
* the spine's request-field columns: accepted kinds per type, nulls, refusals.

The demo's service on the real warehouses: tests/core/test_historical_services.py,
tests/core/test_historical_snowflake.py and tests/parity/test_parity.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from featurestore.expressions import compile_python
from featurestore.historical import HistoricalFeaturesError, _request_array
from featurestore.historical_request_features import request_column, with_request_features
from featurestore.registry import FeatureService, registry_from_manifest
from tests.core.test_feature_services import _exposure, _manifest, _service

ROW = "__fs_spine_row"


@pytest.fixture(scope="module")
def service() -> FeatureService:
    """scorer_v1: amount_over_basket (request.amount / avg_basket_30d) and busy_or_refunding
    (order_count_7d > 3 or refund_rate_30d >= 0.5)."""
    registry = registry_from_manifest(_manifest(_exposure("scorer_v1", _service())))
    return registry.feature_service("scorer_v1")


def _joined_rows() -> list[dict[str, Any]]:
    """Every combination of edge values of the inputs the two expressions read."""
    rows = []
    combos = itertools.product(
        [None, 0, 3, 4],  # order_count_7d
        [None, 0.0, 2.5, -4.0],  # avg_basket_30d
        [None, 0.0, 0.5, 0.75],  # refund_rate_30d
        [None, 0.0, 10.0, -3.25],  # amount
    )
    for i, (count, basket, rate, amount) in enumerate(combos):
        rows.append(
            {
                ROW: i,
                "customer_id": f"c{i}",
                "order_count_7d": count,
                "avg_basket_30d": basket,
                "refund_rate_30d": rate,
                "card_seen_before": i % 3 == 0 if i % 5 else None,
                request_column("amount"): amount,
                request_column("channel"): "web" if i % 2 else None,
            }
        )
    return rows


def test_duckdb_computes_what_the_compiled_python_computes(service: FeatureService) -> None:
    rows = _joined_rows()
    schema = pa.schema(
        [
            (ROW, pa.int64()), ("customer_id", pa.string()), ("order_count_7d", pa.int64()),
            ("avg_basket_30d", pa.float64()), ("refund_rate_30d", pa.float64()),
            ("card_seen_before", pa.bool_()), (request_column("amount"), pa.float64()),
            (request_column("channel"), pa.string()),
        ]
    )  # fmt: skip
    joined = pa.Table.from_pylist(rows, schema=schema)
    sql = with_request_features("select * from joined_input", service, dialect="duckdb")
    with duckdb.connect() as con:
        con.register("joined_input", joined)
        result = con.sql(f"select * from ({sql}) order by {ROW}").to_arrow_table().to_pylist()
    assert len(result) == len(rows)
    evaluators = {f.name: compile_python(f.expression) for f in service.request_features}
    met: dict[str, set[object]] = {name: set() for name in evaluators}
    for row, got in zip(rows, result, strict=True):
        assert {k: got[k] for k in row} == row  # the joined columns pass through unchanged
        stored = {name: row[name] for name in service.features}
        request = {f.name: row[request_column(f.name)] for f in service.request_fields}
        for name, evaluate in evaluators.items():
            want = evaluate(stored, request)
            assert got[name] == want and type(got[name]) is type(want), (row, name, got[name])
            met[name].add(want if want is None or isinstance(want, bool) else "number")
    assert met == {"amount_over_basket": {None, "number"}, "busy_or_refunding": {None, True, False}}


def test_a_service_without_request_features_leaves_the_join_alone() -> None:
    minimal = registry_from_manifest(
        _manifest(_exposure("shop_scorer", {"features": ["refund_rate_30d"]}))
    ).feature_service("shop_scorer")
    assert with_request_features("select 1", minimal, dialect="snowflake") == "select 1"
    assert with_request_features("select 1", None, dialect="duckdb") == "select 1"


# --- the spine's request-field columns ------------------------------------------------------


def _array(values: Any, value_type: Any) -> pa.Array:
    return _request_array(pd.DataFrame({"field": values}), "field", value_type, None)


def test_request_columns_of_each_type() -> None:
    floats = _array(pd.Series([1, None, 2], dtype="Int64"), "float")
    assert floats.type == pa.float64() and floats.to_pylist() == [1.0, None, 2.0]
    assert _array([1.5, np.nan, None], "float").to_pylist() == [1.5, None, None]
    decimals = _array([Decimal("25.74"), None, Decimal("-0.10")], "float").to_pylist()
    assert decimals == [25.74, None, -0.1]  # the nearest doubles, as JSON would carry them
    assert _array(pd.Series([3, None], dtype="Int64"), "int").to_pylist() == [3, None]
    assert _array(pd.array([True, None], dtype="boolean"), "bool").to_pylist() == [True, None]
    assert _array(["web", None], "string").to_pylist() == ["web", None]
    assert _array([None, None], "string").to_pylist() == [None, None]
    aware = pd.Series(pd.to_datetime(["2026-03-01T12:00:00+02:00", None], utc=True))
    stamps = _array(aware, "timestamp")
    assert stamps.type == pa.timestamp("us")
    assert stamps.to_pylist() == [dt.datetime(2026, 3, 1, 10, 0), None]
    assert all(math.isfinite(v) for v in _array([1e308, 2.0], "float").to_pylist())


@pytest.mark.parametrize(
    ("values", "value_type", "message"),
    [
        (["1.5", "2"], "float", r"must hold numeric values \(request field type float\)"),
        ([1.5, 2.0], "int", r"must hold integer values \(request field type int\), got double"),
        (["yes", "no"], "bool", r"must hold boolean values \(request field type bool\)"),
        ([1, 2], "string", r"must hold string values \(request field type string\), got int64"),
        ([1, 2], "timestamp", r"timestamp column 'field' must be a timestamp column"),
        ([[1], [2]], "float", r"must hold numeric values .*got list<item: int64>"),
    ],
)
def test_request_columns_of_another_kind_are_refused(
    values: Any, value_type: Any, message: str
) -> None:
    with pytest.raises(HistoricalFeaturesError, match=message):
        _array(values, value_type)
