"""Running a compiled ``as_of_join`` on Snowflake for :func:`featurestore.get_historical_features`.

One session per call (:func:`run_join`), opened with the ``snowflake`` target's settings
(:mod:`featurestore.snowflake_connection`) and the session time zone ``UTC``:

1. **Upload**: the spine (keys, UTC timestamp, row number) goes into a *temporary* table
   named as the compiled SQL reads it (unqualified, so in the session's schema,
   ``SNOWFLAKE_DATABASE.SNOWFLAKE_SCHEMA``; it shadows any table of that name and vanishes
   with the session). Its columns are declared from the registry's key types
   (``varchar``, ``number(38,0)``, ``float``, ``boolean``, ``timestamp_ntz(6)``), unquoted.
   The rows are written with Arrow to one Parquet file, ``PUT`` into a temporary stage
   of a name of its own and loaded with ``COPY INTO ... FROM (SELECT $1:"col" ...)``, as
   the connector's ``write_pandas`` does (which is not used: its ``COPY`` quotes the stage
   location, which fakesnow cannot parse, and it needs pandas, where integer keys with
   nulls become floats). Timestamps travel as integer microseconds and become
   ``TO_TIMESTAMP_NTZ(us, 6)``: exact to the microsecond, whatever the Parquet logical-type
   handling. An empty spine is not uploaded (the table exists, empty). The table and the
   stage are dropped when the join has been fetched.
2. **Join**: ``select <row>, <outputs> from (<compiled as_of_join>) order by <row>``, each
   output aliased to its registry name in double quotes (Snowflake would return unquoted
   names upper-case), so the result carries exactly the names the DuckDB path gives.
3. **Fetch**: ``fetch_arrow_all(force_return_table=True, force_microsecond_precision=True)``;
   each column conformed to its registry type (:mod:`featurestore.arrow_types`): numbers
   to int64/float64, timestamps to ``timestamp[us]`` UTC without a zone.

Errors (:class:`SnowflakeJoinError`, one line, no secret): the upload refused (the role
needs ``CREATE TABLE`` and ``CREATE STAGE`` on the schema), a feature view's table missing
or unreadable (errno 002003), any other SQL error (the connector's first message line), a
result column of the wrong type. Connection errors are
:class:`~featurestore.snowflake_connection.SnowflakeConnectionError`.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.arrow_types import ARROW_TYPES, conform_column
from featurestore.data_types import ValueType
from featurestore.snowflake_connection import SnowflakeSettings, connect

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection
    from snowflake.connector.cursor import SnowflakeCursor

__all__ = ["SnowflakeJoinError", "join_statement", "run_join", "spine_columns_ddl"]

#: the Snowflake column type of each registry value type in the uploaded spine
_DDL_TYPES: Final[dict[ValueType, str]] = {
    "string": "varchar",
    "int": "number(38, 0)",
    "float": "float",
    "bool": "boolean",
    "timestamp": "timestamp_ntz(6)",
}
#: connector errno of a relation that does not exist or that the role may not read
_NOT_FOUND: Final = 2003
_APPLICATION: Final = "featurestore-training"


class SnowflakeJoinError(RuntimeError):
    """The spine could not be uploaded, or the join could not run or be read back."""


def spine_columns_ddl(columns: Mapping[str, ValueType]) -> str:
    """The column list of the spine's temporary table: ``name type, ...`` (unquoted)."""
    return ", ".join(f"{name} {_DDL_TYPES[kind]}" for name, kind in columns.items())


def join_statement(sql: str, row_column: str, outputs: Mapping[str, ValueType]) -> str:
    """The statement run on Snowflake: the row number and the outputs of the compiled join
    ``sql``, under their exact (quoted) names, in spine order."""
    selected = ", ".join(f'{name} as "{name}"' for name in [row_column, *outputs])
    return f"select {selected}\nfrom (\n{sql}\n) as joined\norder by {row_column}"


