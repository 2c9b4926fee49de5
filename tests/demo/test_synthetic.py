"""Tests of the synthetic dataset generator: determinism, schemas and every kind of mess."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.main import main
from demo.synthetic import TABLES, GenerationSummary, generate

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
START = dt.datetime(2026, 1, 1)
SMALL: dict[str, Any] = {
    "users": 800,
    "merchants": 40,
    "transactions": 9000,
    "days": 60,
    "start": START,
    "seed": 11,
    "rows_per_file": 3000,
}
TS = pa.timestamp("us")
EXPECTED_SCHEMAS = {
    "users": [("user_id", pa.string()), ("signed_up_at", TS), ("country", pa.string())],
    "merchants": [("merchant_id", pa.string()), ("category", pa.string()), ("onboarded_at", TS)],
    "devices": [("device_id", pa.string()), ("device_type", pa.string())],
    "transactions": [
        ("transaction_id", pa.string()),
        ("user_id", pa.string()),
        ("merchant_id", pa.string()),
        ("device_id", pa.string()),
        ("amount", pa.decimal128(18, 2)),
        ("currency", pa.string()),
        ("transacted_at", TS),
        ("ingested_at", TS),
    ],
    "chargebacks": [
        ("chargeback_id", pa.string()),
        ("transaction_id", pa.string()),
        ("charged_back_at", TS),
        ("ingested_at", TS),
        ("reason", pa.string()),
    ],
    "fraud_labels": [("transaction_id", pa.string()), ("is_fraud", pa.bool_()), ("labeled_at", TS)],
}


def read(root: Path, table: str) -> pa.Table:
    parts = sorted((root / table).glob("part-*.parquet"))
    assert parts, f"no part files for {table}"
    return pa.concat_tables([pq.read_table(p) for p in parts])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("small")
    return out, generate(out, **SMALL)


@pytest.fixture(scope="module")
def db(small: tuple[Path, GenerationSummary]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in TABLES:
        files = f"{small[0]}/{table}/*.parquet"
        con.execute(f"create view {table} as select * from read_parquet('{files}')")
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row


def test_same_arguments_give_identical_content(tmp_path: Path) -> None:
    args: dict[str, Any] = {**SMALL, "transactions": 4000, "rows_per_file": 1500}
    first = generate(tmp_path / "a", **args)
    second = generate(tmp_path / "b", **args)
    generate(tmp_path / "c", **{**args, "seed": 12})
    assert first == second
    for table in TABLES:
        names = sorted(p.name for p in (tmp_path / "a" / table).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "b" / table).iterdir())
        assert read(tmp_path / "a", table).equals(read(tmp_path / "b", table)), table
    assert not read(tmp_path / "a", "transactions").equals(read(tmp_path / "c", "transactions"))


def test_rerun_replaces_previous_part_files(tmp_path: Path) -> None:
    generate(tmp_path, **{**SMALL, "rows_per_file": 1000})
    assert len(list((tmp_path / "transactions").glob("part-*.parquet"))) == 9
    summary = generate(tmp_path, **{**SMALL, "transactions": 500})
    assert [p.name for p in (tmp_path / "transactions").iterdir()] == ["part-00000.parquet"]
    for table in TABLES:
        assert read(tmp_path, table).num_rows == summary.rows[table]


def test_demo_data_equals_fresh_generation_with_cli_defaults(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for table in TABLES:
        demo_parts = sorted(p.name for p in (DEMO / table).glob("part-*.parquet"))
        assert demo_parts == sorted(p.name for p in (tmp_path / table).glob("part-*.parquet"))
        assert read(DEMO, table).equals(read(tmp_path, table)), f"data/demo/{table} is stale"
    assert read(DEMO, "fraud_labels").num_rows == 20000
    size = sum(p.stat().st_size for p in DEMO.rglob("*.parquet"))
    assert size < 1.5 * 2**20


def test_schemas_and_row_counts(small: tuple[Path, GenerationSummary]) -> None:
    root, summary = small
    assert list(summary.rows) == list(TABLES)
    for table in TABLES:
        data = read(root, table)
        assert [(f.name, f.type) for f in data.schema] == EXPECTED_SCHEMAS[table]
        assert data.num_rows == summary.rows[table]
        meta = pq.ParquetFile(root / table / "part-00000.parquet").metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
    assert summary.rows["users"] == 800 and summary.rows["merchants"] == 40
    assert summary.rows["fraud_labels"] == 9000


def test_ids_timestamps_and_value_domains(db: duckdb.DuckDBPyConnection) -> None:
    patterns = {
        ("users", "user_id"): r"usr_\d{8}",
        ("merchants", "merchant_id"): r"mer_\d{6}",
        ("devices", "device_id"): r"dev_[0-9a-f]{16}",
        ("transactions", "transaction_id"): r"txn_\d{10}",
        ("chargebacks", "chargeback_id"): r"cbk_\d{10}",
    }
    for (table, column), pattern in patterns.items():
        values = [r[0] for r in db.execute(f"select distinct {column} from {table}").fetchall()]
        assert values and all(re.fullmatch(pattern, v) for v in values), (table, column)
    for table, fields in EXPECTED_SCHEMAS.items():
        for column, kind in fields:
            if kind == TS:  # whole seconds everywhere
                sql = f"select count(*) from {table} where microsecond({column}) % 1000000 <> 0"
                assert one(db, sql) == (0,)
    assert one(db, "select max(signed_up_at) < '2026-01-01' from users") == (True,)
    assert one(db, "select max(onboarded_at) < '2026-01-01' from merchants") == (True,)
    lo, hi = one(db, "select min(transacted_at), max(transacted_at) from transactions")
    assert lo >= START and hi < START + dt.timedelta(days=60)
    assert one(db, "select list(distinct currency) from transactions") == (["USD"],)
    low, mid, high = one(db, "select min(amount), median(amount), max(amount) from transactions")
    assert low > 0 and 25 < mid < 60 and high > 1000
    types = {r[0] for r in db.execute("select distinct device_type from devices").fetchall()}
    assert types == {"ios", "android", "web"}


def test_ingestion_lag_and_late_events(db: duckdb.DuckDBPyConnection) -> None:
    lag = "epoch(ingested_at) - epoch(transacted_at)"
    fast, late, first = one(
        db,
        f"select avg(({lag} <= 120)::int), avg(({lag} >= 86400)::int), min({lag}) "
        "from transactions",
    )
    assert first >= 0 and 0.8 < fast < 0.95 and 0.01 < late < 0.04
    cb_lag = "epoch(ingested_at) - epoch(charged_back_at)"
    sql = f"select min({cb_lag}) >= 0, max({cb_lag}) >= 86400 from chargebacks"
    assert one(db, sql) == (True, True)


def test_exact_duplicates_and_redeliveries(db: duckdb.DuckDBPyConnection) -> None:
    (exact,) = one(
        db, "select count(*) from (select * from transactions group by all having count(*) > 1)"
    )
    (redelivered,) = one(
        db,
        "select count(*) from (select transaction_id from transactions group by 1 "
        "having count(distinct ingested_at) > 1)",
    )
    assert 15 < exact < 90 and 15 < redelivered < 90
    # A repeated transaction_id only ever repeats the same transaction (ids are globally unique).
    fields = "transaction_id, user_id, merchant_id, device_id, amount, currency, transacted_at"
    sql = f"select count(distinct transaction_id), count(distinct ({fields})) from transactions"
    assert one(db, sql) == (9000, 9000)
    (cb_exact,) = one(
        db, "select count(*) from (select * from chargebacks group by all having count(*) > 1)"
    )
    assert cb_exact >= 1
    fields = "chargeback_id, transaction_id, charged_back_at, ingested_at, reason"
    sql = f"select count(distinct chargeback_id) = count(distinct ({fields})) from chargebacks"
    assert one(db, sql) == (True,)


def test_transaction_ids_unique_across_chunk_files(small: tuple[Path, GenerationSummary]) -> None:
    parts = sorted((small[0] / "transactions").glob("part-*.parquet"))
    assert len(parts) == math.ceil(9000 / 3000)
    seen: set[str] = set()
    for part in parts:
        data = pq.read_table(part)
        assert 3000 <= data.num_rows <= 3000 * 1.03
        ids = set(data.column("transaction_id").to_pylist())
        assert not ids & seen
        seen |= ids
        at = data.column("transacted_at")
        assert not pc.all(pc.greater_equal(at[1:], at[:-1])).as_py()  # not in event-time order
    assert len(seen) == 9000


def test_ties(db: duckdb.DuckDBPyConnection) -> None:
    (ties,) = one(
        db,
        "select count(*) from (select user_id, transacted_at from (select distinct "
        "transaction_id, user_id, transacted_at from transactions) group by all "
        "having count(*) > 1)",
    )
    assert 30 < ties < 200
    (shared,) = one(
        db,
        "select count(*) from (select charged_back_at from chargebacks group by 1 "
        "having count(distinct chargeback_id) > 1)",
    )
    assert shared >= 1


def test_missing_values(db: duckdb.DuckDBPyConnection) -> None:
    device, amount = one(
        db, "select avg((device_id is null)::int), avg((amount is null)::int) from transactions"
    )
    assert 0.01 < device < 0.03 and 0.004 < amount < 0.02
    assert 0.02 < one(db, "select avg((country is null)::int) from users")[0] < 0.09
    assert one(db, "select count(*) from chargebacks where reason is null")[0] >= 1
    required = [
        ("transactions", "transaction_id"),
        ("transactions", "user_id"),
        ("transactions", "transacted_at"),
        ("chargebacks", "transaction_id"),
        ("fraud_labels", "is_fraud"),
    ]
    for table, column in required:
        assert one(db, f"select count(*) from {table} where {column} is null") == (0,)


def test_entities_without_history_and_skew(db: duckdb.DuckDBPyConnection) -> None:
    (idle_users,) = one(
        db,
        "select avg((user_id not in (select user_id from transactions))::int) from users",
    )
    assert 0.06 < idle_users < 0.14
    (idle_merchants,) = one(
        db,
        "select count(*) from merchants "
        "where merchant_id not in (select merchant_id from transactions)",
    )
    assert idle_merchants >= 1
    (top_users,) = one(
        db,
        "select sum(n) / 9000 from (select count(*) n from transactions group by user_id "
        "order by n desc limit 8)",
    )
    assert top_users > 0.05  # the most active 1% of users make > 5x their share
    sql = "select max(n) / 9000 from (select count(*) n from transactions group by merchant_id)"
    assert one(db, sql)[0] > 0.1


def test_devices(db: duckdb.DuckDBPyConnection) -> None:
    assert one(db, "select count(*) = count(distinct device_id) from devices") == (True,)
    missing = (
        "select count(*) from transactions where device_id is not null "
        "and device_id not in (select device_id from devices)"
    )
    assert one(db, missing) == (0,)
    shared = (
        "select max(n) from (select count(distinct user_id) n from transactions "
        "where device_id is not null group by device_id)"
    )
    assert one(db, shared) == (1,)
    pairs = (
        "select user_id, device_id, count(*) n from (select distinct transaction_id, user_id, "
        "device_id from transactions where device_id is not null) group by all"
    )
    sql = f"select sum(n - 1) / sum(n), count(*) filter (where n = 1) from ({pairs})"
    reuse, single_use = one(db, sql)
    assert reuse > 0.7 and single_use > 100  # mostly known devices, but new ones too


def test_fraud_and_chargebacks(db: duckdb.DuckDBPyConnection) -> None:
    assert 0.012 < one(db, "select avg(is_fraud::int) from fraud_labels")[0] < 0.035
    rows = db.execute(
        "select is_fraud, avg((transaction_id in (select transaction_id from chargebacks))::int) "
        "from fraud_labels group by 1"
    ).fetchall()
    by_class = dict(rows)
    assert 0.6 < by_class[True] < 0.95 and by_class[False] < 0.02
    risky, safe = one(
        db,
        """select avg(is_fraud::int) filter (where category in ('gift_cards', 'electronics')),
                  avg(is_fraud::int) filter (where category in ('grocery', 'restaurants'))
           from fraud_labels
           join (select distinct transaction_id, merchant_id from transactions)
             using (transaction_id)
           join merchants using (merchant_id)""",
    )
    assert risky > 2 * safe
    first, last, orphans = one(
        db,
        """select min(epoch(charged_back_at) - epoch(transacted_at)) / 86400,
                  max(epoch(charged_back_at) - epoch(transacted_at)) / 86400,
                  count(*) filter (where t.transaction_id is null)
           from chargebacks
           left join (select distinct transaction_id, transacted_at from transactions) t
             using (transaction_id)""",
    )
    assert first >= 3 and last <= 60 and orphans == 0


def test_one_label_per_distinct_transaction(db: duckdb.DuckDBPyConnection) -> None:
    sql = "select count(*), count(distinct transaction_id) from fraud_labels"
    assert one(db, sql) == (9000, 9000)
    unmatched = (
        "select count(*) from (select distinct transaction_id from transactions) t "
        "full join fraud_labels l using (transaction_id) "
        "where t.transaction_id is null or l.transaction_id is null"
    )
    assert one(db, unmatched) == (0,)
    early = (
        "select count(*) from fraud_labels join (select distinct transaction_id, transacted_at "
        "from transactions) using (transaction_id) where labeled_at <= transacted_at"
    )
    assert one(db, early) == (0,)
