"""The expression language's syntax: tokens, the syntax tree and a recursive-descent parser
(:func:`parse_syntax`). Names are not resolved here (see :mod:`.checking`).

Grammar (keywords case-insensitive; names case-sensitive, ASCII letters, digits and ``_``)::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := additive [("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive]
    additive   := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := INTEGER | DECIMAL | STRING | "true" | "false" | "null"
                | NAME                                   (a stored feature)
                | "request" "." NAME                     (a request field)
                | "(" expression ")"
                | "coalesce" "(" expression ("," expression)+ ")"
                | "case" ("when" expression "then" expression)+ ["else" expression] "end"

``INTEGER`` is ``123`` (at most 64 bits), ``DECIMAL`` is ``1.5`` (digits on both sides of
the point, no exponent), ``STRING`` is ``'it''s'`` (a quote doubled inside).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from featurestore.expressions.errors import ExpressionError

__all__ = [
    "BINARY_LEVELS",
    "COMPARISONS",
    "KEYWORDS",
    "Binary",
    "Case",
    "Coalesce",
    "FeatureName",
    "Node",
    "RequestField",
    "SyntaxLiteral",
    "Unary",
    "parse_syntax",
]

#: the binary operators from the loosest to the tightest binding level (``not`` sits between
#: ``and`` and the comparisons, unary ``-`` above ``*``)
BINARY_LEVELS: Final = (("or",), ("and",), ("=", "!=", "<>", "<", "<=", ">", ">="),
                        ("+", "-"), ("*", "/"))  # fmt: skip
COMPARISONS: Final = frozenset(BINARY_LEVELS[2])
KEYWORDS: Final = frozenset(
    {"and", "or", "not", "true", "false", "null", "case", "when", "then", "else", "end",
     "coalesce", "request"}
)  # fmt: skip
#: words a SQL writer may reach for, with what to write instead
_HINTS: Final = {
    "is": "'is' is not in the language (use coalesce(x, ...) to replace a null)",
    "in": "'in' is not in the language (use = with or)",
    "like": "'like' is not in the language",
    "between": "'between' is not in the language (use >= and <=)",
    "select": "queries are not in the language",
    "from": "queries are not in the language",
}
_QUERY_WORDS: Final = frozenset({"select", "with", "from", "union", "insert", "delete", "drop"})

LiteralKind = Literal["int", "float", "string", "bool", "null"]
_INT64: Final = 2**63


@dataclass(frozen=True)
class SyntaxLiteral:
    position: int
    kind: LiteralKind
    value: int | float | str | bool | None
    text: str  # the literal as written (decimals keep their digits for SQL)


@dataclass(frozen=True)
class FeatureName:
    position: int
    name: str


@dataclass(frozen=True)
class RequestField:
    position: int
    name: str


@dataclass(frozen=True)
class Unary:
    position: int
    op: Literal["-", "not"]
    operand: Node


@dataclass(frozen=True)
class Binary:
    position: int  # of the operator
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Coalesce:
    position: int
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Case:
    position: int
    whens: tuple[tuple[Node, Node], ...]  # (condition, value)
    otherwise: Node | None


Node: TypeAlias = SyntaxLiteral | FeatureName | RequestField | Unary | Binary | Coalesce | Case

TokenKind = Literal["number", "string", "word", "symbol", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    position: int

    @property
    def keyword(self) -> str | None:
        """The lower-cased keyword this word is, else ``None``."""
        lowered = self.text.lower()
        return lowered if self.kind == "word" and lowered in KEYWORDS else None

    def describe(self) -> str:
        return "the end of the expression" if self.kind == "end" else repr(self.text)


_SYMBOLS: Final = ("<=", ">=", "<>", "!=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",", ".")
_NUMBER: Final = re.compile(r"\d+(\.\d+)?")
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACE: Final = re.compile(r"[ \t\r\n]+")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; :class:`ExpressionError` for a
    character or a sequence the language does not have."""
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        space = _SPACE.match(text, at)
        if space:
            at = space.end()
            continue
        if text.startswith(("--", "/*"), at):
            raise ExpressionError("comments are not allowed", text=text, position=at)
        if text[at] == "'":
            at = _string(text, at, tokens)
            continue
        number = _NUMBER.match(text, at)
        if number:
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "._"):
                raise ExpressionError(
                    "malformed number (write integers like 12 and decimals like 1.5)",
                    text=text, position=at,
                )  # fmt: skip
            tokens.append(Token("number", number.group(), at))
            at = end
            continue
        word = _WORD.match(text, at)
        if word:
            tokens.append(Token("word", word.group(), at))
            at = word.end()
            continue
        if text.startswith("==", at):
            raise ExpressionError("unexpected '==' (equality is a single =)", text=text,
                                  position=at)  # fmt: skip
        symbol = next((s for s in _SYMBOLS if text.startswith(s, at)), None)
        if symbol is None:
            problem = f"unexpected character {text[at]!r}"
            if text[at] == '"':
                problem = "unexpected '\"' (strings take single quotes; names are not quoted)"
            raise ExpressionError(problem, text=text, position=at)
        after_name = bool(tokens) and tokens[-1].kind == "word"
        if symbol == "." and not after_name and text[at + 1 : at + 2].isdigit():
            raise ExpressionError("malformed number (write 0.5, not .5)", text=text, position=at)
        tokens.append(Token("symbol", symbol, at))
        at += len(symbol)
    tokens.append(Token("end", "", len(text)))
    return tokens