def run_join(
    settings: SnowflakeSettings,
    sql: str,
    spine: pa.Table,
    spine_types: Mapping[str, ValueType],
    *,
    relation: str,
    row_column: str,
    outputs: Mapping[str, ValueType],
    connect_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Upload ``spine`` (its columns typed by ``spine_types``) as the temporary table
    ``relation``, run the compiled join ``sql`` reading it, and return the row numbers
    (``row_column``) and ``outputs`` as Arrow, in row order, each in its registry type."""
    session_parameters = {
        "TIMEZONE": "UTC",
        **dict(connect_options or {}).get("session_parameters", {}),
    }
    options = {**dict(connect_options or {}), "session_parameters": session_parameters}
    con = connect(settings, application=_APPLICATION, options=options)
    created: list[tuple[str, str]] = []
    try:
        _upload(con, settings, spine, spine_types, relation, created)
        fetched = _fetch(con, settings, join_statement(sql, row_column, outputs))
    finally:
        _drop(con, created)
        _close(con)
    types: dict[str, ValueType] = {row_column: "int", **outputs}
    columns = []
    for name, kind in types.items():
        column = fetched.column(name)
        try:
            column = conform_column(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SnowflakeJoinError(
                f"column {name} of the join's result does not fit the registry type {kind}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if column.type != ARROW_TYPES[kind]:
            raise SnowflakeJoinError(
                f"column {name} of the join's result is {column.type}, not the registry type {kind}"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(types))


def _upload(
    con: SnowflakeConnection,
    settings: SnowflakeSettings,
    spine: pa.Table,
    spine_types: Mapping[str, ValueType],
    relation: str,
    created: list[tuple[str, str]],
) -> None:
    """Create the temporary table (and stage) and load the spine; ``created`` gets what
    was created (``("table", name)``, ``("stage", name)``), for :func:`_drop`."""
    from snowflake.connector import errors

    stage = f"{relation}_stage_{uuid.uuid4().hex[:12]}"  # never an existing stage
    names = list(spine_types)
    selects = ", ".join(
        f'to_timestamp_ntz($1:"{name}"::number, 6)' if kind == "timestamp" else f'$1:"{name}"'
        for name, kind in spine_types.items()
    )
    cursor = con.cursor()
    try:
        cursor.execute(f"create temporary table {relation} ({spine_columns_ddl(spine_types)})")
        if spine.num_rows == 0:
            return
        cursor.execute(f"create temporary stage {stage}")
        with tempfile.TemporaryDirectory(prefix="featurestore-spine-") as folder:
            path = Path(folder) / "spine.parquet"
            pq.write_table(_parquet_spine(spine, spine_types), path)
            location = path.as_posix().replace("\\", "\\\\").replace("'", "\\'")
            cursor.execute(f"put 'file://{location}' @{stage} auto_compress=false")
        cursor.execute(
            f"copy into {relation} ({', '.join(names)}) from (select {selects} from @{stage}) "
            "file_format = (type = parquet) purge = true"
        )
        loaded = sum(int(row[3]) for row in cursor.fetchall() if len(row) > 3)
    except errors.Error as exc:
        raise SnowflakeJoinError(
            f"could not upload the spine to a temporary table in "
            f"{settings.database}.{settings.schema}: {settings.detail(exc)} (role "
            f"{settings.role!r} needs CREATE TABLE and CREATE STAGE on that schema)"
        ) from None
    finally:
        cursor.close()
    if loaded != spine.num_rows:
        raise SnowflakeJoinError(
            f"uploading the spine loaded {loaded} of {spine.num_rows} rows into {relation}"
        )


def _parquet_spine(spine: pa.Table, spine_types: Mapping[str, ValueType]) -> pa.Table:
    """The spine as written to Parquet: each column in its registry type's Arrow type,
    timestamps as integer microseconds (UTC)."""
    columns = []
    for name, kind in spine_types.items():
        column = spine.column(name).cast(ARROW_TYPES[kind])
        columns.append(column.cast(pa.int64()) if kind == "timestamp" else column)
    return pa.Table.from_arrays(columns, names=list(spine_types))


def _fetch(con: SnowflakeConnection, settings: SnowflakeSettings, statement: str) -> pa.Table:
    from snowflake.connector import errors

    cursor: SnowflakeCursor = con.cursor()
    try:
        cursor.execute(statement)
        return cursor.fetch_arrow_all(force_return_table=True, force_microsecond_precision=True)
    except errors.Error as exc:
        detail = settings.detail(exc)
        if getattr(exc, "errno", None) == _NOT_FOUND:
            raise SnowflakeJoinError(
                f"the warehouse could not run the join: {detail} (a feature view's table is "
                f"missing or role {settings.role!r} may not read it: run `dbt build` with the "
                "snowflake target)"
            ) from None
        raise SnowflakeJoinError(f"the warehouse could not run the join: {detail}") from None
    finally:
        cursor.close()


def _drop(con: SnowflakeConnection, created: list[tuple[str, str]]) -> None:
    """Drop the temporary objects this session created (only those: a permanent table of the
    same name, which a failed create would leave visible, is never dropped). Snowflake drops
    them with the session anyway; dropping them first also frees them at once on a server
    that keeps sessions alive (and on fakesnow, whose temporary objects outlive sessions)."""
    from snowflake.connector import errors

    cursor = con.cursor()
    try:
        for kind, name in reversed(created):
            with contextlib.suppress(errors.Error):
                cursor.execute(f"drop {kind} if exists {name}")
    finally:
        cursor.close()


def _close(con: SnowflakeConnection) -> None:
    from snowflake.connector import errors

    with contextlib.suppress(errors.Error):  # a session already gone is closed
        con.close()
