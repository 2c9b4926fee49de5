"""fakesnow's Snowflake server mode for the tests that talk to "Snowflake" with the real
connector (the loader's reader, get_historical_features on the snowflake target).

``fakesnow.server()`` answers the Snowflake REST protocol on a free loopback port; the real
``snowflake.connector`` logs in over HTTP, sends its SQL (fakesnow translates it to DuckDB)
and decodes the Arrow results itself. The only seam is the server's address (host, port,
http), added to the connector's ``connect`` arguments (:meth:`FakeSnowflake.route`).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

fakesnow = pytest.importorskip("fakesnow")
import snowflake.connector  # noqa: E402  (after the skip: fakesnow brings the connector)

#: fakesnow.server() imports the submodule fakesnow.server, which then replaces the function
#: of the same name on the package: keep the function
START_SERVER = fakesnow.server

SNOWFLAKE_TYPES = {
    "VARCHAR": "varchar",
    "TIMESTAMP": "timestamp_ntz",
    "BIGINT": "number(38, 0)",
    "INTEGER": "number(38, 0)",
    "DOUBLE": "float",
    "BOOLEAN": "boolean",
}


def snowflake_type(duckdb_type: str) -> str:
    """The Snowflake DDL type of a DuckDB column type (``DECIMAL(p,s)``: ``number(p, s)``, as
    dbt-snowflake creates the tile sums)."""
    match = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duckdb_type)
    if match:
        return f"number({match[1]}, {match[2]})"
    return SNOWFLAKE_TYPES[duckdb_type]


@dataclasses.dataclass
class FakeSnowflake:
    """A fakesnow server and how to reach it (the only thing the tests add to ``connect``)."""

    address: dict[str, Any]

    def connect(self, **kwargs: Any) -> Any:
        return snowflake.connector.connect(**self.with_address(kwargs))

    def with_address(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``connect`` arguments sent to this server (session parameters merged)."""
        sessions = {**kwargs.get("session_parameters", {}), **self.address["session_parameters"]}
        return {**kwargs, **self.address, "session_parameters": sessions}

    def route(self, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
        """Send every ``snowflake.connector.connect`` call to this server; returns the
        keyword arguments of each call (as the code under test made it)."""
        calls: list[dict[str, Any]] = []
        real_connect = snowflake.connector.connect

        def connect(**kwargs: Any) -> Any:
            calls.append(dict(kwargs))
            return real_connect(**self.with_address(kwargs))

        monkeypatch.setattr(snowflake.connector, "connect", connect)
        return calls

    def execute(self, connect_args: Mapping[str, Any], *statements: str) -> list[tuple[Any, ...]]:
        con = self.connect(**connect_args)
        try:
            cursor = con.cursor()
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall())
        finally:
            con.close()

    def copy_from_duckdb(
        self,
        connect_args: Mapping[str, Any],
        duckdb_path: Path,
        tables: Mapping[str, tuple[str, str, str]],
    ) -> dict[str, int]:
        """Copy DuckDB tables (``schema.table``) into ``(database, schema, table)`` of this
        server, with unquoted (upper-case) columns as dbt-snowflake creates them; returns
        the rows copied per table. The DDL goes through the connector, the rows through
        fakesnow's own ``write_pandas`` on the server's shared database (INSERT statements of
        thousands of literal rows take fakesnow long to translate)."""
        from fakesnow.pandas_tools import write_pandas

        shared_fs = importlib.import_module("fakesnow.server").shared_fs
        copied = {}
        with duckdb.connect(str(duckdb_path), read_only=True) as con:
            for source, (database, schema, table) in tables.items():
                described = con.sql(f"describe {source}").fetchall()
                columns = ", ".join(
                    f"{name} {snowflake_type(kind)}" for name, kind, *_ in described
                )
                self.execute(
                    connect_args,
                    f"create database if not exists {database}",
                    f"create schema if not exists {database}.{schema}",
                    f"create or replace table {database}.{schema}.{table} ({columns})",
                )
                rows = con.sql(f"select * from {source}").to_arrow_table()
                shared = shared_fs.connect(database, schema)
                written = write_pandas(
                    shared,
                    rows.to_pandas(types_mapper=pd.ArrowDtype),
                    table,
                    database=database,
                    schema=schema,
                )
                shared.close()
                copied[source] = int(written[2])
        return copied


@contextmanager
def fake_snowflake_server() -> Iterator[FakeSnowflake]:
    """A fakesnow server on a free loopback port, for the duration of the block."""
    assert callable(START_SERVER), "fakesnow.server was imported before tests.snowflake_server"
    with START_SERVER() as kwargs:
        address = {key: kwargs[key] for key in ("host", "port", "protocol")}
        address["session_parameters"] = kwargs["session_parameters"]
        yield FakeSnowflake(address)
