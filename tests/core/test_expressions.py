"""The expression language of request-time features (featurestore/expressions/): parse and
type errors with positions, the documented null and division rules, compile-once, and (below)
parity of compile_python, an independent reference interpreter and DuckDB/Snowflake SQL."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest
import sqlglot

import featurestore.expressions.syntax as syntax_module
from featurestore.data_types import ValueType
from featurestore.expressions import (
    Dialect,
    Expression,
    ExpressionError,
    compile_python,
    parse_expression,
    to_sql,
)
from tests.expression_generator import (
    FEATURE_TYPES,
    REQUEST_TYPES,
    ExpressionGenerator,
    random_rows,
)
from tests.expression_reference import Overflow, reference_type, reference_value

UNIT_FEATURES: dict[str, ValueType] = {
    "avg_order_value_90d": "float",
    "user_7d_transaction_count": "int",
    "device_seen_before": "bool",
    "country": "string",
    "last_login_at": "timestamp",
}
UNIT_REQUEST: dict[str, ValueType] = {"amount": "float", "quantity": "int", "now": "timestamp"}


def parse(text: str) -> Expression:
    return parse_expression(text, feature_types=UNIT_FEATURES, request_types=UNIT_REQUEST)


def evaluate(text: str, features: dict[str, Any] | None = None, **request: Any) -> Any:
    return compile_python(parse(text))(features or {}, request)


# --- parsing -------------------------------------------------------------------------------


def test_an_expression_names_its_type_features_and_request_fields_in_first_use_order() -> None:
    expression = parse(
        "case when device_seen_before then request.amount / avg_order_value_90d "
        "else coalesce(request.quantity, user_7d_transaction_count, request.quantity) end"
    )
    assert expression.value_type == "float"
    assert expression.features == ("device_seen_before", "avg_order_value_90d",
                                   "user_7d_transaction_count")  # fmt: skip
    assert expression.request_fields == ("amount", "quantity")


@pytest.mark.parametrize(
    ("text", "value_type"),
    [
        ("1 + 2", "int"),
        ("user_7d_transaction_count * 2 - 1", "int"),
        ("-user_7d_transaction_count", "int"),
        ("1 + 2.5", "float"),
        ("4 / 2", "float"),
        ("1 < 2.5", "bool"),
        ("country = 'DE'", "bool"),
        ("last_login_at < request.now", "bool"),
        ("coalesce(last_login_at, request.now)", "timestamp"),
        ("coalesce(null, request.quantity)", "int"),
        ("coalesce(request.quantity, 0.5)", "float"),
        ("case when device_seen_before then 0 end", "int"),
        ("case when device_seen_before then 0 else 0.5 end", "float"),
        ("not device_seen_before", "bool"),
        ("null + 1", "int"),
        ("null = null", "bool"),
        ("'x'", "string"),
    ],
)
def test_the_value_type_follows_the_typing_rules(text: str, value_type: str) -> None:
    assert parse(text).value_type == value_type


# (text, problem the message names, 1-based position it names)
ERRORS: list[tuple[str, str, int]] = [
    ("", "the expression is empty", 1),
    ("   ", "the expression is empty", 1),
    ("abs(amount)", "unknown function 'abs'", 1),
    ("1 + sqrt(4)", "unknown function 'sqrt'", 5),
    ("avg_order_value_9d", "unknown feature 'avg_order_value_9d' (did you mean 'avg_order_", 1),
    ("amount > 1", "unknown feature 'amount' (did you mean 'request.amount'?)", 1),
    ("request.amout", "unknown request field 'amout' (did you mean 'amount'?)", 1),
    ("request.", "expected a request field name after 'request.'", 9),
    ("request", "expected '.' after 'request'", 8),
    ("request.1", "expected a request field name", 9),
    ("'a' + 1", "'+' needs numbers, not a string + an integer", 5),
    ("device_seen_before * 2", "'*' needs numbers, not a boolean * an integer", 20),
    ("-country", "'-' needs a number, not a string", 1),
    ("not 1", "'not' needs a boolean, not an integer", 1),
    ("1 and true", "'and' needs booleans", 3),
    ("country < 1", "cannot compare a string < an integer", 9),
    ("last_login_at + 1", "'+' needs numbers, not a timestamp + an integer", 15),
    ("coalesce(country, 1)", "coalesce mixes a string and an integer", 19),
    ("case when 1 then 2 end", "a 'when' condition must be a boolean, not an integer", 11),
    ("case when true then 'a' else 2 end", "case mixes a string and an integer", 30),
    ("case 1 when 1 then 2 end", "expected 'when' after 'case'", 6),
    ("case when true then 1", "expected 'end' to close 'case'", 22),
    ("case when true 1 end", "expected 'then' after the condition", 16),
    ("coalesce(1)", "coalesce needs at least two arguments", 1),
    ("coalesce 1, 2", "expected '(' after 'coalesce'", 10),
    ("(1 + 2", "unbalanced '(': no ')' closes it", 1),
    ("((1 + 2) * 3", "unbalanced '('", 1),
    ("1 + 2)", "unbalanced ')'", 6),
    ("1 2", "unexpected '2' after a complete expression", 3),
    ("1 +", "the expression ends where a value is expected", 4),
    ("* 2", "unexpected '*' where a value is expected", 1),
    ("1 < 2 < 3", "comparisons do not chain", 7),
    ("1 == 1", "unexpected '==' (equality is a single =)", 3),
    ('country = "DE"', "strings take single quotes", 11),
    ("'open", "unterminated string", 1),
    ("1.", "malformed number", 1),
    (".5", "malformed number (write 0.5, not .5)", 1),
    ("1e5", "malformed number", 1),
    ("99999999999999999999", "integer literal beyond the 64-bit range", 1),
    ("null", "the expression is always null", 1),
    ("coalesce(null, null)", "the expression is always null", 1),
    ("country is null", "'is' is not in the language", 9),
    ("country in ('DE')", "'in' is not in the language", 9),
    ("1; drop table users", "unexpected character ';'", 2),
    ("select 1", "queries are not in the language", 1),
    ("(select max(amount) from t)", "queries are not in the language", 2),
    ("1 -- comment", "comments are not allowed", 3),
    ("1 /* c */", "comments are not allowed", 3),
    ("country = 'x' or '1' = '1'; --", "unexpected character ';'", 27),
    ("users.amount", "unexpected '.' after 'users'", 6),
    ('"country"', "unexpected '\"'", 1),
    ("`country`", "unexpected character '`'", 1),
    ("amount::int", "unexpected character ':'", 7),
    ("request.amount || 'x'", "unexpected character '|'", 16),
    ("$1", "unexpected character '$'", 1),
    ("case when true then 1 else 2 end end", "unexpected 'end' after a complete", 34),
    ("'\x00'", "a NUL character in a string", 2),
    ("(" * 200 + "1" + ")" * 200, "the expression nests more than 64 levels deep", 65),
    ("- " * 200 + "1", "the expression nests more than 64 levels deep", 127),
    ("not " * 200 + "true", "the expression nests more than 64 levels deep", 253),
    (" + ".join(["1"] * 2000), "the expression nests more than 64 levels deep", 1),
    ("coalesce(" * 100 + "1" + ", 2)" * 100, "the expression nests more than 64 levels", 577),
]


@pytest.mark.parametrize(("text", "problem", "position"), ERRORS)
def test_a_bad_expression_is_refused_naming_the_problem_and_its_position(
    text: str, problem: str, position: int
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert problem in caught.value.problem
    assert caught.value.position == position - 1
    shown = text if len(text) <= 80 else caught.value.excerpt
    assert str(caught.value) == f"{caught.value.problem} at position {position} of {shown!r}"
    assert len(str(caught.value)) < 200


def test_types_may_be_spelled_as_in_contract_a_and_an_unknown_type_is_refused() -> None:
    spelled = {"n": "integer", "x": "number", "b": "boolean"}
    expression = parse_expression("case when b then n else x end", feature_types=spelled,
                                  request_types={})  # fmt: skip
    assert expression.value_type == "float"
    assert parse_expression("n", feature_types=spelled, request_types={}).value_type == "int"
    with pytest.raises(
        ExpressionError,
        match="request field 'amount' has the unknown value "
        "type 'decimal' \\(one of int, float, bool, string, timestamp\\)",
    ):
        parse_expression("1", feature_types={}, request_types={"amount": "decimal"})


def test_keywords_are_case_insensitive_and_names_case_sensitive() -> None:
    assert evaluate("CASE WHEN TRUE AND NOT FALSE THEN 1 ELSE 2 END") == 1
    assert evaluate("Coalesce(NULL, 3)") == 3
    with pytest.raises(ExpressionError, match="unknown feature 'Country'"):
        parse("Country = 'DE'")


# --- semantics (the documented rules; parity below checks everything else) ----------------


def test_division_by_zero_is_null_and_division_gives_a_float() -> None:
    assert evaluate("request.amount / avg_order_value_90d", {"avg_order_value_90d": 0.0},
                    amount=5.0) is None  # fmt: skip
    assert evaluate("request.quantity / 0", quantity=3) is None
    assert evaluate("request.quantity / -0.0", quantity=3) is None
    result = evaluate("request.quantity / 2", quantity=4)
    assert isinstance(result, float) and result == 2.0


def test_null_propagates_through_arithmetic_and_comparisons() -> None:
    assert evaluate("request.amount + 1") is None
    assert evaluate("request.amount > 1") is None
    assert evaluate("-request.quantity") is None
    assert evaluate("null = null") is None


@pytest.mark.parametrize("left", [True, False, None])
@pytest.mark.parametrize("right", [True, False, None])
def test_and_or_not_are_three_valued(left: bool | None, right: bool | None) -> None:
    values = {True: "true", False: "false", None: "null"}
    conj = False if False in (left, right) else (None if None in (left, right) else True)
    disj = True if True in (left, right) else (None if None in (left, right) else False)
    assert evaluate(f"{values[left]} and {values[right]}") is conj
    assert evaluate(f"{values[left]} or {values[right]}") is disj
    assert evaluate(f"not {values[left]}") is (None if left is None else not left)


def test_case_skips_a_null_condition_and_defaults_to_null() -> None:
    assert evaluate("case when request.amount > 1 then 1 else 2 end") == 2
    assert evaluate("case when request.amount > 1 then 1 end") is None
    assert evaluate("case when device_seen_before then 0 else 1 end",
                    {"device_seen_before": True}) == 0  # fmt: skip


def test_integers_stay_integers_and_mix_into_floats() -> None:
    result = evaluate("user_7d_transaction_count * 3 - 1", {"user_7d_transaction_count": 2})
    assert result == 5 and isinstance(result, int)
    mixed = evaluate("coalesce(request.quantity, 0.5)", quantity=2)
    assert mixed == 2.0 and isinstance(mixed, float)


def test_an_integer_beyond_64_bits_and_a_non_finite_float_are_null() -> None:
    assert evaluate("request.quantity * 2", quantity=2**62) is None
    assert evaluate("request.quantity * 2", quantity=2**61) == 2**62
    assert evaluate("request.amount * request.amount", amount=1e200) is None
    assert evaluate("request.amount + 1", amount=float("nan")) is None
    assert evaluate("request.amount * request.amount > 0", amount=1e200) is True


def test_timestamps_are_read_from_datetimes_or_iso_text_and_returned_as_iso_utc() -> None:
    text = "coalesce(last_login_at, request.now)"
    aware = dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert evaluate(text, {"last_login_at": aware}) == "2026-05-01T00:00:00Z"
    assert evaluate(text, now="2026-05-01T00:00:01.5Z") == "2026-05-01T00:00:01.500000Z"
    assert evaluate("last_login_at < request.now", {"last_login_at": dt.datetime(2026, 1, 1)},
                    now="2026-01-01T00:00:00+01:00") is False  # fmt: skip


@pytest.mark.parametrize(
    ("text", "request_values", "problem"),
    [
        ("request.quantity + 1", {"quantity": 1.5}, "field 'quantity' is 1.5, not an integer"),
        ("request.quantity + 1", {"quantity": True}, "not an integer"),
        ("request.amount + 1", {"amount": "12"}, "request field 'amount' is '12', not a number"),
        ("request.now < request.now", {"now": "yesterday"}, "not an ISO 8601 timestamp"),
    ],
)
def test_an_input_of_the_wrong_type_is_a_clear_error(
    text: str, request_values: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ExpressionError, match=problem):
        compile_python(parse(text))({}, request_values)


def test_a_compiled_expression_never_parses_again(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = compile_python(parse("coalesce(request.amount, 0) / avg_order_value_90d > 1"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed during a call")

    for name in ("parse_syntax", "tokenize"):
        monkeypatch.setattr(syntax_module, name, refuse)
    monkeypatch.setattr("featurestore.expressions.expression.parse_syntax", refuse)
    with pytest.raises(AssertionError, match="parsed during a call"):
        parse("1 + 1")
    assert evaluator({"avg_order_value_90d": 2.0}, {"amount": 3.0}) is True
    assert evaluator({"avg_order_value_90d": 2.0}, {"amount": 1.0}) is False
    assert evaluator({"avg_order_value_90d": 2.0}, {}) is False
    assert evaluator({"avg_order_value_90d": 0.0}, {"amount": 1.0}) is None


# --- SQL -----------------------------------------------------------------------------------


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize(
    "text",
    ["'it''s'", "'back\\slash'", "'\\'''", "'--not a comment'", "'; drop table t'", "'é ✓'"],
)
def test_string_literals_are_escaped_for_each_dialect(text: str) -> None:
    expression = parse(text)
    duck = to_sql(expression, dialect="duckdb", feature_column=quoted, request_column=quoted)
    assert duckdb.execute(f"select {duck}").fetchall() == [(compile_python(expression)({}, {}),)]
    snow = to_sql(expression, dialect="snowflake", feature_column=quoted, request_column=quoted)
    assert snow.count("\\") == 2 * duck.count("\\")


def test_to_sql_refuses_an_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'postgres'"):
        to_sql(parse("1"), dialect="postgres", feature_column=quoted,  # type: ignore[arg-type]
               request_column=quoted)  # fmt: skip


# --- parity: compile_python == the reference == DuckDB (== Snowflake via fakesnow) ----------

SEEDS = [1, 2, 3]
EXPRESSIONS_PER_SEED = 250
ROWS = 40
DUCKDB_TYPES = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR",
                "timestamp": "TIMESTAMP"}  # fmt: skip
#: request columns as a label spine might hold them: the SQL's casts make them compute alike
DUCKDB_REQUEST_TYPES = {**DUCKDB_TYPES, "int": "INTEGER", "float": "DECIMAL(18,2)"}


def feature_column(name: str) -> str:
    return quoted(f"feat__{name}")


def request_column(name: str) -> str:
    return quoted(f"req__{name}")


@dataclass(frozen=True)
class ParityCase:
    text: str
    expression: Expression
    expected: list[Any]  # the reference's value per row


def generated_cases(seed: int) -> tuple[list[ParityCase], list[dict[str, dict[str, Any]]]]:
    """Generated expressions of every type that the reference can evaluate on every row
    (none overflowing 64 bits), with the random rows."""
    generator = ExpressionGenerator(seed)
    rows = random_rows(seed, ROWS)
    cases: list[ParityCase] = []
    while len(cases) < EXPRESSIONS_PER_SEED:
        value_type = generator.rng.choice(["int", "float", "float", "bool", "bool", "string",
                                           "timestamp"])  # fmt: skip
        text = generator.expression(value_type, generator.rng.randint(1, 4)).text
        types = {"feature_types": FEATURE_TYPES, "request_types": REQUEST_TYPES}
        if reference_type(text, **types) == "null":
            with pytest.raises(ExpressionError, match="always null"):
                parse_expression(text, **types)  # type: ignore[arg-type]
            continue
        try:
            expected = [reference_value(text, **types, **row) for row in rows]
        except Overflow:
            continue
        expression = parse_expression(text, **types)  # type: ignore[arg-type]
        assert expression.value_type == reference_type(text, **types), text
        cases.append(ParityCase(text, expression, expected))
    assert all(generator.used[name] > 0 for name in CONSTRUCTS), generator.used
    return cases, rows


CONSTRUCTS = ["null", "+", "-", "*", "/", "unary -", "not", "and", "or", "=", "!=", "<>", "<",
              "<=", ">", ">=", "coalesce", "case", "else", "literal string", "feature timestamp",
              "request timestamp", "request float", "feature bool"]  # fmt: skip


def same(actual: Any, expected: Any) -> bool:
    """Equal values (floats within 1e-9 relative); ``None`` only equals ``None``."""
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(expected, float):
        return isinstance(actual, float) and math.isclose(actual, expected, rel_tol=1e-9,
                                                          abs_tol=1e-12)  # fmt: skip
    return type(actual) is type(expected) and actual == expected


def as_python(value: Any, value_type: str) -> Any:
    """A warehouse value as compile_python returns it."""
    if value is None:
        return None
    if value_type == "timestamp":
        return value.isoformat() + "Z"
    if value_type == "int":
        assert value == int(value)
        return int(value)
    if value_type == "float":
        return float(value)
    return value


def mismatches(cases: list[ParityCase], actual: list[list[Any]], what: str) -> list[str]:
    return [f"{what} {case.text!r} row {i}: {got!r} != reference {want!r}"
            for case, values in zip(cases, actual, strict=True)
            for i, (got, want) in enumerate(zip(values, case.expected, strict=True))
            if not same(got, want)]  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_compile_python_equals_the_reference_on_random_expressions(seed: int) -> None:
    cases, rows = generated_cases(seed)
    actual = [[compile_python(case.expression)(row["features"], row["request"]) for row in rows]
              for case in cases]  # fmt: skip
    assert mismatches(cases, actual, "python") == []
    assert sum(value is None for values in actual for value in values) > 0
    assert {case.expression.value_type for case in cases} == set(DUCKDB_TYPES)


def duckdb_rows(rows: list[dict[str, dict[str, Any]]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB table ``t`` of the rows (``id`` in row order), typed columns."""
    con = duckdb.connect()
    columns = ([f"{feature_column(n)} {DUCKDB_TYPES[t]}" for n, t in FEATURE_TYPES.items()]
               + [f"{request_column(n)} {DUCKDB_REQUEST_TYPES[t]}"
                  for n, t in REQUEST_TYPES.items()])  # fmt: skip
    con.execute(f"create table t (id integer, {', '.join(columns)})")
    marks = ", ".join("?" for _ in range(1 + len(FEATURE_TYPES) + len(REQUEST_TYPES)))
    con.executemany(f"insert into t values ({marks})",
                    [[i, *row["features"].values(), *row["request"].values()]
                     for i, row in enumerate(rows)])  # fmt: skip
    return con


