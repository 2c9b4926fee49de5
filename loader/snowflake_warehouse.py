"""Reading the online relations from Snowflake with the connector's Arrow fetch.

Connection
    :mod:`featurestore.snowflake_connection`: the ``snowflake`` target's environment
    variables and nothing else; secrets kept out of ``repr``, messages and logs.

What is read
    The view's online model as dbt-snowflake names it with its default quoting (off): the
    node's ``database`` (else the connection's), ``schema`` and ``alias`` from the manifest,
    unquoted when they are plain identifiers (so Snowflake resolves them upper-case, as it
    created them), double-quoted otherwise. The query is the DuckDB reader's: the key,
    feature-time, as-of-time and feature columns, only rows whose as-of time is later than
    the watermark (``TO_TIMESTAMP_NTZ(<microseconds>, 6)``) on an incremental load.

Column names
    Snowflake stores unquoted identifiers upper-case (``USER_ID``), the registry's names are
    the dbt yml's lower-case ones (``user_id``). :meth:`SnowflakeWarehouse.check` reads the
    relation's real column names (``SELECT * ... LIMIT 0``) and matches each registry name
    exactly, else case-insensitively (two case-insensitive matches and no exact one is an
    error); the query selects each real name ``AS`` the registry's quoted name, so the Arrow
    batches carry exactly the names the loader and validation expect.

Arrow
    ``cursor.fetch_arrow_batches(force_microsecond_precision=True)`` yields one Arrow table
    per result chunk, downloaded one after another, so memory holds about one chunk
    (Snowflake sizes them, tens of MB at most) plus one batch; :func:`rebatch` cuts and
    joins them into batches of exactly the loader's ``--batch-rows``. Each chunk is
    :func:`conform`-ed to one schema (:mod:`featurestore.arrow_types`): integers of any
    width and ``NUMBER(p, 0)`` decimals to int64 for ``int`` columns, floats and decimals to
    float64 for ``float`` columns, any timestamp to ``timestamp[us]`` in UTC without a time
    zone (sub-microsecond digits are dropped), large strings to strings. A column of another
    kind is passed unchanged, so the validation gate rejects it with its registry type.

Errors (all :class:`~loader.errors.WarehouseError`, exit code 1, nothing written)
    missing variables (every one named), the network or account unreachable (connector
    errno 250001...), the login refused (errno 390xxx, e.g. 390100 wrong password): the
    messages of :mod:`featurestore.snowflake_connection`; a missing relation or one the
    role may not read (errno 002003), other SQL errors (the connector's first message
    line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from featurestore.arrow_types import conform_column
from featurestore.registry import ValueType
from featurestore.snowflake_connection import (
    AUTH_ENV,
    REQUIRED_ENV,
    SnowflakeConnectionError,
    SnowflakeSettings,
    connect,
)
from loader.errors import WarehouseError
from loader.views import (
    HOP_COLUMN,
    TILE_START_COLUMN,
    ViewSource,
    partial_columns,
    quote_identifier,
)
from loader.warehouse import Partition, Warehouse, naive_utc

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection
    from snowflake.connector.cursor import SnowflakeCursor

__all__ = [
    "AUTH_ENV",
    "REQUIRED_ENV",
    "SnowflakeSettings",
    "SnowflakeWarehouse",
    "conform",
    "rebatch",
]

#: connector errno of a relation (or database, schema) that does not exist or is not authorized
_NOT_FOUND: Final = 2003
_PLAIN_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _identifier(name: str) -> str:
    """A name as dbt-snowflake renders it with quoting off: plain identifiers unquoted
    (Snowflake resolves them upper-case), anything else double-quoted verbatim."""
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    return quote_identifier(name)


def relation_name(source: ViewSource) -> str:
    """``database.schema.table`` of the view's online model (see the module docstring)."""
    parts = [source.database] if source.database else []
    return ".".join(_identifier(part) for part in [*parts, source.schema, source.table])


def _column_types(source: ViewSource) -> dict[str, ValueType | None]:
    """The registry type each read column is conformed to (None: kept as fetched)."""
    view = source.view
    types: dict[str, ValueType | None] = {
        key: view.key_types.get(key, "string") for key in view.keys
    }
    for column in (source.ts_column, source.ver_column, source.changed_column):
        types[column] = "timestamp"
    types[source.cutoff_column] = "timestamp"
    if not source.tiled:
        for feature in view.features:
            types[feature.name] = feature.value_type
        return types
    types[HOP_COLUMN], types[TILE_START_COLUMN] = "int", "timestamp"
    for feature in view.features:
        for column in partial_columns(feature):
            # counts are integers; a sum keeps its type (integer, or an exact decimal)
            types[column] = "int" if column.endswith("__count") else None
    return types


