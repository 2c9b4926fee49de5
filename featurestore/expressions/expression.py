"""A parsed, type-checked expression (:class:`Expression`) and :func:`parse_expression`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, get_args

from featurestore.data_types import ValueType
from featurestore.expressions.checking import (
    Typed,
    TypedBinary,
    TypedCase,
    TypedCoalesce,
    TypedColumn,
    TypedUnary,
    check,
)
from featurestore.expressions.errors import ExpressionError
from featurestore.expressions.syntax import parse_syntax

__all__ = ["Expression", "parse_expression"]

#: the registry's value types, and contract A's first spellings of three of them
_VALUE_TYPES: Final[dict[str, ValueType]] = {
    **{name: name for name in get_args(ValueType)},
    "integer": "int",
    "number": "float",
    "boolean": "bool",
}


@dataclass(frozen=True)
class Expression:
    """A valid expression: its ``text``, the registry type of its value, the stored
    ``features`` and ``request_fields`` it reads (each in the order of first use), and its
    typed ``tree`` (what :func:`~featurestore.expressions.compile_python` and
    :func:`~featurestore.expressions.to_sql` read; not part of equality)."""

    text: str
    value_type: ValueType
    features: tuple[str, ...]
    request_fields: tuple[str, ...]
    tree: Typed = field(repr=False, compare=False)


def parse_expression(
    text: str,
    *,
    feature_types: Mapping[str, ValueType],
    request_types: Mapping[str, ValueType],
) -> Expression:
    """Parse and type-check ``text`` against the stored features' types and the request
    fields' types (registry value types). Raises :class:`ExpressionError` naming the
    position and the problem: a syntax error, an unknown function, feature (with a
    did-you-mean) or request field, a type error such as ``'a' + 1``, or an expression
    whose value is always null. Types are the registry's (``int``, ``float``, ``bool``,
    ``string``, ``timestamp``; ``integer``, ``number`` and ``boolean`` are read as ``int``,
    ``float`` and ``bool``); another type is an :class:`ExpressionError` too."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression is text, not {type(text).__name__}")
    tree = check(parse_syntax(text), text=text,
                 feature_types=_value_types(feature_types, "feature"),
                 request_types=_value_types(request_types, "request field"))  # fmt: skip
    if tree.value_type == "null":
        raise ExpressionError("the expression is always null", text=text, position=0)
    features: dict[str, None] = {}
    request_fields: dict[str, None] = {}
    for column in _columns(tree):
        (features if column.source == "feature" else request_fields)[column.name] = None
    return Expression(text, tree.value_type, tuple(features), tuple(request_fields), tree)


def _value_types(types: Mapping[str, str], what: str) -> dict[str, ValueType]:
    known = {}
    for name, value_type in types.items():
        if value_type not in _VALUE_TYPES:
            raise ExpressionError(
                f"{what} {name!r} has the unknown value type {value_type!r} (one of "
                f"{', '.join(get_args(ValueType))})"
            )
        known[name] = _VALUE_TYPES[value_type]
    return known


def _columns(node: Typed) -> Iterator[TypedColumn]:
    """The column references of ``node`` in source order."""
    if isinstance(node, TypedColumn):
        yield node
    elif isinstance(node, TypedUnary):
        yield from _columns(node.operand)
    elif isinstance(node, TypedBinary):
        yield from _columns(node.left)
        yield from _columns(node.right)
    elif isinstance(node, TypedCoalesce):
        for arg in node.args:
            yield from _columns(arg)
    elif isinstance(node, TypedCase):
        for condition, value in node.whens:
            yield from _columns(condition)
            yield from _columns(value)
        if node.otherwise is not None:
            yield from _columns(node.otherwise)