def run_sql(execute: Callable[[str], list[tuple[Any, ...]]], cases: list[ParityCase],
            dialect: Dialect, batch: int) -> list[list[Any]]:  # fmt: skip
    """Each case's values per row, computed by ``dialect``'s SQL over table ``t``."""
    per_case: list[list[Any]] = []
    for start in range(0, len(cases), batch):
        chunk = cases[start : start + batch]
        selects = ", ".join(
            to_sql(case.expression, dialect=dialect, feature_column=feature_column,
                   request_column=request_column) + f" AS e{i}"
            for i, case in enumerate(chunk)
        )  # fmt: skip
        result = execute(f"select {selects} from t order by id")
        for i, case in enumerate(chunk):
            per_case.append([as_python(row[i], case.expression.value_type) for row in result])
    return per_case


@pytest.mark.parametrize("seed", SEEDS)
def test_duckdb_sql_equals_the_reference_on_random_expressions(seed: int) -> None:
    cases, rows = generated_cases(seed)
    con = duckdb_rows(rows)
    actual = run_sql(lambda sql: con.execute(sql).fetchall(), cases, "duckdb", batch=50)
    assert mismatches(cases, actual, "duckdb") == []


# fakesnow reads results through DuckDB's DB-API arrow path, which warns (in the server's
# threads too, where an error would become an HTTP 500 the connector retries)
@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")
def test_snowflake_sql_parses_and_equals_the_reference_on_fakesnow() -> None:
    from tests.snowflake_server import fake_snowflake_server

    cases, rows = generated_cases(SEEDS[0])
    for case in cases:
        sql = to_sql(case.expression, dialect="snowflake", feature_column=feature_column,
                     request_column=request_column)  # fmt: skip
        sqlglot.parse_one(f"select {sql} from t", read="snowflake")  # raises if it cannot
    snowflake_types = {"int": "NUMBER(38,0)", "float": "FLOAT", "bool": "BOOLEAN",
                       "string": "VARCHAR", "timestamp": "TIMESTAMP_NTZ"}  # fmt: skip
    with fake_snowflake_server() as server:
        con = server.connect(account="acc", user="u", password="p", database="EXPR",
                             schema="PARITY")  # fmt: skip
        cursor = con.cursor()
        cursor.execute("create database if not exists EXPR")
        cursor.execute("create schema if not exists EXPR.PARITY")
        request_types = {**snowflake_types, "float": "NUMBER(18,2)"}  # a spine's decimals
        columns = [f"{feature_column(n)} {snowflake_types[t]}" for n, t in FEATURE_TYPES.items()]
        columns += [f"{request_column(n)} {request_types[t]}" for n, t in REQUEST_TYPES.items()]
        cursor.execute(f"create or replace table t (id integer, {', '.join(columns)})")
        marks = ", ".join(["%s"] * (1 + len(FEATURE_TYPES) + len(REQUEST_TYPES)))
        cursor.executemany(f"insert into t values ({marks})",
                           [[i, *row["features"].values(), *row["request"].values()]
                            for i, row in enumerate(rows)])  # fmt: skip

        def execute(sql: str) -> list[tuple[Any, ...]]:
            cursor.execute(sql)
            return list(cursor.fetchall())

        actual = run_sql(execute, cases, "snowflake", batch=50)
        con.close()
    # fakesnow's Arrow encoding turns a null timestamp into the epoch (no row holds it)
    epoch = "1970-01-01T00:00:00Z"
    actual = [[None if value == epoch else value for value in values] for values in actual]
    assert mismatches(cases, actual, "snowflake") == []
