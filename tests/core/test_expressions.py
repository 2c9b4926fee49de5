"""The expression language of request-time features (featurestore/expressions/): parse and
type errors with positions, the documented null and division rules, compile-once, and (below)
parity of compile_python, an independent reference interpreter and DuckDB/Snowflake SQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pytest

import featurestore.expressions.syntax as syntax_module
from featurestore.data_types import ValueType
from featurestore.expressions import (
    Expression,
    ExpressionError,
    compile_python,
    parse_expression,
    to_sql,
)

FEATURES: dict[str, ValueType] = {
    "avg_order_value_90d": "float",
    "user_7d_transaction_count": "int",
    "device_seen_before": "bool",
    "country": "string",
    "last_login_at": "timestamp",
}
REQUEST: dict[str, ValueType] = {"amount": "float", "quantity": "int", "now": "timestamp"}


def parse(text: str) -> Expression:
    return parse_expression(text, feature_types=FEATURES, request_types=REQUEST)


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
]


@pytest.mark.parametrize(("text", "problem", "position"), ERRORS)
def test_a_bad_expression_is_refused_naming_the_problem_and_its_position(
    text: str, problem: str, position: int
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert problem in caught.value.problem
    assert caught.value.position == position - 1
    assert str(caught.value) == f"{caught.value.problem} at position {position} of {text!r}"


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
    known = [v for v in (left, right) if v is not None]
    conj = False if False in (left, right) else (None if None in (left, right) else True)
    disj = True if True in (left, right) else (None if None in (left, right) else False)
    assert evaluate(f"{values[left]} and {values[right]}") is conj
    assert evaluate(f"{values[left]} or {values[right]}") is disj
    assert evaluate(f"not {values[left]}") is (None if left is None else not left)
    assert len(known) <= 2


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
    assert duckdb.sql(f"select {duck}").fetchall() == [(compile_python(expression)({}, {}),)]
    snow = to_sql(expression, dialect="snowflake", feature_column=quoted, request_column=quoted)
    assert snow.count("\\") == 2 * duck.count("\\")


def test_to_sql_refuses_an_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'postgres'"):
        to_sql(parse("1"), dialect="postgres", feature_column=quoted,  # type: ignore[arg-type]
               request_column=quoted)  # fmt: skip
