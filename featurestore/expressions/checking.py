"""Name resolution and type checking: a syntax tree (:mod:`.syntax`) becomes a typed tree
(:class:`Typed` nodes) or an :class:`ExpressionError` naming the position.

Types are the registry's value types (``int``, ``float``, ``bool``, ``string``,
``timestamp``) plus ``null``, the type of the literal ``null`` until its context decides.
Rules: ``+ - *`` take numbers, ``int`` with ``int`` stays ``int``, any ``float`` gives
``float``; ``/`` always gives ``float``; unary ``-`` keeps its number type; a comparison takes
two numbers or two values of one type and gives ``bool``; ``and``, ``or``, ``not`` take
``bool``; ``coalesce`` arguments and ``case`` values unify (``int`` with ``float`` is
``float``; ``null`` takes the other type); ``case`` conditions are ``bool``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from featurestore.data_types import ValueType
from featurestore.expressions.errors import ExpressionError
from featurestore.expressions.syntax import (
    COMPARISONS,
    Binary,
    Case,
    Coalesce,
    FeatureName,
    Node,
    RequestField,
    SyntaxLiteral,
    Unary,
)
from featurestore.suggestions import did_you_mean

__all__ = [
    "Type",
    "Typed",
    "TypedBinary",
    "TypedCase",
    "TypedCoalesce",
    "TypedColumn",
    "TypedLiteral",
    "TypedUnary",
    "check",
]

Type = Literal["int", "float", "bool", "string", "timestamp", "null"]
_NUMBERS: Final = frozenset({"int", "float"})
_NAMES: Final[dict[str, str]] = {
    "int": "an integer", "float": "a number", "bool": "a boolean", "string": "a string",
    "timestamp": "a timestamp", "null": "null",
}  # fmt: skip


@dataclass(frozen=True)
class TypedLiteral:
    value_type: Type
    value: int | float | str | bool | None
    text: str


@dataclass(frozen=True)
class TypedColumn:
    value_type: ValueType
    source: Literal["feature", "request"]
    name: str


@dataclass(frozen=True)
class TypedUnary:
    value_type: Type
    op: Literal["-", "not"]
    operand: Typed


@dataclass(frozen=True)
class TypedBinary:
    """``operand_type``: the type both operands are read as (``float`` for ``int`` with
    ``float`` and for ``/``; ``null`` when both are the null literal)."""

    value_type: Type
    op: str
    operand_type: Type
    left: Typed
    right: Typed


@dataclass(frozen=True)
class TypedCoalesce:
    value_type: Type
    args: tuple[Typed, ...]


@dataclass(frozen=True)
class TypedCase:
    value_type: Type
    whens: tuple[tuple[Typed, Typed], ...]
    otherwise: Typed | None


Typed: TypeAlias = TypedLiteral | TypedColumn | TypedUnary | TypedBinary | TypedCoalesce | TypedCase


def describe(value_type: Type) -> str:
    """``an integer``, ``a number``, ... (for messages)."""
    return _NAMES[value_type]


@dataclass
class _Checker:
    text: str
    feature_types: Mapping[str, ValueType]
    request_types: Mapping[str, ValueType]

    def fail(self, problem: str, position: int) -> ExpressionError:
        return ExpressionError(problem, text=self.text, position=position)

    def check(self, node: Node) -> Typed:
        if isinstance(node, SyntaxLiteral):
            return TypedLiteral(node.kind, node.value, node.text)
        if isinstance(node, FeatureName):
            if node.name not in self.feature_types:
                hint = did_you_mean(node.name, self.feature_types)
                if node.name in self.request_types:  # an exact name beats a close one
                    hint = f" (did you mean 'request.{node.name}'?)"
                raise self.fail(f"unknown feature {node.name!r}{hint}", node.position)
            return TypedColumn(self.feature_types[node.name], "feature", node.name)
        if isinstance(node, RequestField):
            if node.name not in self.request_types:
                known = ", ".join(sorted(self.request_types)) or "none"
                hint = did_you_mean(node.name, self.request_types)
                raise self.fail(f"unknown request field {node.name!r}{hint} (declared: "
                                f"{known})", node.position)  # fmt: skip
            return TypedColumn(self.request_types[node.name], "request", node.name)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Coalesce):
            args = tuple(self.check(arg) for arg in node.args)
            value_type = self.unify([arg.value_type for arg in args], node.args, "coalesce")
            return TypedCoalesce(value_type, args)
        return self.case(node)

    def unary(self, node: Unary) -> TypedUnary:
        operand = self.check(node.operand)
        wanted = _NUMBERS if node.op == "-" else frozenset({"bool"})
        if operand.value_type not in wanted | {"null"}:
            need = "a number" if node.op == "-" else "a boolean"
            raise self.fail(f"'{node.op}' needs {need}, not {describe(operand.value_type)}",
                            node.position)  # fmt: skip
        value_type: Type = operand.value_type if node.op == "-" else "bool"
        return TypedUnary(value_type, node.op, operand)

    def binary(self, node: Binary) -> TypedBinary:
        left, right = self.check(node.left), self.check(node.right)
        types = (left.value_type, right.value_type)
        known = [t for t in types if t != "null"]
        shown = f"{describe(types[0])} {node.op} {describe(types[1])}"
        if node.op in {"and", "or"}:
            if any(t != "bool" for t in known):
                raise self.fail(f"'{node.op}' needs booleans, not {shown}", node.position)
            return TypedBinary("bool", node.op, "bool", left, right)
        if node.op in COMPARISONS:
            if all(t in _NUMBERS for t in known):
                operand: Type = "float" if "float" in known else (known[0] if known else "null")
            elif len(set(known)) == 1:
                operand = known[0]
            else:
                raise self.fail(f"cannot compare {shown}", node.position)
            return TypedBinary("bool", node.op, operand, left, right)
        if any(t not in _NUMBERS for t in known):
            raise self.fail(f"'{node.op}' needs numbers, not {shown}", node.position)
        if node.op == "/":
            return TypedBinary("float", "/", "float", left, right)
        result: Type = "float" if "float" in known else ("int" if known else "null")
        return TypedBinary(result, node.op, result, left, right)

    def case(self, node: Case) -> TypedCase:
        whens = []
        for condition, value in node.whens:
            typed_condition = self.check(condition)
            if typed_condition.value_type not in {"bool", "null"}:
                raise self.fail(
                    f"a 'when' condition must be a boolean, not "
                    f"{describe(typed_condition.value_type)}", _position(condition)
                )  # fmt: skip
            whens.append((typed_condition, self.check(value)))
        otherwise = None if node.otherwise is None else self.check(node.otherwise)
        values = [value for _, value in whens] + ([otherwise] if otherwise else [])
        sources = [value for _, value in node.whens] + ([node.otherwise] if node.otherwise else [])
        value_type = self.unify([value.value_type for value in values], sources, "case")
        return TypedCase(value_type, tuple(whens), otherwise)

    def unify(self, types: list[Type], nodes: tuple[Node, ...] | list[Node], what: str) -> Type:
        """The one type of ``types`` (the values of a coalesce or a case)."""
        result: Type = "null"
        for value_type, node in zip(types, nodes, strict=True):
            if value_type == "null" or value_type == result:
                continue
            if result == "null":
                result = value_type
            elif {result, value_type} == _NUMBERS:
                result = "float"
            else:
                raise self.fail(f"{what} mixes {describe(result)} and {describe(value_type)}",
                                _position(node))  # fmt: skip
        return result


def _position(node: Node) -> int:
    """Where a node starts in the text (a binary operation: its left operand)."""
    while isinstance(node, Binary):
        node = node.left
    return node.position


def check(
    node: Node,
    *,
    text: str,
    feature_types: Mapping[str, ValueType],
    request_types: Mapping[str, ValueType],
) -> Typed:
    """The typed tree of ``node``, names resolved against the feature and request types."""
    return _Checker(text, feature_types, request_types).check(node)