def conform(table: pa.Table, source: ViewSource) -> pa.Table:
    """A fetched Arrow table with the columns of ``source`` in order, each in the Arrow type
    the DuckDB reader gives its registry type (see the module docstring)."""
    types = _column_types(source)
    columns = []
    for name in source.columns:
        try:
            columns.append(conform_column(table.column(name), types[name]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise WarehouseError(
                f"column {name} of {relation_name(source)} does not fit the registry type "
                f"{types[name]}: {str(exc).splitlines()[0]}"
            ) from None
    return pa.Table.from_arrays(columns, names=list(source.columns))


def rebatch(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``rows`` rows (the last one may be shorter) cut from and
    joined across ``tables`` of any sizes and one schema; holds at most one input table
    plus one output batch."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for table in tables:
        for batch in table.to_batches():
            while batch.num_rows:
                take = min(rows - pending_rows, batch.num_rows)
                pending.append(batch.slice(0, take))
                pending_rows += take
                batch = batch.slice(take)
                if pending_rows == rows:
                    yield _joined(pending)
                    pending, pending_rows = [], 0
    if pending_rows:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0]


class SnowflakeWarehouse(Warehouse):
    """A Snowflake connection reading online relations in Arrow batches (module docstring).

    ``connect_options`` are extra keyword arguments of ``snowflake.connector.connect``
    (``host``/``port``/``protocol`` of a proxy or an emulator, ``login_timeout``...); the
    login itself only ever comes from :class:`SnowflakeSettings`.
    """

    def __init__(
        self, settings: SnowflakeSettings, *, connect_options: Mapping[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.connect_options = dict(connect_options or {})
        self.description = f"snowflake://{settings.user}@{settings.account}/{settings.database}"
        self._con: SnowflakeConnection | None = None
        #: per view: registry column name -> the relation's real column name
        self._columns: dict[str, dict[str, str]] = {}

    def open(self) -> None:
        try:
            self._con = connect(
                self.settings, application="featurestore-loader", options=self.connect_options
            )
        except SnowflakeConnectionError as exc:
            raise WarehouseError(str(exc)) from None

    def _detail(self, exc: Any) -> str:
        return self.settings.detail(exc)

    def close(self) -> None:
        from snowflake.connector import errors

        if self._con is not None:
            con, self._con = self._con, None
            with contextlib.suppress(errors.Error):  # a session already gone is closed
                con.close()

    @property
    def con(self) -> SnowflakeConnection:
        if self._con is None:
            raise RuntimeError("the warehouse is not open")
        return self._con

    def locate(self, source: ViewSource) -> ViewSource:
        return dataclasses.replace(source, relation_name=relation_name(source))

    def _execute(self, query: str, source: ViewSource) -> SnowflakeCursor:
        from snowflake.connector import errors

        cursor = self.con.cursor()
        try:
            cursor.execute(query)
        except errors.Error as exc:
            cursor.close()
            raise WarehouseError(self._query_message(exc, source)) from None
        return cursor

    def _query_message(self, exc: Any, source: ViewSource) -> str:
        relation = relation_name(source)
        if getattr(exc, "errno", None) == _NOT_FOUND:
            return (
                f"relation {relation} (online values of {source.name}) does not exist in "
                f"Snowflake or role {self.settings.role!r} may not read it: run `dbt build` "
                f"({self._detail(exc)})"
            )
        return f"Snowflake: reading {relation} failed: {self._detail(exc)}"

    def check(self, source: ViewSource) -> None:
        cursor = self._execute(f"select * from {relation_name(source)} limit 0", source)
        try:
            found = [str(column.name) for column in cursor.description]
        finally:
            cursor.close()
        mapping: dict[str, str] = {}
        missing: list[str] = []
        for name in source.columns:
            exact = [column for column in found if column == name]
            folded = [column for column in found if column.upper() == name.upper()]
            matches = exact or folded
            if len(matches) == 1:
                mapping[name] = matches[0]
            elif matches:
                raise WarehouseError(
                    f"relation {relation_name(source)} has columns {', '.join(matches)}: "
                    f"which one is {name} is ambiguous"
                )
            else:
                missing.append(name)
        if missing:
            raise WarehouseError(
                f"relation {relation_name(source)} lacks column(s) {', '.join(missing)} "
                f"needed to load {source.name}: rebuild it with `dbt build`"
            )
        self._columns[source.name] = mapping

    def _select(self, source: ViewSource, watermark: int | None) -> str:
        if source.name not in self._columns:
            self.check(source)
        mapping = self._columns[source.name]
        columns = ", ".join(
            f"{quote_identifier(mapping[name])} as {quote_identifier(name)}"
            for name in source.columns
        )
        where = ""
        if watermark is not None:
            # microseconds -> TIMESTAMP_NTZ; entities changed after the last successful load
            changed = quote_identifier(mapping[source.changed_column])
            where = f" where {changed} > to_timestamp_ntz({int(watermark)}, 6)"
        order = ", ".join(quote_identifier(mapping[name]) for name in source.order_columns)
        return f"select {columns} from {relation_name(source)}{where} order by {order}"

    def count(self, source: ViewSource, watermark: int | None) -> int:
        cursor = self._execute(f"select count(*) from ({self._select(source, watermark)})", source)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return int(row[0]) if row else 0

    def cutoff(self, source: ViewSource) -> dt.datetime | None:
        if source.name not in self._columns:
            self.check(source)
        column = quote_identifier(self._columns[source.name][source.cutoff_column])
        cursor = self._execute(f"select max({column}) from {relation_name(source)}", source)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return naive_utc(row[0] if row else None)

    def batches(
        self,
        source: ViewSource,
        watermark: int | None,
        rows: int,
        partition: Partition | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The relation's rows (newer than ``watermark``) as Arrow batches of ``rows`` rows,
        fetched chunk by chunk (``fetch_arrow_batches``)."""
        from snowflake.connector import errors

        if partition is not None:
            self.fresh()  # refuses: one process reads Snowflake (see Warehouse.fresh)
        cursor = self._execute(self._select(source, watermark), source)
        try:
            chunks = cursor.fetch_arrow_batches(force_microsecond_precision=True)
            yield from rebatch((conform(chunk, source) for chunk in chunks), rows)
        except errors.Error as exc:
            raise WarehouseError(self._query_message(exc, source)) from None
        finally:
            cursor.close()
