"""A feature service's request-time features in a training set, computed by the warehouse
(for :func:`featurestore.get_historical_features`).

The spine handed to the warehouse carries each request field of the service under
:func:`request_column`'s name (so that no caller column, key or feature can collide with
it); ``as_of_join`` returns every spine column unchanged beside the joined features, and
:func:`with_request_features` wraps the compiled join in one more ``select`` that adds each
request-time feature, as the SQL of :func:`featurestore.expressions.to_sql` for the
target's dialect over the joined feature columns and the request columns. The value is the
one the sidecar computes from the same stored values and request data (SQL null semantics,
null for a division by zero; README "Feature services").
"""

from __future__ import annotations

from typing import Final

from featurestore.expressions import Dialect, to_sql
from featurestore.feature_services import FeatureService

__all__ = ["JOINED", "REQUEST_PREFIX", "request_column", "with_request_features"]

#: the prefix of the spine columns holding request fields
REQUEST_PREFIX: Final = "__fs_request__"
#: the alias of the compiled join in :func:`with_request_features`
JOINED: Final = "__fs_joined"


def request_column(name: str) -> str:
    """The spine column holding request field ``name``."""
    return f"{REQUEST_PREFIX}{name}"


def with_request_features(sql: str, service: FeatureService | None, *, dialect: Dialect) -> str:
    """``sql`` (a compiled ``as_of_join`` whose spine carries the service's request columns)
    with one more column per request-time feature of ``service``, named as the feature
    (unquoted: Snowflake reads it back as the existing join statement does); ``sql`` itself
    without a service or request-time features."""

    def column(name: str) -> str:
        # unquoted names are stored upper-case by Snowflake, as is by DuckDB
        return f'{JOINED}."{name.upper() if dialect == "snowflake" else name}"'

    computed = [
        to_sql(
            feature.expression,
            dialect=dialect,
            feature_column=column,
            request_column=lambda name: column(request_column(name)),
        )
        + f" as {feature.name}"
        for feature in (service.request_features if service else ())
    ]
    if not computed:
        return sql
    return f"select {JOINED}.*, {', '.join(computed)}\nfrom (\n{sql}\n) as {JOINED}"