def _string(text: str, start: int, tokens: list[Token]) -> int:
    """Reads the string literal starting at ``start``; returns the offset after it."""
    chars: list[str] = []
    at = start + 1
    while True:
        if at >= len(text):
            raise ExpressionError("unterminated string", text=text, position=start)
        if text[at] == "'":
            if text.startswith("''", at):
                chars.append("'")
                at += 2
                continue
            break
        if text[at] == "\x00":
            raise ExpressionError("a NUL character in a string", text=text, position=at)
        chars.append(text[at])
        at += 1
    tokens.append(Token("string", "".join(chars), start))
    return at + 1


def parse_syntax(text: str) -> Node:
    """The syntax tree of ``text``; :class:`ExpressionError` naming the position of the
    first problem (an unexpected token, a missing parenthesis, trailing text, ...)."""
    if not text.strip():
        raise ExpressionError("the expression is empty", text=text, position=0)
    parser = _Parser(text, tokenize(text))
    node = parser.expression()
    token = parser.peek()
    if token.kind != "end":
        hint = _HINTS.get(token.text.lower()) if token.kind == "word" else None
        if token.text == ")":
            hint = "unbalanced ')'"
        problem = hint or f"unexpected {token.describe()} after a complete expression"
        raise ExpressionError(problem, text=text, position=token.position)
    return node


