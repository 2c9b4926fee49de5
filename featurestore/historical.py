"""Point-in-time training data from Python: :func:`get_historical_features`.

The join is not re-implemented here: the spine is handed to the warehouse and joined by the
dbt macro ``featurestore.as_of_join`` (``macros/as_of_join.sql``), compiled by dbt for the
current target and cached under ``target/featurestore/`` (keyed by the manifest, the request
shape and the ``FEATURESTORE_*``, ``DBT_*`` and non-secret ``SNOWFLAKE_*`` environment).
Semantics are the macro's: see its docstring or the README section "Point-in-time joins".

Targets: the dbt profile's current target (``target=``, else ``$FEATURESTORE_TARGET``) decides
where the join runs. ``duckdb``: the spine is registered in the project's DuckDB file, opened
read-only. ``snowflake``: the spine is uploaded to a temporary table of a new session and the
join's result fetched as Arrow (:mod:`featurestore.historical_snowflake`); the connection comes
from the ``SNOWFLAKE_*`` variables only (:mod:`featurestore.snowflake_connection`), checked
before dbt runs so that every missing one is named. Both return the same columns and dtypes.

Timestamps: the warehouse stores UTC without a time zone. A naive spine timestamp is read as
UTC; a time-zone-aware one is converted to UTC for the join. A column mixing naive and aware
values, or holding non-timestamps, is refused. The returned frame keeps the caller's own
columns exactly as given (same values, dtypes, order, index reset) and appends one column per
requested feature, named as the feature.

Feature services (``feature_service=``, README "Feature services"): the service's stored
features are joined as above, then its request-time features are computed in the same
warehouse query from the joined values and the spine's request-field columns (one column per
request field of the service, named as the field), with the SQL of
:func:`featurestore.expressions.to_sql` for the target's dialect
(:mod:`featurestore.historical_request_features`). They follow the stored features in the
result.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from featurestore.arrow_types import ARROW_TYPES
from featurestore.historical_request_features import request_column, with_request_features
from featurestore.historical_snowflake import SnowflakeJoinError, run_join
from featurestore.project import DbtError, Project, compile_inline, configured_target
from featurestore.registry import (
    FeatureService,
    FeatureView,
    Registry,
    RegistryError,
    ValueType,
    load_registry,
)
from featurestore.snowflake_connection import (
    REQUIRED_ENV,
    SnowflakeConnectionError,
    SnowflakeSettings,
)

__all__ = [
    "SPINE_RELATION",
    "CompiledJoin",
    "HistoricalFeaturesError",
    "compiled_join",
    "get_historical_features",
]

SPINE_RELATION = "__featurestore_spine"
# not __fs_row: snowflake__as_of_join numbers the spine rows under that name
_ROW = "__fs_spine_row"
_TS = "__fs_spine_ts"
# Integer and boolean features keep their type when some values are null.
_NULLABLE: dict[pa.DataType, Any] = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
_TARGET_LINE = re.compile(r"--\s*featurestore-target:\s*(\S*)\|(.*)")


class HistoricalFeaturesError(ValueError):
    """The request cannot be answered (unknown feature, bad spine, ...)."""


def get_historical_features(
    entity_df: pd.DataFrame | pa.Table,
    features: Sequence[str] | None = None,
    *,
    feature_service: str | None = None,
    timestamp_column: str = "event_timestamp",
    project_dir: Path | str | None = None,
    target: str | None = None,
    include_feature_timestamps: bool = False,
) -> pd.DataFrame:
    """Join each spine row to the requested features as of its timestamp.

    Name either ``features`` or a ``feature_service`` (exactly one). ``entity_df`` holds the
    entity key columns of every requested feature's view and ``timestamp_column`` (UTC); for
    a service also one column per request field of the service, named as the field (the
    values the model was scored with: a label spine carries them). Returns ``entity_df`` (as
    pandas, index reset) with one column per feature (a service's stored features, then its
    request-time features computed by the warehouse); with ``include_feature_timestamps``
    also ``<view>__feature_at`` and ``<view>__as_of_at`` per view. Runs in the current dbt
    target's warehouse (``target``, else ``$FEATURESTORE_TARGET``): the project's DuckDB file,
    or Snowflake (the spine uploaded to a temporary table; connection from the
    ``SNOWFLAKE_*`` variables).
    """
    project = Project.at(project_dir, target)
    try:
        registry = load_registry(project.manifest_path)
    except RegistryError as exc:
        raise HistoricalFeaturesError(str(exc)) from None
    frame = _to_pandas(entity_df)
    service = _check_request(registry, features, feature_service)
    names = _check_features(registry, service.features if service else features)
    views = [
        (registry.view(view), chosen) for view, chosen in registry.group_by_view(names).items()
    ]
    outputs = _outputs(registry, names, views, include_feature_timestamps, service)
    spine = _spine_table(frame, views, timestamp_column, list(outputs), service)

    # the Snowflake target's variables first: all missing ones named, before dbt fails on one
    settings = _snowflake_settings() if configured_target(project) == "snowflake" else None
    requests = [request_column(f.name) for f in service.request_fields] if service else []
    compiled = compiled_join(project, views, include_feature_timestamps, requests)
    if compiled.target_type == "duckdb":
        sql = with_request_features(compiled.sql, service, dialect="duckdb")
        joined = _run_duckdb(compiled.duckdb_path, sql, spine, list(outputs))
    elif compiled.target_type == "snowflake":
        sql = with_request_features(compiled.sql, service, dialect="snowflake")
        joined = _run_snowflake(
            settings or _snowflake_settings(), sql, spine, views, outputs, service
        )
    else:
        raise HistoricalFeaturesError(
            f"get_historical_features runs on the duckdb and snowflake targets; the current "
            f"target is {compiled.target_type!r} (build training sets there with the "
            "fraud_training_set model)"
        )
    rows = joined.column(_ROW).combine_chunks()
    if not rows.equals(pa.array(range(len(frame)), type=pa.int64())):
        raise HistoricalFeaturesError(
            f"the warehouse returned {len(rows)} rows for {len(frame)} spine rows, not each "
            "spine row once in order"
        )
    result = frame.reset_index(drop=True).copy()
    for column in joined.column_names:
        if column != _ROW:
            result[column] = joined.column(column).to_pandas(types_mapper=_NULLABLE.get)
    return result


def _outputs(
    registry: Registry,
    names: list[str],
    views: list[tuple[FeatureView, list[str]]],
    include_timestamps: bool,
    service: FeatureService | None,
) -> dict[str, ValueType]:
    """The columns the join adds, in order, with their registry types: the features, a
    service's request-time features, the audit timestamps."""
    outputs: dict[str, ValueType] = {name: registry.feature(name).value_type for name in names}
    for request_feature in service.request_features if service else ():
        outputs[request_feature.name] = request_feature.expression.value_type
    if include_timestamps:
        for view, _ in views:
            outputs[f"{view.name}__feature_at"] = "timestamp"
            outputs[f"{view.name}__as_of_at"] = "timestamp"
    return outputs


