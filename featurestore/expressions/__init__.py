"""The expression language of request-time features (README: "Request-time features: the
expression language"): :func:`parse_expression` checks a text against the feature and
request field types, :func:`compile_python` makes the sidecar's evaluator (compiled once),
:func:`to_sql` the warehouse's (DuckDB or Snowflake), both with SQL null semantics."""

from featurestore.expressions.errors import ExpressionError
from featurestore.expressions.expression import Expression, parse_expression
from featurestore.expressions.python_compiler import Evaluator, compile_python
from featurestore.expressions.sql import Dialect, to_sql

__all__ = [
    "Dialect",
    "Evaluator",
    "Expression",
    "ExpressionError",
    "compile_python",
    "parse_expression",
    "to_sql",
]
