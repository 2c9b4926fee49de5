""":func:`compile_python`: an expression as a Python function of (feature values, request
values), built once from the typed tree as nested closures (no parsing per call).

Semantics (SQL's): null in, null out for arithmetic and comparisons; ``and``/``or`` are
three-valued (``false and null`` is false, ``true or null`` is true, else null wins);
``case`` takes the first ``when`` whose condition is true (null is not true); ``coalesce``
the first non-null argument. ``/`` divides as floats and gives null for a zero divisor. An
integer result outside the signed 64-bit range is null. A NaN or infinite input number is
null, and so is a non-finite result. Results are JSON values: ``int``, ``float``, ``bool``,
``str``, timestamps as ISO 8601 UTC strings with ``Z`` (``2026-05-01T00:00:00Z``), or
``None``.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from featurestore.data_types import ValueType
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
from featurestore.expressions.errors import ExpressionError
from featurestore.expressions.expression import Expression

__all__ = ["Evaluator", "compile_python"]

#: (feature values, request values) -> value (``None`` for null)
Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_ARITHMETIC: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
}  # fmt: skip


def compile_python(expression: Expression) -> Evaluator:
    """A function ``(feature values, request values) -> value`` computing ``expression``
    with SQL null semantics (see the module docstring); a name missing from its mapping is
    null. Compiled once: a call walks prepared closures and never parses. A call raises
    :class:`ExpressionError` if an input value has the wrong type for its declared value
    type (an ``int`` is accepted for a ``float``; a timestamp may be a ``datetime``, naive
    UTC or aware, or an ISO 8601 string)."""
    evaluate = _compile(expression.tree)
    finish = _finisher(expression.value_type)

    def run(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        return finish(evaluate(features, request))

    return run


def _finisher(value_type: ValueType) -> Callable[[Any], Any]:
    if value_type == "float":
        return lambda value: value if value is None or math.isfinite(value) else None
    if value_type == "timestamp":
        return lambda value: None if value is None else value.isoformat() + "Z"
    return lambda value: value


def _compile(node: Typed) -> Evaluator:
    if isinstance(node, TypedLiteral):
        constant = node.value
        return lambda features, request: constant
    if isinstance(node, TypedColumn):
        return _column(node)
    if isinstance(node, TypedUnary):
        return _unary(node)
    if isinstance(node, TypedBinary):
        return _binary(node)
    if isinstance(node, TypedCoalesce):
        return _coalesce(node)
    return _case(node)


def _as(node: Typed, value_type: Type) -> Evaluator:
    """``node`` compiled, its integers read as floats when ``value_type`` is ``float``."""
    evaluate = _compile(node)
    if value_type != "float" or node.value_type != "int":
        return evaluate

    def as_float(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        value = evaluate(features, request)
        return None if value is None else float(value)

    return as_float


def _column(node: TypedColumn) -> Evaluator:
    convert = _READERS[node.value_type]
    name, what = node.name, f"{node.source} {'field' if node.source == 'request' else ''}"
    label = f"{what.strip()} {name!r}"
    if node.source == "feature":

        def feature(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
            value = features.get(name)
            return None if value is None else convert(value, label)

        return feature

    def request_field(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        value = request.get(name)
        return None if value is None else convert(value, label)

    return request_field


def _read_int(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExpressionError(f"{label} is {value!r}, not an integer")
    return int(value)


def _read_float(value: Any, label: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"{label} is {value!r}, not a number")
    number = float(value)
    return number if math.isfinite(number) else None


def _read_bool(value: Any, label: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{label} is {value!r}, not a boolean")
    return value


def _read_string(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{label} is {value!r}, not a string")
    return value


def _read_timestamp(value: Any, label: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ExpressionError(f"{label} is {value!r}, not an ISO 8601 timestamp") from None
    if not isinstance(value, dt.datetime):
        raise ExpressionError(f"{label} is {value!r}, not a timestamp")
    moment: dt.datetime = value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


_READERS: Final[dict[str, Callable[[Any, str], Any]]] = {
    "int": _read_int, "float": _read_float, "bool": _read_bool, "string": _read_string,
    "timestamp": _read_timestamp,
}  # fmt: skip


def _int64(value: int) -> int | None:
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _unary(node: TypedUnary) -> Evaluator:
    operand = _compile(node.operand)
    if node.op == "not":

        def negation(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
            value = operand(features, request)
            return None if value is None else not value

        return negation
    checked = _int64 if node.value_type == "int" else (lambda value: value)

    def minus(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        value = operand(features, request)
        return None if value is None else checked(-value)

    return minus


def _binary(node: TypedBinary) -> Evaluator:
    left, right = _as(node.left, node.operand_type), _as(node.right, node.operand_type)
    if node.op in ("and", "or"):
        # three-valued: one operand equal to ``decides`` (and: false, or: true) decides,
        # else null wins, else the other value
        decides = node.op == "or"

        def logical(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
            a = left(features, request)
            if a is decides:
                return decides
            b = right(features, request)
            if b is decides:
                return decides
            return None if a is None or b is None else not decides

        return logical
    if node.op == "/":

        def division(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
            a, b = left(features, request), right(features, request)
            if a is None or b is None or b == 0:
                return None
            return float(a) / float(b)

        return division
    apply = _COMPARE.get(node.op) or _ARITHMETIC[node.op]
    checked = _int64 if node.value_type == "int" else None

    def operation(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        a = left(features, request)
        if a is None:
            return None
        b = right(features, request)
        if b is None:
            return None
        return apply(a, b) if checked is None else checked(apply(a, b))

    return operation


def _coalesce(node: TypedCoalesce) -> Evaluator:
    args = tuple(_as(arg, node.value_type) for arg in node.args)

    def coalesce(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        for arg in args:
            value = arg(features, request)
            if value is not None:
                return value
        return None

    return coalesce


def _case(node: TypedCase) -> Evaluator:
    whens = tuple((_compile(c), _as(v, node.value_type)) for c, v in node.whens)
    otherwise = None if node.otherwise is None else _as(node.otherwise, node.value_type)

    def case(features: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        for condition, value in whens:
            if condition(features, request) is True:
                return value(features, request)
        return None if otherwise is None else otherwise(features, request)

    return case