def _to_pandas(entity_df: pd.DataFrame | pa.Table) -> pd.DataFrame:
    if isinstance(entity_df, pa.Table):
        frame: pd.DataFrame = entity_df.to_pandas()
        return frame
    if isinstance(entity_df, pd.DataFrame):
        return entity_df
    raise HistoricalFeaturesError(
        f"entity_df must be a pandas DataFrame or a pyarrow Table, got {type(entity_df).__name__}"
    )


def _check_request(
    registry: Registry, features: Sequence[str] | None, feature_service: str | None
) -> FeatureService | None:
    """The requested feature service (None: a feature list), exactly one of the two named."""
    if feature_service is None:
        if features is None:
            raise HistoricalFeaturesError(
                "name the features to join: features=[...] or feature_service='...'"
            )
        return None
    if features is not None:
        raise HistoricalFeaturesError(
            "pass either features or feature_service, not both (a service names its features)"
        )
    if not isinstance(feature_service, str):
        raise HistoricalFeaturesError(
            f"feature_service must be a feature service name, got {feature_service!r}"
        )
    try:
        return registry.feature_service(feature_service)
    except RegistryError as exc:
        raise HistoricalFeaturesError(str(exc)) from None


def _check_features(registry: Registry, features: Sequence[str] | None) -> list[str]:
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise HistoricalFeaturesError("features must be a list of feature names")
    if not features:
        raise HistoricalFeaturesError("features is empty: name at least one feature")
    names: list[str] = []
    for name in features:
        if not isinstance(name, str):
            raise HistoricalFeaturesError(f"feature names must be strings, got {name!r}")
        if name in names:
            raise HistoricalFeaturesError(f"feature {name!r} is requested twice")
        try:
            registry.feature(name)
        except RegistryError as exc:
            raise HistoricalFeaturesError(str(exc)) from None
        names.append(name)
    return names


_KEY_TYPES: dict[ValueType, tuple[str, Any]] = {
    "string": ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    "int": ("integer", pa.types.is_integer),
    "float": ("floating point", pa.types.is_floating),
    "bool": ("boolean", pa.types.is_boolean),
    "timestamp": ("timestamp", pa.types.is_timestamp),
}


