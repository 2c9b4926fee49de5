"""The :class:`Warehouse` interface: where a load reads the online relations from, in Arrow
record batches so that memory stays flat whatever the table size. One module per
implementation (:mod:`loader.duckdb_warehouse`, :mod:`loader.snowflake_warehouse`);
:func:`loader.targets.open_warehouse` picks the one the dbt target names."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import pyarrow as pa

from loader.errors import WarehouseError
from loader.views import ViewSource

__all__ = ["Partition", "Warehouse", "naive_utc"]


@dataclass(frozen=True)
class Partition:
    """One of ``count`` disjoint parts of a relation's entities: the rows whose stable hash
    of the entity key columns, modulo ``count``, is ``index`` (every row of an entity falls
    in the same part; together the parts hold every row once). One loader process reads
    one part (``featurestore load --processes N``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise WarehouseError(f"invalid partition {self.index} of {self.count}")


def naive_utc(value: object) -> dt.datetime | None:
    """A timestamp the warehouse returned, as naive UTC (an aware one converted)."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise WarehouseError(f"expected a timestamp from the warehouse, got {value!r}")
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


class Warehouse(abc.ABC):
    """Where a load reads the online relations from (DuckDB, Snowflake).

    Used as a context manager around a load: :meth:`open` connects, :meth:`check` runs for
    every view before anything is read or written, :meth:`count` and :meth:`batches` read a
    view's rows. Every failure is a :class:`~loader.errors.WarehouseError` with a one-line
    message that names the relation and never holds a secret.
    """

    #: which warehouse, for messages (never a secret)
    description: str

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def open(self) -> None:
        """Connect (or open the file)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect; idempotent."""

    def locate(self, source: ViewSource) -> ViewSource:
        """``source`` with the relation named as this warehouse reads it (for reports)."""
        return source

    @abc.abstractmethod
    def check(self, source: ViewSource) -> None:
        """Raise WarehouseError unless the relation exists with every column needed."""

    @abc.abstractmethod
    def count(self, source: ViewSource, watermark: int | None) -> int:
        """How many rows :meth:`batches` will yield (for progress)."""

    @abc.abstractmethod
    def cutoff(self, source: ViewSource) -> dt.datetime | None:
        """The relation's cutoff (``online_as_of``, naive UTC; the same on every row): the
        time its values are current as of (None: the relation is empty)."""

    def fresh(self) -> Warehouse:
        """A new, unopened warehouse reading the same data, for a child process of a
        partitioned load (``--processes``); raises WarehouseError where not supported."""
        raise WarehouseError(
            f"warehouse {self.description} cannot be read by several processes "
            "(--processes > 1 is supported on the DuckDB target only)"
        )

    @abc.abstractmethod
    def batches(
        self,
        source: ViewSource,
        watermark: int | None,
        rows: int,
        partition: Partition | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The relation's rows whose change time is later than ``watermark`` (microseconds
        since the epoch, UTC; ``None``: every row) as Arrow batches of at most ``rows`` rows,
        with the columns :attr:`ViewSource.columns` in that order and under those names;
        only the rows of ``partition`` if given (a warehouse without :meth:`fresh` refuses
        one)."""
