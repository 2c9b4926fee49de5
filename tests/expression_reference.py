"""Brute-force reference of the request-time expression language (README: "Request-time
features: the expression language"), for parity tests.

No code shared with ``featurestore/expressions/``: the text is parsed by sqlglot (the
language is a subset of SQL with SQL's precedence) and the tree walked here, every rule
written from the README, not from the compiler:

* a value is a ``(type, value)`` pair; the type is structural (from the children's types),
  ``null`` for the literal ``null``; ``int`` op ``int`` is ``int`` for ``+ - *``, any
  ``float`` makes ``float``; ``/`` is ``float``; comparisons, ``and``, ``or``, ``not`` are
  ``bool``; ``coalesce`` and ``case`` take the common type (``int`` and ``float``: ``float``).
* null in, null out for arithmetic, negation and comparisons; ``and``/``or``/``not`` follow
  Kleene's truth tables; ``x / 0`` is null; an ``int`` compared with a ``float`` is compared
  as floats; ``case`` picks the first ``when`` that is true; ``coalesce`` the first non-null.
* an integer outside the signed 64-bit range raises :class:`Overflow` (the parity tests
  skip such expressions: DuckDB raises an error there, serving gives null); a final float
  that is not finite is null; a timestamp result is ISO 8601 UTC with ``Z``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import sqlglot
from sqlglot import exp

Value = tuple[str, Any]  # (type, value)

#: Kleene's three-valued logic, None for unknown
AND = {(a, b): (False if False in (a, b) else None if None in (a, b) else True)
       for a in (True, False, None) for b in (True, False, None)}  # fmt: skip
OR = {(a, b): (True if True in (a, b) else None if None in (a, b) else False)
      for a in (True, False, None) for b in (True, False, None)}  # fmt: skip
NOT = {True: False, False: True, None: None}


class Overflow(ArithmeticError):
    """An integer beyond 64 bits (DuckDB raises an error; serving gives null)."""


@cache
def _tree(text: str) -> exp.Expression:
    tree = sqlglot.parse_one(text, read="duckdb")
    assert isinstance(tree, exp.Expression), text
    return tree


def reference_value(
    text: str,
    *,
    feature_types: Mapping[str, str],
    request_types: Mapping[str, str],
    features: Mapping[str, Any],
    request: Mapping[str, Any],
) -> Any:
    """The value of ``text`` for one row of feature and request values (Python values:
    int, float, bool, str, naive UTC datetime or None)."""
    walker = _Walker(feature_types, request_types, features, request)
    value_type, value = walker.walk(_tree(text))
    if value is None:
        return None
    if value_type == "float":
        return value if math.isfinite(value) else None
    if value_type == "timestamp":
        return value.isoformat() + "Z"
    return value


def reference_type(
    text: str, *, feature_types: Mapping[str, str], request_types: Mapping[str, str]
) -> str:
    """The static type of ``text`` (evaluated on all-null inputs: types are structural)."""
    return _Walker(feature_types, request_types, {}, {}).walk(_tree(text))[0]


def _common(types: list[str]) -> str:
    known = {t for t in types if t != "null"}
    if not known:
        return "null"
    if known == {"int", "float"}:
        return "float"
    assert len(known) == 1, f"no common type of {types}"
    return known.pop()


def _widen(value: Value, to: str) -> Any:
    """The value read as type ``to`` (an int as a float)."""
    if to == "float" and value[0] == "int" and value[1] is not None:
        return float(value[1])
    return value[1]


def _checked(number: int) -> int:
    if not -(2**63) <= number < 2**63:
        raise Overflow(number)
    return number


class _Walker:
    def __init__(
        self,
        feature_types: Mapping[str, str],
        request_types: Mapping[str, str],
        features: Mapping[str, Any],
        request: Mapping[str, Any],
    ):
        self.feature_types = feature_types
        self.request_types = request_types
        self.features = features
        self.request = request

    def walk(self, node: exp.Expression) -> Value:
        if isinstance(node, exp.Paren):
            return self.walk(node.this)
        if isinstance(node, exp.Null):
            return ("null", None)
        if isinstance(node, exp.Boolean):
            return ("bool", bool(node.this))
        if isinstance(node, exp.Literal):
            if node.is_string:
                return ("string", node.this)
            return ("float", float(node.this)) if "." in node.this else ("int", int(node.this))
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Neg):
            value_type, value = self.walk(node.this)
            if value is None:
                return (value_type, None)
            return (value_type, _checked(-value) if value_type == "int" else -value)
        if isinstance(node, exp.Not):
            return ("bool", NOT[self.walk(node.this)[1]])
        if isinstance(node, exp.And | exp.Or):
            table = AND if isinstance(node, exp.And) else OR
            return ("bool", table[(self.walk(node.this)[1], self.walk(node.expression)[1])])
        if isinstance(node, exp.Coalesce):
            args = [self.walk(arg) for arg in [node.this, *node.expressions]]
            common = _common([t for t, _ in args])
            chosen = next((arg for arg in args if arg[1] is not None), (common, None))
            return (common, _widen(chosen, common))
        if isinstance(node, exp.Case):
            return self.case(node)
        if isinstance(node, exp.Binary):
            return self.binary(node)
        raise AssertionError(f"not in the language: {node.sql()}")

    def column(self, node: exp.Column) -> Value:
        if node.table == "request":
            value_type, value = self.request_types[node.name], self.request.get(node.name)
        else:
            assert not node.table, node.sql()
            value_type, value = self.feature_types[node.name], self.features.get(node.name)
        if value_type == "float" and value is not None:
            value = float(value)
            if not math.isfinite(value):
                value = None
        if value_type == "timestamp" and isinstance(value, dt.datetime) and value.tzinfo:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return (value_type, value)

    def case(self, node: exp.Case) -> Value:
        branches = [self.walk(branch.args["true"]) for branch in node.args["ifs"]]
        default = node.args.get("default")
        otherwise = self.walk(default) if default is not None else ("null", None)
        common = _common([t for t, _ in [*branches, otherwise]])
        for branch, value in zip(node.args["ifs"], branches, strict=True):
            if self.walk(branch.this)[1] is True:
                return (common, _widen(value, common))
        return (common, _widen(otherwise, common))

    def binary(self, node: exp.Binary) -> Value:
        left, right = self.walk(node.this), self.walk(node.expression)
        numeric = {left[0], right[0]} <= {"int", "float", "null"}
        if isinstance(node, exp.Div):
            a, b = _widen(left, "float"), _widen(right, "float")
            return ("float", None if a is None or b is None or b == 0 else a / b)
        comparisons = {exp.EQ: "eq", exp.NEQ: "ne", exp.LT: "lt", exp.LTE: "le",
                       exp.GT: "gt", exp.GTE: "ge"}  # fmt: skip
        if type(node) in comparisons:
            common = "float" if numeric and "float" in (left[0], right[0]) else "any"
            a, b = _widen(left, common), _widen(right, common)
            if a is None or b is None:
                return ("bool", None)
            return ("bool", getattr(a, f"__{comparisons[type(node)]}__")(b))
        assert numeric, node.sql()
        common = _common([left[0], right[0]])
        if common == "null":
            return ("null", None)
        a, b = _widen(left, common), _widen(right, common)
        if a is None or b is None:
            return (common, None)
        if isinstance(node, exp.Add):
            result = a + b
        elif isinstance(node, exp.Sub):
            result = a - b
        else:
            assert isinstance(node, exp.Mul), node.sql()
            result = a * b
        return (common, _checked(result) if common == "int" else result)
