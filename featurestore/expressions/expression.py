"""A parsed, type-checked expression (:class:`Expression`) and :func:`parse_expression`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

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
    whose value is always null."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression is text, not {type(text).__name__}")
    tree = check(parse_syntax(text), text=text, feature_types=feature_types,
                 request_types=request_types)  # fmt: skip
    if tree.value_type == "null":
        raise ExpressionError("the expression is always null", text=text, position=0)
    features: dict[str, None] = {}
    request_fields: dict[str, None] = {}
    for column in _columns(tree):
        (features if column.source == "feature" else request_fields)[column.name] = None
    return Expression(text, tree.value_type, tuple(features), tuple(request_fields), tree)


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
