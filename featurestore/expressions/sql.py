""":func:`to_sql`: an expression as one SQL expression for DuckDB or Snowflake, with the
same value as :func:`~featurestore.expressions.compile_python` gives.

Every column and literal is cast to its declared type (so a request column loaded as a
decimal still computes as a double, an integer literal is 64-bit on DuckDB), every
operation is parenthesized (so no precedence or ``--`` comment depends on the warehouse),
``/`` divides doubles with ``NULLIF(divisor, 0)`` (null for a zero divisor, not an error
or an infinity), integers read as doubles are cast explicitly, strings are escaped for the
dialect (Snowflake also reads backslash escapes), and a ``float`` result that is not finite
becomes null. Integer arithmetic stays integer (``BIGINT`` on DuckDB, which raises an
error beyond 64 bits; ``NUMBER(38,0)`` on Snowflake).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from featurestore.expressions.checking import (
    Type,
    Typed,
    TypedBinary,
    TypedCase,
    TypedCoalesce,
    TypedColumn,
    TypedLiteral,
    TypedUnary,
)
from featurestore.expressions.expression import Expression

__all__ = ["Dialect", "to_sql"]

Dialect = Literal["duckdb", "snowflake"]


@dataclass(frozen=True)
class _Spelling:
    """How a dialect spells the types (and string escapes) the expressions need."""

    types: dict[str, str]
    backslash_escapes: bool  # string literals read backslash escapes


_DIALECTS: Final[dict[str, _Spelling]] = {
    # https://duckdb.org/docs/sql/data_types/overview
    "duckdb": _Spelling(
        {
            "int": "BIGINT",
            "float": "DOUBLE",
            "bool": "BOOLEAN",
            "string": "VARCHAR",
            "timestamp": "TIMESTAMP",
        },
        backslash_escapes=False,
    ),
    # https://docs.snowflake.com/en/sql-reference/intro-summary-data-types
    # https://docs.snowflake.com/en/sql-reference/data-types-text#escape-sequences-in-single-quoted-string-constants
    "snowflake": _Spelling(
        {
            "int": "NUMBER(38,0)",
            "float": "FLOAT",
            "bool": "BOOLEAN",
            "string": "VARCHAR",
            "timestamp": "TIMESTAMP_NTZ",
        },
        backslash_escapes=True,
    ),
}


def to_sql(
    expression: Expression,
    *,
    dialect: Dialect,
    feature_column: Callable[[str], str],
    request_column: Callable[[str], str],
) -> str:
    """A SQL expression of ``dialect`` computing ``expression`` row by row;
    ``feature_column(name)`` and ``request_column(name)`` return the (quoted) column
    references of a stored feature and a request field. Its value equals
    :func:`~featurestore.expressions.compile_python`'s (timestamps as the warehouse's
    ``TIMESTAMP``/``TIMESTAMP_NTZ``, UTC)."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r} (duckdb or snowflake)")
    writer = _Writer(_DIALECTS[dialect], feature_column, request_column)
    sql = writer.write(expression.tree)
    if expression.value_type == "float":  # inf and NaN (greater than any number) -> null
        infinity = f"CAST('inf' AS {writer.spelling.types['float']})"
        sql = f"CASE WHEN ABS({sql}) < {infinity} THEN {sql} END"
    return sql


@dataclass(frozen=True)
class _Writer:
    spelling: _Spelling
    feature_column: Callable[[str], str]
    request_column: Callable[[str], str]

    def cast(self, sql: str, value_type: str) -> str:
        return f"CAST({sql} AS {self.spelling.types[value_type]})"

    def write(self, node: Typed) -> str:
        if isinstance(node, TypedLiteral):
            return self.literal(node)
        if isinstance(node, TypedColumn):
            column = self.feature_column if node.source == "feature" else self.request_column
            return self.cast(column(node.name), node.value_type)
        if isinstance(node, TypedUnary):
            return f"({'-' if node.op == '-' else 'NOT '}{self.write(node.operand)})"
        if isinstance(node, TypedBinary):
            return self.binary(node)
        if isinstance(node, TypedCoalesce):
            args = ", ".join(self.write_as(arg, node.value_type) for arg in node.args)
            return f"COALESCE({args})"
        return self.case(node)

    def write_as(self, node: Typed, value_type: Type) -> str:
        """``node``, cast to a double when an integer is read as a ``float``."""
        sql = self.write(node)
        return (
            self.cast(sql, "float") if value_type == "float" and node.value_type == "int" else sql
        )

    def literal(self, node: TypedLiteral) -> str:
        if node.value_type == "null":
            return "NULL"
        if node.value_type == "bool":
            return "TRUE" if node.value else "FALSE"
        if node.value_type == "string":
            assert isinstance(node.value, str)
            text = node.value.replace("'", "''")
            if self.spelling.backslash_escapes:
                text = text.replace("\\", "\\\\")
            return f"'{text}'"
        return self.cast(node.text, node.value_type)  # digits only (syntax.tokenize)

    def binary(self, node: TypedBinary) -> str:
        left = self.write_as(node.left, node.operand_type)
        right = self.write_as(node.right, node.operand_type)
        if node.op == "/":
            float_left = left if node.left.value_type == "float" else self.cast(left, "float")
            float_right = right if node.right.value_type == "float" else self.cast(right, "float")
            return f"({float_left} / NULLIF({float_right}, 0))"
        op = {"and": "AND", "or": "OR", "!=": "<>"}.get(node.op, node.op)
        return f"({left} {op} {right})"

    def case(self, node: TypedCase) -> str:
        parts = ["CASE"]
        for condition, value in node.whens:
            parts += ["WHEN", self.write(condition), "THEN", self.write_as(value, node.value_type)]
        if node.otherwise is not None:
            parts += ["ELSE", self.write_as(node.otherwise, node.value_type)]
        parts.append("END")
        return " ".join(parts)
