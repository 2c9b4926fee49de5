"""Reading the online relations from the DuckDB warehouse file with DuckDB's
``to_arrow_reader`` (a read-only connection)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loader.errors import WarehouseError
from loader.views import ViewSource, quote_identifier
from loader.warehouse import Partition, Warehouse, naive_utc

if TYPE_CHECKING:
    import duckdb

__all__ = ["DuckDBWarehouse"]


class DuckDBWarehouse(Warehouse):
    """A read-only connection to the DuckDB warehouse file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._con: duckdb.DuckDBPyConnection | None = None

    def open(self) -> None:
        import duckdb

        if not self.path.is_file():
            raise WarehouseError(
                f"warehouse {self.path} does not exist: run `dbt build` first "
                "(or set FEATURESTORE_DUCKDB_PATH)"
            )
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"cannot open warehouse {self.path}: {str(exc).splitlines()[0]}"
            ) from None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("the warehouse is not open")
        return self._con

    def _sql(self, query: str, params: Sequence[object] = ()) -> Any:
        import duckdb

        try:
            return self.con.sql(query, params=list(params) or None)
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {self.path}: {str(exc).splitlines()[0]}") from None

    def check(self, source: ViewSource) -> None:
        """Raise WarehouseError unless the relation exists with every column needed."""
        rows = self._sql(
            "select column_name from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            (source.schema, source.table),
        ).fetchall()
        if not rows:
            raise WarehouseError(
                f"relation {source.relation} (online values of {source.name}) does not exist "
                f"in warehouse {self.path}: run `dbt build`"
            )
        found = {row[0] for row in rows}
        missing = [column for column in source.columns if column not in found]
        if missing:
            raise WarehouseError(
                f"relation {source.relation} lacks column(s) {', '.join(missing)} "
                f"needed to load {source.name}: rebuild it with `dbt build`"
            )

    def fresh(self) -> DuckDBWarehouse:
        """The same file, unopened (each process of a partitioned load opens it read-only)."""
        return DuckDBWarehouse(self.path)

    def _select(
        self, source: ViewSource, watermark: int | None, partition: Partition | None = None
    ) -> str:
        conditions = []
        if watermark is not None:
            # microseconds -> TIMESTAMP; entities changed after the last successful load
            changed = quote_identifier(source.changed_column)
            conditions.append(f"{changed} > make_timestamp({int(watermark)}::bigint)")
        if partition is not None:
            # DuckDB's hash() is deterministic for a given DuckDB version: every process of
            # one load computes the same parts
            keys = ", ".join(quote_identifier(key) for key in source.view.keys)
            conditions.append(f"hash({keys}) % {partition.count} = {partition.index}")
        where = f" where {' and '.join(conditions)}" if conditions else ""
        columns = ", ".join(quote_identifier(column) for column in source.columns)
        order = ", ".join(quote_identifier(column) for column in source.order_columns)
        return f"select {columns} from {source.relation}{where} order by {order}"

    def count(self, source: ViewSource, watermark: int | None) -> int:
        query = f"select count(*) from ({self._select(source, watermark)})"  # order: dropped
        return int(self._sql(query).fetchall()[0][0])

    def cutoff(self, source: ViewSource) -> dt.datetime | None:
        query = f"select max({quote_identifier(source.cutoff_column)}) from {source.relation}"
        value = self._sql(query).fetchall()[0][0]
        return naive_utc(value)

    def batches(
        self,
        source: ViewSource,
        watermark: int | None,
        rows: int,
        partition: Partition | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The relation's rows (newer than ``watermark``, of ``partition``) as Arrow batches
        of <= ``rows``."""
        import duckdb

        reader = self._sql(self._select(source, watermark, partition)).to_arrow_reader(rows)
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                if batch.num_rows:
                    yield batch
        except duckdb.Error as exc:
            raise WarehouseError(
                f"warehouse {self.path}: reading {source.relation} failed: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        finally:
            reader.close()