class _Parser:
    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.at = 0

    def peek(self) -> Token:
        return self.tokens[self.at]

    def advance(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def fail(self, problem: str, token: Token) -> ExpressionError:
        return ExpressionError(problem, text=self.text, position=token.position)

    def operator(self, level: tuple[str, ...]) -> Token | None:
        """The next token if it is a binary operator of ``level`` (consumed), else ``None``."""
        token = self.peek()
        word = token.keyword
        if (token.kind == "symbol" and token.text in level) or (word is not None and word in level):
            return self.advance()
        return None

    def expect(self, symbol: str, context: str) -> Token:
        token = self.peek()
        if token.kind == "symbol" and token.text == symbol:
            return self.advance()
        raise self.fail(f"expected {symbol!r} {context}, found {token.describe()}", token)

    def expect_keyword(self, keyword: str, context: str) -> Token:
        token = self.peek()
        if token.keyword == keyword:
            return self.advance()
        raise self.fail(f"expected '{keyword}' {context}, found {token.describe()}", token)

    def expression(self) -> Node:
        return self.binary(0)

    def binary(self, level: int) -> Node:
        if level == 2:
            return self.negation()
        if level == len(BINARY_LEVELS):
            return self.unary()
        ops = BINARY_LEVELS[level]
        left = self.binary(level + 1)
        while (op := self.operator(ops)) is not None:
            right = self.binary(level + 1)
            name = op.text.lower()
            left = Binary(op.position, "!=" if name == "<>" else name, left, right)
        return left

    def negation(self) -> Node:
        token = self.peek()
        if token.keyword == "not":
            self.advance()
            return Unary(token.position, "not", self.negation())
        left = self.binary(3)
        op = self.operator(BINARY_LEVELS[2])
        if op is None:
            return left
        right = self.binary(3)
        again = self.operator(BINARY_LEVELS[2])
        if again is not None:
            raise self.fail("comparisons do not chain (join them with 'and')", again)
        return Binary(op.position, "!=" if op.text == "<>" else op.text, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "symbol" and token.text == "-":
            self.advance()
            return Unary(token.position, "-", self.unary())
        return self.primary()

    def primary(self) -> Node:
        token = self.advance()
        if token.kind == "number":
            return self.number(token)
        if token.kind == "string":
            return SyntaxLiteral(token.position, "string", token.text, token.text)
        if token.kind == "symbol" and token.text == "(":
            inner = self.expression()
            if self.peek().kind == "end":
                raise self.fail("unbalanced '(': no ')' closes it", token)
            self.expect(")", "to close the '(' at position " + str(token.position + 1))
            return inner
        if token.kind == "word":
            return self.word(token)
        if token.kind == "end":
            raise self.fail("the expression ends where a value is expected", token)
        raise self.fail(f"unexpected {token.describe()} where a value is expected", token)

    def number(self, token: Token) -> SyntaxLiteral:
        if "." in token.text:
            return SyntaxLiteral(token.position, "float", float(token.text), token.text)
        value = int(token.text)
        if value >= _INT64:
            raise self.fail("integer literal beyond the 64-bit range", token)
        return SyntaxLiteral(token.position, "int", value, str(value))

    def word(self, token: Token) -> Node:
        keyword = token.keyword
        if keyword in {"true", "false"}:
            return SyntaxLiteral(token.position, "bool", keyword == "true", keyword)
        if keyword == "null":
            return SyntaxLiteral(token.position, "null", None, "null")
        if keyword == "request":
            self.expect(".", "after 'request' (request fields are request.<name>)")
            name = self.peek()
            if name.kind != "word":
                raise self.fail(f"expected a request field name after 'request.', found "
                                f"{name.describe()}", name)  # fmt: skip
            self.advance()
            return RequestField(token.position, name.text)
        if keyword == "coalesce":
            return self.coalesce(token)
        if keyword == "case":
            return self.case(token)
        if keyword is not None:
            raise self.fail(f"unexpected '{keyword}' where a value is expected", token)
        following = self.peek()
        if token.text.lower() in _QUERY_WORDS and following.kind in {"word", "number"}:
            raise self.fail("queries are not in the language", token)
        if following.kind == "symbol" and following.text == "(":
            raise self.fail(f"unknown function {token.text!r} (the only function is coalesce; "
                            "case when ... then ... end chooses)", token)  # fmt: skip
        if following.kind == "symbol" and following.text == ".":
            raise self.fail(f"unexpected '.' after {token.text!r} (only request.<name> has a "
                            "dot)", following)  # fmt: skip
        return FeatureName(token.position, token.text)

    def coalesce(self, token: Token) -> Coalesce:
        self.expect("(", "after 'coalesce'")
        args = [self.expression()]
        while self.peek().kind == "symbol" and self.peek().text == ",":
            self.advance()
            args.append(self.expression())
        self.expect(")", "to close coalesce(")
        if len(args) < 2:
            raise self.fail("coalesce needs at least two arguments", token)
        return Coalesce(token.position, tuple(args))

    def case(self, token: Token) -> Case:
        whens: list[tuple[Node, Node]] = []
        if self.peek().keyword != "when":
            raise self.fail(
                "expected 'when' after 'case' (only the form case when <condition> then "
                "<value> ... end)", self.peek()
            )  # fmt: skip
        while self.peek().keyword == "when":
            self.advance()
            condition = self.expression()
            self.expect_keyword("then", "after the condition of 'when'")
            whens.append((condition, self.expression()))
        otherwise = None
        if self.peek().keyword == "else":
            self.advance()
            otherwise = self.expression()
        self.expect_keyword("end", "to close 'case'")
        return Case(token.position, tuple(whens), otherwise)