def _spine_table(
    frame: pd.DataFrame,
    views: list[tuple[FeatureView, list[str]]],
    timestamp_column: str,
    outputs: list[str],
    service: FeatureService | None,
) -> pa.Table:
    """The minimal spine handed to the warehouse: keys, a service's request fields (under
    :func:`request_column` names), UTC timestamp, row number."""
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise HistoricalFeaturesError("entity_df has duplicate column names")
    if timestamp_column not in columns:
        raise HistoricalFeaturesError(
            f"entity_df has no timestamp column {timestamp_column!r} "
            f"(columns: {', '.join(columns)}); pass timestamp_column="
        )
    clash = sorted(set(outputs) & set(columns))
    if clash:
        raise HistoricalFeaturesError(
            f"entity_df already has column(s) {', '.join(clash)}, which the result would add"
        )
    arrays: dict[str, pa.Array] = {}
    for view, _ in views:
        for key in view.keys:
            if key not in columns:
                raise HistoricalFeaturesError(
                    f"entity_df lacks key column {key!r} of entity {view.entity.name!r} "
                    f"(needed by feature view {view.name})"
                )
            if key in arrays:
                continue
            try:
                array = pa.array(frame[key], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise HistoricalFeaturesError(f"key column {key!r}: {exc}") from None
            label, accepts = _KEY_TYPES[view.key_types[key]]
            if not (accepts(array.type) or pa.types.is_null(array.type)):
                raise HistoricalFeaturesError(
                    f"key column {key!r} must hold {label} values (registry type "
                    f"{view.key_types[key]}), got {array.type}"
                )
            arrays[key] = array
    for request_field in service.request_fields if service else ():
        arrays[request_column(request_field.name)] = _request_array(
            frame, request_field.name, request_field.value_type, service
        )
    arrays[_TS] = _utc_timestamps(frame[timestamp_column], timestamp_column)
    arrays[_ROW] = pa.array(range(len(frame)), type=pa.int64())
    return pa.table(arrays)


#: the Arrow types a request field column may hold, by the field's type (cast to its type)
_REQUEST_TYPES: dict[ValueType, tuple[str, Any]] = {
    "string": _KEY_TYPES["string"],
    "int": _KEY_TYPES["int"],
    "float": (
        "numeric",
        lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
    ),
    "bool": _KEY_TYPES["bool"],
}


def _request_array(
    frame: pd.DataFrame, name: str, value_type: ValueType, service: FeatureService | None
) -> pa.Array:
    """The spine's column of request field ``name`` in its registry type's Arrow type (a
    missing value, NaN included, is null; a decimal becomes the double nearest to it;
    timestamps as for the spine's timestamp)."""
    if name not in frame.columns:
        assert service is not None
        raise HistoricalFeaturesError(
            f"entity_df lacks column {name!r}, a request field of feature service "
            f"{service.name!r} (the spine carries each row's request data: "
            f"{', '.join(f.name + ' ' + f.value_type for f in service.request_fields)})"
        )
    if value_type == "timestamp":
        return _utc_timestamps(frame[name], name)
    try:
        array = pa.array(frame[name], from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise HistoricalFeaturesError(f"request field column {name!r}: {exc}") from None
    label, accepts = _REQUEST_TYPES[value_type]
    if not (accepts(array.type) or pa.types.is_null(array.type)):
        raise HistoricalFeaturesError(
            f"request field column {name!r} must hold {label} values (request field type "
            f"{value_type}), got {array.type}"
        )
    if pa.types.is_decimal(array.type):
        # through text: Arrow's decimal-to-double cast is not correctly rounded (25.74 would
        # become 25.740000000000002, not the double a request's JSON 25.74 parses to)
        array = array.cast(pa.string())
    return array.cast(ARROW_TYPES[value_type])


def _utc_timestamps(series: pd.Series, name: str) -> pa.Array:
    """A naive-UTC timestamp[us] array from a spine timestamp column."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif series.dtype == object:
        values = series.dropna()
        kinds = {type(v) for v in values}
        if not kinds <= {dt.datetime, pd.Timestamp}:
            bad = next(v for v in values if not isinstance(v, dt.datetime))
            raise HistoricalFeaturesError(
                f"timestamp column {name!r} must hold timestamps, found {bad!r} "
                f"({type(bad).__name__})"
            )
        aware = {v.tzinfo is not None for v in values}
        if len(aware) > 1:
            raise HistoricalFeaturesError(
                f"timestamp column {name!r} mixes time-zone-aware and naive timestamps; "
                "convert them all to UTC (naive timestamps are read as UTC)"
            )
        series = (
            pd.to_datetime(series, utc=True).dt.tz_localize(None)
            if aware == {True}
            else (pd.to_datetime(series))
        )
    elif not pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise HistoricalFeaturesError(
            f"timestamp column {name!r} must be a timestamp column, got dtype {series.dtype}"
        )
    return pa.array(series, from_pandas=True).cast(pa.timestamp("us"))


def _macro_call(
    views: list[tuple[FeatureView, list[str]]],
    include_timestamps: bool,
    request_columns: Sequence[str] = (),
) -> str:
    specs = []
    columns: list[str] = []
    for view, chosen in views:
        specs.append(
            "featurestore.feature_view("
            + f"{_jinja(view.name)}, features={_jinja(chosen)}, "
            + f"join_keys={_jinja({key: key for key in view.keys})})"
        )
        columns += [key for key in view.keys if key not in columns]
    # spine_columns: what the portable default__ form selects (the native forms ignore it)
    return (
        "-- featurestore-target: {{ target.type }}|{{ target.get('path', '') }}\n"
        + "{{ featurestore.as_of_join("
        + f"{_jinja(SPINE_RELATION)}, {_jinja(_TS)}, [{', '.join(specs)}], "
        + f"include_timestamps={'true' if include_timestamps else 'false'}, "
        + f"spine_columns={_jinja([*columns, *request_columns, _TS, _ROW])}) }}}}"
    )


def _jinja(value: object) -> str:
    """A Jinja literal for strings, lists and dicts of strings (JSON is valid Jinja here)."""
    return json.dumps(value)


@dataclass(frozen=True)
class CompiledJoin:
    """The ``as_of_join`` call of a request compiled by dbt for the current target: the SQL
    (reading the spine as :data:`SPINE_RELATION`), the target's type and, for DuckDB, the
    warehouse file (absolute)."""

    sql: str
    target_type: str
    duckdb_path: Path


def compiled_join(
    project: Project,
    views: list[tuple[FeatureView, list[str]]],
    include_timestamps: bool,
    request_columns: Sequence[str] = (),
) -> CompiledJoin:
    """The compiled ``as_of_join`` of ``views`` (each with its requested features), from
    the cache under ``target/featurestore/`` or a dbt compile (no warehouse connection);
    ``request_columns``: further spine columns the result carries (a service's request
    fields)."""
    call = _macro_call(views, include_timestamps, request_columns)
    env = sorted(
        (k, v)
        for k, v in os.environ.items()
        if k.startswith(("FEATURESTORE_", "DBT_")) or k in REQUIRED_ENV
    )
    key = hashlib.sha256()
    key.update(project.manifest_path.read_bytes())
    key.update(json.dumps([call, project.target, env]).encode())
    cache = project.target_path / "featurestore" / f"as_of_join-{key.hexdigest()[:24]}.sql"
    if cache.is_file():
        sql = cache.read_text()
    else:
        try:
            sql = compile_inline(project, call)
        except DbtError as exc:
            raise HistoricalFeaturesError(str(exc)) from None
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(sql)
    match = _TARGET_LINE.search(sql)
    if match is None:
        raise HistoricalFeaturesError("could not read the target from the compiled SQL")
    warehouse = Path(match.group(2).strip())
    if not warehouse.is_absolute():
        warehouse = project.root / warehouse
    return CompiledJoin(sql=sql, target_type=match.group(1), duckdb_path=warehouse)


def _run_duckdb(warehouse: Path, sql: str, spine: pa.Table, outputs: list[str]) -> pa.Table:
    import duckdb

    if not warehouse.is_file():
        raise HistoricalFeaturesError(
            f"warehouse {warehouse} does not exist: run `dbt build` first"
        )
    selected = ", ".join([_ROW, *outputs])
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            con.register(SPINE_RELATION, spine)
            return con.sql(
                f"select {selected} from ({sql}) as joined order by {_ROW}"
            ).to_arrow_table()
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0]
        raise HistoricalFeaturesError(f"the warehouse could not run the join: {message}") from None


def _snowflake_settings() -> SnowflakeSettings:
    try:
        return SnowflakeSettings.from_env()
    except SnowflakeConnectionError as exc:
        raise HistoricalFeaturesError(str(exc)) from None


def _run_snowflake(
    settings: SnowflakeSettings,
    sql: str,
    spine: pa.Table,
    views: list[tuple[FeatureView, list[str]]],
    outputs: dict[str, ValueType],
    service: FeatureService | None,
) -> pa.Table:
    spine_types: dict[str, ValueType] = {}
    for view, _ in views:
        for key in view.keys:
            spine_types.setdefault(key, view.key_types[key])
    for request_field in service.request_fields if service else ():
        spine_types[request_column(request_field.name)] = request_field.value_type
    spine_types[_TS] = "timestamp"
    spine_types[_ROW] = "int"
    try:
        return run_join(
            settings,
            sql,
            spine,
            spine_types,
            relation=SPINE_RELATION,
            row_column=_ROW,
            outputs=outputs,
        )
    except (SnowflakeConnectionError, SnowflakeJoinError) as exc:
        raise HistoricalFeaturesError(str(exc)) from None
