"""Random well-typed expressions of the request-time expression language and random input
rows, seeded, for the parity tests (tests/core/test_expressions.py).

The text is rendered with the fewest parentheses the documented precedence allows (``or <
and < not < comparison < + - < * / < unary -``, binary operators left-associative,
comparisons not chaining), plus some redundant ones, keywords in random case: a parser
with a wrong precedence reads another tree and the values differ from the reference's.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

OR, AND, NOT, COMPARISON, ADDITIVE, MULTIPLICATIVE, NEGATION, ATOM = range(1, 9)

#: the stored features and request fields of the generated expressions (``x`` is both, of
#: different types: a mixed-up source changes the type or the value)
FEATURE_TYPES = {"f_int": "int", "f_int2": "int", "f_float": "float", "f_float2": "float",
                 "f_bool": "bool", "f_str": "string", "f_ts": "timestamp", "x": "int"}  # fmt: skip
REQUEST_TYPES = {"r_int": "int", "r_float": "float", "r_bool": "bool", "r_str": "string",
                 "r_ts": "timestamp", "x": "float"}  # fmt: skip

INTS = [-3, -1, 0, 0, 1, 2, 5]
FLOATS = [-2.5, -1.0, -0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 2.0, 3.75]
STRINGS = ["", "a", "b", "A", "it's", "é", "a\\b", "--", "a;b"]
TIMESTAMPS = [dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 0, 1),
              dt.datetime(2025, 12, 31, 23, 59, 59)]  # fmt: skip
INT_LITERALS = ["0", "1", "2", "3", "7", "10"]
FLOAT_LITERALS = ["0.0", "0.5", "1.25", "2.0", "3.0", "10.5", "0.1"]
STRING_LITERALS = ["''", "'a'", "'b'", "'A'", "'it''s'", "'é'", "'a\\b'", "'--'", "'a;b'"]
NUMERIC = ("int", "float")


@dataclass(frozen=True)
class Rendered:
    text: str
    level: int


class ExpressionGenerator:
    """``expression(value_type, depth)``: a text whose type is ``value_type`` or narrower
    (``int`` where ``float`` is asked, ``null`` anywhere); ``used`` counts the constructs."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.used: Counter[str] = Counter()

    def keyword(self, word: str) -> str:
        return self.rng.choice([word, word.upper(), word.capitalize()])

    def wrap(self, item: Rendered, below: int) -> str:
        """The text of ``item``, parenthesized if its level is below ``below`` (and now and
        then anyway)."""
        if item.level < below or self.rng.random() < 0.08:
            return f"({item.text})"
        return item.text

    def expression(self, value_type: str, depth: int) -> Rendered:
        if depth <= 0 or self.rng.random() < 0.2:
            return self.leaf(value_type)
        makers = {
            "int": [self.arithmetic, self.negation, self.coalesce, self.case],
            "float": [self.arithmetic, self.division, self.negation, self.coalesce, self.case],
            "bool": [self.comparison, self.logic, self.logic, self.negation_of_bool,
                     self.coalesce, self.case],
            "string": [self.coalesce, self.case],
            "timestamp": [self.coalesce, self.case],
        }  # fmt: skip
        return self.rng.choice(makers[value_type])(value_type, depth - 1)

    def leaf(self, value_type: str) -> Rendered:
        roll = self.rng.random()
        if roll < 0.07:
            self.used["null"] += 1
            return Rendered(self.keyword("null"), ATOM)
        if roll < 0.5 or value_type == "timestamp":
            source = self.rng.choice(["feature", "request"])
            names = FEATURE_TYPES if source == "feature" else REQUEST_TYPES
            wanted = NUMERIC if value_type == "float" else (value_type,)
            choices = [name for name, kind in names.items() if kind in wanted]
            self.used[f"{source} {value_type}"] += 1
            name = self.rng.choice(choices)
            return Rendered(name if source == "feature" else f"request.{name}", ATOM)
        self.used[f"literal {value_type}"] += 1
        literal = {
            "int": lambda: self.rng.choice(INT_LITERALS),
            "float": lambda: self.rng.choice(FLOAT_LITERALS + INT_LITERALS),
            "bool": lambda: self.keyword(self.rng.choice(["true", "false"])),
            "string": lambda: self.rng.choice(STRING_LITERALS),
        }[value_type]()
        return Rendered(literal, ATOM)

    def binary(self, left: Rendered, op: str, right: Rendered, level: int) -> Rendered:
        """``left op right`` for a left-associative operator of ``level``."""
        self.used[op.lower()] += 1
        left_text = self.wrap(left, level + 1 if level == COMPARISON else level)
        return Rendered(f"{left_text} {op} {self.wrap(right, level + 1)}", level)

    def arithmetic(self, value_type: str, depth: int) -> Rendered:
        op = self.rng.choice(["+", "-", "*"])
        level = MULTIPLICATIVE if op == "*" else ADDITIVE
        return self.binary(self.expression(value_type, depth), op,
                           self.expression(value_type, depth), level)  # fmt: skip

    def division(self, value_type: str, depth: int) -> Rendered:
        kinds = [self.rng.choice(NUMERIC) for _ in range(2)]
        return self.binary(self.expression(kinds[0], depth), "/",
                           self.expression(kinds[1], depth), MULTIPLICATIVE)  # fmt: skip

    def negation(self, value_type: str, depth: int) -> Rendered:
        self.used["unary -"] += 1
        operand = self.wrap(self.expression(value_type, depth), NEGATION)
        return Rendered(("- " if operand.startswith("-") else "-") + operand, NEGATION)

    def comparison(self, value_type: str, depth: int) -> Rendered:
        family = self.rng.choice(["int", "float", "float", "string", "timestamp", "bool"])
        op = self.rng.choice(["=", "!=", "<>", "<", "<=", ">", ">="])
        return self.binary(self.expression(family, depth), op,
                           self.expression(family, depth), COMPARISON)  # fmt: skip

    def logic(self, value_type: str, depth: int) -> Rendered:
        op = self.rng.choice(["and", "or"])
        return self.binary(self.expression("bool", depth), self.keyword(op),
                           self.expression("bool", depth), AND if op == "and" else OR)  # fmt: skip

    def negation_of_bool(self, value_type: str, depth: int) -> Rendered:
        self.used["not"] += 1
        operand = self.wrap(self.expression("bool", depth), NOT)
        return Rendered(f"{self.keyword('not')} {operand}", NOT)

    def coalesce(self, value_type: str, depth: int) -> Rendered:
        self.used["coalesce"] += 1
        args = [self.expression(value_type, depth).text for _ in range(self.rng.randint(2, 3))]
        return Rendered(f"{self.keyword('coalesce')}({', '.join(args)})", ATOM)

    def case(self, value_type: str, depth: int) -> Rendered:
        self.used["case"] += 1
        parts = [self.keyword("case")]
        for _ in range(self.rng.randint(1, 2)):
            parts += [self.keyword("when"), self.expression("bool", depth).text,
                      self.keyword("then"), self.expression(value_type, depth).text]  # fmt: skip
        if self.rng.random() < 0.7:
            self.used["else"] += 1
            parts += [self.keyword("else"), self.expression(value_type, depth).text]
        parts.append(self.keyword("end"))
        return Rendered(" ".join(parts), ATOM)


def random_rows(seed: int, count: int) -> list[dict[str, dict[str, Any]]]:
    """``count`` rows ``{"features": {...}, "request": {...}}``, a quarter of the values
    null, the rest from small sets (zeros, negatives, ties)."""
    rng = random.Random(seed)
    pools: dict[str, list[Any]] = {"int": INTS, "float": FLOATS, "bool": [True, False],
                                   "string": STRINGS, "timestamp": TIMESTAMPS}  # fmt: skip

    def values(types: dict[str, str]) -> dict[str, Any]:
        return {name: None if rng.random() < 0.25 else rng.choice(pools[kind])
                for name, kind in types.items()}  # fmt: skip

    return [{"features": values(FEATURE_TYPES), "request": values(REQUEST_TYPES)}
            for _ in range(count)]  # fmt: skip
