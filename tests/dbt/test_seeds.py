"""The checked-in reference data (seeds/) as `dbt build` loads it and the models join it."""

from __future__ import annotations

import csv

from demo.synthetic import CATEGORY_RISK
from tests.warehouse import REPO, Warehouse


def _seed_rows() -> list[dict[str, str]]:
    with (REPO / "seeds" / "merchant_categories.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_seed_covers_the_categories_the_data_generator_draws() -> None:
    rows = _seed_rows()
    assert {row["category"]: float(row["relative_fraud_risk"]) for row in rows} == CATEGORY_RISK
    assert {row["risk_tier"] for row in rows} <= {"low", "medium", "high"}


def test_dbt_build_loads_the_seed_and_every_merchant_gets_its_category(
    demo_warehouse: Warehouse,
) -> None:
    loaded = demo_warehouse.query(
        "select category, category_name, risk_tier, relative_fraud_risk "
        "from main_seeds.merchant_categories order by category"
    )
    expected = sorted(
        (r["category"], r["category_name"], r["risk_tier"], float(r["relative_fraud_risk"]))
        for r in _seed_rows()
    )
    assert loaded == expected
    merchants = demo_warehouse.query(
        "select m.merchant_id, m.category, c.risk_tier "
        "from main_staging.stg_raw__merchants as m "
        "left join main_intermediate.int_merchants_categorized as c using (merchant_id) "
        "order by m.merchant_id"
    )
    tiers = {row[0]: row[2] for row in expected}
    assert merchants, "the demo has merchants"
    assert [(m, tiers[cat]) for m, cat, _ in merchants] == [(m, t) for m, _, t in merchants]
